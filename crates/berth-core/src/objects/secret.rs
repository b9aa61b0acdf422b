//! Secrets: named values of an application, stored only encrypted ([`SecretSpec`] holds
//! the ciphertext), never returned by a read ([`SecretInfo`] is what the API shows), and
//! delivered to replicas as environment variables or files ([`SecretRef`]).
//!
//! A secret has a value for all environments and/or values for single environments. A
//! replica in environment E gets E's own value when there is one, else the value for all
//! environments ([`secret_candidates`]); a value for one environment is never delivered
//! anywhere else. Secrets stored before per-environment values existed are values for
//! all environments.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
};

/// The Secret kind: how a secret is stored. Not served by the object endpoints.
#[derive(Debug, Clone, Copy)]
pub struct SecretKind;

/// A stored secret value. Its name is `<application>.<secret>` for the value of all
/// environments, `<application>.<secret>.<environment>` for one environment's (see
/// [`secret_object_name_in`]).
pub type Secret = Resource<SecretKind>;

/// A secret value sealed with an AEAD: which key, the nonce and the ciphertext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sealed {
    /// Identifies the key that sealed it, so that keys can be rotated.
    pub key_id: String,
    /// The nonce, base64.
    pub nonce: String,
    /// Ciphertext and tag, base64.
    pub ciphertext: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// How a secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// The application it belongs to.
    pub application: String,
    /// The secret's name within the application.
    pub name: String,
    /// The one environment this value is for; every environment without a value of its
    /// own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Counts from 1; every new value is a new version. Versions count over all values of
    /// the secret (every environment), so the version a replica gets changes whenever the
    /// value it gets does.
    pub version: u64,
    /// Who set the current value.
    pub updated_by: String,
    /// The value, encrypted.
    pub sealed: Sealed,
}

/// Observed state of a secret (none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretStatus {}

impl Kind for SecretKind {
    const KIND: &'static str = "Secret";
    const PLURAL: &'static str = "secrets";
    const MAX_NAME: usize = 191;
    type Spec = SecretSpec;
    type Status = SecretStatus;

    fn validate_spec(spec: &SecretSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.application", &spec.application));
        errors.check(name::check_label("spec.name", &spec.name));
        if let Some(env) = &spec.environment {
            errors.check(name::check_label("spec.environment", env));
        }
    }

    fn owner(spec: &SecretSpec) -> Option<&str> {
        Some(&spec.application)
    }
}

/// The store name of the all-environments value of secret `secret` of `application`.
/// Labels hold no dots, so the name is unambiguous.
#[must_use]
pub fn secret_object_name(application: &str, secret: &str) -> String {
    format!("{application}.{secret}")
}

/// The store name of the value of secret `secret` of `application` for `environment`
/// (`None`: all environments).
#[must_use]
pub fn secret_object_name_in(application: &str, secret: &str, environment: Option<&str>) -> String {
    match environment {
        Some(env) => format!("{application}.{secret}.{env}"),
        None => secret_object_name(application, secret),
    }
}

/// The stored values that may be delivered as `secret` to replicas in `environment`,
/// the one that wins first: the environment's own value, then the all-environments one.
#[must_use]
pub fn secret_candidates(application: &str, secret: &str, environment: &str) -> [String; 2] {
    [
        secret_object_name_in(application, secret, Some(environment)),
        secret_object_name(application, secret),
    ]
}

/// What the API tells about a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    /// The secret's name.
    pub name: String,
    /// The one environment this value is for; all environments without their own value
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The current version.
    pub version: u64,
    /// Who set it.
    pub updated_by: String,
    /// When it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The key that encrypts it.
    pub key_id: String,
}

impl From<&Secret> for SecretInfo {
    fn from(s: &Secret) -> Self {
        Self {
            name: s.spec.name.clone(),
            environment: s.spec.environment.clone(),
            version: s.spec.version,
            updated_by: s.spec.updated_by.clone(),
            updated_at: s.metadata.update_timestamp,
            key_id: s.spec.sealed.key_id.clone(),
        }
    }
}

/// Where an application wants one of its secrets: exactly one of `env` and `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The secret's name (`berth secret set <app> <name>`).
    pub name: String,
    /// Deliver it as this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Deliver it as a file at this absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Checks the secret references of an application spec whose fields live under `base`.
pub fn validate_secret_refs(refs: &[SecretRef], base: &str, errors: &mut Errors) {
    let mut targets = BTreeSet::new();
    for (i, r) in refs.iter().enumerate() {
        let at = format!("{base}.secrets[{i}]");
        errors.check(name::check_label(&format!("{at}.name"), &r.name));
        match (&r.env, &r.path) {
            (Some(var), None) => {
                if let Some(reason) = super::application::reserved_env_reason(var) {
                    errors.push(
                        FieldError::new(format!("{at}.env"), format!("'{var}' is reserved: {reason}"))
                            .hint("deliver the secret under another variable name"),
                    );
                } else if !is_variable_name(var) {
                    errors.push(
                        FieldError::new(
                            format!("{at}.env"),
                            format!("'{var}' is not a valid variable name"),
                        )
                        .hint("use letters, digits and '_', not starting with a digit"),
                    );
                }
            }
            (None, Some(path)) => {
                if !path.starts_with('/') || path.ends_with('/') || path.split('/').any(|p| p == "..") {
                    errors.push(
                        FieldError::new(
                            format!("{at}.path"),
                            format!("'{path}' is not an absolute file path"),
                        )
                        .hint("use a path like /run/secrets/db-password, without '..'"),
                    );
                }
            }
            _ => errors.push(
                FieldError::new(at.clone(), "give exactly one of env and path")
                    .hint("env: DB_PASSWORD delivers an environment variable, path: /run/secrets/db a file"),
            ),
        }
        let target = r.env.clone().or_else(|| r.path.clone()).unwrap_or_default();
        if !target.is_empty() && !targets.insert(target.clone()) {
            errors.push(FieldError::new(
                at,
                format!("'{target}' is the target of two secrets"),
            ));
        }
    }
}

fn is_variable_name(key: &str) -> bool {
    key.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A secret value in memory. It prints as `***` and is never serialized by accident:
/// the plaintext is only reachable through [`SecretValue::expose`].
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a plaintext.
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The plaintext, for the one place that delivers it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        // Overwrite the plaintext before the allocator reuses the memory. Writing zeros
        // keeps the String valid UTF-8.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(json: serde_json::Value) -> Vec<String> {
        let refs: Vec<SecretRef> = serde_json::from_value(json).unwrap();
        let mut errors = Errors::default();
        validate_secret_refs(&refs, "spec", &mut errors);
        errors
            .finish("Application")
            .err()
            .map(|e| e.errors.into_iter().map(|e| e.path).collect())
            .unwrap_or_default()
    }

    #[test]
    fn references_need_one_target() {
        assert!(
            refs(serde_json::json!([{"name": "db", "env": "DB"}, {"name": "tls", "path": "/run/tls.pem"}]))
                .is_empty()
        );
        assert_eq!(
            refs(serde_json::json!([
                {"name": "db"},
                {"name": "x", "env": "A", "path": "/a"},
                {"name": "Bad", "env": "1X"},
                {"name": "f", "path": "rel/x"},
                {"name": "d1", "env": "DUP"},
                {"name": "d2", "env": "DUP"}
            ])),
            [
                "spec.secrets[0]",
                "spec.secrets[1]",
                "spec.secrets[2].name",
                "spec.secrets[2].env",
                "spec.secrets[3].path",
                "spec.secrets[5]"
            ]
        );
    }

    #[test]
    fn an_environment_value_wins_and_stays_in_its_environment() {
        assert_eq!(
            secret_candidates("web", "db", "production"),
            ["web.db.production", "web.db"]
        );
        assert_eq!(
            secret_object_name_in("web", "db", None),
            secret_object_name("web", "db")
        );
        // Labels have no dots: no value of one environment is another's candidate.
        assert!(!secret_candidates("web", "db", "qa").contains(&"web.db.production".to_owned()));
    }

    #[test]
    fn values_never_print() {
        let v = SecretValue::new("hunter2".into());
        assert_eq!(format!("{v:?}"), "***");
        assert_eq!(v.expose(), "hunter2");
        let sealed = Sealed {
            key_id: "k1".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        };
        assert!(!format!("{sealed:?}").contains("ciphertext"));
    }
}
