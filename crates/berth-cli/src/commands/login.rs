//! `berth login` keeps an API token in the config file, after checking it with the
//! server; `berth whoami` shows who a token authenticates and what roles it carries.
//!
//! The token comes from `--token`, `BERTH_TOKEN` or standard input (never echoed back).
//! The config file is written with mode 0600, since it holds the token.

use std::{
    io::{BufRead, Write},
    path::Path,
    process::ExitCode,
};

use anyhow::Context;

use crate::{
    GlobalArgs,
    client::Client,
    config::{self, ConfigFile, Env, ServerEntry, Target},
};
pub use berth_contract::{RoleGrant, WhoAmI};

/// Arguments of `berth login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// Name of the config entry to write (default: --context, else the server's host).
    #[arg(long = "as", value_name = "ENTRY")]
    pub entry: Option<String>,
}

/// Runs `berth login`: checks the token with the server, then stores it in the config
/// file as the current entry.
pub async fn run(
    global: &GlobalArgs,
    args: LoginArgs,
    env: &dyn Env,
    stdin: &mut dyn BufRead,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let target = config::resolve(global, env)?;
    let token = match global.token.clone().or_else(|| env.var("BERTH_TOKEN")) {
        Some(t) => t,
        None => {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .context("reading the token from standard input")?;
            line.trim().to_owned()
        }
    };
    anyhow::ensure!(
        !token.is_empty(),
        "no token given: pass --token, set BERTH_TOKEN, or type it on standard input"
    );
    let checked = Target {
        token: Some(token.clone()),
        ..target.clone()
    };
    let me: WhoAmI = Client::new(&checked)?
        .get(&["whoami"], &[])
        .await
        .with_context(|| format!("checking the token with {}", target.server))?;
    let (path, _) =
        config::config_path(env).context("no place for the config file: set BERTH_CONFIG or HOME")?;
    let mut file = config::load_config(&path, false)?.unwrap_or_default();
    let entry = args
        .entry
        .or_else(|| global.context.clone())
        .unwrap_or_else(|| entry_name(&target.server));
    file.servers.insert(
        entry.clone(),
        ServerEntry {
            server: target.server.clone(),
            token: Some(token),
        },
    );
    file.current = Some(entry.clone());
    save(&path, &file)?;
    writeln!(
        out,
        "logged in to {} as {} (token {}); saved as '{entry}' in {}",
        target.server,
        me.user,
        me.token.id,
        path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// An entry name for a server URL: its host (and port), e.g. `berth.example.com`.
fn entry_name(server: &str) -> String {
    let host = server.split("://").nth(1).unwrap_or(server);
    let host = host.split('/').next().unwrap_or(host);
    host.replace([':', '.'], "-")
}

/// Writes the config file, readable by its owner only (it holds tokens).
fn save(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_saphyr::to_string(file).map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // A file that existed keeps its mode on open; make sure it is private now.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Arguments of `berth whoami`.
#[derive(Debug, Clone, clap::Args)]
pub struct WhoamiArgs {
    /// How to print it: text for people, or the API's answer as JSON or YAML.
    #[arg(long, short = 'o', value_enum, default_value_t = crate::output::Format::Table)]
    pub output: crate::output::Format,
}

/// Runs `berth whoami`.
pub async fn whoami(
    client: &Client,
    format: crate::output::Format,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let me: WhoAmI = client
        .get(&["whoami"], &[])
        .await
        .context("asking who this token is")?;
    match crate::output::document(format, &me)? {
        Some(text) => out.write_all(text.as_bytes())?,
        None => out.write_all(describe(&me).as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The caller for people.
#[must_use]
pub fn describe(me: &WhoAmI) -> String {
    let mut s = format!(
        "user:   {}{}\n",
        me.user,
        if me.platform_admin {
            " (platform administrator)"
        } else {
            ""
        }
    );
    if me.roles.is_empty() {
        s.push_str("roles:  none\n");
    } else {
        s.push_str("roles:\n");
        for r in &me.roles {
            let wher = if r.environments.is_empty() {
                "every environment".to_owned()
            } else {
                r.environments.join(", ")
            };
            s.push_str(&format!("  {} in team {} ({wher})\n", r.role, r.team));
        }
    }
    s.push_str(&format!(
        "token:  {} '{}'{}\n",
        me.token.id,
        me.token.name,
        me.token
            .expires_at
            .map(|t| format!(", expires {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default()
    ));
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[tokio::test]
    async fn login_checks_the_token_and_keeps_it_privately() {
        use axum::{Router, http::HeaderMap, routing::get};
        let app = Router::new().route(
            "/api/v1/whoami",
            get(|headers: HeaderMap| async move {
                let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer good");
                if ok {
                    (
                        axum::http::StatusCode::OK,
                        r#"{"user":"dev","platformAdmin":false,"roles":[{"team":"pay","role":"developer","environments":[]}],
                           "token":{"id":"t1","name":"laptop","user":"dev","createdAt":"2026-01-01T00:00:00Z"}}"#,
                    )
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, r#"{"title":"Authentication required"}"#)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("berth/config.yaml");
        let cfg_s = cfg.to_str().unwrap().to_owned();
        let server = format!("http://{addr}");
        let global = GlobalArgs {
            server: Some(server.clone()),
            ..GlobalArgs::default()
        };
        // BERTH_CONFIG names a file that does not exist yet: login creates it.
        let env: BTreeMap<&str, &str> = [
            ("HOME", "/nonexistent"),
            ("XDG_CONFIG_HOME", dir.path().to_str().unwrap()),
        ]
        .into();
        let args = LoginArgs { entry: None };
        let mut bad = "wrong\n".as_bytes();
        let e = run(&global, args.clone(), &env, &mut bad, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("Authentication required"), "{e:#}");
        assert!(!cfg.exists(), "a refused token is not saved");

        let mut out = Vec::new();
        run(&global, args, &env, &mut "good\n".as_bytes(), &mut out)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("as dev (token t1)"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let saved = config::load_config(&cfg, true).unwrap().unwrap();
        let name = format!("127-0-0-1-{}", addr.port());
        assert_eq!(saved.current.as_deref(), Some(name.as_str()));
        assert_eq!(saved.servers[&name].token.as_deref(), Some("good"));
        // The next command finds server and token in the file.
        let env: BTreeMap<&str, &str> = [("BERTH_CONFIG", cfg_s.as_str())].into();
        let t = config::resolve(&GlobalArgs::default(), &env).unwrap();
        assert_eq!((t.server, t.token.as_deref()), (server, Some("good")));
    }

    #[test]
    fn whoami_for_people() {
        let me: WhoAmI = serde_json::from_str(
            r#"{"user":"rita","platformAdmin":false,"roles":[{"team":"pay","role":"releaser","environments":["production"]}],
               "token":{"id":"t9","name":"ci","user":"rita","createdAt":"2026-01-01T00:00:00Z","expiresAt":"2026-04-01T00:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(
            describe(&me),
            "user:   rita\nroles:\n  releaser in team pay (production)\ntoken:  t9 'ci', expires 2026-04-01 00:00 UTC\n"
        );
    }
}
