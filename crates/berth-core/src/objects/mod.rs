//! The kinds of object Berth stores, each a declarative document.

mod application;
mod cluster;
mod deployment;
mod environment;
mod event;
mod release;
mod source;
mod build;

pub use application::{
    Application, ApplicationKind, ApplicationSpec, ApplicationStatus, Autoscaling, ConfigFile, EnvironmentOverride,
    HealthCheck, Resources, validate_application_spec,
};
pub use cluster::{
    Cluster, ClusterKind, ClusterPhase, ClusterSpec, ClusterStatus, LocalRuntime, RuntimeKind,
};
pub use deployment::{
    ClusterProgress, Deployment, DeploymentCause, DeploymentKind, DeploymentPhase, DeploymentSpec,
    DeploymentStatus, deployment_name,
};
pub use environment::{
    Environment, EnvironmentKind, EnvironmentSpec, EnvironmentStatus, Placement, Policies, RolloutPolicy,
};
pub use event::{Event, EventType, NewEvent};
pub use release::{
    Promotion, Release, ReleaseKind, ReleaseOrigin, ReleaseSpec, ReleaseStatus, release_name,
};
pub use source::{
    Builder, DEFAULT_JAVA_BASE, DEFAULT_REF, DockerfileBuilder, JavaBuilder, Source, validate_source,
};
pub use build::{Build, BuildKind, BuildLayer, BuildPhase, BuildSpec, BuildStatus, build_name};

/// Every kind's name, in the order documents are applied (dependencies first).
pub const KINDS: [&str; 6] = [
    "Cluster",
    "Environment",
    "Application",
    "Build",
    "Release",
    "Deployment",
];
