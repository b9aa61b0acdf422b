//! HTTP: routing of Kubernetes API paths onto the store, authentication, injected
//! faults, request counting, list pagination and watch streams.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::sync::{broadcast::error::RecvError, mpsc};

use crate::{
    Shared, Verb,
    resources::{self, EVENTS, PODS, RESOURCES},
    rollout,
    selector::{FieldSelector, Selector},
    store::{ApiError, EventType, Key, PatchType, WatchEvent},
};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_response(status: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn ok(raw: Bytes) -> Response {
    json_response(200, raw.to_vec())
}

fn value(v: &Value) -> Response {
    json_response(200, serde_json::to_vec(v).unwrap_or_default())
}

fn error(e: &ApiError) -> Response {
    json_response(e.code, serde_json::to_vec(&e.status()).unwrap_or_default())
}

/// Where a request goes.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

enum Route {
    Discovery(Value),
    Text(&'static str),
    Api(Target),
    /// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
    PodLog {
        namespace: String,
        name: String,
    },
}

fn route(path: &str) -> Result<Route, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (group, version, rest) = match parts.as_slice() {
        ["version"] => return Ok(Route::Discovery(Value::Null)),
        ["readyz"] | ["livez"] | ["healthz"] => return Ok(Route::Text("ok")),
        ["api"] => return Ok(Route::Discovery(resources::core_versions())),
        ["apis"] => return Ok(Route::Discovery(resources::group_list())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return resources::resource_list(group, version)
            .map(Route::Discovery)
            .ok_or_else(not_found);
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    if let (Some(ns), "", ["pods", name, "log"]) = (&namespace, group, rest) {
        return Ok(Route::PodLog {
            namespace: ns.clone(),
            name: (*name).to_owned(),
        });
    }
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some((*name).to_owned()), false),
        [plural, name, "status"] => (*plural, Some((*name).to_owned()), true),
        _ => return Err(not_found()),
    };
    let resource = resources::find(group, version, plural).ok_or_else(not_found)?;
    if !RESOURCES[resource].namespaced && namespace.is_some() {
        return Err(not_found());
    }
    Ok(Route::Api(Target {
        resource,
        namespace,
        name,
        status,
    }))
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn verb(method: &Method, target: &Target, q: &HashMap<String, String>) -> Verb {
    match *method {
        Method::GET if q.get("watch").is_some_and(|w| w == "true" || w == "1") => Verb::Watch,
        Method::GET if target.name.is_some() => Verb::Get,
        Method::GET => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => Verb::Other,
    }
}

/// The field manager of a write: `?fieldManager=`, else the user agent up to its first `/`.
fn manager(q: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    q.get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .or_else(|| {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.split('/').next().unwrap_or(ua).to_owned())
        })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = query(&uri);
    let route = match route(uri.path()) {
        Ok(r) => r,
        Err(e) => {
            shared.count(Verb::Other);
            return error(&e);
        }
    };
    let verb = match &route {
        Route::Api(t) => verb(&method, t, &q),
        _ => Verb::Other,
    };
    shared.count(verb);
    shared.log_write(verb, method.as_str(), uri.path());

    if let Some(token) = &shared.options.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return error(&ApiError::new(401, "Unauthorized", "Unauthorized"));
        }
    }
    if let Some(fault) = shared.fault(verb) {
        if let Some(d) = fault.delay {
            tokio::time::sleep(d).await;
        }
        if fault.status != 0 {
            let reason = match fault.status {
                401 => "Unauthorized",
                403 => "Forbidden",
                429 => "TooManyRequests",
                503 => "ServiceUnavailable",
                _ => "InternalError",
            };
            let mut resp = error(&ApiError::new(
                fault.status,
                reason,
                format!("injected fault: {reason}"),
            ));
            if let Some(s) = fault.retry_after
                && let Ok(v) = s.to_string().parse()
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        } else if fault.delay.is_some() {
            return error(&ApiError::new(
                504,
                "Timeout",
                "injected fault: no answer in time",
            ));
        }
    }

    let target = match route {
        Route::Text(t) => return (StatusCode::OK, t).into_response(),
        Route::PodLog { namespace, name } => return pod_log(&shared, &namespace, &name, &q),
        Route::Discovery(Value::Null) => {
            let minor = shared.options.minor_version;
            return value(&json!({"major": "1", "minor": minor.to_string(),
                "gitVersion": format!("v1.{minor}.0"), "gitCommit": "berth-kube-fake",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64"}));
        }
        Route::Discovery(v) => return value(&v),
        Route::Api(t) => t,
    };
    let rt = &RESOURCES[target.resource];
    if let Some(ns) = &target.namespace
        && shared.forbidden(ns)
    {
        let group = if rt.group.is_empty() {
            String::new()
        } else {
            rt.group.to_owned()
        };
        return error(&ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: User \"berth\" cannot {} resource \"{}\" in API group \"{group}\" in the namespace \"{ns}\"",
                rt.plural,
                method.as_str().to_lowercase(),
                rt.plural
            ),
        ));
    }
    let store = &shared.store;
    let key = |name: &str| -> Key { (target.namespace.clone().unwrap_or_default(), name.to_owned()) };
    let result = match (&method, &target.name) {
        (&Method::GET, None) if matches!(verb, Verb::Watch) => return watch(shared.clone(), &target, &q),
        (&Method::GET, None) => return list(&shared, &target, &q),
        (&Method::GET, Some(name)) => store.get(target.resource, &key(name)),
        (&Method::POST, None) => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => store.create(
                target.resource,
                target.namespace.as_deref().unwrap_or_default(),
                v,
                &manager(&q, &headers).unwrap_or_else(|| "unknown".to_owned()),
            ),
            Err(e) => Err(ApiError::new(
                400,
                "BadRequest",
                format!("the body is not JSON: {e}"),
            )),
        },
        (&Method::PUT, Some(name)) => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => store.replace(
                target.resource,
                &key(name),
                v,
                &manager(&q, &headers).unwrap_or_else(|| "unknown".to_owned()),
                target.status,
            ),
            Err(e) => Err(ApiError::new(
                400,
                "BadRequest",
                format!("the body is not JSON: {e}"),
            )),
        },
        (&Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = match ct.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" => Some(PatchType::Merge),
                "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
                "application/json-patch+json" => Some(PatchType::Json),
                "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply {
                    force: q.get("force").is_some_and(|f| f == "true"),
                }),
                _ => None,
            };
            match kind {
                Some(kind) => {
                    let manager = if matches!(kind, PatchType::Apply { .. }) {
                        q.get("fieldManager").cloned()
                    } else {
                        manager(&q, &headers)
                    };
                    store.patch(
                        target.resource,
                        &key(name),
                        kind,
                        &body,
                        manager.as_deref(),
                        target.status,
                    )
                }
                None => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format: {ct}"),
                )),
            }
        }
        (&Method::DELETE, Some(name)) => store.delete(target.resource, &key(name)),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method",
        )),
    };
    match result {
        Ok(raw) => ok(raw),
        Err(e) => error(&e),
    }
}

/// A pod's log as the kubelet would serve it through the API server: a line saying it
/// started (and, for a crash-looping pod's previous run, the lines of its crash), with
/// timestamps when asked; `tailLines` is honoured, `follow` ends after the lines.
fn pod_log(shared: &Shared, namespace: &str, name: &str, q: &HashMap<String, String>) -> Response {
    let settings = shared
        .rollouts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let everything = Selector::default();
    let pods = rollout::pods(&shared.store, &settings, Some(namespace), &everything);
    let Some(pod) = pods.iter().find(|p| p["metadata"]["name"] == name) else {
        return error(&ApiError::new(
            404,
            "NotFound",
            format!("pods \"{name}\" not found"),
        ));
    };
    let status = &pod["status"]["containerStatuses"][0];
    let container = status["name"].as_str().unwrap_or("app");
    let lines: Vec<String> = if q.get("previous").map(String::as_str) == Some("true") {
        let Some(code) = status["lastState"]["terminated"]["exitCode"].as_i64() else {
            return error(&ApiError::new(
                400,
                "BadRequest",
                format!("previous terminated container \"{container}\" in pod \"{name}\" not found"),
            ));
        };
        vec![
            format!("{name} starting"),
            "Exception in thread \"main\" java.lang.ClassNotFoundException: app.Main".to_owned(),
            format!("exiting with code {code}"),
        ]
    } else if status["state"].get("running").is_some() {
        vec![format!("{name} starting"), format!("{name} listening")]
    } else {
        return error(&ApiError::new(
            400,
            "BadRequest",
            format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"),
        ));
    };
    let from = q
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
        .map_or(0, |t| lines.len().saturating_sub(t));
    let stamp = q.get("timestamps").map(String::as_str) == Some("true");
    let mut body = String::new();
    for (i, l) in lines[from..].iter().enumerate() {
        if stamp {
            body.push_str(&format!("2026-01-01T00:00:0{}.000000001Z ", (from + i).min(9)));
        }
        body.push_str(l);
        body.push('\n');
    }
    (StatusCode::OK, body).into_response()
}

fn selectors(q: &HashMap<String, String>, resource: usize) -> Result<(Selector, FieldSelector), ApiError> {
    let bad = |e: crate::selector::BadSelector| ApiError::new(400, "BadRequest", e.to_string());
    Ok((
        Selector::parse(q.get("labelSelector").map_or("", String::as_str)).map_err(bad)?,
        FieldSelector::parse_with(
            q.get("fieldSelector").map_or("", String::as_str),
            resources::selectable_fields(resource),
        )
        .map_err(bad)?,
    ))
}

fn list(shared: &Shared, target: &Target, q: &HashMap<String, String>) -> Response {
    let rt = &RESOURCES[target.resource];
    let (labels, fields) = match selectors(q, target.resource) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let after: Option<Key> = q
        .get("continue")
        .filter(|c| !c.is_empty())
        .and_then(|c| hex::decode(c).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once('\u{1f}').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let mut items: Vec<Bytes> = Vec::new();
    let mut next: Option<Key> = None;
    let rv;
    if target.resource == PODS {
        let settings = shared
            .rollouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for p in rollout::pods(&shared.store, &settings, target.namespace.as_deref(), &labels) {
            items.push(list_item(&Bytes::from(
                serde_json::to_vec(&p).unwrap_or_default(),
            )));
        }
        rv = shared.store.resource_version();
    } else if target.resource == EVENTS {
        // What the simulated kubelet reports, then what clients wrote.
        let settings = shared
            .rollouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut events = rollout::events(&shared.store, &settings, target.namespace.as_deref());
        {
            let inner = shared.store.lock();
            events.extend(
                inner.objects[EVENTS]
                    .iter()
                    .filter(|((ns, _), _)| target.namespace.as_deref().is_none_or(|n| n == ns))
                    .filter(|(_, s)| labels.matches(&s.labels))
                    .filter_map(|(_, s)| serde_json::from_slice::<Value>(&s.raw).ok()),
            );
        }
        for e in events.iter().filter(|e| fields.matches_object(e)) {
            items.push(list_item(&Bytes::from(serde_json::to_vec(e).unwrap_or_default())));
        }
        rv = shared.store.resource_version();
    } else {
        let inner = shared.store.lock();
        rv = inner.rv;
        let map = &inner.objects[target.resource];
        let start = match &after {
            Some(k) => std::ops::Bound::Included(k.clone()),
            None => match &target.namespace {
                Some(ns) => std::ops::Bound::Included((ns.clone(), String::new())),
                None => std::ops::Bound::Unbounded,
            },
        };
        for (k, s) in map.range((start, std::ops::Bound::Unbounded)) {
            if let Some(ns) = &target.namespace
                && &k.0 != ns
            {
                break;
            }
            if !labels.matches(&s.labels) || !fields.matches(&k.0, &k.1) {
                continue;
            }
            if items.len() == limit {
                next = Some(k.clone());
                break;
            }
            items.push(list_item(&s.raw));
        }
    }
    let mut out = Vec::with_capacity(items.iter().map(Bytes::len).sum::<usize>() + 200);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"",
            rt.kind,
            rt.api_version()
        )
        .as_bytes(),
    );
    if let Some(k) = next {
        let token = hex::encode(format!("{}\u{1f}{}", k.0, k.1));
        out.extend_from_slice(format!(",\"continue\":\"{token}\"").as_bytes());
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    json_response(200, out)
}

/// An object as the real API server lists it: list items carry no `apiVersion` or `kind`
/// (only the list itself does), while a get, a watch event or a write's answer has both.
fn list_item(raw: &Bytes) -> Bytes {
    // Stored objects are serialized with sorted keys, so the type fields usually lead:
    // cut them off without parsing the object.
    if let Some(rest) = raw.strip_prefix(b"{\"apiVersion\":\"")
        && let Some(after_version) = skip_string(rest)
        && let Some(rest) = after_version.strip_prefix(b",\"kind\":\"")
        && let Some(after_kind) = skip_string(rest)
        && let Some(rest) = after_kind.strip_prefix(b",")
    {
        let mut out = Vec::with_capacity(rest.len() + 1);
        out.push(b'{');
        out.extend_from_slice(rest);
        return Bytes::from(out);
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(raw) else {
        return raw.clone();
    };
    object.remove("apiVersion");
    object.remove("kind");
    Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
}

/// What follows a JSON string's closing quote, for a string without escapes (type names
/// have none); `None` when it has one, so the caller parses instead.
fn skip_string(s: &[u8]) -> Option<&[u8]> {
    let end = s.iter().position(|b| *b == b'"' || *b == b'\\')?;
    (s[end] == b'"').then(|| &s[end + 1..])
}

fn event_line(kind: &str, raw: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(raw.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(raw);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// The `ERROR` line of a watch that ends with `410 Expired`.
fn fell_behind(why: &str) -> Bytes {
    let status = ApiError::new(410, "Expired", why).status();
    event_line("ERROR", &serde_json::to_vec(&status).unwrap_or_default())
}

fn watch(shared: Arc<Shared>, target: &Target, q: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(q, target.resource) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    if target.resource == PODS || target.resource == EVENTS {
        return error(&ApiError::new(
            405,
            "MethodNotAllowed",
            "the fake does not watch pods or events",
        ));
    }
    let resource = target.resource;
    let namespace = target.namespace.clone();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let initial_events = q.get("sendInitialEvents").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let from: Option<u64> = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse().ok());
    let matches = move |e: &WatchEvent| {
        e.resource == resource
            && namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && labels.matches(&e.labels)
            && fields.matches(&e.namespace, &e.name)
    };

    let mut sub = shared.store.subscribe(resource);
    let mut expiry = shared.store.expiry();
    let (initial, last) = {
        let inner = shared.store.lock();
        let oldest = inner.history.front().map_or(inner.rv, |e| e.rv.saturating_sub(1));
        match from {
            Some(rv) if !initial_events && rv < oldest => {
                let status = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({oldest})"),
                )
                .status();
                let line = event_line("ERROR", &serde_json::to_vec(&status).unwrap_or_default());
                return Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(line))
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
            Some(rv) if !initial_events => {
                let lines: Vec<Bytes> = inner
                    .history
                    .iter()
                    .filter(|e| e.rv > rv && matches(e))
                    .map(|e| event_line(e.kind.as_str(), &e.raw))
                    .collect();
                (lines, inner.rv)
            }
            _ => {
                let lines: Vec<Bytes> = inner.objects[resource]
                    .iter()
                    .filter(|(k, s)| {
                        matches(&WatchEvent {
                            resource,
                            rv: s.rv,
                            kind: EventType::Added,
                            namespace: k.0.clone(),
                            labels: s.labels.clone(),
                            name: k.1.clone(),
                            raw: Bytes::new(),
                        })
                    })
                    .map(|(_, s)| event_line("ADDED", &s.raw))
                    .collect();
                (lines, inner.rv)
            }
        }
    };
    let rt = RESOURCES[resource];
    let bookmark = move |rv: u64, end_of_initial: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if end_of_initial {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta});
        event_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let interval = shared.options.bookmark_interval;
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if initial_events && tx.send(bookmark(last, true)).await.is_err() {
            return;
        }
        let end = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        let mut seen = last;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(end) => return,
                () = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(bookmark(seen.max(shared.store.resource_version()), false)).await.is_err() {
                        return;
                    }
                }
                e = sub.recv() => match e {
                    Ok(e) => {
                        if e.rv <= last {
                            continue;
                        }
                        seen = e.rv;
                        if matches(&e) && tx.send(event_line(e.kind.as_str(), &e.raw)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let _ = tx.send(fell_behind("the watch fell behind")).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = expiry.changed() => {
                    let _ = tx.send(fell_behind("the watch expired")).await;
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_resources() {
        let Ok(Route::Api(t)) = route("/apis/apps/v1/namespaces/qa/deployments/web/status") else {
            panic!("no route")
        };
        assert_eq!(
            (
                RESOURCES[t.resource].kind,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.status
            ),
            ("Deployment", Some("qa"), Some("web"), true)
        );
        let Ok(Route::Api(t)) = route("/api/v1/namespaces/qa") else {
            panic!("no route")
        };
        assert_eq!(
            (RESOURCES[t.resource].kind, t.name.as_deref()),
            ("Namespace", Some("qa"))
        );
        let Ok(Route::Api(t)) = route("/apis/networking.k8s.io/v1/ingresses") else {
            panic!("no route")
        };
        assert_eq!((t.namespace, t.name), (None, None));
        assert!(route("/apis/apps/v1/namespaces/qa/statefulsets").is_err());
        assert!(matches!(route("/apis"), Ok(Route::Discovery(_))));
    }

    #[test]
    fn query_strings_are_decoded() {
        let uri: Uri = "/x?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dberth&limit=5"
            .parse()
            .unwrap();
        let q = query(&uri);
        assert_eq!(q["labelSelector"], "app.kubernetes.io/managed-by=berth");
        assert_eq!(q["limit"], "5");
    }

    #[test]
    fn list_items_lose_their_type_fields_like_the_real_servers() {
        let sorted = Bytes::from_static(
            br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"kind":"x"}}"#,
        );
        let unsorted =
            Bytes::from_static(br#"{"metadata":{"name":"web"},"kind":"Deployment","apiVersion":"apps/v1"}"#);
        let escaped = Bytes::from_static(br#"{"apiVersion":"a\"b","kind":"K","metadata":{"name":"web"}}"#);
        for raw in [sorted, unsorted, escaped] {
            let item: Value = serde_json::from_slice(&list_item(&raw)).unwrap();
            assert_eq!(item.get("apiVersion"), None, "{item}");
            assert_eq!(item.get("kind"), None, "{item}");
            assert_eq!(item["metadata"]["name"], "web", "{item}");
        }
        let nested: Value = serde_json::from_slice(&list_item(&Bytes::from_static(
            br#"{"apiVersion":"v1","kind":"K","spec":{"kind":"x"}}"#,
        )))
        .unwrap();
        assert_eq!(nested, json!({"spec": {"kind": "x"}}));
    }
}
