//! End to end on Kubernetes: the real server (API, store, reconciler) deploys to two
//! Kubernetes clusters reached through inline kubeconfigs, reports per-cluster status,
//! rolls back and deletes. By default the clusters are fake API servers; with
//! `BERTH_TEST_K8S=real` they are the real control planes (from
//! `tools/kubernetes/cluster.sh up NAME`) whose kubeconfig files `BERTH_TEST_KUBECONFIGS`
//! lists, separated by `:` — `scripts/test.sh` runs this file both ways. What only the fake
//! can do (a rollout that fails on demand) always runs on fakes.
//! Needs the local registry of `scripts/setup-runtime.sh` (the image is resolved there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use berth_kube_fake::{FakeCluster, FakeOptions, RolloutFailure};
use berth_server::ServerArgs;
use clap::Parser;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Client, Config,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use reqwest::Method;
use serde_json::{Value, json};
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServerArgs,
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn put(&self, path: &str, doc: Value) {
        let (s, b) = self.call(Method::PUT, path, Some(doc)).await;
        assert!((200..300).contains(&s), "PUT {path}: {s} {b}");
    }

    async fn wait_phase(&self, deployment: &str, phase: &str, within: Duration) -> Value {
        let end = tokio::time::Instant::now() + within;
        loop {
            let (_, d) = self
                .call(Method::GET, &format!("/deployments/{deployment}"), None)
                .await;
            if d["status"]["phase"] == phase {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{deployment} not {phase}: {d:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether this run targets real control planes.
fn real() -> bool {
    std::env::var("BERTH_TEST_K8S").is_ok_and(|v| v == "real")
}

/// How long a rollout may take: kwok's pods need a few seconds, the fake's 100 ms.
fn patience() -> Duration {
    Duration::from_secs(if real() { 180 } else { 30 })
}

/// A Kubernetes cluster a test deploys to: a fake API server, or a real control plane.
struct Kube {
    /// Keeps the fake serving; `None` on a real cluster.
    fake: Option<FakeCluster>,
    kubeconfig: String,
    /// The kubeconfig context Berth is told to use (the fake's is named, to test that).
    context: Option<&'static str>,
    /// A client of our own, to look at what Berth made.
    client: Client,
}

impl Kube {
    /// `n` clusters: fakes shaped by `options`, or with `BERTH_TEST_K8S=real` the first `n`
    /// kubeconfig files of `BERTH_TEST_KUBECONFIGS` (missing ones fail the test: CI
    /// always provides them, so nothing is skipped quietly).
    async fn start(n: usize, options: FakeOptions) -> Vec<Self> {
        let mut out = Vec::new();
        if real() {
            let paths = std::env::var("BERTH_TEST_KUBECONFIGS").unwrap_or_default();
            let paths: Vec<&str> = paths.split(':').filter(|p| !p.is_empty()).collect();
            assert!(
                paths.len() >= n,
                "BERTH_TEST_K8S=real needs {n} kubeconfig files in BERTH_TEST_KUBECONFIGS \
                 (separated by ':'; from tools/kubernetes/cluster.sh up NAME), got {paths:?}"
            );
            for path in &paths[..n] {
                let kubeconfig = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("cannot read the kubeconfig {path}: {e}"));
                out.push(Self::new(None, kubeconfig, None).await);
            }
        } else {
            for _ in 0..n {
                let fake = FakeCluster::start(options.clone()).await.unwrap();
                let kubeconfig = fake.kubeconfig();
                out.push(Self::new(Some(fake), kubeconfig, Some("fake")).await);
            }
        }
        out
    }

    /// `n` fake clusters, whatever the run targets: for what only the fake can do.
    async fn fakes(n: usize, options: FakeOptions) -> Vec<Self> {
        let mut out = Vec::new();
        for _ in 0..n {
            let fake = FakeCluster::start(options.clone()).await.unwrap();
            let kubeconfig = fake.kubeconfig();
            out.push(Self::new(Some(fake), kubeconfig, Some("fake")).await);
        }
        out
    }

    async fn new(fake: Option<FakeCluster>, kubeconfig: String, context: Option<&'static str>) -> Self {
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&kubeconfig).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Self {
            fake,
            kubeconfig,
            context,
            client: Client::try_from(config).unwrap(),
        }
    }

    /// The `kubernetes` part of a Cluster's spec for this cluster.
    fn spec(&self) -> Value {
        let mut spec = json!({"kubeconfig": {"inline": self.kubeconfig}});
        if let Some(context) = self.context {
            spec["context"] = json!(context);
        }
        spec
    }

    fn fake(&self) -> &FakeCluster {
        self.fake.as_ref().expect("a fake cluster")
    }

    async fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        kube::Api::<Deployment>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .unwrap()
    }

    /// The Deployment as JSON, which the test asserts on (it exists).
    async fn deployment_json(&self, namespace: &str, name: &str) -> Value {
        let d = self
            .deployment(namespace, name)
            .await
            .unwrap_or_else(|| panic!("no Deployment {namespace}/{name}"));
        serde_json::to_value(d).unwrap()
    }

    /// What the API server says its version is.
    async fn version(&self) -> String {
        self.client.apiserver_version().await.unwrap().git_version
    }

    /// Waits until `namespace` holds no Deployment `name` and, on a real cluster, no pods
    /// of it (the garbage collector removes its ReplicaSets and their pods).
    async fn wait_gone(&self, namespace: &str, name: &str) {
        let end = tokio::time::Instant::now() + patience();
        let pods = kube::Api::<Pod>::namespaced(self.client.clone(), namespace);
        let selector = format!("berth.dev/application={name}");
        loop {
            let deployment = self.deployment(namespace, name).await;
            let left = if self.fake.is_some() {
                0
            } else {
                pods.list(&ListParams::default().labels(&selector))
                    .await
                    .unwrap()
                    .items
                    .len()
            };
            if deployment.is_none() && left == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{namespace}/{name} still there after {:?}: Deployment {}, {left} pods",
                patience(),
                deployment.is_some()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn app(marker: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"image": "127.0.0.1:5000/busybox:latest", "replicas": 2,
            "healthCheck": {"path": "/healthz"}, "resources": {"memory": "64Mi"},
            "env": {"MARKER": marker}}})
}

async fn server(dir: &tempfile::TempDir) -> (berth_server::Server, Api) {
    let data = dir.path().join("data");
    let cli = Cli::parse_from([
        "berth",
        "--listen",
        "127.0.0.1:0",
        "--router-listen",
        "127.0.0.1:0",
        "--insecure-registry",
        "127.0.0.1:5000",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let server = berth_server::start(cli.args).await.unwrap();
    let api = Api {
        base: format!("http://{}", server.api_addr),
        token: server.bootstrap_token.clone().unwrap(),
        http: reqwest::Client::new(),
    };
    (server, api)
}

/// Registers clusters dc1, dc2, … (datacenters `datacenters`) and environment `env` over them.
async fn environment(api: &Api, env: &str, clusters: &[Kube], datacenters: &[&str]) {
    let mut members = Vec::new();
    for (i, (kube, datacenter)) in clusters.iter().zip(datacenters).enumerate() {
        let name = format!("dc{}", i + 1);
        api.put(
            &format!("/clusters/{name}"),
            json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": name},
                "spec": {"runtime": "kubernetes", "datacenter": datacenter, "kubernetes": kube.spec()}}),
        )
        .await;
        members.push(json!({"cluster": name}));
    }
    api.put(
        &format!("/environments/{env}"),
        json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": env},
            "spec": {"clusters": members, "rollout": {"progressDeadlineSeconds": 60}}}),
    )
    .await;
}

impl Api {
    /// POSTs `body` to `path`, expects 201 and returns the new deployment's name.
    async fn start_deployment(&self, path: &str, body: Value) -> String {
        let (s, d) = self.call(Method::POST, path, Some(body)).await;
        assert_eq!(s, 201, "POST {path}: {d}");
        d["metadata"]["name"].as_str().unwrap().to_owned()
    }
}

/// Asserts a finished deployment's per-cluster status: every cluster, in its datacenter,
/// with `replicas` ready of `replicas` desired.
fn assert_clusters(done: &Value, datacenters: &[&str], replicas: u64) {
    let clusters = done["status"]["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), datacenters.len(), "{done:#}");
    for (c, dc) in clusters.iter().zip(datacenters) {
        assert_eq!(
            (
                c["datacenter"].as_str(),
                c["ready"].as_u64(),
                c["desired"].as_u64()
            ),
            (Some(*dc), Some(replicas), Some(replicas)),
            "{c}"
        );
    }
}

/// On fakes and on two real control planes: deploy release 1 to both clusters, per-cluster
/// status (on a real cluster the Deployment controller's own counts of kwok's pods), a
/// second release, a rollback to release 1, and deleting the application removes it from
/// both (on a real cluster the garbage collector takes its ReplicaSets and pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_to_two_clusters_rolls_back_and_deletes() {
    let clusters = Kube::start(
        2,
        FakeOptions {
            ready_after: Duration::from_millis(100),
            ..FakeOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = server(&dir).await;
    let datacenters = ["east", "west"];
    environment(&api, "qa", &clusters, &datacenters).await;
    let ns = "default-qa";

    api.put("/applications/web", app("one")).await;
    let first = api
        .start_deployment("/applications/web/deploy", json!({"environment": "qa"}))
        .await;
    let done = api.wait_phase(&first, "Succeeded", patience()).await;
    assert_clusters(&done, &datacenters, 2);
    for kube in &clusters {
        let d = kube.deployment_json(ns, "web").await;
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .contains("@sha256:"),
            "{d:#}"
        );
        assert_eq!(d["metadata"]["labels"]["berth.dev/release"], "1");
        // What Berth reported ready is what the cluster's Deployment status says.
        assert_eq!(d["status"]["readyReplicas"], 2, "{d:#}");
        assert_eq!(
            d["status"]["observedGeneration"], d["metadata"]["generation"],
            "{d:#}"
        );
    }
    for (i, kube) in clusters.iter().enumerate() {
        let (_, cluster) = api
            .call(Method::GET, &format!("/clusters/dc{}", i + 1), None)
            .await;
        assert_eq!(cluster["status"]["phase"], "Ready", "{cluster:#}");
        let version = cluster["status"]["runtimeVersion"].as_str().unwrap_or_default();
        let served = kube.version().await;
        assert!(
            version.contains(&served) && version.contains("ok"),
            "/version ({served}) and /readyz: {cluster:#}"
        );
    }

    // Release 2 rolls out to both, then a rollback brings release 1 back everywhere.
    api.put("/applications/web", app("two")).await;
    let second = api
        .start_deployment("/applications/web/deploy", json!({"environment": "qa"}))
        .await;
    let done = api.wait_phase(&second, "Succeeded", patience()).await;
    assert_clusters(&done, &datacenters, 2);
    for kube in &clusters {
        let d = kube.deployment_json(ns, "web").await;
        assert_eq!(d["metadata"]["labels"]["berth.dev/release"], "2", "{d:#}");
    }
    let back = api
        .start_deployment("/applications/web/rollback", json!({"environment": "qa"}))
        .await;
    let done = api.wait_phase(&back, "Succeeded", patience()).await;
    assert_clusters(&done, &datacenters, 2);
    for kube in &clusters {
        let d = kube.deployment_json(ns, "web").await;
        assert_eq!(
            d["metadata"]["labels"]["berth.dev/release"], "1",
            "release 1 runs again: {d:#}"
        );
        let env: Vec<Value> = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            env.contains(&json!({"name": "MARKER", "value": "one"})),
            "release 1's configuration: {env:?}"
        );
        assert_eq!(d["status"]["readyReplicas"], 2, "{d:#}");
    }

    // Deleting the application stops it on both clusters.
    let (s, b) = api.call(Method::DELETE, "/applications/web", None).await;
    assert!((200..300).contains(&s), "DELETE /applications/web: {s} {b}");
    for kube in &clusters {
        kube.wait_gone(ns, "web").await;
    }
    server.shutdown().await;
}

/// Fake only (a rollout that never becomes ready, on demand): release 2 stalls on dc2,
/// Kubernetes reports ProgressDeadlineExceeded, the deployment fails at once and the
/// environment rolls back to release 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_stalls_on_one_cluster_is_rolled_back() {
    let clusters = Kube::fakes(
        2,
        FakeOptions {
            ready_after: Duration::from_millis(100),
            progress_deadline: Some(Duration::from_millis(500)),
            ..FakeOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = server(&dir).await;
    let datacenters = ["east", "west"];
    environment(&api, "qa", &clusters, &datacenters).await;
    api.put("/applications/web", app("one")).await;
    let first = api
        .start_deployment("/applications/web/deploy", json!({"environment": "qa"}))
        .await;
    let done = api.wait_phase(&first, "Succeeded", Duration::from_secs(30)).await;
    assert_clusters(&done, &datacenters, 2);

    let dc2 = &clusters[1];
    dc2.fake()
        .fail_rollouts("never-ready", RolloutFailure::NeverReady);
    api.put("/applications/web", app("never-ready")).await;
    let second = api
        .start_deployment("/applications/web/deploy", json!({"environment": "qa"}))
        .await;
    let failed = api.wait_phase(&second, "Failed", Duration::from_secs(30)).await;
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("dc2") && message.contains("ProgressDeadlineExceeded"),
        "{message}"
    );
    let (_, list) = api.call(Method::GET, "/deployments?application=web", None).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let rollback = items
        .iter()
        .find(|d| d["spec"]["cause"]["type"] == "AutoRollback")
        .unwrap_or_else(|| panic!("an automatic rollback: {list:#}"));
    let rollback = rollback["metadata"]["name"].as_str().unwrap().to_owned();
    api.wait_phase(&rollback, "Succeeded", Duration::from_secs(30))
        .await;
    let d = dc2.deployment_json("default-qa", "web").await;
    assert_eq!(
        d["metadata"]["labels"]["berth.dev/release"], "1",
        "release 1 runs again"
    );
    server.shutdown().await;
}

/// The reconciler works keys, not the world: a server with nothing to do makes no
/// runtime request; when the API server ends its watches, the watches list again and
/// nothing else happens (no full pass over every object); and a change to one
/// application is applied for that key alone (no list of the cluster's objects, no apply
/// for the other applications).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_is_silent_lost_watches_relist_alone_and_a_change_touches_only_its_key() {
    let fake = FakeCluster::start(FakeOptions {
        ready_after: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = Cli::parse_from([
        "berth",
        "--listen",
        "127.0.0.1:0",
        "--router-listen",
        "127.0.0.1:0",
        "--insecure-registry",
        "127.0.0.1:5000",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let server = berth_server::start(cli.args).await.unwrap();
    let api = Api {
        base: format!("http://{}", server.api_addr),
        token: server.bootstrap_token.clone().unwrap(),
        http: reqwest::Client::new(),
    };
    api.put(
        "/clusters/dc1",
        json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "dc1"},
            "spec": {"runtime": "kubernetes",
                "kubernetes": {"kubeconfig": {"inline": fake.kubeconfig()}, "context": "fake"}}}),
    )
    .await;
    api.put(
        "/environments/qa",
        json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
            "spec": {"clusters": [{"cluster": "dc1"}]}}),
    )
    .await;
    let names = ["a1", "a2", "a3", "a4", "a5"];
    let doc = |name: &str, marker: &str| {
        let mut d = app(marker);
        d["metadata"]["name"] = json!(name);
        d
    };
    let mut deployments = Vec::new();
    for name in names {
        api.put(&format!("/applications/{name}"), doc(name, "one")).await;
        let (s, d) = api
            .call(
                Method::POST,
                &format!("/applications/{name}/deploy"),
                Some(json!({"environment": "qa"})),
            )
            .await;
        assert_eq!(s, 201, "{d}");
        deployments.push(d["metadata"]["name"].as_str().unwrap().to_owned());
    }
    for d in &deployments {
        api.wait_phase(d, "Succeeded", Duration::from_secs(30)).await;
    }
    // Let the last status writes and watch events settle, then listen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.reset_requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = fake.requests();
    assert_eq!(
        (idle.writes(), idle.get, idle.list),
        (0, 0, 0),
        "an idle server asks the cluster nothing: {idle:?}"
    );

    // Every watch ends as expired: each watched kind lists once more (7 of them), and
    // nothing is applied; a full pass would list every kind again besides.
    fake.reset_requests();
    fake.expire_watches();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let relisted = fake.requests();
    assert_eq!(relisted.writes(), 0, "lost watches write nothing: {relisted:?}");
    assert!(
        relisted.list <= 7,
        "lost watches relist their kinds, no more: {relisted:?}"
    );

    // One application changes: only its objects are applied, nothing is listed.
    fake.reset_requests();
    api.put("/applications/a3", doc("a3", "two")).await;
    let (s, d) = api
        .call(
            Method::POST,
            "/applications/a3/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let changed = d["metadata"]["name"].as_str().unwrap().to_owned();
    api.wait_phase(&changed, "Succeeded", Duration::from_secs(30))
        .await;
    let after = fake.requests();
    // At most the pods of a3, to explain its rollout; never a relist of every object.
    assert!(
        after.list <= 3,
        "nothing is relisted for a change to one key: {after:?}"
    );
    // One application's objects (Deployment, Service, ConfigMap, PDB, ...), never five.
    assert!(
        after.patch > 0 && after.patch <= 8,
        "only a3's objects are applied: {after:?}"
    );
    let d = fake.object("deployments", "default-qa", "a3").unwrap();
    assert_eq!(d["metadata"]["labels"]["berth.dev/release"], "2");
    let other = fake.object("deployments", "default-qa", "a1").unwrap();
    assert_eq!(other["metadata"]["labels"]["berth.dev/release"], "1");
    server.shutdown().await;
}

/// Removes the containers a local cluster of this test made, even when the test fails.
struct LocalContainers(String);

impl Drop for LocalContainers {
    fn drop(&mut self) {
        let filter = format!("label=berth.cluster={}", self.0);
        let out = std::process::Command::new("podman")
            .args(["ps", "-aq", "--filter", &filter])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = std::process::Command::new("podman")
                    .args(["rm", "-f", "-t", "0"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// An environment over a Kubernetes cluster and a local (Podman) one deploys to both.
/// Needs Podman (`DOCKER_HOST`) and the local registry, like the local end-to-end tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_mixing_kubernetes_and_local_clusters_deploys_to_both() {
    let kube = Kube::start(
        1,
        FakeOptions {
            ready_after: Duration::from_millis(100),
            ..FakeOptions::default()
        },
    )
    .await
    .pop()
    .unwrap();
    let local = format!("mix{}", std::process::id());
    let _cleanup = LocalContainers(local.clone());
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = server(&dir).await;
    api.put(
        "/clusters/k8s",
        json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "k8s"},
            "spec": {"runtime": "kubernetes", "datacenter": "east",
                "kubernetes": kube.spec()}}),
    )
    .await;
    api.put(
        &format!("/clusters/{local}"),
        json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": local},
            "spec": {"datacenter": "west"}}),
    )
    .await;
    api.put(
        "/environments/qa",
        json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
            "spec": {"clusters": [{"cluster": "k8s"}, {"cluster": local}],
                "rollout": {"progressDeadlineSeconds": 60}}}),
    )
    .await;
    api.put(
        "/applications/web",
        json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
            "spec": {"image": "127.0.0.1:5000/busybox:latest",
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "healthCheck": {"path": "/healthz"}, "replicas": 1, "resources": {"memory": "32Mi"},
                "configFiles": [{"path": "/www/healthz", "content": "ok"}]}}),
    )
    .await;
    let (s, d) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let name = d["metadata"]["name"].as_str().unwrap().to_owned();
    let done = api
        .wait_phase(&name, "Succeeded", patience().max(Duration::from_secs(60)))
        .await;
    let clusters: Vec<(String, u64)> = done["status"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap_or_default().to_owned(),
                c["ready"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(clusters, [("k8s".to_owned(), 1), (local.clone(), 1)], "{done:#}");
    assert!(kube.deployment("default-qa", "web").await.is_some());
    // Leave the real cluster as it was for the next test.
    let (s, b) = api.call(Method::DELETE, "/applications/web", None).await;
    assert!((200..300).contains(&s), "DELETE /applications/web: {s} {b}");
    kube.wait_gone("default-qa", "web").await;
    server.shutdown().await;
}
