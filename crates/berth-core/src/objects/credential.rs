//! Cluster credentials: a Kubernetes cluster's kubeconfig is accepted once, in clear, and
//! then kept only sealed.
//!
//! ```text
//!  apply Cluster {kubeconfig: {inline: "<document>"}}        write-only: KubeconfigText
//!        │  checked (line/column errors that never quote it), fingerprinted, sealed
//!        ▼
//!  Cluster {kubeconfig: {sealed: {fingerprint, keyId, version}}}   what is stored and shown
//!  ClusterCredential {cluster, version, fingerprint, sealed}      the ciphertext, never served
//! ```
//!
//! The Cluster document never holds the secret, not even its ciphertext, so every path
//! that reads, lists, audits, exports or logs clusters is safe without redacting anything.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{
    error::{Errors, FieldError},
    meta::{Kind, Resource},
    name,
    objects::Sealed,
};

/// A kubeconfig document in clear, as a client sends it (`kubeconfig.inline`).
///
/// It is write-only: it prints as `***`, and serializing it fails, so it can reach
/// neither a log line nor the store nor an answer; it is sealed first.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct KubeconfigText(String);

impl KubeconfigText {
    /// Wraps a document.
    #[must_use]
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The document, for the places that check, seal or connect with it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for KubeconfigText {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl From<&str> for KubeconfigText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl std::fmt::Debug for KubeconfigText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for KubeconfigText {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "an inline kubeconfig is write-only: it is sealed before it is stored or shown",
        ))
    }
}

impl Drop for KubeconfigText {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// What a Cluster document says about the kubeconfig Berth keeps sealed for it: that
/// one is set, which, and under which key. Never the kubeconfig.
///
/// Written by Berth. A document sent with `sealed` (e.g. an exported one, or `sealed: {}`)
/// keeps the kubeconfig stored; its fields are ignored and filled in again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SealedKubeconfig {
    /// `sha256:<hex>` of the kubeconfig document, to compare with a copy
    /// (`sha256sum kubeconfig`).
    #[serde(default)]
    pub fingerprint: String,
    /// The key that seals it.
    #[serde(default)]
    pub key_id: String,
    /// Counts from 1; every new kubeconfig is a new version.
    #[serde(default)]
    pub version: u64,
}

/// The fingerprint of a kubeconfig document: `sha256:` and the hex digest.
#[must_use]
pub fn kubeconfig_fingerprint(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The ClusterCredential kind: a cluster's kubeconfig, sealed. Not served by any endpoint.
#[derive(Debug, Clone, Copy)]
pub struct ClusterCredentialKind;

/// A stored cluster credential, named after its cluster.
pub type ClusterCredential = Resource<ClusterCredentialKind>;

/// A sealed kubeconfig and what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterCredentialSpec {
    /// The cluster it belongs to.
    pub cluster: String,
    /// Counts from 1; every new kubeconfig is a new version.
    pub version: u64,
    /// [`kubeconfig_fingerprint`] of the document.
    pub fingerprint: String,
    /// Who set it.
    pub updated_by: String,
    /// The document, encrypted.
    pub sealed: Sealed,
}

impl ClusterCredentialSpec {
    /// What the cluster's document shows of it.
    #[must_use]
    pub fn info(&self) -> SealedKubeconfig {
        SealedKubeconfig {
            fingerprint: self.fingerprint.clone(),
            key_id: self.sealed.key_id.clone(),
            version: self.version,
        }
    }
}

/// Observed state of a credential (none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterCredentialStatus {}

impl Kind for ClusterCredentialKind {
    const KIND: &'static str = "ClusterCredential";
    const PLURAL: &'static str = "clustercredentials";
    type Spec = ClusterCredentialSpec;
    type Status = ClusterCredentialStatus;

    fn validate_spec(spec: &ClusterCredentialSpec, errors: &mut Errors) {
        errors.check(name::check_label("spec.cluster", &spec.cluster));
    }
}

/// The parts of a kubeconfig Berth checks before it seals one: enough to say that it is a
/// kubeconfig and that its contexts name clusters and users it defines.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KubeconfigShape {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(rename = "cluster")]
    _cluster: ClusterEntry,
}

#[derive(Deserialize)]
struct ClusterEntry {
    #[serde(rename = "server")]
    _server: String,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextEntry,
}

#[derive(Deserialize)]
struct ContextEntry {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
}

/// What a YAML error says, without any of the document's text: its line and column and
/// the kind of problem. (The parser's own message quotes the offending lines, and serde's
/// can hold the value it refused; a kubeconfig's lines are credentials. Its `Debug`
/// quotes them too.)
#[must_use]
pub fn describe_yaml_error(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    // The snippet wrapper holds the document's text: look only at what it wraps.
    let what = match e.without_snippet() {
        E::Eof { .. } => "the document ends too early".to_owned(),
        E::SerdeMissingField { field, .. } => format!("field '{field}' is missing"),
        E::SerdeInvalidType { expected, .. } => format!("wrong type of value (expected {expected})"),
        E::SerdeInvalidValue { expected, .. } => format!("invalid value (expected {expected})"),
        E::SerdeInvalidLength { .. } => "a list or map of the wrong length".to_owned(),
        E::SerdeUnknownField { .. } => "a field that does not belong there".to_owned(),
        E::MultipleDocuments { .. } => "more than one document".to_owned(),
        E::Unexpected { expected, .. } => match *expected {
            "sequence start" => "expected a list here".to_owned(),
            "mapping start" => "expected a map here".to_owned(),
            other => format!("expected {other} here"),
        },
        _ => "not valid YAML (e.g. bad indentation, an unclosed quote or a tab)".to_owned(),
    };
    match e.location().filter(|l| l.line() > 0) {
        Some(l) => format!("line {}, column {}: {what}", l.line(), l.column()),
        None => what,
    }
}

/// Checks an inline kubeconfig at `path` (`spec.kubernetes.kubeconfig.inline`) and the
/// context asked for, reporting problems by line, column and field, never by content.
pub fn check_kubeconfig(text: &str, context: Option<&str>, path: &str, errors: &mut Errors) {
    const HINT: &str =
        "paste the whole kubeconfig document, e.g. the output of `kubectl config view --raw --minify`";
    let docs: Vec<KubeconfigShape> = match serde_saphyr::from_multiple(text) {
        Ok(docs) => docs,
        Err(e) => {
            errors.push(
                FieldError::new(
                    path,
                    format!("is not a valid kubeconfig: {}", describe_yaml_error(&e)),
                )
                .hint(HINT),
            );
            return;
        }
    };
    let clusters: Vec<&str> = docs
        .iter()
        .flat_map(|d| d.clusters.iter().map(|c| c.name.as_str()))
        .collect();
    if clusters.is_empty() {
        errors.push(FieldError::new(path, "does not look like a kubeconfig (it has no clusters)").hint(HINT));
        return;
    }
    let users: Vec<&str> = docs
        .iter()
        .flat_map(|d| d.users.iter().map(|u| u.name.as_str()))
        .collect();
    let contexts: Vec<&NamedContext> = docs.iter().flat_map(|d| d.contexts.iter()).collect();
    for (i, c) in contexts.iter().enumerate() {
        if !clusters.contains(&c.context.cluster.as_str()) {
            errors.push(FieldError::new(
                path,
                format!(
                    "contexts[{i}] (context '{}') names a cluster the kubeconfig does not define",
                    c.name
                ),
            ));
        }
        if let Some(user) = &c.context.user
            && !users.contains(&user.as_str())
        {
            errors.push(FieldError::new(
                path,
                format!(
                    "contexts[{i}] (context '{}') names a user the kubeconfig does not define",
                    c.name
                ),
            ));
        }
    }
    let current = docs.iter().find_map(|d| d.current_context.as_deref());
    match context.or(current) {
        Some(wanted) if !contexts.iter().any(|c| c.name == wanted) => {
            let names: Vec<&str> = contexts.iter().map(|c| c.name.as_str()).collect();
            errors.push(
                FieldError::new(
                    if context.is_some() {
                        "spec.kubernetes.context".to_owned()
                    } else {
                        format!("{path} (current-context)")
                    },
                    format!(
                        "the kubeconfig has no context '{wanted}' (it has: {})",
                        names.join(", ")
                    ),
                )
                .hint("name one of its contexts in spec.kubernetes.context"),
            );
        }
        None => errors.push(
            FieldError::new(
                path,
                "has no current-context and spec.kubernetes.context is not set",
            )
            .hint("name one of its contexts in spec.kubernetes.context"),
        ),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "s3cr3t-marker-7f1c";

    fn problems(text: &str, context: Option<&str>) -> Vec<String> {
        let mut errors = Errors::default();
        check_kubeconfig(text, context, "spec.kubernetes.kubeconfig.inline", &mut errors);
        errors
            .finish("Cluster")
            .err()
            .map(|e| e.errors.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    fn kubeconfig(token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://k:6443\n\
             contexts:\n- name: prod\n  context:\n    cluster: c\n    user: u\ncurrent-context: prod\n\
             users:\n- name: u\n  user:\n    token: {token}\n"
        )
    }

    #[test]
    fn a_good_kubeconfig_passes() {
        assert_eq!(problems(&kubeconfig(MARKER), None), Vec::<String>::new());
        assert_eq!(problems(&kubeconfig(MARKER), Some("prod")), Vec::<String>::new());
    }

    /// Every way a kubeconfig can be wrong is reported by line or field, and no report
    /// quotes the document (the marker stands for its credentials).
    #[test]
    fn problems_name_the_line_or_field_and_never_quote_the_document() {
        let good = kubeconfig(MARKER);
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            // A syntax error on the token's line: an unclosed quote.
            (
                good.replace(&format!("token: {MARKER}"), &format!("token: \"{MARKER}")),
                None,
                "line ",
            ),
            // A tab in the indentation of the token's line.
            (
                good.replace(&format!("    token: {MARKER}"), &format!("\ttoken: {MARKER}")),
                None,
                "line ",
            ),
            // A secret where a list belongs.
            (
                format!("clusters: {MARKER}\n"),
                None,
                "line 1, column 11: expected a list here",
            ),
            // A field missing.
            (
                good.replace("    server: https://k:6443\n", &format!("    x: {MARKER}\n")),
                None,
                "'server' is missing",
            ),
            (
                format!("apiVersion: v1\nusers:\n- name: u\n  user: {{token: {MARKER}}}\n"),
                None,
                "has no clusters",
            ),
            (
                good.clone(),
                Some("staging"),
                "no context 'staging' (it has: prod)",
            ),
            (
                good.replace("    cluster: c\n", "    cluster: other\n"),
                None,
                "contexts[0] (context 'prod') names a cluster",
            ),
            (
                good.replace("current-context: prod\n", ""),
                None,
                "no current-context",
            ),
        ];
        for (text, context, expected) in cases {
            let found = problems(&text, context);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "expected '{expected}' in {found:?}"
            );
            assert!(!found.iter().any(|p| p.contains(MARKER)), "quoted: {found:?}");
        }
    }

    #[test]
    fn inline_text_never_prints_nor_serializes() {
        let text = KubeconfigText::new(kubeconfig(MARKER));
        assert_eq!(format!("{text:?}"), "***");
        assert!(serde_json::to_value(&text).is_err());
        let back: KubeconfigText = serde_json::from_value(serde_json::json!("doc")).unwrap();
        assert_eq!(back.expose(), "doc");
        assert!(kubeconfig_fingerprint("doc").starts_with("sha256:"));
        assert_eq!(kubeconfig_fingerprint("doc").len(), 7 + 64);
    }
}
