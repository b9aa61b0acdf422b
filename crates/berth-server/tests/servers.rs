//! How many servers a store allows: SQLite one per data directory (a second refuses to
//! start), PostgreSQL several on one database, each serving what the others wrote.
//!
//! The PostgreSQL test needs `BERTH_TEST_POSTGRES` (a database URL; `scripts/test.sh`
//! sets it): unset, it fails rather than pass unrun; `skip` skips it, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use berth_server::ServerArgs;
use berth_store::testing;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServerArgs,
}

fn args(data: &Path, extra: &[&str]) -> ServerArgs {
    let mut argv = vec![
        "berth",
        "--listen",
        "127.0.0.1:0",
        "--router-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    Cli::parse_from(argv).args
}

async fn call(
    method: reqwest::Method,
    base: &str,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}/api/v1{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = berth_server::start(args(&data, &[])).await.unwrap();
    let Err(refused) = berth_server::start(args(&data, &[])).await else {
        panic!("a second server started on the same SQLite data directory");
    };
    let message = format!("{refused:#}");
    assert!(message.contains("another berth server"), "{message}");
    assert!(
        message.contains(&data.display().to_string()),
        "names the directory: {message}"
    );
    assert!(message.contains("--data-dir"), "says how to fix it: {message}");
    first.shutdown().await;
    let again = berth_server::start(args(&data, &[]))
        .await
        .expect("the directory is free once the first server stopped");
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_database_serve_what_either_wrote() {
    let Some(admin) = testing::database("two servers on PostgreSQL") else {
        return;
    };
    // A database of its own, so that the servers start on an empty store.
    let name = format!("berth_servers_{:016x}", rand::random::<u64>());
    testing::run(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
    let _dropped = testing::Cleanup {
        url: admin.clone(),
        sql: format!("DROP DATABASE \"{name}\" WITH (FORCE)"),
    };
    let (base_url, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base_url}/{name}");

    let dir = tempfile::tempdir().unwrap();
    // Every server on one database signs the audit log with the same key.
    let key = dir.path().join("audit.key");
    berth_store::seal::load_or_create_key(&key).unwrap();
    let key = key.to_str().unwrap();
    let flags = ["--store", url.as_str(), "--audit-key-file", key];
    let a = berth_server::start(args(&dir.path().join("a"), &flags))
        .await
        .unwrap();
    let b = berth_server::start(args(&dir.path().join("b"), &flags))
        .await
        .unwrap();
    let token = a
        .bootstrap_token
        .clone()
        .expect("the first server makes the bootstrap token");
    assert_eq!(b.bootstrap_token, None, "the second finds it in the shared store");
    let (on_a, on_b) = (format!("http://{}", a.api_addr), format!("http://{}", b.api_addr));

    let team = json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "pay"}, "spec": {}});
    let (status, created) = call(reqwest::Method::POST, &on_a, &token, "/teams", Some(team)).await;
    assert!(status < 300, "{status} {created}");
    let (status, read) = call(reqwest::Method::GET, &on_b, &token, "/teams/pay", None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        read["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );

    // A write through B with A's stale version is refused; with the current one it passes.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (status, problem) = call(reqwest::Method::PUT, &on_b, &token, "/teams/pay", Some(stale)).await;
    assert_eq!(status, 409, "{problem}");

    let (status, verified) = call(reqwest::Method::GET, &on_b, &token, "/audit/verify", None).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], true, "one audit chain, whoever wrote: {verified}");

    a.shutdown().await;
    b.shutdown().await;
}
