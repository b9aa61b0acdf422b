//! Source: a directory of a git repository whose documents Berth keeps applied (GitOps).
//!
//! The syncer (in `berth-server`) fetches `spec.ref` every `spec.interval` (or at once
//! when asked), applies the documents under `spec.path` in one atomic apply labelled
//! `berth.dev/source: <name>`, and writes what happened here, in `status`. This module
//! holds the document and the pure decisions around it: validation, the interval, and
//! what a sync of a fetched commit must do ([`SyncPlan`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    objects::source::{DEFAULT_REF, check_git_ref, check_git_url, check_path},
};

/// The Source kind.
#[derive(Debug, Clone, Copy)]
pub struct SourceKind;

/// A source document.
pub type SyncSource = Resource<SourceKind>;

/// How often a source is fetched when it names no interval.
pub const DEFAULT_INTERVAL: &str = "1m";

/// The shortest interval: polling a repository more often costs its server more than
/// it gains (a change can be synced at once through `POST /sources/{name}/sync`).
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Desired state of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// The git repository: `file:///path/to/repo`, `http://`, `https://`, or an absolute
    /// path on the Berth server's machine.
    pub repository: String,
    /// Branch, tag or commit to follow.
    #[serde(rename = "ref", default = "default_ref")]
    pub git_ref: String,
    /// Directory of the repository whose `*.yaml`, `*.yml` and `*.json` files are
    /// applied (not its subdirectories); `.` is the top.
    #[serde(default = "default_path")]
    pub path: String,
    /// How often the repository is fetched, e.g. `30s`, `5m`, `1h`; at least 5s.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Delete the objects this source applied that the repository no longer has.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    /// Revert drift: put back what the repository says into objects this source applied
    /// that were changed through the API since (without it, drift is only reported).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_heal: bool,
}

fn default_ref() -> String {
    DEFAULT_REF.to_owned()
}

fn default_path() -> String {
    ".".to_owned()
}

fn default_interval() -> String {
    DEFAULT_INTERVAL.to_owned()
}

impl SourceSpec {
    /// The poll period (the default if the interval cannot be read; validation refuses
    /// such a document).
    #[must_use]
    pub fn interval(&self) -> Duration {
        parse_interval(&self.interval)
            .or_else(|| parse_interval(DEFAULT_INTERVAL))
            .unwrap_or(Duration::from_secs(60))
    }

    /// The repository as a URL git can clone: an absolute path becomes `file://`.
    #[must_use]
    pub fn url(&self) -> String {
        if self.repository.starts_with('/') {
            format!("file://{}", self.repository)
        } else {
            self.repository.clone()
        }
    }
}

/// A duration written as a whole number and a unit: `30s`, `5m`, `1h`.
#[must_use]
pub fn parse_interval(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let seconds_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => return None,
    };
    let number = text.get(..text.len() - 1)?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    n.checked_mul(seconds_per).map(Duration::from_secs)
}

/// Where a source's last sync stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SourcePhase {
    /// Not synced yet.
    #[default]
    Pending,
    /// A sync is under way.
    Syncing,
    /// The objects match `status.commit`.
    Synced,
    /// The last sync failed (`status.error` says why); nothing of it was applied, and the
    /// objects are as `status.commit` left them.
    Failed,
}

/// What a sync did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SyncAction {
    /// Created from the repository.
    Created,
    /// Changed to what a new commit says.
    Changed,
    /// Deleted: the repository no longer has it (with `prune`).
    Pruned,
    /// Put back to what the repository says after it was changed through the API (with
    /// `selfHeal`).
    Reverted,
}

/// One object a sync changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceChange {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// What happened to it.
    pub action: SyncAction,
}

/// How an object this source applied differs from the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftKind {
    /// Changed through the API: `fields` differ from the repository.
    Changed,
    /// Deleted through the API; the repository still has it.
    Missing,
    /// Carries this source's label but the repository does not have it (with `prune`).
    Extra,
}

/// One object that differs from the repository at the synced commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceDrift {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// How it differs.
    pub drift: DriftKind,
    /// The fields that differ (`spec.replicas`, `metadata.labels.tier`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Why the last sync failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncError {
    /// The commit that could not be applied (absent when fetching failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What failed.
    pub message: String,
    /// Each refused document's problems: the path starts `documents[i]`, the message
    /// with the file (and line) and the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Observed state of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// Where the last sync stands.
    #[serde(default)]
    pub phase: SourcePhase,
    /// The commit the objects were last synced to (40 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the objects were last found (or made) to match `commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<DateTime<Utc>>,
    /// When a sync was last tried, whatever its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<DateTime<Utc>>,
    /// What the last sync that changed anything changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<SourceChange>,
    /// Objects that differ from the repository at `commit` (changed through the API);
    /// reverted at the next sync with `selfHeal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<SourceDrift>,
    /// Why the last sync failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SyncError>,
}

impl Kind for SourceKind {
    const KIND: &'static str = "Source";
    const PLURAL: &'static str = "sources";
    type Spec = SourceSpec;
    type Status = SourceStatus;

    fn validate_spec(spec: &SourceSpec, errors: &mut Errors) {
        if !spec.repository.starts_with('/') {
            check_git_url("spec.repository", &spec.repository, errors);
        } else if spec.repository.split('/').any(|p| p == "..") {
            errors.push(
                FieldError::new(
                    "spec.repository",
                    format!("'{}' is not an absolute path", spec.repository),
                )
                .hint("name the repository without '..', e.g. /srv/git/platform.git"),
            );
        }
        if has_credentials(&spec.repository) {
            errors.push(
                FieldError::new(
                    "spec.repository",
                    "the URL carries credentials, which everyone who may read sources would see",
                )
                .hint("name the repository without user:password@; Berth does not yet keep git credentials"),
            );
        }
        check_git_ref("spec.ref", &spec.git_ref, errors);
        if spec.path != "." {
            check_path("spec.path", spec.path.trim_end_matches('/'), errors);
        }
        match parse_interval(&spec.interval) {
            None => errors.push(
                FieldError::new("spec.interval", format!("'{}' is not an interval", spec.interval))
                    .hint("write a whole number and s, m or h, e.g. 30s, 5m or 1h"),
            ),
            Some(d) if d < MIN_INTERVAL => errors.push(
                FieldError::new(
                    "spec.interval",
                    format!("{} is shorter than the shortest interval, 5s", spec.interval),
                )
                .hint("poll at most every 5s; to sync at once, POST /api/v1/sources/{name}/sync"),
            ),
            Some(_) => {}
        }
    }
}

/// Whether an `http(s)://` URL names a user (and perhaps a password or token).
fn has_credentials(url: &str) -> bool {
    url.split_once("://")
        .filter(|(scheme, _)| scheme.starts_with("http"))
        .and_then(|(_, rest)| rest.split('/').next())
        .is_some_and(|authority| authority.contains('@'))
}

/// What a sync of a fetched commit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPlan {
    /// A commit (or settings) not synced yet: apply everything it says; what differed is
    /// what changed.
    Apply,
    /// The synced commit again, with `selfHeal`: apply it, so that what differs (drift)
    /// is reverted.
    Revert,
    /// The synced commit again, without `selfHeal`: only find out what differs (a dry
    /// run), and report it as drift.
    Check,
}

/// Decides what a sync of `fetched` does, given the commit the objects were last synced
/// to and whether the source's settings changed since.
#[must_use]
pub fn plan_sync(spec: &SourceSpec, synced: Option<&str>, fetched: &str, settings_changed: bool) -> SyncPlan {
    if settings_changed || synced != Some(fetched) {
        SyncPlan::Apply
    } else if spec.self_heal {
        SyncPlan::Revert
    } else {
        SyncPlan::Check
    }
}

/// The leaf paths at which `a` and `b` differ (`spec.replicas`, `metadata.labels.x`);
/// arrays differ as a whole.
#[must_use]
pub fn differing_fields(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", a, b, &mut out);
    out
}

fn diff_into(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_into(&path, x, y, out),
                    (None, None) => {}
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(at.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> SourceSpec {
        serde_json::from_value(value).unwrap()
    }

    fn error_paths(spec: &SourceSpec) -> Vec<String> {
        let mut errors = Errors::default();
        SourceKind::validate_spec(spec, &mut errors);
        errors
            .finish("Source")
            .err()
            .map(|e| e.errors.into_iter().map(|e| e.path).collect())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_follow_main_at_the_top_every_minute() {
        let s = spec(json!({"repository": "https://git.example.com/platform.git"}));
        assert_eq!(s.git_ref, "main");
        assert_eq!(s.path, ".");
        assert_eq!(s.interval(), Duration::from_secs(60));
        assert!(!s.prune && !s.self_heal);
        assert!(error_paths(&s).is_empty());
    }

    #[test]
    fn intervals_are_a_number_and_a_unit() {
        for (text, seconds) in [
            ("5s", Some(5)),
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("1h", Some(3600)),
        ] {
            assert_eq!(parse_interval(text), seconds.map(Duration::from_secs), "{text}");
        }
        for bad in ["", "s", "30", "1.5m", "-5s", "5 s", "5d", "99999999999999999999h"] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_bad_field_is_reported() {
        let s = spec(json!({
            "repository": "git@example.com:platform.git",
            "ref": "a..b",
            "path": "../up",
            "interval": "1s",
        }));
        assert_eq!(
            error_paths(&s),
            ["spec.repository", "spec.ref", "spec.path", "spec.interval"]
        );
        let s = spec(json!({"repository": "https://bot:token@git.example.com/platform.git"}));
        assert_eq!(error_paths(&s), ["spec.repository"]);
        let s = spec(json!({"repository": "https://git.example.com/@team/platform.git"}));
        assert!(error_paths(&s).is_empty());
        let s = spec(json!({"repository": "/srv/git/platform", "interval": "soon"}));
        assert_eq!(error_paths(&s), ["spec.interval"]);
        assert_eq!(s.url(), "file:///srv/git/platform");
        let s = spec(json!({"repository": "file:///srv/git/platform", "path": "clusters/prod/"}));
        assert!(error_paths(&s).is_empty());
    }

    #[test]
    fn a_new_commit_is_applied_the_same_one_checked_or_reverted() {
        let plain = spec(json!({"repository": "/r"}));
        let healing = spec(json!({"repository": "/r", "selfHeal": true}));
        assert_eq!(plan_sync(&plain, None, "a", false), SyncPlan::Apply);
        assert_eq!(plan_sync(&plain, Some("a"), "b", false), SyncPlan::Apply);
        assert_eq!(plan_sync(&plain, Some("a"), "a", true), SyncPlan::Apply);
        assert_eq!(plan_sync(&plain, Some("a"), "a", false), SyncPlan::Check);
        assert_eq!(plan_sync(&healing, Some("a"), "a", false), SyncPlan::Revert);
    }

    #[test]
    fn differing_fields_are_leaf_paths() {
        let a = json!({"spec": {"replicas": 1, "env": [1], "same": "x"}, "metadata": {"labels": {"a": "1"}}});
        let b = json!({"spec": {"replicas": 2, "env": [2], "same": "x"}, "metadata": {"labels": {}}});
        assert_eq!(
            differing_fields(&a, &b),
            ["metadata.labels.a", "spec.env", "spec.replicas"]
        );
        assert!(differing_fields(&a, &a).is_empty());
    }
}
