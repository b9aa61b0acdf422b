//! A store that stages writes instead of committing them: what a dry run and an atomic
//! apply of many documents run their use cases against.
//!
//! [`Staged`] wraps the real store. Reads of objects (`get`, `list`) see the real store
//! with every staged write laid over it, so that a later document of one apply finds the
//! Cluster an earlier one created. Commits are checked as the real store checks them (an
//! existing object is not created twice, a stale `expectedVersion` is a conflict) and
//! recorded, never sent. Then either nothing happens (a dry run: drop it) or
//! [`Staged::flush`] sends every staged write in **one** commit of the real store, merged
//! per object so that an object written twice is written once, against the version the
//! first write read: a concurrent change makes the whole commit fail, not half of it.
//!
//! Token writes (a new user's stale tokens revoked) are staged too and made after the
//! commit. Targeted queries (governing deployments, quotas…) answer from the real store
//! only: the declarative documents an apply stages are not what they index.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;
use berth_core::{
    NewEvent,
    audit::{AuditEntry, AuditQuery, Change, Checkpoint, Verification},
    objects::{DeploymentPhase, Event},
    ports::{
        Commit, DeploymentQuery, EventQuery, GoverningQuery, ListQuery, Page, Store, StoreError, TeamQuery,
        TokenRecord, Write,
    },
};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One object touched by staged writes.
#[derive(Debug, Clone)]
struct Touched {
    /// The document now (`None`: deleted).
    now: Option<Value>,
    /// Whether the real store has it (before any staged write).
    existed: bool,
    /// The version the first write expected, checked again by the real commit.
    expected_version: Option<u64>,
    /// The owner given when it was created here.
    owner: Option<String>,
    /// Order of the first write, so that the real commit writes in the same order.
    order: usize,
}

#[derive(Debug, Default)]
struct Staging {
    objects: BTreeMap<(String, String), Touched>,
    events: Vec<NewEvent>,
    revocations: Vec<(String, DateTime<Utc>, Change)>,
    writes: usize,
}

/// A store whose commits are staged (see the module documentation).
pub struct Staged {
    inner: Arc<dyn Store>,
    staging: Mutex<Staging>,
}

/// What a [`Staged`] store would change, per object: `(kind, name, before, after)`.
pub type StagedChange = (String, String, Option<Value>, Option<Value>);

impl Staged {
    /// Stages writes over `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            staging: Mutex::new(Staging::default()),
        }
    }

    fn staging(&self) -> MutexGuard<'_, Staging> {
        // A panic while the lock was held leaves whole entries only (each is replaced in
        // one statement), so the staging is still consistent.
        self.staging
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many writes were staged (before merging per object).
    #[must_use]
    pub fn staged_writes(&self) -> usize {
        self.staging().writes
    }

    /// Sends every staged write and event in one commit of the real store, audited as
    /// `change`, then the staged token revocations. Nothing staged: nothing committed
    /// (`None`).
    ///
    /// # Errors
    ///
    /// What the real commit fails with (then nothing of it is stored).
    pub async fn flush(&self, change: &Change) -> Result<Option<Commit>, StoreError> {
        let (writes, events, revocations) = {
            let mut staging = self.staging();
            let mut touched: Vec<((String, String), Touched)> =
                std::mem::take(&mut staging.objects).into_iter().collect();
            touched.sort_by_key(|(_, t)| t.order);
            let writes: Vec<Write> = touched
                .into_iter()
                .filter_map(|((kind, name), t)| match (t.existed, t.now) {
                    (false, None) => None,
                    (false, Some(document)) => Some(Write::Create {
                        kind,
                        name,
                        owner: t.owner,
                        document,
                    }),
                    (true, Some(document)) => Some(Write::Replace {
                        kind,
                        name,
                        document,
                        expected_version: t.expected_version,
                    }),
                    (true, None) => Some(Write::Delete {
                        kind,
                        name,
                        expected_version: t.expected_version,
                    }),
                })
                .collect();
            (
                writes,
                std::mem::take(&mut staging.events),
                std::mem::take(&mut staging.revocations),
            )
        };
        if writes.is_empty() && events.is_empty() && revocations.is_empty() {
            return Ok(None);
        }
        let commit = if writes.is_empty() && events.is_empty() {
            None
        } else {
            Some(self.inner.commit_as(change, writes, events).await?)
        };
        for (id, at, change) in revocations {
            self.inner.revoke_token(&id, at, &change).await?;
        }
        Ok(commit)
    }

    /// Every object the staged writes change, in the order first written, with its
    /// document in the real store and as staged.
    pub async fn changes(&self) -> Result<Vec<StagedChange>, StoreError> {
        let mut touched: Vec<((String, String), Touched)> = self
            .staging()
            .objects
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        touched.sort_by_key(|(_, t)| t.order);
        let mut out = Vec::with_capacity(touched.len());
        for ((kind, name), t) in touched {
            let before = if t.existed {
                self.inner.get(&kind, &name).await?
            } else {
                None
            };
            out.push((kind, name, before, t.now));
        }
        Ok(out)
    }

    /// The object as staged: `Some(Some(doc))` written, `Some(None)` deleted, `None`
    /// untouched.
    fn staged(&self, kind: &str, name: &str) -> Option<Option<Value>> {
        self.staging()
            .objects
            .get(&(kind.to_owned(), name.to_owned()))
            .map(|t| t.now.clone())
    }

    /// The document as this store shows it now.
    async fn current(&self, kind: &str, name: &str) -> Result<(Option<Value>, bool), StoreError> {
        match self.staged(kind, name) {
            Some(now) => Ok((now, true)),
            None => Ok((self.inner.get(kind, name).await?, false)),
        }
    }
}

fn version(document: &Value) -> Option<u64> {
    document
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

/// `document` with the bookkeeping of `current` (its version and creation time), as the
/// real store would keep them.
fn keeping_bookkeeping(mut document: Value, current: Option<&Value>) -> Value {
    if let Some(meta) = document.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "creationTimestamp", "updateTimestamp"] {
            match current.and_then(|c| c.pointer(&format!("/metadata/{field}"))) {
                Some(value) => meta.insert(field.to_owned(), value.clone()),
                None => meta.remove(field),
            };
        }
    }
    document
}

fn check_version(kind: &str, name: &str, expected: Option<u64>, current: &Value) -> Result<(), StoreError> {
    match (expected, version(current)) {
        (Some(expected), Some(actual)) if expected != actual => Err(StoreError::Conflict {
            kind: kind.to_owned(),
            name: name.to_owned(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for Staged {
    async fn commit_as(
        &self,
        _change: &Change,
        writes: Vec<Write>,
        events: Vec<NewEvent>,
    ) -> Result<Commit, StoreError> {
        // Checked first, all of them, so that a refused commit stages nothing.
        let mut staged = Vec::with_capacity(writes.len());
        for write in &writes {
            let (kind, name) = match write {
                Write::Create { kind, name, .. }
                | Write::Replace { kind, name, .. }
                | Write::Delete { kind, name, .. } => (kind.clone(), name.clone()),
            };
            let (current, touched) = self.current(&kind, &name).await?;
            let exists_in_real = if touched {
                self.staging()
                    .objects
                    .get(&(kind.clone(), name.clone()))
                    .is_some_and(|t| t.existed)
            } else {
                current.is_some()
            };
            let (now, expected, owner) = match (write, &current) {
                (Write::Create { .. }, Some(_)) => return Err(StoreError::AlreadyExists { kind, name }),
                (Write::Create { owner, document, .. }, None) => (
                    Some(keeping_bookkeeping(document.clone(), None)),
                    None,
                    owner.clone(),
                ),
                (Write::Replace { .. } | Write::Delete { .. }, None) => {
                    return Err(StoreError::NotFound { kind, name });
                }
                (
                    Write::Replace {
                        document,
                        expected_version,
                        ..
                    },
                    Some(current),
                ) => {
                    check_version(&kind, &name, *expected_version, current)?;
                    (
                        Some(keeping_bookkeeping(document.clone(), Some(current))),
                        *expected_version,
                        None,
                    )
                }
                (Write::Delete { expected_version, .. }, Some(current)) => {
                    check_version(&kind, &name, *expected_version, current)?;
                    (None, *expected_version, None)
                }
            };
            staged.push(((kind, name), now, expected, owner, exists_in_real));
        }
        let mut staging = self.staging();
        let mut documents = Vec::with_capacity(staged.len());
        for (key, now, expected, owner, existed) in staged {
            documents.push(now.clone());
            let order = staging.writes;
            staging.writes += 1;
            staging
                .objects
                .entry(key)
                .and_modify(|t| {
                    t.now.clone_from(&now);
                    if t.owner.is_none() {
                        t.owner.clone_from(&owner);
                    }
                })
                .or_insert(Touched {
                    now,
                    existed,
                    expected_version: expected,
                    owner,
                    order,
                });
        }
        staging.events.extend(events);
        Ok(Commit {
            revision: 0,
            documents,
            events: Vec::new(),
        })
    }

    async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.current(kind, name).await?.0)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let mut page = self.inner.list(query).await?;
        let staging = self.staging();
        let name_of = |v: &Value| {
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        page.items = page
            .items
            .into_iter()
            .filter_map(
                |item| match staging.objects.get(&(query.kind.clone(), name_of(&item))) {
                    Some(t) => t.now.clone(),
                    None => Some(item),
                },
            )
            .collect();
        if page.next.is_none() {
            // Objects created here come after every stored one, as they would be.
            let mut created: Vec<&Touched> = staging
                .objects
                .iter()
                .filter(|((kind, _), t)| {
                    *kind == query.kind
                        && !t.existed
                        && t.now.is_some()
                        && (query.owner.is_none() || t.owner == query.owner)
                })
                .map(|(_, t)| t)
                .collect();
            created.sort_by_key(|t| t.order);
            page.items
                .extend(created.into_iter().filter_map(|t| t.now.clone()));
        }
        Ok(page)
    }

    async fn governing_deployment(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.inner.governing_deployment(application, environment).await
    }

    async fn last_succeeded_deployment(
        &self,
        application: &str,
        environment: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.inner
            .last_succeeded_deployment(application, environment)
            .await
    }

    async fn deployments(&self, query: &DeploymentQuery) -> Result<Page, StoreError> {
        self.inner.deployments(query).await
    }

    async fn governing_deployments(&self, query: &GoverningQuery) -> Result<Page, StoreError> {
        self.inner.governing_deployments(query).await
    }

    async fn governing_deployments_by_phase(&self) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
        self.inner.governing_deployments_by_phase().await
    }

    async fn deployments_of_releases(
        &self,
        application: &str,
        releases: &[u64],
    ) -> Result<Vec<Value>, StoreError> {
        self.inner.deployments_of_releases(application, releases).await
    }

    async fn newest_release(&self, application: &str) -> Result<Option<Value>, StoreError> {
        self.inner.newest_release(application).await
    }

    async fn newest_built_release(&self, application: &str) -> Result<Option<Value>, StoreError> {
        self.inner.newest_built_release(application).await
    }

    async fn releases_with_digest(&self, application: &str, digest: &str) -> Result<Vec<Value>, StoreError> {
        self.inner.releases_with_digest(application, digest).await
    }

    async fn releases_with_template(
        &self,
        application: &str,
        template_hash: &str,
    ) -> Result<Vec<Value>, StoreError> {
        self.inner
            .releases_with_template(application, template_hash)
            .await
    }

    async fn team_releases_in(&self, team: &str, environment: &str) -> Result<Vec<Value>, StoreError> {
        self.inner.team_releases_in(team, environment).await
    }

    async fn team_applications(&self, query: &TeamQuery) -> Result<Page, StoreError> {
        self.inner.team_applications(query).await
    }

    async fn reusable_build(
        &self,
        application: &str,
        revision: &str,
        builder_hash: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.inner
            .reusable_build(application, revision, builder_hash)
            .await
    }

    async fn unfinished_builds(&self, after: Option<u64>, limit: u32) -> Result<Page, StoreError> {
        self.inner.unfinished_builds(after, limit).await
    }

    async fn next_release_number(&self, application: &str) -> Result<u64, StoreError> {
        self.inner.next_release_number(application).await
    }

    async fn next_build_number(&self, application: &str) -> Result<u64, StoreError> {
        self.inner.next_build_number(application).await
    }

    async fn next_deployment_number(&self, application: &str, environment: &str) -> Result<u64, StoreError> {
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

    async fn put_token(&self, _token: TokenRecord, _change: &Change) -> Result<(), StoreError> {
        // No use case an apply or a dry run runs makes tokens; refusing keeps a dry run
        // from ever minting one.
        Err(StoreError::Backend {
            message: "a staged change cannot make tokens".to_owned(),
        })
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
        let token = self
            .inner
            .list_tokens(None)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| StoreError::NotFound {
                kind: "Token".to_owned(),
                name: id.to_owned(),
            })?;
        self.staging()
            .revocations
            .push((id.to_owned(), at, change.clone()));
        Ok(TokenRecord {
            revoked_at: token.revoked_at.or(Some(at)),
            ..token
        })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use berth_core::{
        Kind,
        objects::{Cluster, ClusterKind},
        repo,
    };
    use berth_test_support::RecordingStore;

    use super::*;

    fn cluster(name: &str, datacenter: &str) -> Cluster {
        Cluster::from_json(&serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Cluster",
            "metadata": {"name": name}, "spec": {"datacenter": datacenter}
        }))
        .unwrap()
    }

    async fn real() -> Arc<dyn Store> {
        RecordingStore::new().await
    }

    #[tokio::test]
    async fn staged_writes_are_seen_by_reads_and_never_reach_the_real_store() {
        let real = real().await;
        real.commit(vec![repo::create(&cluster("east", "dc1")).unwrap()], vec![])
            .await
            .unwrap();
        let staged = Staged::new(real.clone());
        staged
            .commit(vec![repo::create(&cluster("west", "dc2")).unwrap()], vec![])
            .await
            .unwrap();
        let east = repo::get::<ClusterKind>(&staged, "east").await.unwrap().unwrap();
        let mut changed = east.clone();
        changed.spec.datacenter = "dc9".to_owned();
        staged
            .commit(vec![repo::replace(&changed).unwrap()], vec![])
            .await
            .unwrap();

        assert!(repo::get::<ClusterKind>(&staged, "west").await.unwrap().is_some());
        let listed: Vec<String> = repo::list_all::<ClusterKind>(&staged, None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| format!("{}={}", c.metadata.name, c.spec.datacenter))
            .collect();
        assert_eq!(listed, ["east=dc9", "west=dc2"]);
        // The real store still has only what it had.
        assert!(
            repo::get::<ClusterKind>(real.as_ref(), "west")
                .await
                .unwrap()
                .is_none()
        );
        let stored = repo::get::<ClusterKind>(real.as_ref(), "east")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.spec.datacenter, "dc1");
        // A second create of a staged object is refused as the real store would.
        let again = staged
            .commit(vec![repo::create(&cluster("west", "dc2")).unwrap()], vec![])
            .await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists { .. })),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_flush_is_one_commit_merged_per_object() {
        let real = real().await;
        real.commit(vec![repo::create(&cluster("east", "dc1")).unwrap()], vec![])
            .await
            .unwrap();
        let staged = Staged::new(real.clone());
        for dc in ["dc2", "dc3"] {
            let mut east = repo::get::<ClusterKind>(&staged, "east").await.unwrap().unwrap();
            east.spec.datacenter = dc.to_owned();
            staged
                .commit(vec![repo::replace(&east).unwrap()], vec![])
                .await
                .unwrap();
        }
        staged
            .commit(vec![repo::create(&cluster("gone", "dc1")).unwrap()], vec![])
            .await
            .unwrap();
        let gone = repo::get::<ClusterKind>(&staged, "gone").await.unwrap().unwrap();
        staged.commit(vec![repo::delete(&gone)], vec![]).await.unwrap();
        assert_eq!(staged.staged_writes(), 4);
        let before = real.last_event().await.unwrap();
        let commit = staged
            .flush(&Change::new("alice", "apply"))
            .await
            .unwrap()
            .expect("a commit");
        // Two replaces of east became one; a create then delete of gone became nothing.
        assert_eq!(commit.documents.len(), 1);
        let east = repo::get::<ClusterKind>(real.as_ref(), "east")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(east.spec.datacenter, "dc3");
        assert!(
            repo::get::<ClusterKind>(real.as_ref(), "gone")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(real.last_event().await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_flush_fails_whole_when_an_object_changed_meanwhile() {
        let real = real().await;
        real.commit(vec![repo::create(&cluster("east", "dc1")).unwrap()], vec![])
            .await
            .unwrap();
        let staged = Staged::new(real.clone());
        staged
            .commit(vec![repo::create(&cluster("west", "dc2")).unwrap()], vec![])
            .await
            .unwrap();
        let mut east = repo::get::<ClusterKind>(&staged, "east").await.unwrap().unwrap();
        east.spec.datacenter = "dc2".to_owned();
        staged
            .commit(vec![repo::replace(&east).unwrap()], vec![])
            .await
            .unwrap();
        // Someone else changes east before the flush.
        let mut theirs = repo::get::<ClusterKind>(real.as_ref(), "east")
            .await
            .unwrap()
            .unwrap();
        theirs.spec.datacenter = "dc7".to_owned();
        real.commit(vec![repo::replace(&theirs).unwrap()], vec![])
            .await
            .unwrap();

        let err = staged.flush(&Change::new("alice", "apply")).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        assert!(
            repo::get::<ClusterKind>(real.as_ref(), "west")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(ClusterKind::KIND, "Cluster");
    }
}
