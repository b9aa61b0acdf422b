//! End to end, operating applications on the local runtime: exit reasons in events and
//! status with the last log lines, `berth logs` (running, followed, and `--previous` of
//! crashed instances), `berth instances`, and `berth restart` under traffic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

mod support;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Berth, IMAGE, Traffic, wait_until};

const HOST: &str = "web.qa.localhost";

/// busybox httpd that first says which release it is, or (`crash`) a process that
/// prints two lines, one of them on stderr, and exits with code 3.
fn app(release_line: &str, crash: bool) -> Value {
    let script = if crash {
        "echo starting com.example.Main; echo 'java.lang.ClassNotFoundException: com.example.Main' >&2; exit 3"
            .to_owned()
    } else {
        format!("echo '{release_line}'; exec httpd -f -p 8080 -h /www")
    };
    json!({
        "apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {
            "image": IMAGE,
            "command": ["sh", "-c", script],
            "healthCheck": {"path": "/healthz"},
            "replicas": 2,
            "resources": {"memory": "32Mi"},
            "configFiles": [
                {"path": "/www/index.html", "content": release_line},
                {"path": "/www/healthz", "content": "ok"}
            ]
        }
    })
}

async fn put_app(berth: &Berth, doc: Value) {
    let (s, b) = berth.call(Method::PUT, "/applications/web", Some(doc)).await;
    assert!(s.is_success(), "{b}");
}

fn cli(berth: &Berth, args: &[&str]) -> (bool, String, String) {
    let out = berth.cli(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(berth: &Berth, args: &[&str]) -> String {
    let (ok, out, err) = cli(berth, args);
    assert!(ok, "berth {args:?} failed: {out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_explained_with_its_exit_code_and_last_lines_which_stay_readable() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    put_app(&berth, app("release one", false)).await;
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);

    // Nothing crashed yet: --previous says so.
    let (ok, _, err) = cli(&berth, &["logs", "web", "--env", "qa", "--previous"]);
    assert!(!ok);
    assert!(err.contains("no instance of web in qa has ended"), "{err}");

    // The running instances' lines, each labelled by its instance.
    let out = cli_ok(&berth, &["logs", "web", "--env", "qa"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("[berth-") && l.ends_with("] release one")),
        "{out}"
    );
    let instances: Value = serde_json::from_str(&cli_ok(
        &berth,
        &["instances", "web", "--env", "qa", "-o", "json"],
    ))
    .unwrap();
    let items = instances["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{instances}");
    for i in items {
        assert_eq!(
            (i["release"].as_u64(), i["ready"].as_bool()),
            (Some(1), Some(true)),
            "{i}"
        );
        assert_eq!(i["cluster"], berth.cluster.as_str());
        assert_eq!(i["datacenter"], "dc1");
        assert_eq!(i["state"], "Running");
        assert!(i["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let table = cli_ok(&berth, &["instances", "web", "--env", "qa"]);
    assert!(table.starts_with("CLUSTER"), "{table}");

    // A release that crashes: the event and the deployment status say how, with its lines.
    put_app(&berth, app("release two", true)).await;
    let started = Instant::now();
    cli_ok(&berth, &["deploy", "web", "--env", "qa", "--no-wait"]);
    let is_crash = |e: &Value| {
        e["reason"] == "ReplicaReplaced"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("exited with code 3"))
    };
    wait_until(
        Duration::from_secs(10),
        "a ReplicaReplaced event with the exit code",
        || async { berth.events().await.iter().any(is_crash) },
    )
    .await;
    let replaced = berth.events().await.into_iter().find(|e| is_crash(e)).unwrap();
    eprintln!("crash explained {:?} after the deploy", started.elapsed());
    let message = replaced["message"].as_str().unwrap();
    assert!(
        message.contains("ClassNotFoundException: com.example.Main")
            && message.contains("starting com.example.Main"),
        "{message}"
    );
    // It crash-loops: the rollout fails now, not at its 60 s deadline, saying why.
    let failed = berth
        .wait_phase("web-qa-2", "Failed", Duration::from_secs(10))
        .await;
    eprintln!(
        "crash-looping release failed {:?} after the deploy",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let why = failed["status"]["message"].as_str().unwrap();
    assert!(
        why.contains("crash-loops")
            && why.contains("exited with code 3")
            && why.contains("ClassNotFoundException"),
        "{failed}"
    );

    // The crashed containers are gone; Berth kept their lines.
    let out = cli_ok(&berth, &["logs", "web", "--env", "qa", "--previous"]);
    assert!(out.contains("(release 2) exited with code 3"), "{out}");
    assert!(
        out.contains("] java.lang.ClassNotFoundException: com.example.Main"),
        "{out}"
    );
    let json_out = cli_ok(
        &berth,
        &[
            "logs",
            "web",
            "--env",
            "qa",
            "--previous",
            "-o",
            "json",
            "--tail",
            "1",
        ],
    );
    let first: Value = serde_json::from_str(json_out.lines().next().unwrap()).unwrap();
    assert_eq!(first["terminated"]["exit"]["exitCode"], 3, "{json_out}");
    let line: Value = serde_json::from_str(json_out.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        line["text"], "java.lang.ClassNotFoundException: com.example.Main",
        "{json_out}"
    );
    let name = first["terminated"]["instance"].as_str().unwrap();
    let one = cli_ok(&berth, &["logs", "web", "--env", "qa", "--instance", name]);
    assert_eq!(
        one.lines().count(),
        2,
        "the lines of a crashed instance, by its name: {one}"
    );

    // Bad input: a cluster of another environment, an unknown instance, a bad --since.
    let (ok, _, err) = cli(&berth, &["logs", "web", "--env", "qa", "--cluster", "elsewhere"]);
    assert!(
        !ok && err.contains("'elsewhere' is not one of the clusters of environment qa"),
        "{err}"
    );
    let (ok, _, err) = cli(&berth, &["logs", "web", "--env", "qa", "--instance", "nobody"]);
    assert!(!ok && err.contains("there is no instance nobody"), "{err}");
    let (ok, _, err) = cli(&berth, &["logs", "web", "--env", "qa", "--since", "yesterday"]);
    assert!(!ok && err.contains("e.g. 90s, 10m"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_every_instance_under_traffic_and_logs_follow_it() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    put_app(&berth, app("release one", false)).await;
    let (s, b) = berth
        .call(
            Method::POST,
            "/applications/web/restart",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "nothing deployed yet: {b}");
    assert!(
        b["detail"].as_str().unwrap().contains("not deployed in qa"),
        "{b}"
    );
    cli_ok(&berth, &["deploy", "web", "--env", "qa"]);
    let before: Vec<String> = berth.running().into_iter().map(|c| c.0).collect();
    assert_eq!(before.len(), 2);

    // Follow the logs through the restart: the new instances' first lines arrive.
    let opened = Instant::now();
    let mut follower = berth
        .cli_command(&["logs", "web", "--env", "qa", "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(Duration, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((opened.elapsed(), line)).is_err() {
                break;
            }
        }
    });
    let (first_after, first) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    eprintln!("logs -f: first line after {first_after:?} (process start included)");
    assert!(first.ends_with("] release one"), "{first}");

    let traffic = Traffic::start(&berth, HOST);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = cli_ok(&berth, &["restart", "web", "--env", "qa"]);
    assert!(out.contains("restarting web in qa"), "{out}");
    wait_until(Duration::from_secs(30), "two new healthy instances", || async {
        let (_, list) = berth
            .call(Method::GET, "/applications/web/instances?environment=qa", None)
            .await;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let running: Vec<&Value> = items.iter().filter(|i| i["state"] == "Running").collect();
        let now: Vec<String> = berth.running().into_iter().map(|c| c.0).collect();
        running.len() == 2
            && running.iter().all(|i| i["ready"] == true)
            && now.len() == 2
            && now.iter().all(|id| !before.contains(id))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failed, last) = traffic.finish().await;
    assert_eq!(failed, 0, "{failed} of {sent} requests failed during the restart");
    assert_eq!(last, "release one", "the same release serves");

    // The follower saw the new instances start.
    let mut fresh = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fresh.len() < 2 && Instant::now() < deadline {
        if let Ok((_, line)) = rx.recv_timeout(Duration::from_millis(500))
            && line != first
            && line.ends_with("] release one")
        {
            fresh.insert(line.split(']').next().unwrap().to_owned());
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(fresh.len() >= 2, "lines of the new instances: {fresh:?}");

    // The router counted the traffic, by application and environment.
    let metrics = berth
        .http
        .get(format!("{}/metrics", berth.api))
        .bearer_auth(&berth.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served = metrics
        .lines()
        .find(|l| {
            l.starts_with("berth_router_requests_total{")
                && l.contains("application=\"web\"")
                && l.contains("environment=\"qa\"")
                && l.contains("status=\"200\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(served >= f64::from(sent), "{served} < {sent}:\n{metrics}");
    assert!(
        metrics.contains("berth_router_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    // The whole endpoint parses as the Prometheus text format, with the server's own
    // series (reconciler, store) counting real work, and never the token.
    let parsed = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str| {
        parsed
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(ref h) => h.last().map_or(0.0, |b| b.count),
                _ => 0.0,
            })
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    assert!(value("berth_store_commit_duration_seconds") >= 1.0, "{metrics}");
    assert!(value("berth_reconcile_keys_total") >= 1.0, "{metrics}");
    assert!(
        value("berth_reconcile_batch_duration_seconds") >= 1.0,
        "{metrics}"
    );
    value("berth_reconcile_queue_depth");
    assert!(!metrics.contains(&berth.token), "the token is in /metrics");

    // Audited, no new release.
    let d = berth.deployment("web-qa-1").await;
    assert!(d["status"]["restartedAt"].is_string(), "{d}");
    let (_, releases) = berth.call(Method::GET, "/applications/web/releases", None).await;
    assert_eq!(releases["items"].as_array().unwrap().len(), 1, "{releases}");
    let (_, audit) = berth.call(Method::GET, "/audit?limit=1000", None).await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.to_string().contains("RestartRequested")),
        "the restart is in the audit log: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_an_unreachable_cluster_name_it_without_hanging() {
    let berth = Berth::start().await;
    let cluster = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "gone"},
        "spec": {"datacenter": "dc9", "local": {"endpoint": "unix:///nonexistent/docker.sock"}}});
    let (s, b) = berth.call(Method::PUT, "/clusters/gone", Some(cluster)).await;
    assert!(s.is_success(), "{b}");
    let env = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"},
        "spec": {"clusters": [{"cluster": "gone"}]}});
    let (s, b) = berth.call(Method::PUT, "/environments/qa", Some(env)).await;
    assert!(s.is_success(), "{b}");
    put_app(&berth, app("release one", false)).await;
    // Once the reconciler tried it, the cluster's runtime exists, and does not answer.
    wait_until(
        Duration::from_secs(10),
        "the cluster marked unreachable",
        || async {
            let (_, c) = berth.call(Method::GET, "/clusters/gone", None).await;
            c["status"]["phase"] == "Unreachable"
        },
    )
    .await;
    let t = Instant::now();
    let (ok, _, err) = cli(&berth, &["logs", "web", "--env", "qa"]);
    assert!(!ok);
    assert!(err.contains("cluster gone cannot be reached"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "answered in {:?}",
        t.elapsed()
    );
    let (s, b) = berth
        .call(Method::GET, "/applications/web/instances?environment=qa", None)
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("cluster gone"), "{b}");
}
