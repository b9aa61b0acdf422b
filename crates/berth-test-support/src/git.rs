//! Git repositories made with the git CLI in a temporary directory, for tests that build
//! from git or sync from it.

use std::{path::Path, process::Command};

/// A git repository in a temporary directory, on branch `main`.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// An empty repository.
    #[must_use]
    pub fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// Its work tree.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Its `file://` URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Runs git in the work tree (as a user of its own, never signing); its trimmed
    /// output. Panics when git fails.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=t@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Writes file `path` (relative to the work tree), making its directories.
    pub fn write(&self, path: &str, data: impl AsRef<[u8]>) {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// Removes file `path` (relative to the work tree).
    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.path().join(path)).unwrap();
    }

    /// Commits everything and returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

impl Default for Repo {
    fn default() -> Self {
        Self::new()
    }
}
