//! Build: one build of one source revision with one builder configuration, and what it
//! produced (an image digest and a release) or why it failed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::source::Builder;
use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
};

/// The Build kind.
#[derive(Debug, Clone, Copy)]
pub struct BuildKind;

/// A build document. Its name is `<application>-build-<number>`.
pub type Build = Resource<BuildKind>;

/// What was asked to be built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildSpec {
    /// The application built.
    pub application: String,
    /// Number, counting from 1 per application.
    pub number: u64,
    /// The git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    /// The branch, tag or commit asked for.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The exact commit built (absent when the fetch failed, and for the `image` builder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The builder and its settings.
    pub builder: Builder,
    /// SHA-256 of everything besides the commit that shapes the image (the builder
    /// settings, the target repository, the port): with the commit, the build's key.
    pub builder_hash: String,
    /// The repository the image is pushed to (or, for the `image` builder, the reference
    /// resolved).
    pub image: String,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Where a build stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum BuildPhase {
    /// Recorded; not started yet.
    #[default]
    Pending,
    /// Building and pushing.
    Running,
    /// The image is in the registry and a release pins its digest.
    Succeeded,
    /// It failed; nothing was released.
    Failed,
}

impl BuildPhase {
    /// Whether the build can no longer change.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One blob of the image, and whether this build had to upload it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildLayer {
    /// What it holds: `base`, `dependencies`, `resources`, `classes`, `layer`, `config`.
    pub role: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes (compressed).
    pub size: u64,
    /// Whether it was uploaded (false: the registry had it already).
    pub pushed: bool,
}

/// Observed state of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildStatus {
    /// Where it stands.
    #[serde(default)]
    pub phase: BuildPhase,
    /// A sentence on the outcome; the error when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The image digest (`sha256:…`) it produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The image, pinned by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The release that pins the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// The blobs of the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<BuildLayer>,
    /// The build's log (its end, when it is very long).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The name of build `number` of `application`.
#[must_use]
pub fn build_name(application: &str, number: u64) -> String {
    format!("{application}-build-{number}")
}

impl Kind for BuildKind {
    const KIND: &'static str = "Build";
    const PLURAL: &'static str = "builds";
    const MAX_NAME: usize = 253;
    type Spec = BuildSpec;
    type Status = BuildStatus;

    fn validate_spec(spec: &BuildSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.application", &spec.application));
        if spec.number == 0 {
            errors.push(FieldError::new("spec.number", "build numbers start at 1"));
        }
    }

    fn owner(spec: &BuildSpec) -> Option<&str> {
        Some(&spec.application)
    }
}
