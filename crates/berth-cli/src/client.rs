//! The HTTP client of the Berth REST API (`<server>/api/v1`).
//!
//! A thin layer over reqwest: it builds URLs from path segments (so names are always
//! escaped), sends the bearer token, follows `continue` tokens of list responses, and
//! turns failures into two errors people can act on: [`ApiError`] for an
//! `application/problem+json` answer and [`Unreachable`] when no server answered.

use std::{fmt, time::Duration};

use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url, header};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use berth_contract::ListMeta;
pub use berth_contract::Problem;

use crate::config::Target;

/// How long an ordinary request may take; streams have no limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one Berth server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    target: Target,
}

/// The server answered with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// What the server said.
    pub problem: Problem,
    /// What the client adds, e.g. how to send a token after a 401.
    pub client_hint: Option<String>,
}

impl ApiError {
    /// Builds the error from a status and a body, which may or may not be problem JSON.
    #[must_use]
    pub fn from_body(status: StatusCode, body: &str) -> Self {
        let mut problem = serde_json::from_str::<Problem>(body).unwrap_or_else(|_| Problem {
            detail: body.trim().chars().take(500).collect::<String>(),
            ..Problem::default()
        });
        if problem.title.is_empty() {
            problem.title = status.canonical_reason().unwrap_or("Error").to_owned();
        }
        Self {
            status: status.as_u16(),
            problem,
            client_hint: None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.title)?;
        let detail = self.problem.detail.as_str();
        if !detail.is_empty() {
            write!(f, ": {detail}")?;
        }
        for e in &self.problem.errors {
            match (e.path.is_empty(), &e.hint) {
                (false, _) => write!(f, "\n  {e}")?,
                // A problem with the request as a whole, repeating the detail: only
                // the hint is news.
                (true, Some(hint)) if e.message == detail => write!(f, "\n  hint: {hint}")?,
                (true, Some(hint)) => write!(f, "\n  {} ({hint})", e.message)?,
                (true, None) if e.message == detail => {}
                (true, None) => write!(f, "\n  {}", e.message)?,
            }
        }
        if let Some(hint) = &self.client_hint {
            write!(f, "\n  {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// No server answered at the target.
#[derive(Debug)]
pub struct Unreachable {
    /// The server tried.
    pub server: String,
    /// Where that server came from and how to choose another.
    pub hint: String,
    /// The innermost cause, e.g. `Connection refused (os error 111)`.
    pub cause: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach the Berth server at {}: {}\n  {}",
            self.server, self.cause, self.hint
        )
    }
}

impl std::error::Error for Unreachable {}

/// Whether `e` is the server saying 404 Not Found.
#[must_use]
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_some_and(|e| e.status == 404)
}

/// Whether `e` says the server could not be reached (worth retrying).
#[must_use]
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Unreachable>().is_some()
}

/// One page of a list answer, its items read as `T`.
#[derive(Debug, Deserialize)]
struct Page<T> {
    items: Vec<T>,
    #[serde(default)]
    metadata: ListMeta,
}

impl Client {
    /// A client of `target`.
    pub fn new(target: &Target) -> anyhow::Result<Self> {
        let mut base = Url::parse(&target.server)
            .with_context(|| format!("'{}' is not a server URL ({})", target.server, target.source))?;
        base.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("'{}' is not a server URL", target.server))?
            .pop_if_empty()
            .extend(["api", "v1"]);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            base,
            target: target.clone(),
        })
    }

    /// The server this client talks to.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.target.server
    }

    /// The URL of `/api/v1/<segments…>?<query>`; segments are escaped.
    #[must_use]
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.target.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request; non-2xx answers become [`ApiError`].
    async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let mut error = ApiError::from_body(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            error.client_hint = Some(if self.target.token.is_some() {
                "the token sent was refused; pass another with --token or BERTH_TOKEN".to_owned()
            } else {
                format!(
                    "no token was sent: pass --token, set BERTH_TOKEN, or add `token:` to the server's entry in {}",
                    self.target.config_path.as_deref().map_or_else(
                        || "~/.config/berth/config.yaml".to_owned(),
                        |p| p.display().to_string()
                    )
                )
            });
        }
        Err(error.into())
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            let how = self.target.how_to_change();
            return Unreachable {
                server: self.target.server.clone(),
                hint: format!(
                    "is it running? It is {}; to use another, {how}",
                    self.target.source
                ),
                cause: innermost(&e),
            }
            .into();
        }
        let what = if e.is_timeout() {
            "timed out".to_owned()
        } else {
            innermost(&e)
        };
        anyhow::anyhow!("request to {} failed: {what}", self.target.server)
    }

    async fn json<T: DeserializeOwned>(resp: Response) -> anyhow::Result<T> {
        let url = resp.url().clone();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the answer of {url} is not what this client expects"))
    }

    /// `GET` a JSON document.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let url = self.url(segments, query);
        let resp = self
            .send(self.request(Method::GET, url).timeout(REQUEST_TIMEOUT))
            .await?;
        Self::json(resp).await
    }

    /// `GET` a JSON document that may not exist (404 gives `None`).
    pub async fn get_optional<T: DeserializeOwned>(&self, segments: &[&str]) -> anyhow::Result<Option<T>> {
        match self.get(segments, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET` every item of a list, following `metadata.continue`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> anyhow::Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if let Some(token) = &next {
                q.push(("continue", token.clone()));
            }
            let page: Page<T> = self.get(segments, &q).await?;
            items.extend(page.items);
            match page.metadata.continue_token.filter(|t| !t.is_empty()) {
                Some(token) if Some(&token) == next.as_ref() => {
                    anyhow::bail!(
                        "the server returned the same continue token twice for /{}",
                        segments.join("/")
                    )
                }
                Some(token) => next = Some(token),
                None => return Ok(items),
            }
        }
    }

    async fn with_body<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        (segments, query): (&[&str], &[(&str, String)]),
        body: &B,
        content_type: &str,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).context("encoding the request")?;
        let req = self
            .request(method, self.url(segments, query))
            .timeout(REQUEST_TIMEOUT)
            .header(header::CONTENT_TYPE, content_type)
            .body(body);
        Self::json(self.send(req).await?).await
    }

    /// `PUT` a document (create or replace).
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        self.put_with(segments, &[], body).await
    }

    /// `PUT` a document with query parameters (e.g. `environment=production`).
    pub async fn put_with<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        body: &B,
    ) -> anyhow::Result<T> {
        self.with_body(Method::PUT, (segments, query), body, "application/json")
            .await
    }

    /// `POST` a document.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        self.with_body(Method::POST, (segments, &[]), body, "application/json")
            .await
    }

    /// `POST` a document with query parameters (e.g. `dryRun=All`).
    pub async fn post_with<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        body: &B,
    ) -> anyhow::Result<T> {
        self.with_body(Method::POST, (segments, query), body, "application/json")
            .await
    }

    /// `PATCH` with a JSON merge patch (RFC 7386).
    pub async fn merge_patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        patch: &B,
    ) -> anyhow::Result<T> {
        self.with_body(
            Method::PATCH,
            (segments, &[]),
            patch,
            "application/merge-patch+json",
        )
        .await
    }

    /// `DELETE` an object.
    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        self.delete_with(segments, &[]).await
    }

    /// `DELETE` an object with query parameters (e.g. `force=true`).
    pub async fn delete_with(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<()> {
        let req = self
            .request(Method::DELETE, self.url(segments, query))
            .timeout(REQUEST_TIMEOUT);
        self.send(req).await.map(drop)
    }

    /// `DELETE` an object, returning what the server answers (the object as it was).
    pub async fn delete_json<T: DeserializeOwned>(&self, segments: &[&str]) -> anyhow::Result<T> {
        let req = self
            .request(Method::DELETE, self.url(segments, &[]))
            .timeout(REQUEST_TIMEOUT);
        Self::json(self.send(req).await?).await
    }

    /// Opens a server-sent-events stream, resuming after `last_event_id` when given.
    pub async fn stream(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        last_event_id: Option<u64>,
    ) -> anyhow::Result<Response> {
        let mut req = self
            .request(Method::GET, self.url(segments, query))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        self.send(req).await
    }
}

/// The deepest cause of an error: the part that says what actually happened.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_display() {
        let body = r#"{"type":"about:blank","title":"Invalid Application","status":422,
            "detail":"the document has 2 problems",
            "errors":[{"path":"spec.image","message":"'x' is not an image","hint":"e.g. reg/web:1"},
                      {"path":"spec.port","message":"must be between 1 and 65535"}]}"#;
        let e = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(
            e.to_string(),
            "Invalid Application: the document has 2 problems\n  spec.image: 'x' is not an image (e.g. reg/web:1)\n  \
             spec.port: must be between 1 and 65535"
        );
    }

    #[test]
    fn request_wide_errors_show_only_what_is_new() {
        let body = r#"{"title":"Conflict","status":409,"detail":"Cluster 'local' is used by environment(s) qa",
            "errors":[{"path":"","message":"Cluster 'local' is used by environment(s) qa",
                       "hint":"remove the cluster from those environments first"},
                      {"path":"","message":"another thing"}]}"#;
        let e = ApiError::from_body(StatusCode::CONFLICT, body);
        assert_eq!(
            e.to_string(),
            "Conflict: Cluster 'local' is used by environment(s) qa\n  hint: remove the cluster from those \
             environments first\n  another thing"
        );
    }

    #[tokio::test]
    async fn a_401_says_how_to_send_a_token() {
        use axum::{Router, http::StatusCode as S, routing::get};
        let app = Router::new().route(
            "/api/v1/clusters",
            get(|| async {
                (
                    S::UNAUTHORIZED,
                    [("content-type", "application/problem+json")],
                    r#"{"title":"Authentication required","status":401,"detail":"send a token"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut target = Target::new(&format!("http://{addr}"));
        target.config_path = Some("/home/u/.config/berth/config.yaml".into());
        let e = Client::new(&target)
            .unwrap()
            .get::<serde_json::Value>(&["clusters"], &[])
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Authentication required: send a token\n  no token was sent: pass --token, set BERTH_TOKEN, or add \
             `token:` to the server's entry in /home/u/.config/berth/config.yaml"
        );
        target.token = Some("stale".into());
        let e = Client::new(&target)
            .unwrap()
            .get::<serde_json::Value>(&["clusters"], &[])
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("the token sent was refused; pass another with --token or BERTH_TOKEN")
        );
    }

    #[test]
    fn non_problem_bodies_still_say_something() {
        let e = ApiError::from_body(StatusCode::BAD_GATEWAY, "upstream down\n");
        assert_eq!(e.to_string(), "Bad Gateway: upstream down");
        let e = ApiError::from_body(StatusCode::NOT_FOUND, "");
        assert_eq!(e.to_string(), "Not Found");
    }

    #[test]
    fn urls_escape_segments_and_keep_prefixes() {
        let c = Client::new(&Target::new("https://b.example.com/berth/")).unwrap();
        let url = c.url(
            &["applications", "a b", "releases"],
            &[("application", "x&y".into())],
        );
        assert_eq!(
            url.as_str(),
            "https://b.example.com/berth/api/v1/applications/a%20b/releases?application=x%26y"
        );
        let c = Client::new(&Target::new("127.0.0.1:7070")).unwrap();
        assert_eq!(
            c.url(&["clusters"], &[]).as_str(),
            "http://127.0.0.1:7070/api/v1/clusters"
        );
    }

    #[tokio::test]
    async fn unreachable_server_says_which_and_how_to_change() {
        // A port that was just free: nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(&Target::new(&format!("127.0.0.1:{port}"))).unwrap();
        let e = c.get::<serde_json::Value>(&["clusters"], &[]).await.unwrap_err();
        assert!(is_unreachable(&e));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot reach the Berth server at http://127.0.0.1:{port}: "
            )),
            "{msg}"
        );
        assert!(msg.contains("from --server"), "{msg}");
        assert!(msg.contains("set BERTH_SERVER"), "{msg}");
    }
}
