//! Governance end to end, with the real binary, Podman and SQLite: secrets reach the
//! containers and nowhere else, the audit log names tampering, the API speaks TLS, and
//! the CLI logs in and manages tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{BIN, Berth, IMAGE, Options, contains, files, wait_until};

const HOST: &str = "web.qa.localhost";
/// Values that appear nowhere by chance.
const SECRET: &str = "s3cr3t-Berth-7f4c2a91e05b-d1";
const SECRET_2: &str = "s3cr3t-Berth-0b93e8a4c7f1-d2";
const FILE_SECRET: &str = "key-material-9a8b7c6d5e4f3a2b1c0d";

fn app_with_secrets() -> Value {
    json!({
        "apiVersion": "berth.dev/v1", "kind": "Application", "metadata": {"name": "web"},
        "spec": {
            "image": IMAGE,
            // The app shows what it received, so the test can see it was delivered.
            "command": ["sh", "-c", "printf %s \"$DB_PASSWORD\" > /www/db.txt && exec httpd -f -p 8080 -h /www"],
            "healthCheck": {"path": "/healthz"},
            "resources": {"memory": "32Mi"},
            "configFiles": [{"path": "/www/healthz", "content": "ok"}],
            "secrets": [
                {"name": "db", "env": "DB_PASSWORD"},
                {"name": "tls", "path": "/www/tls.txt"}
            ]
        }
    })
}

/// Deploys `web`'s current spec to `env` and waits until the rollout succeeded.
async fn deploy_and_wait(berth: &Berth, env: &str) -> Value {
    let (s, d) = berth
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": env})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    berth
        .wait_phase(
            d["metadata"]["name"].as_str().unwrap(),
            "Succeeded",
            Duration::from_secs(60),
        )
        .await;
    d
}

/// Runs the CLI against `berth` with `stdin`.
fn cli_stdin(berth: &Berth, args: &[&str], stdin: &str) -> Output {
    let mut child = berth
        .cli_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_containers_and_nowhere_else_in_clear_text() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let berth = Berth::start_with(Options {
        log: Some(log.clone()),
        rust_log: Some("debug".to_owned()),
        ..Options::default()
    })
    .await;
    let mut responses: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, body: &Value| responses.push((what.to_owned(), body.to_string()));

    berth.platform(60).await;
    let (s, b) = berth
        .call(Method::PUT, "/applications/web", Some(app_with_secrets()))
        .await;
    assert!(s.is_success(), "{b}");
    record("put app", &b);

    // Nothing is deployed while a referenced secret is missing.
    let (s, p) = berth
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["type"], "https://berth.dev/problems/missing-secrets");
    record("deploy without secrets", &p);

    // One secret through the CLI (from stdin), one through the API.
    let out = cli_stdin(&berth, &["secret", "set", "web", "db"], &format!("{SECRET}\n"));
    assert!(out.status.success(), "{}", text(&out));
    let cli_texts = vec![text(&out)];
    let (s, b) = berth
        .call(
            Method::PUT,
            "/applications/web/secrets/tls",
            Some(json!({"value": FILE_SECRET})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["version"], 1);
    record("set tls", &b);

    let d = deploy_and_wait(&berth, "qa").await;
    record("deploy", &d);

    // Delivered: as an environment variable and as a file.
    assert_eq!(
        berth.get_app(HOST, "/db.txt").await.unwrap(),
        (200, SECRET.to_owned())
    );
    assert_eq!(
        berth.get_app(HOST, "/tls.txt").await.unwrap(),
        (200, FILE_SECRET.to_owned())
    );

    // A new version reaches the running application (its replicas are replaced).
    let out = cli_stdin(&berth, &["secret", "set", "web", "db"], SECRET_2);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("version 2"), "{}", text(&out));
    wait_until(
        Duration::from_secs(60),
        "the new secret version served",
        || async { berth.get_app(HOST, "/db.txt").await.ok() == Some((200, SECRET_2.to_owned())) },
    )
    .await;

    // Every read the API offers, and what the CLI prints.
    for path in [
        "/applications",
        "/applications/web",
        "/applications/web/secrets",
        "/applications/web/releases",
        "/applications/web/releases/1",
        "/applications/web/status",
        "/releases",
        "/deployments",
        "/events?limit=1000",
        "/audit?limit=1000",
        "/audit/verify",
        "/whoami",
        "/tokens",
        "/teams",
        "/users",
        "/openapi.json",
    ] {
        let (s, b) = berth.call(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        record(path, &b);
    }
    let (_, list) = berth.call(Method::GET, "/applications/web/secrets", None).await;
    assert_eq!(list["items"][0]["name"], "db");
    assert_eq!(list["items"][0]["version"], 2);
    let mut cli_texts = cli_texts;
    for args in [
        &["secret", "list", "web"][..],
        &["get", "app", "web", "-o", "yaml"],
        &["describe", "app", "web"],
        &["events"],
        &["audit"],
        &["get", "releases", "--app", "web", "-o", "json"],
        &["status", "web"],
    ] {
        let out = berth.cli(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        cli_texts.push(text(&out));
    }

    for needle in [SECRET, SECRET_2, FILE_SECRET] {
        for (what, body) in &responses {
            assert!(
                !body.contains(needle),
                "the answer to {what} holds a secret: {body}"
            );
        }
        for t in &cli_texts {
            assert!(!t.contains(needle), "CLI output holds a secret: {t}");
        }
        for (path, bytes) in files(&berth.data) {
            assert!(!contains(&bytes, needle), "{path} holds a secret in clear text");
        }
        let logged = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = logged.lines().filter(|l| l.contains(needle)).collect();
        assert!(lines.is_empty(), "the server log holds a secret: {lines:?}");
    }
    // The check means something: the log is there and the database holds the secrets,
    // sealed.
    assert!(
        std::fs::metadata(&log).unwrap().len() > 1000,
        "debug logs were written"
    );
    let db = std::fs::read(berth.data.join("berth.db")).unwrap();
    let wal = std::fs::read(berth.data.join("berth.db-wal")).unwrap_or_default();
    assert!(contains(&db, "ciphertext") || contains(&wal, "ciphertext"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_edited_and_a_deleted_entry() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    for replicas in [1, 2, 3] {
        let mut app = support::web_app("v1", replicas, "/healthz");
        app["spec"]["replicas"] = json!(replicas);
        let (s, b) = berth.call(Method::PUT, "/applications/web", Some(app)).await;
        assert!(s.is_success(), "{b}");
    }
    // A change after them, so that the entries tampered with are not the newest.
    let env = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "staging"},
        "spec": {"clusters": [{"cluster": berth.cluster}]}});
    let (s, b) = berth.call(Method::PUT, "/environments/staging", Some(env)).await;
    assert!(s.is_success(), "{b}");
    let out = berth.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).starts_with("audit log intact:"), "{}", text(&out));
    // The operator keeps the checkpoint it prints, and it verifies while nothing changed.
    let checkpoint = text(&out)
        .lines()
        .find_map(|l| l.strip_prefix("checkpoint "))
        .unwrap_or_else(|| panic!("no checkpoint printed: {}", text(&out)))
        .to_owned();
    let out = berth.cli(&["audit", "verify", "--checkpoint", &checkpoint]);
    assert!(out.status.success(), "{}", text(&out));
    let out = berth.cli(&["audit", "--actor", "admin", "--kind", "Application"]);
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    assert_eq!(listing.matches("Application/web").count(), 3, "{listing}");
    let (_, log) = berth.call(Method::GET, "/audit?kind=Application", None).await;
    let edited = log["items"][1]["seq"].as_u64().unwrap();
    let deleted = log["items"][2]["seq"].as_u64().unwrap();

    // Someone with the database file edits one entry, then deletes another.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", berth.data.join("berth.db").display()))
        .await
        .unwrap();
    for sql in ["DROP TRIGGER audit_no_update", "DROP TRIGGER audit_no_delete"] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&db).await.unwrap();
    }
    sqlx::query("UPDATE audit SET actor = 'mallory' WHERE seq = ?")
        .bind(i64::try_from(edited).unwrap())
        .execute(&db)
        .await
        .unwrap();
    let out = berth.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("entry {edited} was edited")),
        "{}",
        text(&out)
    );

    sqlx::query("DELETE FROM audit WHERE seq = ?")
        .bind(i64::try_from(deleted).unwrap())
        .execute(&db)
        .await
        .unwrap();
    let (s, v) = berth.call(Method::GET, "/audit/verify", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], false);
    let messages: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        messages
            .contains(&format!("entry {edited} was edited: its content does not match its hash").as_str()),
        "{v}"
    );
    assert!(
        messages.contains(&format!("entry {deleted} was deleted").as_str()),
        "{v}"
    );
    let out = berth.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("entry {deleted} was deleted")),
        "{}",
        text(&out)
    );

    // An object edited in the database directly is named, with the kept checkpoint
    // given too.
    sqlx::query(
        "UPDATE objects SET document = json_set(document, '$.spec.replicas', 9) \
         WHERE kind = 'Application' AND name = 'web'",
    )
    .execute(&db)
    .await
    .unwrap();
    let out = berth.cli(&["audit", "verify", "--checkpoint", &checkpoint]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Application 'web' was changed outside Berth"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_tls_with_a_certificate_from_files() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        certs.path().join("ca.pem"),
        certs.path().join("cert.pem"),
        certs.path().join("key.pem"),
    );
    // A test CA and a server certificate it signs (webpki refuses a CA certificate as
    // the server's own).
    let ext = certs.path().join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(certs.path())
            .args(args)
            .output()
            .expect("openssl makes the test certificates (apt-get install openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=berth-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    let berth = Berth::start_with(Options {
        args: vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
        ca: Some(ca.clone()),
        ..Options::default()
    })
    .await;
    assert!(berth.api.starts_with("https://"), "{}", berth.api);
    let res = berth
        .http
        .get(format!("{}/api/v1/whoami", berth.api))
        .bearer_auth(&berth.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["x-frame-options"], "DENY");
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["user"], "admin");
    // No plain HTTP on the TLS port.
    let plain = berth.api.replacen("https://", "http://", 1);
    let res = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(res.is_err() || !res.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_keeps_a_token_and_tokens_can_be_made_and_revoked() {
    let berth = Berth::start().await;
    let home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_TOKEN")
            .env_remove("BERTH_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", home.path())
            .output()
            .unwrap()
    };
    let out = cli(&["login", "--server", &berth.api, "--token", "berth_wrong"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Authentication required"), "{}", text(&out));
    let out = cli(&["login", "--server", &berth.api, "--token", &berth.token]);
    assert!(out.status.success(), "{}", text(&out));
    // From now on the config file says where and as whom.
    let out = cli(&["whoami"]);
    assert!(
        text(&out).starts_with("user:   admin (platform administrator)"),
        "{}",
        text(&out)
    );
    let config = std::fs::read_to_string(home.path().join(".config/berth/config.yaml")).unwrap();
    assert!(config.contains(&berth.token));

    let out = cli(&["token", "create", "ci", "--expires-in-days", "7"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("berth_"), "{stdout}");
    let id = stdout.split_whitespace().nth(1).unwrap().to_owned();
    let out = cli(&["--token", &secret, "whoami"]);
    assert!(text(&out).contains("token:  "), "{}", text(&out));
    let out = cli(&["token", "list"]);
    assert!(
        text(&out).contains(&id) && !text(&out).contains(&secret),
        "{}",
        text(&out)
    );
    let out = cli(&["token", "revoke", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&["--token", &secret, "whoami"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("revoked"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_value_for_one_environment_reaches_that_environment_only() {
    const PROD: &str = "s3cr3t-Berth-prod-4e1f9c";
    const QA: &str = "s3cr3t-Berth-qa-8b2d7a";
    let berth = Berth::start().await;
    berth.platform(60).await;
    let production = json!({"apiVersion": "berth.dev/v1", "kind": "Environment", "metadata": {"name": "production"},
        "spec": {"clusters": [{"cluster": berth.cluster}], "production": true, "rollout": {"progressDeadlineSeconds": 60}}});
    let (s, b) = berth
        .call(Method::PUT, "/environments/production", Some(production))
        .await;
    assert!(s.is_success(), "{b}");
    let mut app = app_with_secrets();
    app["spec"]["secrets"] = json!([{"name": "db", "env": "DB_PASSWORD"}]);
    let (s, b) = berth.call(Method::PUT, "/applications/web", Some(app)).await;
    assert!(s.is_success(), "{b}");

    let out = cli_stdin(
        &berth,
        &["secret", "set", "web", "db", "--env", "production"],
        PROD,
    );
    assert!(out.status.success(), "{}", text(&out));
    // qa has no value of its own and there is none for all environments: production's
    // is not a candidate, so the deploy is refused.
    let (s, p) = berth
        .call(
            Method::POST,
            "/applications/web/deploy",
            Some(json!({"environment": "qa"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let out = cli_stdin(&berth, &["secret", "set", "web", "db", "--env", "qa"], QA);
    assert!(out.status.success(), "{}", text(&out));

    for env in ["qa", "production"] {
        deploy_and_wait(&berth, env).await;
    }
    assert_eq!(
        berth.get_app(HOST, "/db.txt").await.unwrap(),
        (200, QA.to_owned())
    );
    assert_eq!(
        berth
            .get_app("web.production.localhost", "/db.txt")
            .await
            .unwrap(),
        (200, PROD.to_owned())
    );
    let list = text(&berth.cli(&["secret", "list", "web"]));
    assert!(list.contains("production") && list.contains("qa"), "{list}");
    assert!(!list.contains(PROD) && !list.contains(QA), "{list}");
}
