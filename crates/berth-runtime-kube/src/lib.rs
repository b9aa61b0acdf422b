//! The Kubernetes runtime: Berth's workloads on real clusters, through the Kubernetes API.
//!
//! ```text
//!  reconciler ──&[Workload] (all, or of a few keys)──▶ KubeRuntime (one per Cluster)
//!                                  │ render (pure): Namespace, Deployment, Service,
//!                                  │   Ingress, ConfigMap, Secret, HPA, PDB, quota
//!                                  │ diff (pure): desired ⊆ observed, who changed what
//!                                  │ status (pure): Deployment status → rollout counts
//!                                  ▼
//!                     kube-rs client ──HTTP──▶ API server (server-side apply as `berth`)
//! ```
//!
//! The pure parts ([`render`], [`diff`], [`status`]) are tested without a cluster; the
//! runtime is tested against `berth-kube-fake`, and against a real cluster when
//! `BERTH_TEST_K8S=real` and `KUBECONFIG` are set.

pub mod diff;
pub mod error;
mod keyed;
pub mod render;
mod runtime;
pub mod status;

pub use error::{Error, Result};
pub use runtime::{KubeRuntime, RuntimeOptions};

/// The field manager of every server-side apply Berth makes.
pub const FIELD_MANAGER: &str = "berth";
