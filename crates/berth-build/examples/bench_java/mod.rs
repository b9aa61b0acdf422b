//! What the build benchmarks share: running commands, medians, and timing the `java`
//! builder from a git commit to an image in the registry.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use berth_build::{
    Registry,
    git::{self, Tree},
    java,
    log::BuildLog,
};
use berth_core::objects::JavaBuilder;

/// Runs `cmd`, panicking with its output when it fails; returns its standard output.
pub fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, panicking with its output when it fails.
pub fn run(cmd: &mut Command) {
    output(cmd);
}

/// `git` in `dir` with a fixed author.
pub fn git(dir: &Path, args: &[&str]) {
    run(Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=b@example.com"])
        .args(args)
        .current_dir(dir));
}

/// The median of `v`.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `d` in whole milliseconds.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The `java` builder as a build service runs it, to one registry.
pub struct JavaBench {
    pub registry: Registry,
    pub settings: JavaBuilder,
}

impl JavaBench {
    /// Fetches the commit of `repo`'s main and lets `adjust` change its tree (not timed),
    /// then times layering and writing to `target`; returns the time, the application
    /// blobs uploaded and the digest.
    pub async fn build(
        &self,
        repo: &Path,
        target: &str,
        adjust: impl FnOnce(&mut Tree),
    ) -> (Duration, usize, String) {
        let scratch = tempfile::tempdir().unwrap();
        let mut tree = git::fetch(
            &format!("file://{}", repo.display()),
            "main",
            &scratch.path().join("r"),
        )
        .unwrap();
        adjust(&mut tree);
        let log = BuildLog::default();
        let started = Instant::now();
        let app = java::prepare(
            &tree,
            &self.settings,
            &log,
            &scratch.path().join("work"),
            &scratch.path().join("m2"),
        )
        .await
        .unwrap();
        let target = Registry::reference(&format!("{target}:bench")).unwrap();
        let pushed = java::push(
            &self.registry,
            &target,
            &app,
            &self.settings,
            8080,
            &tree.commit,
            &log,
        )
        .await
        .unwrap();
        let took = started.elapsed();
        let uploaded = pushed
            .layers
            .iter()
            .filter(|l| l.pushed && l.role != "base")
            .count();
        (took, uploaded, pushed.digest)
    }
}
