//! What keeps the audit log honest from outside the database: the key that signs it and
//! the checkpoint file the store rewrites after each commit.
//!
//! ```text
//!  <dir>/berth.db            the log, its signed head and seal
//!  <dir>/audit.key           base64 of 32 random bytes, 0600, made on first open
//!  <dir>/audit.checkpoint    seq:hash:mac of the newest entry, rewritten after commits
//! ```
//!
//! Someone who can write the database but not read the key cannot forge an entry, a
//! head or a checkpoint; someone who rolls the database back to an older copy is caught
//! by the checkpoint file, unless they roll it back too (then only a checkpoint kept
//! elsewhere catches it: `berth audit verify --checkpoint`).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use berth_core::{
    audit::{AuditKey, Checkpoint},
    ports::StoreError,
};
use rand::RngCore;

fn failed(doing: &str, path: &Path, error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend {
        message: format!("{doing} {}: {error}", path.display()),
    }
}

/// Reads an audit key: base64 of 32 bytes on the first line that is not a `#` comment.
///
/// # Errors
///
/// [`StoreError::Backend`] naming `origin` when it holds no such key.
pub fn parse_key(text: &str, origin: &str) -> Result<AuditKey, StoreError> {
    let line = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let bytes: [u8; 32] = STANDARD
        .decode(line)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Backend {
            message: format!(
                "{origin} holds no audit key: expected 32 random bytes in base64, e.g. from `head -c32 /dev/urandom | base64`"
            ),
        })?;
    Ok(AuditKey::new(bytes))
}

/// A new random key that lives only in memory (in-memory stores).
#[must_use]
pub fn random_key() -> AuditKey {
    // (Also what tests use for "another server's key".)
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    AuditKey::new(bytes)
}

/// Reads the key file at `path`, first making it (mode 0600) when it does not exist.
/// Returns whether it was made.
///
/// # Errors
///
/// [`StoreError::Backend`] naming the file when it cannot be read, made or parsed.
pub fn load_or_create_key(path: &Path) -> Result<(AuditKey, bool), StoreError> {
    let created = if path.exists() {
        false
    } else {
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| {
                writeln!(
                    file,
                    "# Berth audit key: signs the audit log. Keep a copy away from the database.\n{}",
                    STANDARD.encode(bytes)
                )
            })
            .map_err(|e| failed("cannot create the audit key file", path, &e))?;
        true
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| failed("cannot read the audit key file", path, &e))?;
    Ok((parse_key(&text, &path.display().to_string())?, created))
}

/// Where a server's audit key comes from: `env` (the value of `BERTH_AUDIT_KEY`) when it
/// is set, else the key `file` when given, else the file beside the database.
///
/// # Errors
///
/// [`StoreError::Backend`] when the key given cannot be read or is not a key.
pub fn key_source(env: Option<&str>, file: Option<&Path>) -> Result<crate::AuditKeySource, StoreError> {
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        return parse_key(text, "BERTH_AUDIT_KEY").map(crate::AuditKeySource::Given);
    }
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| failed("cannot read the audit key file", path, &e))?;
            parse_key(&text, &path.display().to_string()).map(crate::AuditKeySource::Given)
        }
        None => Ok(crate::AuditKeySource::BesideDatabase),
    }
}

/// The checkpoint kept outside the database: a file, or only memory for an in-memory
/// store.
#[derive(Debug)]
pub struct Outside {
    path: Option<PathBuf>,
    /// The newest checkpoint written (or read at open).
    last: Mutex<Option<Checkpoint>>,
}

impl Outside {
    /// The checkpoint file at `path` (none: memory only).
    #[must_use]
    pub fn new(path: Option<PathBuf>) -> Self {
        let outside = Self {
            path,
            last: Mutex::new(None),
        };
        let read = outside.read();
        *outside.lock() = read;
        outside
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Checkpoint>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The checkpoint as it stands now: read from the file (an unreadable or garbled
    /// file counts as none, and verification says so).
    #[must_use]
    pub fn read(&self) -> Option<Checkpoint> {
        match &self.path {
            None => self.lock().clone(),
            Some(path) => std::fs::read_to_string(path).ok()?.parse().ok(),
        }
    }

    /// Records `checkpoint` when it is newer than the last one; never moves back, so
    /// that a log that was cut short cannot rewrite the evidence. A file that cannot be
    /// written (a full disk) is logged: the commit itself has happened.
    pub fn advance(&self, checkpoint: Checkpoint) {
        let mut last = self.lock();
        if let Some(old) = last.as_ref().filter(|old| old.seq >= checkpoint.seq) {
            if *old != checkpoint {
                tracing::error!(
                    kept = old.seq,
                    log = checkpoint.seq,
                    "the audit log is behind its checkpoint (entries were deleted, or the database was rolled back): keeping the checkpoint"
                );
            }
            return;
        }
        if let Some(path) = &self.path {
            let temporary = path.with_extension("checkpoint.new");
            let written = std::fs::write(&temporary, format!("{checkpoint}\n"))
                .and_then(|()| std::fs::rename(&temporary, path));
            if let Err(error) = written {
                tracing::warn!(path = %path.display(), %error, "cannot write the audit checkpoint file");
                return;
            }
        }
        *last = Some(checkpoint);
    }
}
