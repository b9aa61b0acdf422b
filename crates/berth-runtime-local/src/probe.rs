//! Health probing: Berth checks every running replica itself, with an HTTP GET of the
//! workload's health path on the replica's published port (2xx or 3xx passes), and
//! records the result in the replica's [`HealthState`](berth_core::health::HealthState).
//!
//! Probing runs in one background task per runtime on its own cadence, independent of
//! reconcile passes: each due replica is probed in its own task, so a slow replica delays
//! nobody and a pass never waits for a probe. A change of health updates the route table
//! at once (an unhealthy replica leaves traffic before the next pass) and wakes the
//! reconcile loop.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::time::Instant;

use crate::{
    engine::ContainerState,
    state::{Shared, State},
};

/// How often the prober looks for due checks.
const TICK: Duration = Duration::from_millis(50);

/// The HTTP client of the prober: a new connection per check, as a health check should
/// see what a new client sees.
pub(crate) type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> ProbeClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

struct Due {
    id: String,
    port: u16,
    path: String,
    timeout: Duration,
}

/// Probes due replicas forever.
pub(crate) async fn run(shared: Arc<Shared>, client: ProbeClient) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due: Vec<Due> = {
            let mut guard = shared.lock();
            let State {
                replicas, retiring, ..
            } = &mut *guard;
            replicas
                .iter_mut()
                .filter(|(id, t)| {
                    !t.probing
                        && t.next_probe <= now
                        && t.state == ContainerState::Running
                        && !retiring.contains_key(*id)
                })
                .filter_map(|(id, t)| {
                    let port = t.host_port?;
                    let check = t.check.as_ref()?;
                    t.probing = true;
                    let path = if check.path.starts_with('/') {
                        check.path.clone()
                    } else {
                        format!("/{}", check.path)
                    };
                    let timeout = Duration::from_secs(u64::from(check.timeout_seconds.max(1)))
                        .min(shared.options.probe_timeout_cap);
                    Some(Due {
                        id: id.clone(),
                        port,
                        path,
                        timeout,
                    })
                })
                .collect()
        };
        for job in due {
            tokio::spawn(probe(Arc::clone(&shared), client.clone(), job));
        }
    }
}

async fn probe(shared: Arc<Shared>, client: ProbeClient, job: Due) {
    let outcome = check(&client, job.port, &job.path, job.timeout).await;
    let mut state = shared.lock();
    let retiring = state.retiring.contains_key(&job.id);
    let Some(t) = state.replicas.get_mut(&job.id) else {
        return;
    };
    t.probing = false;
    if retiring || t.state != ContainerState::Running {
        return;
    }
    let Some(check) = t.check.clone() else {
        return;
    };
    let before = t.health.health();
    let after = t.health.record(outcome.is_ok(), &check);
    t.probes = t.probes.saturating_add(1);
    match outcome {
        Ok(()) => {
            t.ever_ok = true;
            t.last_probe_error = None;
        }
        Err(error) => t.last_probe_error = Some(error),
    }
    t.next_probe = Instant::now() + t.probe_cadence();
    if before != after {
        tracing::debug!(container = %t.name, ?before, ?after, "health changed");
        shared.publish(&state);
        drop(state);
        shared.wake();
    }
}

/// One check: `GET http://127.0.0.1:<port><path>` within `timeout`.
pub(crate) async fn check(
    client: &ProbeClient,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let request = Request::get(format!("http://127.0.0.1:{port}{path}"))
        .header(header::USER_AGENT, "berth-health-check")
        .body(Empty::new())
        .map_err(|e| format!("GET {path} cannot be sent: {e}"))?;
    match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => Err(format!(
            "GET {path} did not answer within {} ms",
            timeout.as_millis()
        )),
        Ok(Err(error)) => Err(format!("GET {path} failed: {error}")),
        Ok(Ok(response)) => {
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("GET {path} answered {status}"))
            }
        }
    }
}
