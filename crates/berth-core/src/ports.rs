//! The edges of the core: traits that adapter crates implement.
//!
//! - [`Store`]: objects and the append-only event log (berth-store: SQLite).
//! - [`ClusterRuntime`]: makes one cluster run the rendered workloads (berth-runtime-local).
//! - [`ImageResolver`]: turns an image tag into its digest (berth-registry).
//! - [`Builds`]: builds images from sources, once per commit and builder (berth-build).
//! - [`Clock`]: the time, so that deadlines can be tested.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    audit::{AuditEntry, AuditQuery, Change, Checkpoint, Verification},
    error::Invalid,
    image::ImageRef,
    instance::{Instance, LogLine, LogQuery, Terminated},
    objects::{Build, DeploymentPhase, Event, NewEvent},
    render::{Workload, WorkloadKey},
    rollout::Counts,
};

// === Store ===

/// One write inside a [`Store::commit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create `kind/name`; fails with [`StoreError::AlreadyExists`] if it exists.
    Create {
        /// Kind, e.g. `Application`.
        kind: String,
        /// Name.
        name: String,
        /// The owning object's name (an application), for listing children.
        owner: Option<String>,
        /// The whole document.
        document: Value,
    },
    /// Replace the document of `kind/name`, which must exist.
    Replace {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// The whole new document.
        document: Value,
        /// Only replace this version; [`StoreError::Conflict`] otherwise.
        expected_version: Option<u64>,
    },
    /// Delete `kind/name`, which must exist.
    Delete {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Only delete this version; [`StoreError::Conflict`] otherwise.
        expected_version: Option<u64>,
    },
}

/// The outcome of a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The store revision the commit created; every written object carries it as its
    /// `metadata.resourceVersion`.
    pub revision: u64,
    /// Per write, the document as stored (`None` for a delete).
    pub documents: Vec<Option<Value>>,
    /// The events recorded, with their positions.
    pub events: Vec<Event>,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Kind.
    pub kind: String,
    /// Only children of this owner.
    pub owner: Option<String>,
    /// Continue after this cursor (from [`Page::next`]).
    pub after: Option<u64>,
    /// At most this many items.
    pub limit: u32,
}

/// One page of a list, in creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The documents.
    pub items: Vec<Value>,
    /// Cursor for the next page, when there is one.
    pub next: Option<u64>,
}

/// Deployments of one application in one environment, newest first (by `spec.number`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentQuery {
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
    /// Continue with deployments numbered below this cursor (from [`Page::next`], which
    /// here is the number of the last deployment of the page).
    pub before: Option<u64>,
    /// At most this many items.
    pub limit: u32,
}

/// Governing deployments (one per application and environment at most), in creation
/// order of the deployments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoverningQuery {
    /// Only those of this application.
    pub application: Option<String>,
    /// Continue after this cursor (from [`Page::next`]).
    pub after: Option<u64>,
    /// At most this many items.
    pub limit: u32,
}

/// Applications of one team, in creation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamQuery {
    /// The team (`spec.team`).
    pub team: String,
    /// Continue after this cursor (from [`Page::next`]).
    pub after: Option<u64>,
    /// At most this many items.
    pub limit: u32,
}

/// Which events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events after this position.
    pub after: u64,
    /// At most this many.
    pub limit: u32,
    /// Only events about this application.
    pub application: Option<String>,
}

/// An API token as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public identifier: shown in lists, used to revoke; never the secret.
    pub id: String,
    /// Human name of the token.
    pub name: String,
    /// Who it authenticates.
    pub subject: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// From this instant on the token no longer authenticates.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token never authenticates again.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Whether the token authenticates at `now`.
    #[must_use]
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// Errors of a store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// The object exists already.
    #[error("{kind} '{name}' already exists")]
    AlreadyExists {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// The object changed since the version the caller had.
    #[error("{kind} '{name}' is at resourceVersion {actual}, not {expected}")]
    Conflict {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Version the caller expected.
        expected: u64,
        /// Version stored.
        actual: u64,
    },
    /// The database failed.
    #[error("store backend error: {message}")]
    Backend {
        /// What the database said.
        message: String,
    },
}

/// Objects and events, with every mutation, its events and its audit entries in one
/// transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies `writes` and appends `events` atomically: all or nothing. Every write is
    /// recorded in the audit log as made by `change`.
    async fn commit_as(
        &self,
        change: &Change,
        writes: Vec<Write>,
        events: Vec<NewEvent>,
    ) -> Result<Commit, StoreError>;
    /// [`Store::commit_as`] by the actor of the first event (for the reconciler:
    /// `berth`), whose reason names the action.
    async fn commit(&self, writes: Vec<Write>, events: Vec<NewEvent>) -> Result<Commit, StoreError> {
        let change = events.first().map_or_else(
            || Change::new("berth", "commit"),
            |e| Change::new(&e.actor, &e.reason),
        );
        self.commit_as(&change, writes, events).await
    }
    /// Reads one document.
    async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, StoreError>;
    /// Lists documents of a kind in creation order.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    // --- Targeted queries: each answers from an index, never by listing a kind. ---

    /// The deployment that governs `application` in `environment`: the one with the
    /// highest `spec.number` that is not `Failed` and not retired (as
    /// [`crate::deployment::governing`] decides over all of them).
    async fn governing_deployment(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Option<Value>, StoreError>;
    /// The newest deployment of `application` in `environment` that `Succeeded` and was
    /// not retired (as [`crate::deployment::last_succeeded`]).
    async fn last_succeeded_deployment(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Option<Value>, StoreError>;
    /// Deployments of one application in one environment, newest first, retired and
    /// failed ones included.
    async fn deployments(&self, query: &DeploymentQuery) -> Result<Page, StoreError>;
    /// Every governing deployment (of one application, when asked), one per application
    /// and environment, in creation order: what a reconciler loads at start.
    async fn governing_deployments(&self, query: &GoverningQuery) -> Result<Page, StoreError>;
    /// How many governing deployments (those [`Store::governing_deployments`] lists) are
    /// in each phase; a phase none is in is absent, a document without a phase counts as
    /// [`DeploymentPhase::Pending`]. What `/metrics` reports, without reading every
    /// document.
    async fn governing_deployments_by_phase(&self) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError>;
    /// Every deployment of `application` (any environment, any phase) that deployed one of
    /// `releases`, by release number, then in creation order. With the releases of one
    /// template or digest, this is what `requireVerifiedIn`
    /// ([`crate::promotion::check_verified`]) needs to know.
    async fn deployments_of_releases(
        &self,
        application: &str,
        releases: &[u64],
    ) -> Result<Vec<Value>, StoreError>;
    /// The release of `application` with the highest number.
    async fn newest_release(&self, application: &str) -> Result<Option<Value>, StoreError>;
    /// The newest release of `application` that a build made (a build and no promotion in
    /// its origin), as [`crate::delivery::choose_release`] reuses for a built application.
    async fn newest_built_release(&self, application: &str) -> Result<Option<Value>, StoreError>;
    /// Releases of `application` whose image is pinned to `digest` (`sha256:…`), newest
    /// first: the lineage of an image ([`crate::promotion::lineage`]).
    async fn releases_with_digest(&self, application: &str, digest: &str) -> Result<Vec<Value>, StoreError>;
    /// Releases of `application` with template hash `template_hash`
    /// ([`crate::template::template_hash`], computed for releases that did not record it),
    /// newest first.
    async fn releases_with_template(
        &self,
        application: &str,
        template_hash: &str,
    ) -> Result<Vec<Value>, StoreError>;
    /// The releases that the governing deployments in `environment` of the applications
    /// of `team` (their current `spec.team`) run, one per application, in the
    /// applications' creation order: what the team uses there
    /// ([`crate::quota::Demand::of`] of each template).
    async fn team_releases_in(&self, team: &str, environment: &str) -> Result<Vec<Value>, StoreError>;
    /// Applications whose `spec.team` is the query's team.
    async fn team_applications(&self, query: &TeamQuery) -> Result<Page, StoreError>;
    /// The build of `application` that stands for (`revision`, `builder_hash`): the
    /// newest one that did not fail, as [`crate::build::reusable`] decides. The revision
    /// is the commit built, or for the `image` builder the digest it resolved.
    async fn reusable_build(
        &self,
        application: &str,
        revision: &str,
        builder_hash: &str,
    ) -> Result<Option<Value>, StoreError>;
    /// Builds of every application that are not finished (`Pending` or `Running`), in
    /// creation order, a page after cursor `after`: what a restart marks failed.
    async fn unfinished_builds(&self, after: Option<u64>, limit: u32) -> Result<Page, StoreError>;
    /// The number the next release of `application` gets: one more than any release of it
    /// ever stored, deleted or not (numbers are never reused).
    async fn next_release_number(&self, application: &str) -> Result<u64, StoreError>;
    /// The number the next build of `application` gets, as [`Store::next_release_number`].
    async fn next_build_number(&self, application: &str) -> Result<u64, StoreError>;
    /// The number the next deployment of `application` to `environment` gets, as
    /// [`Store::next_release_number`].
    async fn next_deployment_number(&self, application: &str, environment: &str) -> Result<u64, StoreError>;
    /// Reads events in log order.
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;
    /// Position of the newest event (0 when there is none).
    async fn last_event(&self) -> Result<u64, StoreError>;
    /// Returns once an event after `after` exists, or when `timeout` passes.
    async fn wait_for_events(&self, after: u64, timeout: Duration);
    /// Stores a token record (replacing one of the same hash), audited as `change`.
    async fn put_token(&self, token: TokenRecord, change: &Change) -> Result<(), StoreError>;
    /// Finds a token by the hash of its secret.
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// A number that changes once every write this store makes has ended (committed or
    /// not): objects, events, tokens. A caller may keep what it read while the number is
    /// the one it saw *before* reading, and must read again once it changed. `None` (the
    /// default): the store does not count, and nothing read from it may be kept.
    fn generation(&self) -> Option<u64> {
        None
    }
    /// How many tokens exist.
    async fn count_tokens(&self) -> Result<u64, StoreError>;
    /// Every token (of `subject`, when given), oldest first.
    async fn list_tokens(&self, subject: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes the token with public id `id` at `at`, audited as `change`; returns it as
    /// stored now. A token revoked before keeps its first revocation time.
    async fn revoke_token(
        &self,
        id: &str,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<TokenRecord, StoreError>;
    /// Reads audit entries in log order.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Verifies the whole audit log as of one instant: every entry's signature and link,
    /// the head in the database, the checkpoint kept outside it and `given` (one an
    /// operator kept), and every stored object and token against its latest entry.
    async fn verify_audit(&self, given: Option<&Checkpoint>) -> Result<Verification, StoreError>;
    /// Whether a write can be made now (for readiness): cheap while writes work; an
    /// adapter may probe with a small write while they fail.
    async fn writable(&self) -> Result<(), StoreError>;
}

// === Runtime ===

/// How one workload stands on a cluster after a reconcile pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadReport {
    /// Application and environment.
    pub key: WorkloadKey,
    /// Replica counts against the desired shape.
    pub counts: Counts,
    /// Why it is not progressing, when something is wrong (e.g. an image that will not pull).
    pub message: Option<String>,
    /// The runtime itself gave up on the rollout (Kubernetes reports
    /// `ProgressDeadlineExceeded`): the deployment fails now, without waiting for Berth's
    /// own deadline.
    pub stalled: bool,
}

/// Something a runtime did or saw that people should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Application and environment.
    pub key: WorkloadKey,
    /// A warning (a failure or a correction) rather than routine.
    pub warning: bool,
    /// CamelCase reason, e.g. `ReplicaReplaced`, `DriftCorrected`.
    pub reason: String,
    /// A sentence.
    pub message: String,
}

/// The result of one reconcile pass on a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterReport {
    /// One report per desired workload.
    pub workloads: Vec<WorkloadReport>,
    /// What happened during the pass.
    pub notices: Vec<Notice>,
}

/// Errors of a cluster runtime.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime's API cannot be reached.
    #[error("runtime unreachable: {message}")]
    Unreachable {
        /// What failed.
        message: String,
    },
    /// The runtime answered with an error.
    #[error("runtime error: {message}")]
    Failed {
        /// What it said.
        message: String,
    },
    /// The runtime cannot do this.
    #[error("this runtime does not support {what}")]
    Unsupported {
        /// What was asked.
        what: String,
    },
    /// No such instance.
    #[error("there is no instance {instance}")]
    NoInstance {
        /// The name asked for.
        instance: String,
    },
}

impl RuntimeError {
    /// The runtime cannot do `what`.
    #[must_use]
    pub fn unsupported(what: &str) -> Self {
        Self::Unsupported {
            what: what.to_owned(),
        }
    }
}

/// What changed on a cluster since its runtime was last asked (see
/// [`ClusterRuntime::changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RuntimeChanges {
    /// Nothing the reconciler needs to act on.
    #[default]
    None,
    /// The workloads of these keys changed (a watch event, a replica that died).
    Keys(Vec<WorkloadKey>),
    /// The runtime cannot tell which: pass over the whole cluster.
    All,
    /// A watch of the cluster failed; the runtime lists again by itself. These keys
    /// changed before it did. Whether the cluster is still there is worth a look; a full
    /// pass is not (it would list everything the relist lists anyway).
    WatchFailed(Vec<WorkloadKey>),
}

/// Drives one cluster toward a set of workloads.
///
/// The reconciler calls [`reconcile`](Self::reconcile) with everything the cluster should
/// run when it connects, after the cluster was unreachable, and every
/// [`full_resync_period`](Self::full_resync_period); in between it hands over only the
/// keys that changed, through [`apply`](Self::apply).
#[async_trait]
pub trait ClusterRuntime: Send + Sync {
    /// Checks the runtime answers, returning its version.
    async fn version(&self) -> Result<String, RuntimeError>;
    /// One level-triggered pass over the whole cluster: compare `desired` with what runs,
    /// act, report. Anything Berth runs on this cluster that is not in `desired` is
    /// removed.
    async fn reconcile(&self, desired: &[Workload]) -> Result<ClusterReport, RuntimeError>;
    /// Per-key work: makes the cluster run `desired` for `keys` and nothing else for
    /// them (a key of `keys` without a workload in `desired` is removed from the
    /// cluster), leaving every other key alone; reports the keys of `desired` only.
    /// Called only after a [`reconcile`](Self::reconcile) on the same runtime succeeded.
    async fn apply(&self, keys: &[WorkloadKey], desired: &[Workload]) -> Result<ClusterReport, RuntimeError>;
    /// What changed on the cluster since the last call, asked when the connection's
    /// `changed` notification fires. By default the runtime cannot tell which keys.
    fn changes(&self) -> RuntimeChanges {
        RuntimeChanges::All
    }
    /// Longest time between two full passes ([`reconcile`](Self::reconcile)); a full
    /// pass catches what no change reported (drift, a lost watch).
    fn full_resync_period(&self) -> Duration {
        Duration::from_secs(600)
    }
    /// The instances of `key` on this cluster, oldest first.
    async fn instances(&self, key: &WorkloadKey) -> Result<Vec<Instance>, RuntimeError> {
        let _ = key;
        Err(RuntimeError::unsupported("listing instances"))
    }
    /// The log lines of the instances of `key` that `query` asks for, in time order per
    /// instance; with [`LogQuery::follow`] the feed stays open, adding instances as they
    /// start, until it is dropped. Errors once the feed runs end it.
    async fn logs(&self, key: &WorkloadKey, query: &LogQuery) -> Result<LogFeed, RuntimeError> {
        let _ = (key, query);
        Err(RuntimeError::unsupported("reading logs"))
    }
    /// The instances of `key` that ended on this cluster and what Berth kept of them
    /// (bounded: [`crate::instance::KEEP_INSTANCES`]), oldest first.
    async fn terminated(&self, key: &WorkloadKey) -> Result<Vec<Terminated>, RuntimeError> {
        let _ = key;
        Err(RuntimeError::unsupported("reading terminated instances"))
    }
}

/// Log lines as a runtime delivers them.
pub type LogFeed = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<LogLine, RuntimeError>> + Send>>;

/// The runtimes of the clusters, by name, for reads and commands that reach one cluster
/// (instances, logs) outside the reconcile loop.
#[async_trait]
pub trait ClusterAccess: Send + Sync {
    /// The runtime of `cluster`, connected the way the reconciler connects it.
    async fn runtime(&self, cluster: &str) -> Result<std::sync::Arc<dyn ClusterRuntime>, RuntimeError>;
}

/// A [`ClusterAccess`] with no clusters: every call says so.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClusterAccess;

#[async_trait]
impl ClusterAccess for NoClusterAccess {
    async fn runtime(&self, cluster: &str) -> Result<std::sync::Arc<dyn ClusterRuntime>, RuntimeError> {
        Err(RuntimeError::Unreachable {
            message: format!(
                "this server does not connect to clusters, so cluster {cluster} cannot be reached"
            ),
        })
    }
}

// === Registry ===

/// Errors resolving an image.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// The registry has no such repository or tag.
    #[error("image {image} was not found in its registry")]
    NotFound {
        /// The reference.
        image: String,
    },
    /// The registry could not be reached or failed.
    #[error("registry for {image} failed: {message}")]
    Registry {
        /// The reference.
        image: String,
        /// What went wrong.
        message: String,
    },
}

/// Resolves tags to digests through the registry.
#[async_trait]
pub trait ImageResolver: Send + Sync {
    /// The digest (`sha256:…`) the reference points to now.
    async fn resolve(&self, image: &ImageRef) -> Result<String, ResolveError>;
}

// === Builds ===

/// A request to build an application's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The application.
    pub application: String,
    /// The branch, tag or commit; the application's `source.ref` when `None`.
    pub git_ref: Option<String>,
    /// Who asks.
    pub requested_by: String,
}

/// The answer to a build request.
#[derive(Debug, Clone)]
pub struct BuildTicket {
    /// The build that stands for the request.
    pub build: Build,
    /// Whether it is an earlier build of the same commit and builder (finished or still
    /// running) rather than a new one.
    pub reused: bool,
}

/// A piece of a build's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogChunk {
    /// The text from the offset asked for.
    pub text: String,
    /// The offset after `text`: ask from here next.
    pub next: u64,
    /// Whether the build has ended (nothing will be added).
    pub finished: bool,
}

/// Errors of the build service.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No such application or build.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The application cannot be built as it is.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds images from sources: each (commit, builder configuration) at most once.
#[async_trait]
pub trait Builds: Send + Sync {
    /// Starts a build of the application (or joins/reuses the one of the same key) and
    /// returns it at once; the work goes on in the background.
    async fn request(&self, request: BuildRequest) -> Result<BuildTicket, BuildError>;
    /// The log of build `name` from byte `offset`.
    async fn log(&self, name: &str, offset: u64) -> Result<LogChunk, BuildError>;
    /// Returns once the log of `name` grows past `offset` or the build ends, or when
    /// `timeout` passes.
    async fn wait_log(&self, name: &str, offset: u64, timeout: Duration);
}

// === Clock ===

/// The time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
