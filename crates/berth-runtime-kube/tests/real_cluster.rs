//! What only a real control plane shows: the Deployment and ReplicaSet controllers' own
//! status, the scheduler and kwok's fake kubelet making pods Ready, kubectl as another field
//! manager, the API server's validation and defaulting of everything Berth renders, the
//! garbage collector, namespace deletion, and RBAC.
//!
//! Run against a cluster from `tools/kubernetes/cluster.sh up NAME`:
//! `BERTH_TEST_K8S=real KUBECONFIG=… BERTH_TEST_IMAGE=… cargo test -p berth-runtime-kube
//! --test real_cluster` (kubectl from `BERTH_TEST_KUBECTL`, else `PATH`). Without
//! `BERTH_TEST_K8S=real` each test says it is skipped; `scripts/test.sh` always sets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::BTreeMap, process::Command, time::Duration};

use berth_core::{
    objects::{Autoscaling, ConfigFile, KubeconfigSource, KubernetesRuntime},
    ports::ClusterRuntime,
    quota::{Limits, NamespaceQuota},
};
use berth_runtime_kube::{KubeRuntime, render::MANAGED_SELECTOR};
use common::{Harness, complete, options, real};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{ConfigMap, Namespace, Pod, Service},
};
use kube::{
    Api,
    api::{ListParams, PostParams},
    core::{ApiResource, DynamicObject},
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

fn skipped() -> bool {
    if real() {
        return false;
    }
    eprintln!("skipped: needs a real cluster (BERTH_TEST_K8S=real, see tools/kubernetes/cluster.sh)");
    true
}

/// Runs kubectl against the test cluster; panics with its output when it fails.
fn kubectl(args: &[&str], env: &[(&str, &str)]) -> String {
    let bin = std::env::var("BERTH_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(&bin)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} (set BERTH_TEST_KUBECTL): {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` once a second until it holds, or panics naming `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < end, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn resource(api_version: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: String::new(),
        plural: plural.into(),
    }
}

/// Every kind Berth renders, as (apiVersion, plural).
const KINDS: [(&str, &str); 9] = [
    ("apps/v1", "deployments"),
    ("v1", "services"),
    ("networking.k8s.io/v1", "ingresses"),
    ("v1", "configmaps"),
    ("v1", "secrets"),
    ("autoscaling/v2", "horizontalpodautoscalers"),
    ("policy/v1", "poddisruptionbudgets"),
    ("v1", "resourcequotas"),
    ("v1", "limitranges"),
];

/// `kind/name → resourceVersion` of everything Berth manages in `ns`.
async fn versions(h: &Harness, ns: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (api_version, plural) in KINDS {
        let api: Api<DynamicObject> =
            Api::namespaced_with(h.client.clone(), ns, &resource(api_version, plural));
        for o in api
            .list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .unwrap()
        {
            out.insert(
                format!("{plural}/{}", o.metadata.name.unwrap_or_default()),
                o.metadata.resource_version.unwrap_or_default(),
            );
        }
    }
    out
}

#[tokio::test]
async fn the_real_controllers_roll_out_to_ready_pods() {
    if skipped() {
        return;
    }
    let h = Harness::start("rollout").await;
    let rt = h.runtime(options());
    let ns = h.namespace();
    let w = h.workload("web", 1, 3);
    h.until(&rt, std::slice::from_ref(&w), WAIT, |r| complete(r, &w))
        .await;

    let d: Api<Deployment> = Api::namespaced(h.client.clone(), &ns);
    let dep = d.get("web").await.unwrap();
    let first_generation = dep.metadata.generation.unwrap();
    let status = dep.status.unwrap();
    assert_eq!(status.observed_generation, Some(first_generation));
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    let progressing = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .expect("a Progressing condition");
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));

    // The scheduler placed the pods on kwok's nodes, and kwok made them Running and Ready.
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &ns);
    let list = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 3, "{list:#?}");
    for p in &list {
        let spec = p.spec.as_ref().unwrap();
        assert!(
            spec.node_name
                .as_deref()
                .is_some_and(|n| n.starts_with("kwok-node-")),
            "{spec:?}"
        );
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(
            st.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
    }

    // A new release: a new generation, observed, and the old ReplicaSet scaled to zero.
    let w2 = h.workload("web", 2, 3);
    h.until(&rt, std::slice::from_ref(&w2), WAIT, |r| complete(r, &w2))
        .await;
    let dep = d.get("web").await.unwrap();
    let generation = dep.metadata.generation.unwrap();
    assert!(generation > first_generation);
    assert_eq!(dep.status.unwrap().observed_generation, Some(generation));
    let rs: Api<ReplicaSet> = Api::namespaced(h.client.clone(), &ns);
    let sets = rs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2, "{sets:#?}");
    let mut replicas: Vec<i32> = sets
        .iter()
        .map(|s| s.spec.as_ref().unwrap().replicas.unwrap_or(0))
        .collect();
    replicas.sort_unstable();
    assert_eq!(replicas, [0, 3]);
    h.cleanup().await;
}

#[tokio::test]
async fn kubectl_behind_berths_back_is_a_conflict_or_drift() {
    if skipped() {
        return;
    }
    let h = Harness::start("kubectl").await;
    let rt = h.runtime(options());
    let ns = h.namespace();
    let mut w = h.workload("web", 1, 2);
    w.config_files = vec![ConfigFile {
        path: "/etc/web/app.properties".into(),
        content: "a=1\n".into(),
    }];
    h.until(&rt, std::slice::from_ref(&w), WAIT, |r| complete(r, &w))
        .await;
    let d: Api<Deployment> = Api::namespaced(h.client.clone(), &ns);

    // kubectl scale goes through the scale subresource as manager "kubectl": a conflict on
    // spec.replicas, reported and left alone without forceConflicts.
    kubectl(&["-n", &ns, "scale", "deployment/web", "--replicas=4"], &[]);
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    let conflict = r
        .notices
        .iter()
        .find(|n| n.reason == "ApplyConflict")
        .unwrap_or_else(|| panic!("a conflict notice: {r:#?}"));
    assert!(
        conflict.message.contains(".spec.replicas"),
        "{}",
        conflict.message
    );
    assert!(conflict.message.contains("kubectl"), "{}", conflict.message);
    assert_eq!(d.get("web").await.unwrap().spec.unwrap().replicas, Some(4));

    // Forced: Berth takes spec.replicas back and the controllers scale down to 2.
    w.force_conflicts = true;
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    assert!(r.notices.iter().any(|n| n.reason == "DriftCorrected"), "{r:#?}");
    assert_eq!(d.get("web").await.unwrap().spec.unwrap().replicas, Some(2));
    h.until(&rt, std::slice::from_ref(&w), WAIT, |r| {
        r.workloads[0].counts.ready == 2 && complete(r, &w)
    })
    .await;

    // kubectl edit of the ConfigMap: reverted, with a notice.
    kubectl(
        &["-n", &ns, "edit", "configmap/web-config"],
        &[("KUBE_EDITOR", "sed -i s/a=1/a=2/")],
    );
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &ns);
    let edited = cms.get("web-config").await.unwrap().data.unwrap_or_default();
    assert!(edited.values().any(|v| v.contains("a=2")), "{edited:?}");
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    assert!(
        r.notices
            .iter()
            .any(|n| n.reason == "DriftCorrected" && n.message.contains("ConfigMap")),
        "{r:#?}"
    );
    let data = cms.get("web-config").await.unwrap().data.unwrap_or_default();
    assert!(data.values().any(|v| v.contains("a=1")), "{data:?}");

    // kubectl delete of the Service: re-created, with a notice.
    kubectl(&["-n", &ns, "delete", "service/web", "--wait=true"], &[]);
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    assert!(
        r.notices
            .iter()
            .any(|n| n.reason == "DriftCorrected" && n.message.contains("deleted")),
        "{r:#?}"
    );
    let services: Api<Service> = Api::namespaced(h.client.clone(), &ns);
    assert!(services.get_opt("web").await.unwrap().is_some());
    h.cleanup().await;
}

/// A workload that renders to every kind: HPA, PDB, Ingress, ConfigMap, Secret and the
/// team quota's ResourceQuota and LimitRange.
fn everything(h: &Harness) -> berth_core::render::Workload {
    let mut w = h.workload("web", 1, 2);
    w.cpu_millis = Some(250);
    w.autoscaling = Some(Autoscaling {
        min_replicas: 2,
        max_replicas: 4,
        target_cpu_percent: 60,
    });
    w.config_files = vec![ConfigFile {
        path: "/etc/web/app.properties".into(),
        content: "a=1\n".into(),
    }];
    w.secret_env.insert(
        "TOKEN".into(),
        berth_core::objects::SecretValue::new("s3cret".into()),
    );
    w.quota = Some(NamespaceQuota {
        namespace: h.namespace(),
        team: "default".into(),
        environment: h.env.clone(),
        limits: Limits {
            cpu_millis: Some(8000),
            memory_bytes: Some(16 << 30),
            replicas: Some(20),
        },
    });
    w
}

#[tokio::test]
async fn everything_berth_renders_is_accepted_and_a_second_pass_changes_nothing() {
    if skipped() {
        return;
    }
    let h = Harness::start("kinds").await;
    let rt = h.runtime(options());
    let ns = h.namespace();
    let w = everything(&h);
    let r = h
        .until(&rt, std::slice::from_ref(&w), WAIT, |r| complete(r, &w))
        .await;
    assert!(!r.notices.iter().any(|n| n.warning), "{r:#?}");
    let before = versions(&h, &ns).await;
    for (_, plural) in KINDS {
        assert!(
            before.keys().any(|k| k.starts_with(&format!("{plural}/"))),
            "{plural} missing: {before:?}"
        );
    }
    // The real quota controller accounts for the two pods.
    let quotas: Api<DynamicObject> =
        Api::namespaced_with(h.client.clone(), &ns, &resource("v1", "resourcequotas"));
    eventually("the quota counts 2 pods", || async {
        let q = quotas
            .list(&ListParams::default().labels(MANAGED_SELECTOR))
            .await
            .unwrap();
        q.items
            .first()
            .is_some_and(|q| q.data["status"]["used"]["pods"] == "2")
    })
    .await;

    // What the API server defaults and the controllers write must not look like drift:
    // two more passes leave every object as it was, and say nothing.
    for _ in 0..2 {
        let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
        assert!(r.notices.is_empty(), "{:#?}", r.notices);
    }
    assert_eq!(versions(&h, &ns).await, before);
    h.cleanup().await;
}

#[tokio::test]
async fn pruned_and_namespace_deleted_objects_are_garbage_collected_and_restored() {
    if skipped() {
        return;
    }
    let h = Harness::start("gc").await;
    let rt = h.runtime(options());
    let ns = h.namespace();
    let web = h.workload("web", 1, 1);
    let api = h.workload("api", 1, 2);
    h.until(&rt, &[web.clone(), api.clone()], WAIT, |r| {
        complete(r, &web) && complete(r, &api)
    })
    .await;

    // Pruning the Deployment leaves its ReplicaSet and pods to the garbage collector.
    let r = rt.reconcile(std::slice::from_ref(&web)).await.unwrap();
    assert!(r.notices.iter().any(|n| n.reason == "Pruned"), "{r:#?}");
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), &ns);
    let sets: Api<ReplicaSet> = Api::namespaced(h.client.clone(), &ns);
    let api_only = ListParams::default().labels("berth.dev/application=api");
    eventually("api's ReplicaSet and pods are collected", || async {
        sets.list(&api_only).await.unwrap().items.is_empty()
            && pods.list(&api_only).await.unwrap().items.is_empty()
    })
    .await;
    assert_eq!(
        pods.list(&ListParams::default().labels("berth.dev/application=web"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Someone deletes the whole namespace: the namespace controller empties it, and the
    // next passes put everything back.
    let namespaces: Api<Namespace> = Api::all(h.client.clone());
    namespaces.delete(&ns, &Default::default()).await.unwrap();
    eventually("the namespace is gone", || async {
        namespaces.get_opt(&ns).await.unwrap().is_none()
    })
    .await;
    h.until(&rt, std::slice::from_ref(&web), WAIT, |r| complete(r, &web))
        .await;
    assert!(namespaces.get_opt(&ns).await.unwrap().is_some());
    h.cleanup().await;
}

#[tokio::test]
async fn a_service_account_bound_to_the_documented_cluster_role_suffices() {
    if skipped() {
        return;
    }
    let h = Harness::start("rbac").await;
    let suffix = h.env.clone();
    // The documented role, under a name of this test's own.
    let mut role: serde_json::Value =
        serde_saphyr::from_str(include_str!("../rbac/clusterrole.yaml")).unwrap();
    let role_name = format!("berth-{suffix}");
    role["metadata"]["name"] = json!(role_name);
    let sa_ns = format!("berth-{suffix}");
    let create = |api_version: &str, plural: &str, namespace: Option<&str>, body: serde_json::Value| {
        let ar = resource(api_version, plural);
        let api: Api<DynamicObject> = match namespace {
            Some(n) => Api::namespaced_with(h.client.clone(), n, &ar),
            None => Api::all_with(h.client.clone(), &ar),
        };
        async move {
            api.create(&PostParams::default(), &serde_json::from_value(body).unwrap())
                .await
                .unwrap();
        }
    };
    create("rbac.authorization.k8s.io/v1", "clusterroles", None, role).await;
    create("v1", "namespaces", None, json!({"metadata": {"name": sa_ns}})).await;
    create(
        "v1",
        "serviceaccounts",
        Some(&sa_ns),
        json!({"metadata": {"name": "berth"}}),
    )
    .await;
    create(
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        None,
        json!({"metadata": {"name": role_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": "berth", "namespace": sa_ns}]}),
    )
    .await;
    let token = kubectl(&["-n", &sa_ns, "create", "token", "berth", "--duration=1h"], &[])
        .trim()
        .to_owned();

    // The admin kubeconfig's server and CA, with the service account's token instead.
    let mut kc: serde_json::Value = serde_saphyr::from_str(&h.kubeconfig).unwrap();
    for user in kc["users"].as_array_mut().unwrap() {
        user["user"] = json!({"token": token});
    }
    let rt = KubeRuntime::new(
        "dc1",
        &KubernetesRuntime {
            kubeconfig: Some(KubeconfigSource::Inline(
                serde_json::to_string(&kc).unwrap().into(),
            )),
            context: None,
            in_cluster: false,
        },
        options(),
    )
    .unwrap();

    // Everything Berth does: create all kinds, watch-free passes, explain, prune.
    let w = everything(&h);
    let mut api = h.workload("api", 1, 1);
    // Without its own CPU limit a pod gets the LimitRange's default, which is the whole
    // quota: it would never fit beside web (see the report of this test's first run).
    api.cpu_millis = Some(250);
    let r = h
        .until(&rt, &[w.clone(), api.clone()], WAIT, |r| {
            complete(r, &w) && complete(r, &api)
        })
        .await;
    assert!(!r.notices.iter().any(|n| n.warning), "{r:#?}");
    let r = rt.reconcile(std::slice::from_ref(&w)).await.unwrap();
    assert!(
        r.notices.iter().any(|n| n.reason == "Pruned") && !r.notices.iter().any(|n| n.warning),
        "{r:#?}"
    );
    // And the role is no wider than it says: it cannot read RBAC itself.
    let config = kube::Config::from_custom_kubeconfig(
        serde_json::from_value(kc).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let as_berth = kube::Client::try_from(config).unwrap();
    let roles: Api<DynamicObject> = Api::all_with(
        as_berth,
        &resource("rbac.authorization.k8s.io/v1", "clusterroles"),
    );
    match roles.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the service account could list ClusterRoles: {other:?}"),
    }

    let _ = kubectl(&["delete", "namespace", &sa_ns, "--wait=false"], &[]);
    let _ = kubectl(&["delete", "clusterrolebinding,clusterrole", &role_name], &[]);
    h.cleanup().await;
}
