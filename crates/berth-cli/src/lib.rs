//! The `berth` command-line client.
//!
//! Everything here speaks to a Berth server through its REST API (`/api/v1`) and
//! nothing else, as the console does: the CLI holds no business rules, it loads
//! documents, sends them, and shows what the server answers.
//!
//! ```text
//!  CliArgs ─▶ config (which server, which token) ─▶ Client (HTTP, problem+json)
//!     │                                                  ▲
//!     └─▶ commands::{apply,get,describe,delete,deploy,rollback,status,events} ─▶ output
//! ```
//!
//! The `berth` binary embeds this crate next to its own `server` subcommand:
//! [`GlobalArgs`] flattens into its top-level parser and [`Command`] flattens into
//! its subcommand enum; it then calls [`run`] (or [`run_command`]).

pub mod client;
pub mod commands;
pub mod config;
#[cfg(test)]
mod fake;
pub mod kind;
pub mod output;

use std::{io::Write, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::client::Client;
pub use crate::commands::{
    apply::ApplyArgs, delete::DeleteArgs, deploy::DeployArgs, describe::DescribeArgs, events::EventsArgs,
    get::GetArgs, rollback::RollbackArgs, status::StatusArgs,
};

/// The whole command line of the client on its own: global flags and one command.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth", version, about = "Ship applications with Berth.")]
pub struct CliArgs {
    /// Which server to talk to, and as whom.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every client command accepts: where the server is and how to authenticate.
///
/// Each value is taken from the flag, else the environment variable, else the config
/// file, else the default (see [`config::resolve`]).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Berth server URL [env: BERTH_SERVER] [default: http://127.0.0.1:7070].
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// API token sent as `Authorization: Bearer` [env: BERTH_TOKEN].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Entry of the config file to use instead of its `current` [env: BERTH_CONTEXT].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// The client's commands; flattenable into a binary's own subcommand enum.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create or update users, teams, clusters, environments and applications from YAML or
    /// JSON files, all in one transaction (`--dry-run` shows the plan, `--prune` removes
    /// what the source no longer has).
    Apply(ApplyArgs),
    /// Show what `apply` would change (created, a field-level diff, unchanged, pruned),
    /// checked in full by the server; nothing is stored.
    Diff(commands::apply::DiffArgs),
    /// List objects of a kind, or show one.
    Get(GetArgs),
    /// Write every user, team, cluster, environment and application as files (one per
    /// object) that `apply` reproduces; secret values are not exported.
    Export(commands::export::ExportArgs),
    /// Show one object in detail, with its recent events.
    Describe(DescribeArgs),
    /// Delete an object.
    Delete(DeleteArgs),
    /// Deploy a release (or a new image) of an application to an environment.
    Deploy(DeployArgs),
    /// Go back to an earlier release in an environment.
    Rollback(RollbackArgs),
    /// Show where an application runs: releases, rollouts, ready replicas and URLs.
    Status(StatusArgs),
    /// List events, or follow them as they happen.
    Events(EventsArgs),
    /// Build an application's source (once per commit and builder) and follow the log.
    Build(commands::build::BuildArgs),
    /// List builds, or show one build's log (`berth builds logs NAME -f`).
    Builds(commands::build::BuildsArgs),
    /// Promote the release running in one environment to another: same image digest.
    Promote(commands::promote::PromoteArgs),
    /// Show what runs in an environment: commit, build, digest, where it was verified,
    /// who promoted it and when.
    Provenance(commands::promote::ProvenanceArgs),
    /// Check an API token with the server and keep it in the config file.
    Login(commands::login::LoginArgs),
    /// Show who the token authenticates and what roles it carries.
    Whoami(commands::login::WhoamiArgs),
    /// Make, list and revoke API tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Set, list and delete an application's secrets; re-seal them after a key rotation.
    #[command(subcommand)]
    Secret(commands::secret::SecretCommand),
    /// List the audit log, or verify that no entry was edited or deleted.
    Audit(commands::audit::AuditArgs),
    /// Show the log lines of an application's instances in an environment, merged and
    /// labelled by instance (`-f` follows, `--previous` shows crashed instances).
    Logs(commands::operate::LogsArgs),
    /// List an application's instances in an environment: cluster, datacenter, release,
    /// state, ready, restarts, age, address.
    Instances(commands::operate::InstancesArgs),
    /// Restart every instance of an application in an environment, one by one, each
    /// replacement taking traffic once healthy; no new release.
    Restart(commands::operate::RestartArgs),
    /// Print a shell completion script: `source <(berth completion bash)`, or put
    /// `berth completion zsh` in a file named `_berth` on `$fpath`, or
    /// `berth completion fish > ~/.config/fish/completions/berth.fish`.
    Completion(commands::completion::CompletionArgs),
}

/// Runs one client command, printing its output to stdout.
///
/// Failures are printed to stderr as `error: …` (for server errors: title, detail and
/// one line per field problem) and turn into exit code 1, so the caller only has to
/// return the exit code. An `Err` is returned only if stdout or stderr cannot be written.
pub async fn run(args: CliArgs) -> anyhow::Result<ExitCode> {
    run_command(args.global, args.command).await
}

/// Like [`run`], for a binary that parsed [`GlobalArgs`] and [`Command`] itself.
///
/// When the reader of stdout goes away (`berth describe application web | head`), the
/// command ends quietly with exit code 0, as `rg` and `git log` do: the reader took what it
/// wanted, and there is nobody left to tell.
pub async fn run_command(global: GlobalArgs, command: Command) -> anyhow::Result<ExitCode> {
    let mut stdout = Stdout::default();
    let result = dispatch(&global, command, &mut stdout).await;
    let flushed = stdout.flush();
    if stdout.reader_gone {
        return Ok(ExitCode::SUCCESS);
    }
    flushed?;
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            let mut stderr = std::io::stderr();
            writeln!(stderr, "{}", output::error_report(&e))?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The process's stdout, remembering whether its reader has gone away (a closed pipe), so
/// that the error a command gets from writing is told apart from any other failure.
#[derive(Default)]
struct Stdout {
    reader_gone: bool,
}

impl Stdout {
    fn seen<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.reader_gone = true;
        }
        result
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = std::io::stdout().write(buf);
        self.seen(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = std::io::stdout().flush();
        self.seen(result)
    }
}

async fn dispatch(
    global: &GlobalArgs,
    command: Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    if let Command::Completion(args) = command {
        use clap::CommandFactory;
        return commands::completion::run(&args, CliArgs::command(), out);
    }
    if let Command::Login(args) = command {
        let stdin = std::io::stdin();
        return commands::login::run(global, args, &config::ProcessEnv, &mut stdin.lock(), out).await;
    }
    let target = config::resolve(global, &config::ProcessEnv)?;
    let client = Client::new(&target)?;
    run_with(&client, command, out).await
}

/// Runs `command` against `client`, writing to `out`; what [`run`] does after it has
/// resolved the server. Errors are returned, not printed.
pub async fn run_with(
    client: &Client,
    command: Command,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Apply(a) => commands::apply::run(client, a, out).await,
        Command::Diff(a) => commands::apply::diff(client, a, out).await,
        Command::Get(a) => commands::get::run(client, a, out).await,
        Command::Export(a) => commands::export::run(client, a, out).await,
        Command::Describe(a) => commands::describe::run(client, a, out).await,
        Command::Delete(a) => commands::delete::run(client, a, out).await,
        Command::Deploy(a) => commands::deploy::run(client, a, out).await,
        Command::Rollback(a) => commands::rollback::run(client, a, out).await,
        Command::Status(a) => commands::status::run(client, a, out).await,
        Command::Events(a) => commands::events::run(client, a, out).await,
        Command::Build(a) => commands::build::run(client, a, out).await,
        Command::Builds(a) => commands::build::run_builds(client, a, out).await,
        Command::Promote(a) => commands::promote::run(client, a, out).await,
        Command::Provenance(a) => commands::promote::provenance(client, a, out).await,
        Command::Login(_) => anyhow::bail!("login needs the command line's server and token, not a client"),
        Command::Whoami(a) => commands::login::whoami(client, a.output, out).await,
        Command::Token(c) => commands::token::run(client, c, out).await,
        Command::Secret(c) => commands::secret::run(client, c, &mut std::io::stdin(), out).await,
        Command::Audit(a) => commands::audit::run(client, a, out).await,
        Command::Logs(a) => commands::operate::logs(client, a, out).await,
        Command::Instances(a) => commands::operate::instances(client, a, out).await,
        Command::Restart(a) => commands::operate::restart(client, a, out).await,
        Command::Completion(a) => {
            use clap::CommandFactory;
            commands::completion::run(&a, CliArgs::command(), out)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::{fake::FakeApi, kind::KindName, output::Format};

    /// The shape the `berth` binary uses: its own `server` next to the client's commands.
    #[derive(Debug, Parser)]
    #[command(name = "berth")]
    struct Binary {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        /// Run the server.
        Server {
            #[arg(long)]
            listen: Option<String>,
        },
        #[command(flatten)]
        Client(Command),
    }

    fn parse(args: &[&str]) -> Result<CliArgs, clap::Error> {
        CliArgs::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
    }

    #[test]
    fn the_client_flattens_into_a_binary() {
        Binary::command().debug_assert();
        let b =
            Binary::try_parse_from(["berth", "--server", "http://x:1", "get", "apps", "-o", "yaml"]).unwrap();
        assert_eq!(b.global.server.as_deref(), Some("http://x:1"));
        let Top::Client(Command::Get(g)) = b.command else {
            panic!("not get: {b:?}")
        };
        assert_eq!((g.kind, g.output), (KindName::Application, Format::Yaml));
        let b = Binary::try_parse_from(["berth", "server", "--listen", "0.0.0.0:7070"]).unwrap();
        assert!(matches!(b.command, Top::Server { .. }));
        // Global flags work after the subcommand too.
        let b = Binary::try_parse_from(["berth", "status", "web", "--token", "t"]).unwrap();
        assert_eq!(b.global.token.as_deref(), Some("t"));
        // The client's own parser is well formed, and usable from matches.
        CliArgs::command().debug_assert();
        let m = CliArgs::command().get_matches_from(["berth", "events", "-f", "--since", "7"]);
        let a = CliArgs::from_arg_matches(&m).unwrap();
        assert!(matches!(
            a.command,
            Command::Events(EventsArgs {
                follow: true,
                since: 7,
                ..
            })
        ));
    }

    #[test]
    fn command_lines() {
        let a = parse(&["apply", "-f", "a.yaml", "dir", "-f", "-"]).unwrap();
        let Command::Apply(apply) = a.command else {
            panic!()
        };
        assert_eq!(
            apply.files,
            [std::path::PathBuf::from("a.yaml"), "dir".into(), "-".into()]
        );
        assert!(parse(&["apply"]).is_err(), "-f is required");

        let a = parse(&["deploy", "web", "--env", "qa", "--release", "3", "--no-wait"]).unwrap();
        let Command::Deploy(d) = a.command else { panic!() };
        assert_eq!((d.release, d.wait.no_wait), (Some(3), true));
        let e = parse(&["deploy", "web", "--env", "qa", "--release", "3", "--image", "x"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(parse(&["deploy", "web"]).is_err(), "--env is required");

        let a = parse(&["rollback", "web", "--env", "qa", "--to", "2", "--timeout", "30"]).unwrap();
        let Command::Rollback(r) = a.command else { panic!() };
        assert_eq!((r.to, r.wait.timeout), (Some(2), Some(30)));

        let e = parse(&["get", "pods"]).unwrap_err().to_string();
        assert!(e.contains("unknown kind 'pods'"), "{e}");
        let a = parse(&["get", "rel", "3", "--app", "web", "-o", "json"]).unwrap();
        let Command::Get(g) = a.command else { panic!() };
        assert_eq!(
            (g.kind, g.name.as_deref(), g.app.as_deref()),
            (KindName::Release, Some("3"), Some("web"))
        );
        let a = parse(&["get", "deploy", "--app", "web", "--env", "qa"]).unwrap();
        let Command::Get(g) = a.command else { panic!() };
        assert_eq!(
            (g.kind, g.environment.as_deref()),
            (KindName::Deployment, Some("qa"))
        );

        let a = parse(&["describe", "env", "qa"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Describe(DescribeArgs {
                kind: KindName::Environment,
                ..
            })
        ));
        let a = parse(&["delete", "app", "web"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Delete(DeleteArgs {
                kind: KindName::Application,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn get_watch_prints_each_change_once() {
        let fake = FakeApi::default();
        let client = fake.serve().await;
        let cluster = |name: &str| {
            serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Cluster",
                "metadata": {"name": name}, "spec": {"runtime": "local", "datacenter": "dc1"}})
        };
        fake.insert("clusters", cluster("a"));
        let later = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(450)).await;
            later.insert("clusters", cluster("b"));
        });
        for (format, check) in [("table", 0), ("json", 1)] {
            let mut out = Vec::new();
            let a = parse(&["get", "clusters", "-w", "--interval", "100ms", "-o", format]).unwrap();
            let watched = tokio::time::timeout(
                std::time::Duration::from_millis(900),
                run_with(&client, a.command, &mut out),
            )
            .await;
            assert!(watched.is_err(), "a watch runs until interrupted: {watched:?}");
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            if check == 0 {
                // The header and cluster a once, then only the new row b, in spite of ~8 polls.
                assert_eq!(lines.len(), 3, "{text}");
                assert!(lines[0].starts_with("NAME"), "{text}");
                assert!(lines[1].starts_with("a "), "{text}");
                assert!(lines[2].starts_with("b "), "{text}");
            } else {
                // One compact list per change: [a, b] (b is there from the start this time).
                assert_eq!(lines.len(), 1, "{text}");
                let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
                assert_eq!(v["kind"], "ClusterList");
                assert_eq!(v["items"].as_array().unwrap().len(), 2);
            }
        }
        let e = parse(&["get", "clusters", "--interval", "1s"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["status", "web", "-w", "--interval", "5ms"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 100ms"), "{e}");
    }

    #[tokio::test]
    async fn commands_run_against_a_server() {
        let fake = FakeApi::default();
        let client = fake.serve().await;
        fake.insert(
            "clusters",
            serde_json::json!({"apiVersion": "berth.dev/v1", "kind": "Cluster",
                "metadata": {"name": "local"}, "spec": {"runtime": "local", "datacenter": "dc1"}}),
        );
        let mut out = Vec::new();
        let a = parse(&["get", "clusters", "local", "-o", "json"]).unwrap();
        let code = run_with(&client, a.command, &mut out).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["spec"]["datacenter"], "dc1");

        let mut out = Vec::new();
        let a = parse(&["delete", "cluster", "local"]).unwrap();
        run_with(&client, a.command, &mut out).await.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "cluster/local deleted\n");

        let a = parse(&["get", "cluster", "local"]).unwrap();
        let e = run_with(&client, a.command, &mut Vec::new()).await.unwrap_err();
        assert_eq!(
            output::error_report(&e),
            "error: getting cluster/local: Not Found: clusters/local does not exist"
        );
    }
}
