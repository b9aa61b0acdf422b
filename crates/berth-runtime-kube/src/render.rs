//! Rendering: a [`Workload`] becomes the Kubernetes objects that run it. Pure: no I/O,
//! the same workload always gives the same objects (golden-file tested).
//!
//! ```text
//!  Workload ─▶ Namespace <team>-<env>        (shared, never pruned)
//!           ├▶ ResourceQuota, LimitRange     (shared, when the team has a quota)
//!           ├▶ Deployment <app>              (probes, JVM heap, graceful shutdown)
//!           ├▶ Service <app>                 (port 80 → the app's port)
//!           ├▶ Ingress <app>                 (one rule per hostname)
//!           ├▶ ConfigMap <app>-config        (config files)
//!           ├▶ Secret <app>-secrets          (secret variables and files)
//!           ├▶ HorizontalPodAutoscaler <app> (autoscaling set)
//!           └▶ PodDisruptionBudget <app>     (more than one replica)
//! ```
//!
//! Every object carries the Kubernetes recommended labels plus Berth's own, and the
//! annotation [`APPLIED_HASH`]: the hash of the object as rendered, so that a pass can
//! tell "Berth wants something new" from "someone changed what Berth applied".

use std::collections::BTreeMap;

use base64::Engine;
use berth_core::{quota, render::Workload};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Label every object Berth manages carries; pruning only ever looks at these.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The selector of everything Berth manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=berth";
/// Label naming the application an object belongs to.
pub const APPLICATION: &str = "berth.dev/application";
/// Label naming the environment.
pub const ENVIRONMENT: &str = "berth.dev/environment";
/// Label naming the release.
pub const RELEASE: &str = "berth.dev/release";
/// Annotation with the hash of the object as Berth rendered it.
pub const APPLIED_HASH: &str = "berth.dev/applied-hash";
/// Share of the container's memory limit the JVM may use for its heap.
pub const JAVA_HEAP_PERCENT: &str = "75.0";

/// The kinds of object Berth writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `v1 Namespace`.
    Namespace,
    /// `v1 ResourceQuota`.
    ResourceQuota,
    /// `v1 LimitRange`.
    LimitRange,
    /// `v1 ConfigMap`.
    ConfigMap,
    /// `v1 Secret`.
    Secret,
    /// `v1 Service`.
    Service,
    /// `apps/v1 Deployment`.
    Deployment,
    /// `networking.k8s.io/v1 Ingress`.
    Ingress,
    /// `autoscaling/v2 HorizontalPodAutoscaler`.
    HorizontalPodAutoscaler,
    /// `policy/v1 PodDisruptionBudget`.
    PodDisruptionBudget,
}

impl ObjectKind {
    /// Every kind, in apply order (what others refer to first).
    pub const ALL: [Self; 10] = [
        Self::Namespace,
        Self::ResourceQuota,
        Self::LimitRange,
        Self::ConfigMap,
        Self::Secret,
        Self::Service,
        Self::Deployment,
        Self::Ingress,
        Self::HorizontalPodAutoscaler,
        Self::PodDisruptionBudget,
    ];

    /// `(group, version, kind, plural)`.
    #[must_use]
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Self::Namespace => ("", "v1", "Namespace", "namespaces"),
            Self::ResourceQuota => ("", "v1", "ResourceQuota", "resourcequotas"),
            Self::LimitRange => ("", "v1", "LimitRange", "limitranges"),
            Self::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Self::Secret => ("", "v1", "Secret", "secrets"),
            Self::Service => ("", "v1", "Service", "services"),
            Self::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Self::Ingress => ("networking.k8s.io", "v1", "Ingress", "ingresses"),
            Self::HorizontalPodAutoscaler => (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            Self::PodDisruptionBudget => ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        }
    }

    /// The kind's name, e.g. `Deployment`.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.gvk().2
    }

    /// `apiVersion` of its objects.
    #[must_use]
    pub fn api_version(self) -> String {
        let (g, v, _, _) = self.gvk();
        if g.is_empty() {
            v.to_owned()
        } else {
            format!("{g}/{v}")
        }
    }

    /// Objects of this kind belong to one application (rather than to a namespace).
    #[must_use]
    pub fn per_application(self) -> bool {
        !matches!(self, Self::Namespace | Self::ResourceQuota | Self::LimitRange)
    }
}

/// One object to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Its kind.
    pub kind: ObjectKind,
    /// Namespace (empty for the Namespace itself).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The whole object, with [`APPLIED_HASH`] set.
    pub body: Value,
    /// The hash in [`APPLIED_HASH`].
    pub hash: String,
}

/// Kubernetes recommended labels plus Berth's own.
#[must_use]
pub fn labels(w: &Workload) -> BTreeMap<String, String> {
    let app = &w.key.application;
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), app.clone()),
        ("app.kubernetes.io/instance".to_owned(), instance(w)),
        ("app.kubernetes.io/version".to_owned(), format!("r{}", w.release)),
        ("app.kubernetes.io/component".to_owned(), "web".to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), app.clone()),
        (MANAGED_BY.to_owned(), "berth".to_owned()),
        (APPLICATION.to_owned(), app.clone()),
        (ENVIRONMENT.to_owned(), w.key.environment.clone()),
        (RELEASE.to_owned(), w.release.to_string()),
    ])
}

/// `<application>-<environment>`: the instance label that selects the app's pods.
#[must_use]
pub fn instance(w: &Workload) -> String {
    format!("{}-{}", w.key.application, w.key.environment)
}

/// The labels that select the app's pods (stable across releases).
#[must_use]
pub fn selector(w: &Workload) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), w.key.application.clone()),
        ("app.kubernetes.io/instance".to_owned(), instance(w)),
    ])
}

/// The namespace of a workload (its own, or `<team>-<environment>` when unset).
#[must_use]
pub fn namespace(w: &Workload) -> String {
    if w.namespace.is_empty() {
        let team = if w.team.is_empty() { "default" } else { &w.team };
        berth_core::render::namespace_of(team, &w.key.environment)
    } else {
        w.namespace.clone()
    }
}

fn metadata(w: &Workload, name: &str) -> Value {
    json!({"name": name, "namespace": namespace(w), "labels": labels(w)})
}

fn finish(kind: ObjectKind, namespace: String, name: String, mut body: Value) -> Manifest {
    let hash = hex::encode(&Sha256::digest(body.to_string().as_bytes())[..8]);
    body["metadata"]["annotations"][APPLIED_HASH] = json!(hash);
    Manifest {
        kind,
        namespace,
        name,
        body,
        hash,
    }
}

/// Millicores as Kubernetes writes them back (its canonical form), so that a rendered
/// quantity compares equal to the stored one.
#[must_use]
pub fn cpu(millis: u64) -> String {
    quota::format_cpu(millis)
}

/// Bytes in the canonical binary form (`256Mi`, `1Gi`).
#[must_use]
pub fn memory(bytes: u64) -> String {
    quota::format_memory(bytes)
}

/// A ConfigMap/Secret key for the i-th file: letters, digits, `-`, `_`, `.` only.
fn file_key(i: usize, path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or("file");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{i}-{clean}")
}

/// Name of the ConfigMap holding the config files.
#[must_use]
pub fn config_map_name(w: &Workload) -> String {
    format!("{}-config", w.key.application)
}

/// Name of the Secret holding secret variables and files.
#[must_use]
pub fn secret_name(w: &Workload) -> String {
    format!("{}-secrets", w.key.application)
}

fn secret_env_key(var: &str) -> String {
    format!("env-{var}")
}

/// Every object a workload renders to, Namespace first.
#[must_use]
pub fn manifests(w: &Workload) -> Vec<Manifest> {
    ObjectKind::ALL.iter().filter_map(|k| manifest(w, *k)).collect()
}

/// The object of one kind a workload renders to, if it has one.
#[must_use]
pub fn manifest(w: &Workload, kind: ObjectKind) -> Option<Manifest> {
    let ns = namespace(w);
    let app = w.key.application.clone();
    let (name, body) = match kind {
        ObjectKind::Namespace => return Some(namespace_manifest(w)),
        ObjectKind::ResourceQuota | ObjectKind::LimitRange => {
            let mut q = w.quota.clone()?;
            q.namespace.clone_from(&ns);
            let body = if kind == ObjectKind::ResourceQuota {
                quota::resource_quota(&q)
            } else {
                quota::limit_range(&q)
            };
            (
                body["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                body,
            )
        }
        ObjectKind::ConfigMap => {
            if w.config_files.is_empty() {
                return None;
            }
            let data: BTreeMap<String, &str> = w
                .config_files
                .iter()
                .enumerate()
                .map(|(i, f)| (file_key(i, &f.path), f.content.as_str()))
                .collect();
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": metadata(w, &config_map_name(w)), "data": data});
            (config_map_name(w), body)
        }
        ObjectKind::Secret => {
            if w.secret_env.is_empty() && w.secret_files.is_empty() {
                return None;
            }
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let mut data = BTreeMap::new();
            for (var, value) in &w.secret_env {
                data.insert(secret_env_key(var), b64(value.expose()));
            }
            for (i, f) in w.secret_files.iter().enumerate() {
                data.insert(file_key(i, &f.path), b64(f.value.expose()));
            }
            let body = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": metadata(w, &secret_name(w)), "data": data});
            (secret_name(w), body)
        }
        ObjectKind::Service => {
            let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata(w, &app),
                "spec": {"type": "ClusterIP", "selector": selector(w),
                    "ports": [{"name": "http", "port": 80, "targetPort": i64::from(w.port), "protocol": "TCP"}]}});
            (app, body)
        }
        ObjectKind::Deployment => {
            let body = deployment(w);
            (app, body)
        }
        ObjectKind::Ingress => {
            if w.hosts.is_empty() {
                return None;
            }
            let rules: Vec<Value> = w
                .hosts
                .iter()
                .map(|h| {
                    json!({"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": app, "port": {"name": "http"}}}}]}})
                })
                .collect();
            let body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": metadata(w, &app), "spec": {"rules": rules}});
            (app, body)
        }
        ObjectKind::HorizontalPodAutoscaler => {
            let a = w.autoscaling.as_ref()?;
            let body = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": metadata(w, &app),
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                    "minReplicas": a.min_replicas, "maxReplicas": a.max_replicas,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": a.target_cpu_percent}}}]}});
            (app, body)
        }
        ObjectKind::PodDisruptionBudget => {
            let min_replicas = w.autoscaling.as_ref().map_or(w.replicas, |a| a.min_replicas);
            if min_replicas <= 1 {
                return None;
            }
            let body = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": metadata(w, &app),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(w)}}});
            (app, body)
        }
    };
    Some(finish(kind, ns, name, body))
}

/// The Namespace of a workload's team and environment.
#[must_use]
pub fn namespace_manifest(w: &Workload) -> Manifest {
    let ns = namespace(w);
    let team = if w.team.is_empty() { "default" } else { &w.team };
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
        "labels": {MANAGED_BY: "berth", "berth.dev/team": team, ENVIRONMENT: w.key.environment}}});
    finish(ObjectKind::Namespace, String::new(), ns, body)
}

fn probe(w: &Workload, period: u32, failures: u32) -> Value {
    json!({"httpGet": {"path": w.health.path, "port": "http", "scheme": "HTTP"},
        "periodSeconds": period, "timeoutSeconds": w.health.timeout_seconds, "failureThreshold": failures})
}

fn deployment(w: &Workload) -> Value {
    let app = &w.key.application;
    let h = &w.health;
    let mut env: Vec<Value> = w
        .env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if let Some(bytes) = w.memory_bytes
        && !w.env.contains_key("JAVA_TOOL_OPTIONS")
        && bytes > 0
    {
        env.push(json!({"name": "JAVA_TOOL_OPTIONS",
            "value": format!("-XX:MaxRAMPercentage={JAVA_HEAP_PERCENT} -XX:+ExitOnOutOfMemoryError")}));
    }
    for var in w.secret_env.keys() {
        env.push(json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name(w), "key": secret_env_key(var)}}}));
    }
    env.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    let mut limits = serde_json::Map::new();
    if let Some(m) = w.cpu_millis {
        limits.insert("cpu".to_owned(), json!(cpu(m)));
    }
    if let Some(b) = w.memory_bytes {
        limits.insert("memory".to_owned(), json!(memory(b)));
    }
    let mut requests = limits.clone();
    if w.autoscaling.is_some() && !requests.contains_key("cpu") {
        // A CPU target is a share of the CPU request: without one the autoscaler is blind.
        requests.insert("cpu".to_owned(), json!("100m"));
    }

    let interval = h.interval_seconds.max(1);
    // Java web apps start slowly: the startup probe gives them the whole progress
    // deadline before liveness takes over.
    let startup_failures = w.startup_deadline_seconds.max(interval).div_ceil(interval);
    let mut container = json!({
        "name": app,
        "image": w.image,
        "ports": [{"name": "http", "containerPort": i64::from(w.port), "protocol": "TCP"}],
        "startupProbe": probe(w, interval, startup_failures.max(1)),
        "readinessProbe": {
            "httpGet": {"path": h.path, "port": "http", "scheme": "HTTP"},
            "periodSeconds": interval, "timeoutSeconds": h.timeout_seconds,
            "successThreshold": h.healthy_threshold, "failureThreshold": h.unhealthy_threshold},
        "livenessProbe": probe(w, interval.max(10), h.unhealthy_threshold.max(3)),
    });
    // Kubernetes sends SIGTERM while it takes the pod out of the endpoints: the preStop
    // sleep (the application's drainSeconds) keeps it serving until routers have caught
    // up. No hook for no drain: a zero-second sleep is refused by older clusters.
    if w.drain_seconds > 0 {
        container["lifecycle"] = json!({"preStop": {"sleep": {"seconds": w.drain_seconds}}});
    }
    if !env.is_empty() {
        container["env"] = json!(env);
    }
    if let Some(c) = &w.command {
        container["command"] = json!(c);
    }
    if let Some(a) = &w.args {
        container["args"] = json!(a);
    }
    if !limits.is_empty() || !requests.is_empty() {
        let mut r = serde_json::Map::new();
        if !limits.is_empty() {
            r.insert("limits".to_owned(), Value::Object(limits));
        }
        if !requests.is_empty() {
            r.insert("requests".to_owned(), Value::Object(requests));
        }
        container["resources"] = Value::Object(r);
    }
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    if !w.config_files.is_empty() {
        for (i, f) in w.config_files.iter().enumerate() {
            mounts.push(json!({"name": "config", "mountPath": f.path, "subPath": file_key(i, &f.path), "readOnly": true}));
        }
        volumes.push(json!({"name": "config", "configMap": {"name": config_map_name(w)}}));
    }
    if !w.secret_files.is_empty() {
        for (i, f) in w.secret_files.iter().enumerate() {
            mounts.push(json!({"name": "secrets", "mountPath": f.path, "subPath": file_key(i, &f.path), "readOnly": true}));
        }
        volumes.push(json!({"name": "secrets", "secret": {"secretName": secret_name(w)}}));
    }
    if !mounts.is_empty() {
        container["volumeMounts"] = json!(mounts);
    }
    let mut pod = json!({
        // The grace period counts from the preStop hook's start: the drain, then the
        // application's own grace after SIGTERM.
        "terminationGracePeriodSeconds": w.drain_seconds.saturating_add(w.termination_grace_seconds),
        "automountServiceAccountToken": false,
        "containers": [container],
    });
    if !volumes.is_empty() {
        pod["volumes"] = json!(volumes);
    }
    let mut spec = json!({
        "selector": {"matchLabels": selector(w)},
        "progressDeadlineSeconds": w.startup_deadline_seconds.max(1),
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": labels(w), "annotations": {"berth.dev/spec-hash": w.spec_hash}},
            "spec": pod,
        },
    });
    // With an autoscaler the replica count is the autoscaler's: applying it would fight.
    if w.autoscaling.is_none() {
        spec["replicas"] = json!(w.replicas);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(w, app), "spec": spec})
}

#[cfg(test)]
mod tests {
    use berth_core::{
        objects::{Autoscaling, ConfigFile, HealthCheck},
        render::WorkloadKey,
    };

    use super::*;

    pub(crate) fn workload() -> Workload {
        Workload {
            key: WorkloadKey {
                application: "web".into(),
                environment: "qa".into(),
            },
            cluster: "dc1".into(),
            deployment: "web-qa-3".into(),
            release: 3,
            image: "registry.example.com/web@sha256:0000000000000000000000000000000000000000000000000000000000000001".into(),
            port: 8080,
            env: BTreeMap::from([("PORT".into(), "8080".into())]),
            cpu_millis: Some(500),
            memory_bytes: Some(512 << 20),
            health: HealthCheck {
                path: "/healthz".into(),
                ..HealthCheck::default()
            },
            replicas: 1,
            hosts: vec!["web.qa.example.com".into()],
            startup_deadline_seconds: 120,
            spec_hash: "abc123".into(),
            team: "default".into(),
            namespace: "default-qa".into(),
            drain_seconds: 5,
            termination_grace_seconds: 40,
            ..Workload::default()
        }
    }

    fn kinds(ms: &[Manifest]) -> Vec<&'static str> {
        ms.iter().map(|m| m.kind.name()).collect()
    }

    #[test]
    fn a_plain_web_app() {
        let ms = manifests(&workload());
        assert_eq!(kinds(&ms), ["Namespace", "Service", "Deployment", "Ingress"]);
        insta::assert_yaml_snapshot!("plain", ms.iter().map(|m| &m.body).collect::<Vec<_>>());
    }

    #[test]
    fn files_autoscaling_and_replicas_add_objects() {
        let mut w = workload();
        w.replicas = 3;
        w.config_files = vec![ConfigFile {
            path: "/etc/app/application.properties".into(),
            content: "server.port=8080\n".into(),
        }];
        w.autoscaling = Some(Autoscaling {
            min_replicas: 2,
            max_replicas: 6,
            target_cpu_percent: 70,
        });
        w.hosts.push("shop.example.com".into());
        let ms = manifests(&w);
        assert_eq!(
            kinds(&ms),
            [
                "Namespace",
                "ConfigMap",
                "Service",
                "Deployment",
                "Ingress",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget"
            ]
        );
        let d = &ms[3].body;
        assert!(
            d["spec"].get("replicas").is_none(),
            "the autoscaler owns replicas"
        );
        insta::assert_yaml_snapshot!("full", ms.iter().map(|m| &m.body).collect::<Vec<_>>());
    }

    #[test]
    fn java_defaults_and_digest_images() {
        let ms = manifests(&workload());
        let c = &ms[2].body["spec"]["template"]["spec"]["containers"][0];
        assert!(c["image"].as_str().unwrap().contains("@sha256:"));
        let java = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "JAVA_TOOL_OPTIONS")
            .unwrap();
        assert!(java["value"].as_str().unwrap().contains("MaxRAMPercentage=75.0"));
        assert_eq!(c["startupProbe"]["failureThreshold"], 120);
        assert_eq!(c["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
        assert_eq!(
            ms[2].body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            45
        );
        assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    }

    #[test]
    fn stop_times_render_as_a_pre_stop_sleep_and_the_grace_period() {
        let mut w = workload();
        w.drain_seconds = 20;
        w.termination_grace_seconds = 30;
        let ms = manifests(&w);
        let pod = &ms[2].body["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
            20
        );
        assert_eq!(pod["terminationGracePeriodSeconds"], 50, "drain + grace");
        w.drain_seconds = 0;
        let ms = manifests(&w);
        let pod = &ms[2].body["spec"]["template"]["spec"];
        assert!(
            pod["containers"][0].get("lifecycle").is_none(),
            "no drain, no hook"
        );
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_ne!(ms[2].hash, manifests(&workload())[2].hash);
    }

    #[test]
    fn hashes_follow_content() {
        let a = manifests(&workload());
        let mut w = workload();
        w.release = 4;
        let b = manifests(&w);
        assert_ne!(a[2].hash, b[2].hash);
        assert_eq!(a[2].hash, manifests(&workload())[2].hash);
        assert_eq!(
            a[2].body["metadata"]["annotations"][APPLIED_HASH],
            a[2].hash.as_str()
        );
    }
}
