//! Resolves image tags to digests through the OCI distribution API.
//!
//! Berth never runs an image by tag: when a release is made, the tag the user named is
//! looked up in its registry (`HEAD /v2/<repo>/manifests/<tag>`) and the release pins
//! the digest the registry answers with. Registries speak HTTPS unless they are listed
//! as insecure (a local registry on loopback, typically).

use std::time::Duration;

use async_trait::async_trait;
use berth_core::{
    image::ImageRef,
    ports::{ImageResolver, ResolveError},
};
use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    secrets::RegistryAuth,
};

/// An [`ImageResolver`] backed by the registry named in each reference.
pub struct RegistryResolver {
    client: Client,
}

impl RegistryResolver {
    /// A resolver that uses plain HTTP only for the `insecure` registries
    /// (`host:port` as written in image references).
    #[must_use]
    pub fn new(insecure: Vec<String>) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure),
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(15)),
            ..ClientConfig::default()
        });
        Self { client }
    }
}

#[async_trait]
impl ImageResolver for RegistryResolver {
    async fn resolve(&self, image: &ImageRef) -> Result<String, ResolveError> {
        let text = image.to_string();
        let reference: Reference = text.parse().map_err(|e| ResolveError::Registry {
            image: text.clone(),
            message: format!("{e}"),
        })?;
        match self
            .client
            .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
            .await
        {
            Ok(digest) => Ok(digest),
            Err(e) if is_not_found(&e) => Err(ResolveError::NotFound { image: text }),
            Err(e) => Err(ResolveError::Registry {
                image: text,
                message: describe(&e),
            }),
        }
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// The error with its causes, since reqwest hides the useful part (connection refused,
/// certificate problems) in its source chain.
fn describe(e: &OciDistributionError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> RegistryResolver {
        RegistryResolver::new(vec!["127.0.0.1:5000".to_owned()])
    }

    /// Needs the local registry from `scripts/setup-runtime.sh up` (CI starts it).
    #[tokio::test]
    async fn resolves_a_tag_in_the_local_registry() {
        let image = ImageRef::parse("127.0.0.1:5000/busybox:latest").unwrap();
        let digest = resolver().resolve(&image).await.unwrap();
        berth_core::image::check_digest(&digest).unwrap();
        // Resolving the digest itself gives the same digest.
        let again = resolver().resolve(&image.pinned(&digest)).await.unwrap();
        assert_eq!(again, digest);
    }

    #[tokio::test]
    async fn a_missing_tag_is_not_found() {
        let image = ImageRef::parse("127.0.0.1:5000/busybox:no-such-tag").unwrap();
        let err = resolver().resolve(&image).await.unwrap_err();
        assert!(matches!(err, ResolveError::NotFound { .. }), "{err:?}");
        let image = ImageRef::parse("127.0.0.1:5000/no/such-repo:1").unwrap();
        assert!(matches!(
            resolver().resolve(&image).await.unwrap_err(),
            ResolveError::NotFound { .. }
        ));
    }

    #[tokio::test]
    async fn an_unreachable_registry_says_so() {
        let image = ImageRef::parse("127.0.0.1:1/web:1").unwrap();
        let err = RegistryResolver::new(vec!["127.0.0.1:1".into()])
            .resolve(&image)
            .await
            .unwrap_err();
        let ResolveError::Registry { message, .. } = err else {
            panic!("{err:?}")
        };
        assert!(message.to_lowercase().contains("connect"), "{message}");
    }
}
