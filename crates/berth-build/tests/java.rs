//! The java builder against the real local registry (`scripts/setup-runtime.sh up` makes
//! it and the JRE base image) and real git repositories made in the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use berth_build::{
    Registry, RegistryOptions, Retry,
    git::fetch,
    java::{self, JavaError},
    log::BuildLog,
    registry::RegistryError,
};
use berth_core::objects::JavaBuilder;
use common::{Repo, fresh_repository, java_repo, write_java_app};

fn registry() -> Registry {
    Registry::new(RegistryOptions {
        insecure: vec!["127.0.0.1:5000".into(), "127.0.0.1:1".into()],
        ..RegistryOptions::default()
    })
}

fn jar_settings() -> JavaBuilder {
    serde_json::from_value(serde_json::json!({"jar": "build/app.jar", "dependencies": "lib"})).unwrap()
}

async fn build(
    repo: &Repo,
    target: &str,
    settings: &JavaBuilder,
) -> Result<berth_build::image::Pushed, JavaError> {
    let scratch = tempfile::tempdir().unwrap();
    let tree = fetch(&repo.url(), "main", &scratch.path().join("r")).unwrap();
    let log = BuildLog::default();
    let app = java::prepare(&tree, settings, &log).await?;
    let target = Registry::reference(&format!("{target}:t1")).unwrap();
    java::push(&registry(), &target, &app, settings, 8080, &tree.commit, &log).await
}

fn pushed_roles(p: &berth_build::image::Pushed) -> Vec<&str> {
    p.layers
        .iter()
        .filter(|l| l.pushed)
        .map(|l| l.role.as_str())
        .collect()
}

#[tokio::test]
async fn two_clean_builds_of_one_commit_give_the_same_digest() {
    let repo = java_repo("hello");
    let a = build(&repo, &fresh_repository("repro-a"), &jar_settings())
        .await
        .unwrap();
    let b = build(&repo, &fresh_repository("repro-b"), &jar_settings())
        .await
        .unwrap();
    assert_eq!(a.digest, b.digest, "bit-for-bit reproducible");
    // Each repository was empty: everything of the application was uploaded there, and
    // the base image's blobs were mounted from its own repository, not uploaded.
    assert_eq!(
        pushed_roles(&a),
        ["dependencies", "resources", "classes", "config"]
    );
    // A clone in another directory (another checkout time) changes nothing either.
    let c = build(&repo, &fresh_repository("repro-c"), &jar_settings())
        .await
        .unwrap();
    assert_eq!(c.digest, a.digest);
}

#[tokio::test]
async fn a_one_class_change_pushes_only_the_classes_layer() {
    let repo = java_repo("first");
    let target = fresh_repository("one-class");
    let first = build(&repo, &target, &jar_settings()).await.unwrap();
    write_java_app(&repo, "second");
    repo.commit("change one class");
    let second = build(&repo, &target, &jar_settings()).await.unwrap();
    assert_ne!(first.digest, second.digest);
    assert_eq!(pushed_roles(&second), ["classes", "config"]);
    let classes = second.layers.iter().find(|l| l.role == "classes").unwrap();
    let base: u64 = second
        .layers
        .iter()
        .filter(|l| l.role == "base")
        .map(|l| l.size)
        .sum();
    assert!(
        classes.size * 100 < base,
        "the pushed layer is small: {} vs {base}",
        classes.size
    );
}

#[tokio::test]
async fn sources_are_compiled_with_javac() {
    let repo = java_repo("compiled");
    let settings: JavaBuilder = serde_json::from_value(serde_json::json!({
        "sources": "src/main/java", "resources": "src/main/resources", "mainClass": "dev.berth.hello.Main"}))
    .unwrap();
    let a = build(&repo, &fresh_repository("javac-a"), &settings)
        .await
        .unwrap();
    let b = build(&repo, &fresh_repository("javac-b"), &settings)
        .await
        .unwrap();
    assert_eq!(a.digest, b.digest, "javac output is reproducible too");

    repo.write(
        "src/main/java/dev/berth/hello/Broken.java",
        "package dev.berth.hello; class Broken { int x = ; }",
    );
    repo.commit("break it");
    let e = build(&repo, &fresh_repository("javac-c"), &settings)
        .await
        .unwrap_err();
    assert!(matches!(e, JavaError::Compile { .. }), "{e}");
    assert!(e.to_string().contains("Broken.java"), "{e}");
}

#[tokio::test]
async fn missing_inputs_and_unreachable_registries_fail_with_the_reason() {
    let repo = java_repo("x");
    let missing: JavaBuilder = serde_json::from_value(serde_json::json!({"jar": "build/nope.jar"})).unwrap();
    let e = build(&repo, &fresh_repository("missing"), &missing)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("jar 'build/nope.jar' is not in the repository at commit"),
        "{e}"
    );

    let scratch = tempfile::tempdir().unwrap();
    let tree = fetch(&repo.url(), "main", &scratch.path().join("r")).unwrap();
    let log = BuildLog::default();
    let app = java::prepare(&tree, &jar_settings(), &log).await.unwrap();
    let registry = Registry::new(RegistryOptions {
        insecure: vec!["127.0.0.1:5000".into(), "127.0.0.1:1".into()],
        retry: Retry {
            attempts: 3,
            first_wait: Duration::from_millis(10),
        },
        ..RegistryOptions::default()
    });
    let target = Registry::reference("127.0.0.1:1/nowhere/app:t").unwrap();
    let e = java::push(
        &registry,
        &target,
        &app,
        &jar_settings(),
        8080,
        &tree.commit,
        &log,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            JavaError::Registry(RegistryError::Unreachable { attempts: 3, .. })
        ),
        "{e}"
    );
    assert_eq!(log.text().matches("retrying in").count(), 2, "{}", log.text());
}

#[tokio::test]
async fn wrong_credentials_are_refused_without_retries() {
    // A registry that refuses every request, as one does with wrong credentials.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"test\"")],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut credentials = berth_build::Credentials::default();
    credentials.insert(&addr.to_string(), "alice", "wrong");
    let registry = Registry::new(RegistryOptions {
        insecure: vec!["127.0.0.1:5000".into(), addr.to_string()],
        credentials,
        ..RegistryOptions::default()
    });
    let repo = java_repo("creds");
    let scratch = tempfile::tempdir().unwrap();
    let tree = fetch(&repo.url(), "main", &scratch.path().join("r")).unwrap();
    let log = BuildLog::default();
    let app = java::prepare(&tree, &jar_settings(), &log).await.unwrap();
    let target = Registry::reference(&format!("{addr}/team/app:t")).unwrap();
    let started = std::time::Instant::now();
    let e = java::push(
        &registry,
        &target,
        &app,
        &jar_settings(),
        8080,
        &tree.commit,
        &log,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, JavaError::Registry(RegistryError::Unauthorized { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("check the credentials"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no retries for a refusal"
    );
}
