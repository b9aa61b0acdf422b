//! The java builder against the real local registry (`scripts/setup-runtime.sh up` makes
//! it and the JRE base image) and real git repositories made in the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use berth_build::{
    Registry, RegistryOptions, Retry,
    git::{self, fetch},
    java::{self, JavaError},
    log::BuildLog,
    registry::RegistryError,
};
use berth_core::objects::JavaBuilder;
use common::{
    Container, Repo, fresh_repository, get_when_ready, java_repo, war_repo, write_java_app, write_war_app,
};

fn registry() -> Registry {
    Registry::new(RegistryOptions {
        insecure: vec!["127.0.0.1:5000".into(), "127.0.0.1:1".into()],
        ..RegistryOptions::default()
    })
}

fn jar_settings() -> JavaBuilder {
    serde_json::from_value(serde_json::json!({"jar": "build/app.jar", "dependencies": "lib"})).unwrap()
}

fn war_settings() -> JavaBuilder {
    serde_json::from_value(serde_json::json!({"war": "build/shop.war"})).unwrap()
}

/// How long Tomcat may take to answer its first request (on 2 busy cores).
const TOMCAT_START: Duration = Duration::from_secs(60);

async fn build(
    repo: &Repo,
    target: &str,
    settings: &JavaBuilder,
) -> Result<berth_build::image::Pushed, JavaError> {
    build_with(&registry(), repo, target, settings).await
}

async fn build_with(
    registry: &Registry,
    repo: &Repo,
    target: &str,
    settings: &JavaBuilder,
) -> Result<berth_build::image::Pushed, JavaError> {
    let scratch = tempfile::tempdir().unwrap();
    let tree = fetch(&repo.url(), "main", &scratch.path().join("r")).unwrap();
    let log = BuildLog::default();
    let app = java::prepare(
        &tree,
        settings,
        &log,
        &scratch.path().join("work"),
        &scratch.path().join("m2"),
    )
    .await?;
    let target = Registry::reference(&format!("{target}:t1")).unwrap();
    java::push(registry, &target, &app, settings, 8080, &tree.commit, &log).await
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

    let (_scratch, tree, log, app) = prepared_jar(&repo).await;
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
    let (_scratch, tree, log, app) = prepared_jar(&repo).await;
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

#[tokio::test]
async fn a_war_runs_as_the_root_application_of_tomcat_and_serves_http() {
    let repo = war_repo("Hello");
    let target = fresh_repository("war");
    let pushed = build(&repo, &target, &war_settings()).await.unwrap();
    // The Tomcat base (JRE and Tomcat layers) was mounted from its own repository.
    assert_eq!(
        pushed_roles(&pushed),
        ["dependencies", "resources", "classes", "config"]
    );
    assert_eq!(
        pushed.layers.iter().filter(|l| l.role == "base").count(),
        2,
        "JRE + Tomcat"
    );
    let again = build(&repo, &fresh_repository("war-again"), &war_settings())
        .await
        .unwrap();
    assert_eq!(pushed.digest, again.digest, "reproducible");

    let image = format!("{target}@{}", pushed.digest);
    // What Berth gives a Java replica limited to 256 MiB.
    let jvm = berth_core::jvm::size(Some(256 << 20), 30).java_tool_options();
    let app = Container::run(
        &image,
        &[
            "--memory",
            "256m",
            "-e",
            "GREETING=Servus",
            "-e",
            "BERTH_ENVIRONMENT=qa",
            "-e",
            &format!("JAVA_TOOL_OPTIONS={jvm}"),
        ],
    );
    let base = format!("http://{}", app.address());
    let page = get_when_ready(&format!("{base}/"), TOMCAT_START, &app).await;
    assert!(page.contains("Servus from java-webapp"), "{page}");
    assert!(page.contains("<strong>qa</strong>"), "{page}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let css = reqwest::get(format!("{base}/style.css")).await.unwrap();
    assert_eq!(css.status(), 200, "static files from the WAR");
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css"),
        "{:?}",
        css.headers()
    );
    let missing = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);

    // Load inside the limit: 8 clients, 2,000 pages; it keeps serving, nothing is killed.
    let client = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), format!("{base}/"));
        clients.push(tokio::spawn(async move {
            for _ in 0..250 {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(app.exit_code(), None, "{}", app.logs());
    assert!(
        app.logs().contains("Picked up JAVA_TOOL_OPTIONS: -Xmx96m"),
        "{}",
        app.logs()
    );
    eprintln!("memory after 2,000 requests in 256 MiB: {}", app.memory());
}

#[tokio::test]
async fn a_war_is_served_at_its_context_path_with_its_jvm_options() {
    let repo = war_repo("Hello");
    let target = fresh_repository("war-context");
    let settings: JavaBuilder = serde_json::from_value(serde_json::json!({
        "war": "build/shop.war", "contextPath": "/shop", "jvmOptions": ["-Dberth.test=yes"]}))
    .unwrap();
    let pushed = build(&repo, &target, &settings).await.unwrap();
    let app = Container::run(&format!("{target}@{}", pushed.digest), &[]);
    let base = format!("http://{}", app.address());
    let health = get_when_ready(&format!("{base}/shop/healthz"), TOMCAT_START, &app).await;
    assert_eq!(health, "ok\n");
    let page = reqwest::get(format!("{base}/shop")).await.unwrap();
    assert!(page.status().is_success() || page.status().is_redirection());
    assert_eq!(
        reqwest::get(format!("{base}/healthz")).await.unwrap().status(),
        404
    );
    let logs = app.logs();
    assert!(
        logs.contains("Deploying web application directory [/usr/local/tomcat/webapps/shop]"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_one_class_change_of_a_war_pushes_only_its_classes_layer() {
    let repo = war_repo("First");
    let target = fresh_repository("war-one-class");
    let first = build(&repo, &target, &war_settings()).await.unwrap();
    write_war_app(&repo, "Second", &[]);
    repo.commit("change one class");
    let second = build(&repo, &target, &war_settings()).await.unwrap();
    assert_ne!(first.digest, second.digest);
    assert_eq!(pushed_roles(&second), ["classes", "config"]);
}

#[tokio::test]
async fn a_war_that_fails_to_deploy_stops_tomcat_at_once_with_the_reason() {
    let repo = Repo::new();
    write_war_app(
        &repo,
        "Hello",
        &[(
            "dev/berth/webapp/Broken.java",
            "package dev.berth.webapp;\n\
             @jakarta.servlet.annotation.WebListener\n\
             public class Broken implements jakarta.servlet.ServletContextListener {\n\
               public void contextInitialized(jakarta.servlet.ServletContextEvent e) {\n\
                 throw new IllegalStateException(\"no database configured\");\n\
               }\n\
             }\n",
        )],
    );
    repo.commit("a listener that throws");
    let target = fresh_repository("war-broken");
    let pushed = build(&repo, &target, &war_settings()).await.unwrap();
    let app = Container::run(&format!("{target}@{}", pushed.digest), &[]);
    let code = exited(&app).await;
    assert_eq!(code, 3, "{}", app.logs());
    let logs = app.logs();
    assert!(logs.contains("no database configured"), "{logs}");
    assert!(
        logs.contains("berth: the web application at / failed to start"),
        "{logs}"
    );
}

/// The classic missing class: a library the pom marks `provided` that Tomcat does not
/// provide. Maven builds the WAR without it, and Tomcat must stop at once saying which
/// class is missing, not serve 404s.
#[tokio::test]
async fn a_war_missing_a_class_at_run_time_stops_tomcat_at_once_naming_it() {
    let repo = Repo::new();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-webapp");
    common::copy_dir(&sample, repo.path());
    let pom = std::fs::read_to_string(repo.path().join("pom.xml")).unwrap();
    let provided = "<dependencies>\n    <dependency>\n      <groupId>org.apache.commons</groupId>\n      \
                    <artifactId>commons-lang3</artifactId>\n      <version>3.14.0</version>\n      \
                    <scope>provided</scope>\n    </dependency>";
    repo.write("pom.xml", pom.replacen("<dependencies>", provided, 1));
    repo.write(
        "src/main/java/dev/berth/webapp/Startup.java",
        "package dev.berth.webapp;\n\
         @jakarta.servlet.annotation.WebListener\n\
         public class Startup implements jakarta.servlet.ServletContextListener {\n\
           public void contextInitialized(jakarta.servlet.ServletContextEvent e) {\n\
             e.getServletContext().log(org.apache.commons.lang3.StringUtils.capitalize(\"started\"));\n\
           }\n\
         }\n",
    );
    repo.commit("a provided library Tomcat does not have");
    let target = fresh_repository("war-missing-class");
    let settings = serde_json::from_value(serde_json::json!({"war": "target/java-webapp.war"})).unwrap();
    let pushed = build(&repo, &target, &settings).await.unwrap();
    let app = Container::run(&format!("{target}@{}", pushed.digest), &[]);
    let code = exited(&app).await;
    assert_eq!(code, 3, "{}", app.logs());
    let logs = app.logs();
    assert!(logs.contains("org/apache/commons/lang3/StringUtils"), "{logs}");
    // The reason is the last line, below the stack traces, where an exit reason's last
    // log lines find it.
    let last = logs
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("berth: the web application at / failed to start")
            && last.contains("ClassNotFoundException: org.apache.commons.lang3.StringUtils"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_war_where_a_jar_belongs_and_a_war_on_a_jre_are_refused() {
    let repo = war_repo("Hello");
    let as_jar: JavaBuilder = serde_json::from_value(serde_json::json!({"jar": "build/shop.war"})).unwrap();
    let e = build(&repo, &fresh_repository("war-as-jar"), &as_jar)
        .await
        .unwrap_err();
    assert!(matches!(e, JavaError::WarAsJar { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("write war: build/shop.war instead of jar:"),
        "{e}"
    );

    let on_jre: JavaBuilder = serde_json::from_value(serde_json::json!({
        "war": "build/shop.war", "baseImage": berth_core::objects::DEFAULT_JAVA_BASE}))
    .unwrap();
    let target = fresh_repository("war-on-jre");
    let e = build(&repo, &target, &on_jre).await.unwrap_err();
    assert!(matches!(e, JavaError::NotServletBase { .. }), "{e}");
    assert!(e.to_string().contains("127.0.0.1:5000/berth/tomcat:10.1"), "{e}");
    // Nothing was written: no manifest under the tag.
    let gone = registry()
        .resolve(&Registry::reference(&format!("{target}:t1")).unwrap(), None)
        .await;
    assert!(matches!(gone, Err(RegistryError::NotFound { .. })), "{gone:?}");

    let jar_repo = java_repo("x");
    let jar_as_war: JavaBuilder =
        serde_json::from_value(serde_json::json!({"war": "build/app.jar"})).unwrap();
    let e = build(&jar_repo, &fresh_repository("jar-as-war"), &jar_as_war)
        .await
        .unwrap_err();
    assert!(matches!(e, JavaError::NotAWar { .. }), "{e}");
}

#[tokio::test]
async fn a_second_web_application_mounts_the_layers_it_shares_with_the_first() {
    let first_repo = war_repo("First");
    // The same libraries and files, other classes: another team's build of the sample.
    let second_repo = Repo::new();
    std::fs::create_dir_all(second_repo.path().join("lib")).unwrap();
    std::fs::copy(
        first_repo.path().join("lib/dep.jar"),
        second_repo.path().join("lib/dep.jar"),
    )
    .unwrap();
    write_war_app(&second_repo, "Second", &[]);
    second_repo.commit("second app");
    let registry = registry();
    let first = build_with(
        &registry,
        &first_repo,
        &fresh_repository("shared-a"),
        &war_settings(),
    )
    .await
    .unwrap();
    assert_eq!(
        pushed_roles(&first),
        ["dependencies", "resources", "classes", "config"]
    );
    let second = build_with(
        &registry,
        &second_repo,
        &fresh_repository("shared-b"),
        &war_settings(),
    )
    .await
    .unwrap();
    assert_eq!(
        pushed_roles(&second),
        ["classes", "config"],
        "WEB-INF/lib and the files are mounted from the first application's repository"
    );
}

/// The repository's commit fetched and prepared with [`jar_settings`] (its scratch
/// directory kept alive by the caller).
async fn prepared_jar(repo: &Repo) -> (tempfile::TempDir, git::Tree, BuildLog, java::AppFiles) {
    let scratch = tempfile::tempdir().unwrap();
    let tree = fetch(&repo.url(), "main", &scratch.path().join("r")).unwrap();
    let log = BuildLog::default();
    let app = java::prepare(
        &tree,
        &jar_settings(),
        &log,
        scratch.path(),
        &scratch.path().join("m2"),
    )
    .await
    .unwrap();
    (scratch, tree, log, app)
}

/// The exit code of `app`, which must stop within [`TOMCAT_START`].
async fn exited(app: &Container) -> i64 {
    let start = std::time::Instant::now();
    loop {
        if let Some(code) = app.exit_code() {
            return code;
        }
        assert!(start.elapsed() < TOMCAT_START, "still running:\n{}", app.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
