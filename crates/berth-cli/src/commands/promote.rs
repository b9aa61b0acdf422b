//! `berth promote APP --from ENV --to ENV` and `berth provenance APP --env ENV`.
//!
//! Promotion copies the release that runs in one environment to the next, with the
//! identical image digest: the server answers with the new deployment, which the command
//! watches as `deploy` does. A target environment whose `requireVerifiedIn` the digest
//! does not meet refuses with the reason. `provenance` shows what runs in an environment
//! and how it got there.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use berth_core::{objects::Deployment, promotion::Provenance};

use super::{
    deploy::{WaitArgs, Watch, started},
    variant,
};
use crate::{
    client::Client,
    output::{self, Format},
};
pub use berth_contract::PromoteRequest;

/// Arguments of `berth promote`.
#[derive(Debug, Clone, clap::Args)]
pub struct PromoteArgs {
    /// The application.
    pub app: String,
    /// The environment whose running release is promoted.
    #[arg(long, value_name = "ENV")]
    pub from: String,
    /// The environment it goes to.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// How to wait for the rollout.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Arguments of `berth provenance`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvenanceArgs {
    /// The application.
    pub app: String,
    /// The environment.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Runs `berth promote`.
pub async fn run(
    client: &Client,
    args: PromoteArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let deployment = request(client, &args).await?;
    started(client, deployment, &args.wait, Watch::default(), out).await
}

async fn request(client: &Client, args: &PromoteArgs) -> anyhow::Result<Deployment> {
    let body = PromoteRequest {
        from: args.from.clone(),
        to: args.to.clone(),
    };
    client
        .post(&["applications", &args.app, "promote"], &body)
        .await
        .with_context(|| format!("promoting {} from {} to {}", args.app, args.from, args.to))
}

/// Runs `berth provenance`.
pub async fn provenance(
    client: &Client,
    args: ProvenanceArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let p: Provenance = client
        .get(
            &["applications", &args.app, "provenance"],
            &[("environment", args.environment.clone())],
        )
        .await
        .with_context(|| format!("reading the provenance of {} in {}", args.app, args.environment))?;
    let text = match args.output {
        Format::Table => describe(&p),
        Format::Json => output::json(&p)?,
        Format::Yaml => output::yaml_documents(&[&p])?,
    };
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Provenance for people: one fact per line.
#[must_use]
pub fn describe(p: &Provenance) -> String {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    };
    let mut s = format!(
        "Application:  {}\nEnvironment:  {}\nRelease:      {} ({} {})\nImage:        {}\nDigest:       {}\n",
        p.application,
        p.environment,
        p.release,
        p.deployment,
        variant(&p.phase),
        p.image,
        p.digest
    );
    s.push_str(&format!("Template:     {}\n", p.template_hash));
    s.push_str(&format!("Commit:       {}\n", p.commit.as_deref().unwrap_or("-")));
    match &p.build {
        Some(b) => s.push_str(&format!(
            "Build:        {} ({} builder{}{}, finished {})\n",
            b.name,
            b.builder,
            b.git.as_deref().map(|g| format!(", {g}")).unwrap_or_default(),
            b.git_ref
                .as_deref()
                .map(|r| format!(" at {r}"))
                .unwrap_or_default(),
            time(b.finished_at)
        )),
        None => s.push_str("Build:        - (not built by Berth)\n"),
    }
    s.push_str("Verified in:\n");
    if p.verified_in.is_empty() {
        s.push_str("  (nowhere yet)\n");
    }
    for v in &p.verified_in {
        s.push_str(&format!(
            "  {:<12} release {} by {} at {}\n",
            v.environment,
            v.release,
            v.deployment,
            time(v.at)
        ));
    }
    s.push_str("Promotions:\n");
    if p.promotions.is_empty() {
        s.push_str("  (none: deployed directly)\n");
    }
    for pr in &p.promotions {
        s.push_str(&format!(
            "  {} -> {}  release {}  by {} at {}\n",
            pr.from_environment,
            pr.to_environment,
            pr.from_release,
            pr.promoted_by,
            time(Some(pr.promoted_at))
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use axum::{
        Json, Router,
        extract::Query,
        response::{IntoResponse, Response},
        routing::{get, post},
    };
    use berth_core::{
        objects::{DeploymentPhase, Promotion},
        promotion::{BuildSummary, Verification},
    };
    use chrono::TimeZone;

    use super::*;
    use crate::{commands::get::tests::deployment, config::Target};

    fn provenance_fixture() -> Provenance {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        Provenance {
            application: "web".into(),
            environment: "production".into(),
            release: 2,
            deployment: "web-production-1".into(),
            phase: DeploymentPhase::Succeeded,
            deployed_by: Some("bob".into()),
            image: "r/web@sha256:ab".into(),
            digest: "sha256:ab".into(),
            template_hash: "sha256:7e".into(),
            commit: Some("c0ffee".into()),
            build: Some(BuildSummary {
                name: "web-build-1".into(),
                builder: "java".into(),
                git: Some("file:///r.git".into()),
                git_ref: Some("main".into()),
                requested_by: Some("alice".into()),
                finished_at: Some(at),
            }),
            verified_in: vec![Verification {
                environment: "qa".into(),
                deployment: "web-qa-1".into(),
                release: 1,
                at: Some(at),
            }],
            promotions: vec![Promotion {
                from_environment: "qa".into(),
                from_release: 1,
                to_environment: "production".into(),
                promoted_by: "bob".into(),
                promoted_at: at,
            }],
        }
    }

    #[test]
    fn provenance_reads_as_facts() {
        insta::assert_snapshot!(describe(&provenance_fixture()), @r"
        Application:  web
        Environment:  production
        Release:      2 (web-production-1 Succeeded)
        Image:        r/web@sha256:ab
        Digest:       sha256:ab
        Template:     sha256:7e
        Commit:       c0ffee
        Build:        web-build-1 (java builder, file:///r.git at main, finished 2026-11-26T12:00:00Z)
        Verified in:
          qa           release 1 by web-qa-1 at 2026-11-26T12:00:00Z
        Promotions:
          qa -> production  release 1  by bob at 2026-11-26T12:00:00Z
        ");
    }

    #[tokio::test]
    async fn promote_posts_and_provenance_reads() {
        async fn promote(Json(body): Json<serde_json::Value>) -> Response {
            assert_eq!(body, serde_json::json!({"from": "qa", "to": "production"}));
            let d = deployment("web", "production", 1, 2, DeploymentPhase::Pending);
            (axum::http::StatusCode::CREATED, Json(d)).into_response()
        }
        async fn provenance_of(Query(q): Query<std::collections::BTreeMap<String, String>>) -> Response {
            assert_eq!(q["environment"], "production");
            Json(provenance_fixture()).into_response()
        }
        let app = Router::new()
            .route("/api/v1/applications/{app}/promote", post(promote))
            .route("/api/v1/applications/{app}/provenance", get(provenance_of));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(&Target::new(&format!("http://{addr}"))).unwrap();
        let args = PromoteArgs {
            app: "web".into(),
            from: "qa".into(),
            to: "production".into(),
            wait: WaitArgs {
                no_wait: true,
                timeout: None,
            },
        };
        let mut out = Vec::new();
        assert_eq!(run(&client, args, &mut out).await.unwrap(), ExitCode::SUCCESS);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "deployment/web-production-1: release 2 of web to production\n"
        );
        let mut out = Vec::new();
        let args = ProvenanceArgs {
            app: "web".into(),
            environment: "production".into(),
            output: Format::Json,
        };
        provenance(&client, args, &mut out).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["promotions"][0]["promotedBy"], "bob");
    }
}
