//! Benchmarks of a real `berth server` process (release build):
//!
//! - start-up time: spawn → first `200` from `/healthz`, over several fresh starts;
//! - idle memory: RSS after the server has been idle for a few seconds;
//! - API reads on loopback: latency percentiles and throughput with concurrent clients;
//! - deploy → first new container started (from Podman's event stream).
//!
//! Every answer is counted: a request that is not answered `2xx` is printed by status and
//! makes the program exit non-zero, so a figure never hides refused requests.
//!
//! The server runs with its per-token rate limit raised (see [`RATE_LIMIT`]) and says so:
//! this measures the server, not the limit (at the default 50/s per token the read load
//! would measure the limiter).
//!
//! Run: `cargo build --release -p berth --bin berth --examples && target/release/examples/bench_server`
//! (`BERTH_BIN=path` measures another build of the binary)
//! (needs `scripts/setup-runtime.sh up` for the deploy measurement).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

mod common;

use common::{RATE_LIMIT, bin, percentile, server_command, wait_healthy};

/// How long a start may take before the benchmark gives up on it.
const START_WITHIN: Duration = Duration::from_secs(10);

fn spawn(data: &Path, api: &str, router: &str) -> anyhow::Result<Child> {
    Ok(server_command(data, api, router).spawn()?)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The machine may be shared: its load says how much of it the figures had.
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("measuring {}; load average at start: {}", bin(), load().trim());
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let api = "127.0.0.1:17070";
    let router = "127.0.0.1:18080";

    // Start-up time, fresh data directory each time (includes creating the database).
    let mut starts = Vec::new();
    for _ in 0..10 {
        let dir = tempfile::tempdir()?;
        let t = Instant::now();
        let mut child = spawn(dir.path(), api, router)?;
        wait_healthy(&http, api, START_WITHIN).await?;
        starts.push(t.elapsed());
        child.kill()?;
        child.wait()?;
    }
    starts.sort();
    println!(
        "start-up (spawn to first /healthz 200, fresh data dir, n=10): median {:?}, max {:?}",
        percentile(&starts, 0.5),
        starts[starts.len() - 1]
    );

    println!(
        "the server runs with --rate-limit {RATE_LIMIT} --rate-burst {RATE_LIMIT} (default 50/s, burst 200, per token): \
         the read load below uses one token and measures the server, not the limiter"
    );
    let dir = tempfile::tempdir()?;
    let mut child = spawn(dir.path(), api, router)?;
    wait_healthy(&http, api, START_WITHIN).await?;
    let token = std::fs::read_to_string(dir.path().join("bootstrap-token"))?
        .trim()
        .to_owned();
    let base = format!("http://{api}/api/v1");

    // Some objects to read.
    let cluster = format!("bench{}", std::process::id());
    http.put(format!("{base}/clusters/{cluster}")).bearer_auth(&token)
        .json(&json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": cluster}, "spec": {}}))
        .send().await?.error_for_status()?;
    http.put(format!("{base}/environments/qa")).bearer_auth(&token)
        .json(&json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"}, "spec": {"clusters": [{"cluster": cluster}]}}))
        .send().await?.error_for_status()?;
    for i in 0..50 {
        http.put(format!("{base}/applications/app{i}")).bearer_auth(&token)
            .json(&json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": format!("app{i}")},
                "spec": {"image": "127.0.0.1:5000/busybox:latest", "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                         "configFiles": [{"path": "/www/index.html", "content": "hi"}]}}))
            .send().await?.error_for_status()?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "idle RSS after 5 s (50 applications stored): {} KiB",
        rss_kib(child.id())?
    );

    // API reads: 8 concurrent clients, GET one application and list all, for 10 s.
    let clients = 8;
    let run_for = Duration::from_secs(10);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failed: BTreeMap<String, usize> = BTreeMap::new();
            let mut i = c;
            while started.elapsed() < run_for {
                let url = if i % 5 == 0 {
                    format!("{base}/applications")
                } else {
                    format!("{base}/applications/app{}", i % 50)
                };
                let t = Instant::now();
                // The body is read in full: a request is done when its answer is.
                let answer = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status.is_success() => None,
                            Ok(_) => Some(status.to_string()),
                            Err(e) => Some(format!("body not read ({e})")),
                        }
                    }
                    Err(e) => Some(format!("no answer ({e})")),
                };
                match answer {
                    None => samples.push(t.elapsed()),
                    Some(failure) => *failed.entry(failure).or_default() += 1,
                }
                i += 1;
            }
            (samples, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        let (samples, f) = t.await?;
        all.extend(samples);
        for (why, n) in f {
            *failed.entry(why).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    let failures: usize = failed.values().sum();
    all.sort();
    println!(
        "API reads ({clients} clients, 80% GET one, 20% list of 50, {:?}): {} requests, {} answered 2xx, {failures} not; \
         {:.0} req/s answered 2xx, p50 {:?}, p95 {:?}, p99 {:?} (of the 2xx)",
        run_for,
        all.len() + failures,
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50),
        percentile(&all, 0.95),
        percentile(&all, 0.99)
    );
    for (why, n) in &failed {
        println!("  not 2xx: {n} × {why}");
    }
    println!("RSS after the read load: {} KiB", rss_kib(child.id())?);
    if failures > 0 {
        child.kill()?;
        child.wait()?;
        anyhow::bail!("{failures} API reads were not answered 2xx (listed above): the figures do not hold");
    }

    // Deploy call → first container of the release started, seen in Podman's events.
    let mut samples = Vec::new();
    for n in 0..5 {
        let mut events = Command::new("podman")
            .args([
                "events",
                "--filter",
                "event=start",
                "--filter",
                &format!("label=berth.cluster={cluster}"),
                "--format",
                "{{.Name}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = events.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
                let _ = tx.send((Instant::now(), line));
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await; // let `podman events` subscribe
        let t = Instant::now();
        http.post(format!("{base}/applications/app{n}/deploy"))
            .bearer_auth(&token)
            .json(&json!({"environment": "qa"}))
            .send()
            .await?
            .error_for_status()?;
        let (at, name) = rx.recv_timeout(Duration::from_secs(30))?;
        samples.push(at - t);
        println!(
            "  deploy app{n}: first container {name} started after {:?}",
            at - t
        );
        let _ = events.kill();
        let _ = events.wait();
    }
    samples.sort();
    println!(
        "deploy call → first container started (n=5): median {:?}, max {:?}",
        percentile(&samples, 0.5),
        samples[samples.len() - 1]
    );

    println!("load average at the end: {}", load().trim());
    child.kill()?;
    child.wait()?;
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "podman rm -f -t0 $(podman ps -aq --filter label=berth.cluster={cluster}) >/dev/null 2>&1"
        ))
        .status();
    Ok(())
}
