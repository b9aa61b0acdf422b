//! The targeted queries of [`Store`](berth_core::ports::Store) in SQL.
//!
//! Each query reads through one of the partial indexes of migration 0004 over the
//! generated columns (`number`, `environment`, `phase`, …) and repeats that index's
//! `WHERE` clause word for word: SQLite uses a partial index only when the query's
//! condition implies the index's. [`PLANS`] lists every statement with sample arguments,
//! for the test that checks none of them scans `objects`.

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

crate::sql::query_functions!(sqlx::Sqlite);
