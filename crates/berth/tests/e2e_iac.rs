//! Infrastructure as code with the real binary: a lossless export round trip, an atomic
//! apply, a dry run that changes nothing (in the store and on Kubernetes clusters) and
//! says what a deploy would roll out, and a prune that removes only what its source
//! applied. The rollout test needs the local registry of `scripts/setup-runtime.sh`
//! (its image is resolved there).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{collections::BTreeMap, path::Path, process::Output, time::Duration};

use berth_kube_fake::{FakeCluster, FakeOptions};
use reqwest::{Method, StatusCode};
use support::Berth;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(berth: &Berth, args: &[&str]) -> String {
    let out = berth.cli(args);
    assert!(out.status.success(), "berth {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A platform in files: a user, a team, a cluster, two environments, two applications.
fn write_platform(dir: &Path, cluster: &str, web_replicas: u32) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("people.yaml"),
        "apiVersion: berth.dev/v1\nkind: User\nmetadata: {name: alice}\nspec: {}\n---\n\
         apiVersion: berth.dev/v1\nkind: Team\nmetadata: {name: pay}\nspec:\n  members:\n  - {user: alice, roles: [developer]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("platform.yaml"),
        format!(
            "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {{name: qa}}\nspec:\n  clusters: [{{cluster: {cluster}}}]\n---\n\
             apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {{name: production}}\nspec:\n  production: true\n  clusters: [{{cluster: {cluster}}}]\n---\n\
             apiVersion: berth.dev/v1\nkind: Cluster\nmetadata: {{name: {cluster}}}\nspec: {{datacenter: dc1}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("web.yaml"),
        format!(
            "apiVersion: berth.dev/v1\nkind: Application\nmetadata:\n  name: web\n  labels: {{tier: web}}\nspec:\n  team: pay\n  \
             image: {}\n  replicas: {web_replicas}\n  secrets: [{{name: db, env: DB_PASSWORD}}]\n  environments:\n    production: {{replicas: 3}}\n",
            support::IMAGE
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("api.yaml"),
        format!(
            "apiVersion: berth.dev/v1\nkind: Application\nmetadata: {{name: api}}\nspec:\n  image: {}\n",
            support::IMAGE
        ),
    )
    .unwrap();
}

/// File name → content of every file of an export.
fn exported(dir: &Path) -> BTreeMap<String, String> {
    support::files(dir)
        .into_iter()
        .map(|(path, bytes)| {
            let name = Path::new(&path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, String::from_utf8(bytes).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_applied_to_a_new_server_exports_the_same() {
    let first = Berth::start().await;
    let work = tempfile::tempdir().unwrap();
    write_platform(&work.path().join("src"), &first.cluster, 2);
    run(
        &first,
        &["apply", "-f", work.path().join("src").to_str().unwrap()],
    );
    // A secret's value is set apart and never exported.
    let out = first
        .cli_command(&["secret", "set", "web", "db"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"hunter2-secret")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let a = work.path().join("a");
    run(&first, &["export", "--all", a.to_str().unwrap()]);
    let from_first = exported(&a);
    for name in [
        "user-alice.yaml",
        "team-pay.yaml",
        "environment-qa.yaml",
        "environment-production.yaml",
        "application-web.yaml",
        "application-api.yaml",
    ] {
        assert!(
            from_first.contains_key(name),
            "{name} not in {:?}",
            from_first.keys()
        );
    }
    for (name, content) in &from_first {
        for owned in [
            "resourceVersion",
            "creationTimestamp",
            "updateTimestamp",
            "status:",
            "hunter2",
        ] {
            assert!(!content.contains(owned), "{name} carries {owned}:\n{content}");
        }
    }
    assert!(
        from_first["application-web.yaml"].contains("DB_PASSWORD"),
        "the secret is named"
    );

    // Into a server that has never seen any of it, then out again: the same files.
    let second = Berth::start().await;
    let out = run(&second, &["apply", "-f", a.to_str().unwrap()]);
    assert!(out.contains("application/web created"), "{out}");
    let b = work.path().join("b");
    run(&second, &["export", "--all", b.to_str().unwrap()]);
    assert_eq!(exported(&b), from_first);
    // A single object exports the same way.
    let one = run(&first, &["get", "application", "web", "-o", "yaml", "--export"]);
    assert_eq!(one, from_first["application-web.yaml"]);
    // Applying the export again changes nothing: it is the stored state.
    let again = run(&second, &["apply", "-f", b.to_str().unwrap()]);
    assert!(
        !again.contains("created") && !again.contains("configured"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_one_bad_document_stores_nothing_and_names_file_line_and_field() {
    let berth = Berth::start().await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("all.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: berth.dev/v1\nkind: Cluster\nmetadata: {{name: {c}}}\nspec: {{datacenter: dc1}}\n---\n\
             apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {{name: qa}}\nspec:\n  clusters: [{{cluster: {c}}}]\n---\n\
             apiVersion: berth.dev/v1\nkind: Application\nmetadata: {{name: web}}\nspec:\n  image: {image}\n  \
             environments:\n    qa: {{replicas: 2}}\n    stagin: {{replicas: 1}}\n",
            c = berth.cluster,
            image = support::IMAGE
        ),
    )
    .unwrap();
    let out = berth.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains(&format!("{}:12: Application 'web' (document 2)", file.display()))
            && report.contains("documents[2].spec.environments.stagin")
            && report.contains("qa"),
        "{report}"
    );
    // Not even the valid cluster and environment before it were stored.
    let (s, _) = berth
        .call(Method::GET, &format!("/clusters/{}", berth.cluster), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = berth.call(Method::GET, "/environments/qa", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_and_a_dry_run_show_the_change_and_store_nothing() {
    let berth = Berth::start().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("platform");
    write_platform(&dir, &berth.cluster, 1);
    run(&berth, &["apply", "-f", dir.to_str().unwrap()]);
    let (_, before) = berth.call(Method::GET, "/applications/web", None).await;
    let (_, events) = berth.call(Method::GET, "/events", None).await;

    write_platform(&dir, &berth.cluster, 4);
    std::fs::remove_file(dir.join("api.yaml")).unwrap();
    let out = run(&berth, &["diff", "-f", dir.to_str().unwrap()]);
    // Piped: plain, no colour codes.
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(
        out.contains("~ application/web would be configured\n    ~ spec.replicas: 1 -> 4\n"),
        "{out}"
    );
    assert!(out.contains("  cluster/") && out.contains(" unchanged"), "{out}");
    let out = run(&berth, &["apply", "--dry-run", "-f", dir.to_str().unwrap()]);
    assert!(out.contains("spec.replicas: 1 -> 4"), "{out}");

    // Nothing changed: the object, its version, the event log.
    let (_, after) = berth.call(Method::GET, "/applications/web", None).await;
    assert_eq!(after, before);
    let (_, events_after) = berth.call(Method::GET, "/events", None).await;
    assert_eq!(events_after, events);

    // With prune, a dry run lists what would go, and keeps it.
    let out = run(&berth, &["diff", "--prune", "-f", dir.to_str().unwrap()]);
    assert!(
        !out.contains("would be pruned"),
        "nothing was applied with this source yet: {out}"
    );
    let (s, _) = berth.call(Method::GET, "/applications/api", None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_removes_only_what_its_source_applied() {
    let berth = Berth::start().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("platform");
    write_platform(&dir, &berth.cluster, 1);
    let out = run(&berth, &["apply", "--prune", "-f", dir.to_str().unwrap()]);
    assert!(out.contains("application/api created"), "{out}");
    let (_, api) = berth.call(Method::GET, "/applications/api", None).await;
    assert_eq!(api["metadata"]["labels"]["berth.dev/source"], "platform", "{api}");
    // Made by hand, and by another source: neither is this source's.
    let (s, b) = berth
        .call(
            Method::PUT,
            "/applications/manual",
            Some(
                serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Application",
                "metadata": {"name": "manual"}, "spec": {"image": support::IMAGE}}),
            ),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let other = work.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("x.yaml"),
        format!(
            "apiVersion: berth.dev/v1\nkind: Application\nmetadata: {{name: other}}\nspec: {{image: {}}}\n",
            support::IMAGE
        ),
    )
    .unwrap();
    run(&berth, &["apply", "--prune", "-f", other.to_str().unwrap()]);

    std::fs::remove_file(dir.join("api.yaml")).unwrap();
    let plan = run(&berth, &["diff", "--prune", "-f", dir.to_str().unwrap()]);
    assert!(plan.contains("- application/api would be pruned"), "{plan}");
    let out = run(&berth, &["apply", "--prune", "-f", dir.to_str().unwrap()]);
    assert!(out.contains("application/api pruned"), "{out}");
    assert!(!out.contains("manual") && !out.contains("other"), "{out}");
    let (s, _) = berth.call(Method::GET, "/applications/api", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for kept in ["web", "manual", "other"] {
        let (s, _) = berth
            .call(Method::GET, &format!("/applications/{kept}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{kept}");
    }
    // A prune's deletes need the rights any delete needs: alice (a developer of pay)
    // may not delete the platform's environments.
    let (s, token) = berth
        .call(
            Method::POST,
            "/tokens",
            Some(serde_json::json!({"name": "t", "user": "alice"})),
        )
        .await;
    assert!(s.is_success(), "{token}");
    let alice = token["secret"].as_str().unwrap();
    // Her copy of the source has only her application: the rest would be pruned.
    let hers = work.path().join("alice").join("platform");
    std::fs::create_dir_all(&hers).unwrap();
    std::fs::copy(dir.join("web.yaml"), hers.join("web.yaml")).unwrap();
    let out = berth
        .cli_command(&["apply", "--prune", "-f", hers.to_str().unwrap()])
        .env("BERTH_TOKEN", alice)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("pruning Environment 'qa' is refused"),
        "{}",
        text(&out)
    );
    let (s, _) = berth.call(Method::GET, "/environments/qa", None).await;
    assert_eq!(s, StatusCode::OK);
}

/// Application `web` as a document: `MODE` in every environment, production's replicas
/// by its own override.
fn web(mode: &str, production_replicas: u32) -> serde_json::Value {
    serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {"image": support::IMAGE, "replicas": 1, "healthCheck": {"path": "/healthz"},
            "env": {"MODE": mode},
            "environments": {"production": {"replicas": production_replicas}}}})
}

/// `POST /apply` of `documents`, as a dry run with `dry_run`; the answer.
async fn apply(berth: &Berth, documents: &[serde_json::Value], dry_run: bool) -> serde_json::Value {
    let path = if dry_run { "/apply?dryRun=All" } else { "/apply" };
    let body = serde_json::json!({"documents": documents.iter().map(|d| serde_json::json!({"object": d})).collect::<Vec<_>>()});
    let (s, b) = berth.call(Method::POST, path, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{path}: {b}");
    b
}

/// Deploys `web`'s current spec to `env`; the deployment once it succeeded.
async fn deploy_web(berth: &Berth, env: &str) -> serde_json::Value {
    let (s, d) = berth
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(serde_json::json!({"environment": env})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let name = d["metadata"]["name"].as_str().unwrap().to_owned();
    berth
        .wait_phase(&name, "Succeeded", Duration::from_secs(60))
        .await
}

/// `web` running release 1 in qa and in production, each a Kubernetes cluster of its own
/// (fake API servers, which count the requests they get); the clusters, qa's first.
async fn web_in_qa_and_production(berth: &Berth, dir: &Path) -> [FakeCluster; 2] {
    let options = FakeOptions {
        ready_after: Duration::from_millis(100),
        ..FakeOptions::default()
    };
    let clusters = [
        FakeCluster::start(options.clone()).await.unwrap(),
        FakeCluster::start(options).await.unwrap(),
    ];
    for (env, fake) in ["qa", "production"].iter().zip(&clusters) {
        let cluster = format!("k-{env}");
        let (s, b) = berth
            .call(
                Method::PUT,
                &format!("/clusters/{cluster}"),
                Some(serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": cluster},
                    "spec": {"runtime": "kubernetes", "datacenter": "dc1",
                        "kubernetes": {"kubeconfig": {"inline": fake.kubeconfig()}, "context": "fake"}}})),
            )
            .await;
        assert!(s.is_success(), "{b}");
        let (s, b) = berth
            .call(
                Method::PUT,
                &format!("/environments/{env}"),
                Some(serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": env},
                    "spec": {"clusters": [{"cluster": cluster}]}})),
            )
            .await;
        assert!(s.is_success(), "{b}");
    }
    std::fs::create_dir_all(dir).unwrap();
    // JSON is YAML: the file is the document the API calls send.
    std::fs::write(dir.join("web.yaml"), web("a", 2).to_string()).unwrap();
    // Applied as source `apps`, so that a prune of the directory would delete it.
    run(berth, &["apply", "--prune", "-f", dir.to_str().unwrap()]);
    for env in ["qa", "production"] {
        assert_eq!(deploy_web(berth, env).await["spec"]["release"], 1);
    }
    clusters
}

/// What a store holds of `web`: the application, its releases, its deployments, events.
async fn stored(berth: &Berth) -> [serde_json::Value; 4] {
    let mut out = Vec::new();
    for path in [
        "/applications/web",
        "/applications/web/releases",
        "/deployments",
        "/events?limit=1000",
    ] {
        let (s, b) = berth.call(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        out.push(b);
    }
    out.try_into().unwrap()
}

/// `berth diff`, `apply --dry-run` and `POST /apply?dryRun=All` say which environments
/// a deploy of the change would roll a new release out to, and why; and they (with a
/// dry-run prune of the running application, and a dry-run `PATCH`) change nothing: not
/// the store (objects, releases, deployments, events) and not the clusters (no request
/// that writes). The real apply then answers the same, and the deploys after
/// it make exactly the releases named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_names_the_rollout_and_changes_nothing_in_the_store_or_on_the_clusters() {
    let berth = Berth::start().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("apps");
    let clusters = web_in_qa_and_production(&berth, &dir).await;
    // The rollouts are done; what the clusters get from here on is counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for fake in &clusters {
        fake.reset_requests();
    }
    let before = stored(&berth).await;

    // A config change of the application: both environments get a new release.
    let both = serde_json::json!([
        {"application": "web", "environment": "production", "runningRelease": 1, "release": 2,
            "newRelease": true, "changes": ["env"]},
        {"application": "web", "environment": "qa", "runningRelease": 1, "release": 2,
            "newRelease": true, "changes": ["env"]},
    ]);
    assert_eq!(apply(&berth, &[web("b", 2)], true).await["rollouts"], both);
    std::fs::write(dir.join("web.yaml"), web("b", 2).to_string()).unwrap();
    for verb in [&["diff"][..], &["apply", "--dry-run"][..]] {
        let args: Vec<&str> = verb
            .iter()
            .copied()
            .chain(["-f", dir.to_str().unwrap()])
            .collect();
        let out = run(&berth, &args);
        assert!(
            out.contains(
                "a deploy would roll out:\n  \
                 ~ web in production: release 1 -> new release 2 (env)\n  \
                 ~ web in qa: release 1 -> new release 2 (env)\n"
            ),
            "{verb:?}: {out}"
        );
        assert!(!out.contains('\x1b'), "piped, so plain: {out:?}");
    }
    // Unchanged: nothing rolls out.
    let unchanged = apply(&berth, &[web("a", 2)], true).await;
    assert!(unchanged["rollouts"].is_null(), "{unchanged}");
    // Production's own override: production alone.
    assert_eq!(
        apply(&berth, &[web("a", 3)], true).await["rollouts"],
        serde_json::json!([{"application": "web", "environment": "production", "runningRelease": 1,
            "release": 2, "newRelease": true, "changes": ["environments.production"]}])
    );

    // A dry-run prune of the running application stops nothing either.
    let moved = dir.parent().unwrap().join("web.yaml");
    std::fs::rename(dir.join("web.yaml"), &moved).unwrap();
    std::fs::write(
        dir.join("other.yaml"),
        serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "other"},
            "spec": {"image": support::IMAGE}})
        .to_string(),
    )
    .unwrap();
    let out = run(&berth, &["diff", "--prune", "-f", dir.to_str().unwrap()]);
    assert!(out.contains("- application/web would be pruned"), "{out}");
    std::fs::remove_file(dir.join("other.yaml")).unwrap();
    std::fs::rename(&moved, dir.join("web.yaml")).unwrap();

    // A single object's dry-run write, too.
    let (s, b) = berth
        .call(
            Method::PATCH,
            "/applications/web?dryRun=All",
            Some(serde_json::json!({"spec": {"env": {"MODE": "c"}}})),
        )
        .await;
    assert_eq!(
        (s, &b["spec"]["env"]["MODE"]),
        (StatusCode::OK, &serde_json::json!("c")),
        "{b}"
    );

    // Nothing stored, nothing sent to a cluster (a reconcile of a change would have
    // written by now: a deploy above took a fraction of a second).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stored(&berth).await, before);
    for (env, fake) in ["qa", "production"].iter().zip(&clusters) {
        let requests = fake.requests();
        assert_eq!(requests.writes(), 0, "{env}: {requests:?}");
    }

    // The real apply answers the same, and the deploys make the one release it named.
    assert_eq!(apply(&berth, &[web("b", 2)], false).await["rollouts"], both);
    for (env, fake) in ["qa", "production"].iter().zip(&clusters) {
        assert_eq!(deploy_web(&berth, env).await["spec"]["release"], 2, "{env}");
        let d = fake
            .object("deployments", &format!("default-{env}"), "web")
            .unwrap();
        assert_eq!(d["metadata"]["labels"]["berth.dev/release"], "2", "{env}: {d}");
    }
    let (_, releases) = berth.call(Method::GET, "/applications/web/releases", None).await;
    assert_eq!(releases["items"].as_array().map(Vec::len), Some(2), "{releases}");
}
