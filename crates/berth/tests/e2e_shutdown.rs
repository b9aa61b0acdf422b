//! `berth server` stops on SIGTERM within its shutdown timeout whatever it is doing: a
//! reconcile pass waiting on a Kubernetes API that accepts connections and never answers,
//! a build fetching from a git server that never answers, an event stream open, a
//! router connection half-way through a request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::json;
use support::{Berth, IMAGE, wait_until};

/// A server that accepts connections and never reads or answers them.
struct Blackhole {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Blackhole {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        // The thread and the connections it holds live until the test process ends.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The default `--shutdown-timeout` (10 s), its margin, and time to spare on a loaded machine.
const EXIT_WITHIN: Duration = Duration::from_secs(16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_while_a_cluster_and_a_git_server_hang_and_streams_are_open() {
    let mut berth = Berth::start().await;
    let kube = Blackhole::start();
    let git = Blackhole::start();
    let kubeconfig = berth.data.join("blackhole.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hole\n  cluster: {{server: \"http://{}\"}}\n\
             users:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: hole\n  context: {{cluster: hole, user: u}}\n\
             current-context: hole\n",
            kube.addr
        ),
    )
    .unwrap();
    let cluster = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "hole"},
        "spec": {"runtime": "kubernetes", "datacenter": "dc1",
            "kubernetes": {"kubeconfig": {"path": kubeconfig.display().to_string()}}}});
    let (s, b) = berth.call(Method::PUT, "/clusters/hole", Some(cluster)).await;
    assert!(s.is_success(), "{b}");
    let env = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
        "spec": {"clusters": [{"cluster": "hole"}]}});
    let (s, b) = berth.call(Method::PUT, "/environments/qa", Some(env)).await;
    assert!(s.is_success(), "{b}");
    let app = json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"image": IMAGE, "command": ["httpd", "-f", "-p", "8080"]}});
    let (s, b) = berth.call(Method::PUT, "/applications/web", Some(app)).await;
    assert!(s.is_success(), "{b}");
    let built = json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "built"},
        "spec": {"image": "127.0.0.1:5000/berth-e2e/never-built",
            "source": {"git": format!("http://{}/built.git", git.addr), "ref": "main",
                "builder": {"java": {"sources": "src", "mainClass": "Main"}}}}});
    let (s, b) = berth.call(Method::PUT, "/applications/built", Some(built)).await;
    assert!(s.is_success(), "{b}");
    let (s, b) = berth
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert!(s.is_success(), "{b}");

    // A build fetching from the git server that never answers (the request may itself wait
    // for the fetch: it is not awaited).
    let build = {
        let (http, api, token) = (berth.http.clone(), berth.api.clone(), berth.token.clone());
        tokio::spawn(async move {
            let _ = http
                .post(format!("{api}/api/v1/applications/built/builds"))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await;
        })
    };
    // An event stream, open and delivering.
    let mut stream = berth
        .http
        .get(format!("{}/api/v1/events/stream", berth.api))
        .bearer_auth(&berth.token)
        .send()
        .await
        .unwrap();
    assert!(stream.status().is_success());
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the stream delivers the stored events")
        .unwrap();
    assert!(first.is_some());
    // A router connection in the middle of a request's head.
    let mut router = TcpStream::connect(&berth.router).unwrap();
    router
        .write_all(b"GET / HTTP/1.1\r\nHost: web.qa.localhost\r\n")
        .unwrap();

    wait_until(
        Duration::from_secs(20),
        "the reconciler and the build waiting on the servers that never answer",
        || async { kube.accepted() > 0 && git.accepted() > 0 },
    )
    .await;

    let asked = Instant::now();
    let status = berth.terminate(EXIT_WITHIN);
    let took = asked.elapsed();
    let status = status.unwrap_or_else(|| panic!("berth server still ran {EXIT_WITHIN:?} after SIGTERM"));
    assert!(
        status.success(),
        "berth server exited with {status} after SIGTERM"
    );
    eprintln!("berth server stopped {took:?} after SIGTERM");

    // The event stream ended (cleanly or not) instead of holding the stop.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the event stream is still open after the server stopped"
    );
    build.abort();
    drop(router);
}
