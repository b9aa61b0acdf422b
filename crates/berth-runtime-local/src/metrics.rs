//! The router's Prometheus metrics: requests, latency and upstream errors by application
//! and environment. Labels are the workload's names and the status code only — never a
//! header, path or body, so that no token or secret can reach them.

use berth_core::render::WorkloadKey;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of a request the router answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The application (empty when no application answers for the host).
    pub application: String,
    /// The environment.
    pub environment: String,
    /// The HTTP status answered.
    pub status: String,
}

/// Labels naming an application in an environment.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The router's metrics; cheap to clone (the families are shared).
#[derive(Debug, Clone)]
pub struct RouterMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<WorkloadLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<WorkloadLabels, Counter>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            upstream_errors: Family::default(),
        }
    }
}

impl RouterMetrics {
    /// Registers the families in `registry` (names under `berth_router_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "berth_router_requests",
            "Requests the router answered, by application, environment and status",
            self.requests.clone(),
        );
        registry.register(
            "berth_router_request_duration_seconds",
            "Time from a request's arrival to its answer's head, by application and environment",
            self.latency.clone(),
        );
        registry.register(
            "berth_router_upstream_errors",
            "Attempts to reach a replica that failed or timed out (a retried request counts each), by application and environment",
            self.upstream_errors.clone(),
        );
    }

    /// Counts one answered request of `key` (`None`: no application for the host).
    pub fn answered(&self, key: Option<&WorkloadKey>, status: u16, seconds: f64) {
        let (application, environment) = key.map_or((String::new(), String::new()), |k| {
            (k.application.clone(), k.environment.clone())
        });
        self.requests
            .get_or_create(&RequestLabels {
                application: application.clone(),
                environment: environment.clone(),
                status: status.to_string(),
            })
            .inc();
        if key.is_some() {
            self.latency
                .get_or_create(&WorkloadLabels {
                    application,
                    environment,
                })
                .observe(seconds);
        }
    }

    /// Counts one failed attempt to reach a replica of `key`.
    pub fn upstream_error(&self, key: &WorkloadKey) {
        self.upstream_errors
            .get_or_create(&WorkloadLabels {
                application: key.application.clone(),
                environment: key.environment.clone(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn requests_and_upstream_errors_are_counted_by_workload() {
        let m = RouterMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        let key = WorkloadKey {
            application: "web".into(),
            environment: "qa".into(),
        };
        m.answered(Some(&key), 200, 0.002);
        m.answered(Some(&key), 200, 0.004);
        m.answered(None, 404, 0.0001);
        m.upstream_error(&key);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap_or_default();
        for line in [
            r#"berth_router_requests_total{application="web",environment="qa",status="200"} 2"#,
            r#"berth_router_requests_total{application="",environment="",status="404"} 1"#,
            r#"berth_router_upstream_errors_total{application="web",environment="qa"} 1"#,
            r#"berth_router_request_duration_seconds_count{application="web",environment="qa"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
