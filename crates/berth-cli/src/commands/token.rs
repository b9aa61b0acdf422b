//! `berth token create|list|revoke`: API tokens. A new token's secret is printed once,
//! on the last line, and never again: the server keeps only its hash.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::{
    client::Client,
    output::{self, Format, Table},
};
pub use berth_contract::TokenInfo;
use berth_contract::{NewToken, TokenList, TokenRequest};

/// `berth token …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token; prints its secret once.
    Create(CreateArgs),
    /// List tokens (yours; a platform administrator sees everyone's).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
        /// How to print them (never with their secrets: the server does not have them).
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Revoke a token by its id; it stops working at once.
    Revoke {
        /// The token's id (from `berth token list`).
        id: String,
    },
}

/// Arguments of `berth token create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// What the token is for, e.g. laptop or ci.
    pub name: String,
    /// The user it authenticates (platform administrators only; yourself by default).
    #[arg(long)]
    pub user: Option<String>,
    /// Days until it expires (1-3650, default 90).
    #[arg(long, value_name = "DAYS")]
    pub expires_in_days: Option<u32>,
}

/// Runs `berth token …`.
pub async fn run(
    client: &Client,
    command: TokenCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create(a) => {
            let req = TokenRequest {
                name: a.name.clone(),
                user: a.user.clone(),
                expires_in_days: a.expires_in_days,
            };
            let made: NewToken = client.post(&["tokens"], &req).await.context("making a token")?;
            let t = &made.token;
            writeln!(
                out,
                "token {} '{}' for {}{}; its secret is shown this once:",
                t.id,
                t.name,
                t.user,
                t.expires_at
                    .map(|e| format!(", expires {}", e.format("%Y-%m-%d")))
                    .unwrap_or_default()
            )?;
            writeln!(out, "{}", made.secret)?;
        }
        TokenCommand::List { user, output } => {
            let query: Vec<(&str, String)> = user.into_iter().map(|u| ("user", u)).collect();
            let list: TokenList = client.get(&["tokens"], &query).await.context("listing tokens")?;
            match output::document(output, &list)? {
                Some(text) => out.write_all(text.as_bytes())?,
                None => out.write_all(table(&list.items, Utc::now()).render().as_bytes())?,
            }
        }
        TokenCommand::Revoke { id } => {
            let t: TokenInfo = client
                .delete_json(&["tokens", &id])
                .await
                .with_context(|| format!("revoking token {id}"))?;
            writeln!(out, "token {} '{}' of {} revoked", t.id, t.name, t.user)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// ID NAME USER CREATED EXPIRES STATE.
#[must_use]
pub fn table(tokens: &[TokenInfo], now: DateTime<Utc>) -> Table {
    let mut t = Table::new(&["ID", "NAME", "USER", "CREATED", "EXPIRES", "STATE"]);
    for k in tokens {
        let state = match (k.revoked_at, k.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(e)) if e <= now => "expired",
            _ => "active",
        };
        t.row(vec![
            k.id.clone(),
            k.name.clone(),
            k.user.clone(),
            k.created_at.format("%Y-%m-%d").to_string(),
            k.expires_at
                .map_or_else(|| "never".to_owned(), |e| e.format("%Y-%m-%d").to_string()),
            state.to_owned(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_in_the_table() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let token = |id: &str, expires: Option<&str>, revoked: Option<&str>| TokenInfo {
            id: id.into(),
            name: "n".into(),
            user: "u".into(),
            created_at: at("2026-01-01T00:00:00Z"),
            expires_at: expires.map(at),
            revoked_at: revoked.map(at),
        };
        let rows = [
            token("a", Some("2027-01-01T00:00:00Z"), None),
            token("b", Some("2026-02-01T00:00:00Z"), None),
            token("c", None, Some("2026-03-01T00:00:00Z")),
        ];
        assert_eq!(
            table(&rows, at("2026-06-01T00:00:00Z")).render(),
            "ID   NAME   USER   CREATED      EXPIRES      STATE\n\
             a    n      u      2026-01-01   2027-01-01   active\n\
             b    n      u      2026-01-01   2026-02-01   expired\n\
             c    n      u      2026-01-01   never        revoked\n"
        );
    }
}
