//! Operating a running application over HTTP: its instances, their logs as server-sent
//! events, and a rolling restart. The reads reach the clusters through the service's
//! [`Operations`]; the restart is the `restart` use case.
//!
//! The log stream sends `event: problem` first for each cluster that did not answer,
//! then `event: log` per line (JSON: instance, cluster, time, text) — for `previous`,
//! each instance's lines after an `event: terminated` saying why it ended — and
//! `event: end` once every feed ended (never while following).

use std::convert::Infallible;

use axum::{
    Extension, Json,
    extract::{Path, State},
    http::StatusCode,
    response::{
        IntoResponse,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use berth_contract::{
    ClusterProblem, InstanceList, InstanceLogParams, InstanceParams, RestartRequest, TerminatedInstance,
};
use berth_core::{
    authz::Principal,
    instance::{LogQuery, parse_since, select},
    objects::Deployment,
};
use berth_service::{Operations, Target};
use futures::{Stream, StreamExt, stream};

use crate::{
    ApiState,
    body::JsonBody,
    error::{ApiError, Problem, Result},
    routes::Params,
};

fn operations(s: &ApiState) -> Operations {
    Operations::new(s.store.clone(), s.clusters.clone())
}

fn problems(list: Vec<berth_service::ClusterProblem>) -> Vec<ClusterProblem> {
    list.into_iter()
        .map(|p| ClusterProblem {
            cluster: p.cluster,
            message: p.message,
        })
        .collect()
}

/// Lists the instances of an application in an environment: cluster, datacenter,
/// release, state, readiness, restarts, age and address.
#[utoipa::path(get, path = "/applications/{name}/instances", tag = "operations",
    params(("name" = String, Path, description = "Application"), InstanceParams),
    responses((status = 200, body = InstanceList), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem)))]
pub async fn instances(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    Params(p): Params<InstanceParams>,
) -> Result<Json<InstanceList>> {
    let target = Target {
        application: app,
        environment: p.environment,
        cluster: p.cluster,
    };
    let found = operations(&s).instances(&target).await?;
    Ok(Json(InstanceList {
        items: found.items,
        problems: problems(found.problems),
    }))
}

/// Streams the log lines of an application's instances in an environment as
/// server-sent events, merged across instances and clusters, each labelled by instance.
#[utoipa::path(get, path = "/applications/{name}/logs", tag = "operations",
    params(("name" = String, Path, description = "Application"), InstanceLogParams),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
pub async fn logs(
    State(s): State<ApiState>,
    Path(app): Path<String>,
    Params(p): Params<InstanceLogParams>,
) -> Result<impl IntoResponse> {
    let since = p
        .since
        .as_deref()
        .map(|text| parse_since(text, s.clock.now()))
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("since: {e}")))?;
    let target = Target {
        application: app,
        environment: p.environment,
        cluster: p.cluster,
    };
    let query = LogQuery {
        instance: p.instance,
        since,
        tail: p.tail,
        follow: p.follow.unwrap_or(false),
    };
    let ops = operations(&s);
    let events: std::pin::Pin<Box<dyn Stream<Item = SseEvent> + Send>> = if p.previous.unwrap_or(false) {
        let previous = ops.previous(&target, query.instance.as_deref()).await?;
        let head = problem_events(problems(previous.problems));
        let mut body = Vec::new();
        for t in previous.items {
            body.push(json_event(
                "terminated",
                &TerminatedInstance {
                    instance: t.instance.clone(),
                    cluster: t.cluster.clone(),
                    release: t.release,
                    exit: t.exit.clone(),
                },
            ));
            let lines = select(t.lines, &query);
            body.extend(lines.iter().map(|l| json_event("log", l)));
        }
        Box::pin(stream::iter(head.into_iter().chain(body).chain([end()])))
    } else {
        let logs = ops.logs(&target, &query).await?;
        let head = problem_events(problems(logs.problems));
        let lines = logs.feed.map(|line| match line {
            Ok(l) => json_event("log", &l),
            Err(e) => SseEvent::default().event("problem").data(e.to_string()),
        });
        Box::pin(stream::iter(head).chain(lines).chain(stream::iter([end()])))
    };
    let events = events.map(Ok::<_, Infallible>);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn json_event<T: serde::Serialize>(kind: &str, value: &T) -> SseEvent {
    SseEvent::default()
        .event(kind)
        .json_data(value)
        .unwrap_or_else(|_| SseEvent::default().event(kind))
}

fn problem_events(list: Vec<ClusterProblem>) -> Vec<SseEvent> {
    list.iter().map(|p| json_event("problem", p)).collect()
}

fn end() -> SseEvent {
    SseEvent::default().event("end").data("{}")
}

/// Restarts every instance of the release an application runs in an environment: new
/// instances of the same release replace them one by one, each once healthy. No release
/// is made; the deployment records when (`status.restartedAt`), audited.
#[utoipa::path(post, path = "/applications/{name}/restart", tag = "operations",
    params(("name" = String, Path, description = "Application")), request_body = RestartRequest,
    responses((status = 202, body = Deployment), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn restart(
    State(s): State<ApiState>,
    Extension(who): Extension<Principal>,
    Path(app): Path<String>,
    JsonBody(req): JsonBody<RestartRequest>,
) -> Result<(StatusCode, Json<Deployment>)> {
    let actor = berth_service::Actor::User(who);
    let deployment = s.delivery().restart(&actor, &app, &req.environment).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}
