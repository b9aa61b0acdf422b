//! The in-memory side of a local runtime, shared by the reconcile pass, the health prober,
//! the events watcher and retirement tasks.
//!
//! Nothing here is needed to continue after a restart: the container labels carry the
//! identity of every replica. This only holds health counters, which replicas are being
//! retired, crash-loop backoff, and notices gathered between passes. A lost `State` means
//! replicas are probed again from `Starting` (see [`Tracked::settling`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use berth_core::{
    health::{Health, HealthState},
    instance::Graveyard,
    objects::HealthCheck,
    ports::Notice,
    render::WorkloadKey,
    rollout::{Replica, ReplicaState},
};
use chrono::{DateTime, Utc};
use tokio::{sync::Notify, time::Instant};

use crate::{
    RuntimeOptions,
    engine::{ContainerState, Observed, StopTimes},
    routes::{Backend, Route, RouteTable},
};

/// What the events stream said happened to a replica, from outside Berth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum External {
    /// `docker stop`.
    Stopped,
    /// `docker pause`.
    Paused,
    /// `docker kill`.
    Killed,
    /// The kernel's OOM killer.
    OutOfMemory,
}

/// One replica Berth knows of, by container id.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub key: WorkloadKey,
    pub name: String,
    pub release: u64,
    pub spec_hash: String,
    pub created: DateTime<Utc>,
    /// When this process first saw it; the startup deadline of a replica adopted after a
    /// restart counts from here, so that the restart itself does not fail it.
    pub first_seen: DateTime<Utc>,
    /// Found running rather than started by this process.
    pub adopted: bool,
    pub state: ContainerState,
    pub host_port: Option<u16>,
    pub check: Option<HealthCheck>,
    pub health: HealthState,
    pub probes: u32,
    pub ever_ok: bool,
    pub last_probe_error: Option<String>,
    pub next_probe: Instant,
    pub probing: bool,
    pub external: Option<External>,
    /// How it differs from its workload, when someone changed it behind Berth's back.
    pub drift: Option<String>,
    /// How it stops (`None`: the runtime's defaults).
    pub stop: Option<StopTimes>,
}

impl Tracked {
    /// What Berth says when this replica was removed outside Berth.
    pub fn removed_outside(&self) -> Notice {
        Notice {
            key: self.key.clone(),
            warning: true,
            reason: "DriftCorrected".to_owned(),
            message: format!(
                "replica {} (release {}) was removed outside Berth; a new replica replaces it",
                self.name, self.release
            ),
        }
    }

    pub fn adopted(o: &Observed, now: DateTime<Utc>) -> Self {
        Self {
            key: o.key.clone(),
            name: o.name.clone(),
            release: o.release,
            spec_hash: o.spec_hash.clone(),
            created: o.created,
            first_seen: now,
            adopted: true,
            state: o.state,
            host_port: o.host_port,
            check: o.check.clone(),
            health: HealthState::default(),
            probes: 0,
            ever_ok: false,
            last_probe_error: None,
            next_probe: Instant::now(),
            probing: false,
            external: None,
            drift: None,
            stop: o.stop,
        }
    }

    pub fn started(o: &Observed, now: DateTime<Utc>) -> Self {
        Self {
            adopted: false,
            ..Self::adopted(o, now)
        }
    }

    pub fn refresh(&mut self, o: &Observed) {
        self.state = o.state;
        if o.host_port.is_some() {
            self.host_port = o.host_port;
        }
        if o.check.is_some() {
            self.check.clone_from(&o.check);
        }
    }

    /// An adopted replica whose health is not known yet: planning must not count it as
    /// "not serving" (which would retire it) until it had its chance to pass its checks.
    pub fn settling(&self) -> bool {
        let threshold = self.check.as_ref().map_or(1, |c| c.healthy_threshold.max(1));
        self.adopted
            && self.state == ContainerState::Running
            && self.host_port.is_some()
            && self.health.health() == Health::Starting
            && self.probes < threshold
    }

    pub fn serving(&self) -> bool {
        self.state == ContainerState::Running && self.health.health() == Health::Healthy
    }

    /// The core's view of this replica, for planning and counting.
    pub fn replica(&self, id: &str) -> Replica {
        let state = match self.state {
            ContainerState::Running => ReplicaState::Running,
            ContainerState::Paused => ReplicaState::Paused,
            ContainerState::Exited | ContainerState::Removing => ReplicaState::Exited,
        };
        Replica {
            id: id.to_owned(),
            release: self.release,
            // A drifted replica counts as one of another shape: the plan starts its
            // replacement first and retires it once that is healthy.
            spec_hash: if self.drift.is_some() {
                format!("{}~drifted", self.spec_hash)
            } else {
                self.spec_hash.clone()
            },
            state,
            health: if state == ReplicaState::Running {
                self.health.health()
            } else {
                Health::Starting
            },
            created_at: self.created.max(self.first_seen),
        }
    }

    /// Time until the next check: quick while a replica has never passed one, so that it
    /// takes traffic as soon as it is ready, then the workload's interval.
    pub fn probe_cadence(&self) -> Duration {
        let interval = Duration::from_secs(u64::from(
            self.check.as_ref().map_or(1, |c| c.interval_seconds.max(1)),
        ));
        if self.health.health() == Health::Starting && !self.ever_ok {
            interval.min(Duration::from_millis(250))
        } else {
            interval
        }
    }
}

/// A replica being taken out of service.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Retiring {
    /// Berth's own remove call has been issued.
    pub removing: bool,
    /// It is retired because it failed, so a new replica replaces it.
    pub failed: bool,
}

/// What the router needs about a desired workload besides its backends.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub hosts: Vec<String>,
    pub replicas: u32,
    pub status: Option<String>,
}

/// Restart backoff of a workload whose replicas keep failing.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// Passes in a row that saw a failure.
    pub streak: u32,
    pub not_before: Instant,
    pub last: String,
}

/// The delay before starting again after `streak` failing passes: none after the first
/// (a single crash is replaced at once), then doubling from `initial` up to `max`.
pub(crate) fn backoff_delay(streak: u32, initial: Duration, max: Duration) -> Duration {
    if streak <= 1 {
        return Duration::ZERO;
    }
    let doublings = streak.saturating_sub(2).min(16);
    initial.saturating_mul(1 << doublings).min(max)
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub replicas: HashMap<String, Tracked>,
    pub retiring: HashMap<String, Retiring>,
    pub published: BTreeMap<WorkloadKey, Published>,
    pub backoff: HashMap<WorkloadKey, Backoff>,
    /// Notices from background tasks, handed out by the next pass.
    pub notices: Vec<Notice>,
    /// Replicas whose outside removal was already reported.
    pub reported_gone: HashSet<String>,
    /// What Berth kept of replicas that failed: their exit reason and last lines.
    pub graveyard: Graveyard,
    /// Replicas of a workload's release replaced after a failure so far: the local
    /// runtime's restart count (it replaces an instance rather than restarting it).
    pub replaced: HashMap<(WorkloadKey, u64), u32>,
    /// Failures of replicas by workload and spec hash, newest last (bounded), for
    /// crash-loop detection.
    pub failures: HashMap<(WorkloadKey, String), Vec<FailedAt>>,
    /// When this runtime first wanted each workload's current deployment and shape:
    /// failures before belong to an earlier attempt.
    pub wanted_since: HashMap<WorkloadKey, (String, String, Instant)>,
}

/// A failure of a replica, for crash-loop detection.
#[derive(Debug, Clone)]
pub(crate) struct FailedAt {
    pub at: Instant,
    pub was_healthy: bool,
    /// What the failure notice said (exit reason and last lines).
    pub message: String,
}

/// Failures kept per workload and shape.
pub(crate) const FAILURES_KEPT: usize = 16;

/// Everything the runtime's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cluster: String,
    pub routes: RouteTable,
    pub options: RuntimeOptions,
    pub changed: Arc<Notify>,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(cluster: String, routes: RouteTable, options: RuntimeOptions) -> Self {
        Self {
            cluster,
            routes,
            options,
            changed: Arc::new(Notify::new()),
            state: Mutex::new(State::default()),
        }
    }

    /// The state; never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes whoever drives the reconcile loop.
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// Writes this cluster's routes: per desired workload, its healthy replicas that are
    /// not being retired.
    pub fn publish(&self, state: &State) {
        let routes = state
            .published
            .iter()
            .map(|(key, published)| {
                let mut backends: Vec<Backend> = state
                    .replicas
                    .iter()
                    .filter(|(id, t)| &t.key == key && t.serving() && !state.retiring.contains_key(*id))
                    .filter_map(|(id, t)| {
                        t.host_port.map(|port| Backend {
                            addr: SocketAddr::from(([127, 0, 0, 1], port)),
                            container: id.clone(),
                        })
                    })
                    .collect();
                backends.sort();
                Route {
                    key: key.clone(),
                    hosts: published.hosts.clone(),
                    backends,
                    replicas: published.replicas,
                    status: published.status.clone(),
                }
            })
            .collect();
        self.routes.set_cluster(&self.cluster, routes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_spares_the_first_failure_then_doubles_to_the_cap() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (1..=6)
            .map(|s| backoff_delay(s, initial, max).as_secs())
            .collect();
        assert_eq!(delays, [0, 1, 2, 4, 5, 5]);
        assert_eq!(backoff_delay(u32::MAX, initial, max), max);
    }

    fn observed(state: ContainerState) -> Observed {
        Observed {
            id: "c1".into(),
            name: "berth-x".into(),
            key: WorkloadKey {
                application: "web".into(),
                environment: "qa".into(),
            },
            release: 1,
            spec_hash: "h".into(),
            state,
            created: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            host_port: Some(4000),
            check: Some(HealthCheck {
                healthy_threshold: 2,
                ..HealthCheck::default()
            }),
            stop: None,
        }
    }

    #[test]
    fn an_adopted_replica_settles_before_it_counts_as_not_serving() {
        let now = Utc::now();
        let mut t = Tracked::adopted(&observed(ContainerState::Running), now);
        assert!(t.settling());
        let r = t.replica("c1");
        assert_eq!(r.created_at, now, "the startup deadline restarts at adoption");
        assert_eq!(r.health, Health::Starting);
        let check = t.check.clone().unwrap_or_default();
        t.health.record(false, &check);
        t.probes = 1;
        assert!(t.settling());
        t.probes = 2;
        assert!(!t.settling(), "two probes (the threshold) had their chance");
        t.drift = Some("memory".into());
        assert_eq!(t.replica("c1").spec_hash, "h~drifted");
    }

    #[test]
    fn starting_replicas_are_probed_quickly_until_their_first_success() {
        let mut t = Tracked::adopted(&observed(ContainerState::Running), Utc::now());
        assert_eq!(t.probe_cadence(), Duration::from_millis(250));
        t.ever_ok = true;
        assert_eq!(t.probe_cadence(), Duration::from_secs(1));
    }
}
