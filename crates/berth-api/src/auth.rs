//! Authentication: every API request carries `Authorization: Bearer <token>`. Tokens are
//! random, shown once, and stored only as their SHA-256.

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use base64::Engine;
use berth_core::ports::{Store, StoreError, TokenRecord};
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{ApiState, error::ApiError};

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

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

/// On first start (no token stored), creates the bootstrap admin token and returns it;
/// afterwards returns `None`. Only the hash is kept.
pub async fn ensure_bootstrap_token(store: &dyn Store) -> Result<Option<String>, StoreError> {
    if store.count_tokens().await? > 0 {
        return Ok(None);
    }
    let token = new_token();
    store
        .put_token(TokenRecord {
            name: "bootstrap".to_owned(),
            subject: "admin".to_owned(),
            hash: hash_token(&token),
            created_at: Utc::now(),
        })
        .await?;
    Ok(Some(token))
}

/// Middleware: resolves the bearer token to an [`Actor`] or answers 401.
pub async fn authenticate(
    State(state): State<ApiState>,
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
    let record = state.store.find_token(&hash_token(token)).await?;
    let Some(record) = record else {
        return Err(ApiError::Unauthorized(
            "the token is not valid; check BERTH_TOKEN or --token".to_owned(),
        ));
    };
    req.extensions_mut().insert(Actor(record.subject));
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
    }
}
