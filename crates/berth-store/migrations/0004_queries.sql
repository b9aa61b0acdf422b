-- Targeted queries: the fields of documents that use cases and the reconciler look things
-- up by, as virtual generated columns (computed from `document` when read, never stored
-- twice), with partial indexes per kind. On PostgreSQL the same indexes are jsonb
-- expression indexes over the same paths, e.g.
--   CREATE INDEX ... ON objects (owner, (document #>> '{spec,environment}'),
--       ((document #>> '{spec,number}')::bigint)) WHERE kind = 'Deployment';
--
-- Every query in sqlite.rs repeats the WHERE clause of the partial index it means to use
-- word for word (SQLite only uses a partial index when the query implies its condition);
-- a test runs EXPLAIN QUERY PLAN on each query and fails on a full scan of objects.

-- Release, Build, Deployment: spec.number (per application; per application and
-- environment for deployments).
ALTER TABLE objects ADD COLUMN number INTEGER
    GENERATED ALWAYS AS (json_extract(document, '$.spec.number')) VIRTUAL;
-- Deployment: spec.environment, spec.release, status.phase, status.retiredAt.
ALTER TABLE objects ADD COLUMN environment TEXT
    GENERATED ALWAYS AS (json_extract(document, '$.spec.environment')) VIRTUAL;
ALTER TABLE objects ADD COLUMN release INTEGER
    GENERATED ALWAYS AS (json_extract(document, '$.spec.release')) VIRTUAL;
ALTER TABLE objects ADD COLUMN phase TEXT
    GENERATED ALWAYS AS (json_extract(document, '$.status.phase')) VIRTUAL;
ALTER TABLE objects ADD COLUMN retired_at TEXT
    GENERATED ALWAYS AS (json_extract(document, '$.status.retiredAt')) VIRTUAL;
-- Application: spec.team (an application without one belongs to the default team).
ALTER TABLE objects ADD COLUMN team TEXT
    GENERATED ALWAYS AS (coalesce(json_extract(document, '$.spec.team'), 'default')) VIRTUAL;
-- Release: the image digest (what follows the '@' of spec.template.image), the template
-- hash (absent on releases made before Berth recorded it: the store computes those), and
-- whether a build made it (a build and no promotion).
ALTER TABLE objects ADD COLUMN digest TEXT
    GENERATED ALWAYS AS (
        CASE WHEN instr(json_extract(document, '$.spec.template.image'), '@') > 0
        THEN substr(json_extract(document, '$.spec.template.image'),
                    instr(json_extract(document, '$.spec.template.image'), '@') + 1)
        END) VIRTUAL;
ALTER TABLE objects ADD COLUMN template_hash TEXT
    GENERATED ALWAYS AS (json_extract(document, '$.spec.templateHash')) VIRTUAL;
ALTER TABLE objects ADD COLUMN built INTEGER
    GENERATED ALWAYS AS (
        json_extract(document, '$.spec.origin.build') IS NOT NULL
        AND json_extract(document, '$.spec.origin.promotion') IS NULL) VIRTUAL;
-- Build: what it built, which with the builder hash is its key (berth_core::build::BuildKey):
-- the commit, or for the `image` builder the digest the reference resolved to.
ALTER TABLE objects ADD COLUMN revision TEXT
    GENERATED ALWAYS AS (
        CASE WHEN json_extract(document, '$.spec.builder') = 'image'
        THEN json_extract(document, '$.status.digest')
        ELSE json_extract(document, '$.spec.commit')
        END) VIRTUAL;

-- Deployments of (application, environment), by number.
CREATE INDEX deployments_by_number ON objects (owner, environment, number)
    WHERE kind = 'Deployment';
-- Those that may govern: not Failed, not retired. The governing one is the newest.
CREATE INDEX deployments_governing ON objects (owner, environment, number)
    WHERE kind = 'Deployment' AND phase IS NOT 'Failed' AND retired_at IS NULL;
-- The same set in creation order, to page through every governing deployment.
CREATE INDEX deployments_governing_by_id ON objects (id)
    WHERE kind = 'Deployment' AND phase IS NOT 'Failed' AND retired_at IS NULL;
-- Those that succeeded and were not retired: the last succeeded one.
CREATE INDEX deployments_succeeded ON objects (owner, environment, number)
    WHERE kind = 'Deployment' AND phase = 'Succeeded' AND retired_at IS NULL;
-- Deployments of given releases of an application (where a template was verified).
CREATE INDEX deployments_by_release ON objects (owner, release)
    WHERE kind = 'Deployment';

-- Releases of an application by number, by digest, by template hash, made by a build.
CREATE INDEX releases_by_number ON objects (owner, number)
    WHERE kind = 'Release';
CREATE INDEX releases_by_digest ON objects (owner, digest, number)
    WHERE kind = 'Release';
CREATE INDEX releases_by_template ON objects (owner, template_hash, number)
    WHERE kind = 'Release';
CREATE INDEX releases_built ON objects (owner, number)
    WHERE kind = 'Release' AND built;

-- Builds of an application by revision (to reuse one), and those not finished.
CREATE INDEX builds_by_revision ON objects (owner, revision, number)
    WHERE kind = 'Build';
CREATE INDEX builds_unfinished ON objects (id)
    WHERE kind = 'Build' AND phase IN ('Pending', 'Running');

-- Applications of a team in creation order.
CREATE INDEX applications_by_team ON objects (team, id)
    WHERE kind = 'Application';

-- The highest number ever given per application (and environment, for deployments), so
-- that the next number is one lookup and a number is never handed out twice, even after
-- the object that had it was deleted. Kept by triggers in the transaction of the write,
-- so it is never behind what is stored (a crash loses both or neither).
CREATE TABLE numbers (
    kind        TEXT    NOT NULL,
    application TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    last        INTEGER NOT NULL,
    PRIMARY KEY (kind, application, environment)
) WITHOUT ROWID;

INSERT INTO numbers (kind, application, environment, last)
    SELECT kind, owner, CASE WHEN kind = 'Deployment' THEN coalesce(environment, '') ELSE '' END,
           MAX(number)
    FROM objects
    WHERE kind IN ('Release', 'Build', 'Deployment') AND owner IS NOT NULL
      AND typeof(number) = 'integer'
    GROUP BY 1, 2, 3;

CREATE TRIGGER numbers_on_insert AFTER INSERT ON objects
    WHEN NEW.kind IN ('Release', 'Build', 'Deployment') AND NEW.owner IS NOT NULL
     AND typeof(NEW.number) = 'integer'
BEGIN
    INSERT INTO numbers (kind, application, environment, last)
    VALUES (NEW.kind, NEW.owner,
            CASE WHEN NEW.kind = 'Deployment' THEN coalesce(NEW.environment, '') ELSE '' END,
            NEW.number)
    ON CONFLICT (kind, application, environment) DO UPDATE SET last = max(last, excluded.last);
END;

CREATE TRIGGER numbers_on_update AFTER UPDATE OF document ON objects
    WHEN NEW.kind IN ('Release', 'Build', 'Deployment') AND NEW.owner IS NOT NULL
     AND typeof(NEW.number) = 'integer'
BEGIN
    INSERT INTO numbers (kind, application, environment, last)
    VALUES (NEW.kind, NEW.owner,
            CASE WHEN NEW.kind = 'Deployment' THEN coalesce(NEW.environment, '') ELSE '' END,
            NEW.number)
    ON CONFLICT (kind, application, environment) DO UPDATE SET last = max(last, excluded.last);
END;
