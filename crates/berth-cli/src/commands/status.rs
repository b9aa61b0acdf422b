//! `berth status APP`: where an application runs, environment by environment — the
//! release, the latest deployment and its phase, ready replicas per cluster, and URLs.

use std::{io::Write, process::ExitCode};

use anyhow::Context;

use super::{
    deploy::progress_line,
    variant,
    watch::{Snapshot, WatchArgs},
};
use crate::{
    client::Client,
    output::{self, Format},
};
pub use berth_contract::{
    ApplicationState as AppStatus, DeploymentSummary as DeploymentRef, EnvironmentState,
};

/// Arguments of `berth status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The application.
    pub app: String,
    /// How to print it: text for people, or the API's answer as JSON or YAML.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Keep watching, printing the status again whenever it changes (`-w`).
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// Runs `berth status`.
pub async fn run(
    client: &Client,
    args: StatusArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    if args.watch.watch {
        let args = &args;
        return super::watch::run(
            args.watch.interval,
            || async move { snapshot(&fetch(client, &args.app).await?, args.output) },
            out,
        )
        .await;
    }
    let status = fetch(client, &args.app).await?;
    match output::document(args.output, &status)? {
        Some(text) => out.write_all(text.as_bytes())?,
        None => out.write_all(render(&status).as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the server where `app` runs.
async fn fetch(client: &Client, app: &str) -> anyhow::Result<AppStatus> {
    client
        .get(&["applications", app, "status"], &[])
        .await
        .with_context(|| format!("getting the status of {app}"))
}

/// What `status -w` shows of one poll: the text block, one JSON line, or a YAML document.
pub fn snapshot(status: &AppStatus, format: Format) -> anyhow::Result<Snapshot> {
    Ok(match format {
        Format::Table => Snapshot::Block {
            text: render(status),
            separator: "\n",
        },
        Format::Json => Snapshot::Line(serde_json::to_string(status)?),
        Format::Yaml => Snapshot::Block {
            text: output::yaml_documents(std::slice::from_ref(status))?,
            separator: "---\n",
        },
    })
}

/// The status as text.
#[must_use]
pub fn render(status: &AppStatus) -> String {
    let mut out = format!("application/{}\n", status.application);
    if status.environments.is_empty() {
        out.push_str(&format!(
            "  not deployed anywhere yet: berth deploy {} --env ENV\n",
            status.application
        ));
    }
    for env in &status.environments {
        out.push('\n');
        out.push_str(&environment(env));
    }
    out
}

/// One environment's block.
#[must_use]
pub fn environment(env: &EnvironmentState) -> String {
    let mut out = format!("{}\n", env.environment);
    let release = env
        .release
        .map_or_else(|| "none (not deployed)".to_owned(), |r| r.to_string());
    out.push_str(&format!("  release:     {release}\n"));
    if let Some(image) = &env.image {
        out.push_str(&format!("  image:       {image}\n"));
    }
    if let Some(d) = &env.deployment {
        out.push_str(&format!("  deployment:  {} {}", d.name, variant(&d.phase)));
        if let Some(m) = d.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(&format!(": {m}"));
        }
        out.push('\n');
    }
    if !env.clusters.is_empty() {
        out.push_str("  clusters:\n");
        let width = env.clusters.iter().map(|c| c.cluster.len()).max().unwrap_or(0);
        for c in &env.clusters {
            out.push_str(&format!("    {}\n", progress_line(c, width)));
        }
    }
    if !env.urls.is_empty() {
        out.push_str("  urls:\n");
        for u in &env.urls {
            out.push_str(&format!("    {u}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_per_environment() {
        let status: AppStatus = serde_json::from_value(serde_json::json!({
            "application": "web",
            "environments": [
                {"environment": "qa", "release": 4, "image": "127.0.0.1:5000/web@sha256:0123",
                 "deployment": {"name": "web-qa-3", "phase": "Succeeded", "message": "release 4 runs everywhere"},
                 "clusters": [{"cluster": "local", "datacenter": "default", "desired": 2, "updated": 2, "ready": 2, "old": 0}],
                 "urls": ["http://web.qa.berth.localhost:7080"]},
                {"environment": "production", "release": 3,
                 "deployment": {"name": "web-production-7", "phase": "Progressing"},
                 "clusters": [
                    {"cluster": "dc1", "datacenter": "dc1", "desired": 3, "updated": 3, "ready": 3, "old": 0},
                    {"cluster": "dc2-east", "datacenter": "dc2", "desired": 3, "updated": 1, "ready": 1, "old": 2}],
                 "urls": ["http://web.production.berth.localhost:7080", "https://shop.example.com"]},
                {"environment": "staging"}
            ]
        }))
        .unwrap();
        insta::assert_snapshot!(render(&status), @r"
        application/web

        qa
          release:     4
          image:       127.0.0.1:5000/web@sha256:0123
          deployment:  web-qa-3 Succeeded: release 4 runs everywhere
          clusters:
            local  2/2 ready
          urls:
            http://web.qa.berth.localhost:7080

        production
          release:     3
          deployment:  web-production-7 Progressing
          clusters:
            dc1       3/3 ready
            dc2-east  1/3 ready  (2 old)
          urls:
            http://web.production.berth.localhost:7080
            https://shop.example.com

        staging
          release:     none (not deployed)
        ");
        let empty = AppStatus {
            application: "web".into(),
            environments: vec![],
        };
        assert_eq!(
            render(&empty),
            "application/web\n  not deployed anywhere yet: berth deploy web --env ENV\n"
        );
    }
}
