//! A real store that tells what was read, and fails commits on request.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use berth_core::{
    Kind, NewEvent, Resource,
    audit::{AuditEntry, AuditQuery, Change, Checkpoint, Verification},
    objects::{DeploymentPhase, Event},
    ports::{
        Commit, DeploymentQuery, EventQuery, GoverningQuery, ListQuery, Page, Store, StoreError, TeamQuery,
        TokenRecord, Write,
    },
    repo,
};
use berth_store::SqliteStore;
use chrono::{DateTime, Utc};
use serde_json::Value;

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
    /// A targeted query: the `Store` method's name and its arguments, e.g.
    /// `governing_deployment` of `web/qa`.
    Query {
        /// The method.
        query: &'static str,
        /// Its arguments, joined with `/`.
        key: String,
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

    fn query(&self, query: &'static str, key: String) {
        self.reads.lock().unwrap().push(Read::Query { query, key });
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

    async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, StoreError> {
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

    async fn governing_deployment(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.query("governing_deployment", format!("{application}/{environment}"));
        self.inner.governing_deployment(application, environment).await
    }

    async fn last_succeeded_deployment(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.query(
            "last_succeeded_deployment",
            format!("{application}/{environment}"),
        );
        self.inner
            .last_succeeded_deployment(application, environment)
            .await
    }

    async fn deployments(&self, query: &DeploymentQuery) -> Result<Page, StoreError> {
        self.query(
            "deployments",
            format!("{}/{}", query.application, query.environment),
        );
        self.inner.deployments(query).await
    }

    async fn governing_deployments(&self, query: &GoverningQuery) -> Result<Page, StoreError> {
        self.query(
            "governing_deployments",
            query.application.clone().unwrap_or_default(),
        );
        self.inner.governing_deployments(query).await
    }

    async fn governing_deployments_by_phase(&self) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
        self.query("governing_deployments_by_phase", String::new());
        self.inner.governing_deployments_by_phase().await
    }

    async fn deployments_of_releases(
        &self,
        application: &str,
        releases: &[u64],
    ) -> Result<Vec<Value>, StoreError> {
        self.query("deployments_of_releases", format!("{application}/{releases:?}"));
        self.inner.deployments_of_releases(application, releases).await
    }

    async fn newest_release(&self, application: &str) -> Result<Option<Value>, StoreError> {
        self.query("newest_release", application.to_owned());
        self.inner.newest_release(application).await
    }

    async fn newest_built_release(&self, application: &str) -> Result<Option<Value>, StoreError> {
        self.query("newest_built_release", application.to_owned());
        self.inner.newest_built_release(application).await
    }

    async fn releases_with_digest(&self, application: &str, digest: &str) -> Result<Vec<Value>, StoreError> {
        self.query("releases_with_digest", format!("{application}/{digest}"));
        self.inner.releases_with_digest(application, digest).await
    }

    async fn releases_with_template(
        &self,
        application: &str,
        template_hash: &str,
    ) -> Result<Vec<Value>, StoreError> {
        self.query("releases_with_template", format!("{application}/{template_hash}"));
        self.inner
            .releases_with_template(application, template_hash)
            .await
    }

    async fn team_releases_in(&self, team: &str, environment: &str) -> Result<Vec<Value>, StoreError> {
        self.query("team_releases_in", format!("{team}/{environment}"));
        self.inner.team_releases_in(team, environment).await
    }

    async fn team_applications(&self, query: &TeamQuery) -> Result<Page, StoreError> {
        self.query("team_applications", query.team.clone());
        self.inner.team_applications(query).await
    }

    async fn reusable_build(
        &self,
        application: &str,
        revision: &str,
        builder_hash: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.query(
            "reusable_build",
            format!("{application}/{revision}/{builder_hash}"),
        );
        self.inner
            .reusable_build(application, revision, builder_hash)
            .await
    }

    async fn unfinished_builds(&self, after: Option<u64>, limit: u32) -> Result<Page, StoreError> {
        self.query("unfinished_builds", String::new());
        self.inner.unfinished_builds(after, limit).await
    }

    async fn next_release_number(&self, application: &str) -> Result<u64, StoreError> {
        self.query("next_release_number", application.to_owned());
        self.inner.next_release_number(application).await
    }

    async fn next_build_number(&self, application: &str) -> Result<u64, StoreError> {
        self.query("next_build_number", application.to_owned());
        self.inner.next_build_number(application).await
    }

    async fn next_deployment_number(&self, application: &str, environment: &str) -> Result<u64, StoreError> {
        self.query("next_deployment_number", format!("{application}/{environment}"));
        self.inner.next_deployment_number(application, environment).await
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
