//! Writing an OCI image to a registry blob by blob: every blob is uploaded only when the
//! target repository lacks it and no other repository of the registry is known to have
//! it (then it is mounted from there), and recorded (with whether it was uploaded) for
//! the build's status; the manifest goes last, under the build's tag. Shared by the
//! builders.

use berth_core::objects::BuildLayer;
use bytes::Bytes;
use oci_client::Reference;
use serde_json::{Value, json};

use crate::{
    layer::sha256,
    log::BuildLog,
    registry::{Registry, RegistryError},
};

/// OCI image manifest.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// OCI tar+gzip layer.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What a build pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest digest: the image's identity.
    pub digest: String,
    /// Every blob, and whether it had to be uploaded.
    pub layers: Vec<BuildLayer>,
}

/// An image being written to `target`.
pub struct ImageWriter<'a> {
    registry: &'a Registry,
    target: &'a Reference,
    log: &'a BuildLog,
    record: Vec<BuildLayer>,
    descriptors: Vec<Value>,
}

impl<'a> ImageWriter<'a> {
    /// Starts an image for `target` (a tagged reference).
    #[must_use]
    pub fn new(registry: &'a Registry, target: &'a Reference, log: &'a BuildLog) -> Self {
        Self {
            registry,
            target,
            log,
            record: Vec::new(),
            descriptors: Vec::new(),
        }
    }

    /// Adds a layer that is already in the target repository (`pushed`: whether making it
    /// available there took a copy).
    pub fn present_layer(&mut self, role: &str, digest: &str, size: u64, media_type: &str, pushed: bool) {
        self.record.push(BuildLayer {
            role: role.to_owned(),
            digest: digest.to_owned(),
            size,
            pushed,
        });
        self.descriptors
            .push(json!({"mediaType": media_type, "digest": digest, "size": size}));
    }

    /// Uploads `data` unless the repository has it; returns whether it was uploaded.
    async fn blob(&mut self, role: &str, data: &Bytes) -> Result<(String, bool), RegistryError> {
        let digest = sha256(data);
        let present = self
            .registry
            .has_blob(self.target, &digest, Some(self.log))
            .await?;
        let mut uploaded = false;
        if present {
            self.log
                .line(format!("{role}: {} already in the registry", short(&digest)));
        } else if let Some(from) = self
            .registry
            .mount_known(self.target, &digest, Some(self.log))
            .await?
        {
            self.log
                .line(format!("{role}: {} mounted from {from}", short(&digest)));
        } else {
            self.registry
                .upload(self.target, data, &digest, Some(self.log))
                .await?;
            uploaded = true;
            self.log.line(format!(
                "{role}: pushed {} ({} bytes)",
                short(&digest),
                data.len()
            ));
        }
        self.record.push(BuildLayer {
            role: role.to_owned(),
            digest: digest.clone(),
            size: data.len() as u64,
            pushed: uploaded,
        });
        Ok((digest, uploaded))
    }

    /// Adds a tar+gzip layer, uploading it when missing.
    pub async fn layer(&mut self, role: &str, data: &Bytes) -> Result<(), RegistryError> {
        let (digest, _) = self.blob(role, data).await?;
        self.descriptors
            .push(json!({"mediaType": LAYER_TYPE, "digest": digest, "size": data.len()}));
        Ok(())
    }

    /// Uploads the config (when missing) and puts the manifest under the target's tag.
    pub async fn finish(mut self, config: &Bytes) -> Result<Pushed, RegistryError> {
        let (config_digest, _) = self.blob("config", config).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
            "layers": self.descriptors,
        });
        let body = Bytes::from(manifest.to_string());
        let digest = self
            .registry
            .put_manifest(self.target, &body, MANIFEST_TYPE, Some(self.log))
            .await?;
        self.log.line(format!("manifest {digest} as {}", self.target));
        Ok(Pushed {
            digest,
            layers: self.record,
        })
    }
}

/// The first 12 hex digits of a digest, for logs.
#[must_use]
pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}
