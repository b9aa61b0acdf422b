//! An in-memory stand-in for the object endpoints of the Berth API, for tests: list
//! (one item per page, so `continue` is always exercised), get, put and delete of
//! `/{plural}/{name}`, recording every request it receives. A `PUT` of an object named
//! `refused` is answered with a 422 problem.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

use crate::{client::Client, config::Target};

/// The fake's state.
#[derive(Clone, Default)]
pub(crate) struct FakeApi {
    /// Objects by (plural, name).
    pub(crate) objects: Arc<Mutex<BTreeMap<(String, String), Value>>>,
    /// `METHOD /path?query` of every request.
    pub(crate) requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    /// Serves the fake on a free loopback port and returns a client of it.
    pub(crate) async fn serve(&self) -> Client {
        let app = Router::new()
            .route("/api/v1/apply", axum::routing::post(apply))
            .route("/api/v1/{plural}", get(list))
            .route("/api/v1/{plural}/{name}", get(read).put(put).delete(delete))
            .layer(axum::middleware::from_fn_with_state(self.clone(), record))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Client::new(&Target::new(&format!("http://{addr}"))).unwrap()
    }

    /// Stores an object as if it had been created earlier.
    pub(crate) fn insert(&self, plural: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        self.objects
            .lock()
            .unwrap()
            .insert((plural.to_owned(), name), object);
    }

    /// The requests received so far.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(
    State(f): State<FakeApi>,
    method: Method,
    uri: Uri,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = uri.path().trim_start_matches("/api/v1");
    let line = match uri.query() {
        Some(q) => format!("{method} {path}?{q}"),
        None => format!("{method} {path}"),
    };
    f.requests.lock().unwrap().push(line);
    next.run(req).await
}

fn not_found(plural: &str, name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/problem+json")],
        json!({"title": "Not Found", "status": 404, "detail": format!("{plural}/{name} does not exist")})
            .to_string(),
    )
        .into_response()
}

async fn list(
    State(f): State<FakeApi>,
    Path(plural): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let objects = f.objects.lock().unwrap();
    let items: Vec<&Value> = objects
        .iter()
        .filter(|((p, _), _)| *p == plural)
        .map(|(_, v)| v)
        .collect();
    let at: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<&Value> = items.iter().skip(at).take(1).copied().collect();
    let mut metadata = json!({});
    if at + 1 < items.len() {
        metadata["continue"] = json!((at + 1).to_string());
    }
    Json(json!({"apiVersion": "berth.dev/v1", "kind": "List", "metadata": metadata, "items": page}))
        .into_response()
}

async fn read(State(f): State<FakeApi>, Path((plural, name)): Path<(String, String)>) -> Response {
    match f.objects.lock().unwrap().get(&(plural.clone(), name.clone())) {
        Some(v) => Json(v.clone()).into_response(),
        None => not_found(&plural, &name),
    }
}

async fn put(
    State(f): State<FakeApi>,
    Path((plural, name)): Path<(String, String)>,
    Json(mut body): Json<Value>,
) -> Response {
    if name == "refused" {
        let problem = json!({"type": "about:blank", "title": "Invalid document", "status": 422,
            "detail": format!("{plural}/{name} was refused"),
            "errors": [{"path": "spec.clusters[0].cluster", "message": "names Cluster 'gone', which does not exist",
                        "hint": "apply the cluster first"}]});
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            [("content-type", "application/problem+json")],
            problem.to_string(),
        )
            .into_response();
    }
    let mut objects = f.objects.lock().unwrap();
    let key = (plural, name);
    let version = match objects.get(&key) {
        Some(current) if current["spec"] == body["spec"] => return Json(current.clone()).into_response(),
        Some(current) => current["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0),
        None => 0,
    };
    body["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    let status = if version == 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    objects.insert(key, body.clone());
    (status, Json(body)).into_response()
}

async fn delete(State(f): State<FakeApi>, Path((plural, name)): Path<(String, String)>) -> Response {
    match f.objects.lock().unwrap().remove(&(plural.clone(), name.clone())) {
        Some(v) => Json(v).into_response(),
        None => not_found(&plural, &name),
    }
}

/// `POST /apply`: every document stored, or (when one is named `refused`) none, with a
/// 422 naming it; `dryRun=All` stores nothing. No prune.
async fn apply(
    State(f): State<FakeApi>,
    Query(q): Query<BTreeMap<String, String>>,
    Json(body): Json<berth_contract::ApplyRequest>,
) -> Response {
    use berth_contract::{Action, AppliedObject, ApplyResult};
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let mut objects = f.objects.lock().unwrap();
    let mut staged = objects.clone();
    let mut result = Vec::new();
    for (i, doc) in body.documents.iter().enumerate() {
        let kind = doc.object["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name == "refused" {
            let problem = json!({"type": "about:blank", "title": "Documents of the apply are refused", "status": 422,
                "detail": "1 problem(s); nothing was applied",
                "errors": [{"path": format!("documents[{i}].spec.clusters[0].cluster"),
                            "message": format!("{}:{}: {kind} '{name}' (document {i}): names Cluster 'gone', which does not exist",
                                               doc.file.as_deref().unwrap_or("?"), doc.line.unwrap_or(0))}]});
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                [("content-type", "application/problem+json")],
                problem.to_string(),
            )
                .into_response();
        }
        let plural = format!("{}s", kind.to_lowercase());
        let key = (plural, name.clone());
        let before = staged.get(&key).cloned();
        let action = match &before {
            None => Action::Created,
            Some(b) if b["spec"] == doc.object["spec"] => Action::Unchanged,
            Some(_) => Action::Configured,
        };
        staged.insert(key, doc.object.clone());
        result.push(AppliedObject {
            kind,
            name,
            action,
            before,
            after: Some(doc.object.clone()),
        });
    }
    if !dry_run {
        *objects = staged;
    }
    Json(ApplyResult {
        dry_run,
        rollouts: Vec::new(),
        objects: result,
    })
    .into_response()
}
