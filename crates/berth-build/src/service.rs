//! The build service: the [`Builds`] port of the core, run in the server.
//!
//! ```text
//!  request ─▶ fetch (commit) ─▶ key = (commit, builder hash) ─┬─ a build has it ─▶ that build
//!                                                              └─ new build N (Pending)
//!                                                                   │ background task
//!                                                                   ▼
//!                Running ─▶ builder (java | dockerfile | image) ─▶ push ─▶ Succeeded + Release
//!                                                              └─ error ─▶ Failed (no release)
//! ```
//!
//! Build once: finding the build of a key and recording a new one happen under one lock,
//! so concurrent requests for the same key share one build. Logs live in memory while a
//! build runs (for the live stream) and are stored in the build's status when it ends.
//! A server that restarts marks builds it left unfinished as failed ([`BuildService::recover`]).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use berth_core::{
    FieldError, Invalid, NewEvent,
    build::{BuildKey, builder_hash, log_tail, next_build_number, reusable},
    objects::{
        Application, ApplicationKind, Build, BuildKind, BuildPhase, BuildSpec, Builder, Source, build_name,
    },
    ports::{BuildError, BuildRequest, BuildTicket, Builds, Clock, LogChunk, Store, StoreError, SystemClock},
    repo,
};
use berth_service::{Delivery, NoResolver, ReleaseFromBuild};
use bollard::Docker;
use oci_client::Reference;
use tokio::sync::Semaphore;

use crate::{
    dockerfile,
    git::{self, Tree},
    image::Pushed,
    java,
    log::BuildLog,
    registry::{Registry, RegistryOptions},
};

/// The most log a build keeps in its stored status.
pub const MAX_STORED_LOG: usize = 256 * 1024;

/// Settings of the build service.
pub struct BuildOptions {
    /// Where builds put their scratch files (clones, javac output).
    pub work_dir: PathBuf,
    /// What builds keep between builds and restarts: Maven's local repository.
    pub cache_dir: PathBuf,
    /// Registries: insecure hosts, credentials, retries.
    pub registry: RegistryOptions,
    /// The build host's Docker Engine API, for the dockerfile builder.
    pub docker: Option<Docker>,
    /// Builds that run at once.
    pub concurrency: usize,
}

/// Builds applications; see the module documentation.
#[derive(Clone)]
pub struct BuildService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    registry: Registry,
    docker: Option<Docker>,
    work_dir: PathBuf,
    cache_dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// The use cases: a successful build's release is one.
    delivery: Delivery,
    /// Logs of builds running in this process.
    logs: Mutex<HashMap<String, BuildLog>>,
    /// Held while a request looks for its key and records a new build.
    recording: tokio::sync::Mutex<()>,
    permits: Semaphore,
    /// Told how each build ended and how long it ran (the server's build metrics).
    observer: std::sync::OnceLock<BuildObserver>,
}

/// Called when a build ends with its phase (`Succeeded`, `Failed`) and how long it ran
/// from taking a build slot to its recorded end.
pub type BuildObserver = Box<dyn Fn(&str, std::time::Duration) + Send + Sync>;

/// What a build task needs besides the build itself.
enum Input {
    Tree(Tree),
    Resolved,
}

impl BuildService {
    /// A service writing to `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, options: BuildOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                delivery: Delivery::new(store.clone(), Arc::new(NoResolver), Arc::new(SystemClock)),
                store,
                registry: Registry::new(options.registry),
                docker: options.docker,
                work_dir: options.work_dir,
                cache_dir: options.cache_dir,
                clock: Arc::new(SystemClock),
                logs: Mutex::default(),
                recording: tokio::sync::Mutex::new(()),
                permits: Semaphore::new(options.concurrency.max(1)),
                observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Has `observe` told of every build that ends from now on; only the first observer
    /// set is kept: returns whether this one was.
    pub fn observe_builds(&self, observe: BuildObserver) -> bool {
        self.inner.observer.set(observe).is_ok()
    }

    /// Marks builds that a previous run of the server left Pending or Running as failed
    /// (their work died with the process); returns how many. Requesting the same commit
    /// again builds it anew. The blobs of the builds that succeeded are remembered where
    /// they were pushed, so that a new application's build mounts the layers it shares
    /// with them instead of uploading them again.
    pub async fn recover(&self) -> Result<usize, BuildError> {
        let store = self.inner.store.as_ref();
        let builds = repo::list_all::<BuildKind>(store, None)
            .await
            .map_err(repo_error)?;
        for b in builds.iter().filter(|b| b.status.phase == BuildPhase::Succeeded) {
            if let Ok(image) = Registry::reference(&format!("{}:{}", b.spec.image, b.name())) {
                for layer in &b.status.layers {
                    self.inner.registry.remember(&image, &layer.digest);
                }
            }
        }
        let mut count = 0;
        for mut b in builds.into_iter().filter(|b| !b.status.phase.is_final()) {
            let name = b.metadata.name.clone();
            b.status.phase = BuildPhase::Failed;
            b.status.message =
                Some("the server stopped while this build ran; request the build again".to_owned());
            b.status.finished_at = Some(self.inner.clock.now());
            let event = NewEvent::warning(
                "BuildFailed",
                "Build",
                &name,
                "berth",
                "interrupted by a server restart",
            )
            .about(&b.spec.application, None);
            store
                .commit(vec![repo::replace(&b).map_err(repo_error)?], vec![event])
                .await?;
            count += 1;
        }
        Ok(count)
    }

    fn log_of(&self, name: &str) -> Option<BuildLog> {
        self.inner
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    async fn application(&self, name: &str) -> Result<(Application, Source), BuildError> {
        let app = repo::get::<ApplicationKind>(self.inner.store.as_ref(), name)
            .await
            .map_err(repo_error)?
            .ok_or_else(|| BuildError::NotFound {
                kind: "Application",
                name: name.to_owned(),
            })?;
        let source = app.spec.source.clone().ok_or_else(|| Invalid {
            kind: "Application",
            errors: vec![
                FieldError::new(
                    "spec.source",
                    format!("application '{name}' has no source to build"),
                )
                .hint("add spec.source with git, ref and builder (java, dockerfile or image)"),
            ],
        })?;
        Ok((app, source))
    }

    /// Records a build that failed before it could start (bad URL or ref, missing
    /// image): it says why, and keeps what was logged.
    async fn record_failure(
        &self,
        mut build: Build,
        log: &BuildLog,
        message: String,
    ) -> Result<Build, BuildError> {
        log.line(format!("error: {message}"));
        let now = self.inner.clock.now();
        build.status.phase = BuildPhase::Failed;
        build.status.message = Some(message.clone());
        build.status.log = log_tail(&log.text(), MAX_STORED_LOG);
        build.status.started_at = Some(now);
        build.status.finished_at = Some(now);
        let event = NewEvent::warning("BuildFailed", "Build", build.name(), "berth", message)
            .about(&build.spec.application, None);
        let commit = self
            .inner
            .store
            .commit(vec![repo::create(&build).map_err(repo_error)?], vec![event])
            .await?;
        repo::decode_committed(commit.documents.into_iter().next().flatten()).map_err(repo_error)
    }

    /// Runs a recorded build to its end.
    async fn run(self, build: Build, input: Input, log: BuildLog) {
        let name = build.name().to_owned();
        let _permit = self.inner.permits.acquire().await;
        let started = std::time::Instant::now();
        let outcome = match self.set_running(&name).await {
            Ok(build) => self.work(&build, input, &log).await,
            Err(e) => Err(e.to_string()),
        };
        match self.finish(&name, outcome, &log).await {
            Ok(succeeded) => {
                if let Some(observe) = self.inner.observer.get() {
                    observe(if succeeded { "Succeeded" } else { "Failed" }, started.elapsed());
                }
            }
            Err(e) => tracing::error!(build = %name, error = %e, "cannot record the end of a build"),
        }
        log.finish();
        self.inner
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
    }

    async fn current(&self, name: &str) -> Result<Build, BuildError> {
        repo::get::<BuildKind>(self.inner.store.as_ref(), name)
            .await
            .map_err(repo_error)?
            .ok_or_else(|| BuildError::NotFound {
                kind: "Build",
                name: name.to_owned(),
            })
    }

    async fn set_running(&self, name: &str) -> Result<Build, BuildError> {
        let mut build = self.current(name).await?;
        build.status.phase = BuildPhase::Running;
        build.status.started_at = Some(self.inner.clock.now());
        let commit = self
            .inner
            .store
            .commit(vec![repo::replace(&build).map_err(repo_error)?], vec![])
            .await?;
        repo::decode_committed(commit.documents.into_iter().next().flatten()).map_err(repo_error)
    }

    /// The builder's work; the error is the message the build fails with.
    async fn work(&self, build: &Build, input: Input, log: &BuildLog) -> Result<Pushed, String> {
        let registry = &self.inner.registry;
        let target = || -> Result<Reference, String> {
            Registry::reference(&format!("{}:{}", build.spec.image, build.name())).map_err(|e| e.to_string())
        };
        match (&build.spec.builder, input) {
            (Builder::Java(settings), Input::Tree(tree)) => {
                let maven_repository = crate::maven::local_repository(&self.inner.cache_dir);
                let app = java::prepare(&tree, settings, log, &self.inner.work_dir, &maven_repository)
                    .await
                    .map_err(|e| e.to_string())?;
                let port = self.port(&build.spec.application).await;
                java::push(registry, &target()?, &app, settings, port, &tree.commit, log)
                    .await
                    .map_err(|e| e.to_string())
            }
            (Builder::Dockerfile(settings), Input::Tree(tree)) => {
                let docker = self.inner.docker.as_ref().ok_or_else(|| {
                    "this server has no Docker Engine API endpoint for dockerfile builds (set DOCKER_HOST)".to_owned()
                })?;
                dockerfile::build(docker, registry, &tree, settings, &target()?, log)
                    .await
                    .map_err(|e| e.to_string())
            }
            (Builder::Image, _) => {
                let digest = build.status.digest.clone().ok_or("the image was not resolved")?;
                log.line(format!("{} is {digest}", build.spec.image));
                Ok(Pushed {
                    digest,
                    layers: Vec::new(),
                })
            }
            (_, Input::Resolved) => Err("the source was not fetched".to_owned()),
        }
    }

    /// The port the application's image exposes (the java builder writes it).
    async fn port(&self, application: &str) -> u16 {
        repo::get::<ApplicationKind>(self.inner.store.as_ref(), application)
            .await
            .ok()
            .flatten()
            .map_or(8080, |a| a.spec.port)
    }

    /// Records the outcome: Succeeded with a release pinned to the digest (the use case
    /// `berth_service::Delivery::release_from_build`, one commit), or Failed; returns
    /// whether it succeeded.
    async fn finish(
        &self,
        name: &str,
        outcome: Result<Pushed, String>,
        log: &BuildLog,
    ) -> Result<bool, BuildError> {
        let pushed = match outcome {
            Ok(pushed) => pushed,
            Err(message) => {
                let build = self.current(name).await?;
                return self.fail(build, log, &message).await.map(|()| false);
            }
        };
        let stored_log = |line: &str| {
            log.line(line);
            log_tail(&log.text(), MAX_STORED_LOG)
        };
        let released = self
            .inner
            .delivery
            .release_from_build(ReleaseFromBuild {
                build: name.to_owned(),
                digest: pushed.digest.clone(),
                layers: pushed.layers.clone(),
                log: &stored_log,
            })
            .await;
        let message = match released {
            Ok(_) => return Ok(true),
            Err(berth_service::Error::Unreleasable { message, .. }) => message,
            Err(berth_service::Error::Busy { .. }) => {
                "other releases kept taking the release number".to_owned()
            }
            Err(berth_service::Error::NotFound { kind, name }) => {
                return Err(BuildError::NotFound { kind, name });
            }
            Err(berth_service::Error::Store(e)) => return Err(e.into()),
            Err(e) => {
                return Err(BuildError::Store(StoreError::Backend {
                    message: e.to_string(),
                }));
            }
        };
        let build = self.current(name).await?;
        self.fail(build, log, &message).await.map(|()| false)
    }

    async fn fail(&self, mut build: Build, log: &BuildLog, message: &str) -> Result<(), BuildError> {
        log.line(format!("error: {message}"));
        build.status.phase = BuildPhase::Failed;
        build.status.message = Some(message.to_owned());
        build.status.finished_at = Some(self.inner.clock.now());
        build.status.log = log_tail(&log.text(), MAX_STORED_LOG);
        let event = NewEvent::warning("BuildFailed", "Build", build.name(), "berth", message)
            .about(&build.spec.application, None);
        self.inner
            .store
            .commit(vec![repo::replace(&build).map_err(repo_error)?], vec![event])
            .await?;
        Ok(())
    }
}

fn repo_error(e: repo::RepoError) -> BuildError {
    match e {
        repo::RepoError::Store(e) => BuildError::Store(e),
        e @ repo::RepoError::Corrupt { .. } => BuildError::Store(StoreError::Backend {
            message: e.to_string(),
        }),
    }
}

#[async_trait]
impl Builds for BuildService {
    async fn request(&self, request: BuildRequest) -> Result<BuildTicket, BuildError> {
        let (app, source) = self.application(&request.application).await?;
        let git_ref = request.git_ref.clone().unwrap_or_else(|| source.git_ref.clone());
        let log = BuildLog::default();
        let mut spec = BuildSpec {
            application: request.application.clone(),
            number: 0,
            git: source.git.clone(),
            git_ref: source.git.as_ref().map(|_| git_ref.clone()),
            commit: None,
            builder: source.builder.clone(),
            builder_hash: builder_hash(&app.spec, &source),
            image: app.spec.image.clone(),
            requested_by: Some(request.requested_by.clone()),
        };
        // Learn the revision first (outside the lock: it can take a while).
        let (input, digest, failure) = match (&source.builder, &source.git) {
            (Builder::Image, _) => {
                log.line(format!("resolving {}", app.spec.image));
                let resolved = match Registry::reference(&app.spec.image) {
                    Ok(r) => self.inner.registry.resolve(&r, Some(&log)).await,
                    Err(e) => Err(e),
                };
                match resolved {
                    Ok(d) => (Input::Resolved, Some(d), None),
                    Err(e) => (Input::Resolved, None, Some(e.to_string())),
                }
            }
            (_, Some(url)) => {
                log.line(format!("fetching {url} at {git_ref}"));
                let scratch = tempfile::Builder::new()
                    .prefix("fetch-")
                    .tempdir_in(ensure_dir(&self.inner.work_dir))
                    .map_err(|e| StoreError::Backend {
                        message: format!(
                            "cannot make a scratch directory in {}: {e}",
                            self.inner.work_dir.display()
                        ),
                    })?;
                let (url, r, path) = (url.clone(), git_ref.clone(), scratch.path().join("repo.git"));
                let fetched = tokio::task::spawn_blocking(move || git::fetch(&url, &r, &path))
                    .await
                    .map_err(|e| StoreError::Backend {
                        message: format!("the fetch task failed: {e}"),
                    })?;
                match fetched {
                    Ok(tree) => {
                        log.line(format!("commit {} ({} file(s))", tree.commit, tree.files.len()));
                        spec.commit = Some(tree.commit.clone());
                        (Input::Tree(tree), None, None)
                    }
                    Err(e) => (Input::Resolved, None, Some(e.to_string())),
                }
            }
            (_, None) => (
                Input::Resolved,
                None,
                Some("the source names no git repository".to_owned()),
            ),
        };

        let _recording = self.inner.recording.lock().await;
        let builds = repo::list_all::<BuildKind>(self.inner.store.as_ref(), Some(&request.application))
            .await
            .map_err(repo_error)?;
        spec.number = next_build_number(&builds);
        let mut build = Build::new(build_name(&request.application, spec.number), spec);
        build.status.digest = digest;
        if let Some(message) = failure {
            let build = self.record_failure(build, &log, message).await?;
            return Ok(BuildTicket { build, reused: false });
        }
        if let Some(key) = BuildKey::of(&build)
            && let Some(existing) = reusable(&builds, &key)
        {
            return Ok(BuildTicket {
                build: existing.clone(),
                reused: true,
            });
        }
        build.validate()?;
        let event = NewEvent::normal(
            "BuildRequested",
            "Build",
            build.name(),
            &request.requested_by,
            match &build.spec.commit {
                Some(c) => format!(
                    "build of {} at {c} with the {} builder",
                    request.application,
                    build.spec.builder.kind()
                ),
                None => format!("resolution of {}", build.spec.image),
            },
        )
        .about(&request.application, None);
        let commit = self
            .inner
            .store
            .commit(vec![repo::create(&build).map_err(repo_error)?], vec![event])
            .await?;
        let build: Build =
            repo::decode_committed(commit.documents.into_iter().next().flatten()).map_err(repo_error)?;
        self.inner
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(build.name().to_owned(), log.clone());
        tokio::spawn(self.clone().run(build.clone(), input, log));
        Ok(BuildTicket { build, reused: false })
    }

    async fn log(&self, name: &str, offset: u64) -> Result<LogChunk, BuildError> {
        let (text, finished) = match self.log_of(name) {
            Some(log) => (log.text(), log.is_finished()),
            None => {
                let build = self.current(name).await?;
                (build.status.log, build.status.phase.is_final())
            }
        };
        let mut start = usize::try_from(offset).unwrap_or(usize::MAX).min(text.len());
        while !text.is_char_boundary(start) {
            start += 1;
        }
        Ok(LogChunk {
            text: text[start..].to_owned(),
            next: text.len() as u64,
            finished,
        })
    }

    async fn wait_log(&self, name: &str, offset: u64, timeout: Duration) {
        let Some(log) = self.log_of(name) else {
            // Not running here: its log is complete in the store, or another process
            // runs it; look again a little later.
            tokio::time::sleep(timeout.min(Duration::from_millis(500))).await;
            return;
        };
        let mut rx = log.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|(len, done)| *len > offset || *done)).await;
    }
}

fn ensure_dir(dir: &std::path::Path) -> &std::path::Path {
    let _ = std::fs::create_dir_all(dir);
    dir
}
