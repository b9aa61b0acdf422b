//! The server's own series, next to the API's and the router's on `/metrics`: the
//! reconciler's queue and how long its work takes, builds and their durations, and
//! store commit latency. The store and the build service know nothing of Prometheus:
//! they call an observer, which records here.
//!
//! Labels are build phases only: no object names, never a secret.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of a build that ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// `Succeeded` or `Failed`.
    pub phase: String,
}

/// What the reconciler records.
#[derive(Clone)]
pub struct ReconcileMetrics {
    /// Keys waiting to be worked (now or at a later instant).
    pub queue_depth: Gauge,
    /// Keys worked.
    pub keys: Counter,
    /// Time to work one batch of keys.
    pub batch_seconds: Histogram,
    /// Time of one full pass over a cluster.
    pub full_pass_seconds: Histogram,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            queue_depth: Gauge::default(),
            keys: Counter::default(),
            // 1 ms to about 65 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            full_pass_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        }
    }
}

fn build_histogram() -> Histogram {
    // 0.1 s to about 27 min.
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

/// Every series of this module.
#[derive(Clone)]
pub struct ServerMetrics {
    /// The reconciler's.
    pub reconcile: ReconcileMetrics,
    /// Builds that ended, by phase.
    pub builds: Family<BuildLabels, Counter>,
    /// How long builds ran, by phase.
    pub build_seconds: Family<BuildLabels, Histogram, fn() -> Histogram>,
    /// Store commit latency.
    pub commit_seconds: Histogram,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            reconcile: ReconcileMetrics::default(),
            builds: Family::default(),
            build_seconds: Family::new_with_constructor(build_histogram),
            // 0.1 ms to about 3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
        }
    }
}

impl ServerMetrics {
    /// Registers every series in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = &self.reconcile;
        registry.register(
            "berth_reconcile_queue_depth",
            "Application and environment keys waiting for the reconciler (now or at a later instant)",
            r.queue_depth.clone(),
        );
        registry.register(
            "berth_reconcile_keys",
            "Keys the reconciler worked",
            r.keys.clone(),
        );
        registry.register(
            "berth_reconcile_batch_duration_seconds",
            "Time the reconciler took to work one batch of keys on every cluster they are placed on",
            r.batch_seconds.clone(),
        );
        registry.register(
            "berth_reconcile_full_pass_duration_seconds",
            "Time of one full pass over a cluster (at connect, after an outage, at the resync period)",
            r.full_pass_seconds.clone(),
        );
        registry.register("berth_builds", "Builds that ended, by phase", self.builds.clone());
        registry.register(
            "berth_build_duration_seconds",
            "How long a build ran, from taking a build slot to its recorded end, by phase",
            self.build_seconds.clone(),
        );
        registry.register(
            "berth_store_commit_duration_seconds",
            "Time of one store commit (a transaction with its writes, events and audit entries), committed or not",
            self.commit_seconds.clone(),
        );
    }

    /// The observer the store calls after each commit.
    #[must_use]
    pub fn commit_observer(&self) -> berth_store::CommitObserver {
        let h = self.commit_seconds.clone();
        Box::new(move |d| h.observe(d.as_secs_f64()))
    }

    /// The observer the build service calls when a build ends.
    #[must_use]
    pub fn build_observer(&self) -> berth_build::BuildObserver {
        let (count, time) = (self.builds.clone(), Arc::new(self.build_seconds.clone()));
        Box::new(move |phase, d| {
            let labels = BuildLabels {
                phase: phase.to_owned(),
            };
            count.get_or_create(&labels).inc();
            time.get_or_create(&labels).observe(d.as_secs_f64());
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn observers_record_into_the_registered_series() {
        let m = ServerMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        (m.commit_observer())(Duration::from_millis(2));
        (m.build_observer())("Succeeded", Duration::from_secs(3));
        m.reconcile.queue_depth.set(4);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "berth_store_commit_duration_seconds_count 1",
            "berth_builds_total{phase=\"Succeeded\"} 1",
            "berth_build_duration_seconds_count{phase=\"Succeeded\"} 1",
            "berth_reconcile_queue_depth 4",
            "berth_reconcile_keys_total 0",
            "berth_reconcile_batch_duration_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
