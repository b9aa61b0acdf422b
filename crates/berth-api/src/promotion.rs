//! Promotion, the `requireVerifiedIn` policy and provenance over HTTP: load, let the
//! core decide (`berth_core::promotion`), commit.

use berth_core::{
    Resource,
    objects::{ApplicationKind, BuildKind, Deployment, DeploymentCause, EnvironmentKind, Promotion},
    promotion::{self, PromotionError, Provenance},
    repo,
};
use chrono::Utc;

use crate::{
    ApiState,
    auth::Actor,
    delivery::{self, Intent},
    error::{ApiError, Result},
    objects,
};
pub use berth_contract::{PromoteRequest, ProvenanceParams};

/// Loads an environment named by request field `field` (422 when it does not exist).
async fn environment(state: &ApiState, field: &str, name: &str) -> Result<Resource<EnvironmentKind>> {
    repo::get::<EnvironmentKind>(state.store.as_ref(), name)
        .await?
        .ok_or_else(|| ApiError::MissingReference {
            path: field.to_owned(),
            kind: "Environment",
            name: name.to_owned(),
        })
}

/// Refuses (409) to let `release` into environment `env` when its `requireVerifiedIn`
/// policy is not met: the release's template (digest, command, config files, …; not the
/// per-environment overrides) must have succeeded in every environment it names. With
/// `ran_here_is_enough` (a rollback), a template that already ran successfully in `env`
/// passes too. `releases` are the application's, and hold `release` unless it is new.
pub(crate) async fn require_verified(
    state: &ApiState,
    application: &str,
    env: &str,
    release: &berth_core::objects::Release,
    ran_here_is_enough: bool,
) -> Result<()> {
    if promotion::digest_of(&release.spec.template.image).is_none() {
        // Refused by release validation elsewhere.
        return Ok(());
    }
    let target = environment(state, "environment", env).await?;
    if target.spec.policies.require_verified_in.is_empty() {
        return Ok(());
    }
    let releases = objects::releases(state, application).await?;
    let deployments = objects::deployments(state, application).await?;
    promotion::check_verified(&target, release, &releases, &deployments, ran_here_is_enough)?;
    Ok(())
}

/// Promotes what runs in `from` to `to`: a new release with the identical digest (a
/// copy, never a rebuild) deployed to `to`, where `to`'s own overrides apply.
pub async fn promote(state: &ApiState, actor: &Actor, app: &str, req: PromoteRequest) -> Result<Deployment> {
    let application = objects::get::<ApplicationKind>(state, app).await?;
    environment(state, "from", &req.from).await?;
    let target = environment(state, "to", &req.to).await?;
    for _ in 0..delivery::ATTEMPTS {
        let releases = objects::releases(state, app).await?;
        let deployments = objects::deployments(state, app).await?;
        let source = promotion::promotion_source(app, &req.from, &req.to, &deployments, &releases)?;
        promotion::check_verified(&target, source, &releases, &deployments, false)?;
        let number = releases.iter().map(|r| r.spec.number).max().unwrap_or(0) + 1;
        let release = promotion::promoted_release(
            source,
            number,
            Promotion {
                from_environment: req.from.clone(),
                from_release: source.spec.number,
                to_environment: req.to.clone(),
                promoted_by: actor.0.clone(),
                promoted_at: Utc::now(),
            },
        );
        release.validate()?;
        delivery::admit(state, &application, &target, &release.spec.template).await?;
        let of_target = delivery::of_environment(deployments, &req.to);
        let intent = Intent {
            app,
            env: &req.to,
            release: number,
            new_release: Some(&release),
            cause: DeploymentCause::Deploy,
        };
        if let Some(d) = delivery::record_deployment(state, actor, intent, &of_target).await? {
            return Ok(d);
        }
    }
    Err(delivery::busy())
}

/// What runs in an environment and where it came from.
pub async fn provenance(state: &ApiState, app: &str, env: &str) -> Result<Provenance> {
    objects::get::<ApplicationKind>(state, app).await?;
    environment(state, "environment", env).await?;
    let releases = objects::releases(state, app).await?;
    let deployments = objects::deployments(state, app).await?;
    let builds = repo::list_all::<BuildKind>(state.store.as_ref(), Some(app)).await?;
    Ok(promotion::provenance(app, env, &releases, &deployments, &builds)?)
}

impl From<PromotionError> for ApiError {
    fn from(e: PromotionError) -> Self {
        Self::Promotion(e)
    }
}

/// Promotes the release running in `from` to `to`: the identical image digest, never a
/// rebuild; 409 when `to` requires the digest to be verified somewhere it was not.
#[utoipa::path(post, path = "/applications/{name}/promote", tag = "deployments",
    params(("name" = String, Path, description = "Application")), request_body = PromoteRequest,
    responses((status = 201, body = Deployment), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn promote_handler(
    axum::extract::State(s): axum::extract::State<ApiState>,
    axum::Extension(a): axum::Extension<Actor>,
    axum::extract::Path(app): axum::extract::Path<String>,
    crate::body::JsonBody(req): crate::body::JsonBody<PromoteRequest>,
) -> Result<(axum::http::StatusCode, axum::Json<Deployment>)> {
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(promote(&s, &a, &app, req).await?),
    ))
}

/// What runs in an environment: release, digest, commit, build, every environment the
/// digest was verified in, and who promoted it and when.
#[utoipa::path(get, path = "/applications/{name}/provenance", tag = "applications",
    params(("name" = String, Path, description = "Application"), ProvenanceParams),
    responses((status = 200, body = Provenance), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn provenance_handler(
    axum::extract::State(s): axum::extract::State<ApiState>,
    axum::extract::Path(app): axum::extract::Path<String>,
    crate::routes::Params(p): crate::routes::Params<ProvenanceParams>,
) -> Result<axum::Json<Provenance>> {
    Ok(axum::Json(provenance(&s, &app, &p.environment).await?))
}
