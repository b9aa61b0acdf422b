//! Benchmark: full and steady-state reconcile passes of N applications × 3 clusters
//! against the fake API server.
//!
//! ```text
//! cargo run --release -p berth-runtime-kube --example bench -- 1000 5000 12000
//! ```
//!
//! The three fake clusters run in a child process (this program started again with
//! `--serve`), as an API server runs apart from Berth: the RSS reported is Berth's
//! side alone (the child's is printed too). Each size gets fresh clusters.
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
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
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

fn workload(i: usize, cluster: &str) -> Workload {
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
        replicas: 1 + (i % 3) as u32,
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
        .map(|c| (0..n).map(|i| workload(i, &format!("dc{c}"))).collect())
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
