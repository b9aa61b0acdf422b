//! The `java` builder: daemonless and Jib-style.
//!
//! The application is split into three layers on top of a base image, in the order
//! they change least to most often, so that a one-class change uploads one small layer:
//!
//! ```text
//!              JAR or sources (JRE base)       WAR (servlet container base, e.g. Tomcat)
//!  base        JRE layers                      JRE + Tomcat layers: mounted, never uploaded again
//!  dependencies /app/libs/*.jar                <webapps>/ROOT/WEB-INF/lib/*.jar
//!  resources   /app/resources/**               <webapps>/ROOT/** (static files, web.xml, …)
//!  classes     /app/classes/**                 <webapps>/ROOT/WEB-INF/classes/**/*.class
//! ```
//!
//! A JAR gets an entrypoint of `java -cp … MainClass`. A WAR keeps the servlet base's
//! entrypoint (with the application's JVM options and port put in): the base names where
//! web applications go with its `dev.berth.webapps` label, and an image without one is
//! refused as a base for a WAR, as a WAR given as a JAR is, rather than made into an image
//! that cannot start.
//!
//! Layers are reproducible (see [`crate::layer`]) and so is the image config (fixed
//! creation time, no host-specific fields), so the same inputs give the same digest.
//! Nothing is built by a daemon: blobs and the manifest go straight to the registry.

use std::{collections::BTreeMap, io::Read, path::Path};

use berth_core::objects::JavaBuilder;
use bytes::Bytes;
use oci_client::Reference;
use serde_json::{Value, json};

use crate::{
    git::{File, Tree},
    image::{ImageWriter, LAYER_TYPE, Pushed},
    layer::{Entry, Layer, layer},
    log::BuildLog,
    maven,
    registry::{Registry, RegistryError},
};

/// Where the layers put a JAR application inside the image.
const APP: &str = "app";
/// The label of a servlet container base image naming its web applications' directory.
pub const WEBAPPS_LABEL: &str = "dev.berth.webapps";
/// The system property of Berth's Tomcat base that sets its HTTP port.
const PORT_PROPERTY: &str = "berth.http.port";
/// Tomcat's own main class: the servlet base runs it.
const TOMCAT_BOOTSTRAP: &str = "org.apache.catalina.startup.Bootstrap";
/// Heap sizing from the container's memory limit, and a clean exit on OOM so that the
/// platform replaces the replica.
pub const JAVA_TOOL_OPTIONS: &str =
    "-XX:InitialRAMPercentage=50.0 -XX:MaxRAMPercentage=75.0 -XX:+ExitOnOutOfMemoryError";
/// The creation time written into the image config: fixed, for reproducibility.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Errors of the java builder.
#[derive(Debug, thiserror::Error)]
pub enum JavaError {
    /// A file or directory the settings name is not in the commit.
    #[error("{field} '{path}' is not in the repository at commit {commit}")]
    Missing {
        /// The setting, e.g. `jar`.
        field: &'static str,
        /// Its value.
        path: String,
        /// The commit.
        commit: String,
    },
    /// The JAR cannot be read.
    #[error("'{path}' is not a readable JAR: {message}")]
    BadJar {
        /// Its path.
        path: String,
        /// Why.
        message: String,
    },
    /// No main class was named and the JAR's manifest has none.
    #[error("'{path}' has no Main-Class in its manifest; set mainClass in the java builder")]
    NoMainClass {
        /// The JAR.
        path: String,
    },
    /// A WAR was named as the JAR (or the main class is Tomcat's own).
    #[error(
        "'{path}' is a web application ({why}); write war: {path} instead of jar: (and leave mainClass out), so that it runs on the servlet container base"
    )]
    WarAsJar {
        /// The file.
        path: String,
        /// What shows it.
        why: String,
    },
    /// The file named as the WAR is not one.
    #[error("'{path}' is not a WAR: {why}; for a JAR with a Main-Class write jar: {path} instead of war:")]
    NotAWar {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// A WAR was to go on a base image that is no servlet container.
    #[error(
        "base image {image} is not a servlet container (its config has no {WEBAPPS_LABEL} label), so a WAR cannot run on it; leave baseImage out to use {default}, or name a servlet container base"
    )]
    NotServletBase {
        /// The base image.
        image: String,
        /// The default servlet base.
        default: &'static str,
    },
    /// javac failed.
    #[error("javac failed: {message}")]
    Compile {
        /// Its first error line.
        message: String,
    },
    /// The base image cannot be used.
    #[error("base image {image}: {message}")]
    Base {
        /// The reference.
        image: String,
        /// Why.
        message: String,
    },
    /// The Maven build failed.
    #[error(transparent)]
    Maven(#[from] crate::maven::MavenError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
}

/// Result of this module.
pub type Result<T, E = JavaError> = std::result::Result<T, E>;

/// The application's files, sorted into layers, and how to start it. Paths are relative
/// to the application's directory in the image (`app/` for a JAR, the context's
/// directory below the base's webapps for a WAR).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppFiles {
    /// `libs/*.jar`, or a WAR's `WEB-INF/lib/*.jar`.
    pub dependencies: Vec<Entry>,
    /// `resources/**`, or every file of a WAR but its libraries and classes.
    pub resources: Vec<Entry>,
    /// `classes/**`, or a WAR's `WEB-INF/classes/**/*.class`.
    pub classes: Vec<Entry>,
    /// The class with `main` (empty for a WAR: the servlet container starts it).
    pub main_class: String,
    /// Whether this is a web application for a servlet container.
    pub war: bool,
}

fn entry(dir: &str, path: &str, data: Vec<u8>) -> Entry {
    Entry {
        path: if dir.is_empty() {
            path.to_owned()
        } else {
            format!("{dir}/{path}")
        },
        data,
        mode: 0o644,
    }
}

fn missing(field: &'static str, path: &str, tree: &Tree) -> JavaError {
    JavaError::Missing {
        field,
        path: path.to_owned(),
        commit: tree.commit.clone(),
    }
}

/// Collects the application's files from the commit: explodes the JAR or WAR (when the
/// commit has a `pom.xml`, the output of a Maven build in a scratch directory below
/// `work_dir`, with `maven_repository` as its local repository), or compiles the sources
/// with the build host's `javac`.
pub async fn prepare(
    tree: &Tree,
    settings: &JavaBuilder,
    log: &BuildLog,
    work_dir: &Path,
    maven_repository: &Path,
) -> Result<AppFiles> {
    let built;
    let tree = match settings.war.as_ref().or(settings.jar.as_ref()) {
        Some(output) if maven::is_maven(tree) => {
            std::fs::create_dir_all(work_dir)
                .map_err(|e| JavaError::Io(format!("making {}: {e}", work_dir.display())))?;
            let scratch = tempfile::Builder::new()
                .prefix("maven-")
                .tempdir_in(work_dir)
                .map_err(|e| JavaError::Io(format!("a scratch directory in {}: {e}", work_dir.display())))?;
            let data = maven::package(tree, scratch.path(), maven_repository, output, log).await?;
            let mut with_output = tree.clone();
            with_output.files.insert(
                output.clone(),
                File {
                    data,
                    executable: false,
                    symlink: false,
                },
            );
            built = with_output;
            &built
        }
        _ => tree,
    };
    let mut app = AppFiles::default();
    if let Some(dir) = &settings.dependencies {
        let files = tree.under(dir);
        if files.is_empty() {
            return Err(missing("dependencies", dir, tree));
        }
        for (path, file) in files {
            if path.ends_with(".jar") && !path.contains('/') {
                app.dependencies.push(entry("libs", path, file.data.clone()));
            }
        }
        log.line(format!(
            "dependencies: {} JAR(s) from {dir}/",
            app.dependencies.len()
        ));
    }
    match (&settings.jar, &settings.war, &settings.sources) {
        (_, Some(war), _) => {
            let file = tree
                .files
                .get(war.as_str())
                .ok_or_else(|| missing("war", war, tree))?;
            explode_war(war, &file.data, &mut app)?;
            log.line(format!(
                "{war}: {} librar(ies) in WEB-INF/lib, {} class(es), {} other file(s), at context path {}",
                app.dependencies.len(),
                app.classes.len(),
                app.resources.len(),
                settings.context_path()
            ));
        }
        (Some(jar), None, _) => {
            let file = tree
                .files
                .get(jar.as_str())
                .ok_or_else(|| missing("jar", jar, tree))?;
            let main = explode(jar, &file.data, &mut app)?;
            app.main_class = settings
                .main_class
                .clone()
                .or(main)
                .ok_or_else(|| JavaError::NoMainClass { path: jar.clone() })?;
            if app.main_class == TOMCAT_BOOTSTRAP {
                return Err(JavaError::WarAsJar {
                    path: jar.clone(),
                    why: format!("its main class is {TOMCAT_BOOTSTRAP}, Tomcat itself"),
                });
            }
            log.line(format!(
                "{jar}: {} class(es), {} resource(s)",
                app.classes.len(),
                app.resources.len()
            ));
        }
        (None, None, Some(sources)) => {
            compile(tree, sources, settings, &mut app, log).await?;
            if let Some(dir) = &settings.resources {
                let files = tree.under(dir);
                if files.is_empty() {
                    return Err(missing("resources", dir, tree));
                }
                for (path, file) in files {
                    app.resources.push(entry("resources", path, file.data.clone()));
                }
            }
            app.main_class = settings.main_class.clone().unwrap_or_default();
        }
        (None, None, None) => return Err(missing("jar", "", tree)),
    }
    Ok(app)
}

/// Every file of a zip archive (JAR or WAR), by name, in the archive's order.
fn unzip(path: &str, data: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |e: &dyn std::fmt::Display| JavaError::BadJar {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(data)).map_err(|e| bad(&e))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| bad(&e))?;
        if file.is_dir() {
            continue;
        }
        let name = file.name().map_err(|e| bad(&e))?.into_owned();
        if name.starts_with('/') || name.split('/').any(|p| p == "..") {
            return Err(bad(&format!("entry '{name}' escapes the archive")));
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(|e| bad(&e))?;
        out.push((name, content));
    }
    Ok(out)
}

/// Splits a JAR into classes and resources; returns its manifest's `Main-Class`.
fn explode(path: &str, data: &[u8], app: &mut AppFiles) -> Result<Option<String>> {
    let files = unzip(path, data)?;
    if let Some((name, _)) = files.iter().find(|(n, _)| n.starts_with("WEB-INF/")) {
        return Err(JavaError::WarAsJar {
            path: path.to_owned(),
            why: format!("it holds {name}"),
        });
    }
    let mut main = None;
    for (name, content) in files {
        if name == "META-INF/MANIFEST.MF" {
            // Its build time and tool versions would make the image differ for the
            // same classes; the image's entrypoint takes its place.
            main = main_class_of(&String::from_utf8_lossy(&content));
        } else if name.ends_with(".class") {
            app.classes.push(entry("classes", &name, content));
        } else {
            app.resources.push(entry("resources", &name, content));
        }
    }
    Ok(main)
}

/// Splits a WAR into its libraries (`WEB-INF/lib/*.jar`), its classes and its other files.
fn explode_war(path: &str, data: &[u8], app: &mut AppFiles) -> Result<()> {
    let files = unzip(path, data).map_err(|e| match e {
        JavaError::BadJar { path, message } => JavaError::NotAWar {
            path,
            why: format!("it is not a readable zip archive ({message})"),
        },
        e => e,
    })?;
    if !files.iter().any(|(n, _)| n.starts_with("WEB-INF/")) {
        return Err(JavaError::NotAWar {
            path: path.to_owned(),
            why: "it has no WEB-INF/".to_owned(),
        });
    }
    app.war = true;
    for (name, content) in files {
        let lib = name
            .strip_prefix("WEB-INF/lib/")
            .is_some_and(|rest| rest.ends_with(".jar") && !rest.contains('/'));
        if name == "META-INF/MANIFEST.MF" {
            // Build time and tool versions: they would change the digest, and Tomcat
            // does not need it.
        } else if lib {
            app.dependencies.push(entry("", &name, content));
        } else if name.starts_with("WEB-INF/classes/") && name.ends_with(".class") {
            app.classes.push(entry("", &name, content));
        } else {
            app.resources.push(entry("", &name, content));
        }
    }
    Ok(())
}

/// `Main-Class` of a JAR manifest (whose long lines continue after a leading space).
fn main_class_of(manifest: &str) -> Option<String> {
    let mut joined: Vec<String> = Vec::new();
    for line in manifest.lines() {
        match (line.strip_prefix(' '), joined.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => joined.push(line.to_owned()),
        }
    }
    joined.iter().find_map(|l| {
        l.strip_prefix("Main-Class:")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// Compiles the sources below `sources` with `javac --release N`, dependencies on the
/// class path, and adds the class files.
async fn compile(
    tree: &Tree,
    sources: &str,
    settings: &JavaBuilder,
    app: &mut AppFiles,
    log: &BuildLog,
) -> Result<()> {
    let io = |e: std::io::Error| JavaError::Io(format!("compiling {sources}: {e}"));
    let files = tree.under(sources);
    let java: Vec<(&str, &File)> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".java"))
        .map(|(p, f)| (*p, *f))
        .collect();
    if java.is_empty() {
        return Err(missing("sources", sources, tree));
    }
    let work = tempfile::tempdir().map_err(io)?;
    let src = work.path().join("src");
    let out = work.path().join("classes");
    let libs = work.path().join("libs");
    for (path, file) in &java {
        write(&src.join(path), &file.data).map_err(io)?;
    }
    for dep in &app.dependencies {
        let name = dep.path.rsplit('/').next().unwrap_or("dep.jar");
        write(&libs.join(name), &dep.data).map_err(io)?;
    }
    std::fs::create_dir_all(&out).map_err(io)?;
    let mut command = tokio::process::Command::new("javac");
    command
        .arg("--release")
        .arg(settings.release.to_string())
        .args(["-encoding", "UTF-8", "-nowarn", "-d"])
        .arg(&out)
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    for (path, _) in &java {
        command.arg(src.join(path));
    }
    log.line(format!(
        "javac --release {} ({} file(s) in {sources}/)",
        settings.release,
        java.len()
    ));
    let output = command.output().await.map_err(|e| JavaError::Compile {
        message: format!("cannot run javac ({e}); install a JDK (javac) on the build host"),
    })?;
    log.output(&String::from_utf8_lossy(&output.stdout));
    log.output(&String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| l.contains("error:"))
            .unwrap_or("see the build log")
            .to_owned();
        return Err(JavaError::Compile { message: first });
    }
    let mut classes = BTreeMap::new();
    collect(&out, &out, &mut classes).map_err(io)?;
    for (path, data) in classes {
        app.classes.push(entry("classes", &path, data));
    }
    Ok(())
}

fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)
}

/// Every file below `dir`, by path relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let path = item?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_string_lossy().replace('\\', "/"), std::fs::read(&path)?);
        }
    }
    Ok(())
}

/// The application's layers below `root` (its directory in the image, no leading `/`),
/// least often changed first; empty ones are left out.
pub fn layers(app: &AppFiles, root: &str) -> Result<Vec<Layer>> {
    let io = |e: std::io::Error| JavaError::Io(format!("writing a layer: {e}"));
    let mut out = Vec::new();
    for (role, entries) in [
        ("dependencies", &app.dependencies),
        ("resources", &app.resources),
        ("classes", &app.classes),
    ] {
        if !entries.is_empty() {
            let placed: Vec<Entry> = entries
                .iter()
                .map(|e| Entry {
                    path: format!("{root}/{}", e.path),
                    data: e.data.clone(),
                    mode: e.mode,
                })
                .collect();
            out.push(layer(role, &placed).map_err(io)?);
        }
    }
    Ok(out)
}

/// Tomcat's directory name of a context path: `/` is `ROOT`, `/a/b` is `a#b`.
#[must_use]
pub fn context_dir(context_path: &str) -> String {
    match context_path.trim_matches('/') {
        "" => "ROOT".to_owned(),
        path => path.replace('/', "#"),
    }
}

/// Where the application goes in an image on `base` (its config JSON): `app` for a JAR,
/// the context's directory below the base's webapps for a WAR.
pub fn app_root(base: &str, settings: &JavaBuilder, war: bool) -> Result<String> {
    if !war {
        return Ok(APP.to_owned());
    }
    let config: Value = serde_json::from_str(base).map_err(|e| JavaError::Base {
        image: settings.base_image().to_owned(),
        message: format!("its config is not JSON: {e}"),
    })?;
    let webapps = config["config"]["Labels"][WEBAPPS_LABEL]
        .as_str()
        .map(|w| w.trim_matches('/'))
        .filter(|w| !w.is_empty())
        .ok_or_else(|| JavaError::NotServletBase {
            image: settings.base_image().to_owned(),
            default: berth_core::objects::DEFAULT_SERVLET_BASE,
        })?;
    Ok(format!("{webapps}/{}", context_dir(settings.context_path())))
}

/// The command that starts the application.
#[must_use]
pub fn entrypoint(settings: &JavaBuilder, main_class: &str) -> Vec<String> {
    let mut cmd = vec!["java".to_owned()];
    cmd.extend(settings.jvm_options.iter().cloned());
    cmd.push("-cp".to_owned());
    cmd.push(format!("/{APP}/resources:/{APP}/classes:/{APP}/libs/*"));
    cmd.push(main_class.to_owned());
    cmd
}

/// A WAR's command: the servlet base's entrypoint with the application's JVM options
/// and port after `java`.
fn servlet_entrypoint(base: &[Value], settings: &JavaBuilder, port: u16) -> Result<Vec<Value>> {
    let Some((java, rest)) = base.split_first() else {
        return Err(JavaError::Base {
            image: settings.base_image().to_owned(),
            message: "it has no entrypoint to start the servlet container".to_owned(),
        });
    };
    let mut cmd = vec![java.clone()];
    cmd.extend(settings.jvm_options.iter().map(|o| json!(o)));
    cmd.push(json!(format!("-D{PORT_PROPERTY}={port}")));
    cmd.extend(rest.iter().cloned());
    Ok(cmd)
}

/// The image config: the base's, with the application's layers, entrypoint, Java
/// defaults and port; no timestamps or host details, so it is reproducible.
pub fn image_config(
    base: &str,
    layers: &[Layer],
    settings: &JavaBuilder,
    app: &AppFiles,
    port: u16,
    commit: &str,
) -> Result<Vec<u8>> {
    let image = || settings.base_image().to_owned();
    let mut config: Value = serde_json::from_str(base).map_err(|e| JavaError::Base {
        image: image(),
        message: format!("its config is not JSON: {e}"),
    })?;
    let Some(root) = config.as_object_mut() else {
        return Err(JavaError::Base {
            image: image(),
            message: "its config is not a JSON object".to_owned(),
        });
    };
    root.insert("created".to_owned(), json!(EPOCH));
    let inner = root
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| JavaError::Base {
            image: image(),
            message: "its config.config is not an object".to_owned(),
        })?;
    let mut env: Vec<Value> = inner
        .get("Env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !v.as_str().is_some_and(|s| s.starts_with("JAVA_TOOL_OPTIONS=")))
        .collect();
    env.push(json!(format!("JAVA_TOOL_OPTIONS={JAVA_TOOL_OPTIONS}")));
    inner.insert("Env".to_owned(), Value::Array(env));
    if app.war {
        let base_entrypoint = inner
            .get("Entrypoint")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let cmd = servlet_entrypoint(&base_entrypoint, settings, port)?;
        inner.insert("Entrypoint".to_owned(), Value::Array(cmd));
    } else {
        inner.insert(
            "Entrypoint".to_owned(),
            json!(entrypoint(settings, &app.main_class)),
        );
        inner.insert("Cmd".to_owned(), Value::Null);
        inner.insert("WorkingDir".to_owned(), json!(format!("/{APP}")));
    }
    inner.insert("ExposedPorts".to_owned(), json!({ format!("{port}/tcp"): {} }));
    let labels = inner
        .entry("Labels")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| JavaError::Base {
            image: image(),
            message: "its Labels are not an object".to_owned(),
        })?;
    labels.insert("org.opencontainers.image.revision".to_owned(), json!(commit));
    labels.insert("dev.berth.builder".to_owned(), json!("java"));
    let rootfs = root
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        ids.extend(layers.iter().map(|l| json!(l.diff_id)));
    }
    if let Some(history) = root.get_mut("history").and_then(Value::as_array_mut) {
        history.extend(
            layers
                .iter()
                .map(|l| json!({"created": EPOCH, "created_by": format!("berth java builder: {}", l.role)})),
        );
    }
    serde_json::to_vec(&config).map_err(|e| JavaError::Io(e.to_string()))
}

/// Docker's media types name the same bytes as OCI's; the manifest is OCI.
fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => LAYER_TYPE,
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        other => other,
    }
}

/// Writes the image straight to the registry under `target` (a tagged reference):
/// base blobs are mounted or found, application blobs uploaded only when missing.
pub async fn push(
    registry: &Registry,
    target: &Reference,
    app: &AppFiles,
    settings: &JavaBuilder,
    port: u16,
    commit: &str,
    log: &BuildLog,
) -> Result<Pushed> {
    let base_image = settings.base_image();
    let base_ref = Registry::reference(base_image)?;
    let base = registry.pull(&base_ref, Some(log)).await.map_err(|e| match e {
        RegistryError::NotFound { .. } => JavaError::Base {
            image: base_image.to_owned(),
            message: "not found; scripts/setup-runtime.sh makes and pushes the default one".to_owned(),
        },
        e => e.into(),
    })?;
    log.line(format!(
        "base {base_image} ({} layer(s))",
        base.manifest.layers.len()
    ));
    let root = app_root(&base.config, settings, app.war)?;
    let new_layers = layers(app, &root)?;
    let config = Bytes::from(image_config(
        &base.config,
        &new_layers,
        settings,
        app,
        port,
        commit,
    )?);
    let mut image = ImageWriter::new(registry, target, log);
    for l in &base.manifest.layers {
        let copied = registry
            .copy_blob(&base_ref, target, &l.digest, Some(log))
            .await?;
        let size = u64::try_from(l.size).unwrap_or(0);
        image.present_layer("base", &l.digest, size, oci_layer_type(&l.media_type), copied);
    }
    for l in &new_layers {
        image.layer(&l.role, &l.data).await?;
    }
    Ok(image.finish(&config).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> JavaBuilder {
        serde_json::from_value(json!({"jar": "app.jar", "jvmOptions": ["-Xss512k"]})).unwrap()
    }

    #[test]
    fn main_class_from_a_wrapped_manifest() {
        let m = "Manifest-Version: 1.0\r\nMain-Class: com.example.a.very.long.packag\r\n e.Main\r\nCreated-By: x\r\n";
        assert_eq!(
            main_class_of(m).as_deref(),
            Some("com.example.a.very.long.package.Main")
        );
        assert_eq!(main_class_of("Manifest-Version: 1.0\n"), None);
    }

    #[test]
    fn the_config_carries_java_defaults_and_no_time() {
        let base = r#"{"architecture":"amd64","os":"linux","created":"2026-11-26T10:00:00Z",
            "config":{"Env":["PATH=/opt/java/bin:/bin","JAVA_TOOL_OPTIONS=-Xmx1g"],"Cmd":["/bin/sh"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created":"2026-11-26T10:00:00Z"}]}"#;
        let l = layer("classes", &[entry("classes", "a/A.class", b"x".to_vec())]).unwrap();
        let config: Value = serde_json::from_slice(
            &image_config(
                base,
                std::slice::from_ref(&l),
                &settings(),
                &jar_app("a.A"),
                8080,
                "c0ffee",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(config["created"], EPOCH);
        assert_eq!(
            config["config"]["Entrypoint"],
            json!([
                "java",
                "-Xss512k",
                "-cp",
                "/app/resources:/app/classes:/app/libs/*",
                "a.A"
            ])
        );
        assert_eq!(config["config"]["Cmd"], Value::Null);
        assert_eq!(
            config["config"]["Env"],
            json!([
                "PATH=/opt/java/bin:/bin",
                format!("JAVA_TOOL_OPTIONS={JAVA_TOOL_OPTIONS}")
            ])
        );
        assert_eq!(config["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.revision"],
            "c0ffee"
        );
        assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:aa", l.diff_id]));
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_jar_splits_into_classes_and_resources() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            w.start_file("META-INF/MANIFEST.MF", o).unwrap();
            std::io::Write::write_all(&mut w, b"Manifest-Version: 1.0\nMain-Class: a.Main\n").unwrap();
            w.add_directory("a/", o).unwrap();
            w.start_file("a/Main.class", o).unwrap();
            std::io::Write::write_all(&mut w, b"cafebabe").unwrap();
            w.start_file("a/greeting.txt", o).unwrap();
            std::io::Write::write_all(&mut w, b"hi").unwrap();
            w.finish().unwrap();
        }
        let mut app = AppFiles::default();
        let main = explode("app.jar", buf.get_ref(), &mut app).unwrap();
        assert_eq!(main.as_deref(), Some("a.Main"));
        assert_eq!(
            app.classes.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["classes/a/Main.class"]
        );
        assert_eq!(
            app.resources.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["resources/a/greeting.txt"]
        );
        assert!(explode("x.jar", b"not a zip", &mut AppFiles::default()).is_err());
    }

    fn jar_app(main: &str) -> AppFiles {
        AppFiles {
            main_class: main.to_owned(),
            ..AppFiles::default()
        }
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            for (name, data) in files {
                w.start_file(*name, o).unwrap();
                std::io::Write::write_all(&mut w, data).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    fn war() -> Vec<u8> {
        zip_of(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\nCreated-By: x\n"),
            ("index.html", b"<h1>hi</h1>"),
            ("WEB-INF/web.xml", b"<web-app/>"),
            ("WEB-INF/lib/dep.jar", b"PK"),
            ("WEB-INF/classes/a/Servlet.class", b"cafebabe"),
            ("WEB-INF/classes/a/page.html", b"<p>"),
        ])
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_war_splits_into_libraries_classes_and_other_files() {
        let mut app = AppFiles::default();
        explode_war("shop.war", &war(), &mut app).unwrap();
        assert!(app.war);
        assert_eq!(paths(&app.dependencies), ["WEB-INF/lib/dep.jar"]);
        assert_eq!(paths(&app.classes), ["WEB-INF/classes/a/Servlet.class"]);
        assert_eq!(
            paths(&app.resources),
            ["index.html", "WEB-INF/web.xml", "WEB-INF/classes/a/page.html"]
        );
        let placed = layers(&app, "usr/local/tomcat/webapps/ROOT").unwrap();
        let roles: Vec<&str> = placed.iter().map(|l| l.role.as_str()).collect();
        assert_eq!(roles, ["dependencies", "resources", "classes"]);
    }

    #[test]
    fn a_war_as_a_jar_and_a_jar_as_a_war_are_refused_with_what_to_write() {
        let e = explode("build/shop.jar", &war(), &mut AppFiles::default()).unwrap_err();
        assert!(matches!(e, JavaError::WarAsJar { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("write war: build/shop.jar instead of jar:"),
            "{e}"
        );
        let jar = zip_of(&[
            ("META-INF/MANIFEST.MF", b"Main-Class: a.Main\n"),
            ("a/Main.class", b"x"),
        ]);
        let e = explode_war("app.war", &jar, &mut AppFiles::default()).unwrap_err();
        assert!(e.to_string().contains("no WEB-INF/"), "{e}");
        assert!(
            e.to_string().contains("write jar: app.war instead of war:"),
            "{e}"
        );
        let e = explode_war("app.war", b"text", &mut AppFiles::default()).unwrap_err();
        assert!(matches!(e, JavaError::NotAWar { .. }), "{e}");
    }

    #[test]
    fn a_war_goes_below_the_bases_webapps_at_its_context() {
        let tomcat = r#"{"config":{"Labels":{"dev.berth.webapps":"/usr/local/tomcat/webapps"},
            "Entrypoint":["java","-Dcatalina.home=/t","org.apache.catalina.startup.Bootstrap","start"]}}"#;
        let mut settings: JavaBuilder = serde_json::from_value(json!({"war": "a.war"})).unwrap();
        assert_eq!(
            app_root(tomcat, &settings, true).unwrap(),
            "usr/local/tomcat/webapps/ROOT"
        );
        settings.context_path = Some("/shop/eu".into());
        assert_eq!(
            app_root(tomcat, &settings, true).unwrap(),
            "usr/local/tomcat/webapps/shop#eu"
        );
        assert_eq!(app_root("{}", &settings, false).unwrap(), "app");
        let e = app_root(r#"{"config":{"Labels":{}}}"#, &settings, true).unwrap_err();
        assert!(matches!(e, JavaError::NotServletBase { .. }), "{e}");
        assert!(e.to_string().contains("leave baseImage out"), "{e}");

        settings.jvm_options = vec!["-Xss512k".into()];
        let app = AppFiles {
            war: true,
            ..AppFiles::default()
        };
        let config: Value =
            serde_json::from_slice(&image_config(tomcat, &[], &settings, &app, 9090, "c0ffee").unwrap())
                .unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            json!([
                "java",
                "-Xss512k",
                "-Dberth.http.port=9090",
                "-Dcatalina.home=/t",
                "org.apache.catalina.startup.Bootstrap",
                "start"
            ])
        );
        let e = image_config(r#"{"config":{}}"#, &[], &settings, &app, 9090, "c").unwrap_err();
        assert!(e.to_string().contains("no entrypoint"), "{e}");
    }
}
