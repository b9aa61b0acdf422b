//! Tokens and the caller.

use berth_core::{objects::Role, ports::TokenRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What is shown of a token: never its secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, e.g. `laptop` or `ci`.
    pub name: String,
    /// The user it authenticates; yourself when left out (others: platform
    /// administrators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Days until it expires (1-3650, default 90, and never after the token making it:
    /// an explicit value past that is refused, the default is cut to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A new token. The secret is in this answer and nowhere else: Berth keeps only its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    /// The secret, for `Authorization: Bearer …`.
    pub secret: String,
    /// The token.
    pub token: TokenInfo,
}

/// Tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Oldest first.
    pub items: Vec<TokenInfo>,
}

/// Filter of `GET /tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenParams {
    /// Only this user's tokens (others: platform administrators only). Yours when left
    /// out, or everyone's for a platform administrator.
    pub user: Option<String>,
}

/// One role the caller holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleGrant {
    /// The team.
    pub team: String,
    /// The role.
    pub role: Role,
    /// Where it holds; everywhere when empty.
    pub environments: Vec<String>,
}

/// The caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
