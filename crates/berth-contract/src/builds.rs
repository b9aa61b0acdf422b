//! Builds and their logs.

use berth_core::objects::BuildPhase;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Body of `POST /applications/{name}/builds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    /// Branch, tag or commit to build; the application's `source.ref` when left out.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

/// Filters of the build list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BuildListParams {
    /// Items per page (1-1000, default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `metadata.continue` value of the previous page.
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    /// Only those of this application.
    pub application: Option<String>,
}

/// How to read a log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Keep the stream open until the build ends (default true); false sends what there
    /// is and ends.
    pub follow: Option<bool>,
}

/// The last message of a log stream (`event: end`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogEnd {
    /// The build's phase when the stream ended.
    pub phase: BuildPhase,
    /// Its outcome or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The image digest, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
