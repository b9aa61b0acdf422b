//! The commands of the use cases: what a caller asks for, in the domain's words (not the
//! HTTP request types, which belong to the API's contract).

use berth_core::{
    NewEvent,
    objects::{BuildLayer, Deployment},
};

use crate::Actor;

/// Make a new release of an application.
#[derive(Debug, Clone)]
pub struct CreateRelease {
    /// Who asks.
    pub actor: Actor,
    /// The application.
    pub application: String,
    /// The image, a tag (resolved now) or a digest; the application's own when `None`.
    pub image: Option<String>,
    /// Why the release is made.
    pub description: Option<String>,
}

/// Which release a deploy puts in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseWanted {
    /// This existing release.
    Existing(u64),
    /// A new release of the current spec with this image.
    Image(String),
    /// The current spec: its newest release if that matches, else a new release.
    Current,
}

/// Deploy a release of an application to an environment.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// Who asks.
    pub actor: Actor,
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
    /// Which release.
    pub release: ReleaseWanted,
}

/// Roll an environment back to an earlier release.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// Who asks.
    pub actor: Actor,
    /// The application.
    pub application: String,
    /// The environment.
    pub environment: String,
    /// The release to go back to; the newest other release that succeeded there when
    /// `None`.
    pub to: Option<u64>,
}

/// Promote what runs in one environment to another: a copy of its release, never a
/// rebuild.
#[derive(Debug, Clone)]
pub struct Promote {
    /// Who asks.
    pub actor: Actor,
    /// The application.
    pub application: String,
    /// The environment whose running release is promoted.
    pub from: String,
    /// The environment it is promoted to.
    pub to: String,
}

/// Record a successful build and the release it makes, in one commit.
pub struct ReleaseFromBuild<'a> {
    /// The build.
    pub build: String,
    /// The digest the build pushed.
    pub digest: String,
    /// The layers it pushed.
    pub layers: Vec<BuildLayer>,
    /// Adds a line to the build's log and returns the log to store in its status.
    pub log: &'a (dyn Fn(&str) -> String + Send + Sync),
}

/// Record that a deployment failed and, where its environment asks for it, the
/// deployment that rolls back to the last release that succeeded there, in one commit.
#[derive(Debug, Clone)]
pub struct AutoRollback {
    /// The deployment with its new, failed status (as read, plus the status).
    pub failed: Deployment,
    /// The events that go with the failure (e.g. `RolloutFailed`).
    pub events: Vec<NewEvent>,
}

/// Delete an application: stop it everywhere, keep its history.
#[derive(Debug, Clone)]
pub struct DeleteApplication {
    /// Who asks.
    pub actor: Actor,
    /// The application.
    pub application: String,
    /// Go ahead although it runs in a production environment.
    pub force: bool,
}
