//! The event log over HTTP: pages, and a server-sent event stream that resumes from a
//! position (`after=` or the `Last-Event-ID` header).

use std::{convert::Infallible, time::Duration};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use berth_core::{Event, Kind, NewEvent, authz::Principal, objects::ApplicationKind, ports::EventQuery};
use futures::{Stream, stream};

use crate::{ApiState, error::Result, permissions::Visibility};
pub use berth_contract::{EventList, EventParams};

/// Reads a page of events, keeping those `principal` may see.
pub async fn list(state: &ApiState, principal: &Principal, params: EventParams) -> Result<EventList> {
    let visibility = Visibility::of(state, principal).await?;
    let mut items = state
        .store
        .events(&EventQuery {
            after: params.after.unwrap_or(0),
            limit: params.limit.unwrap_or(500).clamp(1, 1000),
            application: params.application,
        })
        .await?;
    items.retain(|e| visible(&visibility, &e.event));
    Ok(EventList { items })
}

/// Kinds of objects that belong to an application: their events are an application's
/// activity, shown only to those who may read its team.
const APPLICATION_KINDS: [&str; 5] = ["Application", "Release", "Deployment", "Build", "Secret"];

/// Whether an event may be shown: platform events (clusters, environments, teams, users,
/// the server) to everyone signed in; an application's events only to those who may read
/// its team. An event of an application's object that does not say which application
/// (older events) is shown only to platform administrators.
#[must_use]
pub fn visible(visibility: &Visibility, event: &NewEvent) -> bool {
    let application = event
        .application
        .as_deref()
        .or_else(|| (event.kind == ApplicationKind::KIND).then_some(event.name.as_str()));
    match application {
        Some(app) => visibility.shows(Some(app)),
        None if APPLICATION_KINDS.contains(&event.kind.as_str()) => matches!(visibility, Visibility::All),
        None => true,
    }
}

/// How long one wait for new events lasts before the stream checks again.
const POLL: Duration = Duration::from_secs(10);

/// Streams events after `after` that `principal` may see, forever.
pub fn stream(
    state: ApiState,
    principal: Principal,
    after: u64,
    application: Option<String>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = stream::unfold(
        (state, after, Vec::<Event>::new()),
        move |(state, mut cursor, mut buffer)| {
            let application = application.clone();
            let principal = principal.clone();
            async move {
                loop {
                    if !buffer.is_empty() {
                        let event = buffer.remove(0);
                        cursor = event.seq;
                        let sse = SseEvent::default()
                            .id(event.seq.to_string())
                            .event("event")
                            .json_data(&event)
                            .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
                        return Some((Ok(sse), (state, cursor, buffer)));
                    }
                    // Read the log's end before querying: if the (filtered) query then finds
                    // nothing, every event up to `last` was looked at and can be skipped.
                    let last = state.store.last_event().await.unwrap_or(cursor);
                    let query = EventQuery {
                        after: cursor,
                        limit: 200,
                        application: application.clone(),
                    };
                    match state.store.events(&query).await {
                        Ok(mut page) if !page.is_empty() => {
                            let seen = page.last().map_or(cursor, |e| e.seq);
                            // When the store cannot say what the caller may read, only
                            // platform events are shown.
                            let v = Visibility::of(&state, &principal)
                                .await
                                .unwrap_or_else(|_| Visibility::Applications(Default::default()));
                            page.retain(|e| visible(&v, &e.event));
                            if page.is_empty() {
                                cursor = seen;
                            }
                            buffer = page;
                        }
                        Ok(_) => {
                            cursor = cursor.max(last);
                            state.store.wait_for_events(cursor, POLL).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "event stream: store failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
