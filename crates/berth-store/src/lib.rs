//! Berth's store: objects and the append-only event log in SQLite or PostgreSQL, one
//! transaction per mutation.
//!
//! ```text
//!   commit(writes, events) ──▶ BEGIN IMMEDIATE
//!                                 revision += 1            (one per commit)
//!                                 objects  ◀─ each write   (version = revision)
//!                                 events   ◀─ append       (seq strictly increasing)
//!                              COMMIT ──▶ watch(last seq) ──▶ wait_for_events wakes
//! ```
//!
//! [`SqliteStore`] implements the core's [`Store`](berth_core::ports::Store) port. The store owns
//! the bookkeeping of every document (`metadata.resourceVersion`, `creationTimestamp`,
//! `updateTimestamp`) so that no caller can forget it or get it wrong.
//!
//! Use cases and the reconciler read through targeted queries (the governing deployment
//! of an application in an environment, the newest release, what a team runs, the next
//! number, …) rather than lists: migration 0004 exposes the document fields they look up
//! as generated columns with a partial index per query, and keeps the highest number per
//! application in a table its triggers update in the commit's transaction. A test checks
//! the plan of every query searches its index.
//!
//! [`PostgresStore`] is the same store in PostgreSQL, for several servers on one database:
//! the same schema and, where the dialects agree, the same statements (module `sql`); its
//! module says how commits are ordered without a revision row.
//!
//! [`conformance`] holds the behaviour every `Store` adapter must show, as functions over
//! `&dyn Store`; it is compiled for this crate's tests and, with the `conformance` feature,
//! for other adapters' tests.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;
pub mod seal;
mod sql;
mod sqlite;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;

pub use postgres::{POLL_EVERY, PostgresStore};
pub use sql::CommitObserver;
pub use sqlite::{AuditKeySource, SqliteStore};
