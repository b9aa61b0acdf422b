//! Instances: the running copies of a workload as a runtime observes them (a container of
//! the local runtime, a pod on Kubernetes), why one stopped, its log lines, and the
//! bounded record of terminated instances that Berth keeps so that a crash can be
//! diagnosed after the instance is gone.
//!
//! ```text
//!  runtime observes ──▶ Instance { state, ready, restarts, lastExit }
//!  an instance ends ──▶ ExitReason { cause, exitCode | signal | probe, lastLines }
//!                          │ event + deployment status (describe)
//!                          ▼
//!                   Terminated ──▶ Graveyard: last KEEP_INSTANCES per app+env,
//!                                  KEEP_LINES lines each (`logs --previous`)
//! ```
//!
//! Pure: runtimes fill these types, the API shows them.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::render::WorkloadKey;

/// Terminated instances kept per application and environment.
pub const KEEP_INSTANCES: usize = 5;
/// Log lines kept per terminated instance.
pub const KEEP_LINES: usize = 200;
/// Log lines an event or a deployment status quotes from an instance that stopped.
pub const QUOTED_LINES: usize = 10;
/// Longest log line kept; longer ones are cut (a runaway line must not fill memory).
pub const MAX_LINE: usize = 4096;

/// Where an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum InstanceState {
    /// Created, not yet running, or running but never healthy so far.
    Starting,
    /// Running.
    Running,
    /// Paused (only an outside hand pauses an instance).
    Paused,
    /// Being stopped or removed.
    Terminating,
    /// No longer running.
    Exited,
}

/// What ended an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ExitCause {
    /// Its process exited by itself, with `exitCode`.
    Exited,
    /// Its process was killed by `signal`.
    Signaled,
    /// The kernel killed it for using more memory than its limit.
    OutOfMemory,
    /// Berth (or Kubernetes) stopped it because its health check kept failing, or it
    /// never passed one; `probe` holds the last answer.
    Unhealthy,
    /// Its image could not be pulled, so it never started.
    ImagePullFailed,
    /// It was stopped from outside Berth (a `docker stop`, a node going away).
    Stopped,
}

/// Why an instance stopped, with its last log lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExitReason {
    /// What ended it.
    pub cause: ExitCause,
    /// The exit code of its process, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The signal that killed it (`SIGKILL`), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The last health-check answer, for an unhealthy instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// What the runtime said (an image pull error, the engine's error text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Its last log lines (at most [`QUOTED_LINES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_lines: Vec<String>,
}

impl ExitReason {
    /// The reason of a process that ended with `exit_code`: an exit code above 128 is
    /// death by signal `code - 128` (what shells, Docker and the kubelet report), unless
    /// the kernel's OOM killer is known to have done it.
    #[must_use]
    pub fn of_exit(exit_code: i64, oom_killed: bool) -> Self {
        let signal = (129..=128 + 64)
            .contains(&exit_code)
            .then(|| signal_name(exit_code - 128));
        let cause = if oom_killed {
            ExitCause::OutOfMemory
        } else if signal.is_some() {
            ExitCause::Signaled
        } else {
            ExitCause::Exited
        };
        Self {
            cause,
            exit_code: Some(exit_code),
            signal,
            probe: None,
            message: None,
            finished_at: None,
            last_lines: Vec::new(),
        }
    }

    /// The reason of an instance stopped for failing its health check.
    #[must_use]
    pub fn unhealthy(probe: Option<String>) -> Self {
        Self {
            cause: ExitCause::Unhealthy,
            exit_code: None,
            signal: None,
            probe,
            message: None,
            finished_at: None,
            last_lines: Vec::new(),
        }
    }

    /// Keeps the last [`QUOTED_LINES`] of `lines` as the reason's last lines.
    #[must_use]
    pub fn with_lines(mut self, lines: &[String]) -> Self {
        let from = lines.len().saturating_sub(QUOTED_LINES);
        self.last_lines = lines[from..].to_vec();
        self
    }

    /// A short phrase: `exited with code 3`, `was killed by SIGKILL (exit code 137)`.
    #[must_use]
    pub fn describe(&self) -> String {
        let code = self
            .exit_code
            .map(|c| format!(" (exit code {c})"))
            .unwrap_or_default();
        match self.cause {
            ExitCause::Exited => match self.exit_code {
                Some(c) => format!("exited with code {c}"),
                None => "exited".to_owned(),
            },
            ExitCause::Signaled => format!(
                "was killed by {}{code}",
                self.signal.as_deref().unwrap_or("a signal")
            ),
            ExitCause::OutOfMemory => format!("was killed for running out of memory (OOM){code}"),
            ExitCause::Unhealthy => match &self.probe {
                Some(p) => format!("failed its health check (last answer: {p})"),
                None => "failed its health check".to_owned(),
            },
            ExitCause::ImagePullFailed => match &self.message {
                Some(m) => format!("could not pull its image: {m}"),
                None => "could not pull its image".to_owned(),
            },
            ExitCause::Stopped => format!("was stopped outside Berth{code}"),
        }
    }

    /// [`ExitReason::describe`] followed by the last lines, each on its own indented
    /// line: what an event and a deployment status say.
    #[must_use]
    pub fn explain(&self) -> String {
        format!("{}{}", self.describe(), self.quoted_lines())
    }

    /// `; its last log lines:` and the lines, each on its own indented line; empty when
    /// there are none.
    #[must_use]
    pub fn quoted_lines(&self) -> String {
        let mut text = String::new();
        if !self.last_lines.is_empty() {
            text.push_str("; its last log lines:");
            for line in &self.last_lines {
                text.push_str("\n    ");
                text.push_str(line);
            }
        }
        text
    }
}

/// The name of signal `n` on Linux (`SIGKILL` for 9), or `signal n`.
#[must_use]
pub fn signal_name(n: i64) -> String {
    let name = match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {n}"),
    };
    name.to_owned()
}

/// One instance of an application in an environment, on one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Its name (the container's or the pod's): what `logs --instance` takes.
    pub name: String,
    /// The cluster it runs on.
    pub cluster: String,
    /// The cluster's datacenter.
    #[serde(default)]
    pub datacenter: String,
    /// The release it runs.
    pub release: u64,
    /// Where it stands.
    pub state: InstanceState,
    /// Whether it passes its health check and takes traffic.
    pub ready: bool,
    /// How often it was restarted: restarts of its container on Kubernetes; on the local
    /// runtime, which replaces an instance rather than restarting it, the instances of
    /// the same release replaced after a failure so far.
    pub restarts: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Where it answers (`127.0.0.1:40123`, a pod IP and port), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Why its last run ended, when it ended or restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitReason>,
}

/// Which log lines to read from the instances of one workload on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this instance.
    pub instance: Option<String>,
    /// Only lines written at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only the last this many lines of each instance.
    pub tail: Option<u32>,
    /// Keep reading as lines are written, and from instances that start meanwhile.
    pub follow: bool,
}

/// One log line of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The instance that wrote it.
    pub instance: String,
    /// The cluster the instance runs on.
    pub cluster: String,
    /// When it was written, as the runtime recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// The line, without its newline.
    pub text: String,
}

/// An instance that ended, with its last log lines: what Berth keeps of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    /// The instance's name.
    pub instance: String,
    /// The cluster it ran on.
    pub cluster: String,
    /// The release it ran.
    pub release: u64,
    /// Why it ended.
    pub exit: ExitReason,
    /// Its last log lines (at most [`KEEP_LINES`]), oldest first.
    pub lines: Vec<LogLine>,
}

/// The terminated instances kept per application and environment: the last
/// [`KEEP_INSTANCES`] of each, newest last, each with at most [`KEEP_LINES`] lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graveyard {
    kept: BTreeMap<WorkloadKey, VecDeque<Terminated>>,
}

impl Graveyard {
    /// Keeps `terminated` (replacing an earlier record of the same instance), dropping
    /// the oldest record of `key` beyond [`KEEP_INSTANCES`] and lines beyond
    /// [`KEEP_LINES`].
    pub fn bury(&mut self, key: &WorkloadKey, mut terminated: Terminated) {
        let from = terminated.lines.len().saturating_sub(KEEP_LINES);
        terminated.lines.drain(..from);
        for line in &mut terminated.lines {
            cut(&mut line.text);
        }
        let kept = self.kept.entry(key.clone()).or_default();
        kept.retain(|t| t.instance != terminated.instance);
        kept.push_back(terminated);
        while kept.len() > KEEP_INSTANCES {
            kept.pop_front();
        }
    }

    /// The terminated instances of `key`, oldest first.
    #[must_use]
    pub fn of(&self, key: &WorkloadKey) -> Vec<Terminated> {
        self.kept
            .get(key)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets every record of `key` except those `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(&WorkloadKey) -> bool) {
        self.kept.retain(|k, _| keep(k));
    }
}

/// The lines of `lines` that `query` keeps: those since its instant, then its tail.
#[must_use]
pub fn select(lines: Vec<LogLine>, query: &LogQuery) -> Vec<LogLine> {
    let mut lines: Vec<LogLine> = lines
        .into_iter()
        .filter(|l| query.since.is_none_or(|s| l.time.is_none_or(|t| t >= s)))
        .collect();
    if let Some(tail) = query.tail {
        let from = lines.len().saturating_sub(tail as usize);
        lines.drain(..from);
    }
    lines
}

/// Failures of instances of one shape that never became healthy, within
/// [`CRASH_LOOP_WINDOW_SECONDS`], from which a rollout counts as crash-looping.
pub const CRASH_LOOP_NEVER_HEALTHY: usize = 3;
/// Failures of instances of one shape, healthy for a while or not, within
/// [`CRASH_LOOP_WINDOW_SECONDS`], from which a rollout counts as crash-looping.
pub const CRASH_LOOP_FAILURES: usize = 5;
/// The window crash-loop detection looks back over.
pub const CRASH_LOOP_WINDOW_SECONDS: u64 = 60;

/// One failure of an instance, as crash-loop detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Seconds ago.
    pub age_seconds: u64,
    /// Whether the instance had passed a health check before it failed.
    pub was_healthy: bool,
}

/// Whether the instances of a release's shape crash-loop, so that its rollout should fail
/// now rather than at its deadline: while none of them is healthy, at least
/// [`CRASH_LOOP_NEVER_HEALTHY`] of them died before ever becoming healthy, or
/// [`CRASH_LOOP_FAILURES`] died at all, within the last [`CRASH_LOOP_WINDOW_SECONDS`].
#[must_use]
pub fn crash_loops(failures: &[Failure], healthy_now: u32) -> bool {
    if healthy_now > 0 {
        return false;
    }
    let recent: Vec<&Failure> = failures
        .iter()
        .filter(|f| f.age_seconds <= CRASH_LOOP_WINDOW_SECONDS)
        .collect();
    recent.iter().filter(|f| !f.was_healthy).count() >= CRASH_LOOP_NEVER_HEALTHY
        || recent.len() >= CRASH_LOOP_FAILURES
}

/// Reads `--since`: a duration back from `now` (`90s`, `10m`, `2h`, `1d`) or an RFC 3339
/// instant (`2026-12-03T09:00:00Z`).
///
/// # Errors
///
/// A sentence saying what is wrong and what would be read.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let bad = || {
        format!(
            "'{text}' is neither a duration nor an instant; use e.g. 90s, 10m, 2h, 1d or 2026-12-03T09:00:00Z"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    chrono::Duration::try_seconds(seconds)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(bad)
}

/// Cuts `text` to [`MAX_LINE`] bytes, at a character boundary.
pub fn cut(text: &mut String) {
    if text.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn exit_codes_above_128_are_signals_unless_oom() {
        let r = ExitReason::of_exit(3, false);
        assert_eq!(
            (r.cause, r.describe().as_str()),
            (ExitCause::Exited, "exited with code 3")
        );
        let r = ExitReason::of_exit(137, false);
        assert_eq!(r.cause, ExitCause::Signaled);
        assert_eq!(r.describe(), "was killed by SIGKILL (exit code 137)");
        let r = ExitReason::of_exit(137, true);
        assert_eq!(r.cause, ExitCause::OutOfMemory);
        assert!(r.describe().contains("out of memory"), "{}", r.describe());
        assert_eq!(ExitReason::of_exit(143, false).signal.as_deref(), Some("SIGTERM"));
        assert_eq!(
            ExitReason::of_exit(128 + 40, false).signal.as_deref(),
            Some("signal 40")
        );
        assert_eq!(ExitReason::of_exit(255, false).cause, ExitCause::Exited);
    }

    #[test]
    fn explain_quotes_the_last_lines() {
        let lines: Vec<String> = (1..=15).map(|i| format!("line {i}")).collect();
        let r = ExitReason::of_exit(1, false).with_lines(&lines);
        assert_eq!(r.last_lines.len(), QUOTED_LINES);
        assert_eq!(r.last_lines[0], "line 6");
        let text = r.explain();
        assert!(
            text.starts_with("exited with code 1; its last log lines:\n    line 6\n"),
            "{text}"
        );
        assert!(text.ends_with("line 15"), "{text}");
        let u = ExitReason::unhealthy(Some("HTTP 500".into()));
        assert_eq!(u.explain(), "failed its health check (last answer: HTTP 500)");
    }

    fn terminated(instance: &str, lines: usize) -> Terminated {
        Terminated {
            instance: instance.into(),
            cluster: "local".into(),
            release: 1,
            exit: ExitReason::of_exit(1, false),
            lines: (0..lines)
                .map(|i| LogLine {
                    instance: instance.into(),
                    cluster: "local".into(),
                    time: None,
                    text: format!("{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn a_shape_crash_loops_after_three_early_deaths_or_five_deaths_while_none_is_healthy() {
        let early = |age| Failure {
            age_seconds: age,
            was_healthy: false,
        };
        let late = |age| Failure {
            age_seconds: age,
            was_healthy: true,
        };
        assert!(!crash_loops(&[early(1), early(2)], 0));
        assert!(crash_loops(&[early(1), early(2), early(3)], 0));
        assert!(
            !crash_loops(&[early(1), early(2), early(3)], 1),
            "one healthy instance serves"
        );
        assert!(
            !crash_loops(&[early(1), early(2), early(61)], 0),
            "outside the window"
        );
        assert!(!crash_loops(&[late(1), late(2), late(3), late(4)], 0));
        assert!(crash_loops(&[late(1), late(2), late(3), late(4), late(5)], 0));
    }

    #[test]
    fn since_takes_durations_and_instants() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            parse_since("10m", now).unwrap(),
            now - chrono::Duration::minutes(10)
        );
        assert_eq!(parse_since("90s", now).unwrap().timestamp(), 1_800_000_000 - 90);
        assert_eq!(
            parse_since("1d", now).unwrap().timestamp(),
            1_800_000_000 - 86_400
        );
        assert_eq!(
            parse_since("2026-12-03T09:00:00Z", now).unwrap().to_rfc3339(),
            "2026-12-03T09:00:00+00:00"
        );
        for bad in ["", "10", "m", "10x", "-5m", "99999999999999999999d"] {
            let e = parse_since(bad, now).unwrap_err();
            assert!(e.contains("e.g. 90s"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_graveyard_is_bounded_per_workload() {
        let key = WorkloadKey {
            application: "web".into(),
            environment: "qa".into(),
        };
        let mut g = Graveyard::default();
        for i in 0..(KEEP_INSTANCES + 3) {
            g.bury(&key, terminated(&format!("i{i}"), KEEP_LINES + 50));
        }
        let kept = g.of(&key);
        assert_eq!(kept.len(), KEEP_INSTANCES);
        assert_eq!(kept[0].instance, "i3", "the oldest went first");
        assert_eq!(kept[0].lines.len(), KEEP_LINES);
        assert_eq!(kept[0].lines[0].text, "50", "the last lines are kept");
        g.bury(&key, terminated("i7", 1));
        assert_eq!(g.of(&key).len(), KEEP_INSTANCES, "the same instance is kept once");
        let mut long = "é".repeat(MAX_LINE);
        cut(&mut long);
        assert!(long.len() <= MAX_LINE + '…'.len_utf8());
        g.retain(|_| false);
        assert!(g.of(&key).is_empty());
    }
}
