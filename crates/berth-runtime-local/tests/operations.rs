//! Operating applications on the local runtime against real Podman: exit reasons with
//! the last log lines, logs merged across instances and followed through a rolling
//! update, the logs of replaced instances kept, and the instance list.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use berth_core::{
    instance::{ExitCause, InstanceState, LogLine, LogQuery},
    ports::{ClusterRuntime, RuntimeError},
};
use berth_runtime_local::{RouteTable, RuntimeOptions};
use common::*;
use futures::StreamExt;
use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(250);

fn options() -> RuntimeOptions {
    RuntimeOptions {
        drain_delay: Duration::from_millis(200),
        stop_timeout: Duration::from_secs(5),
        ..RuntimeOptions::default()
    }
}

/// busybox httpd that first prints a line saying which release and instance it is.
fn chatty(image: &str, cluster: &str, release: u64, replicas: u32) -> berth_core::render::Workload {
    let mut w = workload(image, cluster, release, replicas);
    w.command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!("echo \"hello from release {release} on $(hostname)\"; exec httpd -f -p 8080 -h /www"),
    ]);
    rehash(&mut w);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_replica_is_reported_with_its_exit_code_and_last_lines_which_stay_readable() {
    let image = image().await;
    let cluster = Cluster::new("crash");
    let rt = cluster.runtime(RouteTable::new(), options());
    let mut w = workload(&image, &cluster.name, 1, 1);
    w.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo starting com.example.Main; echo 'Exception in thread main java.lang.ClassNotFoundException: com.example.Main' >&2; exit 3"
            .into(),
    ]);
    rehash(&mut w);
    let desired = std::slice::from_ref(&w);
    let started = Instant::now();
    let mut last_message = None;
    let notices = drive(&rt, desired, Duration::from_secs(10), POLL, |r, seen| {
        last_message.clone_from(&r.workloads[0].message);
        seen.iter().any(|n| n.reason == "ReplicaReplaced")
            && last_message
                .as_deref()
                .is_some_and(|m| m.contains("exited with code 3"))
    })
    .await
    .unwrap();
    eprintln!("crash reported after {:?}", started.elapsed());
    // Crashing again and again, never healthy: the runtime says the rollout cannot
    // complete, so that the deployment fails now rather than at its deadline.
    let mut stalled = None;
    drive(&rt, desired, Duration::from_secs(10), POLL, |r, _| {
        stalled = r.workloads[0]
            .stalled
            .then(|| r.workloads[0].message.clone())
            .flatten();
        stalled.is_some()
    })
    .await
    .unwrap();
    eprintln!("crash loop declared after {:?}", started.elapsed());
    let stalled = stalled.unwrap();
    assert!(
        stalled.starts_with("release 1 crash-loops: ")
            && stalled.contains("exited with code 3")
            && stalled.contains("ClassNotFoundException"),
        "{stalled}"
    );
    let replaced = notices.iter().find(|n| n.reason == "ReplicaReplaced").unwrap();
    assert!(replaced.warning);
    assert!(
        replaced.message.contains("exited with code 3"),
        "{}",
        replaced.message
    );
    assert!(
        replaced
            .message
            .contains("ClassNotFoundException: com.example.Main")
            && replaced.message.contains("starting com.example.Main"),
        "the last lines, stdout and stderr: {}",
        replaced.message
    );
    // The deployment status (the workload's message) says the same.
    let message = last_message.unwrap();
    assert!(message.contains("ClassNotFoundException"), "{message}");

    // The crashed container is gone, but Berth kept its lines.
    let kept = rt.terminated(&w.key).await.unwrap();
    assert!(!kept.is_empty());
    let t = &kept[0];
    assert_eq!((t.exit.cause, t.exit.exit_code), (ExitCause::Exited, Some(3)));
    let texts: Vec<&str> = t.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "starting com.example.Main",
            "Exception in thread main java.lang.ClassNotFoundException: com.example.Main"
        ]
    );
    assert!(
        t.lines
            .iter()
            .all(|l| l.time.is_some() && l.instance == t.instance)
    );
    // And reads them as the logs of that instance, by name.
    let feed = rt
        .logs(
            &w.key,
            &LogQuery {
                instance: Some(t.instance.clone()),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    let lines: Vec<LogLine> = feed.map(Result::unwrap).collect().await;
    assert_eq!(lines.len(), 2);
    // Each replacement counts as a restart of the release's instances.
    let instances = rt.instances(&w.key).await.unwrap();
    assert!(instances.iter().all(|i| i.restarts >= 1), "{instances:?}");
    let missing = rt
        .logs(
            &w.key,
            &LogQuery {
                instance: Some("nobody".into()),
                ..LogQuery::default()
            },
        )
        .await;
    assert!(matches!(missing, Err(RuntimeError::NoInstance { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_merge_instances_and_follow_a_rolling_update() {
    let image = image().await;
    let cluster = Cluster::new("logs");
    let rt = cluster.runtime(RouteTable::new(), options());
    let v1 = chatty(&image, &cluster.name, 1, 2);
    drive(
        &rt,
        std::slice::from_ref(&v1),
        Duration::from_secs(20),
        POLL,
        |r, _| settled(r, 2),
    )
    .await
    .unwrap();

    let instances = rt.instances(&v1.key).await.unwrap();
    assert_eq!(instances.len(), 2);
    assert!(
        instances
            .iter()
            .all(|i| i.ready && i.state == InstanceState::Running && i.release == 1 && i.address.is_some()),
        "{instances:?}"
    );

    // Both instances' lines, each labelled by its instance.
    let feed = rt.logs(&v1.key, &LogQuery::default()).await.unwrap();
    let lines: Vec<LogLine> = feed.map(Result::unwrap).collect().await;
    let mut names: Vec<&str> = lines.iter().map(|l| l.instance.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    want.sort_unstable();
    assert_eq!(names, want, "{lines:?}");
    assert!(lines.iter().all(|l| l.text.starts_with("hello from release 1")));

    // Follow, then roll to release 2: the new instances' lines arrive on the same feed.
    let opened = Instant::now();
    let mut feed = rt
        .logs(
            &v1.key,
            &LogQuery {
                follow: true,
                tail: Some(1),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .unwrap();
    eprintln!("first followed line after {:?}", opened.elapsed());
    assert!(first.unwrap().unwrap().text.starts_with("hello from release 1"));
    let v2 = chatty(&image, &cluster.name, 2, 2);
    let desired = vec![v2.clone()];
    let seen = tokio::spawn(async move {
        let mut from_v2 = std::collections::BTreeSet::new();
        while let Some(line) = feed.next().await {
            let line = line.unwrap();
            if line.text.starts_with("hello from release 2") {
                from_v2.insert(line.instance);
                if from_v2.len() == 2 {
                    return from_v2;
                }
            }
        }
        from_v2
    });
    drive(&rt, &desired, Duration::from_secs(30), POLL, |r, _| settled(r, 2))
        .await
        .unwrap();
    let from_v2 = tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .unwrap()
        .unwrap();
    let now: Vec<String> = rt
        .instances(&v2.key)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.state != InstanceState::Terminating)
        .map(|i| i.name)
        .collect();
    assert_eq!(from_v2.into_iter().collect::<Vec<_>>().len(), 2);
    assert!(now.iter().all(|n| n.contains("-r2-")), "{now:?}");

    // `tail` counts per instance.
    let feed = rt
        .logs(
            &v2.key,
            &LogQuery {
                tail: Some(0),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(feed.count().await, 0);
}
