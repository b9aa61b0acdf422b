//! End to end on Kubernetes: the real server (API, store, reconciler) deploys to two
//! Kubernetes clusters — fake API servers reached through inline kubeconfigs — and
//! reports per-cluster status; a rollout Kubernetes gives up on fails and is rolled back.
//! Needs the local registry of `scripts/setup-runtime.sh` (the image is resolved there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use berth_kube_fake::{FakeCluster, FakeOptions, RolloutFailure};
use berth_server::ServerArgs;
use clap::Parser;
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

fn app(marker: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"image": "127.0.0.1:5000/busybox:latest", "replicas": 2,
            "healthCheck": {"path": "/healthz"}, "resources": {"memory": "64Mi"},
            "env": {"MARKER": marker}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_to_two_kubernetes_clusters_and_rolls_back_a_stalled_release() {
    let options = FakeOptions {
        ready_after: Duration::from_millis(100),
        progress_deadline: Some(Duration::from_millis(500)),
        ..FakeOptions::default()
    };
    let dc1 = FakeCluster::start(options.clone()).await.unwrap();
    let dc2 = FakeCluster::start(options).await.unwrap();
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

    for (name, fake, datacenter) in [("dc1", &dc1, "east"), ("dc2", &dc2, "west")] {
        api.put(
            &format!("/clusters/{name}"),
            json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": name},
                "spec": {"runtime": "kubernetes", "datacenter": datacenter,
                    "kubernetes": {"kubeconfig": {"inline": fake.kubeconfig()}, "context": "fake"}}}),
        )
        .await;
    }
    api.put(
        "/environments/qa",
        json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
            "spec": {"clusters": [{"cluster": "dc1"}, {"cluster": "dc2"}],
                "rollout": {"progressDeadlineSeconds": 60}}}),
    )
    .await;
    api.put("/applications/web", app("one")).await;
    let (s, d) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let name = d["metadata"]["name"].as_str().unwrap().to_owned();
    let done = api.wait_phase(&name, "Succeeded", Duration::from_secs(30)).await;
    let clusters = done["status"]["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2, "{done:#}");
    for (c, dc) in clusters.iter().zip(["east", "west"]) {
        assert_eq!(
            (
                c["datacenter"].as_str(),
                c["ready"].as_u64(),
                c["desired"].as_u64()
            ),
            (Some(dc), Some(2), Some(2)),
            "{c}"
        );
    }
    for fake in [&dc1, &dc2] {
        let d = fake
            .object("deployments", "default-qa", "web")
            .expect("the Deployment exists");
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .contains("@sha256:")
        );
        assert_eq!(d["metadata"]["labels"]["berth.dev/release"], "1");
    }
    let (_, cluster) = api.call(Method::GET, "/clusters/dc2", None).await;
    assert_eq!(cluster["status"]["phase"], "Ready", "{cluster:#}");
    let version = cluster["status"]["runtimeVersion"].as_str().unwrap_or_default();
    assert!(
        version.contains("v1.33") && version.contains("ok"),
        "/version and /readyz: {cluster:#}"
    );

    // Release 2 never becomes ready on dc2: Kubernetes reports ProgressDeadlineExceeded,
    // the deployment fails at once and the environment rolls back to release 1.
    dc2.fail_rollouts("never-ready", RolloutFailure::NeverReady);
    api.put("/applications/web", app("never-ready")).await;
    let (s, d) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let second = d["metadata"]["name"].as_str().unwrap().to_owned();
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
    let d = dc2.object("deployments", "default-qa", "web").unwrap();
    assert_eq!(
        d["metadata"]["labels"]["berth.dev/release"], "1",
        "release 1 runs again"
    );
    server.shutdown().await;
}

/// The reconciler works keys, not the world: a server with nothing to do makes no
/// runtime request, and a change to one application is applied for that key alone
/// (no list of the cluster's objects, no apply for the other applications).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_is_silent_and_a_change_touches_only_its_key() {
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
    let kube = FakeCluster::start(FakeOptions {
        ready_after: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let local = format!("mix{}", std::process::id());
    let _cleanup = LocalContainers(local.clone());
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
        "/clusters/k8s",
        json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "k8s"},
            "spec": {"runtime": "kubernetes", "datacenter": "east",
                "kubernetes": {"kubeconfig": {"inline": kube.kubeconfig()}}}}),
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
    let done = api.wait_phase(&name, "Succeeded", Duration::from_secs(60)).await;
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
    assert!(kube.object("deployments", "default-qa", "web").is_some());
    server.shutdown().await;
}
