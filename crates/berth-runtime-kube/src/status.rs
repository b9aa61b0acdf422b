//! Rollout status, honestly, from a Deployment as the API server reports it. Pure.
//!
//! Only a status whose `observedGeneration` has caught up with the spec says anything
//! about the release Berth applied; until then every replica counts as old. The
//! `Progressing` condition with reason `ProgressDeadlineExceeded` means Kubernetes gave
//! up: the rollout is reported as stalled and the deployment fails.

use std::collections::HashMap;

use berth_core::{render::Workload, rollout::Counts};
use serde_json::Value;

/// What a Deployment says about its rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Replica counts for the reconciler.
    pub counts: Counts,
    /// Why it is not done, when something is wrong.
    pub message: Option<String>,
    /// Kubernetes gave up (`ProgressDeadlineExceeded`).
    pub stalled: bool,
    /// Still rolling out (the observed generation is current, not complete, not stalled).
    pub in_progress: bool,
}

fn count(v: &Value) -> u32 {
    v.as_u64().map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// What a rollout needs of a Deployment: its generation and the part of its status that
/// says how far the rollout is. The watch keeps this for every Deployment of a cluster
/// (tens of thousands), so it keeps nothing else of the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentState {
    /// `metadata.generation`.
    pub generation: u64,
    /// `status.observedGeneration`.
    pub observed_generation: u64,
    /// `status.replicas`.
    pub replicas: u32,
    /// `status.updatedReplicas`.
    pub updated: u32,
    /// `status.availableReplicas`.
    pub available: u32,
    /// The `Progressing` condition is False for `ProgressDeadlineExceeded`: Kubernetes
    /// gave up; its message, if it has one.
    pub deadline_exceeded: Option<Option<String>>,
    /// The message of a `ReplicaFailure` condition that is True.
    pub replica_failure: Option<String>,
}

impl DeploymentState {
    /// The state of a Deployment of `generation` whose status is `status`.
    #[must_use]
    pub fn of(generation: u64, status: Option<&Value>) -> Self {
        let status = status.unwrap_or(&Value::Null);
        let conditions = status["conditions"].as_array().map_or(&[][..], Vec::as_slice);
        let progressing = conditions.iter().find(|c| c["type"] == "Progressing");
        let message = |c: &Value| c["message"].as_str().map(str::to_owned);
        Self {
            generation,
            observed_generation: status["observedGeneration"].as_u64().unwrap_or(0),
            replicas: count(&status["replicas"]),
            updated: count(&status["updatedReplicas"]),
            available: count(&status["availableReplicas"]),
            deadline_exceeded: progressing
                .filter(|c| c["status"] == "False" && c["reason"] == "ProgressDeadlineExceeded")
                .map(message),
            replica_failure: conditions
                .iter()
                .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
                .and_then(message),
        }
    }

    /// The state of the Deployment `d`, a whole object.
    #[must_use]
    pub fn of_object(d: &Value) -> Self {
        Self::of(d["metadata"]["generation"].as_u64().unwrap_or(0), d.get("status"))
    }
}

/// The rollout of `w` as the Deployment's state `d` shows it.
#[must_use]
pub fn rollout(w: &Workload, d: &DeploymentState) -> Rollout {
    if d.observed_generation < d.generation {
        return Rollout {
            counts: Counts {
                updated: 0,
                ready: 0,
                old: d.replicas,
            },
            message: None,
            stalled: false,
            in_progress: true,
        };
    }
    let old = d.replicas.saturating_sub(d.updated);
    // Available pods of the old ReplicaSets count first: what is left is a lower bound
    // on the available pods of the new one.
    let mut ready = d.updated.min(d.available.saturating_sub(old));
    let mut updated_n = d.updated;
    if w.autoscaling.is_some() {
        // The autoscaler may run more than the minimum Berth asks for: that is done, too.
        updated_n = updated_n.min(w.replicas);
        ready = ready.min(w.replicas);
    }
    let stalled = d.deadline_exceeded.is_some();
    // The ReplicaSet controller could not create pods at all (a quota or admission refused
    // them): the only place that says why is its condition.
    let replica_failure = d.replica_failure.as_deref();
    let message = if let Some(text) = &d.deadline_exceeded {
        let text = text.as_deref().unwrap_or("the rollout made no progress in time");
        Some(match replica_failure {
            Some(why) => format!("ProgressDeadlineExceeded: {text}; ReplicaFailure: {why}"),
            None => format!("ProgressDeadlineExceeded: {text}"),
        })
    } else {
        replica_failure.map(|why| format!("ReplicaFailure: {why}"))
    };
    let complete = old == 0 && updated_n >= w.replicas && ready >= w.replicas;
    Rollout {
        counts: Counts {
            updated: updated_n,
            ready,
            old,
        },
        message,
        stalled,
        in_progress: !stalled && !complete,
    }
}

/// Why pods are not ready, from a pod list: `2 pods: ImagePullBackOff (Back-off pulling
/// image "x")`; `None` when nothing says. `readiness` holds, by pod name, the last answer
/// of the readiness probe of pods that run but are not ready, where it was looked up.
#[must_use]
pub fn pod_problems(pods: &[Value], readiness: &HashMap<String, String>) -> Option<String> {
    let mut reasons: Vec<(String, u32)> = Vec::new();
    let mut count = |text: String| match reasons.iter_mut().find(|(t, _)| *t == text) {
        Some((_, n)) => *n += 1,
        None => reasons.push((text, 1)),
    };
    for p in pods {
        // A pod the scheduler cannot place has no container statuses at all; its
        // PodScheduled condition says why ("0/3 nodes are available: 3 Insufficient memory").
        let unscheduled = p["status"]["conditions"].as_array().and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        });
        if let Some(c) = unscheduled {
            let reason = c["reason"].as_str().unwrap_or("Unschedulable");
            count(match c["message"].as_str() {
                Some(m) => format!("{reason} ({m})"),
                None => reason.to_owned(),
            });
            continue;
        }
        let Some(statuses) = p["status"]["containerStatuses"].as_array() else {
            continue;
        };
        for c in statuses {
            if c["ready"].as_bool() == Some(true) {
                continue;
            }
            let waiting = &c["state"]["waiting"];
            let terminated = &c["lastState"]["terminated"];
            let text = if let Some(r) = waiting["reason"].as_str().filter(|r| *r != "ContainerCreating") {
                match waiting["message"].as_str() {
                    Some(m) => format!("{r} ({m})"),
                    None => r.to_owned(),
                }
            } else if let Some(r) = terminated["reason"].as_str() {
                format!("last exit: {r} (code {})", terminated["exitCode"])
            } else if c["state"].get("running").is_some() {
                let pod = p["metadata"]["name"].as_str().unwrap_or_default();
                match readiness.get(pod) {
                    Some(answer) => format!("running but not ready ({answer})"),
                    None => "running but not ready (the readiness probe fails)".to_owned(),
                }
            } else {
                continue;
            };
            count(text);
        }
    }
    if reasons.is_empty() {
        return None;
    }
    Some(
        reasons
            .into_iter()
            .map(|(t, n)| format!("{n} pod(s): {t}"))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn w(replicas: u32) -> Workload {
        Workload {
            replicas,
            ..Workload::default()
        }
    }

    #[test]
    fn a_status_not_yet_observed_says_nothing_of_the_release() {
        let d = json!({"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "replicas": 2,
            "updatedReplicas": 2, "availableReplicas": 2}});
        let r = rollout(&w(2), &DeploymentState::of_object(&d));
        assert_eq!((r.counts.updated, r.counts.ready, r.counts.old), (0, 0, 2));
        assert!(r.in_progress);
    }

    #[test]
    fn counts_during_and_after_a_rollout() {
        let during = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2,
            "replicas": 5, "updatedReplicas": 3, "availableReplicas": 3}});
        let r = rollout(&w(3), &DeploymentState::of_object(&during));
        assert_eq!((r.counts.updated, r.counts.ready, r.counts.old), (3, 1, 2));
        let done = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2,
            "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3}});
        let r = rollout(&w(3), &DeploymentState::of_object(&done));
        assert_eq!((r.counts.updated, r.counts.ready, r.counts.old), (3, 3, 0));
        assert!(!r.in_progress && !r.stalled);
    }

    #[test]
    fn progress_deadline_exceeded_stalls() {
        let d = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "replicas": 4,
            "updatedReplicas": 2, "availableReplicas": 2, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"web-1\" has timed out progressing."}]}});
        let r = rollout(&w(2), &DeploymentState::of_object(&d));
        assert!(r.stalled);
        assert_eq!(
            r.message.as_deref(),
            Some("ProgressDeadlineExceeded: ReplicaSet \"web-1\" has timed out progressing.")
        );
    }

    #[test]
    fn pod_problems_are_summarised() {
        let pods = vec![
            json!({"status": {"containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}]}}),
            json!({"status": {"containerStatuses": [{"ready": false, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}]}}),
            json!({"status": {"containerStatuses": [{"ready": true, "state": {"running": {}}}]}}),
        ];
        assert_eq!(
            pod_problems(&pods, &HashMap::new()).as_deref(),
            Some("2 pod(s): ImagePullBackOff (Back-off)")
        );
    }

    #[test]
    fn pods_not_ready_quote_their_readiness_answer() {
        let running = |name: &str| {
            json!({"metadata": {"name": name},
                "status": {"containerStatuses": [{"ready": false, "state": {"running": {}}}]}})
        };
        let answers = HashMap::from([
            (
                "a".to_owned(),
                "Readiness probe failed: HTTP probe failed with statuscode: 500".to_owned(),
            ),
            (
                "b".to_owned(),
                "Readiness probe failed: HTTP probe failed with statuscode: 500".to_owned(),
            ),
        ]);
        assert_eq!(
            pod_problems(&[running("a"), running("b"), running("c")], &answers).as_deref(),
            Some(
                "2 pod(s): running but not ready (Readiness probe failed: HTTP probe failed with statuscode: 500); \
                 1 pod(s): running but not ready (the readiness probe fails)"
            )
        );
    }

    #[test]
    fn unschedulable_pods_say_why() {
        // What the real scheduler writes on a pod no node can hold (no container statuses).
        let pending = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]}});
        assert_eq!(
            pod_problems(&[pending.clone(), pending], &HashMap::new()).as_deref(),
            Some("2 pod(s): Unschedulable (0/3 nodes are available: 3 Insufficient memory.)")
        );
    }

    #[test]
    fn pods_refused_by_a_quota_say_why() {
        // What the real Deployment controller copies from its ReplicaSet.
        let d = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": "pods \"web-1-x\" is forbidden: exceeded quota: berth-quota"}]}});
        let r = rollout(&w(1), &DeploymentState::of_object(&d));
        assert_eq!(
            r.message.as_deref(),
            Some("ReplicaFailure: pods \"web-1-x\" is forbidden: exceeded quota: berth-quota")
        );
    }
}
