//! The audit log: one entry per change to a stored object or token, each carrying the
//! hash of the entry before it, so that an edit or a deletion anywhere breaks the chain.
//!
//! ```text
//!  entry 1            entry 2            entry 3
//!  prev = 000…0  ┌──▶ prev = h1     ┌──▶ prev = h2
//!  hash = h1 ────┘    hash = h2 ────┘    hash = h3   ◀── head (stored beside the log)
//! ```
//!
//! The store writes entries in the same transaction as the change ([`Store::commit_as`]
//! (crate::ports::Store::commit_as)) and computes hashes with [`entry_hash`];
//! [`Verifier`] walks the stored log and names the first entry of every break. The head
//! catches the deletion of the newest entries. The chain is not a signature: someone
//! who can rewrite every later entry and the head can forge it, so keep an earlier
//! `berth audit verify` head to compare against.

use chrono::{DateTime, SecondsFormat, Utc};
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
    /// The hash of this entry, over every field above.
    pub hash: String,
}

/// SHA-256 of a stored document, hex.
#[must_use]
pub fn digest(document: &str) -> String {
    hex::encode(Sha256::digest(document.as_bytes()))
}

/// The hash of an entry: SHA-256 over a JSON array of its fields (`hash` excluded), so
/// that no two different entries hash the same input.
#[must_use]
pub fn entry_hash(e: &AuditEntry) -> String {
    let fields = serde_json::json!([
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
    ]);
    hex::encode(Sha256::digest(fields.to_string().as_bytes()))
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

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum AuditProblem {
    /// The entry's content no longer matches its hash: it was edited.
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
    /// The newest entries are gone: the log ends before the recorded head.
    Truncated {
        /// The last entry that remains (0: none).
        last: u64,
        /// The head recorded beside the log.
        head: u64,
    },
    /// The head recorded beside the log is not the newest entry's hash.
    HeadMismatch {
        /// The head's position.
        seq: u64,
    },
    /// The log has entries but no head is recorded beside it.
    HeadMissing,
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Edited { seq } => write!(f, "entry {seq} was edited: its content does not match its hash"),
            Self::Missing { from, to } if from == to => write!(f, "entry {from} was deleted"),
            Self::Missing { from, to } => write!(f, "entries {from} to {to} were deleted"),
            Self::Unlinked { seq } => write!(
                f,
                "entry {seq} does not link to the entry before it (that entry was changed or replaced)"
            ),
            Self::Truncated { last, head } if last + 1 == *head => {
                write!(f, "entry {head} was deleted from the end of the log")
            }
            Self::Truncated { last, head } => write!(
                f,
                "entries {} to {head} were deleted from the end of the log",
                last + 1
            ),
            Self::HeadMismatch { seq } => write!(
                f,
                "the recorded head does not match entry {seq}: the newest entries were rewritten"
            ),
            Self::HeadMissing => f.write_str("the head recorded beside the log was deleted"),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Whether the log is intact.
    pub ok: bool,
    /// Entries read.
    pub entries: u64,
    /// The newest entry's position and hash, to compare with a later verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    /// Every break found, oldest first.
    pub problems: Vec<AuditProblem>,
    /// The problems in sentences.
    pub messages: Vec<String>,
}

/// Walks the log in order, entry by entry, so that a long log never has to be in
/// memory at once.
#[derive(Debug, Clone)]
pub struct Verifier {
    entries: u64,
    last_seq: u64,
    last_hash: String,
    problems: Vec<AuditProblem>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self {
            entries: 0,
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
            problems: Vec::new(),
        }
    }
}

impl Verifier {
    /// Checks the next entry (entries must come in `seq` order).
    pub fn push(&mut self, e: &AuditEntry) {
        self.entries += 1;
        if e.seq > self.last_seq + 1 {
            self.problems.push(AuditProblem::Missing {
                from: self.last_seq + 1,
                to: e.seq - 1,
            });
        }
        let edited = entry_hash(e) != e.hash;
        if edited {
            self.problems.push(AuditProblem::Edited { seq: e.seq });
        } else if e.prev != self.last_hash && e.seq == self.last_seq + 1 {
            // A gap already explains a broken link; an edited predecessor does not
            // break this entry's own hash, only its link.
            self.problems.push(AuditProblem::Unlinked { seq: e.seq });
        }
        self.last_seq = e.seq;
        self.last_hash.clone_from(&e.hash);
    }

    /// Ends the walk, comparing the log's end with the recorded `head`.
    #[must_use]
    pub fn finish(mut self, head: Option<&Head>) -> Verification {
        if head.is_none() && self.entries > 0 {
            self.problems.push(AuditProblem::HeadMissing);
        }
        if let Some(head) = head {
            if head.seq > self.last_seq {
                self.problems.push(AuditProblem::Truncated {
                    last: self.last_seq,
                    head: head.seq,
                });
            } else if head.seq == self.last_seq && head.hash != self.last_hash {
                self.problems.push(AuditProblem::HeadMismatch { seq: head.seq });
            }
        }
        let head = (self.entries > 0).then(|| Head {
            seq: self.last_seq,
            hash: self.last_hash.clone(),
        });
        Verification {
            ok: self.problems.is_empty(),
            entries: self.entries,
            head,
            messages: self.problems.iter().map(ToString::to_string).collect(),
            problems: self.problems,
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

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = AuditEntry {
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
                    prev: prev.clone(),
                    hash: String::new(),
                };
                e.hash = entry_hash(&e);
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry], head: Option<Head>) -> Vec<String> {
        let mut v = Verifier::default();
        entries.iter().for_each(|e| v.push(e));
        v.finish(head.as_ref()).messages
    }

    fn head(entries: &[AuditEntry]) -> Option<Head> {
        entries.last().map(|e| Head {
            seq: e.seq,
            hash: e.hash.clone(),
        })
    }

    #[test]
    fn an_intact_log_verifies() {
        let log = chain(5);
        assert!(verify(&log, head(&log)).is_empty());
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

        // Rehashing the edited entry moves the break to the next link.
        let mut rehashed = log.clone();
        rehashed[2].actor = "mallory".into();
        rehashed[2].hash = entry_hash(&rehashed[2]);
        assert_eq!(
            verify(&rehashed, h.clone()),
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

        let mut last_rewritten = log.clone();
        last_rewritten[5].actor = "mallory".into();
        last_rewritten[5].hash = entry_hash(&last_rewritten[5]);
        assert_eq!(
            verify(&last_rewritten, h),
            ["the recorded head does not match entry 6: the newest entries were rewritten"]
        );
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
            assert_ne!(entry_hash(&v), e.hash, "{v:?}");
        }
    }
}
