//! A cluster that runs whatever it is asked to, at once.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use berth_core::{
    instance::{Graveyard, Instance, InstanceState, LogLine, LogQuery, Terminated, select},
    ports::{ClusterAccess, ClusterReport, ClusterRuntime, LogFeed, RuntimeError, WorkloadReport},
    render::{Workload, WorkloadKey},
    rollout::Counts,
};

/// A [`ClusterRuntime`] that records every full pass and every per-key apply and
/// reports each workload fully rolled out, unless told it is unreachable.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    passes: Mutex<Vec<Vec<Workload>>>,
    applies: Mutex<Vec<(Vec<WorkloadKey>, Vec<Workload>)>>,
    unreachable: Mutex<Option<String>>,
    /// The workload of each key as last given (by a pass or an apply).
    running: Mutex<BTreeMap<WorkloadKey, Workload>>,
    lines: Mutex<BTreeMap<WorkloadKey, Vec<LogLine>>>,
    graveyard: Mutex<Graveyard>,
}

impl FakeRuntime {
    /// Every desired set it was given, in order.
    #[must_use]
    pub fn passes(&self) -> Vec<Vec<Workload>> {
        self.passes.lock().unwrap().clone()
    }

    /// Every per-key apply it was given (keys, desired workloads of those keys), in order.
    #[must_use]
    pub fn applies(&self) -> Vec<(Vec<WorkloadKey>, Vec<Workload>)> {
        self.applies.lock().unwrap().clone()
    }

    /// Makes every call fail as unreachable with `message` (`None`: reachable again).
    pub fn set_unreachable(&self, message: Option<&str>) {
        *self.unreachable.lock().unwrap() = message.map(str::to_owned);
    }

    /// Adds a log line of an instance of `key`: what `logs` then answers.
    pub fn write_line(&self, key: &WorkloadKey, line: LogLine) {
        self.lines
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .push(line);
    }

    /// Records an instance of `key` that ended: what `terminated` then answers.
    pub fn bury(&self, key: &WorkloadKey, terminated: Terminated) {
        self.graveyard.lock().unwrap().bury(key, terminated);
    }

    fn reachable(&self) -> Result<(), RuntimeError> {
        match self.unreachable.lock().unwrap().clone() {
            Some(message) => Err(RuntimeError::Unreachable { message }),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ClusterRuntime for FakeRuntime {
    async fn version(&self) -> Result<String, RuntimeError> {
        self.reachable()?;
        Ok("fake-1".to_owned())
    }

    async fn reconcile(&self, desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        self.reachable()?;
        self.passes.lock().unwrap().push(desired.to_vec());
        let mut running = self.running.lock().unwrap();
        running.clear();
        running.extend(desired.iter().map(|w| (w.key.clone(), w.clone())));
        drop(running);
        Ok(rolled_out(desired))
    }

    async fn apply(&self, keys: &[WorkloadKey], desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        self.reachable()?;
        self.applies
            .lock()
            .unwrap()
            .push((keys.to_vec(), desired.to_vec()));
        let mut running = self.running.lock().unwrap();
        for k in keys {
            running.remove(k);
        }
        running.extend(desired.iter().map(|w| (w.key.clone(), w.clone())));
        drop(running);
        Ok(rolled_out(desired))
    }

    /// One ready instance per replica of `key` as last given, named
    /// `<cluster>-<application>-<environment>-r<release>-<n>`.
    async fn instances(&self, key: &WorkloadKey) -> Result<Vec<Instance>, RuntimeError> {
        self.reachable()?;
        let running = self.running.lock().unwrap();
        let Some(w) = running.get(key) else {
            return Ok(Vec::new());
        };
        Ok((0..w.replicas)
            .map(|n| Instance {
                name: format!(
                    "{}-{}-{}-r{}-{n}",
                    w.cluster, key.application, key.environment, w.release
                ),
                cluster: w.cluster.clone(),
                datacenter: String::new(),
                release: w.release,
                state: InstanceState::Running,
                ready: true,
                restarts: 0,
                created_at: chrono::DateTime::UNIX_EPOCH,
                address: None,
                last_exit: None,
            })
            .collect())
    }

    /// The lines written with [`FakeRuntime::write_line`] that `query` keeps (never
    /// followed: the feed ends with them).
    async fn logs(&self, key: &WorkloadKey, query: &LogQuery) -> Result<LogFeed, RuntimeError> {
        self.reachable()?;
        let lines = self.lines.lock().unwrap().get(key).cloned().unwrap_or_default();
        let lines: Vec<LogLine> = lines
            .into_iter()
            .filter(|l| query.instance.as_ref().is_none_or(|i| *i == l.instance))
            .collect();
        let lines = select(lines, query);
        Ok(Box::pin(futures_stream(lines)))
    }

    async fn terminated(&self, key: &WorkloadKey) -> Result<Vec<Terminated>, RuntimeError> {
        self.reachable()?;
        Ok(self.graveyard.lock().unwrap().of(key))
    }
}

/// Every workload of `desired` reported as fully rolled out.
fn rolled_out(desired: &[Workload]) -> ClusterReport {
    ClusterReport {
        workloads: desired
            .iter()
            .map(|w| WorkloadReport {
                key: w.key.clone(),
                counts: Counts {
                    updated: w.replicas,
                    ready: w.replicas,
                    old: 0,
                },
                message: None,
                stalled: false,
            })
            .collect(),
        notices: Vec::new(),
    }
}

/// A finite stream of `lines`.
fn futures_stream(
    lines: Vec<LogLine>,
) -> impl futures_core::Stream<Item = Result<LogLine, RuntimeError>> + Send {
    struct Lines(std::vec::IntoIter<LogLine>);
    impl futures_core::Stream for Lines {
        type Item = Result<LogLine, RuntimeError>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next().map(Ok))
        }
    }
    Lines(lines.into_iter())
}

/// Clusters of [`FakeRuntime`]s, one per name, made when first asked for.
#[derive(Debug, Default)]
pub struct FakeClusters {
    runtimes: Mutex<HashMap<String, Arc<FakeRuntime>>>,
}

impl FakeClusters {
    /// The runtime of `cluster`.
    #[must_use]
    pub fn of(&self, cluster: &str) -> Arc<FakeRuntime> {
        self.runtimes
            .lock()
            .unwrap()
            .entry(cluster.to_owned())
            .or_default()
            .clone()
    }
}

#[async_trait]
impl ClusterAccess for FakeClusters {
    async fn runtime(&self, cluster: &str) -> Result<Arc<dyn ClusterRuntime>, RuntimeError> {
        let runtime: Arc<dyn ClusterRuntime> = self.of(cluster);
        Ok(runtime)
    }
}
