//! Event: an append-only record of a change or a state transition.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether an event is routine or needs attention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// Routine.
    #[default]
    Normal,
    /// Something went wrong or was corrected.
    Warning,
}

/// An event about to be recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    /// Routine or warning.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// A CamelCase word for machines: `Created`, `RolloutSucceeded`, `DriftCorrected`…
    pub reason: String,
    /// Kind of the object concerned.
    pub kind: String,
    /// Name of the object concerned.
    pub name: String,
    /// The application concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The environment concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The cluster concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Who did it: a user, or `berth` for the platform itself.
    pub actor: String,
    /// A sentence for people.
    pub message: String,
}

impl NewEvent {
    /// A routine event about `kind/name`.
    #[must_use]
    pub fn normal(reason: &str, kind: &str, name: &str, actor: &str, message: impl Into<String>) -> Self {
        Self {
            event_type: EventType::Normal,
            reason: reason.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            actor: actor.to_owned(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// A warning about `kind/name`.
    #[must_use]
    pub fn warning(reason: &str, kind: &str, name: &str, actor: &str, message: impl Into<String>) -> Self {
        Self {
            event_type: EventType::Warning,
            ..Self::normal(reason, kind, name, actor, message)
        }
    }

    /// Names the application and environment concerned.
    #[must_use]
    pub fn about(mut self, application: &str, environment: Option<&str>) -> Self {
        self.application = Some(application.to_owned());
        self.environment = environment.map(str::to_owned);
        self
    }

    /// Names the cluster concerned.
    #[must_use]
    pub fn on_cluster(mut self, cluster: &str) -> Self {
        self.cluster = Some(cluster.to_owned());
        self
    }
}

/// A recorded event, with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the log: strictly increasing, never reused. Resume a stream from here.
    pub seq: u64,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub event: NewEvent,
}
