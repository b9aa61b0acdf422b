//! Benchmark: full and steady-state reconcile passes of N applications × 3 clusters
//! against the fake API server, or against three real control planes.
//!
//! ```text
//! cargo run --release -p berth-runtime-kube --example bench -- 1000 5000 12000
//! cargo run --release -p berth-runtime-kube --example bench -- --kubeconfigs A:B:C 1000
//! ```
//!
//! The three fake clusters run in a child process (this program started again with
//! `--serve`), as an API server runs apart from Berth: the RSS reported is Berth's
//! side alone (the child's is printed too). Each size gets fresh clusters.
//!
//! With `--kubeconfigs` (three kubeconfig files, `:`-separated, from
//! `tools/kubernetes/cluster.sh up NAME`; `scripts/bench-kube-real.sh` brings them up)
//! the passes go to real API servers. Requests are counted by the API servers themselves
//! (`apiserver_request_total` from `/metrics`, before and after each pass); Berth's share
//! is what only Berth sends there (server-side applies, lists, deletes of the kinds it
//! manages), the rest is the controllers', the scheduler's and kwok's. The control
//! plane's CPU comes from `/proc/PID/stat` of the processes whose pid files
//! `cluster.sh` keeps beside the kubeconfig. `--replicas R` gives every application R
//! replicas instead of 1–3. One size per run: the clusters keep what it applied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use berth_core::{
    objects::{HealthCheck, KubeconfigSource, KubernetesRuntime},
    ports::ClusterRuntime,
    render::{Workload, WorkloadKey},
};
use berth_kube_fake::{FakeCluster, FakeOptions, RequestCounts};
use berth_runtime_kube::{KubeRuntime, RuntimeOptions};

const CLUSTERS: usize = 3;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds this process used (user + system).
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("self")
}

/// CPU seconds (user + system) of process `pid` ("self" for this one), from its
/// `/proc/PID/stat`.
fn stat_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

/// The child: starts the fake clusters and prints their URLs.
async fn start_fakes() -> Vec<FakeCluster> {
    let mut fakes = Vec::new();
    for _ in 0..CLUSTERS {
        let fake = FakeCluster::start(FakeOptions {
            ready_after: Duration::ZERO,
            history: 1000,
            ..FakeOptions::default()
        })
        .await
        .unwrap();
        println!("{}", fake.url());
        fakes.push(fake);
    }
    println!("ready");
    fakes
}

/// The child, on its main thread while the runtime's workers serve: answers `counts`
/// and `reset` on stdin.
fn answer(fakes: &[FakeCluster]) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "counts" => {
                let c: Vec<RequestCounts> = fakes.iter().map(FakeCluster::requests).collect();
                let total = c.iter().fold(RequestCounts::default(), |a, b| RequestCounts {
                    get: a.get + b.get,
                    list: a.list + b.list,
                    watch: a.watch + b.watch,
                    create: a.create + b.create,
                    update: a.update + b.update,
                    patch: a.patch + b.patch,
                    delete: a.delete + b.delete,
                    other: a.other + b.other,
                });
                println!(
                    "{} {} {} {} {} {}",
                    total.total(),
                    total.writes(),
                    total.list,
                    total.patch,
                    peak_rss_mib(),
                    cpu_seconds()
                );
            }
            "reset" => {
                for f in fakes {
                    f.reset_requests();
                }
                println!("ok");
            }
            _ => println!("?"),
        }
    }
}

fn workload(i: usize, cluster: &str, replicas: Option<u32>) -> Workload {
    let app = format!("app{i:05}");
    let env = format!("env{}", i % 10);
    Workload {
        key: WorkloadKey {
            application: app.clone(),
            environment: env.clone(),
        },
        cluster: cluster.to_owned(),
        deployment: format!("{app}-{env}-1"),
        release: 1,
        image: "registry.example.com/team/web@sha256:00000000000000000000000000000000000000000000000000000000000000aa"
            .to_owned(),
        port: 8080,
        env: BTreeMap::from([("PORT".to_owned(), "8080".to_owned()), ("LOG_LEVEL".to_owned(), "info".to_owned())]),
        cpu_millis: Some(500),
        memory_bytes: Some(512 << 20),
        health: HealthCheck {
            path: "/healthz".to_owned(),
            ..HealthCheck::default()
        },
        replicas: replicas.unwrap_or(1 + (i % 3) as u32),
        hosts: vec![format!("{app}.{env}.example.com")],
        startup_deadline_seconds: 120,
        spec_hash: "0123456789abcdef".to_owned(),
        team: "default".to_owned(),
        namespace: format!("default-{env}"),
        ..Workload::default()
    }
}

struct Child {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Child {
    fn ask(&mut self, what: &str) -> String {
        writeln!(self.stdin, "{what}").unwrap();
        self.out.next().unwrap().unwrap()
    }

    fn counts(&mut self) -> (u64, u64, u64, u64, f64, f64) {
        let line = self.ask("counts");
        let v: Vec<&str> = line.split_whitespace().collect();
        (
            v[0].parse().unwrap(),
            v[1].parse().unwrap(),
            v[2].parse().unwrap(),
            v[3].parse().unwrap(),
            v[4].parse().unwrap(),
            v[5].parse().unwrap(),
        )
    }
}

async fn pass(runtimes: &[KubeRuntime], desired: &[Vec<Workload>]) -> (Duration, usize, usize) {
    let start = Instant::now();
    let reports = futures::future::join_all(runtimes.iter().zip(desired).map(|(r, d)| r.reconcile(d))).await;
    let elapsed = start.elapsed();
    let mut ready = 0;
    let mut problems = 0;
    for r in reports {
        let r = r.unwrap();
        for w in &r.workloads {
            if w.message.is_some() {
                problems += 1;
            }
            if w.counts.old == 0 && w.counts.ready > 0 {
                ready += 1;
            }
        }
    }
    (elapsed, ready, problems)
}

async fn run(n: usize) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    loop {
        let line = out.next().unwrap().unwrap();
        if line == "ready" {
            break;
        }
        urls.push(line);
    }
    let mut child = Child { child, stdin, out };

    let runtimes: Vec<KubeRuntime> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            KubeRuntime::new(
                &format!("dc{i}"),
                &KubernetesRuntime {
                    kubeconfig: Some(KubeconfigSource::Inline(
                        berth_kube_fake::kubeconfig(url, "berth-fake-token").into(),
                    )),
                    context: None,
                    in_cluster: false,
                },
                RuntimeOptions {
                    watch: false,
                    pass_budget: None,
                    concurrency: 48,
                    request_timeout: Duration::from_secs(60),
                    ..RuntimeOptions::default()
                },
            )
            .unwrap()
        })
        .collect();
    let desired: Vec<Vec<Workload>> = (0..CLUSTERS)
        .map(|c| (0..n).map(|i| workload(i, &format!("dc{c}"), None)).collect())
        .collect();

    let cpu_before = cpu_seconds();
    let (_, _, _, _, _, fake_cpu_before) = child.counts();
    let (full, _, problems) = pass(&runtimes, &desired).await;
    let berth_cpu = cpu_seconds() - cpu_before;
    let (requests, writes, _, _, _, fake_cpu) = child.counts();
    let fake_cpu = fake_cpu - fake_cpu_before;
    assert_eq!(
        problems, 0,
        "the full pass reported {problems} workloads with problems"
    );
    // Let the simulated rollouts finish, then converge.
    let mut converge = Duration::ZERO;
    for _ in 0..20 {
        let (t, ready, problems) = pass(&runtimes, &desired).await;
        assert_eq!(
            problems, 0,
            "a converging pass reported {problems} workloads with problems"
        );
        converge = t;
        if ready == n * CLUSTERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.ask("reset");
    let (steady, ready, problems) = pass(&runtimes, &desired).await;
    assert_eq!(
        problems, 0,
        "the steady-state pass reported {problems} workloads with problems"
    );
    let (steady_requests, steady_writes, steady_lists, _, fake_rss, _) = child.counts();
    let rss = peak_rss_mib();
    let apps = (n * CLUSTERS) as f64;
    println!(
        "| {n} × {CLUSTERS} | {:.1} s (CPU: Berth {berth_cpu:.1} s, fake {fake_cpu:.1} s) | {:.2} | {writes} | {:.1} s | {:.1} s | {steady_requests} ({steady_lists} lists) | {steady_writes} | {rss:.0} MiB | {fake_rss:.0} MiB |",
        full.as_secs_f64(),
        requests as f64 / apps,
        converge.as_secs_f64(),
        steady.as_secs_f64(),
    );
    assert_eq!(ready, n * CLUSTERS, "every workload converged");
    assert_eq!(steady_writes, 0, "a steady-state pass writes nothing");
    drop(child.stdin);
    let _ = child.child.wait();
}

/// The kinds Berth manages (plural resource names as the API server's metrics say them).
const BERTH_KINDS: [&str; 10] = [
    "namespaces",
    "deployments",
    "services",
    "ingresses",
    "configmaps",
    "secrets",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "resourcequotas",
    "limitranges",
];

/// Control-plane processes whose CPU is measured, by `cluster.sh`'s pid file names.
const COMPONENTS: [&str; 5] = [
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// `apiserver_request_total` summed over the three API servers, split into what Berth
/// sends and what everyone else (controllers, scheduler, kwok) does.
#[derive(Clone, Copy, Default, Debug)]
struct ApiCounts {
    /// Every request the API servers served.
    all: u64,
    /// Berth's: applies, lists, and deletes of the kinds it manages.
    berth: u64,
    /// Berth's writes: applies and deletes.
    berth_writes: u64,
    /// Berth's lists.
    berth_lists: u64,
    /// Berth's requests the servers answered with something other than 2xx.
    berth_failed: u64,
}

impl std::ops::Sub for ApiCounts {
    type Output = Self;
    fn sub(self, b: Self) -> Self {
        Self {
            all: self.all - b.all,
            berth: self.berth - b.berth,
            berth_writes: self.berth_writes - b.berth_writes,
            berth_lists: self.berth_lists - b.berth_lists,
            berth_failed: self.berth_failed - b.berth_failed,
        }
    }
}

/// The value of `name` in a Prometheus sample's label set `a="x",b="y"`.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split("\",")
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
        .map_or("", |v| v.trim_end_matches('"'))
}

fn count_metrics(text: &str) -> ApiCounts {
    let mut c = ApiCounts::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let n = value as u64;
        c.all += n;
        let verb = label(labels, "verb");
        let resource = label(labels, "resource");
        let subresource = label(labels, "subresource");
        let berth_kind = BERTH_KINDS.contains(&resource) && subresource.is_empty();
        let failed = !label(labels, "code").starts_with('2');
        // The API server applies some objects of its own (flow schemas' status, cluster
        // roles, service CIDRs) when it starts: only applies of Berth's kinds count.
        match verb {
            "APPLY" | "DELETE" if berth_kind => {
                c.berth += n;
                c.berth_writes += n;
                c.berth_failed += if failed { n } else { 0 };
            }
            // The controllers list once, when they start; Berth lists every pass (its
            // own kinds, and pods for rollouts that do not progress).
            "LIST" if berth_kind || resource == "pods" => {
                c.berth += n;
                c.berth_lists += n;
                c.berth_failed += if failed { n } else { 0 };
            }
            _ => {}
        }
    }
    c
}

/// A real cluster: a client of its own for `/metrics`, and its processes' pid files.
struct RealCluster {
    kubeconfig: String,
    client: kube::Client,
    pids: std::path::PathBuf,
}

impl RealCluster {
    async fn open(path: &str) -> Self {
        let kubeconfig = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read the kubeconfig {path}: {e}"));
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let pids = std::path::Path::new(path)
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("pids");
        Self {
            kubeconfig,
            client: kube::Client::try_from(config).unwrap(),
            pids,
        }
    }

    async fn metrics(&self) -> ApiCounts {
        let text = self
            .client
            .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET /metrics failed: {e}"));
        count_metrics(&text)
    }

    fn pid(&self, component: &str) -> Option<u32> {
        std::fs::read_to_string(self.pids.join(component))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

/// CPU seconds (user + system) of `pid`.
fn process_cpu(pid: u32) -> f64 {
    stat_cpu_seconds(&pid.to_string())
}

/// Resident memory of `pid` in MiB (`VmRSS`).
fn process_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Control-plane CPU seconds per component, summed over the clusters.
fn plane_cpu(clusters: &[RealCluster]) -> BTreeMap<&'static str, f64> {
    COMPONENTS
        .iter()
        .map(|c| {
            let total = clusters.iter().filter_map(|k| k.pid(c)).map(process_cpu).sum();
            (*c, total)
        })
        .collect()
}

fn plane_rss(clusters: &[RealCluster], component: &str) -> f64 {
    clusters
        .iter()
        .filter_map(|k| k.pid(component))
        .map(process_rss_mib)
        .sum()
}

async fn api_counts(clusters: &[RealCluster]) -> ApiCounts {
    let mut total = ApiCounts::default();
    for c in clusters {
        let m = c.metrics().await;
        total.all += m.all;
        total.berth += m.berth;
        total.berth_writes += m.berth_writes;
        total.berth_lists += m.berth_lists;
        total.berth_failed += m.berth_failed;
    }
    total
}

fn cpu_delta(after: &BTreeMap<&'static str, f64>, before: &BTreeMap<&'static str, f64>) -> String {
    COMPONENTS
        .iter()
        .map(|c| format!("{c} {:.0} s", after[c] - before[c]))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run_real(n: usize, kubeconfigs: &[String], replicas: Option<u32>, converge_within: Duration) {
    let mut clusters = Vec::new();
    for path in kubeconfigs {
        clusters.push(RealCluster::open(path).await);
    }
    let runtimes: Vec<KubeRuntime> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            KubeRuntime::new(
                &format!("dc{i}"),
                &KubernetesRuntime {
                    kubeconfig: Some(KubeconfigSource::Inline(c.kubeconfig.clone().into())),
                    context: None,
                    in_cluster: false,
                },
                RuntimeOptions {
                    watch: false,
                    pass_budget: None,
                    concurrency: 48,
                    request_timeout: Duration::from_secs(60),
                    ..RuntimeOptions::default()
                },
            )
            .unwrap()
        })
        .collect();
    let desired: Vec<Vec<Workload>> = (0..clusters.len())
        .map(|c| (0..n).map(|i| workload(i, &format!("dc{c}"), replicas)).collect())
        .collect();
    let apps = (n * clusters.len()) as f64;

    // What the control planes do with nobody else talking to them, over 10 s.
    let idle_before = api_counts(&clusters).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = api_counts(&clusters).await - idle_before;
    eprintln!("idle 10 s: {idle:?}");

    let cpu_before = cpu_seconds();
    let plane_before = plane_cpu(&clusters);
    let counts_before = api_counts(&clusters).await;
    let (full, _, problems) = pass(&runtimes, &desired).await;
    let berth_cpu = cpu_seconds() - cpu_before;
    let plane_full = plane_cpu(&clusters);
    let full_counts = api_counts(&clusters).await - counts_before;
    eprintln!("full pass: {full:?}, {full_counts:?}, problems {problems}");

    // The controllers make ReplicaSets and pods, the scheduler places them, kwok makes
    // them Ready: pass until every workload is, as the reconciler would.
    let converge_start = Instant::now();
    let mut converge_passes = 0;
    let mut last = Duration::ZERO;
    let mut ready = 0;
    while converge_start.elapsed() < converge_within {
        let (t, r, p) = pass(&runtimes, &desired).await;
        converge_passes += 1;
        last = t;
        ready = r;
        eprintln!(
            "converging pass {converge_passes}: {t:?}, {r} of {} ready, {p} with messages, {:.0} s since the full pass",
            n * clusters.len(),
            converge_start.elapsed().as_secs_f64()
        );
        if r == n * clusters.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let converged = converge_start.elapsed();
    let plane_converged = plane_cpu(&clusters);

    let steady_before = api_counts(&clusters).await;
    let plane_steady_before = plane_cpu(&clusters);
    let (steady, steady_ready, steady_problems) = pass(&runtimes, &desired).await;
    let steady_counts = api_counts(&clusters).await - steady_before;
    let plane_steady = plane_cpu(&clusters);
    let rss = peak_rss_mib();
    let apiserver_rss = plane_rss(&clusters, "kube-apiserver");
    let etcd_rss = plane_rss(&clusters, "etcd");
    let cm_rss = plane_rss(&clusters, "kube-controller-manager");
    let kwok_rss = plane_rss(&clusters, "kwok");
    println!(
        "| {n} × {} | {:.1} s | Berth {berth_cpu:.1} s; {} | {:.2} ({} writes, {} lists) | {} | {} passes, {:.0} s, last {:.1} s, {ready} of {} ready | {:.1} s | {} ({} lists) | {} | {} | {rss:.0} MiB | apiserver {apiserver_rss:.0} MiB, etcd {etcd_rss:.0} MiB, controller-manager {cm_rss:.0} MiB, kwok {kwok_rss:.0} MiB |",
        clusters.len(),
        full.as_secs_f64(),
        cpu_delta(&plane_full, &plane_before),
        full_counts.berth as f64 / apps,
        full_counts.berth_writes,
        full_counts.berth_lists,
        full_counts.all,
        converge_passes,
        converged.as_secs_f64(),
        last.as_secs_f64(),
        n * clusters.len(),
        steady.as_secs_f64(),
        steady_counts.berth,
        steady_counts.berth_lists,
        steady_counts.berth_writes,
        steady_counts.all,
    );
    println!(
        "control-plane CPU while converging: {}; in the steady pass: {}",
        cpu_delta(&plane_converged, &plane_full),
        cpu_delta(&plane_steady, &plane_steady_before)
    );
    println!(
        "problems: full pass {problems}, steady pass {steady_problems}; Berth's requests answered with other than 2xx (retried): full pass {}, steady pass {}; idle 10 s before: {} requests ({} Berth-like)",
        full_counts.berth_failed, steady_counts.berth_failed, idle.all, idle.berth
    );
    assert_eq!(
        problems, 0,
        "the full pass reported {problems} workloads with problems"
    );
    assert_eq!(steady_ready, n * clusters.len(), "every workload converged");
    assert_eq!(
        steady_counts.berth_writes, 0,
        "a steady-state pass writes nothing"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("--serve") {
        let fakes = rt.block_on(start_fakes());
        answer(&fakes);
        return;
    }
    let mut kubeconfigs: Vec<String> = Vec::new();
    let mut replicas = None;
    let mut converge_within = Duration::from_secs(1800);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--kubeconfigs" => {
                kubeconfigs = value()
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--replicas" => replicas = Some(value().parse().expect("--replicas is a number")),
            "--converge-seconds" => {
                converge_within =
                    Duration::from_secs(value().parse().expect("--converge-seconds is a number"));
            }
            _ => rest.push(a.clone()),
        }
    }
    if !kubeconfigs.is_empty() {
        assert_eq!(
            kubeconfigs.len(),
            CLUSTERS,
            "--kubeconfigs names {CLUSTERS} kubeconfig files"
        );
        let [n] = &rest[..] else {
            panic!("against real clusters, one size per run (the clusters keep what it applied)")
        };
        let n: usize = n.parse().expect("the size is a number");
        println!(
            "| apps × clusters | full pass | CPU in the full pass | Berth's requests/app | all API requests | converging | steady pass | steady requests (Berth) | steady writes (Berth) | steady requests (all) | peak RSS, Berth | RSS, control planes |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        rt.block_on(run_real(n, &kubeconfigs, replicas, converge_within));
        return;
    }
    let args = rest;
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1000, 5000, 12_000]
    } else {
        args.iter()
            .map(|a| a.parse().expect("sizes are numbers"))
            .collect()
    };
    println!(
        "| apps × clusters | full pass | requests/app | writes | converging pass | steady pass | steady requests | steady writes | peak RSS (Berth) | peak RSS (fake servers) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        rt.block_on(run(n));
    }
}
