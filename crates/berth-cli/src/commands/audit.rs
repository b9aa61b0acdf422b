//! `berth audit [filters]` lists the audit log; `berth audit verify` checks its signed
//! chain, its checkpoints and the stored objects against it, exits non-zero naming every
//! break, and prints a checkpoint to keep and give back later (`--checkpoint`).

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::{
    client::Client,
    output::{self, Format, Table},
};
use berth_contract::AuditList;
pub use berth_core::audit::AuditEntry;
use berth_core::audit::Verification;

/// Arguments of `berth audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Check the log's hash chain instead of listing it.
    #[command(subcommand)]
    pub verify: Option<AuditVerb>,
    /// Only changes by this user (`berth` for the platform itself).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only changes to objects of this kind, e.g. Application, Team, Token, Secret.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only changes to objects of this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only changes made for this action, e.g. deploy, secret.set, token.revoke.
    #[arg(long)]
    pub action: Option<String>,
    /// Only changes at or after this time (RFC 3339, e.g. 2026-11-26T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<DateTime<Utc>>,
    /// Only changes before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<DateTime<Utc>>,
    /// At most this many entries, newest last.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// How to print it: a table, or the entries (for `verify`, the verification) as JSON
    /// or YAML; `verify -o json` still exits 1 when the log was tampered with.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
}

/// What else `berth audit` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditVerb {
    /// Check that no entry or stored object was changed outside Berth; exits 1 naming
    /// every break, else prints a checkpoint to keep elsewhere.
    Verify {
        /// A checkpoint an earlier `berth audit verify` printed (`seq:hash:mac`): the log
        /// must still hold that entry unchanged.
        #[arg(long)]
        checkpoint: Option<String>,
    },
}

/// Runs `berth audit`.
pub async fn run(client: &Client, args: AuditArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    if let Some(AuditVerb::Verify { checkpoint }) = &args.verify {
        let query: Vec<(&str, String)> = checkpoint.iter().map(|c| ("checkpoint", c.clone())).collect();
        let v: Verification = client
            .get(&["audit", "verify"], &query)
            .await
            .context("verifying the audit log")?;
        if let Some(text) = output::document(args.output, &v)? {
            out.write_all(text.as_bytes())?;
            return Ok(if v.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if v.ok {
            writeln!(
                out,
                "audit log intact: {} entries, {} stored objects match it",
                v.entries, v.objects
            )?;
            if let Some(c) = v.checkpoint {
                writeln!(out, "checkpoint {}:{}:{}", c.seq, c.hash, c.mac)?;
                writeln!(
                    out,
                    "keep it away from the server; `berth audit verify --checkpoint <it>` later proves the log still holds it"
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(out, "audit log TAMPERED ({} entries read):", v.entries)?;
        for m in &v.messages {
            writeln!(out, "  {m}")?;
        }
        if v.omitted > 0 {
            writeln!(out, "  … and {} more", v.omitted)?;
        }
        return Ok(ExitCode::FAILURE);
    }
    let mut query: Vec<(&str, String)> = Vec::new();
    for (key, value) in [
        ("actor", &args.actor),
        ("kind", &args.kind),
        ("name", &args.name),
        ("action", &args.action),
    ] {
        if let Some(v) = value {
            query.push((key, v.clone()));
        }
    }
    for (key, value) in [("since", args.since), ("until", args.until)] {
        if let Some(t) = value {
            query.push((key, t.to_rfc3339()));
        }
    }
    let mut entries: Vec<AuditEntry> = Vec::new();
    loop {
        let mut q = query.clone();
        q.push(("after", entries.last().map_or(0, |e| e.seq).to_string()));
        q.push(("limit", "1000".to_owned()));
        let page: AuditList = client
            .get(&["audit"], &q)
            .await
            .context("reading the audit log")?;
        if page.items.is_empty() {
            break;
        }
        entries.extend(page.items);
    }
    let skip = entries.len().saturating_sub(args.limit);
    let shown = &entries[skip..];
    match output::document(
        args.output,
        &AuditList {
            items: shown.to_vec(),
        },
    )? {
        Some(text) => out.write_all(text.as_bytes())?,
        None => out.write_all(table(shown).render().as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// SEQ TIME ACTOR ACTION OPERATION OBJECT.
#[must_use]
pub fn table(entries: &[AuditEntry]) -> Table {
    let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "OPERATION", "OBJECT"]);
    for e in entries {
        t.row(vec![
            e.seq.to_string(),
            e.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            e.actor.clone(),
            e.action.clone(),
            e.operation.as_str().to_owned(),
            format!("{}/{}", e.kind, e.name),
        ]);
    }
    t
}
