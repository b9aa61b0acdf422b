//! A real `berth server` process for end-to-end tests: its own data directory, ports
//! and cluster name, and the containers it made removed afterwards even on failure.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

pub const IMAGE: &str = "127.0.0.1:5000/busybox:latest";
pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// The binary under test: `$BERTH_TEST_BIN` (e.g. an older build, to see a test fail on
/// it), else this build's.
pub fn bin() -> String {
    std::env::var("BERTH_TEST_BIN").unwrap_or_else(|_| BIN.to_owned())
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How to start a server beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// More flags for `berth server`.
    pub args: Vec<String>,
    /// Write the server's log (stderr) to this file instead of the test's stderr.
    pub log: Option<PathBuf>,
    /// `RUST_LOG` (default `warn`).
    pub rust_log: Option<String>,
    /// A CA certificate (PEM) the test's HTTP client trusts, for a server on TLS.
    pub ca: Option<PathBuf>,
}

/// A running server.
pub struct Berth {
    child: Option<Child>,
    options: Options,
    pub api: String,
    pub router: String,
    pub token: String,
    pub cluster: String,
    pub data: PathBuf,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

fn spawn(data: &Path, options: &Options) -> (Child, String, String) {
    let stderr = match &options.log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        ),
        None => Stdio::inherit(),
    };
    let mut child = Command::new(bin())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
            "--insecure-registry",
            "127.0.0.1:5000",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(&options.args)
        .env("RUST_LOG", options.rust_log.as_deref().unwrap_or("warn"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("berth server starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("server prints its addresses").unwrap();
        if let Some(rest) = line.strip_prefix("berth API on ") {
            let (api, router) = rest.split_once("  router on http://").unwrap();
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return (child, api.to_owned(), router.trim().to_owned());
        }
    }
}

impl Berth {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// A server started with `options`.
    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (child, api, router) = spawn(&data, &options);
        let token = std::fs::read_to_string(data.join("bootstrap-token"))
            .unwrap()
            .trim()
            .to_owned();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let cluster = format!("e2e{}x{n}", std::process::id());
        // The server closes a connection idle for its header read timeout (10 s); a pooled
        // connection reused at that instant fails with IncompleteMessage. Let idle ones go
        // well before (a test that waits on a build or the CLI leaves them idle that long).
        let builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(3));
        let http = match &options.ca {
            Some(ca) => builder
                .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
                .build()
                .unwrap(),
            None => builder.build().unwrap(),
        };
        let berth = Self {
            child: Some(child),
            options,
            api,
            router,
            token,
            cluster,
            data,
            _dir: dir,
            http,
        };
        berth.wait_healthy().await;
        berth
    }

    async fn wait_healthy(&self) {
        wait_until(Duration::from_secs(10), "server healthy", || async {
            self.http
                .get(format!("{}/healthz", self.api))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// kill -9 the server and start it again on the same data directory.
    pub async fn crash_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let (child, api, router) = spawn(&self.data, &self.options);
        self.child = Some(child);
        self.api = api;
        self.router = router;
        self.wait_healthy().await;
    }

    /// Stops the server and starts it again on the same data directory, with `args`
    /// added to its flags from now on.
    pub async fn restart_with(&mut self, args: &[&str]) {
        self.options.args.extend(args.iter().map(|a| (*a).to_owned()));
        self.crash_and_restart().await;
    }

    /// Sends SIGTERM to the server and waits up to `within` for it to exit: its exit
    /// status, or `None` when it was still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A request with another user's token.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.api);
        berth_test_support::http::call(&self.http, &url, token, method, body).await
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().unwrap()
    }

    /// The CLI command for this server, to run with more settings (stdin, say).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command
            .args(args)
            .env("BERTH_SERVER", &self.api)
            .env("BERTH_TOKEN", &self.token)
            .env_remove("BERTH_CONFIG")
            .env("HOME", &self.data)
            .env("XDG_CONFIG_HOME", &self.data);
        command
    }

    /// A cluster of this test's own, an environment `qa` on it, and application `web`.
    pub async fn platform(&self, deadline_seconds: u32) {
        let (s, b) = self
            .call(Method::PUT, &format!("/clusters/{}", self.cluster), Some(json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": self.cluster}, "spec": {"datacenter": "dc1"}})))
            .await;
        assert!(s.is_success(), "{b}");
        let env = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
            "spec": {"clusters": [{"cluster": self.cluster}], "rollout": {"progressDeadlineSeconds": deadline_seconds}}});
        let (s, b) = self.call(Method::PUT, "/environments/qa", Some(env)).await;
        assert!(s.is_success(), "{b}");
    }

    /// GET through the router with `Host: <app>.<env>.localhost`.
    pub async fn get_app(&self, host: &str, path: &str) -> Result<(u16, String), String> {
        let res = self
            .http
            .get(format!("http://{}{path}", self.router))
            .header("host", host)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        Ok((status, res.text().await.map_err(|e| e.to_string())?))
    }

    pub async fn deployment(&self, name: &str) -> Value {
        self.call(Method::GET, &format!("/deployments/{name}"), None)
            .await
            .1
    }

    pub async fn wait_phase(&self, name: &str, phase: &str, within: Duration) -> Value {
        let mut last = Value::Null;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            last = self.deployment(name).await;
            if last["status"]["phase"] == phase {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("deployment {name} did not reach {phase} within {within:?}: {last}");
    }

    pub async fn events(&self) -> Vec<Value> {
        self.call(Method::GET, "/events?limit=1000", None).await.1["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Containers of this test's cluster: (id, release, state).
    pub fn containers(&self) -> Vec<(String, String, String)> {
        let out = Command::new("podman")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("label=berth.cluster={}", self.cluster),
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.iter()
            .map(|c| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&c["Id"]),
                    text(&c["Labels"]["berth.release"]),
                    text(&c["State"]),
                )
            })
            .collect()
    }

    pub fn running(&self) -> Vec<(String, String)> {
        self.containers()
            .into_iter()
            .filter(|c| c.2 == "running")
            .map(|c| (c.0, c.1))
            .collect()
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = Command::new("podman")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=berth.cluster={}", self.cluster),
            ])
            .output();
        if let Ok(out) = out {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("podman")
                    .args(["rm", "-f", "-t", "0"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

/// Polls `check` until it holds, failing the test after `within`.
/// Every file below `dir`, with its bytes.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts that `needle` is in none of the API answers (what, body), CLI outputs, files
/// of the data directory `data` and lines of the server log `log`.
pub fn assert_nowhere(needle: &str, answers: &[(String, String)], cli: &[String], data: &Path, log: &Path) {
    for (what, body) in answers {
        assert!(
            !body.contains(needle),
            "the answer to {what} holds a secret: {body}"
        );
    }
    for t in cli {
        assert!(!t.contains(needle), "CLI output holds a secret: {t}");
    }
    for (path, bytes) in files(data) {
        assert!(!contains(&bytes, needle), "{path} holds a secret in clear text");
    }
    let logged = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains(needle)).collect();
    assert!(lines.is_empty(), "the server log holds a secret: {lines:?}");
}

pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {within:?} waiting for {what}");
}

/// The sample application document: busybox httpd serving `page` at `/`.
pub fn web_app(page: &str, replicas: u32, health_path: &str) -> Value {
    json!({
        "apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {
            "image": IMAGE,
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "healthCheck": {"path": health_path},
            "replicas": replicas,
            "resources": {"memory": "32Mi"},
            "configFiles": [
                {"path": "/www/index.html", "content": page},
                {"path": "/www/healthz", "content": "ok"}
            ]
        }
    })
}

/// Sends requests one after another through the router until stopped, counting failures
/// and keeping the last body.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU32>,
    sent: Arc<AtomicU32>,
    last: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    pub fn start(berth: &Berth, host: &str) -> Self {
        let (stop, failures, sent, last) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicU32::new(0)),
            Arc::new(Mutex::new(String::new())),
        );
        let (router, http, host) = (berth.router.clone(), berth.http.clone(), host.to_owned());
        let task = {
            let (stop, failures, sent, last) = (stop.clone(), failures.clone(), sent.clone(), last.clone());
            tokio::spawn(async move {
                // Bounded: at most 20,000 requests, and the test stops it long before.
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let res = http
                        .get(format!("http://{router}/"))
                        .header("host", &host)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    match res {
                        Ok(r) if r.status().is_success() => {
                            *last.lock().await = r.text().await.unwrap_or_default()
                        }
                        Ok(r) => {
                            eprintln!("traffic: HTTP {}", r.status());
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            eprintln!("traffic: {e}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        Self {
            stop,
            failures,
            sent,
            last,
            task,
        }
    }

    pub async fn finish(self) -> (u32, u32, String) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let last = self.last.lock().await.clone();
        (
            self.sent.load(Ordering::SeqCst),
            self.failures.load(Ordering::SeqCst),
            last,
        )
    }
}

/// Makes `dir` a git repository on branch `main` with everything in it committed.
pub fn commit_all(dir: &Path, message: &str) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ],
    ] {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(dir)
                .status()
                .unwrap()
                .success()
        );
    }
}
