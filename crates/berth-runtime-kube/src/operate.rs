//! Operating what runs on a cluster, through the API server: the pods of a workload as
//! instances, their logs (merged, followed across pods that start meanwhile, of the run
//! before a restart), and what a crash-looping rollout's last run said.
//!
//! Logs come from `GET …/pods/{pod}/log`, which the API server proxies to the kubelet of
//! the pod's node: a cluster without kubelets (or a node that went away) answers with an
//! error, which is passed on naming the cluster and the pod.
//!
//! What a pod's probes last answered comes from its `Unhealthy` events (`GET
//! …/namespaces/{ns}/events?fieldSelector=involvedObject.name={pod},reason=Unhealthy`),
//! read only for pods whose container stopped or runs unready, and best effort: a
//! cluster that does not let Berth read events loses the answer, not the instance.

use std::{collections::HashSet, time::Duration};

use berth_core::{
    instance::{Instance, KEEP_LINES, LogLine, LogQuery, QUOTED_LINES, Terminated},
    ports::{LogFeed, RuntimeError},
    render::WorkloadKey,
};
use futures::{AsyncBufReadExt, StreamExt, stream};
use kube::{
    Client,
    api::ListParams,
    core::{ObjectList, Request},
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Inner, clone_request};
use crate::{
    error::{Error, Result},
    pods,
    render::{APPLICATION, ENVIRONMENT},
};

/// How often a followed log looks for pods (and container runs) that started meanwhile.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// Pods whose probe answers one call looks up at most (each is a request); the others'
/// exit reasons go without the answer.
pub(super) const PROBE_LOOKUPS: usize = 10;

/// Pods not ready whose readiness answer an explanation of a slow rollout looks up at
/// most: they mostly answer alike, and the pass has other workloads to explain.
pub(super) const READINESS_LOOKUPS: usize = 3;

/// Which part of a container's log to read.
#[derive(Debug, Clone, Default)]
struct LogRequest {
    tail: Option<u32>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    follow: bool,
    previous: bool,
}

impl LogRequest {
    fn path(&self, pod: &Value) -> String {
        let mut q = vec!["timestamps=true".to_owned()];
        if let Some(t) = self.tail {
            q.push(format!("tailLines={t}"));
        }
        if let Some(s) = self.since {
            q.push(format!(
                "sinceTime={}",
                s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if self.follow {
            q.push("follow=true".to_owned());
        }
        if self.previous {
            q.push("previous=true".to_owned());
        }
        format!(
            "/api/v1/namespaces/{}/pods/{}/log?{}",
            pods::namespace(pod),
            pods::name(pod),
            q.join("&")
        )
    }
}

impl Inner {
    /// The pods of `key` on this cluster (every namespace), oldest first.
    pub(super) async fn pods_of(&self, client: &Client, key: &WorkloadKey) -> Result<Vec<Value>> {
        let selector = format!(
            "{APPLICATION}={},{ENVIRONMENT}={}",
            key.application, key.environment
        );
        let mut pods = self.list_all(client, "/api/v1/pods", &selector).await?;
        pods.sort_by(|a, b| {
            let at = |p: &Value| {
                p["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            at(a).cmp(&at(b)).then_with(|| pods::name(a).cmp(pods::name(b)))
        });
        Ok(pods)
    }

    /// The whole text of one container log.
    async fn log_text(&self, client: &Client, pod: &Value, req: &LogRequest) -> Result<Vec<LogLine>> {
        let request = http::Request::get(req.path(pod))
            .body(Vec::new())
            .map_err(|e| self.log_error(pod, &e.to_string()))?;
        let text = self
            .call(|| client.request_text(clone_request(&request)))
            .await
            .map_err(|f| self.pod_error(pod, f))?;
        Ok(text
            .lines()
            .map(|l| pods::log_line(l, pods::name(pod), &self.name))
            .collect())
    }

    fn log_error(&self, pod: &Value, message: &str) -> Error {
        Error::Api {
            cluster: self.name.clone(),
            message: format!("cannot read the log of pod {}: {message}", pods::name(pod)),
        }
    }

    fn pod_error(&self, pod: &Value, f: super::Failure) -> Error {
        match self.error(f) {
            Error::Api { message, .. } => self.log_error(pod, &message),
            e => e,
        }
    }

    /// The last lines of the run before the current one, best effort (for a message).
    pub(super) async fn previous_lines(&self, client: &Client, pod: &Value) -> Vec<String> {
        let req = LogRequest {
            tail: Some(QUOTED_LINES as u32),
            previous: true,
            ..LogRequest::default()
        };
        self.log_text(client, pod, &req)
            .await
            .map(|lines| lines.into_iter().map(|l| l.text).collect())
            .unwrap_or_default()
    }

    /// What the pod's probes last answered, from its `Unhealthy` events. Best effort: a
    /// failed lookup (no right to list events, say) reads as nothing said.
    pub(super) async fn probe_answers(&self, client: &Client, pod: &Value) -> pods::ProbeAnswers {
        let lp = ListParams::default()
            .fields(&format!(
                "involvedObject.name={},reason=Unhealthy",
                pods::name(pod)
            ))
            .limit(self.options.page_size);
        let path = format!("/api/v1/namespaces/{}/events", pods::namespace(pod));
        let read = match Request::new(path).list(&lp) {
            Ok(req) => self
                .call(|| client.request::<ObjectList<Value>>(clone_request(&req)))
                .await
                .map_err(|f| self.error(f).to_string()),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(list) => pods::probe_answers(&list.items),
            Err(e) => {
                tracing::debug!(cluster = %self.name, pod = pods::name(pod), error = %e, "cannot read the pod's events");
                pods::ProbeAnswers::default()
            }
        }
    }

    /// The liveness answer that ended the pod's last run, looked up while `budget`
    /// lookups remain for pods that stopped.
    async fn killing_answer(&self, client: &Client, pod: &Value, budget: &mut usize) -> Option<String> {
        if *budget == 0 || !pods::has_stopped(pod) {
            return None;
        }
        *budget -= 1;
        let answers = self.probe_answers(client, pod).await;
        pods::killing_answer(pod, &answers).map(str::to_owned)
    }

    pub(super) async fn instances(&self, key: &WorkloadKey) -> Result<Vec<Instance>> {
        let client = self.client().await?;
        let mut budget = PROBE_LOOKUPS;
        let mut out = Vec::new();
        for p in self.pods_of(&client, key).await? {
            let mut instance = pods::instance(&p, &self.name, pods::port(&p));
            if let Some(answer) = self.killing_answer(&client, &p, &mut budget).await {
                instance.last_exit = pods::exit_reason(&p, Some(&answer));
            }
            out.push(instance);
        }
        Ok(out)
    }

    pub(super) async fn terminated(&self, key: &WorkloadKey) -> Result<Vec<Terminated>> {
        let client = self.client().await?;
        let mut out = Vec::new();
        let mut budget = PROBE_LOOKUPS;
        for pod in self
            .pods_of(&client, key)
            .await?
            .iter()
            .filter(|p| pods::has_previous(p))
        {
            let terminated = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
            let Some(mut exit) = pods::terminated_reason(terminated) else {
                continue;
            };
            if let Some(answer) = self.killing_answer(&client, pod, &mut budget).await {
                exit = pods::killed_by_probe(exit, &answer);
            }
            let req = LogRequest {
                tail: Some(KEEP_LINES as u32),
                previous: true,
                ..LogRequest::default()
            };
            let lines = self.log_text(&client, pod, &req).await?;
            let texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
            out.push(Terminated {
                instance: pods::name(pod).to_owned(),
                cluster: self.name.clone(),
                release: pods::release(pod),
                exit: exit.with_lines(&texts),
                lines,
            });
        }
        Ok(out)
    }

    pub(super) async fn logs(
        self: &std::sync::Arc<Self>,
        key: &WorkloadKey,
        query: &LogQuery,
    ) -> std::result::Result<LogFeed, RuntimeError> {
        let client = self.client().await?;
        let all = self.pods_of(&client, key).await?;
        let chosen: Vec<Value> = match &query.instance {
            Some(name) => {
                let pod = all.into_iter().find(|p| pods::name(p) == name).ok_or_else(|| {
                    RuntimeError::NoInstance {
                        instance: format!("{name} on cluster {}", self.name),
                    }
                })?;
                if !pods::has_log(&pod) {
                    let why = pods::instance(&pod, &self.name, None).last_exit.map_or_else(
                        || "its container is still being created".to_owned(),
                        |e| e.describe(),
                    );
                    return Err(Error::Api {
                        cluster: self.name.clone(),
                        message: format!("instance {name} has not started yet, so it has no log ({why})"),
                    }
                    .into());
                }
                vec![pod]
            }
            None => all.into_iter().filter(pods::has_log).collect(),
        };
        let req = LogRequest {
            tail: query.tail,
            since: query.since,
            follow: false,
            previous: false,
        };
        if !query.follow {
            let mut lines = Vec::new();
            for pod in &chosen {
                lines.extend(self.log_text(&client, pod, &req).await?);
            }
            // Merged across instances by time; lines without one keep their order.
            lines.sort_by_key(|l| l.time);
            return Ok(Box::pin(stream::iter(lines.into_iter().map(Ok))));
        }
        let (tx, rx) = mpsc::channel::<std::result::Result<LogLine, RuntimeError>>(256);
        let this = std::sync::Arc::clone(self);
        let only = query.instance.clone();
        let key = key.clone();
        tokio::spawn(async move { this.follow(client, key, chosen, only, req, tx).await });
        Ok(Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    /// Follows the logs of `initial` and of every container run that starts later, until
    /// the receiver is dropped or an error was sent.
    async fn follow(
        self: std::sync::Arc<Self>,
        client: Client,
        key: WorkloadKey,
        initial: Vec<Value>,
        only: Option<String>,
        first: LogRequest,
        tx: mpsc::Sender<std::result::Result<LogLine, RuntimeError>>,
    ) {
        let mut followed: HashSet<(String, u64)> = HashSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut pods = initial;
        let mut first_round = true;
        loop {
            for pod in pods.iter().filter(|p| pods::has_log(p)) {
                if only.as_deref().is_some_and(|o| o != pods::name(pod)) {
                    continue;
                }
                let run = (
                    pods::name(pod).to_owned(),
                    pod["status"]["containerStatuses"][0]["restartCount"]
                        .as_u64()
                        .unwrap_or(0),
                );
                if !followed.insert(run) {
                    continue;
                }
                // Runs that start later are read from their beginning.
                let req = LogRequest {
                    follow: true,
                    tail: if first_round { first.tail } else { None },
                    ..first.clone()
                };
                tasks.spawn(Self::follow_one(
                    std::sync::Arc::clone(&self),
                    client.clone(),
                    pod.clone(),
                    req,
                    tx.clone(),
                ));
            }
            first_round = false;
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(DISCOVER_EVERY) => {}
            }
            match self.pods_of(&client, &key).await {
                Ok(p) => pods = p,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
    }

    /// Streams one container run's log into `tx`.
    async fn follow_one(
        self: std::sync::Arc<Self>,
        client: Client,
        pod: Value,
        req: LogRequest,
        tx: mpsc::Sender<std::result::Result<LogLine, RuntimeError>>,
    ) {
        let opened = async {
            let request = http::Request::get(req.path(&pod))
                .body(Vec::new())
                .map_err(|e| self.log_error(&pod, &e.to_string()))?;
            match tokio::time::timeout(self.options.request_timeout, client.request_stream(request)).await {
                Ok(Ok(body)) => Ok(body),
                Ok(Err(e)) => Err(self.pod_error(&pod, super::Failure::Kube(e))),
                Err(_) => Err(self.pod_error(&pod, super::Failure::Timeout(self.options.request_timeout))),
            }
        };
        let body = match opened.await {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let mut lines = Box::pin(body).lines();
        while let Some(line) = lines.next().await {
            let item = match line {
                Ok(l) => Ok(pods::log_line(&l, pods::name(&pod), &self.name)),
                Err(e) => Err(self.log_error(&pod, &e.to_string()).into()),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    }
}
