//! `berth server`: one process that serves the API, runs the reconcilers and the
//! built-in router.
//!
//! ```text
//!   HTTP :7070 ──▶ api ──▶ store (SQLite in --data-dir, or PostgreSQL: --store)
//!                              ▲
//!   reconciler (every 1 s, or when woken) ──▶ cluster runtimes ──▶ containers
//!                                                  │
//!   HTTP :8080 ──▶ router ◀── route table ─────────┘
//!
//!   syncer (every 1 s, or when asked) ──▶ git ──▶ the apply use case ──▶ store
//! ```

mod credentials;
mod data_dir;
pub mod gitops;
mod govern;
pub mod metrics;
pub mod reconciler;
mod runtimes;
pub mod serve;
mod store;
pub mod tls;
mod write_check;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use berth_api::{ApiState, auth};
use berth_core::{
    objects::{Cluster, RuntimeKind},
    ports::SystemClock,
};
use berth_registry::RegistryResolver;
use berth_runtime_kube::{KubeRuntime, RuntimeOptions as KubeOptions};
use berth_runtime_local::{LocalRuntime, RouteTable, Router, RouterOptions, RuntimeOptions};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

use crate::reconciler::{Connected, Reconciler};

/// Flags of `berth server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address the API listens on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Directory for the database and the bootstrap token.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
    pub data_dir: PathBuf,
    /// Where the store lives: `sqlite` (the default: berth.db in --data-dir, one server)
    /// or a PostgreSQL URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE (several servers
    /// may share it).
    #[arg(long, env = "BERTH_STORE", value_name = "sqlite|URL")]
    pub store: Option<String>,
    /// Address the built-in router listens on for application traffic.
    #[arg(long, env = "BERTH_ROUTER_LISTEN", default_value = "127.0.0.1:8080")]
    pub router_listen: SocketAddr,
    /// Domain of application hostnames: `<app>.<env>.<domain>`.
    #[arg(long, env = "BERTH_DOMAIN", default_value = "localhost")]
    pub domain: String,
    /// Registries reached over plain HTTP (host:port), e.g. a local registry; repeatable.
    #[arg(
        long = "insecure-registry",
        env = "BERTH_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Registry credentials for builds and image resolution: a Docker-style config.json
    /// (`{"auths": {"host:port": {"auth": "<base64 user:password>"}}}`).
    #[arg(long, env = "BERTH_REGISTRY_AUTH", value_name = "FILE")]
    pub registry_auth: Option<PathBuf>,
    /// Builds that run at the same time.
    #[arg(long, env = "BERTH_BUILD_CONCURRENCY", default_value_t = 1)]
    pub build_concurrency: usize,
    /// TLS certificate chain (PEM) of the API; with --tls-key the API speaks HTTPS only.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the API.
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// File of secrets keys: base64 of 32 random bytes per line, the first seals, all
    /// open. Default: <data-dir>/secrets.key, made on first start. BERTH_SECRETS_KEY
    /// (same format) takes precedence over any file.
    #[arg(long, env = "BERTH_SECRETS_KEY_FILE", value_name = "FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// File holding the audit key that signs the audit log: base64 of 32 random bytes.
    /// Default: <data-dir>/audit.key, made on first start. BERTH_AUDIT_KEY (same format)
    /// takes precedence over any file.
    #[arg(long, env = "BERTH_AUDIT_KEY_FILE", value_name = "FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// Requests per second each API user may make (sustained), over all of its tokens;
    /// each client address may make four times as many, counted before the token is
    /// looked up.
    #[arg(long, env = "BERTH_RATE_LIMIT", default_value_t = 50.0)]
    pub rate_limit: f64,
    /// Requests each API user may make at once after a quiet spell (an address: four
    /// times as many).
    #[arg(long, env = "BERTH_RATE_BURST", default_value_t = 200)]
    pub rate_burst: u32,
    /// Do not count and time API requests (the other series stay): only to measure what
    /// that costs (docs/benchmarks.md).
    #[arg(long, hide = true)]
    pub no_request_metrics: bool,
    /// Revoke the bootstrap token and make a new one (printed once, written to
    /// <data-dir>/bootstrap-token); restores `admin` as a platform administrator if needed.
    #[arg(long)]
    pub rotate_bootstrap_token: bool,
    /// Seconds a client may take to send a request's head (over TLS, and again for the
    /// handshake) before its connection is closed.
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT", default_value = "10", value_name = "SECONDS", value_parser = serve::seconds)]
    pub header_read_timeout: Duration,
    /// Seconds a client may take to send a request's body; a late body is answered 408.
    #[arg(long, env = "BERTH_BODY_READ_TIMEOUT", default_value = "60", value_name = "SECONDS", value_parser = serve::seconds)]
    pub body_read_timeout: Duration,
    /// Seconds the server may take to stop after SIGTERM: open requests and connections
    /// get this long to finish, then are dropped.
    #[arg(long, env = "BERTH_SHUTDOWN_TIMEOUT", default_value = "10", value_name = "SECONDS", value_parser = serve::seconds)]
    pub shutdown_timeout: Duration,
}

/// The secrets keyring: from `BERTH_SECRETS_KEY`, else the key file given, else
/// `<data-dir>/secrets.key` (made on first start).
fn keyring(args: &ServerArgs) -> anyhow::Result<Arc<berth_secrets::Keyring>> {
    let keyring = if let Some(text) = std::env::var("BERTH_SECRETS_KEY")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        berth_secrets::Keyring::parse(&text, "BERTH_SECRETS_KEY")?
    } else if let Some(file) = &args.secrets_key_file {
        berth_secrets::Keyring::from_file(file)?
    } else {
        let path = args.data_dir.join("secrets.key");
        let (keyring, created) = berth_secrets::Keyring::load_or_create(&path)?;
        if created {
            tracing::warn!(
                path = %path.display(),
                "made a secrets key next to the database; keep a copy elsewhere, or pass --secrets-key-file"
            );
        }
        keyring
    };
    tracing::info!(
        active = keyring.active_id(),
        keys = keyring.ids().len(),
        "secrets keyring loaded"
    );
    Ok(Arc::new(keyring))
}

/// A running server, for tests and embedding.
pub struct Server {
    /// Where the API answers.
    pub api_addr: SocketAddr,
    /// Where the router answers.
    pub router_addr: SocketAddr,
    /// The bootstrap token, when this start created it.
    pub bootstrap_token: Option<String>,
    tasks: tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
    /// The data directory's lock while the store is SQLite: one server per directory.
    _lock: Option<data_dir::DirLock>,
}

impl Server {
    /// Stops accepting work and waits for the tasks to end, for at most the shutdown
    /// timeout (and a little to close what is left); then drops what still runs.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        // The parts drain within the timeout themselves; the margin is theirs to close.
        let deadline = self.shutdown_timeout + Duration::from_secs(1);
        let stopped = tokio::time::timeout(deadline, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(
                ?deadline,
                "server tasks still running at the shutdown deadline; dropping them"
            );
            self.tasks.abort_all();
        }
    }

    /// Waits until one of the server's tasks ends (it should not).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Completes once the server begins to stop, even when that happened before its first poll.
fn wait_for(shutdown: &CancellationToken) -> impl Future<Output = ()> + Send + 'static {
    shutdown.clone().cancelled_owned()
}

/// Starts every part of the server and returns once it is serving.
pub async fn start(args: ServerArgs) -> anyhow::Result<Server> {
    write_check::warn_if_read_only(&args.data_dir);
    data_dir::prepare(&args.data_dir)?;
    let location = store::location(args.store.as_deref())?;
    let opened = store::open(
        &location,
        &args.data_dir,
        berth_store::seal::key_source(
            std::env::var("BERTH_AUDIT_KEY").ok().as_deref(),
            args.audit_key_file.as_deref(),
        )?,
    )
    .await?;
    let store = opened.store();
    let bootstrap_token = if args.rotate_bootstrap_token {
        let token = auth::rotate_bootstrap_token(store.as_ref())
            .await
            .context("cannot rotate the bootstrap token")?;
        tracing::warn!("bootstrap token rotated: the earlier one no longer works");
        Some(token)
    } else {
        auth::ensure_bootstrap_token(store.as_ref())
            .await
            .context("cannot create the bootstrap token")?
    };
    if let Some(token) = &bootstrap_token {
        write_secret(&args.data_dir.join("bootstrap-token"), token)?;
    }
    let keyring = keyring(&args)?;
    // SQLite's side files and the key file now exist: make sure they are private too.
    data_dir::tighten(&args.data_dir)?;
    let sealed = credentials::migrate(store.as_ref(), &keyring).await?;
    if !sealed.is_empty() {
        // The rows they replaced leave their text in free pages and the log otherwise.
        opened
            .purge_free_space()
            .await
            .context("cannot purge the replaced kubeconfigs")?;
        tracing::warn!(clusters = ?sealed, "sealed the inline kubeconfigs an older Berth stored in clear");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };

    let api_listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} for the API", args.listen))?;
    let router_listener = TcpListener::bind(args.router_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the router", args.router_listen))?;
    let api_addr = api_listener.local_addr()?;
    let router_addr = router_listener.local_addr()?;

    let shutdown = CancellationToken::new();
    let changed = Arc::new(Notify::new());
    let table = RouteTable::new();
    let mut tasks = tokio::task::JoinSet::new();

    let router_metrics = berth_runtime_local::RouterMetrics::default();
    let server_metrics = metrics::ServerMetrics::default();
    opened.observe_commits(server_metrics.commit_observer());
    let lock = opened.into_lock();
    let router = Router::new(
        table.clone(),
        RouterOptions {
            domain: Some(args.domain.clone()),
            shutdown_grace: args.shutdown_timeout,
            ..RouterOptions::default()
        },
    )
    .with_metrics(router_metrics.clone());
    tasks.spawn(router.run(router_listener, wait_for(&shutdown)));

    let connect_table = table.clone();
    let runtimes = Arc::new(runtimes::Runtimes::default());
    let registry = runtimes.clone();
    let connector: reconciler::Connector = Box::new(move |cluster: &Cluster| {
        let connected = connect(cluster, &connect_table)?;
        registry.register(cluster.name(), connected.runtime.clone());
        Ok(connected)
    });
    let reconciler = Reconciler::new(
        store.clone(),
        Arc::new(SystemClock),
        args.domain.clone(),
        connector,
        changed.clone(),
    )
    .with_secrets(keyring.clone())
    .with_metrics(server_metrics.reconcile.clone());
    tasks.spawn(reconciler.run(wait_for(&shutdown)));

    let builds = start_builds(&args, store.clone()).await?;
    builds.observe_builds(server_metrics.build_observer());
    let state = ApiState {
        store,
        resolver: Arc::new(RegistryResolver::new(args.insecure_registries.clone())),
        changed,
        domain: args.domain.clone(),
        router_port: Some(router_addr.port()),
        builds,
        clock: Arc::new(SystemClock),
        clusters: runtimes,
        syncs: Arc::default(),
        // The router runs in this process: its series are scraped from the API's /metrics.
        metrics: Arc::new({
            let m = berth_api::metrics::ApiMetrics::with(|r| {
                router_metrics.register(r);
                server_metrics.register(r);
            });
            if args.no_request_metrics {
                m.without_request_metrics()
            } else {
                m
            }
        }),
    };
    let governance = berth_api::Governance::new(
        keyring,
        berth_api::RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst,
        },
    );
    let syncer = gitops::Syncer::new(state.clone(), governance.clone(), args.data_dir.join("sources"));
    tasks.spawn(syncer.run(wait_for(&shutdown)));
    let app = berth_api::router_with(state, governance);
    let limits = serve::Limits {
        header_read: args.header_read_timeout,
        body_read: args.body_read_timeout,
        drain: args.shutdown_timeout,
    };
    let (app, tls) = match tls {
        // Over HTTPS only: tell browsers never to come back over plain HTTP.
        Some(config) => (
            app.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
                axum::http::header::STRICT_TRANSPORT_SECURITY,
                axum::http::HeaderValue::from_static("max-age=31536000"),
            )),
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        ),
        None => (app, None),
    };
    tasks.spawn(serve::serve(api_listener, tls, app, limits, shutdown.clone()));
    Ok(Server {
        api_addr,
        router_addr,
        bootstrap_token,
        tasks,
        shutdown,
        shutdown_timeout: args.shutdown_timeout,
        _lock: lock,
    })
}

fn connect(cluster: &Cluster, table: &RouteTable) -> Result<Connected, String> {
    match cluster.spec.runtime {
        RuntimeKind::Local => {
            let runtime = LocalRuntime::new(
                cluster.name(),
                cluster.spec.local.endpoint.clone(),
                table.clone(),
                RuntimeOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            let changed = runtime.changed();
            Ok(Connected {
                runtime: Arc::new(runtime),
                changed: Some(changed),
            })
        }
        RuntimeKind::Kubernetes => {
            let spec = cluster.spec.kubernetes.clone().unwrap_or_default();
            let runtime =
                KubeRuntime::new(cluster.name(), &spec, KubeOptions::default()).map_err(|e| e.to_string())?;
            let changed = runtime.changed();
            Ok(Connected {
                runtime: Arc::new(runtime),
                changed: Some(changed),
            })
        }
    }
}

/// The build service: scratch space in the data directory, the registries' settings, the
/// build host's Docker Engine API (`DOCKER_HOST`); builds a previous run left unfinished
/// are marked failed.
async fn start_builds(
    args: &ServerArgs,
    store: Arc<dyn berth_core::ports::Store>,
) -> anyhow::Result<Arc<berth_build::BuildService>> {
    let credentials = match &args.registry_auth {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read registry credentials from {}", path.display()))?;
            berth_build::Credentials::from_docker_config(&text)
                .with_context(|| format!("registry credentials in {}", path.display()))?
        }
        None => berth_build::Credentials::default(),
    };
    let work_dir = args.data_dir.join("builds");
    // Scratch files of builds that died with a previous run.
    let _ = std::fs::remove_dir_all(&work_dir);
    let service = berth_build::BuildService::new(
        store,
        berth_build::BuildOptions {
            work_dir,
            // Kept across restarts: Maven's local repository.
            cache_dir: args.data_dir.join("build-cache"),
            registry: berth_build::RegistryOptions {
                insecure: args.insecure_registries.clone(),
                credentials,
                retry: berth_build::Retry::default(),
            },
            docker: berth_build::docker_from_env(),
            concurrency: args.build_concurrency,
        },
    );
    let interrupted = service
        .recover()
        .await
        .context("cannot mark interrupted builds as failed")?;
    if interrupted > 0 {
        tracing::warn!(
            builds = interrupted,
            "builds interrupted by the last stop were marked failed"
        );
    }
    Ok(Arc::new(service))
}

/// Writes a secret file readable by its owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `berth server`: starts, prints where it listens, runs until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.clone();
    let tls = args.tls_cert.is_some();
    let mut server = start(args).await?;
    if let Some(token) = &server.bootstrap_token {
        println!(
            "bootstrap admin token (shown once; also in {}):",
            data_dir.join("bootstrap-token").display()
        );
        println!("{token}");
    }
    println!(
        "berth API on {}://{}  router on http://{}",
        if tls { "https" } else { "http" },
        server.api_addr,
        server.router_addr
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = server.wait() => anyhow::bail!("a server task stopped unexpectedly"),
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// The most bollard may log: its `debug` events carry request bodies (secrets).
const SECRET_SAFE_BOLLARD: &str = "bollard=info";

/// Structured logs to stderr; `RUST_LOG` chooses what (default `info`).
///
/// bollard is held at `info` whatever `RUST_LOG` says: at `debug` it logs the bodies of
/// Docker API requests and answers, and a container's create request holds its secret
/// environment variables.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(SECRET_SAFE_BOLLARD.parse().unwrap_or_default());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
