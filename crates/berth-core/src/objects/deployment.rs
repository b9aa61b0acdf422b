//! Deployment: the intent "release R of application A runs in environment E", and how far
//! that intent has come on each cluster.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
};

/// The Deployment kind.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentKind;

/// A deployment document. Its name is `<application>-<environment>-<number>`.
pub type Deployment = Resource<DeploymentKind>;

/// Why a deployment was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum DeploymentCause {
    /// Someone asked for this release.
    #[default]
    Deploy,
    /// Someone rolled back from `fromRelease`.
    #[serde(rename_all = "camelCase")]
    Rollback {
        /// The release that ran before.
        from_release: u64,
    },
    /// Berth rolled back after deployment `failedDeployment` failed.
    #[serde(rename_all = "camelCase")]
    AutoRollback {
        /// The deployment that failed.
        failed_deployment: String,
    },
}

/// The intent of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// The application deployed.
    pub application: String,
    /// The environment deployed to.
    pub environment: String,
    /// The release number deployed.
    pub release: u64,
    /// Number of this deployment, counting from 1 per application and environment.
    pub number: u64,
    /// Why it was made.
    #[serde(default)]
    pub cause: DeploymentCause,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Where a deployment stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum DeploymentPhase {
    /// Recorded; no cluster has acted on it yet.
    #[default]
    Pending,
    /// Replicas of the release are starting.
    Progressing,
    /// Every cluster runs the desired replicas of the release, healthy.
    Succeeded,
    /// It did not become healthy in time; the release before it keeps serving.
    Failed,
    /// A newer deployment took its place before it finished.
    Superseded,
}

impl DeploymentPhase {
    /// Every phase, in the order a deployment goes through them.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Progressing,
        Self::Succeeded,
        Self::Failed,
        Self::Superseded,
    ];

    /// The phase as written in documents (`Pending`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Progressing => "Progressing",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Superseded => "Superseded",
        }
    }

    /// Whether the deployment can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Superseded)
    }
}

/// Progress on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProgress {
    /// The cluster.
    pub cluster: String,
    /// Its datacenter.
    pub datacenter: String,
    /// Replicas wanted.
    pub desired: u32,
    /// Replicas of the release that exist.
    pub updated: u32,
    /// Replicas of the release that pass their health check.
    pub ready: u32,
    /// Replicas of other releases still running.
    pub old: u32,
    /// Why the cluster is not progressing, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ClusterProgress {
    /// Whether this cluster has finished: the desired replicas of the release are ready
    /// and nothing else runs.
    pub fn is_complete(&self) -> bool {
        self.ready >= self.desired && self.updated == self.desired && self.old == 0
    }
}

/// Observed state of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// Where it stands.
    #[serde(default)]
    pub phase: DeploymentPhase,
    /// A sentence on the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Progress per cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterProgress>,
    /// The release that served before this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_release: Option<u64>,
    /// When the rollout began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// When its application was deleted: the deployment is kept as history, but no
    /// longer decides what runs (nothing of the application runs any more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// When its instances were last asked to restart (`berth restart`): a rolling
    /// replacement of every instance by a new one of the same release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<DateTime<Utc>>,
}

/// The name of deployment `number` of `application` to `environment`.
#[must_use]
pub fn deployment_name(application: &str, environment: &str, number: u64) -> String {
    format!("{application}-{environment}-{number}")
}

impl Kind for DeploymentKind {
    const KIND: &'static str = "Deployment";
    const PLURAL: &'static str = "deployments";
    const MAX_NAME: usize = 253;
    type Spec = DeploymentSpec;
    type Status = DeploymentStatus;

    fn validate_spec(spec: &DeploymentSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.application", &spec.application));
        errors.check(name::check_label("spec.environment", &spec.environment));
        if spec.release == 0 {
            errors.push(FieldError::new("spec.release", "release numbers start at 1"));
        }
        if spec.number == 0 {
            errors.push(FieldError::new("spec.number", "deployment numbers start at 1"));
        }
    }

    fn owner(spec: &DeploymentSpec) -> Option<&str> {
        Some(&spec.application)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` is what documents hold: metrics and store queries compare with it.
    #[test]
    fn phase_names_are_the_serialized_ones() {
        for phase in DeploymentPhase::ALL {
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::Value::from(phase.as_str())
            );
        }
    }
}
