//! Which store a server runs on: SQLite in its data directory (the default; one server
//! per directory, held by a lock file) or PostgreSQL (`--store postgres://…`; several
//! servers on one database).

use std::{path::Path, sync::Arc};

use anyhow::Context;
use berth_core::ports::Store;
use berth_store::{AuditKeySource, CommitObserver, PostgresStore, SqliteStore, seal};

use crate::data_dir::{self, DirLock};

/// Where the store lives, as `--store` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `berth.db` in the data directory.
    Sqlite,
    /// A PostgreSQL database, by its URL.
    Postgres(String),
}

/// Reads `--store`: none or `sqlite` for SQLite, a `postgres://` or `postgresql://` URL
/// for PostgreSQL.
///
/// # Errors
///
/// When the value is neither; the message never repeats what follows the scheme (it may
/// hold a password).
pub fn location(flag: Option<&str>) -> anyhow::Result<Location> {
    match flag.map(str::trim) {
        None | Some("" | "sqlite") => Ok(Location::Sqlite),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Location::Postgres(url.to_owned()))
        }
        Some(other) => {
            let scheme = other.split_once("://").map_or("no scheme", |(scheme, _)| scheme);
            anyhow::bail!(
                "--store (BERTH_STORE) takes `sqlite` (the default: berth.db in --data-dir) or a \
                 PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE; got a value with {scheme}"
            )
        }
    }
}

/// The store a server opened, with what only one kind of store has.
pub enum Opened {
    /// SQLite, with the lock of its data directory.
    Sqlite(Arc<SqliteStore>, DirLock),
    /// PostgreSQL.
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    /// The store, for every part of the server.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store, _) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    /// Has `observe` told how long each commit takes.
    pub fn observe_commits(&self, observe: CommitObserver) {
        match self {
            Self::Sqlite(store, _) => store.observe_commits(observe),
            Self::Postgres(store) => store.observe_commits(observe),
        };
    }

    /// Drops what replaced values left behind in the files (SQLite); PostgreSQL's
    /// autovacuum reclaims dead rows itself.
    ///
    /// # Errors
    ///
    /// When SQLite cannot rewrite its file.
    pub async fn purge_free_space(&self) -> anyhow::Result<()> {
        if let Self::Sqlite(store, _) = self {
            store.purge_free_space().await?;
        }
        Ok(())
    }

    /// The data directory's lock, held while the server runs (SQLite only).
    pub fn into_lock(self) -> Option<DirLock> {
        match self {
            Self::Sqlite(_, lock) => Some(lock),
            Self::Postgres(_) => None,
        }
    }
}

/// Opens the store at `location`, with the audit key from `key` (else `audit.key` in
/// `data_dir`). SQLite first takes the data directory's lock, so that a second server
/// on the same directory stops here.
///
/// # Errors
///
/// When the directory is locked by another server, or the store cannot be opened.
pub async fn open(location: &Location, data_dir: &Path, key: AuditKeySource) -> anyhow::Result<Opened> {
    match location {
        Location::Sqlite => {
            let lock = data_dir::lock(data_dir)?;
            let store = SqliteStore::open_with(&data_dir.join("berth.db"), key)
                .await
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
            Ok(Opened::Sqlite(Arc::new(store), lock))
        }
        Location::Postgres(url) => {
            let key = match key {
                AuditKeySource::Given(key) => key,
                AuditKeySource::BesideDatabase => {
                    let file = data_dir.join("audit.key");
                    let (key, created) = seal::load_or_create_key(&file)?;
                    if created {
                        tracing::warn!(
                            path = %file.display(),
                            "made an audit key; every server on this PostgreSQL database must sign with \
                             the same key: copy it to the others (--audit-key-file) or set BERTH_AUDIT_KEY"
                        );
                    }
                    key
                }
            };
            let store = PostgresStore::open(url, key, Some(data_dir.join("audit.checkpoint")))
                .await
                .context("cannot open the PostgreSQL store given by --store")?;
            Ok(Opened::Postgres(Arc::new(store)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_flag_picks_sqlite_by_default_and_postgres_by_url() {
        assert_eq!(location(None).unwrap(), Location::Sqlite);
        assert_eq!(location(Some("sqlite")).unwrap(), Location::Sqlite);
        assert_eq!(
            location(Some("postgres://b:p@db:5432/berth")).unwrap(),
            Location::Postgres("postgres://b:p@db:5432/berth".to_owned())
        );
        assert_eq!(
            location(Some("postgresql://db/berth")).unwrap(),
            Location::Postgres("postgresql://db/berth".to_owned())
        );
    }

    #[test]
    fn another_store_flag_says_what_is_accepted_without_repeating_the_url() {
        let message = location(Some("mysql://root:hunter2@db/berth"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            "{message}"
        );
        assert!(message.contains("mysql"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn a_second_server_on_one_sqlite_directory_stops_with_the_directory_named() {
        let dir = tempfile::tempdir().unwrap();
        data_dir::prepare(dir.path()).unwrap();
        let key = || AuditKeySource::Given(seal::random_key());
        let first = open(&Location::Sqlite, dir.path(), key()).await.unwrap();
        let Err(refused) = open(&Location::Sqlite, dir.path(), key()).await else {
            panic!("a second SQLite store on the same directory opened");
        };
        let message = format!("{refused:#}");
        assert!(message.contains("another berth server"), "{message}");
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        drop(first);
        open(&Location::Sqlite, dir.path(), key())
            .await
            .expect("the directory is free once the first server is gone");
    }
}
