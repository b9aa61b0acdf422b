//! Secrets of applications over HTTP: set (sealed before it is stored), list (names and
//! versions, never values), delete, and re-seal everything with the active key.
//!
//! A value exists in clear only in the request that sets it and in the reconciler that
//! delivers it; it is never in a response, an event, a log line or the database.

use axum::http::StatusCode;
use berth_core::{
    Kind, NewEvent,
    audit::Change,
    name,
    objects::{ApplicationKind, Secret, SecretInfo, SecretKind, SecretSpec, secret_object_name},
    repo,
};
use berth_secrets::secret_aad;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    ApiState,
    auth::Actor,
    error::{ApiError, Result},
    governance::Governance,
    objects,
};

/// Largest secret value accepted.
pub const MAX_VALUE: usize = 64 << 10;

/// Body of `PUT /applications/{name}/secrets/{secret}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValueRequest {
    /// The value: UTF-8 text of at most 64 KiB, without NUL characters. Never returned.
    #[schema(max_length = 65536)]
    pub value: String,
}

/// The secrets of an application.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// By name.
    pub items: Vec<SecretInfo>,
}

/// What a re-seal did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resealed {
    /// The key every secret is now sealed with.
    pub key_id: String,
    /// Secrets sealed again (they were under an older key).
    pub resealed: u64,
    /// Secrets in all.
    pub total: u64,
}

/// Reads the (parsed) body of a set without ever quoting it back: serde's messages can
/// contain the value.
pub fn parse_value(body: &serde_json::Value) -> Result<SecretValueRequest> {
    let request = SecretValueRequest::deserialize(body).map_err(|_| {
        ApiError::BadRequest(
            "the body must be a JSON object with one string field: {\"value\": \"<the secret>\"}".to_owned(),
        )
    })?;
    let invalid = |message: &str| {
        ApiError::Invalid(berth_core::Invalid {
            kind: SecretKind::KIND,
            errors: vec![berth_core::FieldError::new("value", message)],
        })
    };
    if request.value.len() > MAX_VALUE {
        return Err(invalid("is longer than 64 KiB"));
    }
    if request.value.contains('\0') {
        return Err(invalid(
            "contains a NUL character, which environment variables cannot hold",
        ));
    }
    Ok(request)
}

fn check_name(secret: &str) -> Result<()> {
    name::check_label("name", secret).map_err(|e| {
        ApiError::Invalid(berth_core::Invalid {
            kind: SecretKind::KIND,
            errors: vec![e],
        })
    })
}

/// The secrets of `app`.
pub async fn list(state: &ApiState, app: &str) -> Result<SecretList> {
    objects::get::<ApplicationKind>(state, app).await?;
    let secrets = repo::list_all::<SecretKind>(state.store.as_ref(), Some(app)).await?;
    let mut items: Vec<SecretInfo> = secrets.iter().map(SecretInfo::from).collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(SecretList { items })
}

/// Sets secret `secret` of `app` to a new version.
pub async fn set(
    state: &ApiState,
    governance: &Governance,
    actor: &Actor,
    app: &str,
    secret: &str,
    request: SecretValueRequest,
) -> Result<(StatusCode, SecretInfo)> {
    check_name(secret)?;
    objects::get::<ApplicationKind>(state, app).await?;
    let object_name = secret_object_name(app, secret);
    let current = repo::get::<SecretKind>(state.store.as_ref(), &object_name).await?;
    let version = current.as_ref().map_or(1, |s| s.spec.version + 1);
    let sealed = governance
        .keyring
        .seal(&request.value, &secret_aad(app, secret, version))?;
    drop(request);
    let spec = SecretSpec {
        application: app.to_owned(),
        name: secret.to_owned(),
        version,
        updated_by: actor.0.clone(),
        sealed,
    };
    let (status, write) = match &current {
        Some(c) => {
            let mut next = c.clone();
            next.spec = spec;
            (StatusCode::OK, repo::replace(&next)?)
        }
        None => (
            StatusCode::CREATED,
            repo::create(&Secret::new(object_name, spec))?,
        ),
    };
    let event = NewEvent::normal(
        "SecretSet",
        SecretKind::KIND,
        secret,
        &actor.0,
        format!(
            "secret '{secret}' of {app} set to version {version} by {}",
            actor.0
        ),
    )
    .about(app, None);
    let commit = state
        .store
        .commit_as(&Change::new(&actor.0, "secret.set"), vec![write], vec![event])
        .await?;
    state.changed.notify_one();
    let stored: Secret = repo::decode_committed(commit.documents.into_iter().next().flatten())?;
    Ok((status, SecretInfo::from(&stored)))
}

/// Deletes secret `secret` of `app`, unless the application still uses it.
pub async fn delete(state: &ApiState, actor: &Actor, app: &str, secret: &str) -> Result<SecretInfo> {
    let application = objects::get::<ApplicationKind>(state, app).await?;
    let stored = objects::get::<SecretKind>(state, &secret_object_name(app, secret))
        .await
        .map_err(|e| match e {
            ApiError::NotFound { .. } => ApiError::NotFound {
                kind: SecretKind::KIND.to_owned(),
                name: secret.to_owned(),
            },
            e => e,
        })?;
    if application.spec.secrets.iter().any(|r| r.name == secret) {
        return Err(ApiError::Conflict {
            message: format!("application {app} uses secret '{secret}' (spec.secrets)"),
            hint: "remove it from spec.secrets and deploy first".to_owned(),
        });
    }
    let event = NewEvent::normal(
        "SecretDeleted",
        SecretKind::KIND,
        secret,
        &actor.0,
        format!("secret '{secret}' of {app} deleted by {}", actor.0),
    )
    .about(app, None);
    state
        .store
        .commit_as(
            &Change::new(&actor.0, "secret.delete"),
            vec![repo::delete(&stored)],
            vec![event],
        )
        .await?;
    Ok(SecretInfo::from(&stored))
}

/// Seals every secret that is under an older key with the active one, in one
/// transaction: all or nothing.
pub async fn reseal(state: &ApiState, governance: &Governance, actor: &Actor) -> Result<Resealed> {
    let secrets = repo::list_all::<SecretKind>(state.store.as_ref(), None).await?;
    let total = secrets.len() as u64;
    let mut writes = Vec::new();
    for s in secrets
        .iter()
        .filter(|s| governance.keyring.needs_reseal(&s.spec.sealed))
    {
        let aad = secret_aad(&s.spec.application, &s.spec.name, s.spec.version);
        let value = governance.keyring.open(&s.spec.sealed, &aad)?;
        let mut next = s.clone();
        next.spec.sealed = governance.keyring.seal(value.expose(), &aad)?;
        writes.push(repo::replace(&next)?);
    }
    let clusters = crate::credentials::reseal(state.store.as_ref(), &governance.keyring).await?;
    let total = total + clusters.total;
    let resealed = writes.len() as u64 + clusters.resealed;
    writes.extend(clusters.writes);
    if !writes.is_empty() {
        let event = NewEvent::normal(
            "SecretsResealed",
            SecretKind::KIND,
            "*",
            &actor.0,
            format!(
                "{resealed} secret(s) sealed again with key {} by {}",
                governance.keyring.active_id(),
                actor.0
            ),
        );
        state
            .store
            .commit_as(&Change::new(&actor.0, "secret.reseal"), writes, vec![event])
            .await?;
    }
    Ok(Resealed {
        key_id: governance.keyring.active_id().to_owned(),
        resealed,
        total,
    })
}
