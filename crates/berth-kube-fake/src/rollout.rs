//! A simulated Deployment controller: after every spec change a Deployment's status
//! moves the way the real controller moves it — observedGeneration first, then ready
//! and available replicas after a delay, or `ProgressDeadlineExceeded` when a failure
//! is injected. Pods are not stored: listing them derives them from the Deployments.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    resources::{AUTOSCALERS, DEPLOYMENTS},
    selector::Selector,
    store::PatchType,
    store::{Key, Store},
};

/// A failure to inject into the rollouts of matching Deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutFailure {
    /// Pods run but never pass their readiness probe.
    NeverReady,
    /// The image cannot be pulled (`ImagePullBackOff`).
    ImagePull,
    /// The container keeps exiting (`CrashLoopBackOff`).
    CrashLoop,
    /// The container fails its liveness probe, so the kubelet kills it (exit code 137)
    /// again and again (`CrashLoopBackOff`), with `Unhealthy` events saying what the
    /// probe answered.
    FailsLiveness,
    /// Each replica takes this long to become ready.
    Slow(Duration),
}

/// Which Deployments a failure applies to: those whose pod template (as JSON) contains
/// `template_contains`, e.g. an image name or an environment variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRule {
    /// Substring of the pod template.
    pub template_contains: String,
    /// The failure.
    pub failure: RolloutFailure,
}

/// Settings of the simulation, changeable while it runs.
#[derive(Debug, Clone)]
pub struct RolloutSettings {
    /// How long healthy pods take to become ready.
    pub ready_after: Duration,
    /// Overrides every Deployment's `progressDeadlineSeconds` (tests cannot wait 10 s).
    pub progress_deadline: Option<Duration>,
    /// Injected failures, first match wins.
    pub rules: Vec<RolloutRule>,
}

impl RolloutSettings {
    fn failure_for(&self, deployment: &Value) -> Option<RolloutFailure> {
        let template = deployment["spec"]["template"].to_string();
        self.rules
            .iter()
            .find(|r| template.contains(&r.template_contains))
            .map(|r| r.failure)
    }
}

#[derive(Debug, Clone)]
struct Track {
    generation: u64,
    started: Instant,
    /// Ready replicas of the previous template when this rollout began.
    previous: u32,
    finished: bool,
}

/// Runs the simulation until the store's sender side closes.
pub(crate) async fn run(
    store: Arc<Store>,
    settings: Arc<Mutex<RolloutSettings>>,
    mut changes: mpsc::UnboundedReceiver<Key>,
) {
    let mut tracks: HashMap<Key, Track> = HashMap::new();
    let mut timers: BinaryHeap<Reverse<(Instant, Key)>> = BinaryHeap::new();
    loop {
        let next = timers.peek().map(|Reverse((t, _))| *t);
        tokio::select! {
            key = changes.recv() => {
                let Some(key) = key else { return };
                let Some(d) = store.get_value(DEPLOYMENTS, &key) else {
                    tracks.remove(&key);
                    continue;
                };
                if autoscale(&store, &key, &d) {
                    // The scale-up is a spec change of its own and comes back here.
                    continue;
                }
                let generation = d["metadata"]["generation"].as_u64().unwrap_or(1);
                if tracks.get(&key).is_some_and(|t| t.generation == generation) {
                    continue;
                }
                let previous = d["status"]["readyReplicas"].as_u64().unwrap_or(0) as u32;
                let previous = match tracks.get(&key) {
                    Some(t) if !t.finished => previous.min(t.previous),
                    _ => previous,
                };
                tracks.insert(key.clone(), Track { generation, started: Instant::now(), previous, finished: false });
                timers.push(Reverse((Instant::now(), key)));
            }
            () = sleep_until(next) => {
                let now = Instant::now();
                while let Some(Reverse((t, key))) = timers.peek().cloned() {
                    if t > now {
                        break;
                    }
                    timers.pop();
                    let settings = settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    if let Some(track) = tracks.get_mut(&key)
                        && !track.finished
                        && let Some(wake) = step(&store, &settings, &key, track, now)
                    {
                        timers.push(Reverse((wake, key)));
                    }
                }
            }
        }
    }
}

/// What the horizontal pod autoscaler does first: bring a Deployment up to its
/// `minReplicas` (as the field manager `horizontal-pod-autoscaler`). Returns whether it
/// scaled.
fn autoscale(store: &Store, key: &Key, d: &Value) -> bool {
    let Some(hpa) = store.get_value(AUTOSCALERS, key) else {
        return false;
    };
    let min = hpa["spec"]["minReplicas"].as_u64().unwrap_or(1);
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
    if replicas >= min {
        return false;
    }
    let patch = json!({"spec": {"replicas": min}}).to_string();
    store
        .patch(
            DEPLOYMENTS,
            key,
            PatchType::Merge,
            patch.as_bytes(),
            Some("horizontal-pod-autoscaler"),
            false,
        )
        .is_ok()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Writes the status for `now`; returns when to look again, if the rollout goes on.
fn step(
    store: &Store,
    settings: &RolloutSettings,
    key: &Key,
    track: &mut Track,
    now: Instant,
) -> Option<Instant> {
    let d = store.get_value(DEPLOYMENTS, key)?;
    if d["metadata"]["generation"].as_u64() != Some(track.generation) {
        return None;
    }
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1) as u32;
    let deadline = settings
        .progress_deadline
        .unwrap_or_else(|| Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600)));
    let elapsed = now - track.started;
    let failure = settings.failure_for(&d);
    let (ready, last_progress, next) = match failure {
        None => {
            if elapsed >= settings.ready_after {
                (replicas, settings.ready_after, None)
            } else {
                (0, Duration::ZERO, Some(track.started + settings.ready_after))
            }
        }
        Some(RolloutFailure::Slow(each)) => {
            let each = each.max(Duration::from_millis(1));
            let n = (elapsed.as_nanos() / each.as_nanos()).min(u128::from(replicas)) as u32;
            let next = (n < replicas).then(|| track.started + each * (n + 1));
            (n, each * n, next)
        }
        Some(_) => (0, Duration::ZERO, None),
    };
    let exceeded = ready < replicas && elapsed.saturating_sub(last_progress) >= deadline;
    let old = if ready >= replicas {
        0
    } else {
        track.previous.saturating_sub(ready)
    };
    let rs = format!("{}-{}", key.1, template_hash(&d));
    let (progressing, reason, message) = if ready >= replicas {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
        )
    } else if exceeded {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
        )
    };
    let available = ready + old;
    let min_available = replicas.saturating_sub(replicas / 4);
    let (av_status, av_reason) = if available >= min_available {
        ("True", "MinimumReplicasAvailable")
    } else {
        ("False", "MinimumReplicasUnavailable")
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut status = json!({
        "observedGeneration": track.generation,
        "replicas": replicas + old,
        "updatedReplicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "conditions": [
            {"type": "Available", "status": av_status, "reason": av_reason,
             "message": "Deployment has minimum availability.", "lastUpdateTime": time, "lastTransitionTime": time},
            {"type": "Progressing", "status": progressing, "reason": reason, "message": message,
             "lastUpdateTime": time, "lastTransitionTime": time},
        ],
    });
    if replicas + old > available {
        status["unavailableReplicas"] = json!(replicas + old - available);
    }
    // Keep condition times stable when nothing else changed, so that a settled
    // Deployment is not rewritten.
    if same_but_times(&d["status"], &status) {
        status = d["status"].clone();
    }
    store.write_status(DEPLOYMENTS, key, status);
    if ready >= replicas || exceeded {
        track.finished = true;
        return None;
    }
    let deadline_at = track.started + last_progress + deadline;
    Some(next.map_or(deadline_at, |n| n.min(deadline_at)))
}

fn same_but_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v["conditions"].as_array_mut() {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastUpdateTime");
                    m.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

fn template_hash(d: &Value) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(d["spec"]["template"].to_string().as_bytes());
    hex::encode(&h[..5])
}

/// The pods of the Deployments in `namespace` whose labels `selector` selects, as the
/// simulation has them now.
pub(crate) fn pods(
    store: &Store,
    settings: &RolloutSettings,
    namespace: Option<&str>,
    selector: &Selector,
) -> Vec<Value> {
    let deployments: Vec<Value> = {
        let inner = store.lock();
        inner.objects[DEPLOYMENTS]
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .filter_map(|(_, s)| serde_json::from_slice(&s.raw).ok())
            .collect()
    };
    let mut out = Vec::new();
    for d in deployments {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
        let st = &d["status"];
        let updated = st["updatedReplicas"].as_u64().unwrap_or(0) as u32;
        let total = st["replicas"].as_u64().unwrap_or(0) as u32;
        let ready_total = st["readyReplicas"].as_u64().unwrap_or(0) as u32;
        let old = total.saturating_sub(updated);
        let ready_new = ready_total.saturating_sub(old);
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default();
        let container = d["spec"]["template"]["spec"]["containers"][0]["name"]
            .as_str()
            .unwrap_or("app");
        let failure = settings.failure_for(&d);
        let hash = template_hash(&d);
        for i in 0..updated + old {
            let is_new = i < updated;
            let ready = if is_new { i < ready_new } else { true };
            let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
            let pod_hash = if is_new {
                hash.clone()
            } else {
                "previous".to_owned()
            };
            labels["pod-template-hash"] = json!(pod_hash);
            let label_map = labels
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            if !selector.matches(&label_map) {
                continue;
            }
            let state = if ready || !is_new {
                json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
            } else {
                match failure {
                    Some(RolloutFailure::ImagePull) => json!({"waiting": {"reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{image}\"")}}),
                    Some(RolloutFailure::CrashLoop | RolloutFailure::FailsLiveness) => {
                        json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off 40s restarting failed container={container}")}})
                    }
                    Some(RolloutFailure::NeverReady) => {
                        json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
                    }
                    _ => json!({"waiting": {"reason": "ContainerCreating"}}),
                }
            };
            let restarts = if matches!(
                failure,
                Some(RolloutFailure::CrashLoop | RolloutFailure::FailsLiveness)
            ) && is_new
                && !ready
            {
                5
            } else {
                0
            };
            let phase = if state.get("running").is_some() {
                "Running"
            } else {
                "Pending"
            };
            let ready_text = if ready { "True" } else { "False" };
            let last_state = if restarts > 0 {
                let code = if failure == Some(RolloutFailure::FailsLiveness) {
                    137
                } else {
                    1
                };
                json!({"terminated": {"exitCode": code, "reason": "Error",
                    "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}})
            } else {
                json!({})
            };
            out.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-{pod_hash}-{i}"), "namespace": ns, "labels": labels},
                "spec": d["spec"]["template"]["spec"].clone(),
                "status": {"phase": phase,
                    "conditions": [{"type": "Ready", "status": ready_text}],
                    "containerStatuses": [{"name": container, "image": image, "ready": ready,
                        "restartCount": restarts, "state": state, "lastState": last_state}]}
            }));
        }
    }
    out
}

/// The `Unhealthy` events the kubelet would have recorded about the pods in `namespace`,
/// as the pods show them: a new pod running but not ready failed its readiness probe
/// (first refused, lately answering 500), one killed with code 137 and backing off failed
/// its liveness probe during its last run. Listed newest first, which is no order the
/// API server promises.
pub(crate) fn events(store: &Store, settings: &RolloutSettings, namespace: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for pod in pods(store, settings, namespace, &Selector::default()) {
        let c = &pod["status"]["containerStatuses"][0];
        if c["ready"] == true || pod["metadata"]["labels"]["pod-template-hash"] == "previous" {
            continue;
        }
        let answers: &[(&str, &str, &str)] = if c["state"].get("running").is_some() {
            &[
                (
                    "2026-01-01T00:00:09Z",
                    "b",
                    "Readiness probe failed: HTTP probe failed with statuscode: 500",
                ),
                (
                    "2026-01-01T00:00:03Z",
                    "a",
                    "Readiness probe failed: Get \"http://10.0.0.9:8080/healthz\": dial tcp 10.0.0.9:8080: connect: connection refused",
                ),
            ]
        } else if c["lastState"]["terminated"]["exitCode"] == 137 {
            &[(
                "2026-01-01T00:00:04Z",
                "a",
                "Liveness probe failed: HTTP probe failed with statuscode: 503",
            )]
        } else {
            continue;
        };
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let container = c["name"].as_str().unwrap_or("app");
        for (at, suffix, message) in answers {
            out.push(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": format!("{name}.unhealthy-{suffix}"), "namespace": ns,
                    "creationTimestamp": "2026-01-01T00:00:01Z"},
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "apiVersion": "v1",
                    "fieldPath": format!("spec.containers{{{container}}}")},
                "reason": "Unhealthy", "message": message, "type": "Warning",
                "source": {"component": "kubelet", "host": "fake-node"},
                "firstTimestamp": "2026-01-01T00:00:01Z", "lastTimestamp": at, "count": 3,
            }));
        }
    }
    out
}
