//! The reconciler: a level-triggered loop that makes every cluster run what the store
//! says should run, and writes back what it saw.
//!
//! Each pass reads the desired state (governing deployments, their releases, the
//! environments' clusters), renders one workload per application, environment and
//! cluster, hands each cluster its workloads, and turns the reports into deployment
//! status, cluster status and events. A pass keeps nothing that the next pass needs:
//! after a crash or restart the next pass simply continues.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use berth_core::{
    Kind, NewEvent,
    deployment::{advance, fail_stalled, governing},
    objects::{
        Cluster, ClusterKind, ClusterPhase, ClusterProgress, ClusterSpec, Deployment, DeploymentKind,
        DeploymentPhase, Environment, EnvironmentKind, Release, ReleaseKind, Team, TeamKind, release_name,
    },
    ports::{Clock, ClusterReport, ClusterRuntime, Store, StoreError, Write},
    render::{Workload, WorkloadKey, render},
    repo::{self, RepoError},
};
use futures::future::join_all;

use crate::govern::Governed;
use rand::Rng;
use tokio::{sync::Notify, time::Instant};

/// A connection to one cluster's runtime.
pub struct Connected {
    /// The runtime.
    pub runtime: Arc<dyn ClusterRuntime>,
    /// Notified when something changes on the cluster (a replica died), so that the
    /// reconciler acts at once instead of at its next tick.
    pub changed: Option<Arc<Notify>>,
}

/// Makes runtime connections for clusters.
pub type Connector = Box<dyn Fn(&Cluster) -> Result<Connected, String> + Send + Sync>;

/// How often a pass runs when nothing wakes the loop earlier.
pub const TICK: Duration = Duration::from_secs(1);
/// Longest a cluster may take for one pass before it counts as unreachable.
const PASS_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait between attempts on an unreachable cluster.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct ClusterHandle {
    spec: ClusterSpec,
    connected: Result<Connected, String>,
    failures: u32,
    next_attempt: Instant,
    last_error: Option<String>,
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
}

/// What one cluster said in a pass.
enum Outcome {
    Report(ClusterReport),
    Unreachable(String),
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
        }
    }

    /// Delivers applications' secrets, opened with `keyring`, to their workloads.
    #[must_use]
    pub fn with_secrets(mut self, keyring: Arc<berth_secrets::Keyring>) -> Self {
        self.secrets = Some(keyring);
        self
    }

    /// Runs passes until `shutdown` completes; a pass in flight is abandoned then (a pass
    /// keeps nothing the next one needs, and a cluster that does not answer must not hold
    /// up the stop).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                passed = self.pass() => if let Err(e) = passed {
                    tracing::warn!(error = %e, "reconcile pass failed; retrying");
                },
            }
            let cluster_changes: Vec<Arc<Notify>> = self
                .clusters
                .values()
                .filter_map(|h| h.connected.as_ref().ok().and_then(|c| c.changed.clone()))
                .collect();
            let any_cluster = async {
                if cluster_changes.is_empty() {
                    std::future::pending::<()>().await;
                } else {
                    futures::future::select_all(cluster_changes.iter().map(|n| Box::pin(n.notified()))).await;
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = any_cluster => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass over every cluster.
    pub async fn pass(&mut self) -> Result<(), RepoError> {
        let store = Arc::clone(&self.store);
        let store = store.as_ref();
        let clusters = repo::list_all::<ClusterKind>(store, None).await?;
        let environments: BTreeMap<String, Environment> = repo::list_all::<EnvironmentKind>(store, None)
            .await?
            .into_iter()
            .map(|e| (e.metadata.name.clone(), e))
            .collect();
        let mut groups: BTreeMap<WorkloadKey, Vec<Deployment>> = BTreeMap::new();
        for d in repo::list_all::<DeploymentKind>(store, None).await? {
            let key = WorkloadKey {
                application: d.spec.application.clone(),
                environment: d.spec.environment.clone(),
            };
            groups.entry(key).or_default().push(d);
        }
        self.sync_clusters(&clusters).await;
        self.supersede(&groups).await?;

        // Desired workloads per cluster.
        let mut desired: BTreeMap<String, Vec<Workload>> = clusters
            .iter()
            .map(|c| (c.metadata.name.clone(), Vec::new()))
            .collect();
        let mut releases: HashMap<String, Release> = HashMap::new();
        let teams: HashMap<String, Team> = repo::list_all::<TeamKind>(store, None)
            .await?
            .into_iter()
            .map(|t| (t.metadata.name.clone(), t))
            .collect();
        for deployments in groups.values() {
            let Some(g) = governing(deployments) else { continue };
            let Some(env) = environments.get(&g.spec.environment) else {
                continue;
            };
            let name = release_name(&g.spec.application, g.spec.release);
            let release = match releases.get(&name) {
                Some(r) => r.clone(),
                None => match repo::get::<ReleaseKind>(store, &name).await? {
                    Some(r) => {
                        releases.insert(name.clone(), r.clone());
                        r
                    }
                    None => continue,
                },
            };
            let governed =
                Governed::resolve(store, self.secrets.as_deref(), &release, env.name(), &teams).await?;
            for p in &env.spec.clusters {
                if let Some(list) = desired.get_mut(&p.cluster) {
                    let mut workload = render(&release, g, env, &p.cluster, &self.domain);
                    governed.apply(&mut workload);
                    list.push(workload);
                }
            }
        }

        // Every cluster at once; one slow or dead cluster never holds up the others.
        let now = Instant::now();
        let passes = self.clusters.iter().map(|(name, handle)| {
            let workloads = desired.get(name).cloned().unwrap_or_default();
            async move {
                let outcome = match &handle.connected {
                    Err(e) => Some(Outcome::Unreachable(e.clone())),
                    Ok(_) if handle.next_attempt > now => None,
                    Ok(c) => Some(
                        match tokio::time::timeout(PASS_TIMEOUT, c.runtime.reconcile(&workloads)).await {
                            Ok(Ok(report)) => Outcome::Report(report),
                            Ok(Err(e)) => Outcome::Unreachable(e.to_string()),
                            Err(_) => {
                                Outcome::Unreachable(format!("no answer within {}s", PASS_TIMEOUT.as_secs()))
                            }
                        },
                    ),
                };
                (name.clone(), outcome)
            }
        });
        let outcomes: HashMap<String, Option<Outcome>> = join_all(passes).await.into_iter().collect();

        let mut reports: HashMap<String, ClusterReport> = HashMap::new();
        for cluster in &clusters {
            let name = cluster.name();
            match outcomes.get(name) {
                Some(Some(Outcome::Report(report))) => {
                    // Ask for the version when the cluster comes (back) up: its status
                    // says what answers (e.g. the Kubernetes release, after /readyz).
                    let version = if cluster.status.phase != ClusterPhase::Ready
                        || cluster.status.runtime_version.is_none()
                    {
                        self.version_of(name).await
                    } else {
                        None
                    };
                    self.record_cluster(cluster, Ok(()), version).await?;
                    reports.insert(name.to_owned(), report.clone());
                }
                Some(Some(Outcome::Unreachable(message))) => {
                    self.record_cluster(cluster, Err(message.clone()), None).await?
                }
                _ => {}
            }
        }
        self.record_notices(&reports).await?;

        for deployments in groups.values() {
            if let Some(g) = governing(deployments)
                && !g.status.phase.is_final()
                && let Some(env) = environments.get(&g.spec.environment)
            {
                self.progress(g, env, &clusters, &desired, &reports).await?;
            }
        }
        Ok(())
    }

    async fn sync_clusters(&mut self, clusters: &[Cluster]) {
        self.clusters
            .retain(|name, _| clusters.iter().any(|c| c.name() == name));
        for c in clusters {
            let stale = self.clusters.get(c.name()).is_none_or(|h| h.spec != c.spec);
            if stale {
                // A sealed kubeconfig is opened only here, for the runtime being built.
                let connected =
                    match crate::credentials::open(self.store.as_ref(), self.secrets.as_deref(), c).await {
                        Ok(opened) => (self.connect)(&opened),
                        Err(e) => Err(e),
                    };
                self.clusters.insert(
                    c.metadata.name.clone(),
                    ClusterHandle {
                        spec: c.spec.clone(),
                        connected,
                        failures: 0,
                        next_attempt: Instant::now(),
                        last_error: None,
                    },
                );
            }
        }
    }

    /// Marks deployments that a newer one replaced before they finished.
    async fn supersede(&self, groups: &BTreeMap<WorkloadKey, Vec<Deployment>>) -> Result<(), RepoError> {
        for deployments in groups.values() {
            let Some(g) = governing(deployments) else { continue };
            for d in deployments
                .iter()
                .filter(|d| d.spec.number < g.spec.number && !d.status.phase.is_final())
            {
                let mut d = d.clone();
                d.status.phase = DeploymentPhase::Superseded;
                d.status.message = Some(format!(
                    "deployment {} replaced it before it finished",
                    g.metadata.name
                ));
                d.status.finished_at = Some(self.clock.now());
                let event = NewEvent::normal(
                    "Superseded",
                    DeploymentKind::KIND,
                    d.name(),
                    "berth",
                    d.status.message.clone().unwrap_or_default(),
                )
                .about(&d.spec.application, Some(&d.spec.environment));
                self.commit(vec![repo::replace(&d)?], vec![event]).await?;
            }
        }
        Ok(())
    }

    /// Updates a cluster's health, with backoff and jitter between failed attempts.
    /// The version a cluster's runtime reports, if it answers within a few seconds.
    async fn version_of(&self, name: &str) -> Option<String> {
        let runtime = self.clusters.get(name)?.connected.as_ref().ok()?.runtime.clone();
        match tokio::time::timeout(Duration::from_secs(5), runtime.version()).await {
            Ok(Ok(v)) => Some(v),
            _ => None,
        }
    }

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
        updated.status.consecutive_failures = handle.failures;
        if version.is_some() {
            updated.status.runtime_version.clone_from(&version);
        }
        if cluster.status.phase == phase {
            // Only the version is news: no transition, no event.
            return self.commit(vec![repo::replace(&updated)?], Vec::new()).await;
        }
        updated.status.last_transition_time = Some(self.clock.now());
        let event = match phase {
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
        .on_cluster(cluster.name());
        self.commit(vec![repo::replace(&updated)?], vec![event]).await
    }

    async fn record_notices(&self, reports: &HashMap<String, ClusterReport>) -> Result<(), RepoError> {
        let events: Vec<NewEvent> = reports
            .iter()
            .flat_map(|(cluster, report)| {
                report.notices.iter().map(move |n| {
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
            })
            .collect();
        if events.is_empty() {
            Ok(())
        } else {
            self.commit(Vec::new(), events).await
        }
    }

    /// Advances the governing deployment of one application in one environment.
    #[allow(clippy::too_many_arguments)]
    async fn progress(
        &self,
        g: &Deployment,
        env: &Environment,
        clusters: &[Cluster],
        desired: &BTreeMap<String, Vec<Workload>>,
        reports: &HashMap<String, ClusterReport>,
    ) -> Result<(), RepoError> {
        let key = WorkloadKey {
            application: g.spec.application.clone(),
            environment: g.spec.environment.clone(),
        };
        let mut progress = Vec::new();
        // A runtime that knows the rollout cannot complete (Kubernetes' progress
        // deadline passed) fails the deployment now rather than at Berth's deadline.
        let mut stalled: Vec<String> = Vec::new();
        for p in &env.spec.clusters {
            let datacenter = clusters
                .iter()
                .find(|c| c.name() == p.cluster)
                .map(|c| c.spec.datacenter.clone())
                .unwrap_or_default();
            let want = desired
                .get(&p.cluster)
                .and_then(|ws| ws.iter().find(|w| w.key == key))
                .map_or(0, |w| w.replicas);
            let mut cp = ClusterProgress {
                cluster: p.cluster.clone(),
                datacenter,
                desired: want,
                ..ClusterProgress::default()
            };
            match reports
                .get(&p.cluster)
                .and_then(|r| r.workloads.iter().find(|w| w.key == key))
            {
                Some(w) => {
                    cp.updated = w.counts.updated;
                    cp.ready = w.counts.ready;
                    cp.old = w.counts.old;
                    cp.message.clone_from(&w.message);
                    if w.stalled {
                        stalled.push(format!(
                            "{}: {}",
                            p.cluster,
                            w.message.as_deref().unwrap_or("the rollout stalled")
                        ));
                    }
                }
                None => {
                    // No report this pass (the cluster is backing off or unreachable):
                    // keep what was last seen and say why.
                    if let Some(last) = g.status.clusters.iter().find(|c| c.cluster == p.cluster) {
                        cp = ClusterProgress {
                            desired: want,
                            ..last.clone()
                        };
                    }
                    let why = self.clusters.get(&p.cluster).and_then(|h| h.last_error.clone());
                    cp.message = Some(why.map_or_else(
                        || "waiting for the cluster".to_owned(),
                        |e| format!("cluster unreachable: {e}"),
                    ));
                }
            }
            progress.push(cp);
        }
        let deadline = env.spec.rollout.progress_deadline_seconds;
        let (status, change) = if stalled.is_empty() {
            advance(g, progress, deadline, self.clock.now())
        } else {
            fail_stalled(g, progress, &stalled.join("; "), self.clock.now())
        };
        if status == g.status {
            return Ok(());
        }
        let mut updated = g.clone();
        updated.status = status;
        let app = &g.spec.application;
        let env_name = &g.spec.environment;
        let writes = vec![repo::replace(&updated)?];
        let mut events = Vec::new();
        match &change {
            Some(c) => {
                let (reason, warning) = match c.phase {
                    DeploymentPhase::Succeeded => ("RolloutSucceeded", false),
                    DeploymentPhase::Failed => ("RolloutFailed", true),
                    _ => ("RolloutStarted", false),
                };
                let make = if warning {
                    NewEvent::warning
                } else {
                    NewEvent::normal
                };
                events.push(
                    make(reason, DeploymentKind::KIND, g.name(), "berth", c.message.clone())
                        .about(app, Some(env_name)),
                );
                if c.phase == DeploymentPhase::Failed && env.spec.rollout.auto_rollback {
                    // The failure and the rollback commit together: the use case.
                    let recorded = self
                        .delivery
                        .auto_rollback(berth_service::AutoRollback {
                            failed: updated,
                            events,
                        })
                        .await;
                    return match recorded {
                        Ok(_) => Ok(()),
                        // Someone else changed the deployment meanwhile, or kept taking the
                        // number: the next pass looks again.
                        Err(
                            berth_service::Error::Busy { .. }
                            | berth_service::Error::Store(
                                StoreError::Conflict { .. }
                                | StoreError::AlreadyExists { .. }
                                | StoreError::NotFound { .. },
                            ),
                        ) => Ok(()),
                        Err(berth_service::Error::Corrupt(e)) => Err(e),
                        Err(berth_service::Error::Store(e)) => Err(e.into()),
                        Err(e) => Err(RepoError::Store(StoreError::Backend {
                            message: e.to_string(),
                        })),
                    };
                }
            }
            None => {
                let counts: Vec<String> = updated
                    .status
                    .clusters
                    .iter()
                    .map(|c| format!("{} {}/{} ready, {} old", c.cluster, c.ready, c.desired, c.old))
                    .collect();
                events.push(
                    NewEvent::normal(
                        "RolloutProgress",
                        DeploymentKind::KIND,
                        g.name(),
                        "berth",
                        counts.join("; "),
                    )
                    .about(app, Some(env_name)),
                );
            }
        }
        self.commit(writes, events).await
    }

    /// Commits; a conflict means someone else changed the object meanwhile, and the
    /// next pass will look again.
    async fn commit(&self, writes: Vec<Write>, events: Vec<NewEvent>) -> Result<(), RepoError> {
        match self.store.commit(writes, events).await {
            Ok(_) => Ok(()),
            Err(
                StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } | StoreError::NotFound { .. },
            ) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
