//! A real store that tells what was read, and fails commits on request.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use berth_core::{
    Kind, NewEvent, Resource,
    audit::{AuditEntry, AuditQuery, Change, Checkpoint, Verification},
    objects::Event,
    ports::{Commit, EventQuery, ListQuery, Page, Store, StoreError, TokenRecord, Write},
    repo,
};
use berth_store::SqliteStore;
use chrono::{DateTime, Utc};

/// One read a caller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `get(kind, name)`.
    Get {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// One page of `list(kind, owner)`.
    List {
        /// Kind.
        kind: String,
        /// The owner asked for; `None` lists the whole kind.
        owner: Option<String>,
    },
}

/// An in-memory [`SqliteStore`] that records every object read and commit, and fails
/// the next commits with errors queued by [`RecordingStore::fail_next_commits`]
/// (before they reach the database, so they change nothing).
pub struct RecordingStore {
    inner: SqliteStore,
    reads: Mutex<Vec<Read>>,
    commits: Mutex<usize>,
    failures: Mutex<VecDeque<StoreError>>,
}

impl RecordingStore {
    /// An empty store.
    pub async fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: SqliteStore::open_in_memory().await.unwrap(),
            reads: Mutex::default(),
            commits: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    /// Creates `object` (as `berth`), for setting up a test.
    pub async fn put<K: Kind>(&self, object: &Resource<K>) {
        self.inner
            .commit(vec![repo::create(object).unwrap()], Vec::new())
            .await
            .unwrap();
    }

    /// Reads object `name` of `K` without recording the read.
    pub async fn peek<K: Kind>(&self, name: &str) -> Option<Resource<K>> {
        repo::get::<K>(&self.inner, name).await.unwrap()
    }

    /// Every object of `K` (children of `owner`, when given), without recording.
    pub async fn peek_all<K: Kind>(&self, owner: Option<&str>) -> Vec<Resource<K>> {
        repo::list_all::<K>(&self.inner, owner).await.unwrap()
    }

    /// Makes the next commits fail with `errors`, one each, in order.
    pub fn fail_next_commits(&self, errors: impl IntoIterator<Item = StoreError>) {
        self.failures.lock().unwrap().extend(errors);
    }

    /// Every read since the last [`RecordingStore::forget_reads`].
    #[must_use]
    pub fn reads(&self) -> Vec<Read> {
        self.reads.lock().unwrap().clone()
    }

    /// Forgets the reads recorded so far (e.g. after setting up).
    pub fn forget_reads(&self) {
        self.reads.lock().unwrap().clear();
    }

    /// Whether some read listed every object of `kind` (no owner).
    #[must_use]
    pub fn listed_whole(&self, kind: &str) -> bool {
        self.reads()
            .iter()
            .any(|r| matches!(r, Read::List { kind: k, owner: None } if k == kind))
    }

    /// How many commits were attempted (failed ones included).
    #[must_use]
    pub fn commits(&self) -> usize {
        *self.commits.lock().unwrap()
    }
}

#[async_trait]
impl Store for RecordingStore {
    async fn commit_as(
        &self,
        change: &Change,
        writes: Vec<Write>,
        events: Vec<NewEvent>,
    ) -> Result<Commit, StoreError> {
        *self.commits.lock().unwrap() += 1;
        let failure = self.failures.lock().unwrap().pop_front();
        if let Some(e) = failure {
            return Err(e);
        }
        self.inner.commit_as(change, writes, events).await
    }

    async fn get(&self, kind: &str, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.reads.lock().unwrap().push(Read::Get {
            kind: kind.to_owned(),
            name: name.to_owned(),
        });
        self.inner.get(kind, name).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.reads.lock().unwrap().push(Read::List {
            kind: query.kind.clone(),
            owner: query.owner.clone(),
        });
        self.inner.list(query).await
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.inner.events(query).await
    }

    async fn last_event(&self) -> Result<u64, StoreError> {
        self.inner.last_event().await
    }

    async fn wait_for_events(&self, after: u64, timeout: Duration) {
        self.inner.wait_for_events(after, timeout).await;
    }

    async fn put_token(&self, token: TokenRecord, change: &Change) -> Result<(), StoreError> {
        self.inner.put_token(token, change).await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.find_token(hash).await
    }

    async fn count_tokens(&self) -> Result<u64, StoreError> {
        self.inner.count_tokens().await
    }

    async fn list_tokens(&self, subject: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_tokens(subject).await
    }

    async fn revoke_token(
        &self,
        id: &str,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<TokenRecord, StoreError> {
        self.inner.revoke_token(id, at, change).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(query).await
    }

    async fn verify_audit(&self, given: Option<&Checkpoint>) -> Result<Verification, StoreError> {
        self.inner.verify_audit(given).await
    }

    async fn writable(&self) -> Result<(), StoreError> {
        self.inner.writable().await
    }
}
