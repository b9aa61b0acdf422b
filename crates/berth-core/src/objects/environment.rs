//! Environment: a stage of delivery (qa, staging, production) spanning clusters.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
};

/// The Environment kind.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentKind;

/// An environment document.
pub type Environment = Resource<EnvironmentKind>;

/// One cluster an environment runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Name of a Cluster.
    pub cluster: String,
    /// Relative share of traffic (reserved for weighted routing; 1 by default).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// How deployments to this environment behave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutPolicy {
    /// A rollout that is not complete after this many seconds fails.
    #[serde(default = "default_deadline")]
    pub progress_deadline_seconds: u32,
    /// On failure, go back to the release that ran before (default on).
    #[serde(default = "yes")]
    pub auto_rollback: bool,
    /// On Kubernetes, take over fields that another field manager owns when applying
    /// (server-side apply with force). Off by default: such conflicts are reported and
    /// left alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_conflicts: bool,
}

fn default_deadline() -> u32 {
    120
}
fn yes() -> bool {
    true
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            progress_deadline_seconds: default_deadline(),
            auto_rollback: true,
            force_conflicts: false,
        }
    }
}

/// Desired state of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Position in the delivery order (qa before production).
    #[serde(default)]
    pub order: u32,
    /// The clusters applications of this environment run on.
    pub clusters: Vec<Placement>,
    /// Rollout behaviour.
    #[serde(default)]
    pub rollout: RolloutPolicy,
    /// Rules every deploy to this environment must pass.
    #[serde(default, skip_serializing_if = "crate::meta::is_default")]
    pub policies: Policies,
    /// A production environment: deploying, promoting or rolling back here needs the
    /// releaser role.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub production: bool,
}

/// Rules every deploy to an environment must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policies {
    /// Environments an image digest must have run in successfully before it may be
    /// deployed or promoted here, e.g. `[qa]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_verified_in: Vec<String>,
}

/// Observed state of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {}

impl Kind for EnvironmentKind {
    const KIND: &'static str = "Environment";
    const PLURAL: &'static str = "environments";
    type Spec = EnvironmentSpec;
    type Status = EnvironmentStatus;

    fn validate_spec(spec: &EnvironmentSpec, errors: &mut Errors) {
        if spec.clusters.is_empty() {
            errors.push(
                FieldError::new("spec.clusters", "an environment needs at least one cluster")
                    .hint("add `- cluster: <name>` naming a Cluster"),
            );
        }
        for (i, p) in spec.clusters.iter().enumerate() {
            errors.check(name::check_label(
                &format!("spec.clusters[{i}].cluster"),
                &p.cluster,
            ));
            if spec.clusters[..i].iter().any(|q| q.cluster == p.cluster) {
                errors.push(FieldError::new(
                    format!("spec.clusters[{i}].cluster"),
                    format!("'{}' is listed twice", p.cluster),
                ));
            }
            if p.weight == 0 {
                errors.push(FieldError::new(
                    format!("spec.clusters[{i}].weight"),
                    "must be at least 1",
                ));
            }
        }
        for (i, env) in spec.policies.require_verified_in.iter().enumerate() {
            errors.check(name::check_label(
                &format!("spec.policies.requireVerifiedIn[{i}]"),
                env,
            ));
        }
        if !(10..=86_400).contains(&spec.rollout.progress_deadline_seconds) {
            errors.push(
                FieldError::new(
                    "spec.rollout.progressDeadlineSeconds",
                    "must be between 10 and 86400",
                )
                .hint("give a rollout at least 10 seconds to become healthy"),
            );
        }
    }
}
