//! Every example under `examples/` applies cleanly to a real server, with the real CLI,
//! and means what it says: no label that shadows a spec field (a `labels: {team: demo}`
//! that leaves the application in team `default`), and the applications land in the
//! team their documents name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes
)]

mod support;

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use support::Berth;

/// The example manifests, with `GIT_URL` (which scripts/up.sh fills in) replaced, copied
/// into `into`: every `*.yaml` under `examples/`, whatever its depth.
fn example_manifests(into: &Path) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut found = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap()
                .replace("GIT_URL", "file:///srv/git/java-hello");
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('/', "--");
            let copy = into.join(rel);
            std::fs::write(&copy, text).unwrap();
            copy
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies_and_lands_where_it_says() {
    let berth = Berth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files = example_manifests(dir.path());
    assert!(files.len() >= 3, "examples found: {files:?}");
    let mut args = vec!["apply".to_owned()];
    for f in &files {
        args.push("-f".to_owned());
        args.push(f.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = berth.cli(&args);
    assert!(
        out.status.success(),
        "berth apply of the examples failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each application is in the team its document names, and that team exists.
    for app in ["hello", "java-hello"] {
        let (status, doc) = berth
            .call(Method::GET, &format!("/applications/{app}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert_eq!(doc["spec"]["team"], "demo", "{app} is not in team demo: {doc}");
    }
    assert_eq!(
        berth.call(Method::GET, "/teams/demo", None).await.0,
        StatusCode::OK
    );
    let (_, production) = berth.call(Method::GET, "/environments/production", None).await;
    assert_eq!(production["spec"]["production"], true, "{production}");

    // No stored object carries a label named like a field of its own spec: such a label
    // was meant as that field and is ignored.
    for plural in ["teams", "clusters", "environments", "applications"] {
        let (_, list) = berth.call(Method::GET, &format!("/{plural}"), None).await;
        for item in list["items"].as_array().unwrap() {
            let labels = item["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let spec = item["spec"].as_object().cloned().unwrap_or_default();
            for key in labels.keys() {
                assert!(
                    !spec.contains_key(key),
                    "{plural}/{}: label '{key}' looks like it was meant as spec.{key}",
                    item["metadata"]["name"]
                );
            }
        }
    }
}
