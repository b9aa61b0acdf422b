//! Who am I, and my API tokens: create (the secret is shown once), list, revoke.
//!
//! Everyone manages their own tokens; a platform administrator may also make tokens for
//! other users (for CI systems, say) and list or revoke anyone's.
//!
//! Two rules bound what a token can make. A new token never outlives the token that made
//! it: an explicit `expiresInDays` past the parent's expiry is refused (422) and the
//! default lifetime is cut to the parent's. A user holds at most
//! [`MAX_ACTIVE_TOKENS`] active tokens: one more is refused (409) until one is revoked.

use axum::{Json, http::StatusCode};
use berth_core::{
    audit::Change,
    authz::{Permission, Principal, decide},
    objects::UserKind,
    ports::TokenRecord,
    repo,
};
use chrono::{DateTime, Duration, Utc};

use crate::{
    ApiState,
    auth::{CurrentToken, hash_token, new_token, new_token_id},
    error::{ApiError, Result},
};
pub use berth_contract::{NewToken, RoleGrant, TokenInfo, TokenList, TokenParams, TokenRequest, WhoAmI};

/// Days a token lives when the request does not say.
const DEFAULT_DAYS: u32 = 90;

/// Tokens a user may hold at once (neither revoked nor expired): enough for every laptop
/// and CI system, few enough that a leaked token cannot be multiplied without limit.
pub const MAX_ACTIVE_TOKENS: usize = 50;

/// Held from counting a user's tokens to storing a new one, so that simultaneous requests
/// cannot together pass [`MAX_ACTIVE_TOKENS`] (within this process).
static TOKEN_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// When a token asked for `days` (or the default) expires, made at `now` with `parent`:
/// never after the parent. An explicit lifetime past the parent's is refused, so that
/// nobody gets a shorter token than they asked for without noticing.
fn expiry(days: Option<u32>, parent: &TokenRecord, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let asked = now + Duration::days(i64::from(days.unwrap_or(DEFAULT_DAYS)));
    match parent.expires_at {
        Some(limit) if asked > limit => {
            if days.is_none() {
                return Ok(limit);
            }
            let most = (limit - now).num_days();
            let hint = if most >= 1 {
                format!(
                    "ask for at most {most} days, or leave expiresInDays out to get a token that expires with this one"
                )
            } else {
                "leave expiresInDays out to get a token that expires with this one".to_owned()
            };
            Err(invalid(
                "expiresInDays",
                &format!(
                    "would outlive the token of this request ({}), which expires at {}",
                    parent.id,
                    limit.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                &hint,
            ))
        }
        _ => Ok(asked),
    }
}

/// Refuses a token for `user` beyond [`MAX_ACTIVE_TOKENS`].
async fn refuse_beyond_the_cap(state: &ApiState, user: &str, now: DateTime<Utc>) -> Result<()> {
    let active = state
        .store
        .list_tokens(Some(user))
        .await?
        .iter()
        .filter(|t| t.is_valid_at(now))
        .count();
    if active >= MAX_ACTIVE_TOKENS {
        return Err(ApiError::Conflict {
            message: format!(
                "User '{user}' has {active} active tokens, the most a user may hold is {MAX_ACTIVE_TOKENS}"
            ),
            hint: "revoke tokens no longer used: `berth token list`, then `berth token revoke ID` (DELETE /api/v1/tokens/{id})"
                .to_owned(),
        });
    }
    Ok(())
}

/// Makes a token, made with (and never outliving) the request's token `parent`; the
/// answer is the only place its secret ever appears.
pub async fn create(
    state: &ApiState,
    principal: &Principal,
    parent: &CurrentToken,
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
    if req
        .expires_in_days
        .is_some_and(|days| !(1..=3650).contains(&days))
    {
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
    let now = state.clock.now();
    let expires_at = expiry(req.expires_in_days, &parent.0, now)?;
    let _one_at_a_time = TOKEN_WRITES.lock().await;
    refuse_beyond_the_cap(state, &user, now).await?;
    let secret = new_token();
    let record = TokenRecord {
        id: new_token_id(),
        name: name.to_owned(),
        subject: user,
        hash: hash_token(&secret),
        created_at: now,
        expires_at: Some(expires_at),
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
        .revoke_token(
            id,
            state.clock.now(),
            &Change::new(&principal.user, "token.revoke"),
        )
        .await?;
    Ok(TokenInfo::from(&revoked))
}
