//! The GitOps syncer: keeps the objects of every Source as its repository says.
//!
//! ```text
//!  every second, or at once on POST /sources/{name}/sync
//!    for each Source that is due (its interval passed, a failure a minute ago) or asked for:
//!      fetch ref (berth_build::git) ──▶ documents under path ──▶ plan_sync
//!      dry run of POST /apply's use case, as source:<name>; refused if it takes over
//!      an object another source applied, else
//!        Apply  (a new commit):          the apply                        ──▶ status.changes
//!        Revert (same commit, selfHeal): the apply, if anything differs    ──▶ status.changes
//!        Check  (same commit):           nothing more; what differs        ──▶ status.drift
//!      a refused document: nothing applied, phase Failed, status.error names file:line,
//!      document and field; status.commit stays the last one applied
//! ```
//!
//! Every applied object carries the label `berth.dev/source: <name>` (what `apply
//! --prune` uses), so that prune deletes only what this source applied and drift is
//! looked for only there. The use case is [`berth_api::apply::Applier`], the very one
//! `POST /apply` runs, so a sync is authorized, validated and committed as one apply:
//! all of a commit, or none of it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use berth_api::{
    ApiState, Governance,
    apply::{self, Applier},
    auth::Actor,
    error::ApiError,
};
use berth_contract::{Action, AppliedObject, ApplyDocument, ApplyRequest, ApplyResult, Prune};
use berth_core::{
    Kind, NewEvent,
    authz::Principal,
    objects::{
        DriftKind, SourceChange, SourceDrift, SourceKind, SourcePhase, SourceSpec, SourceStatus, SyncAction,
        SyncError, SyncPlan, SyncSource, differing_fields, plan_sync,
    },
    ports::StoreError,
    repo,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

/// Longest a fetch may take before the sync fails (the fetch itself is left to end on
/// its blocking thread).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the syncer looks for sources that are due.
const TICK: Duration = Duration::from_secs(1);

/// When nothing else changed, a sync's times are written at most this often: each
/// status write is an audited commit.
const QUIET_REFRESH: Duration = Duration::from_secs(300);

/// The longest wait before a failed sync is tried again.
const RETRY_FAILED: Duration = Duration::from_secs(60);

/// How often a status write is tried again when the source changed under it.
const STATUS_ATTEMPTS: usize = 3;

/// What the syncer remembers of one source between syncs.
struct Tracked {
    /// The settings of its last sync: other settings (ref, path, prune) apply again.
    spec: SourceSpec,
    /// When it is due again.
    next: Instant,
}

/// Syncs every Source; see the module documentation.
pub struct Syncer {
    state: ApiState,
    governance: Governance,
    work_dir: PathBuf,
    tracked: BTreeMap<String, Tracked>,
}

impl Syncer {
    /// A syncer applying through `state`, fetching into scratch directories under
    /// `work_dir` (emptied at start).
    #[must_use]
    pub fn new(state: ApiState, governance: Governance, work_dir: PathBuf) -> Self {
        Self {
            state,
            governance,
            work_dir,
            tracked: BTreeMap::new(),
        }
    }

    /// Syncs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        // Scratch clones a previous run left behind.
        let _ = std::fs::remove_dir_all(&self.work_dir);
        tokio::pin!(shutdown);
        loop {
            self.pass().await;
            let syncs = self.state.syncs.clone();
            tokio::select! {
                () = &mut shutdown => return,
                () = syncs.requested() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Syncs every source that is due or asked for.
    async fn pass(&mut self) {
        let asked = self.state.syncs.take();
        let sources = match repo::list_all::<SourceKind>(self.state.store.as_ref(), None).await {
            Ok(sources) => sources,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list sources; syncing them later");
                return;
            }
        };
        self.tracked
            .retain(|name, _| sources.iter().any(|s| s.name() == name));
        for source in sources {
            let due = self
                .tracked
                .get(source.name())
                .is_none_or(|t| Instant::now() >= t.next);
            if due || asked.contains(source.name()) {
                self.sync(&source).await;
            }
        }
    }

    /// Syncs one source and records the outcome in its status.
    async fn sync(&mut self, source: &SyncSource) {
        let name = source.name().to_owned();
        let settings_changed = self.tracked.get(&name).is_some_and(|t| t.spec != source.spec);
        let status = match self.fetch(source).await {
            Err(error) => failed(&source.status, error, self.state.clock.now()),
            Ok((commit, documents)) => {
                let plan = plan_sync(
                    &source.spec,
                    source.status.commit.as_deref(),
                    &commit,
                    settings_changed,
                );
                // A commit already refused is tried again quietly: no Syncing write
                // between two identical failures.
                let refused_before = source
                    .status
                    .error
                    .as_ref()
                    .is_some_and(|e| e.commit.as_deref() == Some(commit.as_str()));
                if plan == SyncPlan::Apply && !refused_before {
                    self.record(source, |s| s.phase = SourcePhase::Syncing, None)
                        .await;
                }
                self.carry_out(source, plan, &commit, documents).await
            }
        };
        let event = event(source, &status);
        // A failure may be passing (the store raced another change, the repository
        // could not be reached): tried again within a minute whatever the interval.
        let wait = match status.phase {
            SourcePhase::Failed => source.spec.interval().min(RETRY_FAILED),
            _ => source.spec.interval(),
        };
        self.record(source, |s| *s = status.clone(), event).await;
        self.tracked.insert(
            name,
            Tracked {
                spec: source.spec.clone(),
                next: Instant::now() + wait,
            },
        );
    }

    /// Fetches the source's ref and reads its documents.
    async fn fetch(&self, source: &SyncSource) -> Result<(String, Vec<ApplyDocument>), SyncError> {
        let url = source.spec.url();
        let git_ref = source.spec.git_ref.clone();
        let scratch = scratch(&self.work_dir, source.name())?;
        let fetched = tokio::time::timeout(
            FETCH_TIMEOUT,
            tokio::task::spawn_blocking(move || {
                let tree = berth_build::git::fetch(&url, &git_ref, scratch.path());
                drop(scratch);
                tree
            }),
        )
        .await;
        let tree = match fetched {
            Err(_) => {
                return Err(sync_error(
                    None,
                    format!("fetching took longer than {FETCH_TIMEOUT:?}"),
                ));
            }
            Ok(Err(e)) => return Err(sync_error(None, format!("the fetch stopped: {e}"))),
            Ok(Ok(Err(e))) => return Err(sync_error(None, e.to_string())),
            Ok(Ok(Ok(tree))) => tree,
        };
        let documents = documents(&tree, &source.spec.path).map_err(|mut e| {
            e.commit = Some(tree.commit.clone());
            e
        })?;
        Ok((tree.commit, documents))
    }

    /// Carries out `plan` for `documents` of `commit`: a dry run first, which must not
    /// take over objects another source applied; then, unless only checking (or
    /// nothing differs), the apply. The status it leads to.
    async fn carry_out(
        &self,
        source: &SyncSource,
        plan: SyncPlan,
        commit: &str,
        documents: Vec<ApplyDocument>,
    ) -> SourceStatus {
        let planned = self.apply(source, documents.clone(), true).await;
        let result = match (plan, planned) {
            (SyncPlan::Check, planned) | (_, planned @ Err(_)) => planned,
            (_, Ok(planned)) => {
                if let Some(error) = taken_over(source.name(), commit, &planned) {
                    return failed(&source.status, error, self.state.clock.now());
                }
                if plan == SyncPlan::Revert && planned.objects.iter().all(|o| o.action == Action::Unchanged) {
                    Ok(planned)
                } else {
                    self.apply(source, documents, false).await
                }
            }
        };
        outcome(&source.status, plan, commit, result, self.state.clock.now())
    }

    /// Applies `documents` as the source (as a dry run with `dry_run`).
    async fn apply(
        &self,
        source: &SyncSource,
        mut documents: Vec<ApplyDocument>,
        dry_run: bool,
    ) -> Result<ApplyResult, ApiError> {
        for document in &mut documents {
            apply::label(&mut document.object, source.name());
        }
        let request = ApplyRequest {
            documents,
            prune: source.spec.prune.then(|| Prune {
                source: source.name().to_owned(),
                force: false,
            }),
        };
        let actor = Actor(actor(source.name()));
        let principal = Principal {
            user: actor.0.clone(),
            platform_admin: true,
            grants: Vec::new(),
        };
        let applier = Applier {
            state: &self.state,
            governance: &self.governance,
            principal: &principal,
            actor: &actor,
        };
        applier.apply(request, dry_run).await
    }

    /// Writes the status `change` makes to the source as stored now (which may have
    /// changed since it was read); skips a write that would only refresh the times of
    /// a quiet source.
    async fn record(&self, source: &SyncSource, change: impl Fn(&mut SourceStatus), event: Option<NewEvent>) {
        for _ in 0..STATUS_ATTEMPTS {
            let current = match repo::get::<SourceKind>(self.state.store.as_ref(), source.name()).await {
                Ok(Some(current)) => current,
                // Deleted meanwhile: nothing to record.
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(source = source.name(), error = %e, "cannot read the source to record its sync");
                    return;
                }
            };
            let mut updated = current.clone();
            change(&mut updated.status);
            if quiet(&current.status, &updated.status) {
                return;
            }
            let write = match repo::replace(&updated) {
                Ok(write) => write,
                Err(e) => {
                    tracing::warn!(source = source.name(), error = %e, "cannot record the sync");
                    return;
                }
            };
            match self
                .state
                .store
                .commit_as(
                    &berth_core::audit::Change::new(&actor(source.name()), "sync"),
                    vec![write],
                    event.clone().into_iter().collect(),
                )
                .await
            {
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => {
                    tracing::warn!(source = source.name(), error = %e, "cannot record the sync");
                    return;
                }
                Ok(_) => return,
            }
        }
    }
}

/// Who a source's changes are made by, in events and the audit log.
fn actor(source: &str) -> String {
    format!("source:{source}")
}

/// An empty scratch directory for one fetch.
fn scratch(work_dir: &Path, source: &str) -> Result<tempfile::TempDir, SyncError> {
    std::fs::create_dir_all(work_dir)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix(&format!("{source}-"))
                .tempdir_in(work_dir)
        })
        .map_err(|e| {
            sync_error(
                None,
                format!("cannot make a scratch directory in {}: {e}", work_dir.display()),
            )
        })
}

fn sync_error(commit: Option<String>, message: String) -> SyncError {
    SyncError {
        commit,
        message,
        errors: Vec::new(),
    }
}

/// The documents of the `*.yaml`, `*.yml` and `*.json` files directly in directory
/// `dir` of `tree`, in file-name order, each file's `---`-separated documents in order.
///
/// # Errors
///
/// A file that is not YAML (naming it), or a directory with no documents: applying
/// none would, with prune, delete everything the source ever applied.
pub fn documents(tree: &berth_build::git::Tree, dir: &str) -> Result<Vec<ApplyDocument>, SyncError> {
    let base = dir.trim_matches('/');
    let base = if base.is_empty() || base == "." { "" } else { base };
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (file, content) in tree.under(base) {
        let is_manifest = !file.contains('/')
            && Path::new(file)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["yaml", "yml", "json"].contains(&e.to_ascii_lowercase().as_str()));
        if !is_manifest || content.symlink {
            continue;
        }
        let path = if base.is_empty() {
            file.to_owned()
        } else {
            format!("{base}/{file}")
        };
        let parsed = std::str::from_utf8(&content.data)
            .map_err(|e| format!("is not UTF-8 text: {e}"))
            .and_then(|text| {
                let values =
                    serde_saphyr::from_str_multiple::<Value, Vec<_>>(text).map_err(|e| e.to_string())?;
                Ok((values, text))
            });
        match parsed {
            Ok((values, text)) => {
                let values: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
                // The line of each document, when the split finds them all (it drops
                // empty documents as the parse does).
                let chunks = berth_core::stream::split_documents(text);
                let lines: Vec<Option<u64>> = if chunks.len() == values.len() {
                    chunks.iter().map(|c| Some(c.content_line())).collect()
                } else {
                    vec![None; values.len()]
                };
                documents.extend(values.into_iter().zip(lines).map(|(object, line)| ApplyDocument {
                    object,
                    file: Some(path.clone()),
                    line,
                }));
            }
            Err(message) => errors.push(berth_core::FieldError::new(
                path.clone(),
                format!("{path}: {message}"),
            )),
        }
    }
    let at = if base.is_empty() { "." } else { base };
    if !errors.is_empty() {
        return Err(SyncError {
            commit: None,
            message: format!(
                "{} file(s) under {at} cannot be read; nothing was applied",
                errors.len()
            ),
            errors,
        });
    }
    if documents.is_empty() {
        return Err(sync_error(
            None,
            format!("no documents (*.yaml, *.yml, *.json) in {at}; nothing was applied"),
        ));
    }
    Ok(documents)
}

/// Refuses a sync that would take over objects another source applied (their label
/// names it): two sources applying one object would undo each other at every sync.
fn taken_over(source: &str, commit: &str, planned: &ApplyResult) -> Option<SyncError> {
    let errors: Vec<berth_core::FieldError> = planned
        .objects
        .iter()
        .filter_map(|o| {
            let owner = o
                .before
                .as_ref()?
                .pointer("/metadata/labels")?
                .get(berth_contract::SOURCE_LABEL)?
                .as_str()?;
            (owner != source).then(|| {
                berth_core::FieldError::new(
                    format!("{}/{}", o.kind, o.name),
                    format!("{} '{}' was applied by source '{owner}'", o.kind, o.name),
                )
                .hint(format!(
                    "keep it in one source; to hand it over, remove its label {} first",
                    berth_contract::SOURCE_LABEL
                ))
            })
        })
        .collect();
    (!errors.is_empty()).then(|| SyncError {
        commit: Some(commit.to_owned()),
        message: format!(
            "commit {} would take over {} object(s) of other sources; nothing of it was applied",
            short(commit),
            errors.len()
        ),
        errors,
    })
}

/// The status after a sync that could not even apply: the objects stay as `commit`
/// left them.
fn failed(before: &SourceStatus, error: SyncError, now: DateTime<Utc>) -> SourceStatus {
    SourceStatus {
        phase: SourcePhase::Failed,
        last_attempt_time: Some(now),
        error: Some(error),
        ..before.clone()
    }
}

/// The status after a sync of `commit` under `plan` answered `result`.
fn outcome(
    before: &SourceStatus,
    plan: SyncPlan,
    commit: &str,
    result: Result<ApplyResult, ApiError>,
    now: DateTime<Utc>,
) -> SourceStatus {
    let result = match result {
        Ok(result) => result,
        Err(e) => {
            let problem = e.problem();
            let (message, errors) = match e {
                ApiError::Apply { errors, .. } => (
                    format!(
                        "commit {} is refused ({} problem(s)); nothing of it was applied",
                        short(commit),
                        errors.len()
                    ),
                    errors,
                ),
                _ => (
                    format!("applying commit {} failed: {}", short(commit), problem.detail),
                    problem.errors,
                ),
            };
            return failed(
                before,
                SyncError {
                    commit: Some(commit.to_owned()),
                    message,
                    errors,
                },
                now,
            );
        }
    };
    let changed = result.objects.iter().filter(|o| o.action != Action::Unchanged);
    let mut status = SourceStatus {
        phase: SourcePhase::Synced,
        commit: Some(commit.to_owned()),
        last_sync_time: Some(now),
        last_attempt_time: Some(now),
        error: None,
        ..before.clone()
    };
    match plan {
        SyncPlan::Apply => {
            status.changes = changed.map(|o| change(o, false)).collect();
            status.drift = Vec::new();
        }
        SyncPlan::Revert => {
            let reverted: Vec<SourceChange> = changed.map(|o| change(o, true)).collect();
            if !reverted.is_empty() {
                status.changes = reverted;
            }
            status.drift = Vec::new();
        }
        SyncPlan::Check => status.drift = changed.map(drift).collect(),
    }
    status
}

fn change(object: &AppliedObject, revert: bool) -> SourceChange {
    let action = match object.action {
        Action::Pruned => SyncAction::Pruned,
        _ if revert => SyncAction::Reverted,
        Action::Created => SyncAction::Created,
        _ => SyncAction::Changed,
    };
    SourceChange {
        kind: object.kind.clone(),
        name: object.name.clone(),
        action,
    }
}

/// How an object a dry run would change differs from the repository.
fn drift(object: &AppliedObject) -> SourceDrift {
    let desired = |v: &Option<Value>| {
        v.as_ref().map_or(Value::Null, |v| {
            serde_json::json!({
                "metadata": {"labels": v.pointer("/metadata/labels").cloned().unwrap_or_else(|| serde_json::json!({}))},
                "spec": v.get("spec").cloned().unwrap_or(Value::Null),
            })
        })
    };
    let (kind, fields) = match object.action {
        Action::Created => (DriftKind::Missing, Vec::new()),
        Action::Pruned => (DriftKind::Extra, Vec::new()),
        _ => (
            DriftKind::Changed,
            differing_fields(&desired(&object.before), &desired(&object.after)),
        ),
    };
    SourceDrift {
        kind: object.kind.clone(),
        name: object.name.clone(),
        drift: kind,
        fields,
    }
}

/// Whether `after` only refreshes the times of `before`, recently written.
fn quiet(before: &SourceStatus, after: &SourceStatus) -> bool {
    let untimed = |s: &SourceStatus| SourceStatus {
        last_sync_time: None,
        last_attempt_time: None,
        ..s.clone()
    };
    let recent = match (before.last_attempt_time, after.last_attempt_time) {
        (Some(b), Some(a)) => (a - b).to_std().is_ok_and(|d| d < QUIET_REFRESH),
        _ => false,
    };
    before == after || (recent && untimed(before) == untimed(after))
}

/// The event of a sync that changed the source's phase, commit or what it reports.
fn event(source: &SyncSource, after: &SourceStatus) -> Option<NewEvent> {
    let before = &source.status;
    let name = source.name();
    let actor = actor(name);
    let kind = SourceKind::KIND;
    match after.phase {
        SourcePhase::Failed if before.phase != SourcePhase::Failed || before.error != after.error => {
            let message = after
                .error
                .as_ref()
                .map_or_else(String::new, |e| e.message.clone());
            Some(NewEvent::warning(
                "SyncFailed",
                kind,
                name,
                &actor,
                format!("source {name}: {message}"),
            ))
        }
        SourcePhase::Synced if before.commit != after.commit || before.phase != SourcePhase::Synced => {
            Some(NewEvent::normal(
                "Synced",
                kind,
                name,
                &actor,
                format!(
                    "source {name} synced to commit {} ({} change(s))",
                    short(after.commit.as_deref().unwrap_or_default()),
                    after.changes.len()
                ),
            ))
        }
        SourcePhase::Synced if after.drift != before.drift && !after.drift.is_empty() => {
            Some(NewEvent::warning(
                "Drift",
                kind,
                name,
                &actor,
                format!(
                    "source {name}: {} object(s) differ from the repository",
                    after.drift.len()
                ),
            ))
        }
        SourcePhase::Synced if after.changes != before.changes => Some(NewEvent::normal(
            "Reverted",
            kind,
            name,
            &actor,
            format!(
                "source {name}: drift reverted ({} object(s))",
                after.changes.len()
            ),
        )),
        _ => None,
    }
}

/// A commit's first 12 digits, as messages name it.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use berth_build::git::{File, Tree};
    use serde_json::json;

    use super::*;

    fn tree(files: &[(&str, &str)]) -> Tree {
        Tree {
            commit: "c".repeat(40),
            files: files
                .iter()
                .map(|(p, t)| {
                    (
                        (*p).to_owned(),
                        File {
                            data: t.as_bytes().to_vec(),
                            executable: false,
                            symlink: false,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn documents_come_from_the_files_directly_in_the_path() {
        let t = tree(&[
            ("platform/a.yaml", "kind: Team\n---\nkind: User\n"),
            ("platform/b.json", "{\"kind\": \"Cluster\"}"),
            ("platform/README.md", "not a document"),
            ("platform/nested/c.yaml", "kind: Environment"),
            ("other/d.yaml", "kind: Application"),
        ]);
        let docs = documents(&t, "platform/").unwrap();
        let seen: Vec<(String, String)> = docs
            .iter()
            .map(|d| {
                (
                    d.file.clone().unwrap(),
                    d.object["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("platform/a.yaml".to_owned(), "Team".to_owned()),
                ("platform/a.yaml".to_owned(), "User".to_owned()),
                ("platform/b.json".to_owned(), "Cluster".to_owned()),
            ]
        );
        let lines: Vec<Option<u64>> = docs.iter().map(|d| d.line).collect();
        assert_eq!(lines, [Some(1), Some(3), Some(1)]);
        // Nothing at the top: refused, so that a wrong path never prunes everything.
        let empty = documents(&t, ".").unwrap_err();
        assert!(empty.message.contains("no documents"), "{}", empty.message);
    }

    #[test]
    fn a_file_that_is_not_yaml_is_named() {
        let t = tree(&[("a.yaml", "kind: Team\n"), ("b.yaml", "kind: [unclosed\n")]);
        let e = documents(&t, ".").unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].path, "b.yaml");
        let message = &e.errors[0].message;
        assert!(message.starts_with("b.yaml: "), "{message}");
    }

    fn applied(
        kind: &str,
        name: &str,
        action: Action,
        before: Option<Value>,
        after: Option<Value>,
    ) -> AppliedObject {
        AppliedObject {
            kind: kind.to_owned(),
            name: name.to_owned(),
            action,
            before,
            after,
        }
    }

    #[test]
    fn a_new_commit_reports_its_changes_and_a_check_its_drift() {
        let now = Utc::now();
        let result = ApplyResult {
            dry_run: false,
            rollouts: Vec::new(),
            objects: vec![
                applied("Team", "a", Action::Created, None, Some(json!({}))),
                applied("Team", "b", Action::Unchanged, None, None),
                applied("Cluster", "c", Action::Configured, None, None),
                applied("Cluster", "d", Action::Pruned, None, None),
            ],
        };
        let s = outcome(&SourceStatus::default(), SyncPlan::Apply, "abc", Ok(result), now);
        assert_eq!(s.phase, SourcePhase::Synced);
        assert_eq!(s.commit.as_deref(), Some("abc"));
        let actions: Vec<SyncAction> = s.changes.iter().map(|c| c.action).collect();
        assert_eq!(
            actions,
            [SyncAction::Created, SyncAction::Changed, SyncAction::Pruned]
        );

        let edited = ApplyResult {
            dry_run: true,
            rollouts: Vec::new(),
            objects: vec![applied(
                "Environment",
                "qa",
                Action::Configured,
                Some(json!({"spec": {"order": 2}, "metadata": {"labels": {"x": "1"}}})),
                Some(json!({"spec": {"order": 1}, "metadata": {"labels": {"x": "1"}}})),
            )],
        };
        let checked = outcome(&s, SyncPlan::Check, "abc", Ok(edited.clone()), now);
        assert_eq!(checked.changes, s.changes, "a check changes nothing");
        assert_eq!(checked.drift.len(), 1);
        assert_eq!(checked.drift[0].drift, DriftKind::Changed);
        assert_eq!(checked.drift[0].fields, ["spec.order"]);

        let reverted = outcome(&checked, SyncPlan::Revert, "abc", Ok(edited), now);
        assert!(reverted.drift.is_empty());
        assert_eq!(reverted.changes[0].action, SyncAction::Reverted);
    }

    #[test]
    fn a_refused_commit_keeps_the_synced_one() {
        let before = SourceStatus {
            phase: SourcePhase::Synced,
            commit: Some("good".to_owned()),
            ..SourceStatus::default()
        };
        let refused = ApiError::Apply {
            documents: 1,
            errors: vec![berth_core::FieldError::new("documents[0].spec.x", "bad")],
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            missing_permission: None,
        };
        let s = outcome(&before, SyncPlan::Apply, "bad", Err(refused), Utc::now());
        assert_eq!(s.phase, SourcePhase::Failed);
        assert_eq!(s.commit.as_deref(), Some("good"));
        let error = s.error.unwrap();
        assert_eq!(error.commit.as_deref(), Some("bad"));
        assert_eq!(error.errors[0].path, "documents[0].spec.x");
    }

    #[test]
    fn an_object_of_another_source_is_not_taken_over() {
        let labelled = |source: &str| json!({"metadata": {"labels": {"berth.dev/source": source}}});
        let planned = ApplyResult {
            dry_run: true,
            rollouts: Vec::new(),
            objects: vec![
                applied("Team", "mine", Action::Configured, Some(labelled("a")), None),
                applied("Team", "theirs", Action::Configured, Some(labelled("b")), None),
                applied(
                    "Team",
                    "by-hand",
                    Action::Configured,
                    Some(json!({"metadata": {}})),
                    None,
                ),
                applied("Team", "new", Action::Created, None, None),
            ],
        };
        let error = taken_over("a", "abc", &planned).unwrap();
        assert_eq!(error.errors.len(), 1);
        assert_eq!(error.errors[0].path, "Team/theirs");
        let message = &error.errors[0].message;
        assert!(message.contains("source 'b'"), "{message}");
        assert!(taken_over("b", "abc", &planned).is_some());
        let mine = ApplyResult {
            dry_run: true,
            rollouts: Vec::new(),
            objects: planned.objects[..1].to_vec(),
        };
        assert!(taken_over("a", "abc", &mine).is_none());
    }

    #[test]
    fn only_the_times_of_a_quiet_source_are_not_written_often() {
        let t0 = Utc::now();
        let before = SourceStatus {
            phase: SourcePhase::Synced,
            last_attempt_time: Some(t0),
            ..SourceStatus::default()
        };
        let soon = SourceStatus {
            last_attempt_time: Some(t0 + chrono::Duration::seconds(30)),
            ..before.clone()
        };
        assert!(quiet(&before, &soon));
        let later = SourceStatus {
            last_attempt_time: Some(t0 + chrono::Duration::seconds(600)),
            ..before.clone()
        };
        assert!(!quiet(&before, &later));
        let failed = SourceStatus {
            phase: SourcePhase::Failed,
            ..soon
        };
        assert!(!quiet(&before, &failed));
    }
}
