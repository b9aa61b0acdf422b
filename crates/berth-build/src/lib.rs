//! Builds images from sources: Berth's "build once" edge.
//!
//! ```text
//!  git (gix) ──▶ Tree (exact commit) ──▶ builder ──▶ registry (OCI distribution API)
//!                                        │ java:       JRE base + libs/resources/classes layers
//!                                        │             (WAR: Tomcat base; pom.xml: Maven first),
//!                                        │             reproducible, straight to the registry
//!                                        │ dockerfile: Docker Engine API /build, then pushed
//!                                        └ image:      an external reference resolved to its digest
//! ```
//!
//! [`BuildService`] implements the core's [`Builds`](berth_core::ports::Builds) port: a
//! (commit, builder configuration) pair builds at most once, and a successful build
//! records a release pinned to the image digest.

pub mod dockerfile;
pub mod git;
pub mod image;
pub mod java;
pub mod layer;
pub mod log;
pub mod maven;
pub mod registry;
pub mod service;

pub use registry::{Credentials, Registry, RegistryOptions, Retry};
pub use service::{BuildObserver, BuildOptions, BuildService};

/// The build host's Docker Engine API from `DOCKER_HOST` (or the platform default), for
/// the dockerfile builder; `None` when none is configured.
#[must_use]
pub fn docker_from_env() -> Option<bollard::Docker> {
    bollard::Docker::connect_with_defaults().ok()
}
