//! Per-key work on one cluster: what the watches say about Berth's objects, and the pure
//! plan of what to do for the objects of a few keys.
//!
//! ```text
//!  watch events ──▶ WatchCache (per object: resourceVersion, generation, applied hash,
//!                   the Deployment's status) ──▶ changed keys for the reconciler
//!  wanted manifests of the keys + WatchCache + what Berth applied ──plan──▶ skip | apply
//! ```
//!
//! An object whose watched resourceVersion is the one Berth's last apply (or the last
//! full comparison) left, with the hash Berth wants, is in sync: no request. Anything
//! else is applied with server-side apply, which is idempotent.

use std::collections::{HashMap, HashSet};

use berth_core::render::WorkloadKey;

use crate::{render::ObjectKind, status::DeploymentState};

/// A short string kept in memory for each of a cluster's objects (a name, a namespace, a
/// resourceVersion, a hash): held inline up to 24 bytes, so that tens of thousands of
/// objects, each in three tables, are not each a handful of small heap blocks.
pub(crate) type Text = compact_str::CompactString;

/// Identifies one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjKey {
    pub kind: ObjectKind,
    pub namespace: Text,
    pub name: Text,
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind.name(), self.name)
        } else {
            write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
        }
    }
}

/// One of Berth's objects as its watch last showed it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Watched {
    /// Its resourceVersion.
    pub resource_version: Text,
    /// Its generation, for kinds that have one.
    pub generation: Option<i64>,
    /// The hash Berth wrote into its annotation.
    pub hash: Option<Text>,
    /// The key its labels name.
    pub key: WorkloadKey,
    /// What a Deployment's rollout needs of it (boxed: most objects are no Deployment).
    pub rollout: Option<Box<DeploymentState>>,
}

/// What the watches of one cluster say.
#[derive(Debug, Default)]
pub(crate) struct WatchCache {
    /// Per object. Boxed: a cluster holds tens of thousands, and the table keeps room
    /// for about twice as many entries as it holds.
    pub objects: HashMap<ObjKey, Box<Watched>>,
    /// Kinds whose watch has listed everything once: their absence from `objects` means
    /// the object does not exist.
    pub synced: HashSet<ObjectKind>,
    /// Keys whose objects changed since the reconciler last asked.
    pub changed: HashSet<WorkloadKey>,
    /// Objects seen during a relist of a kind in progress.
    pub relisting: HashMap<ObjectKind, HashSet<ObjKey>>,
    /// A watch failed since the reconciler last asked: what the cache says may be stale.
    pub broken: bool,
}

/// What a watch event means for the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Echo {
    /// Berth's own apply coming back, or nothing new: nobody needs to look.
    Nothing,
    /// The key should be looked at (someone changed it, or its rollout moved).
    Key,
}

/// Judges a watched object against what Berth last left there (`verified`: its
/// resourceVersion and hash); updates `verified` when only the status moved.
pub(crate) fn judge_event(
    kind: ObjectKind,
    previous: Option<&Watched>,
    now: &Watched,
    verified: Option<&mut (Text, Text)>,
) -> Echo {
    let Some(v) = verified else { return Echo::Key };
    if v.0 == now.resource_version {
        return Echo::Nothing;
    }
    // A controller wrote the status (the generation and Berth's hash did not move): the
    // object is still as Berth left it. Only a Deployment's status matters to Berth.
    let same_spec = now.generation.is_some()
        && previous.is_some_and(|p| p.generation == now.generation && p.resource_version == v.0)
        && now.hash.as_deref() == Some(v.1.as_str());
    if same_spec {
        v.0.clone_from(&now.resource_version);
        return if kind == ObjectKind::Deployment {
            Echo::Key
        } else {
            Echo::Nothing
        };
    }
    Echo::Key
}

/// Why an object is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// In sync: nothing to do.
    Skip,
    /// An apply conflict stands and nothing changed since: say so again, do not apply.
    Standing(String),
    /// Apply; `recreated` when Berth had applied it and it is gone, `changed` when it
    /// changed outside Berth.
    Apply {
        /// It was deleted outside Berth.
        recreated: bool,
        /// It was changed outside Berth.
        changed: bool,
    },
}

/// What to do for one wanted object with hash `hash`, given what the watch says
/// (`watched`, trustworthy when `synced`), what Berth last left there (`verified`) and a
/// conflict standing at some version (`conflict`: version, hash, message).
pub(crate) fn plan_object(
    hash: &str,
    force: bool,
    synced: bool,
    watched: Option<&Watched>,
    verified: Option<&(Text, Text)>,
    conflict: Option<&(String, String, String)>,
) -> Plan {
    if let (Some((version, h, message)), Some(w)) = (conflict, watched) {
        let current = w
            .generation
            .map_or_else(|| w.resource_version.to_string(), |g| format!("generation {g}"));
        if *version == current && h == hash && !force {
            return Plan::Standing(message.clone());
        }
    }
    if !synced {
        // The watch cannot say (it is listing again): what Berth left here as it still
        // wants it is read and compared before anything is written; the rest is applied.
        return Plan::Apply {
            recreated: false,
            changed: verified.is_some_and(|(_, h)| h == hash),
        };
    }
    match (watched, verified) {
        (None, Some((_, h))) => Plan::Apply {
            recreated: h == hash,
            changed: false,
        },
        (None, None) => Plan::Apply {
            recreated: false,
            changed: false,
        },
        (Some(w), Some((rv, h))) if w.hash.as_deref() == Some(hash) && h == hash => {
            if *rv == w.resource_version {
                Plan::Skip
            } else {
                Plan::Apply {
                    recreated: false,
                    changed: true,
                }
            }
        }
        _ => Plan::Apply {
            recreated: false,
            changed: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(rv: &str, generation: Option<i64>, hash: &str) -> Watched {
        Watched {
            resource_version: rv.into(),
            generation,
            hash: Some(hash.into()),
            key: WorkloadKey {
                application: "web".into(),
                environment: "qa".into(),
            },
            rollout: None,
        }
    }

    #[test]
    fn an_object_as_berth_left_it_is_skipped() {
        let w = watched("7", None, "h");
        let v: (Text, Text) = ("7".into(), "h".into());
        assert_eq!(
            plan_object("h", false, true, Some(&w), Some(&v), None),
            Plan::Skip
        );
    }

    #[test]
    fn a_new_hash_a_changed_or_a_deleted_object_is_applied() {
        let w = watched("7", None, "h");
        let v: (Text, Text) = ("7".into(), "h".into());
        assert_eq!(
            plan_object("new", false, true, Some(&w), Some(&v), None),
            Plan::Apply {
                recreated: false,
                changed: false
            }
        );
        let moved = watched("8", None, "h");
        assert_eq!(
            plan_object("h", false, true, Some(&moved), Some(&v), None),
            Plan::Apply {
                recreated: false,
                changed: true
            }
        );
        assert_eq!(
            plan_object("h", false, true, None, Some(&v), None),
            Plan::Apply {
                recreated: true,
                changed: false
            }
        );
    }

    #[test]
    fn without_a_synced_watch_what_berth_left_is_compared_and_the_rest_applied() {
        let w = watched("7", None, "h");
        let v: (Text, Text) = ("7".into(), "h".into());
        assert_eq!(
            plan_object("h", false, false, Some(&w), Some(&v), None),
            Plan::Apply {
                recreated: false,
                changed: true
            }
        );
        assert_eq!(
            plan_object("new", false, false, Some(&w), Some(&v), None),
            Plan::Apply {
                recreated: false,
                changed: false
            }
        );
        assert_eq!(
            plan_object("h", false, false, None, None, None),
            Plan::Apply {
                recreated: false,
                changed: false
            }
        );
    }

    #[test]
    fn a_conflict_stands_until_something_changes_or_force() {
        let w = watched("7", Some(3), "h");
        let c = (
            "generation 3".to_owned(),
            "h".to_owned(),
            "owned by kubectl".to_owned(),
        );
        assert_eq!(
            plan_object("h", false, true, Some(&w), None, Some(&c)),
            Plan::Standing("owned by kubectl".into())
        );
        assert!(matches!(
            plan_object("h", true, true, Some(&w), None, Some(&c)),
            Plan::Apply { .. }
        ));
        let w4 = watched("9", Some(4), "h");
        assert!(matches!(
            plan_object("h", false, true, Some(&w4), None, Some(&c)),
            Plan::Apply { .. }
        ));
    }

    #[test]
    fn own_applies_and_status_writes_are_not_news_except_a_deployments_rollout() {
        let before = watched("7", Some(2), "h");
        let mut v: (Text, Text) = ("7".into(), "h".into());
        assert_eq!(
            judge_event(ObjectKind::Service, Some(&before), &before, Some(&mut v)),
            Echo::Nothing
        );
        let status = watched("8", Some(2), "h");
        assert_eq!(
            judge_event(
                ObjectKind::PodDisruptionBudget,
                Some(&before),
                &status,
                Some(&mut v)
            ),
            Echo::Nothing
        );
        assert_eq!(v.0, "8", "the status write keeps the object verified");
        let moved = watched("9", Some(3), "h");
        let mut v: (Text, Text) = ("8".into(), "h".into());
        assert_eq!(
            judge_event(ObjectKind::Deployment, Some(&status), &moved, Some(&mut v)),
            Echo::Key
        );
        assert_eq!(v.0, "8", "a spec change is not verified");
        assert_eq!(judge_event(ObjectKind::Service, None, &before, None), Echo::Key);
    }
}
