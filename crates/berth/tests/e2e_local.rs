//! End to end on the local runtime: the real `berth` binary (server and CLI), real
//! Podman containers, the real registry, HTTP through the built-in router.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use support::{Berth, Traffic, wait_until, web_app};

const HOST: &str = "web.qa.localhost";

async fn put_app(berth: &Berth, doc: serde_json::Value) {
    let (s, b) = berth.call(Method::PUT, "/applications/web", Some(doc)).await;
    assert!(s.is_success(), "{b}");
}

fn cli_ok(berth: &Berth, args: &[&str]) -> String {
    let out = berth.cli(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "berth {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_scale_roll_under_traffic_and_roll_back() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    put_app(&berth, web_app("v1", 2, "/healthz")).await;

    let out = cli_ok(&berth, &["deploy", "web", "--env", "qa"]);
    assert!(out.contains("Succeeded"), "{out}");
    assert_eq!(berth.get_app(HOST, "/").await.unwrap(), (200, "v1".to_owned()));
    assert_eq!(berth.running().len(), 2);

    // Scale to 3: a new release with the same image, same replica shape: nothing replaced.
    let before: Vec<String> = berth.running().into_iter().map(|c| c.0).collect();
    put_app(&berth, web_app("v1", 3, "/healthz")).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);
    let after: Vec<String> = berth.running().into_iter().map(|c| c.0).collect();
    assert_eq!(after.len(), 3);
    assert!(
        before.iter().all(|id| after.contains(id)),
        "scaling kept the running replicas"
    );

    // Rolling update under steady traffic: not one failed request.
    let traffic = Traffic::start(&berth, HOST);
    put_app(&berth, web_app("v2", 3, "/healthz")).await;
    let out = cli_ok(&berth, &["deploy", "web", "--env", "qa"]);
    assert!(out.contains("ready"), "the CLI shows progress: {out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed, last) = traffic.finish().await;
    assert!(sent > 50, "traffic flowed ({sent} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rolling update"
    );
    assert_eq!(last, "v2");
    // The replaced replicas leave traffic at once and stop after their drain delay.
    wait_until(
        Duration::from_secs(15),
        "only the 3 replicas of release 3",
        || async {
            let running = berth.running();
            running.len() == 3 && running.iter().all(|c| c.1 == "3")
        },
    )
    .await;

    // Roll back (to release 2, the newest other that succeeded), also under traffic.
    let traffic = Traffic::start(&berth, HOST);
    let out = cli_ok(&berth, &["rollback", "web", "--env", "qa"]);
    assert!(out.contains("Succeeded"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed, last) = traffic.finish().await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rollback"
    );
    assert_eq!(last, "v1");

    let status = cli_ok(&berth, &["status", "web"]);
    assert!(
        status.contains("qa") && status.contains(&berth.cluster),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_gets_healthy_fails_and_the_previous_keeps_serving() {
    let berth = Berth::start().await;
    berth.platform(10).await;
    put_app(&berth, web_app("good", 2, "/healthz")).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);

    let traffic = Traffic::start(&berth, HOST);
    put_app(&berth, web_app("bad", 2, "/missing")).await;
    let out = berth.cli(&["deploy", "web", "--env", "qa"]);
    assert!(
        !out.status.success(),
        "the CLI exits non-zero when the rollout fails"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Failed"), "{text}");

    let failed = berth.deployment("web-qa-2").await;
    assert_eq!(failed["status"]["phase"], "Failed");
    assert!(
        failed["status"]["message"]
            .as_str()
            .unwrap()
            .contains("did not become healthy"),
        "{failed}"
    );
    // Berth rolls back by itself, and the good release never stopped serving.
    let back = berth
        .wait_phase("web-qa-3", "Succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(
        back["spec"]["cause"],
        json!({"type": "AutoRollback", "failedDeployment": "web-qa-2"})
    );
    wait_until(Duration::from_secs(15), "only release 1 runs", || async {
        berth.running().iter().all(|c| c.1 == "1") && berth.running().len() == 2
    })
    .await;
    let (sent, failed, last) = traffic.finish().await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed while the bad release was tried"
    );
    assert_eq!(last, "good");
    let reasons: Vec<String> = berth
        .events()
        .await
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        reasons.contains(&"RolloutFailed".to_owned()) && reasons.contains(&"AutoRollback".to_owned()),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_removed_replicas_are_replaced() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    put_app(&berth, web_app("v1", 2, "/healthz")).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);

    let victim = berth.running()[0].0.clone();
    let started = std::time::Instant::now();
    std::process::Command::new("podman")
        .args(["kill", &victim])
        .output()
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "a replacement for the killed replica",
        || async {
            let running = berth.running();
            running.len() == 2 && !running.iter().any(|c| c.0 == victim)
        },
    )
    .await;
    eprintln!("killed replica replaced in {:?}", started.elapsed());
    wait_until(Duration::from_secs(5), "the replacement serves", || async {
        berth.get_app(HOST, "/").await.is_ok_and(|r| r.0 == 200)
    })
    .await;

    // Removed behind Berth's back: put back, and an event says so.
    let victim = berth.running()[0].0.clone();
    std::process::Command::new("podman")
        .args(["rm", "-f", "-t", "0", &victim])
        .output()
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "a replacement for the removed replica",
        || async {
            let running = berth.running();
            running.len() == 2 && !running.iter().any(|c| c.0 == victim)
        },
    )
    .await;
    wait_until(Duration::from_secs(5), "a DriftCorrected event", || async {
        berth
            .events()
            .await
            .iter()
            .any(|e| e["reason"] == "DriftCorrected" && e["application"] == "web")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_then_restart_converges() {
    let mut berth = Berth::start().await;
    berth.platform(60).await;
    put_app(&berth, web_app("v1", 2, "/healthz")).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);

    put_app(&berth, web_app("v2", 2, "/healthz")).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa", "--no-wait"]);
    wait_until(Duration::from_secs(10), "a replica of release 2", || async {
        berth.containers().iter().any(|c| c.1 == "2")
    })
    .await;
    berth.crash_and_restart().await;

    berth
        .wait_phase("web-qa-2", "Succeeded", Duration::from_secs(60))
        .await;
    wait_until(
        Duration::from_secs(15),
        "exactly the two replicas of release 2",
        || async {
            let all = berth.containers();
            all.len() == 2 && all.iter().all(|c| c.1 == "2" && c.2 == "running")
        },
    )
    .await;
    assert_eq!(berth.get_app(HOST, "/").await.unwrap(), (200, "v2".to_owned()));
    // Nothing lost or duplicated in the store.
    let (_, releases) = berth.call(Method::GET, "/applications/web/releases", None).await;
    assert_eq!(releases["items"].as_array().unwrap().len(), 2);
    let (_, deployments) = berth
        .call(Method::GET, "/deployments?application=web", None)
        .await;
    assert_eq!(deployments["items"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_runtime_shows_in_the_cluster_status() {
    let berth = Berth::start().await;
    let doc = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "gone"},
        "spec": {"local": {"endpoint": "unix:///nonexistent/docker.sock"}}});
    berth.call(Method::PUT, "/clusters/gone", Some(doc)).await;
    wait_until(
        Duration::from_secs(10),
        "the cluster marked unreachable",
        || async {
            let (_, c) = berth.call(Method::GET, "/clusters/gone", None).await;
            c["status"]["phase"] == "Unreachable"
                && c["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("next in"))
        },
    )
    .await;
    assert!(
        berth
            .events()
            .await
            .iter()
            .any(|e| e["reason"] == "ClusterUnreachable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_apply_reports_bad_yaml_with_its_location_and_applies_nothing() {
    let berth = Berth::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: berth.dev/v1\nkind: Cluster\nmetadata:\n  name: fine\nspec: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: berth.dev/v1\nkind: Environment\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let out = berth.cli(&["apply", "-f", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b.yaml:4:"),
        "names the file, line and column: {err}"
    );
    assert_eq!(
        berth.call(Method::GET, "/clusters/fine", None).await.0,
        reqwest::StatusCode::NOT_FOUND
    );

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let out = cli_ok(&berth, &["apply", "-f", dir.path().to_str().unwrap()]);
    assert!(out.contains("created"), "{out}");
    let out = cli_ok(&berth, &["apply", "-f", dir.path().to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_application_stops_its_replicas_and_a_new_one_of_that_name_starts_clean() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    put_app(&berth, web_app("v1", 2, "/healthz")).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);
    assert_eq!(berth.running().len(), 2);

    cli_ok(&berth, &["delete", "application", "web"]);
    wait_until(Duration::from_secs(30), "the replicas stopped", || async {
        berth.running().is_empty()
    })
    .await;
    // What ran stays on record.
    let d = berth.deployment("web-qa-1").await;
    assert_eq!(d["status"]["phase"], "Succeeded", "{d}");
    assert!(d["status"]["retiredAt"].is_string(), "{d}");

    // A re-created application runs only what it deploys itself: release 2, one replica,
    // never the retired deployment's two replicas of release 1.
    put_app(&berth, web_app("v2", 1, "/healthz")).await;
    let out = cli_ok(&berth, &["deploy", "web", "--env", "qa"]);
    assert!(out.contains("Succeeded"), "{out}");
    assert_eq!(berth.get_app(HOST, "/").await.unwrap(), (200, "v2".to_owned()));
    let running = berth.running();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].1, "2");
}
