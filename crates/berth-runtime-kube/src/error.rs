//! Errors of the Kubernetes runtime, each saying what is wrong, where and how to fix it.

use berth_core::ports::RuntimeError;

/// What went wrong talking to one cluster.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The kubeconfig cannot be read or parsed.
    #[error("cluster {cluster}: the kubeconfig is invalid: {reason}; fix spec.kubernetes.kubeconfig")]
    InvalidKubeconfig {
        /// The cluster.
        cluster: String,
        /// What the parser said.
        reason: String,
    },
    /// The context named does not exist in the kubeconfig.
    #[error(
        "cluster {cluster}: the kubeconfig has no context '{context}' (it has: {available}); fix spec.kubernetes.context"
    )]
    UnknownContext {
        /// The cluster.
        cluster: String,
        /// The context asked for.
        context: String,
        /// The contexts there are.
        available: String,
    },
    /// The in-cluster service account is not available.
    #[error(
        "cluster {cluster}: no in-cluster service account: {reason}; Berth must run in a pod for inCluster: true"
    )]
    InCluster {
        /// The cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
    /// The API server cannot be reached (connection refused, DNS, TLS, timeout).
    #[error("cluster {cluster}: the API server cannot be reached: {reason}")]
    Unreachable {
        /// The cluster.
        cluster: String,
        /// What failed.
        reason: String,
    },
    /// The credentials were refused (401).
    #[error(
        "cluster {cluster}: the API server refused the credentials (401 Unauthorized): the token or certificate in the kubeconfig is wrong or expired; renew it"
    )]
    Unauthorized {
        /// The cluster.
        cluster: String,
    },
    /// Berth's identity may not do something (403).
    #[error(
        "cluster {cluster}: forbidden (403): {message}; grant Berth's user the RBAC rights to manage its namespaces"
    )]
    Forbidden {
        /// The cluster.
        cluster: String,
        /// What the API server said.
        message: String,
    },
    /// The API server is overloaded or failing (429, 5xx) even after retries.
    #[error("cluster {cluster}: the API server keeps failing ({code}): {message}")]
    Overloaded {
        /// The cluster.
        cluster: String,
        /// HTTP status.
        code: u16,
        /// What it said.
        message: String,
    },
    /// The API server is up but not ready (`/readyz`).
    #[error("cluster {cluster}: the API server is not ready: {message}")]
    NotReady {
        /// The cluster.
        cluster: String,
        /// What `/readyz` said.
        message: String,
    },
    /// Any other answer.
    #[error("cluster {cluster}: {message}")]
    Api {
        /// The cluster.
        cluster: String,
        /// What failed.
        message: String,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for RuntimeError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unreachable { .. } | Error::Overloaded { .. } | Error::NotReady { .. } => {
                RuntimeError::Unreachable {
                    message: e.to_string(),
                }
            }
            _ => RuntimeError::Failed {
                message: e.to_string(),
            },
        }
    }
}

impl Error {
    /// Classifies a kube client error for `cluster`.
    #[must_use]
    pub fn from_kube(cluster: &str, e: &kube::Error) -> Self {
        let cluster = cluster.to_owned();
        match e {
            kube::Error::Api(status) => match status.code {
                401 => Self::Unauthorized { cluster },
                403 => Self::Forbidden {
                    cluster,
                    message: status.message.clone(),
                },
                429 | 500..=599 => Self::Overloaded {
                    cluster,
                    code: status.code,
                    message: status.message.clone(),
                },
                _ => Self::Api {
                    cluster,
                    message: format!("{} ({})", status.message, status.code),
                },
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => {
                Self::Unreachable {
                    cluster,
                    reason: chain(e),
                }
            }
            other => Self::Api {
                cluster,
                message: chain(other),
            },
        }
    }

    /// Whether the whole cluster is affected (as opposed to one object).
    #[must_use]
    pub fn is_cluster_wide(&self) -> bool {
        !matches!(self, Self::Api { .. } | Self::Forbidden { .. })
    }
}

/// What is wrong with a kubeconfig, without quoting it: the parser's own message shows
/// the offending lines and the loaders' can hold decoded bytes, and a kubeconfig's lines
/// are credentials. Says where (line, column, or the field) instead.
#[must_use]
pub fn describe_kubeconfig_error(e: &kube::config::KubeconfigError) -> String {
    use kube::config::{KubeconfigError as K, LoadDataError as L};
    let data = |field: &str, e: &L| match e {
        L::DecodeBase64(_) => format!("{field}-data is not valid base64"),
        L::ReadFile(source, path) => format!("cannot read {field} file {}: {source}", path.display()),
        L::NoBase64DataOrFile => format!("{field} has neither data nor a file"),
    };
    match e {
        K::Parse(e) => format!(
            "not a valid kubeconfig: {}",
            berth_core::objects::describe_yaml_error(e)
        ),
        K::ReadConfig(source, path) => format!("cannot read {}: {source}", path.display()),
        K::CurrentContextNotSet => "it has no current-context; set spec.kubernetes.context".to_owned(),
        K::LoadContext(name) => format!("it has no context '{name}'"),
        K::LoadClusterOfContext(name) => {
            format!("the context names cluster '{name}', which it does not define")
        }
        K::MissingClusterUrl => "the selected cluster has no server (clusters[].cluster.server)".to_owned(),
        K::ParseClusterUrl(_) => {
            "the selected cluster's server is not a valid URL (clusters[].cluster.server)".to_owned()
        }
        K::ParseProxyUrl(_) => "the selected cluster's proxy-url is not a valid URL".to_owned(),
        K::LoadCertificateAuthority(e) => data("certificate-authority", e),
        K::LoadClientCertificate(e) => data("client-certificate", e),
        K::LoadClientKey(e) => data("client-key", e),
        K::ParseCertificates(_) => "a certificate in it is not valid PEM".to_owned(),
        _ => "it cannot be used (kubeconfigs of different kinds or versions cannot be merged)".to_owned(),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
