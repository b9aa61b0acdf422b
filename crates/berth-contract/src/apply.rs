//! `POST /apply`: many documents applied in one transaction (all stored or none), and
//! what it did (or, as a dry run, would do) to each object, and what a deploy of each
//! changed application would then roll out.

pub use berth_core::delivery::Rollout;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Label Berth puts on every object an apply with a prune source stores, naming the
/// source; a later apply of that source deletes the labelled objects it no longer has.
pub const SOURCE_LABEL: &str = "berth.dev/source";

/// Body of `POST /apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    /// The documents (User, Team, Cluster, Environment, Application, Source), in any
    /// order: Berth applies them by dependency (users, teams, clusters, environments,
    /// applications, sources).
    pub documents: Vec<ApplyDocument>,
    /// Delete the objects an earlier apply of this source stored and these documents no
    /// longer have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<Prune>,
}

/// One document of an apply, with where it was written (for error messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyDocument {
    /// The document.
    #[schema(value_type = Object)]
    pub object: Value,
    /// The file it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line of the file it starts on (from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// What an apply prunes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prune {
    /// The source's name: every applied object is labelled `berth.dev/source: <name>`,
    /// and labelled objects not among the documents are deleted.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length = 1, max_length = 63)]
    pub source: String,
    /// Delete even an application running in production (which stops it there), as
    /// `DELETE /applications/{name}?force=true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What an apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// It did not exist.
    Created,
    /// Its spec or labels changed.
    Configured,
    /// Nothing changed.
    Unchanged,
    /// It was deleted: an earlier apply of the source stored it, these documents do not
    /// have it.
    Pruned,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
            Self::Pruned => "pruned",
        })
    }
}

/// One object of an apply's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedObject {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// What happened to it.
    pub action: Action,
    /// As stored before (absent for a created object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// As stored after (absent for a pruned object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// The answer of `POST /apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// Whether this was a dry run (nothing stored).
    #[serde(default)]
    pub dry_run: bool,
    /// Every object applied or pruned, in the order Berth applied them.
    pub objects: Vec<AppliedObject>,
    /// For each configured application and each environment it runs in, what
    /// deploying its new spec there would roll out (a new or another release, and which
    /// fields change there); environments where nothing it runs would change are not
    /// listed. An apply deploys nothing itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<Rollout>,
}
