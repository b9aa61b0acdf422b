//! The REST API's contract: the request and response types of `/api/v1`, shared by the
//! server (`berth-api`), the CLI (`berth-cli`) and, through the OpenAPI document the
//! server derives from them (`utoipa`), the console's generated client.
//!
//! One definition per shape: a field added here reaches every client at compile time,
//! and a change that breaks one fails its build. Objects themselves (`Application`,
//! `Deployment`, …) are `berth_core` documents; this crate holds what wraps and drives
//! them. Request bodies refuse unknown fields (the server is strict); answers accept
//! them (a newer server may add fields), and absent optional fields read as `None`.

pub mod builds;
pub mod delivery;
pub mod identity;
pub mod lists;
pub mod problem;
pub mod secrets;

pub use builds::{BuildListParams, BuildRequest, LogEnd, LogParams};
pub use delivery::{
    ApplicationState, DeployRequest, DeploymentSummary, EnvironmentState, PromoteRequest, ProvenanceParams,
    ReleaseRequest, RollbackRequest,
};
pub use identity::{NewToken, RoleGrant, TokenInfo, TokenList, TokenParams, TokenRequest, WhoAmI};
pub use lists::{AuditList, AuditParams, EventList, EventParams, ListMeta, ListParams, ObjectList};
pub use problem::Problem;
pub use secrets::{Resealed, SecretList, SecretParams, SecretValueRequest};
