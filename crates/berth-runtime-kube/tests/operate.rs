//! Operating a workload on Kubernetes: its pods as instances, their logs, the run before
//! a crash, a crash-looping release failing at once, and a restart rolling every pod.
//!
//! Against the fake by default; with `BERTH_TEST_K8S=real` against a real control plane
//! where kwok plays the kubelet: pods are scheduled and become Ready, but no container
//! runs, so nothing crashes and the API server cannot reach a kubelet for logs. There the
//! tests check instances, restarts and that a log request fails clearly (naming the
//! cluster) instead of hanging; crash loops and log contents are checked on the fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use berth_core::{
    instance::{ExitCause, InstanceState, LogQuery},
    objects::{KubeconfigSource, KubernetesRuntime},
    ports::{ClusterReport, ClusterRuntime, RuntimeError},
    render::Workload,
};
use berth_kube_fake::{FakeOptions, RolloutFailure};
use berth_runtime_kube::{KubeRuntime, RuntimeOptions};
use common::{Harness, complete, options, real, wait};
use futures::StreamExt;

#[tokio::test]
async fn pods_are_instances_with_logs_and_a_restart_rolls_them() {
    let h = Harness::start("operate").await;
    let rt = h.runtime(options());
    let w = h.workload("web", 1, 2);
    h.until(&rt, std::slice::from_ref(&w), wait(), |r| complete(r, &w))
        .await;

    let instances = rt.instances(&w.key).await.unwrap();
    assert_eq!(instances.len(), 2, "{instances:#?}");
    for i in &instances {
        assert_eq!((i.cluster.as_str(), i.release), ("dc1", 1), "{i:?}");
        assert!(i.ready, "{i:?}");
        assert_eq!(i.state, InstanceState::Running, "{i:?}");
        assert_eq!(i.restarts, 0);
    }
    if real() {
        // The real scheduler placed them and kwok gave them pod IPs.
        assert!(instances.iter().all(|i| i.address.is_some()), "{instances:#?}");
    }

    // Logs: merged and labelled by instance on the fake; on a cluster without a kubelet to
    // ask, a clear error naming the cluster and the pod, within the request timeout.
    let started = tokio::time::Instant::now();
    let read = rt.logs(&w.key, &LogQuery::default()).await;
    let lines: Result<Vec<_>, _> = match read {
        Ok(feed) => feed.collect::<Vec<_>>().await.into_iter().collect(),
        Err(e) => Err(e),
    };
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    if real() {
        let e = lines
            .map(|l| l.len())
            .expect_err("no kubelet serves logs here")
            .to_string();
        assert!(e.contains("dc1") && e.contains("web-"), "{e}");
    } else {
        let lines = lines.unwrap();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        for i in &instances {
            let mine: Vec<&str> = lines
                .iter()
                .filter(|l| l.instance == i.name)
                .map(|l| l.text.as_str())
                .collect();
            assert_eq!(
                mine,
                [format!("{} starting", i.name), format!("{} listening", i.name)]
            );
        }
        let tail = rt
            .logs(
                &w.key,
                &LogQuery {
                    tail: Some(1),
                    instance: Some(instances[0].name.clone()),
                    ..LogQuery::default()
                },
            )
            .await
            .unwrap()
            .collect::<Vec<_>>()
            .await;
        assert_eq!(tail.len(), 1);
        assert_eq!(
            tail[0].as_ref().unwrap().text,
            format!("{} listening", instances[0].name)
        );
        // Followed: the lines arrive, and the feed stays open for pods that start later.
        let mut feed = rt
            .logs(
                &w.key,
                &LogQuery {
                    follow: true,
                    ..LogQuery::default()
                },
            )
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(2), feed.next())
            .await
            .unwrap();
        assert!(first.unwrap().unwrap().text.ends_with("starting"));
    }
    let nobody = rt
        .logs(
            &w.key,
            &LogQuery {
                instance: Some("web-nope".into()),
                ..LogQuery::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(nobody, RuntimeError::NoInstance { .. }), "{nobody}");
    assert!(rt.terminated(&w.key).await.unwrap().is_empty(), "nothing crashed");

    // A restart: same release, a new spec hash in the pod template, so every pod is
    // replaced by a new ReplicaSet, rolling (maxUnavailable 0).
    let mut restarted = w.clone();
    restarted.restarted_at = Some(chrono::Utc::now());
    restarted.spec_hash = "r1-restarted".into();
    h.until(&rt, std::slice::from_ref(&restarted), wait(), |r| {
        complete(r, &restarted)
    })
    .await;
    let after = rt.instances(&w.key).await.unwrap();
    let names = |v: &[berth_core::instance::Instance]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    let ready_new: Vec<_> = after
        .iter()
        .filter(|i| i.ready && !names(&instances).contains(&i.name))
        .collect();
    assert_eq!(
        ready_new.len(),
        2,
        "every pod replaced: before {instances:#?} after {after:#?}"
    );
    assert!(after.iter().all(|i| i.release == 1), "no new release: {after:#?}");
    h.cleanup().await;
}

/// Rolls out release 1 of `web` with `replicas`, then release 2 on an image named `image`
/// whose rollouts the fake fails with `failure`, until the runtime reports it stalled:
/// release 2 and that report.
async fn stalled_release(
    h: &Harness,
    rt: &KubeRuntime,
    replicas: u32,
    image: &str,
    failure: RolloutFailure,
) -> (Workload, ClusterReport) {
    let good = h.workload("web", 1, 1);
    h.until(rt, std::slice::from_ref(&good), wait(), |r| complete(r, &good))
        .await;
    let mut bad = h.workload("web", 2, replicas);
    bad.startup_deadline_seconds = 600;
    bad.image = format!(
        "registry.example.com/{image}@sha256:00000000000000000000000000000000000000000000000000000000000000ee"
    );
    if let Some(fake) = &h.fake {
        fake.fail_rollouts(image, failure);
    }
    let report = h
        .until(rt, std::slice::from_ref(&bad), wait(), |r| r.workloads[0].stalled)
        .await;
    (bad, report)
}

#[tokio::test]
async fn a_crash_looping_release_fails_at_once_with_its_exit_and_last_lines() {
    if real() {
        eprintln!("skipped on a real cluster: kwok runs no container, so none crashes");
        return;
    }
    let h = Harness::start_with("crash", FakeOptions::default()).await;
    let rt = h.runtime(options());
    let started = tokio::time::Instant::now();
    let (bad, report) = stalled_release(&h, &rt, 1, "crashing", RolloutFailure::CrashLoop).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let message = report.workloads[0].message.clone().unwrap_or_default();
    assert!(message.contains("release 2 crash-loops"), "{message}");
    assert!(message.contains("exited with code 1"), "{message}");
    assert!(message.contains("ClassNotFoundException"), "{message}");
    assert!(
        !message.contains("ProgressDeadlineExceeded"),
        "not the deadline: {message}"
    );

    let instances = rt.instances(&bad.key).await.unwrap();
    // (The fake labels the old pods like the new ones; a real cluster keeps release 1's.)
    let looping: Vec<_> = instances.iter().filter(|i| i.restarts > 0).collect();
    assert_eq!(looping.len(), 1, "{instances:#?}");
    assert_eq!(
        (looping[0].state, looping[0].restarts),
        (InstanceState::Exited, 5)
    );
    assert_eq!(looping[0].last_exit.as_ref().unwrap().exit_code, Some(1));

    let dead = rt.terminated(&bad.key).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].exit.cause, ExitCause::Exited);
    assert_eq!(dead[0].exit.exit_code, Some(1));
    assert_eq!(dead[0].release, 2);
    assert!(
        dead[0]
            .lines
            .iter()
            .any(|l| l.text.contains("ClassNotFoundException")),
        "{dead:#?}"
    );

    // Its log now: the container waits to start again, which the API server says.
    let e = rt
        .logs(
            &bad.key,
            &LogQuery {
                instance: Some(looping[0].name.clone()),
                ..LogQuery::default()
            },
        )
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("waiting to start") && e.contains("dc1"), "{e}");
}

#[tokio::test]
async fn logs_of_an_unreachable_cluster_fail_naming_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\ncurrent-context: gone\nusers:\n- name: u\n  user:\n    token: t\n"
    );
    let rt = KubeRuntime::new(
        "dc-gone",
        &KubernetesRuntime {
            kubeconfig: Some(KubeconfigSource::Inline(kubeconfig.into())),
            context: None,
            in_cluster: false,
        },
        RuntimeOptions {
            request_timeout: Duration::from_secs(1),
            retries: 1,
            watch: false,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let key = berth_core::render::WorkloadKey {
        application: "web".into(),
        environment: "qa".into(),
    };
    let started = tokio::time::Instant::now();
    let e = rt
        .logs(
            &key,
            &LogQuery {
                follow: true,
                ..LogQuery::default()
            },
        )
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(e, RuntimeError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("dc-gone"), "{e}");
    let e = rt.instances(&key).await.unwrap_err();
    assert!(e.to_string().contains("dc-gone"), "{e}");
}

#[tokio::test]
async fn a_release_its_liveness_probe_kills_fails_with_the_probe_answer() {
    if real() {
        eprintln!("skipped on a real cluster: kwok runs no container, so no probe fails");
        return;
    }
    let h = Harness::start_with("liveness", FakeOptions::default()).await;
    let rt = h.runtime(options());
    let (bad, report) = stalled_release(&h, &rt, 1, "unhealthy", RolloutFailure::FailsLiveness).await;
    // What the deployment status and its event say.
    let answer = "Liveness probe failed: HTTP probe failed with statuscode: 503";
    let message = report.workloads[0].message.clone().unwrap_or_default();
    assert!(message.contains("release 2 crash-loops"), "{message}");
    assert!(
        message.contains(&format!(
            "the last run failed its health check (last answer: {answer})"
        )),
        "{message}"
    );

    let instances = rt.instances(&bad.key).await.unwrap();
    let looping: Vec<_> = instances.iter().filter(|i| i.restarts > 0).collect();
    assert_eq!(looping.len(), 1, "{instances:#?}");
    let exit = looping[0].last_exit.as_ref().unwrap();
    assert_eq!(
        (exit.cause, exit.exit_code, exit.probe.as_deref()),
        (ExitCause::Unhealthy, Some(137), Some(answer))
    );
    // The instances that did not stop have no exit to explain.
    assert!(
        instances
            .iter()
            .filter(|i| i.restarts == 0)
            .all(|i| i.last_exit.is_none()),
        "{instances:#?}"
    );

    let dead = rt.terminated(&bad.key).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(
        (dead[0].exit.cause, dead[0].exit.probe.as_deref()),
        (ExitCause::Unhealthy, Some(answer))
    );
    assert!(!dead[0].exit.last_lines.is_empty(), "{dead:#?}");
    h.cleanup().await;
}

#[tokio::test]
async fn pods_that_never_become_ready_say_what_their_readiness_probe_answered() {
    if real() {
        eprintln!("skipped on a real cluster: kwok's pods are always ready");
        return;
    }
    let h = Harness::start_with(
        "readiness",
        FakeOptions {
            progress_deadline: Some(Duration::from_millis(300)),
            ..FakeOptions::default()
        },
    )
    .await;
    let rt = h.runtime(options());
    let (_, report) = stalled_release(&h, &rt, 2, "notready", RolloutFailure::NeverReady).await;
    let message = report.workloads[0].message.clone().unwrap_or_default();
    assert!(message.contains("ProgressDeadlineExceeded"), "{message}");
    // The newest answer of each pod, not an earlier one (`connection refused`).
    assert!(
        message.contains(
            "2 pod(s): running but not ready (Readiness probe failed: HTTP probe failed with statuscode: 500)"
        ),
        "{message}"
    );
    assert!(!message.contains("connection refused"), "{message}");
    h.cleanup().await;
}
