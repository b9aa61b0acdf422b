//! Helpers shared by the build tests: git repositories made with the git CLI.

#![allow(dead_code)]

use std::{path::Path, process::Command};

pub use berth_test_support::git::Repo;

/// The sample Java application (examples/java-hello) in a fresh repository, compiled into
/// `build/app.jar` with the classes' `Greeting` text set to `greeting`.
pub fn java_repo(greeting: &str) -> Repo {
    let repo = Repo::new();
    write_java_app(&repo, greeting);
    repo.commit("java app");
    repo
}

/// (Re)writes the sample's sources with `greeting` and compiles the JAR into the repo.
pub fn write_java_app(repo: &Repo, greeting: &str) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-hello");
    copy_dir(&sample.join("src"), &repo.path().join("src"));
    let greeting_java = repo.path().join("src/main/java/dev/berth/hello/Extra.java");
    std::fs::write(
        &greeting_java,
        format!("package dev.berth.hello;\n\nfinal class Extra {{\n    static String text() {{ return \"{greeting}\"; }}\n}}\n"),
    )
    .unwrap();
    repo.write("lib/README", "dependencies\n");
    let classes = tempfile::tempdir().unwrap();
    let sources: Vec<String> = walk(&repo.path().join("src/main/java"))
        .into_iter()
        .filter(|p| p.ends_with(".java"))
        .collect();
    let ok = Command::new("javac")
        .args(["--release", "17", "-d"])
        .arg(classes.path())
        .args(&sources)
        .status()
        .unwrap();
    assert!(ok.success());
    copy_dir(&repo.path().join("src/main/resources"), classes.path());
    std::fs::create_dir_all(repo.path().join("build")).unwrap();
    let jar = repo.path().join("build/app.jar");
    let _ = std::fs::remove_file(&jar);
    let ok = Command::new("jar")
        .args(["--create", "--file"])
        .arg(&jar)
        .args(["--main-class", "dev.berth.hello.Main", "-C"])
        .arg(classes.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    // A dependency JAR: its own layer, which a class change never touches.
    let dep = repo.path().join("lib/dep.jar");
    if !dep.exists() {
        let ok = Command::new("jar")
            .args(["--create", "--file"])
            .arg(&dep)
            .args(["-C"])
            .arg(repo.path().join("src/main/resources"))
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out.sort();
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A repository name no other test uses, in the local registry.
pub fn fresh_repository(what: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!(
        "127.0.0.1:5000/berth-test/{what}-{nanos:x}-{}",
        std::process::id()
    )
}

/// The servlet sample (examples/java-webapp) in a fresh repository, compiled with javac
/// against Debian's servlet API (installed by scripts/setup-runtime.sh) and packed into
/// `build/shop.war`, with a dependency in `WEB-INF/lib`; `PageServlet` says `greeting`.
pub fn war_repo(greeting: &str) -> Repo {
    let repo = Repo::new();
    write_war_app(&repo, greeting, &[]);
    repo.commit("web app");
    repo
}

/// The servlet API jar of the build host.
pub const SERVLET_API: &str = "/usr/share/java/tomcat10-servlet-api.jar";

/// (Re)writes the servlet sample with `greeting` as its default greeting, plus `extra`
/// Java sources (path below src/main/java, content), and packs `build/shop.war`.
pub fn write_war_app(repo: &Repo, greeting: &str, extra: &[(&str, &str)]) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-webapp");
    copy_dir(&sample.join("src"), &repo.path().join("src"));
    let page = repo
        .path()
        .join("src/main/java/dev/berth/webapp/PageServlet.java");
    let text = std::fs::read_to_string(&page).unwrap();
    let default = "getOrDefault(\"GREETING\", \"Hello\")";
    assert!(text.contains(default), "the sample's default greeting moved");
    let changed = text.replace(default, &format!("getOrDefault(\"GREETING\", \"{greeting}\")"));
    std::fs::write(&page, changed).unwrap();
    for (path, source) in extra {
        repo.write(&format!("src/main/java/{path}"), source);
    }
    let staging = tempfile::tempdir().unwrap();
    let classes = staging.path().join("WEB-INF/classes");
    let sources: Vec<String> = walk(&repo.path().join("src/main/java"))
        .into_iter()
        .filter(|p| p.ends_with(".java"))
        .collect();
    let ok = Command::new("javac")
        .args(["--release", "17", "-cp", SERVLET_API, "-d"])
        .arg(&classes)
        .args(&sources)
        .status()
        .unwrap();
    assert!(ok.success());
    copy_dir(&repo.path().join("src/main/resources"), &classes);
    copy_dir(&repo.path().join("src/main/webapp"), staging.path());
    // A library: its own layer, which a class change never touches (made once: the jar
    // tool writes the time into it).
    let dep = repo.path().join("lib/dep.jar");
    if !dep.exists() {
        std::fs::create_dir_all(repo.path().join("lib")).unwrap();
        let ok = Command::new("jar")
            .args(["--create", "--file"])
            .arg(&dep)
            .arg("-C")
            .arg(repo.path().join("src/main/resources"))
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
    }
    std::fs::create_dir_all(staging.path().join("WEB-INF/lib")).unwrap();
    std::fs::copy(&dep, staging.path().join("WEB-INF/lib/dep.jar")).unwrap();
    std::fs::create_dir_all(repo.path().join("build")).unwrap();
    let war = repo.path().join("build/shop.war");
    let _ = std::fs::remove_file(&war);
    let ok = Command::new("jar")
        .args(["--create", "--file"])
        .arg(&war)
        .arg("-C")
        .arg(staging.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A container started with the podman CLI for a test, removed when dropped.
pub struct Container {
    pub id: String,
}

impl Container {
    /// Runs `image` detached with `args` before it, port 8080 published on loopback.
    pub fn run(image: &str, args: &[&str]) -> Self {
        let out = Command::new("podman")
            .args([
                "run",
                "-d",
                "--label",
                "berth-test=build",
                "-p",
                "127.0.0.1::8080",
            ])
            .args(args)
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            id: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        }
    }

    /// The host address of its port 8080.
    pub fn address(&self) -> String {
        let out = Command::new("podman")
            .args(["port", &self.id, "8080"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Its log.
    pub fn logs(&self) -> String {
        let out = Command::new("podman").args(["logs", &self.id]).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Memory use as the engine reports it, e.g. `150.2MB / 268.4MB`.
    pub fn memory(&self) -> String {
        let out = Command::new("podman")
            .args(["stats", "--no-stream", "--format", "{{.MemUsage}}", &self.id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `Some(exit code)` once it has stopped.
    pub fn exit_code(&self) -> Option<i64> {
        let out = Command::new("podman")
            .args([
                "inspect",
                "-f",
                "{{.State.Running}} {{.State.ExitCode}}",
                &self.id,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (running, code) = text.trim().split_once(' ')?;
        (running == "false").then(|| code.parse().unwrap())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.id])
            .output();
    }
}

/// GETs `url` until it answers 200 or `deadline` passes; returns the body.
pub async fn get_when_ready(url: &str, deadline: std::time::Duration, container: &Container) -> String {
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            return r.text().await.unwrap();
        }
        if let Some(code) = container.exit_code() {
            panic!("the container exited with {code}:\n{}", container.logs());
        }
        assert!(
            start.elapsed() < deadline,
            "{url} did not answer 200 in {deadline:?}:\n{}",
            container.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
