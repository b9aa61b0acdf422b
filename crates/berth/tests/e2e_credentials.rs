//! Cluster credentials end to end, against the real `berth server` with debug logs: a
//! Kubernetes cluster's inline kubeconfig is accepted on write, deploys against a fake
//! Kubernetes API server, and is never in an answer (to a viewer, a developer or an
//! administrator), an event, a CLI output, a file of the data directory or the log; a
//! broken one is refused by line without being quoted; key rotation re-seals it.
//! Needs the local registry of `scripts/setup-runtime.sh` (the image is resolved there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use berth_kube_fake::{FakeCluster, FakeOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Berth, IMAGE, Options, contains};

/// The kubeconfig's bearer token: what must never come back.
const MARKER: &str = "kubecred-marker-93c1d7e5";
/// Two secrets keys (32 bytes each, base64).
const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cluster(kubeconfig: Value) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "kube"},
        "spec": {"runtime": "kubernetes", "datacenter": "east",
            "kubernetes": {"kubeconfig": kubeconfig, "context": "fake"}}})
}

fn app(marker: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"image": IMAGE, "team": "pay", "replicas": 2, "healthCheck": {"path": "/healthz"},
            "resources": {"memory": "64Mi"}, "env": {"MARKER": marker}}})
}

async fn deploy(berth: &Berth) {
    let (s, d) = berth
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    berth
        .wait_phase(
            d["metadata"]["name"].as_str().unwrap(),
            "Succeeded",
            Duration::from_secs(60),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfigs_are_sealed_deploy_and_are_never_shown() {
    let fake = FakeCluster::start(FakeOptions {
        token: Some(MARKER.to_owned()),
        ready_after: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let kubeconfig = fake.kubeconfig();
    assert!(kubeconfig.contains(MARKER));
    let outside = tempfile::tempdir().unwrap();
    let log = outside.path().join("server.log");
    let keys = outside.path().join("secrets.key");
    std::fs::write(&keys, format!("{KEY_A}\n")).unwrap();
    let mut berth = Berth::start_with(Options {
        args: vec!["--secrets-key-file".to_owned(), keys.display().to_string()],
        log: Some(log.clone()),
        rust_log: Some("debug".to_owned()),
        ..Options::default()
    })
    .await;
    let mut answers: Vec<(String, String)> = Vec::new();

    // The data directory and its files are private (issue 8, item 14).
    assert_eq!(mode(&berth.data), 0o700, "data directory");
    for name in ["berth.db", "berth.db-wal", "berth.db-shm", "bootstrap-token"] {
        assert_eq!(mode(&berth.data.join(name)), 0o600, "{name}");
    }

    // A team with a developer and a viewer, each with a token.
    let mut tokens = vec![("admin".to_owned(), berth.token.clone())];
    for user in ["dev", "vic"] {
        let (s, b) = berth
            .call(
                Method::PUT,
                &format!("/users/{user}"),
                Some(json!({"apiVersion": "berth.dev/v1", "kind": "User", "metadata": {"name": user}, "spec": {}})),
            )
            .await;
        assert!(s.is_success(), "{b}");
    }
    let (s, b) = berth
        .call(
            Method::PUT,
            "/teams/pay",
            Some(json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "pay"},
                "spec": {"members": [{"user": "dev", "roles": ["developer"]}, {"user": "vic", "roles": ["viewer"]}]}})),
        )
        .await;
    assert!(s.is_success(), "{b}");
    for user in ["dev", "vic"] {
        let (s, b) = berth
            .call(Method::POST, "/tokens", Some(json!({"name": user, "user": user})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        tokens.push((user.to_owned(), b["secret"].as_str().unwrap().to_owned()));
    }

    // Written once, inline; the answer shows that it is set, never what it is.
    let (s, written) = berth
        .call(
            Method::PUT,
            "/clusters/kube",
            Some(cluster(json!({"inline": kubeconfig}))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    answers.push(("PUT /clusters/kube".to_owned(), written.to_string()));
    let sealed = &written["spec"]["kubernetes"]["kubeconfig"]["sealed"];
    assert!(
        sealed["fingerprint"].as_str().unwrap().starts_with("sha256:"),
        "{written}"
    );
    assert_eq!(sealed["version"], 1, "{written}");
    let key_a = sealed["keyId"].as_str().unwrap().to_owned();
    assert!(
        written["spec"]["kubernetes"]["kubeconfig"]
            .get("inline")
            .is_none()
    );

    let env = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
        "spec": {"clusters": [{"cluster": "kube"}], "rollout": {"progressDeadlineSeconds": 60}}});
    let (s, b) = berth.call(Method::PUT, "/environments/qa", Some(env)).await;
    assert!(s.is_success(), "{b}");
    let (s, b) = berth
        .call(Method::PUT, "/applications/web", Some(app("one")))
        .await;
    assert!(s.is_success(), "{b}");
    // The fake accepts only the kubeconfig's token: a success means it was opened.
    deploy(&berth).await;

    // Re-applying the exported document, `sealed: {}` or the same inline document keeps
    // the credential and changes nothing.
    let (_, exported) = berth.call(Method::GET, "/clusters/kube", None).await;
    let version = exported["metadata"]["resourceVersion"].clone();
    for doc in [
        exported.clone(),
        cluster(json!({"sealed": {}})),
        cluster(json!({"inline": kubeconfig})),
    ] {
        let (s, b) = berth.call(Method::PUT, "/clusters/kube", Some(doc)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["metadata"]["resourceVersion"], version, "nothing changed: {b}");
        assert_eq!(
            b["spec"]["kubernetes"]["kubeconfig"]["sealed"]["version"], 1,
            "{b}"
        );
        answers.push(("re-apply".to_owned(), b.to_string()));
    }
    // Keeping a credential that does not exist is refused, by field.
    let (s, b) = berth
        .call(
            Method::PUT,
            "/clusters/other",
            Some(
                json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "other"},
                "spec": {"runtime": "kubernetes", "kubernetes": {"kubeconfig": {"sealed": {}}}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("spec.kubernetes.kubeconfig.sealed"), "{b}");

    // A merge patch with another kubeconfig replaces the stored one (a new version); one
    // with a path drops it, so that keeping it afterwards is refused.
    let other = |kubeconfig: Value| {
        json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "other"},
            "spec": {"runtime": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig}}})
    };
    let (s, b) = berth
        .call(
            Method::PUT,
            "/clusters/other",
            Some(other(json!({"inline": kubeconfig}))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let second = format!("{kubeconfig}# rotated credentials\n");
    let (s, b) = berth
        .call(
            Method::PATCH,
            "/clusters/other",
            Some(json!({"spec": {"kubernetes": {"kubeconfig": {"inline": second}}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["spec"]["kubernetes"]["kubeconfig"]["sealed"]["version"], 2,
        "{b}"
    );
    answers.push(("PATCH other".to_owned(), b.to_string()));
    let (s, b) = berth
        .call(
            Method::PATCH,
            "/clusters/other",
            Some(json!({"spec": {"kubernetes": {"kubeconfig": {"path": "/etc/berth/other.yaml"}}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = berth
        .call(Method::PUT, "/clusters/other", Some(other(json!({"sealed": {}}))))
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the path dropped the credential: {b}"
    );
    let (s, b) = berth.call(Method::DELETE, "/clusters/other", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A broken kubeconfig is refused by line, without being quoted, and nothing is stored.
    let broken = kubeconfig.replace(&format!("token: {MARKER}"), &format!("token: \"{MARKER}"));
    let (s, b) = berth
        .call(
            Method::PUT,
            "/clusters/broken",
            Some(
                json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "broken"},
                "spec": {"runtime": "kubernetes", "kubernetes": {"kubeconfig": {"inline": broken}}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("spec.kubernetes.kubeconfig.inline"), "{b}");
    assert!(b.to_string().contains("line "), "{b}");
    answers.push(("PUT broken".to_owned(), b.to_string()));
    let (s, _) = berth.call(Method::GET, "/clusters/broken", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Rotation: a new key first, the old one still there; rotate; then the old key goes
    // and the cluster still deploys.
    std::fs::write(&keys, format!("{KEY_B}\n{KEY_A}\n")).unwrap();
    berth.crash_and_restart().await;
    let (s, r) = berth.call(Method::POST, "/secrets/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["resealed"], 1, "{r}");
    let (_, rotated) = berth.call(Method::GET, "/clusters/kube", None).await;
    let key_b = rotated["spec"]["kubernetes"]["kubeconfig"]["sealed"]["keyId"]
        .as_str()
        .unwrap();
    assert_ne!(key_b, key_a, "{rotated}");
    assert_eq!(key_b, r["keyId"], "{rotated}");
    std::fs::write(&keys, format!("{KEY_B}\n")).unwrap();
    berth.crash_and_restart().await;
    let (s, b) = berth
        .call(Method::PUT, "/applications/web", Some(app("two")))
        .await;
    assert!(s.is_success(), "{b}");
    deploy(&berth).await;

    // Every read, by every role.
    for (who, token) in &tokens {
        for path in [
            "/clusters",
            "/clusters/kube",
            "/environments/qa",
            "/events?limit=1000",
            "/audit?limit=1000",
            "/deployments",
            "/applications/web/status",
        ] {
            let (s, b) = berth.call_as(token, Method::GET, path, None).await;
            if path.starts_with("/clusters") {
                assert_eq!(s, StatusCode::OK, "{who} GET {path}: {b}");
            }
            answers.push((format!("{who} GET {path}"), b.to_string()));
        }
    }
    let mut cli = Vec::new();
    for args in [
        &["get", "cluster", "kube", "-o", "yaml"][..],
        &["get", "clusters"],
        &["describe", "cluster", "kube"],
        &["events"],
    ] {
        let out = berth.cli(args);
        assert!(out.status.success(), "{args:?}");
        cli.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }

    support::assert_nowhere(MARKER, &answers, &cli, &berth.data, &log);
    let logged = std::fs::read_to_string(&log).unwrap();
    // The checks mean something: debug logs were written, and the store holds the
    // credential, sealed.
    assert!(logged.contains("DEBUG"), "debug logs were written");
    let db = std::fs::read(berth.data.join("berth.db")).unwrap();
    let wal = std::fs::read(berth.data.join("berth.db-wal")).unwrap_or_default();
    assert!(contains(&db, "ClusterCredential") || contains(&wal, "ClusterCredential"));
}
