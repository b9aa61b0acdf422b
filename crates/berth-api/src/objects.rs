//! Create, read, replace, patch, list and delete for the declarative kinds (Cluster,
//! Environment, Application), plus reads of releases and deployments.
//!
//! Deleting an application keeps its history (releases, builds, deployments retired);
//! see [`Managed::on_delete`] of `ApplicationKind`.

use std::{future::Future, sync::Arc};

use axum::{Json, http::StatusCode};
use berth_core::{
    Kind, NewEvent, Resource,
    meta::ObjectMeta,
    objects::{
        Application, ApplicationKind, Cluster, ClusterKind, Deployment, DeploymentKind, Environment,
        EnvironmentKind, Release, ReleaseKind, SourceKind, Team, TeamKind, User, UserKind,
    },
    ports::{ListQuery, StoreError, Write},
    repo,
};
use berth_service::Staged;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::{
    ApiState,
    auth::Actor,
    error::{ApiError, Result},
    governance::Governance,
};
pub use berth_contract::{ListMeta, ListParams, ObjectList};

/// Per-kind rules the API enforces around writes: references to other objects, and what
/// a delete takes with it.
pub trait Managed: Kind {
    /// Refuses (422) a document that names objects that do not exist.
    fn check_references(state: &ApiState, object: &Resource<Self>)
    -> impl Future<Output = Result<()>> + Send;
    /// Refuses a delete that would break others, or returns the writes that delete what
    /// belongs to the object. `force` asks to go ahead where a kind refuses by default
    /// (an application running in production); only applications' delete offers it.
    fn on_delete(
        state: &ApiState,
        name: &str,
        force: bool,
    ) -> impl Future<Output = Result<Vec<Write>>> + Send;
    /// Whether lists show only the objects of applications the caller may read.
    const SCOPED: bool = false;
    /// Refuses a change `actor` may not make to `name` even with the permission for it
    /// (`new` is `None` for a delete); by default none.
    fn check_actor(_actor: &Actor, _name: &str, _new: Option<&Resource<Self>>) -> Result<()> {
        Ok(())
    }
    /// What else a create does once committed.
    fn after_create(
        _state: &ApiState,
        _actor: &Actor,
        _name: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// Turns the write-only parts of an accepted document into what is stored (a
    /// cluster's inline kubeconfig becomes a sealed credential) and returns the writes
    /// that go with it; by default none.
    fn seal(
        _state: &ApiState,
        _governance: &Governance,
        _actor: &Actor,
        _object: &mut Resource<Self>,
    ) -> impl Future<Output = Result<Vec<Write>>> + Send {
        async { Ok(Vec::new()) }
    }
    /// What else a delete does once committed.
    fn after_delete(
        _state: &ApiState,
        _actor: &Actor,
        _name: &str,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

impl Managed for ClusterKind {
    async fn check_references(_: &ApiState, _: &Resource<Self>) -> Result<()> {
        Ok(())
    }

    async fn seal(
        state: &ApiState,
        governance: &Governance,
        actor: &Actor,
        cluster: &mut Cluster,
    ) -> Result<Vec<Write>> {
        crate::credentials::seal(state.store.as_ref(), &governance.keyring, &actor.0, cluster).await
    }

    async fn on_delete(state: &ApiState, name: &str, _force: bool) -> Result<Vec<Write>> {
        let users: Vec<String> = repo::list_all::<EnvironmentKind>(state.store.as_ref(), None)
            .await?
            .into_iter()
            .filter(|e| e.spec.clusters.iter().any(|p| p.cluster == name))
            .map(|e| e.metadata.name)
            .collect();
        if users.is_empty() {
            crate::credentials::forget(state.store.as_ref(), name).await
        } else {
            Err(ApiError::Conflict {
                message: format!("Cluster '{name}' is used by environment(s) {}", users.join(", ")),
                hint: "remove the cluster from those environments first".to_owned(),
            })
        }
    }
}

/// A source's objects stay when it is deleted (they keep its label, so that a source
/// of the same name takes them over again); a new source is synced at once.
impl Managed for SourceKind {
    async fn check_references(_: &ApiState, _: &Resource<Self>) -> Result<()> {
        Ok(())
    }

    async fn on_delete(_: &ApiState, _: &str, _force: bool) -> Result<Vec<Write>> {
        Ok(Vec::new())
    }

    async fn after_create(state: &ApiState, _actor: &Actor, name: &str) -> Result<()> {
        state.syncs.request(name);
        Ok(())
    }
}

impl Managed for EnvironmentKind {
    async fn check_references(state: &ApiState, env: &Environment) -> Result<()> {
        for (i, p) in env.spec.clusters.iter().enumerate() {
            if state.store.get(ClusterKind::KIND, &p.cluster).await?.is_none() {
                return Err(ApiError::MissingReference {
                    path: format!("spec.clusters[{i}].cluster"),
                    kind: ClusterKind::KIND,
                    name: p.cluster.clone(),
                });
            }
        }
        Ok(())
    }

    async fn on_delete(state: &ApiState, name: &str, _force: bool) -> Result<Vec<Write>> {
        // The environment's deployments go with it; the reconciler then stops its replicas.
        let deployments = repo::list_all::<DeploymentKind>(state.store.as_ref(), None).await?;
        Ok(deployments
            .iter()
            .filter(|d| d.spec.environment == name)
            .map(repo::delete)
            .collect())
    }
}

impl Managed for ApplicationKind {
    const SCOPED: bool = true;

    async fn check_references(state: &ApiState, app: &Application) -> Result<()> {
        if state.store.get(TeamKind::KIND, &app.spec.team).await?.is_none() {
            return Err(ApiError::MissingReference {
                path: "spec.team".to_owned(),
                kind: TeamKind::KIND,
                name: app.spec.team.clone(),
            });
        }
        check_overrides(state, app).await
    }

    /// Deleting an application is the use case `berth_service::Delivery::delete_application`
    /// (what `DELETE /applications/{name}` calls); this gives its writes to a generic
    /// delete, whose permission check has already asked for deploy rights in every
    /// environment the application runs in.
    async fn on_delete(state: &ApiState, name: &str, force: bool) -> Result<Vec<Write>> {
        let application = get::<ApplicationKind>(state, name).await?;
        Ok(state
            .delivery()
            .delete_writes(&berth_service::Actor::Berth, &application, force)
            .await?)
    }
}

/// Refuses (422) per-environment overrides (`spec.environments.<env>`) naming an
/// environment that does not exist, every one at once, each with the known environments:
/// an override of a misspelt environment would otherwise never apply, silently.
async fn check_overrides(state: &ApiState, app: &Application) -> Result<()> {
    let mut unknown = Vec::new();
    for env in app.spec.environments.keys() {
        if state.store.get(EnvironmentKind::KIND, env).await?.is_none() {
            unknown.push(env);
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    // Only read every environment when there is something to name them for.
    let known: Vec<String> = repo::list_all::<EnvironmentKind>(state.store.as_ref(), None)
        .await?
        .into_iter()
        .map(|e| e.metadata.name)
        .collect();
    let hint = if known.is_empty() {
        "there are no environments yet: create the environment first, or remove the override".to_owned()
    } else {
        format!(
            "the environments are {}: correct the name, or create the environment first",
            known.join(", ")
        )
    };
    Err(ApiError::Invalid(berth_core::Invalid {
        kind: ApplicationKind::KIND,
        errors: unknown
            .into_iter()
            .map(|env| {
                berth_core::FieldError::new(
                    format!("spec.environments.{env}"),
                    format!("overrides environment '{env}', which does not exist"),
                )
                .hint(hint.clone())
            })
            .collect(),
    }))
}

impl Managed for TeamKind {
    async fn check_references(state: &ApiState, team: &Team) -> Result<()> {
        for (i, m) in team.spec.members.iter().enumerate() {
            if state.store.get(UserKind::KIND, &m.user).await?.is_none() {
                return Err(ApiError::MissingReference {
                    path: format!("spec.members[{i}].user"),
                    kind: UserKind::KIND,
                    name: m.user.clone(),
                });
            }
        }
        Ok(())
    }

    async fn on_delete(state: &ApiState, name: &str, _force: bool) -> Result<Vec<Write>> {
        let apps: Vec<String> = repo::list_all::<ApplicationKind>(state.store.as_ref(), None)
            .await?
            .into_iter()
            .filter(|a| a.spec.team == name)
            .map(|a| a.metadata.name)
            .collect();
        if apps.is_empty() {
            Ok(Vec::new())
        } else {
            Err(ApiError::Conflict {
                message: format!("Team '{name}' owns application(s) {}", apps.join(", ")),
                hint: "move those applications to another team (spec.team) or delete them first".to_owned(),
            })
        }
    }
}

impl Managed for UserKind {
    /// Nobody locks themselves out: a user cannot delete itself or give up its own
    /// platform administration (another administrator can).
    fn check_actor(actor: &Actor, name: &str, new: Option<&User>) -> Result<()> {
        if actor.0 != name {
            return Ok(());
        }
        let what = match new {
            None => "delete yourself",
            Some(u) if !u.spec.platform_admin => "give up your own platform administration",
            Some(_) => return Ok(()),
        };
        Err(ApiError::Conflict {
            message: format!("you cannot {what}"),
            hint: "ask another platform administrator to do it".to_owned(),
        })
    }

    async fn check_references(state: &ApiState, user: &User) -> Result<()> {
        if !user.spec.platform_admin {
            refuse_removing_the_last_admin(state, user.name()).await?;
        }
        Ok(())
    }

    /// The user leaves every team in the same transaction (each change audited), so that
    /// a new user of the same name starts with no roles.
    async fn on_delete(state: &ApiState, name: &str, _force: bool) -> Result<Vec<Write>> {
        refuse_removing_the_last_admin(state, name).await?;
        let mut writes = Vec::new();
        for mut team in repo::list_all::<TeamKind>(state.store.as_ref(), None).await? {
            let before = team.spec.members.len();
            team.spec.members.retain(|m| m.user != name);
            if team.spec.members.len() != before {
                writes.push(repo::replace(&team)?);
            }
        }
        Ok(writes)
    }

    /// A new user starts with no tokens: any still active are an earlier user's of the
    /// same name (their revocation at its delete failed, or was undone).
    async fn after_create(state: &ApiState, actor: &Actor, name: &str) -> Result<()> {
        revoke_tokens_of(
            state,
            &berth_core::audit::Change::new(&actor.0, "user.create"),
            name,
        )
        .await
    }

    /// A user's tokens die with it, so that a new user of the same name never inherits them.
    async fn after_delete(state: &ApiState, actor: &Actor, name: &str) -> Result<()> {
        revoke_tokens_of(
            state,
            &berth_core::audit::Change::new(&actor.0, "user.delete"),
            name,
        )
        .await
    }
}

/// Revokes every active token of user `name`, audited as `change`.
async fn revoke_tokens_of(state: &ApiState, change: &berth_core::audit::Change, name: &str) -> Result<()> {
    for token in state.store.list_tokens(Some(name)).await? {
        if token.revoked_at.is_none() {
            state
                .store
                .revoke_token(&token.id, state.clock.now(), change)
                .await?;
        }
    }
    Ok(())
}

/// Refuses a change that would leave the platform without an administrator.
async fn refuse_removing_the_last_admin(state: &ApiState, name: &str) -> Result<()> {
    let admins: Vec<String> = repo::list_all::<UserKind>(state.store.as_ref(), None)
        .await?
        .into_iter()
        .filter(|u| u.spec.platform_admin)
        .map(|u| u.metadata.name)
        .collect();
    if admins == [name] {
        return Err(ApiError::Conflict {
            message: format!("User '{name}' is the last platform administrator"),
            hint: "make another user a platform administrator first".to_owned(),
        });
    }
    Ok(())
}

fn parse_cursor(params: &ListParams) -> Result<Option<u64>> {
    params
        .continue_token
        .as_deref()
        .map(|c| {
            c.parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "continue='{c}' is not a token this server gave; start the list again without it"
                ))
            })
        })
        .transpose()
}

/// Lists objects of `K`, optionally only those owned by `owner` and passing `keep`.
pub async fn list<K: Kind>(
    state: &ApiState,
    params: &ListParams,
    owner: Option<&str>,
    keep: impl Fn(&Value) -> bool,
) -> Result<ObjectList> {
    let page = state
        .store
        .list(&ListQuery {
            kind: K::KIND.to_owned(),
            owner: owner.map(str::to_owned),
            after: parse_cursor(params)?,
            limit: params.limit.unwrap_or(500).clamp(1, 1000),
        })
        .await?;
    Ok(ObjectList {
        api_version: berth_core::API_VERSION.to_owned(),
        kind: format!("{}List", K::KIND),
        metadata: ListMeta {
            continue_token: page.next.map(|n| n.to_string()),
        },
        items: page.items.into_iter().filter(|v| keep(v)).collect(),
    })
}

/// Succeeds when application `name` exists or has history (releases kept after it was
/// deleted); otherwise the same 404 as for a missing application, so that what hangs off
/// an application answers alike whether the application is missing or unreadable.
pub async fn application_or_history(state: &ApiState, name: &str) -> Result<()> {
    if repo::get::<ApplicationKind>(state.store.as_ref(), name)
        .await?
        .is_some()
        || !state
            .store
            .list(&ListQuery {
                kind: ReleaseKind::KIND.to_owned(),
                owner: Some(name.to_owned()),
                after: None,
                limit: 1,
            })
            .await?
            .items
            .is_empty()
    {
        return Ok(());
    }
    Err(ApiError::NotFound {
        kind: ApplicationKind::KIND.to_owned(),
        name: name.to_owned(),
    })
}

/// Reads one object.
pub async fn get<K: Kind>(state: &ApiState, name: &str) -> Result<Resource<K>> {
    repo::get::<K>(state.store.as_ref(), name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: K::KIND.to_owned(),
            name: name.to_owned(),
        })
}

/// Parses and validates a document sent by a client; status is Berth's and is dropped.
fn accept<K: Kind>(body: &Value, url_name: Option<&str>) -> Result<Resource<K>> {
    // A document names itself: one without `metadata.name` is refused like any document
    // missing a required field, as the OpenAPI document says, not completed from the URL.
    let mut object = Resource::<K>::from_json(body)?;
    if let Some(name) = url_name
        && object.metadata.name != name
    {
        return Err(ApiError::BadRequest(format!(
            "metadata.name is '{}' but the URL names '{name}'; they must be the same",
            object.metadata.name
        )));
    }
    object.validate()?;
    object.status = K::Status::default();
    object.metadata.creation_timestamp = None;
    object.metadata.update_timestamp = None;
    Ok(object)
}

fn event<K: Kind>(reason: &str, name: &str, actor: &Actor, verb: &str) -> NewEvent {
    let event = NewEvent::normal(
        reason,
        K::KIND,
        name,
        &actor.0,
        format!("{} '{name}' {verb} by {}", K::KIND, actor.0),
    );
    // An application's own events are its activity: `/events` shows them only to those
    // who may read its team.
    if K::KIND == ApplicationKind::KIND {
        event.about(name, None)
    } else {
        event
    }
}

/// Creates an object (409 if it exists).
pub async fn create<K: Managed>(
    state: &ApiState,
    governance: &Governance,
    actor: &Actor,
    body: &Value,
) -> Result<(StatusCode, Json<Resource<K>>)> {
    let mut object = accept::<K>(body, None)?;
    object.metadata.resource_version = None;
    K::check_references(state, &object).await?;
    let mut writes = K::seal(state, governance, actor, &mut object).await?;
    writes.insert(0, repo::create(&object)?);
    let commit = state
        .store
        .commit(
            writes,
            vec![event::<K>("Created", object.name(), actor, "created")],
        )
        .await?;
    state.changed.notify_one();
    K::after_create(state, actor, object.name()).await?;
    Ok((
        StatusCode::CREATED,
        Json(repo::decode_committed(
            commit.documents.into_iter().next().flatten(),
        )?),
    ))
}

/// Creates or replaces an object. With `metadata.resourceVersion`, replaces only that
/// version (409 otherwise). An identical document changes nothing.
pub async fn put<K: Managed>(
    state: &ApiState,
    governance: &Governance,
    actor: &Actor,
    name: &str,
    body: &Value,
) -> Result<(StatusCode, Json<Resource<K>>)> {
    let mut object = accept::<K>(body, Some(name))?;
    K::check_actor(actor, name, Some(&object))?;
    K::check_references(state, &object).await?;
    let Some(current) = repo::get::<K>(state.store.as_ref(), name).await? else {
        if object.metadata.resource_version.is_some() {
            return Err(ApiError::NotFound {
                kind: K::KIND.to_owned(),
                name: name.to_owned(),
            });
        }
        return create::<K>(state, governance, actor, body).await;
    };
    if let (Some(sent), Some(stored)) = (object.version(), current.version())
        && sent != stored
    {
        let conflict = StoreError::Conflict {
            kind: K::KIND.to_owned(),
            name: name.to_owned(),
            expected: sent,
            actual: stored,
        };
        return Err(conflict.into());
    }
    let mut writes = K::seal(state, governance, actor, &mut object).await?;
    if current.spec == object.spec && current.metadata.labels == object.metadata.labels && writes.is_empty() {
        return Ok((StatusCode::OK, Json(current)));
    }
    let replacement = Resource::<K> {
        metadata: ObjectMeta {
            resource_version: current.metadata.resource_version.clone(),
            ..object.metadata
        },
        status: current.status.clone(),
        ..object
    };
    writes.insert(0, repo::replace(&replacement)?);
    let commit = state
        .store
        .commit(writes, vec![event::<K>("Updated", name, actor, "updated")])
        .await?;
    state.changed.notify_one();
    Ok((
        StatusCode::OK,
        Json(repo::decode_committed(
            commit.documents.into_iter().next().flatten(),
        )?),
    ))
}

/// Applies an RFC 7386 JSON merge patch.
pub async fn patch<K: Managed>(
    state: &ApiState,
    governance: &Governance,
    actor: &Actor,
    name: &str,
    patch: &Value,
) -> Result<Json<Resource<K>>> {
    let current = get::<K>(state, name).await?;
    let mut doc = serde_json::to_value(&current).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // A kubeconfig is one of path, inline and sealed: the one in the patch replaces the
    // stored one instead of merging into it (which would name two).
    if K::KIND == ClusterKind::KIND
        && patch
            .pointer("/spec/kubernetes/kubeconfig")
            .is_some_and(Value::is_object)
        && let Some(kubernetes) = doc.pointer_mut("/spec/kubernetes").and_then(Value::as_object_mut)
    {
        kubernetes.remove("kubeconfig");
    }
    json_patch::merge(&mut doc, patch);
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
        && patch.pointer("/metadata/resourceVersion").is_none()
    {
        // Without a version in the patch, it applies to the version just read.
        meta.insert(
            "resourceVersion".to_owned(),
            serde_json::json!(current.metadata.resource_version),
        );
    }
    let (_, Json(object)) = put::<K>(state, governance, actor, name, &doc).await?;
    Ok(Json(object))
}

/// Query parameters of `DELETE /applications/{name}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Delete even while the application runs in a production environment, stopping it
    /// there. Needs release (deploy) rights in every environment it runs in, as any delete
    /// of a running application does.
    #[serde(default)]
    pub force: bool,
    /// `All`: the delete checked in full (permissions, production protection), nothing
    /// stored; the answer is the object as it is.
    #[serde(default, rename = "dryRun")]
    #[param(rename = "dryRun")]
    pub dry_run: Option<DryRun>,
}

impl DeleteParams {
    /// Its dry run as the parameters of any write.
    #[must_use]
    pub fn write(&self) -> WriteParams {
        WriteParams {
            dry_run: self.dry_run,
        }
    }
}

/// Whether a write is only tried: `dryRun=All` validates, authorizes and admits the
/// change in full, stores nothing, and answers the object as it would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub enum DryRun {
    /// Every stage of the write runs; nothing is stored.
    All,
}

/// Query parameters of every write of an object.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteParams {
    /// `All`: validate, authorize and admit in full, store nothing, answer the object
    /// as it would be (or, for a delete, as it is).
    #[serde(default, rename = "dryRun")]
    #[param(rename = "dryRun")]
    pub dry_run: Option<DryRun>,
}

impl WriteParams {
    /// The state a write runs against: `state`, or for a dry run the same ports over a
    /// store that stages the writes and never commits them (and wakes no reconciler).
    #[must_use]
    pub fn state(&self, state: &ApiState) -> ApiState {
        match self.dry_run {
            None => state.clone(),
            Some(DryRun::All) => staged_state(state, Arc::new(Staged::new(state.store.clone()))),
        }
    }
}

/// `state` over `staged` instead of its store: writes are staged, and the reconciler
/// is not woken by them (they may never be committed).
#[must_use]
pub fn staged_state(state: &ApiState, staged: Arc<Staged>) -> ApiState {
    ApiState {
        store: staged,
        changed: Arc::new(tokio::sync::Notify::new()),
        ..state.clone()
    }
}

/// Deletes an object and whatever belongs to it, in one transaction.
pub async fn delete<K: Managed>(
    state: &ApiState,
    actor: &Actor,
    name: &str,
    force: bool,
) -> Result<Json<Resource<K>>> {
    // The caller named no version: an object that changed between the read and the
    // commit (the reconciler records a cluster's health, a deployment's progress) is
    // read and judged again, rather than answered 409 for a race the caller never saw.
    let mut attempt = 1;
    loop {
        let current = get::<K>(state, name).await?;
        K::check_actor(actor, name, None)?;
        let mut writes = K::on_delete(state, name, force).await?;
        writes.push(repo::delete(&current));
        match state
            .store
            .commit(writes, vec![event::<K>("Deleted", name, actor, "deleted")])
            .await
        {
            Err(StoreError::Conflict { .. }) if attempt < DELETE_ATTEMPTS => attempt += 1,
            committed => {
                committed?;
                state.changed.notify_one();
                K::after_delete(state, actor, name).await?;
                return Ok(Json(current));
            }
        }
    }
}

/// How many times a delete reads and judges again when the object changed under it.
const DELETE_ATTEMPTS: usize = 5;

/// Refuses (404) an application that neither exists nor has history (releases) under its
/// name: the history of a deleted application stays readable.
pub async fn require_known(state: &ApiState, application: &str) -> Result<()> {
    if repo::get::<ApplicationKind>(state.store.as_ref(), application)
        .await?
        .is_some()
        || !releases(state, application).await?.is_empty()
    {
        return Ok(());
    }
    Err(ApiError::NotFound {
        kind: ApplicationKind::KIND.to_owned(),
        name: application.to_owned(),
    })
}

/// Release documents of an application, newest last.
pub async fn releases(state: &ApiState, application: &str) -> Result<Vec<Release>> {
    Ok(repo::list_all::<ReleaseKind>(state.store.as_ref(), Some(application)).await?)
}

/// Deployment documents of an application.
pub async fn deployments(state: &ApiState, application: &str) -> Result<Vec<Deployment>> {
    Ok(repo::list_all::<DeploymentKind>(state.store.as_ref(), Some(application)).await?)
}

/// Whether two stored copies of an object want the same thing: equal spec and labels.
#[must_use]
pub fn same_desired_state(before: &Value, after: &Value) -> bool {
    let labels = |v: &Value| match v.pointer("/metadata/labels") {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(l) => l.clone(),
    };
    before.get("spec") == after.get("spec") && labels(before) == labels(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_compares_spec_and_labels_only() {
        let a = serde_json::json!({"metadata": {"name": "x", "resourceVersion": "1"}, "spec": {"a": 1}});
        let b = serde_json::json!({"metadata": {"name": "x", "resourceVersion": "2", "labels": {}}, "spec": {"a": 1}});
        assert!(same_desired_state(&a, &b));
        let c = serde_json::json!({"metadata": {"name": "x", "labels": {"t": "w"}}, "spec": {"a": 1}});
        assert!(!same_desired_state(&a, &c));
        let d = serde_json::json!({"metadata": {"name": "x"}, "spec": {"a": 2}});
        assert!(!same_desired_state(&a, &d));
    }
}
