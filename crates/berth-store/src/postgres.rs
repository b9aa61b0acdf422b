//! The PostgreSQL adapter of [`Store`]: one database that several Berth servers share.
//!
//! The schema (`migrations/postgres/`) has the same tables and generated columns as
//! SQLite's, so every statement whose SQL reads the same in both dialects comes from
//! [`crate::sql`]; this module adds what differs: connecting, the commit lock, the
//! revision, listing and the audit log's time filter.
//!
//! # The revision and the commit lock
//!
//! SQLite keeps the store revision in a one-row table that every commit rewrites. On
//! PostgreSQL that row would be hot: every commit leaves a dead version of it behind
//! for vacuum and waits on its row lock. The revision is a **sequence** instead
//! (`nextval('revision')`), which no transaction locks or rewrites.
//!
//! A sequence alone does not keep the semantics, though. Two commits would take their
//! numbers in one order and become visible in the other, so a reader that has seen
//! event 11 could later find event 10 appear, and `wait`/the change feed would skip it;
//! and the audit log is a hash chain, each entry naming the hash of the one before, which
//! two commits cannot both extend at once. So every write transaction first takes one
//! transaction-scoped advisory lock ([`COMMIT_LOCK`], `pg_advisory_xact_lock`), released
//! by its `COMMIT` or `ROLLBACK`: commits are serialised exactly as SQLite's
//! `BEGIN IMMEDIATE` serialises them, revisions and event seqs are handed out in commit
//! order (monotonic; a rolled-back commit leaves a gap, never a reuse), and a stale
//! `expectedVersion` is refused (409) as on SQLite, since no other commit can change a
//! row between the check and the write. Reads never take the lock. The lock covers one
//! database, whichever schema: servers on one database share it.
//!
//! Commits of this process also queue on an in-process mutex first, so that they do not
//! hold pool connections while waiting for the lock, and so that the audit checkpoint
//! file beside the server advances in commit order.
//!
//! # Wake-ups from other servers
//!
//! [`Store::wait_for_events`] wakes at once for commits of this process and, for those
//! of other servers on the same database, within [`POLL_EVERY`] by reading the end of
//! the event log.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    str::FromStr,
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
    Connection, PgConnection, PgPool, Postgres,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::{Mutex, watch};

use crate::{
    seal::Outside,
    sql::{CommitObserver, CommitTimer, TokenKey, WriteHealth, backend, migrator},
};

mod queries;

/// Connections of one server's pool.
const CONNECTIONS: u32 = 10;

/// How long opening the store waits for PostgreSQL to answer, and a request for a
/// connection of the pool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiter for events reads the log, for commits of other servers.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The key of the advisory lock every write transaction holds (`berth` in ASCII).
const COMMIT_LOCK: i64 = 0x0062_6572_7468;

/// Moves the store revision on, under the commit lock.
const NEXT_REVISION: &str = "SELECT nextval('revision')";

/// The store revision as it stands (0 before the first commit).
const CURRENT_REVISION: &str = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM revision";

/// The schema, embedded in the binary; append new files in version order.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../migrations/postgres/0001_initial.sql"),
)];

/// A transaction holding the store's commit lock (see the module's documentation).
async fn begin_write(conn: &mut PgConnection) -> Result<sqlx::Transaction<'_, Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(COMMIT_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

crate::sql::store_statements!(sqlx::Postgres, sqlx::PgConnection, sqlx::postgres::PgRow);

/// An audit entry's time at or after a bound, around the bound's text: stored times vary
/// in their fractional digits, so they are compared as instants.
const TIME_AT_LEAST: (&str, &str) = (" AND time::timestamptz >= ", "::timestamptz");

/// An audit entry's time before a bound, around the bound's text.
const TIME_BEFORE: (&str, &str) = (" AND time::timestamptz < ", "::timestamptz");

/// Begins the read transaction of an audit verification: one snapshot of the log, its
/// head and the objects.
const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// A page of one kind.
const LIST: &str = "SELECT id, name, document FROM objects WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3";
/// A page of one kind of one owner.
const LIST_OF_OWNER: &str =
    "SELECT id, name, document FROM objects WHERE kind = $1 AND owner = $2 AND id > $3 ORDER BY id LIMIT $4";

/// The work of one write transaction, given its connection.
type TransactionWork<T> = crate::sql::TransactionWork<PgConnection, T>;

/// A [`Store`] in PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    /// Every connection of this server.
    pool: PgPool,
    /// Held by whoever of this process writes (then the commit lock is taken inside).
    writer: Arc<Mutex<()>>,
    /// Position of the newest event this server knows of.
    last_seq: watch::Sender<u64>,
    /// Whether the latest write worked, for readiness.
    health: Arc<WriteHealth>,
    /// Counts the writes of this process that ended ([`Store::generation`]).
    generation: Arc<AtomicU64>,
    /// Signs every audit entry, the head and the seal.
    key: AuditKey,
    /// The checkpoint kept outside the database, by this server.
    outside: Arc<Outside>,
    /// The checkpoint file was missing at open although the log had entries.
    outside_lost: bool,
    /// Told how long each commit took.
    commit_observer: std::sync::OnceLock<CommitTimer>,
}

/// Where a PostgreSQL URL points, without its password, for messages.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("(the user's database)")
    )
}

impl PostgresStore {
    /// Has `observe` told how long every commit from now on takes; only the first
    /// observer set is kept: returns whether this one was.
    pub fn observe_commits(&self, observe: CommitObserver) -> bool {
        self.commit_observer.set(CommitTimer(observe)).is_ok()
    }

    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// brings its schema up to date and seals its audit log with `key` on first use. The
    /// audit checkpoint is kept in the file `checkpoint` (memory only when none).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when `url` is not a PostgreSQL URL, the server cannot be
    /// reached or refuses the login, or the schema cannot be migrated.
    pub async fn open(url: &str, key: AuditKey, checkpoint: Option<PathBuf>) -> Result<Self, StoreError> {
        let not_postgres = |why: String| StoreError::Backend {
            message: format!(
                "the store URL is not a PostgreSQL URL ({why}): write it as \
                 postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ),
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(not_postgres("it does not start with postgres://".to_owned()));
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| not_postgres(e.to_string()))?;
        Self::open_with(options, key, checkpoint).await
    }

    /// [`PostgresStore::open`] with connection options already made (a schema of its
    /// own through `search_path`, for tests).
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::open`].
    pub async fn open_with(
        options: PgConnectOptions,
        key: AuditKey,
        checkpoint: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        let target = describe(&options);
        let unreachable = |why: String| StoreError::Backend {
            message: format!(
                "cannot connect to PostgreSQL at {target}: {why}; check that the server runs and \
                 listens there, and the URL's user, password and database"
            ),
        };
        // One connection first, for the real reason when it fails (a pool would retry
        // until its timeout and only say that it timed out).
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Ok(Ok(conn)) => {
                if let Err(e) = conn.close().await {
                    tracing::debug!(error = %e, "closing the first connection to PostgreSQL");
                }
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        migrator(MIGRATIONS)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend {
                message: format!("migrating the store schema in {target}: {e}"),
            })?;
        let outside = Outside::new(checkpoint);
        let last = statements::last_seq(&pool).await?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| backend("reading the audit seal", &e))?;
        let entries = statements::audit_end(&mut conn).await?.0;
        let had_checkpoint = outside.read().is_some();
        let sealed_now = statements::seal_once(&mut conn, &key, &outside).await?;
        // Other servers write to the log too, so this server's checkpoint file is only
        // what it has seen: a server new to a log with entries starts its file at the
        // head as it finds it (verification checks that head against the log), and from
        // then on the file says how far the log reached at least.
        let outside_lost = false;
        if entries > 0
            && !had_checkpoint
            && !sealed_now
            && let Some(head) = statements::audit_head(&mut conn).await?
        {
            tracing::info!(
                seq = head.seq,
                "starting this server's audit checkpoint file at the log's head"
            );
            outside.advance(head);
        }
        drop(conn);
        Ok(Self {
            pool,
            writer: Arc::new(Mutex::new(())),
            last_seq: watch::Sender::new(last),
            health: Arc::new(WriteHealth::default()),
            generation: Arc::new(AtomicU64::new(0)),
            key,
            outside: Arc::new(outside),
            outside_lost,
            commit_observer: std::sync::OnceLock::new(),
        })
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `work` in a write transaction holding the commit lock, committing when it
    /// succeeds. The transaction runs to its end on a task of its own even when the
    /// caller stops waiting for it: nothing is left half-done.
    async fn in_transaction<T: Send + 'static>(
        &self,
        doing: &'static str,
        work: TransactionWork<T>,
    ) -> Result<T, StoreError> {
        let pool = self.pool.clone();
        let writer = Arc::clone(&self.writer);
        let generation = Arc::clone(&self.generation);
        let health = Arc::clone(&self.health);
        let outside = Arc::clone(&self.outside);
        let task = tokio::spawn(async move {
            let _writer = writer.lock().await;
            let mut conn = pool.acquire().await.map_err(|e| backend(doing, &e))?;
            let outcome = match begin_write(&mut conn).await {
                Err(e) => Err(backend(doing, &e)),
                Ok(mut tx) => match work(&mut tx).await {
                    Ok(value) => tx.commit().await.map(|()| value).map_err(|e| backend(doing, &e)),
                    Err(error) => {
                        if let Err(e) = tx.rollback().await {
                            tracing::warn!(error = %e, "rolling back after {doing} failed");
                        }
                        Err(error)
                    }
                },
            };
            generation.fetch_add(1, Ordering::SeqCst);
            if outcome.is_ok() {
                // Still holding the writer: this server's checkpoints reach its file in
                // commit order.
                match statements::audit_head(&mut conn).await {
                    Ok(Some(head)) => outside.advance(head),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "reading the audit head after a commit"),
                }
            }
            health.written(outcome.as_ref().map(|_| ()));
            outcome
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(StoreError::Backend {
                message: format!("{doing}: the store's write task failed: {e}"),
            }),
        }
    }

    /// Whether a write can be made now, probing at most once per [`PROBE_EVERY`](crate::sql::PROBE_EVERY) and
    /// only while the last write failed or none was made yet.
    async fn probe(&self) -> Result<(), StoreError> {
        if let Some(known) = self.health.known() {
            return known;
        }
        let outcome = async {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|e| backend("probing whether the store can write", &e))?;
            let mut tx = conn
                .begin()
                .await
                .map_err(|e| backend("probing whether the store can write", &e))?;
            // Rewrites a row with its own value: a real write, no change.
            sqlx::query("UPDATE audit_seal SET id = id WHERE id = 1")
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("probing whether the store can write", &e))?;
            tx.rollback()
                .await
                .map_err(|e| backend("probing whether the store can write", &e))
        }
        .await;
        self.health.probed(outcome.clone());
        outcome
    }
}

crate::sql::store_impl!(PostgresStore {
    async fn last_event(&self) -> Result<u64, StoreError> {
        let last = statements::last_seq(&self.pool).await?;
        crate::sql::announce(&self.last_seq, last);
        Ok(last)
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribe before reading the database: a commit of this process landing in
        // between then still marks the channel changed.
        let mut seen = self.last_seq.subscribe();
        loop {
            match self.last_event().await {
                Ok(last) if last > after => return,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reading the last event while waiting"),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return;
            }
            let until = deadline.min(now + POLL_EVERY);
            let woke = matches!(
                tokio::time::timeout_at(until, seen.wait_for(|&last| last > after)).await,
                Ok(Ok(_))
            );
            if woke {
                return;
            }
        }
    }

    fn generation(&self) -> Option<u64> {
        // Other servers write too: a number that only counts this one's writes would let
        // a reader keep what another server has since changed.
        None
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.probe().await
    }

});

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::{self, Cleanup};

    /// A fresh store in a schema of its own, or none when the tests are skipped.
    pub(crate) async fn on_postgres() -> (Option<Cleanup>, Option<PostgresStore>) {
        let Some(url) = testing::database("a PostgreSQL store test") else {
            return (None, None);
        };
        let name = format!("berth_test_{:016x}", rand::random::<u64>());
        testing::run(&url, &format!("CREATE SCHEMA \"{name}\"")).await;
        let schema = Cleanup {
            url: url.clone(),
            sql: format!("DROP SCHEMA \"{name}\" CASCADE"),
        };
        let store = PostgresStore::open_with(in_schema(&url, &name), crate::seal::random_key(), None)
            .await
            .unwrap();
        (Some(schema), Some(store))
    }

    /// Connection options for `url` with `schema` first on the search path.
    fn in_schema(url: &str, schema: &str) -> PgConnectOptions {
        PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", schema)])
    }

    macro_rules! conformance_on_postgres {
        (by_ref: [$($by_ref:ident),* $(,)?], shared: [$($shared:ident),* $(,)?] $(,)?) => {
            mod conformance_on_postgres {
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $by_ref() {
                        let (_schema, Some(store)) = on_postgres().await else { return };
                        crate::conformance::$by_ref(&store).await.unwrap();
                    }
                )*
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $shared() {
                        let (_schema, Some(store)) = on_postgres().await else { return };
                        crate::conformance::$shared(Arc::new(store)).await.unwrap();
                    }
                )*
            }
        };
    }

    crate::conformance::every_test!(conformance_on_postgres);

    #[tokio::test]
    async fn a_bad_url_says_how_to_write_one() {
        let error = PostgresStore::open("mysql://nowhere", crate::seal::random_key(), None)
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_without_its_password() {
        // Port 9 (discard) on loopback: nothing listens there.
        let error = PostgresStore::open(
            "postgres://berth:secret@127.0.0.1:9/berth",
            crate::seal::random_key(),
            None,
        )
        .await
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("cannot connect to PostgreSQL at postgres://berth@127.0.0.1:9/berth"),
            "{message}"
        );
        assert!(
            !message.contains("secret"),
            "the password stays out of messages: {message}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_server_sees_the_first_ones_commits_and_wakes_for_them() {
        let (Some(schema), Some(first)) = on_postgres().await else {
            return;
        };
        let name = schema.sql.split('"').nth(1).unwrap();
        let second = PostgresStore::open_with(in_schema(&schema.url, name), first.key.clone(), None)
            .await
            .unwrap();
        let waiting = tokio::spawn(async move {
            second.wait_for_events(0, Duration::from_secs(10)).await;
            second.last_event().await.unwrap()
        });
        let commit = first
            .commit(vec![], vec![NewEvent::normal("A", "K", "n", "t", "a")])
            .await
            .unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second server wakes within its poll interval")
            .unwrap();
        assert_eq!(seen, commit.events[0].seq);
    }
}
