//! Berth's local runtime: the embedded default that runs applications on one machine
//! without Kubernetes, as containers through the Docker Engine API (Podman's compatible
//! socket on Linux, or Docker).
//!
//! ```text
//!          desired workloads (per cluster)              HTTP clients
//!                   │ reconcile, ~1/s and on changed()        │ Host: web.qa.<domain>
//!                   ▼                                         ▼
//!   LocalRuntime "dc1" ─┐                                  Router (hyper)
//!   LocalRuntime "dc2" ─┼──set routes──▶ RouteTable ◀──resolve─┘
//!        │  ▲           │                                     │ round-robin, retry
//!        │  └ events    │                                     ▼
//!        ▼   prober ────┘                     replicas on 127.0.0.1:<random port>
//!   Docker Engine API: containers labelled berth.cluster=<name>, berth.application, …
//! ```
//!
//! - [`LocalRuntime`] implements the core's
//!   [`ClusterRuntime`](berth_core::ports::ClusterRuntime) for one cluster (one endpoint):
//!   each pass lists the cluster's containers, plans with
//!   [`rollout::plan`](berth_core::rollout::plan) and starts, drains and removes
//!   replicas. It probes health itself and watches the events stream to react at once.
//! - [`RouteTable`] holds the healthy backends of every cluster by hostname.
//! - [`Router`] is the reverse proxy that serves them.

mod engine;
mod events;
mod instances;
mod metrics;
mod probe;
mod router;
mod routes;
mod runtime;
mod state;

pub use engine::{
    LABEL_APPLICATION, LABEL_CLUSTER, LABEL_DEPLOYMENT, LABEL_ENVIRONMENT, LABEL_HEALTH, LABEL_MANAGED_BY,
    LABEL_PORT, LABEL_RELEASE, LABEL_SPEC_HASH,
};
pub use metrics::RouterMetrics;
pub use router::{Router, RouterOptions};
pub use routes::{Backend, Resolved, Route, RouteTable, normalize_host};
pub use runtime::{LocalRuntime, RuntimeOptions};
