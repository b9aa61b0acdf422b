//! The audit log over HTTP: filtered pages, and a verification of the whole chain.

use berth_core::audit::{AuditQuery, Checkpoint, Verification};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    ApiState,
    error::{ApiError, Result},
};
pub use berth_contract::{AuditList, AuditParams};

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
