//! Application: one web app, one image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::source::{Builder, Source, validate_source};
use super::{
    secret::{SecretRef, validate_secret_refs},
    team::DEFAULT_TEAM,
};
use crate::{
    error::{Errors, FieldError},
    image::ImageRef,
    meta::{Kind, Resource},
    name, quantity,
};

/// The Application kind.
#[derive(Debug, Clone, Copy)]
pub struct ApplicationKind;

/// An application document.
pub type Application = Resource<ApplicationKind>;

/// HTTP health check, run by Berth against every replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Path that answers 2xx or 3xx when the replica can serve.
    #[serde(default = "default_path")]
    pub path: String,
    /// Seconds between checks.
    #[serde(default = "one")]
    pub interval_seconds: u32,
    /// Seconds one check may take.
    #[serde(default = "one")]
    pub timeout_seconds: u32,
    /// Successes in a row before a replica receives traffic.
    #[serde(default = "one")]
    pub healthy_threshold: u32,
    /// Failures in a row before a healthy replica is replaced.
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
}

fn default_path() -> String {
    "/".to_owned()
}
fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: default_path(),
            interval_seconds: 1,
            timeout_seconds: 1,
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        }
    }
}

/// CPU and memory limits of one replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU limit, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory limit, e.g. `256Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A file placed in every replica's filesystem before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Absolute path inside the container.
    pub path: String,
    /// The file's content (UTF-8).
    pub content: String,
}

/// What differs in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentOverride {
    /// Replicas in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Environment variables added to (or replacing) the application's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// An extra hostname the router answers for, e.g. `shop.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Scale on CPU between bounds in this environment (Kubernetes clusters); `replicas`
    /// is then ignored there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

/// Replica bounds and the CPU target a horizontal autoscaler keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest replicas per cluster.
    #[serde(default = "one")]
    pub min_replicas: u32,
    /// Most replicas per cluster.
    pub max_replicas: u32,
    /// Average CPU use, in percent of the CPU request, that the autoscaler aims at.
    #[serde(default = "default_cpu_target")]
    pub target_cpu_percent: u32,
}

fn default_cpu_target() -> u32 {
    75
}

/// Desired state of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Container image: a tag (resolved to its digest when a release is made) or a digest.
    pub image: String,
    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Overrides the image's command (arguments to the entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Port the web app listens on inside the container.
    #[serde(default = "default_port")]
    pub port: u16,
    /// HTTP health check.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Replicas per cluster.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Resource limits per replica.
    #[serde(default)]
    pub resources: Resources,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Files written into each replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<ConfigFile>,
    /// Per-environment differences, keyed by environment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, EnvironmentOverride>,
    /// Where the image is built from. With a `dockerfile` or `java` builder, `image` names
    /// the repository builds are pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The team that owns the application; its members' roles decide who may change and
    /// deploy it, and its quotas bound what it runs.
    #[serde(default = "default_team")]
    pub team: String,
    /// Secrets of the application delivered to every replica, as environment variables
    /// or files. Values are set apart (`berth secret set`), never in the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// Seconds a replica that is being stopped keeps running after it left the traffic,
    /// before it gets SIGTERM, so that routers and load balancers stop sending it new
    /// requests first ([`DEFAULT_DRAIN_SECONDS`] unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_seconds: Option<u32>,
    /// Seconds between SIGTERM and SIGKILL: the time the application has to finish the
    /// requests in flight and exit ([`DEFAULT_TERMINATION_GRACE_SECONDS`] unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_seconds: Option<u32>,
}

/// Drain time when an application sets none: long enough for Kubernetes' endpoints and
/// ingress controllers (and Berth's router, at once) to stop routing to the replica.
pub const DEFAULT_DRAIN_SECONDS: u32 = 5;
/// Stop time when an application sets none: Berth's Tomcat waits up to 25 s for the
/// requests in flight after SIGTERM, so a 20 s request finishes, and then exits.
pub const DEFAULT_TERMINATION_GRACE_SECONDS: u32 = 30;
/// The longest drain an application may ask for.
pub const MAX_DRAIN_SECONDS: u32 = 300;
/// The longest stop an application may ask for.
pub const MAX_TERMINATION_GRACE_SECONDS: u32 = 3600;

impl ApplicationSpec {
    /// [`Self::drain_seconds`], or its default.
    #[must_use]
    pub fn drain_seconds(&self) -> u32 {
        self.drain_seconds.unwrap_or(DEFAULT_DRAIN_SECONDS)
    }

    /// [`Self::termination_grace_seconds`], or its default.
    #[must_use]
    pub fn termination_grace_seconds(&self) -> u32 {
        self.termination_grace_seconds
            .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS)
    }
}

fn default_team() -> String {
    DEFAULT_TEAM.to_owned()
}

fn default_port() -> u16 {
    8080
}
fn default_replicas() -> u32 {
    1
}

/// Largest replica count one application may ask for per cluster.
pub const MAX_REPLICAS: u32 = 100;

/// Observed state of an application (per-environment state lives in deployments).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {}

impl Kind for ApplicationKind {
    const KIND: &'static str = "Application";
    const PLURAL: &'static str = "applications";
    type Spec = ApplicationSpec;
    type Status = ApplicationStatus;

    fn validate_spec(spec: &ApplicationSpec, errors: &mut Errors) {
        validate_application_spec(spec, "spec", errors);
    }
}

/// Checks an application spec whose fields live under `base` (`spec`, or
/// `spec.template` inside a release).
pub fn validate_application_spec(spec: &ApplicationSpec, base: &str, errors: &mut Errors) {
    match ImageRef::parse(&spec.image) {
        Err(e) => errors.push(
            FieldError::new(format!("{base}.image"), e.to_string()).hint("e.g. 127.0.0.1:5000/team/web:1.0"),
        ),
        // A built image is pushed under a tag of Berth's choosing; a release pins it.
        Ok(r)
            if base == "spec"
                && spec.source.as_ref().is_some_and(|s| s.builder != Builder::Image)
                && (r.tag.is_some() || r.digest.is_some()) =>
        {
            errors.push(
                FieldError::new(
                    format!("{base}.image"),
                    "with a source, image names the repository builds are pushed to",
                )
                .hint("leave out the tag and digest, e.g. 127.0.0.1:5000/team/web"),
            );
        }
        Ok(_) => {}
    }
    if let Some(source) = &spec.source {
        validate_source(source, &format!("{base}.source"), errors);
    }
    if spec.port == 0 {
        errors.push(FieldError::new(
            format!("{base}.port"),
            "must be between 1 and 65535",
        ));
    }
    check_replicas(&format!("{base}.replicas"), spec.replicas, errors);
    let hc = &spec.health_check;
    if !hc.path.starts_with('/') {
        errors.push(
            FieldError::new(
                format!("{base}.healthCheck.path"),
                format!("'{}' is not an absolute path", hc.path),
            )
            .hint("start it with '/', e.g. /healthz"),
        );
    }
    for (field, value, max) in [
        ("intervalSeconds", hc.interval_seconds, 300),
        ("timeoutSeconds", hc.timeout_seconds, 60),
        ("healthyThreshold", hc.healthy_threshold, 100),
        ("unhealthyThreshold", hc.unhealthy_threshold, 100),
    ] {
        if !(1..=max).contains(&value) {
            errors.push(FieldError::new(
                format!("{base}.healthCheck.{field}"),
                format!("must be between 1 and {max}"),
            ));
        }
    }
    if let Some(drain) = spec.drain_seconds
        && drain > MAX_DRAIN_SECONDS
    {
        errors.push(
            FieldError::new(
                format!("{base}.drainSeconds"),
                format!("{drain} is more than {MAX_DRAIN_SECONDS} seconds"),
            )
            .hint(format!(
                "use 0 to {MAX_DRAIN_SECONDS}; {DEFAULT_DRAIN_SECONDS} when left out"
            )),
        );
    }
    if let Some(grace) = spec.termination_grace_seconds
        && !(1..=MAX_TERMINATION_GRACE_SECONDS).contains(&grace)
    {
        errors.push(
            FieldError::new(
                format!("{base}.terminationGraceSeconds"),
                format!("must be between 1 and {MAX_TERMINATION_GRACE_SECONDS}, not {grace}"),
            )
            .hint(format!(
                "the seconds from SIGTERM to SIGKILL; {DEFAULT_TERMINATION_GRACE_SECONDS} when left out"
            )),
        );
    }
    if let Some(cpu) = &spec.resources.cpu
        && quantity::parse_cpu(cpu).is_none()
    {
        errors.push(
            FieldError::new(
                format!("{base}.resources.cpu"),
                format!("'{cpu}' is not a CPU quantity"),
            )
            .hint("use millicores like 500m or cores like 2"),
        );
    }
    if let Some(memory) = &spec.resources.memory {
        match quantity::parse_memory(memory) {
            None => errors.push(
                FieldError::new(
                    format!("{base}.resources.memory"),
                    format!("'{memory}' is not a memory quantity"),
                )
                .hint("use a whole number with a unit, like 256Mi or 1Gi"),
            ),
            Some(bytes) if bytes < 6 << 20 => errors.push(FieldError::new(
                format!("{base}.resources.memory"),
                "is below 6Mi, the smallest a container can run in",
            )),
            Some(_) => {}
        }
    }
    check_env(&format!("{base}.env"), &spec.env, errors);
    errors.check(name::check_label(&format!("{base}.team"), &spec.team));
    validate_secret_refs(&spec.secrets, base, errors);
    for (i, file) in spec.config_files.iter().enumerate() {
        let path = format!("{base}.configFiles[{i}].path");
        if !file.path.starts_with('/') || file.path.ends_with('/') || file.path.split('/').any(|p| p == "..")
        {
            errors.push(
                FieldError::new(path, format!("'{}' is not an absolute file path", file.path))
                    .hint("use a path like /etc/app/config.properties, without '..'"),
            );
        } else if spec.config_files[..i].iter().any(|f| f.path == file.path) {
            errors.push(FieldError::new(path, format!("'{}' is listed twice", file.path)));
        }
    }
    for (env, o) in &spec.environments {
        let at = format!("{base}.environments.{env}");
        errors.check(name::check_label(&at, env));
        if let Some(r) = o.replicas {
            check_replicas(&format!("{at}.replicas"), r, errors);
        }
        check_env(&format!("{at}.env"), &o.env, errors);
        if let Some(host) = &o.hostname {
            errors.check(name::check_hostname(&format!("{at}.hostname"), host));
        }
        if let Some(a) = &o.autoscaling {
            check_autoscaling(&format!("{at}.autoscaling"), a, errors);
        }
    }
}

fn check_autoscaling(at: &str, a: &Autoscaling, errors: &mut Errors) {
    if a.min_replicas == 0 {
        errors.push(
            FieldError::new(format!("{at}.minReplicas"), "must be at least 1")
                .hint("an autoscaled application keeps at least one replica"),
        );
    }
    check_replicas(&format!("{at}.maxReplicas"), a.max_replicas, errors);
    if a.max_replicas < a.min_replicas {
        errors.push(FieldError::new(
            format!("{at}.maxReplicas"),
            format!("{} is below minReplicas ({})", a.max_replicas, a.min_replicas),
        ));
    }
    if !(1..=100).contains(&a.target_cpu_percent) {
        errors.push(FieldError::new(
            format!("{at}.targetCpuPercent"),
            "must be between 1 and 100",
        ));
    }
}

fn check_replicas(path: &str, replicas: u32, errors: &mut Errors) {
    if replicas > MAX_REPLICAS {
        errors.push(FieldError::new(
            path,
            format!("{replicas} is more than the {MAX_REPLICAS} allowed"),
        ));
    }
}

/// Why variable `key` is reserved, when it is: Berth sets `PORT`, `BERTH_APPLICATION` and
/// `BERTH_ENVIRONMENT` in every replica (render.rs), so a user value would be overwritten
/// silently; it is refused at validation instead.
#[must_use]
pub fn reserved_env_reason(key: &str) -> Option<&'static str> {
    match key {
        "PORT" => Some("Berth sets PORT to the container port (spec.port) in every replica"),
        "BERTH_APPLICATION" | "BERTH_ENVIRONMENT" => {
            Some("Berth sets it to the application's and environment's names in every replica")
        }
        _ => None,
    }
}

fn check_env(base: &str, env: &BTreeMap<String, String>, errors: &mut Errors) {
    for key in env.keys() {
        if let Some(reason) = reserved_env_reason(key) {
            errors.push(
                FieldError::new(format!("{base}.{key}"), format!("'{key}' is reserved: {reason}"))
                    .hint("remove it; to listen elsewhere set spec.port, the app reads it from PORT"),
            );
            continue;
        }
        let ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            errors.push(
                FieldError::new(
                    format!("{base}.{key}"),
                    format!("'{key}' is not a valid variable name"),
                )
                .hint("use letters, digits and '_', not starting with a digit"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(json: serde_json::Value) -> Application {
        Application::from_json(&json).unwrap()
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Application",
            "metadata": {"name": "web"},
            "spec": {"image": "127.0.0.1:5000/web:1"}
        })
    }

    #[test]
    fn defaults_fill_in() {
        let a = app(minimal());
        assert_eq!((a.spec.port, a.spec.replicas), (8080, 1));
        assert_eq!(a.spec.health_check, HealthCheck::default());
        a.validate().unwrap();
    }

    #[test]
    fn stop_times_default_and_are_bounded_with_their_paths() {
        let a = app(minimal());
        assert_eq!(
            (a.spec.drain_seconds(), a.spec.termination_grace_seconds()),
            (DEFAULT_DRAIN_SECONDS, DEFAULT_TERMINATION_GRACE_SECONDS)
        );
        assert!(
            !serde_json::to_string(&a.spec).unwrap().contains("drainSeconds"),
            "defaults are not written, so existing templates keep their hash"
        );
        let mut j = minimal();
        j["spec"]["drainSeconds"] = serde_json::json!(0);
        j["spec"]["terminationGraceSeconds"] = serde_json::json!(120);
        let a = app(j);
        a.validate().unwrap();
        assert_eq!(
            (a.spec.drain_seconds(), a.spec.termination_grace_seconds()),
            (0, 120)
        );

        let mut j = minimal();
        j["spec"]["drainSeconds"] = serde_json::json!(301);
        j["spec"]["terminationGraceSeconds"] = serde_json::json!(0);
        let e = app(j).validate().unwrap_err();
        let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.drainSeconds", "spec.terminationGraceSeconds"]);
        assert!(e.errors[1].message.contains("between 1 and 3600"), "{e}");
        let mut j = minimal();
        j["spec"]["drainSeconds"] = serde_json::json!(-1);
        let e = Application::from_json(&j).unwrap_err();
        assert_eq!(e.errors[0].path, "spec.drainSeconds");
    }

    #[test]
    fn unknown_field_names_its_path() {
        let mut j = minimal();
        j["spec"]["healthCheck"] = serde_json::json!({"pth": "/x"});
        let e = Application::from_json(&j).unwrap_err();
        assert_eq!(e.errors[0].path, "spec.healthCheck.pth");
        assert!(
            e.errors[0].message.contains("unknown field `pth`"),
            "{}",
            e.errors[0].message
        );
    }

    #[test]
    fn every_unknown_field_is_reported_at_once() {
        let mut j = minimal();
        j["spce"] = serde_json::json!({});
        j["metadata"]["lables"] = serde_json::json!({"a": "b"});
        j["spec"]["healthCheck"] = serde_json::json!({"pth": "/x", "path": "/h"});
        j["spec"]["configFiles"] = serde_json::json!([{"path": "/a", "content": "x", "mode": 1}]);
        j["spec"]["replicas"] = serde_json::json!("three");
        let e = Application::from_json(&j).unwrap_err();
        let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
        for path in [
            "spce",
            "metadata.lables",
            "spec.healthCheck.pth",
            "spec.configFiles[0].mode",
            "spec.replicas",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        assert_eq!(paths.len(), 5, "{paths:?}");
        // A document whose only problems are unknown fields is still refused.
        let mut j = minimal();
        j["spec"]["imagee"] = "x".into();
        let e = Application::from_json(&j).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].path, "spec.imagee");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let mut j = minimal();
        j["spec"]["replicas"] = serde_json::json!("three");
        let e = Application::from_json(&j).unwrap_err();
        assert_eq!(e.errors[0].path, "spec.replicas");
    }

    #[test]
    fn every_invalid_value_is_reported() {
        let mut j = minimal();
        j["metadata"]["name"] = "Web_1".into();
        j["spec"]["healthCheck"] = serde_json::json!({"path": "healthz"});
        j["spec"]["resources"] = serde_json::json!({"cpu": "lots", "memory": "1.5Gi"});
        j["spec"]["env"] = serde_json::json!({"1BAD": "x"});
        j["spec"]["environments"] = serde_json::json!({"prod": {"replicas": 1000, "hostname": "bad..host"}});
        j["spec"]["configFiles"] = serde_json::json!([{"path": "etc/x", "content": ""}]);
        let paths: Vec<_> = app(j)
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "metadata.name",
                "spec.healthCheck.path",
                "spec.resources.cpu",
                "spec.resources.memory",
                "spec.env.1BAD",
                "spec.configFiles[0].path",
                "spec.environments.prod.replicas",
                "spec.environments.prod.hostname",
            ]
        );
    }

    #[test]
    fn variables_berth_sets_are_refused_with_their_path_and_reason() {
        let mut j = minimal();
        j["spec"]["env"] = serde_json::json!({"PORT": "9090", "GREETING": "hi"});
        j["spec"]["environments"] = serde_json::json!({"qa": {"env": {"BERTH_ENVIRONMENT": "prod"}}});
        j["spec"]["secrets"] = serde_json::json!([{"name": "p", "env": "PORT"}]);
        let errors = app(j).validate().unwrap_err().errors;
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.env.PORT",
                "spec.secrets[0].env",
                "spec.environments.qa.env.BERTH_ENVIRONMENT"
            ]
        );
        assert!(
            errors[0]
                .message
                .contains("Berth sets PORT to the container port"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn autoscaling_bounds_are_checked() {
        let mut j = minimal();
        j["spec"]["environments"] = serde_json::json!({
            "production": {"autoscaling": {"minReplicas": 0, "maxReplicas": 500, "targetCpuPercent": 0}},
            "qa": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}},
            "staging": {"autoscaling": {"maxReplicas": 3}}
        });
        let paths: Vec<_> = app(j)
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.environments.production.autoscaling.minReplicas",
                "spec.environments.production.autoscaling.maxReplicas",
                "spec.environments.production.autoscaling.targetCpuPercent",
                "spec.environments.qa.autoscaling.maxReplicas",
            ]
        );
    }
}
