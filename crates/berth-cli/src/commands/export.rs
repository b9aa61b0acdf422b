//! `berth export --all DIR` and `berth get … --export`: documents without what Berth owns
//! (`status`, `resourceVersion`, timestamps), which `apply` reproduces exactly on the same
//! or a new server. Secret values are never in them: applications name their secrets,
//! clusters show a sealed kubeconfig only by its fingerprint.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;
use serde_json::Value;

use super::get::{self, GetArgs};
use crate::{client::Client, kind::KindName, output};

/// The kinds that are documents people write, in the order `apply` applies them.
pub const DOCUMENT_KINDS: [KindName; 6] = [
    KindName::User,
    KindName::Team,
    KindName::Cluster,
    KindName::Environment,
    KindName::Application,
    KindName::Source,
];

/// Arguments of `berth export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Export every user, team, cluster, environment, application and source.
    #[arg(long, required = true)]
    pub all: bool,
    /// The directory to write to, one `KIND-NAME.yaml` per object; made if missing, and
    /// it must be empty (a file left from an earlier export would be applied again).
    pub dir: PathBuf,
}

/// `document` without the fields Berth owns.
#[must_use]
pub fn exported(mut document: Value) -> Value {
    if let Some(map) = document.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = document.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "creationTimestamp", "updateTimestamp"] {
            meta.remove(field);
        }
    }
    document
}

/// Every document of `kind` on the server, exported.
pub async fn documents(client: &Client, kind: KindName, name: Option<String>) -> anyhow::Result<Vec<Value>> {
    anyhow::ensure!(
        DOCUMENT_KINDS.contains(&kind),
        "{kind} objects are made by Berth, not applied, so they are not exported; export users, teams, \
         clusters, environments, applications or sources"
    );
    let args = GetArgs {
        kind,
        name,
        output: output::Format::Yaml,
        app: None,
        environment: None,
        export: false,
        watch: Default::default(),
    };
    Ok(get::fetch(client, &args)
        .await?
        .values()?
        .into_iter()
        .map(exported)
        .collect())
}

/// Runs `berth export --all DIR`.
pub async fn run(
    client: &Client,
    args: ExportArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    anyhow::ensure!(
        entries.next().is_none(),
        "{} is not empty; export into a new or empty directory (a file left from an earlier export would be \
         applied again)",
        dir.display()
    );
    let mut written = 0;
    for kind in DOCUMENT_KINDS {
        for document in documents(client, kind, None).await? {
            let name = document
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .context("the server sent a document without metadata.name")?;
            let path = dir.join(format!("{}-{name}.yaml", kind.kind().to_lowercase()));
            std::fs::write(&path, output::yaml_documents(&[&document])?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written += 1;
        }
    }
    writeln!(out, "exported {written} object(s) to {}", dir.display())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn what_berth_owns_is_not_exported() {
        let stored = json!({
            "apiVersion": "berth.dev/v1", "kind": "Application",
            "metadata": {"name": "web", "labels": {"tier": "web"}, "resourceVersion": "7",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "updateTimestamp": "2026-01-02T00:00:00Z"},
            "spec": {"image": "x", "secrets": [{"name": "db", "env": "DB"}]},
            "status": {"phase": "Ready"}
        });
        assert_eq!(
            exported(stored),
            json!({
                "apiVersion": "berth.dev/v1", "kind": "Application",
                "metadata": {"name": "web", "labels": {"tier": "web"}},
                "spec": {"image": "x", "secrets": [{"name": "db", "env": "DB"}]}
            })
        );
    }
}
