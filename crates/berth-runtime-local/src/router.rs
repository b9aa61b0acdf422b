//! The built-in HTTP router of the local runtime: a small HTTP/1.1 reverse proxy that sends
//! `Host: <app>.<env>.<domain>` (or any hostname a workload lists) to the healthy replicas
//! in the [`RouteTable`], round-robin across clusters.
//!
//! Request bodies are buffered (up to [`RouterOptions::max_body_bytes`]) so that a request
//! whose backend refuses or drops the connection before answering can be sent to another
//! backend: replicas that a rolling update retires leave the table first, but a request
//! that picked one a moment earlier, or a pooled connection the replica just closed, is
//! retried rather than lost. Requests that are not idempotent are retried only when the
//! connection could not be made at all, since the backend may have acted on them.
//!
//! Answers the router makes itself are `text/plain`: 400 without a `Host`, 404 for an
//! unknown host, 413 for a body over the cap, 503 when no replica is healthy, 502 when
//! every backend tried failed, 504 when a backend does not answer in time. Connection
//! upgrades (WebSocket) are not proxied.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::{
    Method, Request, Response, StatusCode, Uri, Version,
    body::Incoming,
    header::{self, HeaderMap, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use berth_core::render::WorkloadKey;

use crate::{
    metrics::RouterMetrics,
    routes::{Backend, RouteTable, normalize_host},
};

/// The body type of the router's answers.
type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How many different backends one request may be tried on.
const MAX_ATTEMPTS: usize = 4;

/// Settings of the [`Router`].
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// The platform domain: `Host: <app>.<env>.<domain>` reaches a workload even when it
    /// does not list that hostname. `None`: only listed hostnames are served.
    pub domain: Option<String>,
    /// Largest request body accepted (buffered for retries); larger ones get 413.
    pub max_body_bytes: usize,
    /// Time to connect to a backend.
    pub connect_timeout: Duration,
    /// Time a backend may take to start answering; then 504.
    pub backend_timeout: Duration,
    /// Time open connections get to finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            domain: None,
            max_body_bytes: 10 << 20,
            connect_timeout: Duration::from_secs(2),
            backend_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The reverse proxy in front of the local runtimes' replicas.
#[derive(Debug, Clone)]
pub struct Router {
    table: RouteTable,
    client: Client<HttpConnector, Full<Bytes>>,
    options: Arc<RouterOptions>,
    metrics: Option<RouterMetrics>,
}

impl Router {
    /// A router over `table`.
    #[must_use]
    pub fn new(table: RouteTable, options: RouterOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(options.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self {
            table,
            client,
            options: Arc::new(options),
            metrics: None,
        }
    }

    /// Counts what the router answers in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: RouterMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves `listener` with default [`RouterOptions`] until `shutdown` completes, then
    /// lets open connections finish (up to the grace period).
    pub async fn serve(listener: TcpListener, table: RouteTable, shutdown: impl Future<Output = ()> + Send) {
        Self::new(table, RouterOptions::default())
            .run(listener, shutdown)
            .await;
    }

    /// Serves `listener` until `shutdown` completes, then lets open connections finish
    /// (up to [`RouterOptions::shutdown_grace`]).
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let router = self.clone();
                        let stop = stop_rx.clone();
                        connections.spawn(router.connection(stream, peer, stop));
                    }
                    Err(error) => {
                        // E.g. out of file descriptors: wait a little rather than spin.
                        tracing::warn!(%error, "router: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.options.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
    }

    async fn connection(
        self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        let service = service_fn(move |request| {
            let router = self.clone();
            async move { Ok::<_, Infallible>(router.handle(request, peer).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "router: connection ended with an error");
                }
            }
            _ = stop.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }

    /// Answers one request: from a backend, or with the router's own error; counted in
    /// the metrics, when the router has them.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = std::time::Instant::now();
        let mut key = None;
        let response = self.answer(request, peer, &mut key).await;
        if let Some(m) = &self.metrics {
            m.answered(
                key.as_ref(),
                response.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
        }
        response
    }

    async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        key: &mut Option<WorkloadKey>,
    ) -> Response<ProxyBody> {
        let Some(raw_host) = request_host(&request) else {
            return plain(StatusCode::BAD_REQUEST, "the request has no Host header\n".into());
        };
        let host = normalize_host(&raw_host);
        let Some(resolved) = self.table.resolve(&host, self.options.domain.as_deref()) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!("no application answers for host '{host}'\n"),
            );
        };
        *key = Some(resolved.key.clone());
        if resolved.backends.is_empty() {
            let why = resolved
                .status
                .clone()
                .unwrap_or_else(|| format!("none of its {} replicas is healthy yet", resolved.replicas));
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} is not available: {why}\n", resolved.key),
            );
        }

        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let cap = self.options.max_body_bytes;
        if declared.is_some_and(|len| len > cap as u64) {
            return too_large(cap);
        }
        let body = match Limited::new(body, cap).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(cap),
            Err(error) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {error}\n"),
                );
            }
        };

        let headers = forward_headers(&parts.headers, peer, &raw_host);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let mut last_error = String::new();
        for backend in resolved.backends.iter().take(MAX_ATTEMPTS) {
            let outgoing = match build_request(&parts.method, backend, &path, &headers, body.clone()) {
                Ok(r) => r,
                Err(error) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        format!("cannot forward this request: {error}\n"),
                    );
                }
            };
            match tokio::time::timeout(self.options.backend_timeout, self.client.request(outgoing)).await {
                Err(_) => {
                    if let Some(m) = &self.metrics {
                        m.upstream_error(&resolved.key);
                    }
                    return plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "{} did not answer within {} s\n",
                            resolved.key,
                            self.options.backend_timeout.as_secs()
                        ),
                    );
                }
                Ok(Ok(response)) => return backend_response(response),
                Ok(Err(error)) => {
                    if let Some(m) = &self.metrics {
                        m.upstream_error(&resolved.key);
                    }
                    let retry = error.is_connect() || is_idempotent(&parts.method);
                    tracing::debug!(%error, backend = %backend.addr, retry, "router: backend failed");
                    last_error = error_chain(&error);
                    if !retry {
                        break;
                    }
                }
            }
        }
        plain(
            StatusCode::BAD_GATEWAY,
            format!("{} failed to answer: {last_error}\n", resolved.key),
        )
    }
}

fn request_host<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .filter(|h| !h.trim().is_empty())
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus `Expect`,
/// which the router has already answered by reading the body.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn forward_headers(incoming: &HeaderMap, peer: SocketAddr, host: &str) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    let client_ip = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {client_ip}"),
        _ => client_ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", value.clone());
        headers.insert(header::HOST, value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers
}

fn build_request(
    method: &Method,
    backend: &Backend,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let uri: Uri = format!("http://{}{path}", backend.addr).parse()?;
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .version(Version::HTTP_11)
        .body(Full::new(body))?;
    *request.headers_mut() = headers.clone();
    Ok(request)
}

fn backend_response(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.boxed())
}

fn plain(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn too_large(cap: usize) -> Response<ProxyBody> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the router accepts ({cap} bytes)\n"),
    )
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        incoming.insert("x-secret", HeaderValue::from_static("1"));
        incoming.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        incoming.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        incoming.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        incoming.insert("x-app", HeaderValue::from_static("kept"));
        let out = forward_headers(
            &incoming,
            SocketAddr::from(([127, 0, 0, 9], 5000)),
            "Web.qa.localhost",
        );
        for gone in ["connection", "x-secret", "keep-alive", "transfer-encoding"] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out["x-app"], "kept");
        assert_eq!(out["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(out["x-forwarded-host"], "Web.qa.localhost");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out[header::HOST], "Web.qa.localhost");
    }

    #[test]
    fn only_idempotent_methods_are_retried_after_a_send() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
