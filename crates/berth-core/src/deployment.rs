//! The life of a deployment: which one governs an application in an environment, and
//! how its phase follows from the progress the clusters report.
//!
//! ```text
//!  Pending ──first report──▶ Progressing ──all clusters complete──▶ Succeeded
//!                                │
//!                                └──deadline passed──▶ Failed (previous release serves)
//!  (any non-final) ──newer deployment──▶ Superseded
//!  (any) ──application deleted──▶ retired: kept as history, governs nothing
//! ```

use chrono::{DateTime, Utc};

use crate::objects::{ClusterProgress, Deployment, DeploymentPhase, DeploymentStatus};

/// The deployment that decides what runs: the newest one that has not failed and was
/// not retired (its application deleted). `deployments` are those of one application in
/// one environment, in any order.
#[must_use]
pub fn governing(deployments: &[Deployment]) -> Option<&Deployment> {
    deployments
        .iter()
        .filter(|d| d.status.phase != DeploymentPhase::Failed && d.status.retired_at.is_none())
        .max_by_key(|d| d.spec.number)
}

/// The newest deployment that succeeded and was not retired, if any.
#[must_use]
pub fn last_succeeded(deployments: &[Deployment]) -> Option<&Deployment> {
    deployments
        .iter()
        .filter(|d| d.status.phase == DeploymentPhase::Succeeded && d.status.retired_at.is_none())
        .max_by_key(|d| d.spec.number)
}

/// The environments an application runs in: those where a deployment governs.
/// `deployments` are the application's, in any environment; sorted, without repeats.
#[must_use]
pub fn running_environments(deployments: &[Deployment]) -> Vec<String> {
    let mut envs: Vec<&str> = deployments.iter().map(|d| d.spec.environment.as_str()).collect();
    envs.sort_unstable();
    envs.dedup();
    envs.into_iter()
        .filter(|env| {
            let of_env: Vec<Deployment> = deployments
                .iter()
                .filter(|d| d.spec.environment == *env)
                .cloned()
                .collect();
            governing(&of_env).is_some()
        })
        .map(str::to_owned)
        .collect()
}

/// What deleting the application does to one of its deployments: it stays as history,
/// marked retired at `now` so that it governs nothing (the reconciler then stops the
/// replicas, and a re-created application of the same name starts from nothing). A
/// rollout still under way ends as superseded.
#[must_use]
pub fn retire(deployment: &Deployment, now: DateTime<Utc>) -> Option<DeploymentStatus> {
    if deployment.status.retired_at.is_some() {
        return None;
    }
    let mut status = deployment.status.clone();
    status.retired_at = Some(now);
    if !status.phase.is_final() {
        status.phase = DeploymentPhase::Superseded;
        status.message = Some("stopped: the application was deleted".to_owned());
        status.finished_at = Some(now);
    }
    Some(status)
}

/// A change of phase worth an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseChange {
    /// The new phase.
    pub phase: DeploymentPhase,
    /// Why, for people.
    pub message: String,
}

/// The status that follows from `progress` at `now`, and the phase change if there is one.
#[must_use]
pub fn advance(
    deployment: &Deployment,
    progress: Vec<ClusterProgress>,
    deadline_seconds: u32,
    now: DateTime<Utc>,
) -> (DeploymentStatus, Option<PhaseChange>) {
    let old = &deployment.status;
    let mut status = DeploymentStatus {
        clusters: progress,
        ..old.clone()
    };
    if old.phase.is_final() {
        return (old.clone(), None);
    }
    let started = *status.started_at.get_or_insert(now);
    let complete = !status.clusters.is_empty() && status.clusters.iter().all(ClusterProgress::is_complete);
    let release = deployment.spec.release;
    let change = if complete {
        let replicas: u32 = status.clusters.iter().map(|c| c.ready).sum();
        Some(PhaseChange {
            phase: DeploymentPhase::Succeeded,
            message: format!(
                "release {release} runs {replicas} healthy replica(s) on {} cluster(s)",
                status.clusters.len()
            ),
        })
    } else if (now - started).num_seconds() > i64::from(deadline_seconds) {
        let behind: Vec<String> = status
            .clusters
            .iter()
            .filter(|c| !c.is_complete())
            .map(|c| {
                let why = c.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                format!("{} has {}/{} healthy{why}", c.cluster, c.ready, c.desired)
            })
            .collect();
        Some(PhaseChange {
            phase: DeploymentPhase::Failed,
            message: format!(
                "release {release} did not become healthy within {deadline_seconds}s ({})",
                behind.join("; ")
            ),
        })
    } else if old.phase == DeploymentPhase::Pending {
        Some(PhaseChange {
            phase: DeploymentPhase::Progressing,
            message: format!("rolling out release {release}"),
        })
    } else {
        None
    };
    if let Some(c) = &change {
        status.phase = c.phase;
        status.message = Some(c.message.clone());
        if c.phase.is_final() {
            status.finished_at = Some(now);
        }
    }
    (status, change)
}

/// The status after a runtime reported that the rollout cannot complete (e.g. Kubernetes'
/// `ProgressDeadlineExceeded`): the deployment fails at once with `reason`, instead of
/// waiting for Berth's own deadline. Final deployments stay as they are.
#[must_use]
pub fn fail_stalled(
    deployment: &Deployment,
    progress: Vec<ClusterProgress>,
    reason: &str,
    now: DateTime<Utc>,
) -> (DeploymentStatus, Option<PhaseChange>) {
    let old = &deployment.status;
    if old.phase.is_final() {
        return (old.clone(), None);
    }
    let mut status = DeploymentStatus {
        clusters: progress,
        ..old.clone()
    };
    status.started_at.get_or_insert(now);
    let message = format!("release {} failed to roll out: {reason}", deployment.spec.release);
    status.phase = DeploymentPhase::Failed;
    status.message = Some(message.clone());
    status.finished_at = Some(now);
    (
        status,
        Some(PhaseChange {
            phase: DeploymentPhase::Failed,
            message,
        }),
    )
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::objects::{DeploymentCause, DeploymentSpec};

    fn dep(number: u64, phase: DeploymentPhase) -> Deployment {
        let mut d = Deployment::new(
            format!("web-qa-{number}"),
            DeploymentSpec {
                application: "web".into(),
                environment: "qa".into(),
                release: number,
                number,
                cause: DeploymentCause::Deploy,
                requested_by: None,
            },
        );
        d.status.phase = phase;
        d
    }

    fn progress(ready: u32, old: u32) -> Vec<ClusterProgress> {
        vec![ClusterProgress {
            cluster: "local".into(),
            datacenter: "dc1".into(),
            desired: 2,
            updated: 2,
            ready,
            old,
            message: None,
        }]
    }

    #[test]
    fn the_newest_deployment_that_did_not_fail_governs() {
        let ds = [
            dep(1, DeploymentPhase::Succeeded),
            dep(2, DeploymentPhase::Failed),
        ];
        assert_eq!(governing(&ds).unwrap().spec.number, 1);
        let ds = [
            dep(1, DeploymentPhase::Succeeded),
            dep(3, DeploymentPhase::Pending),
            dep(2, DeploymentPhase::Failed),
        ];
        assert_eq!(governing(&ds).unwrap().spec.number, 3);
        assert_eq!(last_succeeded(&ds).unwrap().spec.number, 1);
    }

    #[test]
    fn retired_deployments_govern_nothing_and_stay_as_history() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut ds = vec![
            dep(1, DeploymentPhase::Succeeded),
            dep(2, DeploymentPhase::Progressing),
        ];
        assert_eq!(running_environments(&ds), ["qa"]);
        for d in &mut ds {
            d.status = retire(d, now).unwrap();
        }
        assert!(governing(&ds).is_none());
        assert!(last_succeeded(&ds).is_none());
        assert!(running_environments(&ds).is_empty());
        assert_eq!(
            ds[0].status.phase,
            DeploymentPhase::Succeeded,
            "history keeps its outcome"
        );
        assert_eq!(
            ds[1].status.phase,
            DeploymentPhase::Superseded,
            "an unfinished rollout ends"
        );
        assert_eq!(retire(&ds[0], now), None, "retiring twice changes nothing");
        // A re-created application's first deployment governs on its own.
        ds.push(dep(3, DeploymentPhase::Pending));
        assert_eq!(governing(&ds).unwrap().spec.number, 3);
    }

    #[test]
    fn phases_follow_progress_and_deadline() {
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let d = dep(2, DeploymentPhase::Pending);
        let (s, c) = advance(&d, progress(0, 2), 60, t0);
        assert_eq!(c.unwrap().phase, DeploymentPhase::Progressing);
        assert_eq!(s.started_at, Some(t0));

        let mut d = d;
        d.status = s;
        let (s, c) = advance(&d, progress(1, 1), 60, t0 + Duration::seconds(10));
        assert_eq!((s.phase, c), (DeploymentPhase::Progressing, None));

        let (s, c) = advance(&d, progress(2, 0), 60, t0 + Duration::seconds(20));
        assert_eq!(c.unwrap().phase, DeploymentPhase::Succeeded);
        assert!(s.finished_at.is_some());

        let (s, c) = advance(&d, progress(1, 2), 60, t0 + Duration::seconds(61));
        let c = c.unwrap();
        assert_eq!(
            (s.phase, c.phase),
            (DeploymentPhase::Failed, DeploymentPhase::Failed)
        );
        assert!(c.message.contains("local has 1/2 healthy"), "{}", c.message);
    }

    #[test]
    fn final_phases_stay() {
        let d = dep(1, DeploymentPhase::Succeeded);
        let (s, c) = advance(&d, progress(0, 0), 60, Utc::now());
        assert_eq!((s.phase, c), (DeploymentPhase::Succeeded, None));
    }

    #[test]
    fn a_stalled_rollout_fails_at_once() {
        let d = dep(2, DeploymentPhase::Progressing);
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let (status, change) = fail_stalled(&d, vec![], "prod: ProgressDeadlineExceeded", now);
        assert_eq!(status.phase, DeploymentPhase::Failed);
        assert_eq!(change.map(|c| c.phase), Some(DeploymentPhase::Failed));
        assert!(
            status
                .message
                .unwrap_or_default()
                .contains("ProgressDeadlineExceeded")
        );
        let done = dep(2, DeploymentPhase::Succeeded);
        assert_eq!(fail_stalled(&done, vec![], "x", now).1, None);
    }
}
