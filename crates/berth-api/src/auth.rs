//! Authentication: every API request carries `Authorization: Bearer <token>`. Tokens are
//! random, shown once, stored only as their SHA-256, may expire and can be revoked; each
//! authenticates one User. The middleware also applies the per-token rate limit and
//! works out the request's [`Principal`] (the user with its roles) for authorization.

use std::time::Instant;

use axum::{
    Extension,
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use base64::Engine;
use berth_core::{
    Resource,
    audit::Change,
    authz::Principal,
    objects::{BOOTSTRAP_ADMIN, DEFAULT_TEAM, Team, TeamKind, TeamSpec, User, UserKind, UserSpec},
    ports::{Store, StoreError, TokenRecord},
    repo::{self, RepoError},
};
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{ApiState, error::ApiError, governance::Governance};

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// The token a request was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentToken(pub TokenRecord);

/// Prefix that makes Berth tokens recognisable (e.g. by secret scanners).
const TOKEN_PREFIX: &str = "berth_";

/// The stored form of a token.
#[must_use]
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes from a CSPRNG seeded by the OS, base64url.
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new public token id: 8 random bytes, hex.
#[must_use]
pub fn new_token_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Makes what a fresh platform needs, and what an older data directory lacks: the first
/// platform administrator (`admin`, who owns the bootstrap token) when there is no user,
/// and the `default` team. Idempotent.
pub async fn ensure_governance(store: &dyn Store) -> Result<(), RepoError> {
    let change = Change::new("berth", "bootstrap");
    if repo::list_all::<UserKind>(store, None).await?.is_empty() {
        let admin = User::new(
            BOOTSTRAP_ADMIN,
            UserSpec {
                display_name: Some("First platform administrator".to_owned()),
                platform_admin: true,
            },
        );
        create_if_missing(store, &change, &admin).await?;
    }
    if repo::get::<TeamKind>(store, DEFAULT_TEAM).await?.is_none() {
        let team = Team::new(DEFAULT_TEAM, TeamSpec::default());
        create_if_missing(store, &change, &team).await?;
    }
    Ok(())
}

async fn create_if_missing<K: berth_core::Kind>(
    store: &dyn Store,
    change: &Change,
    object: &Resource<K>,
) -> Result<(), RepoError> {
    // Audited like every write, but without an event: the event log starts with what
    // people do.
    match store
        .commit_as(change, vec![repo::create(object)?], Vec::new())
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// On first start (no token stored), makes the first platform administrator and the
/// bootstrap token that authenticates it, and returns the token; afterwards returns
/// `None`. Only the hash is kept. Also brings an older store up to date
/// ([`ensure_governance`]).
pub async fn ensure_bootstrap_token(store: &dyn Store) -> Result<Option<String>, StoreError> {
    ensure_governance(store).await.map_err(|e| match e {
        RepoError::Store(e) => e,
        e @ RepoError::Corrupt { .. } => StoreError::Backend {
            message: e.to_string(),
        },
    })?;
    if store.count_tokens().await? > 0 {
        return Ok(None);
    }
    let token = new_token();
    store
        .put_token(
            TokenRecord {
                id: new_token_id(),
                name: "bootstrap".to_owned(),
                subject: BOOTSTRAP_ADMIN.to_owned(),
                hash: hash_token(&token),
                created_at: Utc::now(),
                expires_at: None,
                revoked_at: None,
            },
            &Change::new("berth", "bootstrap"),
        )
        .await?;
    Ok(Some(token))
}

/// The principal of `user`: whether it administers the platform, and its team roles.
pub async fn principal(store: &dyn Store, user: &User) -> Result<Principal, ApiError> {
    let teams = repo::list_all::<TeamKind>(store, None).await?;
    Ok(Principal::new(user.name(), user.spec.platform_admin, &teams))
}

/// Middleware: resolves the bearer token to an [`Actor`], a [`Principal`] and the
/// [`CurrentToken`], after the token's rate limit; or answers 401 (or 429).
pub async fn authenticate(
    State(state): State<ApiState>,
    Extension(governance): Extension<Governance>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
        return Err(ApiError::Unauthorized(
            "send a token as 'Authorization: Bearer <token>' (the bootstrap token is in <data-dir>/bootstrap-token)"
                .to_owned(),
        ));
    };
    let hash = hash_token(token);
    // Before any lookup: a flood with one token costs the store nothing.
    governance
        .limiter
        .take(&hash, Instant::now())
        .map_err(|wait| ApiError::RateLimited {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        })?;
    let record = state.store.find_token(&hash).await?;
    let refused = |why: &str| ApiError::Unauthorized(format!("{why}; check BERTH_TOKEN or --token"));
    let Some(record) = record else {
        return Err(refused("the token is not valid"));
    };
    let now = Utc::now();
    if record.revoked_at.is_some() {
        return Err(refused(&format!("token {} was revoked", record.id)));
    }
    if !record.is_valid_at(now) {
        return Err(refused(&format!("token {} has expired", record.id)));
    }
    let Some(user) = repo::get::<UserKind>(state.store.as_ref(), &record.subject).await? else {
        return Err(refused(&format!(
            "user '{}' of token {} no longer exists",
            record.subject, record.id
        )));
    };
    let principal = principal(state.store.as_ref(), &user).await?;
    req.extensions_mut().insert(Actor(record.subject.clone()));
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(CurrentToken(record));
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("berth_") && a.len() > 40);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!hash_token(&a).contains(&a[6..]));
        assert_eq!(new_token_id().len(), 16);
    }
}
