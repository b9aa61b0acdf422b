//! `berth delete KIND NAME`: remove a user, team, cluster, environment or application.
//!
//! Releases and deployments are history and cannot be deleted; events are an
//! append-only log. Deleting an application keeps them readable; it is refused while the
//! application runs in a production environment unless `--force` is given by someone
//! with release rights there.

use std::{io::Write, process::ExitCode};

use anyhow::Context;

use crate::{client::Client, kind::KindName};

/// Arguments of `berth delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Kind: user, team, cluster, environment (env) or application (app).
    pub kind: KindName,
    /// The object's name.
    pub name: String,
    /// Delete an application even while it runs in a production environment, stopping it
    /// there (needs release rights in every environment it runs in).
    #[arg(long)]
    pub force: bool,
}

/// Runs `berth delete`.
pub async fn run(
    client: &Client,
    args: DeleteArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    check(args.kind)?;
    let kind = args.kind;
    let name = &args.name;
    if args.force && kind != KindName::Application {
        anyhow::bail!("--force applies to applications only; {kind}/{name} is deleted without it");
    }
    let query = if args.force {
        vec![("force", "true".to_owned())]
    } else {
        Vec::new()
    };
    client
        .delete_with(&[kind.plural(), name], &query)
        .await
        .with_context(|| format!("deleting {kind}/{name}"))?;
    writeln!(out, "{kind}/{name} deleted")?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses kinds that cannot be deleted, saying what to do instead.
pub fn check(kind: KindName) -> anyhow::Result<()> {
    match kind {
        KindName::User
        | KindName::Team
        | KindName::Cluster
        | KindName::Environment
        | KindName::Application
        | KindName::Source => Ok(()),
        KindName::Release => anyhow::bail!(
            "releases cannot be deleted: they are the immutable history that rollbacks go back to"
        ),
        KindName::Deployment => anyhow::bail!(
            "deployments cannot be deleted: they record what ran where; to change what runs, \
             deploy or roll back"
        ),
        KindName::Event => anyhow::bail!("events cannot be deleted: the event log is append-only"),
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, http::StatusCode, routing::delete};

    use super::*;
    use crate::{config::Target, output::error_report};

    async fn serve() -> Client {
        let app = Router::new().route(
            "/api/v1/applications/{name}",
            delete(|axum::extract::Path(name): axum::extract::Path<String>, uri: axum::http::Uri| async move {
                if name == "web" || (name == "shop-prod" && uri.query() == Some("force=true")) {
                    (StatusCode::NO_CONTENT, [("content-type", "text/plain")], String::new())
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        [("content-type", "application/problem+json")],
                        format!(r#"{{"title":"Not Found","status":404,"detail":"application/{name} does not exist"}}"#),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Client::new(&Target::new(&format!("http://{addr}"))).unwrap()
    }

    #[tokio::test]
    async fn deletes_and_reports_missing_objects() {
        let client = serve().await;
        let mut out = Vec::new();
        let args = |name: &str| DeleteArgs {
            kind: KindName::Application,
            name: name.into(),
            force: false,
        };
        run(&client, args("web"), &mut out).await.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "application/web deleted\n");
        let e = run(&client, args("shop"), &mut Vec::new()).await.unwrap_err();
        assert_eq!(
            error_report(&e),
            "error: deleting application/shop: Not Found: application/shop does not exist"
        );
    }

    #[tokio::test]
    async fn force_is_sent_for_applications_only() {
        let client = serve().await;
        let forced = |kind: KindName| DeleteArgs {
            kind,
            name: "shop-prod".into(),
            force: true,
        };
        let mut out = Vec::new();
        run(&client, forced(KindName::Application), &mut out)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "application/shop-prod deleted\n");
        let e = run(&client, forced(KindName::Team), &mut Vec::new())
            .await
            .unwrap_err();
        assert!(
            error_report(&e).contains("--force applies to applications only"),
            "{e}"
        );
    }

    #[test]
    fn history_cannot_be_deleted() {
        for k in [KindName::Release, KindName::Deployment, KindName::Event] {
            assert!(check(k).is_err(), "{k}");
        }
    }
}
