//! Helpers shared by the build tests: git repositories made with the git CLI.

#![allow(dead_code)]

use std::{path::Path, process::Command};

/// A git repository in a temporary directory, on branch `main`.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn write(&self, path: &str, data: impl AsRef<[u8]>) {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

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
