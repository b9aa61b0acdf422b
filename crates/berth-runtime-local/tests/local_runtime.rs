//! The local runtime against real Podman (its Docker-compatible socket, `DOCKER_HOST`) and
//! the local registry at 127.0.0.1:5000, both started by `scripts/setup-runtime.sh up`.
//! Each test uses a cluster name of its own and removes its containers when it ends.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use berth_core::ports::{ClusterRuntime, RuntimeError};
use berth_runtime_local::{LocalRuntime, RouteTable, RuntimeOptions};
use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptionsBuilder};
use common::*;
use hyper::StatusCode;
use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(250);

fn options() -> RuntimeOptions {
    RuntimeOptions {
        drain_delay: Duration::from_millis(300),
        stop_timeout: Duration::from_secs(5),
        ..RuntimeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_serves_and_survives_a_restart() {
    let image = image().await;
    let cluster = Cluster::new("deploy");
    let table = RouteTable::new();
    let w = workload(&image, &cluster.name, 1, 2);
    let rt = cluster.runtime(
        table.clone(),
        RuntimeOptions {
            // Inspect for drift on every pass: a correct replica must never look drifted.
            drift_check_interval: Duration::ZERO,
            ..options()
        },
    );
    assert!(rt.version().await.unwrap().contains("API 1.41"));

    let started = Instant::now();
    let notices = drive(
        &rt,
        std::slice::from_ref(&w),
        Duration::from_secs(20),
        POLL,
        |r, _| settled(r, 2),
    )
    .await
    .unwrap();
    eprintln!("2 replicas healthy after {:?}", started.elapsed());
    assert_eq!(
        notices.iter().filter(|n| n.reason == "ReplicaStarted").count(),
        2,
        "{notices:#?}"
    );
    assert!(notices.iter().all(|n| !n.warning), "{notices:#?}");

    // The containers carry Berth's labels and names.
    let containers = cluster.containers().await;
    assert_eq!(containers.len(), 2);
    let prefix = format!("/berth-{}-web-qa-r1-", cluster.name);
    for c in &containers {
        let labels = c.labels.as_ref().unwrap();
        assert_eq!(labels["berth.managed-by"], "berth");
        assert_eq!(labels["berth.application"], "web");
        assert_eq!(labels["berth.environment"], "qa");
        assert_eq!(labels["berth.release"], "1");
        assert_eq!(labels["berth.deployment"], "web-qa-1");
        assert_eq!(labels["berth.spec-hash"], w.spec_hash);
        let name = &c.names.as_ref().unwrap()[0];
        assert!(
            name.starts_with(&prefix) && name.len() == prefix.len() + 6,
            "{name}"
        );
        let info = docker()
            .inspect_container(c.id.as_deref().unwrap(), None::<InspectContainerOptions>)
            .await
            .unwrap();
        let host = info.host_config.unwrap();
        assert_eq!(host.init, Some(true));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(500_000_000));
    }

    // Served through the router, by any listed host, case and port aside.
    let routes = table.cluster_routes(&cluster.name);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].backends.len(), 2);
    let (addr, _stop) = router(table.clone()).await;
    let client = http();
    for host in [HOST, "WEB.qa.localhost:8080"] {
        let (status, body) = get(&client, addr, host, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "release 1\n"));
    }
    let (status, body) = get(&client, addr, HOST, "/deep/er/file.txt").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "nested\n"),
        "parent directories were made"
    );
    let (status, _) = get(&client, addr, "nobody.qa.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Steady state: passes change nothing, and each is quick.
    let ids: Vec<_> = containers.iter().map(|c| c.id.clone()).collect();
    for _ in 0..3 {
        let t = Instant::now();
        let report = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "a pass took {:?}",
            t.elapsed()
        );
        assert!(report.notices.is_empty(), "{:#?}", report.notices);
        assert!(settled(&report, 2));
    }

    // A restarted server (a new runtime, no memory) adopts the replicas as they are.
    drop(rt);
    let again = cluster.runtime(table.clone(), options());
    let notices = drive(
        &again,
        std::slice::from_ref(&w),
        Duration::from_secs(10),
        POLL,
        |r, _| settled(r, 2),
    )
    .await
    .unwrap();
    assert!(notices.is_empty(), "{notices:#?}");
    let mut after: Vec<_> = cluster.containers().await.iter().map(|c| c.id.clone()).collect();
    let mut before = ids;
    before.sort();
    after.sort();
    assert_eq!(before, after, "nothing was replaced");
    let (status, _) = get(&client, addr, HOST, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    // Undeploying removes everything; the route goes with it.
    let report = again.reconcile(&[]).await.unwrap();
    assert!(report.workloads.is_empty());
    assert_eq!(
        report
            .notices
            .iter()
            .filter(|n| n.reason == "ReplicaRetired" && n.message.contains("no longer runs here"))
            .count(),
        2,
        "{:#?}",
        report.notices
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.containers().await.is_empty() {
        assert!(Instant::now() < deadline, "containers left after undeploy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(table.cluster_routes(&cluster.name).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_replaced_within_five_seconds() {
    let image = image().await;
    let cluster = Cluster::new("kill");
    let rt = cluster.runtime(RouteTable::new(), options());
    let w = workload(&image, &cluster.name, 1, 2);
    let desired = std::slice::from_ref(&w);
    drive(&rt, desired, Duration::from_secs(20), POLL, |r, _| settled(r, 2))
        .await
        .unwrap();

    let victim = cluster.containers().await[0].clone();
    let name = victim.names.unwrap()[0].trim_start_matches('/').to_owned();
    docker()
        .kill_container(
            victim.id.as_deref().unwrap(),
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let killed = Instant::now();
    // Poll only once a second, as the server does: the events stream must do the rest.
    let notices = drive(
        &rt,
        desired,
        Duration::from_secs(5),
        Duration::from_secs(1),
        |r, seen| {
            settled(r, 2)
                && seen
                    .iter()
                    .any(|n| n.reason == "ReplicaReplaced" && n.message.contains(&name))
        },
    )
    .await
    .unwrap();
    eprintln!("replaced and healthy {:?} after the kill", killed.elapsed());
    assert!(killed.elapsed() < Duration::from_secs(5));
    let replaced = notices.iter().find(|n| n.reason == "ReplicaReplaced").unwrap();
    assert!(
        replaced.warning && replaced.message.contains("exited"),
        "{replaced:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_replica_is_replaced_within_five_seconds() {
    let image = image().await;
    let cluster = Cluster::new("sick");
    let table = RouteTable::new();
    let rt = cluster.runtime(table.clone(), options());
    let w = workload(&image, &cluster.name, 1, 2);
    let desired = std::slice::from_ref(&w);
    drive(&rt, desired, Duration::from_secs(20), POLL, |r, _| settled(r, 2))
        .await
        .unwrap();

    // The health file goes away: checks fail from now on (interval 1 s, threshold 2).
    let victim = cluster.containers().await[0].clone();
    let id = victim.id.unwrap();
    let name = victim.names.unwrap()[0].trim_start_matches('/').to_owned();
    let docker = docker();
    let exec = docker
        .create_exec(
            &id,
            bollard::exec::CreateExecOptions {
                cmd: Some(vec!["rm", "/www/healthz"]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .start_exec(
            &exec.id,
            Some(bollard::exec::StartExecOptions {
                detach: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let broken = Instant::now();
    let notices = drive(
        &rt,
        desired,
        Duration::from_secs(5),
        Duration::from_secs(1),
        |r, seen| {
            settled(r, 2)
                && seen
                    .iter()
                    .any(|n| n.reason == "ReplicaReplaced" && n.message.contains(&name))
        },
    )
    .await
    .unwrap();
    eprintln!("unhealthy replica replaced {:?} after it broke", broken.elapsed());
    let replaced = notices.iter().find(|n| n.reason == "ReplicaReplaced").unwrap();
    assert!(
        replaced.message.contains("failed its health checks") && replaced.message.contains("404"),
        "{replaced:?}"
    );
    let backends = &table.cluster_routes(&cluster.name)[0].backends;
    assert!(
        backends.iter().all(|b| b.container != id),
        "the sick replica takes no traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_removed_or_paused_behind_berths_back_are_replaced() {
    let image = image().await;
    let cluster = Cluster::new("drift");
    let rt = cluster.runtime(
        RouteTable::new(),
        RuntimeOptions {
            drift_check_interval: Duration::ZERO,
            ..options()
        },
    );
    let w = workload(&image, &cluster.name, 1, 2);
    let desired = std::slice::from_ref(&w);
    drive(&rt, desired, Duration::from_secs(20), POLL, |r, _| settled(r, 2))
        .await
        .unwrap();

    let containers = cluster.containers().await;
    // A replica whose memory limit is not what its release says (Podman 4.3 cannot
    // change the limits of a running container through the Docker API, so one is made
    // that way, with Berth's labels).
    let forged = format!("forged-{}", cluster.name);
    let docker = docker();
    let id = docker
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::default()
                    .name(&forged)
                    .build(),
            ),
            bollard::models::ContainerCreateBody {
                image: Some(image.clone()),
                entrypoint: w.command.clone(),
                labels: containers[0].labels.clone(),
                host_config: Some(bollard::models::HostConfig {
                    init: Some(true),
                    memory: Some(32 << 20),
                    nano_cpus: Some(500_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    docker
        .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .unwrap();
    let notices = drive(&rt, desired, Duration::from_secs(10), POLL, |r, seen| {
        settled(r, 2)
            && seen
                .iter()
                .any(|n| n.reason == "DriftCorrected" && n.message.contains(&forged))
    })
    .await
    .unwrap();
    let about = notices
        .iter()
        .find(|n| n.reason == "DriftCorrected" && n.message.contains(&forged))
        .unwrap();
    assert!(
        about.warning && about.message.contains("memory limit of 33554432"),
        "{about:?}"
    );

    let name = |i: usize| {
        containers[i].names.as_ref().unwrap()[0]
            .trim_start_matches('/')
            .to_owned()
    };
    let (removed, paused) = (name(0), name(1));
    docker
        .remove_container(
            containers[0].id.as_deref().unwrap(),
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
    docker
        .pause_container(containers[1].id.as_deref().unwrap())
        .await
        .unwrap();

    let notices = drive(&rt, desired, Duration::from_secs(10), POLL, |r, seen| {
        let corrected = |who: &str| {
            seen.iter()
                .any(|n| n.warning && n.reason == "DriftCorrected" && n.message.contains(who))
        };
        settled(r, 2) && corrected(&removed) && corrected(&paused)
    })
    .await
    .unwrap();
    let about = |who: &str| {
        notices
            .iter()
            .find(|n| n.reason == "DriftCorrected" && n.message.contains(who))
            .unwrap()
            .message
            .clone()
    };
    assert!(about(&removed).contains("removed outside Berth"), "{notices:#?}");
    assert!(about(&paused).contains("paused outside Berth"), "{notices:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names: Vec<String> = cluster
            .containers()
            .await
            .iter()
            .map(|c| c.names.as_ref().unwrap()[0].clone())
            .collect();
        if names.len() == 2 && !names.iter().any(|n| n.contains(&paused) || n.contains(&forged)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused replica was not removed: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_loses_no_request() {
    let image = image().await;
    let cluster = Cluster::new("roll");
    let table = RouteTable::new();
    // The default drain delay and stop timeout: what a server runs with.
    let rt = cluster.runtime(table.clone(), RuntimeOptions::default());
    let v1 = workload(&image, &cluster.name, 1, 2);
    drive(
        &rt,
        std::slice::from_ref(&v1),
        Duration::from_secs(20),
        POLL,
        |r, _| settled(r, 2),
    )
    .await
    .unwrap();
    let (addr, _stop) = router(table.clone()).await;

    // Steady sequential traffic through the router while the update runs.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let client = http();
            let (mut ok, mut failed, mut v2) = (0u32, Vec::new(), 0u32);
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get(&client, addr, HOST, "/").await {
                    Ok((StatusCode::OK, body)) => {
                        ok += 1;
                        v2 += u32::from(body == "release 2\n");
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, v2)
        })
    };

    let v2 = workload(&image, &cluster.name, 2, 2);
    let started = Instant::now();
    let notices = drive(
        &rt,
        std::slice::from_ref(&v2),
        Duration::from_secs(30),
        POLL,
        |r, _| settled(r, 2) && table.cluster_routes(&cluster.name)[0].backends.len() == 2,
    )
    .await
    .unwrap();
    // Wait until the old replicas are gone, with traffic still flowing.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let containers = cluster.containers().await;
        if containers
            .iter()
            .all(|c| c.labels.as_ref().unwrap()["berth.release"] == "2")
        {
            break;
        }
        assert!(Instant::now() < deadline, "release 1 containers linger");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("rolled out in {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, answered_v2) = traffic.await.unwrap();
    eprintln!("{ok} requests during the update, {answered_v2} answered by release 2");
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    assert!(ok > 20 && answered_v2 > 0);
    assert_eq!(
        notices.iter().filter(|n| n.reason == "ReplicaRetired").count(),
        2,
        "{notices:#?}"
    );
    assert!(notices.iter().all(|n| !n.warning), "{notices:#?}");

    let client = http();
    for _ in 0..20 {
        let (status, body) = get(&client, addr, HOST, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "release 2\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_gets_healthy_leaves_the_old_one_serving() {
    let image = image().await;
    let cluster = Cluster::new("broken");
    let table = RouteTable::new();
    let rt = cluster.runtime(table.clone(), options());
    let v1 = workload(&image, &cluster.name, 1, 2);
    drive(
        &rt,
        std::slice::from_ref(&v1),
        Duration::from_secs(20),
        POLL,
        |r, _| settled(r, 2),
    )
    .await
    .unwrap();
    let old: Vec<_> = cluster.containers().await.into_iter().map(|c| c.id).collect();

    let mut v2 = workload(&image, &cluster.name, 2, 2);
    v2.health.path = "/missing".into();
    v2.startup_deadline_seconds = 2;
    rehash(&mut v2);
    let mut last = None;
    let notices = drive(
        &rt,
        std::slice::from_ref(&v2),
        Duration::from_secs(10),
        POLL,
        |r, seen| {
            last = Some(r.workloads[0].clone());
            seen.iter()
                .any(|n| n.reason == "ReplicaReplaced" && n.message.contains("did not become healthy"))
        },
    )
    .await
    .unwrap();
    let replaced = notices.iter().find(|n| n.reason == "ReplicaReplaced").unwrap();
    assert!(
        replaced.warning && replaced.message.contains("404"),
        "{replaced:?}"
    );
    let last = last.unwrap();
    assert_eq!((last.counts.ready, last.counts.old), (0, 2), "{last:?}");

    // The old release still serves, from the same containers.
    let (addr, _stop) = router(table.clone()).await;
    let client = http();
    for _ in 0..5 {
        let (status, body) = get(&client, addr, HOST, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "release 1\n"));
    }
    let report = rt.reconcile(std::slice::from_ref(&v2)).await.unwrap();
    let message = report.workloads[0].message.clone().unwrap_or_default();
    assert!(message.contains("404"), "the report says why: {message}");
    let now: Vec<_> = cluster.containers().await.into_iter().map(|c| c.id).collect();
    for id in &old {
        assert!(now.contains(id), "an old replica was retired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off() {
    let image = image().await;
    let cluster = Cluster::new("crash");
    let rt = cluster.runtime(RouteTable::new(), options());
    let mut w = workload(&image, &cluster.name, 1, 1);
    w.command = Some(vec!["false".into()]);
    w.config_files.clear();
    rehash(&mut w);
    let mut starts = 0;
    let mut backing_off = false;
    let result = drive(
        &rt,
        std::slice::from_ref(&w),
        Duration::from_secs(5),
        Duration::from_millis(100),
        |r, seen| {
            backing_off |= r.workloads[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("keep failing"));
            starts = seen.iter().filter(|n| n.reason == "ReplicaStarted").count();
            false
        },
    )
    .await;
    assert!(result.is_err(), "never settles");
    eprintln!("{starts} starts in 5 s");
    assert!(backing_off, "the report says it backs off");
    assert!((2..=6).contains(&starts), "{starts} starts in 5 s");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_as_such() {
    for endpoint in ["unix:///nonexistent/berth.sock", "tcp://127.0.0.1:1"] {
        let rt = LocalRuntime::new(
            "nowhere",
            Some(endpoint.into()),
            RouteTable::new(),
            RuntimeOptions::default(),
        )
        .unwrap();
        assert!(
            matches!(rt.version().await, Err(RuntimeError::Unreachable { .. })),
            "{endpoint}"
        );
        assert!(
            matches!(rt.reconcile(&[]).await, Err(RuntimeError::Unreachable { .. })),
            "{endpoint}"
        );
    }
    let bad = LocalRuntime::new(
        "nowhere",
        Some("ftp://x".into()),
        RouteTable::new(),
        RuntimeOptions::default(),
    );
    assert!(matches!(bad, Err(RuntimeError::Failed { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_replica_drains_then_gets_its_grace_before_it_is_killed() {
    let image = image().await;
    let cluster = Cluster::new("stop-times");
    let table = RouteTable::new();
    // The runtime's own defaults must not be what is used: the workload says.
    let rt = cluster.runtime(table.clone(), RuntimeOptions::default());
    let mut w = workload(&image, &cluster.name, 1, 1);
    // An application that ignores SIGTERM (its children inherit that): only SIGKILL,
    // after the grace, ends it.
    w.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "trap '' TERM; httpd -f -p 8080 -h /www".into(),
    ]);
    w.drain_seconds = 2;
    w.termination_grace_seconds = 3;
    rehash(&mut w);
    drive(
        &rt,
        std::slice::from_ref(&w),
        Duration::from_secs(20),
        POLL,
        |r, _| settled(r, 1),
    )
    .await
    .unwrap();
    let created = cluster.containers().await;
    assert_eq!(created.len(), 1);
    let labels = created[0].labels.as_ref().unwrap();
    assert_eq!(
        (
            labels["berth.drain-seconds"].as_str(),
            labels["berth.termination-grace-seconds"].as_str()
        ),
        ("2", "3")
    );

    let mut none = w.clone();
    none.replicas = 0;
    let retired = Instant::now();
    drive(
        &rt,
        std::slice::from_ref(&none),
        Duration::from_secs(10),
        POLL,
        |_, n| n.iter().any(|n| n.reason == "ReplicaRetired"),
    )
    .await
    .unwrap();
    assert!(
        table
            .cluster_routes(&cluster.name)
            .iter()
            .all(|r| r.backends.is_empty()),
        "out of traffic at once"
    );
    let mut running_until = retired;
    let gone = loop {
        let containers = cluster.containers().await;
        let running = containers
            .iter()
            .any(|c| c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING));
        if running {
            running_until = Instant::now();
        }
        if containers.is_empty() {
            break retired.elapsed();
        }
        assert!(
            retired.elapsed() < Duration::from_secs(30),
            "never removed: {containers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ran = running_until - retired;
    eprintln!("ran {ran:?} after it was retired, removed after {gone:?}");
    // Running through the drain (then Podman calls it stopping), killed only after the
    // grace that followed SIGTERM.
    assert!(ran >= Duration::from_millis(1800), "drain 2 s, ran {ran:?}");
    assert!(
        gone >= Duration::from_millis(4800) && gone < Duration::from_secs(20),
        "drain 2 s + grace 3 s, removed after {gone:?}"
    );
}
