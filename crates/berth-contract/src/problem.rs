//! The error document (RFC 9457 problem details) of every 4xx and 5xx answer.

use berth_core::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A problem document. Berth always sends every field but `errors` and
/// `missingPermission`; a client reading an error from something else (a proxy's 502)
/// gets empty values for what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type", default)]
    #[schema(required = true)]
    pub problem_type: String,
    /// A short summary.
    #[serde(default)]
    #[schema(required = true)]
    pub title: String,
    /// The HTTP status.
    #[serde(default)]
    #[schema(required = true)]
    pub status: u16,
    /// What happened in this case.
    #[serde(default)]
    #[schema(required = true)]
    pub detail: String,
    /// Problems with individual fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// On a 403: the permission that was missing, e.g. `deploy.production`.
    #[serde(
        rename = "missingPermission",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub missing_permission: Option<String>,
}
