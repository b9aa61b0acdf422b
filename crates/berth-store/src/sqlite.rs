//! The SQLite adapter of [`Store`]: one database file in WAL mode, or one in-memory database
//! for tests.
//!
//! SQLite allows one writer at a time. Commits (and token writes) queue on a tokio mutex and
//! then take the database's write lock up front with `BEGIN IMMEDIATE`, so a commit waits its
//! turn instead of failing with `SQLITE_BUSY`; readers run beside it thanks to WAL.

use std::{path::Path, time::Duration};

use async_trait::async_trait;
use berth_core::{
    objects::{Event, EventType, NewEvent},
    ports::{Commit, EventQuery, ListQuery, Page, Store, StoreError, TokenRecord, Write},
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sqlx::{
    Row, SqlSafeStr, SqliteConnection, SqlitePool,
    migrate::{Migration, MigrationType, Migrator},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous},
};
use tokio::sync::{Mutex, watch};

/// Most items one page of objects or events holds, whatever the caller asks for.
const MAX_PAGE: u32 = 1000;

/// Connections of a file-backed store: one writer at a time, and readers beside it.
const CONNECTIONS: u32 = 5;

/// How long a connection waits for a lock held by another process using the same file.
/// Writers of this process never wait here: they queue on [`SqliteStore::writer`] first.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, embedded in the binary.
///
/// Built by hand rather than with `sqlx::migrate!`, which needs sqlx's `macros` feature (a
/// second, host-side build of SQLite). Version, description, type and checksum are the ones
/// `migrate!` would derive from the file names, so either way writes the same
/// `_sqlx_migrations` rows. Append new files here in version order.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "initial", include_str!("../migrations/0001_initial.sql"))];

/// A [`Store`] in SQLite.
#[derive(Debug)]
pub struct SqliteStore {
    /// Connections; a single one for an in-memory database.
    pool: SqlitePool,
    /// Held by whoever writes, so that writers of this process never contend inside SQLite.
    writer: Mutex<()>,
    /// Position of the newest event, updated after each commit that appended events.
    last_seq: watch::Sender<u64>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it is missing, and brings its
    /// schema up to date.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the file cannot be opened or created (a missing
    /// directory, no permission), or the schema cannot be migrated (a file written by a newer
    /// Berth).
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| backend(&format!("opening the store at {}", path.display()), &e))?;
        Self::start(pool).await
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
        Self::start(pool).await
    }

    /// Closes every connection, waiting for those in use to be returned.
    ///
    /// Dropping the store closes them too, but in the background; close first when the same
    /// file is opened again right after.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Migrates the schema and reads where the event log stands.
    async fn start(pool: SqlitePool) -> Result<Self, StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend {
                message: format!("migrating the store schema: {e}"),
            })?;
        let last = last_seq(&pool).await?;
        Ok(Self {
            pool,
            writer: Mutex::new(()),
            last_seq: watch::Sender::new(last),
        })
    }

    /// Tells waiters that the log now reaches `seq`.
    fn announce(&self, seq: u64) {
        self.last_seq.send_if_modified(|last| {
            let newer = seq > *last;
            if newer {
                *last = seq;
            }
            newer
        });
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, writes: Vec<Write>, events: Vec<NewEvent>) -> Result<Commit, StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| backend("starting a commit", &e))?;
        match apply(&mut tx, writes, events).await {
            Ok(commit) => {
                tx.commit().await.map_err(|e| backend("committing", &e))?;
                if let Some(event) = commit.events.last() {
                    self.announce(event.seq);
                }
                tracing::debug!(
                    revision = commit.revision,
                    writes = commit.documents.len(),
                    events = commit.events.len(),
                    "committed"
                );
                Ok(commit)
            }
            Err(error) => {
                // Dropping the transaction would roll back too, but only when the connection
                // is next used; do it now so the failure is complete when we return.
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rolling back a failed commit");
                }
                Err(error)
            }
        }
    }

    async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let document: Option<String> =
            sqlx::query_scalar("SELECT document FROM objects WHERE kind = ? AND name = ?")
                .bind(kind)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| backend(&format!("reading {kind} '{name}'"), &e))?;
        document.map(|text| parse_document(kind, name, &text)).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let after = cursor(query.after);
        // One more than asked, to know whether there is a next page.
        let fetch = i64::from(limit) + 1;
        let rows: Vec<(i64, String, String)> =
            match &query.owner {
                Some(owner) => {
                    sqlx::query_as(
                        "SELECT id, name, document FROM objects \
                 WHERE kind = ? AND owner = ? AND id > ? ORDER BY id LIMIT ?",
                    )
                    .bind(&query.kind)
                    .bind(owner)
                    .bind(after)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
                }
                None => sqlx::query_as(
                    "SELECT id, name, document FROM objects WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                )
                .bind(&query.kind)
                .bind(after)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await,
            }
            .map_err(|e| backend(&format!("listing {}", query.kind), &e))?;

        let more = rows.len() > limit as usize;
        let mut page = Page::default();
        for (id, name, text) in rows.into_iter().take(limit as usize) {
            page.items.push(parse_document(&query.kind, &name, &text)?);
            if more {
                page.next = Some(to_u64(id, "object id")?);
            }
        }
        Ok(page)
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let limit = i64::from(query.limit.clamp(1, MAX_PAGE));
        let after = cursor(Some(query.after));
        let rows = match &query.application {
            Some(application) => {
                sqlx::query(
                    "SELECT seq, time, type, reason, kind, name, application, environment, cluster, \
                 actor, message FROM events WHERE application = ? AND seq > ? ORDER BY seq LIMIT ?",
                )
                .bind(application)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(
                    "SELECT seq, time, type, reason, kind, name, application, environment, cluster, \
                 actor, message FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(|e| backend("reading events", &e))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_event(&self) -> Result<u64, StoreError> {
        last_seq(&self.pool).await
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

    async fn put_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO tokens (hash, name, subject, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (hash) DO UPDATE SET name = excluded.name, subject = excluded.subject, \
             created_at = excluded.created_at",
        )
        .bind(&token.hash)
        .bind(&token.name)
        .bind(&token.subject)
        .bind(timestamp(token.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| backend(&format!("storing token '{}'", token.name), &e))?;
        Ok(())
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<(String, String, String, String)> =
            sqlx::query_as("SELECT hash, name, subject, created_at FROM tokens WHERE hash = ?")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| backend("looking up a token", &e))?;
        row.map(|(hash, name, subject, created_at)| {
            Ok(TokenRecord {
                created_at: parse_time(&created_at, "token creation time")?,
                name,
                subject,
                hash,
            })
        })
        .transpose()
    }

    async fn count_tokens(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("counting tokens", &e))?;
        to_u64(count, "token count")
    }
}

// === One commit, inside its transaction ===

/// Bumps the revision, applies every write and appends every event; the caller commits or
/// rolls back.
async fn apply(
    conn: &mut SqliteConnection,
    writes: Vec<Write>,
    events: Vec<NewEvent>,
) -> Result<Commit, StoreError> {
    let revision: i64 =
        sqlx::query_scalar("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| backend("bumping the store revision", &e))?;
    let now = Utc::now();
    let stamp = timestamp(now);

    let mut documents = Vec::with_capacity(writes.len());
    for write in writes {
        let stored = match write {
            Write::Create {
                kind,
                name,
                owner,
                document,
            } => Some(create(conn, revision, &stamp, &kind, &name, owner.as_deref(), document).await?),
            Write::Replace {
                kind,
                name,
                document,
                expected_version,
            } => Some(replace(conn, revision, &stamp, &kind, &name, document, expected_version).await?),
            Write::Delete {
                kind,
                name,
                expected_version,
            } => {
                delete(conn, &kind, &name, expected_version).await?;
                None
            }
        };
        documents.push(stored);
    }

    let mut recorded = Vec::with_capacity(events.len());
    for event in events {
        recorded.push(append(conn, now, &stamp, event).await?);
    }

    Ok(Commit {
        revision: to_u64(revision, "store revision")?,
        documents,
        events: recorded,
    })
}

/// Inserts a new object.
async fn create(
    conn: &mut SqliteConnection,
    revision: i64,
    stamp: &str,
    kind: &str,
    name: &str,
    owner: Option<&str>,
    document: Value,
) -> Result<Value, StoreError> {
    let document = with_bookkeeping(document, kind, name, revision, stamp, stamp)?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO objects (kind, name, owner, document, version, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO NOTHING RETURNING id",
    )
    .bind(kind)
    .bind(name)
    .bind(owner)
    .bind(document.to_string())
    .bind(revision)
    .bind(stamp)
    .bind(stamp)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| backend(&format!("creating {kind} '{name}'"), &e))?;
    match id {
        Some(_) => Ok(document),
        None => Err(StoreError::AlreadyExists {
            kind: kind.to_owned(),
            name: name.to_owned(),
        }),
    }
}

/// Replaces the document of an existing object, keeping its id (creation order), owner and
/// creation time.
async fn replace(
    conn: &mut SqliteConnection,
    revision: i64,
    stamp: &str,
    kind: &str,
    name: &str,
    document: Value,
    expected_version: Option<u64>,
) -> Result<Value, StoreError> {
    let (id, created_at) = current(conn, kind, name, expected_version).await?;
    let document = with_bookkeeping(document, kind, name, revision, &created_at, stamp)?;
    sqlx::query("UPDATE objects SET document = ?, version = ?, updated_at = ? WHERE id = ?")
        .bind(document.to_string())
        .bind(revision)
        .bind(stamp)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|e| backend(&format!("replacing {kind} '{name}'"), &e))?;
    Ok(document)
}

/// Deletes an existing object.
async fn delete(
    conn: &mut SqliteConnection,
    kind: &str,
    name: &str,
    expected_version: Option<u64>,
) -> Result<(), StoreError> {
    let (id, _) = current(conn, kind, name, expected_version).await?;
    sqlx::query("DELETE FROM objects WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|e| backend(&format!("deleting {kind} '{name}'"), &e))?;
    Ok(())
}

/// The row id and creation time of `kind/name`, once it is known to exist at the version the
/// caller expects.
async fn current(
    conn: &mut SqliteConnection,
    kind: &str,
    name: &str,
    expected_version: Option<u64>,
) -> Result<(i64, String), StoreError> {
    let row: Option<(i64, i64, String)> =
        sqlx::query_as("SELECT id, version, created_at FROM objects WHERE kind = ? AND name = ?")
            .bind(kind)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| backend(&format!("reading {kind} '{name}'"), &e))?;
    let Some((id, version, created_at)) = row else {
        return Err(StoreError::NotFound {
            kind: kind.to_owned(),
            name: name.to_owned(),
        });
    };
    let actual = to_u64(version, "object version")?;
    match expected_version {
        Some(expected) if expected != actual => Err(StoreError::Conflict {
            kind: kind.to_owned(),
            name: name.to_owned(),
            expected,
            actual,
        }),
        _ => Ok((id, created_at)),
    }
}

/// Appends one event.
async fn append(
    conn: &mut SqliteConnection,
    time: DateTime<Utc>,
    stamp: &str,
    event: NewEvent,
) -> Result<Event, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (time, type, reason, kind, name, application, environment, cluster, \
         actor, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(stamp)
    .bind(event_type_name(event.event_type))
    .bind(&event.reason)
    .bind(&event.kind)
    .bind(&event.name)
    .bind(&event.application)
    .bind(&event.environment)
    .bind(&event.cluster)
    .bind(&event.actor)
    .bind(&event.message)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        backend(
            &format!(
                "recording event {} about {} '{}'",
                event.reason, event.kind, event.name
            ),
            &e,
        )
    })?;
    Ok(Event {
        seq: to_u64(seq, "event seq")?,
        time,
        event,
    })
}

/// Sets the fields of `metadata` the store owns.
fn with_bookkeeping(
    mut document: Value,
    kind: &str,
    name: &str,
    revision: i64,
    created: &str,
    updated: &str,
) -> Result<Value, StoreError> {
    let not_object = |what: &str| StoreError::Backend {
        message: format!("cannot store {kind} '{name}': {what} is not a JSON object"),
    };
    let metadata = document
        .as_object_mut()
        .ok_or_else(|| not_object("the document"))?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| not_object("metadata"))?;
    metadata.insert("resourceVersion".to_owned(), Value::String(revision.to_string()));
    metadata.insert("creationTimestamp".to_owned(), Value::String(created.to_owned()));
    metadata.insert("updateTimestamp".to_owned(), Value::String(updated.to_owned()));
    Ok(document)
}

// === Reading rows ===

/// Position of the newest event, 0 for an empty log.
async fn last_seq(pool: &SqlitePool) -> Result<u64, StoreError> {
    let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
        .fetch_one(pool)
        .await
        .map_err(|e| backend("reading the last event", &e))?;
    to_u64(seq, "event seq")
}

/// An event as stored.
fn event_from_row(row: &SqliteRow) -> Result<Event, StoreError> {
    let column = |e: sqlx::Error| backend("decoding an event", &e);
    let event_type: String = row.try_get("type").map_err(column)?;
    let time: String = row.try_get("time").map_err(column)?;
    Ok(Event {
        seq: to_u64(row.try_get("seq").map_err(column)?, "event seq")?,
        time: parse_time(&time, "event time")?,
        event: NewEvent {
            event_type: match event_type.as_str() {
                "Normal" => EventType::Normal,
                "Warning" => EventType::Warning,
                other => {
                    return Err(StoreError::Backend {
                        message: format!("stored event has unknown type '{other}'"),
                    });
                }
            },
            reason: row.try_get("reason").map_err(column)?,
            kind: row.try_get("kind").map_err(column)?,
            name: row.try_get("name").map_err(column)?,
            application: row.try_get("application").map_err(column)?,
            environment: row.try_get("environment").map_err(column)?,
            cluster: row.try_get("cluster").map_err(column)?,
            actor: row.try_get("actor").map_err(column)?,
            message: row.try_get("message").map_err(column)?,
        },
    })
}

/// A stored document.
fn parse_document(kind: &str, name: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend {
        message: format!("stored document of {kind} '{name}' is not valid JSON: {e}"),
    })
}

/// A stored time.
fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Backend {
            message: format!("stored {what} '{text}' is not RFC 3339: {e}"),
        })
}

// === Small conversions ===

/// RFC 3339 in UTC with as many fractional digits as needed, so that parsing it gives back
/// the same instant.
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// How an event type is stored.
fn event_type_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// A caller's cursor as an SQLite integer; beyond the largest rowid means "after everything".
fn cursor(after: Option<u64>) -> i64 {
    after.map_or(0, |after| i64::try_from(after).unwrap_or(i64::MAX))
}

/// A stored integer the store only ever makes non-negative.
fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend {
        message: format!("stored {what} {value} is negative"),
    })
}

/// A database failure, saying what the store was doing.
fn backend(doing: &str, error: &sqlx::Error) -> StoreError {
    StoreError::Backend {
        message: format!("{doing}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tempfile::TempDir;

    use super::*;

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

                conformance_suite! {
                    open: $open,
                    by_ref: [
                        create_get_and_list,
                        list_pages,
                        create_existing_fails,
                        replace_keeps_creation,
                        stale_version_conflicts,
                        failed_commit_writes_nothing,
                        delete_removes,
                        writes_share_revision,
                        rejects_non_object_documents,
                        events_in_order,
                        wait_returns_when_events_exist,
                        wait_times_out,
                        tokens,
                    ],
                    shared: [wait_wakes_on_commit, concurrent_commits],
                }
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

    #[tokio::test]
    async fn reopened_file_keeps_data_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let token = TokenRecord {
            name: "bootstrap".to_owned(),
            subject: "admin".to_owned(),
            hash: "ab".repeat(32),
            created_at: Utc::now(),
        };

        let store = SqliteStore::open(&path).await.unwrap();
        let first = store
            .commit(
                vec![create("Release", "web-1")],
                vec![NewEvent::normal("Created", "Release", "web-1", "tester", "created").about("web", None)],
            )
            .await
            .unwrap();
        store.put_token(token.clone()).await.unwrap();
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
