//! The behaviour every [`Store`] adapter must show, written once and run against each.
//!
//! Each function takes a fresh, empty store, exercises one part of the contract and panics
//! (through `assert!`) when the store breaks it; store errors that should not happen are
//! returned. The few that need several tasks take an `Arc<dyn Store>`. Times written by a test
//! carry whole microseconds, the finest a PostgreSQL `timestamptz` keeps.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

mod queries;

pub use queries::{
    build_queries, deployments_newest_first, deployments_of_releases, governing_and_last_succeeded,
    governing_deployments_by_phase, governing_deployments_paged, next_numbers, release_queries,
    team_applications_paged, team_releases,
};

use berth_core::{
    audit::{AuditEntry, AuditQuery, Change, Verification},
    objects::{Event, NewEvent},
    ports::{EventQuery, ListQuery, Page, Store, StoreError, TokenRecord, Write},
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long a test waits for something that should happen promptly before calling it broken.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Expands `$m! { $prefix by_ref: [..], shared: [..] }` with the name of every function of
/// this suite: those taking `&dyn Store`, then those taking `Arc<dyn Store>`. Each
/// adapter's tests expand it once, so that a new conformance function runs against
/// every adapter without being listed twice.
#[cfg(test)]
macro_rules! every_test {
    ($m:ident $(, $($prefix:tt)*)?) => {
        $m! {
            $($($prefix)*)?
            by_ref: [
                create_get_and_list,
                list_pages,
                create_existing_fails,
                replace_keeps_creation,
                stale_version_conflicts,
                failed_commit_writes_nothing,
                delete_removes,
                writes_share_revision,
                rejects_non_object_documents,
                events_in_order,
                wait_returns_when_events_exist,
                wait_times_out,
                tokens,
                audit_records_every_write,
                audit_filters,
                governing_and_last_succeeded,
                deployments_newest_first,
                governing_deployments_paged,
                governing_deployments_by_phase,
                deployments_of_releases,
                release_queries,
                team_releases,
                team_applications_paged,
                next_numbers,
                build_queries,
            ],
            shared: [wait_wakes_on_commit, concurrent_commits],
        }
    };
}

#[cfg(test)]
pub(crate) use every_test;

// === Helpers ===

/// A document of `kind/name` with a spec.
fn document(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "berth.dev/v1",
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// A create of `kind/name` with an empty spec.
fn create(kind: &str, name: &str, owner: Option<&str>) -> Write {
    Write::Create {
        kind: kind.to_owned(),
        name: name.to_owned(),
        owner: owner.map(str::to_owned),
        document: document(kind, name, json!({})),
    }
}

/// A replace of `kind/name`.
fn replace(kind: &str, name: &str, spec: Value, expected_version: Option<u64>) -> Write {
    Write::Replace {
        kind: kind.to_owned(),
        name: name.to_owned(),
        document: document(kind, name, spec),
        expected_version,
    }
}

/// A delete of `kind/name`.
fn delete(kind: &str, name: &str, expected_version: Option<u64>) -> Write {
    Write::Delete {
        kind: kind.to_owned(),
        name: name.to_owned(),
        expected_version,
    }
}

/// A field of `metadata`, when it is a string.
fn meta<'a>(document: &'a Value, field: &str) -> Option<&'a str> {
    document["metadata"][field].as_str()
}

/// `metadata.resourceVersion` as a number.
fn version(document: &Value) -> Option<u64> {
    meta(document, "resourceVersion").and_then(|v| v.parse().ok())
}

/// A timestamp of `metadata`, parsed.
fn time(document: &Value, field: &str) -> Option<DateTime<Utc>> {
    meta(document, field)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Names of the items of a page.
fn names(page: &Page) -> Vec<&str> {
    page.items
        .iter()
        .map(|item| meta(item, "name").unwrap_or("<no name>"))
        .collect()
}

/// A list query.
fn list(kind: &str, owner: Option<&str>, after: Option<u64>, limit: u32) -> ListQuery {
    ListQuery {
        kind: kind.to_owned(),
        owner: owner.map(str::to_owned),
        after,
        limit,
    }
}

/// Every event after `after`.
async fn events_after(store: &dyn Store, after: u64) -> Result<Vec<Event>, StoreError> {
    store
        .events(&EventQuery {
            after,
            limit: 1000,
            application: None,
        })
        .await
}

/// A routine event about an application.
fn event_about(application: &str, reason: &str) -> NewEvent {
    NewEvent::normal(
        reason,
        "Application",
        application,
        "tester",
        format!("{reason} {application}"),
    )
    .about(application, None)
}

// === Objects ===

/// Created objects read back as stored, with the bookkeeping the store owns, and list in
/// creation order, filtered by owner.
pub async fn create_get_and_list(store: &dyn Store) -> Result<(), StoreError> {
    let commit = store
        .commit(
            vec![
                create("Application", "web", None),
                create("Release", "web-1", Some("web")),
                create("Release", "api-1", Some("api")),
                create("Release", "web-2", Some("web")),
            ],
            vec![],
        )
        .await?;
    assert_eq!(commit.documents.len(), 4, "one stored document per write");
    assert!(commit.events.is_empty());

    for (stored, (kind, name)) in commit.documents.iter().zip([
        ("Application", "web"),
        ("Release", "web-1"),
        ("Release", "api-1"),
        ("Release", "web-2"),
    ]) {
        let read = store.get(kind, name).await?;
        assert_eq!(
            read.as_ref(),
            stored.as_ref(),
            "get {kind}/{name} returns what commit stored"
        );
        let Some(read) = read else { continue };
        assert_eq!(read["kind"], kind);
        assert_eq!(meta(&read, "name"), Some(name), "the caller's metadata is kept");
        assert_eq!(read["spec"], json!({}));
        assert_eq!(
            version(&read),
            Some(commit.revision),
            "resourceVersion is the commit's revision"
        );
        let created = meta(&read, "creationTimestamp").unwrap_or_default();
        assert!(created.ends_with('Z'), "timestamps are RFC 3339 UTC: {created}");
        assert!(
            time(&read, "creationTimestamp").is_some(),
            "creationTimestamp parses: {created}"
        );
        assert_eq!(
            meta(&read, "updateTimestamp"),
            Some(created),
            "a new object was updated when it was created"
        );
    }

    assert_eq!(store.get("Release", "nope").await?, None);
    assert_eq!(
        store.get("Application", "web-1").await?,
        None,
        "names are per kind"
    );

    let all = store.list(&list("Release", None, None, 100)).await?;
    assert_eq!(names(&all), ["web-1", "api-1", "web-2"], "creation order");
    assert_eq!(all.next, None);
    let web = store.list(&list("Release", Some("web"), None, 100)).await?;
    assert_eq!(names(&web), ["web-1", "web-2"]);
    let nobody = store.list(&list("Release", Some("nobody"), None, 100)).await?;
    assert!(nobody.items.is_empty());
    let apps = store.list(&list("Application", None, None, 100)).await?;
    assert_eq!(names(&apps), ["web"]);
    let none = store.list(&list("Cluster", None, None, 100)).await?;
    assert_eq!(none, Page::default());
    Ok(())
}

/// Lists page through a cursor that survives deletes, with and without an owner, and clamp
/// their limit to 1..=1000.
pub async fn list_pages(store: &dyn Store) -> Result<(), StoreError> {
    for i in 0..5 {
        let owner = if i % 2 == 0 { "even" } else { "odd" };
        store
            .commit(
                vec![
                    create("Release", &format!("r{i}"), Some(owner)),
                    create("Deployment", &format!("d{i}"), Some(owner)),
                ],
                vec![],
            )
            .await?;
    }

    let first = store.list(&list("Release", None, None, 2)).await?;
    assert_eq!(names(&first), ["r0", "r1"]);
    assert!(first.next.is_some(), "more rows, so a cursor");
    let second = store.list(&list("Release", None, first.next, 2)).await?;
    assert_eq!(names(&second), ["r2", "r3"]);
    let third = store.list(&list("Release", None, second.next, 2)).await?;
    assert_eq!(names(&third), ["r4"]);
    assert_eq!(third.next, None, "last page has no cursor");

    let exact = store.list(&list("Release", None, None, 5)).await?;
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next, None, "a full last page has no cursor");
    let four = store.list(&list("Release", None, None, 4)).await?;
    assert_eq!(names(&four), ["r0", "r1", "r2", "r3"]);
    let rest = store.list(&list("Release", None, four.next, 4)).await?;
    assert_eq!(names(&rest), ["r4"]);
    assert_eq!(rest.next, None);

    let even = store.list(&list("Release", Some("even"), None, 2)).await?;
    assert_eq!(names(&even), ["r0", "r2"]);
    let even_rest = store.list(&list("Release", Some("even"), even.next, 2)).await?;
    assert_eq!(names(&even_rest), ["r4"]);
    assert_eq!(even_rest.next, None);

    let zero = store.list(&list("Release", None, None, 0)).await?;
    assert_eq!(names(&zero), ["r0"], "a limit of 0 is raised to 1");
    assert!(zero.next.is_some());
    let huge = store.list(&list("Release", None, None, u32::MAX)).await?;
    assert_eq!(
        huge.items.len(),
        5,
        "a huge limit is lowered to 1000, which holds all"
    );
    assert_eq!(huge.next, None);
    let beyond = store.list(&list("Release", None, Some(u64::MAX), 10)).await?;
    assert!(beyond.items.is_empty(), "a cursor past the end lists nothing");

    // The cursor of a deleted object still positions the next page.
    let page = store.list(&list("Release", None, None, 2)).await?;
    store.commit(vec![delete("Release", "r1", None)], vec![]).await?;
    let after_delete = store.list(&list("Release", None, page.next, 10)).await?;
    assert_eq!(names(&after_delete), ["r2", "r3", "r4"]);

    // A name reused after a delete is a new object: it lists last.
    store
        .commit(vec![create("Release", "r1", Some("odd"))], vec![])
        .await?;
    let all = store.list(&list("Release", None, None, 10)).await?;
    assert_eq!(names(&all), ["r0", "r2", "r3", "r4", "r1"]);
    Ok(())
}

/// Creating an object that exists fails with `AlreadyExists` and changes nothing.
pub async fn create_existing_fails(store: &dyn Store) -> Result<(), StoreError> {
    let first = store
        .commit(vec![create("Application", "web", None)], vec![])
        .await?;
    let before = store.get("Application", "web").await?;
    let again = store
        .commit(
            vec![Write::Create {
                kind: "Application".to_owned(),
                name: "web".to_owned(),
                owner: None,
                document: document("Application", "web", json!({ "changed": true })),
            }],
            vec![event_about("web", "Created")],
        )
        .await;
    assert!(
        matches!(&again, Err(StoreError::AlreadyExists { kind, name }) if kind == "Application" && name == "web"),
        "create of an existing object: {again:?}"
    );
    assert_eq!(
        store.get("Application", "web").await?,
        before,
        "the object is unchanged"
    );
    assert_eq!(
        version(before.as_ref().unwrap_or(&Value::Null)),
        Some(first.revision)
    );
    assert_eq!(store.last_event().await?, 0, "no event was appended");
    Ok(())
}

/// A replace keeps the creation time, owner and list position, bumps the version and the
/// update time, and ignores bookkeeping sent by the caller.
pub async fn replace_keeps_creation(store: &dyn Store) -> Result<(), StoreError> {
    let created = store
        .commit(
            vec![
                create("Release", "web-1", Some("web")),
                create("Release", "web-2", Some("web")),
            ],
            vec![],
        )
        .await?;
    let original = store.get("Release", "web-1").await?.unwrap_or(Value::Null);

    let mut sent = document("Release", "web-1", json!({ "image": "web:2" }));
    sent["metadata"]["resourceVersion"] = json!("999");
    sent["metadata"]["creationTimestamp"] = json!("1999-01-01T00:00:00Z");
    sent["metadata"]["labels"] = json!({ "tier": "web" });
    let replaced = store
        .commit(
            vec![Write::Replace {
                kind: "Release".to_owned(),
                name: "web-1".to_owned(),
                document: sent,
                expected_version: Some(created.revision),
            }],
            vec![],
        )
        .await?;
    assert!(replaced.revision > created.revision, "the revision grows");

    let read = store.get("Release", "web-1").await?.unwrap_or(Value::Null);
    assert_eq!(
        replaced.documents,
        vec![Some(read.clone())],
        "commit returns what get reads"
    );
    assert_eq!(
        read["spec"],
        json!({ "image": "web:2" }),
        "the new document is stored"
    );
    assert_eq!(read["metadata"]["labels"], json!({ "tier": "web" }));
    assert_eq!(
        version(&read),
        Some(replaced.revision),
        "resourceVersion is the new revision"
    );
    assert_eq!(
        meta(&read, "creationTimestamp"),
        meta(&original, "creationTimestamp"),
        "creationTimestamp is kept from the stored object, not taken from the caller"
    );
    let (Some(creation), Some(update)) = (time(&read, "creationTimestamp"), time(&read, "updateTimestamp"))
    else {
        return Err(StoreError::Backend {
            message: format!("timestamps missing or not RFC 3339: {read}"),
        });
    };
    assert!(update >= creation, "updated {update} before created {creation}");

    let listed = store.list(&list("Release", Some("web"), None, 10)).await?;
    assert_eq!(
        names(&listed),
        ["web-1", "web-2"],
        "owner and creation order are kept"
    );
    assert_eq!(listed.items.first(), Some(&read));
    Ok(())
}

/// A replace or delete at a stale version fails with `Conflict` and changes nothing; at the
/// current version it succeeds.
pub async fn stale_version_conflicts(store: &dyn Store) -> Result<(), StoreError> {
    let v1 = store
        .commit(vec![create("Application", "web", None)], vec![])
        .await?
        .revision;
    let v2 = store
        .commit(
            vec![replace("Application", "web", json!({ "n": 2 }), Some(v1))],
            vec![],
        )
        .await?
        .revision;
    let current = store.get("Application", "web").await?;
    let last = store.last_event().await?;

    let stale = store
        .commit(
            vec![replace("Application", "web", json!({ "n": 3 }), Some(v1))],
            vec![event_about("web", "Updated")],
        )
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { kind, name, expected, actual })
            if kind == "Application" && name == "web" && *expected == v1 && *actual == v2),
        "replace at a stale version: {stale:?}"
    );
    let stale_delete = store
        .commit(
            vec![delete("Application", "web", Some(v1))],
            vec![event_about("web", "Deleted")],
        )
        .await;
    assert!(
        matches!(&stale_delete, Err(StoreError::Conflict { expected, actual, .. })
            if *expected == v1 && *actual == v2),
        "delete at a stale version: {stale_delete:?}"
    );
    assert_eq!(store.get("Application", "web").await?, current, "nothing changed");
    assert_eq!(store.last_event().await?, last, "no event was appended");

    let v3 = store
        .commit(
            vec![replace("Application", "web", json!({ "n": 3 }), Some(v2))],
            vec![],
        )
        .await?
        .revision;
    assert!(v3 > v2);
    store
        .commit(vec![delete("Application", "web", Some(v3))], vec![])
        .await?;
    assert_eq!(store.get("Application", "web").await?, None);
    Ok(())
}

/// When one write of a commit fails, no write of it and none of its events are kept.
pub async fn failed_commit_writes_nothing(store: &dyn Store) -> Result<(), StoreError> {
    let first = store
        .commit(
            vec![create("Application", "web", None)],
            vec![event_about("web", "Created")],
        )
        .await?;
    let web = store.get("Application", "web").await?;
    let last = store.last_event().await?;

    // The first write would succeed, the second fails.
    let missing = store
        .commit(
            vec![
                create("Application", "fresh", None),
                replace("Application", "missing", json!({}), None),
            ],
            vec![event_about("fresh", "Created")],
        )
        .await;
    assert!(
        matches!(&missing, Err(StoreError::NotFound { kind, name }) if kind == "Application" && name == "missing"),
        "replace of a missing object: {missing:?}"
    );
    assert_eq!(
        store.get("Application", "fresh").await?,
        None,
        "the first write was undone"
    );

    let existing = store
        .commit(
            vec![
                replace("Application", "web", json!({ "changed": true }), None),
                create("Application", "web", None),
            ],
            vec![event_about("web", "Updated")],
        )
        .await;
    assert!(
        matches!(&existing, Err(StoreError::AlreadyExists { .. })),
        "create of an existing object: {existing:?}"
    );
    assert_eq!(
        store.get("Application", "web").await?,
        web,
        "the replace was undone"
    );

    assert_eq!(
        store.last_event().await?,
        last,
        "no event of a failed commit was appended"
    );
    assert_eq!(events_after(store, last).await?, vec![]);
    let apps = store.list(&list("Application", None, None, 10)).await?;
    assert_eq!(names(&apps), ["web"]);

    let next = store
        .commit(vec![create("Application", "fresh", None)], vec![])
        .await?;
    assert!(
        next.revision > first.revision,
        "revisions keep growing after a failure"
    );
    Ok(())
}

/// A delete removes the object; deleting or replacing a missing object fails with
/// `NotFound`; the name can be created again.
pub async fn delete_removes(store: &dyn Store) -> Result<(), StoreError> {
    store
        .commit(
            vec![
                create("Release", "web-1", Some("web")),
                create("Release", "web-2", Some("web")),
            ],
            vec![],
        )
        .await?;
    let old = store.get("Release", "web-1").await?.unwrap_or(Value::Null);
    let deleted = store
        .commit(vec![delete("Release", "web-1", None)], vec![])
        .await?;
    assert_eq!(deleted.documents, vec![None], "a delete stores no document");
    assert_eq!(store.get("Release", "web-1").await?, None);
    let listed = store.list(&list("Release", Some("web"), None, 10)).await?;
    assert_eq!(names(&listed), ["web-2"]);

    let again = store.commit(vec![delete("Release", "web-1", None)], vec![]).await;
    assert!(
        matches!(&again, Err(StoreError::NotFound { kind, name }) if kind == "Release" && name == "web-1"),
        "delete of a missing object: {again:?}"
    );
    let replace_missing = store
        .commit(vec![replace("Release", "web-1", json!({}), None)], vec![])
        .await;
    assert!(
        matches!(&replace_missing, Err(StoreError::NotFound { .. })),
        "replace of a missing object: {replace_missing:?}"
    );

    let recreated = store
        .commit(vec![create("Release", "web-1", Some("web"))], vec![])
        .await?;
    let new = store.get("Release", "web-1").await?.unwrap_or(Value::Null);
    assert_eq!(version(&new), Some(recreated.revision));
    assert!(recreated.revision > deleted.revision);
    assert!(
        time(&new, "creationTimestamp") >= time(&old, "creationTimestamp"),
        "a re-created object has a new creation time"
    );
    Ok(())
}

/// Every write of one commit carries the same, new revision.
pub async fn writes_share_revision(store: &dyn Store) -> Result<(), StoreError> {
    let first = store
        .commit(vec![create("Application", "a", None)], vec![])
        .await?;
    let second = store
        .commit(
            vec![
                create("Application", "b", None),
                replace("Application", "a", json!({ "n": 2 }), Some(first.revision)),
                create("Release", "a-1", Some("a")),
            ],
            vec![],
        )
        .await?;
    assert!(second.revision > first.revision);
    assert_eq!(second.documents.len(), 3);
    for stored in &second.documents {
        let stored = stored.as_ref().unwrap_or(&Value::Null);
        assert_eq!(version(stored), Some(second.revision), "{stored}");
    }
    for (kind, name) in [("Application", "a"), ("Application", "b"), ("Release", "a-1")] {
        let read = store.get(kind, name).await?.unwrap_or(Value::Null);
        assert_eq!(version(&read), Some(second.revision), "{kind}/{name}");
    }
    // A commit of events alone still moves the revision on.
    let third = store.commit(vec![], vec![event_about("a", "Noted")]).await?;
    assert!(third.revision > second.revision);
    Ok(())
}

/// A document that is not a JSON object cannot be stored, and the commit writes nothing.
pub async fn rejects_non_object_documents(store: &dyn Store) -> Result<(), StoreError> {
    for (name, document) in [
        ("scalar", json!("just a string")),
        ("array", json!([1, 2])),
        ("bad-metadata", json!({ "metadata": "not an object" })),
    ] {
        let result = store
            .commit(
                vec![
                    create("Application", "ok", None),
                    Write::Create {
                        kind: "Application".to_owned(),
                        name: name.to_owned(),
                        owner: None,
                        document,
                    },
                ],
                vec![event_about(name, "Created")],
            )
            .await;
        assert!(result.is_err(), "{name} was stored: {result:?}");
        assert_eq!(store.get("Application", name).await?, None);
        assert_eq!(
            store.get("Application", "ok").await?,
            None,
            "the commit was undone"
        );
    }
    assert_eq!(store.last_event().await?, 0);
    Ok(())
}

// === Events ===

/// Events get strictly increasing positions, read back exactly as recorded, in order, after
/// a position, limited, and filtered by application.
pub async fn events_in_order(store: &dyn Store) -> Result<(), StoreError> {
    assert_eq!(store.last_event().await?, 0, "an empty log");
    assert_eq!(events_after(store, 0).await?, vec![]);

    let first = store
        .commit(
            vec![create("Application", "web", None)],
            vec![event_about("web", "Created"), event_about("api", "Created")],
        )
        .await?;
    let second = store
        .commit(
            vec![],
            vec![
                NewEvent::normal("Started", "Server", "berth", "berth", "the server started"),
                NewEvent::warning(
                    "DriftCorrected",
                    "Deployment",
                    "web-prod",
                    "berth",
                    "replaced a replica",
                )
                .about("web", Some("prod"))
                .on_cluster("local"),
            ],
        )
        .await?;
    let recorded: Vec<Event> = first.events.iter().chain(&second.events).cloned().collect();
    assert_eq!(recorded.len(), 4);
    assert!(
        recorded.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "seq strictly increases: {:?}",
        recorded.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    assert!(recorded.iter().all(|e| e.seq > 0), "positions start after 0");
    assert_eq!(
        recorded[1].event,
        event_about("api", "Created"),
        "the event is kept as given"
    );

    let all = events_after(store, 0).await?;
    assert_eq!(all, recorded, "events read back exactly as commit returned them");
    let last = recorded.last().map_or(0, |e| e.seq);
    assert_eq!(store.last_event().await?, last);

    let after_first = events_after(store, recorded[0].seq).await?;
    assert_eq!(after_first, recorded[1..], "only events after the position");
    assert_eq!(events_after(store, last).await?, vec![]);

    let web = store
        .events(&EventQuery {
            after: 0,
            limit: 100,
            application: Some("web".to_owned()),
        })
        .await?;
    assert_eq!(
        web,
        vec![recorded[0].clone(), recorded[3].clone()],
        "filtered by application"
    );
    let web_later = store
        .events(&EventQuery {
            after: recorded[0].seq,
            limit: 100,
            application: Some("web".to_owned()),
        })
        .await?;
    assert_eq!(web_later, vec![recorded[3].clone()]);

    let two = store
        .events(&EventQuery {
            after: 0,
            limit: 2,
            application: None,
        })
        .await?;
    assert_eq!(two, recorded[..2]);
    let zero = store
        .events(&EventQuery {
            after: 0,
            limit: 0,
            application: None,
        })
        .await?;
    assert_eq!(zero, recorded[..1], "a limit of 0 is raised to 1");
    Ok(())
}

/// Waiting for events after a position that the log already passed returns at once.
pub async fn wait_returns_when_events_exist(store: &dyn Store) -> Result<(), StoreError> {
    let commit = store.commit(vec![], vec![event_about("web", "Created")]).await?;
    let seq = commit.events.first().map_or(0, |e| e.seq);
    let waited = tokio::time::timeout(
        PROMPTLY,
        store.wait_for_events(seq.saturating_sub(1), Duration::from_secs(3600)),
    )
    .await;
    assert!(
        waited.is_ok(),
        "wait_for_events did not see an event already recorded"
    );
    Ok(())
}

/// Waiting with no new event returns when the timeout passes, not before.
pub async fn wait_times_out(store: &dyn Store) -> Result<(), StoreError> {
    store.commit(vec![], vec![event_about("web", "Created")]).await?;
    let last = store.last_event().await?;
    // A commit without events must not end the wait either.
    store
        .commit(vec![create("Application", "web", None)], vec![])
        .await?;

    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let waited = tokio::time::timeout(PROMPTLY, store.wait_for_events(last, timeout)).await;
    let elapsed = started.elapsed();
    assert!(waited.is_ok(), "wait_for_events ignored its timeout");
    assert!(
        elapsed >= timeout,
        "returned after {elapsed:?}, before the {timeout:?} timeout"
    );
    assert_eq!(store.last_event().await?, last);
    Ok(())
}

/// A waiter wakes promptly when another task commits an event after its position.
pub async fn wait_wakes_on_commit(store: Arc<dyn Store>) -> Result<(), StoreError> {
    store.commit(vec![], vec![event_about("web", "Created")]).await?;
    let after = store.last_event().await?;
    let waiter = tokio::spawn({
        let store = Arc::clone(&store);
        // Far longer than PROMPTLY: only a wake-up can end it in time.
        async move { store.wait_for_events(after, Duration::from_secs(3600)).await }
    });
    // Let the waiter reach its wait, so that the wake-up (not the first check) is what is
    // tested most of the time; the test passes either way.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "the waiter returned with no new event");

    let commit = store.commit(vec![], vec![event_about("api", "Created")]).await?;
    let joined = tokio::time::timeout(PROMPTLY, waiter).await;
    assert!(
        matches!(joined, Ok(Ok(()))),
        "the waiter did not wake within {PROMPTLY:?} of the commit: {joined:?}"
    );
    let seen = events_after(store.as_ref(), after).await?;
    assert_eq!(seen, commit.events);
    Ok(())
}

/// Commits from many tasks at once all succeed, each with its own revision, and every
/// object and event is kept.
pub async fn concurrent_commits(store: Arc<dyn Store>) -> Result<(), StoreError> {
    const TASKS: usize = 8;
    const COMMITS: usize = 10;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..COMMITS {
                let name = format!("app-{task}-{i}");
                let commit = store
                    .commit(
                        vec![create("Application", &name, None)],
                        vec![event_about(&name, "Created")],
                    )
                    .await?;
                let stored = commit.documents.first().cloned().flatten().unwrap_or(Value::Null);
                assert_eq!(version(&stored), Some(commit.revision), "{name}");
                revisions.push(commit.revision);
            }
            Ok::<_, StoreError>(revisions)
        });
    }
    let mut revisions = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        assert!(joined.is_ok(), "a committing task failed: {joined:?}");
        if let Ok(task_revisions) = joined {
            revisions.extend(task_revisions?);
        }
    }
    assert_eq!(
        revisions.len(),
        TASKS * COMMITS,
        "every commit has its own revision"
    );

    let apps = store.list(&list("Application", None, None, 1000)).await?;
    assert_eq!(apps.items.len(), TASKS * COMMITS);
    let events = events_after(store.as_ref(), 0).await?;
    assert_eq!(events.len(), TASKS * COMMITS);
    assert!(events.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(store.last_event().await?, events.last().map_or(0, |e| e.seq));
    Ok(())
}

// === Tokens ===

/// Tokens are stored by hash, found by hash, replaced by hash, counted, listed by
/// subject and revoked by id; each change is audited.
pub async fn tokens(store: &dyn Store) -> Result<(), StoreError> {
    assert_eq!(store.count_tokens().await?, 0);
    assert_eq!(store.find_token("00").await?, None);

    let at = |micros: i64| Utc.timestamp_micros(1_700_000_000_000_000 + micros).single();
    let Some(created_at) = at(123_456) else {
        return Err(StoreError::Backend {
            message: "test time out of range".to_owned(),
        });
    };
    let admin = TokenRecord {
        id: "a1".to_owned(),
        name: "bootstrap".to_owned(),
        subject: "admin".to_owned(),
        hash: "aa".repeat(32),
        created_at,
        expires_at: None,
        revoked_at: None,
    };
    let ci = TokenRecord {
        id: "c1".to_owned(),
        name: "ci".to_owned(),
        subject: "robot".to_owned(),
        hash: "bb".repeat(32),
        created_at,
        expires_at: at(5_000_000),
        revoked_at: None,
    };
    let by = Change::new("admin", "token.create");
    store.put_token(admin.clone(), &by).await?;
    store.put_token(ci.clone(), &by).await?;
    assert_eq!(store.count_tokens().await?, 2);
    assert_eq!(store.find_token(&admin.hash).await?, Some(admin.clone()));
    assert_eq!(store.find_token(&ci.hash).await?, Some(ci.clone()));
    assert_eq!(store.find_token(&"cc".repeat(32)).await?, None);
    assert_eq!(store.list_tokens(Some("robot")).await?, std::slice::from_ref(&ci));
    assert_eq!(store.list_tokens(None).await?.len(), 2);

    let renamed = TokenRecord {
        name: "renamed".to_owned(),
        subject: "root".to_owned(),
        created_at: at(999_999).unwrap_or(created_at),
        ..admin
    };
    store.put_token(renamed.clone(), &by).await?;
    assert_eq!(store.count_tokens().await?, 2, "same hash: replaced, not added");
    assert_eq!(store.find_token(&renamed.hash).await?, Some(renamed));

    let revoke_at = at(2_000_000).unwrap_or(created_at);
    let revoked = store
        .revoke_token("c1", revoke_at, &Change::new("admin", "token.revoke"))
        .await?;
    assert_eq!(revoked.revoked_at, Some(revoke_at));
    assert_eq!(store.find_token(&ci.hash).await?, Some(revoked.clone()));
    assert!(!revoked.is_valid_at(revoke_at));
    let again = store
        .revoke_token("c1", at(3_000_000).unwrap_or(created_at), &by)
        .await?;
    assert_eq!(again.revoked_at, Some(revoke_at), "the first revocation stands");
    assert!(matches!(
        store.revoke_token("nope", revoke_at, &by).await,
        Err(StoreError::NotFound { .. })
    ));

    let log = all_audit(store).await?;
    let summary: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.name.as_str(), e.operation.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("a1", "create", "token.create"),
            ("c1", "create", "token.create"),
            ("a1", "update", "token.create"),
            ("c1", "update", "token.revoke"),
        ],
        "every token change is audited, and a repeated revocation changes nothing"
    );
    assert!(log.iter().all(|e| e.kind == "Token"));
    Ok(())
}

// === Audit ===

/// Every audit entry, oldest first.
async fn all_audit(store: &dyn Store) -> Result<Vec<AuditEntry>, StoreError> {
    let mut all = Vec::new();
    loop {
        let page = store
            .audit(&AuditQuery {
                after: all.last().map_or(0, |e: &AuditEntry| e.seq),
                limit: 2,
                ..AuditQuery::default()
            })
            .await?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Verifies the whole stored log.
async fn verify(store: &dyn Store) -> Result<Verification, StoreError> {
    store.verify_audit(None).await
}

/// Every write of a commit is audited in the same transaction: actor, action,
/// operation, object, digests before and after, chained; a failed commit leaves none.
pub async fn audit_records_every_write(store: &dyn Store) -> Result<(), StoreError> {
    let empty = verify(store).await?;
    assert!(empty.ok && empty.entries == 0, "{:?}", empty.messages);
    let alice = Change::new("alice", "apply");
    let created = store
        .commit_as(
            &alice,
            vec![
                create("Application", "web", None),
                create("Release", "web-1", Some("web")),
            ],
            vec![],
        )
        .await?;
    let replaced = store
        .commit_as(
            &Change::new("bob", "scale"),
            vec![replace("Application", "web", json!({"replicas": 3}), None)],
            vec![],
        )
        .await?;
    // By the first event's actor and reason when no change is given.
    store
        .commit(
            vec![delete("Release", "web-1", None)],
            vec![event_about("web", "Pruned")],
        )
        .await?;
    let failed = store
        .commit_as(&alice, vec![create("Application", "web", None)], vec![])
        .await;
    assert!(matches!(failed, Err(StoreError::AlreadyExists { .. })));
    // Event-only commits change no object and add no entry.
    store.commit(vec![], vec![event_about("web", "Noted")]).await?;

    let log = all_audit(store).await?;
    let rows: Vec<(u64, &str, &str, &str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e.seq,
                e.actor.as_str(),
                e.action.as_str(),
                e.operation.as_str(),
                e.kind.as_str(),
                e.name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "alice", "apply", "create", "Application", "web"),
            (2, "alice", "apply", "create", "Release", "web-1"),
            (3, "bob", "scale", "update", "Application", "web"),
            (4, "tester", "Pruned", "delete", "Release", "web-1"),
        ]
    );
    let digest = |v: &Option<Value>| v.as_ref().map(|d| berth_core::audit::digest(&d.to_string()));
    assert_eq!(
        (log[0].before.clone(), log[0].after.clone()),
        (None, digest(&created.documents[0]))
    );
    assert_eq!(
        log[2].before, log[0].after,
        "before is the digest of the document replaced"
    );
    assert_eq!(log[2].after, digest(&replaced.documents[0]));
    assert_eq!(
        (log[3].before.clone(), log[3].after.clone()),
        (log[1].after.clone(), None)
    );
    assert_eq!(
        (log[0].revision, log[1].revision),
        (created.revision, created.revision)
    );
    assert_eq!(log[0].prev, berth_core::audit::GENESIS);
    assert!(log.windows(2).all(|w| w[1].prev == w[0].hash));

    let v = verify(store).await?;
    assert!(v.ok, "{:?}", v.messages);
    assert_eq!(v.entries, 4);
    assert_eq!(v.objects, 1, "the application is compared with its last entry");
    let checkpoint = v.checkpoint.clone().ok_or_else(|| StoreError::Backend {
        message: "an intact log hands out no checkpoint".to_owned(),
    })?;
    assert_eq!(
        (checkpoint.seq, Some(checkpoint.hash.clone())),
        (4, log.last().map(|e| e.hash.clone()))
    );
    let again = store.verify_audit(Some(&checkpoint)).await?;
    assert!(again.ok, "{:?}", again.messages);
    Ok(())
}

/// The audit log filters by actor, kind, name, action and time.
pub async fn audit_filters(store: &dyn Store) -> Result<(), StoreError> {
    for (actor, kind, name) in [
        ("alice", "Application", "a"),
        ("bob", "Team", "t"),
        ("alice", "Team", "u"),
    ] {
        store
            .commit_as(
                &Change::new(actor, "apply"),
                vec![create(kind, name, None)],
                vec![],
            )
            .await?;
    }
    let names = |log: Vec<AuditEntry>| log.into_iter().map(|e| e.name).collect::<Vec<_>>();
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    assert_eq!(
        names(store.audit(&q(|q| q.actor = Some("alice".into()))).await?),
        ["a", "u"]
    );
    assert_eq!(
        names(store.audit(&q(|q| q.kind = Some("Team".into()))).await?),
        ["t", "u"]
    );
    assert_eq!(
        names(store.audit(&q(|q| q.name = Some("t".into()))).await?),
        ["t"]
    );
    assert_eq!(
        names(store.audit(&q(|q| q.action = Some("other".into()))).await?),
        Vec::<String>::new()
    );
    assert_eq!(names(store.audit(&q(|q| q.after = 2)).await?), ["u"]);
    let all = store.audit(&q(|_| {})).await?;
    let first = all.first().map(|e| e.time).unwrap_or_default();
    let mut later = q(|_| {});
    later.since = Some(first + chrono::Duration::days(1));
    assert!(store.audit(&later).await?.is_empty());
    let mut earlier = q(|_| {});
    earlier.until = Some(first + chrono::Duration::days(1));
    earlier.since = Some(first - chrono::Duration::days(1));
    assert_eq!(store.audit(&earlier).await?.len(), 3);
    Ok(())
}
