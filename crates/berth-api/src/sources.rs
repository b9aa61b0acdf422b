//! Sources (GitOps): `POST /sources/{name}/sync` asks the syncer to sync one at once.
//!
//! The syncer runs in `berth-server`; the API only hands it the names asked for through
//! [`SyncRequests`]. A sync applies the repository's documents as `source:<name>` with a
//! platform administrator's rights: only platform administrators create sources and ask
//! for syncs, so a source can do what its creator could.

use std::{collections::BTreeSet, sync::Mutex};

use berth_core::objects::{SourceKind, SyncSource};
use tokio::sync::Notify;

use crate::{ApiState, error::Result, objects};

/// Names of the sources whose sync was asked for and not yet taken by the syncer.
#[derive(Debug, Default)]
pub struct SyncRequests {
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl SyncRequests {
    /// Asks for a sync of source `name` and wakes the syncer.
    pub fn request(&self, name: &str) {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned());
        self.wake.notify_one();
    }

    /// Takes every name asked for since the last call.
    pub fn take(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Completes when a sync is asked for (at once if one was asked for since the last
    /// wait).
    pub async fn requested(&self) {
        self.wake.notified().await;
    }
}

/// Asks for a sync of source `name` at once; answers the source as it is (the syncer
/// writes the outcome to its status).
///
/// # Errors
///
/// [`crate::error::ApiError::NotFound`] for a source that does not exist; store failures.
pub async fn sync(state: &ApiState, name: &str) -> Result<SyncSource> {
    let source = objects::get::<SourceKind>(state, name).await?;
    state.syncs.request(name);
    Ok(source)
}
