//! Operating a running application: its instances, their logs, a rolling restart.

use berth_core::instance::{ExitReason, Instance};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Which instances `GET /applications/{name}/instances` lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InstanceParams {
    /// The environment.
    pub environment: String,
    /// Only the instances on this cluster of the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

/// A cluster that did not answer; the answer holds what the others said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterProblem {
    /// The cluster.
    pub cluster: String,
    /// What went wrong.
    pub message: String,
}

/// The instances of an application in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    /// By cluster in the environment's order, then oldest first.
    pub items: Vec<Instance>,
    /// Clusters that did not answer (their instances are missing from `items`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ClusterProblem>,
}

/// Which log lines `GET /applications/{name}/logs` streams.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InstanceLogParams {
    /// The environment.
    pub environment: String,
    /// Only the instances on this cluster of the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Only this instance (a running one, or one that ended that Berth still keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Only lines since: a duration back from now (`90s`, `10m`, `2h`, `1d`) or an RFC
    /// 3339 instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only the last this many lines of each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(maximum = 100000)]
    pub tail: Option<u32>,
    /// Keep the stream open and send lines as they are written, also of instances that
    /// start meanwhile (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<bool>,
    /// The lines Berth kept of instances that ended (crashed, failed their health check,
    /// or were replaced after a failure) instead of the running ones (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<bool>,
}

/// Sent before the lines of an instance that ended (`event: terminated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminatedInstance {
    /// The instance.
    pub instance: String,
    /// The cluster it ran on.
    pub cluster: String,
    /// The release it ran.
    pub release: u64,
    /// Why it ended.
    pub exit: ExitReason,
}

/// Body of `POST /applications/{name}/restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartRequest {
    /// The environment whose instances restart.
    pub environment: String,
}
