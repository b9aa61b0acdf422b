//! `berth rollback APP --env ENV [--to N]`: deploy an earlier release again.
//!
//! Rolling back is deploying an earlier release, so the server answers with a new
//! deployment and the command watches it exactly as `deploy` does.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use berth_core::objects::Deployment;

use super::deploy::{WaitArgs, Watch, started};
use crate::client::Client;
pub use berth_contract::RollbackRequest;

/// Arguments of `berth rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The application to roll back.
    pub app: String,
    /// The environment to roll back.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// The release to go back to (default: the one that ran before the current one).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// How to wait for the rollout.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `berth rollback`.
pub async fn run(
    client: &Client,
    args: RollbackArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let deployment = request(client, &args).await?;
    started(client, deployment, &args.wait, Watch::default(), out).await
}

async fn request(client: &Client, args: &RollbackArgs) -> anyhow::Result<Deployment> {
    let body = RollbackRequest {
        environment: args.environment.clone(),
        to: args.to,
    };
    client
        .post(&["applications", &args.app, "rollback"], &body)
        .await
        .with_context(|| format!("rolling back {} in {}", args.app, args.environment))
}

#[cfg(test)]
mod tests {
    use berth_core::objects::DeploymentPhase;

    use super::*;
    use crate::commands::deploy::tests::{fast, rollout, serve};

    #[tokio::test]
    async fn rollback_posts_and_watches() {
        let (client, fake) = serve(rollout(DeploymentPhase::Succeeded, "release 4 runs everywhere")).await;
        let args = RollbackArgs {
            app: "web".into(),
            environment: "qa".into(),
            to: Some(4),
            wait: WaitArgs::default(),
        };
        let d = request(&client, &args).await.unwrap();
        let mut out = Vec::new();
        let code = started(&client, d, &args.wait, fast(), &mut out).await.unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        assert_eq!(
            fake.requests.lock().unwrap()[0],
            serde_json::json!({"environment": "qa", "to": 4})
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with("Succeeded in 0s: release 4 runs everywhere\n"),
            "{out}"
        );
    }
}
