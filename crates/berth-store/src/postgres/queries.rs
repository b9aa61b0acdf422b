//! The targeted queries of [`Store`](berth_core::ports::Store) in PostgreSQL's SQL.
//!
//! The same statements as SQLite's (`sqlite/queries.rs`) over the same generated
//! columns, without SQLite's `INDEXED BY` (PostgreSQL's planner picks the partial indexes
//! of the schema itself) and with `IS DISTINCT FROM` where SQLite says `IS NOT`.

/// The condition of the index of deployments that may govern.
macro_rules! may_govern {
    ($t:literal) => {
        concat!(
            $t,
            ".kind = 'Deployment' AND ",
            $t,
            ".phase IS DISTINCT FROM 'Failed' AND ",
            $t,
            ".retired_at IS NULL"
        )
    };
}

/// No newer deployment of the same key may govern.
macro_rules! newest_of_key {
    () => {
        concat!(
            " AND NOT EXISTS (SELECT 1 FROM objects n WHERE ",
            may_govern!("n"),
            " AND n.owner = d.owner AND n.environment = d.environment AND n.number > d.number)"
        )
    };
}

/// The governing deployment of (application, environment).
const GOVERNING: &str = concat!(
    "SELECT d.name, d.document FROM objects d WHERE ",
    may_govern!("d"),
    " AND d.owner = $1 AND d.environment = $2 ORDER BY d.number DESC LIMIT 1"
);

/// The last succeeded deployment of (application, environment).
const LAST_SUCCEEDED: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Deployment' AND phase = 'Succeeded' AND retired_at IS NULL \
     AND owner = $1 AND environment = $2 ORDER BY number DESC LIMIT 1";

/// Deployments of (application, environment), newest first, below a number.
const DEPLOYMENTS: &str = "SELECT number, name, document FROM objects \
     WHERE kind = 'Deployment' AND owner = $1 AND environment = $2 AND number < $3 \
     ORDER BY number DESC LIMIT $4";

/// Every governing deployment in creation order.
const GOVERNING_ALL: &str = concat!(
    "SELECT d.id, d.name, d.document FROM objects d WHERE ",
    may_govern!("d"),
    " AND d.id > $1",
    newest_of_key!(),
    " ORDER BY d.id LIMIT $2"
);

/// How many governing deployments are in each phase (`NULL`: none recorded).
const GOVERNING_BY_PHASE: &str = concat!(
    "SELECT d.phase, count(*) FROM objects d WHERE ",
    may_govern!("d"),
    newest_of_key!(),
    " GROUP BY d.phase"
);

/// The governing deployments of one application in creation order.
const GOVERNING_OF_APPLICATION: &str = concat!(
    "SELECT d.id, d.name, d.document FROM objects d WHERE ",
    may_govern!("d"),
    " AND d.owner = $1 AND d.id > $2",
    newest_of_key!(),
    " ORDER BY d.id LIMIT $3"
);

/// Deployments of a set of releases (a JSON array of numbers) of one application.
const OF_RELEASES: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Deployment' AND owner = $1 \
     AND release IN (SELECT value::bigint FROM jsonb_array_elements_text($2::jsonb)) \
     ORDER BY release, id";

/// The newest release of an application.
const NEWEST_RELEASE: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Release' AND owner = $1 ORDER BY number DESC LIMIT 1";

/// The newest release of an application a build made.
const NEWEST_BUILT_RELEASE: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Release' AND built AND owner = $1 ORDER BY number DESC LIMIT 1";

/// Releases of an application with one digest, newest first.
const RELEASES_WITH_DIGEST: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Release' AND owner = $1 AND digest = $2 ORDER BY number DESC";

/// Releases of an application that recorded one template hash.
const RELEASES_WITH_TEMPLATE: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Release' AND owner = $1 AND template_hash = $2 ORDER BY number DESC";

/// Releases of an application that recorded no template hash (made by an older Berth).
const RELEASES_WITHOUT_TEMPLATE: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Release' AND owner = $1 AND template_hash IS NULL ORDER BY number DESC";

/// The release of each governing deployment in an environment of a team's applications.
const TEAM_RELEASES: &str = concat!(
    "SELECT r.name, r.document FROM objects a \
     JOIN objects d ON ",
    may_govern!("d"),
    " AND d.owner = a.name AND d.environment = $2",
    newest_of_key!(),
    " JOIN objects r ON r.kind = 'Release' AND r.owner = a.name AND r.number = d.release \
     WHERE a.kind = 'Application' AND a.team = $1 ORDER BY a.id"
);

/// Applications of a team in creation order.
const TEAM_APPLICATIONS: &str = "SELECT id, name, document FROM objects \
     WHERE kind = 'Application' AND team = $1 AND id > $2 ORDER BY id LIMIT $3";

/// The newest build of an application for a key that did not fail.
const REUSABLE_BUILD: &str = "SELECT name, document FROM objects \
     WHERE kind = 'Build' AND owner = $1 AND revision = $2 AND phase IS DISTINCT FROM 'Failed' \
     AND (document::jsonb #>> '{spec,builderHash}') = $3 ORDER BY number DESC LIMIT 1";

/// Builds not finished, in creation order.
const UNFINISHED_BUILDS: &str = "SELECT id, name, document FROM objects \
     WHERE kind = 'Build' AND phase IN ('Pending', 'Running') AND id > $1 ORDER BY id LIMIT $2";

/// The highest number given out per kind and application (and environment).
const LAST_NUMBER: &str =
    "SELECT last FROM numbers WHERE kind = $1 AND application = $2 AND environment = $3";

crate::sql::query_functions!(sqlx::Postgres);
