//! Fetching a source: clone the repository (bare, into a scratch directory), resolve the
//! branch, tag or commit to the exact commit, and read that commit's files.
//!
//! gix does the work; for `file://` URLs it runs the `git` binary's `upload-pack`, so the
//! build host needs git installed.

use std::{collections::BTreeMap, path::Path, sync::atomic::AtomicBool};

/// Errors fetching a source.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository could not be cloned (wrong URL, unreachable, not a repository).
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The URL.
        url: String,
        /// What failed, with its causes.
        message: String,
    },
    /// The branch, tag or commit does not exist in the repository.
    #[error("'{git_ref}' is not a branch, tag or commit of {url}")]
    UnknownRef {
        /// The URL.
        url: String,
        /// The ref asked for.
        git_ref: String,
    },
    /// The commit's objects could not be read.
    #[error("cannot read commit {commit} of {url}: {message}")]
    Read {
        /// The URL.
        url: String,
        /// The commit.
        commit: String,
        /// What failed.
        message: String,
    },
}

/// Result of this module.
pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// One file of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Its content (for a symlink: the target).
    pub data: Vec<u8>,
    /// Whether git records it as executable.
    pub executable: bool,
    /// Whether it is a symbolic link.
    pub symlink: bool,
}

/// The files of one commit, by path (`dir/file`, `/`-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The exact commit (40 hex digits).
    pub commit: String,
    /// Every file, sorted by path.
    pub files: BTreeMap<String, File>,
}

impl Tree {
    /// The files below directory `dir` (`.` for all), with paths relative to it.
    #[must_use]
    pub fn under(&self, dir: &str) -> BTreeMap<&str, &File> {
        let dir = dir.trim_matches('/');
        if dir.is_empty() || dir == "." {
            return self.files.iter().map(|(p, f)| (p.as_str(), f)).collect();
        }
        let prefix = format!("{dir}/");
        self.files
            .iter()
            .filter_map(|(p, f)| p.strip_prefix(&prefix).map(|rest| (rest, f)))
            .collect()
    }
}

/// Clones `url` into `scratch` (an empty directory), resolves `git_ref` and reads the
/// commit's files. Blocking: run it on a blocking thread.
pub fn fetch(url: &str, git_ref: &str, scratch: &Path) -> Result<Tree> {
    let fetch_error = |e: &dyn std::error::Error| GitError::Fetch {
        url: url.to_owned(),
        message: chain(e),
    };
    let interrupt = AtomicBool::new(false);
    let mut prepare = gix::prepare_clone_bare(url, scratch).map_err(|e| fetch_error(&e))?;
    let (repo, _) = prepare
        .fetch_only(gix::progress::Discard, &interrupt)
        .map_err(|e| fetch_error(&e))?;
    let commit = resolve(&repo, git_ref).ok_or_else(|| GitError::UnknownRef {
        url: url.to_owned(),
        git_ref: git_ref.to_owned(),
    })?;
    let read_error = |message: String| GitError::Read {
        url: url.to_owned(),
        commit: commit.to_string(),
        message,
    };
    let tree = repo
        .find_commit(commit)
        .map_err(|e| read_error(chain(&e)))?
        .tree()
        .map_err(|e| read_error(chain(&e)))?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(|e| read_error(chain(&e)))?;
    let mut files = BTreeMap::new();
    for entry in recorder.records {
        if !(entry.mode.is_blob() || entry.mode.is_link()) {
            continue; // directories and submodules
        }
        let object = repo.find_object(entry.oid).map_err(|e| read_error(chain(&e)))?;
        files.insert(
            entry.filepath.to_string(),
            File {
                data: object.data.clone(),
                executable: entry.mode.is_executable(),
                symlink: entry.mode.is_link(),
            },
        );
    }
    Ok(Tree {
        commit: commit.to_string(),
        files,
    })
}

/// The commit `git_ref` names: a remote branch, a tag, or a full commit id.
fn resolve(repo: &gix::Repository, git_ref: &str) -> Option<gix::ObjectId> {
    let candidates = [
        format!("refs/remotes/origin/{git_ref}"),
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}"),
    ];
    let by_name = candidates.iter().find_map(|name| {
        let mut reference = repo.try_find_reference(name.as_str()).ok()??;
        let id = reference.peel_to_id().ok()?.detach();
        Some(repo.find_object(id).ok()?.peel_to_commit().ok()?.id)
    });
    by_name.or_else(|| {
        let id = gix::ObjectId::from_hex(git_ref.as_bytes()).ok()?;
        repo.find_commit(id).ok().map(|c| c.id)
    })
}

/// An error with its causes, since gix puts the useful part in the source chain.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
