//! Secrets of applications over HTTP: set (sealed before it is stored), list (names and
//! versions, never values), delete, and re-seal everything with the active key.
//!
//! A secret has a value for all environments and/or values for single environments
//! (`?environment=production`); a replica gets its environment's own value, else the one
//! for all environments, never another environment's. Setting or deleting the value of
//! environment E needs the right to deploy to E (for production: the releaser role);
//! the value for all environments reaches every production environment without its own
//! value, so it needs the right to apply the application and to deploy to every
//! production environment (see `permissions::Rule::ChangeSecret`).
//!
//! A value exists in clear only in the request that sets it and in the reconciler that
//! delivers it; it is never in a response, an event, a log line or the database.

use axum::http::StatusCode;
use berth_core::{
    Kind, NewEvent,
    audit::Change,
    name,
    objects::{
        ApplicationKind, EnvironmentKind, Secret, SecretInfo, SecretKind, SecretSpec, secret_object_name,
        secret_object_name_in,
    },
    repo,
};
use berth_secrets::secret_aad_in;
use serde::Deserialize;

use crate::{
    ApiState,
    auth::Actor,
    error::{ApiError, Result},
    governance::Governance,
    objects,
};
pub use berth_contract::{Resealed, SecretList, SecretParams, SecretValueRequest};

/// Largest secret value accepted.
pub const MAX_VALUE: usize = 64 << 10;

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
    items.sort_by(|a, b| (&a.name, &a.environment).cmp(&(&b.name, &b.environment)));
    Ok(SecretList { items })
}

/// Refuses (422) a value for an environment that does not exist.
async fn check_environment(state: &ApiState, environment: Option<&str>) -> Result<()> {
    if let Some(env) = environment
        && repo::get::<EnvironmentKind>(state.store.as_ref(), env)
            .await?
            .is_none()
    {
        return Err(ApiError::MissingReference {
            path: "environment".to_owned(),
            kind: EnvironmentKind::KIND,
            name: env.to_owned(),
        });
    }
    Ok(())
}

/// Where a value applies, for messages.
fn scope(environment: Option<&str>) -> String {
    environment.map_or_else(|| "all environments".to_owned(), |e| format!("environment {e}"))
}

/// Sets the value of secret `secret` of `app` for `environment` (`None`: all
/// environments) to a new version.
pub async fn set(
    state: &ApiState,
    governance: &Governance,
    actor: &Actor,
    app: &str,
    secret: &str,
    environment: Option<&str>,
    request: SecretValueRequest,
) -> Result<(StatusCode, SecretInfo)> {
    check_name(secret)?;
    objects::get::<ApplicationKind>(state, app).await?;
    check_environment(state, environment).await?;
    let object_name = secret_object_name_in(app, secret, environment);
    let values: Vec<Secret> = repo::list_all::<SecretKind>(state.store.as_ref(), Some(app))
        .await?
        .into_iter()
        .filter(|s| s.spec.name == secret)
        .collect();
    let current = values.iter().find(|s| s.metadata.name == object_name);
    // Over every value of the secret, so that whatever a replica gets, a change of it
    // is a change of version.
    let version = values.iter().map(|s| s.spec.version).max().unwrap_or(0) + 1;
    let sealed = governance
        .keyring
        .seal(&request.value, &secret_aad_in(app, secret, environment, version))?;
    drop(request);
    let spec = SecretSpec {
        application: app.to_owned(),
        name: secret.to_owned(),
        environment: environment.map(str::to_owned),
        version,
        updated_by: actor.0.clone(),
        sealed,
    };
    let (status, write) = match current {
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
            "secret '{secret}' of {app} for {} set to version {version} by {}",
            scope(environment),
            actor.0
        ),
    )
    .about(app, environment);
    let commit = state
        .store
        .commit_as(&Change::new(&actor.0, "secret.set"), vec![write], vec![event])
        .await?;
    state.changed.notify_one();
    let stored: Secret = repo::decode_committed(commit.documents.into_iter().next().flatten())?;
    Ok((status, SecretInfo::from(&stored)))
}

/// Deletes the value of secret `secret` of `app` for `environment` (`None`: all
/// environments), unless an environment the application runs in would lose it.
pub async fn delete(
    state: &ApiState,
    actor: &Actor,
    app: &str,
    secret: &str,
    environment: Option<&str>,
) -> Result<SecretInfo> {
    let application = objects::get::<ApplicationKind>(state, app).await?;
    let stored = objects::get::<SecretKind>(state, &secret_object_name_in(app, secret, environment))
        .await
        .map_err(|e| match e {
            ApiError::NotFound { .. } => ApiError::NotFound {
                kind: SecretKind::KIND.to_owned(),
                name: match environment {
                    Some(env) => format!("{secret} (environment {env})"),
                    None => secret.to_owned(),
                },
            },
            e => e,
        })?;
    if application.spec.secrets.iter().any(|r| r.name == secret) {
        // An environment's own value may go when the value for all environments stays to
        // take its place.
        let falls_back = environment.is_some()
            && repo::get::<SecretKind>(state.store.as_ref(), &secret_object_name(app, secret))
                .await?
                .is_some();
        if !falls_back {
            return Err(ApiError::Conflict {
                message: format!(
                    "application {app} uses secret '{secret}' (spec.secrets); its value for {} is needed",
                    scope(environment)
                ),
                hint: "remove it from spec.secrets and deploy first, or set a value for all environments"
                    .to_owned(),
            });
        }
    }
    let event = NewEvent::normal(
        "SecretDeleted",
        SecretKind::KIND,
        secret,
        &actor.0,
        format!(
            "secret '{secret}' of {app} for {} deleted by {}",
            scope(environment),
            actor.0
        ),
    )
    .about(app, environment);
    state
        .store
        .commit_as(
            &Change::new(&actor.0, "secret.delete"),
            vec![repo::delete(&stored)],
            vec![event],
        )
        .await?;
    state.changed.notify_one();
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
        let aad = secret_aad_in(
            &s.spec.application,
            &s.spec.name,
            s.spec.environment.as_deref(),
            s.spec.version,
        );
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
