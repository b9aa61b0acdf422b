//! Team: the owner of applications, the unit of access (members and their roles) and of
//! quota (per environment).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name, quantity,
};

/// The Team kind.
#[derive(Debug, Clone, Copy)]
pub struct TeamKind;

/// A team document.
pub type Team = Resource<TeamKind>;

/// The team every application without a `team` belongs to.
pub const DEFAULT_TEAM: &str = "default";

/// What a member may do in a team. Roles add up: a member holding several may do what
/// any of them allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the team's applications, releases, deployments and secret names.
    Viewer,
    /// Applies the team's applications, builds, deploys to non-production environments
    /// and sets their secret values.
    Developer,
    /// Deploys, promotes and rolls back, production included, and sets production's own
    /// secret values.
    Releaser,
    /// Manages the team: its members and quotas.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Self; 4] = [Self::Viewer, Self::Developer, Self::Releaser, Self::Admin];

    /// The role as written in documents.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Developer => "developer",
            Self::Releaser => "releaser",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user's roles in a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    /// Name of a User.
    pub user: String,
    /// What the user may do.
    pub roles: Vec<Role>,
    /// The environments the roles hold in; every environment when empty. List the user
    /// again to give other roles in other environments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

/// The most a team's applications may use in one environment, summed over every
/// cluster of the environment. A limit left out is not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    /// CPU, e.g. `4` or `2500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, e.g. `8Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// Desired state of a team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamSpec {
    /// Who belongs to the team, with which roles where.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Quotas per environment name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, Quota>,
}

/// Observed state of a team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamStatus {}

impl Kind for TeamKind {
    const KIND: &'static str = "Team";
    const PLURAL: &'static str = "teams";
    type Spec = TeamSpec;
    type Status = TeamStatus;

    fn validate_spec(spec: &TeamSpec, errors: &mut Errors) {
        for (i, m) in spec.members.iter().enumerate() {
            let at = format!("spec.members[{i}]");
            errors.check(name::check_label(&format!("{at}.user"), &m.user));
            if m.roles.is_empty() {
                errors.push(
                    FieldError::new(format!("{at}.roles"), "a member needs at least one role")
                        .hint("use viewer, developer, releaser or admin"),
                );
            }
            for (j, env) in m.environments.iter().enumerate() {
                errors.check(name::check_label(&format!("{at}.environments[{j}]"), env));
            }
        }
        for (env, q) in &spec.quotas {
            let at = format!("spec.quotas.{env}");
            errors.check(name::check_label(&at, env));
            if let Some(cpu) = &q.cpu
                && quantity::parse_cpu(cpu).is_none()
            {
                errors.push(
                    FieldError::new(format!("{at}.cpu"), format!("'{cpu}' is not a CPU quantity"))
                        .hint("use millicores like 500m or cores like 2"),
                );
            }
            if let Some(memory) = &q.memory
                && quantity::parse_memory(memory).is_none()
            {
                errors.push(
                    FieldError::new(
                        format!("{at}.memory"),
                        format!("'{memory}' is not a memory quantity"),
                    )
                    .hint("use a whole number with a unit, like 512Mi or 8Gi"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_every_problem() {
        let t = Team::from_json(&serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "payments"},
            "spec": {
                "members": [
                    {"user": "alice", "roles": ["developer", "releaser"]},
                    {"user": "Bob", "roles": [], "environments": ["prod_1"]}
                ],
                "quotas": {"production": {"cpu": "lots", "memory": "1.5Gi", "replicas": 10}}
            }
        }))
        .unwrap();
        assert_eq!(t.spec.members[0].roles, [Role::Developer, Role::Releaser]);
        let paths: Vec<_> = t
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.members[1].user",
                "spec.members[1].roles",
                "spec.members[1].environments[0]",
                "spec.quotas.production.cpu",
                "spec.quotas.production.memory",
            ]
        );
    }

    #[test]
    fn unknown_role_names_its_path() {
        let e = Team::from_json(&serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "t"},
            "spec": {"members": [{"user": "a", "roles": ["owner"]}]}
        }))
        .unwrap_err();
        assert_eq!(e.errors[0].path, "spec.members[0].roles[0]");
    }
}
