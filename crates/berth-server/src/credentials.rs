//! Cluster credentials on the server's side: opening a cluster's sealed kubeconfig just
//! before its runtime is built, and sealing the plaintext kubeconfigs an older Berth
//! stored in Cluster documents, once, at start.
//!
//! The kubeconfig is in clear only inside the [`Cluster`] handed to the connector and
//! the runtime built from it; it never prints ([`KubeconfigText`] shows `***`), and
//! failures name the cluster and the key, never the content.

use anyhow::Context;
use berth_core::{
    NewEvent,
    audit::Change,
    objects::{
        Cluster, ClusterCredentialKind, ClusterKind, KubeconfigSource, KubeconfigText, kubeconfig_fingerprint,
    },
    ports::Store,
    repo,
};
use berth_secrets::{Keyring, cluster_credential_aad};

/// `cluster` ready for its runtime: a sealed kubeconfig replaced by the document it
/// seals. Errors say what is wrong and how to fix it, for the cluster's status.
pub async fn open(
    store: &dyn Store,
    keyring: Option<&Keyring>,
    cluster: &Cluster,
) -> Result<Cluster, String> {
    let Some(KubeconfigSource::Sealed(info)) = cluster
        .spec
        .kubernetes
        .as_ref()
        .and_then(|k| k.kubeconfig.as_ref())
    else {
        return Ok(cluster.clone());
    };
    let name = cluster.name();
    let keyring = keyring.ok_or_else(|| {
        format!("cluster {name}: the kubeconfig is sealed and no secrets keys are configured")
    })?;
    let stored = repo::get::<ClusterCredentialKind>(store, name)
        .await
        .map_err(|e| format!("cluster {name}: cannot read its sealed kubeconfig: {e}"))?
        .ok_or_else(|| {
            format!("cluster {name}: its sealed kubeconfig is missing; apply the Cluster again with kubeconfig.inline")
        })?;
    let text = keyring
        .open(
            &stored.spec.sealed,
            &cluster_credential_aad(name, stored.spec.version),
        )
        .map_err(|e| format!("cluster {name}: cannot open its sealed kubeconfig: {e}"))?;
    if kubeconfig_fingerprint(text.expose()) != stored.spec.fingerprint || stored.spec.version != info.version
    {
        return Err(format!(
            "cluster {name}: the sealed kubeconfig does not match the cluster's document (version {} stored, {} \
             expected); apply the Cluster again with kubeconfig.inline",
            stored.spec.version, info.version
        ));
    }
    let mut opened = cluster.clone();
    if let Some(k) = opened.spec.kubernetes.as_mut() {
        k.kubeconfig = Some(KubeconfigSource::Inline(KubeconfigText::new(
            text.expose().to_owned(),
        )));
    }
    Ok(opened)
}

/// Seals every inline kubeconfig still stored in clear in a Cluster document (written by
/// an older Berth), in one transaction. Returns the clusters sealed.
///
/// # Errors
///
/// When the store cannot be read or written, or the keyring cannot seal.
pub async fn migrate(store: &dyn Store, keyring: &Keyring) -> anyhow::Result<Vec<String>> {
    let clusters = repo::list_all::<ClusterKind>(store, None)
        .await
        .context("cannot list the clusters to seal their kubeconfigs")?;
    let mut writes = Vec::new();
    let mut events = Vec::new();
    let mut sealed = Vec::new();
    for mut cluster in clusters {
        let inline = cluster
            .spec
            .kubernetes
            .as_ref()
            .is_some_and(|k| matches!(k.kubeconfig, Some(KubeconfigSource::Inline(_))));
        if !inline {
            continue;
        }
        let name = cluster.name().to_owned();
        writes.extend(
            berth_api::credentials::seal(store, keyring, "berth", &mut cluster)
                .await
                .with_context(|| format!("cannot seal the kubeconfig of cluster {name}"))?,
        );
        // An older Berth quoted the kubeconfig in its parse errors; the next pass says
        // what is wrong again, without quoting it.
        cluster.status.message = None;
        writes.push(repo::replace(&cluster)?);
        events.push(NewEvent::normal(
            "KubeconfigSealed",
            "Cluster",
            &name,
            "berth",
            format!("the inline kubeconfig of cluster '{name}' was stored in clear; it is now sealed"),
        ));
        sealed.push(name);
    }
    if !writes.is_empty() {
        store
            .commit_as(&Change::new("berth", "cluster.kubeconfig.seal"), writes, events)
            .await
            .context("cannot store the sealed kubeconfigs")?;
    }
    Ok(sealed)
}
