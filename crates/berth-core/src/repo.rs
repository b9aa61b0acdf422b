//! Typed access to the [`Store`]: documents in and out as [`Resource`]s.

use crate::{
    meta::{Kind, Resource},
    ports::{ListQuery, Store, StoreError, Write},
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
