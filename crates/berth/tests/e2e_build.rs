//! Build once, run anywhere, end to end: the `berth` binary builds the sample Java
//! application from a git repository made in the test, deploys it to qa on real Podman,
//! is refused production until qa verified the digest, promotes the same digest and
//! proves it with provenance. Needs `scripts/setup-runtime.sh up` (Podman API, registry,
//! JRE base image) and a JDK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{process::Command, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};
use support::{Berth, wait_until};

fn sample_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-hello/src");
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(&sample)
            .arg(dir.path().join("src"))
            .status()
            .unwrap()
            .success()
    );
    support::commit_all(dir.path(), "java-hello");
    dir
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_java_app_is_built_once_verified_in_qa_and_promoted_by_digest() {
    let berth = Berth::start().await;
    berth.platform(90).await;
    let production = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "production"},
        "spec": {"clusters": [{"cluster": berth.cluster}], "rollout": {"progressDeadlineSeconds": 90},
                 "policies": {"requireVerifiedIn": ["qa"]}}});
    let (s, b) = berth
        .call(Method::PUT, "/environments/production", Some(production))
        .await;
    assert!(s.is_success(), "{b}");
    let repo = sample_repo();
    let image = format!("127.0.0.1:5000/berth-e2e/java-hello-{}", berth.cluster);
    let app = json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "java-hello"},
        "spec": {"image": image,
            "source": {"git": format!("file://{}", repo.path().display()), "ref": "main",
                "builder": {"java": {"sources": "src/main/java", "resources": "src/main/resources",
                                     "mainClass": "dev.berth.hello.Main"}}},
            "healthCheck": {"path": "/healthz"}, "resources": {"memory": "128Mi"},
            "environments": {"production": {"replicas": 2}}}});
    let (s, b) = berth
        .call(Method::PUT, "/applications/java-hello", Some(app))
        .await;
    assert!(s.is_success(), "{b}");

    let out = berth.cli(&["build", "java-hello"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("javac --release 17") && log.contains("Succeeded: built sha256:"),
        "{log}"
    );
    // Build once: the same commit again is answered by the same build.
    let out = berth.cli(&["build", "java-hello"]);
    assert!(
        out.status.success() && text(&out).contains("build/java-hello-build-1"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("built before"), "{}", text(&out));
    let out = berth.cli(&["builds", "java-hello"]);
    assert_eq!(text(&out).lines().count(), 2, "one build: {}", text(&out));

    // Production takes only what qa verified.
    let out = berth.cli(&["deploy", "java-hello", "--env", "production", "--no-wait"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not deployed successfully in qa"),
        "{}",
        text(&out)
    );
    let out = berth.cli(&["promote", "java-hello", "--from", "qa", "--to", "production"]);
    assert!(
        !out.status.success() && text(&out).contains("never been deployed to 'qa'"),
        "{}",
        text(&out)
    );

    let out = berth.cli(&["deploy", "java-hello", "--env", "qa", "--timeout", "120"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(Duration::from_secs(30), "qa answers", || async {
        berth
            .get_app("java-hello.qa.localhost", "/")
            .await
            .is_ok_and(|(s, body)| s == 200 && body.contains("Environment: <b>qa</b>"))
    })
    .await;

    let out = berth.cli(&[
        "promote",
        "java-hello",
        "--from",
        "qa",
        "--to",
        "production",
        "--timeout",
        "120",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(Duration::from_secs(30), "production answers", || async {
        berth
            .get_app("java-hello.production.localhost", "/")
            .await
            .is_ok_and(|(s, body)| s == 200 && body.contains("Environment: <b>production</b>"))
    })
    .await;

    // The very digest that passed qa runs in production.
    let (_, status) = berth
        .call(Method::GET, "/applications/java-hello/status", None)
        .await;
    let images: Vec<&str> = status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["image"].as_str().unwrap())
        .collect();
    assert_eq!(images.len(), 2);
    let digest = |i: &str| i.rsplit_once('@').unwrap().1.to_owned();
    assert_eq!(digest(images[0]), digest(images[1]), "{images:?}");

    let out = berth.cli(&["provenance", "java-hello", "--env", "production", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    let commit = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo.path())
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(p["commit"], commit.trim());
    assert_eq!(p["build"]["name"], "java-hello-build-1");
    assert_eq!(p["digest"], digest(images[0]));
    let verified: Vec<&str> = p["verifiedIn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["environment"].as_str().unwrap())
        .collect();
    assert_eq!(verified, ["production", "qa"]);
    assert_eq!(p["promotions"][0]["fromEnvironment"], "qa");
    assert_eq!(p["promotions"][0]["promotedBy"], "admin");
}
