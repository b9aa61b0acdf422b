//! `/metrics`: the server's Prometheus metrics in the text format, for platform
//! administrators (a scraper sends an administrator's API token as a bearer token).
//!
//! - `berth_http_requests_total` and `berth_http_request_duration_seconds`, by route
//!   template (`/api/v1/applications/:name`), method and status: recorded by a layer on
//!   every matched API route.
//! - `berth_deployments` by phase (the governing deployment of each application and
//!   environment) and `berth_clusters` by cluster and phase: read from the store at
//!   each scrape.
//! - whatever else the server registers (the router's `berth_router_*`).
//!
//! Labels are route templates, methods, status codes, phases and object names only:
//! never a header, a query, a body or a token, so no secret can reach a metric.

use std::time::Instant;

use axum::{
    Extension,
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use berth_core::{
    authz::{Permission, Principal, decide},
    objects::ClusterKind,
    ports::GoverningQuery,
    repo,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{ApiState, error::Result};

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template matched.
    pub route: String,
    /// The method.
    pub method: String,
    /// The status answered.
    pub status: String,
}

/// Labels of a deployment count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase.
    pub phase: String,
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
    requests: Family<HttpLabels, Counter>,
    latency: Family<HttpLabels, Histogram, fn() -> Histogram>,
    deployments: Family<PhaseLabels, Gauge>,
    clusters: Family<ClusterLabels, Gauge>,
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
        let requests = Family::<HttpLabels, Counter>::default();
        let latency: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let deployments = Family::<PhaseLabels, Gauge>::default();
        let clusters = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "berth_http_requests",
            "API requests answered, by route template, method and status",
            requests.clone(),
        );
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
            requests,
            latency,
            deployments,
            clusters,
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

    fn observe(&self, labels: &HttpLabels, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.latency.get_or_create(labels).observe(seconds);
    }
}

/// A route template as a label: `/api/v1/applications/:name` (braces in label values
/// trip up some scrapers' parsers).
fn route_label(template: &str) -> String {
    template.replace('{', ":").replace('}', "")
}

/// Layer on every matched API route: counts the request and its time. Its state is the
/// metrics alone, so that a request does not clone the whole API state (a `String` among
/// its `Arc`s) just to be counted.
pub async fn record(
    State(metrics): State<std::sync::Arc<ApiMetrics>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| route_label(m.as_str()));
    let method = req.method().to_string();
    let response = next.run(req).await;
    metrics.observe(
        &HttpLabels {
            route,
            method,
            status: response.status().as_u16().to_string(),
        },
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: the metrics in the Prometheus text format (0.0.4), for platform
/// administrators.
pub async fn scrape(State(state): State<ApiState>, Extension(who): Extension<Principal>) -> Result<Response> {
    decide(&who, &Permission::AdministerPlatform)?;
    let store = state.store.as_ref();
    let mut phases: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let mut after = None;
    loop {
        let page = store
            .governing_deployments(&GoverningQuery {
                application: None,
                after,
                limit: 1000,
            })
            .await?;
        for value in page.items {
            let phase = value
                .pointer("/status/phase")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("Pending")
                .to_owned();
            *phases.entry(phase).or_default() += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    state.metrics.deployments.clear();
    for (phase, n) in phases {
        state
            .metrics
            .deployments
            .get_or_create(&PhaseLabels { phase })
            .set(n);
    }
    state.metrics.clusters.clear();
    for c in repo::list_all::<ClusterKind>(store, None).await? {
        state
            .metrics
            .clusters
            .get_or_create(&ClusterLabels {
                cluster: c.metadata.name.clone(),
                phase: serde_json::to_value(c.status.phase)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .set(1);
    }
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
                route: route_label("/api/v1/applications/{name}"),
                method: "GET".to_string(),
                status: if i % 100 == 0 { "404" } else { "200" }.to_string(),
            };
            m.observe(&labels, 0.003);
        }
        let each = started.elapsed() / n;
        println!("recording one request: {each:?}");
        assert!(each < std::time::Duration::from_millis(1), "{each:?}");
    }
}
