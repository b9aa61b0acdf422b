//! The `dockerfile` builder: the repository's Dockerfile, built through the build host's
//! Docker Engine API (`POST /build`, which Podman serves too), then exported from the
//! engine and pushed to the registry by Berth itself, so that credentials, insecure
//! registries and "upload only what is missing" work as for every other builder.

use std::collections::BTreeMap;

use berth_core::objects::DockerfileBuilder;
use bollard::{Docker, query_parameters::BuildImageOptions};
use bytes::Bytes;
use futures::StreamExt;
use oci_client::Reference;
use serde::Deserialize;

use crate::{
    git::Tree,
    image::{ImageWriter, Pushed},
    layer::{Entry, gzip, tar_of},
    log::BuildLog,
    registry::{Registry, RegistryError},
};

/// Errors of the dockerfile builder.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    /// The Dockerfile is not in the commit.
    #[error("Dockerfile '{path}' is not in the repository at commit {commit}")]
    Missing {
        /// Its path.
        path: String,
        /// The commit.
        commit: String,
    },
    /// The Dockerfile is outside the build context.
    #[error("Dockerfile '{path}' is outside the build context '{context}'")]
    OutsideContext {
        /// Its path.
        path: String,
        /// The context.
        context: String,
    },
    /// A build step failed.
    #[error("the build failed: {message}")]
    Step {
        /// The engine's error.
        message: String,
    },
    /// The engine could not be used.
    #[error("the build host's Docker Engine API failed: {message}")]
    Engine {
        /// What failed.
        message: String,
    },
    /// The image the engine exported cannot be read.
    #[error("cannot read the built image: {message}")]
    Export {
        /// Why.
        message: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Result of this module.
pub type Result<T, E = DockerfileError> = std::result::Result<T, E>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    layers: Vec<String>,
}

/// Builds the Dockerfile of `tree` and pushes the image to `target` (a tagged reference).
pub async fn build(
    docker: &Docker,
    registry: &Registry,
    tree: &Tree,
    settings: &DockerfileBuilder,
    target: &Reference,
    log: &BuildLog,
) -> Result<Pushed> {
    let context = settings.context.trim_matches('/');
    let context = if context.is_empty() { "." } else { context };
    if !tree.files.contains_key(settings.path.as_str()) {
        return Err(DockerfileError::Missing {
            path: settings.path.clone(),
            commit: tree.commit.clone(),
        });
    }
    let dockerfile = if context == "." {
        settings.path.clone()
    } else {
        settings
            .path
            .strip_prefix(&format!("{context}/"))
            .map(str::to_owned)
            .ok_or_else(|| DockerfileError::OutsideContext {
                path: settings.path.clone(),
                context: context.to_owned(),
            })?
    };
    let entries: Vec<Entry> = tree
        .under(context)
        .into_iter()
        .filter(|(_, f)| !f.symlink)
        .map(|(path, f)| Entry {
            path: path.to_owned(),
            data: f.data.clone(),
            mode: if f.executable { 0o755 } else { 0o644 },
        })
        .collect();
    let tar = tar_of(&entries).map_err(|e| DockerfileError::Export {
        message: e.to_string(),
    })?;
    let local = format!(
        "localhost/berth-build/{}:{}",
        target.repository().replace('/', "-"),
        target.tag().unwrap_or("latest")
    );
    log.line(format!(
        "building {dockerfile} in context {context} ({} file(s)) as {local}",
        entries.len()
    ));
    let options = BuildImageOptions {
        dockerfile,
        t: Some(local.clone()),
        rm: true,
        forcerm: true,
        ..BuildImageOptions::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(Bytes::from(tar))));
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    log.output(&text);
                }
                if let Some(detail) = info.error_detail {
                    let message = detail.message.unwrap_or_else(|| "unknown error".to_owned());
                    log.line(format!("error: {message}"));
                    failure = Some(message);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                log.line(format!("error: {error}"));
                failure = Some(error);
            }
            Err(e) => {
                let message = crate::git::chain(&e);
                log.line(format!("error: {message}"));
                failure.get_or_insert(message);
                break;
            }
        }
    }
    if let Some(message) = failure {
        return Err(if message.contains("connect") && message.contains("socket") {
            DockerfileError::Engine { message }
        } else {
            DockerfileError::Step { message }
        });
    }
    let pushed = export_and_push(docker, registry, &local, target, log).await;
    if let Err(e) = docker
        .remove_image(
            &local,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
    {
        log.line(format!("note: could not remove the local image {local}: {e}"));
    }
    pushed
}

/// Exports `local` from the engine (docker-archive) and pushes it as an OCI image.
async fn export_and_push(
    docker: &Docker,
    registry: &Registry,
    local: &str,
    target: &Reference,
    log: &BuildLog,
) -> Result<Pushed> {
    let export = |message: String| DockerfileError::Export { message };
    let mut archive = Vec::new();
    let mut stream = docker.export_image(local);
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.map_err(|e| export(crate::git::chain(&e)))?);
    }
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut reader = tar::Archive::new(archive.as_slice());
    for entry in reader.entries().map_err(|e| export(e.to_string()))? {
        let mut entry = entry.map_err(|e| export(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| export(e.to_string()))?
            .display()
            .to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| export(e.to_string()))?;
        files.insert(path, data);
    }
    let manifests: Vec<ArchiveManifest> = files
        .get("manifest.json")
        .map(|m| serde_json::from_slice(m))
        .transpose()
        .map_err(|e| export(format!("manifest.json: {e}")))?
        .unwrap_or_default();
    let manifest = manifests
        .into_iter()
        .next()
        .ok_or_else(|| export("the archive has no manifest.json".to_owned()))?;
    let config = Bytes::from(
        files
            .get(&manifest.config)
            .cloned()
            .ok_or_else(|| export(format!("{} is missing", manifest.config)))?,
    );
    let mut image = ImageWriter::new(registry, target, log);
    for name in &manifest.layers {
        let tar = files
            .get(name)
            .ok_or_else(|| export(format!("{name} is missing")))?;
        let data = Bytes::from(gzip(tar).map_err(|e| export(e.to_string()))?);
        image.layer("layer", &data).await?;
    }
    Ok(image.finish(&config).await?)
}
