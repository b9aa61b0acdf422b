-- Governance: the hash-chained audit log and its head, and the life of API tokens (public
-- id, expiry, revocation).

-- One entry per write to an object or a token, written in the transaction of the write.
-- Each entry's hash covers its fields and the hash of the entry before it (`prev`), so an
-- edit or a deletion breaks the chain at that entry (berth-core::audit verifies it).
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    time      TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    operation TEXT    NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    kind      TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    before    TEXT,
    after     TEXT,
    revision  INTEGER NOT NULL,
    prev      TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE INDEX audit_by_object ON audit (kind, name, seq);

-- Append-only, like the event log. (Whoever can drop these can also edit the file; the
-- chain is what makes that visible.)
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- The newest entry, kept beside the log so that deleting the newest entries shows.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
);

-- Tokens get a public id (to list and revoke them without the secret), an expiry and a
-- revocation time. Tokens made before this migration get an id from their hash.
ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
UPDATE tokens SET id = substr(hash, 1, 16) WHERE id IS NULL;
CREATE UNIQUE INDEX tokens_by_id ON tokens (id);
CREATE INDEX tokens_by_subject ON tokens (subject, created_at);
