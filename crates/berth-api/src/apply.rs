//! `POST /apply`: many documents in one request and one transaction.
//!
//! Every document runs through exactly what its own `PUT /{kinds}/{name}` runs —
//! authorization ([`permissions::check`]), the strict parse and validation, reference
//! checks, sealing — against a [`Staged`] store, in dependency order (users, teams,
//! clusters, environments, applications), so that an Environment finds the Cluster of
//! the same apply. Every refusal of every document is collected, each naming the
//! document (file, line, index) and the field path. Only when none is refused are the
//! staged writes committed, in one commit of the real store: all stored, or none.
//!
//! With a prune source, every applied object is labelled `berth.dev/source: <source>`
//! and objects carrying that label that the documents no longer have are deleted, each
//! as its own `DELETE` would be (permissions, production protection), in the same
//! commit; objects without the label are never touched.
//!
//! The answer also says what deploying each configured application would
//! then roll out, per environment it runs in ([`berth_service::Delivery::rollouts`]):
//! the deploy use case's own decision, so a plan and the deploy after it agree.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use berth_contract::{
    Action, AppliedObject, ApplyDocument, ApplyRequest, ApplyResult, Rollout, SOURCE_LABEL,
};
use berth_core::{
    FieldError, Kind,
    audit::Change,
    authz::Principal,
    objects::{
        ApplicationKind, ApplicationSpec, ClusterKind, EnvironmentKind, SourceKind, TeamKind, UserKind,
    },
};
use berth_service::Staged;
use serde_json::Value;
use std::sync::Arc;

use crate::{
    ApiState,
    auth::Actor,
    error::{ApiError, Result},
    governance::Governance,
    objects::{self, Managed, staged_state},
    permissions::{self, Operation},
};

/// The kinds an apply takes, in the order it applies them (each may name those before).
const ORDER: [&str; 6] = [
    UserKind::KIND,
    TeamKind::KIND,
    ClusterKind::KIND,
    EnvironmentKind::KIND,
    ApplicationKind::KIND,
    SourceKind::KIND,
];

/// Who applies, with what.
pub struct Applier<'a> {
    /// The state of the request.
    pub state: &'a ApiState,
    /// Keys for sealing.
    pub governance: &'a Governance,
    /// The caller, for authorization.
    pub principal: &'a Principal,
    /// The caller, for events and audit.
    pub actor: &'a Actor,
}

/// One document, checked enough to be placed: its index, kind and name.
struct Placed<'a> {
    index: usize,
    rank: usize,
    kind: &'static str,
    name: String,
    document: &'a ApplyDocument,
}

impl Applier<'_> {
    /// Applies `request` (see the module documentation); with `dry_run`, stores nothing
    /// and answers what it would do.
    ///
    /// # Errors
    ///
    /// [`ApiError::Apply`] naming every refused document; a conflict when another change
    /// raced the commit; store failures.
    pub async fn apply(&self, mut request: ApplyRequest, dry_run: bool) -> Result<ApplyResult> {
        let source = match &request.prune {
            Some(prune) => {
                check_source(&prune.source)?;
                for document in &mut request.documents {
                    label(&mut document.object, &prune.source);
                }
                Some(prune.source.clone())
            }
            None => None,
        };
        let mut refusals = Refusals::default();
        let placed = place(&request.documents, &mut refusals);
        let staged = Arc::new(Staged::new(self.state.store.clone()));
        let state = staged_state(self.state, staged.clone());
        let mut objects = Vec::with_capacity(placed.len());
        for doc in &placed {
            match self.apply_one(&state, doc).await {
                Ok(applied) => objects.push(applied),
                Err(e) => refusals.add(&e, located(doc, &e)),
            }
        }
        if let Some(source) = &source {
            let keep: BTreeSet<(&str, &str)> = placed.iter().map(|d| (d.kind, d.name.as_str())).collect();
            let force = request.prune.as_ref().is_some_and(|p| p.force);
            for kind in ORDER.iter().rev() {
                match self.prune(&state, kind, source, &keep, force).await {
                    Ok(pruned) => objects.extend(pruned),
                    Err((e, error)) => refusals.add(&e, vec![error]),
                }
            }
        }
        if !refusals.errors.is_empty() {
            return Err(refusals.into_error(request.documents.len()));
        }
        let rollouts = rollouts(&state, &objects).await?;
        if !dry_run && let Some(commit) = staged.flush(&Change::new(&self.actor.0, "apply")).await? {
            self.state.changed.notify_one();
            for object in &mut objects {
                if let (Action::Created | Action::Configured, Some(after)) =
                    (object.action, &mut object.after)
                    && let Some(meta) = after.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    meta.insert(
                        "resourceVersion".to_owned(),
                        Value::String(commit.revision.to_string()),
                    );
                }
            }
        }
        Ok(ApplyResult {
            dry_run,
            objects,
            rollouts,
        })
    }

    async fn apply_one(&self, state: &ApiState, doc: &Placed<'_>) -> Result<AppliedObject> {
        match doc.kind {
            UserKind::KIND => self.put::<UserKind>(state, doc).await,
            TeamKind::KIND => self.put::<TeamKind>(state, doc).await,
            ClusterKind::KIND => self.put::<ClusterKind>(state, doc).await,
            EnvironmentKind::KIND => self.put::<EnvironmentKind>(state, doc).await,
            SourceKind::KIND => self.put::<SourceKind>(state, doc).await,
            _ => self.put::<ApplicationKind>(state, doc).await,
        }
    }

    /// What `PUT /{plural}/{name}` does with the document, against the staged state.
    async fn put<K: Managed>(&self, state: &ApiState, doc: &Placed<'_>) -> Result<AppliedObject> {
        let template = format!("/{}/{{name}}", K::PLURAL);
        permissions::check(
            state,
            self.principal,
            &Operation {
                method: &Method::PUT,
                template: &template,
                name: Some(&doc.name),
                body: Some(&doc.document.object),
                query: "",
            },
        )
        .await?;
        let before = state.store.get(K::KIND, &doc.name).await?;
        let (_, axum::Json(after)) = objects::put::<K>(
            state,
            self.governance,
            self.actor,
            &doc.name,
            &doc.document.object,
        )
        .await?;
        let after = serde_json::to_value(&after).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let action = match &before {
            None => Action::Created,
            Some(before) if objects::same_desired_state(before, &after) => Action::Unchanged,
            Some(_) => Action::Configured,
        };
        Ok(AppliedObject {
            kind: K::KIND.to_owned(),
            name: doc.name.clone(),
            action,
            before,
            after: Some(after),
        })
    }

    /// Deletes the objects of `kind` labelled with `source` that are not in `keep`.
    async fn prune(
        &self,
        state: &ApiState,
        kind: &str,
        source: &str,
        keep: &BTreeSet<(&str, &str)>,
        force: bool,
    ) -> Result<Vec<AppliedObject>, (ApiError, FieldError)> {
        let names = match self.labelled(state, kind, source).await {
            Ok(names) => names,
            Err(e) => {
                let error = located_prune(kind, "", &e);
                return Err((e, error));
            }
        };
        let mut pruned = Vec::new();
        for name in names.into_iter().filter(|n| !keep.contains(&(kind, n.as_str()))) {
            let result = match kind {
                UserKind::KIND => self.delete::<UserKind>(state, &name, force).await,
                TeamKind::KIND => self.delete::<TeamKind>(state, &name, force).await,
                ClusterKind::KIND => self.delete::<ClusterKind>(state, &name, force).await,
                EnvironmentKind::KIND => self.delete::<EnvironmentKind>(state, &name, force).await,
                SourceKind::KIND => self.delete::<SourceKind>(state, &name, force).await,
                _ => self.delete::<ApplicationKind>(state, &name, force).await,
            };
            match result {
                Ok(before) => pruned.push(AppliedObject {
                    kind: kind.to_owned(),
                    name,
                    action: Action::Pruned,
                    before: Some(before),
                    after: None,
                }),
                Err(e) => {
                    let error = located_prune(kind, &name, &e);
                    return Err((e, error));
                }
            }
        }
        Ok(pruned)
    }

    /// Names of the objects of `kind` an apply of `source` stored.
    async fn labelled(&self, state: &ApiState, kind: &str, source: &str) -> Result<Vec<String>> {
        let labelled = |v: &Value| {
            v.pointer("/metadata/labels").and_then(|l| l.get(SOURCE_LABEL))
                == Some(&Value::String(source.to_owned()))
        };
        let mut names = Vec::new();
        let mut query = berth_core::ports::ListQuery {
            kind: kind.to_owned(),
            owner: None,
            after: None,
            limit: 1000,
        };
        loop {
            let page = state.store.list(&query).await?;
            names.extend(
                page.items
                    .iter()
                    .filter(|v| labelled(v))
                    .filter_map(|v| v.pointer("/metadata/name").and_then(Value::as_str))
                    .map(str::to_owned),
            );
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(names),
            }
        }
    }

    /// What `DELETE /{plural}/{name}` does, against the staged state.
    async fn delete<K: Managed>(&self, state: &ApiState, name: &str, force: bool) -> Result<Value> {
        let template = format!("/{}/{{name}}", K::PLURAL);
        let query = if force { "force=true" } else { "" };
        permissions::check(
            state,
            self.principal,
            &Operation {
                method: &Method::DELETE,
                template: &template,
                name: Some(name),
                body: None,
                query,
            },
        )
        .await?;
        let before = if K::KIND == ApplicationKind::KIND {
            serde_json::to_value(
                crate::delivery::delete_application(state, self.principal, name, force).await?,
            )
        } else {
            serde_json::to_value(objects::delete::<K>(state, self.actor, name, force).await?.0)
        };
        before.map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// What deploying each configured application of `objects` would roll out, asked of the
/// deploy use case against `state` (the staged store: the releases and deployments as
/// they are, the application as applied). A created application runs nowhere yet (the
/// deployments of a deleted one of that name are retired), an unchanged one rolls out
/// nothing: neither is asked about, which keeps an apply of many new documents cheap.
async fn rollouts(state: &ApiState, objects: &[AppliedObject]) -> Result<Vec<Rollout>> {
    let mut rollouts = Vec::new();
    for object in objects {
        if object.kind != ApplicationKind::KIND || object.action != Action::Configured {
            continue;
        }
        let Some(spec) = object.after.as_ref().and_then(|a| a.get("spec")) else {
            continue;
        };
        let spec: ApplicationSpec =
            serde_json::from_value(spec.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        rollouts.extend(state.delivery().rollouts(&object.name, &spec).await?);
    }
    Ok(rollouts)
}

/// Every refusal of an apply, and what they have in common.
#[derive(Default)]
struct Refusals {
    errors: Vec<FieldError>,
    /// The status of each refusal (documents that cannot be placed are 422).
    statuses: BTreeSet<u16>,
    missing_permission: Option<String>,
}

impl Refusals {
    fn add(&mut self, e: &ApiError, errors: Vec<FieldError>) {
        let problem = e.problem();
        self.statuses.insert(problem.status);
        if self.missing_permission.is_none() {
            self.missing_permission = problem.missing_permission;
        }
        self.errors.extend(errors);
    }

    /// A document that cannot even be placed (no kind, no name, twice): 422.
    fn unplaced(&mut self, error: FieldError) {
        self.statuses.insert(StatusCode::UNPROCESSABLE_ENTITY.as_u16());
        self.errors.push(error);
    }

    /// One answer: the status all refusals share (a 403 when every refusal is a missing
    /// permission, naming the first), else 422.
    fn into_error(self, documents: usize) -> ApiError {
        let status = match (self.statuses.len(), self.statuses.first()) {
            (1, Some(&status)) => StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::Apply {
            documents,
            errors: self.errors,
            missing_permission: self
                .missing_permission
                .filter(|_| status == StatusCode::FORBIDDEN),
            status,
        }
    }
}

/// Refuses a source name that is not a label value Berth can match exactly.
fn check_source(source: &str) -> Result<()> {
    berth_core::name::check_name("prune.source", source, 63).map_err(|e| {
        ApiError::Invalid(berth_core::Invalid {
            kind: "Apply",
            errors: vec![e],
        })
    })
}

/// Labels a document with its source (a document whose metadata is not an object is
/// left to its validation to refuse).
pub fn label(object: &mut Value, source: &str) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(SOURCE_LABEL.to_owned(), Value::String(source.to_owned()));
    }
}

/// Finds each document's kind and name and orders them for applying; what cannot be
/// placed (no kind Berth applies, no name, the same object twice) becomes an error.
fn place<'a>(documents: &'a [ApplyDocument], refusals: &mut Refusals) -> Vec<Placed<'a>> {
    let mut placed: Vec<Placed<'a>> = Vec::with_capacity(documents.len());
    let mut seen: std::collections::BTreeMap<(&str, String), usize> = std::collections::BTreeMap::new();
    for (index, document) in documents.iter().enumerate() {
        let kind = document.object.get("kind").and_then(Value::as_str);
        let Some(rank) = kind.and_then(|k| ORDER.iter().position(|o| *o == k)) else {
            let message = format!(
                "kind {} cannot be applied; apply takes {}",
                kind.map_or_else(|| "(none)".to_owned(), |k| format!("'{k}'")),
                ORDER.join(", ")
            );
            refusals.unplaced(unplaced(index, document, "kind", message));
            continue;
        };
        let Some(name) = document.object.pointer("/metadata/name").and_then(Value::as_str) else {
            let message = "the document has no metadata.name; every document names itself".to_owned();
            refusals.unplaced(unplaced(index, document, "metadata.name", message));
            continue;
        };
        let kind = ORDER[rank];
        if let Some(first) = seen.insert((kind, name.to_owned()), index) {
            let message = format!(
                "{kind} '{name}' is also document {first}{}; keep one",
                where_written(&documents[first])
            );
            refusals.unplaced(unplaced(index, document, "metadata.name", message));
            continue;
        }
        placed.push(Placed {
            index,
            rank,
            kind,
            name: name.to_owned(),
            document,
        });
    }
    placed.sort_by_key(|p| (p.rank, p.index));
    placed
}

fn where_written(document: &ApplyDocument) -> String {
    match (&document.file, document.line) {
        (Some(file), Some(line)) => format!(" ({file}:{line})"),
        (Some(file), None) => format!(" ({file})"),
        _ => String::new(),
    }
}

/// Every error of `e` as field errors of document `doc`: each path starts with
/// `documents[index]`, each message with where the document was written and what it is.
fn located(doc: &Placed<'_>, e: &ApiError) -> Vec<FieldError> {
    let index = doc.index;
    let problem = e.problem();
    let what = Some(doc).map(|doc| {
        let at = where_written(doc.document);
        let at = at.trim_start_matches(" (").trim_end_matches(')');
        if at.is_empty() {
            format!("{} '{}'", doc.kind, doc.name)
        } else {
            format!("{at}: {} '{}'", doc.kind, doc.name)
        }
    });
    let prefix = |message: &str| match &what {
        None => format!("document {index}: {message}"),
        Some(what) => format!("{what} (document {index}): {message}"),
    };
    let base = format!("documents[{index}]");
    if problem.errors.is_empty() {
        return vec![FieldError::new(base, prefix(&problem.detail))];
    }
    problem
        .errors
        .iter()
        .map(|fe| {
            let path = if fe.path.is_empty() {
                base.clone()
            } else {
                format!("{base}.{}", fe.path)
            };
            FieldError {
                path,
                message: prefix(&fe.message),
                hint: fe.hint.clone(),
            }
        })
        .collect()
}

/// An error of a document that could not be placed, at `field`.
fn unplaced(index: usize, document: &ApplyDocument, field: &str, message: String) -> FieldError {
    let at = where_written(document);
    let at = at.trim_start_matches(" (").trim_end_matches(')');
    let message = if at.is_empty() {
        format!("document {index}: {message}")
    } else {
        format!("{at} (document {index}): {message}")
    };
    FieldError::new(format!("documents[{index}].{field}"), message)
}

fn located_prune(kind: &str, name: &str, e: &ApiError) -> FieldError {
    let problem = e.problem();
    let detail = problem
        .errors
        .first()
        .map_or_else(|| problem.detail.clone(), ToString::to_string);
    FieldError::new(
        format!("prune.{kind}.{name}"),
        format!("pruning {kind} '{name}' is refused: {detail}"),
    )
}
