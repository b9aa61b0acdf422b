//! The data directory holds token hashes, sealed secrets, the secrets key and the
//! bootstrap token: only the user the server runs as may enter it (0700) or read its
//! files (0600). A directory or file an older Berth (or a umask) left open is tightened
//! at start, with a warning naming what changed.

use std::{
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use anyhow::Context;

/// The files of the data directory that hold secrets (the database and SQLite's side
/// files included: they hold the same rows).
pub const PRIVATE_FILES: [&str; 7] = [
    "berth.db",
    "berth.db-wal",
    "berth.db-shm",
    "berth.db-journal",
    "secrets.key",
    "audit.key",
    "bootstrap-token",
];

/// Makes `dir` (mode 0700) if it is missing, tightens it and its files, and creates an
/// empty database file with mode 0600 so that SQLite's side files, which copy the
/// database's mode, are private from the start.
///
/// # Errors
///
/// When the directory cannot be made or its modes cannot be changed.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let db = dir.join(PRIVATE_FILES[0]);
    if !db.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
            .with_context(|| format!("cannot create {}", db.display()))?;
    }
    tighten(dir)
}

/// Takes every permission of group and others away from `dir` and its private files,
/// warning for each one that had any.
///
/// # Errors
///
/// When a mode cannot be read or changed.
pub fn tighten(dir: &Path) -> anyhow::Result<()> {
    restrict(dir, 0o700)?;
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        if path.exists() {
            restrict(&path, 0o600)?;
        }
    }
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    // Not through a symbolic link: tighten what is in the directory, nothing elsewhere.
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read the mode of {}", path.display()))?;
    if meta.file_type().is_symlink() {
        tracing::warn!(path = %path.display(), "is a symbolic link; its target's permissions are left as they are");
        return Ok(());
    }
    let old = meta.permissions().mode() & 0o7777;
    if old & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot make {} private (chmod {mode:o})", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        from = format!("{old:04o}"),
        to = format!("{mode:04o}"),
        "was readable by other users; made it private"
    );
    Ok(())
}

/// The lock file of a data directory: held, exclusively, by the one server using it.
pub const LOCK_FILE: &str = "berth.lock";

/// An exclusive lock on a data directory, held until dropped (for the life of the server).
///
/// SQLite is one file on one machine: two servers on it would both run the reconcilers and
/// fight over every container. The lock is an advisory `flock` on `<dir>/berth.lock`, so
/// the kernel releases it when the process ends, however it ends (no stale lock after a
/// crash or `kill -9`).
#[derive(Debug)]
pub struct DirLock {
    /// Kept open: closing it releases the lock.
    _file: std::fs::File,
}

/// Why a data directory cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: a second server on the same directory.
    #[error(
        "another berth server is already using the data directory {dir} (it holds {lock}); \
         stop that server first, give this one its own --data-dir, or use a PostgreSQL store \
         (--store postgres://...) to run several servers"
    )]
    Held {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The lock file in it.
        lock: std::path::PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the data directory {dir} through {lock}")]
    Io {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The lock file in it.
        lock: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Takes the exclusive lock of `dir` (which must exist), without waiting.
///
/// # Errors
///
/// [`LockError::Held`] when another server holds it, [`LockError::Io`] when the lock file
/// cannot be opened or locked.
pub fn lock(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        dir: dir.to_owned(),
        lock: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
            dir: dir.to_owned(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        prepare(&dir).unwrap();
        let first = lock(&dir).unwrap();
        let refused = lock(&dir).unwrap_err();
        assert!(matches!(refused, LockError::Held { .. }), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains("another berth server"), "{message}");
        assert!(
            message.contains(&dir.display().to_string()),
            "names the directory: {message}"
        );
        assert!(message.contains("--data-dir"), "says how to fix it: {message}");
        let other = root.path().join("other");
        prepare(&other).unwrap();
        lock(&other).expect("another directory is free");
        drop(first);
        lock(&dir).expect("free again once the holder is gone");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_directory_and_its_files_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["berth.db", "berth.db-wal", "secrets.key", "unrelated.txt"] {
            std::fs::write(dir.join(name), "x").unwrap();
            std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for name in ["berth.db", "berth.db-wal", "secrets.key"] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        assert_eq!(
            mode(&dir.join("unrelated.txt")),
            0o644,
            "files Berth does not own are left alone"
        );
    }

    #[test]
    fn a_new_directory_is_private_with_a_private_database() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("berth.db")), 0o600);
    }
}
