//! The fake driven by the real kube-rs client over HTTP: what works here works on the
//! wire the way kube-rs speaks it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use berth_kube_fake::{FakeCluster, FakeOptions, Fault, RolloutFailure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Event, Namespace, Pod},
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

async fn client(fake: &FakeCluster) -> Client {
    let kc = Kubeconfig::from_yaml(&fake.kubeconfig()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    // kube retries 429/503/504 on its own by default; these tests want to see them.
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

async fn start() -> (FakeCluster, Client) {
    let fake = FakeCluster::start(FakeOptions {
        bookmark_interval: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let client = client(&fake).await;
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "qa"}})).unwrap(),
    )
    .await
    .unwrap();
    (fake, client)
}

fn deployment(image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "app.kubernetes.io/managed-by": "berth"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn discovery_version_and_health() {
    let (fake, client) = start().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "33"));
    let ready = client
        .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready, "ok");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
    for g in ["apps", "networking.k8s.io", "autoscaling", "policy"] {
        assert!(groups.iter().any(|x| x == g), "{g} in {groups:?}");
    }
    assert!(fake.requests().other >= 3);
}

#[tokio::test]
async fn crud_selectors_pagination_and_stale_versions() {
    let (fake, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "qa");
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("c{i}"),
            "labels": {"parity": if i % 2 == 0 { "even" } else { "odd" }}}, "data": {"i": i.to_string()}}))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let dup = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c0"}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(dup, kube::Error::Api(ref e) if e.code == 409 && e.reason == "AlreadyExists"),
        "{dup}"
    );
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 3);
    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = cms
        .list(
            &ListParams::default()
                .limit(10)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(rest.metadata.continue_.is_none());

    let mut c0 = cms.get("c0").await.unwrap();
    let stale = c0.clone();
    c0.data = Some([("i".to_owned(), "changed".to_owned())].into());
    cms.replace("c0", &PostParams::default(), &c0).await.unwrap();
    let err = cms
        .replace("c0", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 409), "{err}");

    cms.patch(
        "c1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"j": "x"}})),
    )
    .await
    .unwrap();
    assert_eq!(cms.get("c1").await.unwrap().data.unwrap()["j"], "x");
    cms.delete("c1", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("c1").await.unwrap().is_none());
    assert_eq!(fake.requests().create, 7, "{:?}", fake.requests());
}

#[tokio::test]
async fn server_side_apply_reports_conflicts_between_managers() {
    let (_fake, client) = start().await;
    let api: Api<Deployment> = Api::namespaced(client, "qa");
    let berth = PatchParams::apply("berth");
    api.patch("web", &berth, &Patch::Apply(deployment("img:1", 2)))
        .await
        .unwrap();
    // Another manager adds a sidecar: list-map merge by name keeps berth's container.
    let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "side:1"}]}}}});
    let merged = api
        .patch("web", &PatchParams::apply("mesh"), &Patch::Apply(&sidecar))
        .await
        .unwrap();
    let names: Vec<String> = merged
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["web", "sidecar"]);
    // Another manager sets replicas; berth then wants another value.
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 7}});
    let err = api
        .patch("web", &PatchParams::apply("hpa"), &Patch::Apply(&scale))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409 && e.message.contains("\"berth\"")),
        "{err}"
    );
    api.patch("web", &PatchParams::apply("hpa").force(), &Patch::Apply(&scale))
        .await
        .unwrap();
    let err = api
        .patch("web", &berth, &Patch::Apply(deployment("img:2", 2)))
        .await
        .unwrap_err();
    let kube::Error::Api(e) = err else { panic!("{err}") };
    assert_eq!(e.code, 409);
    assert!(
        e.message.contains("conflict with \"hpa\"") && e.message.contains(".spec.replicas"),
        "{}",
        e.message
    );
    let d = api
        .patch(
            "web",
            &berth.clone().force(),
            &Patch::Apply(deployment("img:2", 2)),
        )
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    let managers: Vec<String> = d
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"berth".to_owned()) && managers.contains(&"mesh".to_owned()),
        "{managers:?}"
    );
}

#[tokio::test]
async fn watch_resumes_from_versions_with_bookmarks_and_expires_old_ones() {
    let (fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "qa");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
    )
    .await
    .unwrap();
    let mut saw_added = false;
    let mut saw_bookmark = false;
    while !(saw_added && saw_bookmark) {
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
        {
            Some(Ok(WatchEvent::Added(cm))) => {
                assert_eq!(cm.metadata.name.as_deref(), Some("a"));
                saw_added = true;
            }
            Some(Ok(WatchEvent::Bookmark(_))) => saw_bookmark = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(stream);
    // The runtime watcher (list + watch, relist on expiry) sees changes too.
    let events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .try_filter(|cm| std::future::ready(cm.metadata.name.as_deref() == Some("b")));
    let mut events = Box::pin(events);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap(),
    )
    .await
    .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(b.is_some());
    assert!(fake.requests().watch >= 1);

    // A resource version older than the history kept answers 410 Gone.
    let small = FakeCluster::start(FakeOptions {
        history: 2,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let c = client_for(&small).await;
    let ns: Api<Namespace> = Api::all(c);
    for i in 0..5 {
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut s = ns.watch(&WatchParams::default(), "2").await.unwrap().boxed();
    match s.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

async fn client_for(fake: &FakeCluster) -> Client {
    client(fake).await
}

/// A fake whose rollouts finish in 50 ms (or fail at `progress_deadline`), with
/// Deployment `web` of `image` applied to namespace `qa` after `failure` (a pattern and
/// what rollouts matching it do) was injected.
async fn rolling(
    progress_deadline: Option<Duration>,
    failure: Option<(&str, RolloutFailure)>,
    image: &str,
    replicas: i32,
) -> (FakeCluster, Client) {
    let fake = FakeCluster::start(FakeOptions {
        ready_after: Duration::from_millis(50),
        progress_deadline,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    fake.create("namespaces", "", json!({"metadata": {"name": "qa"}}), "test")
        .unwrap();
    let client = client(&fake).await;
    if let Some((pattern, failure)) = failure {
        fake.fail_rollouts(pattern, failure);
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), "qa");
    api.patch(
        "web",
        &PatchParams::apply("berth"),
        &Patch::Apply(deployment(image, replicas)),
    )
    .await
    .unwrap();
    (fake, client)
}

#[tokio::test]
async fn rollouts_progress_and_injected_failures_stall() {
    let (fake, client) = rolling(Some(Duration::from_millis(300)), None, "img:1", 3).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "qa");
    let done = wait(&api, |d| {
        let s = d.status.clone().unwrap_or_default();
        s.available_replicas == Some(3) && s.observed_generation == Some(1)
    })
    .await;
    let progressing = done
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));

    fake.fail_rollouts("broken", RolloutFailure::ImagePull);
    api.patch(
        "web",
        &PatchParams::apply("berth"),
        &Patch::Apply(deployment("img:broken", 3)),
    )
    .await
    .unwrap();
    let stalled = wait(&api, |d| {
        d.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            })
    })
    .await;
    let s = stalled.status.unwrap();
    assert_eq!(
        (s.updated_replicas, s.available_replicas),
        (Some(3), Some(3)),
        "old pods keep serving"
    );
    let pods: Api<Pod> = Api::namespaced(client, "qa");
    let pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    let reasons: Vec<String> = pods
        .items
        .iter()
        .filter_map(|p| {
            p.status.as_ref()?.container_statuses.as_ref()?[0]
                .state
                .as_ref()?
                .waiting
                .as_ref()?
                .reason
                .clone()
        })
        .collect();
    assert_eq!(reasons, ["ImagePullBackOff"; 3]);
}

/// The kubelet's `Unhealthy` events about pods whose probes fail, in the real wire
/// format, selected by the fields `kubectl describe pod` selects them by.
#[tokio::test]
async fn pods_failing_probes_have_unhealthy_events_selected_by_fields() {
    let never_ready = Some(("notready", RolloutFailure::NeverReady));
    let (_fake, client) = rolling(None, never_ready, "img:notready", 2).await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "qa");
    wait(&api, |d| {
        d.status.as_ref().is_some_and(|s| s.updated_replicas == Some(2))
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "qa");
    let pods = pods.list(&ListParams::default().labels("app=web")).await.unwrap();
    let pod = pods.items[0].metadata.name.clone().unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "qa");
    let mine = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod},reason=Unhealthy")))
        .await
        .unwrap();
    assert_eq!(mine.items.len(), 2, "{:#?}", mine.items);
    for e in &mine.items {
        assert_eq!(e.involved_object.name.as_deref(), Some(pod.as_str()));
        assert_eq!(e.reason.as_deref(), Some("Unhealthy"));
        assert!(
            e.message
                .as_deref()
                .unwrap_or_default()
                .starts_with("Readiness probe failed: "),
            "{e:?}"
        );
        assert!(e.last_timestamp.is_some(), "{e:?}");
    }
    let all = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 4, "two per pod: {:#?}", all.items);
    let other = events
        .list(&ListParams::default().fields("reason=Killing"))
        .await
        .unwrap();
    assert!(other.items.is_empty());
    // Fields the API server does not select events by are refused, as it refuses them.
    let e = events
        .list(&ListParams::default().fields("message=x"))
        .await
        .unwrap_err();
    assert!(matches!(e, kube::Error::Api(ref s) if s.code == 400), "{e:?}");
    // Pods are not selected by an event's fields.
    let pods: Api<Pod> = Api::namespaced(client, "qa");
    assert!(
        pods.list(&ListParams::default().fields("reason=Unhealthy"))
            .await
            .is_err()
    );
}

async fn wait(api: &Api<Deployment>, ok: impl Fn(&Deployment) -> bool) -> Deployment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let d = api.get("web").await.unwrap();
        if ok(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached: {:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn faults_and_credentials() {
    let (fake, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "qa");
    fake.inject(Fault::status(429).retry_after(1).times(1));
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 429), "{err}");
    api.list(&ListParams::default()).await.unwrap();
    fake.forbid_namespace("qa");
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 403), "{err}");

    let wrong = berth_kube_fake::kubeconfig(&fake.url(), "expired");
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&wrong).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(Client::try_from(config).unwrap(), "qa");
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 401), "{err}");
}

#[tokio::test]
async fn write_log_keeps_writes_in_arrival_order_only_when_asked() {
    let quiet = FakeCluster::start(FakeOptions::default()).await.unwrap();
    let ns: Api<Namespace> = Api::all(client(&quiet).await);
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "qa"}})).unwrap(),
    )
    .await
    .unwrap();
    assert!(quiet.take_writes().is_empty(), "no log unless asked for");

    let fake = FakeCluster::start(FakeOptions {
        log_writes: true,
        ..FakeOptions::default()
    })
    .await
    .unwrap();
    let client = client(&fake).await;
    let before = std::time::SystemTime::now();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "qa"}})).unwrap(),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, "qa");
    deployments.get_opt("web").await.unwrap();
    deployments
        .patch(
            "web",
            &PatchParams::apply("berth"),
            &Patch::Apply(deployment("registry.example.com/web:1", 1)),
        )
        .await
        .unwrap();
    let writes = fake.take_writes();
    let seen: Vec<(&str, &str)> = writes
        .iter()
        .map(|w| (w.method.as_str(), w.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", "/api/v1/namespaces"),
            ("PATCH", "/apis/apps/v1/namespaces/qa/deployments/web"),
        ],
        "reads are not logged"
    );
    assert!(writes[0].at >= before && writes[0].at <= writes[1].at);
    assert!(fake.take_writes().is_empty(), "taking empties the log");
}

/// As on kube-apiserver: a list names its type once, its items not at all; a get, a watch
/// event and a write's answer carry `apiVersion` and `kind`.
#[tokio::test]
async fn list_items_carry_no_type_fields_but_single_objects_do() {
    let (_fake, client) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "qa");
    deployments
        .create(&PostParams::default(), &deployment("web:1", 1))
        .await
        .unwrap();
    let text = |path: &str| {
        let client = client.clone();
        let path = path.to_owned();
        async move {
            let raw = client
                .request_text(http::Request::get(path).body(Vec::new()).unwrap())
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&raw).unwrap()
        }
    };
    for path in [
        "/apis/apps/v1/namespaces/qa/deployments",
        "/apis/apps/v1/deployments?limit=1",
    ] {
        let list = text(path).await;
        assert_eq!(
            (list["apiVersion"].as_str(), list["kind"].as_str()),
            (Some("apps/v1"), Some("DeploymentList")),
            "{list}"
        );
        let item = &list["items"][0];
        assert_eq!(item["metadata"]["name"], "web", "{list}");
        assert!(
            item.get("apiVersion").is_none() && item.get("kind").is_none(),
            "{item}"
        );
    }
    let pods = text("/api/v1/namespaces/qa/pods").await;
    for pod in pods["items"].as_array().unwrap() {
        assert!(pod.get("kind").is_none(), "{pod}");
    }
    let one = text("/apis/apps/v1/namespaces/qa/deployments/web").await;
    assert_eq!(
        (one["apiVersion"].as_str(), one["kind"].as_str()),
        (Some("apps/v1"), Some("Deployment"))
    );
}
