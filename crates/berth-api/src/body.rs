//! Reading request bodies: JSON with line and column on syntax errors, and a size limit
//! answered with 413 — as problem documents like every other error.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A JSON request body of type `T`; errors name the line, column and field path.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit: MAX_BODY }
            } else {
                ApiError::BadRequest(format!("the request body could not be read: {rejection}"))
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Parses JSON, naming where it breaks.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!(
                "the body is not valid JSON: {inner} (send a JSON document; line {}, column {})",
                inner.line(),
                inner.column()
            ))
        } else {
            let at = if path == "." {
                String::new()
            } else {
                format!(" at {path}")
            };
            ApiError::BadRequest(format!("the body does not have the expected shape{at}: {inner}"))
        }
    })
}
