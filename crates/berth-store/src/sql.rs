//! What the SQLite and PostgreSQL adapters share: the bookkeeping of documents, tokens and
//! audit entries, and every statement that reads the same in both dialects.
//!
//! The statements are written once, with `$1`-style parameters (which SQLite accepts as
//! well), in [`store_statements!`]: each adapter expands it into a module of its own,
//! typed with its own connection and row, beside the few statements that differ (how the
//! revision moves, how a write transaction begins). A macro rather than functions generic
//! over `sqlx::Database`: the bounds every statement would need (encoders, decoders and
//! executors for each type it binds or reads) would outweigh the statements themselves.

use std::{future::Future, time::Duration};

use berth_core::{
    audit::{self, Operation},
    objects::EventType,
    ports::{Page, StoreError, TokenRecord},
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// Most items one page of objects or events holds, whatever the caller asks for.
pub(crate) const MAX_PAGE: u32 = 1000;

/// Audit entries inserted by one statement: 12 values each, well within SQLite's limit of
/// 32,766 bound values (and PostgreSQL's of 65,535).
pub(crate) const AUDIT_ROWS_A_STATEMENT: usize = 1000;

/// Events inserted by one statement: 10 values each.
pub(crate) const EVENT_ROWS_A_STATEMENT: usize = 1000;

/// Called with the time each commit took, whether it committed or failed.
pub type CommitObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// The observer set, which `Debug` only names.
pub(crate) struct CommitTimer(pub(crate) CommitObserver);

impl std::fmt::Debug for CommitTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitObserver")
    }
}

/// How often a store may probe whether it can write while it is failing.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The outcome of the store's latest write or probe.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    state: std::sync::Mutex<Health>,
}

#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Why the latest write failed; none after a success.
    error: Option<StoreError>,
    /// Whether any write or probe succeeded since the store opened.
    ever_written: bool,
    /// When the latest probe ran.
    probed: Option<std::time::Instant>,
}

impl WriteHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a write's outcome; domain refusals (not found, conflicts) say nothing
    /// about the database.
    pub(crate) fn written(&self, outcome: Result<(), &StoreError>) {
        let mut h = self.lock();
        match outcome {
            Ok(()) => {
                h.error = None;
                h.ever_written = true;
            }
            Err(e @ StoreError::Backend { .. }) => h.error = Some(e.clone()),
            Err(_) => {}
        }
    }

    pub(crate) fn probed(&self, outcome: Result<(), StoreError>) {
        let mut h = self.lock();
        h.probed = Some(std::time::Instant::now());
        match outcome {
            Ok(()) => {
                h.error = None;
                h.ever_written = true;
            }
            Err(e) => h.error = Some(e),
        }
    }

    /// The answer without probing, when one is due: the last write worked, or a probe
    /// ran a moment ago.
    pub(crate) fn known(&self) -> Option<Result<(), StoreError>> {
        let h = self.lock();
        let fresh = h.probed.is_some_and(|at| at.elapsed() < PROBE_EVERY);
        match &h.error {
            None if h.ever_written => Some(Ok(())),
            Some(e) if fresh => Some(Err(e.clone())),
            None if fresh => Some(Ok(())),
            _ => None,
        }
    }

    pub(crate) fn last(&self) -> Result<(), StoreError> {
        self.lock().error.clone().map_or(Ok(()), Err)
    }
}

/// One write as the audit log records it.
pub(crate) struct AuditedWrite<'a> {
    pub(crate) operation: Operation,
    pub(crate) kind: &'a str,
    pub(crate) name: &'a str,
    pub(crate) before: Option<String>,
    pub(crate) after: Option<String>,
}

/// The seal's columns: keyed_from, prev, key_id, mac (all empty before sealing).
pub(crate) type SealRow = (Option<i64>, Option<String>, Option<String>, Option<String>);

/// An object beside its latest entry: id, kind, name, document, entry seq, entry after.
pub(crate) type ObjectState = (i64, String, String, String, Option<i64>, Option<String>);

/// How many stored objects one page of the verification reads.
pub(crate) const VERIFY_PAGE: i64 = 1000;

/// The columns of a token row, in the order [`token_from_row`] reads them.
pub(crate) const TOKEN_COLUMNS: &str = "hash, id, name, subject, created_at, expires_at, revoked_at";

/// How a token is looked up.
#[derive(Clone, Copy)]
pub(crate) enum TokenKey<'a> {
    /// By the hash of its secret.
    Hash(&'a str),
    /// By its public id.
    Id(&'a str),
}

/// What the audit log records of a token: a digest of every field, the secret's hash
/// included (it is a hash already).
pub(crate) fn token_digest(t: &TokenRecord) -> String {
    let fields = serde_json::json!([
        t.id,
        t.name,
        t.subject,
        t.hash,
        timestamp(t.created_at),
        t.expires_at.map(timestamp),
        t.revoked_at.map(timestamp),
    ]);
    audit::digest(&fields.to_string())
}

/// Sets the fields of `metadata` the store owns.
pub(crate) fn with_bookkeeping(
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

/// A stored document.
pub(crate) fn parse_document(kind: &str, name: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Backend {
        message: format!("stored document of {kind} '{name}' is not valid JSON: {e}"),
    })
}

/// A stored time.
pub(crate) fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Backend {
            message: format!("stored {what} '{text}' is not RFC 3339: {e}"),
        })
}

// === Small conversions ===

/// RFC 3339 in UTC with as many fractional digits as needed, so that parsing it gives back
/// the same instant.
pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// How an event type is stored.
pub(crate) fn event_type_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// A caller's cursor as an SQLite integer; beyond the largest rowid means "after everything".
pub(crate) fn cursor(after: Option<u64>) -> i64 {
    after.map_or(0, |after| i64::try_from(after).unwrap_or(i64::MAX))
}

/// A stored integer the store only ever makes non-negative.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend {
        message: format!("stored {what} {value} is negative"),
    })
}

/// A database failure, saying what the store was doing.
pub(crate) fn backend(doing: &str, error: &sqlx::Error) -> StoreError {
    StoreError::Backend {
        message: format!("{doing}: {error}"),
    }
}

/// A page of `(cursor, name, document)` rows fetched with one row more than `limit`.
pub(crate) fn page(kind: &str, rows: Vec<(i64, String, String)>, limit: u32) -> Result<Page, StoreError> {
    let more = rows.len() > limit as usize;
    let mut page = Page::default();
    for (at, name, text) in rows.into_iter().take(limit as usize) {
        page.items.push(parse_document(kind, &name, &text)?);
        if more {
            page.next = Some(to_u64(at, "cursor")?);
        }
    }
    Ok(page)
}

/// The page size asked for, within bounds, and the number of rows to fetch (one more,
/// to know whether another page follows).
pub(crate) fn bounds(limit: u32) -> (u32, i64) {
    let limit = limit.clamp(1, MAX_PAGE);
    (limit, i64::from(limit) + 1)
}

/// The work of one write transaction, given its connection `C`, returning a `T`.
pub(crate) type TransactionWork<C, T> = Box<
    dyn for<'c> FnOnce(
            &'c mut C,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>
        + Send,
>;

/// Tells the waiters on `last_seq` that the log now reaches `seq` (never moving back).
pub(crate) fn announce(last_seq: &tokio::sync::watch::Sender<u64>, seq: u64) {
    last_seq.send_if_modified(|last| {
        let newer = seq > *last;
        if newer {
            *last = seq;
        }
        newer
    });
}

/// The migrator of `migrations` (version, description, SQL).
pub(crate) fn migrator(migrations: &[(i64, &str, &'static str)]) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                sqlx::migrate::Migration::new(
                    version,
                    description.to_owned().into(),
                    sqlx::migrate::MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// The statements both dialects share, as a module `statements` of the adapter that
/// expands it: `$db` is its `sqlx::Database`, `$conn` its connection, `$row` its row. The
/// adapter's module provides `NEXT_REVISION` (SQL that moves the store revision on and
/// returns it), `CURRENT_REVISION` (SQL that reads it) and `begin_write(conn)` (a
/// transaction that holds the store's write lock).
macro_rules! store_statements {
    ($db:ty, $conn:ty, $row:ty) => {
        mod statements {
            use berth_core::{
                audit::{
                    self, AuditEntry, AuditKey, Change, Checkpoint, CheckpointSource, GENESIS, Operation, Seal,
                    StoredState, Verification, Verifier,
                },
                objects::{Event, EventType, NewEvent},
                ports::{Commit, EventQuery, StoreError, TokenRecord, Write},
            };
            use chrono::{DateTime, Utc};
            use serde_json::Value;
            use sqlx::{AssertSqlSafe, QueryBuilder, Row};

            use super::{CURRENT_REVISION, NEXT_REVISION, begin_write};
            use crate::{
                seal::Outside,
                sql::{
                    AUDIT_ROWS_A_STATEMENT, AuditedWrite, EVENT_ROWS_A_STATEMENT, MAX_PAGE, ObjectState, SealRow,
                    TOKEN_COLUMNS, TokenKey, VERIFY_PAGE, backend, cursor, event_type_name, parse_document,
                    parse_time, timestamp, to_u64, token_digest, with_bookkeeping,
                },
            };

            // === One commit, inside its transaction ===

            /// Bumps the revision, applies every write and appends every event; the caller commits or
            /// rolls back.
            pub(super) async fn apply(
                conn: &mut $conn,
                key: &AuditKey,
                change: &Change,
                writes: Vec<Write>,
                events: Vec<NewEvent>,
            ) -> Result<Commit, StoreError> {
                let revision: i64 =
                    sqlx::query_scalar(NEXT_REVISION)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| backend("bumping the store revision", &e))?;
                let now = Utc::now();
                let stamp = timestamp(now);

                let mut documents = Vec::with_capacity(writes.len());
                let mut audited = Vec::with_capacity(writes.len());
                for write in writes {
                    let (stored, entry) = match write {
                        Write::Create {
                            kind,
                            name,
                            owner,
                            document,
                        } => {
                            let stored = create(conn, revision, &stamp, &kind, &name, owner.as_deref(), document).await?;
                            let after = Some(audit::digest(&stored.to_string()));
                            (Some(stored), (Operation::Create, kind, name, None, after))
                        }
                        Write::Replace {
                            kind,
                            name,
                            document,
                            expected_version,
                        } => {
                            let (stored, before) =
                                replace(conn, revision, &stamp, &kind, &name, document, expected_version).await?;
                            let after = Some(audit::digest(&stored.to_string()));
                            (Some(stored), (Operation::Update, kind, name, Some(before), after))
                        }
                        Write::Delete {
                            kind,
                            name,
                            expected_version,
                        } => {
                            let before = delete(conn, &kind, &name, expected_version).await?;
                            (None, (Operation::Delete, kind, name, Some(before), None))
                        }
                    };
                    documents.push(stored);
                    audited.push(entry);
                }
                let entries: Vec<AuditedWrite<'_>> = audited
                    .iter()
                    .map(|(operation, kind, name, before, after)| AuditedWrite {
                        operation: *operation,
                        kind,
                        name,
                        before: before.clone(),
                        after: after.clone(),
                    })
                    .collect();
                record(conn, key, change, now, &entries, Some(revision)).await?;

                let recorded = append_all(conn, now, &stamp, events).await?;

                Ok(Commit {
                    revision: to_u64(revision, "store revision")?,
                    documents,
                    events: recorded,
                })
            }

            /// Inserts a new object.
            pub(super) async fn create(
                conn: &mut $conn,
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
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, name) DO NOTHING RETURNING id",
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
            pub(super) async fn replace(
                conn: &mut $conn,
                revision: i64,
                stamp: &str,
                kind: &str,
                name: &str,
                document: Value,
                expected_version: Option<u64>,
            ) -> Result<(Value, String), StoreError> {
                let (id, created_at, before) = current(conn, kind, name, expected_version).await?;
                let document = with_bookkeeping(document, kind, name, revision, &created_at, stamp)?;
                sqlx::query("UPDATE objects SET document = $1, version = $2, updated_at = $3 WHERE id = $4")
                    .bind(document.to_string())
                    .bind(revision)
                    .bind(stamp)
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| backend(&format!("replacing {kind} '{name}'"), &e))?;
                Ok((document, audit::digest(&before)))
            }

            /// Deletes an existing object, returning the digest of the document it had.
            pub(super) async fn delete(
                conn: &mut $conn,
                kind: &str,
                name: &str,
                expected_version: Option<u64>,
            ) -> Result<String, StoreError> {
                let (id, _, before) = current(conn, kind, name, expected_version).await?;
                sqlx::query("DELETE FROM objects WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| backend(&format!("deleting {kind} '{name}'"), &e))?;
                Ok(audit::digest(&before))
            }

            /// The row id, creation time and document of `kind/name`, once it is known to exist at the
            /// version the caller expects.
            pub(super) async fn current(
                conn: &mut $conn,
                kind: &str,
                name: &str,
                expected_version: Option<u64>,
            ) -> Result<(i64, String, String), StoreError> {
                let row: Option<(i64, i64, String, String)> =
                    sqlx::query_as("SELECT id, version, created_at, document FROM objects WHERE kind = $1 AND name = $2")
                        .bind(kind)
                        .bind(name)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(|e| backend(&format!("reading {kind} '{name}'"), &e))?;
                let Some((id, version, created_at, document)) = row else {
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
                    _ => Ok((id, created_at, document)),
                }
            }

            /// Appends a commit's events, one statement for each chunk of them (a statement is a
            /// round trip to the connection's thread). Their seqs follow the order given.
            pub(super) async fn append_all(
                conn: &mut $conn,
                time: DateTime<Utc>,
                stamp: &str,
                events: Vec<NewEvent>,
            ) -> Result<Vec<Event>, StoreError> {
                let mut recorded = Vec::with_capacity(events.len());
                let mut rest = events;
                while !rest.is_empty() {
                    let later = rest.split_off(rest.len().min(EVENT_ROWS_A_STATEMENT));
                    let chunk = std::mem::replace(&mut rest, later);
                    let mut insert = QueryBuilder::<$db>::new(
                        "INSERT INTO events (time, type, reason, kind, name, application, environment, cluster, \
                         actor, message) ",
                    );
                    insert.push_values(&chunk, |mut row, event| {
                        row.push_bind(stamp)
                            .push_bind(event_type_name(event.event_type))
                            .push_bind(&event.reason)
                            .push_bind(&event.kind)
                            .push_bind(&event.name)
                            .push_bind(&event.application)
                            .push_bind(&event.environment)
                            .push_bind(&event.cluster)
                            .push_bind(&event.actor)
                            .push_bind(&event.message);
                    });
                    insert.push(" RETURNING seq");
                    let mut seqs: Vec<i64> = insert
                        .build_query_scalar()
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(|e| {
                            let about: Vec<String> = chunk
                                .iter()
                                .map(|ev| format!("{} about {} '{}'", ev.reason, ev.kind, ev.name))
                                .collect();
                            backend(&format!("recording event {}", about.join(", ")), &e)
                        })?;
                    // Rows are inserted in the order given, RETURNING may list them in any order.
                    seqs.sort_unstable();
                    for (seq, event) in seqs.into_iter().zip(chunk) {
                        recorded.push(Event {
                            seq: to_u64(seq, "event seq")?,
                            time,
                            event,
                        });
                    }
                }
                Ok(recorded)
            }
            /// Appends one audit entry per write, each signed with `key` and chained to the log's
            /// last entry, and moves the signed head. `revision` is the store's revision when the
            /// caller knows it (a commit just moved it), else it is read.
            ///
            /// The chain continues from the log itself, not from the head row: a head row someone
            /// edited must not make every later write fail (verification reports it instead).
            pub(super) async fn record(
                conn: &mut $conn,
                key: &AuditKey,
                change: &Change,
                time: DateTime<Utc>,
                writes: &[AuditedWrite<'_>],
                revision: Option<i64>,
            ) -> Result<(), StoreError> {
                if writes.is_empty() {
                    return Ok(());
                }
                let revision: i64 = match revision {
                    Some(r) => r,
                    None => sqlx::query_scalar(CURRENT_REVISION)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| backend("reading the store revision", &e))?,
                };
                let (mut seq, mut prev) = audit_end(conn).await?;
                let mut entries = Vec::with_capacity(writes.len());
                for w in writes {
                    seq += 1;
                    let mut entry = AuditEntry {
                        seq,
                        time,
                        actor: change.actor.clone(),
                        action: change.action.clone(),
                        operation: w.operation,
                        kind: w.kind.to_owned(),
                        name: w.name.to_owned(),
                        before: w.before.clone(),
                        after: w.after.clone(),
                        revision: to_u64(revision, "store revision")?,
                        prev: prev.clone(),
                        hash: String::new(),
                    };
                    entry.hash = key.entry_mac(&entry);
                    prev.clone_from(&entry.hash);
                    entries.push(entry);
                }
                // One statement for a commit's entries (in chunks that stay within SQLite's limit of
                // bound values): each statement is a round trip to the connection's thread.
                for chunk in entries.chunks(AUDIT_ROWS_A_STATEMENT) {
                    let mut insert = QueryBuilder::<$db>::new(
                        "INSERT INTO audit (seq, time, actor, action, operation, kind, name, before, after, revision, \
                         prev, hash) ",
                    );
                    insert.push_values(chunk, |mut row, entry| {
                        row.push_bind(cursor(Some(entry.seq)))
                            .push_bind(timestamp(entry.time))
                            .push_bind(&entry.actor)
                            .push_bind(&entry.action)
                            .push_bind(entry.operation.as_str())
                            .push_bind(&entry.kind)
                            .push_bind(&entry.name)
                            .push_bind(&entry.before)
                            .push_bind(&entry.after)
                            .push_bind(revision)
                            .push_bind(&entry.prev)
                            .push_bind(&entry.hash);
                    });
                    insert.build().execute(&mut *conn).await.map_err(|e| {
                        let names: Vec<String> = chunk.iter().map(|e| format!("{} '{}'", e.kind, e.name)).collect();
                        backend(&format!("auditing {}", names.join(", ")), &e)
                    })?;
                }
                move_head(conn, &key.checkpoint(seq, &prev)).await
            }

            /// Records `head` as the log's signed head.
            pub(super) async fn move_head(conn: &mut $conn, head: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, $1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
                )
                .bind(cursor(Some(head.seq)))
                .bind(&head.hash)
                .bind(&head.mac)
                .execute(&mut *conn)
                .await
                .map_err(|e| backend("moving the audit head", &e))?;
                Ok(())
            }

            /// The position and hash of the log's last entry (0 and [`GENESIS`] when it is empty).
            pub(super) async fn audit_end(conn: &mut $conn) -> Result<(u64, String), StoreError> {
                let row: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| backend("reading the end of the audit log", &e))?;
                match row {
                    Some((seq, hash)) => Ok((to_u64(seq, "audit seq")?, hash)),
                    None => Ok((0, GENESIS.to_owned())),
                }
            }

            /// The head recorded in the database, as a checkpoint. A row someone garbled reads as a
            /// checkpoint that does not verify rather than as an error, so that verification names it.
            pub(super) async fn audit_head(conn: &mut $conn) -> Result<Option<Checkpoint>, StoreError> {
                let row = sqlx::query("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| backend("reading the audit head", &e))?;
                Ok(row.map(|row| Checkpoint {
                    seq: row
                        .try_get::<i64, _>("seq")
                        .ok()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(u64::MAX),
                    hash: row.try_get::<String, _>("hash").unwrap_or_default(),
                    mac: row
                        .try_get::<Option<String>, _>("mac")
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                }))
            }
            /// The seal of the log; none when the row was deleted or never filled.
            pub(super) async fn audit_seal(conn: &mut $conn) -> Result<Option<Seal>, StoreError> {
                let row: Option<SealRow> =
                    sqlx::query_as("SELECT keyed_from, prev, key_id, mac FROM audit_seal WHERE id = 1")
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(|e| backend("reading the audit seal", &e))?;
                Ok(match row {
                    Some((Some(keyed_from), Some(prev), Some(key_id), Some(mac))) => Some(Seal {
                        keyed_from: u64::try_from(keyed_from).unwrap_or(u64::MAX),
                        prev,
                        key_id,
                        mac,
                    }),
                    _ => None,
                })
            }

            /// Seals the log at the first open of a database migrated to a signed log: entries
            /// written so far stay as they are (unsigned), signing starts after them, and objects
            /// and tokens that no entry records (written before the audit log existed) get an entry
            /// each, so that later changes to them show. Returns whether it sealed now.
            pub(super) async fn seal_once(
                conn: &mut $conn,
                key: &AuditKey,
                outside: &Outside,
            ) -> Result<bool, StoreError> {
                let pending: Option<Option<i64>> = sqlx::query_scalar("SELECT keyed_from FROM audit_seal WHERE id = 1")
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| backend("reading the audit seal", &e))?;
                match pending {
                    None => {
                        tracing::error!("the audit seal was deleted from the database: `berth audit verify` reports it");
                        return Ok(false);
                    }
                    Some(Some(_)) => return Ok(false),
                    Some(None) if outside.read().is_some() => {
                        // A checkpoint exists, so this log was sealed before: someone emptied the
                        // seal to have the signed entries read as unsigned ones.
                        tracing::error!(
                            "the audit seal was reset in the database: not sealing again; `berth audit verify` reports it"
                        );
                        return Ok(false);
                    }
                    Some(None) => {}
                }
                let mut tx = begin_write(conn)
                    .await
                    .map_err(|e| backend("sealing the audit log", &e))?;
                let (last, prev) = audit_end(&mut tx).await?;
                let seal = key.seal(last + 1, &prev);
                sqlx::query("UPDATE audit_seal SET keyed_from = $1, prev = $2, key_id = $3, mac = $4 WHERE id = 1")
                    .bind(cursor(Some(seal.keyed_from)))
                    .bind(&seal.prev)
                    .bind(&seal.key_id)
                    .bind(&seal.mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend("sealing the audit log", &e))?;
                // The head as it stands, signed.
                move_head(&mut tx, &key.checkpoint(last, &prev)).await?;

                let unaudited: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT kind, name, document FROM objects o \
                     WHERE NOT EXISTS (SELECT 1 FROM audit a WHERE a.kind = o.kind AND a.name = o.name) ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| backend("finding objects the audit log does not record", &e))?;
                let tokens = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens t \
                     WHERE NOT EXISTS (SELECT 1 FROM audit a WHERE a.kind = 'Token' AND a.name = t.id)"
                )))
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| backend("finding tokens the audit log does not record", &e))?;
                let tokens = tokens.iter().map(token_from_row).collect::<Result<Vec<_>, _>>()?;
                let mut baseline: Vec<AuditedWrite<'_>> = unaudited
                    .iter()
                    .map(|(kind, name, document)| AuditedWrite {
                        operation: Operation::Create,
                        kind,
                        name,
                        before: None,
                        after: Some(audit::digest(document)),
                    })
                    .collect();
                baseline.extend(tokens.iter().map(|t| AuditedWrite {
                    operation: Operation::Create,
                    kind: "Token",
                    name: &t.id,
                    before: None,
                    after: Some(token_digest(t)),
                }));
                record(
                    &mut tx,
                    key,
                    &Change::new("berth", "audit.baseline"),
                    Utc::now(),
                    &baseline,
                    None,
                )
                .await?;
                let head = audit_head(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(|e| backend("sealing the audit log", &e))?;
                if let Some(head) = head {
                    outside.advance(head);
                }
                tracing::info!(
                    signed_from = seal.keyed_from,
                    baseline = baseline.len(),
                    "audit log sealed: entries from here on are signed with the audit key"
                );
                Ok(true)
            }
            /// Verifies the log, its checkpoints and every stored object and token, inside the
            /// caller's read transaction.
            pub(super) async fn verify_in(
                conn: &mut $conn,
                key: &AuditKey,
                file: Option<&Checkpoint>,
                file_lost: bool,
                given: Option<&Checkpoint>,
            ) -> Result<Verification, StoreError> {
                let seal = audit_seal(conn).await?;
                let head = audit_head(conn).await?;
                let mut verifier = Verifier::new(key, seal.as_ref())
                    .against(CheckpointSource::Database, head.as_ref())
                    .against(CheckpointSource::File, if file_lost { None } else { file });
                if given.is_some() {
                    verifier = verifier.against(CheckpointSource::Given, given);
                }
                let mut after: i64 = 0;
                loop {
                    let rows = sqlx::query(
                        "SELECT seq, time, actor, action, operation, kind, name, before, after, revision, prev, hash \
                         FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .bind(after)
                    .bind(VERIFY_PAGE)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| backend("reading the audit log", &e))?;
                    let Some(last) = rows.last() else { break };
                    after = last
                        .try_get("seq")
                        .map_err(|e| backend("reading the audit log", &e))?;
                    for row in &rows {
                        verifier.push(&audit_from_row(row)?);
                    }
                }

                // Every object beside its latest entry, a page at a time.
                let latest =
                    "(SELECT a.seq FROM audit a WHERE a.kind = {k} AND a.name = {n} ORDER BY a.seq DESC LIMIT 1)";
                let latest_after =
                    "(SELECT a.after FROM audit a WHERE a.kind = {k} AND a.name = {n} ORDER BY a.seq DESC LIMIT 1)";
                let about = |sql: &str, k: &str, n: &str| sql.replace("{k}", k).replace("{n}", n);
                let objects = format!(
                    "SELECT o.id, o.kind, o.name, o.document, {} AS seq, {} AS audited FROM objects o \
                     WHERE o.id > $1 ORDER BY o.id LIMIT $2",
                    about(latest, "o.kind", "o.name"),
                    about(latest_after, "o.kind", "o.name"),
                );
                let mut after = 0i64;
                loop {
                    let rows: Vec<ObjectState> = sqlx::query_as(AssertSqlSafe(objects.clone()))
                        .bind(after)
                        .bind(VERIFY_PAGE)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(|e| backend("comparing stored objects with the audit log", &e))?;
                    let Some(last) = rows.last() else { break };
                    after = last.0;
                    for (_, kind, name, document, seq, audited) in rows {
                        verifier.check(&StoredState {
                            kind,
                            name,
                            stored: Some(audit::digest(&document)),
                            audited: seq.map(|s| (u64::try_from(s).unwrap_or_default(), audited)),
                        });
                    }
                }
                let tokens = format!(
                    "SELECT {TOKEN_COLUMNS}, {} AS seq, {} AS audited FROM tokens t",
                    about(latest, "'Token'", "t.id"),
                    about(latest_after, "'Token'", "t.id"),
                );
                let rows = sqlx::query(AssertSqlSafe(tokens))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| backend("comparing stored tokens with the audit log", &e))?;
                for row in &rows {
                    let token = token_from_row(row)?;
                    let seq: Option<i64> = row.try_get("seq").map_err(|e| backend("decoding a token", &e))?;
                    let audited: Option<String> = row
                        .try_get("audited")
                        .map_err(|e| backend("decoding a token", &e))?;
                    verifier.check(&StoredState {
                        kind: "Token".to_owned(),
                        name: token.id.clone(),
                        stored: Some(token_digest(&token)),
                        audited: seq.map(|s| (u64::try_from(s).unwrap_or_default(), audited)),
                    });
                }
                // What the log says exists but is stored nowhere.
                let gone: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
                    "SELECT a.kind, a.name, a.seq, a.after FROM audit a \
                     WHERE a.after IS NOT NULL \
                       AND a.seq = (SELECT MAX(b.seq) FROM audit b WHERE b.kind = a.kind AND b.name = a.name) \
                       AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.kind = a.kind AND o.name = a.name) \
                       AND NOT EXISTS (SELECT 1 FROM tokens t WHERE a.kind = 'Token' AND t.id = a.name) \
                     ORDER BY a.seq",
                )
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| backend("finding audited objects that are not stored", &e))?;
                for (kind, name, seq, audited) in gone {
                    verifier.check(&StoredState {
                        kind,
                        name,
                        stored: None,
                        audited: Some((u64::try_from(seq).unwrap_or_default(), audited)),
                    });
                }
                Ok(verifier.finish())
            }
            /// The token with `key`.
            pub(super) async fn token_row(
                conn: &mut $conn,
                key: TokenKey<'_>,
            ) -> Result<Option<TokenRecord>, StoreError> {
                let (sql, value) = match key {
                    TokenKey::Hash(h) => (
                        "SELECT hash, id, name, subject, created_at, expires_at, revoked_at FROM tokens WHERE hash = $1",
                        h,
                    ),
                    TokenKey::Id(id) => (
                        "SELECT hash, id, name, subject, created_at, expires_at, revoked_at FROM tokens WHERE id = $1",
                        id,
                    ),
                };
                let row = sqlx::query(sql)
                    .bind(value)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| backend("looking up a token", &e))?;
                row.as_ref().map(token_from_row).transpose()
            }
            // === Reading rows ===

            /// Position of the newest event, 0 for an empty log.
            pub(super) async fn last_seq(pool: &sqlx::Pool<$db>) -> Result<u64, StoreError> {
                let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| backend("reading the last event", &e))?;
                to_u64(seq, "event seq")
            }

            /// An event as stored.
            pub(super) fn event_from_row(row: &$row) -> Result<Event, StoreError> {
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

            /// A token as stored.
            pub(super) fn token_from_row(row: &$row) -> Result<TokenRecord, StoreError> {
                let column = |e: sqlx::Error| backend("decoding a token", &e);
                let time = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
                    let text: Option<String> = row.try_get(name).map_err(column)?;
                    text.map(|t| parse_time(&t, "token time")).transpose()
                };
                let hash: String = row.try_get("hash").map_err(column)?;
                let id: Option<String> = row.try_get("id").map_err(column)?;
                Ok(TokenRecord {
                    id: id.unwrap_or_else(|| hash.chars().take(16).collect()),
                    name: row.try_get("name").map_err(column)?,
                    subject: row.try_get("subject").map_err(column)?,
                    created_at: time("created_at")?.ok_or_else(|| StoreError::Backend {
                        message: "stored token has no creation time".to_owned(),
                    })?,
                    expires_at: time("expires_at")?,
                    revoked_at: time("revoked_at")?,
                    hash,
                })
            }

            /// An audit entry as stored.
            pub(super) fn audit_from_row(row: &$row) -> Result<AuditEntry, StoreError> {
                let column = |e: sqlx::Error| backend("decoding an audit entry", &e);
                let time: String = row.try_get("time").map_err(column)?;
                let operation: String = row.try_get("operation").map_err(column)?;
                Ok(AuditEntry {
                    seq: to_u64(row.try_get("seq").map_err(column)?, "audit seq")?,
                    time: parse_time(&time, "audit time")?,
                    actor: row.try_get("actor").map_err(column)?,
                    action: row.try_get("action").map_err(column)?,
                    operation: Operation::parse(&operation).ok_or_else(|| StoreError::Backend {
                        message: format!("stored audit entry has unknown operation '{operation}'"),
                    })?,
                    kind: row.try_get("kind").map_err(column)?,
                    name: row.try_get("name").map_err(column)?,
                    before: row.try_get("before").map_err(column)?,
                    after: row.try_get("after").map_err(column)?,
                    revision: to_u64(row.try_get("revision").map_err(column)?, "audit revision")?,
                    prev: row.try_get("prev").map_err(column)?,
                    hash: row.try_get("hash").map_err(column)?,
                })
            }

            // === Reads and token writes whose SQL is the same in both dialects ===

            /// The document of `kind/name`.
            pub(super) async fn get(pool: &sqlx::Pool<$db>, kind: &str, name: &str) -> Result<Option<Value>, StoreError> {
                let document: Option<String> =
                    sqlx::query_scalar("SELECT document FROM objects WHERE kind = $1 AND name = $2")
                        .bind(kind)
                        .bind(name)
                        .fetch_optional(pool)
                        .await
                        .map_err(|e| backend(&format!("reading {kind} '{name}'"), &e))?;
                document.map(|text| parse_document(kind, name, &text)).transpose()
            }

            /// A page of the event log.
            pub(super) async fn events(pool: &sqlx::Pool<$db>, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
                let limit = i64::from(query.limit.clamp(1, MAX_PAGE));
                let after = cursor(Some(query.after));
                let rows = match &query.application {
                    Some(application) => {
                        sqlx::query(
                            "SELECT seq, time, type, reason, kind, name, application, environment, cluster, \
                             actor, message FROM events WHERE application = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                        )
                        .bind(application)
                        .bind(after)
                        .bind(limit)
                        .fetch_all(pool)
                        .await
                    }
                    None => {
                        sqlx::query(
                            "SELECT seq, time, type, reason, kind, name, application, environment, cluster, \
                             actor, message FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                        )
                        .bind(after)
                        .bind(limit)
                        .fetch_all(pool)
                        .await
                    }
                }
                .map_err(|e| backend("reading events", &e))?;
                rows.iter().map(event_from_row).collect()
            }

            /// How many tokens are stored.
            pub(super) async fn count_tokens(pool: &sqlx::Pool<$db>) -> Result<u64, StoreError> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| backend("counting tokens", &e))?;
                to_u64(count, "token count")
            }

            /// Every token, or those of one subject, oldest first.
            pub(super) async fn list_tokens(pool: &sqlx::Pool<$db>, subject: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
                let mut query = QueryBuilder::<$db>::new(format!("SELECT {TOKEN_COLUMNS} FROM tokens"));
                if let Some(subject) = subject {
                    query.push(" WHERE subject = ").push_bind(subject);
                }
                query.push(" ORDER BY created_at, id");
                let rows = query
                    .build()
                    .fetch_all(pool)
                    .await
                    .map_err(|e| backend("listing tokens", &e))?;
                rows.iter().map(token_from_row).collect()
            }

            /// Stores `token` (new, or replacing the one with its hash) and audits it, in the
            /// caller's write transaction.
            pub(super) async fn put_token(
                conn: &mut $conn,
                key: &AuditKey,
                change: &Change,
                token: &TokenRecord,
            ) -> Result<(), StoreError> {
                let before = token_row(conn, TokenKey::Hash(&token.hash)).await?;
                sqlx::query(
                    "INSERT INTO tokens (hash, id, name, subject, created_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO UPDATE SET id = excluded.id, \
                     name = excluded.name, subject = excluded.subject, created_at = excluded.created_at, \
                     expires_at = excluded.expires_at, revoked_at = excluded.revoked_at",
                )
                .bind(&token.hash)
                .bind(&token.id)
                .bind(&token.name)
                .bind(&token.subject)
                .bind(timestamp(token.created_at))
                .bind(token.expires_at.map(timestamp))
                .bind(token.revoked_at.map(timestamp))
                .execute(&mut *conn)
                .await
                .map_err(|e| backend(&format!("storing token '{}'", token.name), &e))?;
                let operation = if before.is_some() {
                    Operation::Update
                } else {
                    Operation::Create
                };
                let written = AuditedWrite {
                    operation,
                    kind: "Token",
                    name: &token.id,
                    before: before.as_ref().map(token_digest),
                    after: Some(token_digest(token)),
                };
                record(conn, key, change, Utc::now(), &[written], None).await
            }

            /// Revokes the token `id` at `at` (once: a revoked token stays as it was) and audits
            /// it, in the caller's write transaction.
            pub(super) async fn revoke_token(
                conn: &mut $conn,
                key: &AuditKey,
                change: &Change,
                id: &str,
                at: DateTime<Utc>,
            ) -> Result<TokenRecord, StoreError> {
                let Some(before) = token_row(conn, TokenKey::Id(id)).await? else {
                    return Err(StoreError::NotFound {
                        kind: "Token".to_owned(),
                        name: id.to_owned(),
                    });
                };
                if before.revoked_at.is_some() {
                    return Ok(before);
                }
                sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2")
                    .bind(timestamp(at))
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| backend(&format!("revoking token {id}"), &e))?;
                let after = TokenRecord {
                    revoked_at: Some(at),
                    ..before.clone()
                };
                let written = AuditedWrite {
                    operation: Operation::Update,
                    kind: "Token",
                    name: id,
                    before: Some(token_digest(&before)),
                    after: Some(token_digest(&after)),
                };
                record(conn, key, change, Utc::now(), &[written], None).await?;
                Ok(after)
            }


            /// A page of one kind (of one owner), in creation order.
            pub(super) async fn list(
                pool: &sqlx::Pool<$db>,
                query: &berth_core::ports::ListQuery,
            ) -> Result<berth_core::ports::Page, StoreError> {
                let limit = query.limit.clamp(1, MAX_PAGE);
                let after = cursor(query.after);
                // One more than asked, to know whether there is a next page.
                let fetch = i64::from(limit) + 1;
                let rows: Vec<(i64, String, String)> = match &query.owner {
                    Some(owner) => {
                        sqlx::query_as(super::LIST_OF_OWNER)
                            .bind(&query.kind)
                            .bind(owner)
                            .bind(after)
                            .bind(fetch)
                            .fetch_all(pool)
                            .await
                    }
                    None => {
                        sqlx::query_as(super::LIST)
                            .bind(&query.kind)
                            .bind(after)
                            .bind(fetch)
                            .fetch_all(pool)
                            .await
                    }
                }
                .map_err(|e| backend(&format!("listing {}", query.kind), &e))?;
                crate::sql::page(&query.kind, rows, limit)
            }

            /// Audit entries after a position that match a query, oldest first; times
            /// compare through the adapter's `TIME_AT_LEAST` and `TIME_BEFORE`.
            pub(super) async fn audit(
                pool: &sqlx::Pool<$db>,
                query: &berth_core::audit::AuditQuery,
            ) -> Result<Vec<AuditEntry>, StoreError> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT seq, time, actor, action, operation, kind, name, before, after, revision, prev, hash \
                     FROM audit WHERE seq > ",
                );
                q.push_bind(cursor(Some(query.after)));
                for (column, value) in [
                    ("actor", &query.actor),
                    ("kind", &query.kind),
                    ("name", &query.name),
                    ("action", &query.action),
                ] {
                    if let Some(value) = value {
                        q.push(format!(" AND {column} = ")).push_bind(value.clone());
                    }
                }
                for (bound, (before, after)) in [
                    (query.since, super::TIME_AT_LEAST),
                    (query.until, super::TIME_BEFORE),
                ] {
                    if let Some(bound) = bound {
                        q.push(before).push_bind(timestamp(bound)).push(after);
                    }
                }
                q.push(" ORDER BY seq LIMIT ")
                    .push_bind(i64::from(query.limit.clamp(1, MAX_PAGE)));
                let rows = q
                    .build()
                    .fetch_all(pool)
                    .await
                    .map_err(|e| backend("reading the audit log", &e))?;
                rows.iter().map(audit_from_row).collect()
            }
        }
    };
}

pub(crate) use store_statements;

/// The targeted queries of `Store` around their SQL, as functions of the adapter's
/// `queries` module that expands it (`$db` is its `sqlx::Database`). That module defines
/// each statement (`GOVERNING`, `LAST_SUCCEEDED`, …) in its dialect, with `?1`/`$1`
/// parameters in the same order; the code that binds and decodes them is the same.
macro_rules! query_functions {
    ($db:ty) => {
        use std::collections::BTreeMap;

        use berth_core::{
            objects::{DeploymentPhase, Release, ReleaseKind},
            ports::{DeploymentQuery, GoverningQuery, Page, StoreError, TeamQuery},
        };
        use serde_json::Value;

        use crate::sql::{backend, bounds, cursor, page, parse_document, to_u64};

        /// Runs `sql` and decodes its `(name, document)` rows.
        pub(super) async fn documents(
            pool: &sqlx::Pool<$db>,
            doing: &str,
            kind: &str,
            query: sqlx::query::QueryAs<'_, $db, (String, String), <$db as sqlx::Database>::Arguments>,
        ) -> Result<Vec<Value>, StoreError> {
            let rows = query
                .fetch_all(pool)
                .await
                .map_err(|e| backend(doing, &e))?;
            rows.iter()
                .map(|(name, text)| parse_document(kind, name, text))
                .collect()
        }

        /// The first document of [`documents`], if any.
        pub(super) async fn first(
            pool: &sqlx::Pool<$db>,
            doing: &str,
            kind: &str,
            query: sqlx::query::QueryAs<'_, $db, (String, String), <$db as sqlx::Database>::Arguments>,
        ) -> Result<Option<Value>, StoreError> {
            Ok(documents(pool, doing, kind, query)
                .await?
                .into_iter()
                .next())
        }

        pub(super) async fn governing(
            pool: &sqlx::Pool<$db>,
            app: &str,
            env: &str,
        ) -> Result<Option<Value>, StoreError> {
            let doing = format!("reading the governing deployment of '{app}' in '{env}'");
            first(
                pool,
                &doing,
                "Deployment",
                sqlx::query_as(GOVERNING).bind(app).bind(env),
            )
            .await
        }

        pub(super) async fn last_succeeded(
            pool: &sqlx::Pool<$db>,
            app: &str,
            env: &str,
        ) -> Result<Option<Value>, StoreError> {
            let doing = format!("reading the last succeeded deployment of '{app}' in '{env}'");
            first(
                pool,
                &doing,
                "Deployment",
                sqlx::query_as(LAST_SUCCEEDED).bind(app).bind(env),
            )
            .await
        }

        pub(super) async fn deployments(
            pool: &sqlx::Pool<$db>,
            query: &DeploymentQuery,
        ) -> Result<Page, StoreError> {
            let (limit, fetch) = bounds(query.limit);
            let before = query
                .before
                .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
            let rows: Vec<(i64, String, String)> = sqlx::query_as(DEPLOYMENTS)
                .bind(&query.application)
                .bind(&query.environment)
                .bind(before)
                .bind(fetch)
                .fetch_all(pool)
                .await
                .map_err(|e| {
                    backend(
                        &format!(
                            "listing deployments of '{}' in '{}'",
                            query.application, query.environment
                        ),
                        &e,
                    )
                })?;
            page("Deployment", rows, limit)
        }

        pub(super) async fn governing_all(
            pool: &sqlx::Pool<$db>,
            query: &GoverningQuery,
        ) -> Result<Page, StoreError> {
            let (limit, fetch) = bounds(query.limit);
            let after = cursor(query.after);
            let rows: Vec<(i64, String, String)> = match &query.application {
                Some(app) => {
                    sqlx::query_as(GOVERNING_OF_APPLICATION)
                        .bind(app)
                        .bind(after)
                        .bind(fetch)
                        .fetch_all(pool)
                        .await
                }
                None => {
                    sqlx::query_as(GOVERNING_ALL)
                        .bind(after)
                        .bind(fetch)
                        .fetch_all(pool)
                        .await
                }
            }
            .map_err(|e| backend("listing governing deployments", &e))?;
            page("Deployment", rows, limit)
        }

        pub(super) async fn governing_by_phase(
            pool: &sqlx::Pool<$db>,
        ) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
            const DOING: &str = "counting governing deployments by phase";
            let rows: Vec<(Option<String>, i64)> = sqlx::query_as(GOVERNING_BY_PHASE)
                .fetch_all(pool)
                .await
                .map_err(|e| backend(DOING, &e))?;
            let mut counts = BTreeMap::new();
            for (phase, n) in rows {
                let phase = match phase {
                    None => DeploymentPhase::default(),
                    Some(text) => DeploymentPhase::ALL
                        .into_iter()
                        .find(|p| p.as_str() == text)
                        .ok_or_else(|| StoreError::Backend {
                            message: format!("{DOING}: a stored deployment has the unknown phase '{text}'"),
                        })?,
                };
                *counts.entry(phase).or_insert(0) += to_u64(n, "count")?;
            }
            Ok(counts)
        }

        pub(super) async fn of_releases(
            pool: &sqlx::Pool<$db>,
            app: &str,
            releases: &[u64],
        ) -> Result<Vec<Value>, StoreError> {
            if releases.is_empty() {
                return Ok(Vec::new());
            }
            let numbers = Value::from(releases.to_vec()).to_string();
            let doing = format!("reading deployments of releases {numbers} of '{app}'");
            documents(
                pool,
                &doing,
                "Deployment",
                sqlx::query_as(OF_RELEASES).bind(app).bind(numbers),
            )
            .await
        }

        pub(super) async fn newest_release(
            pool: &sqlx::Pool<$db>,
            app: &str,
            built: bool,
        ) -> Result<Option<Value>, StoreError> {
            let (sql, doing) = if built {
                (
                    NEWEST_BUILT_RELEASE,
                    format!("reading the newest built release of '{app}'"),
                )
            } else {
                (
                    NEWEST_RELEASE,
                    format!("reading the newest release of '{app}'"),
                )
            };
            first(pool, &doing, "Release", sqlx::query_as(sql).bind(app)).await
        }

        pub(super) async fn releases_with_digest(
            pool: &sqlx::Pool<$db>,
            app: &str,
            digest: &str,
        ) -> Result<Vec<Value>, StoreError> {
            let doing = format!("reading releases of '{app}' with digest {digest}");
            documents(
                pool,
                &doing,
                "Release",
                sqlx::query_as(RELEASES_WITH_DIGEST).bind(app).bind(digest),
            )
            .await
        }

        pub(super) async fn releases_with_template(
            pool: &sqlx::Pool<$db>,
            app: &str,
            hash: &str,
        ) -> Result<Vec<Value>, StoreError> {
            let doing = format!("reading releases of '{app}' with template {hash}");
            let mut found = documents(
                pool,
                &doing,
                "Release",
                sqlx::query_as(RELEASES_WITH_TEMPLATE).bind(app).bind(hash),
            )
            .await?;
            // Releases made before the hash was recorded: computed here, as Release::template_hash
            // does for them everywhere else.
            let legacy = documents(
                pool,
                &doing,
                "Release",
                sqlx::query_as(RELEASES_WITHOUT_TEMPLATE).bind(app),
            )
            .await?;
            for document in legacy {
                let name = document["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let release: Release =
                    serde_json::from_value(document.clone()).map_err(|e| StoreError::Backend {
                        message: format!(
                            "stored {} '{name}' cannot be read: {e}",
                            <ReleaseKind as berth_core::meta::Kind>::KIND
                        ),
                    })?;
                if release.template_hash() == hash {
                    found.push(document);
                }
            }
            found.sort_by_key(|d| std::cmp::Reverse(d["spec"]["number"].as_u64()));
            Ok(found)
        }

        pub(super) async fn team_releases(
            pool: &sqlx::Pool<$db>,
            team: &str,
            env: &str,
        ) -> Result<Vec<Value>, StoreError> {
            let doing = format!("reading what team '{team}' runs in '{env}'");
            documents(
                pool,
                &doing,
                "Release",
                sqlx::query_as(TEAM_RELEASES).bind(team).bind(env),
            )
            .await
        }

        pub(super) async fn team_applications(
            pool: &sqlx::Pool<$db>,
            query: &TeamQuery,
        ) -> Result<Page, StoreError> {
            let (limit, fetch) = bounds(query.limit);
            let rows: Vec<(i64, String, String)> = sqlx::query_as(TEAM_APPLICATIONS)
                .bind(&query.team)
                .bind(cursor(query.after))
                .bind(fetch)
                .fetch_all(pool)
                .await
                .map_err(|e| {
                    backend(
                        &format!("listing applications of team '{}'", query.team),
                        &e,
                    )
                })?;
            page("Application", rows, limit)
        }

        /// One more than the highest number of `kind` ever stored for `app` (and `env`).
        pub(super) async fn next_number(
            pool: &sqlx::Pool<$db>,
            kind: &str,
            app: &str,
            env: &str,
        ) -> Result<u64, StoreError> {
            let last: Option<i64> = sqlx::query_scalar(LAST_NUMBER)
                .bind(kind)
                .bind(app)
                .bind(env)
                .fetch_optional(pool)
                .await
                .map_err(|e| backend(&format!("reading the next {kind} number of '{app}'"), &e))?;
            Ok(to_u64(last.unwrap_or(0), "number")?.saturating_add(1))
        }

        pub(super) async fn reusable_build(
            pool: &sqlx::Pool<$db>,
            app: &str,
            revision: &str,
            builder_hash: &str,
        ) -> Result<Option<Value>, StoreError> {
            let doing = format!("reading the build of '{app}' for revision {revision}");
            first(
                pool,
                &doing,
                "Build",
                sqlx::query_as(REUSABLE_BUILD)
                    .bind(app)
                    .bind(revision)
                    .bind(builder_hash),
            )
            .await
        }

        pub(super) async fn unfinished_builds(
            pool: &sqlx::Pool<$db>,
            after: Option<u64>,
            limit: u32,
        ) -> Result<Page, StoreError> {
            let (limit, fetch) = bounds(limit);
            let rows: Vec<(i64, String, String)> = sqlx::query_as(UNFINISHED_BUILDS)
                .bind(cursor(after))
                .bind(fetch)
                .fetch_all(pool)
                .await
                .map_err(|e| backend("listing unfinished builds", &e))?;
            page("Build", rows, limit)
        }
    };
}

pub(crate) use query_functions;

/// The methods of [`Store`](berth_core::ports::Store) that read the same in both
/// adapters, around the adapter's own: `store_impl!(Type { own methods })` implements the
/// trait for `Type`, which has a `pool`, a `key`, a `commit_observer`, a `last_seq`, an
/// `outside` checkpoint (and `outside_lost`) and `in_transaction(doing, work)`, beside the
/// modules `statements` ([`store_statements!`]) and `queries` ([`query_functions!`]) and
/// the statements `LIST`, `LIST_OF_OWNER` and `BEGIN_SNAPSHOT`.
macro_rules! store_impl {
    ($store:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl Store for $store {
            async fn commit_as(
                &self,
                change: &Change,
                writes: Vec<Write>,
                events: Vec<NewEvent>,
            ) -> Result<Commit, StoreError> {
                let started = std::time::Instant::now();
                let (key, change) = (self.key.clone(), change.clone());
                let committed = self
                    .in_transaction(
                        "committing",
                        Box::new(move |conn| {
                            Box::pin(async move { statements::apply(conn, &key, &change, writes, events).await })
                        }),
                    )
                    .await;
                if let Some(CommitTimer(observe)) = self.commit_observer.get() {
                    observe(started.elapsed());
                }
                let commit = committed?;
                if let Some(event) = commit.events.last() {
                    crate::sql::announce(&self.last_seq, event.seq);
                }
                tracing::debug!(
                    revision = commit.revision,
                    writes = commit.documents.len(),
                    events = commit.events.len(),
                    "committed"
                );
                Ok(commit)
            }

            async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, StoreError> {
                statements::get(&self.pool, kind, name).await
            }

            async fn governing_deployment(
                &self,
                application: &str,
                environment: &str,
            ) -> Result<Option<Value>, StoreError> {
                queries::governing(&self.pool, application, environment).await
            }

            async fn last_succeeded_deployment(
                &self,
                application: &str,
                environment: &str,
            ) -> Result<Option<Value>, StoreError> {
                queries::last_succeeded(&self.pool, application, environment).await
            }

            async fn deployments(&self, query: &DeploymentQuery) -> Result<Page, StoreError> {
                queries::deployments(&self.pool, query).await
            }

            async fn governing_deployments(&self, query: &GoverningQuery) -> Result<Page, StoreError> {
                queries::governing_all(&self.pool, query).await
            }

            async fn governing_deployments_by_phase(&self) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
                queries::governing_by_phase(&self.pool).await
            }

            async fn deployments_of_releases(
                &self,
                application: &str,
                releases: &[u64],
            ) -> Result<Vec<Value>, StoreError> {
                queries::of_releases(&self.pool, application, releases).await
            }

            async fn newest_release(&self, application: &str) -> Result<Option<Value>, StoreError> {
                queries::newest_release(&self.pool, application, false).await
            }

            async fn newest_built_release(&self, application: &str) -> Result<Option<Value>, StoreError> {
                queries::newest_release(&self.pool, application, true).await
            }

            async fn releases_with_digest(&self, application: &str, digest: &str) -> Result<Vec<Value>, StoreError> {
                queries::releases_with_digest(&self.pool, application, digest).await
            }

            async fn releases_with_template(
                &self,
                application: &str,
                template_hash: &str,
            ) -> Result<Vec<Value>, StoreError> {
                queries::releases_with_template(&self.pool, application, template_hash).await
            }

            async fn team_releases_in(&self, team: &str, environment: &str) -> Result<Vec<Value>, StoreError> {
                queries::team_releases(&self.pool, team, environment).await
            }

            async fn team_applications(&self, query: &TeamQuery) -> Result<Page, StoreError> {
                queries::team_applications(&self.pool, query).await
            }

            async fn reusable_build(
                &self,
                application: &str,
                revision: &str,
                builder_hash: &str,
            ) -> Result<Option<Value>, StoreError> {
                queries::reusable_build(&self.pool, application, revision, builder_hash).await
            }

            async fn unfinished_builds(&self, after: Option<u64>, limit: u32) -> Result<Page, StoreError> {
                queries::unfinished_builds(&self.pool, after, limit).await
            }

            async fn next_release_number(&self, application: &str) -> Result<u64, StoreError> {
                queries::next_number(&self.pool, "Release", application, "").await
            }

            async fn next_build_number(&self, application: &str) -> Result<u64, StoreError> {
                queries::next_number(&self.pool, "Build", application, "").await
            }

            async fn next_deployment_number(&self, application: &str, environment: &str) -> Result<u64, StoreError> {
                queries::next_number(&self.pool, "Deployment", application, environment).await
            }

            async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
                statements::events(&self.pool, query).await
            }

            async fn put_token(&self, token: TokenRecord, change: &Change) -> Result<(), StoreError> {
                let (key, change) = (self.key.clone(), change.clone());
                self.in_transaction(
                    "storing a token",
                    Box::new(move |conn| {
                        Box::pin(async move { statements::put_token(conn, &key, &change, &token).await })
                    }),
                )
                .await
            }

            async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| backend("looking up a token", &e))?;
                statements::token_row(&mut conn, TokenKey::Hash(hash)).await
            }

            async fn count_tokens(&self) -> Result<u64, StoreError> {
                statements::count_tokens(&self.pool).await
            }

            async fn list_tokens(&self, subject: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
                statements::list_tokens(&self.pool, subject).await
            }

            async fn revoke_token(
                &self,
                id: &str,
                at: DateTime<Utc>,
                change: &Change,
            ) -> Result<TokenRecord, StoreError> {
                let (key, change, id) = (self.key.clone(), change.clone(), id.to_owned());
                self.in_transaction(
                    "revoking a token",
                    Box::new(move |conn| {
                        Box::pin(async move { statements::revoke_token(conn, &key, &change, &id, at).await })
                    }),
                )
                .await
            }

            async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
                statements::list(&self.pool, query).await
            }

            async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
                statements::audit(&self.pool, query).await
            }

            async fn verify_audit(&self, given: Option<&Checkpoint>) -> Result<Verification, StoreError> {
                // The file first: it is written after each commit, so it is never ahead of
                // the snapshot read below unless the log lost entries.
                let file = self.outside.read();
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(|e| backend("verifying the audit log", &e))?;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, BEGIN_SNAPSHOT)
                    .await
                    .map_err(|e| backend("verifying the audit log", &e))?;
                let verification =
                    statements::verify_in(&mut tx, &self.key, file.as_ref(), self.outside_lost, given).await;
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "ending the audit verification's read transaction");
                }
                verification
            }

            $($own)*
        }
    };
}

pub(crate) use store_impl;
