//! The REST API's contract: the request and response types of `/api/v1`, shared by the
//! server (`berth-api`), the CLI (`berth-cli`) and, through the OpenAPI document the
//! server derives from them (`utoipa`), the console's generated client.
//!
//! One definition per shape: a field added here reaches every client at compile time,
//! and a change that breaks one fails its build. Objects themselves (`Application`,
//! `Deployment`, …) are `berth_core` documents; this crate holds what wraps and drives
//! them. Request bodies refuse unknown fields (the server is strict); answers accept
//! them (a newer server may add fields), and absent optional fields read as `None`.

pub mod apply;
pub mod builds;
pub mod delivery;
pub mod identity;
pub mod lists;
pub mod operate;
pub mod problem;
pub mod secrets;

pub use apply::{
    Action, AppliedObject, ApplyDocument, ApplyRequest, ApplyResult, Prune, Rollout, SOURCE_LABEL,
};
pub use builds::{BuildListParams, BuildRequest, LogEnd, LogParams};
pub use delivery::{
    ApplicationState, DeployRequest, DeploymentSummary, EnvironmentState, PromoteRequest, ProvenanceParams,
    ReleaseRequest, RollbackRequest,
};
pub use identity::{NewToken, RoleGrant, TokenInfo, TokenList, TokenParams, TokenRequest, WhoAmI};
pub use lists::{AuditList, AuditParams, EventList, EventParams, ListMeta, ListParams, ObjectList};
pub use operate::{
    ClusterProblem, InstanceList, InstanceLogParams, InstanceParams, RestartRequest, TerminatedInstance,
};
pub use problem::Problem;
pub use secrets::{Resealed, SecretList, SecretParams, SecretValueRequest};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    /// What a client sends carries only the fields it sets: `null` for an absent
    /// optional field would be a different request to a strict server.
    #[test]
    fn requests_carry_only_the_fields_set() {
        let deploy = DeployRequest {
            environment: "qa".into(),
            release: None,
            image: None,
        };
        assert_eq!(
            serde_json::to_value(&deploy).unwrap(),
            json!({"environment": "qa"})
        );
        let build = BuildRequest {
            git_ref: Some("main".into()),
        };
        assert_eq!(serde_json::to_value(&build).unwrap(), json!({"ref": "main"}));
        let token = TokenRequest {
            name: "ci".into(),
            user: None,
            expires_in_days: Some(7),
        };
        assert_eq!(
            serde_json::to_value(&token).unwrap(),
            json!({"name": "ci", "expiresInDays": 7})
        );
        let back: TokenRequest = serde_json::from_value(json!({"name": "ci", "expiresInDays": 7})).unwrap();
        assert_eq!(back, token);
    }

    /// The server refuses a request field it does not know (a typo must not be ignored)…
    #[test]
    fn requests_refuse_unknown_fields() {
        let e =
            serde_json::from_value::<DeployRequest>(json!({"environment": "qa", "relase": 3})).unwrap_err();
        assert!(e.to_string().contains("relase"), "{e}");
        assert!(serde_json::from_value::<RollbackRequest>(json!({"environment": "qa", "from": 1})).is_err());
        assert!(serde_json::from_value::<PromoteRequest>(json!({"from": "qa", "to": "p", "x": 1})).is_err());
    }

    /// …while a client reads an answer with fields a newer server added.
    #[test]
    fn answers_accept_new_fields() {
        let state: ApplicationState = serde_json::from_value(json!({
            "application": "web",
            "environments": [{"environment": "qa", "release": 2, "clusters": [], "urls": [], "health": "new"}],
            "since": "a newer server"
        }))
        .unwrap();
        assert_eq!(state.environments[0].release, Some(2));
        let problem: Problem = serde_json::from_value(json!({
            "type": "about:blank", "title": "Conflict", "status": 409, "detail": "busy", "retryAfter": 3
        }))
        .unwrap();
        assert_eq!((problem.status, problem.detail.as_str()), (409, "busy"));
    }
}
