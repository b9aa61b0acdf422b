//! End-to-end benchmark of the control plane (issue 9): a real `berth server` (release
//! build, its SQLite store) with N applications deployed to one environment of three
//! Kubernetes clusters whose API servers are fakes (`berth-kube-fake`) running in another
//! process (this program started again with `--serve-fakes`).
//!
//! Phases (`--phases`, comma-separated, in this order whatever the order given):
//!
//! - `deploy`: first deploy call → every deployment `Succeeded` (and the deploy calls
//!   alone: rate, p50, p95), 8 clients;
//! - `idle`: server CPU while nothing changes, averaged over `--idle-seconds` (60), from
//!   `/proc/PID/stat`, and the server's RSS;
//! - `change`: a change to one application (a new environment variable, then a deploy)
//!   → the first write request for it that a fake API server sees, over `--changes` (50)
//!   applications, p50/p95/max;
//! - `read`: `GET /applications/{name}` with `--clients` (8) clients on loopback,
//!   authenticated, for `--read-seconds` (10): req/s, p50/p95/p99;
//! - `list`: every application by pages of 100, `--list-passes` (3) times: every page's
//!   latency, p50/p95/max.
//!
//! The N applications are always created first (`PUT /applications/{name}`, timed too).
//! Every answer is counted: a request not answered `2xx` is printed by status, and the
//! program exits non-zero, so that a figure never hides refused requests.
//!
//! The server runs with its rate limits raised (`--rate-limit`/`--rate-burst`
//! [`RATE_LIMIT`]), for the benchmark only: one token makes every request, and at the
//! default 50/s per user the figures would measure the limiter.
//!
//! Deploys resolve the image through the local registry (`scripts/setup-runtime.sh up`
//! puts one on 127.0.0.1:5000; `--image` names another image).
//!
//! ```text
//! cargo build --release -p berth --bin berth --example bench_control_plane
//! target/release/examples/bench_control_plane --apps 1000 --phases deploy,idle,change,read,list
//! ```
//!
//! `BERTH_BIN=path` measures another build of the server.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use berth_kube_fake::{FakeCluster, FakeOptions};
use serde_json::{Value, json};

mod common;

use common::{RATE_LIMIT, Server, bin, percentile, server_command};

/// Kubernetes clusters in the environment.
const CLUSTERS: usize = 3;

/// The environment every application is deployed to.
const ENVIRONMENT: &str = "bench";

/// Clients that create and deploy applications at once.
const WRITERS: usize = 8;

const PHASES: [&str; 5] = ["deploy", "idle", "change", "read", "list"];

struct Options {
    apps: usize,
    phases: BTreeSet<String>,
    idle_seconds: u64,
    changes: usize,
    clients: usize,
    read_seconds: u64,
    list_passes: usize,
    image: String,
}

fn usage() -> String {
    format!(
        "usage: bench_control_plane [--apps N] [--phases {}] [--idle-seconds S] [--changes N] \
         [--clients N] [--read-seconds S] [--list-passes N] [--image IMAGE]",
        PHASES.join(",")
    )
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        apps: 1000,
        phases: PHASES.iter().map(|p| (*p).to_owned()).collect(),
        idle_seconds: 60,
        changes: 50,
        clients: 8,
        read_seconds: 10,
        list_passes: 3,
        image: "127.0.0.1:5000/berth/jre:17".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(usage);
        match flag.as_str() {
            "--apps" => o.apps = value()?.parse().context("--apps")?,
            "--phases" => {
                o.phases = value()?.split(',').map(str::to_owned).collect();
                if let Some(p) = o.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    bail!("unknown phase '{p}'; {}", usage());
                }
            }
            "--idle-seconds" => o.idle_seconds = value()?.parse().context("--idle-seconds")?,
            "--changes" => o.changes = value()?.parse().context("--changes")?,
            "--clients" => o.clients = value()?.parse().context("--clients")?,
            "--read-seconds" => o.read_seconds = value()?.parse().context("--read-seconds")?,
            "--list-passes" => o.list_passes = value()?.parse().context("--list-passes")?,
            "--image" => o.image = value()?,
            _ => bail!("unknown argument '{flag}'; {}", usage()),
        }
    }
    if o.apps == 0 {
        bail!("--apps must be at least 1");
    }
    Ok(o)
}

fn app_name(i: usize) -> String {
    format!("app{i:05}")
}

fn unix_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

// ---------------------------------------------------------------------------------------
// The child process: three fake API servers, answering on stdin.

/// `--serve-fakes`: starts the fake clusters, prints their kubeconfigs (one line each,
/// JSON-quoted) and `ready`, then answers commands on stdin:
/// `wait APP TIMEOUT_MS` → the arrival time (Unix ns) of the first write whose path names
/// APP since the last `clear`, or `none`; `clear` → `ok` (forgets the writes logged).
fn serve_fakes() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let fakes: Vec<FakeCluster> = runtime.block_on(async {
        let mut fakes = Vec::new();
        for _ in 0..CLUSTERS {
            fakes.push(
                FakeCluster::start(FakeOptions {
                    ready_after: Duration::from_millis(50),
                    history: 20_000,
                    log_writes: true,
                    ..FakeOptions::default()
                })
                .await?,
            );
        }
        anyhow::Ok(fakes)
    })?;
    let mut out = std::io::stdout().lock();
    for f in &fakes {
        writeln!(out, "{}", serde_json::to_string(&f.kubeconfig())?)?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    // The writes taken from the fakes since the last `clear`: (arrival, path).
    let mut seen: Vec<(SystemTime, String)> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["clear"] => {
                for f in &fakes {
                    f.take_writes();
                }
                seen.clear();
                writeln!(out, "ok")?;
            }
            ["wait", app, timeout_ms] => {
                let deadline = Instant::now() + Duration::from_millis(timeout_ms.parse()?);
                let first = loop {
                    for f in &fakes {
                        seen.extend(f.take_writes().into_iter().map(|w| (w.at, w.path)));
                    }
                    // Names are of one width: `app00001` is never the start of another.
                    let hit = seen
                        .iter()
                        .filter(|(_, path)| path.split('/').any(|s| s.starts_with(app)))
                        .map(|(at, _)| *at)
                        .min();
                    if hit.is_some() || Instant::now() > deadline {
                        break hit;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                match first {
                    Some(at) => writeln!(out, "{}", unix_nanos(at))?,
                    None => writeln!(out, "none")?,
                }
            }
            _ => writeln!(out, "? {line}")?,
        }
        out.flush()?;
    }
    Ok(())
}

struct Fakes {
    child: Child,
    stdin: ChildStdin,
    out: std::io::Lines<BufReader<ChildStdout>>,
    kubeconfigs: Vec<String>,
}

impl Fakes {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-fakes")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the fake API servers")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let mut out = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let mut kubeconfigs = Vec::new();
        loop {
            let line = out.next().context("the fakes stopped")??;
            if line == "ready" {
                break;
            }
            kubeconfigs.push(serde_json::from_str(&line)?);
        }
        Ok(Self {
            child,
            stdin,
            out,
            kubeconfigs,
        })
    }

    fn ask(&mut self, what: &str) -> anyhow::Result<String> {
        writeln!(self.stdin, "{what}")?;
        self.stdin.flush()?;
        Ok(self.out.next().context("the fakes stopped")??)
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The server and what is read of it.

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_server(http: &reqwest::Client) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let api = format!("127.0.0.1:{}", free_port()?);
    let router = format!("127.0.0.1:{}", free_port()?);
    let mut command = server_command(dir.path(), &api, &router);
    command.stderr(Stdio::from(std::fs::File::create(
        std::env::temp_dir().join("bench-control-plane-server.log"),
    )?));
    Server::start(http, command, dir, &api, Duration::from_secs(30)).await
}

fn proc_stat(pid: u32) -> anyhow::Result<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name: state is field 0, utime 11, stime 12.
    Ok(stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// CPU seconds `pid` used so far (user + system; 100 ticks a second on Linux).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let f = proc_stat(pid)?;
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((tick(11) + tick(12)) / 100.0)
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kib / 1024.0)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Counting answers.

/// Answers that were not 2xx, by what they were.
#[derive(Default)]
struct Failures(Mutex<BTreeMap<String, usize>>);

impl Failures {
    fn add(&self, what: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(what)
            .or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum()
    }

    /// Prints every failure of `phase` and says how many there were.
    fn report(&self, phase: &str) -> usize {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = map.values().sum();
        println!("  {phase}: {total} answers not 2xx");
        for (why, n) in map.iter() {
            println!("    not 2xx: {n} × {why}");
        }
        total
    }
}

/// Sends `req`, reads the whole answer, and returns its body if it was 2xx; otherwise
/// counts it in `failures` (by method, path pattern and status) and returns `None`.
async fn call(req: reqwest::RequestBuilder, what: &str, failures: &Failures) -> Option<impl AsRef<[u8]>> {
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            match r.bytes().await {
                Ok(body) if status.is_success() => Some(body),
                Ok(body) => {
                    let text = String::from_utf8_lossy(&body);
                    let detail: String = text.chars().take(160).collect();
                    failures.add(format!("{what}: {status} {detail}"));
                    None
                }
                Err(e) => {
                    failures.add(format!("{what}: body not read ({e})"));
                    None
                }
            }
        }
        Err(e) => {
            failures.add(format!("{what}: no answer ({e})"));
            None
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs `job(i)` for every `i` in `0..n` on `clients` concurrent tasks; returns each
/// job's latency (of those that returned true).
async fn fan_out<F, Fut>(n: usize, clients: usize, job: F) -> Vec<Duration>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, job) = (next.clone(), job.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                if job(i).await {
                    samples.push(t.elapsed());
                }
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort();
    all
}

// ---------------------------------------------------------------------------------------
// Phases.

struct Bench {
    http: reqwest::Client,
    server: Server,
    options: Options,
    /// Answers not 2xx over the whole run.
    failed: usize,
}

impl Bench {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    async fn setup(&mut self, fakes: &Fakes) -> anyhow::Result<()> {
        let failures = Failures::default();
        for (i, kubeconfig) in fakes.kubeconfigs.iter().enumerate() {
            let name = format!("k{i}");
            let doc = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": name},
                "spec": {"runtime": "kubernetes", "datacenter": format!("dc{i}"),
                         "kubernetes": {"kubeconfig": {"inline": kubeconfig}, "context": "fake"}}});
            let req = self
                .http
                .put(self.url(&format!("/clusters/{name}")))
                .bearer_auth(&self.server.token)
                .json(&doc);
            call(req, "PUT /clusters/{name}", &failures).await;
        }
        let clusters: Vec<Value> = (0..CLUSTERS)
            .map(|i| json!({"cluster": format!("k{i}")}))
            .collect();
        let doc = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": ENVIRONMENT},
            "spec": {"clusters": clusters}});
        let req = self
            .http
            .put(self.url(&format!("/environments/{ENVIRONMENT}")))
            .bearer_auth(&self.server.token)
            .json(&doc);
        call(req, "PUT /environments/{name}", &failures).await;
        if failures.report("setup (clusters, environment)") > 0 {
            bail!("the platform could not be set up (answers above)");
        }

        let failures = Arc::new(Failures::default());
        let (http, base, token, image) = (
            self.http.clone(),
            self.server.base.clone(),
            self.server.token.clone(),
            self.options.image.clone(),
        );
        let f = failures.clone();
        let started = Instant::now();
        let samples = fan_out(self.options.apps, WRITERS, move |i| {
            let (http, base, token, image, f) =
                (http.clone(), base.clone(), token.clone(), image.clone(), f.clone());
            async move {
                let name = app_name(i);
                let doc = json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": name},
                    "spec": {"image": image, "replicas": 1, "env": {"APP": name}}});
                let req = http
                    .put(format!("{base}/applications/{name}"))
                    .bearer_auth(&token)
                    .json(&doc);
                call(req, "PUT /applications/{name}", &f).await.is_some()
            }
        })
        .await;
        let took = started.elapsed();
        println!(
            "create {} applications ({WRITERS} clients): {:.1} s, {:.0}/s, p50 {}, p95 {}",
            self.options.apps,
            took.as_secs_f64(),
            samples.len() as f64 / took.as_secs_f64(),
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.95)),
        );
        self.failed += failures.report("create");
        Ok(())
    }

    async fn deploy(&mut self) -> anyhow::Result<()> {
        let n = self.options.apps;
        let failures = Arc::new(Failures::default());
        let (http, base, token) = (
            self.http.clone(),
            self.server.base.clone(),
            self.server.token.clone(),
        );
        let f = failures.clone();
        let started = Instant::now();
        let cpu_before = cpu_seconds(self.server.child.id())?;
        let samples = fan_out(n, WRITERS, move |i| {
            let (http, base, token, f) = (http.clone(), base.clone(), token.clone(), f.clone());
            async move {
                let req = http
                    .post(format!("{base}/applications/{}/deploy", app_name(i)))
                    .bearer_auth(&token)
                    .json(&json!({"environment": ENVIRONMENT}));
                call(req, "POST /applications/{name}/deploy", &f).await.is_some()
            }
        })
        .await;
        let calls = started.elapsed();
        println!(
            "deploy calls ({n} applications, {WRITERS} clients): {:.1} s, {:.0}/s, p50 {}, p95 {}, max {}",
            calls.as_secs_f64(),
            samples.len() as f64 / calls.as_secs_f64(),
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.95)),
            ms(samples.last().copied().unwrap_or_default()),
        );
        let deployed = samples.len();
        // Poll the deployment list (pages of 1000) until each one deployed succeeded.
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut polls = 0;
        let (succeeded, failed_deployments) = loop {
            polls += 1;
            let mut phases: BTreeMap<String, usize> = BTreeMap::new();
            let mut after: Option<String> = None;
            loop {
                let mut url = self.url("/deployments?limit=1000");
                if let Some(c) = &after {
                    url.push_str(&format!("&continue={c}"));
                }
                let req = self.http.get(url).bearer_auth(&self.server.token);
                let Some(body) = call(req, "GET /deployments", &failures).await else {
                    break;
                };
                let page: Value = serde_json::from_slice(body.as_ref())?;
                for d in page["items"].as_array().into_iter().flatten() {
                    let phase = d
                        .pointer("/status/phase")
                        .and_then(Value::as_str)
                        .unwrap_or("none");
                    *phases.entry(phase.to_owned()).or_default() += 1;
                }
                after = page
                    .pointer("/metadata/continue")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if after.is_none() {
                    break;
                }
            }
            let succeeded = phases.get("Succeeded").copied().unwrap_or(0);
            let failed = phases.get("Failed").copied().unwrap_or(0);
            if succeeded + failed >= deployed || Instant::now() > deadline {
                break (succeeded, failed);
            }
            if polls % 20 == 0 {
                println!("  after {:.0} s: {phases:?}", started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let all = started.elapsed();
        let cpu = cpu_seconds(self.server.child.id())? - cpu_before;
        println!(
            "first deploy call → every deployment Succeeded: {:.1} s ({succeeded} Succeeded, {failed_deployments} Failed of {deployed} deployed; server CPU {cpu:.1} s; {polls} polls of the list)",
            all.as_secs_f64()
        );
        if succeeded < deployed {
            println!("  NOT every deployment succeeded within 600 s");
            self.failed += deployed - succeeded;
        }
        self.failed += failures.report("deploy");
        Ok(())
    }

    async fn idle(&mut self) -> anyhow::Result<()> {
        let pid = self.server.child.id();
        // Let what the last phase started settle first.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let seconds = self.options.idle_seconds;
        let (cpu, t) = (cpu_seconds(pid)?, Instant::now());
        let mut peak = rss_mib(pid)?;
        while t.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_mib(pid)?);
        }
        let used = cpu_seconds(pid)? - cpu;
        println!(
            "server CPU while nothing changes ({seconds} s): {:.2} % of one core ({used:.2} CPU s); RSS {:.0} MiB (highest seen {peak:.0} MiB)",
            100.0 * used / t.elapsed().as_secs_f64(),
            rss_mib(pid)?
        );
        Ok(())
    }

    async fn change(&mut self, fakes: &mut Fakes) -> anyhow::Result<()> {
        let failures = Failures::default();
        let mut samples = Vec::new();
        let mut unseen = 0;
        let n = self.options.apps;
        for c in 0..self.options.changes {
            // Spread over the applications; distinct ones.
            let name = app_name((c * 7919) % n);
            let req = self
                .http
                .patch(self.url(&format!("/applications/{name}")))
                .bearer_auth(&self.server.token)
                .header("content-type", "application/merge-patch+json")
                .body(json!({"spec": {"env": {"CHANGE": c.to_string()}}}).to_string());
            if call(req, "PATCH /applications/{name}", &failures).await.is_none() {
                continue;
            }
            if fakes.ask("clear")? != "ok" {
                bail!("the fakes did not clear their logs");
            }
            let sent = SystemTime::now();
            let req = self
                .http
                .post(self.url(&format!("/applications/{name}/deploy")))
                .bearer_auth(&self.server.token)
                .json(&json!({"environment": ENVIRONMENT}));
            if call(req, "POST /applications/{name}/deploy", &failures)
                .await
                .is_none()
            {
                continue;
            }
            let answer = fakes.ask(&format!("wait {name} 10000"))?;
            match answer.parse::<u128>() {
                Ok(at) => {
                    let nanos = at.saturating_sub(unix_nanos(sent));
                    samples.push(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)));
                }
                Err(_) => unseen += 1,
            }
        }
        samples.sort();
        println!(
            "change → first write request seen by an API server ({} changes): p50 {}, p95 {}, max {}; {unseen} not seen within 10 s",
            samples.len() + unseen,
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.95)),
            ms(samples.last().copied().unwrap_or_default()),
        );
        self.failed += failures.report("change") + unseen;
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<()> {
        let failures = Arc::new(Failures::default());
        let clients = self.options.clients;
        let run_for = Duration::from_secs(self.options.read_seconds);
        let n = self.options.apps;
        let pid = self.server.child.id();
        let (server_cpu, own_cpu) = (cpu_seconds(pid)?, cpu_seconds(std::process::id())?);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, base, token, f) = (
                self.http.clone(),
                self.server.base.clone(),
                self.server.token.clone(),
                failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                // A cheap pseudo-random walk over the applications, one per client.
                let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ (c as u64 + 1);
                while started.elapsed() < run_for {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let url = format!("{base}/applications/{}", app_name((x % n as u64) as usize));
                    let t = Instant::now();
                    if call(http.get(url).bearer_auth(&token), "GET /applications/{name}", &f)
                        .await
                        .is_some()
                    {
                        samples.push(t.elapsed());
                    }
                }
                samples
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await?);
        }
        let elapsed = started.elapsed();
        let server_cpu = cpu_seconds(pid)? - server_cpu;
        let own_cpu = cpu_seconds(std::process::id())? - own_cpu;
        all.sort();
        println!(
            "GET /applications/{{name}} ({clients} clients, {:?}): {} answered 2xx, {} not; {:.0} req/s, p50 {}, p95 {}, p99 {} (CPU: server {:.0} %, load generator {:.0} % of one core)",
            run_for,
            all.len(),
            failures.total(),
            all.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&all, 0.50)),
            ms(percentile(&all, 0.95)),
            ms(percentile(&all, 0.99)),
            100.0 * server_cpu / elapsed.as_secs_f64(),
            100.0 * own_cpu / elapsed.as_secs_f64(),
        );
        self.failed += failures.report("read");
        Ok(())
    }

    async fn list(&mut self) -> anyhow::Result<()> {
        let failures = Failures::default();
        let mut pages = Vec::new();
        let mut items = 0;
        for _ in 0..self.options.list_passes {
            let mut after: Option<String> = None;
            loop {
                let mut url = self.url("/applications?limit=100");
                if let Some(c) = &after {
                    url.push_str(&format!("&continue={c}"));
                }
                let t = Instant::now();
                let req = self.http.get(url).bearer_auth(&self.server.token);
                let Some(body) = call(req, "GET /applications?limit=100", &failures).await else {
                    break;
                };
                pages.push(t.elapsed());
                let page: Value = serde_json::from_slice(body.as_ref())?;
                items += page["items"].as_array().map_or(0, Vec::len);
                after = page
                    .pointer("/metadata/continue")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if after.is_none() {
                    break;
                }
            }
        }
        let passes = self.options.list_passes;
        if items != passes * self.options.apps {
            println!(
                "  the list passes saw {items} applications, not {}",
                passes * self.options.apps
            );
            self.failed += 1;
        }
        pages.sort();
        println!(
            "list of {} applications by pages of 100 ({passes} passes, {} pages, one client): p50 {}, p95 {}, max {}",
            self.options.apps,
            pages.len(),
            ms(percentile(&pages, 0.5)),
            ms(percentile(&pages, 0.95)),
            ms(pages.last().copied().unwrap_or_default()),
        );
        self.failed += failures.report("list");
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve-fakes") {
        return serve_fakes();
    }
    let options = options()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    println!(
        "measuring {} with {} applications × {CLUSTERS} fake Kubernetes clusters (another process); phases {:?}",
        bin(),
        options.apps,
        options.phases
    );
    println!("load average at start: {}", load());
    println!(
        "the server runs with --rate-limit {RATE_LIMIT} --rate-burst {RATE_LIMIT} (default 50/s, burst 200, per user), for the benchmark only"
    );
    let mut fakes = Fakes::start()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()?;
    let server = start_server(&http).await?;
    let mut bench = Bench {
        http,
        server,
        options,
        failed: 0,
    };
    bench.setup(&fakes).await?;
    let has = |p: &str| bench.options.phases.contains(p);
    let (deploy, idle, change, read, list) = (
        has("deploy"),
        has("idle"),
        has("change"),
        has("read"),
        has("list"),
    );
    if deploy {
        bench.deploy().await?;
    }
    if idle {
        bench.idle().await?;
    }
    if change {
        bench.change(&mut fakes).await?;
    }
    if read {
        bench.read().await?;
    }
    if list {
        bench.list().await?;
    }
    let pid = bench.server.child.id();
    println!("server RSS at the end: {:.0} MiB", rss_mib(pid)?);
    println!("load average at the end: {}", load());
    if bench.failed > 0 {
        bail!(
            "{} requests were not answered 2xx or did not succeed (listed above): the figures do not hold",
            bench.failed
        );
    }
    Ok(())
}
