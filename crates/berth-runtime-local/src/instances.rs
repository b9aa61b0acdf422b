//! What a local cluster tells about its instances (replicas as containers): the list,
//! their logs through the Docker Engine API's `/containers/{id}/logs` (merged across
//! instances, followed across a rolling update), and what ended one — read from the
//! container before Berth removes it, with its last log lines, and kept in the
//! [`Graveyard`](berth_core::instance::Graveyard) so that a crash can be read later.
//!
//! ```text
//!  retire(failed) ─▶ stop ─▶ capture: inspect (exit code, OOM) + last KEEP_LINES lines
//!                              │ bury in the graveyard, notice "ReplicaReplaced: … exited
//!                              │ with code 3; its last log lines: …", backoff message
//!                              ▼
//!                            remove
//!  logs(follow) ─▶ one reader per instance ─▶ channel ─▶ feed; every FOLLOW_SCAN the
//!                  instance list is read again and readers start for new instances
//! ```

use std::{collections::HashSet, sync::Arc, time::Duration};

use berth_core::{
    instance::{
        ExitCause, ExitReason, Instance, InstanceState, KEEP_LINES, LogLine, LogQuery, Terminated, cut,
        select,
    },
    ports::{LogFeed, RuntimeError},
    render::WorkloadKey,
};
use bollard::{
    Docker,
    container::LogOutput,
    query_parameters::{InspectContainerOptions, LogsOptionsBuilder},
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    engine::ContainerState,
    state::{External, Shared, State, Tracked},
};

/// How often a followed feed looks for instances that started since.
const FOLLOW_SCAN: Duration = Duration::from_millis(250);
/// Lines a followed feed may hold for a slow reader before its readers wait.
const FEED_BUFFER: usize = 1024;
/// Inspections of a stopped instance before its exit code is given up on.
const INSPECT_ATTEMPTS: u32 = 20;
/// Pause between them.
const INSPECT_RETRY: Duration = Duration::from_millis(100);
/// Longest a capture of a stopping instance may take (inspect and logs).
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(5);

/// The instances of `key` that Berth tracks on this cluster, oldest first.
pub(crate) fn list(shared: &Shared, key: &WorkloadKey) -> Vec<Instance> {
    let state = shared.lock();
    let mut list: Vec<Instance> = state
        .replicas
        .iter()
        .filter(|(_, t)| &t.key == key && t.state != ContainerState::Removing)
        .map(|(id, t)| instance(&state, &shared.cluster, id, t))
        .collect();
    list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.name.cmp(&b.name)));
    list
}

fn instance(state: &State, cluster: &str, id: &str, t: &Tracked) -> Instance {
    let retiring = state.retiring.contains_key(id);
    let ready = t.serving() && !retiring;
    let instance_state = if retiring {
        InstanceState::Terminating
    } else {
        match t.state {
            ContainerState::Running if t.serving() => InstanceState::Running,
            ContainerState::Running => InstanceState::Starting,
            ContainerState::Paused => InstanceState::Paused,
            ContainerState::Exited => InstanceState::Exited,
            ContainerState::Removing => InstanceState::Terminating,
        }
    };
    Instance {
        name: t.name.clone(),
        cluster: cluster.to_owned(),
        datacenter: String::new(),
        release: t.release,
        state: instance_state,
        ready,
        restarts: state
            .replaced
            .get(&(t.key.clone(), t.release))
            .copied()
            .unwrap_or(0),
        created_at: t.created,
        address: t.host_port.map(|p| format!("127.0.0.1:{p}")),
        last_exit: None,
    }
}

/// Reads what ended a failed replica (its exit code or OOM kill, or for one stopped for
/// its health, the last probe answer) and its last lines, before it is removed.
pub(crate) async fn capture(
    docker: &Docker,
    cluster: &str,
    id: &str,
    t: &Tracked,
    unhealthy: bool,
) -> Terminated {
    let work = async {
        // Podman passes through states bollard cannot read (`stopped`, between a stop and
        // its cleanup): ask again until it settles.
        let mut info = None;
        for _ in 0..INSPECT_ATTEMPTS {
            match docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Ok(i) => {
                    info = Some(i);
                    break;
                }
                Err(e) if crate::engine::is_not_found(&e) => break,
                Err(_) => tokio::time::sleep(INSPECT_RETRY).await,
            }
        }
        let lines = read(docker, cluster, id, &t.name, Some(KEEP_LINES), None).await;
        (info, lines)
    };
    let (info, lines) = tokio::time::timeout(CAPTURE_TIMEOUT, work)
        .await
        .unwrap_or((None, Vec::new()));
    let container = info.as_ref().and_then(|i| i.state.as_ref());
    let code = container.and_then(|s| s.exit_code);
    let oom =
        container.and_then(|s| s.oom_killed).unwrap_or(false) || t.external == Some(External::OutOfMemory);
    let mut exit = if unhealthy {
        ExitReason::unhealthy(t.last_probe_error.clone())
    } else {
        match code {
            Some(code) => ExitReason::of_exit(code, oom),
            None => ExitReason::of_exit(-1, oom),
        }
    };
    if !unhealthy && t.external == Some(External::Stopped) {
        exit.cause = ExitCause::Stopped;
    }
    if exit.exit_code == Some(-1) {
        exit.exit_code = None;
    }
    exit.message = container
        .and_then(|s| s.error.clone())
        .filter(|e| !e.trim().is_empty());
    exit.finished_at = container
        .and_then(|s| s.finished_at.as_deref())
        .and_then(|f| DateTime::parse_from_rfc3339(f).ok())
        .map(|f| f.with_timezone(&Utc))
        .filter(|f| f.timestamp() > 0)
        .or_else(|| Some(Utc::now()));
    let texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    Terminated {
        instance: t.name.clone(),
        cluster: cluster.to_owned(),
        release: t.release,
        exit: exit.with_lines(&texts),
        lines,
    }
}

/// The log lines of one container, read to the end (not followed).
async fn read(
    docker: &Docker,
    cluster: &str,
    id: &str,
    name: &str,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let mut splitter = Splitter::default();
    let mut stream = docker.logs(id, Some(options(false, tail, since)));
    while let Some(item) = stream.next().await {
        match item {
            Ok(output) => lines.extend(splitter.push(cluster, name, &output)),
            Err(error) => {
                tracing::debug!(container = %name, %error, "reading logs failed");
                break;
            }
        }
    }
    lines.extend(splitter.finish(cluster, name));
    lines
}

fn options(
    follow: bool,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
) -> bollard::query_parameters::LogsOptions {
    let mut o = LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .tail(&tail.map_or_else(|| "all".to_owned(), |t| t.to_string()));
    if let Some(since) = since {
        o = o.since(i32::try_from(since.timestamp()).unwrap_or(i32::MAX));
    }
    o.build()
}

/// Turns the engine's log frames (one write each, which may hold several lines or part
/// of one) into lines, each with the timestamp the engine put in front.
#[derive(Default)]
struct Splitter {
    partial: String,
}

impl Splitter {
    fn push(&mut self, cluster: &str, instance: &str, output: &LogOutput) -> Vec<LogLine> {
        self.partial.push_str(&String::from_utf8_lossy(output.as_ref()));
        let mut lines = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let raw: String = self.partial.drain(..=end).collect();
            lines.push(line(cluster, instance, raw.trim_end_matches(['\n', '\r'])));
        }
        if self.partial.len() > berth_core::instance::MAX_LINE * 2 {
            let raw = std::mem::take(&mut self.partial);
            lines.push(line(cluster, instance, &raw));
        }
        lines
    }

    fn finish(&mut self, cluster: &str, instance: &str) -> Option<LogLine> {
        let raw = std::mem::take(&mut self.partial);
        (!raw.is_empty()).then(|| line(cluster, instance, raw.trim_end_matches(['\n', '\r'])))
    }
}

/// One line as the engine gives it with `timestamps=true`: `<RFC 3339 time> <text>`.
fn line(cluster: &str, instance: &str, raw: &str) -> LogLine {
    let (time, text) = match raw.split_once(' ') {
        Some((stamp, rest)) => match DateTime::parse_from_rfc3339(stamp) {
            Ok(t) => (Some(t.with_timezone(&Utc)), rest),
            Err(_) => (None, raw),
        },
        None => match DateTime::parse_from_rfc3339(raw) {
            Ok(t) => (Some(t.with_timezone(&Utc)), ""),
            Err(_) => (None, raw),
        },
    };
    let mut text = text.to_owned();
    cut(&mut text);
    LogLine {
        instance: instance.to_owned(),
        cluster: cluster.to_owned(),
        time,
        text,
    }
}

/// The (id, name) of the instances of `key` that `query` names, oldest first.
fn targets(shared: &Shared, key: &WorkloadKey, query: &LogQuery) -> Vec<(String, String)> {
    let state = shared.lock();
    let mut found: Vec<(&String, &Tracked)> = state
        .replicas
        .iter()
        .filter(|(_, t)| &t.key == key && t.state != ContainerState::Removing)
        .filter(|(_, t)| query.instance.as_ref().is_none_or(|i| *i == t.name))
        .collect();
    found.sort_by_key(|f| f.1.created);
    found
        .into_iter()
        .map(|(id, t)| (id.clone(), t.name.clone()))
        .collect()
}

/// The log feed of `key` on this cluster.
pub(crate) async fn feed(
    shared: Arc<Shared>,
    docker: Docker,
    key: &WorkloadKey,
    query: &LogQuery,
) -> Result<LogFeed, RuntimeError> {
    if let Some(instance) = &query.instance {
        // A terminated instance's lines are what Berth kept of it (its container may
        // still be on its way out, with nothing left to read).
        let kept = shared.lock().graveyard.of(key);
        if let Some(t) = kept.into_iter().find(|t| &t.instance == instance) {
            let lines = select(t.lines, query);
            return Ok(Box::pin(futures::stream::iter(lines.into_iter().map(Ok))));
        }
    }
    let first = targets(&shared, key, query);
    if let Some(instance) = &query.instance
        && first.is_empty()
    {
        return Err(RuntimeError::NoInstance {
            instance: instance.clone(),
        });
    }
    let tail = query.tail.map(|t| t as usize);
    if !query.follow {
        let reads = first
            .iter()
            .map(|(id, name)| read(&docker, &shared.cluster, id, name, tail, query.since));
        let mut lines: Vec<LogLine> = futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        // Merged by time; lines of one instance keep their order (the sort is stable).
        lines.sort_by_key(|l| l.time);
        let lines = select(
            lines,
            &LogQuery {
                tail: None,
                ..query.clone()
            },
        );
        return Ok(Box::pin(futures::stream::iter(lines.into_iter().map(Ok))));
    }
    let (tx, rx) = mpsc::channel::<Result<LogLine, RuntimeError>>(FEED_BUFFER);
    let key = key.clone();
    let query = query.clone();
    let mut readers = JoinSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (id, name) in first {
        seen.insert(id.clone());
        readers.spawn(follow(
            docker.clone(),
            shared.cluster.clone(),
            id,
            name,
            tail,
            query.since,
            tx.clone(),
        ));
    }
    let scanner = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => break,
                () = tokio::time::sleep(FOLLOW_SCAN) => {}
            }
            for (id, name) in targets(&shared, &key, &query) {
                if seen.insert(id.clone()) {
                    // An instance that started meanwhile: all of its lines.
                    readers.spawn(follow(
                        docker.clone(),
                        shared.cluster.clone(),
                        id,
                        name,
                        None,
                        None,
                        tx.clone(),
                    ));
                }
            }
            while readers.try_join_next().is_some() {}
        }
        readers.abort_all();
    });
    let guard = AbortOnDrop(scanner.abort_handle());
    let stream = tokio_stream_from(rx).map(move |line| {
        let _keep = &guard;
        line
    });
    Ok(Box::pin(stream))
}

/// Aborts the feed's background task when the feed is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Follows one container's log into `tx` until the container stops or the feed closes.
async fn follow(
    docker: Docker,
    cluster: String,
    id: String,
    name: String,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
    tx: mpsc::Sender<Result<LogLine, RuntimeError>>,
) {
    let mut splitter = Splitter::default();
    let mut stream = docker.logs(&id, Some(options(true, tail, since)));
    while let Some(item) = stream.next().await {
        match item {
            Ok(output) => {
                for line in splitter.push(&cluster, &name, &output) {
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::debug!(container = %name, %error, "following logs ended");
                break;
            }
        }
    }
    if let Some(line) = splitter.finish(&cluster, &name) {
        let _ = tx.send(Ok(line)).await;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn frames_become_timestamped_lines() {
        let mut s = Splitter::default();
        let out = |t: &str| LogOutput::StdOut {
            message: Bytes::from(t.to_owned()),
        };
        let lines = s.push(
            "c",
            "i",
            &out("2026-12-03T09:00:00.5Z hello\n2026-12-03T09:00:01Z wor"),
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, "hello");
        assert_eq!(
            lines[0].time.map(|t| t.timestamp_millis()),
            Some(1_796_288_400_500)
        );
        let lines = s.push("c", "i", &out("ld\r\n"));
        assert_eq!(lines[0].text, "world");
        assert!(s.push("c", "i", &out("no stamp")).is_empty());
        let last = s.finish("c", "i").unwrap();
        assert_eq!((last.text.as_str(), last.time), ("no stamp", None));
    }

    #[test]
    fn select_applies_since_then_tail() {
        let at = |s: i64| DateTime::from_timestamp(s, 0);
        let lines: Vec<LogLine> = (0..10)
            .map(|i| LogLine {
                instance: "i".into(),
                cluster: "c".into(),
                time: at(i),
                text: i.to_string(),
            })
            .collect();
        let q = LogQuery {
            since: at(4),
            tail: Some(3),
            ..LogQuery::default()
        };
        let texts: Vec<String> = select(lines, &q).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["7", "8", "9"]);
    }
}
