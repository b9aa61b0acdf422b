//! The envelope every Berth object shares: `apiVersion`, `kind`, `metadata`, `spec`, `status`.

use std::{borrow::Cow, collections::BTreeMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        RefOr, Type,
        schema::{Object, Ref, Schema},
    },
};

use crate::{
    error::{Errors, FieldError, Invalid},
    name,
};

/// The API group and version of every object in this release of Berth.
pub const API_VERSION: &str = "berth.dev/v1";

/// Metadata common to all objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name, unique per kind: a DNS-1123 label.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length = 1, max_length = 253)]
    pub name: String,
    /// Free-form labels, e.g. `tier: web`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Version of this object in the store; send it back to update only that version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// When the object was created (set by Berth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// When the object last changed (set by Berth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_timestamp: Option<DateTime<Utc>>,
}

/// A kind of object: its names, and the typed spec and status it carries.
pub trait Kind: Sized + Send + Sync + 'static {
    /// `kind` as written in documents, e.g. `Application`.
    const KIND: &'static str;
    /// Path segment of the collection in the API, e.g. `applications`.
    const PLURAL: &'static str;
    /// Longest name allowed: a DNS-1123 label for objects users name, longer for
    /// objects Berth names after their parents.
    const MAX_NAME: usize = name::MAX_LABEL;
    /// The desired state, written by users.
    type Spec: Serialize + DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Send + Sync + ToSchema;
    /// The observed state, written by Berth.
    type Status: Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Default
        + PartialEq
        + Send
        + Sync
        + ToSchema;

    /// Checks the spec; paths in errors start at `spec`.
    fn validate_spec(spec: &Self::Spec, errors: &mut Errors);

    /// The object that owns this one (an application for releases and deployments), used
    /// to list children without scanning every object.
    fn owner(_spec: &Self::Spec) -> Option<&str> {
        None
    }
}

/// A whole object of kind `K`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "")]
pub struct Resource<K: Kind> {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `K::KIND`.
    pub kind: String,
    /// Name, labels and bookkeeping.
    pub metadata: ObjectMeta,
    /// Desired state.
    pub spec: K::Spec,
    /// Observed state (ignored when written by a client).
    #[serde(default)]
    pub status: K::Status,
}

impl<K: Kind> Resource<K> {
    /// A fresh object with an empty status.
    #[must_use]
    pub fn new(name: impl Into<String>, spec: K::Spec) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: K::KIND.to_owned(),
            metadata: ObjectMeta {
                name: name.into(),
                ..ObjectMeta::default()
            },
            spec,
            status: K::Status::default(),
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The stored version as a number, when it has one.
    pub fn version(&self) -> Option<u64> {
        self.metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
    }

    /// Checks the envelope and the spec together, reporting every problem.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut errors = Errors::default();
        if self.api_version != API_VERSION {
            errors.push(
                FieldError::new("apiVersion", format!("'{}' is not supported", self.api_version))
                    .hint(format!("use apiVersion: {API_VERSION}")),
            );
        }
        if self.kind != K::KIND {
            errors.push(
                FieldError::new(
                    "kind",
                    format!("'{}' was sent where {} was expected", self.kind, K::KIND),
                )
                .hint(format!("use kind: {}", K::KIND)),
            );
        }
        errors.check(name::check_name(
            "metadata.name",
            &self.metadata.name,
            K::MAX_NAME,
        ));
        for key in self.metadata.labels.keys() {
            if key.is_empty() || key.len() > 63 {
                errors.push(FieldError::new(
                    format!("metadata.labels.{key}"),
                    "label keys are 1-63 characters",
                ));
            }
        }
        if let Some(rv) = &self.metadata.resource_version
            && rv.parse::<u64>().is_err()
        {
            errors.push(
                FieldError::new(
                    "metadata.resourceVersion",
                    format!("'{rv}' is not a resource version"),
                )
                .hint("send back the resourceVersion Berth returned, or leave it out"),
            );
        }
        K::validate_spec(&self.spec, &mut errors);
        errors.finish(K::KIND)
    }

    /// Parses a JSON document, naming the field path of any error. Every unknown field
    /// is reported at once (not one per attempt), each with its path, together with the
    /// first other error, if any.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Invalid> {
        let mut value = std::borrow::Cow::Borrowed(value);
        let mut errors = Vec::new();
        // Each round finds one unknown field, removes it and parses again, so that the very
        // rules serde applies decide what is unknown; bounded so that a pathological
        // document costs a bounded number of parses.
        for _ in 0..MAX_UNKNOWN_FIELDS {
            let error = match serde_path_to_error::deserialize::<_, Self>(value.as_ref()) {
                Ok(object) if errors.is_empty() => return Ok(object),
                Ok(_) => break,
                Err(e) => e,
            };
            let path = error.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = error.inner().to_string();
            let removed = unknown_field(&message)
                .and_then(|field| remove_field(value.to_mut(), &path, field).then_some(field));
            match removed {
                Some(field) => {
                    let at = if path.is_empty() {
                        field.to_owned()
                    } else if path.ends_with(field) {
                        path.clone()
                    } else {
                        format!("{path}.{field}")
                    };
                    errors.push(FieldError::new(at, message).hint("remove the field or correct its name"));
                }
                None => {
                    errors.push(FieldError::new(path, message));
                    break;
                }
            }
        }
        Err(Invalid {
            kind: K::KIND,
            errors,
        })
    }
}

/// Most unknown fields one document's error names; more are left for the next attempt.
const MAX_UNKNOWN_FIELDS: usize = 64;

/// The field serde's `deny_unknown_fields` names in `message` (``unknown field `x`, …``).
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// Removes `field` from the object at `path` (serde_path_to_error's spelling:
/// `spec.env[0].name`, or the path of the field itself); whether it was there.
fn remove_field(value: &mut serde_json::Value, path: &str, field: &str) -> bool {
    let mut segments: Vec<String> = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            segments.push(rest[..open].to_owned());
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                segments.push(rest[..=close].to_owned());
                rest = &rest[close + 1..];
            }
        } else {
            segments.push(rest.to_owned());
        }
    }
    if segments.last().is_some_and(|last| last == field) {
        segments.pop();
    }
    let mut at = value;
    for segment in &segments {
        let next = match segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(index) => index.parse::<usize>().ok().and_then(|i| at.get_mut(i)),
            None => at.get_mut(segment.as_str()),
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    at.as_object_mut().is_some_and(|map| map.remove(field).is_some())
}

// The envelope is generic over the kind, so its OpenAPI schema is written by hand: one
// named schema per kind (`Application`, `Cluster`…) referring to the kind's spec and status.
impl<K: Kind> utoipa::PartialSchema for Resource<K> {
    fn schema() -> RefOr<Schema> {
        let string = || Object::builder().schema_type(Type::String);
        Object::builder()
            .description(Some(format!("A {} document.", K::KIND)))
            .property("apiVersion", string().enum_values(Some([API_VERSION])))
            .property("kind", string().enum_values(Some([K::KIND])))
            .property("metadata", Ref::from_schema_name(ObjectMeta::name()))
            .property("spec", Ref::from_schema_name(K::Spec::name()))
            .property("status", Ref::from_schema_name(K::Status::name()))
            .required("apiVersion")
            .required("kind")
            .required("metadata")
            .required("spec")
            .into()
    }
}

impl<K: Kind> ToSchema for Resource<K> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(K::KIND)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ObjectMeta::name().into_owned(), ObjectMeta::schema()));
        schemas.push((K::Spec::name().into_owned(), K::Spec::schema()));
        schemas.push((K::Status::name().into_owned(), K::Status::schema()));
        ObjectMeta::schemas(schemas);
        K::Spec::schemas(schemas);
        K::Status::schemas(schemas);
    }
}

/// Whether a value equals its type's default; for `skip_serializing_if`.
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
