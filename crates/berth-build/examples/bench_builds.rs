//! Benchmark: the `java` builder against `buildah bud` of an equivalent Dockerfile, for the
//! same application, cold and after a one-class change.
//!
//! ```sh
//! scripts/setup-runtime.sh up        # registry, JRE base image, buildah
//! cargo run --release -p berth-build --example bench_builds [ROUNDS]
//! ```
//!
//! The application is examples/java-hello plus a dependency JAR of 400 generated classes;
//! compiling it is not timed (both builders start from the same compiled JAR). Times are
//! medians over ROUNDS (default 5):
//! - java builder: explode the JAR into layers and write the image to the registry (a new
//!   repository for "cold": base blobs are mounted, everything else uploaded).
//! - buildah: `buildah bud` (base image already local, `--layers` so that a rebuild reuses
//!   cached layers), and the same plus `buildah push` to the registry, which is where the
//!   java builder's image ends up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use bench_java::{JavaBench, git, median, ms, run};
use berth_build::{Registry, RegistryOptions};

mod bench_java;

/// Writes the app's sources with a greeting, compiles the JAR and its exploded copy.
fn compile(repo: &Path, greeting: &str) {
    std::fs::write(
        repo.join("src/main/java/dev/berth/hello/Extra.java"),
        format!("package dev.berth.hello;\nfinal class Extra {{ static String text() {{ return \"{greeting}\"; }} }}\n"),
    )
    .unwrap();
    let classes = repo.join("build/classes");
    let _ = std::fs::remove_dir_all(repo.join("build"));
    std::fs::create_dir_all(&classes).unwrap();
    let sources: Vec<PathBuf> = walk(&repo.join("src/main/java"));
    run(Command::new("javac")
        .args(["--release", "17", "-d"])
        .arg(&classes)
        .args(&sources));
    run(Command::new("cp")
        .arg("-r")
        .arg(repo.join("src/main/resources/dev"))
        .arg(&classes));
    run(Command::new("jar")
        .args(["--create", "--file"])
        .arg(repo.join("build/app.jar"))
        .args(["--main-class", "dev.berth.hello.Main", "-C"])
        .arg(&classes)
        .arg("."));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A dependency JAR of `n` generated classes.
fn dependency(repo: &Path, n: usize) {
    let src = repo.join("depsrc/bench/dep");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..n {
        let methods: String = (0..20)
            .map(|m| {
                format!("  public static String m{m}(String s) {{ return s + \"{i}-{m}\" + s.length(); }}\n")
            })
            .collect();
        std::fs::write(
            src.join(format!("C{i}.java")),
            format!("package bench.dep;\npublic class C{i} {{\n{methods}}}\n"),
        )
        .unwrap();
    }
    let out = repo.join("depclasses");
    std::fs::create_dir_all(&out).unwrap();
    run(Command::new("javac")
        .args(["--release", "17", "-d"])
        .arg(&out)
        .args(walk(&repo.join("depsrc"))));
    std::fs::create_dir_all(repo.join("lib")).unwrap();
    run(Command::new("jar")
        .args(["--create", "--file"])
        .arg(repo.join("lib/dep.jar"))
        .arg("-C")
        .arg(&out)
        .arg("."));
    std::fs::remove_dir_all(repo.join("depsrc")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

fn buildah_context(repo: &Path, ctx: &Path) {
    let _ = std::fs::remove_dir_all(ctx);
    std::fs::create_dir_all(ctx.join("resources")).unwrap();
    std::fs::create_dir_all(ctx.join("libs")).unwrap();
    run(Command::new("cp")
        .arg(repo.join("lib/dep.jar"))
        .arg(ctx.join("libs")));
    run(Command::new("cp")
        .arg("-r")
        .arg(repo.join("build/classes"))
        .arg(ctx.join("classes")));
    // The same split as the java builder: non-class files are resources.
    run(Command::new("sh").arg("-c").arg(format!(
        "cd {0}/classes && find . -type f ! -name '*.class' | while read f; do mkdir -p ../resources/$(dirname $f) && mv $f ../resources/$f; done",
        ctx.display()
    )));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM 127.0.0.1:5000/berth/jre:17\nCOPY libs /app/libs\nCOPY resources /app/resources\nCOPY classes /app/classes\n\
         ENV JAVA_TOOL_OPTIONS=\"-XX:MaxRAMPercentage=75.0\"\nEXPOSE 8080\nWORKDIR /app\n\
         ENTRYPOINT [\"java\", \"-cp\", \"/app/resources:/app/classes:/app/libs/*\", \"dev.berth.hello.Main\"]\n",
    )
    .unwrap();
}

fn buildah(ctx: &Path, tag: &str, push_to: Option<&str>) -> Duration {
    let started = Instant::now();
    run(Command::new("buildah")
        .args(["bud", "--quiet", "--pull=never", "--layers", "-t", tag])
        .arg(ctx));
    if let Some(dest) = push_to {
        run(Command::new("buildah").args([
            "push",
            "--quiet",
            "--tls-verify=false",
            tag,
            &format!("docker://{dest}"),
        ]));
    }
    started.elapsed()
}

fn clear_buildah_cache(tag: &str) {
    let _ = Command::new("buildah").args(["rmi", "-f", tag]).output();
    let _ = Command::new("buildah").args(["rmi", "--prune"]).output();
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-hello/src");
    std::fs::create_dir_all(&repo).unwrap();
    run(Command::new("cp").arg("-r").arg(&sample).arg(repo.join("src")));
    dependency(&repo, 400);
    compile(&repo, "v0");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v0"]);
    let jar = std::fs::metadata(repo.join("build/app.jar")).unwrap().len();
    let dep = std::fs::metadata(repo.join("lib/dep.jar")).unwrap().len();
    println!("application: app.jar {jar} bytes, lib/dep.jar {dep} bytes; {rounds} rounds");
    run(Command::new("podman").args(["pull", "-q", "127.0.0.1:5000/berth/jre:17"]));

    let bench = JavaBench {
        registry: Registry::new(RegistryOptions {
            insecure: vec!["127.0.0.1:5000".into()],
            ..RegistryOptions::default()
        }),
        settings: serde_json::from_value(serde_json::json!({"jar": "build/app.jar", "dependencies": "lib"}))
            .unwrap(),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (mut java_cold, mut java_rebuild, mut bud_cold, mut bud_rebuild, mut push_cold, mut push_rebuild) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut uploads = (0, 0);
    for round in 0..rounds {
        compile(&repo, &format!("cold-{round}"));
        git(&repo, &["commit", "-q", "-am", "cold"]);
        let target = format!("127.0.0.1:5000/bench/java-{stamp}-{round}");
        let (t, up, _) = bench.build(&repo, &target, |_| ()).await;
        java_cold.push(t);
        uploads.0 = up;
        // A one-class change: Extra.java only.
        compile(&repo, &format!("changed-{round}"));
        git(&repo, &["commit", "-q", "-am", "one class"]);
        let (t, up, _) = bench.build(&repo, &target, |_| ()).await;
        java_rebuild.push(t);
        uploads.1 = up;

        let ctx = work.path().join("ctx");
        let tag = format!("localhost/bench/buildah-{stamp}:{round}");
        let dest = format!("127.0.0.1:5000/bench/buildah-{stamp}-{round}:1");
        for push in [false, true] {
            compile(&repo, &format!("cold-{round}"));
            buildah_context(&repo, &ctx);
            clear_buildah_cache(&tag);
            let t = buildah(&ctx, &tag, push.then_some(dest.as_str()));
            if push {
                push_cold.push(t)
            } else {
                bud_cold.push(t)
            }
            compile(&repo, &format!("changed-{round}-{push}"));
            buildah_context(&repo, &ctx);
            let t = buildah(&ctx, &tag, push.then_some(dest.as_str()));
            if push {
                push_rebuild.push(t)
            } else {
                bud_rebuild.push(t)
            }
        }
        clear_buildah_cache(&tag);
    }
    let (jc, jr) = (median(java_cold), median(java_rebuild));
    let (bc, br, pc, pr) = (
        median(bud_cold),
        median(bud_rebuild),
        median(push_cold),
        median(push_rebuild),
    );
    println!("| build | cold | after a one-class change |");
    println!("| --- | --- | --- |");
    println!(
        "| java builder (to the registry) | {} ({} app blobs uploaded) | {} ({} uploaded) |",
        ms(jc),
        uploads.0,
        ms(jr),
        uploads.1
    );
    println!("| buildah bud --layers (local image) | {} | {} |", ms(bc), ms(br));
    println!("| buildah bud --layers + push | {} | {} |", ms(pc), ms(pr));
    println!(
        "rebuild speed-up: {:.1}x vs buildah bud, {:.1}x vs bud + push",
        br.as_secs_f64() / jr.as_secs_f64(),
        pr.as_secs_f64() / jr.as_secs_f64()
    );
}
