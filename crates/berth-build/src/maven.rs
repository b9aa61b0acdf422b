//! Maven builds for the `java` builder: a commit with a `pom.xml` at its root is built with
//! `mvn package` before its JAR or WAR is layered.
//!
//! ```text
//!  commit ─▶ checkout (scratch dir) ─▶ mvn -B package ─▶ target/app.war ─▶ java builder layers
//!                                         │ -Dmaven.repo.local=<work dir>/maven-repository
//!                                         └ every line into the build log, live
//! ```
//!
//! Maven runs on the build host, as `javac` does for `sources`: the host has the JDK and
//! Maven the project's setup installs, no image has to be made or pulled for it, and the
//! local repository is one directory kept between builds (dependencies and plugins are
//! downloaded once per machine). The price is no isolation: a pom's plugins run with the
//! build service's rights, so only repositories one trusts should be built.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{git::Tree, log::BuildLog};

/// The file whose presence at the root of a commit makes it a Maven build.
pub const POM: &str = "pom.xml";
/// Lines of Maven's output a failure message quotes.
const TAIL: usize = 12;
/// The prefix of Maven's error lines.
const ERROR: &str = "[ERROR]";

/// Errors of a Maven build.
#[derive(Debug, thiserror::Error)]
pub enum MavenError {
    /// Maven could not be started.
    #[error("cannot run mvn ({message}); install Maven on the build host (scripts/setup-runtime.sh does)")]
    NotInstalled {
        /// Why.
        message: String,
    },
    /// `mvn package` failed.
    #[error("the Maven build failed (exit code {code}):\n{lines}")]
    Failed {
        /// Its exit code (-1: killed by a signal).
        code: i32,
        /// Its first error lines (or its last lines when it printed no error).
        lines: String,
    },
    /// The build succeeded without making the file the builder names.
    #[error(
        "the Maven build did not make {path}; name its output in the java builder, e.g. war: target/<finalName>.war"
    )]
    NoOutput {
        /// The file named.
        path: String,
    },
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
}

/// Result of this module.
pub type Result<T, E = MavenError> = std::result::Result<T, E>;

/// Whether the commit is built with Maven.
#[must_use]
pub fn is_maven(tree: &Tree) -> bool {
    tree.files.get(POM).is_some_and(|f| !f.symlink)
}

/// Where the build service keeps Maven's local repository in its cache directory.
#[must_use]
pub fn local_repository(cache_dir: &Path) -> PathBuf {
    cache_dir.join("maven-repository")
}

/// Checks out `tree` into `dir`, runs `mvn package` there with `repository` as the local
/// repository, and returns the content of `output` (a path relative to the checkout).
pub async fn package(
    tree: &Tree,
    dir: &Path,
    repository: &Path,
    output: &str,
    log: &BuildLog,
) -> Result<Vec<u8>> {
    let io = |what: &str, e: std::io::Error| MavenError::Io(format!("{what}: {e}"));
    for (path, file) in &tree.files {
        if file.symlink {
            continue;
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("checking out", e))?;
        }
        std::fs::write(&target, &file.data).map_err(|e| io("checking out", e))?;
    }
    std::fs::create_dir_all(repository).map_err(|e| io("making the local repository", e))?;
    log.line(format!("mvn package (local repository {})", repository.display()));
    let mut child = tokio::process::Command::new("mvn")
        .args(["--batch-mode", "--no-transfer-progress", "-Dstyle.color=never"])
        .arg(format!("-Dmaven.repo.local={}", repository.display()))
        .arg("package")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MavenError::NotInstalled {
            message: e.to_string(),
        })?;
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Quoted::default()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(stream(
            BufReader::new(out),
            log.clone(),
            tail.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(stream(
            BufReader::new(err),
            log.clone(),
            tail.clone(),
        )));
    }
    let status = child.wait().await.map_err(|e| io("waiting for mvn", e))?;
    for r in readers {
        let _ = r.await;
    }
    if !status.success() {
        let quoted = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let lines = if quoted.errors.is_empty() {
            &quoted.last
        } else {
            &quoted.errors
        };
        return Err(MavenError::Failed {
            code: status.code().unwrap_or(-1),
            lines: lines.iter().cloned().collect::<Vec<String>>().join("\n"),
        });
    }
    std::fs::read(dir.join(output)).map_err(|_| MavenError::NoOutput {
        path: output.to_owned(),
    })
}

/// What a failure message quotes of Maven's output.
#[derive(Default)]
struct Quoted {
    /// The first error lines.
    errors: std::collections::VecDeque<String>,
    /// The last lines.
    last: std::collections::VecDeque<String>,
}

/// Copies each line of `reader` into the build log, keeping what a failure quotes.
async fn stream<R: tokio::io::AsyncRead + Unpin>(
    reader: BufReader<R>,
    log: BuildLog,
    quoted: std::sync::Arc<std::sync::Mutex<Quoted>>,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log.line(&line);
        let mut q = quoted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if line.starts_with(ERROR) && q.errors.len() < TAIL {
            q.errors.push_back(line.clone());
        }
        if q.last.len() == TAIL {
            q.last.pop_front();
        }
        q.last.push_back(line);
    }
}
