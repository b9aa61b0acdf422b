//! `berth build APP [--ref REF]`, `berth builds [APP]` and `berth builds logs NAME [-f]`.
//!
//! `build` asks the server to build the application's source; the server answers with a
//! new build, or with the build that already stands for the same commit and builder
//! (build once). Unless `--no-wait`, the command then follows the build's log (a
//! server-sent-event stream that resumes with `Last-Event-ID` after a dropped
//! connection) and exits 0 when the build succeeded, 1 when it failed.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::Context;
use berth_core::objects::{Build, BuildPhase};
use chrono::Utc;
use futures::StreamExt;

use super::{events::SseDecoder, variant};
use crate::{
    client::{ApiError, Client},
    output::{self, Format, Table},
};
pub use berth_contract::{BuildRequest, LogEnd};

/// Arguments of `berth build`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The application to build.
    pub app: String,
    /// Branch, tag or commit to build (default: the application's `source.ref`).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Return once the build is recorded instead of following its log.
    #[arg(long)]
    pub no_wait: bool,
}

/// Arguments of `berth builds`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BuildsArgs {
    /// Only the builds of this application.
    pub app: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// A command about one build.
    #[command(subcommand)]
    pub command: Option<BuildsCommand>,
}

/// Commands under `berth builds`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BuildsCommand {
    /// Print a build's log; with -f, follow it until the build ends.
    Logs(LogsArgs),
}

/// Arguments of `berth builds logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The build, e.g. `web-build-3`.
    pub name: String,
    /// Keep printing until the build ends.
    #[arg(short, long)]
    pub follow: bool,
}

/// Runs `berth build`.
pub async fn run(client: &Client, args: BuildArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    let body = BuildRequest {
        git_ref: args.git_ref.clone(),
    };
    let build: Build = client
        .post(&["applications", &args.app, "builds"], &body)
        .await
        .with_context(|| format!("building {}", args.app))?;
    writeln!(out, "{}", headline(&build))?;
    if build.status.phase.is_final() {
        return outcome(
            &build.metadata.name,
            build.status.phase,
            build.status.message.as_deref(),
            out,
        );
    }
    if args.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let end = follow(client, &build.metadata.name, true, &Reconnect::default(), out).await?;
    outcome(&build.metadata.name, end.phase, end.message.as_deref(), out)
}

/// `build/web-build-3: web at main (commit 1a2b3c4d5e6f) with the java builder`.
#[must_use]
pub fn headline(b: &Build) -> String {
    let mut s = format!("build/{}: {}", b.metadata.name, b.spec.application);
    if let Some(r) = &b.spec.git_ref {
        s.push_str(&format!(" at {r}"));
    }
    if let Some(c) = &b.spec.commit {
        s.push_str(&format!(" (commit {})", short(c, 12)));
    }
    s.push_str(&format!(" with the {} builder", b.spec.builder.kind()));
    if b.status.phase == BuildPhase::Succeeded {
        s.push_str(", built before");
    }
    s
}

fn short(s: &str, n: usize) -> &str {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    s.get(..n).unwrap_or(s)
}

fn outcome(
    name: &str,
    phase: BuildPhase,
    message: Option<&str>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let message = message.unwrap_or("");
    if phase == BuildPhase::Succeeded {
        writeln!(out, "Succeeded: {message}")?;
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!(
        "build {name} {}: {message}\n  see its log: berth builds logs {name}",
        variant(&phase).to_lowercase()
    )
}

/// The application and number of a build name (`web-build-3`).
pub fn parse_name(name: &str) -> anyhow::Result<(&str, u64)> {
    name.rsplit_once("-build-")
        .and_then(|(app, n)| Some((app, n.parse().ok()?)))
        .filter(|(app, _)| !app.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("'{name}' is not a build name; they look like web-build-3 (see berth builds)")
        })
}

/// How a dropped log stream is reopened.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Attempts in a row before giving up.
    pub attempts: u32,
    /// Wait between attempts.
    pub wait: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            attempts: 30,
            wait: Duration::from_secs(1),
        }
    }
}

/// Prints the log of build `name`, following it when `follow`; returns how it ended.
pub async fn follow(
    client: &Client,
    name: &str,
    follow: bool,
    reconnect: &Reconnect,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<LogEnd> {
    let (app, number) = parse_name(name)?;
    let number = number.to_string();
    let mut last: Option<u64> = None;
    let mut failures = 0;
    loop {
        let query = [("follow", follow.to_string())];
        match client
            .stream(&["applications", app, "builds", &number, "log"], &query, last)
            .await
        {
            Ok(resp) => {
                let mut decoder = SseDecoder::default();
                let mut body = resp.bytes_stream();
                while let Some(Ok(chunk)) = body.next().await {
                    for m in decoder.push(&chunk) {
                        match m.event.as_deref() {
                            Some("log") => {
                                writeln!(out, "{}", m.data)?;
                                last = m.id.and_then(|i| i.parse().ok()).or(last);
                                failures = 0;
                            }
                            Some("end") => {
                                out.flush()?;
                                return serde_json::from_str(&m.data).with_context(|| {
                                    format!("the end of the log of {name} is not understood")
                                });
                            }
                            Some("error") => anyhow::bail!("reading the log of {name}: {}", m.data),
                            _ => {}
                        }
                    }
                    out.flush()?;
                }
            }
            Err(e) if e.downcast_ref::<ApiError>().is_some() => {
                return Err(e.context(format!("reading the log of {name}")));
            }
            Err(e) if failures + 1 >= reconnect.attempts => {
                return Err(e.context(format!("reading the log of {name}")));
            }
            Err(_) => {}
        }
        failures += 1;
        if failures >= reconnect.attempts {
            anyhow::bail!(
                "the log stream of {name} kept dropping; try again with berth builds logs {name} -f"
            );
        }
        tokio::time::sleep(reconnect.wait).await;
    }
}

/// Runs `berth builds`.
pub async fn run_builds(
    client: &Client,
    args: BuildsArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    if let Some(BuildsCommand::Logs(l)) = args.command {
        follow(client, &l.name, l.follow, &Reconnect::default(), out).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let builds: Vec<Build> = match &args.app {
        Some(app) => client.list(&["applications", app, "builds"], &[]).await,
        None => client.list(&["builds"], &[]).await,
    }
    .context("listing builds")?;
    let text = match args.output {
        Format::Table => table(&builds, Utc::now()).render(),
        Format::Json => output::json(&builds)?,
        Format::Yaml => output::yaml_documents(&builds)?,
    };
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Builds as a table.
#[must_use]
pub fn table(builds: &[Build], now: chrono::DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "COMMIT", "BUILDER", "PHASE", "DIGEST", "RELEASE", "AGE"]);
    for b in builds {
        t.row([
            b.metadata.name.clone(),
            b.spec
                .commit
                .as_deref()
                .map(|c| short(c, 12).to_owned())
                .unwrap_or_default(),
            b.spec.builder.kind().to_owned(),
            variant(&b.status.phase),
            b.status
                .digest
                .as_deref()
                .map(|d| short(d, 12).to_owned())
                .unwrap_or_default(),
            b.status.release.map(|r| r.to_string()).unwrap_or_default(),
            output::age(b.metadata.creation_timestamp, now),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        Json, Router,
        extract::{Path, State},
        http::HeaderMap,
        response::{IntoResponse, Response},
        routing::{get, post},
    };
    use berth_core::objects::{BuildSpec, Builder};

    use super::*;
    use crate::{commands::get::tests::now, config::Target};

    fn build(n: u64, phase: BuildPhase) -> Build {
        let mut b = Build::new(
            format!("web-build-{n}"),
            BuildSpec {
                application: "web".into(),
                number: n,
                git: Some("file:///r.git".into()),
                git_ref: Some("main".into()),
                commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                builder: Builder::Image,
                builder_hash: "h".into(),
                image: "r/web".into(),
                requested_by: Some("alice".into()),
            },
        );
        b.metadata.creation_timestamp = Some(now() - chrono::Duration::seconds(90));
        b.status.phase = phase;
        if phase == BuildPhase::Succeeded {
            b.status.digest = Some(format!("sha256:{}", "ab".repeat(32)));
            b.status.release = Some(4);
        }
        b
    }

    #[test]
    fn command_lines() {
        use clap::Parser;

        use crate::{CliArgs, Command};
        let parse =
            |args: &[&str]| CliArgs::try_parse_from(std::iter::once("berth").chain(args.iter().copied()));
        let Command::Build(b) = parse(&["build", "web", "--ref", "v2", "--no-wait"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (b.app.as_str(), b.git_ref.as_deref(), b.no_wait),
            ("web", Some("v2"), true)
        );
        let Command::Builds(b) = parse(&["builds"]).unwrap().command else {
            panic!()
        };
        assert!(b.app.is_none() && b.command.is_none());
        let Command::Builds(b) = parse(&["builds", "web", "-o", "json"]).unwrap().command else {
            panic!()
        };
        assert_eq!((b.app.as_deref(), b.output), (Some("web"), Format::Json));
        let Command::Builds(b) = parse(&["builds", "logs", "web-build-2", "-f"]).unwrap().command else {
            panic!()
        };
        let Some(BuildsCommand::Logs(l)) = b.command else {
            panic!()
        };
        assert_eq!((l.name.as_str(), l.follow), ("web-build-2", true));
        let Command::Promote(p) = parse(&["promote", "web", "--from", "qa", "--to", "production"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!((p.from.as_str(), p.to.as_str()), ("qa", "production"));
        assert!(
            parse(&["promote", "web", "--from", "qa"]).is_err(),
            "--to is required"
        );
        let Command::Provenance(p) = parse(&["provenance", "web", "--env", "production"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(p.environment, "production");
    }

    #[test]
    fn names_tables_and_headlines() {
        assert_eq!(parse_name("my-web-build-12").unwrap(), ("my-web", 12));
        assert!(parse_name("web-3").is_err());
        assert!(parse_name("-build-3").is_err());
        insta::assert_snapshot!(table(&[build(1, BuildPhase::Succeeded), build(2, BuildPhase::Running)], now()).render(), @r"
        NAME          COMMIT         BUILDER   PHASE       DIGEST         RELEASE   AGE
        web-build-1   0123456789ab   image     Succeeded   abababababab   4         90s
        web-build-2   0123456789ab   image     Running                              90s
        ");
        assert_eq!(
            headline(&build(2, BuildPhase::Pending)),
            "build/web-build-2: web at main (commit 0123456789ab) with the image builder"
        );
    }

    /// A server whose build log arrives in two connections: the first drops after one
    /// line, the second resumes from `Last-Event-ID`.
    #[derive(Clone, Default)]
    struct Fake {
        resumed: Arc<Mutex<Vec<Option<String>>>>,
        outcome: Arc<Mutex<Option<BuildPhase>>>,
    }

    async fn create(State(_): State<Fake>, Json(body): Json<serde_json::Value>) -> Response {
        assert_eq!(body, serde_json::json!({"ref": "v1"}));
        (
            axum::http::StatusCode::CREATED,
            Json(build(3, BuildPhase::Pending)),
        )
            .into_response()
    }

    async fn log(
        State(f): State<Fake>,
        headers: HeaderMap,
        Path((app, n)): Path<(String, String)>,
    ) -> Response {
        assert_eq!((app.as_str(), n.as_str()), ("web", "3"));
        let last = headers
            .get("last-event-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let first = last.is_none();
        f.resumed.lock().unwrap().push(last);
        let phase = f.outcome.lock().unwrap().unwrap_or(BuildPhase::Succeeded);
        let body = if first {
            "event: log\nid: 6\ndata: step 1\n\n".to_owned()
        } else {
            format!(
                "event: log\nid: 20\ndata: step 2\ndata: step 3\n\nevent: end\ndata: {}\n\n",
                serde_json::json!({"phase": phase, "message": "built sha256:ab; release 4"})
            )
        };
        ([("content-type", "text/event-stream")], body).into_response()
    }

    async fn serve(fake: Fake) -> Client {
        let app = Router::new()
            .route("/api/v1/applications/{app}/builds", post(create))
            .route("/api/v1/applications/{app}/builds/{n}/log", get(log))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Client::new(&Target::new(&format!("http://{addr}"))).unwrap()
    }

    #[tokio::test]
    async fn build_follows_the_log_across_reconnects_and_reports_the_outcome() {
        let fake = Fake::default();
        let client = serve(fake.clone()).await;
        let args = BuildArgs {
            app: "web".into(),
            git_ref: Some("v1".into()),
            no_wait: false,
        };
        let mut out = Vec::new();
        let code = run(&client, args.clone(), &mut out).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "build/web-build-3: web at main (commit 0123456789ab) with the image builder\nstep 1\nstep 2\nstep 3\n\
             Succeeded: built sha256:ab; release 4\n"
        );
        assert_eq!(*fake.resumed.lock().unwrap(), [None, Some("6".to_owned())]);

        *fake.outcome.lock().unwrap() = Some(BuildPhase::Failed);
        let e = run(&client, args, &mut Vec::new()).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("build web-build-3 failed: built sha256:ab; release 4\n  see its log: berth builds logs web-build-3"),
            "{e}"
        );
    }
}
