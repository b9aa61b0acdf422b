//! The targeted queries of [`Store`](berth_core::ports::Store) in SQL.
//!
//! Each query reads through one of the partial indexes of migration 0004 over the
//! generated columns (`number`, `environment`, `phase`, …) and repeats that index's
//! `WHERE` clause word for word: SQLite uses a partial index only when the query's
//! condition implies the index's. [`PLANS`] lists every statement with sample arguments,
//! for the test that checks none of them scans `objects`.

use std::collections::BTreeMap;

use berth_core::{
    objects::{DeploymentPhase, Release, ReleaseKind},
    ports::{DeploymentQuery, GoverningQuery, Page, StoreError, TeamQuery},
};
use serde_json::Value;
use sqlx::{SqlitePool, sqlite::SqliteArguments};

use super::{MAX_PAGE, backend, cursor, parse_document, to_u64};

/// The condition of the index of deployments that may govern.
macro_rules! may_govern {
    ($t:literal) => {
        concat!(
            $t,
            ".kind = 'Deployment' AND ",
            $t,
            ".phase IS NOT 'Failed' AND ",
            $t,
            ".retired_at IS NULL"
        )
    };
}

/// The governing deployment of (application, environment).
pub(super) const GOVERNING: &str = concat!(
    "SELECT d.name, d.document FROM objects d INDEXED BY deployments_governing WHERE ",
    may_govern!("d"),
    " AND d.owner = ?1 AND d.environment = ?2 ORDER BY d.number DESC LIMIT 1"
);

/// The last succeeded deployment of (application, environment).
pub(super) const LAST_SUCCEEDED: &str = "SELECT name, document FROM objects INDEXED BY deployments_succeeded \
     WHERE kind = 'Deployment' AND phase = 'Succeeded' AND retired_at IS NULL \
     AND owner = ?1 AND environment = ?2 ORDER BY number DESC LIMIT 1";

/// Deployments of (application, environment), newest first, below a number.
pub(super) const DEPLOYMENTS: &str = "SELECT number, name, document FROM objects INDEXED BY deployments_by_number \
     WHERE kind = 'Deployment' AND owner = ?1 AND environment = ?2 AND number < ?3 \
     ORDER BY number DESC LIMIT ?4";

/// No newer deployment of the same key may govern.
macro_rules! newest_of_key {
    () => {
        concat!(
            " AND NOT EXISTS (SELECT 1 FROM objects n INDEXED BY deployments_governing WHERE ",
            may_govern!("n"),
            " AND n.owner = d.owner AND n.environment = d.environment AND n.number > d.number)"
        )
    };
}

/// Every governing deployment in creation order.
pub(super) const GOVERNING_ALL: &str = concat!(
    "SELECT d.id, d.name, d.document FROM objects d INDEXED BY deployments_governing_by_id WHERE ",
    may_govern!("d"),
    " AND d.id > ?1",
    newest_of_key!(),
    " ORDER BY d.id LIMIT ?2"
);

/// How many governing deployments are in each phase (`NULL`: none recorded). It reads
/// the whole of `deployments_governing` (every deployment that may govern, and only
/// those): counting them all is the point.
pub(super) const GOVERNING_BY_PHASE: &str = concat!(
    "SELECT d.phase, count(*) FROM objects d INDEXED BY deployments_governing WHERE ",
    may_govern!("d"),
    newest_of_key!(),
    " GROUP BY d.phase"
);

/// The governing deployments of one application in creation order (a few: one per
/// environment, sorted after reading).
pub(super) const GOVERNING_OF_APPLICATION: &str = concat!(
    "SELECT d.id, d.name, d.document FROM objects d INDEXED BY deployments_governing WHERE ",
    may_govern!("d"),
    " AND d.owner = ?1 AND d.id > ?2",
    newest_of_key!(),
    " ORDER BY d.id LIMIT ?3"
);

/// Deployments of a set of releases (a JSON array of numbers) of one application.
pub(super) const OF_RELEASES: &str = "SELECT name, document FROM objects INDEXED BY deployments_by_release \
     WHERE kind = 'Deployment' AND owner = ?1 AND release IN (SELECT value FROM json_each(?2)) \
     ORDER BY release, id";

/// The newest release of an application.
pub(super) const NEWEST_RELEASE: &str = "SELECT name, document FROM objects INDEXED BY releases_by_number \
     WHERE kind = 'Release' AND owner = ?1 ORDER BY number DESC LIMIT 1";

/// The newest release of an application a build made.
pub(super) const NEWEST_BUILT_RELEASE: &str = "SELECT name, document FROM objects INDEXED BY releases_built \
     WHERE kind = 'Release' AND built AND owner = ?1 ORDER BY number DESC LIMIT 1";

/// Releases of an application with one digest, newest first.
pub(super) const RELEASES_WITH_DIGEST: &str = "SELECT name, document FROM objects INDEXED BY releases_by_digest \
     WHERE kind = 'Release' AND owner = ?1 AND digest = ?2 ORDER BY number DESC";

/// Releases of an application that recorded one template hash.
pub(super) const RELEASES_WITH_TEMPLATE: &str = "SELECT name, document FROM objects INDEXED BY releases_by_template \
     WHERE kind = 'Release' AND owner = ?1 AND template_hash = ?2 ORDER BY number DESC";

/// Releases of an application that recorded no template hash (made by an older Berth).
pub(super) const RELEASES_WITHOUT_TEMPLATE: &str = "SELECT name, document FROM objects \
     INDEXED BY releases_by_template \
     WHERE kind = 'Release' AND owner = ?1 AND template_hash IS NULL ORDER BY number DESC";

/// The release of each governing deployment in an environment of a team's applications:
/// from the team's applications (`CROSS JOIN` keeps that order) to each one's governing
/// deployment there, to its release.
pub(super) const TEAM_RELEASES: &str = concat!(
    "SELECT r.name, r.document FROM objects a INDEXED BY applications_by_team \
     CROSS JOIN objects d INDEXED BY deployments_governing ON ",
    may_govern!("d"),
    " AND d.owner = a.name AND d.environment = ?2",
    newest_of_key!(),
    " CROSS JOIN objects r INDEXED BY releases_by_number \
     ON r.kind = 'Release' AND r.owner = a.name AND r.number = d.release \
     WHERE a.kind = 'Application' AND a.team = ?1 ORDER BY a.id"
);

/// Applications of a team in creation order.
pub(super) const TEAM_APPLICATIONS: &str = "SELECT id, name, document FROM objects INDEXED BY applications_by_team \
     WHERE kind = 'Application' AND team = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

/// The newest build of an application for a key that did not fail.
pub(super) const REUSABLE_BUILD: &str = "SELECT name, document FROM objects INDEXED BY builds_by_revision \
     WHERE kind = 'Build' AND owner = ?1 AND revision = ?2 AND phase IS NOT 'Failed' \
     AND json_extract(document, '$.spec.builderHash') = ?3 ORDER BY number DESC LIMIT 1";

/// Builds not finished, in creation order.
pub(super) const UNFINISHED_BUILDS: &str = "SELECT id, name, document FROM objects INDEXED BY builds_unfinished \
     WHERE kind = 'Build' AND phase IN ('Pending', 'Running') AND id > ?1 ORDER BY id LIMIT ?2";

/// The highest number given out per kind and application (and environment).
pub(super) const LAST_NUMBER: &str =
    "SELECT last FROM numbers WHERE kind = ?1 AND application = ?2 AND environment = ?3";

/// Every query with sample arguments and the index it must search, for the plan test.
#[cfg(test)]
pub(super) const PLANS: &[(&str, &str, &[&str], &str)] = &[
    (
        "governing deployment",
        GOVERNING,
        &["web", "qa"],
        "deployments_governing",
    ),
    (
        "last succeeded deployment",
        LAST_SUCCEEDED,
        &["web", "qa"],
        "deployments_succeeded",
    ),
    (
        "deployments",
        DEPLOYMENTS,
        &["web", "qa", "9", "10"],
        "deployments_by_number",
    ),
    (
        "every governing deployment",
        GOVERNING_ALL,
        &["0", "10"],
        "deployments_governing_by_id",
    ),
    (
        "governing deployments of an application",
        GOVERNING_OF_APPLICATION,
        &["web", "0", "10"],
        "deployments_governing",
    ),
    (
        "deployments of releases",
        OF_RELEASES,
        &["web", "[1,2]"],
        "deployments_by_release",
    ),
    ("newest release", NEWEST_RELEASE, &["web"], "releases_by_number"),
    (
        "newest built release",
        NEWEST_BUILT_RELEASE,
        &["web"],
        "releases_built",
    ),
    (
        "releases with a digest",
        RELEASES_WITH_DIGEST,
        &["web", "sha256:1"],
        "releases_by_digest",
    ),
    (
        "releases with a template",
        RELEASES_WITH_TEMPLATE,
        &["web", "sha256:1"],
        "releases_by_template",
    ),
    (
        "releases without a template hash",
        RELEASES_WITHOUT_TEMPLATE,
        &["web"],
        "releases_by_template",
    ),
    (
        "team releases",
        TEAM_RELEASES,
        &["pay", "qa"],
        "applications_by_team",
    ),
    (
        "team applications",
        TEAM_APPLICATIONS,
        &["pay", "0", "10"],
        "applications_by_team",
    ),
    ("last number", LAST_NUMBER, &["Release", "web", ""], "PRIMARY KEY"),
    (
        "reusable build",
        REUSABLE_BUILD,
        &["web", "abc", "h"],
        "builds_by_revision",
    ),
    (
        "unfinished builds",
        UNFINISHED_BUILDS,
        &["0", "10"],
        "builds_unfinished",
    ),
];

/// Queries that read one partial index whole, because they aggregate over every object
/// it holds, with sample arguments and that index, for the plan test: their first step
/// scans that index and no other step reads everything.
#[cfg(test)]
pub(super) const WHOLE_INDEX_PLANS: &[(&str, &str, &[&str], &str)] = &[(
    "governing deployments by phase",
    GOVERNING_BY_PHASE,
    &[],
    "deployments_governing",
)];

/// Runs `sql` and decodes its `(name, document)` rows.
async fn documents(
    pool: &SqlitePool,
    doing: &str,
    kind: &str,
    query: sqlx::query::QueryAs<'_, sqlx::Sqlite, (String, String), SqliteArguments>,
) -> Result<Vec<Value>, StoreError> {
    let rows = query.fetch_all(pool).await.map_err(|e| backend(doing, &e))?;
    rows.iter()
        .map(|(name, text)| parse_document(kind, name, text))
        .collect()
}

/// The first document of [`documents`], if any.
async fn first(
    pool: &SqlitePool,
    doing: &str,
    kind: &str,
    query: sqlx::query::QueryAs<'_, sqlx::Sqlite, (String, String), SqliteArguments>,
) -> Result<Option<Value>, StoreError> {
    Ok(documents(pool, doing, kind, query).await?.into_iter().next())
}

/// A page of `(cursor, name, document)` rows fetched with one row more than `limit`.
fn page(kind: &str, rows: Vec<(i64, String, String)>, limit: u32) -> Result<Page, StoreError> {
    let more = rows.len() > limit as usize;
    let mut page = Page::default();
    for (at, name, text) in rows.into_iter().take(limit as usize) {
        page.items.push(parse_document(kind, &name, &text)?);
        if more {
            page.next = Some(to_u64(at, "cursor")?);
        }
    }
    Ok(page)
}

/// The page size asked for, within bounds, and the number of rows to fetch (one more,
/// to know whether another page follows).
fn bounds(limit: u32) -> (u32, i64) {
    let limit = limit.clamp(1, MAX_PAGE);
    (limit, i64::from(limit) + 1)
}

pub(super) async fn governing(pool: &SqlitePool, app: &str, env: &str) -> Result<Option<Value>, StoreError> {
    let doing = format!("reading the governing deployment of '{app}' in '{env}'");
    first(
        pool,
        &doing,
        "Deployment",
        sqlx::query_as(GOVERNING).bind(app).bind(env),
    )
    .await
}

pub(super) async fn last_succeeded(
    pool: &SqlitePool,
    app: &str,
    env: &str,
) -> Result<Option<Value>, StoreError> {
    let doing = format!("reading the last succeeded deployment of '{app}' in '{env}'");
    first(
        pool,
        &doing,
        "Deployment",
        sqlx::query_as(LAST_SUCCEEDED).bind(app).bind(env),
    )
    .await
}

pub(super) async fn deployments(pool: &SqlitePool, query: &DeploymentQuery) -> Result<Page, StoreError> {
    let (limit, fetch) = bounds(query.limit);
    let before = query
        .before
        .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let rows: Vec<(i64, String, String)> = sqlx::query_as(DEPLOYMENTS)
        .bind(&query.application)
        .bind(&query.environment)
        .bind(before)
        .bind(fetch)
        .fetch_all(pool)
        .await
        .map_err(|e| {
            backend(
                &format!(
                    "listing deployments of '{}' in '{}'",
                    query.application, query.environment
                ),
                &e,
            )
        })?;
    page("Deployment", rows, limit)
}

pub(super) async fn governing_all(pool: &SqlitePool, query: &GoverningQuery) -> Result<Page, StoreError> {
    let (limit, fetch) = bounds(query.limit);
    let after = cursor(query.after);
    let rows: Vec<(i64, String, String)> = match &query.application {
        Some(app) => {
            sqlx::query_as(GOVERNING_OF_APPLICATION)
                .bind(app)
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await
        }
        None => {
            sqlx::query_as(GOVERNING_ALL)
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await
        }
    }
    .map_err(|e| backend("listing governing deployments", &e))?;
    page("Deployment", rows, limit)
}

pub(super) async fn governing_by_phase(
    pool: &SqlitePool,
) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
    const DOING: &str = "counting governing deployments by phase";
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(GOVERNING_BY_PHASE)
        .fetch_all(pool)
        .await
        .map_err(|e| backend(DOING, &e))?;
    let mut counts = BTreeMap::new();
    for (phase, n) in rows {
        let phase = match phase {
            None => DeploymentPhase::default(),
            Some(text) => DeploymentPhase::ALL
                .into_iter()
                .find(|p| p.as_str() == text)
                .ok_or_else(|| StoreError::Backend {
                    message: format!("{DOING}: a stored deployment has the unknown phase '{text}'"),
                })?,
        };
        *counts.entry(phase).or_insert(0) += to_u64(n, "count")?;
    }
    Ok(counts)
}

pub(super) async fn of_releases(
    pool: &SqlitePool,
    app: &str,
    releases: &[u64],
) -> Result<Vec<Value>, StoreError> {
    if releases.is_empty() {
        return Ok(Vec::new());
    }
    let numbers = Value::from(releases.to_vec()).to_string();
    let doing = format!("reading deployments of releases {numbers} of '{app}'");
    documents(
        pool,
        &doing,
        "Deployment",
        sqlx::query_as(OF_RELEASES).bind(app).bind(numbers),
    )
    .await
}

pub(super) async fn newest_release(
    pool: &SqlitePool,
    app: &str,
    built: bool,
) -> Result<Option<Value>, StoreError> {
    let (sql, doing) = if built {
        (
            NEWEST_BUILT_RELEASE,
            format!("reading the newest built release of '{app}'"),
        )
    } else {
        (NEWEST_RELEASE, format!("reading the newest release of '{app}'"))
    };
    first(pool, &doing, "Release", sqlx::query_as(sql).bind(app)).await
}

pub(super) async fn releases_with_digest(
    pool: &SqlitePool,
    app: &str,
    digest: &str,
) -> Result<Vec<Value>, StoreError> {
    let doing = format!("reading releases of '{app}' with digest {digest}");
    documents(
        pool,
        &doing,
        "Release",
        sqlx::query_as(RELEASES_WITH_DIGEST).bind(app).bind(digest),
    )
    .await
}

pub(super) async fn releases_with_template(
    pool: &SqlitePool,
    app: &str,
    hash: &str,
) -> Result<Vec<Value>, StoreError> {
    let doing = format!("reading releases of '{app}' with template {hash}");
    let mut found = documents(
        pool,
        &doing,
        "Release",
        sqlx::query_as(RELEASES_WITH_TEMPLATE).bind(app).bind(hash),
    )
    .await?;
    // Releases made before the hash was recorded: computed here, as Release::template_hash
    // does for them everywhere else.
    let legacy = documents(
        pool,
        &doing,
        "Release",
        sqlx::query_as(RELEASES_WITHOUT_TEMPLATE).bind(app),
    )
    .await?;
    for document in legacy {
        let name = document["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let release: Release = serde_json::from_value(document.clone()).map_err(|e| StoreError::Backend {
            message: format!(
                "stored {} '{name}' cannot be read: {e}",
                <ReleaseKind as berth_core::meta::Kind>::KIND
            ),
        })?;
        if release.template_hash() == hash {
            found.push(document);
        }
    }
    found.sort_by_key(|d| std::cmp::Reverse(d["spec"]["number"].as_u64()));
    Ok(found)
}

pub(super) async fn team_releases(
    pool: &SqlitePool,
    team: &str,
    env: &str,
) -> Result<Vec<Value>, StoreError> {
    let doing = format!("reading what team '{team}' runs in '{env}'");
    documents(
        pool,
        &doing,
        "Release",
        sqlx::query_as(TEAM_RELEASES).bind(team).bind(env),
    )
    .await
}

pub(super) async fn team_applications(pool: &SqlitePool, query: &TeamQuery) -> Result<Page, StoreError> {
    let (limit, fetch) = bounds(query.limit);
    let rows: Vec<(i64, String, String)> = sqlx::query_as(TEAM_APPLICATIONS)
        .bind(&query.team)
        .bind(cursor(query.after))
        .bind(fetch)
        .fetch_all(pool)
        .await
        .map_err(|e| backend(&format!("listing applications of team '{}'", query.team), &e))?;
    page("Application", rows, limit)
}

/// One more than the highest number of `kind` ever stored for `app` (and `env`).
pub(super) async fn next_number(
    pool: &SqlitePool,
    kind: &str,
    app: &str,
    env: &str,
) -> Result<u64, StoreError> {
    let last: Option<i64> = sqlx::query_scalar(LAST_NUMBER)
        .bind(kind)
        .bind(app)
        .bind(env)
        .fetch_optional(pool)
        .await
        .map_err(|e| backend(&format!("reading the next {kind} number of '{app}'"), &e))?;
    Ok(to_u64(last.unwrap_or(0), "number")?.saturating_add(1))
}

pub(super) async fn reusable_build(
    pool: &SqlitePool,
    app: &str,
    revision: &str,
    builder_hash: &str,
) -> Result<Option<Value>, StoreError> {
    let doing = format!("reading the build of '{app}' for revision {revision}");
    first(
        pool,
        &doing,
        "Build",
        sqlx::query_as(REUSABLE_BUILD)
            .bind(app)
            .bind(revision)
            .bind(builder_hash),
    )
    .await
}

pub(super) async fn unfinished_builds(
    pool: &SqlitePool,
    after: Option<u64>,
    limit: u32,
) -> Result<Page, StoreError> {
    let (limit, fetch) = bounds(limit);
    let rows: Vec<(i64, String, String)> = sqlx::query_as(UNFINISHED_BUILDS)
        .bind(cursor(after))
        .bind(fetch)
        .fetch_all(pool)
        .await
        .map_err(|e| backend("listing unfinished builds", &e))?;
    page("Build", rows, limit)
}
