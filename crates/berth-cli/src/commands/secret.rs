//! `berth secret set|list|delete|rotate`: an application's secrets.
//!
//! A value is read from a file or standard input, never from the command line (where
//! shell history and `ps` would keep it). The server seals it before storing it and
//! never sends it back: `list` shows names and versions.
//!
//! `--env ENV` sets or deletes the value of one environment, delivered only there (a
//! production value needs production deploy rights); without it, the value for every
//! environment that has none of its own (which needs production rights as well, since it
//! reaches production).

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::{
    client::Client,
    output::{self, Format, Table},
};
use berth_contract::{Resealed, SecretList, SecretValueRequest};
pub use berth_core::objects::SecretInfo;

/// `berth secret …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SecretCommand {
    /// Set a secret to a new version, from a file or standard input.
    Set(SetArgs),
    /// List an application's secrets: names and versions, never values.
    List {
        /// The application.
        app: String,
        /// How to print them (names and versions; values never leave the server).
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Delete a secret's value for all environments (one the application no longer
    /// references), or with --env that environment's own value.
    Delete {
        /// The application.
        app: String,
        /// The secret.
        name: String,
        /// Delete only this environment's own value.
        #[arg(long = "env", value_name = "ENV")]
        environment: Option<String>,
    },
    /// Seal every secret again with the active key (after adding a new key to the key
    /// file); platform administrators only.
    Rotate,
}

/// Arguments of `berth secret set`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetArgs {
    /// The application.
    pub app: String,
    /// The secret's name (reference it in the application's spec.secrets).
    pub name: String,
    /// Read the value from this file, byte for byte (default: standard input, without
    /// its final newline).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Set the value of this environment only (delivered there and nowhere else); by
    /// default the value for every environment without its own.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
}

/// The query naming the environment of a value, if any.
fn env_query(environment: Option<&String>) -> Vec<(&'static str, String)> {
    environment
        .map(|e| vec![("environment", e.clone())])
        .unwrap_or_default()
}

/// Where a value applies, for messages.
fn scope(environment: Option<&str>) -> String {
    environment.map_or_else(|| "all environments".to_owned(), |e| format!("environment {e}"))
}

/// Runs `berth secret …`, reading a value from `stdin` when needed.
pub async fn run(
    client: &Client,
    command: SecretCommand,
    stdin: &mut dyn Read,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set(a) => {
            let value = read_value(a.from_file.as_deref(), stdin)?;
            let info: SecretInfo = client
                .put_with(
                    &["applications", &a.app, "secrets", &a.name],
                    &env_query(a.environment.as_ref()),
                    &SecretValueRequest { value: value.clone() },
                )
                .await
                .with_context(|| format!("setting secret {} of {}", a.name, a.app))?;
            writeln!(
                out,
                "secret {} of {} for {} is at version {}",
                info.name,
                a.app,
                scope(info.environment.as_deref()),
                info.version
            )?;
        }
        SecretCommand::List { app, output } => {
            let list: SecretList = client
                .get(&["applications", &app, "secrets"], &[])
                .await
                .with_context(|| format!("listing the secrets of {app}"))?;
            match output::document(output, &list)? {
                Some(text) => out.write_all(text.as_bytes())?,
                None => out.write_all(table(&list.items, Utc::now()).render().as_bytes())?,
            }
        }
        SecretCommand::Delete {
            app,
            name,
            environment,
        } => {
            client
                .delete_with(
                    &["applications", &app, "secrets", &name],
                    &env_query(environment.as_ref()),
                )
                .await
                .with_context(|| format!("deleting secret {name} of {app}"))?;
            writeln!(
                out,
                "secret {name} of {app} for {} deleted",
                scope(environment.as_deref())
            )?;
        }
        SecretCommand::Rotate => {
            let r: Resealed = client
                .post(&["secrets", "rotate"], &serde_json::json!({}))
                .await
                .context("sealing secrets with the active key")?;
            writeln!(
                out,
                "{} of {} secret(s) sealed again; all are now under key {}",
                r.resealed, r.total, r.key_id
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The value: a file's bytes as they are, or standard input without its final newline
/// (what `echo` and a typed line add).
fn read_value(file: Option<&std::path::Path>, stdin: &mut dyn Read) -> anyhow::Result<String> {
    let value = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {} (secrets are UTF-8 text)", path.display()))?,
        None => {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("reading the secret from standard input")?;
            let trimmed = text.strip_suffix('\n').unwrap_or(&text);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned()
        }
    };
    anyhow::ensure!(!value.is_empty(), "the secret is empty");
    Ok(value)
}

/// NAME ENVIRONMENT VERSION UPDATED-BY AGE KEY (`*`: the value for all environments).
#[must_use]
pub fn table(secrets: &[SecretInfo], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["NAME", "ENVIRONMENT", "VERSION", "UPDATED-BY", "AGE", "KEY"]);
    for s in secrets {
        t.row(vec![
            s.name.clone(),
            s.environment.clone().unwrap_or_else(|| "*".to_owned()),
            s.version.to_string(),
            s.updated_by.clone(),
            output::age(s.updated_at, now),
            s.key_id.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--env` names the value's environment in the query, for set and delete alike.
    #[tokio::test]
    async fn env_selects_one_environments_value() {
        use axum::{Router, extract::Path, http::Uri, routing::put};
        let app = Router::new().route(
            "/api/v1/applications/{app}/secrets/{name}",
            put(|Path((_, name)): Path<(String, String)>, uri: Uri| async move {
                let env = uri
                    .query()
                    .and_then(|q| q.strip_prefix("environment="))
                    .map(str::to_owned);
                axum::Json(serde_json::json!({"name": name, "environment": env, "version": 4,
                    "updatedBy": "rita", "keyId": "k1"}))
            })
            .delete(|uri: Uri| async move {
                assert_eq!(uri.query(), Some("environment=production"));
                axum::http::StatusCode::OK
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(&crate::config::Target::new(&format!("http://{addr}"))).unwrap();
        let set = |environment: Option<&str>| {
            SecretCommand::Set(SetArgs {
                app: "web".into(),
                name: "db".into(),
                from_file: None,
                environment: environment.map(str::to_owned),
            })
        };
        let mut out = Vec::new();
        run(&client, set(Some("production")), &mut "pw\n".as_bytes(), &mut out)
            .await
            .unwrap();
        run(&client, set(None), &mut "pw\n".as_bytes(), &mut out)
            .await
            .unwrap();
        let delete = SecretCommand::Delete {
            app: "web".into(),
            name: "db".into(),
            environment: Some("production".into()),
        };
        run(&client, delete, &mut "".as_bytes(), &mut out).await.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "secret db of web for environment production is at version 4\n\
             secret db of web for all environments is at version 4\n\
             secret db of web for environment production deleted\n"
        );
    }

    #[test]
    fn values_come_from_files_or_stdin() {
        assert_eq!(read_value(None, &mut "s3cret\n".as_bytes()).unwrap(), "s3cret");
        assert_eq!(read_value(None, &mut "a\r\n".as_bytes()).unwrap(), "a");
        assert_eq!(
            read_value(None, &mut "two\nlines\n\n".as_bytes()).unwrap(),
            "two\nlines\n"
        );
        assert!(read_value(None, &mut "\n".as_bytes()).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pem");
        std::fs::write(&f, "-----BEGIN-----\nx\n").unwrap();
        assert_eq!(
            read_value(Some(&f), &mut "ignored".as_bytes()).unwrap(),
            "-----BEGIN-----\nx\n"
        );
    }
}
