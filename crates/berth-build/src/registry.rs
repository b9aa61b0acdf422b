//! The OCI registry as builds use it: read a base image, check and upload blobs (each at
//! most once), mount blobs across repositories, put manifests, resolve tags.
//!
//! Credentials are per registry host; registries speak HTTPS unless marked insecure.
//! Operations that fail for reasons a retry can fix (connection refused or reset, time
//! outs, 5xx answers) are retried with exponential backoff.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use base64::Engine;
use bytes::Bytes;
use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol},
    errors::{OciDistributionError, OciErrorCode},
    manifest::OciImageManifest,
    secrets::RegistryAuth,
};
use serde::Deserialize;

use crate::{git::chain, layer::sha256, log::BuildLog};

/// Errors talking to a registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The reference is not one.
    #[error("'{reference}' is not an image reference: {message}")]
    BadReference {
        /// What was given.
        reference: String,
        /// Why.
        message: String,
    },
    /// The registry refused the credentials (or asked for some).
    #[error("registry {registry} refused access: {message} (check the credentials Berth has for {registry})")]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// What it said.
        message: String,
    },
    /// No such image or tag.
    #[error("{image} was not found in its registry")]
    NotFound {
        /// The reference.
        image: String,
    },
    /// The registry could not be reached, even after retries.
    #[error("registry {registry} is unreachable after {attempts} attempts: {message}")]
    Unreachable {
        /// Registry host.
        registry: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The registry answered with an error.
    #[error("registry {registry} failed: {message}")]
    Failed {
        /// Registry host.
        registry: String,
        /// What it said.
        message: String,
    },
    /// A credentials file cannot be read.
    #[error("registry credentials: {0}")]
    Credentials(String),
}

/// Result of this module.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A user name and password (or token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// Credentials per registry host (`host[:port]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials(BTreeMap<String, Credential>);

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// Adds the credential of `registry`.
    pub fn insert(&mut self, registry: &str, username: &str, password: &str) {
        self.0.insert(
            registry.to_owned(),
            Credential {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
    }

    /// Reads a Docker-style `config.json`: `{"auths": {"host": {"auth": base64(user:pass)}}}`
    /// (or `username` and `password`).
    pub fn from_docker_config(json: &str) -> Result<Self> {
        let config: DockerConfig = serde_json::from_str(json)
            .map_err(|e| RegistryError::Credentials(format!("not a Docker config.json: {e}")))?;
        let mut out = Self::default();
        for (host, auth) in config.auths {
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            let (user, pass) = match (auth.auth, auth.username, auth.password) {
                (Some(encoded), _, _) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            RegistryError::Credentials(format!(
                                "the auth of {host} is not base64 of user:password"
                            ))
                        })?;
                    let (u, p) = decoded.split_once(':').ok_or_else(|| {
                        RegistryError::Credentials(format!("the auth of {host} is not user:password"))
                    })?;
                    (u.to_owned(), p.to_owned())
                }
                (None, Some(u), Some(p)) => (u, p),
                _ => {
                    return Err(RegistryError::Credentials(format!(
                        "{host} has neither auth nor username and password"
                    )));
                }
            };
            out.insert(&host, &user, &pass);
        }
        Ok(out)
    }

    fn auth(&self, registry: &str) -> RegistryAuth {
        self.0.get(registry).map_or(RegistryAuth::Anonymous, |c| {
            RegistryAuth::Basic(c.username.clone(), c.password.clone())
        })
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubles each time.
    pub first_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_wait: Duration::from_millis(250),
        }
    }
}

/// Settings of a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries reached over plain HTTP (`host:port`).
    pub insecure: Vec<String>,
    /// Credentials per registry.
    pub credentials: Credentials,
    /// Retries of transient failures.
    pub retry: Retry,
}

/// A client of any number of registries.
pub struct Registry {
    client: Client,
    options: RegistryOptions,
    /// Where blobs are known to be: (registry, digest) → a repository that has it. A blob
    /// another repository of the same registry has is mounted (OCI distribution
    /// `POST …/blobs/uploads/?mount=&from=`), not uploaded again.
    locations: Mutex<HashMap<(String, String), String>>,
}

/// A manifest as pulled: parsed, with its digest and its config blob.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest.
    pub manifest: OciImageManifest,
    /// Its digest.
    pub digest: String,
    /// The config blob (JSON).
    pub config: String,
}

impl Registry {
    /// A client with `options`.
    #[must_use]
    pub fn new(options: RegistryOptions) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure.clone()),
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(60)),
            use_monolithic_push: true,
            ..ClientConfig::default()
        });
        Self {
            client,
            options,
            locations: Mutex::default(),
        }
    }

    /// Records that the repository of `image` has blob `digest`.
    pub fn remember(&self, image: &Reference, digest: &str) {
        self.locations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (image.resolve_registry().to_owned(), digest.to_owned()),
                image.repository().to_owned(),
            );
    }

    /// Another repository of `target`'s registry known to have `digest`.
    fn known_elsewhere(&self, target: &Reference, digest: &str) -> Option<Reference> {
        let registry = target.resolve_registry().to_owned();
        let repository = self
            .locations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(registry.clone(), digest.to_owned()))
            .filter(|r| r.as_str() != target.repository())
            .cloned()?;
        Some(Reference::with_tag(registry, repository, "latest".to_owned()))
    }

    /// Mounts blob `digest` into the repository of `target` from another repository of
    /// the same registry known to have it; returns the repository it came from, or `None`
    /// when none is known or the registry would not mount it (then upload it).
    pub async fn mount_known(
        &self,
        target: &Reference,
        digest: &str,
        log: Option<&BuildLog>,
    ) -> Result<Option<String>> {
        let Some(source) = self.known_elsewhere(target, digest) else {
            return Ok(None);
        };
        self.authorize(target).await;
        if self.client.mount_blob(target, &source, digest).await.is_ok()
            && self.has_blob(target, digest, log).await?
        {
            return Ok(Some(source.repository().to_owned()));
        }
        Ok(None)
    }

    /// Parses an image reference.
    pub fn reference(image: &str) -> Result<Reference> {
        image
            .parse()
            .map_err(|e: oci_client::ParseError| RegistryError::BadReference {
                reference: image.to_owned(),
                message: e.to_string(),
            })
    }

    async fn authorize(&self, image: &Reference) {
        let registry = image.resolve_registry();
        self.client
            .store_auth_if_needed(registry, &self.options.credentials.auth(registry))
            .await;
    }

    /// Runs `op` until it succeeds, fails for good, or runs out of attempts.
    async fn retry<T, F, Fut>(
        &self,
        image: &Reference,
        what: &str,
        log: Option<&BuildLog>,
        op: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        self.authorize(image).await;
        let attempts = self.options.retry.attempts.max(1);
        let mut wait = self.options.retry.first_wait;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && attempt < attempts => {
                    if let Some(log) = log {
                        log.line(format!(
                            "{what}: {} (attempt {attempt} of {attempts}; retrying in {} ms)",
                            chain(&e),
                            wait.as_millis()
                        ));
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(classify(image, &e, attempt)),
            }
        }
    }

    /// The manifest and config of `image`.
    pub async fn pull(&self, image: &Reference, log: Option<&BuildLog>) -> Result<Pulled> {
        let auth = self.options.credentials.auth(image.resolve_registry());
        let (manifest, digest, config) = self
            .retry(image, &format!("reading {image}"), log, || {
                self.client.pull_manifest_and_config(image, &auth)
            })
            .await?;
        for layer in &manifest.layers {
            self.remember(image, &layer.digest);
        }
        Ok(Pulled {
            manifest,
            digest,
            config,
        })
    }

    /// The digest `image` points to now.
    pub async fn resolve(&self, image: &Reference, log: Option<&BuildLog>) -> Result<String> {
        let auth = self.options.credentials.auth(image.resolve_registry());
        self.retry(image, &format!("resolving {image}"), log, || {
            self.client.fetch_manifest_digest(image, &auth)
        })
        .await
    }

    /// Whether the repository of `image` has blob `digest`.
    pub async fn has_blob(&self, image: &Reference, digest: &str, log: Option<&BuildLog>) -> Result<bool> {
        let present = self
            .retry(image, &format!("checking {digest}"), log, || {
                self.client.blob_exists(image, digest)
            })
            .await?;
        if present {
            self.remember(image, digest);
        }
        Ok(present)
    }

    /// Uploads `data` as blob `digest` to the repository of `image`.
    pub async fn upload(
        &self,
        image: &Reference,
        data: &Bytes,
        digest: &str,
        log: Option<&BuildLog>,
    ) -> Result<()> {
        self.retry(image, &format!("uploading {digest}"), log, || {
            self.client.push_blob(image, data.clone(), digest)
        })
        .await?;
        self.remember(image, digest);
        Ok(())
    }

    /// Makes blob `digest` of `source` available in the repository of `target`: it is
    /// there already, or is mounted across repositories of one registry (no data moves),
    /// or is downloaded and uploaded; returns whether it had to be uploaded.
    pub async fn copy_blob(
        &self,
        source: &Reference,
        target: &Reference,
        digest: &str,
        log: Option<&BuildLog>,
    ) -> Result<bool> {
        if self.has_blob(target, digest, log).await? {
            return Ok(false);
        }
        if source.resolve_registry() == target.resolve_registry()
            && self.client.mount_blob(target, source, digest).await.is_ok()
            && self.has_blob(target, digest, log).await?
        {
            return Ok(false);
        }
        if self.mount_known(target, digest, log).await?.is_some() {
            return Ok(false);
        }
        let data = self
            .retry(source, &format!("downloading {digest}"), log, || async move {
                let mut data = Vec::new();
                self.client
                    .pull_blob(source, digest, &mut data)
                    .await
                    .map(|()| data)
            })
            .await?;
        let data = Bytes::from(data);
        if sha256(&data) != digest {
            return Err(RegistryError::Failed {
                registry: source.resolve_registry().to_owned(),
                message: format!("blob {digest} arrived with another digest"),
            });
        }
        self.upload(target, &data, digest, log).await?;
        Ok(true)
    }

    /// Puts a manifest under `image`'s tag; returns its digest.
    pub async fn put_manifest(
        &self,
        image: &Reference,
        body: &Bytes,
        media_type: &str,
        log: Option<&BuildLog>,
    ) -> Result<String> {
        let content_type = reqwest_header(media_type);
        self.retry(image, &format!("putting the manifest of {image}"), log, || {
            self.client
                .push_manifest_raw(image, body.clone(), content_type.clone())
        })
        .await?;
        Ok(sha256(body))
    }
}

fn reqwest_header(media_type: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(media_type)
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("application/json"))
}

/// Whether a retry can help.
fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect() || r.is_timeout() || r.is_request() || r.is_body()
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

fn classify(image: &Reference, e: &OciDistributionError, attempts: u32) -> RegistryError {
    let registry = image.resolve_registry().to_owned();
    let message = chain(e);
    let not_found = || RegistryError::NotFound {
        image: image.to_string(),
    };
    match e {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            RegistryError::Unauthorized { registry, message }
        }
        OciDistributionError::ServerError { code: 401 | 403, .. } => {
            RegistryError::Unauthorized { registry, message }
        }
        OciDistributionError::RequestError(r) if r.status().is_some_and(|s| s == 401 || s == 403) => {
            RegistryError::Unauthorized { registry, message }
        }
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError { code: 404, .. } => not_found(),
        OciDistributionError::RegistryError { envelope, .. } => {
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown))
            {
                not_found()
            } else if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                RegistryError::Unauthorized { registry, message }
            } else {
                RegistryError::Failed { registry, message }
            }
        }
        e if transient(e) => RegistryError::Unreachable {
            registry,
            attempts,
            message,
        },
        _ => RegistryError::Failed { registry, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials() {
        let json = r#"{"auths": {"https://reg.example.com": {"auth": "dXNlcjpwYTpzcw=="},
                                 "127.0.0.1:5000": {"username": "u", "password": "p"}}}"#;
        let c = Credentials::from_docker_config(json).unwrap();
        assert_eq!(
            c.auth("reg.example.com"),
            RegistryAuth::Basic("user".into(), "pa:ss".into())
        );
        assert_eq!(
            c.auth("127.0.0.1:5000"),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(c.auth("other"), RegistryAuth::Anonymous);
        assert!(Credentials::from_docker_config(r#"{"auths": {"x": {"auth": "!!"}}}"#).is_err());
        assert!(Credentials::from_docker_config("nope").is_err());
    }
}
