//! Resolves image tags to digests through the OCI distribution API.
//!
//! Berth never runs an image by tag: when a release is made, the tag the user named is
//! looked up in its registry (`HEAD /v2/<repo>/manifests/<tag>`) and the release pins
//! the digest the registry answers with. Registries speak HTTPS unless they are listed
//! as insecure (a local registry on loopback, typically).
//!
//! The lookup is one `HEAD` request. Only when the registry asks for credentials (401) or
//! does not say the digest does the resolver go through `oci-client`, which negotiates a
//! token and reads the manifest itself. (`oci-client` alone first asks `GET /v2/` before
//! every lookup, even of a registry that needs no token: twice the requests.)

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
    manifest::{
        IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
        OCI_IMAGE_MEDIA_TYPE,
    },
    secrets::RegistryAuth,
};
use reqwest::{StatusCode, header};

/// The manifest types a lookup accepts, as `oci-client` does: an image or an index, in
/// the Docker and the OCI formats.
const MANIFEST_TYPES: [&str; 4] = [
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
];

/// An [`ImageResolver`] backed by the registry named in each reference.
pub struct RegistryResolver {
    client: Client,
    /// `None` when no HTTP client could be built (no TLS backend): every lookup then goes
    /// through oci-client, which answers with that error.
    http: Option<reqwest::Client>,
    insecure: Vec<String>,
}

impl RegistryResolver {
    /// A resolver that uses plain HTTP only for the `insecure` registries
    /// (`host:port` as written in image references).
    #[must_use]
    pub fn new(insecure: Vec<String>) -> Self {
        let (connect, read) = (Duration::from_secs(5), Duration::from_secs(15));
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            connect_timeout: Some(connect),
            read_timeout: Some(read),
            ..ClientConfig::default()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .read_timeout(read)
            .build()
            .ok();
        Self {
            client,
            http,
            insecure,
        }
    }

    /// `HEAD` of the manifest: the digest, "not found", or `None` when the registry wants
    /// more than one anonymous request (a token, or a read of the manifest).
    async fn head(&self, reference: &Reference, text: &str) -> Result<Option<String>, ResolveError> {
        let Some(http) = &self.http else {
            return Ok(None);
        };
        let registry = reference.resolve_registry();
        let scheme = if self.insecure.iter().any(|r| r == registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{}",
            reference.repository(),
            reference
                .digest()
                .unwrap_or_else(|| reference.tag().unwrap_or("latest")),
        );
        let response = http
            .head(&url)
            .header(header::ACCEPT, MANIFEST_TYPES.join(", "))
            .send()
            .await
            .map_err(|e| ResolveError::Registry {
                image: text.to_owned(),
                message: describe(&e),
            })?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(ResolveError::NotFound {
                image: text.to_owned(),
            }),
            status if status.is_success() => {
                let digest = response
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .filter(|d| !d.is_empty());
                match (digest, reference.digest()) {
                    // The registry answers for a digest with another one: let oci-client
                    // read the manifest and say what is wrong.
                    (Some(found), Some(asked)) if found != asked => Ok(None),
                    (Some(found), _) => Ok(Some(found.to_owned())),
                    (None, _) => Ok(None),
                }
            }
            _ => Ok(None),
        }
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
        if let Some(digest) = self.head(&reference, &text).await? {
            return Ok(digest);
        }
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
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
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

    /// A registry on loopback that counts the requests it gets, answers `HEAD` of
    /// `web:1`'s manifest with a digest, and (with `token`) wants that bearer token the way
    /// Docker Hub does: a 401 naming the token service, which hands it out.
    async fn counting_registry(token: bool) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::{
            Router,
            http::{HeaderMap, StatusCode},
            response::IntoResponse,
        };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let log = seen.clone();
        let app = Router::new().fallback(
            move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
                let (log, realm) = (log.clone(), realm.clone());
                async move {
                    log.lock().unwrap().push(format!("{method} {}", uri.path()));
                    let authorized = headers.get("authorization").is_some_and(|v| v == "Bearer t0k3n");
                    match uri.path() {
                        "/token" => {
                            ([("content-type", "application/json")], r#"{"token":"t0k3n"}"#).into_response()
                        }
                        _ if token && !authorized => (
                            StatusCode::UNAUTHORIZED,
                            [(
                                "www-authenticate",
                                format!(
                                    r#"Bearer realm="{realm}",service="test",scope="repository:web:pull""#
                                ),
                            )],
                        )
                            .into_response(),
                        "/v2/" => StatusCode::OK.into_response(),
                        "/v2/web/manifests/1" => (
                            [("docker-content-digest", format!("sha256:{}", "ab".repeat(32)))],
                            "",
                        )
                            .into_response(),
                        _ => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, seen)
    }

    #[tokio::test]
    async fn a_registry_without_tokens_is_asked_once_per_lookup() {
        let (addr, seen) = counting_registry(false).await;
        let resolver = RegistryResolver::new(vec![addr.clone()]);
        let image = ImageRef::parse(&format!("{addr}/web:1")).unwrap();
        for _ in 0..3 {
            assert_eq!(
                resolver.resolve(&image).await.unwrap(),
                format!("sha256:{}", "ab".repeat(32))
            );
        }
        assert_eq!(*seen.lock().unwrap(), vec!["HEAD /v2/web/manifests/1"; 3]);
    }

    #[tokio::test]
    async fn a_registry_that_wants_a_token_gets_one() {
        let (addr, seen) = counting_registry(true).await;
        let resolver = RegistryResolver::new(vec![addr.clone()]);
        let image = ImageRef::parse(&format!("{addr}/web:1")).unwrap();
        assert_eq!(
            resolver.resolve(&image).await.unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
        let seen = seen.lock().unwrap();
        assert!(seen.contains(&"GET /token".to_owned()), "{seen:?}");
        assert_eq!(
            seen.last().map(String::as_str),
            Some("HEAD /v2/web/manifests/1"),
            "{seen:?}"
        );
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
