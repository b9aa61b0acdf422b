//! Authorization of every request: the one table from API operation to the permission it
//! needs ([`rule`]), and the middleware that enforces it ([`authorize`]).
//!
//! An operation missing from the table is refused (default deny), and a test checks that
//! every operation of the OpenAPI document is in it. The decision itself is
//! `berth_core::authz::decide`; this module only finds out which team and environment a
//! request is about (from the path, the stored objects and, for deploys and documents,
//! the body as [`crate::contract`] parsed it once: the value the handler gets too).
//! An application the caller may not read is not found (404, as if missing), so that no
//! refusal names the team that owns it.
//!
//! Lists (`GET /applications`, `/releases`, `/deployments`, `/events`) need only a valid
//! token; they show only what the caller may read ([`Visibility`]).

use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, OnceLock},
};

use axum::{
    Extension,
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use berth_core::{
    Kind, Resource,
    authz::{Permission, Principal, decide},
    deployment::running_environments,
    objects::{ApplicationKind, DEFAULT_TEAM, DeploymentKind, EnvironmentKind, ReleaseKind, TeamKind},
    repo,
};
use serde_json::Value;

use crate::{
    ApiState,
    body::ParsedBody,
    error::{ApiError, Result},
    secrets::SecretParams,
};

/// What an operation needs, before the team and environment are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A valid token, nothing more (the handler shows only what the caller may see).
    SignedIn,
    /// A platform administrator.
    PlatformAdmin,
    /// Read the team of the application named in the path.
    ReadApplication,
    /// Read the team of the deployment named in the path.
    ReadDeployment,
    /// Apply to the team of the application named in the path, and to the team the body
    /// moves it to (`spec.team`), if any.
    ApplyApplication,
    /// Build the application named in the path.
    BuildApplication,
    /// Deploy the application named in the path to the environment named by this field
    /// of the body.
    DeployApplication {
        /// The body field naming the target environment.
        environment_field: &'static str,
    },
    /// Manage the team named in the path (a platform administrator creates teams).
    ManageTeam,
    /// Delete the application named in the path: apply to its team, and deploy to every
    /// environment it runs in (deleting it stops it there).
    DeleteApplication,
    /// Set or delete a value of a secret of the application named in the path: for the
    /// environment in the `environment` query parameter, the right to deploy there; for
    /// all environments (no parameter), the right to apply to the team and to deploy to
    /// every production environment (the value reaches those without their own).
    ChangeSecret,
}

/// The rule of each operation: method and path template under `/api/v1`. `None` for an
/// operation this table does not know, which is then refused.
#[must_use]
pub fn rule(method: &Method, path: &str) -> Option<Rule> {
    use Rule::*;
    let read = *method == Method::GET;
    Some(match (method.as_str(), path) {
        // The platform: anyone signed in reads it, administrators change it.
        (
            _,
            "/clusters"
            | "/clusters/{name}"
            | "/environments"
            | "/environments/{name}"
            | "/users"
            | "/users/{name}"
            | "/sources"
            | "/sources/{name}",
        ) => {
            if read {
                SignedIn
            } else {
                PlatformAdmin
            }
        }
        // A sync applies with a platform administrator's rights (see `crate::sources`).
        ("POST", "/sources/{name}/sync") => PlatformAdmin,
        ("GET", "/teams" | "/teams/{name}") => SignedIn,
        ("POST" | "DELETE", "/teams" | "/teams/{name}") => PlatformAdmin,
        ("PUT" | "PATCH", "/teams/{name}") => ManageTeam,
        // Applications and what hangs off them.
        ("GET", "/applications") => SignedIn,
        ("POST", "/applications") => ApplyApplication,
        (
            "GET",
            "/applications/{name}"
            | "/applications/{name}/status"
            | "/applications/{name}/releases"
            | "/applications/{name}/releases/{number}"
            | "/applications/{name}/secrets"
            | "/applications/{name}/builds"
            | "/applications/{name}/builds/{number}"
            | "/applications/{name}/builds/{number}/log"
            | "/applications/{name}/provenance"
            | "/applications/{name}/instances"
            | "/applications/{name}/logs",
        ) => ReadApplication,
        ("PUT" | "PATCH", "/applications/{name}") => ApplyApplication,
        ("DELETE", "/applications/{name}") => DeleteApplication,
        ("POST", "/applications/{name}/releases") => ApplyApplication,
        ("PUT" | "DELETE", "/applications/{name}/secrets/{secret}") => ChangeSecret,
        ("POST", "/applications/{name}/builds") => BuildApplication,
        // A restart replaces every instance in the environment, as a deploy does.
        (
            "POST",
            "/applications/{name}/deploy" | "/applications/{name}/rollback" | "/applications/{name}/restart",
        ) => DeployApplication {
            environment_field: "environment",
        },
        ("POST", "/applications/{name}/promote") => DeployApplication {
            environment_field: "to",
        },
        ("GET", "/releases" | "/deployments" | "/builds" | "/events" | "/events/stream") => SignedIn,
        ("GET", "/deployments/{name}") => ReadDeployment,
        // Many documents at once: each is authorized as its own `PUT` or `DELETE` would
        // be, by the handler (`crate::apply`).
        ("POST", "/apply") => SignedIn,
        // Secrets key rotation and the audit log.
        ("POST", "/secrets/rotate") => PlatformAdmin,
        ("GET", "/audit" | "/audit/verify") => PlatformAdmin,
        // One's own identity and tokens (handlers restrict to the caller's own unless
        // the caller administers the platform).
        ("GET", "/whoami" | "/tokens" | "/openapi.json") => SignedIn,
        ("POST", "/tokens") | ("DELETE", "/tokens/{id}") => SignedIn,
        _ => return None,
    })
}

/// Middleware: refuses (403) a request whose operation is not in [`rule`] or whose caller
/// lacks the permission the rule works out. Runs after authentication.
pub async fn authorize(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Result<Response> {
    let Some(matched) = matched else {
        // No route matched: only the not-found fallback can answer.
        return Ok(next.run(req).await);
    };
    let template = matched
        .as_str()
        .strip_prefix("/api/v1")
        .unwrap_or(matched.as_str())
        .to_owned();
    let Some(rule) = rule(req.method(), &template) else {
        let allowed = documented_methods(&template);
        if !allowed.contains(&req.method().as_str()) {
            // No such operation: what the router would answer, without reaching it.
            return Err(ApiError::MethodNotAllowed {
                allow: allowed.join(", "),
            });
        }
        tracing::warn!(method = %req.method(), path = %template, "operation has no permission rule");
        return Err(ApiError::Unmapped {
            method: req.method().to_string(),
            path: template,
        });
    };
    let name = path_segment(req.uri().path(), &template, "{name}");
    // The body as the contract middleware parsed it, the very value the handler gets.
    let body = req.extensions().get::<ParsedBody>().map(|b| b.0.clone());
    let request = Operation {
        method: req.method(),
        template: &template,
        name: name.as_deref(),
        body: body.as_deref(),
        query: req.uri().query().unwrap_or_default(),
    };
    let (permissions, loaded) = needed(&state, &principal, rule, &request).await?;
    if let Some(loaded) = loaded {
        req.extensions_mut().insert(loaded);
    }
    for p in &permissions {
        decide(&principal, p)?;
    }
    Ok(next.run(req).await)
}

/// One request as authorization sees it.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its path template under `/api/v1`, e.g. `/applications/{name}`.
    pub template: &'a str,
    /// The `{name}` of the path, decoded.
    pub name: Option<&'a str>,
    /// Its parsed body.
    pub body: Option<&'a Value>,
    /// Its query string.
    pub query: &'a str,
}

/// Refuses (403, or 404 for an application the caller may not read) `request` when
/// `principal` lacks a permission it needs: what the middleware decides for a request to
/// the single-object endpoints, for callers that carry out such operations on their own
/// (an apply of many documents, each a `PUT` or a `DELETE`).
///
/// # Errors
///
/// [`ApiError::Forbidden`], [`ApiError::NotFound`], a malformed body, store failures;
/// an operation [`rule`] does not know is refused.
pub async fn check(state: &ApiState, principal: &Principal, request: &Operation<'_>) -> Result<()> {
    let Some(rule) = rule(request.method, request.template) else {
        return Err(ApiError::Unmapped {
            method: request.method.to_string(),
            path: request.template.to_owned(),
        });
    };
    for p in needed(state, principal, rule, request).await?.0 {
        decide(principal, &p)?;
    }
    Ok(())
}

/// The permissions `request` needs under `rule`, and the object read to decide when the
/// handler can use it.
async fn needed(
    state: &ApiState,
    principal: &Principal,
    rule: Rule,
    request: &Operation<'_>,
) -> Result<(Vec<Permission>, Option<Loaded>)> {
    let Operation {
        method,
        template,
        name,
        body,
        query,
    } = *request;
    let name = name.map(str::to_owned);
    let mut loaded = None;
    let permissions = match rule {
        Rule::SignedIn => vec![Permission::ReadPlatform],
        Rule::PlatformAdmin => vec![Permission::AdministerPlatform],
        Rule::ManageTeam => {
            let exists = match &name {
                Some(n) => repo::get::<TeamKind>(state.store.as_ref(), n).await?.is_some(),
                None => false,
            };
            let p = match (exists, name) {
                (true, Some(team)) => Permission::ManageTeam { team },
                _ => Permission::AdministerPlatform,
            };
            vec![p]
        }
        Rule::ReadApplication if template == "/applications/{name}" => {
            // The application itself: read once, for the decision and for the handler.
            let Some(name) = &name else {
                return Ok((Vec::new(), None));
            };
            let team = match repo::get::<ApplicationKind>(state.store.as_ref(), name).await? {
                Some(app) => {
                    let team = app.spec.team.clone();
                    loaded = Some(Loaded::new(app));
                    Some(team)
                }
                None => history_team(state, name).await?,
            };
            if let Some(team) = &team
                && !principal.can_read(team)
            {
                return Err(not_found(ApplicationKind::KIND, name));
            }
            team.map(|team| Permission::Read { team }).into_iter().collect()
        }
        Rule::ReadApplication => readable_app_team(state, principal, name.as_deref())
            .await?
            .map(|team| Permission::Read { team })
            .into_iter()
            .collect(),
        Rule::ReadDeployment => {
            let app = match &name {
                Some(n) => repo::get::<DeploymentKind>(state.store.as_ref(), n)
                    .await?
                    .map(|d| d.spec.application),
                None => None,
            };
            let team = app_team(state, app.as_deref()).await?;
            if let (Some(team), Some(name)) = (&team, &name)
                && !principal.can_read(team)
            {
                return Err(not_found("Deployment", name));
            }
            team.map(|team| Permission::Read { team }).into_iter().collect()
        }
        Rule::BuildApplication => readable_app_team(state, principal, name.as_deref())
            .await?
            .map(|team| Permission::Build { team })
            .into_iter()
            .collect(),
        Rule::ApplyApplication => {
            let mut teams = BTreeSet::new();
            // The team it belongs to now…
            teams.extend(readable_app_team(state, principal, name.as_deref()).await?);
            // …and the one the document puts it in: a whole document without a team
            // puts it in the default team; a merge patch only moves it when it says so.
            if matches!(template, "/applications" | "/applications/{name}") {
                match *method {
                    Method::POST | Method::PUT => {
                        teams.insert(document_team(required(body)?));
                    }
                    Method::PATCH => teams.extend(patched_team(required(body)?)),
                    _ => {}
                }
            }
            teams.into_iter().map(|team| Permission::Apply { team }).collect()
        }
        Rule::DeleteApplication => {
            let mut permissions = Vec::new();
            if let (Some(team), Some(app)) =
                (readable_app_team(state, principal, name.as_deref()).await?, &name)
            {
                permissions.push(Permission::Apply { team: team.clone() });
                let deployments = repo::list_all::<DeploymentKind>(state.store.as_ref(), Some(app)).await?;
                for environment in running_environments(&deployments) {
                    let production = is_production(state, &environment).await?;
                    permissions.push(Permission::Deploy {
                        team: team.clone(),
                        environment,
                        production,
                    });
                }
            }
            permissions
        }
        Rule::ChangeSecret => {
            // The very parse the handler's `Params` extractor makes: a query it refuses is
            // refused here, never read differently.
            let params: SecretParams = crate::routes::query(query)?;
            let mut permissions = Vec::new();
            if let Some(team) = readable_app_team(state, principal, name.as_deref()).await? {
                let store = state.store.as_ref();
                match params.environment {
                    Some(environment) => {
                        let production = is_production(state, &environment).await?;
                        permissions.push(Permission::Deploy {
                            team,
                            environment,
                            production,
                        });
                    }
                    None => {
                        permissions.push(Permission::Apply { team: team.clone() });
                        for env in repo::list_all::<EnvironmentKind>(store, None).await? {
                            if env.spec.production {
                                permissions.push(Permission::Deploy {
                                    team: team.clone(),
                                    environment: env.metadata.name,
                                    production: true,
                                });
                            }
                        }
                    }
                }
            }
            permissions
        }
        Rule::DeployApplication { environment_field } => {
            match readable_app_team(state, principal, name.as_deref()).await? {
                // A missing application is the handler's 404 to give.
                None => Vec::new(),
                Some(team) => {
                    let environment = required(body)?
                        .get(environment_field)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "the body does not have the expected shape: it must name the target \
                                 environment in '{environment_field}' (a string)"
                            ))
                        })?;
                    let production = is_production(state, &environment).await?;
                    vec![Permission::Deploy {
                        team,
                        environment,
                        production,
                    }]
                }
            }
        }
    };
    Ok((permissions, loaded))
}

/// The methods the OpenAPI document lists for a path template.
/// An object authorization read to decide, handed to the handler in the request's
/// extensions so that a request reads it once (`GET /applications/{name}`).
#[derive(Clone)]
pub struct Loaded(Arc<dyn Any + Send + Sync>);

impl Loaded {
    fn new<K: Kind>(object: Resource<K>) -> Self {
        Self(Arc::new(object))
    }

    /// The object if it is the `K` named `name`.
    #[must_use]
    pub fn get<K: Kind + Clone>(&self, name: &str) -> Option<Resource<K>> {
        self.0
            .downcast_ref::<Resource<K>>()
            .filter(|o| o.metadata.name == name)
            .cloned()
    }
}

fn documented_methods(template: &str) -> Vec<&'static str> {
    static DOCUMENTED: OnceLock<BTreeMap<String, Vec<&'static str>>> = OnceLock::new();
    let documented = DOCUMENTED.get_or_init(|| {
        crate::openapi()
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, present)| present.then_some(m))
                .collect();
                (path.clone(), methods)
            })
            .collect()
    });
    documented.get(template).cloned().unwrap_or_default()
}

/// The value of `placeholder` in `path`, matched against `template` segment by segment.
fn path_segment(path: &str, template: &str, placeholder: &str) -> Option<String> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let index = template.split('/').position(|s| s == placeholder)?;
    let raw = path.split('/').nth(index)?;
    Some(percent_decode(raw))
}

/// Decodes `%XX` escapes of a path segment (what axum's `Path` extractor does).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `environment` is a production environment (one that does not exist is not).
async fn is_production(state: &ApiState, environment: &str) -> Result<bool> {
    Ok(repo::get::<EnvironmentKind>(state.store.as_ref(), environment)
        .await?
        .is_some_and(|e| e.spec.production))
}

/// The team of application `name`, when it exists; for a deleted application whose
/// history is kept, the team of its newest release (a missing application without
/// history is the handler's 404 to give).
async fn app_team(state: &ApiState, name: Option<&str>) -> Result<Option<String>> {
    let Some(name) = name else { return Ok(None) };
    if let Some(app) = repo::get::<ApplicationKind>(state.store.as_ref(), name).await? {
        return Ok(Some(app.spec.team));
    }
    history_team(state, name).await
}

/// The team of the newest release of application `name` (one deleted keeps its releases).
async fn history_team(state: &ApiState, name: &str) -> Result<Option<String>> {
    Ok(repo::list_all::<ReleaseKind>(state.store.as_ref(), Some(name))
        .await?
        .into_iter()
        .max_by_key(|r| r.spec.number)
        .map(|r| r.spec.template.team))
}

/// The team of application `name` when the caller may read it; 404, exactly as for a
/// missing application, when the caller may not (a 403 would name the owning team).
async fn readable_app_team(
    state: &ApiState,
    principal: &Principal,
    name: Option<&str>,
) -> Result<Option<String>> {
    let team = app_team(state, name).await?;
    match (team, name) {
        (Some(team), Some(name)) if !principal.can_read(&team) => Err(not_found(ApplicationKind::KIND, name)),
        (team, _) => Ok(team),
    }
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// The parsed body of an operation whose permission depends on it. The contract
/// middleware parses the body of every operation that takes one, so a missing body is
/// refused here, never read as "no body" with a weaker permission.
fn required(body: Option<&Value>) -> Result<&Value> {
    body.ok_or_else(|| ApiError::BadRequest("this operation needs a JSON body".to_owned()))
}

/// The team a whole document (POST, PUT) puts an application in: `spec.team`, or the
/// default team when it names none (or names it with something else than a string,
/// which the handler then refuses).
fn document_team(body: &Value) -> String {
    body.pointer("/spec/team")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TEAM)
        .to_owned()
}

/// The team a merge patch (RFC 7386) moves an application to, if it moves it: a patch
/// that removes `spec.team` (null), replaces `spec` or replaces the whole document
/// moves it to the default team.
fn patched_team(body: &Value) -> Option<String> {
    let Some(patch) = body.as_object() else {
        return Some(DEFAULT_TEAM.to_owned());
    };
    match patch.get("spec")? {
        Value::Object(spec) => match spec.get("team")? {
            Value::String(team) => Some(team.clone()),
            _ => Some(DEFAULT_TEAM.to_owned()),
        },
        _ => Some(DEFAULT_TEAM.to_owned()),
    }
}

/// Which applications' objects a caller may see in lists.
#[derive(Debug, Clone)]
pub enum Visibility {
    /// Everything (a platform administrator).
    All,
    /// Only these applications.
    Applications(BTreeSet<String>),
}

impl Visibility {
    /// What `principal` may see, given the stored applications.
    pub async fn of(state: &ApiState, principal: &Principal) -> Result<Self> {
        if principal.platform_admin {
            return Ok(Self::All);
        }
        let apps = repo::list_all::<ApplicationKind>(state.store.as_ref(), None).await?;
        Ok(Self::Applications(
            apps.into_iter()
                .filter(|a| principal.can_read(&a.spec.team))
                .map(|a| a.metadata.name)
                .collect(),
        ))
    }

    /// Whether objects of `application` may be shown (objects of no application may).
    #[must_use]
    pub fn shows(&self, application: Option<&str>) -> bool {
        match (self, application) {
            (Self::All, _) | (_, None) => true,
            (Self::Applications(apps), Some(app)) => apps.contains(app),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_of_the_document_has_a_rule() {
        let doc = crate::openapi();
        let mut missing = Vec::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                (Method::GET, item.get.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::DELETE, item.delete.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::HEAD, item.head.is_some()),
                (Method::OPTIONS, item.options.is_some()),
                (Method::TRACE, item.trace.is_some()),
            ];
            for (method, present) in ops {
                if present && rule(&method, path).is_none() {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "operations without a permission rule (add them to permissions::rule): {missing:?}"
        );
    }

    #[test]
    fn unknown_operations_are_refused() {
        assert_eq!(rule(&Method::GET, "/something-new"), None);
        assert_eq!(rule(&Method::DELETE, "/events"), None);
        assert_eq!(rule(&Method::POST, "/audit"), None);
    }

    #[test]
    fn path_segments_are_found_and_decoded() {
        assert_eq!(
            path_segment(
                "/api/v1/applications/web/deploy",
                "/applications/{name}/deploy",
                "{name}"
            ),
            Some("web".to_owned())
        );
        assert_eq!(
            path_segment("/api/v1/applications/a%20b", "/applications/{name}", "{name}"),
            Some("a b".to_owned())
        );
        assert_eq!(
            path_segment("/api/v1/applications", "/applications", "{name}"),
            None
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
