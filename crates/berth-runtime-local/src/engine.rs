//! The Docker Engine API side of the local runtime: connecting (Podman's compatible
//! socket or Docker), mapping errors to [`RuntimeError`], and the pure translations
//! between a [`Workload`] and a container — labels, name, create body, config-file tar,
//! and reading replicas back from container summaries.
//!
//! Everything Berth needs to continue after a restart is in the labels: application,
//! environment, release, deployment, the spec hash, the container port and the health
//! check. The in-memory state of the runtime only holds health counters and bookkeeping.

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use berth_core::{
    objects::HealthCheck,
    ports::RuntimeError,
    render::{Workload, WorkloadKey},
};
use bollard::{
    API_DEFAULT_VERSION, Docker,
    errors::Error as DockerError,
    models::{ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig, PortBinding},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UnixStream},
};

/// Label marking containers Berth manages.
pub const LABEL_MANAGED_BY: &str = "berth.managed-by";
/// Label naming the cluster a container belongs to.
pub const LABEL_CLUSTER: &str = "berth.cluster";
/// Label naming the application.
pub const LABEL_APPLICATION: &str = "berth.application";
/// Label naming the environment.
pub const LABEL_ENVIRONMENT: &str = "berth.environment";
/// Label holding the release number.
pub const LABEL_RELEASE: &str = "berth.release";
/// Label naming the deployment that created the container.
pub const LABEL_DEPLOYMENT: &str = "berth.deployment";
/// Label holding the workload's spec hash.
pub const LABEL_SPEC_HASH: &str = "berth.spec-hash";
/// Label holding the port the application listens on inside the container.
pub const LABEL_PORT: &str = "berth.port";
/// Label holding the health check as JSON, so that replicas of an older shape are still
/// probed correctly after a restart.
pub const LABEL_HEALTH: &str = "berth.health";
/// Label: seconds the replica keeps running out of traffic before SIGTERM.
pub const LABEL_DRAIN: &str = "berth.drain-seconds";
/// Label: seconds from SIGTERM to SIGKILL.
pub const LABEL_GRACE: &str = "berth.termination-grace-seconds";

/// Time one Docker API call may take before the engine counts as unreachable. Stops add
/// their own timeout on top.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// [`REQUEST_TIMEOUT_SECS`] as a duration.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS);
/// Time the first contact (version negotiation) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoint used when none is configured: `DOCKER_HOST`, else the platform socket.
#[must_use]
pub fn default_endpoint() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// Opens a client for `endpoint` (`unix://…`, `tcp://…`, `http://…` or a socket path).
/// No request is made yet.
pub fn connect(endpoint: &str, stop_timeout: Duration) -> Result<Docker, RuntimeError> {
    let timeout = REQUEST_TIMEOUT_SECS + stop_timeout.as_secs();
    let result = if endpoint.starts_with("unix://") || endpoint.starts_with('/') {
        Docker::connect_with_unix(endpoint, timeout, API_DEFAULT_VERSION)
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, timeout, API_DEFAULT_VERSION)
    } else {
        return Err(RuntimeError::Failed {
            message: format!(
                "unsupported Docker endpoint '{endpoint}': use unix:///path/to/socket, tcp://host:port or http://host:port"
            ),
        });
    };
    result.map_err(|e| classify(e, &format!("connecting to {endpoint}")))
}

/// Whether an error means the engine could not be talked to at all.
#[must_use]
pub fn is_unreachable(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::SocketNotFoundError(_)
            | DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
    )
}

/// Whether the engine answered 404 (no such container or image).
#[must_use]
pub fn is_not_found(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError { status_code: 404, .. }
    )
}

/// Maps a Docker API error to the core's runtime error, saying what Berth was doing.
#[must_use]
pub fn classify(error: DockerError, doing: &str) -> RuntimeError {
    if is_unreachable(&error) {
        RuntimeError::Unreachable {
            message: format!("{doing}: {error}"),
        }
    } else {
        RuntimeError::Failed {
            message: format!("{doing}: {error}"),
        }
    }
}

/// Lists the containers of `cluster`, in every state.
///
/// This is a direct request rather than bollard's `list_containers`: Podman reports
/// states Docker does not have (`stopped` between a stop and its cleanup, `configured`,
/// `initialized`), and bollard fails to read the whole list when one container is in
/// such a state. The states are mapped to Docker's before the summaries are read.
pub async fn list_containers(
    endpoint: &str,
    api_version: &str,
    cluster: &str,
) -> Result<Vec<ContainerSummary>, RuntimeError> {
    let filters = serde_json::json!({ "label": [format!("{LABEL_CLUSTER}={cluster}")] }).to_string();
    let path = format!(
        "/v{api_version}/containers/json?all=true&filters={}",
        percent_encode(&filters)
    );
    let body = tokio::time::timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS), get(endpoint, &path))
        .await
        .map_err(|_| RuntimeError::Unreachable {
            message: format!("listing containers: {endpoint} did not answer within {REQUEST_TIMEOUT_SECS} s"),
        })??;
    parse_container_list(&body).map_err(|e| RuntimeError::Failed {
        message: format!("listing containers: unexpected answer from {endpoint}: {e}"),
    })
}

/// Reads a `/containers/json` answer, mapping Podman-only states to Docker's.
pub fn parse_container_list(body: &[u8]) -> Result<Vec<ContainerSummary>, serde_json::Error> {
    let mut list: Vec<serde_json::Value> = serde_json::from_slice(body)?;
    for container in &mut list {
        if let Some(state) = container.get_mut("State")
            && let Some(text) = state.as_str()
        {
            let docker = match text {
                "created" | "running" | "paused" | "restarting" | "exited" | "removing" | "dead"
                | "stopping" | "" => text,
                "configured" | "initialized" => "created",
                // "stopped" and anything unknown: not running.
                _ => "exited",
            };
            *state = serde_json::Value::String(docker.to_owned());
        }
    }
    serde_json::from_value(serde_json::Value::Array(list))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// One GET on a fresh connection to the engine.
async fn get(endpoint: &str, path: &str) -> Result<Bytes, RuntimeError> {
    let unreachable = |e: &dyn std::fmt::Display| RuntimeError::Unreachable {
        message: format!("listing containers at {endpoint}: {e}"),
    };
    if let Some(socket) = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
    {
        let stream = UnixStream::connect(socket).await.map_err(|e| unreachable(&e))?;
        get_over(stream, "localhost", path, endpoint).await
    } else if endpoint.starts_with('/') {
        let stream = UnixStream::connect(endpoint).await.map_err(|e| unreachable(&e))?;
        get_over(stream, "localhost", path, endpoint).await
    } else {
        let authority = endpoint
            .trim_start_matches("tcp://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let stream = TcpStream::connect(authority).await.map_err(|e| unreachable(&e))?;
        get_over(stream, authority, path, endpoint).await
    }
}

async fn get_over<S>(stream: S, host: &str, path: &str, endpoint: &str) -> Result<Bytes, RuntimeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let unreachable = |e: &dyn std::fmt::Display| RuntimeError::Unreachable {
        message: format!("listing containers at {endpoint}: {e}"),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| RuntimeError::Failed {
            message: format!("listing containers: {e}"),
        })?;
    let response = sender.send_request(request).await.map_err(|e| unreachable(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    if !status.is_success() {
        return Err(RuntimeError::Failed {
            message: format!(
                "listing containers: {endpoint} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ),
        });
    }
    Ok(body)
}

/// The container name of a replica: `berth-<cluster>-<app>-<env>-r<release>-<suffix>`.
#[must_use]
pub fn container_name(cluster: &str, workload: &Workload, suffix: &str) -> String {
    let raw = format!(
        "berth-{cluster}-{}-{}-r{}-{suffix}",
        workload.key.application, workload.key.environment, workload.release
    );
    // Names are DNS labels already; this only guards against anything else slipping in.
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The labels of a replica of `workload` on `cluster`.
#[must_use]
pub fn labels(cluster: &str, workload: &Workload) -> HashMap<String, String> {
    let health = serde_json::to_string(&workload.health).unwrap_or_default();
    [
        (LABEL_MANAGED_BY, "berth".to_owned()),
        (LABEL_CLUSTER, cluster.to_owned()),
        (LABEL_APPLICATION, workload.key.application.clone()),
        (LABEL_ENVIRONMENT, workload.key.environment.clone()),
        (LABEL_RELEASE, workload.release.to_string()),
        (LABEL_DEPLOYMENT, workload.deployment.clone()),
        (LABEL_SPEC_HASH, workload.spec_hash.clone()),
        (LABEL_PORT, workload.port.to_string()),
        (LABEL_HEALTH, health),
        (LABEL_DRAIN, workload.drain_seconds.to_string()),
        (LABEL_GRACE, workload.termination_grace_seconds.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Memory limit in bytes as the engine reports it (0: none).
fn memory_limit(workload: &Workload) -> i64 {
    workload
        .memory_bytes
        .map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX))
}

/// CPU limit in billionths of a CPU as the engine reports it (0: none).
fn nano_cpus(workload: &Workload) -> i64 {
    workload.cpu_millis.map_or(0, |m| {
        i64::try_from(m).unwrap_or(i64::MAX).saturating_mul(1_000_000)
    })
}

/// The create body of a replica: image, env, entrypoint/cmd overrides, the port
/// published on 127.0.0.1 at a port the engine picks, an init process (so SIGTERM
/// stops the app promptly), limits, and no restart policy (Berth replaces replicas).
#[must_use]
pub fn create_body(cluster: &str, workload: &Workload) -> ContainerCreateBody {
    let port = format!("{}/tcp", workload.port);
    let bindings = HashMap::from([(
        port.clone(),
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".to_owned()),
            host_port: Some(String::new()),
        }]),
    )]);
    let memory = memory_limit(workload);
    let cpus = nano_cpus(workload);
    ContainerCreateBody {
        image: Some(workload.image.clone()),
        // The container's environment is how secrets reach a local replica; the values
        // are in the create request and nowhere else Berth writes.
        env: Some(
            workload
                .env
                .iter()
                .filter(|(k, _)| !workload.secret_env.contains_key(*k))
                .map(|(k, v)| format!("{k}={v}"))
                .chain(
                    workload
                        .secret_env
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.expose())),
                )
                .collect(),
        ),
        entrypoint: workload.command.clone(),
        cmd: workload.args.clone(),
        exposed_ports: Some(vec![port]),
        labels: Some(labels(cluster, workload)),
        // The engine's own stop (`podman stop` by hand) waits as long as Berth does.
        stop_timeout: Some(i64::from(workload.termination_grace_seconds)),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            init: Some(true),
            memory: (memory > 0).then_some(memory),
            nano_cpus: (cpus > 0).then_some(cpus),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// Errors building the config-file archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A config file path is not an absolute path inside the container.
    #[error("config file path '{path}' must be absolute and must not contain '..'")]
    BadPath {
        /// The path.
        path: String,
    },
    /// Writing the tar failed.
    #[error("cannot build the config-file archive")]
    Tar(#[source] std::io::Error),
}

/// A tar of the workload's config files and secret files, to be extracted at `/`.
/// Missing parent directories are created by the engine when it extracts (Docker and
/// Podman both do), so existing directories keep their permissions. Secret files are
/// read-only (0444: whatever user the app runs as can read them, nobody writes them).
pub fn config_archive(workload: &Workload) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mtime = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    let files = workload
        .config_files
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_bytes(), 0o644))
        .chain(
            workload
                .secret_files
                .iter()
                .map(|f| (f.path.as_str(), f.value.expose().as_bytes(), 0o444)),
        );
    for (path, content, mode) in files {
        let relative = path.trim_start_matches('/');
        if !path.starts_with('/')
            || relative.is_empty()
            || relative.ends_with('/')
            || relative.split('/').any(|part| part == ".." || part.is_empty())
        {
            return Err(ArchiveError::BadPath {
                path: path.to_owned(),
            });
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, relative, content)
            .map_err(ArchiveError::Tar)?;
    }
    builder.into_inner().map_err(ArchiveError::Tar)
}

/// Splits an image reference into what `/images/create` wants: `fromImage` and `tag`.
/// A digest reference is passed whole; a reference without tag means `latest` (an empty
/// tag would pull every tag).
#[must_use]
pub fn pull_reference(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_owned(), String::new());
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (
            image[..name_start + i].to_owned(),
            image[name_start + i + 1..].to_owned(),
        ),
        None => (image.to_owned(), "latest".to_owned()),
    }
}

/// The container-level state Berth distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Running (or restarting, which only an outside policy can cause).
    Running,
    /// Paused.
    Paused,
    /// Not running: created, exited, dead or stopping.
    Exited,
    /// Being removed right now.
    Removing,
}

/// A replica as read back from a container summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Container id.
    pub id: String,
    /// Container name, without the leading `/`.
    pub name: String,
    /// Application and environment.
    pub key: WorkloadKey,
    /// Release number (0 if the label is missing).
    pub release: u64,
    /// Spec hash label.
    pub spec_hash: String,
    /// Container state.
    pub state: ContainerState,
    /// When the container was created.
    pub created: DateTime<Utc>,
    /// The published host port of the application's port.
    pub host_port: Option<u16>,
    /// The health check it was created with.
    pub check: Option<HealthCheck>,
    /// How it stops, as it was created with (`None` for replicas made before Berth
    /// recorded it: the runtime's defaults apply).
    pub stop: Option<StopTimes>,
}

/// How a replica stops: out of traffic for `drain`, then SIGTERM, then SIGKILL after
/// `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopTimes {
    /// From leaving the traffic to SIGTERM.
    pub drain: Duration,
    /// From SIGTERM to SIGKILL.
    pub grace: Duration,
}

impl StopTimes {
    /// The stop times of `workload`.
    #[must_use]
    pub fn of(workload: &Workload) -> Self {
        Self {
            drain: Duration::from_secs(u64::from(workload.drain_seconds)),
            grace: Duration::from_secs(u64::from(workload.termination_grace_seconds)),
        }
    }
}

/// Reads a replica from a container summary; `None` when it lacks Berth's labels.
#[must_use]
pub fn observe(summary: &ContainerSummary) -> Option<Observed> {
    let labels = summary.labels.as_ref()?;
    let id = summary.id.clone()?;
    let key = WorkloadKey {
        application: labels.get(LABEL_APPLICATION)?.clone(),
        environment: labels.get(LABEL_ENVIRONMENT)?.clone(),
    };
    let state = match summary.state {
        Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING) => {
            ContainerState::Running
        }
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        _ => ContainerState::Exited,
    };
    let port: Option<u16> = labels.get(LABEL_PORT).and_then(|p| p.parse().ok());
    let host_port = summary.ports.as_ref().and_then(|ports| {
        ports
            .iter()
            .filter(|p| port.is_none_or(|want| p.private_port == want))
            .find_map(|p| p.public_port.filter(|&hp| hp != 0))
    });
    let name = summary
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map_or_else(|| id.clone(), |n| n.trim_start_matches('/').to_owned());
    Some(Observed {
        name,
        key,
        release: labels
            .get(LABEL_RELEASE)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        spec_hash: labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default(),
        state,
        created: summary
            .created
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .unwrap_or_else(Utc::now),
        host_port,
        check: labels
            .get(LABEL_HEALTH)
            .and_then(|h| serde_json::from_str(h).ok()),
        stop: stop_times(labels),
        id,
    })
}

/// The stop times recorded in a replica's labels, when both are there.
fn stop_times(labels: &HashMap<String, String>) -> Option<StopTimes> {
    let seconds = |label: &str| {
        labels
            .get(label)
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
    };
    Some(StopTimes {
        drain: seconds(LABEL_DRAIN)?,
        grace: seconds(LABEL_GRACE)?,
    })
}

/// What the engine says a running replica is limited to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Image reference the container was created from.
    pub image: Option<String>,
    /// Memory limit in bytes (0 or `None`: none).
    pub memory: Option<i64>,
    /// CPU limit in billionths (0 or `None`: none).
    pub nano_cpus: Option<i64>,
}

fn normalize_image(image: &str) -> &str {
    image
        .strip_prefix("docker.io/")
        .map(|i| i.strip_prefix("library/").unwrap_or(i))
        .unwrap_or(image)
}

/// How a replica differs from what its workload wants, if it does (someone changed it
/// behind Berth's back, e.g. `docker update --memory`).
#[must_use]
pub fn drift(workload: &Workload, actual: &Limits) -> Option<String> {
    let mut found = Vec::new();
    if let Some(image) = &actual.image
        && normalize_image(image) != normalize_image(&workload.image)
    {
        found.push(format!("runs image {image} instead of {}", workload.image));
    }
    let memory = actual.memory.unwrap_or(0);
    if memory != memory_limit(workload) {
        found.push(format!(
            "has a memory limit of {memory} bytes instead of {}",
            memory_limit(workload)
        ));
    }
    let cpus = actual.nano_cpus.unwrap_or(0);
    if cpus != nano_cpus(workload) {
        found.push(format!(
            "has a CPU limit of {} millicores instead of {}",
            cpus / 1_000_000,
            nano_cpus(workload) / 1_000_000
        ));
    }
    (!found.is_empty()).then(|| found.join(" and "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_core::objects::ConfigFile;
    use bollard::models::PortSummary;

    use super::*;

    fn workload() -> Workload {
        Workload {
            key: WorkloadKey {
                application: "web".into(),
                environment: "qa".into(),
            },
            cluster: "local".into(),
            deployment: "web-qa-3".into(),
            release: 3,
            image: "127.0.0.1:5000/web@sha256:abc".into(),
            command: Some(vec!["httpd".into()]),
            args: Some(vec!["-f".into()]),
            port: 8080,
            env: BTreeMap::from([("A".into(), "1".into())]),
            config_files: vec![ConfigFile {
                path: "/www/deep/healthz".into(),
                content: "ok".into(),
            }],
            cpu_millis: Some(500),
            memory_bytes: Some(64 << 20),
            health: HealthCheck::default(),
            replicas: 2,
            hosts: vec![],
            startup_deadline_seconds: 30,
            spec_hash: "h1".into(),
            ..Workload::default()
        }
    }

    #[test]
    fn names_and_labels_carry_the_identity() {
        let w = workload();
        assert_eq!(container_name("dc1", &w, "a1b2c3"), "berth-dc1-web-qa-r3-a1b2c3");
        let l = labels("dc1", &w);
        assert_eq!(l[LABEL_MANAGED_BY], "berth");
        assert_eq!(l[LABEL_CLUSTER], "dc1");
        assert_eq!(l[LABEL_RELEASE], "3");
        assert_eq!(l[LABEL_DEPLOYMENT], "web-qa-3");
        assert_eq!(l[LABEL_SPEC_HASH], "h1");
        let check: HealthCheck = serde_json::from_str(&l[LABEL_HEALTH]).unwrap();
        assert_eq!(check, w.health);
    }

    #[test]
    fn create_body_publishes_on_loopback_with_init_and_limits() {
        let body = create_body("dc1", &workload());
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(value["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
        let host = &value["HostConfig"];
        assert_eq!(
            host["PortBindings"]["8080/tcp"],
            serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": ""}])
        );
        assert_eq!(host["Init"], true);
        assert_eq!(host["Memory"], 64 << 20);
        assert_eq!(host["NanoCpus"], 500_000_000);
        assert!(host.get("RestartPolicy").is_none());
        assert_eq!(value["Env"], serde_json::json!(["A=1"]));
        assert_eq!(value["Entrypoint"], serde_json::json!(["httpd"]));
        assert_eq!(value["Cmd"], serde_json::json!(["-f"]));
    }

    #[test]
    fn config_files_become_a_tar_rooted_at_slash() {
        let bytes = config_archive(&workload()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(entries, ["www/deep/healthz"]);
        for bad in ["relative", "/a/../b", "/", "/a//b"] {
            let mut w = workload();
            w.config_files[0].path = bad.into();
            assert!(config_archive(&w).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_go_into_the_container_env_and_read_only_files() {
        use berth_core::{objects::SecretValue, render::SecretFile};
        let mut w = workload();
        w.env.insert("DB_PASSWORD".into(), "not-the-secret".into());
        w.secret_env
            .insert("DB_PASSWORD".into(), SecretValue::new("s3cret".into()));
        w.secret_files.push(SecretFile {
            path: "/run/secrets/tls.pem".into(),
            value: SecretValue::new("PEM".into()),
        });
        let value = serde_json::to_value(create_body("dc1", &w)).unwrap();
        assert_eq!(value["Env"], serde_json::json!(["A=1", "DB_PASSWORD=s3cret"]));
        let bytes = config_archive(&w).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("www/deep/healthz".to_owned(), 0o644),
                ("run/secrets/tls.pem".to_owned(), 0o444)
            ]
        );
    }

    #[test]
    fn pull_references() {
        for (image, want) in [
            ("127.0.0.1:5000/a@sha256:ff", ("127.0.0.1:5000/a@sha256:ff", "")),
            ("127.0.0.1:5000/a:v1", ("127.0.0.1:5000/a", "v1")),
            ("127.0.0.1:5000/a", ("127.0.0.1:5000/a", "latest")),
            ("busybox", ("busybox", "latest")),
        ] {
            let (from, tag) = pull_reference(image);
            assert_eq!((from.as_str(), tag.as_str()), want, "{image}");
        }
    }

    #[test]
    fn observes_replicas_from_summaries() {
        let w = workload();
        let summary = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/berth-dc1-web-qa-r3-a1b2c3".into()]),
            labels: Some(labels("dc1", &w)),
            state: Some(ContainerSummaryStateEnum::PAUSED),
            created: Some(1_700_000_000),
            ports: Some(vec![PortSummary {
                ip: Some("127.0.0.1".into()),
                private_port: 8080,
                public_port: Some(40000),
                typ: None,
            }]),
            ..ContainerSummary::default()
        };
        let o = observe(&summary).unwrap();
        assert_eq!(o.name, "berth-dc1-web-qa-r3-a1b2c3");
        assert_eq!(o.key, w.key);
        assert_eq!((o.release, o.spec_hash.as_str()), (3, "h1"));
        assert_eq!(o.state, ContainerState::Paused);
        assert_eq!(o.host_port, Some(40000));
        assert_eq!(o.check, Some(w.health.clone()));
        let foreign = ContainerSummary {
            id: Some("x".into()),
            labels: Some(HashMap::new()),
            ..ContainerSummary::default()
        };
        assert!(observe(&foreign).is_none());
    }

    #[test]
    fn podman_only_states_are_read_as_docker_states() {
        let body = br#"[
            {"Id": "a", "State": "stopped", "Labels": {}},
            {"Id": "b", "State": "configured"},
            {"Id": "c", "State": "running", "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": 4000, "Type": "tcp"}]},
            {"Id": "d", "State": "something-new"}
        ]"#;
        let list = parse_container_list(body).unwrap();
        let states: Vec<_> = list.iter().map(|c| c.state).collect();
        assert_eq!(
            states,
            [
                Some(ContainerSummaryStateEnum::EXITED),
                Some(ContainerSummaryStateEnum::CREATED),
                Some(ContainerSummaryStateEnum::RUNNING),
                Some(ContainerSummaryStateEnum::EXITED),
            ]
        );
        assert_eq!(
            percent_encode(r#"{"a":["b=c"]}"#),
            "%7B%22a%22%3A%5B%22b%3Dc%22%5D%7D"
        );
    }

    #[test]
    fn drift_compares_image_and_limits() {
        let w = workload();
        let same = Limits {
            image: Some(w.image.clone()),
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
        };
        assert_eq!(drift(&w, &same), None);
        let changed = Limits {
            memory: Some(32 << 20),
            ..same.clone()
        };
        let text = drift(&w, &changed).unwrap();
        assert!(text.contains("memory limit of 33554432"), "{text}");
        let other_image = Limits {
            image: Some("127.0.0.1:5000/web@sha256:def".into()),
            nano_cpus: None,
            ..same
        };
        let text = drift(&w, &other_image).unwrap();
        assert!(
            text.contains("runs image") && text.contains("CPU limit of 0"),
            "{text}"
        );
        let mut unlimited = w.clone();
        unlimited.memory_bytes = None;
        unlimited.cpu_millis = None;
        let none = Limits {
            image: Some(format!("docker.io/library/{}", "busybox")),
            memory: Some(0),
            nano_cpus: None,
        };
        unlimited.image = "busybox".into();
        assert_eq!(drift(&unlimited, &none), None);
    }
}
