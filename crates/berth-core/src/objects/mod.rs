//! The kinds of object Berth stores, each a declarative document.

mod application;
mod build;
mod cluster;
mod credential;
mod deployment;
mod environment;
mod event;
mod release;
mod secret;
mod source;
mod sync_source;
mod team;
mod user;

pub use application::{
    Application, ApplicationKind, ApplicationSpec, ApplicationStatus, Autoscaling, ConfigFile,
    DEFAULT_DRAIN_SECONDS, DEFAULT_TERMINATION_GRACE_SECONDS, EnvironmentOverride, HealthCheck,
    MAX_DRAIN_SECONDS, MAX_TERMINATION_GRACE_SECONDS, Resources, validate_application_spec,
};
pub use build::{Build, BuildKind, BuildLayer, BuildPhase, BuildSpec, BuildStatus, build_name};
pub use cluster::{
    Cluster, ClusterKind, ClusterPhase, ClusterSpec, ClusterStatus, KubeconfigSource, KubernetesRuntime,
    LocalRuntime, RuntimeKind,
};
pub use credential::{
    ClusterCredential, ClusterCredentialKind, ClusterCredentialSpec, ClusterCredentialStatus, KubeconfigText,
    SealedKubeconfig, check_kubeconfig, describe_yaml_error, kubeconfig_fingerprint,
};
pub use deployment::{
    ClusterProgress, Deployment, DeploymentCause, DeploymentKind, DeploymentPhase, DeploymentSpec,
    DeploymentStatus, deployment_name,
};
pub use environment::{
    Environment, EnvironmentKind, EnvironmentSpec, EnvironmentStatus, Placement, Policies, RolloutPolicy,
};
pub use event::{Event, EventType, NewEvent};
pub use release::{Promotion, Release, ReleaseKind, ReleaseOrigin, ReleaseSpec, ReleaseStatus, release_name};
pub use secret::{
    Sealed, Secret, SecretInfo, SecretKind, SecretRef, SecretSpec, SecretStatus, SecretValue,
    secret_candidates, secret_object_name, secret_object_name_in, validate_secret_refs,
};
pub use source::{
    Builder, DEFAULT_JAVA_BASE, DEFAULT_REF, DEFAULT_SERVLET_BASE, DockerfileBuilder, JavaBuilder, Source,
    validate_source,
};
pub use sync_source::{
    DEFAULT_INTERVAL, DriftKind, MIN_INTERVAL, SourceChange, SourceDrift, SourceKind, SourcePhase,
    SourceSpec, SourceStatus, SyncAction, SyncError, SyncPlan, SyncSource, differing_fields, parse_interval,
    plan_sync,
};
pub use team::{DEFAULT_TEAM, Member, Quota, Role, Team, TeamKind, TeamSpec, TeamStatus};
pub use user::{BOOTSTRAP_ADMIN, User, UserKind, UserSpec, UserStatus};

/// Every kind's name, in the order documents are applied (dependencies first).
pub const KINDS: [&str; 9] = [
    "User",
    "Team",
    "Cluster",
    "Environment",
    "Application",
    "Source",
    "Build",
    "Release",
    "Deployment",
];
