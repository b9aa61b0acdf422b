//! A fake Kubernetes API server for tests, over real HTTP on `127.0.0.1:0`, so that the
//! real kube-rs client (and anything built on it) runs against it unchanged.
//!
//! ```text
//!  kube::Client ──HTTP──▶ server (routing, auth, faults, request counts)
//!                              │
//!                              ▼
//!                          store (objects as JSON, resourceVersion, managedFields,
//!                              │   watch history)            ▲ status
//!                              └── spec changes ──▶ rollout simulation (Deployments)
//! ```
//!
//! What it speaks: discovery (`/api`, `/apis`, `/version`, `/readyz`), create / get /
//! list / replace / delete, JSON merge, JSON and (approximated) strategic merge patches,
//! server-side apply with field ownership and conflicts between managers, label and
//! field selectors, pagination, watch with resource versions and bookmarks (410 when a
//! version is too old), 409 on a stale `resourceVersion`, and the status subresource.
//! Pods are derived from the simulated Deployments, and so are the kubelet's `Unhealthy`
//! events about their failing probes (listed with the events clients wrote, selectable
//! by `involvedObject.name`, `reason` and the other fields the API server selects events
//! by; not watched). Tests inject API failures
//! ([`Fault`]) and rollout failures ([`RolloutFailure`]) and count requests
//! ([`RequestCounts`]), e.g. to prove a steady-state pass writes nothing.
//!
//! What it does not do: admission, validation against schemas, garbage collection by
//! owner references, real scheduling. It is a test double, not a cluster.

pub mod fields;
pub mod resources;
pub mod rollout;
pub mod selector;
mod server;
pub mod store;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use rollout::{RolloutFailure, RolloutRule, RolloutSettings};
use serde_json::Value;
pub use store::{ApiError, PatchType};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};

use crate::store::Store;

/// How a fake cluster behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// A bearer token every request must carry; `None` accepts any request.
    pub token: Option<String>,
    /// How long healthy pods of a new rollout take to become ready.
    pub ready_after: Duration,
    /// Overrides `progressDeadlineSeconds` of every Deployment.
    pub progress_deadline: Option<Duration>,
    /// How often watches get a bookmark.
    pub bookmark_interval: Duration,
    /// How many changes are kept for watches that resume from a resource version.
    pub history: usize,
    /// The minor Kubernetes version `/version` reports.
    pub minor_version: u32,
    /// Keep a log of write requests with their arrival times ([`FakeCluster::take_writes`]),
    /// for benchmarks that time how soon a change reaches the API server. Off by default:
    /// the log grows with every write until taken.
    pub log_writes: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            token: Some("berth-fake-token".to_owned()),
            ready_after: Duration::from_millis(50),
            progress_deadline: None,
            bookmark_interval: Duration::from_secs(1),
            history: 5000,
            minor_version: 33,
            log_writes: false,
        }
    }
}

/// An API failure to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP status to answer with (e.g. 401, 403, 429, 500, 503); 0 answers nothing
    /// until `delay` passes and then closes the connection's request with 504.
    pub status: u16,
    /// `Retry-After` seconds, for 429.
    pub retry_after: Option<u32>,
    /// How many requests it hits; `None` until cleared.
    pub times: Option<u32>,
    /// Only requests that write.
    pub writes_only: bool,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

impl Fault {
    /// Every request answers `status`.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            times: None,
            writes_only: false,
            delay: None,
        }
    }

    /// Requests hang for `delay` (a timeout, seen from the client).
    #[must_use]
    pub fn hang(delay: Duration) -> Self {
        Self {
            delay: Some(delay),
            ..Self::status(0)
        }
    }

    /// Only the next `n` requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// With a `Retry-After` header.
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Only for writes.
    #[must_use]
    pub fn writes_only(mut self) -> Self {
        self.writes_only = true;
        self
    }
}

/// One write request as it arrived, in the log kept with [`FakeOptions::log_writes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSeen {
    /// When the request's head arrived (wall clock, so that another process on the same
    /// machine can compare it with its own).
    pub at: std::time::SystemTime,
    /// The method: `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The request path, e.g. `/apis/apps/v1/namespaces/default-qa/deployments/web-qa`.
    pub path: String,
}

/// How many requests of each kind the fake has served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// GET of one object.
    pub get: u64,
    /// GET of a collection.
    pub list: u64,
    /// Watches started.
    pub watch: u64,
    /// POST.
    pub create: u64,
    /// PUT.
    pub update: u64,
    /// PATCH (including server-side apply).
    pub patch: u64,
    /// DELETE.
    pub delete: u64,
    /// Discovery, version and health.
    pub other: u64,
}

impl RequestCounts {
    /// Requests that change something.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.create + self.update + self.patch + self.delete
    }

    /// Every request.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.writes() + self.get + self.list + self.watch + self.other
    }
}

#[derive(Default)]
struct Counters([AtomicU64; 8]);

/// Which counter a request goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verb {
    Get = 0,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Other,
}

impl Verb {
    fn writes(self) -> bool {
        matches!(self, Self::Create | Self::Update | Self::Patch | Self::Delete)
    }
}

pub(crate) struct Shared {
    store: Arc<Store>,
    options: FakeOptions,
    counters: Counters,
    faults: Mutex<Vec<Fault>>,
    forbidden: Mutex<HashSet<String>>,
    rollouts: Arc<Mutex<RolloutSettings>>,
    writes: Mutex<Vec<WriteSeen>>,
}

impl Shared {
    fn count(&self, verb: Verb) {
        self.counters.0[verb as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The fault this request hits, if any (and uses one of its `times`).
    fn fault(&self, verb: Verb) -> Option<Fault> {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = faults.iter().position(|f| !f.writes_only || verb.writes())?;
        let f = faults[i].clone();
        if let Some(n) = &mut faults[i].times {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(i);
            }
        }
        Some(f)
    }

    /// Logs a write request (when [`FakeOptions::log_writes`] asks for it).
    fn log_write(&self, verb: Verb, method: &str, path: &str) {
        if !self.options.log_writes || !verb.writes() {
            return;
        }
        let seen = WriteSeen {
            at: std::time::SystemTime::now(),
            method: method.to_owned(),
            path: path.to_owned(),
        };
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(seen);
    }

    fn forbidden(&self, namespace: &str) -> bool {
        self.forbidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(namespace)
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeCluster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Errors starting a fake cluster.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot listen on 127.0.0.1:0")]
    Bind(#[source] std::io::Error),
}

impl FakeCluster {
    /// Starts a fake API server on `127.0.0.1:0` (inside the current tokio runtime).
    pub async fn start(options: FakeOptions) -> Result<Self, StartError> {
        Self::start_on("127.0.0.1:0", options).await
    }

    /// Starts a fake API server on `addr`.
    pub async fn start_on(addr: &str, options: FakeOptions) -> Result<Self, StartError> {
        let listener = TcpListener::bind(addr).await.map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let store = Arc::new(Store::new(options.history, tx));
        let rollouts = Arc::new(Mutex::new(RolloutSettings {
            ready_after: options.ready_after,
            progress_deadline: options.progress_deadline,
            rules: Vec::new(),
        }));
        let shared = Arc::new(Shared {
            store: store.clone(),
            options,
            counters: Counters::default(),
            faults: Mutex::new(Vec::new()),
            forbidden: Mutex::new(HashSet::new()),
            rollouts: rollouts.clone(),
            writes: Mutex::new(Vec::new()),
        });
        let controller = tokio::spawn(rollout::run(store, rollouts, rx));
        let app = server::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake API server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            tasks: vec![controller, server],
        })
    }

    /// Ends every open watch with `410 Expired` and forgets the watch history, as an API
    /// server's restart or compaction does: every watcher must list again.
    pub fn expire_watches(&self) {
        self.shared.store.expire_watches();
    }

    /// The server's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig document for this server, with context `fake` (and the token).
    #[must_use]
    pub fn kubeconfig(&self) -> String {
        kubeconfig(
            &self.url(),
            self.shared.options.token.as_deref().unwrap_or("none"),
        )
    }

    /// The requests served so far.
    #[must_use]
    pub fn requests(&self) -> RequestCounts {
        let c = |v: Verb| self.shared.counters.0[v as usize].load(Ordering::Relaxed);
        RequestCounts {
            get: c(Verb::Get),
            list: c(Verb::List),
            watch: c(Verb::Watch),
            create: c(Verb::Create),
            update: c(Verb::Update),
            patch: c(Verb::Patch),
            delete: c(Verb::Delete),
            other: c(Verb::Other),
        }
    }

    /// Starts counting from zero.
    pub fn reset_requests(&self) {
        for c in &self.shared.counters.0 {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// The write requests logged since the last call, oldest first (empty unless
    /// [`FakeOptions::log_writes`] is on).
    pub fn take_writes(&self) -> Vec<WriteSeen> {
        std::mem::take(
            &mut *self
                .shared
                .writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Adds a fault; faults are checked in the order added.
    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Answers 403 to every request in `namespace`.
    pub fn forbid_namespace(&self, namespace: &str) {
        self.shared
            .forbidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(namespace.to_owned());
    }

    /// Makes rollouts of Deployments whose pod template contains `pattern` (an image
    /// name, an environment variable's value…) fail.
    pub fn fail_rollouts(&self, pattern: &str, failure: RolloutFailure) {
        self.shared
            .rollouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rules
            .push(RolloutRule {
                template_contains: pattern.to_owned(),
                failure,
            });
    }

    fn resource(plural: &str) -> Result<usize, ApiError> {
        resources::RESOURCES
            .iter()
            .position(|r| r.plural == plural)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("no resource {plural}")))
    }

    /// One object, e.g. `object("deployments", "default-qa", "web")` (not counted).
    #[must_use]
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = Self::resource(plural).ok()?;
        self.shared
            .store
            .get_value(r, &(namespace.to_owned(), name.to_owned()))
    }

    /// Every object of a resource (not counted).
    #[must_use]
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        let Ok(r) = Self::resource(plural) else {
            return Vec::new();
        };
        let inner = self.shared.store.lock();
        inner.objects[r]
            .values()
            .filter_map(|s| serde_json::from_slice(&s.raw).ok())
            .collect()
    }

    /// Creates an object as `manager` would (not counted).
    pub fn create(
        &self,
        plural: &str,
        namespace: &str,
        object: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let r = Self::resource(plural)?;
        let raw = self.shared.store.create(r, namespace, object, manager)?;
        serde_json::from_slice(&raw).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
    }

    /// Changes an object with a JSON merge patch as `manager` would, e.g. `kubectl-edit`
    /// (not counted).
    pub fn edit(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        manager: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let r = Self::resource(plural)?;
        let body = serde_json::to_vec(patch).map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?;
        let raw = self.shared.store.patch(
            r,
            &(namespace.to_owned(), name.to_owned()),
            PatchType::Merge,
            &body,
            Some(manager),
            false,
        )?;
        serde_json::from_slice(&raw).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
    }

    /// Deletes an object as someone else would (not counted).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) -> Result<(), ApiError> {
        let r = Self::resource(plural)?;
        self.shared
            .store
            .delete(r, &(namespace.to_owned(), name.to_owned()))
            .map(|_| ())
    }
}

/// A kubeconfig for `server` with one context, `fake`, authenticating with `token`.
#[must_use]
pub fn kubeconfig(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
users:
- name: fake
  user:
    token: {token}
"
    )
}
