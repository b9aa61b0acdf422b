//! Identity over real HTTP on loopback with a real SQLite store: rate limits per client
//! address and per user (floods without a token or with invalid tokens are refused before
//! they cost the store), the cap on a user's tokens, tokens that never outlive the token
//! that made them, rotation of the bootstrap token, and deleting a user taking it out of
//! every team.
//!
//! The store is wrapped to count token lookups, and the server is served with each
//! client's address (`ConnectInfo`), as `berth server` does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use berth_api::{ApiState, Governance, RateLimit, auth};
use berth_core::{
    NewEvent,
    audit::{AuditEntry, AuditQuery, Change, Checkpoint, Verification},
    image::ImageRef,
    objects::DeploymentPhase,
    ports::{
        BuildError, BuildRequest, BuildTicket, Builds, Commit, DeploymentQuery, EventQuery, GoverningQuery,
        ImageResolver, ListQuery, LogChunk, Page, ResolveError, Store, StoreError, TeamQuery, TokenRecord,
        Write,
    },
};
use berth_secrets::Keyring;
use berth_store::SqliteStore;
use chrono::{DateTime, Utc};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The SQLite store, counting how often a token is looked up.
struct Counting {
    inner: SqliteStore,
    lookups: AtomicUsize,
}

#[async_trait]
impl Store for Counting {
    async fn commit_as(
        &self,
        change: &Change,
        writes: Vec<Write>,
        events: Vec<NewEvent>,
    ) -> Result<Commit, StoreError> {
        self.inner.commit_as(change, writes, events).await
    }
    async fn get(&self, kind: &str, name: &str) -> Result<Option<Value>, StoreError> {
        self.inner.get(kind, name).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn governing_deployment(&self, app: &str, env: &str) -> Result<Option<Value>, StoreError> {
        self.inner.governing_deployment(app, env).await
    }
    async fn last_succeeded_deployment(&self, app: &str, env: &str) -> Result<Option<Value>, StoreError> {
        self.inner.last_succeeded_deployment(app, env).await
    }
    async fn deployments(&self, query: &DeploymentQuery) -> Result<Page, StoreError> {
        self.inner.deployments(query).await
    }
    async fn governing_deployments(&self, query: &GoverningQuery) -> Result<Page, StoreError> {
        self.inner.governing_deployments(query).await
    }
    async fn governing_deployments_by_phase(&self) -> Result<BTreeMap<DeploymentPhase, u64>, StoreError> {
        self.inner.governing_deployments_by_phase().await
    }
    async fn deployments_of_releases(&self, app: &str, releases: &[u64]) -> Result<Vec<Value>, StoreError> {
        self.inner.deployments_of_releases(app, releases).await
    }
    async fn newest_release(&self, app: &str) -> Result<Option<Value>, StoreError> {
        self.inner.newest_release(app).await
    }
    async fn newest_built_release(&self, app: &str) -> Result<Option<Value>, StoreError> {
        self.inner.newest_built_release(app).await
    }
    async fn releases_with_digest(&self, app: &str, digest: &str) -> Result<Vec<Value>, StoreError> {
        self.inner.releases_with_digest(app, digest).await
    }
    async fn releases_with_template(&self, app: &str, hash: &str) -> Result<Vec<Value>, StoreError> {
        self.inner.releases_with_template(app, hash).await
    }
    async fn team_releases_in(&self, team: &str, env: &str) -> Result<Vec<Value>, StoreError> {
        self.inner.team_releases_in(team, env).await
    }
    async fn team_applications(&self, query: &TeamQuery) -> Result<Page, StoreError> {
        self.inner.team_applications(query).await
    }
    async fn reusable_build(
        &self,
        app: &str,
        revision: &str,
        hash: &str,
    ) -> Result<Option<Value>, StoreError> {
        self.inner.reusable_build(app, revision, hash).await
    }
    async fn unfinished_builds(&self, after: Option<u64>, limit: u32) -> Result<Page, StoreError> {
        self.inner.unfinished_builds(after, limit).await
    }
    async fn next_release_number(&self, app: &str) -> Result<u64, StoreError> {
        self.inner.next_release_number(app).await
    }
    async fn next_build_number(&self, app: &str) -> Result<u64, StoreError> {
        self.inner.next_build_number(app).await
    }
    async fn next_deployment_number(&self, app: &str, env: &str) -> Result<u64, StoreError> {
        self.inner.next_deployment_number(app, env).await
    }
    async fn events(&self, query: &EventQuery) -> Result<Vec<berth_core::Event>, StoreError> {
        self.inner.events(query).await
    }
    async fn last_event(&self) -> Result<u64, StoreError> {
        self.inner.last_event().await
    }
    async fn wait_for_events(&self, after: u64, timeout: Duration) {
        self.inner.wait_for_events(after, timeout).await;
    }
    async fn put_token(&self, token: TokenRecord, change: &Change) -> Result<(), StoreError> {
        self.inner.put_token(token, change).await
    }
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_token(hash).await
    }
    fn generation(&self) -> Option<u64> {
        self.inner.generation()
    }
    async fn count_tokens(&self) -> Result<u64, StoreError> {
        self.inner.count_tokens().await
    }
    async fn list_tokens(&self, subject: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list_tokens(subject).await
    }
    async fn revoke_token(
        &self,
        id: &str,
        at: DateTime<Utc>,
        change: &Change,
    ) -> Result<TokenRecord, StoreError> {
        self.inner.revoke_token(id, at, change).await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(query).await
    }
    async fn verify_audit(&self, given: Option<&Checkpoint>) -> Result<Verification, StoreError> {
        self.inner.verify_audit(given).await
    }
    async fn writable(&self) -> Result<(), StoreError> {
        self.inner.writable().await
    }
}

/// Neither resolves nor builds: these tests never deploy.
struct Nothing;

#[async_trait]
impl ImageResolver for Nothing {
    async fn resolve(&self, image: &ImageRef) -> Result<String, ResolveError> {
        panic!("no image is resolved in these tests: {image:?}")
    }
}

#[async_trait]
impl Builds for Nothing {
    async fn request(&self, _: BuildRequest) -> Result<BuildTicket, BuildError> {
        panic!("no build is requested in these tests")
    }
    async fn log(&self, _: &str, _: u64) -> Result<LogChunk, BuildError> {
        panic!("no build log is read in these tests")
    }
    async fn wait_log(&self, _: &str, _: u64, _: Duration) {}
}

/// Limits no test reaches unless it means to.
const PLENTY: RateLimit = RateLimit {
    per_second: 1e6,
    burst: 1_000_000,
};

struct Api {
    base: String,
    http: Client,
    admin: String,
    store: Arc<Counting>,
    dir: tempfile::TempDir,
}

impl Api {
    async fn start(per_user: RateLimit, per_address: RateLimit) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Counting {
            inner: SqliteStore::open(&dir.path().join("berth.db")).await.unwrap(),
            lookups: AtomicUsize::new(0),
        });
        let admin = auth::ensure_bootstrap_token(store.as_ref())
            .await
            .unwrap()
            .unwrap();
        let state = ApiState {
            store: store.clone(),
            resolver: Arc::new(Nothing),
            changed: Arc::new(Notify::new()),
            domain: "localhost".into(),
            router_port: None,
            builds: Arc::new(Nothing),
            clock: Arc::new(berth_core::ports::SystemClock),
            clusters: Arc::new(berth_core::ports::NoClusterAccess),
            metrics: Default::default(),
            syncs: Default::default(),
        };
        let governance =
            Governance::new(Arc::new(Keyring::generate()), per_user).with_address_limit(per_address);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            berth_api::router_with(state, governance).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://{addr}"),
            http: Client::new(),
            admin,
            store,
            dir,
        }
    }

    async fn call(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let text = res.text().await.unwrap();
        Answer {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call(Some(&self.admin), method, path, body).await
    }

    /// Makes user `name` and a token for it (made by the bootstrap token, which never
    /// expires), returning the token's secret.
    async fn user_with_token(&self, name: &str) -> String {
        let a = self
            .admin(
                Method::PUT,
                &format!("/users/{name}"),
                Some(json!({"apiVersion": "berth.dev/v1", "kind": "User", "metadata": {"name": name}, "spec": {}})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        self.token_for(name).await
    }

    async fn token_for(&self, name: &str) -> String {
        let a = self
            .mint(&self.admin, json!({"name": "test", "user": name}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["secret"].as_str().unwrap().to_owned()
    }

    /// `POST /tokens` with `token`.
    async fn mint(&self, token: &str, body: Value) -> Answer {
        self.call(Some(token), Method::POST, "/tokens", Some(body)).await
    }

    fn lookups(&self) -> usize {
        self.store.lookups.load(Ordering::SeqCst)
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

/// Sends `n` requests made by `token_of(i)`, returning their answers.
async fn flood(api: &Api, n: usize, token_of: impl Fn(usize) -> Option<String>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for i in 0..n {
        answers.push(
            api.call(token_of(i).as_deref(), Method::GET, "/whoami", None)
                .await,
        );
    }
    answers
}

fn count(answers: &[Answer], status: StatusCode) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

const TEN: RateLimit = RateLimit {
    per_second: 0.5,
    burst: 10,
};

#[tokio::test]
async fn a_flood_without_a_token_is_refused_with_429() {
    let api = Api::start(PLENTY, TEN).await;
    let answers = flood(&api, 15, |_| None).await;
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 10);
    assert_eq!(count(&answers, StatusCode::TOO_MANY_REQUESTS), 5);
    let last = answers.last().unwrap();
    assert!(
        last.retry_after.is_some_and(|s| (1..=2).contains(&s)),
        "{:?}",
        last.retry_after
    );
    assert!(
        last.body["detail"].as_str().unwrap().contains("this address"),
        "{}",
        last.body
    );
    // The address's budget is spent for valid tokens too, but the liveness probe is exempt.
    assert_eq!(
        api.admin(Method::GET, "/whoami", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let health = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_invalid_tokens_is_refused_with_429_after_bounded_lookups() {
    let api = Api::start(PLENTY, TEN).await;
    let before = api.lookups();
    let answers = flood(&api, 30, |i| Some(format!("berth_invalid{i}"))).await;
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 10);
    assert_eq!(count(&answers, StatusCode::TOO_MANY_REQUESTS), 20);
    assert_eq!(
        api.lookups() - before,
        10,
        "only what the address budget lets through"
    );
}

#[tokio::test]
async fn the_same_refused_token_again_costs_no_lookup() {
    let api = Api::start(PLENTY, PLENTY).await;
    let before = api.lookups();
    let answers = flood(&api, 20, |_| Some("berth_neverissued".to_owned())).await;
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 20);
    assert_eq!(api.lookups() - before, 1, "refused once, remembered after");
    // A revoked token is remembered with its answer too.
    let token = api.user_with_token("dev").await;
    let me = api.call(Some(&token), Method::GET, "/whoami", None).await;
    let id = me.body["token"]["id"].as_str().unwrap().to_owned();
    let a = api.admin(Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let before = api.lookups();
    let answers = flood(&api, 5, |_| Some(token.clone())).await;
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 5);
    assert!(answers[4].body["detail"].as_str().unwrap().contains("revoked"));
    assert_eq!(api.lookups() - before, 1);
}

#[tokio::test]
async fn the_tokens_of_one_user_share_one_budget() {
    let api = Api::start(TEN, PLENTY).await;
    let first = api.user_with_token("dev").await;
    let second = api.token_for("dev").await;
    let answers = flood(&api, 12, |i| {
        Some(if i % 2 == 0 { first.clone() } else { second.clone() })
    })
    .await;
    assert_eq!(
        count(&answers, StatusCode::OK),
        10,
        "two tokens, one budget of 10"
    );
    assert_eq!(count(&answers, StatusCode::TOO_MANY_REQUESTS), 2);
    assert!(
        answers[11].body["detail"].as_str().unwrap().contains("this user"),
        "{}",
        answers[11].body
    );
    // A third token buys nothing more.
    let third = api.token_for("dev").await;
    assert_eq!(
        api.call(Some(&third), Method::GET, "/whoami", None).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another user has a budget of its own.
    let other = api.user_with_token("vic").await;
    assert_eq!(
        api.call(Some(&other), Method::GET, "/whoami", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_holds_at_most_fifty_active_tokens() {
    let api = Api::start(PLENTY, PLENTY).await;
    let own = api.user_with_token("dev").await;
    let mut ids = Vec::new();
    for i in 1..berth_api::identity::MAX_ACTIVE_TOKENS {
        let a = api.mint(&own, json!({"name": format!("t{i}")})).await;
        assert_eq!(a.status, StatusCode::CREATED, "token {i}: {}", a.body);
        ids.push(a.body["token"]["id"].as_str().unwrap().to_owned());
    }
    // The 51st: refused, whoever asks, naming the cap and how to make room.
    let extra = json!({"name": "one-more", "user": "dev"});
    for token in [&own, &api.admin] {
        let a = api.mint(token, extra.clone()).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
        let text = a.body.to_string();
        assert!(
            text.contains("50") && text.contains("berth token revoke"),
            "{text}"
        );
    }
    // Revoked and expired tokens do not count.
    let a = api
        .call(Some(&own), Method::DELETE, &format!("/tokens/{}", ids[0]), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", api.dir.path().join("berth.db").display()))
        .await
        .unwrap();
    sqlx::query("UPDATE tokens SET expires_at = '2000-01-01T00:00:00Z' WHERE id = ?")
        .bind(&ids[1])
        .execute(&db)
        .await
        .unwrap();
    for _ in 0..2 {
        let a = api.mint(&own, extra.clone()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let a = api.mint(&own, extra).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    // The cap is per user: others still make tokens.
    api.user_with_token("vic").await;
}

fn expires_at(a: &Answer) -> DateTime<Utc> {
    a.body["token"]["expiresAt"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_token_never_outlives_the_token_that_made_it() {
    let api = Api::start(PLENTY, PLENTY).await;
    api.user_with_token("dev").await;
    let made = api
        .mint(
            &api.admin,
            json!({"name": "day", "user": "dev", "expiresInDays": 1}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let day = made.body["secret"].as_str().unwrap().to_owned();
    let parent_expiry = expires_at(&made);
    // An explicit lifetime past the parent's is refused, naming the field and the way out.
    for days in [3650, 2, 1] {
        let a = api
            .mint(&day, json!({"name": "long", "expiresInDays": days}))
            .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{days}: {}", a.body);
        let text = a.body.to_string();
        assert!(
            text.contains("expiresInDays")
                && text.contains("outlive")
                && text.contains("leave expiresInDays out"),
            "{text}"
        );
    }
    // Without one, the new token expires with its parent (not in the default 90 days).
    let a = api.mint(&day, json!({"name": "child"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(expires_at(&a), parent_expiry);
    // And so on down the line: a grandchild cannot outlive either.
    let child = a.body["secret"].as_str().unwrap().to_owned();
    let a = api.mint(&child, json!({"name": "grandchild"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(expires_at(&a) <= parent_expiry);
    // A token with time to spare may make a shorter one.
    let a = api
        .mint(
            &api.admin,
            json!({"name": "month", "user": "dev", "expiresInDays": 30}),
        )
        .await;
    let month = a.body["secret"].as_str().unwrap().to_owned();
    let a = api
        .mint(&month, json!({"name": "week", "expiresInDays": 7}))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = api
        .mint(&month, json!({"name": "long", "expiresInDays": 31}))
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert!(a.body.to_string().contains("at most 29 days"), "{}", a.body);
}

#[tokio::test]
async fn rotating_the_bootstrap_token_retires_the_old_one_and_restores_admin() {
    let api = Api::start(PLENTY, PLENTY).await;
    // Another administrator takes `admin`'s platform role away.
    let root = api.user_with_token("root").await;
    let a = api
        .admin(
            Method::PATCH,
            "/users/root",
            Some(json!({"spec": {"platformAdmin": true}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = api
        .call(
            Some(&root),
            Method::PATCH,
            "/users/admin",
            Some(json!({"spec": {"platformAdmin": false}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    let new = auth::rotate_bootstrap_token(api.store.as_ref()).await.unwrap();
    assert_ne!(new, api.admin);
    let old = api.admin(Method::GET, "/whoami", None).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert!(
        old.body["detail"].as_str().unwrap().contains("revoked"),
        "{}",
        old.body
    );
    let me = api.call(Some(&new), Method::GET, "/whoami", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(
        (me.body["user"].as_str(), me.body["platformAdmin"].as_bool()),
        (Some("admin"), Some(true))
    );
    assert!(me.body["token"].get("expiresAt").is_none(), "{}", me.body);
    // Other tokens are untouched, and the rotation is audited.
    assert_eq!(
        api.call(Some(&root), Method::GET, "/whoami", None).await.status,
        StatusCode::OK
    );
    let log = api
        .call(Some(&new), Method::GET, "/audit?action=bootstrap.rotate", None)
        .await;
    let kinds: Vec<&str> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"User") && kinds.contains(&"Token"),
        "{}",
        log.body
    );
}

fn team(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|u| json!({"user": u, "roles": ["developer"]}))
        .collect();
    json!({"apiVersion": "berth.dev/v1", "kind": "Team", "metadata": {"name": name}, "spec": {"members": members}})
}

#[tokio::test]
async fn deleting_a_user_takes_it_out_of_every_team_and_retires_its_tokens() {
    let api = Api::start(PLENTY, PLENTY).await;
    let carl = api.user_with_token("carl").await;
    api.user_with_token("dana").await;
    for (name, members) in [
        ("pay", &["carl", "dana"][..]),
        ("shop", &["carl"][..]),
        ("ops", &["dana"][..]),
    ] {
        let a = api
            .admin(Method::PUT, &format!("/teams/{name}"), Some(team(name, members)))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let a = api.admin(Method::DELETE, "/users/carl", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let members = |a: Answer| -> Vec<String> {
        a.body["spec"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        members(api.admin(Method::GET, "/teams/pay", None).await),
        ["dana"]
    );
    assert!(members(api.admin(Method::GET, "/teams/shop", None).await).is_empty());
    assert_eq!(
        members(api.admin(Method::GET, "/teams/ops", None).await),
        ["dana"]
    );
    // Audited as part of the delete, by whoever deleted.
    let log = api.admin(Method::GET, "/audit?kind=Team&actor=admin", None).await;
    let updated: Vec<&str> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "update")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(updated, ["pay", "shop"], "{}", log.body);

    let a = api.call(Some(&carl), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);

    // A new carl starts with nothing: no roles, and the old token does not work, even
    // if its revocation were undone in the database (it belongs to the earlier carl, so
    // making the new carl revokes it again).
    let carl = {
        // A fresh copy of the old secret: the refusal above is remembered per token.
        let db =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", api.dir.path().join("berth.db").display()))
                .await
                .unwrap();
        let copy = "berth_copyofcarlsoldtoken".to_owned();
        sqlx::query("UPDATE tokens SET revoked_at = NULL, hash = ? WHERE hash = ?")
            .bind(auth::hash_token(&copy))
            .bind(auth::hash_token(&carl))
            .execute(&db)
            .await
            .unwrap();
        copy
    };
    let fresh = api.user_with_token("carl").await;
    let me = api.call(Some(&fresh), Method::GET, "/whoami", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["roles"], json!([]), "{}", me.body);
    let a = api.call(Some(&carl), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("revoked"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn memberships_of_users_deleted_before_are_dropped_at_start() {
    let api = Api::start(PLENTY, PLENTY).await;
    api.user_with_token("dana").await;
    let a = api
        .admin(Method::PUT, "/teams/pay", Some(team("pay", &["dana"])))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // As an older Berth left it: the team still names a user that is gone.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", api.dir.path().join("berth.db").display()))
        .await
        .unwrap();
    let rows = sqlx::query("UPDATE objects SET document = replace(document, '\"dana\"', '\"gone\"') WHERE kind = 'Team' AND name = 'pay'")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(rows.rows_affected(), 1);
    let a = api.admin(Method::GET, "/teams/pay", None).await;
    assert_eq!(a.body["spec"]["members"][0]["user"], "gone", "{}", a.body);

    assert!(
        auth::ensure_bootstrap_token(api.store.as_ref())
            .await
            .unwrap()
            .is_none()
    );
    let a = api.admin(Method::GET, "/teams/pay", None).await;
    assert_eq!(a.body["spec"]["members"], json!([]), "{}", a.body);
}

/// `GET /whoami` with `token` twice; the second is answered from what the first read
/// (no token lookup), so that the tests below prove the kept identity is dropped.
async fn known(api: &Api, token: &str) -> Answer {
    let a = api.call(Some(token), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let lookups = api.lookups();
    let a = api.call(Some(token), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        api.lookups(),
        lookups,
        "a token known and unchanged is not looked up again"
    );
    a
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_the_very_next_request() {
    let api = Api::start(PLENTY, PLENTY).await;
    let dev = api.user_with_token("dev").await;
    let me = known(&api, &dev).await;
    let id = me.body["token"]["id"].as_str().unwrap().to_owned();
    let a = api.admin(Method::DELETE, &format!("/tokens/{id}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = api.call(Some(&dev), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("revoked"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn a_known_token_is_refused_from_the_instant_it_expires() {
    let api = Api::start(PLENTY, PLENTY).await;
    api.user_with_token("dev").await;
    let secret = "berth_expiresinamoment".to_owned();
    let expires = Utc::now() + chrono::Duration::milliseconds(1500);
    api.store
        .put_token(
            TokenRecord {
                id: "moment".to_owned(),
                name: "moment".to_owned(),
                subject: "dev".to_owned(),
                hash: auth::hash_token(&secret),
                created_at: Utc::now(),
                expires_at: Some(expires),
                revoked_at: None,
            },
            &Change::new("admin", "token.create"),
        )
        .await
        .unwrap();
    known(&api, &secret).await;
    // Nothing is written meanwhile: only the clock can refuse it.
    let generation = api.store.generation();
    while Utc::now() <= expires {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = api.call(Some(&secret), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        a.body
    );
    assert_eq!(
        api.store.generation(),
        generation,
        "refused by the clock, not by a write"
    );
}

#[tokio::test]
async fn roles_changed_count_from_the_very_next_request() {
    let api = Api::start(PLENTY, PLENTY).await;
    let dev = api.user_with_token("dev").await;
    let a = api
        .admin(Method::PUT, "/teams/pay", Some(team("pay", &["dev"])))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let me = known(&api, &dev).await;
    assert_eq!(me.body["roles"][0]["team"], "pay", "{}", me.body);
    let a = api.admin(Method::PUT, "/teams/pay", Some(team("pay", &[]))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let me = api.call(Some(&dev), Method::GET, "/whoami", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["roles"], json!([]), "{}", me.body);
    // And a user deleted is refused at once.
    known(&api, &dev).await;
    let a = api.admin(Method::DELETE, "/users/dev", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = api.call(Some(&dev), Method::GET, "/whoami", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
}
