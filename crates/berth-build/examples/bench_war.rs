//! Benchmark: the servlet sample (examples/java-webapp, a WAR built by Maven) packaged by
//! the `java` builder, by Jib (`jib-maven-plugin` from Maven Central) and by `buildah bud`
//! of an equivalent Dockerfile, all on the Tomcat base and to the same registry, cold and
//! after a one-class change; then the image serving 50 requests/s for 60 s in 256 MiB.
//!
//! ```sh
//! scripts/setup-runtime.sh up        # registry, Tomcat base image, Maven, buildah
//! cargo run --release -p berth-build --example bench_war [ROUNDS] [SECONDS]
//! ```
//!
//! Maven's `package` (compile and WAR) runs before each packaging and is reported on its
//! own; the times compared are packaging only, medians over ROUNDS (default 5):
//! - java builder: layer the WAR and write the image to the registry (cold: a new
//!   repository, the base blobs mounted, everything else uploaded).
//! - Jib: `mvn jib:build` (Maven's start-up included, as Jib runs inside Maven;
//!   cold: new base-image and application caches and a new repository).
//! - buildah: `buildah bud --layers --timestamp 0` (the base already local), and that plus
//!   `buildah push` to the registry, where the other two put their images.
//!
//! Each builder's digest is checked for reproducibility: two cold builds of one commit
//! into two repositories must give the same digest. The memory part runs the java
//! builder's image with `--memory 256m` and the `JAVA_TOOL_OPTIONS` Berth gives a
//! replica with that limit (`berth_core::jvm`), sends 50 GET / a second for SECONDS
//! (default 60), prints every failed request, and reports the JVM's RSS and whether the
//! container was OOM-killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bench_java::{JavaBench, git, median, ms, output, run};
use berth_build::{Registry, RegistryOptions, git::File};

mod bench_java;

const TOMCAT: &str = "127.0.0.1:5000/berth/tomcat:10.1";
const JIB: &str = "com.google.cloud.tools:jib-maven-plugin:3.5.2";
const WAR: &str = "target/java-webapp.war";

fn timed(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    run(cmd);
    started.elapsed()
}

fn mvn(repo: &Path, m2: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("mvn");
    cmd.args(["--batch-mode", "--no-transfer-progress", "--quiet"])
        .arg(format!("-Dmaven.repo.local={}", m2.display()))
        .args(args)
        .current_dir(repo);
    cmd
}

/// A one-class change: the health servlet's answer.
fn change(repo: &Path, text: &str) {
    let path = repo.join("src/main/java/dev/berth/webapp/HealthServlet.java");
    let source = std::fs::read_to_string(&path).unwrap();
    let start = source.find("print(\"").unwrap() + "print(\"".len();
    let end = start + source[start..].find('"').unwrap();
    let changed = format!("{}{text}\\n{}", &source[..start], &source[end..]);
    std::fs::write(&path, changed).unwrap();
    git(repo, &["commit", "-q", "-am", text]);
}

/// The java builder given the WAR Maven made (as after its own Maven step).
async fn package(berth: &JavaBench, repo: &Path, target: &str) -> (Duration, usize, String) {
    let war = std::fs::read(repo.join(WAR)).unwrap();
    berth
        .build(repo, target, |tree| {
            tree.files.remove("pom.xml");
            tree.files.insert(
                WAR.into(),
                File {
                    data: war,
                    executable: false,
                    symlink: false,
                },
            );
        })
        .await
}

/// `mvn jib:build` to `target` with its caches in `cache`; returns the time and digest.
/// Not `--offline` (Jib refuses to push then); a released plugin already in the Maven
/// repository is not looked up again.
fn jib(repo: &Path, m2: &Path, cache: &Path, target: &str) -> (Duration, String) {
    let args = [
        format!("{JIB}:build"),
        format!("-Dimage={target}:bench"),
        format!("-Djib.from.image={TOMCAT}"),
        "-Djib.allowInsecureRegistries=true".into(),
        "-Djib.container.appRoot=/usr/local/tomcat/webapps/ROOT".into(),
        format!("-Djib.baseImageCache={}", cache.join("base").display()),
        format!("-Djib.applicationCache={}", cache.join("app").display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let took = timed(&mut mvn(repo, m2, &args));
    let digest = std::fs::read_to_string(repo.join("target/jib-image.digest")).unwrap();
    (took, digest.trim().to_owned())
}

/// The buildah context: the exploded WAR split as the java builder splits it.
fn buildah_context(repo: &Path, ctx: &Path) {
    let _ = std::fs::remove_dir_all(ctx);
    std::fs::create_dir_all(ctx).unwrap();
    run(Command::new("cp")
        .arg("-r")
        .arg(repo.join("target/java-webapp"))
        .arg(ctx.join("static")));
    run(Command::new("mv")
        .arg(ctx.join("static/WEB-INF/classes"))
        .arg(ctx.join("classes")));
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {TOMCAT}\nCOPY static /usr/local/tomcat/webapps/ROOT/\n\
             COPY classes /usr/local/tomcat/webapps/ROOT/WEB-INF/classes/\n"
        ),
    )
    .unwrap();
}

/// `buildah bud`, and `buildah push` to `push_to`; returns the time and pushed digest.
fn buildah(ctx: &Path, tag: &str, push_to: Option<&str>) -> (Duration, String) {
    let started = Instant::now();
    run(Command::new("buildah")
        .args([
            "bud",
            "--quiet",
            "--pull=never",
            "--layers",
            "--timestamp",
            "0",
            "-t",
            tag,
        ])
        .arg(ctx));
    let mut digest = String::new();
    if let Some(dest) = push_to {
        let file = ctx.join("digest");
        run(Command::new("buildah")
            .args(["push", "--quiet", "--tls-verify=false", "--digestfile"])
            .arg(&file)
            .args([tag, &format!("docker://{dest}")]));
        digest = std::fs::read_to_string(file).unwrap();
    }
    (started.elapsed(), digest)
}

fn clear_buildah_cache(tag: &str) {
    let _ = Command::new("buildah").args(["rmi", "-f", tag]).output();
    let _ = Command::new("buildah").args(["rmi", "--prune"]).output();
}

/// One request's outcome.
struct Outcome {
    at: Duration,
    took: Duration,
    result: Result<u16, String>,
}

/// 50 GET / a second for `seconds` against `url`, sampling the RSS of `container`'s JVM.
async fn load(url: &str, container: &str, seconds: u64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let started = Instant::now();
    let mut requests = Vec::new();
    let mut rss = Vec::new();
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let (client, url, outcomes) = (client.clone(), url.to_owned(), outcomes.clone());
        requests.push(tokio::spawn(async move {
            let at = started.elapsed();
            let sent = Instant::now();
            let result = match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => match r.text().await {
                    Ok(body) if body.contains("from java-webapp") => Ok(200),
                    Ok(_) => Err("a 200 without the page".to_owned()),
                    Err(e) => Err(format!("reading the body: {e}")),
                },
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            outcomes.lock().unwrap().push(Outcome {
                at,
                took: sent.elapsed(),
                result,
            });
        }));
        if started.elapsed() >= next_sample {
            next_sample += Duration::from_secs(5);
            rss.push(vm_rss(container));
        }
    }
    let sending = started.elapsed();
    for r in requests {
        r.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    for f in &failed {
        println!(
            "FAILED request at {:.2} s after {}: {}",
            f.at.as_secs_f64(),
            ms(f.took),
            f.result.as_ref().unwrap_err()
        );
    }
    let mut took: Vec<Duration> = outcomes.iter().map(|o| o.took).collect();
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    println!(
        "load: {} requests sent over {:.1} s ({:.1}/s), {} failed; latency p50 {}, p99 {}, max {}",
        outcomes.len(),
        sending.as_secs_f64(),
        outcomes.len() as f64 / sending.as_secs_f64(),
        failed.len(),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(*took.last().unwrap())
    );
    let after = vm_rss(container);
    println!(
        "JVM RSS (VmRSS of PID 1): during the load {} MiB at most (samples {:?}), {} MiB at the end; cgroup: {}",
        rss.iter().max().unwrap(),
        rss,
        after,
        output(Command::new("podman").args(["stats", "--no-stream", "--format", "{{.MemUsage}}", container]))
            .trim()
    );
}

/// The resident set of the container's PID 1, in MiB.
fn vm_rss(container: &str) -> u64 {
    let status = output(Command::new("podman").args(["exec", container, "cat", "/proc/1/status"]));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

async fn memory(image: &str, seconds: u64) {
    let limit = 256 * 1024 * 1024;
    let sizing = berth_core::jvm::size(Some(limit), 30);
    let name = format!("bench-war-{}", std::process::id());
    println!(
        "memory: {image} with --memory 256m, JAVA_TOOL_OPTIONS={}",
        sizing.java_tool_options()
    );
    run(Command::new("podman").args([
        "run",
        "-d",
        "--tls-verify=false",
        "--name",
        &name,
        "--memory",
        "256m",
        "--memory-swap",
        "256m",
        "-e",
        &format!("JAVA_TOOL_OPTIONS={}", sizing.java_tool_options()),
        "-p",
        "127.0.0.1::8080",
        image,
    ]));
    let mapped = output(Command::new("podman").args(["port", &name, "8080"]));
    let address = mapped.lines().next().unwrap().trim().to_owned();
    let started = Instant::now();
    let client = reqwest::Client::new();
    loop {
        let ready = client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready in 60 s:\n{}",
            output(Command::new("podman").args(["logs", &name]))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "ready after {}; RSS at start {} MiB",
        ms(started.elapsed()),
        vm_rss(&name)
    );
    load(&format!("http://{address}/"), &name, seconds).await;
    let state = output(Command::new("podman").args([
        "inspect",
        "--format",
        "{{.State.Status}} oom-killed={{.State.OOMKilled}} restarts={{.RestartCount}}",
        &name,
    ]));
    println!("container: {}", state.trim());
    let _ = Command::new("podman").args(["rm", "-f", &name]).output();
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let seconds: u64 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(60);
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-webapp");
    std::fs::create_dir_all(&repo).unwrap();
    run(Command::new("cp").arg("-r").arg(sample.join("src")).arg(&repo));
    run(Command::new("cp").arg(sample.join("pom.xml")).arg(&repo));
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join(".gitignore"), "target/\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v0"]);
    // Maven's repository, kept between runs: downloading plugins is not what is measured.
    let m2 = std::env::temp_dir().join("berth-bench-m2");
    let first = timed(&mut mvn(&repo, &m2, &["package"]));
    jib(
        &repo,
        &m2,
        &work.path().join("jib-warm-up"),
        &format!("127.0.0.1:5000/bench/war-jib-warm-up-{}", std::process::id()),
    );
    println!(
        "Maven repository {} ready ({}; plugins downloaded on a first run); {rounds} rounds",
        m2.display(),
        ms(first)
    );
    run(Command::new("podman").args(["pull", "-q", "--tls-verify=false", TOMCAT]));

    let berth = JavaBench {
        registry: Registry::new(RegistryOptions {
            insecure: vec!["127.0.0.1:5000".into()],
            ..RegistryOptions::default()
        }),
        settings: serde_json::from_value(serde_json::json!({"war": WAR})).unwrap(),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut t: [Vec<Duration>; 9] = Default::default();
    let (mut uploads, mut reproducible) = ((0, 0), [true; 3]);
    let mut image = String::new();
    for round in 0..rounds {
        change(&repo, &format!("ok cold {round}"));
        t[0].push(timed(&mut mvn(&repo, &m2, &["--offline", "package"])));
        let target = format!("127.0.0.1:5000/bench/war-berth-{stamp}-{round}");
        let (d, up, digest) = package(&berth, &repo, &target).await;
        t[1].push(d);
        uploads.0 = up;
        let (_, _, again) = package(&berth, &repo, &format!("{target}-again")).await;
        reproducible[0] &= digest == again;
        image = format!("{target}@{digest}");

        let jib_target = format!("127.0.0.1:5000/bench/war-jib-{stamp}-{round}");
        let cache = work.path().join(format!("jib-{round}"));
        let (d, digest) = jib(&repo, &m2, &cache, &jib_target);
        t[3].push(d);
        let (_, again) = jib(
            &repo,
            &m2,
            &work.path().join(format!("jib-{round}-again")),
            &format!("{jib_target}-again"),
        );
        reproducible[1] &= digest == again;

        let ctx = work.path().join("ctx");
        let tag = format!("localhost/bench/war-buildah-{stamp}:{round}");
        let dest = format!("127.0.0.1:5000/bench/war-buildah-{stamp}-{round}:1");
        buildah_context(&repo, &ctx);
        clear_buildah_cache(&tag);
        t[5].push(buildah(&ctx, &tag, None).0);
        clear_buildah_cache(&tag);
        let (d, digest) = buildah(&ctx, &tag, Some(&dest));
        t[7].push(d);
        clear_buildah_cache(&tag);
        let (_, again) = buildah(&ctx, &tag, Some(&format!("{dest}-again")));
        reproducible[2] &= digest == again;

        // The one-class change, packaged by each into the repository it built cold.
        change(&repo, &format!("ok changed {round}"));
        t[0].push(timed(&mut mvn(&repo, &m2, &["--offline", "package"])));
        let (d, up, _) = package(&berth, &repo, &target).await;
        t[2].push(d);
        uploads.1 = up;
        t[4].push(jib(&repo, &m2, &cache, &jib_target).0);
        buildah_context(&repo, &ctx);
        t[6].push(buildah(&ctx, &tag, None).0);
        change(&repo, &format!("ok changed again {round}"));
        run(&mut mvn(&repo, &m2, &["--offline", "package"]));
        buildah_context(&repo, &ctx);
        t[8].push(buildah(&ctx, &tag, Some(&dest)).0);
        clear_buildah_cache(&tag);
    }
    let m: Vec<Duration> = t.into_iter().map(median).collect();
    let yes = |r: bool| if r { "same digest" } else { "DIFFERENT digests" };
    println!("Maven package (compile + war, offline), median: {}", ms(m[0]));
    println!("| packaging | cold | after a one-class change | two cold builds |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| java builder (to the registry) | {} ({} app blobs uploaded) | {} ({} uploaded) | {} |",
        ms(m[1]),
        uploads.0,
        ms(m[2]),
        uploads.1,
        yes(reproducible[0])
    );
    println!(
        "| Jib: mvn jib:build (to the registry) | {} | {} | {} |",
        ms(m[3]),
        ms(m[4]),
        yes(reproducible[1])
    );
    println!(
        "| buildah bud --layers --timestamp 0 (local image) | {} | {} | |",
        ms(m[5]),
        ms(m[6])
    );
    println!(
        "| buildah bud + push | {} | {} | {} |",
        ms(m[7]),
        ms(m[8]),
        yes(reproducible[2])
    );
    println!(
        "rebuild speed-up of the java builder: {:.1}x vs Jib, {:.1}x vs buildah bud, {:.1}x vs bud + push",
        m[4].as_secs_f64() / m[2].as_secs_f64(),
        m[6].as_secs_f64() / m[2].as_secs_f64(),
        m[8].as_secs_f64() / m[2].as_secs_f64()
    );
    if seconds > 0 {
        memory(&image, seconds).await;
    }
}
