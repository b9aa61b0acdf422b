//! Cluster credentials: a Kubernetes cluster's inline kubeconfig is sealed when the
//! Cluster is written, kept in a [`ClusterCredential`] object that no endpoint serves,
//! and re-sealed with the other secrets when the keys rotate.
//!
//! The Cluster document keeps only `SealedKubeconfig`: fingerprint, key id and
//! version. A document sent back with `sealed` (an exported one) keeps the stored
//! kubeconfig; one with `inline` replaces it (the same document again changes nothing);
//! one with `path`, `inCluster` or `runtime: local` drops it.

use berth_core::{
    FieldError, Invalid, Kind,
    objects::{
        Cluster, ClusterCredential, ClusterCredentialKind, ClusterCredentialSpec, ClusterKind,
        KubeconfigSource, kubeconfig_fingerprint,
    },
    ports::{Store, Write},
    repo,
};
use berth_secrets::{Keyring, cluster_credential_aad};

use crate::error::{ApiError, Result};

/// Turns the kubeconfig of `cluster` (as a client sent it) into what is stored: an inline
/// document is sealed into the cluster's credential and replaced by its
/// `SealedKubeconfig`. Returns the credential writes to commit with the cluster.
///
/// # Errors
///
/// 422 when the document asks to keep a sealed kubeconfig that does not exist; the
/// keyring's errors.
pub async fn seal(
    store: &dyn Store,
    keyring: &Keyring,
    actor: &str,
    cluster: &mut Cluster,
) -> Result<Vec<Write>> {
    let stored = repo::get::<ClusterCredentialKind>(store, cluster.name()).await?;
    let source = cluster.spec.kubernetes.as_mut().and_then(|k| k.kubeconfig.take());
    let (source, writes) = match source {
        Some(KubeconfigSource::Inline(text)) => {
            let fingerprint = kubeconfig_fingerprint(text.expose());
            match stored {
                Some(s) if s.spec.fingerprint == fingerprint => {
                    (KubeconfigSource::Sealed(s.spec.info()), Vec::new())
                }
                previous => {
                    let version = previous.as_ref().map_or(1, |s| s.spec.version + 1);
                    let spec = ClusterCredentialSpec {
                        cluster: cluster.name().to_owned(),
                        version,
                        fingerprint,
                        updated_by: actor.to_owned(),
                        sealed: keyring
                            .seal(text.expose(), &cluster_credential_aad(cluster.name(), version))?,
                    };
                    let info = KubeconfigSource::Sealed(spec.info());
                    let write = match previous {
                        Some(mut p) => {
                            p.spec = spec;
                            repo::replace(&p)?
                        }
                        None => repo::create(&ClusterCredential::new(cluster.name(), spec))?,
                    };
                    (info, vec![write])
                }
            }
        }
        Some(KubeconfigSource::Sealed(_)) => match stored {
            Some(s) => (KubeconfigSource::Sealed(s.spec.info()), Vec::new()),
            None => {
                return Err(ApiError::Invalid(Invalid {
                    kind: ClusterKind::KIND,
                    errors: vec![
                        FieldError::new(
                            "spec.kubernetes.kubeconfig.sealed",
                            format!("no kubeconfig is stored for cluster {}", cluster.name()),
                        )
                        .hint("give the kubeconfig once as kubeconfig: {inline: <document>}; Berth seals it"),
                    ],
                }));
            }
        },
        other => {
            // A path, inCluster or a local runtime: the sealed kubeconfig is no longer used.
            if let (Some(k), Some(other)) = (cluster.spec.kubernetes.as_mut(), other) {
                k.kubeconfig = Some(other);
            }
            return Ok(stored.iter().map(repo::delete).collect());
        }
    };
    if let Some(k) = cluster.spec.kubernetes.as_mut() {
        k.kubeconfig = Some(source);
    }
    Ok(writes)
}

/// The writes that delete the credential of cluster `name`, if it has one.
pub async fn forget(store: &dyn Store, name: &str) -> Result<Vec<Write>> {
    Ok(repo::get::<ClusterCredentialKind>(store, name)
        .await?
        .iter()
        .map(repo::delete)
        .collect())
}

/// What re-sealing the cluster credentials takes.
pub struct Reseal {
    /// The credentials sealed again, each with its cluster (whose document shows the key).
    pub writes: Vec<Write>,
    /// Credentials sealed again.
    pub resealed: u64,
    /// Credentials in all.
    pub total: u64,
}

/// The writes that seal every cluster credential under an older key with the active one.
pub async fn reseal(store: &dyn Store, keyring: &Keyring) -> Result<Reseal> {
    let credentials = repo::list_all::<ClusterCredentialKind>(store, None).await?;
    let mut writes = Vec::new();
    let mut resealed = 0;
    for c in credentials
        .iter()
        .filter(|c| keyring.needs_reseal(&c.spec.sealed))
    {
        resealed += 1;
        let aad = cluster_credential_aad(&c.spec.cluster, c.spec.version);
        let text = keyring.open(&c.spec.sealed, &aad)?;
        let mut next = c.clone();
        next.spec.sealed = keyring.seal(text.expose(), &aad)?;
        writes.push(repo::replace(&next)?);
        if let Some(mut cluster) = repo::get::<ClusterKind>(store, &c.spec.cluster).await?
            && let Some(k) = cluster.spec.kubernetes.as_mut()
            && matches!(k.kubeconfig, Some(KubeconfigSource::Sealed(_)))
        {
            k.kubeconfig = Some(KubeconfigSource::Sealed(next.spec.info()));
            writes.push(repo::replace(&cluster)?);
        }
    }
    Ok(Reseal {
        writes,
        resealed,
        total: credentials.len() as u64,
    })
}
