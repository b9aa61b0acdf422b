//! `berth describe KIND NAME`: one object for people — its metadata, its spec, what Berth
//! observed about it, and its most recent events.

use std::{io::Write, process::ExitCode};

use berth_core::{
    ObjectMeta,
    objects::{
        Application, ApplicationSpec, Cluster, Deployment, Environment, Event, Release, SyncSource, Team,
        User,
    },
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    deploy::progress_line,
    events,
    get::{self, Found},
    status::{self, AppStatus},
    variant,
};
use crate::{
    client::Client,
    kind::KindName,
    output::{self, Table},
};

/// Events shown at the end of a description.
const RECENT: usize = 10;

/// Arguments of `berth describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// Kind: user, team, cluster, environment (env), application (app), release, deployment (deploy).
    pub kind: KindName,
    /// The object's name (releases: APP-NUMBER, or NUMBER with --app).
    pub name: String,
    /// The application a release number belongs to.
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
}

/// What a description shows besides the object itself; parts that could not be read
/// are reported in place rather than failing the whole command.
#[derive(Debug, Clone)]
pub struct Extras {
    /// Recent events about the object.
    pub events: Result<Vec<Event>, String>,
    /// For applications: where they run.
    pub app_status: Option<Result<AppStatus, String>>,
}

/// Runs `berth describe`.
pub async fn run(
    client: &Client,
    args: DescribeArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    if args.kind == KindName::Event {
        anyhow::bail!("events have no names; list them with `berth events`");
    }
    let found = get::fetch_one(client, args.kind, &args.name, args.app.as_deref()).await?;
    let about = About::of(&found);
    let events = events::list(client, about.application(), 0)
        .await
        .map(|all| {
            let mut mine: Vec<Event> = all.into_iter().filter(|e| about.matches(e)).collect();
            let skip = mine.len().saturating_sub(RECENT);
            mine.drain(..skip);
            mine
        })
        .map_err(|e| format!("{e:#}"));
    let app_status = match &found {
        Found::Applications(v) => match v.first() {
            Some(a) => Some(
                client
                    .get::<AppStatus>(&["applications", &a.metadata.name, "status"], &[])
                    .await
                    .map_err(|e| format!("{e:#}")),
            ),
            None => None,
        },
        _ => None,
    };
    let extras = Extras { events, app_status };
    out.write_all(render(&found, &extras, Utc::now())?.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Which events belong in a description.
#[derive(Debug, Clone, PartialEq, Eq)]
enum About {
    /// Events about the cluster or on it.
    Cluster(String),
    /// Events about the environment or in it.
    Environment(String),
    /// Every event of the application.
    Application(String),
    /// Events about one release or deployment of an application.
    Child {
        kind: &'static str,
        name: String,
        application: String,
    },
    /// Events about one object of another kind.
    Object(&'static str, String),
    Nothing,
}

impl About {
    fn of(found: &Found) -> Self {
        match found {
            Found::Clusters(v) => v
                .first()
                .map_or(Self::Nothing, |c| Self::Cluster(c.metadata.name.clone())),
            Found::Environments(v) => v
                .first()
                .map_or(Self::Nothing, |e| Self::Environment(e.metadata.name.clone())),
            Found::Applications(v) => v
                .first()
                .map_or(Self::Nothing, |a| Self::Application(a.metadata.name.clone())),
            Found::Releases(v) => v.first().map_or(Self::Nothing, |r| Self::Child {
                kind: "Release",
                name: r.metadata.name.clone(),
                application: r.spec.application.clone(),
            }),
            Found::Deployments(v) => v.first().map_or(Self::Nothing, |d| Self::Child {
                kind: "Deployment",
                name: d.metadata.name.clone(),
                application: d.spec.application.clone(),
            }),
            Found::Users(v) => v
                .first()
                .map_or(Self::Nothing, |u| Self::Object("User", u.metadata.name.clone())),
            Found::Teams(v) => v
                .first()
                .map_or(Self::Nothing, |t| Self::Object("Team", t.metadata.name.clone())),
            Found::Sources(v) => v
                .first()
                .map_or(Self::Nothing, |s| Self::Object("Source", s.metadata.name.clone())),
            Found::Events(_) => Self::Nothing,
        }
    }

    /// The application to ask the server for, so it filters for us.
    fn application(&self) -> Option<&str> {
        match self {
            Self::Application(a) | Self::Child { application: a, .. } => Some(a),
            _ => None,
        }
    }

    fn matches(&self, e: &Event) -> bool {
        let ev = &e.event;
        match self {
            Self::Cluster(n) => (ev.kind == "Cluster" && ev.name == *n) || ev.cluster.as_deref() == Some(n),
            Self::Environment(n) => {
                (ev.kind == "Environment" && ev.name == *n) || ev.environment.as_deref() == Some(n)
            }
            Self::Application(_) => true,
            Self::Child { kind, name, .. } | Self::Object(kind, name) => ev.kind == *kind && ev.name == *name,
            Self::Nothing => false,
        }
    }
}

/// The description of the (first) object found.
pub fn render(found: &Found, extras: &Extras, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = match found {
        Found::Users(v) => v.first().map(|u| user(u, now)).transpose()?,
        Found::Teams(v) => v.first().map(|t| team(t, now)).transpose()?,
        Found::Clusters(v) => v.first().map(|c| cluster(c, now)).transpose()?,
        Found::Environments(v) => v.first().map(|e| environment(e, now)).transpose()?,
        Found::Applications(v) => v.first().map(|a| application(a, extras, now)).transpose()?,
        Found::Releases(v) => v.first().map(|r| release(r, now)).transpose()?,
        Found::Deployments(v) => v.first().map(|d| deployment(d, now)).transpose()?,
        Found::Sources(v) => v.first().map(|s| source(s, now)).transpose()?,
        Found::Events(_) => None,
    }
    .unwrap_or_default();
    out.push_str(&recent_events(&extras.events, now));
    Ok(out)
}

fn header(kind: &str, meta: &ObjectMeta, now: DateTime<Utc>) -> String {
    let mut out = format!("Name:      {}\nKind:      {kind}\n", meta.name);
    if let Some(t) = meta.creation_timestamp {
        out.push_str(&format!(
            "Created:   {} ({} ago)\n",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            output::age(Some(t), now)
        ));
    }
    if let Some(t) = meta.update_timestamp {
        out.push_str(&format!(
            "Updated:   {} ({} ago)\n",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            output::age(Some(t), now)
        ));
    }
    if let Some(v) = &meta.resource_version {
        out.push_str(&format!("Version:   {v}\n"));
    }
    if !meta.labels.is_empty() {
        let labels: Vec<String> = meta.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("Labels:    {}\n", labels.join(", ")));
    }
    out
}

/// The spec as indented YAML under `Spec:`.
fn spec<T: Serialize>(spec: &T) -> anyhow::Result<String> {
    let yaml = output::yaml_documents(std::slice::from_ref(spec))?;
    Ok(format!("Spec:\n{}", indent(&yaml, 2)))
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn cluster(c: &Cluster, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Cluster", &c.metadata, now);
    out.push_str(&spec(&c.spec)?);
    let s = &c.status;
    out.push_str(&format!("Status:\n  phase:     {}\n", variant(&s.phase)));
    if let Some(m) = &s.message {
        out.push_str(&format!("  message:   {m}\n"));
    }
    if let Some(v) = &s.runtime_version {
        out.push_str(&format!("  runtime:   {v}\n"));
    }
    if s.consecutive_failures > 0 {
        out.push_str(&format!("  failures:  {} in a row\n", s.consecutive_failures));
    }
    if let Some(t) = s.last_transition_time {
        out.push_str(&format!("  since:     {} ago\n", output::age(Some(t), now)));
    }
    Ok(out)
}

/// A source: what it follows, where its sync stands, what it changed and what drifted.
fn source(src: &SyncSource, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Source", &src.metadata, now);
    out.push_str(&spec(&src.spec)?);
    let s = &src.status;
    out.push_str(&format!("Status:\n  phase:     {}\n", variant(&s.phase)));
    if let Some(c) = &s.commit {
        out.push_str(&format!("  commit:    {c}\n"));
    }
    if let Some(t) = s.last_sync_time {
        out.push_str(&format!("  synced:    {} ago\n", output::age(Some(t), now)));
    }
    for c in &s.changes {
        out.push_str(&format!(
            "  change:    {}/{} {}\n",
            c.kind,
            c.name,
            variant(&c.action)
        ));
    }
    for d in &s.drift {
        out.push_str(&format!(
            "  drift:     {}/{} {} {}\n",
            d.kind,
            d.name,
            variant(&d.drift),
            d.fields.join(", ")
        ));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("  error:     {}\n", e.message));
        for fe in &e.errors {
            out.push_str(&format!("    {}: {}\n", fe.path, fe.message));
        }
    }
    Ok(out)
}

fn user(u: &User, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("User", &u.metadata, now);
    out.push_str(&spec(&u.spec)?);
    Ok(out)
}

fn team(t: &Team, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Team", &t.metadata, now);
    out.push_str(&spec(&t.spec)?);
    Ok(out)
}

fn environment(e: &Environment, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Environment", &e.metadata, now);
    out.push_str(&spec(&e.spec)?);
    Ok(out)
}

fn application(a: &Application, extras: &Extras, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Application", &a.metadata, now);
    out.push_str(&spec(&a.spec)?);
    out.push_str(&runtime(&a.spec));
    match &extras.app_status {
        Some(Ok(s)) if s.environments.is_empty() => out.push_str("Status:    not deployed yet\n"),
        Some(Ok(s)) => {
            out.push_str("Status:\n");
            for env in &s.environments {
                out.push_str(&indent(&status::environment(env), 2));
            }
        }
        Some(Err(e)) => out.push_str(&format!("Status:    unavailable ({e})\n")),
        None => {}
    }
    Ok(out)
}

/// How replicas stop and, for a Java application, the JVM settings Berth chose from its
/// memory limit: the same functions of the core the runtimes use.
fn runtime(spec: &ApplicationSpec) -> String {
    let mut out = format!(
        "Runtime:\n  stop:      out of traffic, {} s drain, SIGTERM, SIGKILL {} s later\n",
        spec.drain_seconds(),
        spec.termination_grace_seconds()
    );
    if let Some(jvm) = berth_core::jvm::sizing_of(spec) {
        let limit = spec.resources.memory.as_deref().unwrap_or("none");
        out.push_str(&format!(
            "  jvm:       {} (memory limit {limit})\n",
            jvm.java_tool_options()
        ));
        if let Some(w) = jvm.warning {
            out.push_str(&format!("  warning:   {w}\n"));
        }
    } else if berth_core::jvm::is_java(spec) {
        out.push_str("  jvm:       the application's own JAVA_TOOL_OPTIONS\n");
    }
    out
}

fn release(r: &Release, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Release", &r.metadata, now);
    out.push_str(&spec(&r.spec)?);
    Ok(out)
}

fn deployment(d: &Deployment, now: DateTime<Utc>) -> anyhow::Result<String> {
    let mut out = header("Deployment", &d.metadata, now);
    out.push_str(&spec(&d.spec)?);
    let s = &d.status;
    out.push_str(&format!("Status:\n  phase:     {}\n", variant(&s.phase)));
    if let Some(m) = &s.message {
        out.push_str(&format!("  message:   {m}\n"));
    }
    if let Some(p) = s.previous_release {
        out.push_str(&format!("  previous:  release {p}\n"));
    }
    if let Some(t) = s.started_at {
        out.push_str(&format!("  started:   {} ago\n", output::age(Some(t), now)));
    }
    if let (Some(a), Some(b)) = (s.started_at, s.finished_at) {
        out.push_str(&format!(
            "  took:      {}\n",
            output::duration((b - a).num_seconds())
        ));
    }
    if !s.clusters.is_empty() {
        out.push_str("  clusters:\n");
        let width = s.clusters.iter().map(|c| c.cluster.len()).max().unwrap_or(0);
        for c in &s.clusters {
            out.push_str(&format!("    {}\n", progress_line(c, width)));
        }
    }
    Ok(out)
}

fn recent_events(events: &Result<Vec<Event>, String>, now: DateTime<Utc>) -> String {
    match events {
        Err(e) => format!("Events:    unavailable ({e})\n"),
        Ok(v) if v.is_empty() => "Events:    none\n".to_owned(),
        Ok(v) => {
            let mut t = Table::new(&["SEQ", "AGE", "TYPE", "REASON", "MESSAGE"]);
            for e in v {
                t.row([
                    e.seq.to_string(),
                    output::age(Some(e.time), now),
                    variant(&e.event.event_type),
                    e.event.reason.clone(),
                    e.event.message.clone(),
                ]);
            }
            format!("Events:\n{}", indent(&t.render(), 2))
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_core::objects::DeploymentPhase;

    use super::*;
    use crate::commands::get::tests::{app, deployment, event, now};

    #[test]
    fn describe_application() {
        let mut a = app("web", "127.0.0.1:5000/web:1", 2);
        a.metadata.labels.insert("tier".into(), "web".into());
        a.metadata.resource_version = Some("7".into());
        let status: AppStatus = serde_json::from_value(serde_json::json!({
            "application": "web",
            "environments": [{"environment": "qa", "release": 4,
                "deployment": {"name": "web-qa-3", "phase": "Succeeded"},
                "clusters": [{"cluster": "local", "datacenter": "default", "desired": 2, "updated": 2, "ready": 2, "old": 0}],
                "urls": ["http://web.qa.localhost:7080"]}]
        }))
        .unwrap();
        let extras = Extras {
            events: Ok(vec![event(
                9,
                "Created",
                "Application",
                "web",
                "created by alice",
            )]),
            app_status: Some(Ok(status)),
        };
        let text = render(&Found::Applications(vec![a]), &extras, now()).unwrap();
        insta::assert_snapshot!(text, @r"
        Name:      web
        Kind:      Application
        Created:   2026-11-26T10:53:20Z (66m ago)
        Version:   7
        Labels:    tier=web
        Spec:
          image: 127.0.0.1:5000/web:1
          port: 8080
          healthCheck:
            path: /
            intervalSeconds: 1
            timeoutSeconds: 1
            healthyThreshold: 1
            unhealthyThreshold: 3
          replicas: 2
          resources: {}
          team: default
        Runtime:
          stop:      out of traffic, 5 s drain, SIGTERM, SIGKILL 30 s later
        Status:
          qa
            release:     4
            deployment:  web-qa-3 Succeeded
            clusters:
              local  2/2 ready
            urls:
              http://web.qa.localhost:7080
        Events:
          SEQ   AGE   TYPE     REASON    MESSAGE
          9     30s   Normal   Created   created by alice
        ");
    }

    #[test]
    fn describe_shows_the_jvm_settings_of_a_java_application() {
        let mut a = app("shop", "127.0.0.1:5000/shop", 1);
        a.spec.resources.memory = Some("256Mi".into());
        a.spec.drain_seconds = Some(10);
        a.spec.source = Some(
            serde_json::from_value(
                serde_json::json!({"git": "file:///r", "builder": {"java": {"war": "target/shop.war"}}}),
            )
            .unwrap(),
        );
        let text = runtime(&a.spec);
        insta::assert_snapshot!(text, @r"
        Runtime:
          stop:      out of traffic, 10 s drain, SIGTERM, SIGKILL 30 s later
          jvm:       -Xmx96m -XX:MaxMetaspaceSize=64m -XX:ReservedCodeCacheSize=32m -XX:MaxDirectMemorySize=8m -Xss512k -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Dberth.graceful.stop.ms=28000 (memory limit 256Mi)
        ");
        a.spec.resources.memory = Some("128Mi".into());
        assert!(runtime(&a.spec).contains("warning:   a memory limit of 128 MiB"));
    }

    #[test]
    fn describe_deployment_with_unavailable_events() {
        let d = deployment("web", "qa", 3, 4, DeploymentPhase::Progressing);
        let extras = Extras {
            events: Err("cannot reach the Berth server".into()),
            app_status: None,
        };
        let text = render(&Found::Deployments(vec![d]), &extras, now()).unwrap();
        insta::assert_snapshot!(text, @r"
        Name:      web-qa-3
        Kind:      Deployment
        Created:   2026-11-26T11:58:25Z (95s ago)
        Spec:
          application: web
          environment: qa
          release: 4
          number: 3
          cause:
            type: Deploy
          requestedBy: alice
        Status:
          phase:     Progressing
          clusters:
            local  2/3 ready  (1 starting)  (1 old)
        Events:    unavailable (cannot reach the Berth server)
        ");
    }

    #[test]
    fn events_that_belong_to_a_description() {
        let mut on_cluster = event(1, "ReplicaReplaced", "Deployment", "web-qa-3", "x");
        on_cluster.event.cluster = Some("local".into());
        on_cluster.event.environment = Some("qa".into());
        let cluster = event(2, "Created", "Cluster", "local", "x");
        let other = event(3, "Created", "Cluster", "dc2", "x");
        let cases = [
            (About::Cluster("local".into()), [true, true, false]),
            (About::Environment("qa".into()), [true, false, false]),
            (About::Application("web".into()), [true, true, true]),
            (
                About::Child {
                    kind: "Deployment",
                    name: "web-qa-3".into(),
                    application: "web".into(),
                },
                [true, false, false],
            ),
        ];
        for (about, want) in cases {
            let got = [&on_cluster, &cluster, &other].map(|e| about.matches(e));
            assert_eq!(got, want, "{about:?}");
        }
    }
}
