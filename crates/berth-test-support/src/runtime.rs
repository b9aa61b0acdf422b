//! A cluster that runs whatever it is asked to, at once.

use std::sync::Mutex;

use async_trait::async_trait;
use berth_core::{
    ports::{ClusterReport, ClusterRuntime, RuntimeError, WorkloadReport},
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
        Ok(rolled_out(desired))
    }

    async fn apply(&self, keys: &[WorkloadKey], desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        self.reachable()?;
        self.applies
            .lock()
            .unwrap()
            .push((keys.to_vec(), desired.to_vec()));
        Ok(rolled_out(desired))
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
