//! `berth`: the server (`berth server`) and the client commands in one binary.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ship applications with Berth, an application-centric container cloud.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct Args {
    #[command(flatten)]
    global: berth_cli::GlobalArgs,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the Berth server: REST API, reconcilers and the application router.
    Server(berth_server::ServerArgs),
    #[command(flatten)]
    Client(berth_cli::Command),
}

fn main() -> ExitCode {
    // One TLS provider for every client in the process (reqwest, the registry client).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            Top::Server(server) => {
                berth_server::init_logging();
                berth_server::run(server).await.map(|()| ExitCode::SUCCESS)
            }
            // Completion scripts cover the whole binary, `server` included.
            Top::Client(berth_cli::Command::Completion(c)) => {
                berth_cli::commands::completion::run(&c, Args::command(), &mut std::io::stdout())
            }
            Top::Client(command) => berth_cli::run_command(args.global, command).await,
        }
    });
    // Work on blocking threads (a git fetch, a file copy) must not keep a stopped process
    // alive: what has not ended by now is abandoned with the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
