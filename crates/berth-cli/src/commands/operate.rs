//! `berth logs`, `berth instances` and `berth restart`: operating a running application
//! through the API — its instances, their logs (of crashed ones too), a rolling restart.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use berth_contract::{ClusterProblem, InstanceList, RestartRequest, TerminatedInstance};
use berth_core::{
    instance::{Instance, LogLine},
    objects::Deployment,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{events::SseDecoder, variant};
use crate::{
    client::Client,
    output::{self, Format, Table},
};

/// Arguments of `berth logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The application.
    pub app: String,
    /// The environment.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub environment: String,
    /// Only the instances on this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only this instance (see `berth instances`).
    #[arg(long)]
    pub instance: Option<String>,
    /// Keep following: new lines, and the lines of instances that start meanwhile.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines since a duration ago (90s, 10m, 2h, 1d) or an RFC 3339 instant.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines of each instance.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// The lines Berth kept of instances that ended (crashed, unhealthy), with why.
    #[arg(long, conflicts_with = "follow")]
    pub previous: bool,
    /// `json`: one JSON object per line (instance, cluster, time, text; for --previous
    /// also the terminated instances); `yaml` is not offered for a stream.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Runs `berth logs`.
pub async fn logs(client: &Client, args: LogsArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    if args.output == Format::Yaml {
        anyhow::bail!("logs are a stream: use -o json (one JSON object per line) or the default text");
    }
    let mut query = vec![("environment", args.environment.clone())];
    for (name, value) in [
        ("cluster", args.cluster.clone()),
        ("instance", args.instance.clone()),
        ("since", args.since.clone()),
        ("tail", args.tail.map(|t| t.to_string())),
    ] {
        if let Some(v) = value {
            query.push((name, v));
        }
    }
    if args.follow {
        query.push(("follow", "true".to_owned()));
    }
    if args.previous {
        query.push(("previous", "true".to_owned()));
    }
    let what = || format!("reading the logs of {} in {}", args.app, args.environment);
    let response = client
        .stream(&["applications", &args.app, "logs"], &query, None)
        .await
        .with_context(what)?;
    let mut decoder = SseDecoder::default();
    let mut body = response.bytes_stream();
    let json = args.output == Format::Json;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(what)?;
        for message in decoder.push(&chunk) {
            match message.event.as_deref() {
                Some("log") => {
                    let line: LogLine = serde_json::from_str(&message.data).with_context(|| {
                        format!("the server sent a log line that is not one: {}", message.data)
                    })?;
                    if json {
                        writeln!(out, "{}", serde_json::to_string(&line)?)?;
                    } else {
                        writeln!(out, "[{}] {}", line.instance, line.text)?;
                    }
                }
                Some("terminated") => {
                    let t: TerminatedInstance = serde_json::from_str(&message.data).with_context(|| {
                        format!("the server sent an instance that is not one: {}", message.data)
                    })?;
                    if json {
                        writeln!(out, "{}", serde_json::json!({ "terminated": t }))?;
                    } else {
                        writeln!(out, "{}", terminated_header(&t))?;
                    }
                }
                Some("problem") => {
                    let text = serde_json::from_str::<ClusterProblem>(&message.data).map_or_else(
                        |_| message.data.clone(),
                        |p| format!("cluster {}: {}", p.cluster, p.message),
                    );
                    eprintln!("warning: {text}");
                }
                Some("end") => return Ok(ExitCode::SUCCESS),
                _ => {}
            }
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The line before a terminated instance's lines.
fn terminated_header(t: &TerminatedInstance) -> String {
    let when = t
        .exit
        .finished_at
        .map(|f| format!(" at {}", f.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    format!(
        "=== {} on {} (release {}) {}{when} ===",
        t.instance,
        t.cluster,
        t.release,
        t.exit.describe()
    )
}

/// Arguments of `berth instances`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstancesArgs {
    /// The application.
    pub app: String,
    /// The environment.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub environment: String,
    /// Only the instances on this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// How to print them.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Runs `berth instances`.
pub async fn instances(
    client: &Client,
    args: InstancesArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let mut query = vec![("environment", args.environment.clone())];
    if let Some(c) = &args.cluster {
        query.push(("cluster", c.clone()));
    }
    let list: InstanceList = client
        .get(&["applications", &args.app, "instances"], &query)
        .await
        .with_context(|| format!("listing the instances of {} in {}", args.app, args.environment))?;
    match args.output {
        Format::Json | Format::Yaml => {
            if let Some(text) = output::document(args.output, &list)? {
                out.write_all(text.as_bytes())?;
            }
        }
        Format::Table => {
            if list.items.is_empty() {
                writeln!(out, "no instances of {} in {}", args.app, args.environment)?;
            } else {
                out.write_all(table(&list.items, Utc::now()).render().as_bytes())?;
            }
        }
    }
    for p in &list.problems {
        eprintln!("warning: cluster {}: {}", p.cluster, p.message);
    }
    Ok(ExitCode::SUCCESS)
}

/// The instances as a table.
#[must_use]
pub fn table(items: &[Instance], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&[
        "CLUSTER",
        "DATACENTER",
        "INSTANCE",
        "RELEASE",
        "STATE",
        "READY",
        "RESTARTS",
        "AGE",
        "ADDRESS",
    ]);
    for i in items {
        t.row([
            i.cluster.clone(),
            i.datacenter.clone(),
            i.name.clone(),
            i.release.to_string(),
            variant(&i.state),
            if i.ready { "yes" } else { "no" }.to_owned(),
            i.restarts.to_string(),
            output::age(Some(i.created_at), now),
            i.address.clone().unwrap_or_default(),
        ]);
    }
    t
}

/// Arguments of `berth restart`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestartArgs {
    /// The application.
    pub app: String,
    /// The environment.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub environment: String,
}

/// Runs `berth restart`.
pub async fn restart(
    client: &Client,
    args: RestartArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let d: Deployment = client
        .post(
            &["applications", &args.app, "restart"],
            &RestartRequest {
                environment: args.environment.clone(),
            },
        )
        .await
        .with_context(|| format!("restarting {} in {}", args.app, args.environment))?;
    writeln!(
        out,
        "restarting {} in {}: new instances of release {} replace the running ones one by one, each once healthy \
         (follow with: berth instances {} --env {})",
        args.app, args.environment, d.spec.release, args.app, args.environment
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use berth_core::instance::{ExitReason, InstanceState};

    use super::*;

    #[test]
    fn instances_table_and_terminated_header() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let i = Instance {
            name: "berth-local-web-qa-r3-abc123".into(),
            cluster: "local".into(),
            datacenter: "dc1".into(),
            release: 3,
            state: InstanceState::Running,
            ready: true,
            restarts: 2,
            created_at: now - chrono::Duration::minutes(5),
            address: Some("127.0.0.1:40001".into()),
            last_exit: None,
        };
        insta::assert_snapshot!(table(&[i], now).render(), @r"
        CLUSTER   DATACENTER   INSTANCE                       RELEASE   STATE     READY   RESTARTS   AGE   ADDRESS
        local     dc1          berth-local-web-qa-r3-abc123   3         Running   yes     2          5m    127.0.0.1:40001
        ");
        let mut exit = ExitReason::of_exit(3, false);
        exit.finished_at = Some(now);
        let header = terminated_header(&TerminatedInstance {
            instance: "i1".into(),
            cluster: "local".into(),
            release: 3,
            exit,
        });
        assert_eq!(
            header,
            "=== i1 on local (release 3) exited with code 3 at 2027-01-15 08:00:00 UTC ==="
        );
    }
}
