//! Authentication: every API request carries `Authorization: Bearer <token>`. Tokens are
//! random, shown once, stored only as their SHA-256, may expire and can be revoked; each
//! authenticates one User. The middleware also applies the rate limits (per client
//! address, per user) and works out the request's [`Principal`] (the user with its roles)
//! for authorization.

use std::{net::SocketAddr, time::Instant};

use axum::{
    Extension,
    extract::{ConnectInfo, Request, State},
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
    ports::{Clock, Store, StoreError, SystemClock, TokenRecord},
    repo::{self, RepoError},
};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    ApiState,
    error::ApiError,
    governance::{Governance, Identity, address_key},
};

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
    drop_stale_memberships(store, &change).await
}

/// Removes team members that name no user: left by user deletes from before a delete took
/// the user out of its teams, they would hand their roles to a new user of that name.
async fn drop_stale_memberships(store: &dyn Store, change: &Change) -> Result<(), RepoError> {
    let users: std::collections::BTreeSet<String> = repo::list_all::<UserKind>(store, None)
        .await?
        .into_iter()
        .map(|u| u.metadata.name)
        .collect();
    let mut writes = Vec::new();
    for mut team in repo::list_all::<TeamKind>(store, None).await? {
        let before = team.spec.members.len();
        team.spec.members.retain(|m| users.contains(&m.user));
        if team.spec.members.len() != before {
            writes.push(repo::replace(&team)?);
        }
    }
    if !writes.is_empty() {
        store.commit_as(change, writes, Vec::new()).await?;
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

/// A repository error as the store error it is (an undecodable document is a backend
/// failure).
fn as_store_error(e: RepoError) -> StoreError {
    match e {
        RepoError::Store(e) => e,
        e @ RepoError::Corrupt { .. } => StoreError::Backend {
            message: e.to_string(),
        },
    }
}

/// On first start (no token stored), makes the first platform administrator and the
/// bootstrap token that authenticates it, and returns the token; afterwards returns
/// `None`. Only the hash is kept. Also brings an older store up to date
/// ([`ensure_governance`]).
pub async fn ensure_bootstrap_token(store: &dyn Store) -> Result<Option<String>, StoreError> {
    ensure_governance(store).await.map_err(as_store_error)?;
    if store.count_tokens().await? > 0 {
        return Ok(None);
    }
    let token = new_token();
    store
        // Before the server serves: no state and no clock of its own yet.
        .put_token(
            bootstrap_record(&token, SystemClock.now()),
            &Change::new("berth", "bootstrap"),
        )
        .await?;
    Ok(Some(token))
}

/// Replaces the bootstrap token, for `berth server --rotate-bootstrap-token`: when it
/// leaked, or when every administrator token is lost. Revokes every bootstrap token still
/// active, makes sure the user `admin` exists and administers the platform (creating or
/// restoring it, audited), and returns the new token (only its hash is stored).
pub async fn rotate_bootstrap_token(store: &dyn Store) -> Result<String, StoreError> {
    let change = Change::new("berth", "bootstrap.rotate");
    let backend = as_store_error;
    ensure_governance(store).await.map_err(backend)?;
    let admin = repo::get::<UserKind>(store, BOOTSTRAP_ADMIN)
        .await
        .map_err(backend)?;
    let write = match admin {
        None => Some(repo::create(&User::new(
            BOOTSTRAP_ADMIN,
            UserSpec {
                display_name: Some("First platform administrator".to_owned()),
                platform_admin: true,
            },
        ))),
        Some(mut admin) if !admin.spec.platform_admin => {
            admin.spec.platform_admin = true;
            Some(repo::replace(&admin))
        }
        Some(_) => None,
    };
    if let Some(write) = write {
        store
            .commit_as(&change, vec![write.map_err(backend)?], Vec::new())
            .await?;
    }
    // Before the server serves: no state and no clock of its own yet.
    let now = SystemClock.now();
    for old in store.list_tokens(Some(BOOTSTRAP_ADMIN)).await? {
        if old.name == BOOTSTRAP_TOKEN_NAME && old.revoked_at.is_none() {
            store.revoke_token(&old.id, now, &change).await?;
        }
    }
    let token = new_token();
    store.put_token(bootstrap_record(&token, now), &change).await?;
    Ok(token)
}

/// Name of the bootstrap token.
const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap";

/// The record of bootstrap token `token`: it does not expire (rotate it instead).
fn bootstrap_record(token: &str, now: DateTime<Utc>) -> TokenRecord {
    TokenRecord {
        id: new_token_id(),
        name: BOOTSTRAP_TOKEN_NAME.to_owned(),
        subject: BOOTSTRAP_ADMIN.to_owned(),
        hash: hash_token(token),
        created_at: now,
        expires_at: None,
        revoked_at: None,
    }
}

/// The principal of `user`: whether it administers the platform, and its team roles.
pub async fn principal(store: &dyn Store, user: &User) -> Result<Principal, ApiError> {
    let teams = repo::list_all::<TeamKind>(store, None).await?;
    Ok(Principal::new(user.name(), user.spec.platform_admin, &teams))
}

/// A 429 answer after `wait`, naming whose budget ran out.
fn limited(scope: &'static str, wait: std::time::Duration) -> ApiError {
    ApiError::RateLimited {
        scope,
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// Middleware: resolves the bearer token to an [`Actor`], a [`Principal`] and the
/// [`CurrentToken`]; or answers 401 (or 429). The client address's budget is taken
/// before anything else, so that floods without a token or with invalid tokens cost the
/// store nothing beyond that budget; a token refused recently is refused again without a
/// lookup; the user's budget (shared by all of its tokens) is taken once the token is
/// known. A token authenticated before is not read again while the store has written
/// nothing since ([`crate::governance::Identities`]). The address comes from axum's `ConnectInfo<SocketAddr>`, which the server must
/// provide (`into_make_service_with_connect_info`).
pub async fn authenticate(
    State(state): State<ApiState>,
    Extension(governance): Extension<Governance>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    governance
        .address_limiter
        .take(&address_key(address), Instant::now())
        .map_err(|wait| limited("this address", wait))?;
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
    let refused = |why: &str| format!("{why}; check BERTH_TOKEN or --token");
    if let Some(answer) = governance.refused.recall(&hash, Instant::now()) {
        return Err(ApiError::Unauthorized(answer));
    }
    // Unknown, revoked and expired tokens never become valid: remember the answer.
    let refuse_for_good = |why: String| {
        let answer = refused(&why);
        governance.refused.remember(&hash, &answer, Instant::now());
        ApiError::Unauthorized(answer)
    };
    // Taken before anything is read: what is read now may be kept while it holds.
    let generation = state.store.generation();
    let known = governance.identities.recall(&hash, generation);
    let record = match &known {
        Some(identity) => identity.record.clone(),
        None => match state.store.find_token(&hash).await? {
            Some(record) => record,
            None => return Err(refuse_for_good("the token is not valid".to_owned())),
        },
    };
    if record.revoked_at.is_some() {
        return Err(refuse_for_good(format!("token {} was revoked", record.id)));
    }
    // On every request, kept or not: a token is refused from the instant it expires.
    if !record.is_valid_at(state.clock.now()) {
        return Err(refuse_for_good(format!("token {} has expired", record.id)));
    }
    governance
        .limiter
        .take(&format!("user:{}", record.subject), Instant::now())
        .map_err(|wait| limited("this user", wait))?;
    let principal = match known {
        Some(identity) => identity.principal.clone(),
        None => {
            let Some(user) = repo::get::<UserKind>(state.store.as_ref(), &record.subject).await? else {
                return Err(ApiError::Unauthorized(refused(&format!(
                    "user '{}' of token {} no longer exists",
                    record.subject, record.id
                ))));
            };
            let principal = principal(state.store.as_ref(), &user).await?;
            governance.identities.remember(
                &hash,
                generation,
                Identity {
                    record: record.clone(),
                    principal: principal.clone(),
                },
            );
            principal
        }
    };
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
