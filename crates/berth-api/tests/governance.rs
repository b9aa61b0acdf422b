//! Governance over real HTTP on loopback with a real SQLite store: the whole permission
//! matrix (every role × every operation × production and non-production), tokens
//! (expiry, revocation, shown once), visibility of lists, quotas, secrets that never
//! come back, and the audit log with its verification.
//!
//! The registry is replaced by a resolver that pins every image to one digest: these
//! tests are about who may do what, not about registries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use berth_api::{ApiState, Governance, RateLimit, auth};
use berth_core::{
    image::ImageRef,
    ports::{BuildError, BuildRequest, BuildTicket, Builds, ImageResolver, LogChunk, ResolveError},
};
use berth_secrets::Keyring;
use berth_store::SqliteStore;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Pins every image to [`DIGEST`].
struct Pinned;

#[async_trait]
impl ImageResolver for Pinned {
    async fn resolve(&self, _: &ImageRef) -> Result<String, ResolveError> {
        Ok(DIGEST.to_owned())
    }
}

/// Builds nothing: these tests only check who may ask for a build.
struct NoBuilds;

#[async_trait]
impl Builds for NoBuilds {
    async fn request(&self, request: BuildRequest) -> Result<BuildTicket, BuildError> {
        Err(BuildError::NotFound {
            kind: "Build",
            name: request.application,
        })
    }
    async fn log(&self, name: &str, _: u64) -> Result<LogChunk, BuildError> {
        Err(BuildError::NotFound {
            kind: "Build",
            name: name.to_owned(),
        })
    }
    async fn wait_log(&self, _: &str, _: u64, _: std::time::Duration) {}
}

/// Who asks, in the order of the matrix's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    PlatformAdmin,
    TeamAdmin,
    Releaser,
    Developer,
    Viewer,
    Outsider,
}

const EVERYONE: [Who; 6] = [
    Who::PlatformAdmin,
    Who::TeamAdmin,
    Who::Releaser,
    Who::Developer,
    Who::Viewer,
    Who::Outsider,
];

impl Who {
    fn user(self) -> &'static str {
        match self {
            Self::PlatformAdmin => "admin",
            Self::TeamAdmin => "tina",
            Self::Releaser => "rita",
            Self::Developer => "dev",
            Self::Viewer => "vic",
            Self::Outsider => "otto",
        }
    }
}

struct Api {
    base: String,
    http: Client,
    tokens: BTreeMap<Who, String>,
    dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Self {
        Self::start_with(RateLimit {
            per_second: 1e6,
            burst: 1_000_000,
        })
        .await
    }

    async fn start_with(limit: RateLimit) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
        let admin = auth::ensure_bootstrap_token(store.as_ref())
            .await
            .unwrap()
            .unwrap();
        let state = ApiState {
            store,
            resolver: Arc::new(Pinned),
            changed: Arc::new(Notify::new()),
            domain: "localhost".into(),
            router_port: None,
            builds: Arc::new(NoBuilds),
            clock: Arc::new(berth_core::ports::SystemClock),
            clusters: Arc::new(berth_test_support::FakeClusters::default()),
            metrics: Default::default(),
            syncs: Default::default(),
        };
        let governance = Governance::new(Arc::new(Keyring::generate()), limit);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = berth_api::router_with(state, governance);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut api = Self {
            base: format!("http://{addr}"),
            http: Client::new(),
            tokens: BTreeMap::from([(Who::PlatformAdmin, admin)]),
            dir,
        };
        api.people().await;
        api
    }

    async fn call_as(
        &self,
        who: Who,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(&self.tokens[&who], method, path, body).await
    }

    async fn call_with(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        if res
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"))
        {
            return (status, Value::Null);
        }
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Who::PlatformAdmin, method, path, body).await
    }

    /// Users, their tokens, and team `pay` where each has its role.
    async fn people(&mut self) {
        for who in EVERYONE.into_iter().skip(1) {
            let (s, _) = self
                .admin(
                    Method::PUT,
                    &format!("/users/{}", who.user()),
                    Some(user(who.user())),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED);
            let (s, t) = self
                .admin(
                    Method::POST,
                    "/tokens",
                    Some(json!({"name": "test", "user": who.user()})),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{t}");
            self.tokens.insert(who, t["secret"].as_str().unwrap().to_owned());
        }
        self.fixture().await;
    }

    /// Puts back everything the matrix relies on (an allowed request may have deleted it).
    async fn fixture(&self) {
        let puts = [
            ("/clusters/local", cluster()),
            ("/environments/qa", environment("qa", false)),
            ("/environments/production", environment("production", true)),
            ("/teams/pay", team()),
            ("/applications/web", application("web", "pay")),
        ];
        for (path, doc) in puts {
            let (s, body) = self.admin(Method::PUT, path, Some(doc)).await;
            assert!(s.is_success(), "{path}: {s} {body}");
        }
        if self
            .admin(Method::GET, "/applications/web/releases/1", None)
            .await
            .0
            == StatusCode::NOT_FOUND
        {
            let (s, b) = self
                .admin(Method::POST, "/applications/web/releases", Some(json!({})))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
        let (s, b) = self
            .admin(
                Method::PUT,
                "/applications/web/secrets/db",
                Some(json!({"value": "fixture"})),
            )
            .await;
        assert!(s.is_success(), "{b}");
        if self.admin(Method::GET, "/deployments/web-qa-1", None).await.0 == StatusCode::NOT_FOUND {
            let (s, b) = self
                .admin(
                    Method::POST,
                    "/applications/web/deploy",
                    Some(json!({"environment": "qa", "release": 1})),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
    }
}

fn user(name: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "User", "metadata": {"name": name}, "spec": {}})
}

fn cluster() -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "local"}, "spec": {}})
}

fn source() -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Source", "metadata": {"name": "platform"},
        "spec": {"repository": "https://git.example.com/platform.git"}})
}

fn environment(name: &str, production: bool) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": name},
        "spec": {"clusters": [{"cluster": "local"}], "production": production}})
}

fn team() -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": "pay"}, "spec": {"members": [
        {"user": "tina", "roles": ["admin"]},
        {"user": "rita", "roles": ["releaser"]},
        {"user": "dev", "roles": ["developer"]},
        {"user": "vic", "roles": ["viewer"]},
    ]}})
}

fn application(name: &str, team: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": name},
        "spec": {"image": "127.0.0.1:5000/web:1", "team": team}})
}

/// One row of the matrix: an operation, and who may do it in a non-production and in a
/// production environment (`ENV` in the path or body is replaced by the environment).
struct Row {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    allowed: fn(Who, bool) -> bool,
}

fn row(method: Method, path: &'static str, body: Option<Value>, allowed: fn(Who, bool) -> bool) -> Row {
    Row {
        method,
        path,
        body,
        allowed,
    }
}

fn everyone(_: Who, _: bool) -> bool {
    true
}
fn platform_admin(w: Who, _: bool) -> bool {
    w == Who::PlatformAdmin
}
fn team_admin(w: Who, _: bool) -> bool {
    matches!(w, Who::PlatformAdmin | Who::TeamAdmin)
}
fn team_member(w: Who, _: bool) -> bool {
    w != Who::Outsider
}
fn developer(w: Who, _: bool) -> bool {
    matches!(w, Who::PlatformAdmin | Who::Developer)
}
fn builder(w: Who, _: bool) -> bool {
    matches!(w, Who::PlatformAdmin | Who::Developer | Who::Releaser)
}
/// Deploys: developers outside production, releasers everywhere.
fn deployer(w: Who, production: bool) -> bool {
    match w {
        Who::PlatformAdmin | Who::Releaser => true,
        Who::Developer => !production,
        _ => false,
    }
}

fn matrix() -> Vec<Row> {
    use Method as M;
    let deploy = json!({"environment": "ENV", "release": 1});
    vec![
        row(M::GET, "/clusters", None, everyone),
        row(M::POST, "/clusters", Some(cluster()), platform_admin),
        row(M::GET, "/clusters/local", None, everyone),
        row(M::PUT, "/clusters/local", Some(cluster()), platform_admin),
        row(M::PATCH, "/clusters/local", Some(json!({})), platform_admin),
        row(M::DELETE, "/clusters/local", None, platform_admin),
        // A source applies with a platform administrator's rights: only they write it.
        row(M::GET, "/sources", None, everyone),
        row(M::POST, "/sources", Some(source()), platform_admin),
        row(M::GET, "/sources/platform", None, everyone),
        row(M::PUT, "/sources/platform", Some(source()), platform_admin),
        row(M::PATCH, "/sources/platform", Some(json!({})), platform_admin),
        row(M::POST, "/sources/platform/sync", None, platform_admin),
        row(M::DELETE, "/sources/platform", None, platform_admin),
        row(M::GET, "/environments", None, everyone),
        row(
            M::POST,
            "/environments",
            Some(environment("ENV", false)),
            platform_admin,
        ),
        row(M::GET, "/environments/ENV", None, everyone),
        row(
            M::PUT,
            "/environments/qa",
            Some(environment("qa", false)),
            platform_admin,
        ),
        row(M::PATCH, "/environments/ENV", Some(json!({})), platform_admin),
        row(M::DELETE, "/environments/ENV", None, platform_admin),
        row(M::GET, "/users", None, everyone),
        row(M::POST, "/users", Some(user("vic")), platform_admin),
        row(M::GET, "/users/vic", None, everyone),
        row(M::PUT, "/users/vic", Some(user("vic")), platform_admin),
        row(M::PATCH, "/users/vic", Some(json!({})), platform_admin),
        row(M::DELETE, "/users/nobody", None, platform_admin),
        row(M::GET, "/teams", None, everyone),
        row(M::POST, "/teams", Some(team()), platform_admin),
        row(M::GET, "/teams/pay", None, everyone),
        row(M::PUT, "/teams/pay", Some(team()), team_admin),
        row(M::PATCH, "/teams/pay", Some(json!({})), team_admin),
        row(M::DELETE, "/teams/pay", None, platform_admin),
        row(M::GET, "/applications", None, everyone),
        row(
            M::POST,
            "/applications",
            Some(application("web", "pay")),
            developer,
        ),
        row(M::GET, "/applications/web", None, team_member),
        row(
            M::PUT,
            "/applications/web",
            Some(application("web", "pay")),
            developer,
        ),
        row(M::PATCH, "/applications/web", Some(json!({})), developer),
        row(M::DELETE, "/applications/web", None, developer),
        row(M::GET, "/applications/web/status", None, team_member),
        row(M::GET, "/applications/web/releases", None, team_member),
        row(M::POST, "/applications/web/releases", Some(json!({})), developer),
        row(M::GET, "/applications/web/releases/1", None, team_member),
        row(M::GET, "/applications/web/secrets", None, team_member),
        // A value for all environments reaches production too: only someone who may
        // apply and deploy to production sets it. One environment's value is like a
        // deploy there.
        row(
            M::PUT,
            "/applications/web/secrets/db",
            Some(json!({"value": "v"})),
            platform_admin,
        ),
        row(M::DELETE, "/applications/web/secrets/db", None, platform_admin),
        row(
            M::PUT,
            "/applications/web/secrets/db?environment=ENV",
            Some(json!({"value": "v"})),
            deployer,
        ),
        row(
            M::DELETE,
            "/applications/web/secrets/db?environment=ENV",
            None,
            deployer,
        ),
        row(
            M::POST,
            "/applications/web/deploy",
            Some(deploy.clone()),
            deployer,
        ),
        row(
            M::POST,
            "/applications/web/rollback",
            Some(json!({"environment": "ENV"})),
            deployer,
        ),
        row(M::GET, "/releases", None, everyone),
        row(M::GET, "/deployments", None, everyone),
        row(M::GET, "/deployments/web-qa-1", None, team_member),
        row(M::GET, "/events", None, everyone),
        row(M::GET, "/events/stream", None, everyone),
        // Each document of an apply is authorized as its own PUT would be.
        row(
            M::POST,
            "/apply",
            Some(json!({"documents": [{"object": application("web", "pay")}]})),
            developer,
        ),
        row(M::POST, "/secrets/rotate", None, platform_admin),
        row(M::GET, "/audit", None, platform_admin),
        row(M::GET, "/audit/verify", None, platform_admin),
        row(M::GET, "/whoami", None, everyone),
        row(M::GET, "/tokens", None, everyone),
        row(M::POST, "/tokens", Some(json!({"name": "matrix"})), everyone),
        row(M::DELETE, "/tokens/0000000000000000", None, everyone),
        row(M::GET, "/openapi.json", None, everyone),
    ]
    .into_iter()
    .chain(build_rows())
    .collect()
}

/// Builds, promotion and provenance (another part of Berth): builds like deploys
/// outside production, promotion like a deploy into the target environment.
fn build_rows() -> Vec<Row> {
    use Method as M;
    vec![
        row(M::POST, "/applications/web/builds", Some(json!({})), builder),
        row(M::GET, "/applications/web/builds", None, team_member),
        row(M::GET, "/applications/web/builds/1", None, team_member),
        row(M::GET, "/applications/web/builds/1/log", None, team_member),
        row(
            M::POST,
            "/applications/web/promote",
            Some(json!({"from": "qa", "to": "ENV"})),
            deployer,
        ),
        row(
            M::GET,
            "/applications/web/provenance?environment=ENV",
            None,
            team_member,
        ),
        row(M::GET, "/builds", None, everyone),
        // Operating a running application: reading it like its status, restarting it
        // like a deploy there.
        row(
            M::GET,
            "/applications/web/instances?environment=ENV",
            None,
            team_member,
        ),
        row(
            M::GET,
            "/applications/web/logs?environment=ENV",
            None,
            team_member,
        ),
        row(
            M::POST,
            "/applications/web/restart",
            Some(json!({"environment": "ENV"})),
            deployer,
        ),
    ]
}

fn substitute(value: &Value, env: &str) -> Value {
    serde_json::from_str(&value.to_string().replace("ENV", env)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_permission_matrix() {
    let api = Api::start().await;
    let rows = matrix();

    // The matrix covers every operation the API documents.
    let doc = berth_api::openapi();
    let covered: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    for (template, item) in &doc.paths.paths {
        for (method, present) in [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
        ] {
            if !present {
                continue;
            }
            let hit = covered
                .iter()
                .any(|(m, p)| m == method && matches_template(template, p));
            assert!(hit, "the matrix has no row for {method} {template}");
        }
    }

    let mut checked = 0;
    let mut failures = Vec::new();
    for row in &rows {
        let documented = doc.paths.paths.keys().any(|t| matches_template(t, row.path));
        if !documented {
            // An operation another part of Berth has not added yet.
            continue;
        }
        for (env, production) in [("qa", false), ("production", true)] {
            for who in EVERYONE {
                api.fixture().await;
                let path = row.path.replace("ENV", env);
                let body = row.body.as_ref().map(|b| substitute(b, env));
                let (status, problem) = api.call_as(who, row.method.clone(), &path, body).await;
                let want = (row.allowed)(who, production);
                // An application (or its deployment) the caller may not read is not
                // found, so that no answer names its team.
                let hidden = who == Who::Outsider
                    && status == StatusCode::NOT_FOUND
                    && (path.starts_with("/applications/web")
                        || path.starts_with("/deployments/web")
                        || path == "/apply");
                let denied = status == StatusCode::FORBIDDEN || hidden;
                checked += 1;
                if status == StatusCode::UNAUTHORIZED || status.is_server_error() {
                    failures.push(format!(
                        "{who:?} {} {path} ({env}): {status} {problem}",
                        row.method
                    ));
                } else if want == denied {
                    failures.push(format!(
                        "{who:?} {} {path} ({env}): wanted {}, got {status} {problem}",
                        row.method,
                        if want { "allowed" } else { "denied" }
                    ));
                } else if denied && !hidden {
                    let missing = problem["missingPermission"].as_str().unwrap_or_default();
                    if missing.is_empty() || !problem["detail"].as_str().unwrap_or_default().contains(missing)
                    {
                        failures.push(format!(
                            "{who:?} {} {path}: a 403 must name the permission: {problem}",
                            row.method
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 600, "only {checked} checks ran");
}

/// Whether a concrete path (with `ENV`) is an instance of an OpenAPI path template.
fn matches_template(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')) || *p == "ENV")
}

#[tokio::test]
async fn a_denial_names_what_is_missing_and_how_to_get_it() {
    let api = Api::start().await;
    let (status, p) = api
        .call_as(
            Who::Developer,
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "production", "release": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(p["missingPermission"], "deploy.production");
    assert_eq!(p["type"], "https://berth.dev/problems/forbidden");
    assert_eq!(
        p["detail"],
        "user 'dev' may not deploy applications of team 'pay' to production environment 'production' \
         (deploy.production): that needs the releaser role in team 'pay' for environment 'production'"
    );
    // Moving an application into a team one has no role in is refused too.
    let (status, p) = api
        .call_as(
            Who::Developer,
            Method::PATCH,
            "/applications/web",
            Some(json!({"spec": {"team": "default"}})),
        )
        .await;
    assert_eq!(
        (status, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("team.apply"))
    );
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_read() {
    let api = Api::start().await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = api.call_as(Who::Viewer, Method::GET, "/applications", None).await;
    assert_eq!(names(&all), ["web"]);
    let (_, none) = api
        .call_as(Who::Outsider, Method::GET, "/applications", None)
        .await;
    assert!(names(&none).is_empty());
    for path in ["/releases", "/deployments", "/events?application=web"] {
        let (s, v) = api.call_as(Who::Outsider, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["items"].as_array().unwrap().is_empty(), "{path}: {v}");
        let (_, v) = api.call_as(Who::Viewer, Method::GET, path, None).await;
        assert!(!v["items"].as_array().unwrap().is_empty(), "{path}: {v}");
    }
}

#[tokio::test]
async fn tokens_are_shown_once_expire_and_can_be_revoked() {
    let api = Api::start().await;
    let (s, who) = api.call_as(Who::Developer, Method::GET, "/whoami", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(who["user"], "dev");
    assert_eq!(
        who["roles"],
        json!([{"team": "pay", "role": "developer", "environments": []}])
    );

    let (s, made) = api
        .call_as(
            Who::Developer,
            Method::POST,
            "/tokens",
            Some(json!({"name": "laptop", "expiresInDays": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["token"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("berth_"));
    assert!(made["token"]["expiresAt"].is_string());
    assert_eq!(
        api.call_with(&secret, Method::GET, "/whoami", None).await.0,
        StatusCode::OK
    );

    // Lists never show a secret or its hash.
    let (_, list) = api.call_as(Who::Developer, Method::GET, "/tokens", None).await;
    let text = list.to_string();
    assert!(text.contains(&id) && !text.contains(&secret) && !text.contains(&auth::hash_token(&secret)));
    // Only one's own tokens, unless one administers the platform.
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (s, _) = api
        .call_as(Who::Developer, Method::GET, "/tokens?user=vic", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .call_as(
            Who::Developer,
            Method::POST,
            "/tokens",
            Some(json!({"name": "x", "user": "vic"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        api.call_as(Who::Viewer, Method::DELETE, &format!("/tokens/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let (s, revoked) = api
        .call_as(Who::Developer, Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(revoked["revokedAt"].is_string());
    let (s, p) = api.call_with(&secret, Method::GET, "/whoami", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");

    // Expiry: a token past its time is refused (set in the database, as time would).
    let (_, made) = api
        .call_as(
            Who::Viewer,
            Method::POST,
            "/tokens",
            Some(json!({"name": "short"})),
        )
        .await;
    let short = made["secret"].as_str().unwrap().to_owned();
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", api.dir.path().join("berth.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE tokens SET expires_at = '2000-01-01T00:00:00Z' WHERE id = ?")
        .bind(made["token"]["id"].as_str().unwrap())
        .execute(&db)
        .await
        .unwrap();
    let (s, p) = api.call_with(&short, Method::GET, "/whoami", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");

    // A deleted user's tokens die with it.
    assert_eq!(
        api.admin(Method::DELETE, "/users/vic", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.call_as(Who::Viewer, Method::GET, "/whoami", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    api.admin(Method::PUT, "/users/vic", Some(user("vic"))).await;
    assert_eq!(
        api.call_as(Who::Viewer, Method::GET, "/whoami", None).await.0,
        StatusCode::UNAUTHORIZED,
        "a new user of the same name does not inherit old tokens"
    );
    // Nobody locks themselves out: not the last platform administrator, not by deleting
    // or demoting themselves, not by revoking the token they are talking with.
    let (s, p) = api.admin(Method::DELETE, "/users/admin", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    let (s, p) = api
        .admin(
            Method::PATCH,
            "/users/admin",
            Some(json!({"spec": {"platformAdmin": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    let (_, me) = api.call_as(Who::Developer, Method::GET, "/whoami", None).await;
    let own = me["token"]["id"].as_str().unwrap();
    let (s, p) = api
        .call_as(Who::Developer, Method::DELETE, &format!("/tokens/{own}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    assert_eq!(
        api.call_as(Who::Developer, Method::GET, "/whoami", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn quotas_refuse_deploys_that_do_not_fit() {
    let api = Api::start().await;
    let mut t = team();
    t["spec"]["quotas"] = json!({"production": {"cpu": "1", "memory": "512Mi", "replicas": 4}});
    assert!(api.admin(Method::PUT, "/teams/pay", Some(t)).await.0.is_success());
    // Without limits the application's use cannot be counted.
    let (s, p) = api
        .call_as(
            Who::Releaser,
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "production"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["type"], "https://berth.dev/problems/quota-exceeded");
    let paths: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["spec.resources.cpu", "spec.resources.memory"]);

    let mut app = application("web", "pay");
    app["spec"]["resources"] = json!({"cpu": "300m", "memory": "128Mi"});
    app["spec"]["replicas"] = json!(3);
    assert!(
        api.admin(Method::PUT, "/applications/web", Some(app))
            .await
            .0
            .is_success()
    );
    let (s, d) = api
        .call_as(
            Who::Releaser,
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "production"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");

    // A second application of the team: what is left is 100m, 128Mi, 1 replica.
    let mut shop = application("shop", "pay");
    shop["spec"]["resources"] = json!({"cpu": "200m", "memory": "128Mi"});
    shop["spec"]["replicas"] = json!(2);
    assert!(
        api.admin(Method::PUT, "/applications/shop", Some(shop))
            .await
            .0
            .is_success()
    );
    let (s, p) = api
        .call_as(
            Who::Releaser,
            Method::POST,
            "/applications/shop/deploy",
            Some(json!({"environment": "production"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "cpu 400m requested + 900m in use by the team's other applications = 1300m, above the quota of 1"
        ),
        "{detail}"
    );
    assert!(detail.contains("replicas 2 requested + 3 in use"), "{detail}");
    // Another environment has no quota.
    let (s, _) = api
        .call_as(
            Who::Releaser,
            Method::POST,
            "/applications/shop/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let api = Api::start_with(RateLimit {
        per_second: 1.0,
        burst: 30,
    })
    .await;
    let mut limited = None;
    for _ in 0..40 {
        let res = api
            .http
            .get(format!("{}/api/v1/whoami", api.base))
            .bearer_auth(&api.tokens[&Who::Outsider])
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("no 429 within 40 requests");
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // Other tokens have their own budget.
    assert_eq!(
        api.call_as(Who::Viewer, Method::GET, "/whoami", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let api = Api::start().await;
    for path in ["/healthz", "/api/v1/whoami", "/api/v1/nope"] {
        let res = api
            .http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&api.tokens[&Who::Viewer])
            .send()
            .await
            .unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
}

#[tokio::test]
async fn the_audit_log_records_every_change_and_verifies() {
    let api = Api::start().await;
    let (s, log) = api.admin(Method::GET, "/audit?actor=admin&kind=Team", None).await;
    assert_eq!(s, StatusCode::OK);
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{log}");
    assert_eq!(items[0]["name"], "pay");
    assert_eq!(items[0]["operation"], "create");
    assert!(items[0]["after"].as_str().unwrap().len() == 64);
    api.call_as(
        Who::Developer,
        Method::PATCH,
        "/applications/web",
        Some(json!({"spec": {"replicas": 2}})),
    )
    .await;
    let (_, log) = api.admin(Method::GET, "/audit?actor=dev", None).await;
    let e = &log["items"][0];
    assert_eq!(
        (e["kind"].as_str(), e["name"].as_str(), e["operation"].as_str()),
        (Some("Application"), Some("web"), Some("update"))
    );
    assert_ne!(e["before"], e["after"]);
    let (s, v) = api.admin(Method::GET, "/audit/verify", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() > 10);
    assert!(v["objects"].as_u64().unwrap() > 3, "{v}");

    // The checkpoint it hands out verifies later; one altered or garbled does not.
    let c = &v["checkpoint"];
    let checkpoint = format!(
        "{}:{}:{}",
        c["seq"],
        c["hash"].as_str().unwrap(),
        c["mac"].as_str().unwrap()
    );
    let verify = |checkpoint: String| {
        let api = &api;
        async move {
            let res = api
                .http
                .get(format!("{}/api/v1/audit/verify", api.base))
                .query(&[("checkpoint", checkpoint)])
                .bearer_auth(&api.tokens[&Who::PlatformAdmin])
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (s, later) = verify(checkpoint.clone()).await;
    assert_eq!((s, &later["ok"]), (StatusCode::OK, &json!(true)), "{later}");
    let forged = checkpoint.replacen(&c["seq"].to_string(), "1", 1);
    let (s, v) = verify(forged).await;
    assert_eq!((s, &v["ok"]), (StatusCode::OK, &json!(false)), "{v}");
    assert!(
        v["messages"][0].as_str().unwrap().contains("checkpoint given"),
        "{v}"
    );
    let (s, p) = verify("372".to_owned()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("seq:hash:mac"), "{p}");
}

#[test]
fn the_document_describes_answers_as_they_are_sent() {
    let doc = serde_json::to_value(berth_api::openapi()).unwrap();
    let mut problems = 0;
    let mut streams = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for status in ["401", "403", "429"] {
                assert!(responses.contains_key(status), "{method} {path} lacks {status}");
            }
            for (status, r) in responses {
                let content = r["content"].as_object().cloned().unwrap_or_default();
                for (media, c) in &content {
                    let is_problem = c["schema"]["$ref"] == "#/components/schemas/Problem";
                    if is_problem {
                        problems += 1;
                        assert_eq!(media, "application/problem+json", "{method} {path} {status}");
                    }
                    if media == "text/event-stream" {
                        streams += 1;
                        assert_eq!(
                            c["schema"]["type"], "object",
                            "{method} {path}: events are objects"
                        );
                        assert_eq!(c["schema"]["properties"]["data"]["type"], "string");
                    }
                }
            }
        }
    }
    assert!(
        problems > 100 && streams >= 2,
        "{problems} problems, {streams} streams"
    );
}

#[tokio::test]
async fn rotating_the_key_seals_every_secret_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
    let token = auth::ensure_bootstrap_token(store.as_ref())
        .await
        .unwrap()
        .unwrap();
    let (old, new) = (berth_secrets::new_key_text(), berth_secrets::new_key_text());
    // Two servers over one store: before the rotation (old key) and after (new key first).
    let serve = |keys: String| {
        let state = ApiState {
            store: store.clone(),
            resolver: Arc::new(Pinned),
            changed: Arc::new(Notify::new()),
            domain: "localhost".into(),
            router_port: None,
            builds: Arc::new(NoBuilds),
            clock: Arc::new(berth_core::ports::SystemClock),
            clusters: Arc::new(berth_core::ports::NoClusterAccess),
            metrics: Default::default(),
            syncs: Default::default(),
        };
        let keyring = Keyring::parse(&keys, "test keys").unwrap();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
            let app = berth_api::router_with(state, Governance::new(Arc::new(keyring), RateLimit::default()));
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            base
        }
    };
    let http = Client::new();
    let call = |base: String, method: Method, path: &str, body: Option<Value>| {
        let mut req = http.request(method, format!("{base}{path}")).bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let before = serve(old.to_string()).await;
    let (s, _) = call(
        before.clone(),
        Method::PUT,
        "/applications/web",
        Some(application("web", "default")),
    )
    .await;
    assert!(s.is_success());
    let (s, set) = call(
        before.clone(),
        Method::PUT,
        "/applications/web/secrets/db",
        Some(json!({"value": "v1"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{set}");
    let old_id = Keyring::parse(&old, "old").unwrap().active_id().to_owned();
    assert_eq!(set["keyId"], old_id.as_str());

    let after = serve(format!("{}\n{}", new.as_str(), old.as_str())).await;
    let (s, r) = call(after.clone(), Method::POST, "/secrets/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let new_id = Keyring::parse(&new, "new").unwrap().active_id().to_owned();
    assert_eq!(r, json!({"keyId": new_id, "resealed": 1, "total": 1}));
    let (_, r) = call(after.clone(), Method::POST, "/secrets/rotate", None).await;
    assert_eq!(r["resealed"], 0, "nothing left under the old key");
    let (_, list) = call(after, Method::GET, "/applications/web/secrets", None).await;
    assert_eq!(list["items"][0]["keyId"], new_id.as_str());
    assert_eq!(list["items"][0]["version"], 1, "re-sealing is not a new version");

    // The new key alone now opens it; the old key is no longer needed.
    let stored = berth_core::repo::get::<berth_core::objects::SecretKind>(store.as_ref(), "web.db")
        .await
        .unwrap()
        .unwrap();
    let only_new = Keyring::parse(&new, "new").unwrap();
    let value = only_new
        .open(&stored.spec.sealed, &berth_secrets::secret_aad("web", "db", 1))
        .unwrap();
    assert_eq!(value.expose(), "v1");
}

// === One strict parse per request (issue 8, items 1, 13, 15, 16) ===

impl Api {
    /// Sends `body` as it is, with `content_type` (none when `None`).
    async fn raw_as(
        &self,
        who: Who,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: String,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.tokens[&who])
            .body(body);
        if let Some(c) = content_type {
            req = req.header("content-type", c);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A team `ops` the developer has no role in, and a `default` team where the
    /// developer is a developer (as on a platform whose default team is open to all).
    async fn other_teams(&self) {
        for (name, members) in [
            ("ops", json!([{"user": "tina", "roles": ["admin"]}])),
            ("default", json!([{"user": "dev", "roles": ["developer"]}])),
        ] {
            let doc = json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": name},
                "spec": {"members": members}});
            let (s, b) = self
                .admin(Method::PUT, &format!("/teams/{name}"), Some(doc))
                .await;
            assert!(s.is_success(), "{b}");
        }
    }
}

/// The matrix row of every documented operation that takes a body, with its path made
/// concrete for `env`.
fn operations_with_a_body(env: &str) -> Vec<(Method, String, Value)> {
    let doc = serde_json::to_value(berth_api::openapi()).unwrap();
    let rows = matrix();
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_none() {
                continue;
            }
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let row = rows
                .iter()
                .find(|r| r.method == method && matches_template(template, r.path))
                .unwrap_or_else(|| panic!("the matrix has no row for {method} {template}"));
            let body = row
                .body
                .as_ref()
                .map_or_else(|| json!({}), |b| substitute(b, env));
            out.push((method, row.path.replace("ENV", env), body));
        }
    }
    assert!(out.len() >= 20, "only {} operations take a body", out.len());
    out
}

/// `body` with its first key given twice (a key `x` twice for an empty object).
fn with_duplicate_key(body: &Value) -> String {
    let text = body.to_string();
    match body.as_object().and_then(|o| o.iter().next()) {
        Some((key, value)) => format!("{{{}:{value},{}", json!(key), &text[1..]),
        None => r#"{"x":1,"x":1}"#.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_is_parsed_once_and_strictly() {
    let api = Api::start().await;
    api.other_teams().await;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, body) in operations_with_a_body("production") {
        let cases = [
            (
                "trailing bytes",
                Some("application/json"),
                format!("{body} x"),
                StatusCode::BAD_REQUEST,
                "more after its JSON document",
            ),
            (
                "a second document",
                Some("application/json"),
                format!("{body}{body}"),
                StatusCode::BAD_REQUEST,
                "more after its JSON document",
            ),
            (
                "a duplicate key",
                Some("application/json"),
                with_duplicate_key(&body),
                StatusCode::BAD_REQUEST,
                "appears twice",
            ),
            (
                "another content type",
                Some("text/plain"),
                body.to_string(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "application/json",
            ),
            (
                "no content type",
                None,
                body.to_string(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "names none",
            ),
        ];
        for (case, content_type, text, want, says) in cases {
            api.fixture().await;
            let (status, problem) = api
                .raw_as(Who::Developer, method.clone(), &path, content_type, text.clone())
                .await;
            checked += 1;
            let detail = problem["detail"].as_str().unwrap_or_default();
            if status != want || !detail.contains(says) {
                failures.push(format!(
                    "{method} {path} with {case} ({text}): {status} {problem}"
                ));
            }
        }
    }
    // Nothing changed: the application is where it was and nothing reached production.
    let (_, web) = api.admin(Method::GET, "/applications/web", None).await;
    assert_eq!(web["spec"]["team"], "pay");
    let (_, prod) = api
        .admin(Method::GET, "/deployments?environment=production", None)
        .await;
    assert_eq!(prod["items"], json!([]), "{prod}");
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_reported_bypasses_are_closed() {
    let api = Api::start().await;
    api.other_teams().await;
    let json_type = Some("application/json");
    // A developer deploys and promotes to production with trailing bytes.
    for (path, body) in [
        (
            "/applications/web/deploy",
            r#"{"environment":"production","release":1} x"#,
        ),
        (
            "/applications/web/promote",
            r#"{"from":"qa","to":"production"} x"#,
        ),
        ("/applications/web/rollback", r#"{"environment":"production"} x"#),
    ] {
        let (s, p) = api
            .raw_as(Who::Developer, Method::POST, path, json_type, body.to_owned())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {p}");
    }
    // …or with the environment given twice, the second one production.
    let (s, p) = api
        .raw_as(
            Who::Developer,
            Method::POST,
            "/applications/web/deploy",
            json_type,
            r#"{"environment":"qa","environment":"production","release":1}"#.to_owned(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    // Moves the application into a team without rights there.
    for body in [
        r#"{"spec":{"team":"ops"}} x"#,
        r#"{"spec":{"team":"pay","team":"ops"}}"#,
    ] {
        let (s, p) = api
            .raw_as(
                Who::Developer,
                Method::PATCH,
                "/applications/web",
                Some("application/merge-patch+json"),
                body.to_owned(),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {p}");
    }
    // Removing the team moves it to the default team: that needs rights there too.
    api.admin(Method::DELETE, "/teams/default", None).await;
    let (s, p) = api
        .call_as(
            Who::Developer,
            Method::PATCH,
            "/applications/web",
            Some(json!({"spec": {"team": null}})),
        )
        .await;
    assert_eq!(
        (s, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("team.apply")),
        "{p}"
    );
    api.other_teams().await;
    // Creates an application in another team.
    let doc = application("sneaky", "ops");
    let (s, p) = api
        .raw_as(
            Who::Developer,
            Method::POST,
            "/applications",
            json_type,
            format!("{doc} x"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    let (s, p) = api
        .call_as(Who::Developer, Method::POST, "/applications", Some(doc))
        .await;
    assert_eq!(
        (s, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("team.apply"))
    );

    let (_, web) = api.admin(Method::GET, "/applications/web", None).await;
    assert_eq!(web["spec"]["team"], "pay");
    assert_eq!(
        api.admin(Method::GET, "/applications/sneaky", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, prod) = api
        .admin(Method::GET, "/deployments?environment=production", None)
        .await;
    assert_eq!(prod["items"], json!([]), "{prod}");

    // What is allowed still works, and integral decimals are integers.
    let (s, p) = api
        .raw_as(
            Who::Developer,
            Method::POST,
            "/applications/web/deploy",
            json_type,
            r#"{"environment":"qa","release":1.0}"#.to_owned(),
        )
        .await;
    assert!(s.is_success(), "{s} {p}");
    let (s, p) = api
        .raw_as(
            Who::Developer,
            Method::PATCH,
            "/applications/web",
            Some("application/merge-patch+json; charset=utf-8"),
            r#"{"spec":{"replicas":2.0}}"#.to_owned(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["spec"]["replicas"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_the_caller_may_not_read_is_not_found() {
    let api = Api::start().await;
    let mut failures = Vec::new();
    for row in matrix() {
        let scoped = row.path.starts_with("/applications/web") || row.path.starts_with("/deployments/web");
        if !scoped {
            continue;
        }
        api.fixture().await;
        let path = row.path.replace("ENV", "qa");
        let body = row.body.as_ref().map(|b| substitute(b, "qa"));
        let (status, problem) = api
            .call_as(Who::Outsider, row.method.clone(), &path, body.clone())
            .await;
        // The same request about an application that does not exist, as an administrator.
        let missing = path.replace("/web", "/nope");
        let (want_status, want) = api
            .call_as(Who::PlatformAdmin, row.method.clone(), &missing, body)
            .await;
        let want = serde_json::from_str::<Value>(&want.to_string().replace("nope", "web")).unwrap();
        let replaces = row.method == Method::PUT && row.path == "/applications/web";
        if status != StatusCode::NOT_FOUND
            || problem.to_string().contains("pay")
            || (!replaces && (want_status, &want) != (StatusCode::NOT_FOUND, &problem))
        {
            failures.push(format!(
                "{} {path}: {status} {problem}; a missing application answers {want_status} {want}",
                row.method
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Who may read the team but lacks the permission still hears what is missing.
    let (s, p) = api
        .call_as(
            Who::Viewer,
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa", "release": 1})),
        )
        .await;
    assert_eq!(
        (s, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("deploy.nonproduction"))
    );
}

#[tokio::test]
async fn events_show_only_what_the_caller_may_read() {
    let api = Api::start().await;
    let events = |v: &Value| -> Vec<Value> { v["items"].as_array().unwrap().clone() };
    let (_, all) = api.admin(Method::GET, "/events?limit=1000", None).await;
    let all = events(&all);
    let of_web = |e: &Value| e["application"] == "web" || (e["kind"] == "Application" && e["name"] == "web");
    assert!(
        all.iter().any(|e| e["kind"] == "Application" && of_web(e)),
        "the fixture made web"
    );
    assert!(all.iter().any(|e| e["kind"] == "Cluster"));

    let (s, seen) = api
        .call_as(Who::Outsider, Method::GET, "/events?limit=1000", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let seen = events(&seen);
    for e in &seen {
        assert!(
            !of_web(e)
                && !["Application", "Release", "Deployment", "Build", "Secret"]
                    .contains(&e["kind"].as_str().unwrap()),
            "an outsider sees {e}"
        );
    }
    // Platform events stay visible to everyone signed in.
    assert!(seen.iter().any(|e| e["kind"] == "Cluster"), "{seen:?}");
    let (_, viewer) = api
        .call_as(Who::Viewer, Method::GET, "/events?limit=1000", None)
        .await;
    assert!(
        events(&viewer)
            .iter()
            .any(|e| e["kind"] == "Application" && of_web(e))
    );

    // The stream sends the same: read it up to the outsider's last event.
    let last = seen.last().unwrap()["seq"].as_u64().unwrap();
    let mut res = api
        .http
        .get(format!("{}/api/v1/events/stream", api.base))
        .bearer_auth(&api.tokens[&Who::Outsider])
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !text.contains(&format!("id: {last}\n")) {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .expect("stream too slow")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk.expect("stream ended")));
    }
    let streamed: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(streamed, seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_are_refused_everywhere() {
    let api = Api::start().await;
    let mut failures = Vec::new();
    for row in matrix() {
        api.fixture().await;
        let path = row.path.replace("ENV", "qa");
        let sep = if path.contains('?') { '&' } else { '?' };
        let body = row.body.as_ref().map(|b| substitute(b, "qa"));
        let (status, problem) = api
            .admin(row.method.clone(), &format!("{path}{sep}dryrun=All"), body)
            .await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        if status != StatusCode::BAD_REQUEST || !detail.contains("'dryrun'") {
            let problem: String = problem.to_string().chars().take(300).collect();
            failures.push(format!("{} {path}: {status} {problem}", row.method));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The reported cases: a dry run (or a misspelt one) changes nothing; `since` is no
    // filter.
    let (s, p) = api
        .admin(
            Method::PATCH,
            "/applications/web?dryRun=All",
            Some(json!({"spec": {"replicas": 7}})),
        )
        .await;
    assert_eq!(
        (s, p["spec"]["replicas"].clone()),
        (StatusCode::OK, json!(7)),
        "{p}"
    );
    let (s, p) = api
        .admin(
            Method::PATCH,
            "/applications/web?dryrun=All",
            Some(json!({"spec": {"replicas": 7}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert_ne!(
        api.admin(Method::GET, "/applications/web", None).await.1["spec"]["replicas"],
        7
    );
    let (s, p) = api.admin(Method::GET, "/events?since=2026-01-01", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("accepts after, application, limit"),
        "{p}"
    );
    let (s, _) = api.admin(Method::GET, "/events?limit=1&limit=2", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn limits_are_whole_numbers_within_their_documented_range() {
    let api = Api::start().await;
    let doc = serde_json::to_value(berth_api::openapi()).unwrap();
    let mut lists = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(params) = item["get"]["parameters"].as_array() else {
            continue;
        };
        if !params.iter().any(|p| p["name"] == "limit") {
            continue;
        }
        if path.ends_with("/stream") {
            // A stream that is accepted never ends; its limit is checked before it starts.
            let (s, p) = api.admin(Method::GET, &format!("{path}?limit=1001"), None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {p}");
            continue;
        }
        lists += 1;
        let path = path.replace("{name}", "web");
        let (s, p) = api.admin(Method::GET, &format!("{path}?limit=1001"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {p}");
        assert!(
            p["detail"].as_str().unwrap().contains("at most 1000"),
            "{path}: {p}"
        );
        let (s, p) = api.admin(Method::GET, &format!("{path}?limit=0"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {p}");
        let (s, p) = api.admin(Method::GET, &format!("{path}?limit=1.5"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {p}");
        // Integral decimals are whole numbers, as the document's generators write them.
        let (s, p) = api.admin(Method::GET, &format!("{path}?limit=1.0"), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {p}");
        let (s, p) = api.admin(Method::GET, &format!("{path}?limit=1000"), None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {p}");
    }
    assert!(lists >= 10, "only {lists} lists");
    let (s, p) = api
        .admin(Method::GET, "/applications/web/releases/1.0", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
}

#[tokio::test]
async fn malformed_image_references_are_refused_with_their_field() {
    let api = Api::start().await;
    for image in [
        "127.0.0.1:5000/../web:1",
        "127.0.0.1:5000/team/..:1",
        "127.0.0.1:5000/a..b:1",
        "127.0.0.1:5000/web-:1",
        "bad_host.example/web:1",
        "127.0.0.1:99999/web:1",
    ] {
        // In an application's spec…
        let (s, p) = api
            .admin(
                Method::PUT,
                "/applications/other",
                Some(application("other", "pay")),
            )
            .await;
        assert!(s.is_success(), "{p}");
        let (s, p) = api
            .admin(
                Method::PATCH,
                "/applications/other",
                Some(json!({"spec": {"image": image}})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{image}: {p}");
        assert_eq!(p["errors"][0]["path"], "spec.image", "{image}: {p}");
        let mut doc = application("fresh", "pay");
        doc["spec"]["image"] = json!(image);
        let (s, p) = api.admin(Method::POST, "/applications", Some(doc)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{image}: {p}");
        // …and in a release request, before the registry is asked.
        let (s, p) = api
            .admin(
                Method::POST,
                "/applications/web/releases",
                Some(json!({"image": image})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{image}: {p}");
        assert_eq!(p["errors"][0]["path"], "image", "{image}: {p}");
    }
    assert_eq!(
        api.admin(Method::GET, "/applications/fresh", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_application_needs_deploy_rights_where_it_runs_and_keeps_its_history() {
    let api = Api::start().await;
    // The fixture runs release 1 in qa; a releaser puts it in production too.
    let (s, b) = api
        .call_as(
            Who::Releaser,
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "production", "release": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Deleting stops it in production: a developer lacks that right, a releaser lacks
    // the right to change the application.
    let (s, p) = api
        .call_as(Who::Developer, Method::DELETE, "/applications/web", None)
        .await;
    assert_eq!(
        (s, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("deploy.production")),
        "{p}"
    );
    let (s, p) = api
        .call_as(Who::Releaser, Method::DELETE, "/applications/web", None)
        .await;
    assert_eq!(
        (s, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("team.apply")),
        "{p}"
    );

    // Even with every right it is refused while it runs in production, saying where and
    // how to go ahead; nothing changes.
    let (s, p) = api.admin(Method::DELETE, "/applications/web", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("production environment(s) production"), "{p}");
    assert!(p.to_string().contains("force=true"), "{p}");
    assert_eq!(
        api.admin(Method::GET, "/applications/web", None).await.0,
        StatusCode::OK
    );
    let (s, p) = api
        .admin(Method::DELETE, "/applications/web?force=maybe", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");

    let (s, p) = api
        .admin(Method::DELETE, "/applications/web?force=true", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        api.admin(Method::GET, "/applications/web", None).await.0,
        StatusCode::NOT_FOUND
    );

    // History stays readable, to the team that owned it and to nobody else.
    let (s, list) = api
        .call_as(Who::Viewer, Method::GET, "/applications/web/releases", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    for path in [
        "/applications/web/releases/1",
        "/deployments/web-production-1",
        "/deployments/web-qa-1",
    ] {
        let (s, doc) = api.call_as(Who::Viewer, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {doc}");
        if path.starts_with("/deployments") {
            assert!(
                doc["status"]["retiredAt"].is_string(),
                "{path} is not retired: {doc}"
            );
        }
        let (s, _) = api.call_as(Who::Outsider, Method::GET, path, None).await;
        assert!(
            matches!(s, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{path} readable by an outsider: {s}"
        );
    }

    // A re-created application of the same name starts from nothing that runs, and its
    // numbers continue after the old ones; the old secrets are gone.
    let (s, b) = api
        .admin(Method::PUT, "/applications/web", Some(application("web", "pay")))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, status) = api.admin(Method::GET, "/applications/web/status", None).await;
    assert_eq!(status["environments"], json!([]), "{status}");
    let (_, secrets) = api.admin(Method::GET, "/applications/web/secrets", None).await;
    assert_eq!(secrets["items"], json!([]), "{secrets}");
    let (s, r) = api
        .admin(
            Method::POST,
            "/applications/web/releases",
            Some(json!({"description": "after re-creation"})),
        )
        .await;
    assert_eq!(
        (s, r["spec"]["number"].as_u64()),
        (StatusCode::CREATED, Some(2)),
        "{r}"
    );
    let (s, d) = api
        .admin(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa", "release": 2})),
        )
        .await;
    assert_eq!(
        (s, d["metadata"]["name"].as_str()),
        (StatusCode::CREATED, Some("web-qa-2")),
        "{d}"
    );

    // An application that runs only outside production is deleted by a developer.
    let (s, p) = api
        .call_as(Who::Developer, Method::DELETE, "/applications/web", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_are_per_environment_and_production_values_need_production_rights() {
    let api = Api::start().await;
    let value = |v: &str| Some(json!({"value": v}));
    let put = "/applications/web/secrets/db";

    // A developer sets neither production's value nor the one for all environments
    // (which would reach production too).
    for path in [format!("{put}?environment=production"), put.to_owned()] {
        let (s, p) = api
            .call_as(Who::Developer, Method::PUT, &path, value("mine"))
            .await;
        assert_eq!(
            (s, p["missingPermission"].as_str()),
            (StatusCode::FORBIDDEN, Some("deploy.production")),
            "{path}: {p}"
        );
    }
    let (s, info) = api
        .call_as(
            Who::Releaser,
            Method::PUT,
            &format!("{put}?environment=production"),
            value("prod-pw"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{info}");
    assert_eq!(info["environment"], "production");
    let (s, info) = api
        .call_as(
            Who::Developer,
            Method::PUT,
            &format!("{put}?environment=qa"),
            value("qa-pw"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{info}");
    // Versions count over every value of the secret (the fixture set version 1).
    assert_eq!(info["version"], 3, "{info}");

    let (_, list) = api
        .call_as(Who::Viewer, Method::GET, "/applications/web/secrets", None)
        .await;
    let values: Vec<(Value, Value)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["environment"].clone(), i["version"].clone()))
        .collect();
    assert_eq!(
        values,
        [
            (Value::Null, json!(1)),
            (json!("production"), json!(2)),
            (json!("qa"), json!(3))
        ],
        "{list}"
    );
    assert!(!list.to_string().contains("pw"), "values never come back: {list}");

    // Deleting production's value needs production rights too.
    let (s, p) = api
        .call_as(
            Who::Developer,
            Method::DELETE,
            &format!("{put}?environment=production"),
            None,
        )
        .await;
    assert_eq!(
        (s, p["missingPermission"].as_str()),
        (StatusCode::FORBIDDEN, Some("deploy.production"))
    );

    // The query the permission is decided on is the one the handler reads: anything
    // ambiguous or unknown is refused before either acts, and nothing changes.
    for query in [
        "?environment=qa&environment=production",
        "?env=production",
        "?environment=qa&x=1",
    ] {
        let (s, p) = api
            .call_as(
                Who::Developer,
                Method::PUT,
                &format!("{put}{query}"),
                value("sneaky"),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {p}");
    }
    let (_, after) = api.admin(Method::GET, "/applications/web/secrets", None).await;
    assert_eq!(after["items"].as_array().unwrap().len(), 3, "{after}");
    let (s, p) = api
        .admin(Method::PUT, &format!("{put}?environment=nowhere"), value("x"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (s, p) = api
        .call_as(
            Who::Developer,
            Method::DELETE,
            &format!("{put}?environment=qa"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
}
