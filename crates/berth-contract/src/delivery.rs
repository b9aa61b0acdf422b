//! Releases, deploys, rollbacks, promotions and where an application stands.

use berth_core::objects::{ClusterProgress, DeploymentPhase};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Body of `POST /applications/{app}/releases`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Image for the release; the application's image when left out. A tag is resolved
    /// to its digest now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Why the release is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Body of `POST /applications/{app}/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The environment to deploy to.
    pub environment: String,
    /// An existing release number. Without it (and without `image`), the application's
    /// current spec is deployed: its newest release if that matches, else a new release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// Deploy a new release of the current spec with this image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Body of `POST /applications/{app}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The environment to roll back.
    pub environment: String,
    /// The release to go back to; the newest other release that ran successfully there
    /// when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// Body of `POST /applications/{name}/promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The environment whose running release is promoted.
    pub from: String,
    /// The environment it is promoted to.
    pub to: String,
}

/// Which environment's provenance.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProvenanceParams {
    /// The environment.
    pub environment: String,
}

/// Summary of the deployment that governs an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentSummary {
    /// Deployment name.
    pub name: String,
    /// Phase.
    pub phase: DeploymentPhase,
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An application in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentState {
    /// The environment.
    pub environment: String,
    /// The release that should run there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// Its image, by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The deployment that put it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentSummary>,
    /// Replicas per cluster.
    #[serde(default)]
    #[schema(required = true)]
    pub clusters: Vec<ClusterProgress>,
    /// Where it answers.
    #[serde(default)]
    #[schema(required = true)]
    pub urls: Vec<String>,
}

/// Status of an application across environments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplicationState {
    /// The application.
    pub application: String,
    /// Per environment it was deployed to.
    #[serde(default)]
    #[schema(required = true)]
    pub environments: Vec<EnvironmentState>,
}
