//! Helpers of the integration tests: the test image, isolated clusters that clean up
//! after themselves, workloads, driving reconcile passes until a condition holds, and an
//! HTTP client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, bail};
use berth_core::{
    objects::{ConfigFile, HealthCheck},
    ports::{ClusterReport, ClusterRuntime, Notice},
    render::{Workload, WorkloadKey},
};
use berth_runtime_local::{LocalRuntime, RouteTable, Router, RuntimeOptions};
use bollard::{
    Docker,
    models::ContainerSummary,
    query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{net::TcpListener, sync::oneshot, time::Instant};

/// The Docker endpoint of the tests.
pub fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///run/podman/podman.sock".to_owned())
}

pub fn docker() -> Docker {
    Docker::connect_with_unix(&endpoint(), 60, bollard::API_DEFAULT_VERSION).expect("docker socket")
}

/// The test image pinned by digest, asked from the registry with a HEAD request.
pub async fn image() -> String {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::head("http://127.0.0.1:5000/v2/busybox/manifests/latest")
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(Full::default())
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("the local registry answers on 127.0.0.1:5000 (scripts/setup-runtime.sh up)");
    let digest = response.headers()["docker-content-digest"].to_str().unwrap();
    format!("127.0.0.1:5000/busybox@{digest}")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A cluster name of its own, whose containers are removed when it is dropped.
pub struct Cluster {
    pub name: String,
}

impl Cluster {
    pub fn new(test: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            name: format!("t{}{n}-{test}", std::process::id() % 100_000),
        }
    }

    pub fn runtime(&self, routes: RouteTable, options: RuntimeOptions) -> LocalRuntime {
        LocalRuntime::new(&self.name, Some(endpoint()), routes, options).unwrap()
    }

    pub async fn containers(&self) -> Vec<ContainerSummary> {
        list(&self.name).await
    }
}

async fn list(cluster: &str) -> Vec<ContainerSummary> {
    let filters = std::collections::HashMap::from([("label", vec![format!("berth.cluster={cluster}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    // Podman's transient `stopped` state is unknown to bollard: ask again.
    for _ in 0..50 {
        if let Ok(list) = docker().list_containers(Some(options.clone())).await {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot list the containers of {cluster}");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let cluster = self.name.clone();
        // Drop cannot await; a thread with its own runtime removes the containers.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let docker = docker();
                for c in list(&cluster).await {
                    if let Some(id) = c.id {
                        let _ = docker
                            .remove_container(
                                &id,
                                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                            )
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

pub const HOST: &str = "web.qa.test";

/// busybox httpd serving `/www`, with `index.html` saying which release it is.
pub fn workload(image: &str, cluster: &str, release: u64, replicas: u32) -> Workload {
    let mut w = Workload {
        key: WorkloadKey {
            application: "web".into(),
            environment: "qa".into(),
        },
        cluster: cluster.into(),
        deployment: format!("web-qa-{release}"),
        release,
        image: image.into(),
        command: Some(vec![
            "httpd".into(),
            "-f".into(),
            "-p".into(),
            "8080".into(),
            "-h".into(),
            "/www".into(),
        ]),
        args: None,
        port: 8080,
        env: BTreeMap::from([("PORT".into(), "8080".into())]),
        config_files: vec![
            ConfigFile {
                path: "/www/healthz".into(),
                content: "ok\n".into(),
            },
            ConfigFile {
                path: "/www/index.html".into(),
                content: format!("release {release}\n"),
            },
            ConfigFile {
                path: "/www/deep/er/file.txt".into(),
                content: "nested\n".into(),
            },
        ],
        cpu_millis: Some(500),
        memory_bytes: Some(64 << 20),
        health: HealthCheck {
            path: "/healthz".into(),
            interval_seconds: 1,
            timeout_seconds: 1,
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        },
        replicas,
        hosts: vec!["web.qa.localhost".into(), HOST.into()],
        startup_deadline_seconds: 15,
        spec_hash: String::new(),
        drain_seconds: 1,
        termination_grace_seconds: 5,
        ..Workload::default()
    };
    rehash(&mut w);
    w
}

/// A spec hash that changes with the replica's shape (the core's own is private).
pub fn rehash(w: &mut Workload) {
    w.spec_hash = format!("r{}-{}-{}", w.release, w.health.path, w.image.len());
}

/// Calls `reconcile` until `done` holds, waking on the runtime's notify or every `poll`.
/// Returns every notice seen.
pub async fn drive(
    rt: &LocalRuntime,
    desired: &[Workload],
    within: Duration,
    poll: Duration,
    mut done: impl FnMut(&ClusterReport, &[Notice]) -> bool,
) -> anyhow::Result<Vec<Notice>> {
    let changed = rt.changed();
    let deadline = Instant::now() + within;
    let mut notices = Vec::new();
    loop {
        let report = rt.reconcile(desired).await.context("reconcile")?;
        notices.extend(report.notices.iter().cloned());
        if done(&report, &notices) {
            return Ok(notices);
        }
        if Instant::now() >= deadline {
            bail!("not done within {within:?}; last report {report:#?}; notices {notices:#?}");
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Whether the only workload is complete: all replicas of its shape, healthy, no old.
pub fn settled(report: &ClusterReport, replicas: u32) -> bool {
    report.workloads.len() == 1 && {
        let c = report.workloads[0].counts;
        c.updated == replicas && c.ready == replicas && c.old == 0
    }
}

/// A router on 127.0.0.1:0; dropping the sender stops it.
pub async fn router(table: RouteTable) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(Router::serve(listener, table, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` from `addr` with `Host: host`.
pub async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let request = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::default())?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
