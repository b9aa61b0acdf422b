//! Cluster: a place that runs workloads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
    objects::credential::{KubeconfigText, SealedKubeconfig, check_kubeconfig},
};

/// The Cluster kind.
#[derive(Debug, Clone, Copy)]
pub struct ClusterKind;

/// A cluster document.
pub type Cluster = Resource<ClusterKind>;

/// Which runtime drives the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers through the Docker Engine API (Podman or Docker) on one machine.
    #[default]
    Local,
    /// A Kubernetes cluster driven through the Kubernetes API.
    Kubernetes,
}

/// Settings of a local cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalRuntime {
    /// Docker Engine API endpoint, e.g. `unix:///run/podman/podman.sock`; the server's
    /// `DOCKER_HOST` (or the platform default) when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Where the kubeconfig of a Kubernetes cluster comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum KubeconfigSource {
    /// A kubeconfig file on the Berth server's machine.
    Path(String),
    /// Write-only: the kubeconfig document itself (YAML). Berth seals it when the Cluster
    /// is written and stores and shows `sealed` instead; it is never returned.
    Inline(KubeconfigText),
    /// The kubeconfig Berth keeps sealed for this cluster (what `inline` became): its
    /// fingerprint, key and version. Send it back (or `sealed: {}`) to keep it.
    Sealed(SealedKubeconfig),
}

/// Settings of a Kubernetes cluster: a kubeconfig (and context), or the in-cluster
/// service account when Berth itself runs in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesRuntime {
    /// The kubeconfig to use: `{path: /etc/berth/prod.yaml}` or `{inline: "apiVersion: v1…"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<KubeconfigSource>,
    /// Context inside the kubeconfig; its `current-context` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Use the service account of the pod Berth runs in instead of a kubeconfig.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_cluster: bool,
}

/// Desired state of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// The runtime that drives this cluster.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// The datacenter the cluster is in; rollouts move datacenter by datacenter.
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    /// Settings for `runtime: local`.
    #[serde(default)]
    pub local: LocalRuntime,
    /// Settings for `runtime: kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesRuntime>,
}

fn default_datacenter() -> String {
    "default".to_owned()
}

/// Health of a cluster as Berth last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ClusterPhase {
    /// Not contacted yet.
    #[default]
    Unknown,
    /// The runtime answers.
    Ready,
    /// The runtime does not answer; Berth retries with backoff.
    Unreachable,
}

/// Observed state of a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Health.
    #[serde(default)]
    pub phase: ClusterPhase,
    /// What the runtime said when it was last contacted, or why it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Version reported by the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Failed contacts in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
}

impl Kind for ClusterKind {
    const KIND: &'static str = "Cluster";
    const PLURAL: &'static str = "clusters";
    type Spec = ClusterSpec;
    type Status = ClusterStatus;

    fn validate_spec(spec: &ClusterSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.datacenter", &spec.datacenter));
        if let Some(endpoint) = &spec.local.endpoint
            && !["unix://", "tcp://", "http://"]
                .iter()
                .any(|p| endpoint.starts_with(p))
        {
            errors.push(
                FieldError::new(
                    "spec.local.endpoint",
                    format!("'{endpoint}' is not a Docker Engine API endpoint"),
                )
                .hint("use unix:///path/to/socket, tcp://host:port or http://host:port"),
            );
        }
        validate_kubernetes(spec, errors);
    }
}

fn validate_kubernetes(spec: &ClusterSpec, errors: &mut Errors) {
    match (spec.runtime, &spec.kubernetes) {
        (RuntimeKind::Local, Some(_)) => errors.push(
            FieldError::new("spec.kubernetes", "is only for clusters with runtime: kubernetes")
                .hint("set runtime: kubernetes, or remove spec.kubernetes"),
        ),
        (RuntimeKind::Kubernetes, None) => errors.push(
            FieldError::new(
                "spec.kubernetes",
                "a Kubernetes cluster needs a kubeconfig or inCluster: true",
            )
            .hint("add kubernetes: {kubeconfig: {path: /path/to/kubeconfig}, context: <name>}"),
        ),
        (RuntimeKind::Kubernetes, Some(k)) => {
            if spec.local.endpoint.is_some() {
                errors.push(FieldError::new(
                    "spec.local.endpoint",
                    "is only for clusters with runtime: local",
                ));
            }
            match (&k.kubeconfig, k.in_cluster) {
                (Some(_), true) => errors.push(
                    FieldError::new(
                        "spec.kubernetes.inCluster",
                        "cannot be combined with a kubeconfig",
                    )
                    .hint("use either kubeconfig (and context) or inCluster: true"),
                ),
                (None, false) => {
                    errors.push(FieldError::new("spec.kubernetes.kubeconfig", "is missing").hint(
                        "give {path: /path/to/kubeconfig} or {inline: <document>}, or set inCluster: true",
                    ))
                }
                (None, true) if k.context.is_some() => errors.push(FieldError::new(
                    "spec.kubernetes.context",
                    "only applies to a kubeconfig, not to inCluster",
                )),
                _ => {}
            }
            match &k.kubeconfig {
                Some(KubeconfigSource::Path(path)) if !path.starts_with('/') => errors.push(
                    FieldError::new(
                        "spec.kubernetes.kubeconfig.path",
                        format!("'{path}' is not an absolute path"),
                    )
                    .hint("give the absolute path of the file on the Berth server's machine"),
                ),
                Some(KubeconfigSource::Inline(doc)) => check_kubeconfig(
                    doc.expose(),
                    k.context.as_deref(),
                    "spec.kubernetes.kubeconfig.inline",
                    errors,
                ),
                _ => {}
            }
            if let Some(context) = &k.context
                && context.trim().is_empty()
            {
                errors.push(FieldError::new("spec.kubernetes.context", "is empty"));
            }
        }
        (RuntimeKind::Local, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(spec: serde_json::Value) -> Result<(), Vec<String>> {
        let c = Cluster::from_json(&serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Cluster",
            "metadata": {"name": "prod"}, "spec": spec
        }))
        .map_err(|e| e.errors.into_iter().map(|e| e.path).collect::<Vec<_>>())?;
        c.validate()
            .map_err(|e| e.errors.into_iter().map(|e| e.path).collect())
    }

    #[test]
    fn kubernetes_settings_are_checked() {
        let ok = serde_json::json!({"runtime": "kubernetes",
            "kubernetes": {"kubeconfig": {"path": "/etc/berth/prod.yaml"}, "context": "prod"}});
        assert_eq!(cluster(ok), Ok(()));
        let inline = serde_json::json!({"runtime": "kubernetes",
            "kubernetes": {"kubeconfig": {"inline": "apiVersion: v1\nclusters: [{name: c, cluster: {server: 'https://k'}}]\n\
                contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n"}}});
        assert_eq!(cluster(inline), Ok(()));
        let sealed = serde_json::json!({"runtime": "kubernetes",
            "kubernetes": {"kubeconfig": {"sealed": {}}, "context": "x"}});
        assert_eq!(cluster(sealed), Ok(()));
        let no_clusters = serde_json::json!({"runtime": "kubernetes",
            "kubernetes": {"kubeconfig": {"inline": "apiVersion: v1\nclusters: []"}}});
        assert_eq!(
            cluster(no_clusters),
            Err(vec!["spec.kubernetes.kubeconfig.inline".to_owned()])
        );
        assert_eq!(
            cluster(serde_json::json!({"runtime": "kubernetes", "kubernetes": {"inCluster": true}})),
            Ok(())
        );
        let cases = [
            (serde_json::json!({"runtime": "kubernetes"}), "spec.kubernetes"),
            (
                serde_json::json!({"runtime": "kubernetes", "kubernetes": {}}),
                "spec.kubernetes.kubeconfig",
            ),
            (
                serde_json::json!({"runtime": "kubernetes", "kubernetes": {"kubeconfig": {"path": "kube.yaml"}}}),
                "spec.kubernetes.kubeconfig.path",
            ),
            (
                serde_json::json!({"runtime": "kubernetes", "kubernetes": {"inCluster": true, "kubeconfig": {"path": "/k"}}}),
                "spec.kubernetes.inCluster",
            ),
            (
                serde_json::json!({"kubernetes": {"inCluster": true}}),
                "spec.kubernetes",
            ),
        ];
        for (spec, path) in cases {
            assert_eq!(cluster(spec.clone()), Err(vec![path.to_owned()]), "{spec}");
        }
    }
}
