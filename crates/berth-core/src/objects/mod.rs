//! The kinds of object Berth stores, each a declarative document.

mod application;
mod cluster;
mod deployment;
mod environment;
mod event;
mod release;

pub use application::{
    Application, ApplicationSpec, ApplicationStatus, ConfigFile, EnvironmentOverride, HealthCheck, Resources,
};
pub use cluster::{Cluster, ClusterPhase, ClusterSpec, ClusterStatus, LocalRuntime, RuntimeKind};
pub use deployment::{
    ClusterProgress, Deployment, DeploymentCause, DeploymentPhase, DeploymentSpec, DeploymentStatus,
    deployment_name,
};
pub use environment::{Environment, EnvironmentSpec, EnvironmentStatus, Placement, RolloutPolicy};
pub use event::{Event, EventType, NewEvent};
pub use release::{Release, ReleaseOrigin, ReleaseSpec, ReleaseStatus, release_name};

/// Every kind's name, in the order documents are applied (dependencies first).
pub const KINDS: [&str; 5] = ["Cluster", "Environment", "Application", "Release", "Deployment"];
