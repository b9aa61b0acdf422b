//! The build service with the real SQLite store, the real local registry and git
//! repositories made in the test: build once, failures, releases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{sync::Arc, time::Duration};

use berth_build::{BuildOptions, BuildService, RegistryOptions, Retry};
use berth_core::{
    objects::{Application, ApplicationSpec, Build, BuildKind, BuildPhase, ReleaseKind},
    ports::{BuildRequest, Builds, Store},
    repo,
};
use berth_store::SqliteStore;
use common::{Repo, fresh_repository, java_repo};
use serde_json::json;

struct Fixture {
    store: Arc<SqliteStore>,
    service: BuildService,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    fixture_on(store)
}

/// A build service on `store`, as a server (re)started on it makes.
fn fixture_on(store: Arc<SqliteStore>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let service = BuildService::new(
        store.clone(),
        BuildOptions {
            work_dir: dir.path().join("work"),
            cache_dir: dir.path().join("cache"),
            registry: RegistryOptions {
                insecure: vec!["127.0.0.1:5000".into(), "127.0.0.1:1".into()],
                retry: Retry {
                    attempts: 2,
                    first_wait: Duration::from_millis(10),
                },
                ..RegistryOptions::default()
            },
            docker: bollard::Docker::connect_with_defaults().ok(),
            concurrency: 2,
        },
    );
    Fixture {
        store,
        service,
        _dir: dir,
    }
}

impl Fixture {
    async fn app(&self, name: &str, spec: serde_json::Value) {
        let spec: ApplicationSpec = serde_json::from_value(spec).unwrap();
        let app = Application::new(name, spec);
        app.validate().unwrap();
        self.store
            .commit(vec![repo::create(&app).unwrap()], vec![])
            .await
            .unwrap();
    }

    async fn request(&self, app: &str, git_ref: Option<&str>) -> (Build, bool) {
        let t = self
            .service
            .request(BuildRequest {
                application: app.into(),
                git_ref: git_ref.map(str::to_owned),
                requested_by: "alice".into(),
            })
            .await
            .unwrap();
        (t.build, t.reused)
    }

    /// Waits for the build to end, reading its log the way the API's stream does.
    async fn finished(&self, name: &str) -> (Build, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut text = String::new();
        let mut offset = 0;
        loop {
            let chunk = self.service.log(name, offset).await.unwrap();
            text.push_str(&chunk.text);
            offset = chunk.next;
            if chunk.finished {
                let b = repo::get::<BuildKind>(self.store.as_ref(), name)
                    .await
                    .unwrap()
                    .unwrap();
                if b.status.phase.is_final() {
                    return (b, text);
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "build {name} did not end:\n{text}"
            );
            self.service.wait_log(name, offset, Duration::from_secs(1)).await;
        }
    }

    async fn releases(&self, app: &str) -> usize {
        repo::list_all::<ReleaseKind>(self.store.as_ref(), Some(app))
            .await
            .unwrap()
            .len()
    }
}

fn java_app(repo: &Repo, image: &str) -> serde_json::Value {
    json!({"image": image, "source": {"git": repo.url(), "builder": {"java": {"jar": "build/app.jar", "dependencies": "lib"}}}})
}

#[tokio::test]
async fn a_commit_is_built_once_and_released_by_digest() {
    let f = fixture().await;
    let repo = java_repo("once");
    f.app("web", java_app(&repo, &fresh_repository("once"))).await;
    let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = ended.clone();
    assert!(f.service.observe_builds(Box::new(move |phase, took| {
        sink.lock().unwrap().push((phase.to_owned(), took));
    })));

    // Two concurrent requests share one build.
    let (a, b) = tokio::join!(f.request("web", None), f.request("web", None));
    assert_eq!(a.0.metadata.name, b.0.metadata.name);
    assert!(a.1 != b.1, "one of them joined the other");
    let (build, log) = f.finished(&a.0.metadata.name).await;
    assert_eq!(build.status.phase, BuildPhase::Succeeded, "{log}");
    assert_eq!(
        build.spec.commit.as_deref(),
        Some(repo.git(&["rev-parse", "HEAD"]).as_str())
    );
    let digest = build.status.digest.clone().unwrap();
    assert!(log.contains("release 1 pins"), "{log}");
    assert!(build.status.log.contains(&digest));
    // The observer hears of it (just after the store does), with how long it ran.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ended.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no build observed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let ended = ended.lock().unwrap();
        assert_eq!(ended.len(), 1, "one build for two requests: {ended:?}");
        assert_eq!(ended[0].0, "Succeeded");
        assert!(ended[0].1 > Duration::ZERO && ended[0].1 < Duration::from_secs(120));
    }

    // Asking again: the same build and digest, no new release.
    let (again, reused) = f.request("web", Some("main")).await;
    assert!(reused);
    assert_eq!(again.metadata.name, build.metadata.name);
    assert_eq!(again.status.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(f.releases("web").await, 1);
    let release = repo::get::<ReleaseKind>(f.store.as_ref(), "web-1")
        .await
        .unwrap()
        .unwrap();
    assert!(release.spec.template.image.ends_with(&format!("@{digest}")));
    assert_eq!(release.spec.origin.build.as_deref(), Some("web-build-1"));
    assert_eq!(release.spec.origin.commit, build.spec.commit);

    // A new commit is a new build.
    repo.write("README", "changed");
    repo.commit("docs");
    let (third, reused) = f.request("web", None).await;
    assert!(!reused);
    assert_eq!(third.spec.number, 2);
    let (third, _) = f.finished(&third.metadata.name).await;
    // Only the README changed, which is not in the image: every layer was in the
    // registry already; only the config (it names the commit) is new.
    assert_eq!(third.status.phase, BuildPhase::Succeeded);
    assert_ne!(third.status.digest.as_deref(), Some(digest.as_str()));
    let pushed: Vec<&str> = third
        .status
        .layers
        .iter()
        .filter(|l| l.pushed)
        .map(|l| l.role.as_str())
        .collect();
    assert_eq!(pushed, ["config"]);
    assert_eq!(f.releases("web").await, 2);
}

#[tokio::test]
async fn failures_are_recorded_with_their_log_and_release_nothing() {
    let f = fixture().await;
    let repo = java_repo("bad");
    let cases = [
        (
            "bad-ref",
            java_app(&repo, &fresh_repository("x")),
            Some("no-such-branch"),
            "'no-such-branch' is not a branch, tag or commit",
        ),
        (
            "bad-url",
            json!({"image": fresh_repository("x"), "source": {"git": "file:///no/such/repo.git", "builder": {"java": {"jar": "a.jar"}}}}),
            None,
            "cannot fetch file:///no/such/repo.git",
        ),
        (
            "no-jar",
            json!({"image": fresh_repository("x"), "source": {"git": repo.url(), "builder": {"java": {"jar": "missing.jar"}}}}),
            None,
            "jar 'missing.jar' is not in the repository",
        ),
        (
            "unreachable",
            java_app(&repo, "127.0.0.1:1/nowhere/app"),
            None,
            "registry 127.0.0.1:1 is unreachable after 2 attempts",
        ),
        (
            "no-dockerfile",
            json!({"image": fresh_repository("x"), "source": {"git": repo.url(), "builder": {"dockerfile": {}}}}),
            None,
            "Dockerfile 'Dockerfile' is not in the repository",
        ),
        (
            "no-image",
            json!({"image": "127.0.0.1:5000/busybox:no-such-tag", "source": {"builder": "image"}}),
            None,
            "was not found in its registry",
        ),
    ];
    for (app, spec, git_ref, want) in cases {
        f.app(app, spec).await;
        let (build, _) = f.request(app, git_ref).await;
        let (build, log) = f.finished(&build.metadata.name).await;
        assert_eq!(build.status.phase, BuildPhase::Failed, "{app}: {log}");
        let message = build.status.message.clone().unwrap_or_default();
        assert!(message.contains(want), "{app}: {message}");
        assert!(
            build.status.log.contains(want),
            "{app}: the log says it too:\n{}",
            build.status.log
        );
        assert_eq!(f.releases(app).await, 0, "{app}: no release from a failed build");
    }
    // A failed build does not count: asking again builds again.
    let (retry, reused) = f.request("no-jar", None).await;
    assert!(!reused);
    assert_eq!(retry.spec.number, 2);
    // An application without a source cannot be built.
    f.app("plain", json!({"image": "127.0.0.1:5000/busybox:latest"}))
        .await;
    let e = f
        .service
        .request(BuildRequest {
            application: "plain".into(),
            git_ref: None,
            requested_by: "alice".into(),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("has no source to build"), "{e}");
}

#[tokio::test]
async fn dockerfile_builds_go_through_the_engine_and_failing_steps_fail() {
    let f = fixture().await;
    let repo = Repo::new();
    repo.write(
        "Dockerfile",
        "FROM localhost/busybox:latest\nCOPY index.html /www/index.html\nRUN echo built > /www/built.txt\n",
    );
    repo.write("index.html", "hello\n");
    repo.commit("dockerfile app");
    f.app("docker", json!({"image": fresh_repository("docker"), "source": {"git": repo.url(), "builder": {"dockerfile": {}}}}))
        .await;
    let (build, _) = f.request("docker", None).await;
    let (build, log) = f.finished(&build.metadata.name).await;
    assert_eq!(build.status.phase, BuildPhase::Succeeded, "{log}");
    assert!(log.contains("RUN echo built"), "{log}");
    assert_eq!(f.releases("docker").await, 1);

    repo.write(
        "Dockerfile",
        "FROM localhost/busybox:latest\nRUN echo about to fail && exit 3\n",
    );
    repo.commit("broken step");
    let (build, _) = f.request("docker", None).await;
    let (build, log) = f.finished(&build.metadata.name).await;
    assert_eq!(build.status.phase, BuildPhase::Failed, "{log}");
    assert!(
        log.contains("about to fail"),
        "the step's output is in the log:\n{log}"
    );
    assert!(
        build.status.message.unwrap().contains("the build failed"),
        "{log}"
    );
    assert_eq!(f.releases("docker").await, 1);
}

#[tokio::test]
async fn the_image_builder_resolves_and_an_interrupted_build_is_failed_on_recovery() {
    let f = fixture().await;
    f.app(
        "ext",
        json!({"image": "127.0.0.1:5000/busybox:latest", "source": {"builder": "image"}}),
    )
    .await;
    let (build, _) = f.request("ext", None).await;
    let (build, _) = f.finished(&build.metadata.name).await;
    assert_eq!(build.status.phase, BuildPhase::Succeeded);
    let (again, reused) = f.request("ext", None).await;
    assert!(reused && again.metadata.name == build.metadata.name);

    // A build a previous process left Running.
    let mut stale = build.clone();
    stale.metadata.name = "ext-build-9".into();
    stale.metadata.resource_version = None;
    stale.spec.number = 9;
    stale.status.phase = BuildPhase::Running;
    f.store
        .commit(vec![repo::create(&stale).unwrap()], vec![])
        .await
        .unwrap();
    assert_eq!(f.service.recover().await.unwrap(), 1);
    let stale = repo::get::<BuildKind>(f.store.as_ref(), "ext-build-9")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stale.status.phase, BuildPhase::Failed);
}

/// Blobs a build uploaded (not found, not mounted).
fn uploaded(build: &Build) -> Vec<&str> {
    build
        .status
        .layers
        .iter()
        .filter(|l| l.pushed)
        .map(|l| l.role.as_str())
        .collect()
}

#[tokio::test]
async fn a_second_application_on_the_same_base_uploads_only_its_own_layers() {
    let f = fixture().await;
    let dockerfile_app = |text: &str| {
        let repo = Repo::new();
        repo.write(
            "Dockerfile",
            "FROM localhost/busybox:latest\nCOPY index.html /www/index.html\n",
        );
        repo.write("index.html", text);
        repo.commit("app");
        repo
    };
    let (one, two, three) = (
        dockerfile_app("one\n"),
        dockerfile_app("two\n"),
        dockerfile_app("three\n"),
    );
    let spec = |repo: &Repo, what: &str| json!({"image": fresh_repository(what), "source": {"git": repo.url(), "builder": {"dockerfile": {}}}});
    f.app("one", spec(&one, "mount-one")).await;
    f.app("two", spec(&two, "mount-two")).await;
    let (b, _) = f.request("one", None).await;
    let (first, log) = f.finished(&b.metadata.name).await;
    assert_eq!(first.status.phase, BuildPhase::Succeeded, "{log}");
    // Its own repository was empty: base layer, its layer and config went up.
    assert_eq!(uploaded(&first), ["layer", "layer", "config"], "{log}");

    let (b, _) = f.request("two", None).await;
    let (second, log) = f.finished(&b.metadata.name).await;
    assert_eq!(second.status.phase, BuildPhase::Succeeded, "{log}");
    assert_eq!(
        uploaded(&second),
        ["layer", "config"],
        "the base layer is mounted from the first application's repository:\n{log}"
    );
    assert_eq!(first.status.layers[0].digest, second.status.layers[0].digest);
    assert!(log.contains("mounted from berth-test/mount-one"), "{log}");

    // A restarted server knows where the blobs of earlier builds are.
    let restarted = fixture_on(f.store.clone());
    restarted.service.recover().await.unwrap();
    restarted.app("three", spec(&three, "mount-three")).await;
    let (b, _) = restarted.request("three", None).await;
    let (third, log) = restarted.finished(&b.metadata.name).await;
    assert_eq!(third.status.phase, BuildPhase::Succeeded, "{log}");
    assert_eq!(uploaded(&third), ["layer", "config"], "{log}");
}

/// The servlet sample with its pom.xml in a fresh repository.
fn maven_repo() -> Repo {
    let repo = Repo::new();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-webapp");
    common::copy_dir(&sample, repo.path());
    repo.commit("the servlet sample");
    repo
}

#[tokio::test]
async fn a_pom_is_built_by_maven_with_a_cached_repository_and_a_failure_releases_nothing() {
    let f = fixture().await;
    let repo = maven_repo();
    f.app(
        "webapp",
        json!({"image": fresh_repository("maven"), "resources": {"memory": "256Mi"},
               "source": {"git": repo.url(), "builder": {"java": {"war": "target/java-webapp.war"}}}}),
    )
    .await;
    let (b, _) = f.request("webapp", None).await;
    let (built, log) = f.finished(&b.metadata.name).await;
    assert_eq!(built.status.phase, BuildPhase::Succeeded, "{log}");
    // Maven's own output streamed into the build log.
    assert!(log.contains("mvn package"), "{log}");
    assert!(log.contains("BUILD SUCCESS"), "{log}");
    assert!(
        log.contains("target/java-webapp.war: 0 librar(ies) in WEB-INF/lib, 3 class(es)"),
        "{log}"
    );
    assert_eq!(f.releases("webapp").await, 1);
    // The local repository is kept for the next build.
    let cached = f
        ._dir
        .path()
        .join("cache/maven-repository/jakarta/servlet/jakarta.servlet-api/6.0.0");
    assert!(cached.is_dir(), "{}", cached.display());

    repo.write(
        "src/main/java/dev/berth/webapp/Broken.java",
        "package dev.berth.webapp; class Broken { int x = ; }",
    );
    repo.commit("break the build");
    let (b, _) = f.request("webapp", None).await;
    let (failed, log) = f.finished(&b.metadata.name).await;
    assert_eq!(failed.status.phase, BuildPhase::Failed, "{log}");
    let message = failed.status.message.unwrap();
    assert!(
        message.contains("the Maven build failed (exit code 1)"),
        "{message}"
    );
    assert!(message.contains("Compilation failure"), "{message}");
    assert!(message.contains("Broken.java"), "{message}");
    assert!(
        log.contains("Broken.java"),
        "the compiler's error is in the log:\n{log}"
    );
    assert!(
        failed.status.log.contains("BUILD FAILURE"),
        "and in the stored log"
    );
    assert_eq!(f.releases("webapp").await, 1, "no release from a failed build");
}
