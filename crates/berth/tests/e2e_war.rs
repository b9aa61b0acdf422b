//! A WAR that cannot start, end to end: built by Maven through the `berth` binary from a
//! git repository made in the test, deployed to qa on real Podman, its rollout fails long
//! before the progress deadline, saying Tomcat's exit code and the class it missed.
//! Needs `scripts/setup-runtime.sh up` (Podman API, registry, Tomcat base, Maven).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::json;
use support::Berth;

/// The servlet sample with a listener that needs a library the pom marks `provided`,
/// which Tomcat does not have, committed in a fresh repository.
fn broken_webapp() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/java-webapp");
    for part in ["pom.xml", "src"] {
        assert!(
            Command::new("cp")
                .arg("-r")
                .arg(sample.join(part))
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
    }
    let pom = std::fs::read_to_string(dir.path().join("pom.xml")).unwrap();
    let provided = "<dependencies>\n    <dependency>\n      <groupId>org.apache.commons</groupId>\n      \
                    <artifactId>commons-lang3</artifactId>\n      <version>3.14.0</version>\n      \
                    <scope>provided</scope>\n    </dependency>";
    std::fs::write(
        dir.path().join("pom.xml"),
        pom.replacen("<dependencies>", provided, 1),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/main/java/dev/berth/webapp/Startup.java"),
        "package dev.berth.webapp;\n\
         @jakarta.servlet.annotation.WebListener\n\
         public class Startup implements jakarta.servlet.ServletContextListener {\n\
           public void contextInitialized(jakarta.servlet.ServletContextEvent e) {\n\
             e.getServletContext().log(org.apache.commons.lang3.StringUtils.capitalize(\"started\"));\n\
           }\n\
         }\n",
    )
    .unwrap();
    support::commit_all(dir.path(), "broken");
    dir
}

#[tokio::test]
async fn a_war_that_cannot_start_fails_its_rollout_at_once_with_tomcats_exit_and_the_missing_class() {
    let berth = Berth::start().await;
    // The deadline is the outer bound; the failure must come long before it.
    berth.platform(120).await;
    let repo = broken_webapp();
    let image = format!("127.0.0.1:5000/berth-e2e/broken-webapp-{}", berth.cluster);
    let app = json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "webapp"},
        "spec": {"image": image,
            "source": {"git": format!("file://{}", repo.path().display()), "ref": "main",
                "builder": {"java": {"war": "target/java-webapp.war"}}},
            "healthCheck": {"path": "/healthz", "intervalSeconds": 1}, "resources": {"memory": "256Mi"}}});
    let (s, b) = berth.call(Method::PUT, "/applications/webapp", Some(app)).await;
    assert!(s.is_success(), "{b}");

    let out = berth.cli(&["build", "webapp"]);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "Maven builds it: the library is provided:\n{log}"
    );

    let started = Instant::now();
    let out = berth.cli(&["deploy", "webapp", "--env", "qa", "--no-wait"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let failed = berth
        .wait_phase("webapp-qa-1", "Failed", Duration::from_secs(60))
        .await;
    eprintln!(
        "the WAR's rollout failed {:?} after the deploy",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "not the 120 s deadline"
    );
    let why = failed["status"]["message"].as_str().unwrap();
    assert!(why.contains("exited with code 3"), "{failed}");
    assert!(
        why.contains("failed to start (STOPPED): java.lang.ClassNotFoundException: org.apache.commons.lang3.StringUtils"),
        "the missing class is named on Tomcat's last line: {failed}"
    );
}
