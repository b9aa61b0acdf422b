//! The audit log over HTTP: filtered pages, and a verification of the whole chain.

use berth_core::audit::{AuditEntry, AuditQuery, Verification, Verifier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiState, error::Result};

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

/// Walks the whole log, a page at a time, and checks every link against the head.
pub async fn verify(state: &ApiState) -> Result<Verification> {
    // Read the head first: entries committed during the walk come after it.
    let head = state.store.audit_head().await?;
    let mut verifier = Verifier::default();
    let mut after = 0;
    loop {
        let page = state
            .store
            .audit(&AuditQuery {
                after,
                limit: 1000,
                ..AuditQuery::default()
            })
            .await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in page
            .iter()
            .take_while(|e| head.as_ref().is_none_or(|h| e.seq <= h.seq))
        {
            verifier.push(e);
        }
        if head.as_ref().is_some_and(|h| last >= h.seq) {
            break;
        }
        after = last;
    }
    Ok(verifier.finish(head.as_ref()))
}
