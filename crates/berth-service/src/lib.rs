//! Berth's use cases, each in one place: create a release, deploy, roll back, promote,
//! release from a build, roll back automatically, delete an application.
//!
//! ```text
//!  api (HTTP) ──┐
//!  reconciler ──┼──▶ Delivery::<use case>(command)
//!  builds ──────┘        │ load   (targeted reads through the Store port)
//!                        │ decide (pure functions of berth-core; the admission chain)
//!                        │ commit (one Store::commit: documents + events + audit)
//!                        └ retry  (a lost race reloads and decides again, ATTEMPTS times,
//!                                  then Error::Busy)
//! ```
//!
//! Every use case that puts a release into an environment runs the same admission
//! [`Policy`] chain ([`admission`]). The service owns the [`Clock`]: nothing here reads
//! the system time. It depends on the core only; adapters (store, registry, runtimes)
//! come in through the core's ports.

pub mod admission;
mod commands;
mod delete;
mod deploy;
mod error;
pub mod operate;
mod reads;
mod release;
mod retry;
pub mod staged;

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{
    authz::Principal,
    image::ImageRef,
    ports::{Clock, ImageResolver, ResolveError, Store},
};

pub use admission::{Admission, Entry, Policy};
pub use commands::{
    AutoRollback, CreateRelease, DeleteApplication, Deploy, Promote, ReleaseFromBuild, ReleaseWanted,
    Rollback,
};
pub use error::{Error, Result};
pub use operate::{ClusterProblem, Instances, Logs, Operations, Previous, Target};
pub use retry::ATTEMPTS;
pub use staged::Staged;

/// Who runs a use case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user, with the roles authorization decides on.
    User(Principal),
    /// Berth itself (the reconciler, the build service): allowed what its use cases do.
    Berth,
}

impl Actor {
    /// The name recorded in events, audit entries and `requestedBy`.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::User(p) => &p.user,
            Self::Berth => "berth",
        }
    }
}

/// Told after every commit that changes what should run, so that the reconciler acts
/// at once instead of at its next tick.
pub trait Changes: Send + Sync {
    /// Something changed.
    fn changed(&self);
}

impl Changes for tokio::sync::Notify {
    fn changed(&self) {
        self.notify_one();
    }
}

/// A resolver for callers whose use cases never resolve a tag (the reconciler's
/// automatic rollback and the build service's release from a build, which know their
/// digest): every lookup fails, saying so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

#[async_trait]
impl ImageResolver for NoResolver {
    async fn resolve(&self, image: &ImageRef) -> Result<String, ResolveError> {
        Err(ResolveError::Registry {
            image: image.to_string(),
            message: "this caller of the delivery service has no registry to resolve tags with".to_owned(),
        })
    }
}

/// The use cases over the core's ports; cheap to clone (every port is shared).
#[derive(Clone)]
pub struct Delivery {
    store: Arc<dyn Store>,
    resolver: Arc<dyn ImageResolver>,
    clock: Arc<dyn Clock>,
    changes: Option<Arc<dyn Changes>>,
    /// Policies run after the built-in ones ([`admission::BUILT_IN`]).
    extra_policies: Vec<Arc<dyn Policy>>,
}

impl Delivery {
    /// The use cases over `store`, resolving tags with `resolver`, telling time by `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, resolver: Arc<dyn ImageResolver>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            resolver,
            clock,
            changes: None,
            extra_policies: Vec::new(),
        }
    }

    /// Tells `changes` after every commit that changes what should run.
    #[must_use]
    pub fn notifying(mut self, changes: Arc<dyn Changes>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Adds `policy` to the end of the admission chain.
    #[must_use]
    pub fn with_policy(mut self, policy: Arc<dyn Policy>) -> Self {
        self.extra_policies.push(policy);
        self
    }

    /// The clock every use case reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn changed(&self) {
        if let Some(c) = &self.changes {
            c.changed();
        }
    }
}
