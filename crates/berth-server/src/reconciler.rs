//! The reconciler: makes every cluster run what the store says should run, and writes
//! back what it saw. Level-triggered, driven by change.
//!
//! ```text
//!  store event log ──feed──▶ reload what changed into the indexes ──▶ queue of keys
//!  runtime watches ──changes(keys)──────────────────────────────────▶   (application,
//!  resync: a slice of every key each second, a full pass per cluster    environment)
//!     every full_resync_period                                              │ batch
//!                                                                           ▼
//!  plan (berth-core::reconcile, pure): desired workloads per cluster, supersede, progress
//!  apply: ClusterRuntime::apply(keys, workloads) per cluster; commit status and events
//! ```
//!
//! The indexes (clusters, environments, teams, the deployments of every key, the
//! releases they need) are read from the store once at start and kept current from the
//! event log; nothing here survives a restart that the store does not hold, so after a
//! crash the next start simply converges again.

mod feed;
mod queue;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use berth_core::{
    Kind, NewEvent,
    deployment::governing,
    objects::{
        Cluster, ClusterKind, ClusterPhase, ClusterSpec, Deployment, DeploymentKind, Environment,
        EnvironmentKind, Release, ReleaseKind, Team, TeamKind, release_name,
    },
    ports::{
        Clock, ClusterReport, ClusterRuntime, EventQuery, RuntimeChanges, Store, StoreError, WorkloadReport,
        Write,
    },
    reconcile::{self as plan, ClusterInput, Seen},
    render::{Workload, WorkloadKey},
    repo::{self, RepoError},
};
use futures::future::join_all;
use rand::Rng;
use tokio::{sync::Notify, time::Instant};

pub use self::feed::{Touched, touched};
use self::queue::WorkQueue;
use crate::govern::Governed;

/// A connection to one cluster's runtime.
pub struct Connected {
    /// The runtime.
    pub runtime: Arc<dyn ClusterRuntime>,
    /// Notified when something changes on the cluster (a replica died); the reconciler
    /// then asks the runtime [which keys](ClusterRuntime::changes).
    pub changed: Option<Arc<Notify>>,
}

/// Makes runtime connections for clusters.
pub type Connector = Box<dyn Fn(&Cluster) -> Result<Connected, String> + Send + Sync>;

/// How often the resync queues its next slice of keys, and how long a deployment still
/// progressing waits before its key is looked at again (for its deadline).
pub const TICK: Duration = Duration::from_secs(1);
/// Every key is looked at once per this period by the resync, spread evenly over it.
pub const KEY_RESYNC_PERIOD: Duration = Duration::from_secs(300);
/// Longest a cluster may take for one per-key call. A cluster that takes longer but still
/// answers [`version`](ClusterRuntime::version) is slow, not gone: its keys are queued
/// again.
const PASS_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a cluster may take for a full pass (everything it should run).
const FULL_PASS_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a deployment still progressing waits before its key is looked at again when
/// no watch says its rollout moved.
const PROGRESS_POLL: Duration = Duration::from_secs(5);
/// Longest wait between attempts on an unreachable cluster.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Most keys worked in one batch: small enough that a batch's calls end well within
/// [`PASS_TIMEOUT`] on a busy cluster, and that a change queued behind a batch waits little.
const BATCH: usize = 100;
/// Events read from the log at once.
const FEED_PAGE: u32 = 1000;

struct ClusterHandle {
    spec: ClusterSpec,
    connected: Result<Connected, String>,
    failures: u32,
    next_attempt: Instant,
    last_error: Option<String>,
    /// A full pass succeeded since the connection was made or the cluster came back:
    /// per-key work may follow.
    seeded: bool,
    /// When the next full pass is due.
    next_full: Instant,
}

impl ClusterHandle {
    fn runtime(&self) -> Option<&Arc<dyn ClusterRuntime>> {
        self.connected.as_ref().ok().map(|c| &c.runtime)
    }

    /// Whether a full pass should run at `now`.
    fn full_due(&self, now: Instant) -> bool {
        self.connected.is_err() && self.next_attempt <= now
            || self.connected.is_ok() && self.next_attempt <= now && (!self.seeded || self.next_full <= now)
    }
}

/// What the reconciler keeps in memory of the store.
#[derive(Default)]
struct Index {
    clusters: BTreeMap<String, Cluster>,
    environments: BTreeMap<String, Environment>,
    teams: HashMap<String, Team>,
    /// Ordered by key, so that an application's keys are one range. Each list is kept
    /// at its length: a vector grows to room for four deployments, and most keys have one.
    deployments: BTreeMap<WorkloadKey, Vec<Deployment>>,
    /// The release of each key's governing deployment (boxed: the table keeps room for
    /// more entries than it holds, and a release is large).
    releases: HashMap<WorkloadKey, Box<Release>>,
}

impl Index {
    /// Replaces (or adds) one deployment.
    fn put_deployment(&mut self, d: Deployment) {
        let key = key_of(&d);
        let list = self.deployments.entry(key).or_default();
        match list.iter_mut().find(|x| x.metadata.name == d.metadata.name) {
            Some(x) => *x = d,
            None => {
                list.push(d);
                list.shrink_to_fit();
            }
        }
    }

    /// The keys of application `app`.
    fn keys_of(&self, app: &str) -> Vec<WorkloadKey> {
        let from = WorkloadKey {
            application: app.to_owned(),
            environment: String::new(),
        };
        self.deployments
            .range(from..)
            .take_while(|(k, _)| k.application == app)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The keys of environment `env`.
    fn keys_in(&self, env: &str) -> Vec<WorkloadKey> {
        self.deployments
            .keys()
            .filter(|k| k.environment == env)
            .cloned()
            .collect()
    }
}

fn keys_of_plans(plans: &[KeyPlan]) -> Vec<WorkloadKey> {
    plans.iter().map(|p| p.key.clone()).collect()
}

fn key_of(d: &Deployment) -> WorkloadKey {
    WorkloadKey {
        application: d.spec.application.clone(),
        environment: d.spec.environment.clone(),
    }
}

/// The plan of one key: its governing deployment and environment, and its workload per
/// cluster.
struct KeyPlan {
    key: WorkloadKey,
    workloads: Vec<(String, Workload)>,
}

/// What one cluster said to one call.
enum Outcome {
    Report(ClusterReport),
    /// No answer within the call's time, but the cluster answers: its keys wait for the
    /// next batch.
    Slow(String),
    Unreachable(String),
}

/// The reconcile loop's state.
pub struct Reconciler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    domain: String,
    connect: Connector,
    clusters: HashMap<String, ClusterHandle>,
    wake: Arc<Notify>,
    secrets: Option<Arc<berth_secrets::Keyring>>,
    /// The use cases: an automatic rollback is one.
    delivery: berth_service::Delivery,
    index: Index,
    queue: WorkQueue<WorkloadKey>,
    /// The last event of the log read.
    position: u64,
    /// Events this reconciler committed itself (the index has them already).
    own: HashSet<u64>,
    /// The last report per key and cluster.
    reports: HashMap<WorkloadKey, HashMap<String, WorkloadReport>>,
    /// Clusters each key's workload was last handed to.
    placed: HashMap<WorkloadKey, BTreeSet<String>>,
    /// Clusters whose runtime said something changed.
    notified: BTreeSet<String>,
    /// The resync's order of keys and where it stands.
    resync: Vec<WorkloadKey>,
    next_resync: Instant,
    metrics: crate::metrics::ReconcileMetrics,
}

impl Reconciler {
    /// A reconciler over `store`, woken early by `wake`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        domain: String,
        connect: Connector,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            delivery: berth_service::Delivery::new(
                store.clone(),
                Arc::new(berth_service::NoResolver),
                clock.clone(),
            ),
            store,
            clock,
            domain,
            connect,
            clusters: HashMap::new(),
            wake,
            secrets: None,
            index: Index::default(),
            queue: WorkQueue::default(),
            position: 0,
            own: HashSet::new(),
            reports: HashMap::new(),
            placed: HashMap::new(),
            notified: BTreeSet::new(),
            resync: Vec::new(),
            next_resync: Instant::now(),
            metrics: crate::metrics::ReconcileMetrics::default(),
        }
    }

    /// Records the queue depth and how long work takes into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::ReconcileMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Delivers applications' secrets, opened with `keyring`, to their workloads.
    #[must_use]
    pub fn with_secrets(mut self, keyring: Arc<berth_secrets::Keyring>) -> Self {
        self.secrets = Some(keyring);
        self
    }

    /// Runs until `shutdown` completes; work in flight is abandoned then (the store holds
    /// everything the next start needs, and a cluster that does not answer must not hold
    /// up the stop).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                loaded = self.load() => match loaded {
                    Ok(()) => break,
                    Err(e) => tracing::warn!(error = %e, "cannot load the reconciler's indexes; retrying"),
                },
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(TICK) => {}
            }
        }
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                stepped = self.step() => if let Err(e) = stepped {
                    tracing::warn!(error = %e, "reconcile step failed; retrying");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(TICK) => {}
                    }
                },
            }
            if self.queue.has_ready() {
                continue;
            }
            let deadline = self.next_deadline();
            let store = Arc::clone(&self.store);
            let position = self.position;
            let timeout = deadline.saturating_duration_since(Instant::now());
            let cluster_changes: Vec<(String, Arc<Notify>)> = self
                .clusters
                .iter()
                .filter_map(|(n, h)| {
                    h.connected
                        .as_ref()
                        .ok()
                        .and_then(|c| c.changed.clone())
                        .map(|c| (n.clone(), c))
                })
                .collect();
            let any_cluster = async {
                if cluster_changes.is_empty() {
                    std::future::pending::<String>().await
                } else {
                    let (_, i, _) = futures::future::select_all(
                        cluster_changes.iter().map(|(_, n)| Box::pin(n.notified())),
                    )
                    .await;
                    cluster_changes[i].0.clone()
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = store.wait_for_events(position, timeout) => {}
                name = any_cluster => { self.notified.insert(name); }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// The earliest instant something is due without a change: a queued-for-later key,
    /// the resync's next slice, a full pass.
    fn next_deadline(&self) -> Instant {
        let mut at = self.next_resync;
        if let Some(d) = self.queue.next_due() {
            at = at.min(d);
        }
        for h in self.clusters.values() {
            let due = if h.connected.is_ok() && h.seeded {
                h.next_full.max(h.next_attempt)
            } else {
                h.next_attempt
            };
            at = at.min(due);
        }
        at
    }

    /// Reads the store into the indexes, once.
    async fn load(&mut self) -> Result<(), RepoError> {
        let store = Arc::clone(&self.store);
        let store = store.as_ref();
        // From here on, the feed brings whatever changes while the rest is read.
        self.position = store.last_event().await?;
        let mut index = Index {
            clusters: repo::list_all::<ClusterKind>(store, None)
                .await?
                .into_iter()
                .map(|c| (c.metadata.name.clone(), c))
                .collect(),
            environments: repo::list_all::<EnvironmentKind>(store, None)
                .await?
                .into_iter()
                .map(|e| (e.metadata.name.clone(), e))
                .collect(),
            teams: repo::list_all::<TeamKind>(store, None)
                .await?
                .into_iter()
                .map(|t| (t.metadata.name.clone(), t))
                .collect(),
            ..Index::default()
        };
        for d in repo::list_all::<DeploymentKind>(store, None).await? {
            index.deployments.entry(key_of(&d)).or_default().push(d);
        }
        for list in index.deployments.values_mut() {
            list.shrink_to_fit();
        }
        self.index = index;
        let keys: Vec<WorkloadKey> = self.index.deployments.keys().cloned().collect();
        for k in keys {
            self.queue.add(k);
        }
        self.sync_clusters().await;
        Ok(())
    }

    /// One round: read the feed and the runtimes' changes, run the full passes that are
    /// due, queue the resync's slice, and work one batch of keys.
    async fn step(&mut self) -> Result<(), RepoError> {
        self.read_feed().await?;
        for name in std::mem::take(&mut self.notified) {
            let Some(runtime) = self.clusters.get(&name).and_then(|h| h.runtime().cloned()) else {
                continue;
            };
            match runtime.changes() {
                RuntimeChanges::None => {}
                RuntimeChanges::Keys(keys) => {
                    for k in keys {
                        self.queue.add(k);
                    }
                }
                RuntimeChanges::All => {
                    if let Some(h) = self.clusters.get_mut(&name) {
                        h.next_full = Instant::now();
                    }
                }
                RuntimeChanges::WatchFailed(keys) => {
                    for k in keys {
                        self.queue.add(k);
                    }
                    // The runtime relists by itself; only a cluster that is gone needs
                    // more (its full pass when it answers again).
                    if self.version_of(&name).await.is_none()
                        && let Some(cluster) = self.index.clusters.get(&name).cloned()
                    {
                        self.record_cluster(
                            &cluster,
                            Err("its watch ended and it does not answer".to_owned()),
                            None,
                        )
                        .await?;
                        if let Some(h) = self.clusters.get_mut(&name) {
                            h.seeded = false;
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        let due: Vec<String> = self
            .clusters
            .iter()
            .filter(|(_, h)| h.full_due(now))
            .map(|(n, _)| n.clone())
            .collect();
        if !due.is_empty() {
            let started = Instant::now();
            self.full_pass(&due).await?;
            self.metrics
                .full_pass_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        if now >= self.next_resync {
            self.queue_resync_slice();
            self.next_resync = now + TICK;
        }
        let batch = self.queue.take(BATCH, Instant::now());
        self.metrics
            .queue_depth
            .set(i64::try_from(self.queue.waiting()).unwrap_or(i64::MAX));
        if batch.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let worked = self.work(&batch).await;
        for k in &batch {
            self.queue.done(k);
        }
        self.metrics.keys.inc_by(batch.len() as u64);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        worked
    }

    /// Queues the next slice of every key, so that each is looked at once per
    /// [`KEY_RESYNC_PERIOD`].
    fn queue_resync_slice(&mut self) {
        if self.resync.is_empty() {
            self.resync = self.index.deployments.keys().cloned().collect();
            // Newest first is as good as any order; a stable one spreads the work.
            self.resync.sort();
            self.resync.reverse();
        }
        let total = self.index.deployments.len().max(1);
        let per_tick = total
            .saturating_mul(TICK.as_millis() as usize)
            .div_ceil(KEY_RESYNC_PERIOD.as_millis() as usize)
            .max(1);
        for _ in 0..per_tick {
            let Some(k) = self.resync.pop() else { break };
            self.queue.add(k);
        }
    }

    /// Reads the events after the last one read, reloads what they name and queues the
    /// keys they affect.
    async fn read_feed(&mut self) -> Result<(), RepoError> {
        loop {
            let events = self
                .store
                .events(&EventQuery {
                    after: self.position,
                    limit: FEED_PAGE,
                    application: None,
                })
                .await?;
            let Some(last) = events.last() else { return Ok(()) };
            self.position = last.seq;
            let mut touched: Vec<Touched> = Vec::new();
            for e in &events {
                if self.own.remove(&e.seq) {
                    continue;
                }
                let t = feed::touched(e);
                if t != Touched::Nothing && !touched.contains(&t) {
                    touched.push(t);
                }
            }
            for t in touched {
                self.reload(t).await?;
            }
            if events.len() < FEED_PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Reloads what `t` names and queues the keys it affects.
    async fn reload(&mut self, t: Touched) -> Result<(), RepoError> {
        let store = Arc::clone(&self.store);
        let store = store.as_ref();
        let keys: Vec<WorkloadKey> = match t {
            Touched::Nothing => Vec::new(),
            Touched::Application(app) => {
                let mut fresh: HashMap<WorkloadKey, Vec<Deployment>> = HashMap::new();
                for d in repo::list_all::<DeploymentKind>(store, Some(&app)).await? {
                    fresh.entry(key_of(&d)).or_default().push(d);
                }
                let old = self.index.keys_of(&app);
                let mut keys = Vec::new();
                for k in old {
                    if !fresh.contains_key(&k) {
                        self.index.deployments.remove(&k);
                        self.index.releases.remove(&k);
                        keys.push(k);
                    }
                }
                for (k, list) in fresh {
                    let same = self.index.deployments.get(&k).is_some_and(|old| {
                        old.len() == list.len()
                            && old.iter().all(|o| {
                                list.iter().any(|n| {
                                    n.metadata.name == o.metadata.name
                                        && n.metadata.resource_version == o.metadata.resource_version
                                })
                            })
                    });
                    if !same {
                        let mut list = list;
                        list.shrink_to_fit();
                        self.index.deployments.insert(k.clone(), list);
                        keys.push(k);
                    }
                }
                keys
            }
            Touched::Environment(name) => {
                match repo::get::<EnvironmentKind>(store, &name).await? {
                    Some(e) => self.index.environments.insert(name.clone(), e),
                    None => self.index.environments.remove(&name),
                };
                self.index.keys_in(&name)
            }
            Touched::Cluster(name) => {
                match repo::get::<ClusterKind>(store, &name).await? {
                    Some(c) => self.index.clusters.insert(name.clone(), c),
                    None => self.index.clusters.remove(&name),
                };
                self.sync_clusters().await;
                let envs: Vec<String> = self
                    .index
                    .environments
                    .values()
                    .filter(|e| e.spec.clusters.iter().any(|p| p.cluster == name))
                    .map(|e| e.metadata.name.clone())
                    .collect();
                envs.iter().flat_map(|e| self.index.keys_in(e)).collect()
            }
            Touched::Team(name) => {
                match repo::get::<TeamKind>(store, &name).await? {
                    Some(t) => self.index.teams.insert(name.clone(), t),
                    None => self.index.teams.remove(&name),
                };
                self.index
                    .releases
                    .iter()
                    .filter(|(_, r)| r.spec.template.team == name)
                    .map(|(k, _)| k.clone())
                    .collect()
            }
            Touched::Secret {
                application,
                environment,
            } => self
                .index
                .keys_of(&application)
                .into_iter()
                .filter(|k| environment.as_ref().is_none_or(|e| *e == k.environment))
                .collect(),
        };
        for k in keys {
            self.queue.add(k);
        }
        Ok(())
    }

    async fn sync_clusters(&mut self) {
        let clusters = &self.index.clusters;
        self.clusters.retain(|name, _| clusters.contains_key(name));
        let clusters: Vec<Cluster> = clusters.values().cloned().collect();
        let count = clusters.len().max(1) as u32;
        for (i, c) in clusters.iter().enumerate() {
            let stale = self.clusters.get(c.name()).is_none_or(|h| h.spec != c.spec);
            if stale {
                // A sealed kubeconfig is opened only here, for the runtime being built.
                let connected =
                    match crate::credentials::open(self.store.as_ref(), self.secrets.as_deref(), c).await {
                        Ok(opened) => (self.connect)(&opened),
                        Err(e) => Err(e),
                    };
                // Spread the clusters' later full passes over their period.
                let offset = connected
                    .as_ref()
                    .map(|c| c.runtime.full_resync_period() / count * i as u32)
                    .unwrap_or_default();
                self.clusters.insert(
                    c.metadata.name.clone(),
                    ClusterHandle {
                        spec: c.spec.clone(),
                        connected,
                        failures: 0,
                        next_attempt: Instant::now(),
                        last_error: None,
                        seeded: false,
                        next_full: Instant::now() + offset,
                    },
                );
            }
        }
    }

    /// The plan of `key`: its workload on each cluster of its environment (only on
    /// `only`, when given); no workloads when nothing governs it.
    async fn plan_key(&mut self, key: &WorkloadKey, only: Option<&str>) -> Result<KeyPlan, RepoError> {
        let empty = KeyPlan {
            key: key.clone(),
            workloads: Vec::new(),
        };
        let Some(g) = self
            .index
            .deployments
            .get(key)
            .and_then(|ds| governing(ds))
            .cloned()
        else {
            return Ok(empty);
        };
        let Some(env) = self.index.environments.get(&g.spec.environment) else {
            return Ok(empty);
        };
        let name = release_name(&g.spec.application, g.spec.release);
        if self
            .index
            .releases
            .get(key)
            .is_none_or(|r| r.metadata.name != name)
        {
            match repo::get::<ReleaseKind>(self.store.as_ref(), &name).await? {
                Some(r) => {
                    self.index.releases.insert(key.clone(), Box::new(r));
                }
                None => return Ok(empty),
            }
        }
        let Some(release) = self.index.releases.get(key) else {
            return Ok(empty);
        };
        let governed = Governed::resolve(
            self.store.as_ref(),
            self.secrets.as_deref(),
            release,
            env.name(),
            &self.index.teams,
        )
        .await?;
        let mut workloads = plan::desired(release, &g, env, &self.domain);
        workloads.retain(|(c, _)| only.is_none_or(|o| o == c) && self.index.clusters.contains_key(c));
        for (_, w) in &mut workloads {
            governed.apply(w);
        }
        Ok(KeyPlan {
            key: key.clone(),
            workloads,
        })
    }

    /// Marks the deployments of `key` that a newer one replaced before they finished.
    async fn supersede(&mut self, key: &WorkloadKey) -> Result<(), RepoError> {
        let Some(deployments) = self.index.deployments.get(key) else {
            return Ok(());
        };
        for (d, event) in plan::superseded(deployments, self.clock.now()) {
            if let Some(doc) = self.commit(vec![repo::replace(&d)?], vec![event]).await? {
                self.index
                    .put_deployment(repo::decode_committed::<DeploymentKind>(doc)?);
            }
        }
        Ok(())
    }

    /// Per-key work on a batch of keys.
    async fn work(&mut self, keys: &[WorkloadKey]) -> Result<(), RepoError> {
        let mut plans = Vec::with_capacity(keys.len());
        for key in keys {
            self.supersede(key).await?;
            plans.push(self.plan_key(key, None).await?);
        }
        // Per cluster: the keys it hears about (where they run now or ran before) and
        // their workloads.
        let mut targets: BTreeMap<String, (Vec<WorkloadKey>, Vec<Workload>)> = BTreeMap::new();
        for p in &plans {
            let mut on: BTreeSet<&str> = self
                .placed
                .get(&p.key)
                .map(|s| s.iter().map(String::as_str).collect())
                .unwrap_or_default();
            on.extend(p.workloads.iter().map(|(c, _)| c.as_str()));
            for c in on {
                let t = targets.entry(c.to_owned()).or_default();
                t.0.push(p.key.clone());
                if let Some((_, w)) = p.workloads.iter().find(|(wc, _)| wc == c) {
                    t.1.push(w.clone());
                }
            }
        }
        let now = Instant::now();
        // Each cluster's call is its own task, so that the clusters' work (rendering,
        // comparing, parsing answers) runs on every thread the server has.
        let calls: Vec<_> = targets
            .into_iter()
            .filter_map(|(name, (keys, workloads))| {
                let h = self.clusters.get(&name)?;
                // A cluster waiting for its full pass (or backing off) gets nothing now; the
                // full pass brings it everything.
                let runtime = h.runtime().filter(|_| h.seeded && h.next_attempt <= now)?.clone();
                Some(tokio::spawn(async move {
                    let outcome =
                        match tokio::time::timeout(PASS_TIMEOUT, runtime.apply(&keys, &workloads)).await {
                            Ok(Ok(report)) => Outcome::Report(report),
                            Ok(Err(e)) => Outcome::Unreachable(e.to_string()),
                            Err(_) => Outcome::Slow(format!("no answer within {}s", PASS_TIMEOUT.as_secs())),
                        };
                    (name, keys, workloads, outcome)
                }))
            })
            .collect();
        for joined in join_all(calls).await {
            let Ok((name, keys, workloads, outcome)) = joined else {
                // The call's task panicked: every key of the batch is looked at again.
                for k in keys_of_plans(&plans) {
                    self.queue.add(k);
                }
                continue;
            };
            let outcome = self.settle(&name, outcome).await;
            if let Outcome::Slow(why) = &outcome {
                tracing::warn!(cluster = %name, keys = keys.len(), reason = %why, "cluster is slow; its keys wait for the next batch");
                for k in keys {
                    self.queue.add(k);
                }
                continue;
            }
            let ok = matches!(outcome, Outcome::Report(_));
            self.record_outcome(&name, outcome).await?;
            if ok {
                for k in &keys {
                    let placed = self.placed.entry(k.clone()).or_default();
                    if workloads.iter().any(|w| w.key == *k) {
                        placed.insert(name.clone());
                    } else {
                        placed.remove(&name);
                    }
                }
            }
        }
        self.progress_all(&plans).await
    }

    /// A full pass on each of `names`: everything the cluster should run, today's
    /// level-triggered pass; then every key there moves on.
    async fn full_pass(&mut self, names: &[String]) -> Result<(), RepoError> {
        let mut keys: BTreeSet<WorkloadKey> = BTreeSet::new();
        let mut desired: BTreeMap<String, Vec<Workload>> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        let all: Vec<WorkloadKey> = self.index.deployments.keys().cloned().collect();
        let mut plans = Vec::new();
        for key in &all {
            let env = self
                .index
                .deployments
                .get(key)
                .and_then(|ds| governing(ds))
                .and_then(|g| self.index.environments.get(&g.spec.environment));
            let there = env.is_some_and(|e| e.spec.clusters.iter().any(|p| names.contains(&p.cluster)))
                || self
                    .placed
                    .get(key)
                    .is_some_and(|s| names.iter().any(|n| s.contains(n)));
            if !there {
                continue;
            }
            self.supersede(key).await?;
            let p = self.plan_key(key, None).await?;
            for (c, w) in &p.workloads {
                if let Some(list) = desired.get_mut(c) {
                    list.push(w.clone());
                }
            }
            keys.insert(key.clone());
            plans.push(p);
        }
        let now = Instant::now();
        let calls = names.iter().filter_map(|name| {
            let h = self.clusters.get(name)?;
            let workloads = desired.remove(name).unwrap_or_default();
            let connected = h
                .connected
                .as_ref()
                .map(|c| c.runtime.clone())
                .map_err(Clone::clone);
            let name = name.clone();
            (h.next_attempt <= now).then(|| {
                tokio::spawn(async move {
                    let outcome = match connected {
                        Err(e) => Outcome::Unreachable(e),
                        Ok(runtime) => {
                            match tokio::time::timeout(FULL_PASS_TIMEOUT, runtime.reconcile(&workloads)).await
                            {
                                Ok(Ok(report)) => Outcome::Report(report),
                                Ok(Err(e)) => Outcome::Unreachable(e.to_string()),
                                Err(_) => Outcome::Slow(format!(
                                    "no answer to a full pass within {}s",
                                    FULL_PASS_TIMEOUT.as_secs()
                                )),
                            }
                        }
                    };
                    (name, workloads, outcome)
                })
            })
        });
        let outcomes: Vec<_> = join_all(calls.collect::<Vec<_>>()).await;
        for joined in outcomes {
            let Ok((name, workloads, outcome)) = joined else {
                continue;
            };
            let outcome = self.settle(&name, outcome).await;
            if let Outcome::Slow(why) = &outcome {
                // Not seeded yet: the full pass is tried again soon.
                tracing::warn!(cluster = %name, reason = %why, "cluster is slow; its full pass is tried again");
                if let Some(h) = self.clusters.get_mut(&name) {
                    h.next_attempt = Instant::now() + PROGRESS_POLL;
                }
                continue;
            }
            let ok = matches!(outcome, Outcome::Report(_));
            self.record_outcome(&name, outcome).await?;
            if let Some(h) = self.clusters.get_mut(&name) {
                if ok {
                    h.seeded = true;
                    let period = h.runtime().map_or(MAX_BACKOFF, |r| r.full_resync_period());
                    h.next_full = Instant::now() + period;
                } else {
                    h.seeded = false;
                }
            }
            if ok {
                let here: HashSet<&WorkloadKey> = workloads.iter().map(|w| &w.key).collect();
                for (k, placed) in &mut self.placed {
                    if !here.contains(k) {
                        placed.remove(&name);
                    }
                }
                for k in here {
                    self.placed.entry(k.clone()).or_default().insert(name.clone());
                }
            }
        }
        self.progress_all(&plans).await
    }

    /// Records what a cluster answered: its health, its notices, its reports.
    async fn record_outcome(&mut self, name: &str, outcome: Outcome) -> Result<(), RepoError> {
        let Some(cluster) = self.index.clusters.get(name).cloned() else {
            return Ok(());
        };
        match outcome {
            Outcome::Report(report) => {
                // Ask for the version when the cluster comes (back) up: its status says
                // what answers (e.g. the Kubernetes release, after /readyz).
                let version = if cluster.status.phase != ClusterPhase::Ready
                    || cluster.status.runtime_version.is_none()
                {
                    self.version_of(name).await
                } else {
                    None
                };
                self.record_cluster(&cluster, Ok(()), version).await?;
                self.record_notices(name, &report).await?;
                for w in report.workloads {
                    self.reports
                        .entry(w.key.clone())
                        .or_default()
                        .insert(name.to_owned(), w);
                }
            }
            Outcome::Slow(message) | Outcome::Unreachable(message) => {
                if let Some(h) = self.clusters.get_mut(name) {
                    h.seeded = false;
                }
                self.record_cluster(&cluster, Err(message), None).await?;
            }
        }
        Ok(())
    }

    /// A slow answer stays slow if the cluster still answers a version request; else the
    /// cluster is unreachable.
    async fn settle(&self, name: &str, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Slow(why) if self.version_of(name).await.is_none() => Outcome::Unreachable(why),
            other => other,
        }
    }

    /// The version a cluster's runtime reports, if it answers within a few seconds.
    async fn version_of(&self, name: &str) -> Option<String> {
        let runtime = self.clusters.get(name)?.runtime()?.clone();
        match tokio::time::timeout(Duration::from_secs(5), runtime.version()).await {
            Ok(Ok(v)) => Some(v),
            _ => None,
        }
    }

    /// Updates a cluster's health, with backoff and jitter between failed attempts.
    async fn record_cluster(
        &mut self,
        cluster: &Cluster,
        result: Result<(), String>,
        version: Option<String>,
    ) -> Result<(), RepoError> {
        let Some(handle) = self.clusters.get_mut(cluster.name()) else {
            return Ok(());
        };
        let (phase, message) = match &result {
            Ok(()) => {
                handle.failures = 0;
                handle.last_error = None;
                (ClusterPhase::Ready, None)
            }
            Err(e) => {
                handle.failures = handle.failures.saturating_add(1);
                let base = Duration::from_secs(1u64 << handle.failures.min(5)).min(MAX_BACKOFF);
                let jitter = Duration::from_millis(
                    rand::rng().random_range(0..=base.as_millis().min(5000) as u64 / 4),
                );
                handle.next_attempt = Instant::now() + base + jitter;
                handle.last_error = Some(e.clone());
                (
                    ClusterPhase::Unreachable,
                    Some(format!(
                        "{e} (attempt {}, next in {}s)",
                        handle.failures,
                        base.as_secs()
                    )),
                )
            }
        };
        let failures = handle.failures;
        let new_version = version.is_some() && version != cluster.status.runtime_version;
        if cluster.status.phase == phase
            && !new_version
            && (phase == ClusterPhase::Ready || cluster.status.consecutive_failures > 0)
        {
            return Ok(());
        }
        let mut updated = cluster.clone();
        updated.status.phase = phase;
        updated.status.message = message.clone();
        updated.status.consecutive_failures = failures;
        if version.is_some() {
            updated.status.runtime_version.clone_from(&version);
        }
        let events = if cluster.status.phase == phase {
            // Only the version is news: no transition, no event.
            Vec::new()
        } else {
            updated.status.last_transition_time = Some(self.clock.now());
            vec![
                match phase {
                    ClusterPhase::Ready => NewEvent::normal(
                        "ClusterReady",
                        ClusterKind::KIND,
                        cluster.name(),
                        "berth",
                        match &version {
                            Some(v) => format!("cluster {} answers: {v}", cluster.name()),
                            None => format!("cluster {} answers", cluster.name()),
                        },
                    ),
                    _ => NewEvent::warning(
                        "ClusterUnreachable",
                        ClusterKind::KIND,
                        cluster.name(),
                        "berth",
                        format!(
                            "cluster {} cannot be reached: {}",
                            cluster.name(),
                            message.unwrap_or_default()
                        ),
                    ),
                }
                .on_cluster(cluster.name()),
            ]
        };
        if let Some(doc) = self.commit(vec![repo::replace(&updated)?], events).await? {
            let c = repo::decode_committed::<ClusterKind>(doc)?;
            self.index.clusters.insert(c.metadata.name.clone(), c);
        }
        Ok(())
    }

    async fn record_notices(&mut self, cluster: &str, report: &ClusterReport) -> Result<(), RepoError> {
        let events: Vec<NewEvent> = report
            .notices
            .iter()
            .map(|n| {
                let make = if n.warning {
                    NewEvent::warning
                } else {
                    NewEvent::normal
                };
                make(
                    &n.reason,
                    "Application",
                    &n.key.application,
                    "berth",
                    n.message.clone(),
                )
                .about(&n.key.application, Some(&n.key.environment))
                .on_cluster(cluster)
            })
            .collect();
        if !events.is_empty() {
            self.commit(Vec::new(), events).await?;
        }
        Ok(())
    }

    /// Advances the governing deployments of `plans` from the clusters' reports. The
    /// status writes of the batch commit in one transaction (one per deployment only
    /// when someone else changed one meanwhile); keys still progressing are looked at
    /// again later.
    async fn progress_all(&mut self, plans: &[KeyPlan]) -> Result<(), RepoError> {
        let mut writes = Vec::new();
        let mut events = Vec::new();
        let mut steps = Vec::new();
        for p in plans {
            if let Some((write, evs)) = self.progress(&p.key, &p.workloads).await? {
                steps.push((write.clone(), evs.clone()));
                writes.push(write);
                events.extend(evs);
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        match self.commit_all(writes, events).await? {
            Some(docs) => self.remember_deployments(docs)?,
            None => {
                for (write, evs) in steps {
                    if let Some(docs) = self.commit_all(vec![write], evs).await? {
                        self.remember_deployments(docs)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn remember_deployments(&mut self, docs: Vec<Option<serde_json::Value>>) -> Result<(), RepoError> {
        for doc in docs {
            self.index
                .put_deployment(repo::decode_committed::<DeploymentKind>(doc)?);
        }
        Ok(())
    }

    /// The next step of the governing deployment of `key`, if its status changes: the
    /// write and its events, for the caller to commit. An automatic rollback is
    /// committed here, by its use case. Queues the key again while it still progresses.
    async fn progress(
        &mut self,
        key: &WorkloadKey,
        workloads: &[(String, Workload)],
    ) -> Result<Option<(Write, Vec<NewEvent>)>, RepoError> {
        let Some(deployments) = self.index.deployments.get(key) else {
            return Ok(None);
        };
        let Some(g) = governing(deployments)
            .filter(|g| !g.status.phase.is_final())
            .cloned()
        else {
            return Ok(None);
        };
        let Some(env) = self.index.environments.get(&g.spec.environment).cloned() else {
            return Ok(None);
        };
        let env = &env;
        let reports = self.reports.get(key);
        let inputs: Vec<ClusterInput<'_>> = env
            .spec
            .clusters
            .iter()
            .map(|p| {
                let handle = self.clusters.get(&p.cluster);
                let seen = match (
                    handle.and_then(|h| h.last_error.as_deref()),
                    reports.and_then(|r| r.get(&p.cluster)),
                ) {
                    (Some(e), _) => Seen::Missing(Some(e)),
                    (None, Some(r)) if handle.is_some_and(|h| h.seeded) => Seen::Reported(r),
                    _ => Seen::Missing(None),
                };
                ClusterInput {
                    cluster: &p.cluster,
                    datacenter: self
                        .index
                        .clusters
                        .get(&p.cluster)
                        .map_or("", |c| c.spec.datacenter.as_str()),
                    desired: workloads
                        .iter()
                        .find(|(c, _)| *c == p.cluster)
                        .map_or(0, |(_, w)| w.replicas),
                    seen,
                }
            })
            .collect();
        let Some(step) = plan::progress(&g, env, &inputs, self.clock.now()) else {
            self.poll_later(key, &g, env);
            return Ok(None);
        };
        if step.rolls_back(env) {
            // The failure and the rollback to what last succeeded commit together: the
            // automatic rollback is a use case of the service.
            let recorded = self
                .delivery
                .auto_rollback(berth_service::AutoRollback {
                    failed: step.deployment.clone(),
                    events: step.events.clone(),
                })
                .await;
            match recorded {
                // Someone else changed the deployment meanwhile, or kept taking the
                // number: the feed brings the change and the key is looked at again.
                Ok(_)
                | Err(
                    berth_service::Error::Busy { .. }
                    | berth_service::Error::Store(
                        StoreError::Conflict { .. }
                        | StoreError::AlreadyExists { .. }
                        | StoreError::NotFound { .. },
                    ),
                ) => {}
                Err(berth_service::Error::Corrupt(e)) => return Err(e),
                Err(berth_service::Error::Store(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(RepoError::Store(StoreError::Backend {
                        message: e.to_string(),
                    }));
                }
            }
            // What the use case committed (the failure, a new governing deployment) is
            // read back at once rather than waiting for the feed.
            self.reload(Touched::Application(key.application.clone())).await?;
            self.queue.add(key.clone());
            return Ok(None);
        }
        if !step.deployment.status.phase.is_final() {
            self.poll_later(key, &step.deployment, env);
        }
        Ok(Some((repo::replace(&step.deployment)?, step.events)))
    }

    /// Queues a key whose deployment still progresses for a later look: the runtimes'
    /// watches bring its rollout's moves sooner; this is for runtimes without them and
    /// for the progress deadline, which is looked at just after it passes.
    fn poll_later(&mut self, key: &WorkloadKey, g: &Deployment, env: &Environment) {
        let mut at = Instant::now() + PROGRESS_POLL;
        if let Some(started) = g.status.started_at {
            let deadline = started
                + chrono::Duration::seconds(i64::from(env.spec.rollout.progress_deadline_seconds) + 1);
            let left = (deadline - self.clock.now()).to_std().unwrap_or_default();
            at = at.min(Instant::now() + left);
        }
        self.queue.add_at(key.clone(), at);
    }

    /// Commits; returns the first document written. A conflict means someone else
    /// changed the object meanwhile: the feed brings the change, and the key is looked at
    /// again.
    async fn commit(
        &mut self,
        writes: Vec<Write>,
        events: Vec<NewEvent>,
    ) -> Result<Option<Option<serde_json::Value>>, RepoError> {
        Ok(self
            .commit_all(writes, events)
            .await?
            .and_then(|docs| docs.into_iter().next()))
    }

    /// Commits; returns the documents written, `None` after a conflict.
    async fn commit_all(
        &mut self,
        writes: Vec<Write>,
        events: Vec<NewEvent>,
    ) -> Result<Option<Vec<Option<serde_json::Value>>>, RepoError> {
        match self.store.commit(writes, events).await {
            Ok(c) => {
                self.own.extend(c.events.iter().map(|e| e.seq));
                Ok(Some(c.documents))
            }
            Err(
                StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } | StoreError::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
