//! What the benchmarks of a real `berth server` process share: the binary they measure,
//! a server started with its rate limit raised, waiting for it to answer, percentiles.
//!
//! The rate limit is raised for the benchmarks only: one token makes every request, and
//! at the default 50/s per token the figures would measure the limiter, not the server.
//!
//! Each benchmark uses a part of this module (`bench_server` times bare starts and keeps
//! no [`Server`]), hence `dead_code` allowed here.
#![allow(dead_code)]

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// Requests per second (and burst) each token may make on the measured server: far
/// above what this machine can serve, so that no request is refused by the limiter.
pub const RATE_LIMIT: &str = "1000000";

/// The binary measured: `$BERTH_BIN`, else the `berth` built next to this program
/// (`<target>/<profile>/examples/bench_x` → `<target>/<profile>/berth`, wherever
/// `CARGO_TARGET_DIR` put them).
pub fn bin() -> String {
    std::env::var("BERTH_BIN").unwrap_or_else(|_| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("berth")))
            .map_or_else(|| "berth".to_owned(), |p| p.display().to_string())
    })
}

/// `berth server` on `api` (its router on `router`) with its data in `data`: images
/// from the local registry on 127.0.0.1:5000, the rate limit raised to [`RATE_LIMIT`],
/// logs at `warn`, its output discarded. The caller adds arguments or redirects output,
/// then spawns it.
pub fn server_command(data: &Path, api: &str, router: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["server", "--listen", api, "--router-listen", router])
        .args(["--insecure-registry", "127.0.0.1:5000"])
        .args(["--rate-limit", RATE_LIMIT, "--rate-burst", RATE_LIMIT])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Waits until `GET /healthz` on `api` answers `200`, asking every millisecond (start-up
/// time is measured with it), for at most `within`.
pub async fn wait_healthy(http: &reqwest::Client, api: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http
            .get(format!("http://{api}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    anyhow::bail!("the server on {api} did not become healthy in {within:?}")
}

/// The `p` percentile of `sorted`; zero when there is nothing to measure.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// A running server, its data directory and its bootstrap token; killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://{api}/api/v1`.
    pub base: String,
    /// The bootstrap token, an administrator's.
    pub token: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Spawns `command` (a [`server_command`] on `dir` and `api`), waits up to `within`
    /// for it to answer and to have written its bootstrap token, and reads the token.
    pub async fn start(
        http: &reqwest::Client,
        mut command: Command,
        dir: tempfile::TempDir,
        api: &str,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {}", bin()))?;
        // Owned from here, so that a failure below kills it.
        let mut server = Self {
            child,
            base: format!("http://{api}/api/v1"),
            token: String::new(),
            dir,
        };
        wait_healthy(http, api, within).await?;
        let path = server.dir.path().join("bootstrap-token");
        while !path.exists() {
            anyhow::ensure!(
                started.elapsed() < within,
                "the server wrote no bootstrap token in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.token = std::fs::read_to_string(&path)?.trim().to_owned();
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
