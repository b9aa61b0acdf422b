-- Berth's store, first schema: objects, the append-only event log, the store revision and
-- API tokens. Times are RFC 3339 UTC text; documents are JSON text.

-- Every object, one row per kind/name. AUTOINCREMENT so that a deleted object's id is never
-- reused: ids are list cursors and must keep creation order.
CREATE TABLE objects (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    owner      TEXT,
    document   TEXT    NOT NULL CHECK (json_valid(document)),
    version    INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    UNIQUE (kind, name)
);

-- Children of one owner (releases of an application) in creation order.
CREATE INDEX objects_by_owner ON objects (kind, owner, id);
-- All objects of a kind in creation order.
CREATE INDEX objects_by_kind ON objects (kind, id);

-- The event log. AUTOINCREMENT so that a position is never reused, even after a rollback of
-- the newest rows: clients resume streams from a seq.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
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

-- Events of one application, resumable from a seq.
CREATE INDEX events_by_application ON events (application, seq);

-- The log is append-only; the store has no code path that changes it, and these make sure
-- nothing else does either.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- The store revision: bumped once per commit, carried by every object written as its version.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);

INSERT INTO revision (id, value) VALUES (1, 0);

-- API tokens, by the hex SHA-256 of their secret; the secret itself is never stored.
CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
