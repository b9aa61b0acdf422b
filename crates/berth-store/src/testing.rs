//! What tests that need a real PostgreSQL share: the database they are given
//! (`BERTH_TEST_POSTGRES`) and the clean-up of what they made in it.
//!
//! Compiled for this crate's tests and, with the `conformance` feature, for other
//! crates' tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The database URL of `BERTH_TEST_POSTGRES`; none when it says `skip` (and the caller
/// skips, said on stderr). Unset, it panics, so that a PostgreSQL test never passes
/// without running.
#[must_use]
pub fn database(test: &str) -> Option<String> {
    match std::env::var("BERTH_TEST_POSTGRES") {
        Ok(url) if url == "skip" => {
            eprintln!("SKIPPED: {test} needs PostgreSQL (BERTH_TEST_POSTGRES=skip)");
            None
        }
        Ok(url) if !url.is_empty() => Some(url),
        _ => panic!(
            "BERTH_TEST_POSTGRES is not set: {test} needs a PostgreSQL database, e.g. \
             BERTH_TEST_POSTGRES=postgres://postgres@127.0.0.1:55432/postgres (scripts/test.sh \
             starts one and sets it), or BERTH_TEST_POSTGRES=skip to skip it"
        ),
    }
}

/// Runs `sql` on the database at `url`, e.g. to make a test's schema or database.
pub async fn run(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Runs a statement when dropped (also when the test fails): drops what a test made.
pub struct Cleanup {
    /// Where to run it.
    pub url: String,
    /// What to run, e.g. `DROP SCHEMA "x" CASCADE`.
    pub sql: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, sql) = (self.url.clone(), self.sql.clone());
        // Drop runs inside the test's runtime: run it from a thread with a runtime of
        // its own.
        let done = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(&url, &sql));
        })
        .join();
        if done.is_err() {
            eprintln!("could not clean up after a test: {}", self.sql);
        }
    }
}
