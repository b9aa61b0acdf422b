//! One module per verb. Each has an `…Args` struct (clap) and a `run` function taking
//! the [`Client`](crate::client::Client) and the output to write to, so that every
//! command can be driven in tests against an in-process server.

pub mod apply;
pub mod audit;
pub mod build;
pub mod completion;
pub mod delete;
pub mod deploy;
pub mod describe;
pub mod events;
pub mod export;
pub mod get;
pub mod login;
pub mod operate;
pub mod plan;
pub mod promote;
pub mod rollback;
pub mod secret;
pub mod status;
pub mod token;
pub mod watch;

use serde::Serialize;

/// The name serde gives a unit enum variant (`local`, `Ready`), for tables.
pub(crate) fn variant<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}
