-- The audit log gets signed: every entry from here on carries an HMAC under a key that
-- lives outside the database (berth-core::audit::AuditKey). This row records where
-- signing began and the hash of the last unsigned entry, signed too; it starts empty
-- ("not sealed yet") and the store fills it at its first start with a key, so that the
-- entries written before the key are kept and verified as before (and can no longer be
-- rewritten, since the seal names the last of them).
CREATE TABLE audit_seal (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    keyed_from INTEGER,
    prev       TEXT,
    key_id     TEXT,
    mac        TEXT
);

INSERT INTO audit_seal (id) VALUES (1);

-- The head becomes a signed checkpoint, so that moving it back shows.
ALTER TABLE audit_head ADD COLUMN mac TEXT;
