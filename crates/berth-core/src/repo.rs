//! Typed access to the [`Store`]: documents in and out as [`Resource`]s.

use crate::{
    build::BuildKey,
    meta::{Kind, Resource},
    objects::{
        Application, ApplicationKind, Build, BuildKind, Deployment, DeploymentKind, Release, ReleaseKind,
        release_name,
    },
    ports::{GoverningQuery, ListQuery, Page, Store, StoreError, TeamQuery, Write},
    quota::{Demand, Usage},
};

/// Errors reading or writing typed objects.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored document no longer parses (a bug or a manual edit of the database).
    #[error("stored {kind} '{name}' cannot be read: {message}")]
    Corrupt {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// Why.
        message: String,
    },
}

fn decode<K: Kind>(value: serde_json::Value) -> Result<Resource<K>, RepoError> {
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned();
    serde_json::from_value(value).map_err(|e| RepoError::Corrupt {
        kind: K::KIND,
        name,
        message: e.to_string(),
    })
}

/// Reads one object.
pub async fn get<K: Kind>(store: &dyn Store, name: &str) -> Result<Option<Resource<K>>, RepoError> {
    store.get(K::KIND, name).await?.map(decode).transpose()
}

/// Reads every object of a kind (optionally the children of `owner`), page by page.
pub async fn list_all<K: Kind>(
    store: &dyn Store,
    owner: Option<&str>,
) -> Result<Vec<Resource<K>>, RepoError> {
    let mut out = Vec::new();
    let mut query = ListQuery {
        kind: K::KIND.to_owned(),
        owner: owner.map(str::to_owned),
        after: None,
        limit: 1000,
    };
    loop {
        let page = store.list(&query).await?;
        for item in page.items {
            out.push(decode(item)?);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(out),
        }
    }
}

/// Decodes every document of a page.
fn decode_all<K: Kind>(items: Vec<serde_json::Value>) -> Result<Vec<Resource<K>>, RepoError> {
    items.into_iter().map(decode).collect()
}

/// Decodes one document, when there is one.
fn decode_one<K: Kind>(item: Option<serde_json::Value>) -> Result<Option<Resource<K>>, RepoError> {
    item.map(decode).transpose()
}

/// Reads every page of a paged query, `next` turning a cursor into the next query.
async fn all_pages<K: Kind, Q>(
    mut query: Q,
    mut read: impl AsyncFnMut(&Q) -> Result<Page, StoreError>,
    set_after: impl Fn(&mut Q, u64),
) -> Result<Vec<Resource<K>>, RepoError> {
    let mut out = Vec::new();
    loop {
        let page = read(&query).await?;
        out.extend(decode_all::<K>(page.items)?);
        match page.next {
            Some(next) => set_after(&mut query, next),
            None => return Ok(out),
        }
    }
}

/// The deployment that governs `application` in `environment`
/// ([`Store::governing_deployment`]).
pub async fn governing(
    store: &dyn Store,
    application: &str,
    environment: &str,
) -> Result<Option<Deployment>, RepoError> {
    decode_one(store.governing_deployment(application, environment).await?)
}

/// The newest deployment of `application` in `environment` that succeeded
/// ([`Store::last_succeeded_deployment`]).
pub async fn last_succeeded(
    store: &dyn Store,
    application: &str,
    environment: &str,
) -> Result<Option<Deployment>, RepoError> {
    decode_one(store.last_succeeded_deployment(application, environment).await?)
}

/// Every governing deployment (of `application`, when given), page by page
/// ([`Store::governing_deployments`]).
pub async fn governing_all(
    store: &dyn Store,
    application: Option<&str>,
) -> Result<Vec<Deployment>, RepoError> {
    let query = GoverningQuery {
        application: application.map(str::to_owned),
        after: None,
        limit: 1000,
    };
    all_pages::<DeploymentKind, _>(
        query,
        async |q| store.governing_deployments(q).await,
        |q, next| q.after = Some(next),
    )
    .await
}

/// Release `number` of `application`.
pub async fn release(
    store: &dyn Store,
    application: &str,
    number: u64,
) -> Result<Option<Release>, RepoError> {
    get::<ReleaseKind>(store, &release_name(application, number)).await
}

/// The newest release of `application` ([`Store::newest_release`]).
pub async fn newest_release(store: &dyn Store, application: &str) -> Result<Option<Release>, RepoError> {
    decode_one(store.newest_release(application).await?)
}

/// The newest release of `application` a build made ([`Store::newest_built_release`]).
pub async fn newest_built_release(
    store: &dyn Store,
    application: &str,
) -> Result<Option<Release>, RepoError> {
    decode_one(store.newest_built_release(application).await?)
}

/// Releases of `application` pinned to `digest`, newest first ([`Store::releases_with_digest`]).
pub async fn releases_with_digest(
    store: &dyn Store,
    application: &str,
    digest: &str,
) -> Result<Vec<Release>, RepoError> {
    decode_all(store.releases_with_digest(application, digest).await?)
}

/// Releases of `application` with template hash `hash`, newest first
/// ([`Store::releases_with_template`]).
pub async fn releases_with_template(
    store: &dyn Store,
    application: &str,
    hash: &str,
) -> Result<Vec<Release>, RepoError> {
    decode_all(store.releases_with_template(application, hash).await?)
}

/// Deployments of `application` that deployed one of `releases`
/// ([`Store::deployments_of_releases`]).
pub async fn deployments_of_releases(
    store: &dyn Store,
    application: &str,
    releases: &[u64],
) -> Result<Vec<Deployment>, RepoError> {
    decode_all(store.deployments_of_releases(application, releases).await?)
}

/// The build of `application` that stands for `key` ([`Store::reusable_build`]).
pub async fn reusable_build(
    store: &dyn Store,
    application: &str,
    key: &BuildKey,
) -> Result<Option<Build>, RepoError> {
    decode_one(
        store
            .reusable_build(application, &key.revision, &key.builder_hash)
            .await?,
    )
}

/// Every build not finished yet, page by page ([`Store::unfinished_builds`]).
pub async fn unfinished_builds(store: &dyn Store) -> Result<Vec<Build>, RepoError> {
    all_pages::<BuildKind, Option<u64>>(
        None,
        async |after| store.unfinished_builds(*after, 1000).await,
        |after, next| *after = Some(next),
    )
    .await
}

/// Every application of `team`, page by page ([`Store::team_applications`]).
pub async fn team_applications(store: &dyn Store, team: &str) -> Result<Vec<Application>, RepoError> {
    let query = TeamQuery {
        team: team.to_owned(),
        after: None,
        limit: 1000,
    };
    all_pages::<ApplicationKind, _>(
        query,
        async |q| store.team_applications(q).await,
        |q, next| q.after = Some(next),
    )
    .await
}

/// What the applications of `team` other than `except` use in `environment`, which has
/// `clusters` clusters: the demand of the release each governing deployment runs there
/// ([`Store::team_releases_in`], one query).
pub async fn team_usage(
    store: &dyn Store,
    team: &str,
    environment: &str,
    clusters: usize,
    except: &str,
) -> Result<Usage, RepoError> {
    let mut usage = Usage::default();
    for release in decode_all::<ReleaseKind>(store.team_releases_in(team, environment).await?)? {
        if release.spec.application != except {
            usage.add(&Demand::of(&release.spec.template, environment, clusters));
        }
    }
    Ok(usage)
}

/// A write that creates `object`.
pub fn create<K: Kind>(object: &Resource<K>) -> Result<Write, RepoError> {
    Ok(Write::Create {
        kind: K::KIND.to_owned(),
        name: object.metadata.name.clone(),
        owner: K::owner(&object.spec).map(str::to_owned),
        document: encode(object)?,
    })
}

/// A write that replaces `object`, only if it is still at the version it was read at.
pub fn replace<K: Kind>(object: &Resource<K>) -> Result<Write, RepoError> {
    Ok(Write::Replace {
        kind: K::KIND.to_owned(),
        name: object.metadata.name.clone(),
        expected_version: object.version(),
        document: encode(object)?,
    })
}

/// A write that deletes `object`, only if it is still at the version it was read at.
#[must_use]
pub fn delete<K: Kind>(object: &Resource<K>) -> Write {
    Write::Delete {
        kind: K::KIND.to_owned(),
        name: object.metadata.name.clone(),
        expected_version: object.version(),
    }
}

fn encode<K: Kind>(object: &Resource<K>) -> Result<serde_json::Value, RepoError> {
    serde_json::to_value(object).map_err(|e| RepoError::Corrupt {
        kind: K::KIND,
        name: object.metadata.name.clone(),
        message: e.to_string(),
    })
}

/// Decodes a document returned by a commit.
pub fn decode_committed<K: Kind>(value: Option<serde_json::Value>) -> Result<Resource<K>, RepoError> {
    decode(value.unwrap_or_default())
}
