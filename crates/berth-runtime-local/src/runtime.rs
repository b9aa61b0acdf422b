//! [`LocalRuntime`]: one local cluster, i.e. one Docker Engine API endpoint, driven toward
//! the desired workloads by level-triggered reconcile passes.
//!
//! ```text
//!  reconcile(desired) ─▶ list containers (label berth.cluster=<name>, all states)
//!                        │ group by (application, environment) → core Replicas
//!                        ▼ (health from the prober, Starting when unknown)
//!                     rollout::plan ─▶ Retire: out of the route table now; drain, stop,
//!                        │                     remove in the background
//!                        │             Start: pull if missing, create, upload config
//!                        ▼                    files, start, read the host port
//!                     routes + WorkloadReport per desired workload + notices
//!
//!  background: prober (health → routes, wake)   events watcher (die/kill/… → wake)
//! ```
//!
//! A pass reads everything it needs from the containers' labels, so a restarted server
//! continues where the last one stopped; memory holds only health counters, retirements
//! in progress and crash-loop backoff.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, hash_map::Entry},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use berth_core::{
    health::Health,
    instance::{Failure, Instance, LogQuery, Terminated, crash_loops},
    ports::{ClusterReport, ClusterRuntime, LogFeed, Notice, RuntimeError, WorkloadReport},
    render::{Workload, WorkloadKey},
    rollout::{self, Replica, RetireReason, Step},
};
use bollard::{
    Docker, body_full,
    query_parameters::{
        CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
        RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
        UploadToContainerOptionsBuilder,
    },
};
use chrono::{DateTime, Utc};
use futures::{StreamExt, future::join_all};
use tokio::{
    sync::{Notify, OnceCell},
    task::AbortHandle,
    time::Instant,
};

use crate::{
    engine::{self, ContainerState, Limits, Observed, StopTimes, classify},
    events, instances, probe,
    routes::RouteTable,
    state::{
        Backoff, External, FAILURES_KEPT, FailedAt, Published, Retiring, Shared, State, Tracked,
        backoff_delay,
    },
};

/// Settings of a [`LocalRuntime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// How long a retired replica that was serving keeps running after it left the route
    /// table, when its labels do not say (it was made before Berth recorded the
    /// application's `drainSeconds`).
    pub drain_delay: Duration,
    /// How long a replica gets to stop after SIGTERM before it is killed, when its labels
    /// do not say (the application's `terminationGraceSeconds`).
    pub stop_timeout: Duration,
    /// Upper bound of one health check, whatever the workload asks for.
    pub probe_timeout_cap: Duration,
    /// How often running replicas are inspected for changes made behind Berth's back
    /// (memory or CPU limits, image).
    pub drift_check_interval: Duration,
    /// First delay before restarting a workload whose replicas keep failing.
    pub backoff_initial: Duration,
    /// Longest delay between restarts of a failing workload.
    pub backoff_max: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(10),
            probe_timeout_cap: Duration::from_secs(5),
            drift_check_interval: Duration::from_secs(10),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Pass-only bookkeeping, behind the pass lock.
#[derive(Debug, Default)]
struct PassState {
    last_drift_check: Option<Instant>,
}

/// The local runtime of one cluster: replicas as containers through the Docker Engine API
/// (Podman's compatible socket or Docker).
///
/// Drive it by calling [`reconcile`](ClusterRuntime::reconcile) about once a second and
/// whenever [`changed`](Self::changed) is notified (a replica died, was stopped, paused
/// or removed, or changed health). Passes are serialized; each is short (one list call
/// plus whatever it starts). Dropping the runtime stops its background tasks; its routes
/// stay in the table until [`RouteTable::remove_cluster`].
#[derive(Debug)]
pub struct LocalRuntime {
    shared: Arc<Shared>,
    endpoint: String,
    docker: OnceCell<Docker>,
    pass: tokio::sync::Mutex<PassState>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// The desired set of the last full pass, kept current by per-key work.
    desired: Mutex<Option<BTreeMap<WorkloadKey, Workload>>>,
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// A replica started during a pass.
struct Started {
    id: String,
    name: String,
    host_port: Option<u16>,
}

impl LocalRuntime {
    /// A runtime for `cluster` on `endpoint` (`unix:///…`, `tcp://…`, `http://…`; `None`:
    /// `DOCKER_HOST`, else `unix:///var/run/docker.sock`), writing its routes into
    /// `routes`. Nothing is contacted yet: the first call connects and negotiates the
    /// API version (Podman 4.3 serves 1.41), so a runtime can be made while its engine is
    /// down. Fails only for an endpoint of an unsupported scheme.
    pub fn new(
        cluster: impl Into<String>,
        endpoint: Option<String>,
        routes: RouteTable,
        options: RuntimeOptions,
    ) -> Result<Self, RuntimeError> {
        let endpoint = endpoint.unwrap_or_else(engine::default_endpoint);
        if !["unix://", "/", "tcp://", "http://"]
            .iter()
            .any(|scheme| endpoint.starts_with(scheme))
        {
            return Err(RuntimeError::Failed {
                message: format!(
                    "unsupported Docker endpoint '{endpoint}': use unix:///path/to/socket, tcp://host:port or http://host:port"
                ),
            });
        }
        Ok(Self {
            shared: Arc::new(Shared::new(cluster.into(), routes, options)),
            endpoint,
            docker: OnceCell::new(),
            pass: tokio::sync::Mutex::new(PassState::default()),
            tasks: Mutex::new(Vec::new()),
            desired: Mutex::new(None),
        })
    }

    /// Notified when something happened that the next pass should act on at once.
    #[must_use]
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.shared.changed)
    }

    /// The cluster's name.
    #[must_use]
    pub fn cluster(&self) -> &str {
        &self.shared.cluster
    }

    /// The endpoint this runtime talks to.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The route table this runtime writes.
    #[must_use]
    pub fn routes(&self) -> &RouteTable {
        &self.shared.routes
    }

    /// Awaits one call to the engine within [`engine::CONNECT_TIMEOUT`]; a timeout means
    /// the engine is unreachable, an error is classified with what was being `doing`.
    async fn answer<T>(
        &self,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
        doing: &str,
    ) -> Result<T, RuntimeError> {
        tokio::time::timeout(engine::CONNECT_TIMEOUT, call)
            .await
            .map_err(|_| RuntimeError::Unreachable {
                message: format!(
                    "{} did not answer within {} s",
                    self.endpoint,
                    engine::CONNECT_TIMEOUT.as_secs()
                ),
            })?
            .map_err(|e| classify(e, &format!("{doing} {}", self.endpoint)))
    }

    async fn client(&self) -> Result<Docker, RuntimeError> {
        self.docker
            .get_or_try_init(|| async {
                let docker = engine::connect(&self.endpoint, self.shared.options.stop_timeout)?;
                let docker = self.answer(docker.negotiate_version(), "contacting").await?;
                self.start_background(&docker);
                Ok(docker)
            })
            .await
            .cloned()
    }

    fn start_background(&self, docker: &Docker) {
        let prober = tokio::spawn(probe::run(Arc::clone(&self.shared), probe::client()));
        let watcher = tokio::spawn(events::watch(Arc::clone(&self.shared), docker.clone()));
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.push(prober.abort_handle());
        tasks.push(watcher.abort_handle());
    }

    async fn pass(&self, desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        let docker = self.client().await?;
        let mut pass = self.pass.lock().await;
        let shared = &self.shared;
        let summaries = engine::list_containers(
            &self.endpoint,
            &docker.client_version().to_string(),
            &shared.cluster,
        )
        .await?;
        let observed: Vec<Observed> = summaries.iter().filter_map(engine::observe).collect();
        let now = Utc::now();
        let mut wanted: BTreeMap<WorkloadKey, &Workload> = BTreeMap::new();
        for w in desired {
            wanted.entry(w.key.clone()).or_insert(w);
        }
        let mut notices = Vec::new();

        self.sync(&observed, now, &mut notices);
        if pass
            .last_drift_check
            .is_none_or(|t| t.elapsed() >= shared.options.drift_check_interval)
        {
            pass.last_drift_check = Some(Instant::now());
            self.check_drift(&docker, &observed, &wanted, &mut notices).await;
        }

        // Plan every workload that is wanted or still has containers.
        let keys: BTreeSet<WorkloadKey> = wanted
            .keys()
            .cloned()
            .chain(observed.iter().map(|o| o.key.clone()))
            .collect();
        let mut starts: Vec<(&Workload, u32)> = Vec::new();
        let mut messages: HashMap<WorkloadKey, String> = HashMap::new();
        let mut failing: HashSet<WorkloadKey> = HashSet::new();
        {
            let mut state = shared.lock();
            for key in &keys {
                let workload = wanted.get(key).copied();
                let (replicas, settling) = members(&state, key);
                let mut failures = Vec::new();
                let mut start = 0;
                for step in rollout::plan(workload, &replicas, now) {
                    match step {
                        Step::Start(n) => start += n,
                        Step::Retire { id, reason } => {
                            if settling && matches!(reason, RetireReason::Replaced | RetireReason::ScaledDown)
                            {
                                // Health of adopted replicas is not known yet.
                                continue;
                            }
                            let notice = retire_notice(&state, &id, reason);
                            if reason.is_failure() {
                                failures.push(
                                    notice
                                        .as_ref()
                                        .map_or_else(|| reason.describe().to_owned(), |n| n.message.clone()),
                                );
                            }
                            // A replacement is told once its exit reason and last lines
                            // are read, just before the replica is removed.
                            let deferred = notice.clone().filter(|n| n.reason == "ReplicaReplaced");
                            if deferred.is_none() {
                                notices.extend(notice);
                            }
                            self.retire(&docker, &mut state, &id, reason, deferred);
                        }
                    }
                }
                if !failures.is_empty() {
                    failing.insert(key.clone());
                    self.bump_backoff(&mut state, key, failures.join("; "));
                }
                if let Some(w) = workload
                    && start > 0
                {
                    match state.backoff.get(key).filter(|b| b.not_before > Instant::now()) {
                        Some(b) => {
                            let wait = b.not_before.saturating_duration_since(Instant::now());
                            messages.insert(
                                key.clone(),
                                format!(
                                    "replicas keep failing ({}); the next start is in {:.1} s",
                                    b.last,
                                    wait.as_secs_f64()
                                ),
                            );
                        }
                        None => starts.push((w, start)),
                    }
                }
            }
        }

        // Start what is missing, all workloads at once.
        let results = join_all(starts.iter().map(|(w, n)| self.start(&docker, w, *n))).await;
        {
            let mut state = shared.lock();
            for ((w, _), (started, error)) in starts.iter().zip(results) {
                for s in started {
                    notices.push(Notice {
                        key: w.key.clone(),
                        warning: false,
                        reason: "ReplicaStarted".to_owned(),
                        message: format!("replica {} (release {}) started", s.name, w.release),
                    });
                    let tracked = Tracked::started(
                        &Observed {
                            id: s.id.clone(),
                            name: s.name,
                            key: w.key.clone(),
                            release: w.release,
                            spec_hash: w.spec_hash.clone(),
                            state: ContainerState::Running,
                            created: now,
                            host_port: s.host_port,
                            check: Some(w.health.clone()),
                            stop: Some(StopTimes::of(w)),
                        },
                        now,
                    );
                    state.replicas.insert(s.id, tracked);
                }
                if let Some(error) = error {
                    let pull_failed = error.contains(PULL_FAILED);
                    // Told once per run of failures, not at every retry.
                    let first = state.backoff.get(&w.key).is_none_or(|b| b.last != error);
                    if pull_failed && first {
                        notices.push(Notice {
                            key: w.key.clone(),
                            warning: true,
                            reason: "ImagePullFailed".to_owned(),
                            message: format!("replicas of release {} cannot start: {error}", w.release),
                        });
                    }
                    // One step of backoff per pass, however many things failed in it.
                    if failing.insert(w.key.clone()) {
                        self.bump_backoff(&mut state, &w.key, error.clone());
                    } else if let Some(b) = state.backoff.get_mut(&w.key) {
                        b.last.clone_from(&error);
                    }
                    messages.insert(w.key.clone(), error);
                }
            }

            // Report, and publish the routes of what is wanted.
            let mut report = ClusterReport::default();
            let mut published = BTreeMap::new();
            for (key, w) in &wanted {
                let (replicas, _) = members(&state, key);
                let counts = rollout::count(w, &replicas);
                let message = messages
                    .remove(key)
                    .or_else(|| not_ready_message(&state, w, &replicas))
                    .or_else(|| {
                        state
                            .backoff
                            .get(key)
                            .map(|b| format!("the last failure: {}", b.last))
                    });
                if !failing.contains(key) && counts.ready >= w.replicas {
                    state.backoff.remove(key);
                }
                published.insert(
                    key.clone(),
                    Published {
                        hosts: w.hosts.clone(),
                        replicas: w.replicas,
                        status: if w.replicas == 0 {
                            Some("it is scaled to 0 replicas".to_owned())
                        } else {
                            message.clone()
                        },
                    },
                );
                let crash_loop = crash_loop(&mut state, w, &replicas);
                report.workloads.push(WorkloadReport {
                    key: key.clone(),
                    counts,
                    stalled: crash_loop.is_some(),
                    message: crash_loop.or(message),
                });
            }
            state.published = published;
            shared.publish(&state);
            notices.append(&mut state.notices);
            report.notices = notices;
            Ok(report)
        }
    }

    /// Brings the bookkeeping up to date with the containers listed: forgets what is
    /// gone (reporting a removal behind Berth's back), adopts what is new.
    fn sync(&self, observed: &[Observed], now: DateTime<Utc>, notices: &mut Vec<Notice>) {
        let mut state = self.shared.lock();
        notices.append(&mut state.notices);
        let present: HashSet<&str> = observed.iter().map(|o| o.id.as_str()).collect();
        let vanished: Vec<String> = state
            .replicas
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in vanished {
            let Some(t) = state.replicas.remove(&id) else {
                continue;
            };
            let ours = state.retiring.contains_key(&id);
            let reported = state.reported_gone.remove(&id);
            if !ours && !reported {
                notices.push(t.removed_outside());
            }
        }
        state.retiring.retain(|id, _| present.contains(id.as_str()));
        state.reported_gone.retain(|id| present.contains(id.as_str()));
        for o in observed {
            match state.replicas.entry(o.id.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(Tracked::adopted(o, now));
                }
                Entry::Occupied(mut slot) => slot.get_mut().refresh(o),
            }
        }
    }

    /// Inspects running replicas of the wanted shapes and marks those whose image or
    /// limits were changed behind Berth's back; the plan then replaces them (new first).
    async fn check_drift(
        &self,
        docker: &Docker,
        observed: &[Observed],
        wanted: &BTreeMap<WorkloadKey, &Workload>,
        notices: &mut Vec<Notice>,
    ) {
        let candidates: Vec<(&Observed, &Workload)> = {
            let state = self.shared.lock();
            observed
                .iter()
                .filter(|o| o.state == ContainerState::Running && !state.retiring.contains_key(&o.id))
                .filter(|o| state.replicas.get(&o.id).is_some_and(|t| t.drift.is_none()))
                .filter_map(|o| {
                    wanted
                        .get(&o.key)
                        .filter(|w| w.spec_hash == o.spec_hash)
                        .map(|w| (o, *w))
                })
                .collect()
        };
        let inspections = join_all(
            candidates
                .iter()
                .map(|(o, _)| docker.inspect_container(&o.id, None::<InspectContainerOptions>)),
        )
        .await;
        let mut state = self.shared.lock();
        for ((o, w), inspection) in candidates.into_iter().zip(inspections) {
            let info = match inspection {
                Ok(info) => info,
                Err(error) => {
                    tracing::debug!(container = %o.name, %error, "drift check: inspect failed");
                    continue;
                }
            };
            let limits = Limits {
                image: info.config.and_then(|c| c.image),
                memory: info.host_config.as_ref().and_then(|h| h.memory),
                nano_cpus: info.host_config.as_ref().and_then(|h| h.nano_cpus),
            };
            if let Some(found) = engine::drift(w, &limits)
                && let Some(t) = state.replicas.get_mut(&o.id)
            {
                notices.push(Notice {
                    key: o.key.clone(),
                    warning: true,
                    reason: "DriftCorrected".to_owned(),
                    message: format!(
                        "replica {} (release {}) {found}, changed outside Berth; a new replica replaces it",
                        o.name, o.release
                    ),
                });
                t.drift = Some(found);
            }
        }
    }

    fn bump_backoff(&self, state: &mut State, key: &WorkloadKey, what: String) {
        let options = &self.shared.options;
        let streak = state.backoff.get(key).map_or(0, |b| b.streak).saturating_add(1);
        let delay = backoff_delay(streak, options.backoff_initial, options.backoff_max);
        state.backoff.insert(
            key.clone(),
            Backoff {
                streak,
                not_before: Instant::now() + delay,
                last: what,
            },
        );
        if !delay.is_zero() {
            // Wake the loop when the backoff ends, rather than waiting for its next tick.
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.wake();
            });
        }
    }

    /// Takes a replica out of traffic now, and stops and removes it in the background:
    /// after the drain delay if it was serving, at once if it was not running.
    fn retire(
        &self,
        docker: &Docker,
        state: &mut State,
        id: &str,
        reason: RetireReason,
        deferred: Option<Notice>,
    ) {
        let (serving, container_state, name, stop) = state
            .replicas
            .get(id)
            .map_or((false, ContainerState::Exited, id.to_owned(), None), |t| {
                (t.serving(), t.state, t.name.clone(), t.stop)
            });
        let stop = stop.unwrap_or(StopTimes {
            drain: self.shared.options.drain_delay,
            grace: self.shared.options.stop_timeout,
        });
        // Said if someone else removes it first. Made now: by the time the remove call
        // answers, a pass may already have forgotten the replica.
        let removed_outside = state
            .replicas
            .get(id)
            .filter(|_| reason.is_failure())
            .map(|t| t.removed_outside());
        // What the capture before removal needs of a failed replica.
        let failed = state.replicas.get(id).filter(|_| reason.is_failure()).cloned();
        state.retiring.insert(
            id.to_owned(),
            Retiring {
                removing: false,
                failed: reason.is_failure(),
            },
        );
        self.shared.routes.remove_backend(&self.shared.cluster, id);
        let shared = Arc::clone(&self.shared);
        let docker = docker.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if serving {
                tokio::time::sleep(stop.drain).await;
            }
            if container_state == ContainerState::Running {
                let seconds = i32::try_from(stop.grace.as_secs()).unwrap_or(i32::MAX);
                // The stop call answers when the replica has exited: up to its grace.
                if let Err(error) = docker
                    .clone()
                    .with_timeout(engine::REQUEST_TIMEOUT + stop.grace)
                    .stop_container(
                        &id,
                        Some(StopContainerOptionsBuilder::default().t(seconds).build()),
                    )
                    .await
                {
                    tracing::debug!(container = %name, %error, "stop failed; removing by force");
                }
            }
            if let Some(t) = failed {
                bury(&shared, &docker, &id, &t, reason, deferred).await;
            }
            if let Some(r) = shared.lock().retiring.get_mut(&id) {
                r.removing = true;
            }
            let removed = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            match removed {
                Ok(()) => {}
                Err(error) if engine::is_not_found(&error) => {
                    // Someone removed it first.
                    if let Some(notice) = removed_outside {
                        let mut state = shared.lock();
                        if state.reported_gone.insert(id.clone()) {
                            state.notices.push(notice);
                            drop(state);
                            shared.wake();
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(container = %name, %error, "cannot remove a retired replica; will retry");
                    shared.lock().retiring.remove(&id);
                    shared.wake();
                }
            }
        });
    }

    /// Starts `n` replicas of `w`; returns those started and, if any failed, why.
    async fn start(&self, docker: &Docker, w: &Workload, n: u32) -> (Vec<Started>, Option<String>) {
        if let Err(error) = ensure_image(docker, &w.image).await {
            return (Vec::new(), Some(error));
        }
        let results = join_all((0..n).map(|_| self.start_one(docker, w))).await;
        let mut started = Vec::new();
        let mut error = None;
        for result in results {
            match result {
                Ok(s) => started.push(s),
                Err(e) => error = Some(e),
            }
        }
        (started, error)
    }

    async fn start_one(&self, docker: &Docker, w: &Workload) -> Result<Started, String> {
        let archive = if w.config_files.is_empty() && w.secret_files.is_empty() {
            None
        } else {
            Some(engine::config_archive(w).map_err(|e| format!("cannot start a replica: {e}"))?)
        };
        let suffix = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
        let name = engine::container_name(&self.shared.cluster, w, &suffix);
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                engine::create_body(&self.shared.cluster, w),
            )
            .await
            .map_err(|e| format!("cannot create a replica of image {}: {e}", w.image))?;
        let id = created.id;
        let prepared = async {
            if let Some(tar) = archive {
                docker
                    .upload_to_container(
                        &id,
                        Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                        body_full(tar.into()),
                    )
                    .await
                    .map_err(|e| format!("cannot write the config files into {name}: {e}"))?;
            }
            docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(|e| format!("cannot start {name}: {e}"))?;
            // The port is also in the next list; an inspect that fails (Podman reports
            // states bollard cannot read) does not fail the start.
            let info = docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .ok();
            let wanted = format!("{}/tcp", w.port);
            Ok::<_, String>(
                info.and_then(|i| i.network_settings)
                    .and_then(|n| n.ports)
                    .and_then(|mut ports| ports.remove(&wanted))
                    .flatten()
                    .and_then(|bindings| {
                        bindings
                            .into_iter()
                            .find_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()))
                    }),
            )
        }
        .await;
        match prepared {
            Ok(host_port) => Ok(Started { id, name, host_port }),
            Err(error) => {
                // Leave nothing half-made behind.
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await;
                Err(error)
            }
        }
    }
}

/// Reads what ended a failed replica and its last lines (it is stopped, not yet removed),
/// keeps them in the graveyard, counts the replacement, and tells of it: the deferred
/// notice, now with the exit reason and the last lines, which also become the
/// workload's backoff message (what the deployment status shows).
async fn bury(
    shared: &Shared,
    docker: &Docker,
    id: &str,
    t: &Tracked,
    reason: RetireReason,
    deferred: Option<Notice>,
) {
    let unhealthy = matches!(reason, RetireReason::Unhealthy | RetireReason::NeverHealthy);
    let mut terminated = instances::capture(docker, &shared.cluster, id, t, unhealthy).await;
    if reason == RetireReason::NeverHealthy {
        terminated.exit.message = Some("it did not become healthy within its startup deadline".to_owned());
    }
    let exit = &terminated.exit;
    let who = format!("replica {} (release {})", t.name, t.release);
    let message = if unhealthy {
        let check = exit
            .probe
            .as_ref()
            .map(|p| format!(" (last check: {p})"))
            .unwrap_or_default();
        format!(
            "{who} was replaced: {}{check}{}",
            reason.describe(),
            exit.quoted_lines()
        )
    } else {
        format!("{who} was replaced: {}: it {}", reason.describe(), exit.explain())
    };
    let mut state = shared.lock();
    *state.replaced.entry((t.key.clone(), t.release)).or_insert(0) += 1;
    let failures = state
        .failures
        .entry((t.key.clone(), t.spec_hash.clone()))
        .or_default();
    failures.push(FailedAt {
        at: Instant::now(),
        was_healthy: t.ever_ok,
        message: message.clone(),
    });
    let from = failures.len().saturating_sub(FAILURES_KEPT);
    failures.drain(..from);
    // Shapes that stopped failing long ago are forgotten.
    state
        .failures
        .retain(|_, f| f.last().is_some_and(|l| l.at.elapsed() < FAILURES_FORGOTTEN));
    state.graveyard.bury(&t.key, terminated);
    if let Some(b) = state.backoff.get_mut(&t.key) {
        b.last.clone_from(&message);
    }
    if let Some(mut notice) = deferred {
        notice.message = message;
        state.notices.push(notice);
    }
    drop(state);
    shared.wake();
}

/// Whether the replicas of `w`'s shape crash-loop since this runtime first wanted its
/// deployment ([`berth_core::instance::crash_loops`]), and if so the sentence that fails
/// the rollout now: how many died, and the last one's exit reason and last lines.
fn crash_loop(state: &mut State, w: &Workload, replicas: &[Replica]) -> Option<String> {
    let now = Instant::now();
    let since = match state.wanted_since.get(&w.key) {
        Some((deployment, hash, at)) if *deployment == w.deployment && *hash == w.spec_hash => *at,
        _ => {
            state
                .wanted_since
                .insert(w.key.clone(), (w.deployment.clone(), w.spec_hash.clone(), now));
            now
        }
    };
    let failures = state.failures.get(&(w.key.clone(), w.spec_hash.clone()))?;
    let counted: Vec<&FailedAt> = failures.iter().filter(|f| f.at >= since).collect();
    let seen: Vec<Failure> = counted
        .iter()
        .map(|f| Failure {
            age_seconds: now.saturating_duration_since(f.at).as_secs(),
            was_healthy: f.was_healthy,
        })
        .collect();
    let healthy = replicas
        .iter()
        .filter(|r| r.spec_hash == w.spec_hash && r.health == Health::Healthy)
        .count();
    if !crash_loops(&seen, u32::try_from(healthy).unwrap_or(u32::MAX)) {
        return None;
    }
    let last = counted.last()?;
    Some(format!(
        "release {} crash-loops: {} of its replicas failed within {} s, none healthy; the last: {}",
        w.release,
        counted.len(),
        now.saturating_duration_since(counted.first().map_or(now, |f| f.at))
            .as_secs()
            + 1,
        last.message
    ))
}

/// How long the failures of a shape are kept after its last one.
const FAILURES_FORGOTTEN: Duration = Duration::from_secs(600);

/// What a start error says when the image could not be pulled.
const PULL_FAILED: &str = "cannot be pulled";

/// Pulls `image` unless it is present. Podman answers a missing image with HTTP 200 and
/// an error inside the progress stream, which bollard turns into `DockerStreamError`.
async fn ensure_image(docker: &Docker, image: &str) -> Result<(), String> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(error) if engine::is_not_found(&error) => {}
        Err(error) => return Err(format!("cannot look up image {image}: {error}")),
    }
    let (from, tag) = engine::pull_reference(image);
    let mut options = CreateImageOptionsBuilder::default().from_image(&from);
    if !tag.is_empty() {
        options = options.tag(&tag);
    }
    let mut progress = docker.create_image(Some(options.build()), None, None);
    while let Some(item) = progress.next().await {
        if let Err(error) = item {
            return Err(format!("image {image} {PULL_FAILED}: {error}"));
        }
    }
    Ok(())
}

/// The replicas of `key` that planning sees (not retiring, not being removed), and
/// whether any of them is an adopted replica whose health is not known yet.
fn members(state: &State, key: &WorkloadKey) -> (Vec<Replica>, bool) {
    let mut settling = false;
    let mut replicas: Vec<Replica> = state
        .replicas
        .iter()
        .filter(|(id, t)| {
            &t.key == key && t.state != ContainerState::Removing && !state.retiring.contains_key(*id)
        })
        .map(|(id, t)| {
            settling |= t.settling();
            t.replica(id)
        })
        .collect();
    replicas.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
    (replicas, settling)
}

/// Why new replicas of `w` are not healthy yet, from their last failed check.
fn not_ready_message(state: &State, w: &Workload, replicas: &[Replica]) -> Option<String> {
    replicas
        .iter()
        .filter(|r| r.spec_hash == w.spec_hash && r.health == Health::Starting)
        .find_map(|r| {
            let t = state.replicas.get(&r.id)?;
            let error = t.last_probe_error.as_ref()?;
            Some(format!(
                "replica {} (release {}) is not healthy yet: {error}",
                t.name, t.release
            ))
        })
}

fn retire_notice(state: &State, id: &str, reason: RetireReason) -> Option<Notice> {
    let t = state.replicas.get(id)?;
    let who = format!("replica {} (release {})", t.name, t.release);
    let outside = match (reason, t.external) {
        (RetireReason::Paused, _) | (RetireReason::Exited, Some(External::Paused)) => Some("paused"),
        (RetireReason::Exited, Some(External::Stopped)) => Some("stopped"),
        _ => None,
    };
    let (warning, kind, message) = if let Some(how) = outside {
        (
            true,
            "DriftCorrected",
            format!("{who} was {how} outside Berth; a new replica replaces it"),
        )
    } else if reason.is_failure() {
        let detail = match (reason, t.external, &t.last_probe_error) {
            (RetireReason::Exited, Some(External::Killed), _) => " (it was killed)".to_owned(),
            (RetireReason::Exited, Some(External::OutOfMemory), _) => " (it ran out of memory)".to_owned(),
            (RetireReason::Unhealthy | RetireReason::NeverHealthy, _, Some(error)) => {
                format!(" (last check: {error})")
            }
            _ => String::new(),
        };
        (
            true,
            "ReplicaReplaced",
            format!("{who} was replaced: {}{detail}", reason.describe()),
        )
    } else {
        (
            false,
            "ReplicaRetired",
            format!("{who} is retired: {}", reason.describe()),
        )
    };
    Some(Notice {
        key: t.key.clone(),
        warning,
        reason: kind.to_owned(),
        message,
    })
}

#[async_trait]
impl ClusterRuntime for LocalRuntime {
    async fn version(&self) -> Result<String, RuntimeError> {
        let docker = self.client().await?;
        let v = self.answer(docker.version(), "asking for the version of").await?;
        let product = v
            .components
            .as_ref()
            .and_then(|c| c.first())
            .map_or_else(|| "Docker Engine".to_owned(), |c| c.name.clone());
        Ok(format!(
            "{product} {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    async fn reconcile(&self, desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        let report = self.pass(desired).await?;
        *self.desired.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(desired.iter().map(|w| (w.key.clone(), w.clone())).collect());
        Ok(report)
    }

    /// A pass over one engine is one list call, so the local runtime keeps the whole
    /// desired set of its last full pass, changes `keys` in it and passes over all of it;
    /// the report is cut to the keys handed over.
    async fn apply(&self, keys: &[WorkloadKey], desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        let all: Vec<Workload> = {
            let mut last = self.desired.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(set) = last.as_mut() else {
                return Err(RuntimeError::Failed {
                    message: format!(
                        "cluster {} has had no full pass yet; the reconciler makes one first",
                        self.shared.cluster
                    ),
                });
            };
            for k in keys {
                set.remove(k);
            }
            for w in desired {
                set.insert(w.key.clone(), w.clone());
            }
            set.values().cloned().collect()
        };
        let mut report = self.pass(&all).await?;
        let wanted: HashSet<&WorkloadKey> = desired.iter().map(|w| &w.key).collect();
        report.workloads.retain(|w| wanted.contains(&w.key));
        Ok(report)
    }

    /// Replicas are probed, replaced and rolled pass by pass: about once a second.
    fn full_resync_period(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn instances(&self, key: &WorkloadKey) -> Result<Vec<Instance>, RuntimeError> {
        // Reached, or the list would only say what the last pass saw of a dead engine.
        self.client().await?;
        Ok(instances::list(&self.shared, key))
    }

    async fn logs(&self, key: &WorkloadKey, query: &LogQuery) -> Result<LogFeed, RuntimeError> {
        let docker = self.client().await?;
        self.answer(docker.ping(), "contacting").await?;
        instances::feed(Arc::clone(&self.shared), docker, key, query).await
    }

    async fn terminated(&self, key: &WorkloadKey) -> Result<Vec<Terminated>, RuntimeError> {
        Ok(self.shared.lock().graveyard.of(key))
    }
}
