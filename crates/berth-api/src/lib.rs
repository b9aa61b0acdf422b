//! Berth's REST API.
//!
//! Maps HTTP onto the use cases of `berth_service` and reads of the [`Store`]:
//! authentication, decoding and validation, error mapping (problem+json, in [`error`]).
//! It holds no business rules: use cases live in `berth_service`, decisions in
//! `berth_core`. The OpenAPI document is generated from the
//! handlers and served at `/api/v1/openapi.json`.

pub mod apply;
pub mod audit;
pub mod auth;
pub mod body;
pub mod builds;
pub mod contract;
pub mod credentials;
pub mod delivery;
pub mod error;
pub mod events;
pub mod governance;
pub mod identity;
pub mod metrics;
pub mod objects;
pub mod operate;
pub mod permissions;
pub mod promotion;
mod routes;
pub mod secrets;
pub mod sources;

use std::sync::Arc;

use berth_core::ports::{Builds, Clock, ClusterAccess, ImageResolver, Store};
use berth_service::Delivery;
use tokio::sync::Notify;

pub use governance::{Governance, RateLimit};
pub use routes::{openapi, router, router_with};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// Objects and events.
    pub store: Arc<dyn Store>,
    /// Tag to digest resolution.
    pub resolver: Arc<dyn ImageResolver>,
    /// Notified after every change, so the reconciler acts at once.
    pub changed: Arc<Notify>,
    /// Domain of application hostnames (`<app>.<env>.<domain>`).
    pub domain: String,
    /// Port of the built-in router, for the URLs in status answers.
    pub router_port: Option<u16>,
    /// Builds from sources: build once, logs.
    pub builds: Arc<dyn Builds>,
    /// The time: token expiry, promotion and deletion times.
    pub clock: Arc<dyn Clock>,
    /// The clusters' runtimes, for instances and logs.
    pub clusters: Arc<dyn ClusterAccess>,
    /// What `/metrics` exposes.
    pub metrics: Arc<metrics::ApiMetrics>,
    /// Syncs of sources asked for (`POST /sources/{name}/sync`), for the syncer.
    pub syncs: Arc<sources::SyncRequests>,
}

impl ApiState {
    /// The use cases over this state's ports; notifies [`ApiState::changed`] after a
    /// change.
    #[must_use]
    pub fn delivery(&self) -> Delivery {
        Delivery::new(self.store.clone(), self.resolver.clone(), self.clock.clone())
            .notifying(self.changed.clone())
    }
}
