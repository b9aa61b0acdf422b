//! Who am I, and my API tokens: create (the secret is shown once), list, revoke.
//!
//! Everyone manages their own tokens; a platform administrator may also make tokens for
//! other users (for CI systems, say) and list or revoke anyone's.

use axum::{Json, http::StatusCode};
use berth_core::{
    audit::Change,
    authz::{Permission, Principal, decide},
    objects::{Role, UserKind},
    ports::TokenRecord,
    repo,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiState,
    auth::{CurrentToken, hash_token, new_token, new_token_id},
    error::{ApiError, Result},
};

/// What is shown of a token: never its secret or its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Public id, to revoke it.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// The user it authenticates.
    pub user: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(t: &TokenRecord) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            user: t.subject.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Body of `POST /tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, e.g. `laptop` or `ci`.
    pub name: String,
    /// The user it authenticates; yourself when left out (others: platform
    /// administrators only).
    #[serde(default)]
    pub user: Option<String>,
    /// Days until it expires (1-3650, default 90).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new token. The secret is in this answer and nowhere else: Berth keeps only its hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    /// The secret, for `Authorization: Bearer …`.
    pub secret: String,
    /// The token.
    pub token: TokenInfo,
}

/// Tokens.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Oldest first.
    pub items: Vec<TokenInfo>,
}

/// Filter of `GET /tokens`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenParams {
    /// Only this user's tokens (others: platform administrators only). Yours when left
    /// out, or everyone's for a platform administrator.
    pub user: Option<String>,
}

/// One role the caller holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleGrant {
    /// The team.
    pub team: String,
    /// The role.
    pub role: Role,
    /// Where it holds; everywhere when empty.
    pub environments: Vec<String>,
}

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// The user.
    pub user: String,
    /// Whether the user administers the platform.
    pub platform_admin: bool,
    /// Team roles.
    pub roles: Vec<RoleGrant>,
    /// The token of this request.
    pub token: TokenInfo,
}

/// Days a token lives when the request does not say.
const DEFAULT_DAYS: u32 = 90;

/// The caller, its roles and its token.
#[must_use]
pub fn whoami(principal: &Principal, token: &CurrentToken) -> WhoAmI {
    WhoAmI {
        user: principal.user.clone(),
        platform_admin: principal.platform_admin,
        roles: principal
            .grants
            .iter()
            .map(|g| RoleGrant {
                team: g.team.clone(),
                role: g.role,
                environments: g.environments.clone(),
            })
            .collect(),
        token: TokenInfo::from(&token.0),
    }
}

fn for_another_user(principal: &Principal, user: &str) -> Result<()> {
    if user != principal.user {
        decide(principal, &Permission::AdministerPlatform)?;
    }
    Ok(())
}

fn invalid(path: &str, message: &str, hint: &str) -> ApiError {
    ApiError::Invalid(berth_core::Invalid {
        kind: "Token",
        errors: vec![berth_core::FieldError::new(path, message).hint(hint)],
    })
}

/// Makes a token; the answer is the only place its secret ever appears.
pub async fn create(
    state: &ApiState,
    principal: &Principal,
    req: TokenRequest,
) -> Result<(StatusCode, Json<NewToken>)> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "must be 1-100 printable characters",
            "name what the token is for, e.g. laptop or ci",
        ));
    }
    let days = req.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=3650).contains(&days) {
        return Err(invalid(
            "expiresInDays",
            "must be between 1 and 3650",
            "tokens expire; make a new one before the old one does",
        ));
    }
    let user = req.user.unwrap_or_else(|| principal.user.clone());
    for_another_user(principal, &user)?;
    if repo::get::<UserKind>(state.store.as_ref(), &user)
        .await?
        .is_none()
    {
        return Err(ApiError::MissingReference {
            path: "user".to_owned(),
            kind: "User",
            name: user,
        });
    }
    let secret = new_token();
    let now = Utc::now();
    let record = TokenRecord {
        id: new_token_id(),
        name: name.to_owned(),
        subject: user,
        hash: hash_token(&secret),
        created_at: now,
        expires_at: Some(now + Duration::days(i64::from(days))),
        revoked_at: None,
    };
    state
        .store
        .put_token(record.clone(), &Change::new(&principal.user, "token.create"))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewToken {
            secret,
            token: TokenInfo::from(&record),
        }),
    ))
}

/// Lists tokens: the caller's own, or (platform administrators) anyone's.
pub async fn list(state: &ApiState, principal: &Principal, params: TokenParams) -> Result<TokenList> {
    let subject = match params.user {
        Some(user) => {
            for_another_user(principal, &user)?;
            Some(user)
        }
        None if principal.platform_admin => None,
        None => Some(principal.user.clone()),
    };
    let tokens = state.store.list_tokens(subject.as_deref()).await?;
    Ok(TokenList {
        items: tokens.iter().map(TokenInfo::from).collect(),
    })
}

/// Revokes a token of the caller's (or, for platform administrators, anyone's), but not
/// the token of the request itself: that would lock the caller out mid-conversation.
pub async fn revoke(
    state: &ApiState,
    principal: &Principal,
    current: &CurrentToken,
    id: &str,
) -> Result<TokenInfo> {
    if current.0.id == id {
        return Err(ApiError::Conflict {
            message: format!("token {id} is the token of this request"),
            hint: "revoke it with another token (make one with POST /tokens)".to_owned(),
        });
    }
    let own = state
        .store
        .list_tokens(Some(&principal.user))
        .await?
        .iter()
        .any(|t| t.id == id);
    if !own && !principal.platform_admin {
        // Someone else's token answers like a missing one, so that ids cannot be probed.
        return Err(ApiError::NotFound {
            kind: "Token".to_owned(),
            name: id.to_owned(),
        });
    }
    let revoked = state
        .store
        .revoke_token(id, Utc::now(), &Change::new(&principal.user, "token.revoke"))
        .await?;
    Ok(TokenInfo::from(&revoked))
}
