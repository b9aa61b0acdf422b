//! Rendering: what should run on one cluster for one application in one environment,
//! as a runtime-neutral [`Workload`]. Pure: the same inputs give the same workload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{
    objects::{
        Autoscaling, ConfigFile, Deployment, Environment, HealthCheck, Release, SecretRef, SecretValue,
    },
    quantity,
    quota::NamespaceQuota,
};

/// Identifies an application in an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub struct WorkloadKey {
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.application, self.environment)
    }
}

/// What one cluster should run for one application in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// Application and environment.
    pub key: WorkloadKey,
    /// The cluster it runs on.
    pub cluster: String,
    /// The deployment that asked for it.
    pub deployment: String,
    /// Release number.
    pub release: u64,
    /// Image pinned by digest.
    pub image: String,
    /// Entrypoint override.
    pub command: Option<Vec<String>>,
    /// Command override.
    pub args: Option<Vec<String>>,
    /// Port the app listens on in the container.
    pub port: u16,
    /// Environment variables, including Berth's own (`BERTH_APPLICATION`,
    /// `BERTH_ENVIRONMENT`, `PORT`).
    pub env: BTreeMap<String, String>,
    /// Files written into each replica.
    pub config_files: Vec<ConfigFile>,
    /// CPU limit in millicores.
    pub cpu_millis: Option<u64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Health check.
    pub health: HealthCheck,
    /// Replicas wanted on this cluster.
    pub replicas: u32,
    /// Hostnames the router answers for.
    pub hosts: Vec<String>,
    /// Seconds a new replica may take to become healthy.
    pub startup_deadline_seconds: u32,
    /// Hash of everything that shapes a replica; replicas with another hash are replaced.
    pub spec_hash: String,
    /// The team that owns the application (`default` until teams exist).
    #[serde(default)]
    pub team: String,
    /// Kubernetes namespace: one per team and environment.
    #[serde(default)]
    pub namespace: String,
    /// Autoscaling bounds in this environment, when set (then `replicas` is the minimum).
    #[serde(default)]
    pub autoscaling: Option<Autoscaling>,
    /// Secret environment variables (kept out of `env`, and out of logs and events:
    /// values print as `***` and are never serialized).
    #[serde(skip)]
    pub secret_env: BTreeMap<String, SecretValue>,
    /// Secret files written into each replica (never serialized).
    #[serde(skip)]
    pub secret_files: Vec<SecretFile>,
    /// Name and version of every secret delivered: what of the secrets shapes a replica.
    #[serde(default)]
    pub secret_versions: BTreeMap<String, u64>,
    /// The team's quota in this namespace, when it has one; the Kubernetes runtime renders
    /// it as the namespace's ResourceQuota and LimitRange.
    #[serde(default)]
    pub quota: Option<NamespaceQuota>,
    /// Whether the runtime may take over fields that other managers own (the
    /// environment's `rollout.forceConflicts`).
    #[serde(default)]
    pub force_conflicts: bool,
    /// When its deployment's instances were last asked to restart: part of the shape, so
    /// that a restart replaces every instance by a new one, rolling and health-gated.
    #[serde(default)]
    pub restarted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds a replica being stopped keeps running out of traffic before SIGTERM
    /// (the application's `drainSeconds`).
    #[serde(default)]
    pub drain_seconds: u32,
    /// Seconds from SIGTERM to SIGKILL (the application's `terminationGraceSeconds`).
    #[serde(default)]
    pub termination_grace_seconds: u32,
}

pub use crate::objects::DEFAULT_TEAM;

/// A secret file written into each replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SecretFile {
    /// Absolute path inside the container.
    pub path: String,
    /// The content.
    pub value: SecretValue,
}

/// A secret's current value, as the reconciler decrypted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSecret {
    /// Its version.
    pub version: u64,
    /// Its value.
    pub value: SecretValue,
}

/// Delivers the secrets `refs` asks for to `workload`, from `secrets` (by name), and
/// updates the workload's hash so that a new secret version replaces replicas. Returns
/// the names of referenced secrets that `secrets` lacks (the others are delivered).
pub fn attach_secrets(
    workload: &mut Workload,
    refs: &[SecretRef],
    secrets: &BTreeMap<String, ResolvedSecret>,
) -> Vec<String> {
    let mut missing = Vec::new();
    for r in refs {
        let Some(s) = secrets.get(&r.name) else {
            missing.push(r.name.clone());
            continue;
        };
        workload.secret_versions.insert(r.name.clone(), s.version);
        if let Some(var) = &r.env {
            workload.secret_env.insert(var.clone(), s.value.clone());
        }
        if let Some(path) = &r.path {
            workload.secret_files.push(SecretFile {
                path: path.clone(),
                value: s.value.clone(),
            });
        }
    }
    workload.spec_hash = spec_hash(workload);
    missing
}

/// The Kubernetes namespace of a team in an environment: `<team>-<environment>`, cut to
/// the 63 characters a namespace may have (with a hash so cut names stay distinct).
#[must_use]
pub fn namespace_of(team: &str, environment: &str) -> String {
    let full = format!("{team}-{environment}");
    if full.len() <= 63 {
        return full;
    }
    let digest = hex::encode(&Sha256::digest(full.as_bytes())[..4]);
    let head: String = full.chars().take(63 - 9).collect();
    format!("{}-{digest}", head.trim_end_matches('-'))
}

/// The default hostname of an application in an environment: `<app>.<env>.<domain>`.
#[must_use]
pub fn default_host(application: &str, environment: &str, domain: &str) -> String {
    format!("{application}.{environment}.{domain}")
}

/// Renders the workload for `release` deployed by `deployment` to `environment` on `cluster`.
#[must_use]
pub fn render(
    release: &Release,
    deployment: &Deployment,
    environment: &Environment,
    cluster: &str,
    domain: &str,
) -> Workload {
    let app = &release.spec.application;
    let env_name = environment.name();
    let t = &release.spec.template;
    let over = t.environments.get(env_name).cloned().unwrap_or_default();

    let mut env = t.env.clone();
    env.extend(over.env);
    env.insert("PORT".to_owned(), t.port.to_string());
    env.insert("BERTH_APPLICATION".to_owned(), app.clone());
    env.insert("BERTH_ENVIRONMENT".to_owned(), env_name.to_owned());
    // A Java application's JVM is sized from its memory limit (crate::jvm).
    if let Some(sizing) = crate::jvm::sizing_of(t)
        && !env.contains_key("JAVA_TOOL_OPTIONS")
    {
        env.insert("JAVA_TOOL_OPTIONS".to_owned(), sizing.java_tool_options());
    }

    let mut hosts = vec![default_host(app, env_name, domain)];
    hosts.extend(over.hostname);

    let mut workload = Workload {
        key: WorkloadKey {
            application: app.clone(),
            environment: env_name.to_owned(),
        },
        cluster: cluster.to_owned(),
        deployment: deployment.name().to_owned(),
        release: release.spec.number,
        image: t.image.clone(),
        command: t.command.clone(),
        args: t.args.clone(),
        port: t.port,
        env,
        config_files: t.config_files.clone(),
        cpu_millis: t.resources.cpu.as_deref().and_then(quantity::parse_cpu),
        memory_bytes: t.resources.memory.as_deref().and_then(quantity::parse_memory),
        health: t.health_check.clone(),
        replicas: over
            .autoscaling
            .as_ref()
            .map_or(over.replicas.unwrap_or(t.replicas), |a| a.min_replicas),
        hosts,
        startup_deadline_seconds: environment.spec.rollout.progress_deadline_seconds,
        spec_hash: String::new(),
        team: t.team.clone(),
        namespace: namespace_of(&t.team, env_name),
        autoscaling: over.autoscaling.clone(),
        secret_env: BTreeMap::new(),
        secret_files: Vec::new(),
        secret_versions: BTreeMap::new(),
        quota: None,
        force_conflicts: environment.spec.rollout.force_conflicts,
        restarted_at: deployment.status.restarted_at,
        drain_seconds: t.drain_seconds(),
        termination_grace_seconds: t.termination_grace_seconds(),
    };
    workload.spec_hash = spec_hash(&workload);
    workload
}

/// Hash of the fields that shape one replica. The release number, replica count,
/// hostnames, deadlines and stop times (used when a replica is stopped) are left out: a release that only scales (or a rollback to an
/// identical shape) keeps the running replicas instead of replacing them.
fn spec_hash(w: &Workload) -> String {
    let shape = serde_json::json!({
        "image": w.image,
        "command": w.command,
        "args": w.args,
        "port": w.port,
        "env": w.env,
        "files": w.config_files,
        "cpu": w.cpu_millis,
        "memory": w.memory_bytes,
        "health": w.health,
    });
    let mut shape = shape;
    // Only when present, so that workloads without secrets keep their hash. Versions
    // and targets, never values: the hash is written where anyone may read it.
    if !w.secret_versions.is_empty() {
        let files: Vec<&str> = w.secret_files.iter().map(|f| f.path.as_str()).collect();
        shape["secrets"] = serde_json::json!({
            "versions": w.secret_versions,
            "env": w.secret_env.keys().collect::<Vec<_>>(),
            "files": files,
        });
    }
    // Only when present, so that workloads never restarted keep their hash.
    if let Some(at) = w.restarted_at {
        shape["restartedAt"] = serde_json::json!(at.to_rfc3339());
    }
    let digest = Sha256::digest(shape.to_string().as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{
        ApplicationSpec, DeploymentCause, DeploymentSpec, EnvironmentOverride, EnvironmentSpec, Placement,
        ReleaseOrigin,
    };

    const DIGEST: &str =
        "127.0.0.1:5000/web@sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn release(replicas: u32) -> Release {
        let spec: ApplicationSpec = serde_json::from_value(serde_json::json!({
            "image": DIGEST, "replicas": replicas, "env": {"A": "1"},
            "resources": {"cpu": "250m", "memory": "64Mi"},
            "environments": {"production": {"replicas": 3, "env": {"A": "2"}, "hostname": "shop.example.com"}}
        }))
        .unwrap();
        Release::of("web", 4, spec, ReleaseOrigin::default())
    }

    fn env(name: &str) -> Environment {
        Environment::new(
            name,
            EnvironmentSpec {
                clusters: vec![Placement {
                    cluster: "local".into(),
                    weight: 1,
                }],
                ..Default::default()
            },
        )
    }

    fn deployment(env: &str) -> Deployment {
        Deployment::new(
            format!("web-{env}-1"),
            DeploymentSpec {
                application: "web".into(),
                environment: env.into(),
                release: 4,
                number: 1,
                cause: DeploymentCause::Deploy,
                requested_by: None,
            },
        )
    }

    #[test]
    fn overrides_apply_per_environment() {
        let qa = render(&release(2), &deployment("qa"), &env("qa"), "local", "localhost");
        assert_eq!(qa.replicas, 2);
        assert_eq!(qa.env["A"], "1");
        assert_eq!(qa.hosts, ["web.qa.localhost"]);
        let prod = render(
            &release(2),
            &deployment("production"),
            &env("production"),
            "local",
            "localhost",
        );
        assert_eq!(prod.replicas, 3);
        assert_eq!(prod.env["A"], "2");
        assert_eq!(prod.env["BERTH_ENVIRONMENT"], "production");
        assert_eq!(prod.hosts, ["web.production.localhost", "shop.example.com"]);
        assert_eq!((prod.cpu_millis, prod.memory_bytes), (Some(250), Some(64 << 20)));
        assert_ne!(
            qa.spec_hash, prod.spec_hash,
            "env vars differ, so replicas differ"
        );
    }

    #[test]
    fn a_java_application_gets_its_jvm_sized_from_its_memory_limit() {
        let mut r = release(1);
        r.spec.template.resources.memory = Some("256Mi".into());
        assert!(
            !render(&r, &deployment("qa"), &env("qa"), "local", "localhost")
                .env
                .contains_key("JAVA_TOOL_OPTIONS"),
            "not a Java application"
        );
        r.spec.template.source = Some(
            serde_json::from_value(
                serde_json::json!({"git": "file:///r", "builder": {"java": {"war": "a.war"}}}),
            )
            .unwrap(),
        );
        let w = render(&r, &deployment("qa"), &env("qa"), "local", "localhost");
        let options = &w.env["JAVA_TOOL_OPTIONS"];
        assert!(
            options.starts_with("-Xmx96m -XX:MaxMetaspaceSize=64m"),
            "{options}"
        );
        r.spec
            .template
            .env
            .insert("JAVA_TOOL_OPTIONS".into(), "-Xmx1g".into());
        let w = render(&r, &deployment("qa"), &env("qa"), "local", "localhost");
        assert_eq!(w.env["JAVA_TOOL_OPTIONS"], "-Xmx1g", "the application's own wins");
    }

    #[test]
    fn stop_times_come_from_the_application_or_its_defaults() {
        let w = render(&release(1), &deployment("qa"), &env("qa"), "local", "localhost");
        assert_eq!(
            (w.drain_seconds, w.termination_grace_seconds),
            (
                crate::objects::DEFAULT_DRAIN_SECONDS,
                crate::objects::DEFAULT_TERMINATION_GRACE_SECONDS
            )
        );
        let mut r = release(1);
        r.spec.template.drain_seconds = Some(0);
        r.spec.template.termination_grace_seconds = Some(90);
        let set = render(&r, &deployment("qa"), &env("qa"), "local", "localhost");
        assert_eq!((set.drain_seconds, set.termination_grace_seconds), (0, 90));
        assert_eq!(set.spec_hash, w.spec_hash, "stop times do not replace replicas");
    }

    #[test]
    fn replica_count_does_not_change_the_replica_shape() {
        let a = render(&release(1), &deployment("qa"), &env("qa"), "local", "localhost");
        let b = render(&release(5), &deployment("qa"), &env("qa"), "local", "localhost");
        assert_eq!(a.spec_hash, b.spec_hash);
        let _ = EnvironmentOverride::default();
    }

    #[test]
    fn secrets_are_delivered_and_versions_shape_the_replica() {
        let base = render(&release(1), &deployment("qa"), &env("qa"), "local", "localhost");
        let refs: Vec<SecretRef> = serde_json::from_value(serde_json::json!([
            {"name": "db", "env": "DB_PASSWORD"}, {"name": "tls", "path": "/run/tls.pem"}, {"name": "gone", "env": "X"}
        ]))
        .unwrap();
        let resolved = |version| {
            BTreeMap::from([
                (
                    "db".to_owned(),
                    ResolvedSecret {
                        version,
                        value: SecretValue::new("s3cret".into()),
                    },
                ),
                (
                    "tls".to_owned(),
                    ResolvedSecret {
                        version: 1,
                        value: SecretValue::new("PEM".into()),
                    },
                ),
            ])
        };
        let mut w = base.clone();
        assert_eq!(attach_secrets(&mut w, &refs, &resolved(1)), ["gone"]);
        assert_eq!(w.secret_env["DB_PASSWORD"].expose(), "s3cret");
        assert_eq!(w.secret_files[0].path, "/run/tls.pem");
        assert!(!w.env.contains_key("DB_PASSWORD"), "secrets stay out of env");
        assert_ne!(w.spec_hash, base.spec_hash);
        let mut rotated = base.clone();
        attach_secrets(&mut rotated, &refs, &resolved(2));
        assert_ne!(rotated.spec_hash, w.spec_hash, "a new version replaces replicas");
        let json = serde_json::to_string(&w).unwrap();
        assert!(!json.contains("s3cret") && !json.contains("PEM"), "{json}");
        assert!(!format!("{w:?}").contains("s3cret"));
    }

    #[test]
    fn namespaces_are_per_team_and_environment_and_fit_a_label() {
        let w = render(&release(1), &deployment("qa"), &env("qa"), "local", "localhost");
        assert_eq!((w.team.as_str(), w.namespace.as_str()), ("default", "default-qa"));
        let long = namespace_of(&"t".repeat(40), &"e".repeat(40));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, namespace_of(&"t".repeat(40), &"e".repeat(41)));
    }
}
