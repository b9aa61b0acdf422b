//! Recording fakes of Berth's ports, for tests of logic (dev-dependency only).
//!
//! | port             | fake                  | records / controls                         |
//! | ---------------- | --------------------- | ------------------------------------------ |
//! | `Clock`          | [`SettableClock`]     | set or advance the time                    |
//! | `ImageResolver`  | [`FakeImages`]        | a tag→digest table; every lookup           |
//! | `Builds`         | [`FakeBuilds`]        | every request; answers a pending build     |
//! | `Store`          | [`RecordingStore`]    | a real in-memory SQLite store; every read; injected commit failures |
//! | `ClusterRuntime` | [`FakeRuntime`]       | every desired set; the counts it reports   |
//!
//! Tests of integration use the real adapters instead; [`http::call`] calls the API of
//! either over real HTTP; [`git::Repo`] makes the git repositories they build or sync from.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod builds;
mod clock;
pub mod git;
pub mod http;
mod images;
mod runtime;
mod store;

pub use builds::FakeBuilds;
pub use clock::SettableClock;
pub use images::FakeImages;
pub use runtime::{FakeClusters, FakeRuntime};
pub use store::{Read, RecordingStore};
