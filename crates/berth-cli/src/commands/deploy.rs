//! `berth deploy APP --env ENV [--release N | --image REF] [--no-wait]`: ask the server
//! for a deployment, then watch it until it reaches a final phase.
//!
//! The watcher (shared with `rollback`) polls the deployment and prints a line whenever
//! its phase or a cluster's progress changes, so the output reads well both in a
//! terminal and in CI logs. The exit code says how it ended: 0 for `Succeeded`, 1 for
//! `Failed` or `Superseded` (or when `--timeout` passes first).

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::Context;
use berth_core::objects::{ClusterProgress, Deployment, DeploymentCause, DeploymentPhase, DeploymentStatus};

use super::variant;
use crate::{
    client::{Client, is_unreachable},
    output,
};
pub use berth_contract::DeployRequest;

/// Arguments of `berth deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The application to deploy.
    pub app: String,
    /// The environment to deploy to.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// Deploy this existing release (default: the newest release).
    #[arg(long, value_name = "N", conflicts_with = "image")]
    pub release: Option<u64>,
    /// Make a new release of this image (tag or digest) and deploy it.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// How to wait for the rollout.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Flags shared by commands that start a rollout.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WaitArgs {
    /// Return once the deployment is recorded instead of watching it.
    #[arg(long)]
    pub no_wait: bool,
    /// Stop watching after this many seconds (the rollout itself goes on).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Runs `berth deploy`.
pub async fn run(
    client: &Client,
    args: DeployArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let body = DeployRequest {
        environment: args.environment.clone(),
        release: args.release,
        image: args.image.clone(),
    };
    let deployment: Deployment = client
        .post(&["applications", &args.app, "deploy"], &body)
        .await
        .with_context(|| format!("deploying {} to {}", args.app, args.environment))?;
    started(client, deployment, &args.wait, Watch::default(), out).await
}

/// Prints the new deployment and, unless `--no-wait`, watches it to the end.
pub(crate) async fn started(
    client: &Client,
    deployment: Deployment,
    wait: &WaitArgs,
    mut watch: Watch,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    writeln!(out, "{}", headline(&deployment))?;
    if wait.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    watch.timeout = wait.timeout.map(Duration::from_secs);
    watch_deployment(client, deployment, &watch, out).await
}

/// `deployment/web-qa-3: release 4 of web to qa (was 3)`.
#[must_use]
pub fn headline(d: &Deployment) -> String {
    let mut s = format!(
        "deployment/{}: release {} of {} to {}",
        d.metadata.name, d.spec.release, d.spec.application, d.spec.environment
    );
    if let Some(prev) = d.status.previous_release {
        s.push_str(&format!(" (was {prev})"));
    }
    match &d.spec.cause {
        DeploymentCause::Deploy => {}
        DeploymentCause::Rollback { from_release } => {
            s.push_str(&format!(", rolling back from {from_release}"))
        }
        DeploymentCause::AutoRollback { failed_deployment } => {
            s.push_str(&format!(", rolling back after {failed_deployment} failed"));
        }
    }
    s
}

/// How the watcher polls.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    /// Time between polls.
    pub interval: Duration,
    /// Give up after this long.
    pub timeout: Option<Duration>,
    /// Polls in a row that may fail to reach the server before giving up.
    pub max_unreachable: u32,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(500),
            timeout: None,
            max_unreachable: 60,
        }
    }
}

/// Polls the deployment until it is final, printing each change.
pub(crate) async fn watch_deployment(
    client: &Client,
    mut deployment: Deployment,
    watch: &Watch,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    let name = deployment.metadata.name.clone();
    let started = tokio::time::Instant::now();
    let mut shown = Shown::default();
    let mut unreachable = 0;
    loop {
        for line in shown.update(&deployment.status) {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        let phase = deployment.status.phase;
        if phase.is_final() {
            return finish(&deployment, started.elapsed(), out);
        }
        if let Some(limit) = watch.timeout
            && started.elapsed() >= limit
        {
            anyhow::bail!(
                "deployment {name} is still {} after {}; the rollout goes on: follow it with \
                 `berth describe deployment {name}`",
                variant(&phase),
                output::duration(limit.as_secs() as i64)
            );
        }
        tokio::time::sleep(watch.interval).await;
        match client.get::<Deployment>(&["deployments", &name], &[]).await {
            Ok(d) => {
                deployment = d;
                unreachable = 0;
            }
            Err(e) if is_unreachable(&e) && unreachable < watch.max_unreachable => {
                if unreachable == 0 {
                    eprintln!("warning: {e:#}; still trying");
                }
                unreachable += 1;
            }
            Err(e) => return Err(e.context(format!("watching deployment {name}"))),
        }
    }
}

fn finish(d: &Deployment, elapsed: Duration, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    let phase = d.status.phase;
    let took = match (d.status.started_at, d.status.finished_at) {
        (Some(s), Some(f)) => (f - s).num_seconds(),
        _ => elapsed.as_secs() as i64,
    };
    let message = d.status.message.as_deref().unwrap_or("");
    let sep = if message.is_empty() { "" } else { ": " };
    if phase == DeploymentPhase::Succeeded {
        writeln!(out, "Succeeded in {}{sep}{message}", output::duration(took))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{}{sep}{message}", variant(&phase))?;
    anyhow::bail!(
        "deployment {} {}{sep}{message}\n  see what happened: berth events --app {}",
        d.metadata.name,
        variant(&phase).to_lowercase(),
        d.spec.application
    )
}

/// What has been printed so far, so that only changes are printed.
#[derive(Debug, Default)]
pub(crate) struct Shown {
    phase: Option<(DeploymentPhase, Option<String>)>,
    clusters: Vec<String>,
}

impl Shown {
    /// The lines to print for `status`, given what was printed before.
    pub(crate) fn update(&mut self, status: &DeploymentStatus) -> Vec<String> {
        let mut lines = Vec::new();
        let phase = (status.phase, status.message.clone());
        let bare_pending = status.phase == DeploymentPhase::Pending && status.message.is_none();
        if self.phase.as_ref() != Some(&phase) && !status.phase.is_final() && !bare_pending {
            lines.push(phase_line(status));
        }
        self.phase = Some(phase);
        let width = status.clusters.iter().map(|c| c.cluster.len()).max().unwrap_or(0);
        let now: Vec<String> = status.clusters.iter().map(|c| progress_line(c, width)).collect();
        for line in &now {
            if !self.clusters.contains(line) {
                lines.push(format!("  {line}"));
            }
        }
        self.clusters = now;
        lines
    }
}

fn phase_line(status: &DeploymentStatus) -> String {
    match status.message.as_deref() {
        Some(m) if !m.is_empty() => format!("{}: {m}", variant(&status.phase)),
        _ => variant(&status.phase),
    }
}

/// One cluster's progress: `local  2/3 ready  (1 old)`, the cluster name padded to
/// `width`.
#[must_use]
pub fn progress_line(p: &ClusterProgress, width: usize) -> String {
    let mut s = format!("{:<width$}  {}/{} ready", p.cluster, p.ready, p.desired);
    if p.updated > p.ready {
        s.push_str(&format!("  ({} starting)", p.updated - p.ready));
    }
    if p.old > 0 {
        s.push_str(&format!("  ({} old)", p.old));
    }
    if let Some(m) = p.message.as_deref().filter(|m| !m.is_empty()) {
        s.push_str(&format!("  {m}"));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        Json, Router,
        extract::{Path, State},
        response::{IntoResponse, Response},
        routing::{get, post},
    };

    use super::*;
    use crate::{commands::get::tests::deployment, config::Target};

    fn progress(cluster: &str, desired: u32, updated: u32, ready: u32, old: u32) -> ClusterProgress {
        ClusterProgress {
            cluster: cluster.into(),
            datacenter: "default".into(),
            desired,
            updated,
            ready,
            old,
            message: None,
        }
    }

    #[test]
    fn progress_lines() {
        let cases = [
            (progress("local", 3, 2, 2, 1), "local  2/3 ready  (1 old)"),
            (progress("local", 3, 3, 3, 0), "local  3/3 ready"),
            (
                progress("local", 3, 3, 1, 2),
                "local  1/3 ready  (2 starting)  (2 old)",
            ),
            (progress("dc2", 2, 0, 0, 2), "dc2    0/2 ready  (2 old)"),
            (
                ClusterProgress {
                    message: Some("image pull failed".into()),
                    ..progress("local", 1, 1, 0, 1)
                },
                "local  0/1 ready  (1 starting)  (1 old)  image pull failed",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(progress_line(&p, 5), want);
        }
    }

    #[test]
    fn only_changes_are_shown() {
        let mut shown = Shown::default();
        let mut status = DeploymentStatus {
            phase: DeploymentPhase::Progressing,
            message: Some("rolling out release 4".into()),
            clusters: vec![progress("local", 3, 1, 0, 3), progress("dc2", 3, 0, 0, 3)],
            ..DeploymentStatus::default()
        };
        let first = shown.update(&status);
        assert_eq!(
            first,
            [
                "Progressing: rolling out release 4",
                "  local  0/3 ready  (1 starting)  (3 old)",
                "  dc2    0/3 ready  (3 old)"
            ]
        );
        assert!(shown.update(&status).is_empty());
        status.clusters[0] = progress("local", 3, 3, 3, 0);
        assert_eq!(shown.update(&status), ["  local  3/3 ready"]);
        status.phase = DeploymentPhase::Succeeded;
        assert!(shown.update(&status).is_empty());
    }

    #[test]
    fn headlines() {
        let mut d = deployment("web", "qa", 3, 4, DeploymentPhase::Pending);
        d.status.previous_release = Some(3);
        assert_eq!(
            headline(&d),
            "deployment/web-qa-3: release 4 of web to qa (was 3)"
        );
        d.spec.cause = DeploymentCause::Rollback { from_release: 5 };
        assert_eq!(
            headline(&d),
            "deployment/web-qa-3: release 4 of web to qa (was 3), rolling back from 5"
        );
    }

    /// A fake server whose deployment advances one step per poll through `steps`.
    #[derive(Clone)]
    pub(crate) struct Fake {
        pub(crate) steps: Arc<Vec<DeploymentStatus>>,
        pub(crate) polls: Arc<Mutex<usize>>,
        pub(crate) requests: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    impl Fake {
        fn current(&self) -> Deployment {
            let mut polls = self.polls.lock().unwrap();
            let step = (*polls).min(self.steps.len() - 1);
            *polls += 1;
            let mut d = deployment("web", "qa", 3, 4, DeploymentPhase::Pending);
            d.status = self.steps[step].clone();
            d
        }
    }

    async fn create(State(f): State<Fake>, Json(body): Json<serde_json::Value>) -> Response {
        f.requests.lock().unwrap().push(body);
        let mut d = deployment("web", "qa", 3, 4, DeploymentPhase::Pending);
        d.status = DeploymentStatus {
            previous_release: Some(3),
            ..DeploymentStatus::default()
        };
        (axum::http::StatusCode::CREATED, Json(d)).into_response()
    }

    async fn poll(State(f): State<Fake>, Path(name): Path<String>) -> Response {
        assert_eq!(name, "web-qa-3");
        Json(f.current()).into_response()
    }

    pub(crate) async fn serve(steps: Vec<DeploymentStatus>) -> (Client, Fake) {
        let fake = Fake {
            steps: Arc::new(steps),
            polls: Arc::default(),
            requests: Arc::default(),
        };
        let app = Router::new()
            .route("/api/v1/applications/{app}/deploy", post(create))
            .route("/api/v1/applications/{app}/rollback", post(create))
            .route("/api/v1/deployments/{name}", get(poll))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (
            Client::new(&Target::new(&format!("http://{addr}"))).unwrap(),
            fake,
        )
    }

    pub(crate) fn fast() -> Watch {
        Watch {
            interval: Duration::from_millis(5),
            ..Watch::default()
        }
    }

    pub(crate) fn rollout(last: DeploymentPhase, message: &str) -> Vec<DeploymentStatus> {
        let at = |p: DeploymentPhase, c: Vec<ClusterProgress>, m: &str| DeploymentStatus {
            phase: p,
            message: Some(m.into()),
            clusters: c,
            previous_release: Some(3),
            ..DeploymentStatus::default()
        };
        vec![
            at(DeploymentPhase::Pending, vec![], "waiting for clusters"),
            at(
                DeploymentPhase::Progressing,
                vec![progress("local", 3, 1, 0, 3)],
                "rolling out",
            ),
            at(
                DeploymentPhase::Progressing,
                vec![progress("local", 3, 1, 0, 3)],
                "rolling out",
            ),
            at(
                DeploymentPhase::Progressing,
                vec![progress("local", 3, 2, 1, 2)],
                "rolling out",
            ),
            at(
                DeploymentPhase::Progressing,
                vec![progress("local", 3, 3, 2, 1)],
                "rolling out",
            ),
            at(last, vec![progress("local", 3, 3, 3, 0)], message),
        ]
    }

    async fn deploy(
        steps: Vec<DeploymentStatus>,
        args: DeployArgs,
    ) -> (anyhow::Result<ExitCode>, String, Fake) {
        let (client, fake) = serve(steps).await;
        let mut out = Vec::new();
        let body = DeployRequest {
            environment: args.environment.clone(),
            release: args.release,
            image: args.image.clone(),
        };
        let result = async {
            let d: Deployment = client.post(&["applications", &args.app, "deploy"], &body).await?;
            started(&client, d, &args.wait, fast(), &mut out).await
        }
        .await;
        (result, String::from_utf8(out).unwrap(), fake)
    }

    fn args(no_wait: bool) -> DeployArgs {
        DeployArgs {
            app: "web".into(),
            environment: "qa".into(),
            release: None,
            image: Some("127.0.0.1:5000/web:2".into()),
            wait: WaitArgs {
                no_wait,
                timeout: None,
            },
        }
    }

    #[tokio::test]
    async fn a_successful_rollout_shows_progress_and_exits_zero() {
        let (result, out, fake) = deploy(
            rollout(DeploymentPhase::Succeeded, "release 4 runs everywhere"),
            args(false),
        )
        .await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS);
        insta::assert_snapshot!(out, @r"
        deployment/web-qa-3: release 4 of web to qa (was 3)
        Pending: waiting for clusters
        Progressing: rolling out
          local  0/3 ready  (1 starting)  (3 old)
          local  1/3 ready  (1 starting)  (2 old)
          local  2/3 ready  (1 starting)  (1 old)
          local  3/3 ready
        Succeeded in 0s: release 4 runs everywhere
        ");
        assert_eq!(
            fake.requests.lock().unwrap()[0],
            serde_json::json!({"environment": "qa", "image": "127.0.0.1:5000/web:2"})
        );
    }

    #[tokio::test]
    async fn a_failed_rollout_exits_with_its_message() {
        let (result, out, _) = deploy(
            rollout(
                DeploymentPhase::Failed,
                "not healthy within 120s; release 3 keeps serving",
            ),
            args(false),
        )
        .await;
        let e = result.unwrap_err();
        assert_eq!(
            output::error_report(&e),
            "error: deployment web-qa-3 failed: not healthy within 120s; release 3 keeps serving\n  \
             see what happened: berth events --app web"
        );
        assert!(
            out.ends_with("Failed: not healthy within 120s; release 3 keeps serving\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn superseded_is_a_failure_too() {
        let (result, _, _) = deploy(
            rollout(DeploymentPhase::Superseded, "web-qa-4 took its place"),
            args(false),
        )
        .await;
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("superseded: web-qa-4 took its place")
        );
    }

    #[tokio::test]
    async fn no_wait_returns_at_once() {
        let (result, out, fake) = deploy(rollout(DeploymentPhase::Succeeded, ""), args(true)).await;
        assert_eq!(result.unwrap(), ExitCode::SUCCESS);
        assert_eq!(out, "deployment/web-qa-3: release 4 of web to qa (was 3)\n");
        assert_eq!(*fake.polls.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn timeout_stops_watching() {
        let steps = vec![DeploymentStatus {
            phase: DeploymentPhase::Progressing,
            ..DeploymentStatus::default()
        }];
        let mut a = args(false);
        a.wait.timeout = Some(0);
        let (result, _, _) = deploy(steps, a).await;
        let e = result.unwrap_err().to_string();
        assert!(
            e.starts_with("deployment web-qa-3 is still Pending after 0s"),
            "{e}"
        );
    }
}
