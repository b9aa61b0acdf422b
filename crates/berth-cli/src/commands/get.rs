//! `berth get KIND [NAME]`: list objects of a kind, or show one, as a table, YAML or JSON.
//!
//! Lists follow the server's `continue` tokens until everything has been read. YAML
//! output is one document per object, so `berth get apps -o yaml > apps.yaml` can be
//! applied again.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use berth_core::{
    API_VERSION,
    objects::{Application, Cluster, Deployment, Environment, Event, Release, SyncSource, Team, User},
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{events, variant};
use crate::{
    client::Client,
    kind::KindName,
    output::{self, Format, Table},
};

/// Arguments of `berth get`.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// Kind: user(s), team(s), cluster(s), environment(s)/env, application(s)/app, source(s)/src, release(s), deployment(s)/deploy, event(s).
    pub kind: KindName,
    /// One object's name (releases: APP-NUMBER, or NUMBER with --app); all when left out.
    pub name: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
    /// Only objects of this application (releases, deployments, events).
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Only deployments to this environment.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// Documents to keep and apply again (with -o yaml or json): without status,
    /// resourceVersion and timestamps, which Berth owns.
    #[arg(long)]
    pub export: bool,
    /// Keep watching, printing what changes (`-w`).
    #[command(flatten)]
    pub watch: super::watch::WatchArgs,
}

/// Objects of one kind, as the server returned them.
#[derive(Debug, Clone)]
pub enum Found {
    /// Users.
    Users(Vec<User>),
    /// Teams.
    Teams(Vec<Team>),
    /// Clusters.
    Clusters(Vec<Cluster>),
    /// Environments.
    Environments(Vec<Environment>),
    /// Applications.
    Applications(Vec<Application>),
    /// Sources.
    Sources(Vec<SyncSource>),
    /// Releases.
    Releases(Vec<Release>),
    /// Deployments.
    Deployments(Vec<Deployment>),
    /// Events.
    Events(Vec<Event>),
}

impl Found {
    fn kind(&self) -> KindName {
        match self {
            Self::Users(_) => KindName::User,
            Self::Teams(_) => KindName::Team,
            Self::Clusters(_) => KindName::Cluster,
            Self::Environments(_) => KindName::Environment,
            Self::Applications(_) => KindName::Application,
            Self::Sources(_) => KindName::Source,
            Self::Releases(_) => KindName::Release,
            Self::Deployments(_) => KindName::Deployment,
            Self::Events(_) => KindName::Event,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Users(v) => v.len(),
            Self::Teams(v) => v.len(),
            Self::Clusters(v) => v.len(),
            Self::Environments(v) => v.len(),
            Self::Applications(v) => v.len(),
            Self::Sources(v) => v.len(),
            Self::Releases(v) => v.len(),
            Self::Deployments(v) => v.len(),
            Self::Events(v) => v.len(),
        }
    }

    /// The objects as JSON documents.
    ///
    /// # Errors
    ///
    /// An object that cannot be serialized.
    pub fn values(&self) -> anyhow::Result<Vec<Value>> {
        fn all<T: Serialize>(v: &[T]) -> anyhow::Result<Vec<Value>> {
            v.iter()
                .map(|x| serde_json::to_value(x).map_err(Into::into))
                .collect()
        }
        match self {
            Self::Users(v) => all(v),
            Self::Teams(v) => all(v),
            Self::Clusters(v) => all(v),
            Self::Environments(v) => all(v),
            Self::Applications(v) => all(v),
            Self::Sources(v) => all(v),
            Self::Releases(v) => all(v),
            Self::Deployments(v) => all(v),
            Self::Events(v) => all(v),
        }
    }

    /// The objects as a table, ages counted up to `now`.
    #[must_use]
    pub fn table(&self, now: DateTime<Utc>) -> Table {
        match self {
            Self::Users(v) => user_table(v, now),
            Self::Teams(v) => team_table(v, now),
            Self::Clusters(v) => cluster_table(v, now),
            Self::Environments(v) => environment_table(v, now),
            Self::Applications(v) => application_table(v, now),
            Self::Sources(v) => source_table(v, now),
            Self::Releases(v) => release_table(v, now),
            Self::Deployments(v) => deployment_table(v, now),
            Self::Events(v) => event_table(v, now),
        }
    }
}

/// Runs `berth get`.
pub async fn run(client: &Client, args: GetArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    if args.export {
        let mut documents = super::export::documents(client, args.kind, args.name.clone()).await?;
        let text = match args.output {
            Format::Yaml => output::yaml_documents(&documents)?,
            Format::Json if args.name.is_some() && documents.len() == 1 => {
                output::json(&documents.remove(0))?
            }
            Format::Json => output::json(&documents)?,
            Format::Table => anyhow::bail!("--export writes documents: add -o yaml (or -o json)"),
        };
        out.write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.watch.watch {
        let args = &args;
        return super::watch::run(
            args.watch.interval,
            || async move {
                snapshot(
                    &fetch(client, args).await?,
                    args.output,
                    args.name.is_some(),
                    Utc::now(),
                )
            },
            out,
        )
        .await;
    }
    let found = fetch(client, &args).await?;
    let text = render(&found, args.output, args.name.is_some(), Utc::now())?;
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints what was found in `format`; `single` when one object was asked for by name.
pub fn render(found: &Found, format: Format, single: bool, now: DateTime<Utc>) -> anyhow::Result<String> {
    match format {
        Format::Table if found.len() == 0 => Ok(format!("No {} found.\n", found.kind().plural())),
        Format::Table => Ok(found.table(now).render()),
        Format::Yaml => output::yaml_documents(&found.values()?),
        Format::Json => output::json(&json_value(found, single)?),
    }
}

/// What was found as JSON: the object when one was asked for by name, else a list object.
fn json_value(found: &Found, single: bool) -> anyhow::Result<serde_json::Value> {
    let mut values = found.values()?;
    if single && values.len() == 1 {
        return Ok(values.remove(0));
    }
    Ok(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": format!("{}List", found.kind().kind()),
        "items": values,
    }))
}

/// What `get -w` shows of one poll: table rows, one JSON line, or YAML documents.
pub fn snapshot(
    found: &Found,
    format: Format,
    single: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<super::watch::Snapshot> {
    use super::watch::Snapshot;
    Ok(match format {
        Format::Table => Snapshot::rows(&found.table(now).render()),
        Format::Json => Snapshot::Line(serde_json::to_string(&json_value(found, single)?)?),
        Format::Yaml => Snapshot::Block {
            text: output::yaml_documents(&found.values()?)?,
            separator: "---\n",
        },
    })
}

/// Fetches what `args` asks for.
pub async fn fetch(client: &Client, args: &GetArgs) -> anyhow::Result<Found> {
    let kind = args.kind;
    if let Some(name) = &args.name {
        return fetch_one(client, kind, name, args.app.as_deref()).await;
    }
    let mut query = Vec::new();
    if let Some(app) = &args.app {
        query.push(("application", app.clone()));
    }
    if kind == KindName::Deployment
        && let Some(env) = &args.environment
    {
        query.push(("environment", env.clone()));
    }
    let list = |segments: &'static [&'static str], query: Vec<(&'static str, String)>| async move {
        client
            .list::<Value>(segments, &query)
            .await
            .with_context(|| format!("listing {}", segments.join("/")))
    };
    Ok(match kind {
        KindName::User => Found::Users(typed(list(&["users"], vec![]).await?)?),
        KindName::Team => Found::Teams(typed(list(&["teams"], vec![]).await?)?),
        KindName::Cluster => Found::Clusters(typed(list(&["clusters"], vec![]).await?)?),
        KindName::Environment => Found::Environments(typed(list(&["environments"], vec![]).await?)?),
        KindName::Application => Found::Applications(typed(list(&["applications"], vec![]).await?)?),
        KindName::Source => Found::Sources(typed(list(&["sources"], vec![]).await?)?),
        KindName::Release => Found::Releases(typed(list(&["releases"], query).await?)?),
        KindName::Deployment => Found::Deployments(typed(list(&["deployments"], query).await?)?),
        KindName::Event => Found::Events(events::list(client, args.app.as_deref(), 0).await?),
    })
}

fn typed<T: serde::de::DeserializeOwned>(values: Vec<Value>) -> anyhow::Result<Vec<T>> {
    values
        .into_iter()
        .map(|v| {
            serde_json::from_value(v).context("the server sent an object this client does not understand")
        })
        .collect()
}

/// Fetches one object by name.
pub async fn fetch_one(
    client: &Client,
    kind: KindName,
    name: &str,
    app: Option<&str>,
) -> anyhow::Result<Found> {
    let ctx = || format!("getting {kind}/{name}");
    Ok(match kind {
        KindName::User => Found::Users(vec![client.get(&["users", name], &[]).await.with_context(ctx)?]),
        KindName::Team => Found::Teams(vec![client.get(&["teams", name], &[]).await.with_context(ctx)?]),
        KindName::Cluster => Found::Clusters(vec![
            client.get(&["clusters", name], &[]).await.with_context(ctx)?,
        ]),
        KindName::Environment => Found::Environments(vec![
            client.get(&["environments", name], &[]).await.with_context(ctx)?,
        ]),
        KindName::Application => Found::Applications(vec![
            client.get(&["applications", name], &[]).await.with_context(ctx)?,
        ]),
        KindName::Source => {
            Found::Sources(vec![client.get(&["sources", name], &[]).await.with_context(ctx)?])
        }
        KindName::Release => {
            let (app, number) = release_ref(name, app)?;
            let number = number.to_string();
            Found::Releases(vec![
                client
                    .get(&["applications", &app, "releases", &number], &[])
                    .await
                    .with_context(ctx)?,
            ])
        }
        KindName::Deployment => Found::Deployments(vec![
            client.get(&["deployments", name], &[]).await.with_context(ctx)?,
        ]),
        KindName::Event => {
            anyhow::bail!(
                "events have no names; list them with `berth events` (add --app APP to narrow them)"
            )
        }
    })
}

/// Splits a release reference: `web-3`, or `3` with `--app web`.
pub fn release_ref(name: &str, app: Option<&str>) -> anyhow::Result<(String, u64)> {
    if let (Some(app), Ok(n)) = (app, name.parse::<u64>()) {
        return Ok((app.to_owned(), n));
    }
    match name.rsplit_once('-').map(|(a, n)| (a, n.parse::<u64>())) {
        Some((a, Ok(n))) if !a.is_empty() => match app {
            Some(app) if app != a => {
                anyhow::bail!("release {name} belongs to application '{a}', not '{app}'")
            }
            _ => Ok((a.to_owned(), n)),
        },
        _ => anyhow::bail!(
            "'{name}' is not a release; name one as APP-NUMBER (web-3), or NUMBER with --app APP"
        ),
    }
}

/// NAME REPOSITORY REF PHASE COMMIT DRIFT LAST-SYNC.
#[must_use]
pub fn source_table(sources: &[SyncSource], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "REPOSITORY",
        "REF",
        "PHASE",
        "COMMIT",
        "DRIFT",
        "LAST-SYNC",
    ]);
    for s in sources {
        let commit = s.status.commit.as_deref().unwrap_or("-");
        t.row(vec![
            s.metadata.name.clone(),
            s.spec.repository.clone(),
            s.spec.git_ref.clone(),
            variant(&s.status.phase),
            commit.get(..12).unwrap_or(commit).to_owned(),
            s.status.drift.len().to_string(),
            output::age(s.status.last_sync_time, now),
        ]);
    }
    t
}

/// NAME ADMIN DISPLAY-NAME AGE.
#[must_use]
pub fn user_table(users: &[User], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "PLATFORM-ADMIN", "DISPLAY-NAME", "AGE"]);
    for u in users {
        t.row(vec![
            u.metadata.name.clone(),
            if u.spec.platform_admin { "yes" } else { "no" }.to_owned(),
            u.spec.display_name.clone().unwrap_or_default(),
            output::age(u.metadata.creation_timestamp, now),
        ]);
    }
    t
}

/// NAME MEMBERS QUOTAS AGE.
#[must_use]
pub fn team_table(teams: &[Team], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "MEMBERS", "QUOTAS", "AGE"]);
    for team in teams {
        let mut members: Vec<&str> = team.spec.members.iter().map(|m| m.user.as_str()).collect();
        members.sort_unstable();
        members.dedup();
        let quotas: Vec<&str> = team.spec.quotas.keys().map(String::as_str).collect();
        t.row(vec![
            team.metadata.name.clone(),
            members.len().to_string(),
            if quotas.is_empty() {
                "-".to_owned()
            } else {
                quotas.join(",")
            },
            output::age(team.metadata.creation_timestamp, now),
        ]);
    }
    t
}

/// NAME RUNTIME DATACENTER PHASE AGE.
#[must_use]
pub fn cluster_table(items: &[Cluster], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "RUNTIME", "DATACENTER", "PHASE", "AGE"]);
    for c in items {
        t.row([
            c.metadata.name.clone(),
            variant(&c.spec.runtime),
            c.spec.datacenter.clone(),
            variant(&c.status.phase),
            output::age(c.metadata.creation_timestamp, now),
        ]);
    }
    t
}

/// NAME ORDER CLUSTERS AGE.
#[must_use]
pub fn environment_table(items: &[Environment], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "ORDER", "CLUSTERS", "AGE"]);
    for e in items {
        let clusters: Vec<_> = e.spec.clusters.iter().map(|p| p.cluster.as_str()).collect();
        t.row([
            e.metadata.name.clone(),
            e.spec.order.to_string(),
            clusters.join(","),
            output::age(e.metadata.creation_timestamp, now),
        ]);
    }
    t
}

/// NAME IMAGE REPLICAS AGE.
#[must_use]
pub fn application_table(items: &[Application], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "IMAGE", "REPLICAS", "AGE"]);
    for a in items {
        t.row([
            a.metadata.name.clone(),
            a.spec.image.clone(),
            a.spec.replicas.to_string(),
            output::age(a.metadata.creation_timestamp, now),
        ]);
    }
    t
}

/// APP NUMBER IMAGE AGE DESCRIPTION.
#[must_use]
pub fn release_table(items: &[Release], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["APP", "NUMBER", "IMAGE", "AGE", "DESCRIPTION"]);
    for r in items {
        t.row([
            r.spec.application.clone(),
            r.spec.number.to_string(),
            r.spec.template.image.clone(),
            output::age(r.metadata.creation_timestamp, now),
            r.spec.origin.description.clone().unwrap_or_default(),
        ]);
    }
    t
}

/// NAME APP ENV RELEASE PHASE AGE.
#[must_use]
pub fn deployment_table(items: &[Deployment], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "APP", "ENV", "RELEASE", "PHASE", "AGE"]);
    for d in items {
        t.row([
            d.metadata.name.clone(),
            d.spec.application.clone(),
            d.spec.environment.clone(),
            d.spec.release.to_string(),
            variant(&d.status.phase),
            output::age(d.metadata.creation_timestamp.or(d.status.started_at), now),
        ]);
    }
    t
}

/// SEQ AGE TYPE REASON OBJECT MESSAGE.
#[must_use]
pub fn event_table(items: &[Event], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["SEQ", "AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    for e in items {
        t.row([
            e.seq.to_string(),
            output::age(Some(e.time), now),
            variant(&e.event.event_type),
            e.event.reason.clone(),
            events::object(e),
            e.event.message.clone(),
        ]);
    }
    t
}

#[cfg(test)]
pub(crate) mod tests {
    use berth_core::objects::{
        ApplicationSpec, ClusterPhase, ClusterProgress, ClusterSpec, DeploymentPhase, DeploymentSpec,
        EnvironmentSpec, NewEvent, Placement, ReleaseOrigin,
    };
    use chrono::TimeZone;

    use super::*;

    pub(crate) fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn ago(secs: i64) -> Option<DateTime<Utc>> {
        Some(now() - chrono::Duration::seconds(secs))
    }

    pub(crate) fn cluster(name: &str, dc: &str, phase: ClusterPhase, age: i64) -> Cluster {
        let mut c = Cluster::new(
            name,
            ClusterSpec {
                datacenter: dc.into(),
                ..ClusterSpec::default()
            },
        );
        c.status.phase = phase;
        c.metadata.creation_timestamp = ago(age);
        c
    }

    pub(crate) fn app(name: &str, image: &str, replicas: u32) -> Application {
        let spec: ApplicationSpec = serde_json::from_value(serde_json::json!({"image": image})).unwrap();
        let mut a = Application::new(name, ApplicationSpec { replicas, ..spec });
        a.metadata.creation_timestamp = ago(4_000);
        a
    }

    pub(crate) fn deployment(
        app: &str,
        env: &str,
        number: u64,
        release: u64,
        phase: DeploymentPhase,
    ) -> Deployment {
        let mut d = Deployment::new(
            berth_core::objects::deployment_name(app, env, number),
            DeploymentSpec {
                application: app.into(),
                environment: env.into(),
                release,
                number,
                cause: Default::default(),
                requested_by: Some("alice".into()),
            },
        );
        d.status.phase = phase;
        d.status.clusters = vec![ClusterProgress {
            cluster: "local".into(),
            datacenter: "default".into(),
            desired: 3,
            updated: 3,
            ready: 2,
            old: 1,
            message: None,
        }];
        d.metadata.creation_timestamp = ago(95);
        d
    }

    pub(crate) fn event(seq: u64, reason: &str, kind: &str, name: &str, message: &str) -> Event {
        Event {
            seq,
            time: now() - chrono::Duration::seconds(30),
            event: NewEvent::normal(reason, kind, name, "alice", message),
        }
    }

    #[test]
    fn tables() {
        let clusters = [
            cluster("local", "default", ClusterPhase::Ready, 3 * 86_400),
            cluster("dc2-east", "east", ClusterPhase::Unreachable, 50),
        ];
        let mut env = Environment::new(
            "production",
            EnvironmentSpec {
                order: 2,
                clusters: vec![
                    Placement {
                        cluster: "local".into(),
                        weight: 1,
                    },
                    Placement {
                        cluster: "dc2-east".into(),
                        weight: 1,
                    },
                ],
                rollout: Default::default(),
                ..Default::default()
            },
        );
        env.metadata.creation_timestamp = ago(7_300);
        let web = app("web", "127.0.0.1:5000/team/web:1.0", 3);
        let apps = [web.clone(), app("api", "127.0.0.1:5000/api:2", 1)];
        let release = Release::of(
            "web",
            4,
            ApplicationSpec {
                image: "127.0.0.1:5000/team/web@sha256:0123456789ab".into(),
                ..web.spec.clone()
            },
            ReleaseOrigin {
                description: Some("new checkout".into()),
                ..ReleaseOrigin::default()
            },
        );
        let deployments = [
            deployment("web", "qa", 3, 4, DeploymentPhase::Progressing),
            deployment("web", "production", 12, 3, DeploymentPhase::Succeeded),
        ];
        let events = [
            event(41, "Created", "Application", "web", "created by alice"),
            event(42, "RolloutStarted", "Deployment", "web-qa-3", "release 4 to qa"),
        ];
        let all = [
            Found::Clusters(clusters.to_vec()),
            Found::Environments(vec![env]),
            Found::Applications(apps.to_vec()),
            Found::Releases(vec![release]),
            Found::Deployments(deployments.to_vec()),
            Found::Events(events.to_vec()),
            Found::Applications(vec![]),
        ];
        let text: Vec<String> = all
            .iter()
            .map(|f| render(f, Format::Table, false, now()).unwrap())
            .collect();
        insta::assert_snapshot!(text.join("\n"), @r"
        NAME       RUNTIME   DATACENTER   PHASE         AGE
        local      local     default      Ready         3d
        dc2-east   local     east         Unreachable   50s

        NAME         ORDER   CLUSTERS         AGE
        production   2       local,dc2-east   2h

        NAME   IMAGE                         REPLICAS   AGE
        web    127.0.0.1:5000/team/web:1.0   3          66m
        api    127.0.0.1:5000/api:2          1          66m

        APP   NUMBER   IMAGE                                         AGE         DESCRIPTION
        web   4        127.0.0.1:5000/team/web@sha256:0123456789ab   <unknown>   new checkout

        NAME                APP   ENV          RELEASE   PHASE         AGE
        web-qa-3            web   qa           4         Progressing   95s
        web-production-12   web   production   3         Succeeded     95s

        SEQ   AGE   TYPE     REASON           OBJECT                MESSAGE
        41    30s   Normal   Created          application/web       created by alice
        42    30s   Normal   RolloutStarted   deployment/web-qa-3   release 4 to qa

        No applications found.
        ");
    }

    #[test]
    fn json_and_yaml() {
        let c = cluster("local", "default", ClusterPhase::Ready, 10);
        let one = Found::Clusters(vec![c.clone()]);
        let json = render(&one, Format::Json, true, now()).unwrap();
        let back: Cluster = serde_json::from_str(&json).unwrap();
        assert_eq!(
            serde_json::to_value(back).unwrap(),
            serde_json::to_value(&c).unwrap()
        );
        let list = render(&one, Format::Json, false, now()).unwrap();
        let v: Value = serde_json::from_str(&list).unwrap();
        assert_eq!(v["kind"], "ClusterList");
        assert_eq!(v["items"][0]["metadata"]["name"], "local");
        let two = Found::Clusters(vec![c.clone(), cluster("b", "x", ClusterPhase::Unknown, 1)]);
        let yaml = render(&two, Format::Yaml, false, now()).unwrap();
        let docs: Vec<Cluster> = serde_saphyr::from_str_multiple(&yaml).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            serde_json::to_value(&docs[0]).unwrap(),
            serde_json::to_value(&c).unwrap()
        );
    }

    #[test]
    fn release_refs() {
        assert_eq!(release_ref("web-3", None).unwrap(), ("web".into(), 3));
        assert_eq!(release_ref("my-web-12", None).unwrap(), ("my-web".into(), 12));
        assert_eq!(release_ref("3", Some("web")).unwrap(), ("web".into(), 3));
        assert_eq!(release_ref("web-3", Some("web")).unwrap(), ("web".into(), 3));
        assert!(release_ref("web-3", Some("api")).is_err());
        assert!(release_ref("web", None).is_err());
        assert!(release_ref("3", None).is_err());
    }

    #[tokio::test]
    async fn lists_follow_continue_tokens() {
        let fake = crate::fake::FakeApi::default();
        for name in ["a", "b", "c"] {
            fake.insert(
                "applications",
                serde_json::to_value(app(name, "r/x:1", 1)).unwrap(),
            );
        }
        let client = fake.serve().await;
        let args = GetArgs {
            kind: KindName::Application,
            name: None,
            output: Format::Table,
            app: None,
            environment: None,
            export: false,
            watch: Default::default(),
        };
        let Found::Applications(apps) = fetch(&client, &args).await.unwrap() else {
            panic!("not applications")
        };
        let names: Vec<_> = apps.iter().map(|a| a.metadata.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            fake.requests(),
            [
                "GET /applications",
                "GET /applications?continue=1",
                "GET /applications?continue=2"
            ]
        );
    }
}
