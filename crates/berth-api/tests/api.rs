//! The REST API over real HTTP on loopback, with a real SQLite store and the real
//! registry resolver (the local registry from `scripts/setup-runtime.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

use std::sync::Arc;

use berth_api::{ApiState, auth};
use berth_build::{BuildOptions, BuildService, RegistryOptions};
use berth_registry::RegistryResolver;
use berth_store::SqliteStore;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

struct Api {
    base: String,
    token: String,
    http: Client,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
        let token = auth::ensure_bootstrap_token(store.as_ref())
            .await
            .unwrap()
            .unwrap();
        let builds = Arc::new(BuildService::new(
            store.clone(),
            BuildOptions {
                work_dir: dir.path().join("builds"),
                cache_dir: dir.path().join("build-cache"),
                registry: RegistryOptions {
                    insecure: vec!["127.0.0.1:5000".into()],
                    ..RegistryOptions::default()
                },
                docker: None,
                concurrency: 1,
            },
        ));
        let state = ApiState {
            store,
            resolver: Arc::new(RegistryResolver::new(vec!["127.0.0.1:5000".into()])),
            changed: Arc::new(Notify::new()),
            domain: "localhost".into(),
            router_port: Some(8080),
            builds,
            clock: Arc::new(berth_core::ports::SystemClock),
            clusters: Arc::new(berth_core::ports::NoClusterAccess),
            metrics: Default::default(),
            syncs: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, berth_api::router(state)).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            token,
            http: Client::new(),
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.base);
        berth_test_support::http::call(&self.http, &url, &self.token, method, body).await
    }

    async fn platform(&self) {
        let cluster = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "local"}, "spec": {"datacenter": "dc1"}});
        assert_eq!(
            self.call(Method::PUT, "/clusters/local", Some(cluster)).await.0,
            StatusCode::CREATED
        );
        for env in ["qa", "production"] {
            let doc = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": env}, "spec": {"clusters": [{"cluster": "local"}]}});
            assert_eq!(
                self.call(Method::PUT, &format!("/environments/{env}"), Some(doc))
                    .await
                    .0,
                StatusCode::CREATED
            );
        }
    }
}

fn app(image: &str) -> Value {
    json!({
        "apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"image": image, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"], "healthCheck": {"path": "/healthz"}}
    })
}

fn paths(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_endpoint_needs_a_valid_token() {
    let api = Api::start().await;
    let res = api
        .http
        .get(format!("{}/api/v1/applications", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = api
        .http
        .get(format!("{}/api/v1/applications", api.base))
        .bearer_auth("berth_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = api
        .http
        .get(format!("{}/api/v1/openapi.json", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Only the liveness and readiness probes are open.
    for probe in ["healthz", "readyz"] {
        let res = api
            .http
            .get(format!("{}/{probe}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "/{probe}");
    }
    let (status, doc) = api.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    assert_eq!(
        api.call(Method::GET, "/applications", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn create_get_replace_patch_delete_with_optimistic_concurrency() {
    let api = Api::start().await;
    let (status, created) = api
        .call(
            Method::POST,
            "/applications",
            Some(app("127.0.0.1:5000/busybox:latest")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        api.call(Method::POST, "/applications", Some(app("x/y:1")))
            .await
            .0,
        StatusCode::CONFLICT
    );

    // Same document again: nothing changes, not even the version.
    let (status, same) = api
        .call(
            Method::PUT,
            "/applications/web",
            Some(app("127.0.0.1:5000/busybox:latest")),
        )
        .await;
    assert_eq!(
        (status, same["metadata"]["resourceVersion"].as_str()),
        (StatusCode::OK, Some(rv.as_str()))
    );

    let mut changed = app("127.0.0.1:5000/busybox:latest");
    changed["spec"]["replicas"] = json!(3);
    changed["metadata"]["resourceVersion"] = json!(rv);
    let (status, replaced) = api
        .call(Method::PUT, "/applications/web", Some(changed.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["spec"]["replicas"], 3);
    assert_ne!(
        replaced["metadata"]["resourceVersion"].as_str(),
        Some(rv.as_str())
    );

    // The same stale version again: 409, and nothing is written.
    changed["spec"]["replicas"] = json!(5);
    let (status, problem) = api.call(Method::PUT, "/applications/web", Some(changed)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("resourceVersion"));
    assert_eq!(
        api.call(Method::GET, "/applications/web", None).await.1["spec"]["replicas"],
        3
    );

    let (status, patched) = api
        .call(
            Method::PATCH,
            "/applications/web",
            Some(json!({"spec": {"replicas": 2}})),
        )
        .await;
    assert_eq!(
        (status, patched["spec"]["replicas"].clone()),
        (StatusCode::OK, json!(2))
    );

    assert_eq!(
        api.call(Method::DELETE, "/applications/web", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.call(Method::GET, "/applications/web", None).await.0,
        StatusCode::NOT_FOUND
    );

    // Every mutation left an event.
    let (_, events) = api.call(Method::GET, "/events", None).await;
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["Created", "Updated", "Updated", "Deleted"]);
}

#[tokio::test]
async fn invalid_documents_name_every_field_and_change_nothing() {
    let api = Api::start().await;
    let mut doc = app("127.0.0.1:5000/busybox:latest");
    doc["spec"]["healthCheck"] = json!({"path": "healthz"});
    doc["spec"]["resources"] = json!({"memory": "lots"});
    let (status, problem) = api.call(Method::POST, "/applications", Some(doc)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        paths(&problem),
        ["spec.healthCheck.path", "spec.resources.memory"]
    );
    assert!(problem["errors"][0]["hint"].as_str().unwrap().contains('/'));

    let mut doc = app("127.0.0.1:5000/busybox:latest");
    doc["spec"]["replicaz"] = json!(2);
    let (status, problem) = api.call(Method::POST, "/applications", Some(doc)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(paths(&problem), ["spec.replicaz"]);

    let res = api
        .http
        .post(format!("{}/api/v1/applications", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"apiVersion\": \"berth.dev/v1\",\n  \"kind\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("line 2"),
        "{problem}"
    );

    let (_, list) = api.call(Method::GET, "/applications", None).await;
    assert_eq!(list["items"], json!([]));
    assert_eq!(api.call(Method::GET, "/events", None).await.1["items"], json!([]));
}

#[tokio::test]
async fn a_dry_run_of_every_write_checks_in_full_and_stores_nothing() {
    let api = Api::start().await;
    api.platform().await;
    let (status, created) = api
        .call(
            Method::POST,
            "/applications",
            Some(app("127.0.0.1:5000/busybox:latest")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let events = api.call(Method::GET, "/events", None).await.1["items"]
        .as_array()
        .unwrap()
        .len();

    // PATCH: the would-be object comes back, the stored one is untouched.
    let (status, patched) = api
        .call(
            Method::PATCH,
            "/applications/web?dryRun=All",
            Some(json!({"spec": {"replicas": 4}})),
        )
        .await;
    assert_eq!(
        (status, patched["spec"]["replicas"].clone()),
        (StatusCode::OK, json!(4)),
        "{patched}"
    );
    let (_, stored) = api.call(Method::GET, "/applications/web", None).await;
    assert_eq!(stored, created);

    // PUT and POST of new objects: answered, not stored.
    let mut other = app("127.0.0.1:5000/busybox:latest");
    other["metadata"]["name"] = json!("api");
    let (status, answer) = api
        .call(Method::PUT, "/applications/api?dryRun=All", Some(other.clone()))
        .await;
    assert_eq!(
        (status, answer["metadata"]["name"].clone()),
        (StatusCode::CREATED, json!("api")),
        "{answer}"
    );
    let (status, _) = api
        .call(Method::POST, "/applications?dryRun=All", Some(other))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        api.call(Method::GET, "/applications/api", None).await.0,
        StatusCode::NOT_FOUND
    );

    // DELETE: answered as it is, still there.
    let (status, _) = api
        .call(Method::DELETE, "/applications/web?dryRun=All", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .call(Method::DELETE, "/environments/qa?dryRun=All", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.call(Method::GET, "/applications/web", None).await.1, created);
    assert_eq!(
        api.call(Method::GET, "/environments/qa", None).await.0,
        StatusCode::OK
    );

    // Validation and references are checked in full.
    let (status, problem) = api
        .call(
            Method::PATCH,
            "/applications/web?dryRun=All",
            Some(json!({"spec": {"replicas": "many", "team": "nobody"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, problem) = api.call(Method::DELETE, "/clusters/local?dryRun=All", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // Any other value is refused, never taken for a real write.
    let (status, _) = api
        .call(
            Method::PATCH,
            "/applications/web?dryRun=true",
            Some(json!({"spec": {"replicas": 4}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(api.call(Method::GET, "/applications/web", None).await.1, created);
    // And no dry run left an event.
    let after = api.call(Method::GET, "/events", None).await.1["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, events);
}

#[tokio::test]
async fn overrides_of_environments_that_do_not_exist_are_refused_naming_the_known_ones() {
    let api = Api::start().await;
    api.platform().await;
    let mut doc = app("127.0.0.1:5000/busybox:latest");
    doc["spec"]["environments"] = json!({"prod": {"replicas": 3}, "qa": {"replicas": 1}, "stagin": {}});
    let (status, problem) = api.call(Method::POST, "/applications", Some(doc)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        paths(&problem),
        ["spec.environments.prod", "spec.environments.stagin"]
    );
    let hint = problem["errors"][0]["hint"].as_str().unwrap();
    assert!(
        hint.contains("production, qa") || hint.contains("qa, production"),
        "{hint}"
    );
    assert_eq!(
        api.call(Method::GET, "/applications/web", None).await.0,
        StatusCode::NOT_FOUND
    );
}

fn doc(kind: &str, name: &str, spec: Value) -> Value {
    json!({"object": {"apiVersion": "berth.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}})
}

#[tokio::test]
async fn an_apply_stores_every_document_or_none_and_names_every_problem() {
    let api = Api::start().await;
    // Dependency order is Berth's: the environment comes first here.
    let mut bad_app = doc(
        "Application",
        "web",
        json!({"image": "127.0.0.1:5000/busybox:latest", "replicaz": 2, "healthCheck": {"pth": "/"}}),
    );
    bad_app["file"] = json!("apps.yaml");
    bad_app["line"] = json!(12);
    let request = json!({"documents": [
        doc("Environment", "qa", json!({"clusters": [{"cluster": "east"}]})),
        doc("Cluster", "east", json!({"datacenter": "dc1"})),
        bad_app,
        doc("Environment", "prod", json!({"clusters": [{"cluster": "nowhere"}]})),
    ]});
    let (status, problem) = api.call(Method::POST, "/apply", Some(request.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    // Every problem at once, in the order Berth applied the documents.
    let found = paths(&problem);
    assert_eq!(
        found,
        [
            "documents[3].spec.clusters[0].cluster",
            "documents[2].spec.healthCheck.pth",
            "documents[2].spec.replicaz",
        ],
        "{problem}"
    );
    let message = problem["errors"][1]["message"].as_str().unwrap();
    assert!(
        message.starts_with("apps.yaml:12: Application 'web' (document 2)"),
        "{message}"
    );
    // Nothing at all was stored, not even the valid cluster and environment.
    assert_eq!(
        api.call(Method::GET, "/clusters/east", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::GET, "/environments/qa", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.call(Method::GET, "/events", None).await.1["items"], json!([]));

    // Fixed, as a dry run first: the plan, nothing stored.
    let good = json!({"documents": [
        doc("Environment", "qa", json!({"clusters": [{"cluster": "east"}]})),
        doc("Cluster", "east", json!({"datacenter": "dc1"})),
        doc("Application", "web", json!({"image": "127.0.0.1:5000/busybox:latest", "environments": {"qa": {"replicas": 2}}})),
    ]});
    let (status, plan) = api
        .call(Method::POST, "/apply?dryRun=All", Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let actions: Vec<String> = plan["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{}/{} {}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap(),
                o["action"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "Cluster/east created",
            "Environment/qa created",
            "Application/web created"
        ]
    );
    assert_eq!(plan["dryRun"], true);
    assert_eq!(
        api.call(Method::GET, "/clusters/east", None).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, applied) = api.call(Method::POST, "/apply", Some(good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let version = applied["objects"][2]["after"]["metadata"]["resourceVersion"].clone();
    let (_, web) = api.call(Method::GET, "/applications/web", None).await;
    assert_eq!(web["metadata"]["resourceVersion"], version);
    // One transaction: one revision for all three.
    let (_, east) = api.call(Method::GET, "/clusters/east", None).await;
    assert_eq!(east["metadata"]["resourceVersion"], version);

    // Again: nothing changes.
    let (_, again) = api.call(Method::POST, "/apply", Some(good)).await;
    assert!(
        again["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["action"] == "unchanged"),
        "{again}"
    );
}

#[tokio::test]
async fn a_prune_deletes_only_what_its_source_applied() {
    let api = Api::start().await;
    api.platform().await;
    // Made by hand: never pruned.
    let mut by_hand = app("127.0.0.1:5000/busybox:latest");
    by_hand["metadata"]["name"] = json!("manual");
    assert_eq!(
        api.call(Method::POST, "/applications", Some(by_hand)).await.0,
        StatusCode::CREATED
    );
    let spec = json!({"image": "127.0.0.1:5000/busybox:latest"});
    let first = json!({"documents": [doc("Application", "a", spec.clone()), doc("Application", "b", spec.clone())], "prune": {"source": "repo"}});
    let (status, applied) = api.call(Method::POST, "/apply", Some(first)).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let (_, a) = api.call(Method::GET, "/applications/a", None).await;
    assert_eq!(a["metadata"]["labels"]["berth.dev/source"], "repo");

    // Another source's objects are not this one's.
    let other = json!({"documents": [doc("Application", "c", spec.clone())], "prune": {"source": "other"}});
    assert_eq!(
        api.call(Method::POST, "/apply", Some(other)).await.0,
        StatusCode::OK
    );

    let second = json!({"documents": [doc("Application", "a", spec)], "prune": {"source": "repo"}});
    let (status, plan) = api
        .call(Method::POST, "/apply?dryRun=All", Some(second.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["objects"][1]["action"], "pruned");
    assert_eq!(
        api.call(Method::GET, "/applications/b", None).await.0,
        StatusCode::OK
    );
    let (status, done) = api.call(Method::POST, "/apply", Some(second)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let summary: Vec<String> = done["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["name"].as_str().unwrap(),
                o["action"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(summary, ["a unchanged", "b pruned"]);
    assert_eq!(
        api.call(Method::GET, "/applications/b", None).await.0,
        StatusCode::NOT_FOUND
    );
    for kept in ["a", "c", "manual"] {
        assert_eq!(
            api.call(Method::GET, &format!("/applications/{kept}"), None)
                .await
                .0,
            StatusCode::OK,
            "{kept}"
        );
    }
}

#[tokio::test]
async fn references_to_missing_objects_are_refused() {
    let api = Api::start().await;
    let env = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "qa"}, "spec": {"clusters": [{"cluster": "nowhere"}]}});
    let (status, problem) = api.call(Method::PUT, "/environments/qa", Some(env)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(paths(&problem), ["spec.clusters[0].cluster"]);
    assert_eq!(
        api.call(Method::GET, "/environments/qa", None).await.0,
        StatusCode::NOT_FOUND
    );

    api.platform().await;
    // A cluster in use cannot be deleted.
    let (status, problem) = api.call(Method::DELETE, "/clusters/local", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("qa"));
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let api = Api::start().await;
    let mut doc = app("127.0.0.1:5000/busybox:latest");
    doc["spec"]["env"] = json!({"BIG": "x".repeat(2 << 20)});
    let (status, problem) = api.call(Method::POST, "/applications", Some(doc)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["status"], 413);
}

#[tokio::test]
async fn lists_paginate() {
    let api = Api::start().await;
    for i in 0..5 {
        let c = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": format!("c{i}")}, "spec": {}});
        assert_eq!(
            api.call(Method::POST, "/clusters", Some(c)).await.0,
            StatusCode::CREATED
        );
    }
    let mut names = Vec::new();
    let mut next = String::new();
    loop {
        let (_, page) = api
            .call(Method::GET, &format!("/clusters?limit=2{next}"), None)
            .await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(
            items
                .iter()
                .map(|c| c["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) => next = format!("&continue={c}"),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert_eq!(
        api.call(Method::GET, "/clusters?continue=abc", None).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.call(Method::GET, "/clusters?limit=-1", None).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn releases_pin_digests_and_deploys_number_themselves() {
    let api = Api::start().await;
    api.platform().await;
    api.call(
        Method::POST,
        "/applications",
        Some(app("127.0.0.1:5000/busybox:latest")),
    )
    .await;

    let (status, d1) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{d1}");
    assert_eq!(
        (d1["spec"]["release"].clone(), d1["spec"]["number"].clone()),
        (json!(1), json!(1))
    );
    let (_, r1) = api.call(Method::GET, "/applications/web/releases/1", None).await;
    let image = r1["spec"]["template"]["image"].as_str().unwrap();
    assert!(image.starts_with("127.0.0.1:5000/busybox@sha256:"), "{image}");
    assert_eq!(
        r1["spec"]["origin"]["requestedImage"],
        "127.0.0.1:5000/busybox:latest"
    );

    // An unchanged spec deploys the same release; a change makes a new one.
    let (_, d2) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "production"})),
        )
        .await;
    assert_eq!(d2["spec"]["release"], 1);
    api.call(
        Method::PATCH,
        "/applications/web",
        Some(json!({"spec": {"replicas": 2}})),
    )
    .await;
    let (_, d3) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(
        (d3["spec"]["release"].clone(), d3["spec"]["number"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(d3["status"]["previousRelease"], 1);

    // Releases are immutable: there is no endpoint that writes one.
    let (status, _) = api
        .call(Method::PUT, "/applications/web/releases/1", Some(r1.clone()))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A method the path does not take is 405 whatever its query says (the contract's
    // query check is for the operations the path has).
    let (status, _) = api.call(Method::TRACE, "/releases?limit=1&continue=", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Bad requests say what is wrong.
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "staging"})),
        )
        .await;
    assert_eq!(
        (status, paths(&p)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["environment".to_owned()])
    );
    let (status, _) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa", "release": 9})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa", "image": "127.0.0.1:5000/busybox:nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, _) = api
        .call(
            Method::POST,
            "/applications/nope/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing succeeded yet in qa, so there is nothing to roll back to.
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/rollback",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    let (status, d4) = api
        .call(
            Method::POST,
            "/applications/web/rollback",
            Some(json!({"environment": "qa", "to": 1})),
        )
        .await;
    assert_eq!(
        (status, d4["spec"]["cause"].clone()),
        (StatusCode::CREATED, json!({"type": "Rollback", "fromRelease": 2}))
    );

    let (_, status) = api.call(Method::GET, "/applications/web/status", None).await;
    let envs = status["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[1]["environment"], "qa");
    assert_eq!(envs[1]["release"], 1);
    assert_eq!(envs[1]["urls"], json!(["http://web.qa.localhost:8080/"]));
}

#[tokio::test]
async fn event_stream_resumes_from_a_position() {
    let api = Api::start().await;
    for i in 0..3 {
        let c = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": format!("c{i}")}, "spec": {}});
        api.call(Method::POST, "/clusters", Some(c)).await;
    }
    let res = api
        .http
        .get(format!("{}/api/v1/events/stream", api.base))
        .bearer_auth(&api.token)
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut res = res;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while text.matches("event: event").count() < 3 {
        if text.matches("event: event").count() == 2 {
            // A commit after the stream started arrives too.
            let c = json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "late"}, "spec": {}});
            if !text.contains("late-sent") {
                api.call(Method::POST, "/clusters", Some(c)).await;
                text.push_str("late-sent");
            }
        }
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .expect("events arrive in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!text.contains("id: 1\n"), "resumes after position 1");
    assert!(
        text.contains("id: 2\n") && text.contains("id: 3\n") && text.contains("id: 4\n"),
        "{text}"
    );
    assert!(text.contains("\"name\":\"late\""));
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let doc = serde_json::to_value(berth_api::openapi()).unwrap();
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    insta::assert_json_snapshot!("openapi-paths", paths);
    for schema in [
        "Application",
        "Cluster",
        "Environment",
        "Release",
        "Deployment",
        "ApplicationSpec",
        "Problem",
        "Rollout",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    // An apply's answer says what a deploy would roll out, per application and environment.
    let apply = &doc["components"]["schemas"]["ApplyResult"]["properties"];
    assert_eq!(
        apply["rollouts"]["items"]["$ref"], "#/components/schemas/Rollout",
        "{apply}"
    );
    let rollout = &doc["components"]["schemas"]["Rollout"];
    for field in [
        "application",
        "environment",
        "runningRelease",
        "release",
        "newRelease",
        "changes",
    ] {
        assert!(
            rollout["properties"][field].is_object(),
            "Rollout.{field}: {rollout}"
        );
    }
}

// === Builds, promotion, provenance ===

/// A git repository holding the sample Java application (examples/java-hello).
struct JavaRepo {
    dir: tempfile::TempDir,
}

impl JavaRepo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-hello/src");
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(&sample)
            .arg(dir.path().join("src"))
            .status()
            .unwrap();
        assert!(status.success());
        let repo = Self { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "java-hello"]);
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }
}

fn java_app(name: &str, repo: &JavaRepo) -> Value {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    json!({
        "apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": name},
        "spec": {"image": format!("127.0.0.1:5000/berth-test/api-{nanos:x}"),
            "source": {"git": repo.url(), "builder": {"java": {
                "sources": "src/main/java", "resources": "src/main/resources", "mainClass": "dev.berth.hello.Main"}}},
            "healthCheck": {"path": "/healthz"}}
    })
}

impl Api {
    /// Waits for build `number` of `app` to end and returns it.
    async fn built(&self, app: &str, number: u64) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let (_, b) = self
                .call(Method::GET, &format!("/applications/{app}/builds/{number}"), None)
                .await;
            if matches!(b["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
                return b;
            }
            assert!(tokio::time::Instant::now() < deadline, "build did not end: {b}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The platform, with production taking only what ran successfully in qa.
    async fn gated_platform(&self) {
        self.platform().await;
        let production = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "production"},
            "spec": {"clusters": [{"cluster": "local"}], "policies": {"requireVerifiedIn": ["qa"]}}});
        let (status, _) = self
            .call(Method::PUT, "/environments/production", Some(production))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Deploys the current spec of `app` to `env`.
    async fn deploy(&self, app: &str, env: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/applications/{app}/deploy"),
            Some(json!({"environment": env})),
        )
        .await
    }

    /// Marks a deployment Succeeded, as the reconciler does once every replica is healthy.
    async fn succeed(&self, deployment: &str) {
        let store = SqliteStore::open(&self._dir.path().join("berth.db"))
            .await
            .unwrap();
        let mut d = berth_core::repo::get::<berth_core::objects::DeploymentKind>(&store, deployment)
            .await
            .unwrap()
            .unwrap();
        d.status.phase = berth_core::objects::DeploymentPhase::Succeeded;
        d.status.finished_at = Some(chrono::Utc::now());
        use berth_core::ports::Store;
        store
            .commit(vec![berth_core::repo::replace(&d).unwrap()], vec![])
            .await
            .unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn a_build_runs_once_and_streams_its_log() {
    let api = Api::start().await;
    let repo = JavaRepo::new();
    let (status, _) = api
        .call(Method::POST, "/applications", Some(java_app("web", &repo)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, build) = api
        .call(Method::POST, "/applications/web/builds", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    assert_eq!(build["metadata"]["name"], "web-build-1");
    assert_eq!(build["spec"]["commit"], repo.git(&["rev-parse", "HEAD"]));

    // The log, live: lines as they come, then the outcome.
    let res = api
        .http
        .get(format!("{}/api/v1/applications/web/builds/1/log", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(std::time::Duration::from_secs(120), res.text())
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.contains("event: log") && text.contains("javac --release 17"),
        "{text}"
    );
    assert!(
        text.contains("event: end") && text.contains("\"phase\":\"Succeeded\""),
        "{text}"
    );

    let build = api.built("web", 1).await;
    let digest = build["status"]["digest"].as_str().unwrap().to_owned();
    assert_eq!(build["status"]["release"], 1);
    let (_, release) = api.call(Method::GET, "/applications/web/releases/1", None).await;
    assert!(
        release["spec"]["template"]["image"]
            .as_str()
            .unwrap()
            .ends_with(&digest)
    );
    assert_eq!(release["spec"]["origin"]["build"], "web-build-1");

    // Build once: asking again answers 200 with the same build.
    let (status, again) = api
        .call(
            Method::POST,
            "/applications/web/builds",
            Some(json!({"ref": "main"})),
        )
        .await;
    assert_eq!(
        (status, again["metadata"]["name"].as_str()),
        (StatusCode::OK, Some("web-build-1"))
    );
    let (_, list) = api.call(Method::GET, "/applications/web/builds", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, all) = api.call(Method::GET, "/builds?application=web", None).await;
    assert_eq!(all["kind"], "BuildList");

    // Bad requests say what is wrong.
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/builds",
            Some(json!({"ref": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["status"]["phase"], "Failed");
    assert!(
        p["status"]["message"]
            .as_str()
            .unwrap()
            .contains("'nope' is not a branch"),
        "{p}"
    );
    api.call(
        Method::POST,
        "/applications",
        Some(app("127.0.0.1:5000/busybox:latest")),
    )
    .await;
    let (status, p) = api
        .call(Method::POST, "/applications/web2/builds", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    let mut plain = app("127.0.0.1:5000/busybox:latest");
    plain["metadata"]["name"] = json!("plain");
    api.call(Method::POST, "/applications", Some(plain)).await;
    let (status, p) = api
        .call(Method::POST, "/applications/plain/builds", Some(json!({})))
        .await;
    assert_eq!(
        (status, paths(&p)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["spec.source".to_owned()])
    );
    let (status, _) = api.call(Method::GET, "/applications/web/builds/9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn promotion_keeps_the_digest_and_policy_and_provenance_prove_it() {
    let api = Api::start().await;
    api.gated_platform().await;
    let repo = JavaRepo::new();
    let mut doc = java_app("web", &repo);
    doc["spec"]["environments"] = json!({"production": {"replicas": 3}});
    api.call(Method::POST, "/applications", Some(doc)).await;

    // Nothing built yet: nothing to deploy.
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("berth build web"), "{p}");

    api.call(Method::POST, "/applications/web/builds", Some(json!({})))
        .await;
    let build = api.built("web", 1).await;
    let digest = build["status"]["digest"].as_str().unwrap().to_owned();
    let (status, qa) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(
        (status, qa["spec"]["release"].clone()),
        (StatusCode::CREATED, json!(1)),
        "{qa}"
    );

    // qa has not succeeded yet: production refuses the digest, by promotion and by deploy.
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/promote",
            Some(json!({"from": "qa", "to": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("not deployed successfully in qa"),
        "{p}"
    );
    let (status, p) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["type"], "https://berth.dev/problems/not-verified");

    api.succeed("web-qa-1").await;
    let (status, d) = api
        .call(
            Method::POST,
            "/applications/web/promote",
            Some(json!({"from": "qa", "to": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(
        (d["spec"]["environment"].as_str(), d["spec"]["release"].clone()),
        (Some("production"), json!(2))
    );
    let (_, r2) = api.call(Method::GET, "/applications/web/releases/2", None).await;
    let (_, r1) = api.call(Method::GET, "/applications/web/releases/1", None).await;
    assert_eq!(
        r2["spec"]["template"], r1["spec"]["template"],
        "the identical digest and spec"
    );
    assert!(
        r2["spec"]["template"]["image"]
            .as_str()
            .unwrap()
            .ends_with(&digest)
    );
    assert_eq!(r2["spec"]["origin"]["promotion"]["fromEnvironment"], "qa");
    assert_eq!(r2["spec"]["origin"]["promotion"]["promotedBy"], "admin");
    let (_, builds) = api.call(Method::GET, "/applications/web/builds", None).await;
    assert_eq!(builds["items"].as_array().unwrap().len(), 1, "never a rebuild");
    let (_, events) = api.call(Method::GET, "/events?application=web", None).await;
    let promoted: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Promoted")
        .collect();
    assert_eq!(promoted.len(), 1);
    assert_eq!(
        (promoted[0]["actor"].as_str(), promoted[0]["environment"].as_str()),
        (Some("admin"), Some("production"))
    );
    assert!(
        promoted[0]["message"]
            .as_str()
            .unwrap()
            .contains("from release 1 in qa to production")
    );

    api.succeed("web-production-1").await;
    let (status, p) = api
        .call(
            Method::GET,
            "/applications/web/provenance?environment=production",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["digest"], digest);
    assert_eq!(p["commit"], repo.git(&["rev-parse", "HEAD"]));
    assert_eq!(p["build"]["name"], "web-build-1");
    assert_eq!(p["build"]["builder"], "java");
    assert_eq!(p["release"], 2);
    let verified: Vec<&str> = p["verifiedIn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["environment"].as_str().unwrap())
        .collect();
    assert_eq!(verified, ["production", "qa"]);
    assert_eq!(p["promotions"][0]["fromEnvironment"], "qa");
    assert_eq!(p["promotions"][0]["promotedBy"], "admin");
    assert!(p["promotions"][0]["promotedAt"].is_string());

    // What cannot be promoted or proven says why.
    for (body, want) in [
        (
            json!({"from": "production", "to": "production"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"from": "staging", "to": "production"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, p) = api
            .call(Method::POST, "/applications/web/promote", Some(body))
            .await;
        assert_eq!(status, want, "{p}");
    }
    let (status, _) = api
        .call(
            Method::GET,
            "/applications/web/provenance?environment=nowhere",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api.call(Method::GET, "/applications/web/provenance", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_qa_gate_compares_release_templates_and_config_changes_keep_their_build() {
    let api = Api::start().await;
    api.gated_platform().await;
    let repo = JavaRepo::new();
    let (status, _) = api
        .call(Method::POST, "/applications", Some(java_app("web", &repo)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    api.call(Method::POST, "/applications/web/builds", Some(json!({})))
        .await;
    assert_eq!(api.built("web", 1).await["status"]["phase"], "Succeeded");
    let (status, d) = api.deploy("web", "qa").await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    api.succeed("web-qa-1").await;

    // A new config file on the digest qa verified: a template qa never ran.
    let change = json!({"spec": {"configFiles": [{"path": "/etc/web/extra.conf", "content": "debug=true"}]}});
    let (status, b) = api.call(Method::PATCH, "/applications/web", Some(change)).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let (status, p) = api.deploy("web", "production").await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["type"], "https://berth.dev/problems/not-verified");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("release 1 ran in qa with the same image but a different configFiles"),
        "{p}"
    );
    let (status, _) = api.call(Method::GET, "/applications/web/releases/2", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused deploy makes no release");

    // Through qa it passes, and the config change keeps the build it runs.
    let (status, d) = api.deploy("web", "qa").await;
    assert_eq!(
        (status, d["spec"]["release"].as_u64()),
        (StatusCode::CREATED, Some(2)),
        "{d}"
    );
    api.succeed("web-qa-2").await;
    let (_, r2) = api.call(Method::GET, "/applications/web/releases/2", None).await;
    let hash = r2["spec"]["templateHash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("sha256:"), "{r2}");
    assert_eq!(r2["spec"]["origin"]["build"], "web-build-1", "{r2}");
    let (status, d) = api.deploy("web", "production").await;
    assert_eq!(
        (status, d["spec"]["release"].as_u64()),
        (StatusCode::CREATED, Some(2)),
        "{d}"
    );
    api.succeed("web-production-1").await;
    let (status, p) = api
        .call(
            Method::GET,
            "/applications/web/provenance?environment=production",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["templateHash"], hash.as_str());
    assert_eq!(p["commit"], repo.git(&["rev-parse", "HEAD"]));
    assert_eq!(p["build"]["name"], "web-build-1");
    let verified: Vec<(&str, u64)> = p["verifiedIn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["environment"].as_str().unwrap(), v["release"].as_u64().unwrap()))
        .collect();
    assert_eq!(verified, [("production", 2), ("qa", 2)]);

    // A per-environment override is a new release of the same template: no new trip
    // through qa.
    let scale = json!({"spec": {"environments": {"production": {"replicas": 3, "env": {"MODE": "prod"}}}}});
    api.call(Method::PATCH, "/applications/web", Some(scale)).await;
    let (status, d) = api.deploy("web", "production").await;
    assert_eq!(
        (status, d["spec"]["release"].as_u64()),
        (StatusCode::CREATED, Some(3)),
        "{d}"
    );
}

#[tokio::test]
async fn variables_berth_sets_are_refused_with_422() {
    let api = Api::start().await;
    let mut doc = app("127.0.0.1:5000/busybox:latest");
    doc["spec"]["env"] = json!({"PORT": "9090"});
    doc["spec"]["environments"] = json!({"qa": {"env": {"BERTH_APPLICATION": "other"}}});
    let (status, p) = api.call(Method::POST, "/applications", Some(doc)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(
        paths(&p),
        ["spec.env.PORT", "spec.environments.qa.env.BERTH_APPLICATION"]
    );
    assert!(
        p.to_string().contains("Berth sets PORT to the container port"),
        "{p}"
    );
    let (status, _) = api.call(Method::GET, "/applications/web", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
}

/// `/metrics` parses as the Prometheus text format, counts requests by route template,
/// shows clusters and deployments, needs an administrator's token, and carries no token
/// or secret value.
#[tokio::test]
async fn metrics_parse_count_routes_and_carry_no_secret() {
    let api = Api::start().await;
    api.platform().await;
    let (s, b) = api
        .call(
            Method::PUT,
            "/applications/web",
            Some(app("127.0.0.1:5000/busybox:latest")),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let secret = "s3cr3t-value-7f1e9a";
    let (s, b) = api
        .call(
            Method::PUT,
            "/applications/web/secrets/db",
            Some(json!({"value": secret})),
        )
        .await;
    assert!(s.is_success(), "{b}");
    api.call(Method::GET, "/applications/web", None).await;
    let (s, b) = api
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let anonymous = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let res = api
        .http
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    assert!(!text.contains(secret), "a secret value in the metrics");
    assert!(!text.contains(&api.token), "a token in the metrics");

    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let find = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| s.value.clone())
    };
    let gets = find(
        "berth_http_request_duration_seconds_count",
        &[
            ("route", "/api/v1/applications/:name"),
            ("method", "GET"),
            ("status", "200"),
        ],
    );
    assert!(
        matches!(
            gets,
            Some(prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n)) if n >= 1.0
        ),
        "{gets:?}\n{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric.starts_with("berth_http_request_duration_seconds")
                && s.labels.get("route") == Some("/api/v1/applications/:name/secrets/:secret")),
        "{text}"
    );
    assert!(
        find("berth_clusters", &[("cluster", "local")]).is_some(),
        "{text}"
    );
    assert_eq!(
        find("berth_deployments", &[("phase", "Pending")]),
        Some(prometheus_parse::Value::Gauge(1.0)),
        "{text}"
    );
    // Every phase is there, 0 when no deployment is in it: a query for one never finds
    // nothing.
    for phase in ["Progressing", "Succeeded", "Failed", "Superseded"] {
        assert_eq!(
            find("berth_deployments", &[("phase", phase)]),
            Some(prometheus_parse::Value::Gauge(0.0)),
            "{phase}\n{text}"
        );
    }
}
