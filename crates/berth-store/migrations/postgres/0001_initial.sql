-- Berth's store on PostgreSQL: the same tables, columns and queries as the SQLite schema
-- (migrations/0001 to 0004 there, as they stand after the last of them), in one step:
-- no PostgreSQL store existed before it. Times are RFC 3339 UTC text and documents JSON
-- text, as on SQLite, so that the audit log's digests of stored documents and tokens read
-- the same bytes in both (jsonb would reorder keys and respace the text). The fields that
-- queries look up are generated columns stored beside the document, each with the same
-- name as on SQLite, so that the code around the queries is the same for both.

-- Every object, one row per kind/name. An identity column never hands an id out twice:
-- ids are list cursors and must keep creation order.
CREATE TABLE objects (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    owner      TEXT,
    document   TEXT   NOT NULL CHECK ((document::jsonb) IS NOT NULL),
    version    BIGINT NOT NULL,
    created_at TEXT   NOT NULL,
    updated_at TEXT   NOT NULL,
    -- Release, Build, Deployment: spec.number (an integer, else none).
    number BIGINT GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(document::jsonb #> '{spec,number}') = 'number'
              AND (document::jsonb #>> '{spec,number}') ~ '^-?[0-9]{1,18}$'
        THEN (document::jsonb #>> '{spec,number}')::bigint END) STORED,
    -- Deployment: spec.environment, spec.release, status.phase, status.retiredAt.
    environment TEXT GENERATED ALWAYS AS (document::jsonb #>> '{spec,environment}') STORED,
    release BIGINT GENERATED ALWAYS AS (
        CASE WHEN jsonb_typeof(document::jsonb #> '{spec,release}') = 'number'
              AND (document::jsonb #>> '{spec,release}') ~ '^-?[0-9]{1,18}$'
        THEN (document::jsonb #>> '{spec,release}')::bigint END) STORED,
    phase TEXT GENERATED ALWAYS AS (document::jsonb #>> '{status,phase}') STORED,
    retired_at TEXT GENERATED ALWAYS AS (document::jsonb #>> '{status,retiredAt}') STORED,
    -- Application: spec.team (an application without one belongs to the default team).
    team TEXT GENERATED ALWAYS AS (coalesce(document::jsonb #>> '{spec,team}', 'default')) STORED,
    -- Release: the image digest (what follows the '@' of spec.template.image), the
    -- template hash, and whether a build made it (a build and no promotion).
    digest TEXT GENERATED ALWAYS AS (
        CASE WHEN strpos(document::jsonb #>> '{spec,template,image}', '@') > 0
        THEN substr(document::jsonb #>> '{spec,template,image}',
                    strpos(document::jsonb #>> '{spec,template,image}', '@') + 1)
        END) STORED,
    template_hash TEXT GENERATED ALWAYS AS (document::jsonb #>> '{spec,templateHash}') STORED,
    built BOOLEAN GENERATED ALWAYS AS (
        (document::jsonb #>> '{spec,origin,build}') IS NOT NULL
        AND (document::jsonb #>> '{spec,origin,promotion}') IS NULL) STORED,
    -- Build: what it built (the commit, or for the `image` builder the digest).
    revision TEXT GENERATED ALWAYS AS (
        CASE WHEN document::jsonb #>> '{spec,builder}' = 'image'
        THEN document::jsonb #>> '{status,digest}'
        ELSE document::jsonb #>> '{spec,commit}'
        END) STORED,
    UNIQUE (kind, name)
);

CREATE INDEX objects_by_owner ON objects (kind, owner, id);
CREATE INDEX objects_by_kind ON objects (kind, id);

CREATE INDEX deployments_by_number ON objects (owner, environment, number)
    WHERE kind = 'Deployment';
CREATE INDEX deployments_governing ON objects (owner, environment, number)
    WHERE kind = 'Deployment' AND phase IS DISTINCT FROM 'Failed' AND retired_at IS NULL;
CREATE INDEX deployments_governing_by_id ON objects (id)
    WHERE kind = 'Deployment' AND phase IS DISTINCT FROM 'Failed' AND retired_at IS NULL;
CREATE INDEX deployments_succeeded ON objects (owner, environment, number)
    WHERE kind = 'Deployment' AND phase = 'Succeeded' AND retired_at IS NULL;
CREATE INDEX deployments_by_release ON objects (owner, release)
    WHERE kind = 'Deployment';
CREATE INDEX releases_by_number ON objects (owner, number)
    WHERE kind = 'Release';
CREATE INDEX releases_by_digest ON objects (owner, digest, number)
    WHERE kind = 'Release';
CREATE INDEX releases_by_template ON objects (owner, template_hash, number)
    WHERE kind = 'Release';
CREATE INDEX releases_built ON objects (owner, number)
    WHERE kind = 'Release' AND built;
CREATE INDEX builds_by_revision ON objects (owner, revision, number)
    WHERE kind = 'Build';
CREATE INDEX builds_unfinished ON objects (id)
    WHERE kind = 'Build' AND phase IN ('Pending', 'Running');
CREATE INDEX applications_by_team ON objects (team, id)
    WHERE kind = 'Application';

-- The event log. Commits append under the store's commit lock, so seqs are handed out
-- in commit order and a reader never sees a later seq before an earlier one.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('Normal', 'Warning')),
    reason      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    application TEXT,
    environment TEXT,
    cluster     TEXT,
    actor       TEXT NOT NULL,
    message     TEXT NOT NULL
);

CREATE INDEX events_by_application ON events (application, seq);

-- The store revision: a sequence, not a row every commit rewrites (see postgres.rs).
CREATE SEQUENCE revision AS BIGINT START WITH 1 MINVALUE 1;

-- API tokens, by the hex SHA-256 of their secret; the secret itself is never stored.
CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    id         TEXT,
    name       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE UNIQUE INDEX tokens_by_id ON tokens (id);
CREATE INDEX tokens_by_subject ON tokens (subject, created_at);

-- The hash-chained, signed audit log, its signed head and its seal (as on SQLite).
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    time      TEXT   NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    operation TEXT   NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    kind      TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    before    TEXT,
    after     TEXT,
    revision  BIGINT NOT NULL,
    prev      TEXT   NOT NULL,
    hash      TEXT   NOT NULL
);

CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE INDEX audit_by_object ON audit (kind, name, seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT   NOT NULL,
    mac  TEXT
);

CREATE TABLE audit_seal (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    keyed_from BIGINT,
    prev       TEXT,
    key_id     TEXT,
    mac        TEXT
);

INSERT INTO audit_seal (id) VALUES (1);

-- The event and audit logs are append-only; the store has no code path that changes
-- them, and these make sure nothing else does either.
CREATE FUNCTION berth_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION berth_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION berth_append_only();
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION berth_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION berth_append_only();

-- The highest number ever given per application (and environment, for deployments), kept
-- by a trigger in the transaction of the write.
CREATE TABLE numbers (
    kind        TEXT   NOT NULL,
    application TEXT   NOT NULL,
    environment TEXT   NOT NULL,
    last        BIGINT NOT NULL,
    PRIMARY KEY (kind, application, environment)
);

CREATE FUNCTION berth_keep_numbers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind IN ('Release', 'Build', 'Deployment') AND NEW.owner IS NOT NULL
       AND NEW.number IS NOT NULL THEN
        INSERT INTO numbers (kind, application, environment, last)
        VALUES (NEW.kind, NEW.owner,
                CASE WHEN NEW.kind = 'Deployment' THEN coalesce(NEW.environment, '') ELSE '' END,
                NEW.number)
        ON CONFLICT (kind, application, environment)
        DO UPDATE SET last = greatest(numbers.last, excluded.last);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER numbers_on_write AFTER INSERT OR UPDATE OF document ON objects
    FOR EACH ROW EXECUTE FUNCTION berth_keep_numbers();
