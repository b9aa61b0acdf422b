//! Start-up migrations of what an older Berth left behind: a Cluster whose kubeconfig is
//! stored in clear is sealed (and its text purged from the database files), and an open
//! data directory is made private. The migrated cluster still connects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use berth_core::ports::{Store, Write};
use berth_kube_fake::{FakeCluster, FakeOptions};
use berth_server::ServerArgs;
use berth_store::SqliteStore;
use clap::Parser;
use serde_json::{Value, json};

const MARKER: &str = "plaintext-kubeconfig-marker-4d81";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServerArgs,
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn database_holds(data: &Path, needle: &str) -> bool {
    ["berth.db", "berth.db-wal", "berth.db-shm"]
        .iter()
        .any(|f| contains(&std::fs::read(data.join(f)).unwrap_or_default(), needle))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn get(base: &str, token: &str, path: &str) -> Value {
    let text = reqwest::Client::new()
        .get(format!("{base}/api/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn args(data: &Path) -> ServerArgs {
    Cli::parse_from([
        "berth",
        "--listen",
        "127.0.0.1:0",
        "--router-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_kubeconfigs_are_sealed_at_start_and_the_data_directory_made_private() {
    let fake = FakeCluster::start(FakeOptions {
        token: Some(MARKER.to_owned()),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    // What an older Berth stored: the kubeconfig in the Cluster document, in clear.
    let store = SqliteStore::open(&data.join("berth.db")).await.unwrap();
    let old = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "kube"},
        "spec": {"runtime": "kubernetes", "datacenter": "east", "local": {},
            "kubernetes": {"kubeconfig": {"inline": fake.kubeconfig()}, "context": "fake"}},
        "status": {"phase": "Unreachable", "message": format!("the kubeconfig is invalid: ... token: \"{MARKER}")}});
    store
        .commit(
            vec![Write::Create {
                kind: "Cluster".to_owned(),
                name: "kube".to_owned(),
                owner: None,
                document: old,
            }],
            Vec::new(),
        )
        .await
        .unwrap();
    store.close().await;
    drop(store);
    for f in std::fs::read_dir(&data).unwrap() {
        std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert!(
        database_holds(&data, MARKER),
        "the old store holds the kubeconfig in clear"
    );

    let server = berth_server::start(args(&data)).await.unwrap();
    let base = format!("http://{}", server.api_addr);
    let token = server.bootstrap_token.clone().unwrap();

    // Sealed, shown only by fingerprint, key and version, and said so in the events.
    let cluster = get(&base, &token, "/clusters/kube").await;
    let sealed = &cluster["spec"]["kubernetes"]["kubeconfig"]["sealed"];
    assert_eq!(sealed["version"], 1, "{cluster}");
    assert!(
        sealed["fingerprint"].as_str().unwrap().starts_with("sha256:"),
        "{cluster}"
    );
    assert!(!cluster.to_string().contains(MARKER), "{cluster}");
    let events = get(&base, &token, "/events?limit=1000").await;
    assert!(events.to_string().contains("KubeconfigSealed"), "{events}");
    assert!(!events.to_string().contains(MARKER), "{events}");
    // The replaced row leaves no copy in the database's files.
    assert!(
        !database_holds(&data, MARKER),
        "the database still holds the kubeconfig"
    );

    // Private: the directory and every file of it that holds secrets.
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in [
        "berth.db",
        "berth.db-wal",
        "berth.db-shm",
        "bootstrap-token",
        "secrets.key",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }

    // The sealed credential opens: the reconciler reaches the fake with its token.
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let c = get(&base, &token, "/clusters/kube").await;
        if c["status"]["phase"] == "Ready" {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "never Ready: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let version = get(&base, &token, "/clusters/kube").await["spec"].clone();
    server.shutdown().await;

    // A second start has nothing left to migrate.
    let server = berth_server::start(args(&data)).await.unwrap();
    let base = format!("http://{}", server.api_addr);
    let again = get(&base, &token, "/clusters/kube").await;
    assert_eq!(again["spec"], version, "{again}");
    let events = get(&base, &token, "/events?limit=1000").await;
    assert_eq!(
        events.to_string().matches("KubeconfigSealed").count(),
        1,
        "{events}"
    );
    server.shutdown().await;
}
