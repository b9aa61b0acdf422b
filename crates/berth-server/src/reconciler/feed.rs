//! The change feed: what an event of the store's log touched, for the reconciler to
//! reload and to queue the (application, environment) keys it affects.

use berth_core::objects::Event;

/// What an event names as changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// An application's deployments, releases or the application itself: every key of
    /// the application (its deployments are reloaded).
    Application(String),
    /// An environment (its clusters, policies): every key in it.
    Environment(String),
    /// A cluster (its connection): every key placed on it.
    Cluster(String),
    /// A team (its quotas): every key of its applications.
    Team(String),
    /// An application's secret, in one environment or all.
    Secret {
        /// The application.
        application: String,
        /// The environment, `None` for all.
        environment: Option<String>,
    },
    /// Nothing the reconciler acts on.
    Nothing,
}

/// What `event` touched.
#[must_use]
pub fn touched(event: &Event) -> Touched {
    let e = &event.event;
    match e.kind.as_str() {
        "Environment" => Touched::Environment(e.name.clone()),
        "Cluster" => Touched::Cluster(e.name.clone()),
        "Team" => Touched::Team(e.name.clone()),
        "Secret" => match &e.application {
            Some(app) => Touched::Secret {
                application: app.clone(),
                environment: e.environment.clone(),
            },
            None => Touched::Nothing,
        },
        "Application" => Touched::Application(e.application.clone().unwrap_or_else(|| e.name.clone())),
        "Deployment" | "Release" => match &e.application {
            Some(app) => Touched::Application(app.clone()),
            None => Touched::Nothing,
        },
        _ => Touched::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use berth_core::objects::NewEvent;
    use chrono::Utc;

    use super::*;

    fn event(e: NewEvent) -> Event {
        Event {
            seq: 1,
            time: Utc::now(),
            event: e,
        }
    }

    #[test]
    fn each_kind_touches_what_it_names() {
        let cases = [
            (
                NewEvent::normal("Created", "Deployment", "web-qa-1", "ann", "").about("web", Some("qa")),
                Touched::Application("web".into()),
            ),
            (
                NewEvent::normal("Created", "Release", "web-1", "ann", "").about("web", None),
                Touched::Application("web".into()),
            ),
            (
                NewEvent::normal("Deleted", "Application", "web", "ann", ""),
                Touched::Application("web".into()),
            ),
            (
                NewEvent::normal("Updated", "Environment", "qa", "ann", ""),
                Touched::Environment("qa".into()),
            ),
            (
                NewEvent::normal("Updated", "Cluster", "east", "ann", ""),
                Touched::Cluster("east".into()),
            ),
            (
                NewEvent::normal("Updated", "Team", "pay", "ann", ""),
                Touched::Team("pay".into()),
            ),
            (
                NewEvent::normal("SecretSet", "Secret", "web.db", "ann", "").about("web", Some("qa")),
                Touched::Secret {
                    application: "web".into(),
                    environment: Some("qa".into()),
                },
            ),
            (
                NewEvent::normal("BuildSucceeded", "Build", "web-1", "berth", "").about("web", None),
                Touched::Nothing,
            ),
            (
                NewEvent::normal("Deployed", "Deployment", "x", "ann", ""),
                Touched::Nothing,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(touched(&event(e.clone())), want, "{e:?}");
        }
    }
}
