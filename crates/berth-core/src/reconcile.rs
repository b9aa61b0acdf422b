//! Pure decisions of the reconciler for one (application, environment) key: what each
//! cluster should run, which deployments a newer one replaced, and how the governing
//! deployment's status follows from what the clusters reported.
//!
//! The reconciler (berth-server) loads, calls these, and applies the result: it talks to
//! the store and the runtimes, and decides nothing itself.
//!
//! ```text
//!  governing deployment + release + environment ──desired──▶ Workload per cluster
//!  reports of the clusters (or why there is none) ──progress──▶ new status + events
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{
    Kind,
    deployment::{PhaseChange, advance, fail_stalled, governing},
    objects::{ClusterProgress, Deployment, DeploymentKind, DeploymentPhase, Environment, NewEvent, Release},
    ports::WorkloadReport,
    render::{Workload, render},
};

/// The workloads a key should run: one per cluster of the environment, rendered from
/// the governing deployment's release (governance, secrets and quota, is added by the
/// caller, who holds the keys).
#[must_use]
pub fn desired(
    release: &Release,
    governing: &Deployment,
    env: &Environment,
    domain: &str,
) -> Vec<(String, Workload)> {
    env.spec
        .clusters
        .iter()
        .map(|p| {
            (
                p.cluster.clone(),
                render(release, governing, env, &p.cluster, domain),
            )
        })
        .collect()
}

/// The deployments of one key that a newer one replaced before they finished, marked
/// Superseded at `now`, each with its event.
#[must_use]
pub fn superseded(deployments: &[Deployment], now: DateTime<Utc>) -> Vec<(Deployment, NewEvent)> {
    let Some(g) = governing(deployments) else {
        return Vec::new();
    };
    deployments
        .iter()
        .filter(|d| d.spec.number < g.spec.number && !d.status.phase.is_final())
        .map(|d| {
            let mut d = d.clone();
            d.status.phase = DeploymentPhase::Superseded;
            let message = format!("deployment {} replaced it before it finished", g.metadata.name);
            d.status.message = Some(message.clone());
            d.status.finished_at = Some(now);
            let event = NewEvent::normal("Superseded", DeploymentKind::KIND, d.name(), "berth", message)
                .about(&d.spec.application, Some(&d.spec.environment));
            (d, event)
        })
        .collect()
}

/// What one cluster of the environment said about the key.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// The cluster reported the workload.
    Reported(&'a WorkloadReport),
    /// No report: the cluster is unreachable (with the error) or not yet heard from.
    Missing(Option<&'a str>),
}

/// One cluster's input to [`progress`].
#[derive(Debug, Clone)]
pub struct ClusterInput<'a> {
    /// The cluster.
    pub cluster: &'a str,
    /// Its datacenter.
    pub datacenter: &'a str,
    /// Replicas the key's workload wants there (0 without a workload).
    pub desired: u32,
    /// What it said.
    pub seen: Seen<'a>,
}

/// The next status of a governing deployment, with its events.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The deployment with its new status.
    pub deployment: Deployment,
    /// The phase change, if there is one.
    pub change: Option<PhaseChange>,
    /// The events that say so.
    pub events: Vec<NewEvent>,
}

impl Progress {
    /// Whether the deployment failed now and the environment rolls back on failure.
    #[must_use]
    pub fn rolls_back(&self, env: &Environment) -> bool {
        env.spec.rollout.auto_rollback
            && self
                .change
                .as_ref()
                .is_some_and(|c| c.phase == DeploymentPhase::Failed)
    }
}

/// How the governing deployment `g` stands after the clusters of `env` said `clusters`
/// (in the environment's order); `None` when nothing changes.
#[must_use]
pub fn progress(
    g: &Deployment,
    env: &Environment,
    clusters: &[ClusterInput<'_>],
    now: DateTime<Utc>,
) -> Option<Progress> {
    let mut out = Vec::new();
    // A runtime that knows the rollout cannot complete (Kubernetes' progress deadline
    // passed) fails the deployment now rather than at Berth's deadline.
    let mut stalled: Vec<String> = Vec::new();
    for c in clusters {
        let mut cp = ClusterProgress {
            cluster: c.cluster.to_owned(),
            datacenter: c.datacenter.to_owned(),
            desired: c.desired,
            ..ClusterProgress::default()
        };
        match c.seen {
            Seen::Reported(w) => {
                cp.updated = w.counts.updated;
                cp.ready = w.counts.ready;
                cp.old = w.counts.old;
                cp.message.clone_from(&w.message);
                if w.stalled {
                    stalled.push(format!(
                        "{}: {}",
                        c.cluster,
                        w.message.as_deref().unwrap_or("the rollout stalled")
                    ));
                }
            }
            Seen::Missing(why) => {
                // Keep what was last seen and say why.
                if let Some(last) = g.status.clusters.iter().find(|l| l.cluster == c.cluster) {
                    cp = ClusterProgress {
                        desired: c.desired,
                        ..last.clone()
                    };
                }
                cp.message = Some(why.map_or_else(
                    || "waiting for the cluster".to_owned(),
                    |e| format!("cluster unreachable: {e}"),
                ));
            }
        }
        out.push(cp);
    }
    let deadline = env.spec.rollout.progress_deadline_seconds;
    let (status, change) = if stalled.is_empty() {
        advance(g, out, deadline, now)
    } else {
        fail_stalled(g, out, &stalled.join("; "), now)
    };
    if status == g.status {
        return None;
    }
    let mut updated = g.clone();
    updated.status = status;
    let (app, env_name) = (&g.spec.application, &g.spec.environment);
    let event = match &change {
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
            make(reason, DeploymentKind::KIND, g.name(), "berth", c.message.clone())
        }
        None => {
            let counts: Vec<String> = updated
                .status
                .clusters
                .iter()
                .map(|c| format!("{} {}/{} ready, {} old", c.cluster, c.ready, c.desired, c.old))
                .collect();
            NewEvent::normal(
                "RolloutProgress",
                DeploymentKind::KIND,
                g.name(),
                "berth",
                counts.join("; "),
            )
        }
    }
    .about(app, Some(env_name));
    Some(Progress {
        deployment: updated,
        change,
        events: vec![event],
    })
}

/// Replica counts each cluster should run for a key, from its desired workloads.
#[must_use]
pub fn wanted_replicas(desired: &[(String, Workload)]) -> BTreeMap<&str, u32> {
    desired.iter().map(|(c, w)| (c.as_str(), w.replicas)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        objects::{ApplicationSpec, DeploymentSpec, EnvironmentSpec, Placement, ReleaseOrigin},
        rollout::Counts,
    };

    const IMAGE: &str =
        "127.0.0.1:5000/web@sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn env(clusters: &[&str]) -> Environment {
        Environment::new(
            "qa",
            EnvironmentSpec {
                clusters: clusters
                    .iter()
                    .map(|c| Placement {
                        cluster: (*c).to_owned(),
                        weight: 1,
                    })
                    .collect(),
                ..EnvironmentSpec::default()
            },
        )
    }

    fn deployment(number: u64, release: u64) -> Deployment {
        Deployment::new(
            format!("web-qa-{number}"),
            DeploymentSpec {
                application: "web".into(),
                environment: "qa".into(),
                release,
                number,
                cause: Default::default(),
                requested_by: None,
            },
        )
    }

    fn release() -> Release {
        let template: ApplicationSpec = serde_json::from_value(serde_json::json!({"image": IMAGE})).unwrap();
        Release::of("web", 1, template, ReleaseOrigin::default())
    }

    #[test]
    fn one_workload_per_cluster_of_the_environment() {
        let e = env(&["a", "b"]);
        let d = desired(&release(), &deployment(1, 1), &e, "localhost");
        let names: Vec<&str> = d.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(
            d.iter()
                .all(|(_, w)| w.key.application == "web" && w.key.environment == "qa")
        );
    }

    #[test]
    fn only_older_unfinished_deployments_are_superseded() {
        let mut done = deployment(1, 1);
        done.status.phase = DeploymentPhase::Succeeded;
        let running = deployment(2, 1);
        let newest = deployment(3, 1);
        let out = superseded(&[done, running, newest], Utc::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.metadata.name, "web-qa-2");
        assert_eq!(out[0].0.status.phase, DeploymentPhase::Superseded);
        assert_eq!(out[0].1.reason, "Superseded");
    }

    #[test]
    fn every_cluster_ready_succeeds_and_a_missing_one_waits() {
        let e = env(&["a", "b"]);
        let g = deployment(1, 1);
        let ready = WorkloadReport {
            counts: Counts {
                updated: 1,
                ready: 1,
                old: 0,
            },
            ..WorkloadReport::default()
        };
        let input = |seen_b| {
            vec![
                ClusterInput {
                    cluster: "a",
                    datacenter: "dc1",
                    desired: 1,
                    seen: Seen::Reported(&ready),
                },
                ClusterInput {
                    cluster: "b",
                    datacenter: "dc2",
                    desired: 1,
                    seen: seen_b,
                },
            ]
        };
        let p = progress(&g, &e, &input(Seen::Reported(&ready)), Utc::now()).unwrap();
        assert_eq!(p.deployment.status.phase, DeploymentPhase::Succeeded);
        assert_eq!(p.events[0].reason, "RolloutSucceeded");

        let p = progress(&g, &e, &input(Seen::Missing(Some("refused"))), Utc::now()).unwrap();
        assert_ne!(p.deployment.status.phase, DeploymentPhase::Succeeded);
        let b = &p.deployment.status.clusters[1];
        assert_eq!(b.message.as_deref(), Some("cluster unreachable: refused"));
        // The same input again changes nothing: no write, no event.
        assert!(
            progress(
                &p.deployment,
                &e,
                &input(Seen::Missing(Some("refused"))),
                Utc::now()
            )
            .is_none()
        );
    }

    #[test]
    fn a_stalled_cluster_fails_the_deployment_and_may_roll_back() {
        let mut e = env(&["a"]);
        e.spec.rollout.auto_rollback = true;
        let stalled = WorkloadReport {
            stalled: true,
            message: Some("ProgressDeadlineExceeded".into()),
            ..WorkloadReport::default()
        };
        let input = [ClusterInput {
            cluster: "a",
            datacenter: "",
            desired: 1,
            seen: Seen::Reported(&stalled),
        }];
        let p = progress(&deployment(1, 1), &e, &input, Utc::now()).unwrap();
        assert_eq!(p.deployment.status.phase, DeploymentPhase::Failed);
        assert!(p.rolls_back(&e));
        e.spec.rollout.auto_rollback = false;
        assert!(!p.rolls_back(&e));
    }
}
