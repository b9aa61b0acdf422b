//! Races the caller never saw: an object written by someone else (the reconciler
//! recording a cluster's health) between a handler's read and its commit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{net::SocketAddr, sync::Arc};

use berth_api::{ApiState, Governance, RateLimit, auth};
use berth_core::ports::StoreError;
use berth_secrets::Keyring;
use berth_test_support::{FakeBuilds, FakeImages, RecordingStore, http};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Serves the API on loopback over `store`; returns its base URL and the admin token.
async fn serve(store: Arc<RecordingStore>) -> (String, String) {
    let admin = auth::ensure_bootstrap_token(store.as_ref())
        .await
        .unwrap()
        .unwrap();
    let state = ApiState {
        store,
        resolver: Arc::new(FakeImages::default()),
        changed: Arc::new(Notify::new()),
        domain: "localhost".into(),
        router_port: None,
        builds: Arc::new(FakeBuilds::default()),
        clock: Arc::new(berth_core::ports::SystemClock),
        clusters: Arc::new(berth_core::ports::NoClusterAccess),
        metrics: Default::default(),
        syncs: Default::default(),
    };
    let plenty = RateLimit {
        per_second: 1e6,
        burst: 1_000_000,
    };
    let governance = Governance::new(Arc::new(Keyring::generate()), plenty);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = berth_api::router_with(state, governance).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/api/v1"), admin)
}

async fn call(
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    http::call(&Client::new(), &format!("{base}{path}"), token, method, body).await
}

/// Failed before the fix with 409 "Team 't' changed: it is at resourceVersion 2, the
/// request was based on 1", as `e2e_credentials` did once in CI for a cluster whose
/// health the reconciler recorded in between.
#[tokio::test]
async fn a_delete_that_loses_a_race_with_another_writer_reads_again_and_deletes() {
    let store = RecordingStore::new().await;
    let (base, admin) = serve(store.clone()).await;
    let team = json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "t"}, "spec": {"members": []}});
    let (s, b) = call(&base, &admin, Method::PUT, "/teams/t", Some(team)).await;
    assert!(s.is_success(), "{s}: {b}");

    store.fail_next_commits([StoreError::Conflict {
        kind: "Team".into(),
        name: "t".into(),
        expected: 1,
        actual: 2,
    }]);
    let (s, b) = call(&base, &admin, Method::DELETE, "/teams/t", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(&base, &admin, Method::GET, "/teams/t", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "deleted: {b}");
}
