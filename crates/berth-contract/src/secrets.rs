//! Secrets: values go in, only their metadata comes out.

use berth_core::objects::SecretInfo;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Body of `PUT /applications/{name}/secrets/{secret}`. It has no `Debug`: the value
/// must never reach a log.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValueRequest {
    /// The value: UTF-8 text of at most 64 KiB, without NUL characters. Never returned.
    #[schema(max_length = 65536)]
    pub value: String,
}

/// Which value of a secret `PUT` and `DELETE` change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SecretParams {
    /// The environment whose own value is set or deleted (delivered only there); the
    /// value for all environments (those without their own) when left out.
    pub environment: Option<String>,
}

/// The secrets of an application.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// By name.
    pub items: Vec<SecretInfo>,
}

/// What a re-seal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resealed {
    /// The key every secret is now sealed with.
    pub key_id: String,
    /// Secrets sealed again (they were under an older key).
    pub resealed: u64,
    /// Secrets in all.
    pub total: u64,
}
