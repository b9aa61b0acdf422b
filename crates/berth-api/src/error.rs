//! The one place where errors become HTTP responses: `application/problem+json`
//! (RFC 9457) naming what is wrong, where (field paths) and how to fix it.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
pub use berth_contract::Problem;
use berth_core::{
    FieldError, Invalid,
    authz::Denied,
    delivery::DeliveryError,
    ports::{BuildError, ResolveError, StoreError},
    promotion::PromotionError,
    quota::QuotaExceeded,
    repo::RepoError,
};
use berth_secrets::KeyError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The document or request is invalid.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The body is not JSON, or not the JSON expected.
    #[error("{0}")]
    BadRequest(String),
    /// No such object.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// The request names an object that does not exist (422, not 404).
    #[error("{path} names {kind} '{name}', which does not exist")]
    MissingReference {
        /// Field path.
        path: String,
        /// Kind referred to.
        kind: &'static str,
        /// Name referred to.
        name: String,
    },
    /// A cluster a read needs did not answer.
    #[error("cluster {cluster} cannot be reached: {message}")]
    ClusterUnreachable {
        /// The cluster.
        cluster: String,
        /// What went wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// There is nothing of what the request asks for, for a reason the detail says.
    #[error("{message}")]
    Nothing {
        /// What is missing.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A conflict: a stale version, an existing object, an immutable object.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// How to resolve it.
        hint: String,
    },
    /// The request cannot be carried out in the current state.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// The image cannot be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A promotion or deploy refused by policy, or with nothing to promote.
    #[error(transparent)]
    Promotion(PromotionError),
    /// The build service refused the request or failed.
    #[error(transparent)]
    Build(BuildError),
    /// No valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but lacks a permission.
    #[error(transparent)]
    Forbidden(#[from] Denied),
    /// The path exists, but not with this method.
    #[error("this path does not take this method; it takes {allow}")]
    MethodNotAllowed {
        /// The methods it takes.
        allow: String,
    },
    /// The operation is missing from the permission table, so it is refused to everyone.
    #[error("{method} {path} has no permission rule, so it is refused to everyone")]
    Unmapped {
        /// The method.
        method: String,
        /// The path template.
        path: String,
    },
    /// The deploy does not fit the team's quota.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// A user or a client address sent too many requests.
    #[error("too many requests from {scope}; retry in {retry_after} s")]
    RateLimited {
        /// Whose budget ran out: `this user` or `this address`.
        scope: &'static str,
        /// Seconds until a request is accepted again.
        retry_after: u64,
    },
    /// A deploy needs secrets the application does not have.
    #[error("{application} references secret(s) {} that are not set", .names.join(", "))]
    MissingSecrets {
        /// The application.
        application: String,
        /// The secrets missing.
        names: Vec<String>,
    },
    /// A secret cannot be sealed or opened with the configured keys.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The body is not sent with a content type the operation takes.
    #[error("the body must be sent with content-type {}; this request {}", .accepted.join(" or "),
        .given.as_deref().map_or_else(|| "names none".to_owned(), |g| format!("says '{g}'")))]
    UnsupportedMediaType {
        /// The content type sent, if any.
        given: Option<String>,
        /// The content types the operation takes.
        accepted: Vec<String>,
    },
    /// The body did not arrive within the server's body read time.
    #[error(
        "the request body did not arrive within {:.1} s; send the whole body within that time (a slow or stalled client is cut off)",
        .limit.as_secs_f64()
    )]
    BodyTimedOut {
        /// The bound.
        limit: std::time::Duration,
    },
    /// The body is larger than allowed.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Documents of an apply are refused; nothing of it was stored.
    #[error("{}", apply_detail(errors, *documents, missing_permission.as_deref()))]
    Apply {
        /// How many documents the apply had.
        documents: usize,
        /// Every problem, each naming its document (`documents[i]…`, file and line).
        errors: Vec<FieldError>,
        /// The status every refusal shares (403 when each is a missing permission), else 422.
        status: StatusCode,
        /// The permission missing, when the refusals are missing permissions.
        missing_permission: Option<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored document is unreadable.
    #[error(transparent)]
    Corrupt(RepoError),
}

/// The detail of a refused apply: how many problems; for missing permissions, the first
/// (which names the permission).
fn apply_detail(errors: &[FieldError], documents: usize, missing_permission: Option<&str>) -> String {
    let mut detail = format!(
        "{} problem(s) in {documents} document(s) of the apply; nothing was applied",
        errors.len()
    );
    if let (Some(_), Some(first)) = (missing_permission, errors.first()) {
        detail.push_str(&format!(" (first: {first})"));
    }
    detail
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, name } => Self::NotFound { kind, name },
            StoreError::AlreadyExists { kind, name } => Self::Conflict {
                message: format!("{kind} '{name}' already exists"),
                hint: "use PUT to replace it, or choose another name".to_owned(),
            },
            StoreError::Conflict {
                kind,
                name,
                expected,
                actual,
            } => Self::Conflict {
                message: format!(
                    "{kind} '{name}' changed: it is at resourceVersion {actual}, the request was based on {expected}"
                ),
                hint: "read the object again and re-apply your change to the new version".to_owned(),
            },
            e @ StoreError::Backend { .. } => Self::Store(e),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Store(e) => e.into(),
            e @ RepoError::Corrupt { .. } => Self::Corrupt(e),
        }
    }
}

impl From<berth_service::Error> for ApiError {
    fn from(e: berth_service::Error) -> Self {
        use berth_service::Error as E;
        let hint = e.hint();
        match e {
            E::NotFound { kind, name } => Self::NotFound {
                kind: kind.to_owned(),
                name,
            },
            E::MissingReference { path, kind, name } => Self::MissingReference { path, kind, name },
            E::Invalid(e) => Self::Invalid(e),
            E::Delivery(e) => Self::Delivery(e),
            E::Promotion(e) => Self::Promotion(e),
            E::Resolve(e) => Self::Resolve(e),
            E::Forbidden(e) => Self::Forbidden(e),
            E::Quota(e) => Self::Quota(e),
            E::MissingSecrets { application, names } => Self::MissingSecrets { application, names },
            e @ (E::RunsInProduction { .. } | E::Unreleasable { .. } | E::Refused { .. }) => Self::Conflict {
                message: e.to_string(),
                hint: hint.unwrap_or_default(),
            },
            E::Busy { .. } => Self::Conflict {
                message: "other changes to this application kept racing with the request".to_owned(),
                hint: hint.unwrap_or_default(),
            },
            E::ClusterUnreachable { cluster, message } => Self::ClusterUnreachable {
                cluster,
                message,
                hint: hint.unwrap_or_default(),
            },
            e @ E::NotInEnvironment { .. } => Self::Nothing {
                message: e.to_string(),
                hint: hint.unwrap_or_default(),
            },
            e @ (E::NoInstance { .. } | E::NothingTerminated { .. }) => Self::Nothing {
                message: e.to_string(),
                hint: hint.unwrap_or_default(),
            },
            e @ (E::NotRunning { .. } | E::RolloutInProgress { .. }) => Self::Conflict {
                message: e.to_string(),
                hint: hint.unwrap_or_default(),
            },
            E::Store(e) => e.into(),
            E::Corrupt(e) => e.into(),
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Store(e) => e.into(),
            e => Self::Build(e),
        }
    }
}

/// Result of a handler.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "The document is invalid",
            ),
            Self::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "bad-request",
                "The request cannot be read",
            ),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::MissingReference { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing-reference",
                "A referenced object does not exist",
            ),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::ClusterUnreachable { .. } => (
                StatusCode::BAD_GATEWAY,
                "cluster-unreachable",
                "A cluster cannot be reached",
            ),
            Self::Nothing { .. } => (StatusCode::NOT_FOUND, "nothing-found", "Nothing found"),
            Self::Delivery(DeliveryError::NoSuchRelease { .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "no-such-release",
                "No such release",
            ),
            Self::Delivery(DeliveryError::NotBuilt { .. }) => {
                (StatusCode::CONFLICT, "not-built", "Nothing has been built yet")
            }
            Self::Promotion(PromotionError::NotVerified(_)) => (
                StatusCode::CONFLICT,
                "not-verified",
                "The image was not verified where this environment requires",
            ),
            Self::Promotion(PromotionError::SameEnvironment { .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "same-environment",
                "Nothing to promote",
            ),
            Self::Promotion(_) => (StatusCode::CONFLICT, "nothing-to-promote", "Nothing to promote"),
            Self::Build(BuildError::NotFound { .. }) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Build(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "cannot-build",
                "The application cannot be built",
            ),
            Self::Delivery(_) => (
                StatusCode::CONFLICT,
                "cannot-roll-back",
                "Nothing to roll back to",
            ),
            Self::Resolve(ResolveError::NotFound { .. }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "image-not-found",
                "The image does not exist",
            ),
            Self::Resolve(_) => (StatusCode::BAD_GATEWAY, "registry-failed", "The registry failed"),
            Self::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            Self::UnsupportedMediaType { .. } => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body is not sent as a content type this operation takes",
            ),
            Self::BodyTimedOut { .. } => (StatusCode::REQUEST_TIMEOUT, "request-timeout", "Request Timeout"),
            Self::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "The request body is too large",
            ),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Permission denied"),
            Self::Unmapped { .. } => (StatusCode::FORBIDDEN, "unmapped-operation", "Permission denied"),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Quota(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "quota-exceeded",
                "The deploy exceeds the team's quota",
            ),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::MissingSecrets { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing-secrets",
                "Referenced secrets are not set",
            ),
            Self::Keys(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "secrets-key",
                "The secrets key cannot open a stored secret; nothing was changed",
            ),
            Self::Apply { status, .. } => (
                *status,
                "apply-refused",
                "Documents of the apply are refused; nothing was applied",
            ),
            Self::Store(_) | Self::Corrupt(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-failed",
                "The store failed; nothing was changed",
            ),
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(invalid) => invalid.errors.clone(),
            Self::Apply { errors, .. } => errors.clone(),
            Self::MissingReference { path, kind, name } => vec![
                FieldError::new(path.clone(), format!("{kind} '{name}' does not exist"))
                    .hint(format!("create the {kind} first, or correct the name")),
            ],
            Self::Conflict { message, hint } | Self::Nothing { message, hint } => {
                vec![FieldError::new("", message.clone()).hint(hint.clone())]
            }
            Self::ClusterUnreachable { hint, .. } => {
                vec![FieldError::new("", self.to_string()).hint(hint.clone())]
            }
            Self::Build(BuildError::Invalid(invalid)) => invalid.errors.clone(),
            Self::Promotion(PromotionError::NotVerified(u)) => {
                vec![FieldError::new("", self.to_string()).hint(format!(
                    "deploy this release (same image and template) to {} first and let the rollout succeed there, then promote it",
                    u.missing.join(", ")
                ))]
            }
            Self::Forbidden(denied) => vec![FieldError::new("", denied.to_string()).hint(denied.needs())],
            Self::Quota(q) => q
                .problems
                .iter()
                .map(|p| FieldError::new(p.resource().spec_path(), p.describe()).hint(p.hint()))
                .collect(),
            Self::MissingSecrets { application, names } => names
                .iter()
                .map(|n| {
                    FieldError::new("spec.secrets", format!("secret '{n}' is not set"))
                        .hint(format!("set it with: berth secret set {application} {n}"))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The problem document for this error.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        Problem {
            problem_type: format!("https://berth.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: self.field_errors(),
            missing_permission: match self {
                Self::Forbidden(denied) => Some(denied.permission.name().to_owned()),
                Self::Unmapped { .. } => Some("unmapped".to_owned()),
                Self::Apply {
                    missing_permission, ..
                } => missing_permission.clone(),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(error = %self, "request failed");
        }
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::RateLimited { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if let Self::MethodNotAllowed { allow } = &self
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            response.headers_mut().insert(header::ALLOW, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The use cases' refusals keep the problem documents the API answered before they
    /// moved into berth-service.
    #[test]
    fn service_refusals_become_the_same_problems() {
        let busy = ApiError::from(berth_service::Error::Busy {
            application: "web".into(),
        })
        .problem();
        assert_eq!(
            (busy.status, busy.problem_type.as_str()),
            (409, "https://berth.dev/problems/conflict")
        );
        assert_eq!(
            busy.detail,
            "other changes to this application kept racing with the request"
        );
        assert_eq!(busy.errors[0].hint.as_deref(), Some("retry the request"));

        let production = ApiError::from(berth_service::Error::RunsInProduction {
            application: "web".into(),
            production: vec!["production".into()],
            running: vec!["production".into(), "qa".into()],
        })
        .problem();
        assert_eq!(production.status, 409);
        assert_eq!(
            production.detail,
            "Application 'web' runs in production environment(s) production (it runs in production, qa); \
             deleting it stops it there"
        );
        assert!(
            production.errors[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("berth delete application web --force")),
            "{production:?}"
        );

        let missing = ApiError::from(berth_service::Error::MissingReference {
            path: "to".into(),
            kind: "Environment",
            name: "prod".into(),
        })
        .problem();
        assert_eq!((missing.status, missing.errors[0].path.as_str()), (422, "to"));

        let secrets = ApiError::from(berth_service::Error::MissingSecrets {
            application: "web".into(),
            names: vec!["db".into()],
        })
        .problem();
        assert_eq!(
            (secrets.status, secrets.problem_type.as_str()),
            (422, "https://berth.dev/problems/missing-secrets")
        );

        let gone = ApiError::from(berth_service::Error::NotFound {
            kind: "Application",
            name: "web".into(),
        })
        .problem();
        assert_eq!(
            (gone.status, gone.detail.as_str()),
            (404, "Application 'web' does not exist")
        );
    }
}
