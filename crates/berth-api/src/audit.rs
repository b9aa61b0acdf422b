//! The audit log over HTTP: filtered pages, and a verification of the whole chain.

use berth_core::audit::{AuditEntry, AuditQuery, Checkpoint, Verification};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    ApiState,
    error::{ApiError, Result},
};

/// Which entries.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries after this position (`seq`).
    pub after: Option<u64>,
    /// At most this many (1-1000, default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only changes by this user.
    pub actor: Option<String>,
    /// Only changes to objects of this kind, e.g. `Application`, `Token`, `Secret`.
    pub kind: Option<String>,
    /// Only changes to objects of this name.
    pub name: Option<String>,
    /// Only changes made for this action, e.g. `deploy`, `secret.set`.
    pub action: Option<String>,
    /// Only changes at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only changes before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Entries in log order.
    pub items: Vec<AuditEntry>,
}

/// Reads a page of the log.
pub async fn list(state: &ApiState, p: AuditParams) -> Result<AuditList> {
    let items = state
        .store
        .audit(&AuditQuery {
            after: p.after.unwrap_or(0),
            limit: p.limit.unwrap_or(500).clamp(1, 1000),
            actor: p.actor,
            kind: p.kind,
            name: p.name,
            action: p.action,
            since: p.since,
            until: p.until,
        })
        .await?;
    Ok(AuditList { items })
}

/// Which checkpoint to verify against.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// A checkpoint an earlier verification handed out (`seq:hash:mac`): the log must
    /// still hold that entry unchanged.
    pub checkpoint: Option<String>,
}

/// Verifies the whole log, its checkpoints and every stored object against it.
pub async fn verify(state: &ApiState, p: VerifyParams) -> Result<Verification> {
    let given = p
        .checkpoint
        .as_deref()
        .map(|text| {
            text.parse::<Checkpoint>()
                .map_err(|message| ApiError::BadRequest(format!("query parameter `checkpoint`: {message}")))
        })
        .transpose()?;
    Ok(state.store.verify_audit(given.as_ref()).await?)
}
