//! Pages: of objects, of events and of the audit log.

use berth_core::{audit::AuditEntry, objects::Event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Paging parameters of list endpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page (1-1000, default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `metadata.continue` value of the previous page.
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
}

/// Metadata of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListMeta {
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(rename = "continue", default, skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// A page of objects.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// `<Kind>List`.
    pub kind: String,
    /// Paging.
    pub metadata: ListMeta,
    /// The objects.
    pub items: Vec<Value>,
}

/// Which events.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events after this position (`seq`).
    pub after: Option<u64>,
    /// At most this many (1-1000, default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only events about this application.
    pub application: Option<String>,
}

/// A page of events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    /// Events in log order.
    pub items: Vec<Event>,
}

/// Which entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Entries in log order.
    pub items: Vec<AuditEntry>,
}
