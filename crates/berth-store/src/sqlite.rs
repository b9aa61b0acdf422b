//! The SQLite adapter of [`Store`]: one database file in WAL mode, or one in-memory database
//! for tests.
//!
//! SQLite allows one writer at a time. Commits (and token writes) queue on a tokio mutex and
//! then take the database's write lock up front with `BEGIN IMMEDIATE`, so a commit waits its
//! turn instead of failing with `SQLITE_BUSY`; readers run beside it thanks to WAL.
//!
//! Write transactions run on a thread of their own ([`WriterThread`]): a transaction
//! holding the write lock then never waits behind request handlers for a turn on the
//! server's runtime between two of its statements, which on two busy cores made every
//! other writer wait a queue's worth of scheduling delays per statement.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use berth_core::{
    audit::{AuditEntry, AuditKey, AuditQuery, Change, Checkpoint, Verification},
    objects::{DeploymentPhase, Event, NewEvent},
    ports::{
        Commit, DeploymentQuery, EventQuery, GoverningQuery, ListQuery, Page, Store, StoreError, TeamQuery,
        TokenRecord, Write,
    },
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{
    Connection, Sqlite, SqliteConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::{Mutex, oneshot, watch};

use crate::{
    seal::{self, Outside},
    sql::{CommitObserver, CommitTimer, TokenKey, WriteHealth, backend, migrator},
};

mod queries;

/// Reading connections of a file-backed store (writes have one of their own).
const CONNECTIONS: u32 = 5;

/// The page cache of each reading connection, in KiB (SQLite's default is 2,000).
const READER_CACHE_KIB: u32 = 512;

/// How long a connection waits for a lock held by another process using the same file.
/// Writers of this process never wait here: they queue on [`SqliteStore::writer`] first.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Moves the store revision on by one, in the commit's transaction, and returns it.
const NEXT_REVISION: &str = "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value";

/// The store revision as it stands.
const CURRENT_REVISION: &str = "SELECT value FROM revision WHERE id = 1";

/// A transaction holding the database's write lock from its start, so that it never
/// fails with `SQLITE_BUSY` halfway.
async fn begin_write(conn: &mut SqliteConnection) -> Result<sqlx::Transaction<'_, Sqlite>, sqlx::Error> {
    conn.begin_with("BEGIN IMMEDIATE").await
}

crate::sql::store_statements!(sqlx::Sqlite, sqlx::SqliteConnection, sqlx::sqlite::SqliteRow);

/// The schema, embedded in the binary.
///
/// Built by hand rather than with `sqlx::migrate!`, which needs sqlx's `macros` feature (a
/// second, host-side build of SQLite). Version, description, type and checksum are the ones
/// `migrate!` would derive from the file names, so either way writes the same
/// `_sqlx_migrations` rows. Append new files here in version order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (2, "governance", include_str!("../migrations/0002_governance.sql")),
    (3, "audit seal", include_str!("../migrations/0003_audit_seal.sql")),
    (4, "queries", include_str!("../migrations/0004_queries.sql")),
];

/// A [`Store`] in SQLite.
#[derive(Debug)]
pub struct SqliteStore {
    /// Connections for reading; a single one for an in-memory database.
    pool: SqlitePool,
    /// The connection every write transaction uses, apart from the readers': a writer
    /// holding the write lock must never wait for readers to hand back a connection. The
    /// same single connection as `pool` for an in-memory database.
    write_pool: SqlitePool,
    /// Held by whoever writes, so that writers of this process never contend inside SQLite.
    writer: Arc<Mutex<()>>,
    /// Where write transactions run.
    writer_thread: WriterThread,
    /// Position of the newest event, updated after each commit that appended events.
    last_seq: watch::Sender<u64>,
    /// Whether the latest write worked, for readiness.
    health: Arc<WriteHealth>,
    /// Counts the writes that ended ([`Store::generation`]).
    generation: Arc<AtomicU64>,
    /// Signs every audit entry, the head and the seal.
    key: AuditKey,
    /// The checkpoint kept outside the database.
    outside: Arc<Outside>,
    /// The checkpoint file was missing at open although the log had entries (it was
    /// deleted): verification says so until the store is opened again.
    outside_lost: bool,
    /// Told how long each commit took (the server's `berth_store_commit_duration_seconds`).
    commit_observer: std::sync::OnceLock<CommitTimer>,
}

/// The work of one write transaction, given its connection.
type TransactionWork<T> = crate::sql::TransactionWork<SqliteConnection, T>;

/// A thread with a runtime of its own on which every write transaction runs, from
/// `BEGIN IMMEDIATE` to the checkpoint after its `COMMIT`. It stops when the store is
/// dropped.
#[derive(Debug)]
struct WriterThread {
    runtime: tokio::runtime::Handle,
    /// Dropped with the store, which ends the thread.
    _stop: oneshot::Sender<()>,
}

impl WriterThread {
    fn start() -> Result<Self, StoreError> {
        let failed = |e: std::io::Error| StoreError::Backend {
            message: format!("starting the store's writer thread: {e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("berth-store-writer".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    // Ends when the store drops the sender.
                    let _ = stopped.await;
                });
            })
            .map_err(failed)?;
        Ok(Self {
            runtime: handle,
            _stop: stop,
        })
    }
}

/// What a write transaction needs of the store, owned, to run on [`WriterThread`].
struct WriteSide {
    pool: SqlitePool,
    writer: Arc<Mutex<()>>,
    generation: Arc<AtomicU64>,
    health: Arc<WriteHealth>,
    outside: Arc<Outside>,
}

impl WriteSide {
    /// Takes the writer, runs `work` in a transaction and commits it when it succeeds.
    ///
    /// A connection whose COMMIT or ROLLBACK failed (a full disk, an I/O error, a file
    /// that became read-only) is closed instead of going back to the pool: SQLite may
    /// have ended the transaction itself while sqlx still counts it open, and every later
    /// `BEGIN` on that connection would then fail until a restart.
    async fn transaction<T>(self, doing: &'static str, work: TransactionWork<T>) -> Result<T, StoreError> {
        let _writer = self.writer.lock().await;
        let mut conn = self.pool.acquire().await.map_err(|e| backend(doing, &e))?;
        let mut broken = false;
        let outcome = match conn.begin_with("BEGIN IMMEDIATE").await {
            Err(e) => {
                broken = true;
                Err(backend(doing, &e))
            }
            Ok(mut tx) => match work(&mut tx).await {
                Ok(value) => tx.commit().await.map(|()| value).map_err(|e| {
                    broken = true;
                    backend(doing, &e)
                }),
                Err(error) => {
                    // Dropping the transaction would roll back too, but only when the
                    // connection is next used; do it now so the failure is complete when
                    // we return.
                    if let Err(e) = tx.rollback().await {
                        tracing::warn!(error = %e, "rolling back after {doing} failed");
                        broken = true;
                    }
                    Err(error)
                }
            },
        };
        // After the transaction ended, whatever its outcome: a reader that saw the number
        // before this reads what the write left, or reads again.
        self.generation.fetch_add(1, Ordering::SeqCst);
        if broken || conn.is_in_transaction() {
            conn.close_on_drop();
        } else if outcome.is_ok() {
            // Still holding the writer: checkpoints reach the file in commit order.
            match statements::audit_head(&mut conn).await {
                Ok(Some(head)) => self.outside.advance(head),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "reading the audit head after a commit"),
            }
        }
        self.health.written(outcome.as_ref().map(|_| ()));
        outcome
    }
}

/// Where a store's audit key comes from.
#[derive(Debug, Clone)]
pub enum AuditKeySource {
    /// `audit.key` beside the database file, made on first open.
    BesideDatabase,
    /// A key given by the caller (a flag, the environment, a file elsewhere).
    Given(AuditKey),
}

impl SqliteStore {
    /// Has `observe` told how long every commit from now on takes (committed or not), for
    /// a latency metric; the store itself keeps no metrics. Only the first observer set
    /// is kept: returns whether this one was.
    pub fn observe_commits(&self, observe: CommitObserver) -> bool {
        self.commit_observer.set(CommitTimer(observe)).is_ok()
    }

    /// Opens the database at `path`, creating the file if it is missing, and brings its
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the file cannot be opened or created (a missing
    /// directory, no permission), or the schema cannot be migrated (a file written by a newer
    /// Berth).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, AuditKeySource::BesideDatabase).await
    }

    /// [`SqliteStore::open`] with the audit key from `key`; the audit checkpoint file is
    /// `audit.checkpoint` beside the database either way.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`], and when the key file cannot be read or made.
    pub async fn open_with(path: &Path, key: AuditKeySource) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let opening = |e: sqlx::Error| backend(&format!("opening the store at {}", path.display()), &e);
        let pool = SqlitePoolOptions::new()
            .max_connections(CONNECTIONS)
            // Readers keep a small page cache each: the kernel's page cache holds the
            // file for all of them, outside the server's own memory.
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{READER_CACHE_KIB}")),
            )
            .await
            .map_err(opening)?;
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(opening)?;
        // After the database: a missing directory is named by the database's path.
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let key = match key {
            AuditKeySource::Given(key) => key,
            AuditKeySource::BesideDatabase => {
                let file = dir.join("audit.key");
                let (key, created) = seal::load_or_create_key(&file)?;
                if created {
                    tracing::warn!(
                        path = %file.display(),
                        "made an audit key next to the database; keep a copy elsewhere, or pass --audit-key-file"
                    );
                }
                key
            }
        };
        Self::start(
            pool,
            write_pool,
            key,
            Outside::new(Some(dir.join("audit.checkpoint"))),
        )
        .await
    }

    /// Opens a fresh, empty database that lives in memory and disappears with the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when SQLite cannot start.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
        // Every connection to `:memory:` is a database of its own, and closing the connection
        // drops it: keep exactly one, forever.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| backend("opening an in-memory store", &e))?;
        Self::start(pool.clone(), pool, seal::random_key(), Outside::new(None)).await
    }

    /// Closes every connection, waiting for those in use to be returned.
    ///
    /// Dropping the store closes them too, but in the background; close first when the same
    /// file is opened again right after.
    pub async fn close(&self) {
        self.pool.close().await;
        self.write_pool.close().await;
    }

    /// Rewrites the database file without the free space old rows leave behind, and
    /// empties the write-ahead log: after values were replaced (a plaintext sealed), no
    /// copy of them stays in the files.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when SQLite cannot rewrite the file.
    pub async fn purge_free_space(&self) -> Result<(), StoreError> {
        for sql in [
            "PRAGMA wal_checkpoint(TRUNCATE)",
            "VACUUM",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ] {
            sqlx::query(sql)
                .execute(&self.write_pool)
                .await
                .map_err(|e| backend("purging free space", &e))?;
        }
        Ok(())
    }

    /// Migrates the schema, seals the audit log when it is not sealed yet, and reads
    /// where the event log stands.
    async fn start(
        pool: SqlitePool,
        write_pool: SqlitePool,
        key: AuditKey,
        outside: Outside,
    ) -> Result<Self, StoreError> {
        migrator(MIGRATIONS)
            .run(&write_pool)
            .await
            .map_err(|e| StoreError::Backend {
                message: format!("migrating the store schema: {e}"),
            })?;
        let last = statements::last_seq(&pool).await?;
        let mut conn = write_pool
            .acquire()
            .await
            .map_err(|e| backend("reading the audit seal", &e))?;
        let entries = statements::audit_end(&mut conn).await?.0;
        let had_checkpoint = outside.read().is_some();
        let sealed_now = statements::seal_once(&mut conn, &key, &outside).await?;
        let outside_lost = entries > 0 && !had_checkpoint && !sealed_now;
        if outside_lost {
            tracing::error!(
                entries,
                "the audit checkpoint file is missing although the log has entries: it was deleted, or the \
                 database comes from elsewhere; `berth audit verify` reports it until the next start"
            );
        }
        drop(conn);
        Ok(Self {
            pool,
            write_pool,
            writer: Arc::new(Mutex::new(())),
            writer_thread: WriterThread::start()?,
            last_seq: watch::Sender::new(last),
            health: Arc::new(WriteHealth::default()),
            generation: Arc::new(AtomicU64::new(0)),
            key,
            outside: Arc::new(outside),
            outside_lost,
            commit_observer: std::sync::OnceLock::new(),
        })
    }
}

/// An audit entry's time at or after a bound, around the bound's text: stored times vary
/// in their fractional digits, so they are compared as numbers.
const TIME_AT_LEAST: (&str, &str) = (" AND julianday(time) >= julianday(", ")");

/// An audit entry's time before a bound, around the bound's text.
const TIME_BEFORE: (&str, &str) = (" AND julianday(time) < julianday(", ")");

/// Begins the read transaction of an audit verification: one snapshot of the log, its
/// head and the objects.
const BEGIN_SNAPSHOT: &str = "BEGIN";

/// A page of one kind. The index is named: with statistics (after `ANALYZE`) SQLite may
/// otherwise walk every row after the cursor in id order, all kinds included.
const LIST: &str = "SELECT id, name, document FROM objects INDEXED BY objects_by_kind \
     WHERE kind = ? AND id > ? ORDER BY id LIMIT ?";
/// A page of one kind of one owner, through its index for the same reason.
const LIST_OF_OWNER: &str = "SELECT id, name, document FROM objects INDEXED BY objects_by_owner \
     WHERE kind = ? AND owner = ? AND id > ? ORDER BY id LIMIT ?";

crate::sql::store_impl!(SqliteStore {
    async fn last_event(&self) -> Result<u64, StoreError> {
        statements::last_seq(&self.pool).await
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before reading the database: a commit landing in between then still
        // marks the channel changed, so no event is missed.
        let mut seen = self.last_seq.subscribe();
        match self.last_event().await {
            Ok(last) if last > after => return,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reading the last event before waiting"),
        }
        // The sender lives as long as `self`, so `wait_for` only ends with a newer event.
        let _ = tokio::time::timeout_at(deadline, seen.wait_for(|&last| last > after)).await;
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::SeqCst))
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.probe().await
    }

});

impl SqliteStore {
    /// Runs `work` in a write transaction of its own on the [`WriterThread`], committing
    /// when it succeeds. The transaction runs to its end even when the caller stops
    /// waiting for it.
    async fn in_transaction<T: Send + 'static>(
        &self,
        doing: &'static str,
        work: TransactionWork<T>,
    ) -> Result<T, StoreError> {
        let side = WriteSide {
            pool: self.write_pool.clone(),
            writer: Arc::clone(&self.writer),
            generation: Arc::clone(&self.generation),
            health: Arc::clone(&self.health),
            outside: Arc::clone(&self.outside),
        };
        match self
            .writer_thread
            .runtime
            .spawn(side.transaction(doing, work))
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => Err(StoreError::Backend {
                message: format!("{doing}: the store's writer thread failed: {e}"),
            }),
        }
    }

    /// Whether a write can be made now, probing at most once per [`PROBE_EVERY`](crate::sql::PROBE_EVERY) and
    /// only while the last write failed or none was made yet: readiness checks cost a
    /// lock and a read of the last outcome, not a write each.
    async fn probe(&self) -> Result<(), StoreError> {
        if let Some(known) = self.health.known() {
            return known;
        }
        // A write under way will tell; do not queue behind it.
        let Ok(_writer) = self.writer.try_lock() else {
            return self.health.last();
        };
        let outcome = async {
            let mut conn = self
                .write_pool
                .acquire()
                .await
                .map_err(|e| backend("probing whether the store can write", &e))?;
            let result = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                // Rewrites a row with its own value: a real page write, no change.
                sqlx::query("UPDATE revision SET value = value WHERE id = 1")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await;
            if result.is_err() {
                conn.close_on_drop();
            }
            result.map_err(|e| backend("probing whether the store can write", &e))
        }
        .await;
        self.health.probed(outcome.clone());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_core::audit::{self, GENESIS, Operation};
    use sqlx::{AssertSqlSafe, Row};
    use tempfile::TempDir;

    use super::*;
    use crate::sql::{AUDIT_ROWS_A_STATEMENT, cursor, parse_time, timestamp};

    /// A fresh in-memory store; no directory to keep.
    async fn in_memory() -> (Option<TempDir>, SqliteStore) {
        (None, SqliteStore::open_in_memory().await.unwrap())
    }

    /// A fresh store in a file of its own directory, removed when the directory is dropped.
    async fn on_disk() -> (Option<TempDir>, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("berth.db")).await.unwrap();
        (Some(dir), store)
    }

    /// One test per conformance function, against a fresh store from `$open`.
    macro_rules! conformance_suite {
        (open: $open:path, by_ref: [$($by_ref:ident),* $(,)?], shared: [$($shared:ident),* $(,)?] $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $by_ref() {
                    let (_dir, store) = $open().await;
                    crate::conformance::$by_ref(&store).await.unwrap();
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $shared() {
                    let (_dir, store) = $open().await;
                    crate::conformance::$shared(Arc::new(store)).await.unwrap();
                }
            )*
        };
    }

    macro_rules! conformance_module {
        ($module:ident, $open:path) => {
            mod $module {
                use super::*;

                crate::conformance::every_test!(conformance_suite, open: $open,);
            }
        };
    }

    conformance_module!(conformance_in_memory, in_memory);
    conformance_module!(conformance_on_disk, on_disk);

    fn create(kind: &str, name: &str) -> Write {
        Write::Create {
            kind: kind.to_owned(),
            name: name.to_owned(),
            owner: Some("web".to_owned()),
            document: serde_json::json!({ "kind": kind, "metadata": { "name": name } }),
        }
    }

    /// Readers that keep what they read (the API's identity cache) rely on the number
    /// moving with every write, also one that failed, and never with a read.
    #[tokio::test]
    async fn generation_moves_with_every_write_and_only_then() {
        let (_dir, store) = on_disk().await;
        let mut seen = store.generation().unwrap();
        let mut moved = |store: &SqliteStore, what: &str| {
            let now = store.generation().unwrap();
            assert!(now > seen, "{what} did not move the generation");
            seen = now;
        };
        store
            .commit(vec![create("Release", "web-1")], Vec::new())
            .await
            .unwrap();
        moved(&store, "a commit");
        store
            .commit(vec![create("Release", "web-1")], Vec::new())
            .await
            .unwrap_err();
        moved(&store, "a commit that failed");
        let token = TokenRecord {
            id: "t1".to_owned(),
            name: "ci".to_owned(),
            subject: "admin".to_owned(),
            hash: "cd".repeat(32),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        };
        store
            .put_token(token, &Change::new("admin", "token.create"))
            .await
            .unwrap();
        moved(&store, "storing a token");
        store
            .revoke_token("t1", Utc::now(), &Change::new("admin", "token.revoke"))
            .await
            .unwrap();
        moved(&store, "revoking a token");
        store.get("Release", "web-1").await.unwrap();
        store.find_token(&"cd".repeat(32)).await.unwrap();
        store
            .list(&ListQuery {
                kind: "Release".to_owned(),
                owner: None,
                after: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(store.generation(), Some(seen), "reads do not move it");
    }

    /// A commit's audit entries go in by chunks of one statement each: a commit larger
    /// than one chunk is audited whole, chained in order, and verifies.
    #[tokio::test]
    async fn a_commit_of_more_writes_than_one_statement_holds_is_audited_whole() {
        let (_dir, store) = on_disk().await;
        let n = AUDIT_ROWS_A_STATEMENT * 2 + 7;
        let writes = (0..n).map(|i| create("Release", &format!("web-{i}"))).collect();
        store.commit(writes, Vec::new()).await.unwrap();
        store
            .commit(vec![create("Release", "last")], Vec::new())
            .await
            .unwrap();
        let v = store.verify_audit(None).await.unwrap();
        assert!(v.ok, "{:?}", v.messages);
        let (count, newest): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let n = i64::try_from(n).unwrap();
        assert_eq!((count, newest), (n + 1, n + 1), "one entry per write");
    }

    /// A writer holds the write lock while it commits: if it had to wait for a reader to
    /// hand back a connection, every other write would wait behind that reader too.
    #[tokio::test]
    async fn a_commit_does_not_wait_for_readers_holding_every_connection() {
        let (_dir, store) = on_disk().await;
        let mut readers = Vec::new();
        for _ in 0..CONNECTIONS {
            readers.push(store.pool.acquire().await.unwrap());
        }
        let commit = store.commit(vec![create("Release", "web-1")], Vec::new());
        tokio::time::timeout(Duration::from_secs(5), commit)
            .await
            .expect("the commit waited for a reader's connection")
            .unwrap();
        drop(readers);
        assert!(store.get("Release", "web-1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn reopened_file_keeps_data_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let token = TokenRecord {
            id: "t1".to_owned(),
            name: "bootstrap".to_owned(),
            subject: "admin".to_owned(),
            hash: "ab".repeat(32),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        };

        let store = SqliteStore::open(&path).await.unwrap();
        let first = store
            .commit(
                vec![create("Release", "web-1")],
                vec![NewEvent::normal("Created", "Release", "web-1", "tester", "created").about("web", None)],
            )
            .await
            .unwrap();
        store
            .put_token(token.clone(), &Change::new("admin", "token.create"))
            .await
            .unwrap();
        let stored = store.get("Release", "web-1").await.unwrap();
        store.close().await;
        drop(store);

        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(store.get("Release", "web-1").await.unwrap(), stored);
        assert_eq!(store.find_token(&token.hash).await.unwrap(), Some(token));
        assert_eq!(store.last_event().await.unwrap(), first.events[0].seq);
        assert_eq!(
            store
                .events(&EventQuery {
                    after: 0,
                    limit: 10,
                    application: None
                })
                .await
                .unwrap(),
            first.events
        );

        let second = store
            .commit(
                vec![create("Release", "web-2")],
                vec![NewEvent::normal(
                    "Created", "Release", "web-2", "tester", "created",
                )],
            )
            .await
            .unwrap();
        assert_eq!(second.revision, first.revision + 1, "the revision continues");
        assert!(second.events[0].seq > first.events[0].seq, "no seq is reused");
        let page = store
            .list(&ListQuery {
                kind: "Release".to_owned(),
                owner: Some("web".to_owned()),
                after: None,
                limit: 10,
            })
            .await
            .unwrap();
        let names: Vec<_> = page.items.iter().map(|d| d["metadata"]["name"].clone()).collect();
        assert_eq!(names, ["web-1", "web-2"]);
    }

    #[tokio::test]
    async fn reopened_file_never_reuses_a_seq_of_the_newest_event() {
        // Deleting the newest rows is impossible (append-only), but a rolled-back append
        // must not hand its seq out twice either: seq comes from AUTOINCREMENT.
        let (_dir, store) = on_disk().await;
        let a = store
            .commit(vec![], vec![NewEvent::normal("A", "K", "n", "t", "a")])
            .await
            .unwrap();
        let failed = store
            .commit(
                vec![Write::Delete {
                    kind: "K".to_owned(),
                    name: "missing".to_owned(),
                    expected_version: None,
                }],
                vec![NewEvent::normal("B", "K", "n", "t", "b")],
            )
            .await;
        assert!(matches!(failed, Err(StoreError::NotFound { .. })));
        let c = store
            .commit(vec![], vec![NewEvent::normal("C", "K", "n", "t", "c")])
            .await
            .unwrap();
        assert!(c.events[0].seq > a.events[0].seq);
        assert!(c.revision > a.revision);
    }

    #[tokio::test]
    async fn file_uses_wal_normal_sync_and_foreign_keys() {
        let (_dir, store) = on_disk().await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL");
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(foreign_keys, 1);
        // Readers keep a small cache of their own; the writer keeps SQLite's default.
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(cache, -i64::from(READER_CACHE_KIB));
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&store.write_pool)
            .await
            .unwrap();
        assert_eq!(cache, -2000);
    }

    #[tokio::test]
    async fn events_cannot_be_changed_or_removed() {
        let (_dir, store) = in_memory().await;
        store
            .commit(vec![], vec![NewEvent::normal("Created", "K", "n", "t", "m")])
            .await
            .unwrap();
        let update = sqlx::query("UPDATE events SET message = 'rewritten'")
            .execute(&store.pool)
            .await;
        assert!(update.is_err(), "events were updated");
        let delete = sqlx::query("DELETE FROM events").execute(&store.pool).await;
        assert!(delete.is_err(), "events were deleted");
        assert_eq!(store.last_event().await.unwrap(), 1);
    }

    /// Verifies the stored log the way `berth audit verify` does.
    async fn verify(store: &SqliteStore) -> Vec<String> {
        store.verify_audit(None).await.unwrap().messages
    }

    /// Runs statements on the database file the way someone with write access to it
    /// would: beside the store, with the append-only guards dropped first.
    async fn tamper(store: &SqliteStore, statements: &[&str]) {
        for sql in [
            "DROP TRIGGER IF EXISTS audit_no_update",
            "DROP TRIGGER IF EXISTS audit_no_delete",
        ]
        .iter()
        .chain(statements)
        {
            sqlx::query(AssertSqlSafe(*sql))
                .execute(&store.pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// Asserts that verification reports each of `expected` (among others).
    async fn assert_reported(store: &SqliteStore, expected: &[&str]) {
        let found = verify(store).await;
        for e in expected {
            assert!(found.iter().any(|f| f == e), "{e}: {found:?}");
        }
    }

    /// A store on disk with four releases a, b, c, d (entries 1 to 4).
    async fn four_releases() -> (Option<TempDir>, SqliteStore) {
        let (dir, store) = on_disk().await;
        for name in ["a", "b", "c", "d"] {
            store
                .commit_as(
                    &Change::new("alice", "apply"),
                    vec![create("Release", name)],
                    vec![],
                )
                .await
                .unwrap();
        }
        assert!(verify(&store).await.is_empty());
        (dir, store)
    }

    #[tokio::test]
    async fn audit_entries_cannot_be_changed_and_tampering_shows() {
        let (_dir, store) = four_releases().await;
        let update = sqlx::query("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
            .execute(&store.pool)
            .await;
        assert!(update.is_err(), "audit entries were updated");
        assert!(
            sqlx::query("DELETE FROM audit")
                .execute(&store.pool)
                .await
                .is_err()
        );

        // Someone with the file drops the guards and edits an entry, then deletes one.
        tamper(&store, &["UPDATE audit SET actor = 'mallory' WHERE seq = 2"]).await;
        assert_eq!(
            verify(&store).await,
            ["entry 2 was edited: its content does not match its hash"]
        );
        tamper(&store, &["DELETE FROM audit WHERE seq = 3"]).await;
        assert_eq!(
            verify(&store).await,
            [
                "entry 2 was edited: its content does not match its hash",
                "entry 3 was deleted",
                "Release 'c' is stored, but no audit entry records it: it was written outside Berth",
            ]
        );
    }

    #[tokio::test]
    async fn deleting_the_newest_entries_and_moving_the_head_back_shows() {
        let (_dir, store) = four_releases().await;
        tamper(
            &store,
            &[
                "DELETE FROM audit WHERE seq > 2",
                "UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2)",
                "DELETE FROM objects WHERE name IN ('c', 'd')",
            ],
        )
        .await;
        assert_eq!(
            verify(&store).await,
            [
                "the head recorded in the database does not carry this server's audit signature: it was altered, or it comes from another server",
                "entries 3 to 4 were deleted from the end of the log: the checkpoint file beside the database records entry 4",
            ]
        );
    }

    #[tokio::test]
    async fn lowering_the_head_then_rewriting_later_entries_shows() {
        let (_dir, store) = four_releases().await;
        // Entries 3 and 4 rewritten as a consistent chain of plain hashes, the head
        // moved to entry 2: what the unkeyed chain accepted as intact.
        let log = store
            .audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let mut prev = log[1].hash.clone();
        let mut statements =
            vec!["UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2)".to_owned()];
        for e in &log[2..] {
            let mut forged = AuditEntry {
                actor: "mallory".to_owned(),
                prev: prev.clone(),
                ..e.clone()
            };
            forged.hash = audit::entry_hash(&forged);
            statements.push(format!(
                "UPDATE audit SET actor = 'mallory', prev = '{}', hash = '{}' WHERE seq = {}",
                forged.prev, forged.hash, forged.seq
            ));
            prev = forged.hash;
        }
        let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
        tamper(&store, &statements).await;
        assert_reported(
            &store,
            &[
                "entry 3 was edited: its content does not match its hash",
                "entry 4 was edited: its content does not match its hash",
                "entry 4 is not the entry the checkpoint file beside the database records: the log was rewritten up to there",
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn emptying_the_log_and_its_head_shows() {
        let (_dir, store) = four_releases().await;
        tamper(&store, &["DELETE FROM audit", "DELETE FROM audit_head"]).await;
        assert_reported(
            &store,
            &[
                "entries 1 to 4 were deleted from the end of the log: the checkpoint file beside the database records entry 4",
                "Release 'a' is stored, but no audit entry records it: it was written outside Berth",
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn objects_and_tokens_changed_in_the_database_are_named() {
        let (_dir, store) = on_disk().await;
        let user = |admin: bool| Write::Create {
            kind: "User".to_owned(),
            name: "viewer".to_owned(),
            owner: None,
            document: serde_json::json!({ "kind": "User", "metadata": { "name": "viewer" }, "spec": { "platformAdmin": admin } }),
        };
        store
            .commit_as(
                &Change::new("admin", "apply"),
                vec![user(false), create("Team", "ops")],
                vec![],
            )
            .await
            .unwrap();
        store
            .put_token(
                TokenRecord {
                    id: "t1".to_owned(),
                    name: "ci".to_owned(),
                    subject: "viewer".to_owned(),
                    hash: "ab".repeat(32),
                    created_at: Utc::now(),
                    expires_at: None,
                    revoked_at: None,
                },
                &Change::new("admin", "token.create"),
            )
            .await
            .unwrap();
        assert!(verify(&store).await.is_empty());

        // A viewer made platform admin, a team removed, a token minted and one extended,
        // all in SQLite directly.
        tamper(
            &store,
            &[
                "UPDATE objects SET document = json_set(document, '$.spec.platformAdmin', json('true')) \
                 WHERE kind = 'User' AND name = 'viewer'",
                "DELETE FROM objects WHERE kind = 'Team'",
                "INSERT INTO tokens (hash, id, name, subject, created_at) \
                 VALUES ('cdcd', 'forged', 'x', 'admin', '2026-01-01T00:00:00Z')",
                "UPDATE tokens SET expires_at = '2099-01-01T00:00:00Z' WHERE id = 't1'",
            ],
        )
        .await;
        assert_eq!(
            verify(&store).await,
            [
                "User 'viewer' was changed outside Berth: what is stored is not what entry 1 recorded",
                "Token 't1' was changed outside Berth: what is stored is not what entry 3 recorded",
                "Token 'forged' is stored, but no audit entry records it: it was written outside Berth",
                "Team 'ops' was deleted outside Berth: entry 2 records it, but it is not stored",
            ]
        );
    }

    #[tokio::test]
    async fn a_tampered_head_does_not_stop_writes() {
        for head in [
            "UPDATE audit_head SET seq = 1",
            "UPDATE audit_head SET seq = 'garbage', hash = 'x', mac = NULL",
            "DELETE FROM audit_head",
        ] {
            let (_dir, store) = four_releases().await;
            tamper(&store, &[head]).await;
            assert!(!verify(&store).await.is_empty(), "{head}: the tampering shows");
            store
                .commit(vec![create("Release", "e")], vec![])
                .await
                .unwrap_or_else(|e| panic!("{head}: a write after it failed: {e}"));
            assert!(
                verify(&store).await.is_empty(),
                "{head}: the next write set the head right"
            );
        }
    }

    #[tokio::test]
    async fn a_log_signed_with_another_key_is_named_once() {
        let (dir, store) = four_releases().await;
        store.close().await;
        drop(store);
        let path = dir.as_ref().unwrap().path().join("berth.db");
        let other = SqliteStore::open_with(&path, AuditKeySource::Given(seal::random_key()))
            .await
            .unwrap();
        let found = verify(&other).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("the log is signed with audit key"),
            "{found:?}"
        );
    }

    #[tokio::test]
    async fn resetting_the_seal_does_not_make_signed_entries_unsigned() {
        let (dir, store) = four_releases().await;
        tamper(&store, &["UPDATE audit_seal SET keyed_from = NULL"]).await;
        store.close().await;
        drop(store);
        let store = SqliteStore::open(&dir.as_ref().unwrap().path().join("berth.db"))
            .await
            .unwrap();
        assert_eq!(
            verify(&store).await,
            ["the record of where signing began was deleted: every entry is checked as signed"]
        );
    }

    #[tokio::test]
    async fn an_unsigned_log_is_sealed_at_the_first_open_and_stays_verifiable() {
        // A database as the previous Berth left it: schema 1 and 2, an unsigned chain,
        // an object from before the audit log existed.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        {
            let pool = SqlitePool::connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            migrator(&MIGRATIONS[..2]).run(&pool).await.unwrap();
            let mut prev = GENESIS.to_owned();
            for (seq, name) in [(1u64, "a"), (2, "b")] {
                let document =
                    serde_json::json!({ "kind": "Release", "metadata": { "name": name } }).to_string();
                let mut e = AuditEntry {
                    seq,
                    time: Utc::now(),
                    actor: "alice".to_owned(),
                    action: "apply".to_owned(),
                    operation: Operation::Create,
                    kind: "Release".to_owned(),
                    name: name.to_owned(),
                    before: None,
                    after: Some(audit::digest(&document)),
                    revision: seq,
                    prev: prev.clone(),
                    hash: String::new(),
                };
                e.hash = audit::entry_hash(&e);
                sqlx::query(
                    "INSERT INTO objects (kind, name, document, version, created_at, updated_at) \
                     VALUES ('Release', ?, ?, ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                )
                .bind(name)
                .bind(&document)
                .bind(cursor(Some(seq)))
                .execute(&pool)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO audit (seq, time, actor, action, operation, kind, name, before, after, revision, prev, hash) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(cursor(Some(e.seq)))
                .bind(timestamp(e.time))
                .bind(&e.actor)
                .bind(&e.action)
                .bind(e.operation.as_str())
                .bind(&e.kind)
                .bind(&e.name)
                .bind(&e.before)
                .bind(&e.after)
                .bind(cursor(Some(e.revision)))
                .bind(&e.prev)
                .bind(&e.hash)
                .execute(&pool)
                .await
                .unwrap();
                prev = e.hash;
            }
            sqlx::query("INSERT INTO audit_head (id, seq, hash) VALUES (1, 2, ?)")
                .bind(&prev)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO objects (kind, name, document, version, created_at, updated_at) \
                 VALUES ('Team', 'old', '{\"kind\":\"Team\"}', 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("UPDATE revision SET value = 2")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }

        let store = SqliteStore::open(&path).await.unwrap();
        store.commit(vec![create("Release", "c")], vec![]).await.unwrap();
        let v = store.verify_audit(None).await.unwrap();
        assert!(v.ok, "{:?}", v.messages);
        let log = store
            .audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let rows: Vec<(&str, &str)> = log.iter().map(|e| (e.name.as_str(), e.action.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("a", "apply"),
                ("b", "apply"),
                ("old", "audit.baseline"),
                ("c", "commit")
            ],
            "the unaudited team got a baseline entry"
        );
        assert_eq!(
            log[1].hash,
            audit::entry_hash(&log[1]),
            "old entries keep their hashes"
        );
        assert_ne!(log[2].hash, audit::entry_hash(&log[2]), "new ones are signed");

        // The unsigned part rewritten consistently: the seal names it.
        let mut forged = AuditEntry {
            actor: "mallory".to_owned(),
            ..log[0].clone()
        };
        forged.hash = audit::entry_hash(&forged);
        let mut second = AuditEntry {
            prev: forged.hash.clone(),
            ..log[1].clone()
        };
        second.hash = audit::entry_hash(&second);
        tamper(
            &store,
            &[
                &format!(
                    "UPDATE audit SET actor = 'mallory', hash = '{}' WHERE seq = 1",
                    forged.hash
                ),
                &format!(
                    "UPDATE audit SET prev = '{}', hash = '{}' WHERE seq = 2",
                    second.prev, second.hash
                ),
            ],
        )
        .await;
        assert_eq!(
            verify(&store).await,
            [
                "the entries up to 2, written before the log was signed, were changed or deleted after it was sealed",
                "entry 3 does not link to the entry before it (that entry was changed or replaced)"
            ]
        );
    }

    /// The plan SQLite makes for `sql` with `args`, one line per step.
    async fn plan(store: &SqliteStore, sql: &str, args: &[&str]) -> Vec<String> {
        let mut query = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for arg in args {
            query = query.bind(*arg);
        }
        query
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }

    /// Whether a step of a plan reads a whole collection: a scan of a table or index of
    /// `objects` (a table-valued function's rows are the query's own arguments), or a
    /// search that narrows to a kind and nothing more (every object of the kind).
    fn reads_everything(step: &str) -> bool {
        (step.starts_with("SCAN ") && !step.starts_with("SCAN json_each"))
            || step.ends_with("(kind=?)")
            || step.contains("INTEGER PRIMARY KEY (rowid>?)")
    }

    /// Every targeted query, and the plain lists, read `objects` through an index: no
    /// step of their plans scans the table (or a whole index of it, or all of a kind),
    /// with or without statistics, on an empty store and on one with data.
    #[tokio::test]
    async fn every_query_searches_an_index_instead_of_scanning_objects() {
        let (_dir, store) = on_disk().await;
        let mut statements: Vec<(&str, &str, &[&str], &str)> = queries::PLANS.to_vec();
        statements.extend([
            (
                "get",
                "SELECT document FROM objects WHERE kind = ? AND name = ?",
                &["Release", "web-1"][..],
                "sqlite_autoindex_objects_1",
            ),
            ("list", LIST, &["Application", "0", "101"][..], "objects_by_kind"),
            (
                "list of an owner",
                LIST_OF_OWNER,
                &["Release", "web", "0", "101"][..],
                "objects_by_owner",
            ),
        ]);
        let check = async |when: &str| {
            for (label, sql, args, index) in &statements {
                let steps = plan(&store, sql, args).await;
                let scans: Vec<&String> = steps.iter().filter(|s| reads_everything(s)).collect();
                assert!(scans.is_empty(), "{label} ({when}) scans: {steps:#?}");
                assert!(
                    steps
                        .first()
                        .is_some_and(|s| s.starts_with("SEARCH ") && s.contains(index)),
                    "{label} ({when}) does not start by searching {index}: {steps:#?}"
                );
            }
            for (label, sql, args, index) in queries::WHOLE_INDEX_PLANS {
                let steps = plan(&store, sql, args).await;
                let whole = format!("SCAN d USING INDEX {index}");
                assert_eq!(
                    steps.first(),
                    Some(&whole),
                    "{label} ({when}) does not read {index}: {steps:#?}"
                );
                let scans: Vec<&String> = steps[1..].iter().filter(|s| reads_everything(s)).collect();
                assert!(scans.is_empty(), "{label} ({when}) scans: {steps:#?}");
            }
        };
        // The check can fail: a lookup by a document field without an index scans.
        let unindexed = plan(
            &store,
            "SELECT document FROM objects WHERE kind = 'Release' AND json_extract(document, '$.spec.x') = ?",
            &["1"],
        )
        .await;
        assert!(unindexed.iter().any(|s| reads_everything(s)), "{unindexed:#?}");
        assert!(
            [
                "SCAN objects",
                "SCAN d USING INDEX objects_by_kind",
                "SEARCH d USING INTEGER PRIMARY KEY (rowid>?)"
            ]
            .iter()
            .all(|s| reads_everything(s))
        );
        check("empty store").await;
        crate::conformance::governing_deployments_paged(&store)
            .await
            .unwrap();
        crate::conformance::team_applications_paged(&store).await.unwrap();
        check("with data").await;
        sqlx::query("ANALYZE").execute(&store.pool).await.unwrap();
        check("after ANALYZE").await;
    }

    /// A database of schema 3 with data (releases, one of them without a recorded
    /// template hash, deployments, a build, an application) gets the query columns,
    /// indexes and numbers at open: every query answers from what was stored, numbers
    /// continue after the highest stored, the audit log still verifies, and a reopen
    /// keeps it all.
    #[tokio::test]
    async fn migrating_a_store_with_data_makes_every_query_answer() {
        use berth_core::objects::{
            Application, ApplicationSpec, Deployment, DeploymentPhase, DeploymentSpec, Release, ReleaseOrigin,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let image = |d: char| format!("r/web@sha256:{}", d.to_string().repeat(64));
        let template = |d: char| -> ApplicationSpec {
            serde_json::from_value(serde_json::json!({"image": image(d), "replicas": 2})).unwrap()
        };
        let releases: Vec<Value> = [(1, 'a'), (2, 'a'), (3, 'b')]
            .into_iter()
            .map(|(n, d)| {
                let mut v =
                    serde_json::to_value(Release::of("web", n, template(d), ReleaseOrigin::default()))
                        .unwrap();
                if n == 3 {
                    v["spec"].as_object_mut().unwrap().remove("templateHash");
                }
                v
            })
            .collect();
        let deployment = |n: u64, phase: DeploymentPhase| {
            let mut d = Deployment::new(
                format!("web-qa-{n}"),
                DeploymentSpec {
                    application: "web".into(),
                    environment: "qa".into(),
                    release: n,
                    number: n,
                    cause: Default::default(),
                    requested_by: None,
                },
            );
            d.status.phase = phase;
            serde_json::to_value(d).unwrap()
        };
        let app = serde_json::to_value(Application::new(
            "web",
            serde_json::from_value(serde_json::json!({"image": "r/web:1", "team": "pay"})).unwrap(),
        ))
        .unwrap();
        let build = serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Build",
            "metadata": {"name": "web-build-4"},
            "spec": {"application": "web", "number": 4, "builder": {"dockerfile": {}},
                     "builderHash": "h", "image": "r/web"}});
        let rows: Vec<(&str, Option<&str>, Value)> = vec![
            ("Application", None, app),
            ("Release", Some("web"), releases[0].clone()),
            ("Release", Some("web"), releases[1].clone()),
            ("Release", Some("web"), releases[2].clone()),
            (
                "Deployment",
                Some("web"),
                deployment(1, DeploymentPhase::Succeeded),
            ),
            ("Deployment", Some("web"), deployment(3, DeploymentPhase::Failed)),
            ("Build", Some("web"), build),
        ];
        {
            let pool = SqlitePool::connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            migrator(&MIGRATIONS[..3]).run(&pool).await.unwrap();
            for (kind, owner, document) in &rows {
                sqlx::query(
                    "INSERT INTO objects (kind, name, owner, document, version, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                )
                .bind(kind)
                .bind(document["metadata"]["name"].as_str().unwrap())
                .bind(owner)
                .bind(document.to_string())
                .execute(&pool)
                .await
                .unwrap();
            }
            pool.close().await;
        }
        for _ in 0..2 {
            let store = SqliteStore::open(&path).await.unwrap();
            let name = |d: Option<Value>| d.map(|d| d["metadata"]["name"].as_str().unwrap().to_owned());
            assert_eq!(store.next_release_number("web").await.unwrap(), 4);
            assert_eq!(store.next_build_number("web").await.unwrap(), 5);
            assert_eq!(store.next_deployment_number("web", "qa").await.unwrap(), 4);
            assert_eq!(
                name(store.governing_deployment("web", "qa").await.unwrap()).as_deref(),
                Some("web-qa-1")
            );
            assert_eq!(
                name(store.last_succeeded_deployment("web", "qa").await.unwrap()).as_deref(),
                Some("web-qa-1")
            );
            assert_eq!(
                name(store.newest_release("web").await.unwrap()).as_deref(),
                Some("web-3")
            );
            let hash = berth_core::template::template_hash(&template('b'));
            let with_b = store.releases_with_template("web", &hash).await.unwrap();
            assert_eq!(with_b.len(), 1, "the legacy release's hash is computed");
            assert_eq!(
                store
                    .releases_with_digest("web", &format!("sha256:{}", "a".repeat(64)))
                    .await
                    .unwrap()
                    .len(),
                2
            );
            let runs = store.team_releases_in("pay", "qa").await.unwrap();
            assert_eq!(name(runs.into_iter().next()).as_deref(), Some("web-1"));
            assert_eq!(verify(&store).await, Vec::<String>::new());
            store.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .commit(
                vec![Write::Create {
                    kind: "Deployment".to_owned(),
                    name: "web-qa-4".to_owned(),
                    owner: Some("web".to_owned()),
                    document: deployment(4, DeploymentPhase::Pending),
                }],
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(store.next_deployment_number("web", "qa").await.unwrap(), 5);
        assert_eq!(verify(&store).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn open_in_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("berth.db");
        let error = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            matches!(&error, StoreError::Backend { message } if message.contains(&*path.to_string_lossy())),
            "{error}"
        );
    }

    #[tokio::test]
    async fn in_memory_stores_are_separate() {
        let (_a, a) = in_memory().await;
        let (_b, b) = in_memory().await;
        a.commit(vec![create("Release", "web-1")], vec![]).await.unwrap();
        assert_eq!(b.get("Release", "web-1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn every_commit_is_timed_for_whoever_observes_them() {
        let (_dir, store) = in_memory().await;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        assert!(store.observe_commits(Box::new(move |d| sink.lock().unwrap().push(d))));
        assert!(!store.observe_commits(Box::new(|_| {})), "one observer");
        store
            .commit(vec![create("Release", "web-1")], vec![])
            .await
            .unwrap();
        // A failed commit (the object exists) is timed too.
        store
            .commit(vec![create("Release", "web-1")], vec![])
            .await
            .unwrap_err();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|d| *d < Duration::from_secs(5)), "{seen:?}");
    }

    #[tokio::test]
    async fn stored_times_round_trip_exactly() {
        let now = Utc::now();
        assert_eq!(parse_time(&timestamp(now), "time").unwrap(), now);
        assert!(timestamp(now).ends_with('Z'));
    }

    #[test]
    fn cursors_beyond_sqlite_integers_mean_after_everything() {
        assert_eq!(cursor(None), 0);
        assert_eq!(cursor(Some(7)), 7);
        assert_eq!(cursor(Some(u64::MAX)), i64::MAX);
    }
}
