//! Why a use case refused or failed. Each variant keeps what the caller needs to say
//! what is wrong, where and how to fix it; the API maps them to problem documents.

use berth_core::{
    Invalid,
    authz::Denied,
    delivery::DeliveryError,
    ports::{ResolveError, StoreError},
    promotion::PromotionError,
    quota::QuotaExceeded,
    repo::RepoError,
};

/// Errors of the use cases.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object the command names does not exist.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// A field of the command names an object that does not exist.
    #[error("{path} names {kind} '{name}', which does not exist")]
    MissingReference {
        /// The command's field, as the request names it (`environment`, `to`).
        path: String,
        /// Kind referred to.
        kind: &'static str,
        /// Name referred to.
        name: String,
    },
    /// What the use case would write is invalid.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The deploy or rollback cannot go ahead in the current state.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// A promotion refused by policy or with nothing to promote.
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    /// The image cannot be resolved to a digest.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The actor may not write where the use case writes.
    #[error(transparent)]
    Forbidden(#[from] Denied),
    /// The release does not fit the team's quota in the environment.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The release references secrets that are not set for the environment.
    #[error("{application} references secret(s) {} that are not set", .names.join(", "))]
    MissingSecrets {
        /// The application.
        application: String,
        /// The secrets missing.
        names: Vec<String>,
    },
    /// Deleting the application would stop it in production, and the delete is not forced.
    #[error(
        "Application '{application}' runs in production environment(s) {} (it runs in {}); deleting it stops it there",
        .production.join(", "), .running.join(", ")
    )]
    RunsInProduction {
        /// The application.
        application: String,
        /// The production environments it runs in.
        production: Vec<String>,
        /// Every environment it runs in.
        running: Vec<String>,
    },
    /// A policy added to the admission chain refused the release.
    #[error("{message}")]
    Refused {
        /// The policy's name.
        policy: &'static str,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A finished build cannot become a release (the application was deleted during the
    /// build, or the pinned template is invalid); the build fails with this message.
    #[error("{message}")]
    Unreleasable {
        /// The build.
        build: String,
        /// Why, for the build's status.
        message: String,
    },
    /// Concurrent changes kept taking the numbers the use case chose, [`crate::ATTEMPTS`]
    /// times in a row; nothing was changed.
    #[error("other changes to {application} kept racing with the request")]
    Busy {
        /// The application.
        application: String,
    },
    /// A cluster the read needs did not answer.
    #[error("cluster {cluster} cannot be reached: {message}")]
    ClusterUnreachable {
        /// The cluster.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// The cluster asked for is not one of the environment's.
    #[error("cluster '{cluster}' is not one of the clusters of environment {environment} ({})", .clusters.join(", "))]
    NotInEnvironment {
        /// The cluster asked for.
        cluster: String,
        /// The environment.
        environment: String,
        /// The environment's clusters.
        clusters: Vec<String>,
    },
    /// No cluster has the instance asked for.
    #[error("there is no instance {instance}")]
    NoInstance {
        /// The instance asked for.
        instance: String,
    },
    /// No instance (or not the one asked for) ended, or Berth no longer keeps it.
    #[error(
        "no instance of {application} in {environment}{} has ended since Berth started keeping them",
        .instance.as_ref().map(|i| format!(" named {i}")).unwrap_or_default()
    )]
    NothingTerminated {
        /// The application.
        application: String,
        /// The environment.
        environment: String,
        /// The instance asked for.
        instance: Option<String>,
    },
    /// Nothing of the application is deployed in the environment.
    #[error("{application} is not deployed in {environment}")]
    NotRunning {
        /// The application.
        application: String,
        /// The environment.
        environment: String,
    },
    /// The environment's rollout has not finished.
    #[error("deployment {deployment} is still rolling out")]
    RolloutInProgress {
        /// The deployment.
        deployment: String,
    },
    /// The store failed or refused the commit.
    #[error(transparent)]
    Store(StoreError),
    /// A stored document is unreadable.
    #[error(transparent)]
    Corrupt(RepoError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<RepoError> for Error {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Store(e) => Self::Store(e),
            e @ RepoError::Corrupt { .. } => Self::Corrupt(e),
        }
    }
}

impl Error {
    /// How to resolve a [`Error::RunsInProduction`], [`Error::Busy`] or
    /// [`Error::Refused`], for the caller's answer; `None` for the others (their own types
    /// carry hints).
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::RunsInProduction { application, .. } => Some(format!(
                "to take it out of production and delete it anyway, someone with release rights there \
                 deletes with ?force=true (berth delete application {application} --force); its releases, \
                 deployments, builds and events stay readable"
            )),
            Self::Busy { .. } => Some("retry the request".to_owned()),
            Self::Refused { hint, .. } => Some(hint.clone()),
            Self::ClusterUnreachable { cluster, .. } => Some(format!(
                "see `berth get cluster {cluster}` for its health; leave it out with --cluster naming another"
            )),
            Self::NotInEnvironment { clusters, .. } => {
                Some(format!("name one of: {}", clusters.join(", ")))
            }
            Self::NoInstance { .. } => Some(
                "list the instances with `berth instances APP --env ENV`; ended ones with `berth logs APP --env ENV --previous`"
                    .to_owned(),
            ),
            Self::NothingTerminated { .. } => Some(format!(
                "Berth keeps the last lines of the last {} instances that ended per application and environment;                  read the running ones without --previous",
                berth_core::instance::KEEP_INSTANCES
            )),
            Self::NotRunning { application, environment } => {
                Some(format!("deploy it first: berth deploy {application} --env {environment}"))
            }
            Self::RolloutInProgress { .. } => {
                Some("wait for the rollout to finish (berth status), then restart".to_owned())
            }
            _ => None,
        }
    }
}

/// Result of a use case.
pub type Result<T, E = Error> = std::result::Result<T, E>;
