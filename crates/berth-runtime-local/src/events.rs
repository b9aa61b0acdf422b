//! The Docker events stream of one cluster: container deaths, kills, OOMs, pauses, stops
//! and removals, filtered by the cluster's label. Events only make Berth faster — the
//! reconcile pass, which lists containers, stays the source of truth — so the watcher
//! records what it can tell (who stopped or removed a replica), takes a dead replica out
//! of traffic at once, and wakes the reconcile loop. It reconnects with backoff when the
//! stream drops, and wakes the loop after reconnecting, since events may have been missed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bollard::{Docker, models::EventMessage, query_parameters::EventsOptionsBuilder};
use futures::StreamExt;

use crate::{
    engine::{ContainerState, LABEL_CLUSTER},
    state::{External, Shared},
};

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(10);

/// Watches the events stream forever.
pub(crate) async fn watch(shared: Arc<Shared>, docker: Docker) {
    let mut delay = FIRST_RETRY;
    loop {
        let filters = HashMap::from([
            ("label", vec![format!("{LABEL_CLUSTER}={}", shared.cluster)]),
            ("type", vec!["container".to_owned()]),
        ]);
        let mut stream = docker.events(Some(EventsOptionsBuilder::default().filters(&filters).build()));
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    delay = FIRST_RETRY;
                    handle(&shared, &event);
                }
                Err(error) => {
                    tracing::warn!(cluster = %shared.cluster, %error, "events stream failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(LAST_RETRY);
        shared.wake();
    }
}

fn handle(shared: &Shared, event: &EventMessage) {
    let Some(action) = event.action.as_deref() else {
        return;
    };
    // Docker appends details to some actions ("exec_start: sh"); the verb comes first.
    let action = action.split(':').next().unwrap_or(action).trim();
    if !matches!(
        action,
        "die" | "kill" | "oom" | "destroy" | "remove" | "pause" | "stop"
    ) {
        return;
    }
    let Some(id) = event.actor.as_ref().and_then(|a| a.id.clone()) else {
        return;
    };
    let mut state = shared.lock();
    let removal = matches!(action, "destroy" | "remove");
    if let Some(r) = state.retiring.get(&id)
        && !(removal && r.failed && !r.removing)
    {
        // Berth's own doing (it stops, then removes, what it retires), or a removal
        // that changes nothing: the replica was on its way out without a replacement.
        return;
    }
    let mut notice = None;
    if let Some(t) = state.replicas.get_mut(&id) {
        match action {
            "stop" => {
                t.external = Some(External::Stopped);
                t.state = ContainerState::Exited;
            }
            "pause" => {
                t.external.get_or_insert(External::Paused);
                t.state = ContainerState::Paused;
            }
            "oom" => {
                if t.external != Some(External::Stopped) {
                    t.external = Some(External::OutOfMemory);
                }
            }
            "kill" => {
                t.external.get_or_insert(External::Killed);
            }
            "die" => t.state = ContainerState::Exited,
            _ => {
                t.state = ContainerState::Removing;
                notice = Some(t.removed_outside());
            }
        }
    }
    if let Some(notice) = notice
        && state.reported_gone.insert(id)
    {
        state.notices.push(notice);
    }
    shared.publish(&state);
    drop(state);
    shared.wake();
}

#[cfg(test)]
mod tests {
    use berth_core::{objects::HealthCheck, render::WorkloadKey};
    use bollard::models::EventActor;
    use chrono::Utc;

    use super::*;
    use crate::{
        RuntimeOptions,
        engine::Observed,
        routes::RouteTable,
        state::{Retiring, Tracked},
    };

    /// A cluster whose one replica Berth is retiring because it failed.
    fn retiring(removing: bool) -> Shared {
        let shared = Shared::new("local".into(), RouteTable::new(), RuntimeOptions::default());
        let o = Observed {
            id: "c1".into(),
            name: "berth-web-qa-1".into(),
            key: WorkloadKey {
                application: "web".into(),
                environment: "qa".into(),
            },
            release: 1,
            spec_hash: "h".into(),
            state: ContainerState::Exited,
            created: Utc::now(),
            host_port: Some(4000),
            check: Some(HealthCheck::default()),
            stop: None,
        };
        let mut state = shared.lock();
        state
            .replicas
            .insert("c1".into(), Tracked::adopted(&o, Utc::now()));
        state.retiring.insert(
            "c1".into(),
            Retiring {
                removing,
                failed: true,
            },
        );
        drop(state);
        shared
    }

    fn event(action: &str) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("c1".into()),
                ..EventActor::default()
            }),
            ..EventMessage::default()
        }
    }

    fn reasons(shared: &Shared) -> Vec<String> {
        shared.lock().notices.iter().map(|n| n.reason.clone()).collect()
    }

    #[test]
    fn a_failed_replica_removed_by_someone_else_before_berth_removes_it_is_drift() {
        let shared = retiring(false);
        handle(&shared, &event("die"));
        assert!(reasons(&shared).is_empty(), "a death while retiring is no news");
        handle(&shared, &event("remove"));
        assert_eq!(reasons(&shared), ["DriftCorrected"]);
        handle(&shared, &event("destroy"));
        assert_eq!(reasons(&shared), ["DriftCorrected"], "said once");
    }

    #[test]
    fn berths_own_removal_is_not_drift() {
        let shared = retiring(true);
        handle(&shared, &event("remove"));
        assert!(reasons(&shared).is_empty());
    }
}
