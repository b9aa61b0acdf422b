//! Berth's domain core.
//!
//! Everything here is pure: types, validation, rendering of desired state and the
//! planning of rollouts. No I/O and no async runtime; the edges to the world (store,
//! runtimes, registry, clock) are traits in [`ports`], implemented by adapter crates.
//!
//! ```text
//!  Application ──release──▶ Release (immutable, digest-pinned, numbered)
//!                               │ deploy
//!                               ▼
//!  Environment ──clusters──▶ Deployment ──render──▶ Workload per cluster ──plan──▶ actions
//! ```

pub mod audit;
pub mod authz;
pub mod build;
pub mod delivery;
pub mod deployment;
pub mod error;
pub mod health;
pub mod image;
pub mod instance;
pub mod jvm;
pub mod meta;
pub mod name;
pub mod objects;
pub mod ports;
pub mod promotion;
pub mod quantity;
pub mod quota;
pub mod reconcile;
pub mod render;
pub mod repo;
pub mod rollout;
pub mod stream;
pub mod template;

pub use error::{FieldError, Invalid};
pub use meta::{API_VERSION, Kind, ObjectMeta, Resource};
pub use objects::{Event, NewEvent};
