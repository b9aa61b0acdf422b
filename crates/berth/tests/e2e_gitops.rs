//! GitOps with the real binary and real git repositories made in the test: a commit is
//! applied within the poll period and at once on `POST /sources/{name}/sync`; a bad
//! commit is refused with the error in the status and the objects kept; a file removed
//! from git is pruned only with `prune`; drift is reported, and reverted with `selfHeal`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use berth_test_support::git::Repo;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Berth, wait_until};

/// Writes (or with `None`, removes) files in `repo` and commits them; the commit's id.
fn commit(repo: &Repo, files: &[(&str, Option<&str>)]) -> String {
    for (name, content) in files {
        match content {
            Some(text) => repo.write(name, text),
            None => repo.remove(name),
        }
    }
    repo.commit("change")
}

fn cluster(name: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Cluster\nmetadata: {{name: {name}}}\nspec: {{datacenter: dc1}}\n"
    )
}

fn environment(name: &str, cluster: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {{name: {name}}}\nspec:\n  clusters: [{{cluster: {cluster}}}]\n"
    )
}

fn application(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Application\nmetadata: {{name: {name}}}\nspec:\n  image: {}\n  replicas: {replicas}\n",
        support::IMAGE
    )
}

/// Creates source `name` of `repo` with these extra spec fields.
async fn source(berth: &Berth, name: &str, repo: &Repo, spec: Value) {
    let mut body = json!({"apiVersion": "berth.dev/v1", "kind": "Source", "metadata": {"name": name},
        "spec": {"repository": repo.url()}});
    for (k, v) in spec.as_object().unwrap() {
        body["spec"][k] = v.clone();
    }
    let (s, b) = berth
        .call(Method::PUT, &format!("/sources/{name}"), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn status(berth: &Berth, name: &str) -> Value {
    let (s, b) = berth.call(Method::GET, &format!("/sources/{name}"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["status"].clone()
}

/// The settings of a source synced only when asked, that prunes.
fn pruning() -> Value {
    json!({"interval": "1h", "prune": true})
}

/// Creates source `name` of `repo` and waits for its first sync, to `commit`.
async fn follow(berth: &Berth, name: &str, repo: &Repo, spec: Value, commit: &str) -> Value {
    source(berth, name, repo, spec).await;
    synced_to(berth, name, commit, Duration::from_secs(10)).await
}

/// Waits until source `name` is synced to `commit`.
async fn synced_to(berth: &Berth, name: &str, commit: &str, within: Duration) -> Value {
    wait_until(within, &format!("source {name} synced to {commit}"), || async {
        let s = status(berth, name).await;
        s["phase"] == "Synced" && s["commit"] == commit
    })
    .await;
    status(berth, name).await
}

async fn sync(berth: &Berth, name: &str) {
    let (s, b) = berth
        .call(Method::POST, &format!("/sources/{name}/sync"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
}

async fn exists(berth: &Berth, path: &str) -> bool {
    let (s, b) = berth.call(Method::GET, path, None).await;
    assert!(
        s == StatusCode::OK || s == StatusCode::NOT_FOUND,
        "{path}: {s} {b}"
    );
    s == StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_applied_within_the_poll_period() {
    let berth = Berth::start().await;
    let repo = Repo::new();
    let first = commit(
        &repo,
        &[(
            "platform.yaml",
            Some(&format!(
                "{}---\n{}",
                environment("qa", &berth.cluster),
                cluster(&berth.cluster)
            )),
        )],
    );
    let s = follow(&berth, "platform", &repo, json!({"interval": "5s"}), &first).await;
    let changes = s["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{s}");
    assert!(changes.iter().all(|c| c["action"] == "created"), "{s}");
    let (_, env) = berth.call(Method::GET, "/environments/qa", None).await;
    assert_eq!(env["metadata"]["labels"]["berth.dev/source"], "platform", "{env}");

    // A new commit, nobody asks: the next poll (every 5 s) applies it.
    let second = commit(&repo, &[("web.yaml", Some(&application("web", 1)))]);
    let s = synced_to(&berth, "platform", &second, Duration::from_secs(12)).await;
    assert_eq!(
        s["changes"],
        json!([{"kind": "Application", "name": "web", "action": "created"}]),
        "{s}"
    );
    // Done by the source, as its events and audit say.
    let (_, audit) = berth.call(Method::GET, "/audit?kind=Application", None).await;
    let by_source = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "source:platform");
    assert!(by_source, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_applies_a_commit_at_once() {
    let berth = Berth::start().await;
    let repo = Repo::new();
    let first = commit(&repo, &[("web.yaml", Some(&application("web", 1)))]);
    // Applied from a file like any document; polled every hour: only its creation and
    // the requests sync it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: berth.dev/v1\nkind: Source\nmetadata: {{name: apps}}\nspec:\n  repository: {}\n  interval: 1h\n",
            repo.url()
        ),
    )
    .unwrap();
    let out = berth.cli(&["apply", "-f", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("source/apps created"),
        "{text}"
    );
    synced_to(&berth, "apps", &first, Duration::from_secs(10)).await;
    let second = commit(&repo, &[("api.yaml", Some(&application("api", 1)))]);
    sync(&berth, "apps").await;
    synced_to(&berth, "apps", &second, Duration::from_secs(5)).await;
    assert!(exists(&berth, "/applications/api").await);
    let out = berth.cli(&["get", "sources"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("apps") && table.contains("Synced") && table.contains(&second[..12]),
        "{table}"
    );
    let out = berth.cli(&["describe", "source", "apps"]);
    let described = String::from_utf8_lossy(&out.stdout);
    assert!(
        described.contains("change:    Application/api created"),
        "{described}"
    );
    // A ref the repository does not have: failed, saying so, nothing applied.
    source(&berth, "broken", &repo, json!({"ref": "nope", "interval": "1h"})).await;
    wait_until(Duration::from_secs(5), "the unknown ref refused", || async {
        status(&berth, "broken").await["phase"] == "Failed"
    })
    .await;
    let s = status(&berth, "broken").await;
    let message = s["error"]["message"].as_str().unwrap();
    assert!(message.contains("'nope' is not a branch, tag or commit"), "{s}");
    assert!(s.get("commit").is_none(), "{s}");
    // A source that does not exist is not found; others may not ask.
    let (s, _) = berth.call(Method::POST, "/sources/nope/sync", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, token) = berth
        .call(
            Method::PUT,
            "/users/dev",
            Some(json!({"apiVersion": "berth.dev/v1", "kind": "User",
            "metadata": {"name": "dev"}, "spec": {}})),
        )
        .await;
    assert!(s.is_success(), "{token}");
    let (s, token) = berth
        .call(Method::POST, "/tokens", Some(json!({"name": "t", "user": "dev"})))
        .await;
    assert!(s.is_success(), "{token}");
    let (s, _) = berth
        .call_as(
            token["secret"].as_str().unwrap(),
            Method::POST,
            "/sources/apps/sync",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_commit_is_refused_and_the_previous_objects_kept() {
    let berth = Berth::start().await;
    let repo = Repo::new();
    let good = commit(
        &repo,
        &[
            ("cluster.yaml", Some(&cluster(&berth.cluster))),
            ("web.yaml", Some(&application("web", 1))),
        ],
    );
    follow(&berth, "platform", &repo, pruning(), &good).await;

    // One good change and one bad document (an unknown field, a missing cluster): none
    // of it is applied.
    let bad = commit(
        &repo,
        &[
            ("web.yaml", Some(&application("web", 2))),
            (
                "envs.yaml",
                Some(&format!(
                    "{}  colour: blue\n---\n{}",
                    environment("qa", &berth.cluster),
                    environment("staging", "nowhere")
                )),
            ),
        ],
    );
    sync(&berth, "platform").await;
    wait_until(Duration::from_secs(5), "the bad commit refused", || async {
        status(&berth, "platform").await["phase"] == "Failed"
    })
    .await;
    let s = status(&berth, "platform").await;
    assert_eq!(
        s["commit"],
        good.as_str(),
        "the objects are still at the good commit: {s}"
    );
    let error = &s["error"];
    assert_eq!(error["commit"], bad.as_str(), "{s}");
    let errors = error["errors"].as_array().unwrap();
    let text = serde_json::to_string(errors).unwrap();
    assert!(
        text.contains("envs.yaml:1: Environment 'qa'"),
        "the file and line are named: {text}"
    );
    assert!(text.contains("envs.yaml:8: Environment 'staging'"), "{text}");
    assert!(text.contains("colour"), "the unknown field is named: {text}");
    assert!(
        text.contains("spec.clusters[0].cluster"),
        "the missing cluster's field: {text}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e["path"].as_str().unwrap().starts_with("documents[")),
        "{text}"
    );
    let (_, web) = berth.call(Method::GET, "/applications/web", None).await;
    assert_eq!(web["spec"]["replicas"], 1, "{web}");
    assert!(!exists(&berth, "/environments/qa").await);

    // Fixed in the next commit: applied.
    let fixed = commit(&repo, &[("envs.yaml", Some(&environment("qa", &berth.cluster)))]);
    sync(&berth, "platform").await;
    let s = synced_to(&berth, "platform", &fixed, Duration::from_secs(5)).await;
    assert!(s.get("error").is_none(), "{s}");
    let (_, web) = berth.call(Method::GET, "/applications/web", None).await;
    assert_eq!(web["spec"]["replicas"], 2, "{web}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_removed_from_git_is_pruned_only_with_prune() {
    let berth = Berth::start().await;
    let pruned = Repo::new();
    let kept = Repo::new();
    let a = commit(
        &pruned,
        &[
            ("web.yaml", Some(&application("web", 1))),
            ("api.yaml", Some(&application("api", 1))),
        ],
    );
    let b = commit(
        &kept,
        &[
            ("shop.yaml", Some(&application("shop", 1))),
            ("cart.yaml", Some(&application("cart", 1))),
        ],
    );
    source(&berth, "pruning", &pruned, pruning()).await;
    source(&berth, "keeping", &kept, json!({"interval": "1h"})).await;
    synced_to(&berth, "pruning", &a, Duration::from_secs(10)).await;
    synced_to(&berth, "keeping", &b, Duration::from_secs(10)).await;
    // Made by hand: never this source's to prune.
    let (s, body) = berth
        .call(
            Method::PUT,
            "/applications/manual",
            Some(json!({"apiVersion": "berth.dev/v1", "kind": "Application",
                "metadata": {"name": "manual"}, "spec": {"image": support::IMAGE}})),
        )
        .await;
    assert!(s.is_success(), "{body}");

    let a2 = commit(&pruned, &[("api.yaml", None)]);
    let b2 = commit(&kept, &[("cart.yaml", None)]);
    sync(&berth, "pruning").await;
    sync(&berth, "keeping").await;
    let s = synced_to(&berth, "pruning", &a2, Duration::from_secs(5)).await;
    assert_eq!(
        s["changes"],
        json!([{"kind": "Application", "name": "api", "action": "pruned"}]),
        "{s}"
    );
    synced_to(&berth, "keeping", &b2, Duration::from_secs(5)).await;
    assert!(!exists(&berth, "/applications/api").await);
    assert!(exists(&berth, "/applications/cart").await, "kept without prune");
    for kept in ["web", "shop", "manual"] {
        assert!(exists(&berth, &format!("/applications/{kept}")).await, "{kept}");
    }

    // Another source naming an object of this one takes nothing over: it fails, naming
    // the owner, and the object stays as this source made it.
    let other = Repo::new();
    commit(&other, &[("web.yaml", Some(&application("web", 5)))]);
    source(&berth, "other", &other, json!({"interval": "1h"})).await;
    wait_until(Duration::from_secs(5), "the take-over refused", || async {
        status(&berth, "other").await["phase"] == "Failed"
    })
    .await;
    let s = status(&berth, "other").await;
    let text = serde_json::to_string(&s["error"]).unwrap();
    assert!(
        text.contains("Application 'web' was applied by source 'pruning'"),
        "{text}"
    );
    let (_, web) = berth.call(Method::GET, "/applications/web", None).await;
    assert_eq!(web["spec"]["replicas"], 1, "{web}");
    assert_eq!(web["metadata"]["labels"]["berth.dev/source"], "pruning", "{web}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_and_reverted_with_self_heal() {
    let berth = Berth::start().await;
    let repo = Repo::new();
    let head = commit(&repo, &[("web.yaml", Some(&application("web", 1)))]);
    follow(&berth, "apps", &repo, json!({"interval": "1h"}), &head).await;
    let edit = |replicas: u32| {
        let berth = &berth;
        async move {
            let (s, b) = berth
                .call(
                    Method::PATCH,
                    "/applications/web",
                    Some(json!({"spec": {"replicas": replicas}})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    let replicas = || async {
        let (_, web) = berth.call(Method::GET, "/applications/web", None).await;
        web["spec"]["replicas"].as_u64().unwrap()
    };

    // Without selfHeal: reported, left as edited.
    edit(3).await;
    sync(&berth, "apps").await;
    wait_until(Duration::from_secs(5), "drift reported", || async {
        !status(&berth, "apps").await["drift"].is_null()
    })
    .await;
    let s = status(&berth, "apps").await;
    assert_eq!(
        s["drift"],
        json!([{"kind": "Application", "name": "web", "drift": "changed", "fields": ["spec.replicas"]}]),
        "{s}"
    );
    assert_eq!(s["phase"], "Synced", "{s}");
    assert_eq!(replicas().await, 3);

    // With selfHeal: reverted to what git says, and said so.
    let (st, b) = berth
        .call(
            Method::PATCH,
            "/sources/apps",
            Some(json!({"spec": {"selfHeal": true}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    sync(&berth, "apps").await;
    wait_until(Duration::from_secs(5), "drift reverted", || async {
        status(&berth, "apps").await["drift"].is_null() && replicas().await == 1
    })
    .await;
    edit(4).await;
    sync(&berth, "apps").await;
    wait_until(Duration::from_secs(5), "drift reverted again", || async {
        replicas().await == 1
    })
    .await;
    let s = status(&berth, "apps").await;
    assert_eq!(
        s["changes"],
        json!([{"kind": "Application", "name": "web", "action": "reverted"}]),
        "{s}"
    );
    assert!(s["drift"].is_null(), "{s}");
}

/// Prune obeys the production protection of any delete: an application running in a
/// production environment is not deleted by a commit that drops it (the sync fails and
/// says why), and keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_never_stops_an_application_running_in_production() {
    let berth = Berth::start().await;
    let repo = Repo::new();
    let production = format!(
        "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {{name: production}}\nspec:\n  production: true\n  \
         clusters: [{{cluster: {}}}]\n  rollout: {{progressDeadlineSeconds: 60}}\n",
        berth.cluster
    );
    let web = serde_json::to_string(&support::web_app("v1", 1, "/healthz")).unwrap();
    let first = commit(
        &repo,
        &[
            (
                "platform.yaml",
                Some(&format!("{}---\n{production}", cluster(&berth.cluster))),
            ),
            ("web.json", Some(&web)),
        ],
    );
    follow(&berth, "platform", &repo, pruning(), &first).await;
    let out = berth.cli(&["deploy", "web", "--env", "production"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(berth.running().len(), 1);

    let second = commit(&repo, &[("web.json", None)]);
    sync(&berth, "platform").await;
    wait_until(Duration::from_secs(5), "the prune refused", || async {
        status(&berth, "platform").await["phase"] == "Failed"
    })
    .await;
    let s = status(&berth, "platform").await;
    assert_eq!(s["error"]["commit"], second.as_str(), "{s}");
    assert_eq!(s["commit"], first.as_str(), "{s}");
    let text = serde_json::to_string(&s["error"]).unwrap();
    assert!(text.contains("pruning Application 'web' is refused"), "{text}");
    assert!(text.contains("production"), "{text}");
    assert!(exists(&berth, "/applications/web").await);
    assert_eq!(berth.running().len(), 1, "still running in production");
}
