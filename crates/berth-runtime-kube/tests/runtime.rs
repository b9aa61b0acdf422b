//! The Kubernetes runtime end to end against an API server: the fake by default, a real
//! cluster with `BERTH_TEST_K8S=real` (see `common`). Tests that need the fake's
//! switches (request counts, injected faults) say so and are skipped on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use berth_core::{
    objects::{Autoscaling, KubeconfigSource, KubernetesRuntime},
    ports::{ClusterRuntime, RuntimeError},
};
use berth_kube_fake::{FakeOptions, Fault, RolloutFailure};
use berth_runtime_kube::{KubeRuntime, RuntimeOptions};
use common::{Harness, complete, options, real, wait};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

#[tokio::test]
async fn deploys_and_reports_rollout_progress() {
    let h = Harness::start("deploy").await;
    let rt = h.runtime(options());
    let w = h.workload("web", 1, 2);
    let first = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    assert_eq!(first.workloads.len(), 1);
    assert!(
        !complete(&first, &w),
        "a new rollout is not complete at once: {first:?}"
    );
    let done = h
        .until(&rt, std::slice::from_ref(&w), wait(), |r| complete(r, &w))
        .await;
    assert_eq!(done.workloads[0].message, None);

    let ns = h.namespace();
    let d: Api<Deployment> = Api::namespaced(h.client.clone(), &ns);
    let dep = d.get("web").await.unwrap();
    let labels = dep.metadata.labels.unwrap();
    for (k, v) in [
        ("app.kubernetes.io/managed-by", "berth"),
        ("app.kubernetes.io/name", "web"),
        ("berth.dev/application", "web"),
        ("berth.dev/release", "1"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
    }
    let managers: Vec<String> = dep
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"berth".to_owned()), "{managers:?}");
    for (plural, api) in [
        ("services", "v1"),
        ("ingresses", "networking.k8s.io/v1"),
        ("poddisruptionbudgets", "policy/v1"),
    ] {
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        let ar = kube::core::ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api.into(),
            kind: String::new(),
            plural: plural.into(),
        };
        let api: Api<kube::core::DynamicObject> = Api::namespaced_with(h.client.clone(), &ns, &ar);
        assert!(api.get_opt("web").await.unwrap().is_some(), "{plural}");
    }

    // A new release rolls out.
    let w2 = h.workload("web", 2, 2);
    let r = rt.reconcile(std::slice::from_ref(&w2)).await.unwrap();
    assert!(!complete(&r, &w2));
    h.until(&rt, std::slice::from_ref(&w2), wait(), |r| complete(r, &w2))
        .await;
    h.cleanup().await;
}

#[tokio::test]
async fn a_rollout_that_cannot_progress_is_reported_stalled() {
    let h = Harness::start_with(
        "stall",
        FakeOptions {
            progress_deadline: Some(Duration::from_millis(300)),
            ..FakeOptions::default()
        },
    )
    .await;
    let rt = h.runtime(options());
    let good = h.workload("web", 1, 1);
    h.until(&rt, std::slice::from_ref(&good), wait(), |r| complete(r, &good))
        .await;

    let mut bad = h.workload("web", 2, 1);
    if let Some(fake) = &h.fake {
        fake.fail_rollouts("broken", RolloutFailure::ImagePull);
        bad.image = "registry.example.com/broken@sha256:00000000000000000000000000000000000000000000000000000000000000ff".into();
    } else {
        // kwok's nodes pull nothing, so a missing image would still become Ready: ask for
        // more memory than any node has, which the real scheduler refuses to place.
        bad.memory_bytes = Some(1 << 40);
        bad.startup_deadline_seconds = 10;
    }
    let report = h
        .until(&rt, std::slice::from_ref(&bad), wait(), |r| {
            r.workloads[0].stalled
        })
        .await;
    let message = report.workloads[0].message.clone().unwrap_or_default();
    assert!(message.contains("ProgressDeadlineExceeded"), "{message}");
    if real() {
        assert!(
            message.contains("Unschedulable") && message.contains("Insufficient memory"),
            "{message}"
        );
    } else {
        assert!(
            message.contains("ImagePull") || message.contains("ErrImagePull"),
            "{message}"
        );
    }
    assert_eq!(report.workloads[0].counts.old, 1, "the old replica keeps serving");
    h.cleanup().await;
}

#[tokio::test]
async fn drift_is_reverted_with_a_notice_and_conflicts_are_reported_unless_forced() {
    let h = Harness::start("drift").await;
    let rt = h.runtime(options());
    let mut w = h.workload("web", 1, 2);
    w.config_files = vec![berth_core::objects::ConfigFile {
        path: "/etc/web/app.properties".into(),
        content: "a=1\n".into(),
    }];
    h.until(&rt, std::slice::from_ref(&w), wait(), |r| complete(r, &w))
        .await;
    let ns = h.namespace();

    // Deleted behind Berth's back: re-created, with a notice saying so.
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &ns);
    cms.delete("web-config", &DeleteParams::default()).await.unwrap();
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    let n = r
        .notices
        .iter()
        .find(|n| n.reason == "DriftCorrected")
        .expect("a drift notice");
    assert!(
        n.message.contains("ConfigMap") && n.message.contains("deleted"),
        "{}",
        n.message
    );
    assert!(cms.get_opt("web-config").await.unwrap().is_some());

    // Scaled by someone else: that manager now owns spec.replicas. Without the
    // environment's force policy the conflict is reported and the change left alone.
    let d: Api<Deployment> = Api::namespaced(h.client.clone(), &ns);
    d.patch(
        "web",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    let conflict = r
        .notices
        .iter()
        .find(|n| n.reason == "ApplyConflict")
        .expect("a conflict notice");
    assert!(
        conflict.message.contains(".spec.replicas is 5 instead of 2"),
        "{}",
        conflict.message
    );
    assert!(conflict.message.contains("kubectl-edit"), "{}", conflict.message);
    assert!(
        r.workloads[0]
            .message
            .clone()
            .unwrap_or_default()
            .contains("forceConflicts")
    );
    assert_eq!(d.get("web").await.unwrap().spec.unwrap().replicas, Some(5));
    // The conflict stands: the next pass says so again in the workload's message, but
    // neither repeats the notice nor tries the write again.
    if let Some(fake) = &h.fake {
        fake.reset_requests();
    }
    let again = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    assert!(
        !again.notices.iter().any(|n| n.reason == "ApplyConflict"),
        "{again:?}"
    );
    assert!(
        again.workloads[0]
            .message
            .clone()
            .unwrap_or_default()
            .contains("forceConflicts")
    );
    if let Some(fake) = &h.fake {
        assert_eq!(fake.requests().writes(), 0, "{:?}", fake.requests());
    }

    // With forceConflicts the change is reverted and the notice says what it was.
    w.force_conflicts = true;
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    let n = r
        .notices
        .iter()
        .find(|n| n.reason == "DriftCorrected")
        .expect("a drift notice");
    assert!(
        n.message.contains(".spec.replicas is 5 instead of 2") && n.message.contains("kubectl-edit"),
        "{}",
        n.message
    );
    assert_eq!(d.get("web").await.unwrap().spec.unwrap().replicas, Some(2));
    h.cleanup().await;
}

#[tokio::test]
async fn conflicts_on_a_new_release_are_reported_unless_forced() {
    let h = Harness::start("conflict").await;
    let rt = h.runtime(options());
    let w = h.workload("web", 1, 1);
    h.until(&rt, std::slice::from_ref(&w), wait(), |r| complete(r, &w))
        .await;
    let d: Api<Deployment> = Api::namespaced(h.client.clone(), &h.namespace());
    // Another controller takes the image field with a forced apply.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": common::FAKE_IMAGE.replace("0001", "0002")}]}}}});
    d.patch(
        "web",
        &PatchParams::apply("image-updater").force(),
        &Patch::Apply(&other),
    )
    .await
    .unwrap();
    let mut w2 = h.workload("web", 2, 1);
    w2.image = common::FAKE_IMAGE.replace("0001", "0003");
    if real() {
        w2.image = w.image.clone();
    }
    let r = rt.reconcile(std::slice::from_ref(&w2)).await.unwrap();
    assert!(
        r.notices
            .iter()
            .any(|n| n.reason == "ApplyConflict" && n.message.contains("image-updater")),
        "{r:?}"
    );
    w2.force_conflicts = true;
    let r = rt.reconcile(std::slice::from_ref(&w2)).await.unwrap();
    assert!(!r.notices.iter().any(|n| n.reason == "ApplyConflict"), "{r:?}");
    let image = d
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some(w2.image.as_str()));
    h.cleanup().await;
}

#[tokio::test]
async fn prunes_only_what_berth_owns() {
    let h = Harness::start("prune").await;
    let rt = h.runtime(options());
    let mut web = h.workload("web", 1, 2);
    web.autoscaling = Some(Autoscaling {
        min_replicas: 2,
        max_replicas: 4,
        target_cpu_percent: 60,
    });
    let api = h.workload("api", 1, 1);
    h.until(&rt, &[web.clone(), api.clone()], wait(), |r| {
        complete(r, &web) && complete(r, &api)
    })
    .await;
    let ns = h.namespace();
    // Someone else's ConfigMap in the same namespace, and one that only looks like ours.
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &ns);
    for (name, labels) in [
        ("theirs", json!({"team": "x"})),
        (
            "lookalike",
            json!({"app.kubernetes.io/managed-by": "someone-else", "berth.dev/application": "web"}),
        ),
    ] {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
        .await
        .unwrap();
    }
    // Autoscaling off for web, api gone.
    web.autoscaling = None;
    let r = rt.reconcile(std::slice::from_ref(&web)).await.unwrap();
    let pruned: Vec<&str> = r
        .notices
        .iter()
        .filter(|n| n.reason == "Pruned")
        .map(|n| n.message.as_str())
        .collect();
    assert!(
        pruned
            .iter()
            .any(|m| m.contains("HorizontalPodAutoscaler") && m.contains("/web")),
        "{pruned:?}"
    );
    assert!(
        pruned
            .iter()
            .any(|m| m.contains("Deployment") && m.contains("/api")),
        "{pruned:?}"
    );
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &ns);
    assert!(deployments.get_opt("api").await.unwrap().is_none());
    assert!(deployments.get_opt("web").await.unwrap().is_some());
    assert!(cms.get_opt("theirs").await.unwrap().is_some());
    assert!(cms.get_opt("lookalike").await.unwrap().is_some());
    h.cleanup().await;
}

#[tokio::test]
async fn a_steady_state_pass_makes_no_write_requests() {
    if real() {
        eprintln!("skipped on a real cluster: needs the fake's request counts");
        return;
    }
    let h = Harness::start("steady").await;
    let fake = h.fake.as_ref().unwrap();
    let rt = h.runtime(options());
    let ws: Vec<_> = (0..20)
        .map(|i| h.workload(&format!("app{i}"), 1, 1 + i % 3))
        .collect();
    h.until(&rt, &ws, wait(), |r| ws.iter().all(|w| complete(r, w)))
        .await;
    fake.reset_requests();
    let r = rt.reconcile(&ws).await.unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    let counts = fake.requests();
    assert_eq!(counts.writes(), 0, "{counts:?}");
    // A fresh runtime (a restarted server) compares every field once, still no write.
    let fresh = h.runtime(options());
    fake.reset_requests();
    fresh.reconcile(&ws).await.unwrap();
    assert_eq!(fake.requests().writes(), 0, "{:?}", fake.requests());
}

#[tokio::test]
async fn api_failures_become_clear_errors() {
    if real() {
        eprintln!("skipped on a real cluster: needs the fake's injected faults");
        return;
    }
    let h = Harness::start("faults").await;
    let fake = h.fake.as_ref().unwrap();
    let rt = h.runtime(options());
    let w = h.workload("web", 1, 1);

    // 429 twice: retried inside the pass, which then succeeds.
    fake.inject(Fault::status(429).retry_after(1).times(2));
    rt.reconcile(std::slice::from_ref(&w)).await.unwrap();

    // A lasting 503 fails the pass with a clear message.
    fake.inject(Fault::status(503));
    let err = rt.reconcile(std::slice::from_ref(&w)).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("keeps failing (503)"), "{err}");
    fake.clear_faults();

    // A request that never answers times out.
    fake.inject(Fault::hang(Duration::from_secs(30)));
    let quick = h.runtime(RuntimeOptions {
        request_timeout: Duration::from_millis(200),
        retries: 1,
        ..options()
    });
    let err = quick.version().await.unwrap_err();
    assert!(err.to_string().contains("no answer within"), "{err}");
    fake.clear_faults();

    // Expired credentials.
    let wrong = berth_kube_fake::kubeconfig(&fake.url(), "expired");
    let bad = KubeRuntime::new(
        "dc1",
        &KubernetesRuntime {
            kubeconfig: Some(KubeconfigSource::Inline(wrong.into())),
            context: None,
            in_cluster: false,
        },
        options(),
    )
    .unwrap();
    let err = bad.reconcile(std::slice::from_ref(&w)).await.unwrap_err();
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");

    // A namespace Berth may not touch: that workload says so, others go on.
    fake.forbid_namespace(&h.namespace());
    let w2 = h.workload("web", 2, 1);
    let r = rt.reconcile(std::slice::from_ref(&w2)).await;
    match r {
        Ok(report) => assert!(
            report.workloads[0]
                .message
                .clone()
                .unwrap_or_default()
                .contains("forbidden"),
            "{report:?}"
        ),
        Err(e) => panic!("a forbidden namespace should not fail the cluster: {e}"),
    }
    assert!(rt.version().await.unwrap().contains("v1.33"));
}

#[tokio::test]
async fn bad_kubeconfigs_and_unreachable_servers() {
    let spec = |doc: &str, context: Option<&str>| KubernetesRuntime {
        kubeconfig: Some(KubeconfigSource::Inline(doc.into())),
        context: context.map(str::to_owned),
        in_cluster: false,
    };
    let err = KubeRuntime::new("dc1", &spec("clusters: [not yaml", None), options())
        .err()
        .unwrap();
    assert!(err.to_string().contains("kubeconfig is invalid"), "{err}");
    // A parse error says where, and never quotes the document: its lines are credentials
    // (the parser's own message shows them, and it ends up in status and events).
    let marker = "tok-marker-5b2e9";
    let broken = berth_kube_fake::kubeconfig("http://127.0.0.1:1", marker)
        .replace(&format!("token: {marker}"), &format!("token: \"{marker}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubeconfig");
    std::fs::write(&file, &broken).unwrap();
    let from_file = KubernetesRuntime {
        kubeconfig: Some(KubeconfigSource::Path(file.display().to_string())),
        context: None,
        in_cluster: false,
    };
    for spec in [spec(&broken, None), from_file] {
        let err = KubeRuntime::new("dc1", &spec, options())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("kubeconfig is invalid: not a valid kubeconfig: line "),
            "{err}"
        );
        assert!(
            !err.contains(marker) && !err.contains("token"),
            "quotes the kubeconfig: {err}"
        );
    }
    let doc = berth_kube_fake::kubeconfig("http://127.0.0.1:1", "t");
    let err = KubeRuntime::new("dc1", &spec(&doc, Some("prod")), options())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("no context 'prod' (it has: fake)"),
        "{err}"
    );
    let rt = KubeRuntime::new(
        "dc1",
        &spec(&doc, None),
        RuntimeOptions {
            retries: 0,
            ..options()
        },
    )
    .unwrap();
    let err = rt.version().await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("cannot be reached"), "{err}");
}
