//! Cluster: a place that runs workloads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
};

/// The Cluster kind.
#[derive(Debug, Clone, Copy)]
pub struct ClusterKind;

/// A cluster document.
pub type Cluster = Resource<ClusterKind>;

/// Which runtime drives the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers through the Docker Engine API (Podman or Docker) on one machine.
    #[default]
    Local,
}

/// Settings of a local cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRuntime {
    /// Docker Engine API endpoint, e.g. `unix:///run/podman/podman.sock`; the server's
    /// `DOCKER_HOST` (or the platform default) when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Desired state of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// The runtime that drives this cluster.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// The datacenter the cluster is in; rollouts move datacenter by datacenter.
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// Settings for `runtime: local`.
    #[serde(default)]
    pub local: LocalRuntime,
}

fn default_datacenter() -> String {
    "default".to_owned()
}

/// Health of a cluster as Berth last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ClusterPhase {
    /// Not contacted yet.
    #[default]
    Unknown,
    /// The runtime answers.
    Ready,
    /// The runtime does not answer; Berth retries with backoff.
    Unreachable,
}

/// Observed state of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Health.
    #[serde(default)]
    pub phase: ClusterPhase,
    /// What the runtime said when it was last contacted, or why it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Version reported by the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Failed contacts in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
}

impl Kind for ClusterKind {
    const KIND: &'static str = "Cluster";
    const PLURAL: &'static str = "clusters";
    type Spec = ClusterSpec;
    type Status = ClusterStatus;

    fn validate_spec(spec: &ClusterSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.datacenter", &spec.datacenter));
        if let Some(endpoint) = &spec.local.endpoint
            && !["unix://", "tcp://", "http://"]
                .iter()
                .any(|p| endpoint.starts_with(p))
        {
            errors.push(
                FieldError::new(
                    "spec.local.endpoint",
                    format!("'{endpoint}' is not a Docker Engine API endpoint"),
                )
                .hint("use unix:///path/to/socket, tcp://host:port or http://host:port"),
            );
        }
    }
}
