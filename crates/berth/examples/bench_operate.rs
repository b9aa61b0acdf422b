//! Benchmarks of operating applications through a real `berth server` process:
//!
//! - the cost of request metrics on `GET /applications/{name}` throughput: the same load
//!   against a server with its per-request metrics layer and one started with
//!   `--no-request-metrics`, alternated over several rounds so that a busy spell on the
//!   shared machine hits both;
//! - `berth logs APP --env E -f`: process start → first log line on its stdout, against
//!   a real container of the local runtime (Podman).
//!
//! Every request is counted: one not answered `2xx` is printed by status and makes the
//! program exit non-zero, so a figure never hides refused requests. The rate limit is
//! raised as in `bench_server` (the load would otherwise measure the limiter).
//!
//! Run: `cargo build -p berth --bin berth --examples && <target>/debug/examples/bench_operate`
//! (`BERTH_BIN=path` measures another build; needs `scripts/setup-runtime.sh up` and
//! `DOCKER_HOST` for the logs measurement).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

mod common;

use common::{RATE_LIMIT, Server, bin, percentile, server_command};

/// CPU time (user + system) the process has used so far, from `/proc/PID/stat`: what a
/// request costs the server, which a busy shared machine disturbs far less than the
/// throughput.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name; the
    // kernel counts them in USER_HZ, 100 a second on Linux.
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 10))
}

/// A server with one application (and an environment on a local cluster) to read.
async fn server(
    http: &reqwest::Client,
    api: &str,
    router: &str,
    metrics: bool,
    cluster: &str,
) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut command = server_command(dir.path(), api, router);
    if !metrics {
        command.arg("--no-request-metrics");
    }
    let server = Server::start(http, command, dir, api, Duration::from_secs(30)).await?;
    let (base, token) = (&server.base, &server.token);
    http.put(format!("{base}/clusters/{cluster}")).bearer_auth(token)
        .json(&json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": cluster}, "spec": {}}))
        .send().await?.error_for_status()?;
    http.put(format!("{base}/environments/qa"))
        .bearer_auth(token)
        .json(
            &json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
            "spec": {"clusters": [{"cluster": cluster}]}}),
        )
        .send()
        .await?
        .error_for_status()?;
    // It prints a line at start and one per request it serves.
    http.put(format!("{base}/applications/web"))
        .bearer_auth(token)
        .json(
            &json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
            "spec": {"image": "127.0.0.1:5000/busybox:latest",
                     "command": ["sh", "-c", "echo web starting; exec httpd -f -v -p 8080 -h /www"],
                     "configFiles": [{"path": "/www/index.html", "content": "hi"}]}}),
        )
        .send()
        .await?
        .error_for_status()?;
    Ok(server)
}

/// `clients` concurrent clients GET `url` for `run_for`: (answered 2xx, failures by why, elapsed).
async fn load(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    clients: usize,
    run_for: Duration,
) -> (Vec<Duration>, BTreeMap<String, usize>, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            let mut failed: BTreeMap<String, usize> = BTreeMap::new();
            while started.elapsed() < run_for {
                let t = Instant::now();
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
                    None => ok.push(t.elapsed()),
                    Some(why) => *failed.entry(why).or_default() += 1,
                }
            }
            (ok, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        if let Ok((ok, f)) = t.await {
            all.extend(ok);
            for (why, n) in f {
                *failed.entry(why).or_default() += n;
            }
        } else {
            *failed.entry("client task panicked".into()).or_default() += 1;
        }
    }
    (all, failed, started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let load_avg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "measuring {}; load average at start: {}",
        bin(),
        load_avg().trim()
    );
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let (api, router) = ("127.0.0.1:17170", "127.0.0.1:18180");
    let cluster = format!("bench{}", std::process::id());
    let mut failures = 0;

    // 1. Cost of the request metrics on GET /applications/{name}.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let (clients, run_for) = (8, Duration::from_secs(5));
    println!(
        "GET /applications/web, {clients} clients, {rounds} rounds of {run_for:?} per variant, alternated; \
         --rate-limit {RATE_LIMIT}"
    );
    let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<&str, (Duration, usize)> = BTreeMap::new();
    let mut paired = Vec::new();
    for round in 1..=rounds {
        for (name, metrics) in [("with metrics", true), ("without", false)] {
            let s = server(&http, api, router, metrics, &cluster).await?;
            let url = format!("{}/applications/web", s.base);
            // Warm up connections and caches.
            let _ = load(&http, &url, &s.token, clients, Duration::from_millis(500)).await;
            let cpu_before = cpu_time(s.child.id())?;
            let (mut ok, failed, elapsed) = load(&http, &url, &s.token, clients, run_for).await;
            let used = cpu_time(s.child.id())?.saturating_sub(cpu_before);
            let e = cpu.entry(name).or_default();
            e.0 += used;
            e.1 += ok.len() + failed.values().sum::<usize>();
            ok.sort();
            let rate = ok.len() as f64 / elapsed.as_secs_f64();
            let n_failed: usize = failed.values().sum();
            failures += n_failed;
            println!(
                "  round {round} {name:>12}: {} requests, {} 2xx, {n_failed} not; {rate:.0} req/s; p50 {:?} p99 {:?}; \
                 server CPU {:.0} µs a request",
                ok.len() + n_failed,
                ok.len(),
                percentile(&ok, 0.5),
                percentile(&ok, 0.99),
                used.as_secs_f64() * 1e6 / (ok.len() + n_failed).max(1) as f64
            );
            for (why, n) in &failed {
                println!("    not 2xx: {n} × {why}");
            }
            rates.entry(name).or_default().push(rate);
        }
        let with = rates
            .get("with metrics")
            .and_then(|v| v.last())
            .copied()
            .unwrap_or_default();
        let without = rates
            .get("without")
            .and_then(|v| v.last())
            .copied()
            .unwrap_or(1.0);
        paired.push((without - with) / without * 100.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let with = median(rates.entry("with metrics").or_default());
    let without = median(rates.entry("without").or_default());
    let per_request = |name: &str| {
        cpu.get(name)
            .map_or(0.0, |(t, n)| t.as_secs_f64() * 1e6 / (*n).max(1) as f64)
    };
    let (cpu_with, cpu_without) = (per_request("with metrics"), per_request("without"));
    println!(
        "server CPU a request over all rounds: {cpu_with:.0} µs with metrics, {cpu_without:.0} µs without: \
         cost {:.1} %",
        (cpu_with - cpu_without) / cpu_without * 100.0
    );
    let mut sorted = paired.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "median throughput: {with:.0} req/s with metrics, {without:.0} req/s without: cost {:.1} %; \
         per round (without − with) / without: {} → median {:.1} %",
        (without - with) / without * 100.0,
        paired
            .iter()
            .map(|p| format!("{p:+.1} %"))
            .collect::<Vec<_>>()
            .join(", "),
        sorted[sorted.len() / 2]
    );

    // 2. logs -f: process start → first line on stdout.
    if std::env::var_os("DOCKER_HOST").is_some() {
        let s = server(&http, api, router, true, &cluster).await?;
        http.post(format!("{}/applications/web/deploy", s.base))
            .bearer_auth(&s.token)
            .json(&json!({"environment": "qa"}))
            .send()
            .await?
            .error_for_status()?;
        // Wait until an instance runs and has written its first line.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = http
                .get(format!("{}/applications/web/instances?environment=qa", s.base))
                .bearer_auth(&s.token)
                .send()
                .await?;
            let v: serde_json::Value = r.json().await?;
            if v["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i["ready"] == true))
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "web never became ready: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut samples = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let mut child = Command::new(bin())
                .args([
                    "logs",
                    "web",
                    "--env",
                    "qa",
                    "-f",
                    "--server",
                    &format!("http://{api}"),
                    "--token",
                    &s.token,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
            let first = BufReader::new(stdout).lines().next();
            let took = t.elapsed();
            let _ = child.kill();
            let _ = child.wait();
            match first {
                Some(Ok(line)) => {
                    samples.push(took);
                    println!("  first line after {took:?}: {line}");
                }
                other => {
                    failures += 1;
                    println!("  no first line: {other:?}");
                }
            }
        }
        samples.sort();
        println!(
            "berth logs -f, process start → first line (n={}): median {:?}, max {:?}",
            samples.len(),
            percentile(&samples, 0.5),
            samples.last().copied().unwrap_or_default()
        );
        drop(s);
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "podman rm -f -t0 $(podman ps -aq --filter label=berth.cluster={cluster}) >/dev/null 2>&1"
            ))
            .status();
    } else {
        println!("logs -f not measured: set DOCKER_HOST (scripts/setup-runtime.sh up)");
    }
    println!("load average at the end: {}", load_avg().trim());
    anyhow::ensure!(
        failures == 0,
        "{failures} requests or reads failed (listed above): the figures do not hold"
    );
    Ok(())
}
