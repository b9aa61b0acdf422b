//! Rollout planning for runtimes that manage replicas one by one (the local runtime).
//!
//! [`plan`] compares what should run (a [`Workload`]) with the replicas observed and
//! returns the next steps. It is level-triggered: it looks only at the present, so a
//! restarted server simply plans again from what it sees. The rules:
//!
//! - dead, paused, unhealthy or never-healthy replicas are replaced;
//! - new replicas start before old ones stop (surge of a quarter, at least one), and old
//!   replicas stop only while the healthy count stays at or above the desired count;
//! - replicas of another shape (release, image, env, files…) are old replicas.

use chrono::{DateTime, Utc};

use crate::{health::Health, render::Workload};

/// The container-level state of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// The process runs.
    Running,
    /// Someone paused it.
    Paused,
    /// The process ended (or the container was never started).
    Exited,
}

/// A replica as observed on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Runtime identifier.
    pub id: String,
    /// Release it runs.
    pub release: u64,
    /// Hash of the workload shape it was created from.
    pub spec_hash: String,
    /// Container state.
    pub state: ReplicaState,
    /// Health from Berth's checks.
    pub health: Health,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Why a replica is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// Its process ended.
    Exited,
    /// It was paused behind Berth's back.
    Paused,
    /// It failed its health checks.
    Unhealthy,
    /// It never became healthy within the startup deadline.
    NeverHealthy,
    /// It runs another release or shape, and the new one is ready to take over.
    Replaced,
    /// There are more replicas than desired.
    ScaledDown,
    /// Nothing should run here any more.
    Undeployed,
}

impl RetireReason {
    /// Whether the replica failed (as opposed to being retired by plan).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::Exited | Self::Paused | Self::Unhealthy | Self::NeverHealthy
        )
    }

    /// A few words for events and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Exited => "its process exited",
            Self::Paused => "it was paused outside Berth",
            Self::Unhealthy => "it failed its health checks",
            Self::NeverHealthy => "it did not become healthy in time",
            Self::Replaced => "a newer replica took over",
            Self::ScaledDown => "fewer replicas are wanted",
            Self::Undeployed => "the application no longer runs here",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start this many new replicas of the workload.
    Start(u32),
    /// Take a replica out of traffic and remove it.
    Retire {
        /// The replica.
        id: String,
        /// Why.
        reason: RetireReason,
    },
}

/// Counts of a workload's replicas, for rollout progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Replicas of the desired shape, alive.
    pub updated: u32,
    /// Of those, healthy.
    pub ready: u32,
    /// Replicas of another shape still alive.
    pub old: u32,
}

/// Extra replicas allowed during a rollout: a quarter of the desired count, at least one.
#[must_use]
pub fn max_surge(replicas: u32) -> u32 {
    replicas.div_ceil(4).max(1)
}

fn failure(r: &Replica, startup_deadline_seconds: u32, now: DateTime<Utc>) -> Option<RetireReason> {
    match (r.state, r.health) {
        (ReplicaState::Exited, _) => Some(RetireReason::Exited),
        (ReplicaState::Paused, _) => Some(RetireReason::Paused),
        (_, Health::Unhealthy) => Some(RetireReason::Unhealthy),
        (_, Health::Starting) if (now - r.created_at).num_seconds() > i64::from(startup_deadline_seconds) => {
            Some(RetireReason::NeverHealthy)
        }
        _ => None,
    }
}

/// Counts replicas against the desired shape.
#[must_use]
pub fn count(desired: &Workload, replicas: &[Replica]) -> Counts {
    let mut c = Counts::default();
    for r in replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Running && r.health != Health::Unhealthy)
    {
        if r.spec_hash == desired.spec_hash {
            c.updated += 1;
            c.ready += u32::from(r.health == Health::Healthy);
        } else {
            c.old += 1;
        }
    }
    c
}

/// The next steps that bring `replicas` closer to `desired` (`None`: run nothing).
#[must_use]
pub fn plan(desired: Option<&Workload>, replicas: &[Replica], now: DateTime<Utc>) -> Vec<Step> {
    let Some(w) = desired else {
        return replicas
            .iter()
            .map(|r| Step::Retire {
                id: r.id.clone(),
                reason: RetireReason::Undeployed,
            })
            .collect();
    };
    let mut steps = Vec::new();
    let (mut current, mut old) = (Vec::new(), Vec::new());
    for r in replicas {
        if let Some(reason) = failure(r, w.startup_deadline_seconds, now) {
            steps.push(Step::Retire {
                id: r.id.clone(),
                reason,
            });
        } else if r.spec_hash == w.spec_hash {
            current.push(r);
        } else {
            old.push(r);
        }
    }
    let n = w.replicas;
    let ready = |rs: &[&Replica]| {
        u32::try_from(rs.iter().filter(|r| r.health == Health::Healthy).count()).unwrap_or(u32::MAX)
    };
    let len = |rs: &[&Replica]| u32::try_from(rs.len()).unwrap_or(u32::MAX);

    // Start what is missing, within the surge allowance while old replicas still run.
    let missing = n.saturating_sub(len(&current));
    let start = if old.is_empty() {
        missing
    } else {
        let room = (n + max_surge(n)).saturating_sub(len(&current) + len(&old));
        missing.min(room)
    };
    if start > 0 {
        steps.push(Step::Start(start));
    }

    // Stop old replicas while the healthy count stays at or above what is wanted;
    // the ones that serve nothing go first.
    let mut available = ready(&current) + ready(&old);
    old.sort_by_key(|r| (r.health == Health::Healthy, r.created_at));
    for r in old {
        if r.health != Health::Healthy {
            steps.push(Step::Retire {
                id: r.id.clone(),
                reason: RetireReason::Replaced,
            });
        } else if available > n {
            available -= 1;
            steps.push(Step::Retire {
                id: r.id.clone(),
                reason: RetireReason::Replaced,
            });
        }
    }

    // Scale down: drop surplus replicas of the desired shape, unready and newest first,
    // never below the wanted number of healthy ones.
    if len(&current) > n {
        let mut surplus = len(&current) - n;
        let mut ready_now = ready(&current);
        current.sort_by_key(|r| (r.health == Health::Healthy, std::cmp::Reverse(r.created_at)));
        for r in current {
            if surplus == 0 {
                break;
            }
            let healthy = r.health == Health::Healthy;
            if healthy && ready_now <= n {
                continue;
            }
            ready_now -= u32::from(healthy);
            surplus -= 1;
            steps.push(Step::Retire {
                id: r.id.clone(),
                reason: RetireReason::ScaledDown,
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{objects::HealthCheck, render::WorkloadKey};

    fn workload(replicas: u32) -> Workload {
        Workload {
            key: WorkloadKey {
                application: "web".into(),
                environment: "qa".into(),
            },
            cluster: "local".into(),
            deployment: "web-qa-2".into(),
            release: 2,
            image: "img".into(),
            command: None,
            args: None,
            port: 8080,
            env: Default::default(),
            config_files: vec![],
            cpu_millis: None,
            memory_bytes: None,
            health: HealthCheck::default(),
            replicas,
            hosts: vec![],
            startup_deadline_seconds: 60,
            spec_hash: "new".into(),
            ..Workload::default()
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn replica(id: &str, hash: &str, health: Health) -> Replica {
        Replica {
            id: id.into(),
            release: if hash == "new" { 2 } else { 1 },
            spec_hash: hash.into(),
            state: ReplicaState::Running,
            health,
            created_at: t(0),
        }
    }

    fn retired(steps: &[Step]) -> Vec<&str> {
        steps
            .iter()
            .filter_map(|s| {
                if let Step::Retire { id, .. } = s {
                    Some(id.as_str())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn first_deploy_starts_everything() {
        assert_eq!(plan(Some(&workload(3)), &[], t(1)), [Step::Start(3)]);
    }

    #[test]
    fn steady_state_does_nothing() {
        let rs = [
            replica("a", "new", Health::Healthy),
            replica("b", "new", Health::Healthy),
        ];
        assert!(plan(Some(&workload(2)), &rs, t(1)).is_empty());
    }

    #[test]
    fn rolling_update_surges_then_retires_only_what_is_covered() {
        let w = workload(4);
        let old: Vec<_> = (0..4)
            .map(|i| replica(&format!("o{i}"), "old", Health::Healthy))
            .collect();
        // Surge of one: start one new, stop nothing.
        assert_eq!(plan(Some(&w), &old, t(1)), [Step::Start(1)]);
        // The new one is starting: nothing more until it is healthy.
        let mut rs = old.clone();
        rs.push(replica("n0", "new", Health::Starting));
        assert!(plan(Some(&w), &rs, t(2)).is_empty());
        // Healthy: one old may go (5 ready > 4 wanted); no room to start yet.
        rs[4].health = Health::Healthy;
        let steps = plan(Some(&w), &rs, t(3));
        assert_eq!(retired(&steps), ["o0"]);
        assert!(!steps.contains(&Step::Start(1)));
    }

    #[test]
    fn a_release_that_never_gets_healthy_keeps_the_old_serving() {
        let w = workload(2);
        let mut rs = vec![
            replica("o0", "old", Health::Healthy),
            replica("o1", "old", Health::Healthy),
        ];
        rs.push(replica("n0", "new", Health::Starting));
        for now in [t(5), t(30), t(59)] {
            assert!(retired(&plan(Some(&w), &rs, now)).is_empty());
        }
        // Past the startup deadline the new replica is replaced; the old ones stay.
        let steps = plan(Some(&w), &rs, t(61));
        assert_eq!(
            steps,
            [
                Step::Retire {
                    id: "n0".into(),
                    reason: RetireReason::NeverHealthy
                },
                Step::Start(1)
            ]
        );
    }

    #[test]
    fn dead_and_paused_replicas_are_replaced() {
        let mut dead = replica("a", "new", Health::Healthy);
        dead.state = ReplicaState::Exited;
        let mut paused = replica("b", "new", Health::Healthy);
        paused.state = ReplicaState::Paused;
        let steps = plan(Some(&workload(2)), &[dead, paused], t(1));
        assert_eq!(
            steps,
            [
                Step::Retire {
                    id: "a".into(),
                    reason: RetireReason::Exited
                },
                Step::Retire {
                    id: "b".into(),
                    reason: RetireReason::Paused
                },
                Step::Start(2)
            ]
        );
    }

    #[test]
    fn scale_down_drops_unready_first_and_keeps_enough_healthy() {
        let rs = [
            replica("a", "new", Health::Healthy),
            replica("b", "new", Health::Starting),
            replica("c", "new", Health::Healthy),
        ];
        assert_eq!(retired(&plan(Some(&workload(2)), &rs, t(1))), ["b"]);
        assert_eq!(retired(&plan(Some(&workload(1)), &rs, t(1))).len(), 2);
    }

    #[test]
    fn rollback_removes_unready_new_replicas_at_once() {
        // The desired shape is "old" again (a rollback); the failed new replica goes.
        let mut w = workload(1);
        w.spec_hash = "old".into();
        let rs = [
            replica("o0", "old", Health::Healthy),
            replica("n0", "new", Health::Starting),
        ];
        assert_eq!(retired(&plan(Some(&w), &rs, t(1))), ["n0"]);
    }

    #[test]
    fn undeploy_retires_all() {
        let rs = [replica("a", "new", Health::Healthy)];
        assert_eq!(retired(&plan(None, &rs, t(1))), ["a"]);
    }

    #[test]
    fn counts() {
        let rs = [
            replica("a", "new", Health::Healthy),
            replica("b", "new", Health::Starting),
            replica("c", "old", Health::Healthy),
        ];
        assert_eq!(
            count(&workload(2), &rs),
            Counts {
                updated: 2,
                ready: 1,
                old: 1
            }
        );
    }
}
