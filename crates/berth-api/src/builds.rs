//! Builds over HTTP: start one (or get the one that already stands for the commit), list
//! and read them, and follow a build's log as server-sent events.

use std::{convert::Infallible, time::Duration};

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use berth_core::{
    objects::{ApplicationKind, Build, BuildKind, build_name},
    ports::BuildRequest,
};
use futures::{Stream, stream};

use crate::{
    ApiState,
    auth::Actor,
    body::JsonBody,
    error::{ApiError, Problem, Result},
    objects::{self, ListParams, ObjectList},
    routes::Params,
};
pub use berth_contract::{BuildListParams, BuildRequest as BuildRequestBody, LogEnd, LogParams};

fn number(text: &str) -> Result<u64> {
    crate::contract::integral(text)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "'{text}' is not a build number; use a whole number like 3"
            ))
        })
}

/// Builds the application's source at its ref (or `ref`): 201 with a new build, which
/// runs in the background; 200 with the build that already stands for the same commit
/// and builder configuration (build once).
#[utoipa::path(post, path = "/applications/{name}/builds", tag = "builds",
    params(("name" = String, Path, description = "Application")), request_body = BuildRequestBody,
    responses((status = 201, body = Build), (status = 200, body = Build), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn trigger(
    State(s): State<ApiState>,
    Extension(a): Extension<Actor>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<BuildRequestBody>,
) -> Result<(StatusCode, Json<Build>)> {
    // The application first: its 404 is the same whether it is missing or unreadable.
    objects::get::<ApplicationKind>(&s, &app).await?;
    let ticket = s
        .builds
        .request(BuildRequest {
            application: app,
            git_ref: req.git_ref,
            requested_by: a.0,
        })
        .await?;
    let status = if ticket.reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(ticket.build)))
}

/// Lists the builds of an application, oldest first.
#[utoipa::path(get, path = "/applications/{name}/builds", tag = "builds",
    params(("name" = String, Path, description = "Application"), ListParams),
    responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn list_of_app(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    Params(p): Params<ListParams>,
) -> Result<Json<ObjectList>> {
    objects::application_or_history(&s, &app).await?;
    Ok(Json(
        objects::list::<BuildKind>(&s, &p, Some(&app), |_| true).await?,
    ))
}

/// Lists builds of every application (or of `application`).
#[utoipa::path(get, path = "/builds", tag = "builds", params(BuildListParams),
    responses((status = 200, body = ObjectList), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list(
    State(s): State<ApiState>,
    Extension(who): Extension<berth_core::authz::Principal>,
    Params(p): Params<BuildListParams>,
) -> Result<Json<ObjectList>> {
    let paging = ListParams {
        limit: p.limit,
        continue_token: p.continue_token,
    };
    // Only builds of applications the caller may read.
    let visible = crate::permissions::Visibility::of(&s, &who).await?;
    let keep = |v: &serde_json::Value| {
        visible.shows(v.pointer("/spec/application").and_then(serde_json::Value::as_str))
    };
    Ok(Json(
        objects::list::<BuildKind>(&s, &paging, p.application.as_deref(), keep).await?,
    ))
}

/// Reads build `number` of an application: its commit, phase, digest, layers and log.
#[utoipa::path(get, path = "/applications/{name}/builds/{number}", tag = "builds",
    params(("name" = String, Path, description = "Application"), ("number" = u64, Path, description = "Build number")),
    responses((status = 200, body = Build), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get(State(s): State<ApiState>, Path((app, n)): Path<(String, String)>) -> Result<Json<Build>> {
    // The application first: its 404 is the same whether it is missing or unreadable.
    objects::application_or_history(&s, &app).await?;
    Ok(Json(
        objects::get::<BuildKind>(&s, &build_name(&app, number(&n)?)).await?,
    ))
}

/// Streams a build's log as server-sent events: `event: log` with the text (its `id` is
/// the offset to resume from with `Last-Event-ID`), then `event: end` with the outcome.
#[utoipa::path(get, path = "/applications/{name}/builds/{number}/log", tag = "builds",
    params(("name" = String, Path, description = "Application"), ("number" = u64, Path, description = "Build number"), LogParams),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn log(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path((app, n)): Path<(String, String)>,
    Params(p): Params<LogParams>,
) -> Result<impl IntoResponse> {
    let name = build_name(&app, number(&n)?);
    objects::application_or_history(&s, &app).await?;
    objects::get::<BuildKind>(&s, &name).await?;
    let offset = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(stream_log(s, name, offset, p.follow.unwrap_or(true)))
}

/// How long one wait for more log lasts before the stream looks again.
const POLL: Duration = Duration::from_secs(10);

enum Step {
    Reading(u64),
    Done,
}

fn stream_log(
    state: ApiState,
    name: String,
    offset: u64,
    follow: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = stream::unfold(Step::Reading(offset), move |step| {
        let (state, name) = (state.clone(), name.clone());
        async move {
            let Step::Reading(mut offset) = step else {
                return None;
            };
            loop {
                let chunk = match state.builds.log(&name, offset).await {
                    Ok(c) => c,
                    Err(e) => {
                        let event = SseEvent::default().event("error").data(e.to_string());
                        return Some((Ok(event), Step::Done));
                    }
                };
                if !chunk.text.is_empty() {
                    let event = SseEvent::default()
                        .event("log")
                        .id(chunk.next.to_string())
                        .data(chunk.text.trim_end_matches('\n'));
                    return Some((Ok(event), Step::Reading(chunk.next)));
                }
                offset = chunk.next;
                if chunk.finished || !follow {
                    let end = match objects::get::<BuildKind>(&state, &name).await {
                        Ok(b) => LogEnd {
                            phase: b.status.phase,
                            message: b.status.message,
                            digest: b.status.digest,
                        },
                        Err(e) => LogEnd {
                            phase: berth_core::objects::BuildPhase::Failed,
                            message: Some(e.to_string()),
                            digest: None,
                        },
                    };
                    let event = SseEvent::default()
                        .event("end")
                        .json_data(&end)
                        .unwrap_or_else(|_| SseEvent::default().event("end"));
                    return Some((Ok(event), Step::Done));
                }
                state.builds.wait_log(&name, offset, POLL).await;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
