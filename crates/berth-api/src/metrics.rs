//! `/metrics`: the server's Prometheus metrics in the text format, for platform
//! administrators (a scraper sends an administrator's API token as a bearer token).
//!
//! - `berth_http_request_duration_seconds`, by route template
//!   (`/api/v1/applications/:name`), method and status, recorded by [`RecordLayer`] on every
//!   matched API route; its `_count` is the number of requests answered.
//! - `berth_deployments` by phase (the governing deployment of each application and
//!   environment; every phase, 0 when none is in it) and `berth_clusters` by cluster and
//!   phase: counted by the store at each scrape, and updated in place, never emptied
//!   first, so that a concurrent scrape sees no series missing.
//! - whatever else the server registers (the router's `berth_router_*`).
//!
//! Labels are route templates, methods, status codes, phases and object names only:
//! never a header, a query, a body or a token, so no secret can reach a metric.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    Extension,
    extract::{MatchedPath, Request, State},
    http::{Method, header},
    response::{IntoResponse, Response},
};
use berth_core::{
    authz::{Permission, Principal, decide},
    objects::{ClusterKind, DeploymentPhase},
    repo,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{ApiState, error::Result};

/// Labels of an API request, made for every request: none of them allocates (the route
/// is shared from [`ApiMetrics`]' cache of route labels, the method is static but for an
/// extension method, the status a number).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template matched, as a label (`/api/v1/applications/:name`).
    pub route: Arc<str>,
    /// The method.
    pub method: Cow<'static, str>,
    /// The status answered (encoded as its decimal digits, `200`).
    pub status: u16,
}

/// Labels of a deployment count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase.
    pub phase: &'static str,
}

/// Labels of a cluster's health.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The cluster.
    pub cluster: String,
    /// Its phase (`Ready`, `Unreachable`, …).
    pub phase: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The API server's metrics and the registry they are exposed from.
pub struct ApiMetrics {
    registry: Registry,
    latency: Family<HttpLabels, Histogram, fn() -> Histogram>,
    deployments: Family<PhaseLabels, Gauge>,
    clusters: Family<ClusterLabels, Gauge>,
    /// The labels `clusters` holds, so that a scrape removes only those no longer true
    /// (the family cannot be iterated); the lock also keeps two scrapes' updates whole.
    cluster_labels: Mutex<HashSet<ClusterLabels>>,
    /// Route label of each route template matched so far (bounded by the routes).
    routes: RwLock<HashMap<Arc<str>, Arc<str>>>,
    /// The label of requests no route matched.
    unmatched: Arc<str>,
    /// Whether API requests are counted and timed (the layer on every route).
    requests_recorded: bool,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::with(|_| {})
    }
}

impl ApiMetrics {
    /// The API's metrics, and whatever `more` registers next to them (the router's).
    pub fn with(more: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let latency: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let deployments = Family::<PhaseLabels, Gauge>::default();
        let clusters = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "berth_http_request_duration_seconds",
            "Time to answer an API request (to its head; a stream counts until it opens), by route template, method and status",
            latency.clone(),
        );
        registry.register(
            "berth_deployments",
            "Governing deployments (one per application and environment), by phase",
            deployments.clone(),
        );
        registry.register(
            "berth_clusters",
            "Clusters by phase: 1 for the phase each cluster is in",
            clusters.clone(),
        );
        more(&mut registry);
        Self {
            registry,
            latency,
            deployments,
            clusters,
            cluster_labels: Mutex::default(),
            routes: RwLock::default(),
            unmatched: Arc::from("unmatched"),
            requests_recorded: true,
        }
    }

    /// The same, without the layer that counts and times every API request: what the
    /// benchmark of the metrics' cost compares with (`berth server --no-request-metrics`).
    #[must_use]
    pub fn without_request_metrics(mut self) -> Self {
        self.requests_recorded = false;
        self
    }

    /// Whether API requests are counted and timed.
    #[must_use]
    pub fn records_requests(&self) -> bool {
        self.requests_recorded
    }

    /// One request answered: its histogram's `_count` is the request count, so there is
    /// no counter beside it to look up as well.
    fn observe(&self, labels: &HttpLabels, seconds: f64) {
        self.latency.get_or_create(labels).observe(seconds);
    }

    /// The label of a route template, made once per template.
    fn route(&self, template: &str) -> Arc<str> {
        // A poisoned map still holds whole entries: each is inserted in one step.
        if let Some(label) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(template)
        {
            return label.clone();
        }
        let label: Arc<str> = Arc::from(route_label(template));
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(Arc::from(template))
            .or_insert(label)
            .clone()
    }

    /// Sets the deployment counts: every phase, 0 for those none is in, so that a phase
    /// never goes missing (and no scrape sees the family half filled).
    fn set_deployments(&self, counts: &std::collections::BTreeMap<DeploymentPhase, u64>) {
        for phase in DeploymentPhase::ALL {
            let n = counts.get(&phase).copied().unwrap_or(0);
            self.deployments
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Replaces the cluster series with `now`: sets those first, then removes the ones no
    /// longer present, so that a concurrent scrape never sees the family empty.
    fn set_clusters(&self, now: HashSet<ClusterLabels>) {
        let mut held = self.cluster_labels.lock().unwrap_or_else(PoisonError::into_inner);
        for labels in &now {
            self.clusters.get_or_create(labels).set(1);
        }
        for gone in held.difference(&now) {
            self.clusters.remove(gone);
        }
        *held = now;
    }
}

/// A route template as a label: `/api/v1/applications/:name` (braces in label values
/// trip up some scrapers' parsers).
fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// A method as a label, without allocating for the standard ones.
fn method_label(method: &Method) -> Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    let name = method.as_str();
    STANDARD
        .iter()
        .find(|s| **s == name)
        .map_or_else(|| Cow::Owned(name.to_owned()), |s| Cow::Borrowed(*s))
}

/// The layer on every matched API route that times each request by route, method and
/// status. A plain tower service rather than `axum::middleware::from_fn`, which boxes a
/// future and the rest of the stack for every request and runs extractors: what it costs
/// is what the ≤ 5 % bound on metrics is about. Its state is the metrics alone.
#[derive(Clone)]
pub struct RecordLayer(pub Arc<ApiMetrics>);

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`RecordLayer`] wraps a route in.
#[derive(Clone)]
pub struct Record<S> {
    inner: S,
    metrics: Arc<ApiMetrics>,
}

impl<S> tower::Service<Request> for Record<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let metrics = &self.metrics;
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| metrics.unmatched.clone(), |m| metrics.route(m.as_str()));
        let method = method_label(req.method());
        Recorded {
            inner: self.inner.call(req),
            timing: Some(Timing {
                metrics: metrics.clone(),
                route,
                method,
                started: Instant::now(),
            }),
        }
    }
}

struct Timing {
    metrics: Arc<ApiMetrics>,
    route: Arc<str>,
    method: Cow<'static, str>,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// A route's answer, timed when it is ready.
    pub struct Recorded<F> {
        #[pin]
        inner: F,
        timing: Option<Timing>,
    }
}

impl<F, E> Future for Recorded<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(t)) = (&answer, this.timing.take()) {
            t.metrics.observe(
                &HttpLabels {
                    route: t.route,
                    method: t.method,
                    status: response.status().as_u16(),
                },
                t.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(answer)
    }
}

/// `GET /metrics`: the metrics in the Prometheus text format (0.0.4), for platform
/// administrators.
pub async fn scrape(State(state): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response> {
    decide(&who, &Permission::AdministerPlatform)?;
    let store = state.store.as_ref();
    let counts = store.governing_deployments_by_phase().await?;
    let clusters = repo::list_all::<ClusterKind>(store, None)
        .await?
        .into_iter()
        .map(|c| ClusterLabels {
            phase: serde_json::to_value(c.status.phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            cluster: c.metadata.name,
        })
        .collect();
    state.metrics.set_deployments(&counts);
    state.metrics.set_clusters(clusters);
    let mut text = String::new();
    // Writing into a String cannot fail; the Result is fmt's.
    let _ = encode(&mut text, &state.metrics.registry);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the layer adds to each request, besides the request: making its labels,
    /// two lookups and an observation. Printed, for docs/benchmarks.md; bounded loosely
    /// so that a slow machine does not fail it.
    #[test]
    fn recording_a_request_costs_microseconds() {
        let m = ApiMetrics::default();
        let n = 100_000u32;
        let started = Instant::now();
        for i in 0..n {
            let labels = HttpLabels {
                route: m.route("/api/v1/applications/{name}"),
                method: method_label(&Method::GET),
                status: if i % 100 == 0 { 404 } else { 200 },
            };
            m.observe(&labels, 0.003);
        }
        let each = started.elapsed() / n;
        println!("recording one request: {each:?}");
        assert!(each < std::time::Duration::from_millis(1), "{each:?}");
    }

    fn text(m: &ApiMetrics) -> String {
        let mut text = String::new();
        encode(&mut text, &m.registry).unwrap();
        text
    }

    /// Series of `metric` in the text, without the value.
    fn series(text: &str, metric: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .map(|l| l.to_owned())
            .collect()
    }

    /// Every phase is exposed, 0 when none is in it, after counts that had it too: a
    /// phase that empties reads 0 rather than going missing.
    #[test]
    fn every_phase_is_counted_and_emptied_ones_read_zero() {
        use std::collections::BTreeMap;
        let m = ApiMetrics::default();
        m.set_deployments(&BTreeMap::from([(DeploymentPhase::Progressing, 3)]));
        let t = text(&m);
        assert!(t.contains("berth_deployments{phase=\"Progressing\"} 3\n"), "{t}");
        assert!(t.contains("berth_deployments{phase=\"Succeeded\"} 0\n"), "{t}");
        m.set_deployments(&BTreeMap::from([(DeploymentPhase::Succeeded, 3)]));
        let t = text(&m);
        assert!(t.contains("berth_deployments{phase=\"Progressing\"} 0\n"), "{t}");
        assert!(t.contains("berth_deployments{phase=\"Succeeded\"} 3\n"), "{t}");
        assert_eq!(
            series(&t, "berth_deployments").len(),
            DeploymentPhase::ALL.len(),
            "{t}"
        );
    }

    /// A cluster that changes phase keeps one series, in its new phase; a deleted one
    /// goes; the others stay throughout.
    #[test]
    fn cluster_series_are_replaced_label_by_label() {
        let labels = |cluster: &str, phase: &str| ClusterLabels {
            cluster: cluster.to_owned(),
            phase: phase.to_owned(),
        };
        let m = ApiMetrics::default();
        m.set_clusters(HashSet::from([
            labels("a", "Ready"),
            labels("b", "Ready"),
            labels("c", "Ready"),
        ]));
        assert_eq!(series(&text(&m), "berth_clusters").len(), 3);
        m.set_clusters(HashSet::from([labels("a", "Unreachable"), labels("b", "Ready")]));
        let mut now = series(&text(&m), "berth_clusters");
        now.sort();
        assert_eq!(
            now,
            [
                "berth_clusters{cluster=\"a\",phase=\"Unreachable\"} 1",
                "berth_clusters{cluster=\"b\",phase=\"Ready\"} 1",
            ]
        );
    }

    #[test]
    fn labels_are_as_documented() {
        let m = ApiMetrics::default();
        assert_eq!(
            &*m.route("/api/v1/applications/{name}/secrets/{secret}"),
            "/api/v1/applications/:name/secrets/:secret"
        );
        let first = m.route("/api/v1/applications/{name}");
        assert!(
            Arc::ptr_eq(&first, &m.route("/api/v1/applications/{name}")),
            "made once"
        );
        assert!(matches!(method_label(&Method::DELETE), Cow::Borrowed("DELETE")));
        let ext = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_label(&ext), "PURGE");
        m.observe(
            &HttpLabels {
                route: first,
                method: method_label(&Method::GET),
                status: 404,
            },
            0.001,
        );
        assert!(
            text(&m).contains(
                "berth_http_request_duration_seconds_count{route=\"/api/v1/applications/:name\",method=\"GET\",status=\"404\"} 1"
            ),
            "{}",
            text(&m)
        );
    }
}
