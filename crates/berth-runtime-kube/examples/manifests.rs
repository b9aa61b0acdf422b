//! Writes every manifest a fixture set of workloads renders to, one YAML file per
//! object, into the directory given (default `target/rendered-manifests`), so that CI can
//! validate them against the official Kubernetes schemas (`scripts/test.sh`).
//!
//! ```text
//! cargo run -p berth-runtime-kube --example manifests -- target/rendered-manifests
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, path::PathBuf};

use berth_core::{
    objects::{Autoscaling, ConfigFile, HealthCheck, SecretValue},
    quota::{Limits, NamespaceQuota},
    render::{SecretFile, Workload, WorkloadKey},
};
use berth_runtime_kube::render;

fn base(app: &str, env: &str) -> Workload {
    Workload {
        key: WorkloadKey {
            application: app.into(),
            environment: env.into(),
        },
        cluster: "dc1".into(),
        deployment: format!("{app}-{env}-1"),
        release: 1,
        image: "registry.example.com/team/web@sha256:00000000000000000000000000000000000000000000000000000000000000aa"
            .into(),
        port: 8080,
        env: BTreeMap::from([("PORT".into(), "8080".into())]),
        health: HealthCheck::default(),
        replicas: 1,
        hosts: vec![format!("{app}.{env}.example.com")],
        startup_deadline_seconds: 120,
        spec_hash: "0123456789abcdef".into(),
        team: "default".into(),
        namespace: format!("default-{env}"),
        drain_seconds: berth_core::objects::DEFAULT_DRAIN_SECONDS,
        termination_grace_seconds: berth_core::objects::DEFAULT_TERMINATION_GRACE_SECONDS,
        ..Workload::default()
    }
}

/// The fixture set: every kind and option the renderer knows.
fn fixtures() -> Vec<Workload> {
    let plain = base("hello", "qa");

    let mut java = base("shop", "production");
    java.replicas = 3;
    java.cpu_millis = Some(1500);
    java.memory_bytes = Some(1 << 30);
    java.command = Some(vec!["java".into()]);
    java.args = Some(vec!["-jar".into(), "/app/shop.jar".into()]);
    java.health = HealthCheck {
        path: "/actuator/health".into(),
        interval_seconds: 5,
        timeout_seconds: 2,
        healthy_threshold: 2,
        unhealthy_threshold: 4,
    };
    java.hosts.push("shop.example.com".into());
    // A Tomcat with long requests: a longer drain and grace; and an app with no drain.
    java.drain_seconds = 15;
    java.termination_grace_seconds = 60;
    java.config_files = vec![ConfigFile {
        path: "/etc/shop/application.properties".into(),
        content: "server.port=8080\nspring.profiles.active=production\n".into(),
    }];
    java.secret_env = BTreeMap::from([("DB_PASSWORD".into(), SecretValue::new("s3cret".into()))]);
    java.secret_files = vec![SecretFile {
        path: "/etc/shop/tls.key".into(),
        value: SecretValue::new("-----BEGIN PRIVATE KEY-----".into()),
    }];
    java.autoscaling = Some(Autoscaling {
        min_replicas: 3,
        max_replicas: 10,
        target_cpu_percent: 70,
    });
    java.quota = Some(NamespaceQuota {
        namespace: "default-production".into(),
        team: "default".into(),
        environment: "production".into(),
        limits: Limits {
            cpu_millis: Some(20_000),
            memory_bytes: Some(40 << 30),
            replicas: Some(50),
        },
    });

    let mut internal = base("worker", "staging");
    internal.hosts.clear();
    internal.replicas = 2;
    internal.memory_bytes = Some(300 << 20);
    vec![plain, java, internal]
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/rendered-manifests".into()),
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for w in fixtures() {
        for m in render::manifests(&w) {
            let ns = if m.namespace.is_empty() {
                "cluster"
            } else {
                &m.namespace
            };
            let file = dir.join(format!("{ns}-{}-{}.yaml", m.kind.name().to_lowercase(), m.name));
            std::fs::write(&file, serde_saphyr::to_string(&m.body).unwrap()).unwrap();
            n += 1;
        }
    }
    println!("wrote {n} manifests to {}", dir.display());
}
