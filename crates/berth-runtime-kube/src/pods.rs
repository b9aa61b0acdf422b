//! Pods as Berth's instances, pure: a pod's state, readiness, restarts and address; why
//! its container last stopped (exit code, signal, OOM kill, failed probe, image pull); the
//! lines of its log; and whether a release's pods crash-loop.
//!
//! ```text
//!  pod status.containerStatuses[0] ──▶ Instance { state, ready, restarts, lastExit }
//!        lastState.terminated / state.waiting ──▶ ExitReason
//!  pods of the release, none ready, one in CrashLoopBackOff ──▶ the rollout fails now
//!  the pod's Unhealthy events ──▶ ProbeAnswers ──▶ ExitReason.probe / "not ready (…)"
//! ```

use berth_core::instance::{ExitCause, ExitReason, Instance, InstanceState, LogLine};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::render::RELEASE;

/// Restarts of a container in `CrashLoopBackOff` from which its release's rollout fails
/// at once (the kubelet restarted it and is now backing off between attempts).
pub const CRASH_LOOP_RESTARTS: u64 = 2;

/// Waiting reasons that mean the image cannot be pulled.
const PULL_FAILURES: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// A liveness (or startup) probe failure first seen up to this long after a run ended
/// still counts for that run: event times are whole seconds, and a killed container
/// takes up to its grace period to stop.
const KILL_SLACK_SECONDS: i64 = 60;

/// One failing probe's last answer and the times its (aggregated) event covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeFailure {
    /// When it was first seen (`firstTimestamp`), when known.
    pub first: Option<DateTime<Utc>>,
    /// When it was last seen, when known.
    pub last: Option<DateTime<Utc>>,
    /// The kubelet's message (`Liveness probe failed: HTTP probe failed with statuscode: 503`).
    pub message: String,
}

/// The last answers of a pod's failing probes, from its `Unhealthy` events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeAnswers {
    /// The last failure of the probe that gets a container killed (liveness or startup).
    pub liveness: Option<ProbeFailure>,
    /// The last failure of the readiness probe, its message.
    pub readiness: Option<String>,
}

/// When an event was last seen: `lastTimestamp`, else the newer API's `series` or
/// `eventTime`, else its creation.
fn event_time(e: &Value) -> Option<DateTime<Utc>> {
    time(&e["lastTimestamp"])
        .or_else(|| time(&e["series"]["lastObservedTime"]))
        .or_else(|| time(&e["eventTime"]))
        .or_else(|| time(&e["metadata"]["creationTimestamp"]))
}

/// The newest answer of each kind of probe among a pod's `Unhealthy` events (in any
/// order; other events are ignored).
#[must_use]
pub fn probe_answers(events: &[Value]) -> ProbeAnswers {
    let mut sorted: Vec<&Value> = events.iter().filter(|e| e["reason"] == "Unhealthy").collect();
    // Newest first; an event without a time counts as oldest.
    sorted.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    let mut answers = ProbeAnswers::default();
    for e in sorted {
        let Some(message) = e["message"].as_str().map(str::trim).filter(|m| !m.is_empty()) else {
            continue;
        };
        if message.starts_with("Readiness probe") {
            answers.readiness.get_or_insert_with(|| message.to_owned());
        } else if message.starts_with("Liveness probe") || message.starts_with("Startup probe") {
            answers.liveness.get_or_insert_with(|| ProbeFailure {
                first: time(&e["firstTimestamp"]).or_else(|| event_time(e)),
                last: event_time(e),
                message: message.to_owned(),
            });
        }
    }
    answers
}

/// The liveness answer that ended the container's last run, if its failure was seen
/// during that run: the times its event covers (the kubelet aggregates repeated failures
/// into one event, whose last time moves on into later runs) overlap the run, from its
/// start to shortly after its end. Unknown times count.
#[must_use]
pub fn killing_answer<'a>(pod: &Value, answers: &'a ProbeAnswers) -> Option<&'a str> {
    let failure = answers.liveness.as_ref()?;
    let c = container(pod);
    let run = c["state"]
        .get("terminated")
        .or_else(|| c["lastState"].get("terminated"))?;
    let before_run = matches!(
        (failure.last, time(&run["startedAt"])),
        (Some(last), Some(started)) if last < started
    );
    let after_run = matches!(
        (failure.first, time(&run["finishedAt"])),
        (Some(first), Some(finished)) if first > finished + chrono::Duration::seconds(KILL_SLACK_SECONDS)
    );
    (!before_run && !after_run).then_some(failure.message.as_str())
}

/// Whether the pod's container ran and stopped (its liveness probe may have killed it).
#[must_use]
pub fn has_stopped(pod: &Value) -> bool {
    let c = container(pod);
    c["lastState"].get("terminated").is_some() || c["state"].get("terminated").is_some()
}

/// Whether the pod's container runs but is not ready (its readiness probe fails).
#[must_use]
pub fn runs_unready(pod: &Value) -> bool {
    let c = container(pod);
    c["state"].get("running").is_some() && c["ready"].as_bool() != Some(true)
}

/// The pod's name.
#[must_use]
pub fn name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or_default()
}

/// The pod's namespace.
#[must_use]
pub fn namespace(pod: &Value) -> &str {
    pod["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// The release the pod runs, from its `berth.dev/release` label.
#[must_use]
pub fn release(pod: &Value) -> u64 {
    pod["metadata"]["labels"][RELEASE]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The status of the application's container (the first: Berth renders one).
fn container(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

/// Whether the container has started at least once, so that the kubelet has a log of it.
#[must_use]
pub fn has_log(pod: &Value) -> bool {
    let c = container(pod);
    c["state"].get("running").is_some()
        || c["state"].get("terminated").is_some()
        || c["restartCount"].as_u64().unwrap_or(0) > 0
}

/// Whether the container ran before its current run (what `--previous` reads).
#[must_use]
pub fn has_previous(pod: &Value) -> bool {
    container(pod)["lastState"].get("terminated").is_some()
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Why a container's run ended, from a `terminated` state: exit code (a code above 128
/// is death by signal), `OOMKilled`, or the kubelet killing it for a failing liveness
/// probe (its `message`, when the runtime wrote one).
#[must_use]
pub fn terminated_reason(t: &Value) -> Option<ExitReason> {
    let code = t["exitCode"].as_i64()?;
    let reason = t["reason"].as_str().unwrap_or_default();
    let mut exit = ExitReason::of_exit(code, reason == "OOMKilled");
    if let Some(signal) = t["signal"].as_i64().filter(|s| *s > 0) {
        exit.cause = ExitCause::Signaled;
        exit.signal = Some(berth_core::instance::signal_name(signal));
    }
    exit.message = t["message"].as_str().filter(|m| !m.is_empty()).map(str::to_owned);
    exit.finished_at = time(&t["finishedAt"]);
    Some(exit)
}

/// Why the pod's container is not running or last stopped: an image that cannot be
/// pulled, its current `terminated` state, or its last one; `None` when it never stopped.
///
/// `unhealthy` is the last `Unhealthy` event of the pod (a probe's answer), when known:
/// a run the kubelet ended for a failing liveness probe says so, with it.
#[must_use]
pub fn exit_reason(pod: &Value, unhealthy: Option<&str>) -> Option<ExitReason> {
    let c = container(pod);
    let waiting = &c["state"]["waiting"];
    if let Some(r) = waiting["reason"].as_str()
        && PULL_FAILURES.contains(&r)
    {
        return Some(ExitReason {
            cause: ExitCause::ImagePullFailed,
            exit_code: None,
            signal: None,
            probe: None,
            message: Some(
                waiting["message"]
                    .as_str()
                    .map_or_else(|| r.to_owned(), |m| format!("{r}: {m}")),
            ),
            finished_at: None,
            last_lines: Vec::new(),
        });
    }
    let terminated = c["state"]
        .get("terminated")
        .or_else(|| c["lastState"].get("terminated"))?;
    let exit = terminated_reason(terminated)?;
    Some(match unhealthy {
        Some(probe) => killed_by_probe(exit, probe),
        None => exit,
    })
}

/// A run's exit as the kubelet's kill for a failing liveness probe that answered
/// `probe`, keeping its exit code, end and message; an OOM kill stays one (the kernel
/// killed it first).
#[must_use]
pub fn killed_by_probe(exit: ExitReason, probe: &str) -> ExitReason {
    if exit.cause == ExitCause::OutOfMemory {
        return exit;
    }
    ExitReason {
        exit_code: exit.exit_code,
        finished_at: exit.finished_at,
        message: exit.message,
        last_lines: exit.last_lines,
        ..ExitReason::unhealthy(Some(probe.to_owned()))
    }
}

/// The pod as one of Berth's instances; the service fills in the datacenter.
#[must_use]
pub fn instance(pod: &Value, cluster: &str, port: Option<u16>) -> Instance {
    let c = container(pod);
    let ready = c["ready"].as_bool().unwrap_or(false);
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let state = if pod["metadata"].get("deletionTimestamp").is_some() {
        InstanceState::Terminating
    } else if matches!(phase, "Succeeded" | "Failed") || c["state"].get("terminated").is_some() {
        InstanceState::Exited
    } else if c["state"].get("running").is_some() && ready {
        InstanceState::Running
    } else if c["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
        InstanceState::Exited
    } else {
        InstanceState::Starting
    };
    let address = pod["status"]["podIP"]
        .as_str()
        .map(|ip| port.map_or_else(|| ip.to_owned(), |p| format!("{ip}:{p}")));
    Instance {
        name: name(pod).to_owned(),
        cluster: cluster.to_owned(),
        datacenter: String::new(),
        release: release(pod),
        state,
        ready,
        restarts: c["restartCount"]
            .as_u64()
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        created_at: time(&pod["metadata"]["creationTimestamp"]).unwrap_or_default(),
        address,
        last_exit: exit_reason(pod, None),
    }
}

/// The port the application's container listens on, from the pod's spec.
#[must_use]
pub fn port(pod: &Value) -> Option<u16> {
    pod["spec"]["containers"][0]["ports"][0]["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// The pod of `release` that crash-loops, or `None`: none of the release's pods is ready
/// (`ready_new`, from its Deployment's status) and one of them is in `CrashLoopBackOff`
/// after [`CRASH_LOOP_RESTARTS`] restarts or more.
#[must_use]
pub fn crash_loop(pods: &[Value], release_number: u64, ready_new: u32) -> Option<&Value> {
    if ready_new > 0 {
        return None;
    }
    pods.iter().filter(|p| release(p) == release_number).find(|p| {
        let c = container(p);
        c["ready"].as_bool() != Some(true)
            && c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && c["restartCount"].as_u64().unwrap_or(0) >= CRASH_LOOP_RESTARTS
    })
}

/// The sentence that fails a crash-looping release: the pod, its restarts and its last
/// exit (`unhealthy`: the liveness answer that ended it, [`killing_answer`]); the caller
/// adds its last log lines.
#[must_use]
pub fn crash_loop_message(looping: &Value, release_number: u64, unhealthy: Option<&str>) -> String {
    let exit =
        exit_reason(looping, unhealthy).map_or_else(|| "it keeps exiting".to_owned(), |e| e.describe());
    format!(
        "release {release_number} crash-loops: pod {} restarted {} times and no pod of the release is ready; \
         the last run {exit}",
        name(looping),
        container(looping)["restartCount"],
    )
}

/// One line of a pod log read with `timestamps=true`: `2026-12-03T10:00:00.123456789Z text`.
#[must_use]
pub fn log_line(line: &str, instance: &str, cluster: &str) -> LogLine {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (time, text) = match line.split_once(' ') {
        Some((t, rest)) => match DateTime::parse_from_rfc3339(t) {
            Ok(at) => (Some(at.with_timezone(&Utc)), rest),
            Err(_) => (None, line),
        },
        None => match DateTime::parse_from_rfc3339(line) {
            Ok(at) => (Some(at.with_timezone(&Utc)), ""),
            Err(_) => (None, line),
        },
    };
    let mut text = text.to_owned();
    berth_core::instance::cut(&mut text);
    LogLine {
        instance: instance.to_owned(),
        cluster: cluster.to_owned(),
        time,
        text,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod(status: Value) -> Value {
        json!({"metadata": {"name": "web-7d9-abc", "namespace": "team-qa",
                "creationTimestamp": "2026-12-03T10:00:00Z", "labels": {RELEASE: "3"}},
            "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]}]},
            "status": status})
    }

    #[test]
    fn exit_reasons_from_container_statuses() {
        // What the kubelet writes for each way a container ends.
        let cases = [
            (
                json!({"lastState": {"terminated": {"exitCode": 3, "reason": "Error",
                "finishedAt": "2026-12-03T10:01:00Z"}}, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}),
                "exited with code 3",
            ),
            (
                json!({"lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}),
                "was killed for running out of memory (OOM) (exit code 137)",
            ),
            (
                json!({"lastState": {"terminated": {"exitCode": 143, "reason": "Error"}}}),
                "was killed by SIGTERM (exit code 143)",
            ),
            (
                json!({"state": {"terminated": {"exitCode": 0, "signal": 9, "reason": "Error"}}}),
                "was killed by SIGKILL (exit code 0)",
            ),
            (
                json!({"state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"r/x:9\""}}}),
                "could not pull its image: ImagePullBackOff: Back-off pulling image \"r/x:9\"",
            ),
            (
                json!({"state": {"waiting": {"reason": "ErrImagePull"}}}),
                "could not pull its image: ErrImagePull",
            ),
        ];
        for (status, want) in cases {
            let p = pod(json!({"containerStatuses": [status]}));
            assert_eq!(exit_reason(&p, None).unwrap().describe(), want);
        }
        let running = pod(json!({"containerStatuses": [{"state": {"running": {}}, "ready": true}]}));
        assert_eq!(exit_reason(&running, None), None);
        // Killed for a failing liveness probe: the Unhealthy event's message is the answer.
        let killed = pod(
            json!({"containerStatuses": [{"lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
        );
        let e = exit_reason(&killed, Some("HTTP probe failed with statuscode: 500")).unwrap();
        assert_eq!(e.cause, ExitCause::Unhealthy);
        assert_eq!(e.exit_code, Some(137));
        assert_eq!(
            e.describe(),
            "failed its health check (last answer: HTTP probe failed with statuscode: 500)"
        );
    }

    #[test]
    fn pods_as_instances() {
        let p = pod(
            json!({"phase": "Running", "podIP": "10.0.0.7", "containerStatuses": [{"ready": true,
            "restartCount": 2, "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        );
        let i = instance(&p, "dc1", port(&p));
        assert_eq!(
            (i.name.as_str(), i.release, i.state, i.ready, i.restarts),
            ("web-7d9-abc", 3, InstanceState::Running, true, 2)
        );
        assert_eq!(i.address.as_deref(), Some("10.0.0.7:8080"));
        assert_eq!(i.last_exit.unwrap().exit_code, Some(1));
        assert_eq!(i.created_at.to_rfc3339(), "2026-12-03T10:00:00+00:00");
        let pending = pod(json!({"phase": "Pending"}));
        let i = instance(&pending, "dc1", None);
        assert_eq!(
            (i.state, i.ready, i.address),
            (InstanceState::Starting, false, None)
        );
        assert!(!has_log(&pending));
        let looping = pod(
            json!({"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        assert_eq!(instance(&looping, "dc1", None).state, InstanceState::Exited);
        assert!(has_log(&looping));
        let mut going = p.clone();
        going["metadata"]["deletionTimestamp"] = json!("2026-12-03T10:05:00Z");
        assert_eq!(instance(&going, "dc1", None).state, InstanceState::Terminating);
    }

    #[test]
    fn a_release_crash_loops_when_none_of_its_pods_is_ready_and_one_backs_off() {
        let looping = |restarts: u64| {
            pod(
                json!({"containerStatuses": [{"ready": false, "restartCount": restarts,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}),
            )
        };
        let pods = [looping(2)];
        let found = crash_loop(&pods, 3, 0).unwrap();
        assert_eq!(name(found), "web-7d9-abc");
        assert_eq!(
            crash_loop_message(found, 3, None),
            "release 3 crash-loops: pod web-7d9-abc restarted 2 times and no pod of the release is ready; \
             the last run exited with code 3"
        );
        assert_eq!(
            crash_loop(&[looping(1)], 3, 0),
            None,
            "one restart is not yet a loop"
        );
        assert_eq!(crash_loop(&[looping(5)], 4, 0), None, "pods of another release");
        assert_eq!(
            crash_loop(&[looping(5)], 3, 1),
            None,
            "a ready pod of the release serves"
        );
        assert_eq!(
            crash_loop_message(
                &looping(2),
                3,
                Some("Liveness probe failed: HTTP probe failed with statuscode: 503")
            ),
            "release 3 crash-loops: pod web-7d9-abc restarted 2 times and no pod of the release is ready; \
             the last run failed its health check (last answer: Liveness probe failed: HTTP probe failed with \
             statuscode: 503)"
        );
    }

    fn unhealthy(message: &str, last: &str) -> Value {
        json!({"reason": "Unhealthy", "message": message, "type": "Warning", "lastTimestamp": last,
            "involvedObject": {"kind": "Pod", "name": "web-7d9-abc"}})
    }

    #[test]
    fn the_newest_answer_of_each_probe_from_unhealthy_events() {
        let events = [
            unhealthy(
                "Readiness probe failed: HTTP probe failed with statuscode: 500",
                "2026-12-03T10:00:09Z",
            ),
            unhealthy(
                "Liveness probe failed: connection refused",
                "2026-12-03T10:00:02Z",
            ),
            unhealthy(
                "Readiness probe failed: connection refused",
                "2026-12-03T10:00:03Z",
            ),
            unhealthy(
                "Liveness probe failed: HTTP probe failed with statuscode: 503",
                "2026-12-03T10:00:04Z",
            ),
            json!({"reason": "Killing", "message": "Container app failed liveness probe, will be restarted",
                "lastTimestamp": "2026-12-03T10:00:05Z"}),
        ];
        let a = probe_answers(&events);
        assert_eq!(
            a.readiness.as_deref(),
            Some("Readiness probe failed: HTTP probe failed with statuscode: 500")
        );
        let failure = a.liveness.clone().unwrap();
        assert_eq!(
            failure.message,
            "Liveness probe failed: HTTP probe failed with statuscode: 503"
        );
        assert_eq!(failure.last.unwrap().to_rfc3339(), "2026-12-03T10:00:04+00:00");
        assert_eq!(probe_answers(&[]), ProbeAnswers::default());

        // The answer ended the last run only if it came during that run.
        let run = |started: &str, finished: &str| {
            pod(
                json!({"containerStatuses": [{"lastState": {"terminated": {"exitCode": 137, "reason": "Error",
                "startedAt": started, "finishedAt": finished}}}]}),
            )
        };
        let during = run("2026-12-03T10:00:00Z", "2026-12-03T10:00:05Z");
        assert_eq!(
            killing_answer(&during, &a),
            Some("Liveness probe failed: HTTP probe failed with statuscode: 503")
        );
        let later = run("2026-12-03T10:30:00Z", "2026-12-03T10:31:00Z");
        assert_eq!(killing_answer(&later, &a), None, "a failure of an earlier run");
        let long_before = run("2026-12-03T09:00:00Z", "2026-12-03T09:01:00Z");
        assert_eq!(
            killing_answer(&long_before, &a),
            None,
            "a failure after the run ended"
        );
        // One aggregated event: failing since before the run ended, seen again since.
        let ongoing = probe_answers(&[json!({"reason": "Unhealthy", "count": 9,
            "message": "Liveness probe failed: HTTP probe failed with statuscode: 503",
            "firstTimestamp": "2026-12-03T09:00:30Z", "lastTimestamp": "2026-12-03T10:00:04Z"})]);
        assert_eq!(
            killing_answer(&long_before, &ongoing),
            Some("Liveness probe failed: HTTP probe failed with statuscode: 503")
        );
        let running = pod(json!({"containerStatuses": [{"state": {"running": {}}, "ready": false}]}));
        assert_eq!(killing_answer(&running, &a), None, "nothing was killed");
        assert!(runs_unready(&running) && !has_stopped(&running));
        assert!(has_stopped(&during) && !runs_unready(&during));
        let ready = pod(json!({"containerStatuses": [{"state": {"running": {}}, "ready": true}]}));
        assert!(!runs_unready(&ready) && !has_stopped(&ready));
    }

    #[test]
    fn log_lines_with_and_without_timestamps() {
        let l = log_line("2026-12-03T10:00:00.123456789Z Started in 1.2 s\n", "p1", "dc1");
        assert_eq!(l.text, "Started in 1.2 s");
        assert_eq!(l.time.unwrap().timestamp_subsec_nanos(), 123_456_789);
        let l = log_line("no time here", "p1", "dc1");
        assert_eq!((l.time, l.text.as_str()), (None, "no time here"));
        let l = log_line("2026-12-03T10:00:00Z", "p1", "dc1");
        assert_eq!(l.text, "");
    }
}
