//! The cluster the integration suite runs against: the in-process fake by default, a
//! real cluster when `BERTH_TEST_K8S=real` (with `KUBECONFIG`, and `BERTH_TEST_IMAGE`
//! naming an image by digest that serves HTTP on port 80 at `/`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, time::Duration};

use berth_core::{
    objects::{HealthCheck, KubeconfigSource, KubernetesRuntime},
    ports::{ClusterReport, ClusterRuntime},
    render::{Workload, WorkloadKey},
};
use berth_kube_fake::{FakeCluster, FakeOptions};
use berth_runtime_kube::{KubeRuntime, RuntimeOptions};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// An image by digest; the fake never pulls it.
pub const FAKE_IMAGE: &str =
    "registry.example.com/web@sha256:0000000000000000000000000000000000000000000000000000000000000001";

/// Where the suite runs.
pub struct Harness {
    /// The fake, unless on a real cluster.
    pub fake: Option<FakeCluster>,
    /// Kubeconfig document.
    pub kubeconfig: String,
    /// A client for acting as someone else (kubectl, another controller).
    pub client: Client,
    /// This test's environment name (its namespace is `default-<env>`).
    pub env: String,
}

/// Whether the suite runs against a real cluster.
pub fn real() -> bool {
    std::env::var("BERTH_TEST_K8S").is_ok_and(|v| v == "real")
}

impl Harness {
    /// A fresh target with its own environment (and so namespace).
    pub async fn start(test: &str) -> Self {
        Self::start_with(test, FakeOptions::default()).await
    }

    /// A fresh target; `options` shape the fake.
    pub async fn start_with(test: &str, options: FakeOptions) -> Self {
        let suffix: u32 = rand_suffix();
        let env = format!("t{suffix}-{test}")
            .chars()
            .take(40)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned();
        let (fake, kubeconfig) = if real() {
            let path = std::env::var("KUBECONFIG").expect("BERTH_TEST_K8S=real needs KUBECONFIG");
            (
                None,
                std::fs::read_to_string(path).expect("KUBECONFIG is readable"),
            )
        } else {
            let fake = FakeCluster::start(options).await.unwrap();
            let kc = fake.kubeconfig();
            (Some(fake), kc)
        };
        let mut config = Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        config.default_retry = false;
        let client = Client::try_from(config).unwrap();
        Self {
            fake,
            kubeconfig,
            client,
            env,
        }
    }

    /// A runtime for this target.
    pub fn runtime(&self, options: RuntimeOptions) -> KubeRuntime {
        KubeRuntime::new(
            "dc1",
            &KubernetesRuntime {
                kubeconfig: Some(KubeconfigSource::Inline(self.kubeconfig.clone().into())),
                context: None,
                in_cluster: false,
            },
            options,
        )
        .unwrap()
    }

    /// The namespace of this test's workloads.
    pub fn namespace(&self) -> String {
        format!("default-{}", self.env)
    }

    /// A workload of application `app` in this test's environment.
    pub fn workload(&self, app: &str, release: u64, replicas: u32) -> Workload {
        let (image, port, path) = if real() {
            (
                std::env::var("BERTH_TEST_IMAGE").expect("BERTH_TEST_IMAGE names an image by digest"),
                80,
                "/",
            )
        } else {
            (FAKE_IMAGE.to_owned(), 8080, "/healthz")
        };
        let mut w = Workload {
            key: WorkloadKey {
                application: app.into(),
                environment: self.env.clone(),
            },
            cluster: "dc1".into(),
            deployment: format!("{app}-{}-{release}", self.env),
            release,
            image,
            port,
            env: BTreeMap::from([("PORT".into(), port.to_string())]),
            memory_bytes: Some(128 << 20),
            health: HealthCheck {
                path: path.into(),
                ..HealthCheck::default()
            },
            replicas,
            hosts: vec![format!("{app}.{}.example.com", self.env)],
            startup_deadline_seconds: 30,
            spec_hash: format!("r{release}"),
            team: "default".into(),
            namespace: self.namespace(),
            ..Workload::default()
        };
        w.env.insert("RELEASE".into(), release.to_string());
        w
    }

    /// Passes until `done` holds for the report, or panics after `within`.
    pub async fn until(
        &self,
        rt: &KubeRuntime,
        desired: &[Workload],
        within: Duration,
        done: impl Fn(&ClusterReport) -> bool,
    ) -> ClusterReport {
        let end = tokio::time::Instant::now() + within;
        loop {
            let report = rt.reconcile(desired).await.unwrap();
            if done(&report) {
                return report;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "not reached in {within:?}: {report:#?}"
            );
            tokio::time::sleep(Duration::from_millis(if real() { 1000 } else { 30 })).await;
        }
    }

    /// Deletes the test's namespace (on a real cluster; the fake just goes away).
    pub async fn cleanup(self) {
        if real() {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(self.client.clone());
            let _ = api.delete(&self.namespace(), &Default::default()).await;
            // Berth prunes whatever carries its labels anywhere on the cluster, so the next
            // test may only start once this one's objects are gone (the suite runs one test
            // at a time on a real cluster: see scripts/test.sh).
            let end = tokio::time::Instant::now() + Duration::from_secs(120);
            while api.get_opt(&self.namespace()).await.ok().flatten().is_some() {
                assert!(
                    tokio::time::Instant::now() < end,
                    "namespace {} not deleted in 120 s",
                    self.namespace()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos % 100_000
}

/// How long a rollout may take: a real cluster schedules and starts pods (kwok marks
/// them ready), the fake only waits its `ready_after`.
pub fn wait() -> Duration {
    if real() {
        Duration::from_secs(180)
    } else {
        Duration::from_secs(10)
    }
}

/// Fast runtime options for tests.
pub fn options() -> RuntimeOptions {
    RuntimeOptions {
        request_timeout: Duration::from_secs(2),
        watch: false,
        ..RuntimeOptions::default()
    }
}

/// Whether the report says the workload is fully rolled out.
pub fn complete(report: &ClusterReport, w: &Workload) -> bool {
    report.workloads.iter().any(|r| {
        r.key == w.key && r.counts.ready >= w.replicas && r.counts.updated == w.replicas && r.counts.old == 0
    })
}
