//! Fetching sources from real git repositories made in the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use berth_build::git::{GitError, fetch};
use common::Repo;

#[test]
fn fetches_branches_tags_and_commits_and_records_the_exact_commit() {
    let repo = Repo::new();
    repo.write("README", "one");
    repo.write("bin/run.sh", "#!/bin/sh\n");
    std::process::Command::new("chmod")
        .args(["+x", &format!("{}/bin/run.sh", repo.path().display())])
        .status()
        .unwrap();
    let first = repo.commit("first");
    repo.git(&["tag", "v1"]);
    repo.write("README", "two");
    let second = repo.commit("second");

    let scratch = tempfile::tempdir().unwrap();
    let tree = fetch(&repo.url(), "main", &scratch.path().join("a")).unwrap();
    assert_eq!(tree.commit, second);
    assert_eq!(tree.files["README"].data, b"two");
    assert!(tree.files["bin/run.sh"].executable);
    assert_eq!(tree.under("bin").keys().copied().collect::<Vec<_>>(), ["run.sh"]);

    let tree = fetch(&repo.url(), "v1", &scratch.path().join("b")).unwrap();
    assert_eq!(
        (tree.commit.as_str(), tree.files["README"].data.as_slice()),
        (first.as_str(), b"one".as_slice())
    );
    let tree = fetch(&repo.url(), &first, &scratch.path().join("c")).unwrap();
    assert_eq!(tree.commit, first);
}

#[test]
fn bad_urls_and_refs_say_what_is_wrong() {
    let repo = Repo::new();
    repo.write("README", "one");
    repo.commit("first");
    let scratch = tempfile::tempdir().unwrap();
    let e = fetch(&repo.url(), "nope", &scratch.path().join("a")).unwrap_err();
    assert!(matches!(e, GitError::UnknownRef { .. }), "{e}");
    assert!(
        e.to_string().contains("'nope' is not a branch, tag or commit"),
        "{e}"
    );
    let e = fetch("file:///no/such/repo.git", "main", &scratch.path().join("b")).unwrap_err();
    assert!(matches!(e, GitError::Fetch { .. }), "{e}");
    let e = fetch("http://127.0.0.1:1/x.git", "main", &scratch.path().join("c")).unwrap_err();
    assert!(matches!(e, GitError::Fetch { .. }), "{e}");
}
