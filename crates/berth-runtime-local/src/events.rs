//! The Docker events stream of one cluster: container deaths, kills, OOMs, pauses, stops
//! and removals, filtered by the cluster's label. Events only make Berth faster — the
//! reconcile pass, which lists containers, stays the source of truth — so the watcher
//! records what it can tell (who stopped or removed a replica), takes a dead replica out
//! of traffic at once, and wakes the reconcile loop. It reconnects with backoff when the
//! stream drops, and wakes the loop after reconnecting, since events may have been missed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use berth_core::ports::Notice;
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
    if state.retiring.contains_key(&id) {
        // Berth's own doing.
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
                notice = Some(Notice {
                    key: t.key.clone(),
                    warning: true,
                    reason: "DriftCorrected".to_owned(),
                    message: format!(
                        "replica {} (release {}) was removed outside Berth; a new replica replaces it",
                        t.name, t.release
                    ),
                });
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
