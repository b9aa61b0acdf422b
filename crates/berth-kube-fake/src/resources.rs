//! The resource types the fake serves, for discovery and routing.

use serde_json::{Value, json};

/// One resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural, as in URLs.
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether it has a `status` subresource (main-resource writes keep the old status).
    pub status: bool,
    /// Whether `metadata.generation` follows spec changes.
    pub generation: bool,
}

impl ResourceType {
    /// `apiVersion` of its objects.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
        status,
        generation: status,
    }
}

/// Every resource type served. Pods are listed from the simulated rollouts, not stored.
pub const RESOURCES: &[ResourceType] = &[
    rt("", "v1", "namespaces", "Namespace", false, false),
    rt("", "v1", "configmaps", "ConfigMap", true, false),
    rt("", "v1", "secrets", "Secret", true, false),
    rt("", "v1", "services", "Service", true, true),
    rt("", "v1", "pods", "Pod", true, true),
    rt("apps", "v1", "deployments", "Deployment", true, true),
    rt("networking.k8s.io", "v1", "ingresses", "Ingress", true, true),
    rt(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        true,
    ),
    rt(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        true,
    ),
    rt("", "v1", "resourcequotas", "ResourceQuota", true, true),
    rt("", "v1", "limitranges", "LimitRange", true, false),
    rt("", "v1", "events", "Event", true, false),
];

/// Index of the pods resource (served from the rollout simulation).
pub const PODS: usize = 4;
/// Index of the deployments resource.
pub const DEPLOYMENTS: usize = 5;
/// Index of the horizontal pod autoscalers resource.
pub const AUTOSCALERS: usize = 7;
/// Index of the namespaces resource.
pub const NAMESPACES: usize = 0;
/// Index of the core/v1 events resource (stored ones, and the kubelet's about the
/// simulated pods' probes).
pub const EVENTS: usize = 11;

/// The fields a field selector may name on a resource, besides `metadata.name` and
/// `metadata.namespace` (what the API server supports for it).
#[must_use]
pub fn selectable_fields(resource: usize) -> &'static [&'static str] {
    match resource {
        EVENTS => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.fieldPath",
            "reason",
            "type",
        ],
        _ => &[],
    }
}

/// The resource type at `group/version/plural`.
#[must_use]
pub fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

fn verbs(r: &ResourceType) -> Value {
    if r.plural == "pods" {
        json!(["get", "list"])
    } else if r.plural == "events" {
        json!(["create", "delete", "get", "list", "patch", "update"])
    } else {
        json!(["create", "delete", "get", "list", "patch", "update", "watch"])
    }
}

/// `GET /api`.
#[must_use]
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
}

/// `GET /apis`.
#[must_use]
pub fn group_list() -> Value {
    let mut groups: Vec<(&str, &str)> = RESOURCES
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group, r.version))
        .collect();
    groups.dedup();
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`; `None` for an unknown group version.
#[must_use]
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs(r)}));
        if r.status {
            resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
