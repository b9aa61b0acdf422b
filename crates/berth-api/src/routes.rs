//! Routes and their OpenAPI description, generated from the handlers.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, FromRequestParts, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware,
    response::IntoResponse,
    routing::get,
};
use berth_core::objects::{
    Application, ApplicationKind, Cluster, ClusterKind, Deployment, DeploymentKind, Environment,
    EnvironmentKind, Release, ReleaseKind,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_http::{set_header::SetResponseHeaderLayer, trace::TraceLayer};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    ApiState,
    auth::{self, Actor},
    body::{JsonBody, MAX_BODY},
    delivery::{self, ApplicationState, DeployRequest, ReleaseRequest, RollbackRequest},
    error::{ApiError, Problem, Result},
    events::{self, EventList, EventParams},
    objects::{self, ListParams, ObjectList},
};

/// Query parameters whose errors are problem documents.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_query(query).map(Params)
    }
}

fn serde_urlencoded_query<T: DeserializeOwned>(query: &str) -> Result<T> {
    axum::extract::Query::<T>::try_from_uri(&format!("/?{query}").parse().map_err(|_| bad_query(query))?)
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("invalid query parameters: {}", e.body_text())))
}

fn bad_query(query: &str) -> ApiError {
    ApiError::BadRequest(format!("'{query}' is not a valid query string"))
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Berth API", description = "Application-centric private container cloud."),
    modifiers(&Security),
    security(("bearer" = [])),
    components(schemas(Problem))
)]
struct ApiDoc;

macro_rules! kind_routes {
    ($module:ident, $kind:ty, $doc:ident, $list:literal, $item:literal, $tag:literal) => {
        mod $module {
            use super::*;

            /// Lists objects, a page at a time.
            #[utoipa::path(get, path = $list, tag = $tag, params(ListParams),
                responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem)))]
            pub async fn list(State(s): State<ApiState>, Params(p): Params<ListParams>) -> Result<Json<ObjectList>> {
                Ok(Json(objects::list::<$kind>(&s, &p, None, |_| true).await?))
            }

            /// Creates an object; 409 if it exists.
            #[utoipa::path(post, path = $list, tag = $tag, request_body = $doc,
                responses((status = 201, body = $doc), (status = 400, body = Problem), (status = 401, body = Problem),
                    (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
            pub async fn create(State(s): State<ApiState>, Extension(a): Extension<Actor>, JsonBody(b): JsonBody<Value>) -> Result<impl IntoResponse> {
                objects::create::<$kind>(&s, &a, &b).await
            }

            /// Reads an object.
            #[utoipa::path(get, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name")),
                responses((status = 200, body = $doc), (status = 401, body = Problem), (status = 404, body = Problem)))]
            pub async fn get(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Json<$doc>> {
                Ok(Json(objects::get::<$kind>(&s, &name).await?))
            }

            /// Creates or replaces an object; with `metadata.resourceVersion`, only that version (409 otherwise).
            #[utoipa::path(put, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name")),
                request_body = $doc,
                responses((status = 200, body = $doc), (status = 201, body = $doc), (status = 400, body = Problem),
                    (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
            pub async fn put(State(s): State<ApiState>, Extension(a): Extension<Actor>, Path(name): Path<String>, JsonBody(b): JsonBody<Value>) -> Result<impl IntoResponse> {
                objects::put::<$kind>(&s, &a, &name, &b).await
            }

            /// Changes an object with a JSON merge patch (RFC 7386).
            #[utoipa::path(patch, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name")),
                request_body(content = Object, content_type = "application/merge-patch+json"),
                responses((status = 200, body = $doc), (status = 400, body = Problem), (status = 401, body = Problem),
                    (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
            pub async fn patch(State(s): State<ApiState>, Extension(a): Extension<Actor>, Path(name): Path<String>, JsonBody(b): JsonBody<Value>) -> Result<Json<$doc>> {
                objects::patch::<$kind>(&s, &a, &name, &b).await
            }

            /// Deletes an object and what belongs to it.
            #[utoipa::path(delete, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name")),
                responses((status = 200, body = $doc), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
            pub async fn delete(State(s): State<ApiState>, Extension(a): Extension<Actor>, Path(name): Path<String>) -> Result<Json<$doc>> {
                objects::delete::<$kind>(&s, &a, &name).await
            }
        }
    };
}

kind_routes!(
    clusters,
    ClusterKind,
    Cluster,
    "/clusters",
    "/clusters/{name}",
    "clusters"
);
kind_routes!(
    environments,
    EnvironmentKind,
    Environment,
    "/environments",
    "/environments/{name}",
    "environments"
);
kind_routes!(
    applications,
    ApplicationKind,
    Application,
    "/applications",
    "/applications/{name}",
    "applications"
);

fn release_number(text: &str) -> Result<u64> {
    text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "'{text}' is not a release number; use a whole number like 3"
        ))
    })
}

/// Filters of the release and deployment lists.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChildParams {
    /// Items per page (1-1000, default 500).
    pub limit: Option<u32>,
    /// The `metadata.continue` value of the previous page.
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    /// Only those of this application.
    pub application: Option<String>,
    /// Only those to this environment (deployments).
    pub environment: Option<String>,
}

impl ChildParams {
    fn paging(&self) -> ListParams {
        ListParams {
            limit: self.limit,
            continue_token: self.continue_token.clone(),
        }
    }
}

/// Lists releases.
#[utoipa::path(get, path = "/releases", tag = "releases", params(ChildParams),
    responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_releases(
    State(s): State<ApiState>,
    Params(p): Params<ChildParams>,
) -> Result<Json<ObjectList>> {
    Ok(Json(
        objects::list::<ReleaseKind>(&s, &p.paging(), p.application.as_deref(), |_| true).await?,
    ))
}

/// Lists the releases of an application.
#[utoipa::path(get, path = "/applications/{name}/releases", tag = "releases",
    params(("name" = String, Path, description = "Application"), ListParams),
    responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn app_releases(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    Params(p): Params<ListParams>,
) -> Result<Json<ObjectList>> {
    objects::get::<ApplicationKind>(&s, &app).await?;
    Ok(Json(
        objects::list::<ReleaseKind>(&s, &p, Some(&app), |_| true).await?,
    ))
}

/// Makes a release of the application's current spec (or of another image); a tag is
/// resolved to its digest through the registry.
#[utoipa::path(post, path = "/applications/{name}/releases", tag = "releases",
    params(("name" = String, Path, description = "Application")), request_body = ReleaseRequest,
    responses((status = 201, body = Release), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn create_release(
    State(s): State<ApiState>,
    Extension(a): Extension<Actor>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Result<(StatusCode, Json<Release>)> {
    Ok((
        StatusCode::CREATED,
        Json(delivery::create_release(&s, &a, &app, req).await?),
    ))
}

/// Reads release `number` of an application.
#[utoipa::path(get, path = "/applications/{name}/releases/{number}", tag = "releases",
    params(("name" = String, Path, description = "Application"), ("number" = u64, Path, description = "Release number")),
    responses((status = 200, body = Release), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_release(
    State(s): State<ApiState>,
    Path((app, number)): Path<(String, String)>,
) -> Result<Json<Release>> {
    Ok(Json(delivery::release(&s, &app, release_number(&number)?).await?))
}

/// Deploys a release to an environment.
#[utoipa::path(post, path = "/applications/{name}/deploy", tag = "deployments",
    params(("name" = String, Path, description = "Application")), request_body = DeployRequest,
    responses((status = 201, body = Deployment), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn deploy(
    State(s): State<ApiState>,
    Extension(a): Extension<Actor>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<DeployRequest>,
) -> Result<(StatusCode, Json<Deployment>)> {
    Ok((
        StatusCode::CREATED,
        Json(delivery::deploy(&s, &a, &app, req).await?),
    ))
}

/// Rolls an environment back to the previous (or a given) release.
#[utoipa::path(post, path = "/applications/{name}/rollback", tag = "deployments",
    params(("name" = String, Path, description = "Application")), request_body = RollbackRequest,
    responses((status = 201, body = Deployment), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn rollback(
    State(s): State<ApiState>,
    Extension(a): Extension<Actor>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> Result<(StatusCode, Json<Deployment>)> {
    Ok((
        StatusCode::CREATED,
        Json(delivery::rollback(&s, &a, &app, req).await?),
    ))
}

/// Where an application stands per environment and cluster.
#[utoipa::path(get, path = "/applications/{name}/status", tag = "applications",
    params(("name" = String, Path, description = "Application")),
    responses((status = 200, body = ApplicationState), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn app_status(State(s): State<ApiState>, Path(app): Path<String>) -> Result<Json<ApplicationState>> {
    Ok(Json(delivery::status(&s, &app).await?))
}

/// Lists deployments.
#[utoipa::path(get, path = "/deployments", tag = "deployments", params(ChildParams),
    responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_deployments(
    State(s): State<ApiState>,
    Params(p): Params<ChildParams>,
) -> Result<Json<ObjectList>> {
    let env = p.environment.clone();
    let keep = move |v: &Value| {
        env.as_deref()
            .is_none_or(|e| v.pointer("/spec/environment").and_then(Value::as_str) == Some(e))
    };
    Ok(Json(
        objects::list::<DeploymentKind>(&s, &p.paging(), p.application.as_deref(), keep).await?,
    ))
}

/// Reads a deployment.
#[utoipa::path(get, path = "/deployments/{name}", tag = "deployments", params(("name" = String, Path, description = "Deployment")),
    responses((status = 200, body = Deployment), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_deployment(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Json<Deployment>> {
    Ok(Json(objects::get::<DeploymentKind>(&s, &name).await?))
}

/// Reads events in log order.
#[utoipa::path(get, path = "/events", tag = "events", params(EventParams),
    responses((status = 200, body = EventList), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list_events(State(s): State<ApiState>, Params(p): Params<EventParams>) -> Result<Json<EventList>> {
    Ok(Json(events::list(&s, p).await?))
}

/// Streams events as server-sent events (`id` is the event's `seq`); resumes after
/// `after` or the `Last-Event-ID` header.
#[utoipa::path(get, path = "/events/stream", tag = "events", params(EventParams),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn stream_events(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Params(p): Params<EventParams>,
) -> Result<impl IntoResponse> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Ok(events::stream(s, resume.or(p.after).unwrap_or(0), p.application))
}

/// The OpenAPI document of this API.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(clusters::list, clusters::create))
        .routes(routes!(
            clusters::get,
            clusters::put,
            clusters::patch,
            clusters::delete
        ))
        .routes(routes!(environments::list, environments::create))
        .routes(routes!(
            environments::get,
            environments::put,
            environments::patch,
            environments::delete
        ))
        .routes(routes!(applications::list, applications::create))
        .routes(routes!(
            applications::get,
            applications::put,
            applications::patch,
            applications::delete
        ))
        .routes(routes!(app_releases, create_release))
        .routes(routes!(get_release))
        .routes(routes!(deploy))
        .routes(routes!(rollback))
        .routes(routes!(app_status))
        .routes(routes!(list_releases))
        .routes(routes!(list_deployments))
        .routes(routes!(get_deployment))
        .routes(routes!(list_events))
        .routes(routes!(stream_events))
        .routes(routes!(crate::builds::list_of_app, crate::builds::trigger))
        .routes(routes!(crate::builds::get))
        .routes(routes!(crate::builds::log))
        .routes(routes!(crate::builds::list))
        .routes(routes!(crate::promotion::promote_handler))
        .routes(routes!(crate::promotion::provenance_handler))
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        kind: "route".to_owned(),
        name: "this path".to_owned(),
    }
}

/// The whole HTTP application: `/api/v1/...` (the OpenAPI document included) behind
/// authentication; only the liveness probe `/healthz` is open.
pub fn router(state: ApiState) -> Router {
    let (api, mut doc) = api_router().split_for_parts();
    doc.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    let doc = Arc::new(serde_json::to_string(&doc).unwrap_or_default());
    let api = api
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
