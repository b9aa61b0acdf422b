//! Promotion, the `requireVerifiedIn` policy and provenance over HTTP: load, let the
//! core decide (`berth_core::promotion`), commit.

use berth_core::{
    Resource,
    authz::Principal,
    objects::{ApplicationKind, BuildKind, Deployment, EnvironmentKind},
    promotion::{self, PromotionError, Provenance},
    repo,
};

use crate::{
    ApiState,
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

/// Promotes what runs in `from` to `to` (the use case `berth_service::Delivery::promote`).
pub async fn promote(
    state: &ApiState,
    principal: &Principal,
    app: &str,
    req: PromoteRequest,
) -> Result<Deployment> {
    let cmd = berth_service::Promote {
        actor: crate::delivery::actor(principal),
        application: app.to_owned(),
        from: req.from,
        to: req.to,
    };
    Ok(state.delivery().promote(cmd).await?)
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
    axum::Extension(who): axum::Extension<Principal>,
    axum::extract::Path(app): axum::extract::Path<String>,
    crate::body::JsonBody(req): crate::body::JsonBody<PromoteRequest>,
) -> Result<(axum::http::StatusCode, axum::Json<Deployment>)> {
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(promote(&s, &who, &app, req).await?),
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
