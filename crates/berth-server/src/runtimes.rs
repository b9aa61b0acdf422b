//! The runtimes the reconciler connected, by cluster, for the API's reads that reach one
//! cluster (instances, logs): the very runtime the reconciler drives, so that what it
//! knows (health, the lines of failed instances) is what the API shows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use berth_core::ports::{ClusterAccess, ClusterRuntime, RuntimeError};

/// Runtimes by cluster name, registered as the reconciler connects them.
#[derive(Default)]
pub struct Runtimes {
    by_cluster: Mutex<HashMap<String, Arc<dyn ClusterRuntime>>>,
}

impl Runtimes {
    /// Records the runtime the reconciler now uses for `cluster` (replacing an earlier
    /// one, made for an older spec of the cluster).
    pub fn register(&self, cluster: &str, runtime: Arc<dyn ClusterRuntime>) {
        self.by_cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cluster.to_owned(), runtime);
    }
}

#[async_trait]
impl ClusterAccess for Runtimes {
    async fn runtime(&self, cluster: &str) -> Result<Arc<dyn ClusterRuntime>, RuntimeError> {
        self.by_cluster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cluster)
            .cloned()
            .ok_or_else(|| RuntimeError::Unreachable {
                message: format!(
                    "Berth has not connected to cluster {cluster} (yet): its reconciler connects every \
                     cluster at its next pass, within seconds; if this stays, the cluster's status says why"
                ),
            })
    }
}
