//! Authorization: who may do what, decided by one pure function.
//!
//! ```text
//!  User ──(platformAdmin)──────────────────────────────▶ everything
//!    └──member of Team──roles (per environment)──▶ Principal.grants
//!                                                          │
//!  API operation ──(berth-api: one table)──▶ Permission ──▶ decide() ──▶ allow | Denied
//! ```
//!
//! | permission                     | viewer | developer | releaser | admin |
//! | ------------------------------ | ------ | --------- | -------- | ----- |
//! | read the team's objects        |   ✔    |     ✔     |    ✔     |   ✔   |
//! | apply applications and secrets |        |     ✔     |          |       |
//! | build                          |        |     ✔     |    ✔     |       |
//! | deploy to non-production       |        |     ✔     |    ✔     |       |
//! | deploy to production           |        |           |    ✔     |       |
//! | manage members and quotas      |        |           |          |   ✔   |
//!
//! Reading clusters, environments and users needs only a valid token; managing them,
//! creating teams and reading the audit log needs a platform administrator, who may
//! also do anything above. Roles given for some environments count for deploys only
//! there; for everything else a role in any environment counts.

use crate::objects::{Role, Team};

/// One role a user holds in one team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The team.
    pub team: String,
    /// The role.
    pub role: Role,
    /// The environments the role holds in; every environment when empty.
    pub environments: Vec<String>,
}

impl Grant {
    fn covers(&self, environment: &str) -> bool {
        self.environments.is_empty() || self.environments.iter().any(|e| e == environment)
    }
}

/// Someone making a request, with everything authorization needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name.
    pub user: String,
    /// Whether the user is a platform administrator.
    pub platform_admin: bool,
    /// The user's roles in teams.
    pub grants: Vec<Grant>,
}

impl Principal {
    /// The principal of `user`, with the roles `teams` give it.
    #[must_use]
    pub fn new(user: &str, platform_admin: bool, teams: &[Team]) -> Self {
        let grants = teams
            .iter()
            .flat_map(|t| {
                t.spec
                    .members
                    .iter()
                    .filter(|m| m.user == user)
                    .flat_map(move |m| {
                        m.roles.iter().map(move |role| Grant {
                            team: t.metadata.name.clone(),
                            role: *role,
                            environments: m.environments.clone(),
                        })
                    })
            })
            .collect();
        Self {
            user: user.to_owned(),
            platform_admin,
            grants,
        }
    }

    /// Whether the principal may read the objects of `team`.
    #[must_use]
    pub fn can_read(&self, team: &str) -> bool {
        decide(
            self,
            &Permission::Read {
                team: team.to_owned(),
            },
        )
        .is_ok()
    }
}

/// Something a request needs to be allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read clusters, environments, users and one's own tokens.
    ReadPlatform,
    /// Manage clusters, environments, users and teams; read the audit log; rotate keys.
    AdministerPlatform,
    /// Read a team's applications, releases, deployments and secret names.
    Read {
        /// The team.
        team: String,
    },
    /// Create, change and delete a team's applications and secrets; make releases.
    Apply {
        /// The team.
        team: String,
    },
    /// Build images of a team's applications.
    Build {
        /// The team.
        team: String,
    },
    /// Deploy, promote into or roll back an environment.
    Deploy {
        /// The team.
        team: String,
        /// The environment.
        environment: String,
        /// Whether the environment is a production one.
        production: bool,
    },
    /// Change a team's members and quotas.
    ManageTeam {
        /// The team.
        team: String,
    },
}

impl Permission {
    /// A stable name for machines, e.g. `deploy.production`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::ReadPlatform => "platform.read",
            Self::AdministerPlatform => "platform.admin",
            Self::Read { .. } => "team.read",
            Self::Apply { .. } => "team.apply",
            Self::Build { .. } => "team.build",
            Self::Deploy { production: true, .. } => "deploy.production",
            Self::Deploy { .. } => "deploy.nonproduction",
            Self::ManageTeam { .. } => "team.manage",
        }
    }

    /// The team roles that give it (none: only a platform administrator has it, or,
    /// for [`Permission::ReadPlatform`], anyone signed in).
    #[must_use]
    pub fn roles(&self) -> &'static [Role] {
        match self {
            Self::ReadPlatform | Self::AdministerPlatform => &[],
            Self::Read { .. } => &Role::ALL,
            Self::Apply { .. } => &[Role::Developer],
            Self::Build { .. }
            | Self::Deploy {
                production: false, ..
            } => &[Role::Developer, Role::Releaser],
            Self::Deploy { production: true, .. } => &[Role::Releaser],
            Self::ManageTeam { .. } => &[Role::Admin],
        }
    }

    fn team(&self) -> Option<&str> {
        match self {
            Self::ReadPlatform | Self::AdministerPlatform => None,
            Self::Read { team }
            | Self::Apply { team }
            | Self::Build { team }
            | Self::Deploy { team, .. }
            | Self::ManageTeam { team } => Some(team),
        }
    }

    fn environment(&self) -> Option<&str> {
        match self {
            Self::Deploy { environment, .. } => Some(environment),
            _ => None,
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReadPlatform => f.write_str("read the platform"),
            Self::AdministerPlatform => f.write_str("administer the platform"),
            Self::Read { team } => write!(f, "read team '{team}'"),
            Self::Apply { team } => write!(f, "change the applications and secrets of team '{team}'"),
            Self::Build { team } => write!(f, "build the applications of team '{team}'"),
            Self::Deploy {
                team,
                environment,
                production,
            } => write!(
                f,
                "deploy applications of team '{team}' to {} environment '{environment}'",
                if *production {
                    "production"
                } else {
                    "non-production"
                }
            ),
            Self::ManageTeam { team } => write!(f, "manage team '{team}'"),
        }
    }
}

/// A refusal: what was missing and what would give it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user '{user}' may not {permission} ({}): {}", .permission.name(), self.needs())]
pub struct Denied {
    /// Who asked.
    pub user: String,
    /// What was missing.
    pub permission: Permission,
}

impl Denied {
    /// What would give the permission, for people.
    #[must_use]
    pub fn needs(&self) -> String {
        let roles: Vec<&str> = self.permission.roles().iter().map(|r| r.as_str()).collect();
        let Some(team) = self.permission.team().filter(|_| !roles.is_empty()) else {
            return "that needs a platform administrator".to_owned();
        };
        let which = match roles.as_slice() {
            [one] => format!("the {one} role"),
            many => format!("one of the roles {}", many.join(", ")),
        };
        match self.permission.environment() {
            Some(env) => format!("that needs {which} in team '{team}' for environment '{env}'"),
            None => format!("that needs {which} in team '{team}'"),
        }
    }
}

/// Decides whether `principal` has `permission`.
///
/// # Errors
///
/// [`Denied`] naming the permission when it does not.
pub fn decide(principal: &Principal, permission: &Permission) -> Result<(), Denied> {
    let allowed = principal.platform_admin
        || match permission {
            Permission::ReadPlatform => true,
            Permission::AdministerPlatform => false,
            other => principal.grants.iter().any(|g| {
                Some(g.team.as_str()) == other.team()
                    && other.roles().contains(&g.role)
                    && other.environment().is_none_or(|env| g.covers(env))
            }),
        };
    if allowed {
        Ok(())
    } else {
        Err(Denied {
            user: principal.user.clone(),
            permission: permission.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Option<Role>, environments: &[&str]) -> Principal {
        Principal {
            user: "u".into(),
            platform_admin: false,
            grants: role
                .map(|role| Grant {
                    team: "pay".into(),
                    role,
                    environments: environments.iter().map(|e| (*e).to_owned()).collect(),
                })
                .into_iter()
                .collect(),
        }
    }

    fn deploy(env: &str, production: bool) -> Permission {
        Permission::Deploy {
            team: "pay".into(),
            environment: env.into(),
            production,
        }
    }

    /// Every role (and none, and platform admin) against every permission, with
    /// production and non-production deploys.
    #[test]
    fn the_whole_matrix() {
        let team = || "pay".to_owned();
        let permissions = [
            Permission::ReadPlatform,
            Permission::AdministerPlatform,
            Permission::Read { team: team() },
            Permission::Apply { team: team() },
            Permission::Build { team: team() },
            deploy("qa", false),
            deploy("production", true),
            Permission::ManageTeam { team: team() },
        ];
        // Columns in the order of `permissions`.
        let table: [(&str, Option<Role>, bool, [bool; 8]); 6] = [
            (
                "nobody",
                None,
                false,
                [true, false, false, false, false, false, false, false],
            ),
            (
                "viewer",
                Some(Role::Viewer),
                false,
                [true, false, true, false, false, false, false, false],
            ),
            (
                "developer",
                Some(Role::Developer),
                false,
                [true, false, true, true, true, true, false, false],
            ),
            (
                "releaser",
                Some(Role::Releaser),
                false,
                [true, false, true, false, true, true, true, false],
            ),
            (
                "admin",
                Some(Role::Admin),
                false,
                [true, false, true, false, false, false, false, true],
            ),
            ("platform admin", None, true, [true; 8]),
        ];
        for (who, role, admin, expected) in table {
            let mut p = principal(role, &[]);
            p.platform_admin = admin;
            for (permission, want) in permissions.iter().zip(expected) {
                assert_eq!(decide(&p, permission).is_ok(), want, "{who} / {permission}");
            }
        }
    }

    #[test]
    fn other_teams_give_nothing() {
        let p = principal(Some(Role::Releaser), &[]);
        let other = Permission::Deploy {
            team: "other".into(),
            environment: "qa".into(),
            production: false,
        };
        assert!(decide(&p, &other).is_err());
        assert!(!p.can_read("other"));
        assert!(p.can_read("pay"));
    }

    #[test]
    fn environment_scoped_roles_deploy_only_there() {
        let p = principal(Some(Role::Releaser), &["production"]);
        assert!(decide(&p, &deploy("production", true)).is_ok());
        assert!(decide(&p, &deploy("qa", false)).is_err());
        assert!(decide(&p, &deploy("production-eu", true)).is_err());
        // A scoped role still lets its holder read the team and build.
        assert!(decide(&p, &Permission::Read { team: "pay".into() }).is_ok());
        assert!(decide(&p, &Permission::Build { team: "pay".into() }).is_ok());
    }

    #[test]
    fn principals_collect_roles_from_every_team() {
        let team = |name: &str, members: serde_json::Value| -> Team {
            Team::from_json(&serde_json::json!({
                "apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": name},
                "spec": {"members": members}
            }))
            .unwrap()
        };
        let teams = [
            team(
                "pay",
                serde_json::json!([
                    {"user": "alice", "roles": ["developer"]},
                    {"user": "alice", "roles": ["releaser"], "environments": ["production"]},
                    {"user": "bob", "roles": ["viewer"]}
                ]),
            ),
            team("web", serde_json::json!([{"user": "alice", "roles": ["admin"]}])),
        ];
        let p = Principal::new("alice", false, &teams);
        assert_eq!(p.grants.len(), 3);
        assert!(decide(&p, &deploy("production", true)).is_ok());
        assert!(decide(&p, &Permission::ManageTeam { team: "web".into() }).is_ok());
        assert!(decide(&p, &Permission::ManageTeam { team: "pay".into() }).is_err());
    }

    #[test]
    fn denials_name_the_permission_and_the_fix() {
        let e = decide(
            &principal(Some(Role::Developer), &[]),
            &deploy("production", true),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "user 'u' may not deploy applications of team 'pay' to production environment 'production' \
             (deploy.production): that needs the releaser role in team 'pay' for environment 'production'"
        );
        let e = decide(&principal(None, &[]), &Permission::AdministerPlatform).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("(platform.admin): that needs a platform administrator"),
            "{e}"
        );
        let e = decide(&principal(None, &[]), &Permission::Build { team: "pay".into() }).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("one of the roles developer, releaser in team 'pay'"),
            "{e}"
        );
    }
}
