//! Where an application's image comes from: a git repository and the builder that turns
//! one of its commits into an OCI image.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Errors, FieldError};

/// The branch built when a source names none.
pub const DEFAULT_REF: &str = "main";

/// The base image of the `java` builder when it names none; made by the project's setup
/// (`scripts/setup-runtime.sh`) with `jlink` from the machine's JDK.
pub const DEFAULT_JAVA_BASE: &str = "127.0.0.1:5000/berth/jre:17";

/// The base image of the `java` builder for a `war` when it names none: Tomcat 10.1
/// (Jakarta EE 10) from Debian's packages on the JRE above, made by the project's setup.
pub const DEFAULT_SERVLET_BASE: &str = "127.0.0.1:5000/berth/tomcat:10.1";

/// The class that starts Tomcat: the servlet base image runs it, an application never
/// names it.
const TOMCAT_BOOTSTRAP: &str = "org.apache.catalina.startup.Bootstrap";

/// A git repository and a builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
// `Source` is the kind of the documents GitOps syncs from (`SourceKind`).
#[schema(as = ApplicationSource)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Git repository URL: `file://`, `http://` or `https://`. Not used by the `image`
    /// builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    /// Branch, tag or commit to build.
    #[serde(rename = "ref", default = "default_ref")]
    pub git_ref: String,
    /// How the image is made.
    pub builder: Builder,
}

fn default_ref() -> String {
    DEFAULT_REF.to_owned()
}

/// How an image is made from a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Builder {
    /// The repository's Dockerfile, built through the build host's Docker Engine API.
    Dockerfile(DockerfileBuilder),
    /// Daemonless, Jib-style: layers for dependencies, resources and classes on a JRE base
    /// image, written straight to the registry; reproducible.
    Java(JavaBuilder),
    /// No build: the application's `image` reference, resolved to its digest.
    Image,
}

impl Builder {
    /// The builder's name as written in documents: `dockerfile`, `java` or `image`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dockerfile(_) => "dockerfile",
            Self::Java(_) => "java",
            Self::Image => "image",
        }
    }
}

/// Settings of the `dockerfile` builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerfileBuilder {
    /// Path of the Dockerfile in the repository.
    #[serde(default = "default_dockerfile")]
    pub path: String,
    /// Directory of the repository sent as the build context.
    #[serde(default = "default_context")]
    pub context: String,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}
fn default_context() -> String {
    ".".to_owned()
}

impl Default for DockerfileBuilder {
    fn default() -> Self {
        Self {
            path: default_dockerfile(),
            context: default_context(),
        }
    }
}

/// Settings of the `java` builder. Exactly one of `jar`, `war` and `sources` names the
/// application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JavaBuilder {
    /// A JAR in the repository (the output of its build); its classes and its other
    /// files go to separate layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jar: Option<String>,
    /// A WAR in the repository: the one web application of a servlet container base
    /// image, its `WEB-INF/lib`, its classes and its other files in separate layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub war: Option<String>,
    /// Where the `war` is served: `/` (Tomcat's ROOT context) unless set, e.g. `/shop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_path: Option<String>,
    /// A directory of Java sources in the repository, compiled with the build host's
    /// `javac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<String>,
    /// A directory of resources (with `sources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<String>,
    /// A directory of dependency JARs: the first layer, which rarely changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<String>,
    /// The class with `main`; from the JAR's manifest when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_class: Option<String>,
    /// `javac --release` for `sources`.
    #[serde(default = "default_release")]
    pub release: u32,
    /// The image the layers go on top of: a JRE ([`DEFAULT_JAVA_BASE`] unless set), or
    /// for a `war` a servlet container ([`DEFAULT_SERVLET_BASE`] unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// Extra JVM options, before the main class (for a `war`, before Tomcat's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jvm_options: Vec<String>,
}

fn default_release() -> u32 {
    17
}

impl JavaBuilder {
    /// The base image: the one set, or the default for a JAR or sources, or for a WAR.
    #[must_use]
    pub fn base_image(&self) -> &str {
        match (&self.base_image, &self.war) {
            (Some(image), _) => image,
            (None, Some(_)) => DEFAULT_SERVLET_BASE,
            (None, None) => DEFAULT_JAVA_BASE,
        }
    }

    /// The context path of a `war` (`/` unless set).
    #[must_use]
    pub fn context_path(&self) -> &str {
        self.context_path.as_deref().unwrap_or("/")
    }
}

/// Checks a source whose fields live under `base` (`spec.source`).
pub fn validate_source(source: &Source, base: &str, errors: &mut Errors) {
    let builder = source.builder.kind();
    match (&source.git, &source.builder) {
        (Some(_), Builder::Image) => errors.push(
            FieldError::new(format!("{base}.git"), "the image builder takes no git repository")
                .hint("remove git, or choose the dockerfile or java builder"),
        ),
        (None, Builder::Dockerfile(_) | Builder::Java(_)) => errors.push(
            FieldError::new(
                format!("{base}.git"),
                format!("the {builder} builder needs a git repository"),
            )
            .hint("e.g. git: https://git.example.com/team/web.git"),
        ),
        (Some(url), _) => check_git_url(&format!("{base}.git"), url, errors),
        (None, Builder::Image) => {}
    }
    check_git_ref(&format!("{base}.ref"), &source.git_ref, errors);
    match &source.builder {
        Builder::Dockerfile(d) => {
            check_path(&format!("{base}.builder.dockerfile.path"), &d.path, errors);
            if d.context != "." {
                check_path(&format!("{base}.builder.dockerfile.context"), &d.context, errors);
            }
        }
        Builder::Java(j) => validate_java(j, &format!("{base}.builder.java"), errors),
        Builder::Image => {}
    }
}

fn validate_java(j: &JavaBuilder, base: &str, errors: &mut Errors) {
    let named = [&j.jar, &j.war, &j.sources]
        .iter()
        .filter(|n| n.is_some())
        .count();
    if named != 1 {
        errors.push(
            FieldError::new(base, "name exactly one of jar, war and sources").hint(
                "jar: a JAR with a Main-Class the repository holds; war: a WAR for the servlet \
                 container; sources: a directory javac compiles",
            ),
        );
    } else if j.sources.is_some() && j.main_class.is_none() {
        errors.push(
            FieldError::new(format!("{base}.mainClass"), "is needed with sources")
                .hint("e.g. mainClass: com.example.Main"),
        );
    }
    for (field, path) in [
        ("jar", &j.jar),
        ("war", &j.war),
        ("sources", &j.sources),
        ("resources", &j.resources),
        ("dependencies", &j.dependencies),
    ] {
        if let Some(p) = path {
            check_path(&format!("{base}.{field}"), p, errors);
        }
    }
    validate_war_shape(j, base, errors);
    if let Some(m) = &j.main_class
        && (m.is_empty()
            || !m
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$')))
    {
        errors.push(
            FieldError::new(format!("{base}.mainClass"), format!("'{m}' is not a class name"))
                .hint("e.g. com.example.Main"),
        );
    }
    if !(8..=99).contains(&j.release) {
        errors.push(FieldError::new(
            format!("{base}.release"),
            "must be a Java release between 8 and 99",
        ));
    }
    if let Some(image) = &j.base_image
        && crate::image::ImageRef::parse(image).is_err()
    {
        errors.push(
            FieldError::new(
                format!("{base}.baseImage"),
                format!("'{image}' is not an image reference"),
            )
            .hint(format!(
                "e.g. {}, or leave baseImage out",
                if j.war.is_some() {
                    DEFAULT_SERVLET_BASE
                } else {
                    DEFAULT_JAVA_BASE
                }
            )),
        );
    }
}

/// A WAR where a JAR is expected, or the reverse: each refused with what to write.
fn validate_war_shape(j: &JavaBuilder, base: &str, errors: &mut Errors) {
    if let Some(jar) = &j.jar
        && jar.ends_with(".war")
    {
        errors.push(
            FieldError::new(format!("{base}.jar"), format!("'{jar}' is a WAR, not a JAR")).hint(format!(
                "write war: {jar} (and leave mainClass out): a WAR runs on the servlet container base"
            )),
        );
    }
    if let Some(war) = &j.war {
        if war.ends_with(".jar") {
            errors.push(
                FieldError::new(format!("{base}.war"), format!("'{war}' is a JAR, not a WAR")).hint(format!(
                    "write jar: {war}: a JAR runs with its Main-Class on the JRE base"
                )),
            );
        }
        if j.main_class.is_some() {
            errors.push(
                FieldError::new(
                    format!("{base}.mainClass"),
                    "is not used with war: the servlet container starts the web application",
                )
                .hint("remove mainClass"),
            );
        }
        for (field, value) in [("dependencies", &j.dependencies), ("resources", &j.resources)] {
            if value.is_some() {
                errors.push(
                    FieldError::new(
                        format!("{base}.{field}"),
                        format!("is not used with war: a WAR carries its own {field}"),
                    )
                    .hint(format!(
                        "remove {field}; the WAR's WEB-INF/lib and files become their own layers"
                    )),
                );
            }
        }
    } else if j.main_class.as_deref() == Some(TOMCAT_BOOTSTRAP) {
        errors.push(
            FieldError::new(
                format!("{base}.mainClass"),
                format!("{TOMCAT_BOOTSTRAP} is Tomcat itself, which the servlet container base runs"),
            )
            .hint("to run a web application on Tomcat write war: <path of the .war> and leave mainClass out"),
        );
    }
    if let Some(path) = &j.context_path {
        if j.war.is_none() {
            errors.push(
                FieldError::new(format!("{base}.contextPath"), "is only used with war")
                    .hint("remove contextPath, or build a war"),
            );
        }
        let ok = path.starts_with('/')
            && (path == "/" || !path.ends_with('/'))
            && !path.split('/').any(|p| p == ".." || p == ".")
            && !path.contains("//")
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
        if !ok {
            errors.push(
                FieldError::new(
                    format!("{base}.contextPath"),
                    format!("'{path}' is not a context path"),
                )
                .hint(
                    "e.g. / (the default) or /shop: a leading '/', no trailing '/', letters, digits, - _ . ~",
                ),
            );
        }
    }
}

/// A path inside the repository: relative, without `..`.
/// Refuses a repository URL Berth cannot fetch (`file:///`, `http://`, `https://`).
pub(crate) fn check_git_url(path: &str, url: &str, errors: &mut Errors) {
    let scheme_ok = ["file:///", "http://", "https://"]
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len());
    if !scheme_ok || url.chars().any(char::is_whitespace) {
        errors.push(
            FieldError::new(path, format!("'{url}' is not a git URL Berth can fetch"))
                .hint("use file:///path/to/repo.git, http:// or https://"),
        );
    }
}

/// Refuses what git would not take as a branch, tag or commit.
pub(crate) fn check_git_ref(path: &str, r: &str, errors: &mut Errors) {
    if r.is_empty()
        || r.starts_with('-')
        || r.contains("..")
        || r.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    {
        errors.push(
            FieldError::new(path, format!("'{r}' is not a branch, tag or commit"))
                .hint("e.g. main, v1.2.0 or a commit id"),
        );
    }
}

/// Refuses a path that leaves the repository.
pub(crate) fn check_path(path: &str, value: &str, errors: &mut Errors) {
    if value.is_empty() || value.starts_with('/') || value.split('/').any(|p| p == "..") {
        errors.push(
            FieldError::new(path, format!("'{value}' is not a path inside the repository"))
                .hint("use a relative path without '..', e.g. build/app.jar"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(json: serde_json::Value) -> Source {
        serde_json::from_value(json).unwrap()
    }

    fn paths(s: &Source) -> Vec<String> {
        let mut errors = Errors::default();
        validate_source(s, "spec.source", &mut errors);
        errors
            .finish("Application")
            .err()
            .map(|e| e.errors.into_iter().map(|e| e.path).collect())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_and_shapes() {
        let s = source(serde_json::json!({"git": "file:///r.git", "builder": {"java": {"jar": "app.jar"}}}));
        assert_eq!(s.git_ref, "main");
        let Builder::Java(j) = &s.builder else { panic!() };
        assert_eq!((j.release, j.base_image()), (17, DEFAULT_JAVA_BASE));
        assert!(paths(&s).is_empty());
        let s = source(serde_json::json!({"builder": "image"}));
        assert_eq!(s.builder, Builder::Image);
        let s =
            source(serde_json::json!({"git": "https://g/x.git", "ref": "v1", "builder": {"dockerfile": {}}}));
        assert_eq!(s.builder, Builder::Dockerfile(DockerfileBuilder::default()));
        assert!(paths(&s).is_empty());
    }

    #[test]
    fn every_problem_is_named() {
        let s = source(serde_json::json!({"git": "ftp://x", "ref": "a..b",
            "builder": {"java": {"jar": "/abs.jar", "sources": "src", "mainClass": "a..B", "release": 3}}}));
        assert_eq!(
            paths(&s),
            [
                "spec.source.git",
                "spec.source.ref",
                "spec.source.builder.java",
                "spec.source.builder.java.jar",
                "spec.source.builder.java.mainClass",
                "spec.source.builder.java.release"
            ]
        );
        let s = source(serde_json::json!({"builder": {"dockerfile": {"path": "../Dockerfile"}}}));
        assert_eq!(
            paths(&s),
            ["spec.source.git", "spec.source.builder.dockerfile.path"]
        );
        let s = source(serde_json::json!({"git": "file:///r", "builder": "image"}));
        assert_eq!(paths(&s), ["spec.source.git"]);
        let s = source(serde_json::json!({"git": "file:///r", "builder": {"java": {"sources": "src"}}}));
        assert_eq!(paths(&s), ["spec.source.builder.java.mainClass"]);
    }

    fn java(settings: serde_json::Value) -> Source {
        source(serde_json::json!({"git": "file:///r", "builder": {"java": settings}}))
    }

    fn messages(s: &Source) -> Vec<(String, String)> {
        let mut errors = Errors::default();
        validate_source(s, "spec.source", &mut errors);
        errors
            .finish("Application")
            .err()
            .map(|e| {
                e.errors
                    .into_iter()
                    .map(|e| (e.path, format!("{} ({})", e.message, e.hint.unwrap_or_default())))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_war_goes_on_the_servlet_base_at_root_unless_told() {
        let s = java(serde_json::json!({"war": "target/shop.war"}));
        assert!(paths(&s).is_empty());
        let Builder::Java(j) = &s.builder else { panic!() };
        assert_eq!((j.base_image(), j.context_path()), (DEFAULT_SERVLET_BASE, "/"));
        let s = java(
            serde_json::json!({"war": "shop.war", "contextPath": "/shop", "baseImage": "r.example/t:11"}),
        );
        assert!(paths(&s).is_empty());
        let Builder::Java(j) = &s.builder else { panic!() };
        assert_eq!((j.base_image(), j.context_path()), ("r.example/t:11", "/shop"));
        for bad in ["shop", "/shop/", "/a//b", "/../x", "/a b", "/a#b"] {
            let s = java(serde_json::json!({"war": "shop.war", "contextPath": bad}));
            assert_eq!(paths(&s), ["spec.source.builder.java.contextPath"], "{bad}");
        }
    }

    #[test]
    fn a_war_where_a_jar_is_expected_and_the_reverse_say_what_to_write() {
        let m = messages(&java(serde_json::json!({"jar": "target/shop.war",
            "mainClass": "org.apache.catalina.startup.Bootstrap"})));
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].0, "spec.source.builder.java.jar");
        assert!(m[0].1.contains("write war: target/shop.war"), "{m:?}");
        assert_eq!(m[1].0, "spec.source.builder.java.mainClass");
        assert!(m[1].1.contains("write war: <path of the .war>"), "{m:?}");

        let m = messages(&java(serde_json::json!({"war": "app.jar", "mainClass": "a.Main",
            "dependencies": "lib", "contextPath": "/x"})));
        let p: Vec<&str> = m.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            p,
            [
                "spec.source.builder.java.war",
                "spec.source.builder.java.mainClass",
                "spec.source.builder.java.dependencies"
            ]
        );
        assert!(m[0].1.contains("write jar: app.jar"), "{m:?}");

        let m = messages(&java(serde_json::json!({"jar": "a.jar", "war": "a.war"})));
        assert_eq!(m[0].0, "spec.source.builder.java");
        assert!(m[0].1.contains("exactly one of jar, war and sources"), "{m:?}");
        assert_eq!(
            paths(&java(serde_json::json!({"jar": "a.jar", "contextPath": "/a"}))),
            ["spec.source.builder.java.contextPath"]
        );
    }
}
