//! Benchmark of infrastructure as code through the real binary: `berth diff -f DIR` and
//! `berth apply -f DIR` of 1,000 documents (one cluster, one environment, 998
//! applications), against a real `berth server` on loopback (target: ≤ 2 s each).
//!
//! Every command is counted: one that fails is printed with its output and the program
//! exits non-zero, so a time never hides a refused apply. Each apply is one request
//! (`POST /api/v1/apply`, one transaction).
//!
//! Run: `cargo build --release -p berth --bin berth --examples && target/release/examples/bench_iac`
//! (`BERTH_BIN=path` measures another build; `--documents N` another size).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

fn bin() -> String {
    std::env::var("BERTH_BIN").unwrap_or_else(|_| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("berth")))
            .map_or_else(|| "berth".to_owned(), |p| p.display().to_string())
    })
}

/// Writes `n` documents into `dir`, one file each; `replicas` goes into every application.
fn write_documents(dir: &Path, n: usize, replicas: u32) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("0-platform.yaml"),
        "apiVersion: berth.dev/v1\nkind: Cluster\nmetadata: {name: bench}\nspec: {datacenter: dc1}\n---\n\
         apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: qa}\nspec:\n  clusters: [{cluster: bench}]\n",
    )?;
    for i in 0..n.saturating_sub(2) {
        std::fs::write(
            dir.join(format!("app-{i:04}.yaml")),
            format!(
                "apiVersion: berth.dev/v1\nkind: Application\nmetadata:\n  name: app-{i:04}\n  labels: {{tier: web}}\n\
                 spec:\n  image: 127.0.0.1:5000/busybox:latest\n  replicas: {replicas}\n  env: {{MODE: bench}}\n  \
                 environments:\n    qa: {{replicas: 1}}\n"
            ),
        )?;
    }
    Ok(())
}

struct Run {
    what: String,
    elapsed: Duration,
    lines: usize,
}

fn main() -> anyhow::Result<()> {
    let mut documents = 1000;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--documents") {
        documents = args.get(i + 1).context("--documents N")?.parse()?;
    }
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let mut server = Command::new(bin())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin()))?;
    let stdout = server.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let api = loop {
        let line = lines
            .next()
            .context("the server ended before it printed its address")??;
        if let Some(rest) = line.strip_prefix("berth API on ") {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let token = std::fs::read_to_string(data.join("bootstrap-token"))?
        .trim()
        .to_owned();
    let dir = work.path().join("docs");
    std::fs::create_dir_all(&dir)?;
    write_documents(&dir, documents, 2)?;

    let mut runs = Vec::new();
    let mut failed = Vec::new();
    let mut step = |what: &str, verb: &str| -> anyhow::Result<()> {
        let started = Instant::now();
        let out = Command::new(bin())
            .args([verb, "-f"])
            .arg(&dir)
            .env("BERTH_SERVER", &api)
            .env("BERTH_TOKEN", &token)
            .env_remove("BERTH_CONFIG")
            .env("HOME", work.path())
            .output()?;
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            failed.push(format!(
                "{what}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        runs.push(Run {
            what: what.to_owned(),
            elapsed,
            lines: stdout.lines().filter(|l| !l.starts_with("    ")).count(),
        });
        Ok(())
    };
    step("diff, empty server (all would be created)", "diff")?;
    step("apply, empty server (all created)", "apply")?;
    step("diff, unchanged", "diff")?;
    step("apply, unchanged", "apply")?;
    write_documents(&dir, documents, 3)?;
    step("diff, every application changed", "diff")?;
    step("apply, every application changed", "apply")?;
    let _ = server.kill();
    let _ = server.wait();

    println!("{documents} documents, `berth <verb> -f DIR` through {api}:");
    for run in &runs {
        println!(
            "  {:<45} {:>7.3} s  ({} objects reported)",
            run.what,
            run.elapsed.as_secs_f64(),
            run.lines
        );
    }
    println!("failed commands: {}", failed.len());
    for f in &failed {
        println!("  {f}");
    }
    anyhow::ensure!(failed.is_empty(), "{} command(s) failed", failed.len());
    Ok(())
}
