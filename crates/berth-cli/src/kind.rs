//! The kinds of object the CLI names on its command line, and their aliases.
//!
//! `get app`, `get applications` and `get Application` all mean the same kind; this is
//! the one place that knows the spellings and the API path of each kind.

use std::{fmt, str::FromStr};

/// A kind of object, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KindName {
    /// `user`, `users`.
    User,
    /// `team`, `teams`.
    Team,
    /// `cluster`, `clusters`.
    Cluster,
    /// `environment`, `environments`, `env`, `envs`.
    Environment,
    /// `application`, `applications`, `app`, `apps`.
    Application,
    /// `source`, `sources`, `src`: git repositories Berth syncs from.
    Source,
    /// `release`, `releases`, `rel`.
    Release,
    /// `deployment`, `deployments`, `deploy`, `deploys`.
    Deployment,
    /// `event`, `events`, `ev`.
    Event,
}

impl KindName {
    /// Every kind, in the order documents are applied.
    pub const ALL: [Self; 9] = [
        Self::User,
        Self::Team,
        Self::Cluster,
        Self::Environment,
        Self::Application,
        Self::Source,
        Self::Release,
        Self::Deployment,
        Self::Event,
    ];

    /// `kind` as written in documents, e.g. `Application`.
    #[must_use]
    pub fn kind(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Team => "Team",
            Self::Cluster => "Cluster",
            Self::Environment => "Environment",
            Self::Application => "Application",
            Self::Source => "Source",
            Self::Release => "Release",
            Self::Deployment => "Deployment",
            Self::Event => "Event",
        }
    }

    /// Path segment of the collection in the API, e.g. `applications`.
    #[must_use]
    pub fn plural(self) -> &'static str {
        match self {
            Self::User => "users",
            Self::Team => "teams",
            Self::Cluster => "clusters",
            Self::Environment => "environments",
            Self::Application => "applications",
            Self::Source => "sources",
            Self::Release => "releases",
            Self::Deployment => "deployments",
            Self::Event => "events",
        }
    }

    /// The lowercase singular used in output such as `application/web`.
    #[must_use]
    pub fn singular(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Team => "team",
            Self::Cluster => "cluster",
            Self::Environment => "environment",
            Self::Application => "application",
            Self::Source => "source",
            Self::Release => "release",
            Self::Deployment => "deployment",
            Self::Event => "event",
        }
    }

    /// The short aliases accepted besides the singular and plural.
    #[must_use]
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Self::User | Self::Team => &[],
            Self::Cluster => &["cl"],
            Self::Environment => &["env", "envs"],
            Self::Application => &["app", "apps"],
            Self::Source => &["src"],
            Self::Release => &["rel"],
            Self::Deployment => &["deploy", "deploys"],
            Self::Event => &["ev"],
        }
    }

    /// The kind a document's `kind` field names (exact spelling), if any.
    #[must_use]
    pub fn from_document_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kind() == kind)
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

/// A name on the command line that is no kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<String> = KindName::ALL
            .iter()
            .map(|k| match k.short_names().first() {
                Some(short) => format!("{} ({short})", k.plural()),
                None => k.plural().to_owned(),
            })
            .collect();
        write!(f, "unknown kind '{}'; use one of: {}", self.0, known.join(", "))
    }
}

impl std::error::Error for UnknownKind {}

impl FromStr for KindName {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| {
                lower == k.singular() || lower == k.plural() || k.short_names().contains(&lower.as_str())
            })
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        let cases = [
            ("cluster", KindName::Cluster),
            ("clusters", KindName::Cluster),
            ("cl", KindName::Cluster),
            ("Cluster", KindName::Cluster),
            ("environment", KindName::Environment),
            ("environments", KindName::Environment),
            ("env", KindName::Environment),
            ("envs", KindName::Environment),
            ("application", KindName::Application),
            ("applications", KindName::Application),
            ("app", KindName::Application),
            ("apps", KindName::Application),
            ("APPS", KindName::Application),
            ("release", KindName::Release),
            ("releases", KindName::Release),
            ("rel", KindName::Release),
            ("deployment", KindName::Deployment),
            ("deployments", KindName::Deployment),
            ("deploy", KindName::Deployment),
            ("deploys", KindName::Deployment),
            ("event", KindName::Event),
            ("events", KindName::Event),
            ("ev", KindName::Event),
            ("users", KindName::User),
            ("Team", KindName::Team),
        ];
        for (name, kind) in cases {
            assert_eq!(name.parse::<KindName>(), Ok(kind), "{name}");
        }
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let e = "pods".parse::<KindName>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown kind 'pods'; use one of: users, teams, clusters (cl), environments (env), applications \
             (app), sources (src), releases (rel), deployments (deploy), events (ev)"
        );
    }

    #[test]
    fn document_kinds_are_exact() {
        assert_eq!(
            KindName::from_document_kind("Application"),
            Some(KindName::Application)
        );
        assert_eq!(KindName::from_document_kind("application"), None);
        for k in KindName::ALL {
            assert_eq!(KindName::from_document_kind(k.kind()), Some(k));
        }
    }
}
