//! Runs one fake Kubernetes API server until SIGTERM or Ctrl-C, for scripts that need a
//! Kubernetes cluster to point Berth at (the API fuzzing in `scripts/fuzz-api.sh`).
//!
//!   cargo run -p berth-kube-fake --example serve -- KUBECONFIG_PATH
//!
//! Prints `fake Kubernetes API on http://ADDR` once it listens and writes a kubeconfig
//! for it (context `fake`) to `KUBECONFIG_PATH`.

use anyhow::Context;
use berth_kube_fake::{FakeCluster, FakeOptions};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: serve KUBECONFIG_PATH (where to write the kubeconfig)")?;
    let fake = FakeCluster::start(FakeOptions::default())
        .await
        .context("starting the fake API server")?;
    std::fs::write(&path, fake.kubeconfig()).with_context(|| format!("writing {path}"))?;
    println!("fake Kubernetes API on {}", fake.url());
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
