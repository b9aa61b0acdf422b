//! Release: an immutable, numbered snapshot of what runs, pinned to an image digest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::application::{ApplicationSpec, validate_application_spec};
use crate::{
    error::{Errors, FieldError},
    image::ImageRef,
    meta::{Kind, Resource},
    name,
    template::template_hash,
};

/// The Release kind.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseKind;

/// A release document. Its name is `<application>-<number>`.
pub type Release = Resource<ReleaseKind>;

/// Where a release came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseOrigin {
    /// The image reference as the user gave it, before it was resolved to a digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_image: Option<String>,
    /// Who made the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Why it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The build that made the image, when Berth built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// The git commit the image was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The promotion that made this release, when it is a copy of a release that ran in
    /// another environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
}

/// A release copied from one environment to the next, with the identical image digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Promotion {
    /// The environment the release ran in.
    pub from_environment: String,
    /// The release that ran there.
    pub from_release: u64,
    /// The environment it was promoted to.
    pub to_environment: String,
    /// Who promoted it.
    pub promoted_by: String,
    /// When.
    pub promoted_at: DateTime<Utc>,
}

/// The immutable content of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseSpec {
    /// The application released.
    pub application: String,
    /// Number, counting from 1 per application.
    pub number: u64,
    /// The application spec as released; its `image` is pinned by digest.
    pub template: ApplicationSpec,
    /// The template hash (`sha256:…`, see `berth_core::template`): the digest and
    /// everything that is not a per-environment override. `requireVerifiedIn` compares
    /// it. Absent on releases made before Berth recorded it (it is then computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// Where it came from.
    #[serde(default)]
    pub origin: ReleaseOrigin,
}

/// Observed state of a release (releases never change; this is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseStatus {}

/// The name of release `number` of `application`.
#[must_use]
pub fn release_name(application: &str, number: u64) -> String {
    format!("{application}-{number}")
}

impl Kind for ReleaseKind {
    const KIND: &'static str = "Release";
    const PLURAL: &'static str = "releases";
    const MAX_NAME: usize = 253;
    type Spec = ReleaseSpec;
    type Status = ReleaseStatus;

    fn validate_spec(spec: &ReleaseSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.application", &spec.application));
        if spec.number == 0 {
            errors.push(FieldError::new("spec.number", "release numbers start at 1"));
        }
        validate_application_spec(&spec.template, "spec.template", errors);
        if let Some(hash) = &spec.template_hash
            && *hash != template_hash(&spec.template)
        {
            errors.push(
                FieldError::new("spec.templateHash", "does not match spec.template")
                    .hint("leave it out; Berth computes it when it makes the release"),
            );
        }
        if ImageRef::parse(&spec.template.image).is_ok_and(|r| !r.is_pinned()) {
            errors.push(
                FieldError::new("spec.template.image", "a release runs an image pinned by digest")
                    .hint("create releases through the releases endpoint, which resolves tags to digests"),
            );
        }
    }

    fn owner(spec: &ReleaseSpec) -> Option<&str> {
        Some(&spec.application)
    }
}

impl Release {
    /// A release of `application` numbered `number` with `template` (image pinned), its
    /// template hash recorded.
    #[must_use]
    pub fn of(application: &str, number: u64, template: ApplicationSpec, origin: ReleaseOrigin) -> Self {
        Self::new(
            release_name(application, number),
            ReleaseSpec {
                application: application.to_owned(),
                number,
                template_hash: Some(template_hash(&template)),
                template,
                origin,
            },
        )
    }

    /// The template hash of this release (computed from the template, so that releases
    /// made before it was recorded have one too).
    #[must_use]
    pub fn template_hash(&self) -> String {
        template_hash(&self.spec.template)
    }
}
