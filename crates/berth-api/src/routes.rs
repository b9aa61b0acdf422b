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
use berth_contract::{ApplyRequest, ApplyResult};
use berth_core::{
    audit::Verification,
    authz::Principal,
    objects::{
        Application, ApplicationKind, Cluster, ClusterKind, DEFAULT_TEAM, Deployment, DeploymentKind,
        Environment, EnvironmentKind, Release, ReleaseKind, SecretInfo, SourceKind, SyncSource, Team,
        TeamKind, User, UserKind,
    },
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_http::{set_header::SetResponseHeaderLayer, trace::TraceLayer};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter},
    routes,
};

use crate::{
    ApiState, audit,
    audit::{AuditList, AuditParams, VerifyParams},
    auth::{self, Actor, CurrentToken},
    body::{JsonBody, MAX_BODY, ParsedBody},
    contract,
    delivery::{self, ApplicationState, DeployRequest, ReleaseRequest, RollbackRequest},
    error::{ApiError, Problem, Result},
    events::{self, EventList, EventParams},
    governance::Governance,
    identity::{self, NewToken, TokenInfo, TokenList, TokenParams, TokenRequest, WhoAmI},
    metrics,
    objects::{self, ListParams, ObjectList},
    permissions::{self, Loaded, Visibility},
    secrets::{self, Resealed, SecretList, SecretParams, SecretValueRequest},
};

/// Query parameters whose errors are problem documents.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        query(parts.uri.query().unwrap_or_default()).map(Params)
    }
}

/// Parses a query string the way [`Params`] does (authorization uses it to read the very
/// parameters the handler gets).
pub(crate) fn query<T: DeserializeOwned>(query: &str) -> Result<T> {
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

/// Completes the generated document in one place, so that it never contradicts what the
/// middleware and error mapping send: every operation may answer 400 (a malformed or
/// unknown query parameter), 401 (no valid token), 403 (a missing permission) and 429
/// (rate limit), one with a body 413 and 415 (another content type); every problem answer is
/// `application/problem+json`; every event stream documents its events.
fn complete_contract(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        Ref, RefOr,
        content::Content,
        response::{Response, ResponseBuilder},
    };
    const PROBLEM: &str = "application/problem+json";
    let problem = |description: &str| -> Response {
        ResponseBuilder::new()
            .description(description)
            .content(PROBLEM, Content::new(Some(Ref::from_schema_name("Problem"))))
            .build()
    };
    let common = [
        ("401", "No valid token"),
        ("403", "A permission is missing (`missingPermission` names it)"),
        (
            "429",
            "Too many requests from this user or client address; retry after `Retry-After` seconds",
        ),
    ];
    let is_problem = |content: &RefOr<Content>| matches!(content, RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")));
    for item in openapi.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for (status, description) in common {
                op.responses
                    .responses
                    .insert(status.to_owned(), problem(description).into());
            }
            // The contract middleware (crate::contract) refuses unknown or malformed
            // query parameters of every operation, and bodies sent as another type.
            op.responses.responses.entry("400".to_owned()).or_insert_with(|| {
                problem("The request cannot be read: an unknown or malformed query parameter, or a malformed body").into()
            });
            if op.request_body.is_some() {
                op.responses.responses.insert(
                    "415".to_owned(),
                    problem(
                        "The body is not sent with a content type this operation takes (`detail` names them)",
                    )
                    .into(),
                );
                op.responses
                    .responses
                    .entry("413".to_owned())
                    .or_insert_with(|| problem("The request body is too large").into());
            }
            for response in op.responses.responses.values_mut() {
                let RefOr::T(response) = response else { continue };
                if let Some(json) = response.content.get("application/json")
                    && is_problem(json)
                    && let Some(content) = response.content.shift_remove("application/json")
                {
                    response.content.insert(PROBLEM.to_owned(), content);
                }
                if let Some(RefOr::T(stream)) = response.content.get_mut("text/event-stream") {
                    stream.schema = Some(sse_event_schema());
                }
            }
        }
    }
}

/// One server-sent event as the streams send it (before OpenAPI 3.2, a stream's schema
/// describes each event): `data` holds a JSON document as text.
fn sse_event_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::{Type, schema::ObjectBuilder};
    let text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("A server-sent event"))
        .property("id", text("Resume after this event with `Last-Event-ID`"))
        .property("event", text("What the data is, e.g. `event` or `log`"))
        .property("data", text("The payload: a JSON document as text"))
        .property(
            "retry",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("Reconnect delay in ms")),
        )
        .into()
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
    ($module:ident, $kind:ty, $doc:ident, $list:literal, $item:literal, $tag:literal, $delete:ident) => {
        mod $module {
            use super::*;

            /// Lists objects, a page at a time.
            #[utoipa::path(get, path = $list, tag = $tag, params(ListParams),
                responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem)))]
            pub async fn list(State(s): State<ApiState>, Extension(who): Extension<Principal>, Params(p): Params<ListParams>) -> Result<Json<ObjectList>> {
                // A scoped kind's objects are applications: each says its team, so the page
                // is filtered on its own, without reading every application to know which
                // the caller may read.
                let keep = |v: &Value| {
                    !<$kind as objects::Managed>::SCOPED
                        || who.can_read(v.pointer("/spec/team").and_then(Value::as_str).unwrap_or(DEFAULT_TEAM))
                };
                Ok(Json(objects::list::<$kind>(&s, &p, None, keep).await?))
            }

            /// Creates an object; 409 if it exists.
            #[utoipa::path(post, path = $list, tag = $tag, params(objects::WriteParams), request_body = $doc,
                responses((status = 201, body = $doc), (status = 400, body = Problem), (status = 401, body = Problem),
                    (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
            pub async fn create(State(s): State<ApiState>, Extension(g): Extension<Governance>, Extension(a): Extension<Actor>, Params(w): Params<objects::WriteParams>, JsonBody(b): JsonBody<Value>) -> Result<impl IntoResponse> {
                objects::create::<$kind>(&w.state(&s), &g, &a, &b).await
            }

            /// Reads an object.
            #[utoipa::path(get, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name")),
                responses((status = 200, body = $doc), (status = 401, body = Problem), (status = 404, body = Problem)))]
            pub async fn get(State(s): State<ApiState>, Path(name): Path<String>, loaded: Option<Extension<Loaded>>) -> Result<Json<$doc>> {
                // As authorization read it, if it did (the application), else from the store.
                match loaded.and_then(|Extension(l)| l.get::<$kind>(&name)) {
                    Some(object) => Ok(Json(object)),
                    None => Ok(Json(objects::get::<$kind>(&s, &name).await?)),
                }
            }

            /// Creates or replaces an object; with `metadata.resourceVersion`, only that version (409 otherwise).
            #[utoipa::path(put, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name"), objects::WriteParams),
                request_body = $doc,
                responses((status = 200, body = $doc), (status = 201, body = $doc), (status = 400, body = Problem),
                    (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
            pub async fn put(State(s): State<ApiState>, Extension(g): Extension<Governance>, Extension(a): Extension<Actor>, Path(name): Path<String>, Params(w): Params<objects::WriteParams>, JsonBody(b): JsonBody<Value>) -> Result<impl IntoResponse> {
                objects::put::<$kind>(&w.state(&s), &g, &a, &name, &b).await
            }

            /// Changes an object with a JSON merge patch (RFC 7386).
            #[utoipa::path(patch, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name"), objects::WriteParams),
                request_body(content((Object = "application/merge-patch+json"), (Object = "application/json"))),
                responses((status = 200, body = $doc), (status = 400, body = Problem), (status = 401, body = Problem),
                    (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
            pub async fn patch(State(s): State<ApiState>, Extension(g): Extension<Governance>, Extension(a): Extension<Actor>, Path(name): Path<String>, Params(w): Params<objects::WriteParams>, JsonBody(b): JsonBody<Value>) -> Result<Json<$doc>> {
                objects::patch::<$kind>(&w.state(&s), &g, &a, &name, &b).await
            }

            $delete!($kind, $doc, $item, $tag);
        }
    };
    ($module:ident, $kind:ty, $doc:ident, $list:literal, $item:literal, $tag:literal) => {
        kind_routes!($module, $kind, $doc, $list, $item, $tag, delete_route);
    };
}

/// The delete of a kind that never needs forcing.
macro_rules! delete_route {
    ($kind:ty, $doc:ident, $item:literal, $tag:literal) => {
        /// Deletes an object and what belongs to it.
        #[utoipa::path(delete, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name"), objects::WriteParams),
            responses((status = 200, body = $doc), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
        pub async fn delete(State(s): State<ApiState>, Extension(a): Extension<Actor>, Path(name): Path<String>, Params(w): Params<objects::WriteParams>) -> Result<Json<$doc>> {
            objects::delete::<$kind>(&w.state(&s), &a, &name, false).await
        }
    };
}

/// The delete of an application: refused (409) while it runs in production unless forced.
macro_rules! forced_delete_route {
    ($kind:ty, $doc:ident, $item:literal, $tag:literal) => {
        /// Deletes an application: stops it in every environment (which needs deploy rights
        /// in each), keeps its releases, builds and deployments as history and removes its
        /// secrets; 409 while it runs in a production environment unless `force=true`.
        #[utoipa::path(delete, path = $item, tag = $tag, params(("name" = String, Path, description = "Object name"), objects::DeleteParams),
            responses((status = 200, body = $doc), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
        pub async fn delete(State(s): State<ApiState>, Extension(who): Extension<Principal>, Path(name): Path<String>, Params(p): Params<objects::DeleteParams>) -> Result<Json<$doc>> {
            delivery::delete_application(&p.write().state(&s), &who, &name, p.force).await.map(Json)
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
    "applications",
    forced_delete_route
);
kind_routes!(teams, TeamKind, Team, "/teams", "/teams/{name}", "governance");
kind_routes!(
    sources,
    SourceKind,
    SyncSource,
    "/sources",
    "/sources/{name}",
    "gitops"
);

/// Syncs a source at once (a webhook of its repository, or by hand): the syncer fetches
/// its ref and applies it; the outcome is written to the source's status. Answers the
/// source as it is when the sync is asked for.
#[utoipa::path(post, path = "/sources/{name}/sync", tag = "gitops", params(("name" = String, Path, description = "Source")),
    responses((status = 202, body = SyncSource), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn sync_source(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<SyncSource>)> {
    Ok((StatusCode::ACCEPTED, Json(crate::sources::sync(&s, &name).await?)))
}
kind_routes!(users, UserKind, User, "/users", "/users/{name}", "governance");

fn release_number(text: &str) -> Result<u64> {
    contract::integral(text)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
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
    #[param(minimum = 1, maximum = 1000)]
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
    Extension(who): Extension<Principal>,
    Params(p): Params<ChildParams>,
) -> Result<Json<ObjectList>> {
    let visible = Visibility::of(&s, &who).await?;
    let keep = |v: &Value| visible.shows(v.pointer("/spec/application").and_then(Value::as_str));
    Ok(Json(
        objects::list::<ReleaseKind>(&s, &p.paging(), p.application.as_deref(), keep).await?,
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
    objects::require_known(&s, &app).await?;
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
    Extension(who): Extension<Principal>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<ReleaseRequest>,
) -> Result<(StatusCode, Json<Release>)> {
    Ok((
        StatusCode::CREATED,
        Json(delivery::create_release(&s, &who, &app, req).await?),
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
    // The application first: its 404 is the same whether it is missing or unreadable.
    objects::application_or_history(&s, &app).await?;
    Ok(Json(delivery::release(&s, &app, release_number(&number)?).await?))
}

/// Deploys a release to an environment.
#[utoipa::path(post, path = "/applications/{name}/deploy", tag = "deployments",
    params(("name" = String, Path, description = "Application")), request_body = DeployRequest,
    responses((status = 201, body = Deployment), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn deploy(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<DeployRequest>,
) -> Result<(StatusCode, Json<Deployment>)> {
    Ok((
        StatusCode::CREATED,
        Json(delivery::deploy(&s, &who, &app, req).await?),
    ))
}

/// Rolls an environment back to the previous (or a given) release.
#[utoipa::path(post, path = "/applications/{name}/rollback", tag = "deployments",
    params(("name" = String, Path, description = "Application")), request_body = RollbackRequest,
    responses((status = 201, body = Deployment), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn rollback(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> Result<(StatusCode, Json<Deployment>)> {
    Ok((
        StatusCode::CREATED,
        Json(delivery::rollback(&s, &who, &app, req).await?),
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
    Extension(who): Extension<Principal>,
    Params(p): Params<ChildParams>,
) -> Result<Json<ObjectList>> {
    let env = p.environment.clone();
    let visible = Visibility::of(&s, &who).await?;
    let keep = move |v: &Value| {
        env.as_deref()
            .is_none_or(|e| v.pointer("/spec/environment").and_then(Value::as_str) == Some(e))
            && visible.shows(v.pointer("/spec/application").and_then(Value::as_str))
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
async fn list_events(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Params(p): Params<EventParams>,
) -> Result<Json<EventList>> {
    Ok(Json(events::list(&s, &who, p).await?))
}

/// Streams events as server-sent events (`id` is the event's `seq`); resumes after
/// `after` or the `Last-Event-ID` header.
#[utoipa::path(get, path = "/events/stream", tag = "events", params(EventParams),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn stream_events(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Params(p): Params<EventParams>,
) -> Result<impl IntoResponse> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    Ok(events::stream(
        s,
        who,
        resume.or(p.after).unwrap_or(0),
        p.application,
    ))
}

/// The caller: user, platform role, team roles and the token of this request.
#[utoipa::path(get, path = "/whoami", tag = "governance",
    responses((status = 200, body = WhoAmI), (status = 401, body = Problem)))]
async fn whoami(
    Extension(who): Extension<Principal>,
    Extension(token): Extension<CurrentToken>,
) -> Json<WhoAmI> {
    Json(identity::whoami(&who, &token))
}

/// Lists tokens: yours, or (platform administrators) anyone's. Never their secrets.
#[utoipa::path(get, path = "/tokens", tag = "governance", params(TokenParams),
    responses((status = 200, body = TokenList), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_tokens(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Params(p): Params<TokenParams>,
) -> Result<Json<TokenList>> {
    Ok(Json(identity::list(&s, &who, p).await?))
}

/// Makes a token. Its secret is in this answer only; Berth keeps its hash. It never
/// outlives the token of the request, and a user holds at most 50 active tokens (409).
#[utoipa::path(post, path = "/tokens", tag = "governance", request_body = TokenRequest,
    responses((status = 201, body = NewToken), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn create_token(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Extension(token): Extension<CurrentToken>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<(StatusCode, Json<NewToken>)> {
    identity::create(&s, &who, &token, req).await
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "governance", params(("id" = String, Path, description = "Token id")),
    responses((status = 200, body = TokenInfo), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn revoke_token(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Extension(token): Extension<CurrentToken>,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>> {
    Ok(Json(identity::revoke(&s, &who, &token, &id).await?))
}

/// Lists an application's secrets: names and versions, never values.
#[utoipa::path(get, path = "/applications/{name}/secrets", tag = "secrets",
    params(("name" = String, Path, description = "Application")),
    responses((status = 200, body = SecretList), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn list_secrets(State(s): State<ApiState>, Path(app): Path<String>) -> Result<Json<SecretList>> {
    Ok(Json(secrets::list(&s, &app).await?))
}

/// Sets a secret's value for all environments, or with `environment` for that one only,
/// to a new version; it is sealed before it is stored and never returned.
#[utoipa::path(put, path = "/applications/{name}/secrets/{secret}", tag = "secrets",
    params(("name" = String, Path, description = "Application"), ("secret" = String, Path, description = "Secret name"), SecretParams),
    request_body = SecretValueRequest,
    responses((status = 200, body = SecretInfo), (status = 201, body = SecretInfo), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn set_secret(
    State(s): State<ApiState>,
    Extension(g): Extension<Governance>,
    Extension(a): Extension<Actor>,
    Path((app, secret)): Path<(String, String)>,
    Params(p): Params<SecretParams>,
    ParsedBody(body): ParsedBody,
) -> Result<(StatusCode, Json<SecretInfo>)> {
    let req = secrets::parse_value(&body)?;
    let (status, info) = secrets::set(&s, &g, &a, &app, &secret, p.environment.as_deref(), req).await?;
    Ok((status, Json(info)))
}

/// Deletes a secret's value for all environments (or with `environment`, that one's); a
/// value an environment of the application still needs is kept (409).
#[utoipa::path(delete, path = "/applications/{name}/secrets/{secret}", tag = "secrets",
    params(("name" = String, Path, description = "Application"), ("secret" = String, Path, description = "Secret name"), SecretParams),
    responses((status = 200, body = SecretInfo), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_secret(
    State(s): State<ApiState>,
    Extension(a): Extension<Actor>,
    Path((app, secret)): Path<(String, String)>,
    Params(p): Params<SecretParams>,
) -> Result<Json<SecretInfo>> {
    Ok(Json(
        secrets::delete(&s, &a, &app, &secret, p.environment.as_deref()).await?,
    ))
}

/// Seals every secret under an older key with the active key (after a key rotation).
#[utoipa::path(post, path = "/secrets/rotate", tag = "secrets",
    responses((status = 200, body = Resealed), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn rotate_secrets(
    State(s): State<ApiState>,
    Extension(g): Extension<Governance>,
    Extension(a): Extension<Actor>,
) -> Result<Json<Resealed>> {
    Ok(Json(secrets::reseal(&s, &g, &a).await?))
}

/// Applies many documents in one transaction: each authorized, validated and checked as
/// its own `PUT` would be, in dependency order; every problem of every document is
/// answered at once (422, each naming its document and field) and then nothing is
/// stored. With `prune`, objects an earlier apply of the same source stored that the
/// documents no longer have are deleted, as their own `DELETE` would be. `dryRun=All`
/// answers what would be done and stores nothing.
#[utoipa::path(post, path = "/apply", tag = "objects", params(objects::WriteParams), request_body = ApplyRequest,
    responses((status = 200, body = ApplyResult), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
async fn apply_documents(
    State(s): State<ApiState>,
    Extension(g): Extension<Governance>,
    Extension(a): Extension<Actor>,
    Extension(who): Extension<Principal>,
    Params(w): Params<objects::WriteParams>,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> Result<Json<ApplyResult>> {
    let applier = crate::apply::Applier {
        state: &s,
        governance: &g,
        principal: &who,
        actor: &a,
    };
    Ok(Json(applier.apply(req, w.dry_run.is_some()).await?))
}

/// Reads the audit log: who changed what, when, with digests before and after.
#[utoipa::path(get, path = "/audit", tag = "governance", params(AuditParams),
    responses((status = 200, body = AuditList), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_audit(State(s): State<ApiState>, Params(p): Params<AuditParams>) -> Result<Json<AuditList>> {
    Ok(Json(audit::list(&s, p).await?))
}

/// Verifies the audit log: every entry's signature and link, its head and checkpoints
/// (and the one given), and every stored object and token against its latest entry.
#[utoipa::path(get, path = "/audit/verify", tag = "governance", params(VerifyParams),
    responses((status = 200, body = Verification), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn verify_audit(
    State(s): State<ApiState>,
    Params(p): Params<VerifyParams>,
) -> Result<Json<Verification>> {
    Ok(Json(audit::verify(&s, p).await?))
}

/// Readiness, open like `/healthz`: `ready` while the store can write, else 503 naming
/// why (a full disk, a read-only data directory). Cheap: it probes with a write only
/// while writes fail, at most once a second.
async fn ready(State(s): State<ApiState>) -> Result<&'static str> {
    s.store.writable().await?;
    Ok("ready")
}

/// The OpenAPI document of this API.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().split_for_parts().1;
    complete_contract(&mut doc);
    doc
}

fn api_router() -> OpenApiRouter<ApiState> {
    register(OpenApiRouter::with_openapi(ApiDoc::openapi()))
}

/// Where routes are registered: the router, or (in a test) a recorder of the schemas
/// each route brings, which finds two types documented under one name (utoipa keeps
/// only one of them, silently).
trait Routes: Sized {
    fn routes(self, route: UtoipaMethodRouter<ApiState>) -> Self;
}

impl Routes for OpenApiRouter<ApiState> {
    fn routes(self, route: UtoipaMethodRouter<ApiState>) -> Self {
        OpenApiRouter::routes(self, route)
    }
}

/// Every route of the API.
fn register<R: Routes>(router: R) -> R {
    router
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
        .routes(routes!(teams::list, teams::create))
        .routes(routes!(teams::get, teams::put, teams::patch, teams::delete))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::put, users::patch, users::delete))
        .routes(routes!(sources::list, sources::create))
        .routes(routes!(
            sources::get,
            sources::put,
            sources::patch,
            sources::delete
        ))
        .routes(routes!(sync_source))
        .routes(routes!(whoami))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_secrets))
        .routes(routes!(set_secret, delete_secret))
        .routes(routes!(rotate_secrets))
        .routes(routes!(apply_documents))
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
        .routes(routes!(crate::operate::instances))
        .routes(routes!(crate::operate::logs))
        .routes(routes!(crate::operate::restart))
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        kind: "route".to_owned(),
        name: "this path".to_owned(),
    }
}

/// The whole HTTP application with governance for tests and embedding: secrets sealed
/// with a key that lives only as long as the process ([`Governance::ephemeral`]). A
/// server uses [`router_with`] and its configured keys.
pub fn router(state: ApiState) -> Router {
    router_with(state, Governance::ephemeral())
}

/// Security headers every response carries: no sniffing, no framing, no referrer, no
/// caching of API answers, and a content policy that loads nothing.
const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// The whole HTTP application: `/api/v1/...` (the OpenAPI document included) behind
/// the rate limits (per client address, per user), authentication and authorization;
/// only the liveness probe `/healthz` and the readiness probe `/readyz` are open, and
/// `/healthz` is not rate-limited (it reads nothing, and an orchestrator's probes must not
/// be refused). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the per-address limit
/// sees each client's address.
pub fn router_with(state: ApiState, governance: Governance) -> Router {
    let (api, mut doc) = api_router().split_for_parts();
    complete_contract(&mut doc);
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
        // Inner first: authorization runs after authentication, which runs after the
        // governance settings are reachable.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            permissions::authorize,
        ))
        // The contract (query parameters, the body parsed once) before authorization,
        // which decides on that parsed body.
        .layer(middleware::from_fn(contract::enforce))
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(Extension(governance.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    // Outermost of the matched routes: every answer counts, refusals too.
    let api = if state.metrics.records_requests() {
        api.route_layer(metrics::RecordLayer(state.metrics.clone()))
    } else {
        api
    };
    // `/metrics` is behind authentication and the rate limits like the API; the
    // handler lets platform administrators only.
    let scrape = Router::new()
        .route("/metrics", get(metrics::scrape))
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(Extension(governance));
    let mut app = Router::new()
        .nest("/api/v1", api)
        .merge(scrape)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .fallback(not_found);
    for (name, value) in SECURITY_HEADERS {
        app = app.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    app.layer(TraceLayer::new_for_http()).with_state(state)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use utoipa::openapi::{RefOr, schema::Schema};

    use super::*;

    /// Records the schemas of every route instead of registering it.
    #[derive(Default)]
    struct Recorder(Vec<(String, RefOr<Schema>)>);

    impl Routes for Recorder {
        fn routes(mut self, (schemas, _, _): UtoipaMethodRouter<ApiState>) -> Self {
            self.0.extend(schemas);
            self
        }
    }

    #[test]
    fn no_two_schemas_share_a_name() {
        let mut recorded = register(Recorder::default()).0;
        let base = ApiDoc::openapi();
        recorded.extend(base.components.into_iter().flat_map(|c| c.schemas));
        let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (name, schema) in recorded {
            let schema = serde_json::to_value(schema).unwrap();
            let seen = by_name.entry(name).or_default();
            if !seen.contains(&schema) {
                seen.push(schema);
            }
        }
        let clashes: Vec<String> = by_name
            .iter()
            .filter(|(_, schemas)| schemas.len() > 1)
            .map(|(name, schemas)| format!("{name}: {}", serde_json::to_string(schemas).unwrap()))
            .collect();
        assert!(
            clashes.is_empty(),
            "types documented under one name (rename one, e.g. with #[schema(as = ...)]):\n{}",
            clashes.join("\n")
        );
        // And the document keeps each of them.
        let doc = serde_json::to_value(openapi()).unwrap();
        for (name, schemas) in &by_name {
            assert_eq!(&doc["components"]["schemas"][name], &schemas[0], "{name}");
        }
        assert!(by_name.len() > 50, "only {} schemas recorded", by_name.len());
    }
}
