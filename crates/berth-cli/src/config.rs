//! Which server the client talks to, and with which token.
//!
//! Each value comes from the first of: the command-line flag, the environment
//! (`BERTH_SERVER`, `BERTH_TOKEN`, `BERTH_CONTEXT`), the config file, the default
//! server `http://127.0.0.1:7070`. The config file is kubectl-like:
//!
//! ```yaml
//! current: prod
//! servers:
//!   local: {server: "http://127.0.0.1:7070"}
//!   prod:  {server: "https://berth.example.com", token: "berth_pat_…"}
//! ```
//!
//! It lives at `$BERTH_CONFIG`, else `$XDG_CONFIG_HOME/berth/config.yaml`, else
//! `~/.config/berth/config.yaml`. A token from the file is only sent to the server the
//! file pairs it with, so `--server` pointing elsewhere never leaks it.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::GlobalArgs;

/// The server used when no flag, variable or config file names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Reads environment variables; the process environment, or a map in tests.
pub trait Env {
    /// The variable's value, when it is set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(|v| (*v).to_owned())
    }
}

/// The config file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The entry of `servers` used when no `--context` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Known servers by name.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerEntry>,
}

/// One server in the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// Its URL, e.g. `https://berth.example.com`.
    pub server: String,
    /// The API token to send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the server URL came from; named when the server cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--server`.
    Flag,
    /// `BERTH_SERVER`.
    Env,
    /// An entry of the config file.
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The entry's name.
        entry: String,
    },
    /// [`DEFAULT_SERVER`].
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("from --server"),
            Self::Env => f.write_str("from BERTH_SERVER"),
            Self::ConfigFile { path, entry } => {
                write!(f, "from entry '{entry}' of {}", path.display())
            }
            Self::Default => f.write_str("the default"),
        }
    }
}

/// The server to talk to and the token to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL of the server, without a trailing slash, e.g. `http://127.0.0.1:7070`.
    pub server: String,
    /// Bearer token, when there is one.
    pub token: Option<String>,
    /// Where `server` came from.
    pub source: Source,
    /// Where the config file is or would be, for hints.
    pub config_path: Option<PathBuf>,
}

impl Target {
    /// A target for `server` with no token, as if given with `--server`.
    #[must_use]
    pub fn new(server: &str) -> Self {
        Self {
            server: normalize(server),
            token: None,
            source: Source::Flag,
            config_path: None,
        }
    }

    /// How the user can point the client at another server.
    #[must_use]
    pub fn how_to_change(&self) -> String {
        let file = self.config_path.as_deref().map_or_else(
            || "~/.config/berth/config.yaml".to_owned(),
            |p| p.display().to_string(),
        );
        format!("pass --server URL, set BERTH_SERVER, or add the server to {file}")
    }
}

/// Where the config file is: `$BERTH_CONFIG` (explicit: it must exist), else the
/// per-user default (optional).
pub fn config_path(env: &dyn Env) -> Option<(PathBuf, bool)> {
    if let Some(p) = env.var("BERTH_CONFIG") {
        return Some((PathBuf::from(p), true));
    }
    if let Some(xdg) = env.var("XDG_CONFIG_HOME") {
        return Some((Path::new(&xdg).join("berth").join("config.yaml"), false));
    }
    env.var("HOME")
        .map(|home| (Path::new(&home).join(".config/berth/config.yaml"), false))
}

/// Parses a config file's text; `origin` names it in errors.
pub fn parse_config(text: &str, origin: &Path) -> anyhow::Result<ConfigFile> {
    let parsed: Option<ConfigFile> = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        anyhow::anyhow!(
            "{}:{line}:{col}: {}",
            origin.display(),
            crate::commands::apply::plain_message(&e, 0)
        )
    })?;
    Ok(parsed.unwrap_or_default())
}

/// Reads the config file, when there is one.
pub fn load_config(path: &Path, explicit: bool) -> anyhow::Result<Option<ConfigFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_config(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot read the config file {}{}",
                path.display(),
                if explicit { " (named by BERTH_CONFIG)" } else { "" }
            )
        }),
    }
}

/// Resolves the target from flags, the environment and the config file it names.
pub fn resolve(global: &GlobalArgs, env: &dyn Env) -> anyhow::Result<Target> {
    let path = config_path(env);
    let file = match &path {
        Some((p, explicit)) => load_config(p, *explicit)?,
        None => None,
    };
    let config = match (&path, &file) {
        (Some((p, _)), Some(f)) => Some((p.as_path(), f)),
        _ => None,
    };
    let mut target = resolve_with(global, env, config)?;
    if target.config_path.is_none() {
        target.config_path = path.map(|(p, _)| p);
    }
    Ok(target)
}

/// Resolves the target from flags, the environment and an already read config file.
pub fn resolve_with(
    global: &GlobalArgs,
    env: &dyn Env,
    config: Option<(&Path, &ConfigFile)>,
) -> anyhow::Result<Target> {
    let context = global.context.clone().or_else(|| env.var("BERTH_CONTEXT"));
    let entry = match (config, &context) {
        (Some((path, file)), Some(name)) => match file.servers.get(name) {
            Some(e) => Some((name.clone(), e)),
            None => bail!(
                "there is no server '{name}' in {} (known: {})",
                path.display(),
                names(file)
            ),
        },
        (None, Some(name)) => bail!("--context {name} needs a config file, and none was found"),
        (Some((path, file)), None) => match &file.current {
            Some(name) => match file.servers.get(name) {
                Some(e) => Some((name.clone(), e)),
                None => bail!(
                    "{} says current: {name}, but has no server of that name (known: {})",
                    path.display(),
                    names(file)
                ),
            },
            None => None,
        },
        (None, None) => None,
    };
    let path = config.map(|(p, _)| p.to_path_buf());

    let (server, source) = if let Some(s) = &global.server {
        (normalize(s), Source::Flag)
    } else if let Some(s) = env.var("BERTH_SERVER") {
        (normalize(&s), Source::Env)
    } else if let (Some((name, e)), Some(p)) = (&entry, &path) {
        (
            normalize(&e.server),
            Source::ConfigFile {
                path: p.clone(),
                entry: name.clone(),
            },
        )
    } else {
        (DEFAULT_SERVER.to_owned(), Source::Default)
    };

    // A token from the file goes only to the server the file pairs it with.
    let file_token = || {
        let chosen = entry.iter().map(|(_, e)| *e);
        let others = config.into_iter().flat_map(|(_, f)| f.servers.values());
        chosen
            .chain(others)
            .find(|e| normalize(&e.server) == server)
            .and_then(|e| e.token.clone())
    };
    let token = global
        .token
        .clone()
        .or_else(|| env.var("BERTH_TOKEN"))
        .or_else(file_token);

    Ok(Target {
        server,
        token,
        source,
        config_path: path,
    })
}

fn names(file: &ConfigFile) -> String {
    if file.servers.is_empty() {
        "none".to_owned()
    } else {
        file.servers.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A server URL without a trailing slash, with `http://` when no scheme was given.
#[must_use]
pub fn normalize(server: &str) -> String {
    let s = server.trim().trim_end_matches('/');
    if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
current: local
servers:
  local:
    server: http://127.0.0.1:7070/
    token: local-token
  prod:
    server: https://berth.example.com
    token: prod-token
";

    fn file() -> ConfigFile {
        parse_config(FILE, Path::new("/cfg.yaml")).unwrap()
    }

    fn args(server: Option<&str>, token: Option<&str>, context: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            server: server.map(str::to_owned),
            token: token.map(str::to_owned),
            context: context.map(str::to_owned),
        }
    }

    fn resolve_case(
        global: &GlobalArgs,
        env: &[(&'static str, &'static str)],
        with_file: bool,
    ) -> (String, Option<String>, String) {
        let env: BTreeMap<&str, &str> = env.iter().copied().collect();
        let f = file();
        let config = with_file.then_some((Path::new("/cfg.yaml"), &f));
        let t = resolve_with(global, &env, config).unwrap();
        (t.server, t.token, t.source.to_string())
    }

    #[test]
    fn precedence_flag_env_file_default() {
        /// Flags, environment, whether the config file exists; then server, token, source.
        type Case<'a> = (
            GlobalArgs,
            &'a [(&'a str, &'a str)],
            bool,
            (&'a str, Option<&'a str>, &'a str),
        );
        let cases: &[Case<'_>] = &[
            // Nothing anywhere: the default server, no token.
            (
                args(None, None, None),
                &[],
                false,
                (DEFAULT_SERVER, None, "the default"),
            ),
            // The file's current entry.
            (
                args(None, None, None),
                &[],
                true,
                (
                    "http://127.0.0.1:7070",
                    Some("local-token"),
                    "from entry 'local' of /cfg.yaml",
                ),
            ),
            // Environment beats the file; the file's token follows its server.
            (
                args(None, None, None),
                &[("BERTH_SERVER", "https://berth.example.com")],
                true,
                (
                    "https://berth.example.com",
                    Some("prod-token"),
                    "from BERTH_SERVER",
                ),
            ),
            // Flag beats environment.
            (
                args(Some("http://flag:1"), None, None),
                &[("BERTH_SERVER", "http://env:1"), ("BERTH_TOKEN", "env-token")],
                true,
                ("http://flag:1", Some("env-token"), "from --server"),
            ),
            // Token flag beats the token variable and the file.
            (
                args(None, Some("flag-token"), None),
                &[("BERTH_TOKEN", "env-token")],
                true,
                (
                    "http://127.0.0.1:7070",
                    Some("flag-token"),
                    "from entry 'local' of /cfg.yaml",
                ),
            ),
            // A server the file does not know gets no token from it.
            (
                args(Some("other:7070"), None, None),
                &[],
                true,
                ("http://other:7070", None, "from --server"),
            ),
            // --context and BERTH_CONTEXT pick another entry; the flag wins.
            (
                args(None, None, Some("prod")),
                &[("BERTH_CONTEXT", "local")],
                true,
                (
                    "https://berth.example.com",
                    Some("prod-token"),
                    "from entry 'prod' of /cfg.yaml",
                ),
            ),
            (
                args(None, None, None),
                &[("BERTH_CONTEXT", "prod")],
                true,
                (
                    "https://berth.example.com",
                    Some("prod-token"),
                    "from entry 'prod' of /cfg.yaml",
                ),
            ),
            // Empty variables count as unset.
            (
                args(None, None, None),
                &[("BERTH_SERVER", ""), ("BERTH_TOKEN", "")],
                false,
                (DEFAULT_SERVER, None, "the default"),
            ),
        ];
        for (i, (global, env, with_file, want)) in cases.iter().enumerate() {
            let got = resolve_case(global, env, *with_file);
            let want = (want.0.to_owned(), want.1.map(str::to_owned), want.2.to_owned());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn unknown_context_names_the_known_ones() {
        let f = file();
        let env = BTreeMap::new();
        let e = resolve_with(
            &args(None, None, Some("staging")),
            &env,
            Some((Path::new("/cfg.yaml"), &f)),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "there is no server 'staging' in /cfg.yaml (known: local, prod)"
        );
        let mut f = f;
        f.current = Some("gone".into());
        let e = resolve_with(&args(None, None, None), &env, Some((Path::new("/cfg.yaml"), &f))).unwrap_err();
        assert!(e.to_string().contains("current: gone"), "{e}");
    }

    #[test]
    fn config_file_location() {
        let env: BTreeMap<&str, &str> = [("HOME", "/home/u")].into();
        assert_eq!(
            config_path(&env),
            Some((PathBuf::from("/home/u/.config/berth/config.yaml"), false))
        );
        let env: BTreeMap<&str, &str> = [("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/x")].into();
        assert_eq!(
            config_path(&env),
            Some((PathBuf::from("/x/berth/config.yaml"), false))
        );
        let env: BTreeMap<&str, &str> = [("HOME", "/home/u"), ("BERTH_CONFIG", "/c.yaml")].into();
        assert_eq!(config_path(&env), Some((PathBuf::from("/c.yaml"), true)));
    }

    #[test]
    fn missing_file_is_fine_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        assert_eq!(load_config(&path, false).unwrap(), None);
        let e = load_config(&path, true).unwrap_err();
        assert!(format!("{e:#}").contains("named by BERTH_CONFIG"), "{e:#}");
        std::fs::write(&path, FILE).unwrap();
        assert_eq!(load_config(&path, true).unwrap(), Some(file()));
    }

    #[test]
    fn resolve_reads_the_file_the_environment_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, FILE).unwrap();
        let path_str = path.to_str().unwrap().to_owned();
        let env: BTreeMap<&str, &str> = [("BERTH_CONFIG", path_str.as_str())].into();
        let t = resolve(&GlobalArgs::default(), &env).unwrap();
        assert_eq!(t.server, "http://127.0.0.1:7070");
        assert_eq!(t.token.as_deref(), Some("local-token"));
        assert_eq!(t.config_path.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn malformed_file_names_line_and_column() {
        let e = parse_config(
            "current: a\nservers:\n  a: {server: x, tokn: y}\n",
            Path::new("/c.yaml"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("/c.yaml:3:"), "{msg}");
        assert!(msg.contains("unknown field `tokn`"), "{msg}");
    }

    #[test]
    fn urls_are_normalized() {
        assert_eq!(normalize("localhost:7070/"), "http://localhost:7070");
        assert_eq!(
            normalize("https://b.example.com/berth/"),
            "https://b.example.com/berth"
        );
    }
}
