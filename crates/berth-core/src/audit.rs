//! The audit log: one entry per change to a stored object or token, each signed with
//! a key kept outside the database and carrying the signature of the entry before it,
//! so that an edit, an insertion or a deletion anywhere breaks the chain.
//!
//! ```text
//!  seal (keyed from 1)   entry 1             entry 2             entry 3
//!  prev = 000…0 ──────▶  prev = 000…0   ┌──▶ prev = h1     ┌──▶ prev = h2
//!                        hash = h1 ─────┘    hash = h2 ─────┘    hash = h3
//!                                                                   ▲
//!  checkpoints (seq 3, h3, signed): in the database (head), in a file beside it, and
//!  any earlier one an operator kept from `berth audit verify`
//! ```
//!
//! `hash` is HMAC-SHA256 under the [`AuditKey`] over every other field ([`AuditKey::
//! entry_mac`]). Logs written before the key existed keep their SHA-256 entries
//! ([`entry_hash`]); a signed [`Seal`] records where signing began and the hash of the
//! last unsigned entry, so the older part can no longer be rewritten either.
//! [`Checkpoint`]s (position and hash, signed) catch a log that was cut short or rolled
//! back: the head kept in the database, a file the store rewrites after each commit,
//! and any checkpoint the operator passes back to [`Verifier`]. Each audited write also
//! records the digest of the object it left ([`AuditEntry::after`]); the verifier
//! compares every stored object and token with its latest entry ([`StoredState`]), so
//! an object edited in the database directly is named.
//!
//! What this does not catch is in `docs/audit.md`: chiefly, whoever holds the key
//! can write a consistent log, and a rollback of the database together with every
//! checkpoint file is caught only by a checkpoint kept elsewhere.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac, digest::KeyInit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who makes a change and what for; recorded with every write of the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The user, or `berth` for the platform itself.
    pub actor: String,
    /// What was asked, e.g. `deploy`, `apply`, `secret.set`.
    pub action: String,
}

impl Change {
    /// A change by `actor` doing `action`.
    #[must_use]
    pub fn new(actor: &str, action: &str) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
        }
    }
}

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// It was created.
    Create,
    /// It was replaced.
    Update,
    /// It was deleted.
    Delete,
}

impl Operation {
    /// As stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    /// From its stored form.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position: 1, 2, 3… without gaps.
    pub seq: u64,
    /// When the change was committed.
    pub time: DateTime<Utc>,
    /// Who made it.
    pub actor: String,
    /// What was asked.
    pub action: String,
    /// What happened to the object.
    pub operation: Operation,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// SHA-256 of the document before the change (none for a create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// SHA-256 of the document after the change (none for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The store revision of the change.
    pub revision: u64,
    /// The hash of the entry before.
    pub prev: String,
    /// The signature of this entry over every field above: HMAC-SHA256 under the audit
    /// key ([`AuditKey::entry_mac`]); plain SHA-256 ([`entry_hash`]) for entries written
    /// before the log was sealed ([`Seal`]).
    pub hash: String,
}

/// SHA-256 of a stored document, hex.
#[must_use]
pub fn digest(document: &str) -> String {
    hex::encode(Sha256::digest(document.as_bytes()))
}

/// The fields of an entry that its hash covers (`hash` excluded), as a JSON array, so
/// that no two different entries hash the same input.
fn entry_fields(e: &AuditEntry) -> serde_json::Value {
    serde_json::json!([
        e.seq,
        e.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        e.actor,
        e.action,
        e.operation.as_str(),
        e.kind,
        e.name,
        e.before,
        e.after,
        e.revision,
        e.prev,
    ])
}

/// The hash of an entry written before its log was sealed: SHA-256 over its fields.
#[must_use]
pub fn entry_hash(e: &AuditEntry) -> String {
    hex::encode(Sha256::digest(entry_fields(e).to_string().as_bytes()))
}

/// HMAC-SHA256 (RFC 2104) over `message` with a 32-byte key.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    // HMAC pads a key shorter than the block (64 bytes) with zeros; padding it here makes
    // the key a whole block, which `new` takes without a length check to fail.
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Compares two strings in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key that signs the audit log. It never lives in the database: the store reads it
/// from a file beside the database (or the server from a flag or the environment).
#[derive(Clone)]
pub struct AuditKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A key from 32 secret bytes.
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"berth-audit-key-id:");
        h.update(key);
        let id = hex::encode(&h.finalize()[..8]);
        Self { key, id }
    }

    /// The key's id (a hash prefix, not secret), recorded in the seal so that a wrong
    /// key is named as such.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, fields: &serde_json::Value) -> String {
        hex::encode(hmac_sha256(&self.key, fields.to_string().as_bytes()))
    }

    /// The signature of an entry: HMAC over a label and its fields.
    #[must_use]
    pub fn entry_mac(&self, e: &AuditEntry) -> String {
        self.mac(&serde_json::json!(["berth-audit-entry:v1", entry_fields(e)]))
    }

    /// A signed checkpoint of the entry at `seq` with `hash` (0 and [`GENESIS`] for an
    /// empty log).
    #[must_use]
    pub fn checkpoint(&self, seq: u64, hash: &str) -> Checkpoint {
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            mac: self.mac(&serde_json::json!(["berth-audit-checkpoint:v1", seq, hash])),
        }
    }

    /// Whether `c` was signed with this key.
    #[must_use]
    pub fn signed(&self, c: &Checkpoint) -> bool {
        same(&self.checkpoint(c.seq, &c.hash).mac, &c.mac)
    }

    /// The seal of a log whose entries from `keyed_from` on are signed, the entry before
    /// having `prev` as its hash.
    #[must_use]
    pub fn seal(&self, keyed_from: u64, prev: &str) -> Seal {
        Seal {
            keyed_from,
            prev: prev.to_owned(),
            key_id: self.id.clone(),
            mac: self.mac(&serde_json::json!(["berth-audit-seal:v1", keyed_from, prev])),
        }
    }
}

/// Where signing began: entries before `keyed_from` are the unsigned ones written before
/// the log had a key, and the last of them has hash `prev`. Signed, so that the point
/// cannot be moved and the older part cannot be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The first signed entry's position.
    pub keyed_from: u64,
    /// The hash of the entry before it ([`GENESIS`] when there is none).
    pub prev: String,
    /// The id of the key that signed the log.
    pub key_id: String,
    /// The seal's own signature.
    pub mac: String,
}

/// A signed position of the log: its entry `seq` has hash `hash`. Written as
/// `seq:hash:mac` so that an operator can keep it and give it back to a later
/// verification, which then proves that the log still holds that entry unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    /// The entry's position (0: the log was empty).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// HMAC of position and hash under the audit key.
    pub mac: String,
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.seq, self.hash, self.mac)
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let mut parts = text.trim().split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(seq), Some(hash), Some(mac), None) if hex64(hash) && hex64(mac) => Ok(Self {
                seq: seq
                    .parse()
                    .map_err(|_| format!("'{seq}' is not an entry position"))?,
                hash: hash.to_ascii_lowercase(),
                mac: mac.to_ascii_lowercase(),
            }),
            _ => Err(
                "a checkpoint is `seq:hash:mac` (a number and two 64-digit hex values), as \
                 `berth audit verify` prints it"
                    .to_owned(),
            ),
        }
    }
}

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckpointSource {
    /// The head the store keeps in the database.
    Database,
    /// The file the store rewrites beside the database after each commit.
    File,
    /// The one given to this verification (kept by an operator).
    Given,
}

impl std::fmt::Display for CheckpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Database => "head recorded in the database",
            Self::File => "checkpoint file beside the database",
            Self::Given => "checkpoint given",
        })
    }
}

/// One stored object or token beside its latest audit entry, for [`Verifier::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// Kind (`Token` for tokens).
    pub kind: String,
    /// Name (a token's public id).
    pub name: String,
    /// Digest of what is stored now; none when nothing is stored under this name.
    pub stored: Option<String>,
    /// The latest entry about it: its position and what it left ([`AuditEntry::after`];
    /// none for a deletion); none when no entry names it.
    pub audited: Option<(u64, Option<String>)>,
}

/// The newest entry as recorded beside the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// Its position.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// A break in the chain, or a stored object that differs from what the log says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum AuditProblem {
    /// The entry's content no longer matches its hash (its signature): it was edited,
    /// or written by someone without the key.
    Edited {
        /// The entry.
        seq: u64,
    },
    /// Entries are missing between two that remain.
    Missing {
        /// First missing position.
        from: u64,
        /// Last missing position.
        to: u64,
    },
    /// The entry does not link to the one before it (that one was edited, or the
    /// entry was moved).
    Unlinked {
        /// The entry.
        seq: u64,
    },
    /// The newest entries are gone: the log ends before the head recorded in the
    /// database.
    Truncated {
        /// The last entry that remains (0: none).
        last: u64,
        /// The head recorded in the database.
        head: u64,
    },
    /// The head recorded in the database is not the newest entry's hash.
    HeadMismatch {
        /// The head's position.
        seq: u64,
    },
    /// The log has entries but no head is recorded beside it.
    HeadMissing,
    /// The head recorded in the database is behind the log's end: it was moved back.
    HeadBehind {
        /// The head's position.
        seq: u64,
        /// The log's last entry.
        last: u64,
    },
    /// The log ends before a checkpoint kept outside the database.
    CheckpointAhead {
        /// Which checkpoint.
        source: CheckpointSource,
        /// The last entry that remains (0: none).
        last: u64,
        /// The checkpoint's position.
        seq: u64,
    },
    /// The entry at a checkpoint's position is not the one the checkpoint records.
    CheckpointMismatch {
        /// Which checkpoint.
        source: CheckpointSource,
        /// Its position.
        seq: u64,
    },
    /// A checkpoint's signature does not match: it was altered, or it comes from a
    /// server with another key.
    CheckpointForged {
        /// Which checkpoint.
        source: CheckpointSource,
    },
    /// The checkpoint that should exist beside a log with entries does not.
    CheckpointMissing {
        /// Which checkpoint.
        source: CheckpointSource,
    },
    /// The record of where signing began was deleted.
    SealMissing,
    /// The record of where signing began does not match its signature.
    SealForged,
    /// The log was signed with another key than the one configured.
    WrongKey {
        /// The id of the key that signed the log.
        signed_with: String,
        /// The id of the key configured.
        configured: String,
    },
    /// The entries written before the log was signed changed after it was sealed.
    SealedPrefixChanged {
        /// The last entry before signing began.
        seq: u64,
    },
    /// A stored object or token differs from what its latest audit entry recorded: it
    /// was changed in the database directly.
    ChangedOutside {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// The latest entry about it.
        seq: u64,
    },
    /// A stored object or token that no audit entry records: it was written in the
    /// database directly.
    Unaudited {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// An object or token the log says exists is not stored: it was deleted in the
    /// database directly.
    RemovedOutside {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// The latest entry about it.
        seq: u64,
    },
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let deleted_from_end = |f: &mut std::fmt::Formatter<'_>, last: u64, to: u64| {
            if last + 1 == to {
                write!(f, "entry {to} was deleted from the end of the log")
            } else {
                write!(
                    f,
                    "entries {} to {to} were deleted from the end of the log",
                    last + 1
                )
            }
        };
        match self {
            Self::Edited { seq } => write!(f, "entry {seq} was edited: its content does not match its hash"),
            Self::Missing { from, to } if from == to => write!(f, "entry {from} was deleted"),
            Self::Missing { from, to } => write!(f, "entries {from} to {to} were deleted"),
            Self::Unlinked { seq } => write!(
                f,
                "entry {seq} does not link to the entry before it (that entry was changed or replaced)"
            ),
            Self::Truncated { last, head } => deleted_from_end(f, *last, *head),
            Self::HeadMismatch { seq } => write!(
                f,
                "the recorded head does not match entry {seq}: the newest entries were rewritten"
            ),
            Self::HeadMissing => f.write_str("the head recorded beside the log was deleted"),
            Self::HeadBehind { seq, last } => write!(
                f,
                "the head recorded in the database names entry {seq}, but the log goes on to entry {last}: the head was moved back"
            ),
            Self::CheckpointAhead { source, last, seq } => {
                deleted_from_end(f, *last, *seq)?;
                write!(f, ": the {source} records entry {seq}")
            }
            Self::CheckpointMismatch { source, seq } => write!(
                f,
                "entry {seq} is not the entry the {source} records: the log was rewritten up to there"
            ),
            Self::CheckpointForged { source } => write!(
                f,
                "the {source} does not carry this server's audit signature: it was altered, or it comes from another server"
            ),
            Self::CheckpointMissing { source } => {
                write!(f, "the {source} is missing although the log has entries")
            }
            Self::SealMissing => {
                f.write_str("the record of where signing began was deleted: every entry is checked as signed")
            }
            Self::SealForged => {
                f.write_str("the record of where signing began was altered: its signature does not match")
            }
            Self::WrongKey {
                signed_with,
                configured,
            } => write!(
                f,
                "the log is signed with audit key {signed_with}, but this server has key {configured}: \
                 start it with the key that signed the log (--audit-key-file); signatures were not checked"
            ),
            Self::SealedPrefixChanged { seq } => write!(
                f,
                "the entries up to {seq}, written before the log was signed, were changed or deleted after it was sealed"
            ),
            Self::ChangedOutside { kind, name, seq } => write!(
                f,
                "{kind} '{name}' was changed outside Berth: what is stored is not what entry {seq} recorded"
            ),
            Self::Unaudited { kind, name } => write!(
                f,
                "{kind} '{name}' is stored, but no audit entry records it: it was written outside Berth"
            ),
            Self::RemovedOutside { kind, name, seq } => write!(
                f,
                "{kind} '{name}' was deleted outside Berth: entry {seq} records it, but it is not stored"
            ),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Whether the log is intact and every stored object matches it.
    pub ok: bool,
    /// Entries read.
    pub entries: u64,
    /// Stored objects and tokens compared with their latest audit entry.
    #[serde(default)]
    pub objects: u64,
    /// The newest entry's position and hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    /// A signed checkpoint of the newest entry, when the log is intact: keep it
    /// elsewhere and give it to a later verification, which then fails if the log no
    /// longer holds that entry unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Every break found, oldest first (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<AuditProblem>,
    /// The problems in sentences.
    pub messages: Vec<String>,
    /// Problems found beyond those listed.
    #[serde(default)]
    pub omitted: u64,
}

/// The most problems one verification lists; a wrong key or a rewritten log would
/// otherwise name every entry.
pub const MAX_PROBLEMS: usize = 200;

/// Walks the log in order, entry by entry, so that a long log never has to be in
/// memory at once, then the stored objects; says what does not match.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: AuditKey,
    /// The first signed entry.
    keyed_from: u64,
    /// The hash the entry before `keyed_from` must have, from a valid seal.
    sealed_prev: Option<String>,
    /// False when the log names another key: signatures cannot be checked.
    check_signatures: bool,
    /// Checkpoints to compare with, and the hash seen at each one's position.
    checkpoints: Vec<(CheckpointSource, Option<Checkpoint>, Option<String>)>,
    entries: u64,
    objects: u64,
    last_seq: u64,
    last_hash: String,
    problems: Vec<AuditProblem>,
    omitted: u64,
}

impl Verifier {
    /// A verifier with the audit `key` for a log with `seal` (none: it was deleted).
    #[must_use]
    pub fn new(key: &AuditKey, seal: Option<&Seal>) -> Self {
        let mut v = Self {
            key: key.clone(),
            keyed_from: 1,
            sealed_prev: None,
            check_signatures: true,
            checkpoints: Vec::new(),
            entries: 0,
            objects: 0,
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
            problems: Vec::new(),
            omitted: 0,
        };
        match seal {
            None => v.problem(AuditProblem::SealMissing),
            Some(seal) if seal.key_id != key.id => {
                v.check_signatures = false;
                v.keyed_from = seal.keyed_from;
                v.problem(AuditProblem::WrongKey {
                    signed_with: seal.key_id.clone(),
                    configured: key.id.clone(),
                });
            }
            Some(seal) if !same(&key.seal(seal.keyed_from, &seal.prev).mac, &seal.mac) => {
                v.problem(AuditProblem::SealForged);
            }
            Some(seal) => {
                v.keyed_from = seal.keyed_from.max(1);
                v.sealed_prev = Some(seal.prev.clone());
            }
        }
        v
    }

    /// Also compares the log with the checkpoint from `source` (none: there is none).
    #[must_use]
    pub fn against(mut self, source: CheckpointSource, checkpoint: Option<&Checkpoint>) -> Self {
        self.checkpoints.push((source, checkpoint.cloned(), None));
        self
    }

    fn problem(&mut self, p: AuditProblem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        } else {
            self.omitted += 1;
        }
    }

    /// Checks the next entry (entries must come in `seq` order).
    pub fn push(&mut self, e: &AuditEntry) {
        self.entries += 1;
        if e.seq > self.last_seq + 1 {
            self.problem(AuditProblem::Missing {
                from: self.last_seq + 1,
                to: e.seq - 1,
            });
        }
        let intact = if e.seq < self.keyed_from {
            entry_hash(e) == e.hash
        } else {
            !self.check_signatures || same(&self.key.entry_mac(e), &e.hash)
        };
        if !intact {
            self.problem(AuditProblem::Edited { seq: e.seq });
        } else if e.prev != self.last_hash && e.seq == self.last_seq + 1 {
            // A gap already explains a broken link; an edited predecessor does not
            // break this entry's own hash, only its link.
            self.problem(AuditProblem::Unlinked { seq: e.seq });
        }
        if e.seq + 1 == self.keyed_from && self.sealed_prev.as_ref().is_some_and(|p| *p != e.hash) {
            self.problem(AuditProblem::SealedPrefixChanged { seq: e.seq });
        }
        for (_, checkpoint, seen) in &mut self.checkpoints {
            if checkpoint.as_ref().is_some_and(|c| c.seq == e.seq) {
                *seen = Some(e.hash.clone());
            }
        }
        self.last_seq = e.seq;
        self.last_hash.clone_from(&e.hash);
    }

    /// Compares one stored object or token with its latest audit entry.
    pub fn check(&mut self, s: &StoredState) {
        if s.stored.is_some() {
            self.objects += 1;
        }
        let (kind, name) = (s.kind.clone(), s.name.clone());
        match (&s.stored, &s.audited) {
            (Some(_), None) => self.problem(AuditProblem::Unaudited { kind, name }),
            (Some(stored), Some((seq, after))) if after.as_ref() != Some(stored) => {
                self.problem(AuditProblem::ChangedOutside {
                    kind,
                    name,
                    seq: *seq,
                });
            }
            (None, Some((seq, Some(_)))) => self.problem(AuditProblem::RemovedOutside {
                kind,
                name,
                seq: *seq,
            }),
            _ => {}
        }
    }

    /// Ends the walk: compares the log's end with every checkpoint.
    #[must_use]
    pub fn finish(mut self) -> Verification {
        let last = self.last_seq;
        if self.keyed_from > 1 && last + 1 < self.keyed_from && self.sealed_prev.is_some() {
            self.problem(AuditProblem::SealedPrefixChanged {
                seq: self.keyed_from - 1,
            });
        }
        for (source, checkpoint, seen) in std::mem::take(&mut self.checkpoints) {
            let database = source == CheckpointSource::Database;
            let Some(c) = checkpoint else {
                if self.entries > 0 && source != CheckpointSource::Given {
                    self.problem(if database {
                        AuditProblem::HeadMissing
                    } else {
                        AuditProblem::CheckpointMissing { source }
                    });
                }
                continue;
            };
            if self.check_signatures && !self.key.signed(&c) {
                self.problem(AuditProblem::CheckpointForged { source });
            } else if c.seq > last {
                self.problem(if database {
                    AuditProblem::Truncated { last, head: c.seq }
                } else {
                    AuditProblem::CheckpointAhead {
                        source,
                        last,
                        seq: c.seq,
                    }
                });
            } else if seen.is_some_and(|h| h != c.hash) || (c.seq == 0 && c.hash != GENESIS) {
                self.problem(if database {
                    AuditProblem::HeadMismatch { seq: c.seq }
                } else {
                    AuditProblem::CheckpointMismatch { source, seq: c.seq }
                });
            } else if database && c.seq < last {
                self.problem(AuditProblem::HeadBehind { seq: c.seq, last });
            }
        }
        let head = (self.entries > 0).then(|| Head {
            seq: self.last_seq,
            hash: self.last_hash.clone(),
        });
        let ok = self.problems.is_empty();
        Verification {
            ok,
            entries: self.entries,
            objects: self.objects,
            checkpoint: ok.then(|| self.key.checkpoint(self.last_seq, &self.last_hash)),
            head,
            messages: self.problems.iter().map(ToString::to_string).collect(),
            problems: self.problems,
            omitted: self.omitted,
        }
    }
}

/// Which entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries after this position.
    pub after: u64,
    /// At most this many.
    pub limit: u32,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries about objects of this kind.
    pub kind: Option<String>,
    /// Only entries about objects of this name.
    pub name: Option<String>,
    /// Only entries of this action.
    pub action: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this time.
    pub until: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn key() -> AuditKey {
        AuditKey::new([7; 32])
    }

    fn entry(seq: u64, prev: &str) -> AuditEntry {
        AuditEntry {
            seq,
            time: Utc.timestamp_opt(1_700_000_000 + seq as i64, 5).unwrap(),
            actor: "alice".into(),
            action: "apply".into(),
            operation: Operation::Update,
            kind: "Application".into(),
            name: format!("web-{seq}"),
            before: Some(digest("a")),
            after: Some(digest("b")),
            revision: seq,
            prev: prev.to_owned(),
            hash: String::new(),
        }
    }

    /// `n` entries, the first `unsigned` of them with plain hashes (written before the
    /// log had a key).
    fn chain_from(n: u64, unsigned: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = entry(seq, &prev);
                e.hash = if seq <= unsigned {
                    entry_hash(&e)
                } else {
                    key().entry_mac(&e)
                };
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        chain_from(n, 0)
    }

    fn resign(e: &mut AuditEntry) {
        e.hash = key().entry_mac(e);
    }

    fn verify_with(
        entries: &[AuditEntry],
        seal: Option<&Seal>,
        checkpoints: &[(CheckpointSource, Option<Checkpoint>)],
    ) -> Verification {
        let mut v = Verifier::new(&key(), seal);
        for (source, c) in checkpoints {
            v = v.against(*source, c.as_ref());
        }
        entries.iter().for_each(|e| v.push(e));
        v.finish()
    }

    fn verify(entries: &[AuditEntry], head: Option<Checkpoint>) -> Vec<String> {
        verify_with(
            entries,
            Some(&key().seal(1, GENESIS)),
            &[(CheckpointSource::Database, head)],
        )
        .messages
    }

    fn head(entries: &[AuditEntry]) -> Option<Checkpoint> {
        entries.last().map(|e| key().checkpoint(e.seq, &e.hash))
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 gives no case with a 32-byte key; case 2's short key padded with
        // zeros to 32 bytes is the same key to HMAC (keys are zero-padded to the block).
        let mut jefe = [0u8; 32];
        jefe[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hex::encode(hmac_sha256(&jefe, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Case 1 with its 20-byte key zero-padded likewise.
        let mut k = [0u8; 32];
        k[..20].copy_from_slice(&[0x0b; 20]);
        assert_eq!(
            hex::encode(hmac_sha256(&k, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn an_intact_log_verifies() {
        let log = chain(5);
        let v = verify_with(
            &log,
            Some(&key().seal(1, GENESIS)),
            &[(CheckpointSource::Database, head(&log))],
        );
        assert!(v.ok, "{:?}", v.messages);
        assert_eq!(v.checkpoint, head(&log), "it hands out a checkpoint of the end");
        assert!(verify(&[], None).is_empty());
        assert_eq!(
            verify(&log, None),
            ["the head recorded beside the log was deleted"]
        );
    }

    #[test]
    fn every_tampering_is_named() {
        let log = chain(6);
        let h = head(&log);

        let mut edited = log.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(
            verify(&edited, h.clone()),
            ["entry 3 was edited: its content does not match its hash"]
        );

        // Without the key, an edited entry cannot be given a hash that verifies: a
        // plain SHA-256, as an unkeyed chain would take, is named as an edit.
        let mut rehashed = log.clone();
        rehashed[2].actor = "mallory".into();
        rehashed[2].hash = entry_hash(&rehashed[2]);
        assert_eq!(
            verify(&rehashed, h.clone()),
            [
                "entry 3 was edited: its content does not match its hash",
                "entry 4 does not link to the entry before it (that entry was changed or replaced)"
            ]
        );
        // With the key, the break moves to the next link.
        let mut resigned = log.clone();
        resigned[2].actor = "mallory".into();
        resign(&mut resigned[2]);
        assert_eq!(
            verify(&resigned, h.clone()),
            ["entry 4 does not link to the entry before it (that entry was changed or replaced)"]
        );

        let mut deleted = log.clone();
        deleted.remove(3);
        assert_eq!(verify(&deleted, h.clone()), ["entry 4 was deleted"]);
        let mut several = log.clone();
        several.drain(1..3);
        assert_eq!(verify(&several, h.clone()), ["entries 2 to 3 were deleted"]);

        let mut first = log.clone();
        first.remove(0);
        assert_eq!(verify(&first, h.clone()), ["entry 1 was deleted"]);

        assert_eq!(
            verify(&log[..5], h.clone()),
            ["entry 6 was deleted from the end of the log"]
        );
        let truncated = &log[..4];
        assert_eq!(
            verify(truncated, h.clone()),
            ["entries 5 to 6 were deleted from the end of the log"]
        );
        // Moving the head back with the log: its signature no longer matches.
        let mut moved = h.clone().unwrap();
        moved.seq = 4;
        moved.hash.clone_from(&log[3].hash);
        assert_eq!(
            verify(truncated, Some(moved)),
            [
                "the head recorded in the database does not carry this server's audit signature: it was altered, or it comes from another server"
            ]
        );
        // An old head (signed) left in place while the log goes on.
        assert_eq!(
            verify(&log, head(truncated)),
            [
                "the head recorded in the database names entry 4, but the log goes on to entry 6: the head was moved back"
            ]
        );

        let mut last_rewritten = log.clone();
        last_rewritten[5].actor = "mallory".into();
        resign(&mut last_rewritten[5]);
        assert_eq!(
            verify(&last_rewritten, h),
            ["the recorded head does not match entry 6: the newest entries were rewritten"]
        );
    }

    #[test]
    fn checkpoints_kept_outside_catch_a_rollback() {
        let log = chain(6);
        let seal = key().seal(1, GENESIS);
        let early = head(&log[..3]);
        // A rollback of the whole database to 4 entries: its own head agrees.
        let rolled_back = &log[..4];
        let v = verify_with(
            rolled_back,
            Some(&seal),
            &[
                (CheckpointSource::Database, head(rolled_back)),
                (CheckpointSource::File, head(&log)),
                (CheckpointSource::Given, early.clone()),
            ],
        );
        assert_eq!(
            v.messages,
            [
                "entries 5 to 6 were deleted from the end of the log: the checkpoint file beside the database records entry 6"
            ]
        );
        assert_eq!(v.checkpoint, None, "no checkpoint of a tampered log");

        // Rewritten and re-signed by a key holder after the operator's checkpoint.
        let mut rewritten = log.clone();
        rewritten[1].actor = "mallory".into();
        resign(&mut rewritten[1]);
        for i in 2..rewritten.len() {
            rewritten[i].prev = rewritten[i - 1].hash.clone();
            resign(&mut rewritten[i]);
        }
        let v = verify_with(
            &rewritten,
            Some(&seal),
            &[
                (CheckpointSource::Database, head(&rewritten)),
                (CheckpointSource::Given, early),
            ],
        );
        assert_eq!(
            v.messages,
            ["entry 3 is not the entry the checkpoint given records: the log was rewritten up to there"]
        );

        // A checkpoint file that is missing, or not signed by this key.
        let other = AuditKey::new([8; 32]).checkpoint(6, &log[5].hash);
        let v = verify_with(
            &log,
            Some(&seal),
            &[
                (CheckpointSource::Database, head(&log)),
                (CheckpointSource::File, None),
                (CheckpointSource::Given, Some(other)),
            ],
        );
        assert_eq!(
            v.messages,
            [
                "the checkpoint file beside the database is missing although the log has entries",
                "the checkpoint given does not carry this server's audit signature: it was altered, or it comes from another server"
            ]
        );
        // Behind is fine for a file (it is written after the commit).
        let v = verify_with(&log, Some(&seal), &[(CheckpointSource::File, head(&log[..2]))]);
        assert!(v.ok, "{:?}", v.messages);
    }

    #[test]
    fn the_seal_protects_entries_written_before_the_key() {
        let log = chain_from(6, 3);
        let seal = key().seal(4, &log[2].hash);
        let v = verify_with(&log, Some(&seal), &[(CheckpointSource::Database, head(&log))]);
        assert!(v.ok, "{:?}", v.messages);

        // The old part rewritten as a consistent unsigned chain: the seal names it.
        let mut rewritten = log.clone();
        rewritten[0].actor = "mallory".into();
        for i in 0..3 {
            if i > 0 {
                rewritten[i].prev = rewritten[i - 1].hash.clone();
            }
            rewritten[i].hash = entry_hash(&rewritten[i]);
        }
        let v = verify_with(
            &rewritten,
            Some(&seal),
            &[(CheckpointSource::Database, head(&log))],
        );
        assert_eq!(
            v.messages,
            [
                "the entries up to 3, written before the log was signed, were changed or deleted after it was sealed",
                "entry 4 does not link to the entry before it (that entry was changed or replaced)"
            ]
        );

        // Moving the seal to call signed entries unsigned breaks its signature.
        let moved = Seal {
            keyed_from: 7,
            prev: log[5].hash.clone(),
            ..seal.clone()
        };
        assert_eq!(
            verify_with(&log, Some(&moved), &[]).messages[0],
            "the record of where signing began was altered: its signature does not match"
        );
        // Without a seal every entry must be signed.
        let v = verify_with(&log, None, &[]);
        assert_eq!(
            v.messages[..2],
            [
                "the record of where signing began was deleted: every entry is checked as signed",
                "entry 1 was edited: its content does not match its hash"
            ]
        );
        // A log emptied below the seal.
        assert_eq!(
            verify_with(&log[..1], Some(&seal), &[]).messages,
            [
                "the entries up to 3, written before the log was signed, were changed or deleted after it was sealed"
            ]
        );
        // Another key: named once, not as an edit of every entry.
        let v = {
            let other = AuditKey::new([9; 32]);
            let mut v = Verifier::new(&other, Some(&seal));
            log.iter().for_each(|e| v.push(e));
            v.finish()
        };
        assert_eq!(v.problems.len(), 1, "{:?}", v.messages);
        assert!(matches!(v.problems[0], AuditProblem::WrongKey { .. }));
    }

    #[test]
    fn stored_objects_are_compared_with_their_last_entry() {
        let state = |stored: Option<&str>, audited: Option<(u64, Option<&str>)>| StoredState {
            kind: "User".into(),
            name: "viewer".into(),
            stored: stored.map(digest),
            audited: audited.map(|(seq, after)| (seq, after.map(digest))),
        };
        let mut v = Verifier::new(&key(), Some(&key().seal(1, GENESIS)));
        v.check(&state(Some("a"), Some((3, Some("a")))));
        v.check(&state(None, Some((4, None))));
        v.check(&state(Some("admin"), Some((3, Some("a")))));
        v.check(&state(Some("a"), None));
        v.check(&state(None, Some((5, Some("a")))));
        v.check(&state(Some("a"), Some((6, None))));
        let v = v.finish();
        assert_eq!(v.objects, 4);
        assert_eq!(
            v.messages,
            [
                "User 'viewer' was changed outside Berth: what is stored is not what entry 3 recorded",
                "User 'viewer' is stored, but no audit entry records it: it was written outside Berth",
                "User 'viewer' was deleted outside Berth: entry 5 records it, but it is not stored",
                "User 'viewer' was changed outside Berth: what is stored is not what entry 6 recorded",
            ]
        );
    }

    #[test]
    fn problems_are_capped() {
        let mut log = chain(MAX_PROBLEMS as u64 + 10);
        log.iter_mut().for_each(|e| e.actor = "mallory".into());
        let v = verify_with(&log, Some(&key().seal(1, GENESIS)), &[]);
        assert_eq!(v.problems.len(), MAX_PROBLEMS);
        assert_eq!(v.omitted, 10);
    }

    #[test]
    fn checkpoints_round_trip_as_text() {
        let c = key().checkpoint(372, &chain(1)[0].hash);
        assert_eq!(c.to_string().parse::<Checkpoint>(), Ok(c.clone()));
        for bad in [
            "",
            "372",
            "x:y:z",
            &format!("372:{}", c.hash),
            &format!("a:{}:{}", c.hash, c.mac),
        ] {
            assert!(bad.parse::<Checkpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_cover_every_field() {
        let e = chain(1).remove(0);
        let variants = [
            AuditEntry { seq: 2, ..e.clone() },
            AuditEntry {
                time: e.time + chrono::Duration::nanoseconds(1),
                ..e.clone()
            },
            AuditEntry {
                actor: "b".into(),
                ..e.clone()
            },
            AuditEntry {
                action: "b".into(),
                ..e.clone()
            },
            AuditEntry {
                operation: Operation::Delete,
                ..e.clone()
            },
            AuditEntry {
                kind: "b".into(),
                ..e.clone()
            },
            AuditEntry {
                name: "b".into(),
                ..e.clone()
            },
            AuditEntry {
                before: None,
                ..e.clone()
            },
            AuditEntry {
                after: None,
                ..e.clone()
            },
            AuditEntry {
                revision: 9,
                ..e.clone()
            },
            AuditEntry {
                prev: "b".into(),
                ..e.clone()
            },
        ];
        for v in variants {
            assert_ne!(key().entry_mac(&v), e.hash, "{v:?}");
            assert_ne!(entry_hash(&v), entry_hash(&e), "{v:?}");
        }
    }
}
