//! User: someone (or something, like a CI system) that holds API tokens. What a user may
//! do comes from the roles teams give it, or from being a platform administrator.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::Errors,
    meta::{Kind, Resource},
};

/// The User kind.
#[derive(Debug, Clone, Copy)]
pub struct UserKind;

/// A user document.
pub type User = Resource<UserKind>;

/// The first platform administrator, made on first start with the bootstrap token.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Desired state of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    /// Full name or e-mail address, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Platform administrators manage clusters, environments, teams and users, read the
    /// audit log, and may do anything a team role allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub platform_admin: bool,
}

/// Observed state of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {}

impl Kind for UserKind {
    const KIND: &'static str = "User";
    const PLURAL: &'static str = "users";
    type Spec = UserSpec;
    type Status = UserStatus;

    fn validate_spec(_: &UserSpec, _: &mut Errors) {}
}
