//! `berth apply -f PATH…`: make the server's users, teams, clusters, environments and
//! applications match documents kept in files.
//!
//! Every document is read and checked locally first — YAML syntax, the typed schema
//! (unknown fields, wrong types) and the domain core's validation — and if any document
//! is wrong, the command reports all of them (with file, line and column) and sends
//! nothing. Only then are documents sent, dependencies first (users, teams, clusters,
//! environments, applications), each with `PUT`, so applying the same files twice
//! changes nothing.

use std::{
    collections::BTreeMap,
    fmt,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use berth_core::{
    Invalid, Kind, Resource,
    objects::{Application, Cluster, Environment, SyncSource, Team, User},
};
use serde_json::Value;

use berth_contract::{ApplyDocument, ApplyRequest, ApplyResult, Prune};

use berth_core::stream::{Chunk, split_documents};

use super::plan::{self, Style};
use crate::{client::Client, kind::KindName};

/// Arguments of `berth apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// Files or directories to apply; `-` reads standard input. Directories contribute
    /// their *.yaml, *.yml and *.json files, in name order. Files may hold several
    /// YAML documents separated by `---`.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Check everything on the server and show what would change (a field-level diff);
    /// store nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub prune: PruneArgs,
}

/// Arguments of `berth diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Files or directories to compare with the server, as `apply -f` reads them.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub prune: PruneArgs,
}

/// How an apply prunes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PruneArgs {
    /// Delete objects an earlier `apply --prune` of the same source stored that the
    /// documents no longer have (listed with the result). Objects it did not apply are
    /// never deleted; deletes need the same rights as `berth delete`.
    #[arg(long)]
    pub prune: bool,
    /// The source's name, kept on every object as the label `berth.dev/source`
    /// (default: the name of the directory applied).
    #[arg(long, value_name = "NAME", requires = "prune")]
    pub source: Option<String>,
    /// Prune even an application running in production (stopping it there).
    #[arg(long, requires = "prune")]
    pub force: bool,
}

impl PruneArgs {
    /// What the request asks to prune, if anything.
    fn request(&self, files: &[PathBuf]) -> anyhow::Result<Option<Prune>> {
        if !self.prune {
            return Ok(None);
        }
        let source = match &self.source {
            Some(source) => source.clone(),
            None => default_source(files)?,
        };
        Ok(Some(Prune {
            source,
            force: self.force,
        }))
    }
}

/// The source name of one directory (or file) applied: its name, as a DNS label.
fn default_source(files: &[PathBuf]) -> anyhow::Result<String> {
    let [path] = files else {
        anyhow::bail!("--prune of several paths needs --source NAME: which source do they make up?");
    };
    let path = std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let dir = if path.is_dir() {
        Some(path.as_path())
    } else {
        path.parent()
    };
    let name: String = dir
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    let name = name
        .get(..name.len().min(63))
        .unwrap_or(name)
        .trim_end_matches('-');
    anyhow::ensure!(
        !name.is_empty(),
        "cannot name the source after {}; name it with --source NAME",
        path.display()
    );
    Ok(name.to_owned())
}

/// The text of one input: a file, or standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// How errors name it: the path, or `<stdin>`.
    pub name: String,
    /// Its content.
    pub text: String,
}

/// Where a document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The source's name.
    pub source: String,
    /// Line of the document's first content, counting from 1.
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// An object `apply` can send.
#[derive(Debug, Clone)]
pub enum Object {
    /// A user.
    User(User),
    /// A team.
    Team(Team),
    /// A cluster.
    Cluster(Cluster),
    /// An environment.
    Environment(Environment),
    /// An application (boxed: it is by far the largest document).
    Application(Box<Application>),
    /// A git repository Berth syncs documents from.
    Source(SyncSource),
}

impl Object {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> KindName {
        match self {
            Self::User(_) => KindName::User,
            Self::Team(_) => KindName::Team,
            Self::Cluster(_) => KindName::Cluster,
            Self::Environment(_) => KindName::Environment,
            Self::Application(_) => KindName::Application,
            Self::Source(_) => KindName::Source,
        }
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::User(r) => r.name(),
            Self::Team(r) => r.name(),
            Self::Cluster(r) => r.name(),
            Self::Environment(r) => r.name(),
            Self::Application(r) => r.name(),
            Self::Source(r) => r.name(),
        }
    }

    /// The domain core's verdict on the document.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Self::User(r) => r.validate(),
            Self::Team(r) => r.validate(),
            Self::Cluster(r) => r.validate(),
            Self::Environment(r) => r.validate(),
            Self::Application(r) => r.validate(),
            Self::Source(r) => r.validate(),
        }
    }

    /// The JSON sent to the server: the document with defaults filled in and without
    /// `status`, which only Berth writes.
    pub fn body(&self) -> anyhow::Result<Value> {
        let mut v = match self {
            Self::User(r) => serde_json::to_value(r)?,
            Self::Team(r) => serde_json::to_value(r)?,
            Self::Cluster(r) => cluster_body(r)?,
            Self::Environment(r) => serde_json::to_value(r)?,
            Self::Application(r) => serde_json::to_value(r)?,
            Self::Source(r) => serde_json::to_value(r)?,
        };
        if let Some(map) = v.as_object_mut() {
            map.remove("status");
        }
        Ok(v)
    }
}

/// A cluster's JSON: its inline kubeconfig is write-only (it refuses to serialize, so
/// that nothing logs or stores it by accident) and is put back in for the one request
/// that hands it to the server, which seals it.
fn cluster_body(cluster: &berth_core::objects::Cluster) -> anyhow::Result<Value> {
    use berth_core::objects::KubeconfigSource;
    let mut copy = cluster.clone();
    let inline = match copy.spec.kubernetes.as_mut().map(|k| k.kubeconfig.take()) {
        Some(Some(KubeconfigSource::Inline(text))) => Some(text),
        Some(other) => {
            if let Some(k) = copy.spec.kubernetes.as_mut() {
                k.kubeconfig = other;
            }
            None
        }
        None => None,
    };
    let mut v = serde_json::to_value(&copy)?;
    if let (Some(text), Some(k)) = (
        inline,
        v.pointer_mut("/spec/kubernetes").and_then(Value::as_object_mut),
    ) {
        k.insert(
            "kubeconfig".to_owned(),
            serde_json::json!({"inline": text.expose()}),
        );
    }
    Ok(v)
}

/// A checked document ready to send.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it was written.
    pub origin: Origin,
    /// What it says.
    pub object: Object,
}

/// Documents that cannot be applied; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentErrors {
    /// One entry per problem, each starting `file:line:column: `.
    pub problems: Vec<String>,
}

impl fmt::Display for DocumentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in the documents; nothing was applied",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DocumentErrors {}

/// Runs `berth apply`.
pub async fn run(client: &Client, args: ApplyArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    let documents = read_documents(&args.files)?;
    let options = Options {
        dry_run: args.dry_run,
        prune: args.prune.request(&args.files)?,
        style: Style::for_stdout(args.dry_run),
    };
    apply(client, &documents, &options, out).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth diff`: what `apply` would change, checked in full by the server.
pub async fn diff(client: &Client, args: DiffArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ExitCode> {
    let documents = read_documents(&args.files)?;
    let options = Options {
        dry_run: true,
        prune: args.prune.request(&args.files)?,
        style: Style::for_stdout(true),
    };
    apply(client, &documents, &options, out).await?;
    Ok(ExitCode::SUCCESS)
}

fn read_documents(files: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let sources = read_sources(files, &mut std::io::stdin())?;
    let documents = parse_sources(&sources)?;
    if documents.is_empty() {
        anyhow::bail!(
            "no documents found in {}",
            files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(documents)
}

/// How [`apply`] sends and prints.
#[derive(Debug, Clone)]
pub struct Options {
    /// Store nothing; show what would change.
    pub dry_run: bool,
    /// What to prune.
    pub prune: Option<Prune>,
    /// How to print the result.
    pub style: Style,
}

/// Sends checked documents in one request (`POST /apply`: one transaction, all stored
/// or none), each with the file and line it came from, and prints what happened to each
/// object (`kind/name outcome`).
pub async fn apply(
    client: &Client,
    documents: &[Document],
    options: &Options,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ApplyResult> {
    let request = ApplyRequest {
        documents: documents
            .iter()
            .map(|d| {
                Ok(ApplyDocument {
                    object: d.object.body()?,
                    file: Some(d.origin.source.clone()),
                    line: Some(d.origin.line),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        prune: options.prune.clone(),
    };
    let query = if options.dry_run {
        vec![("dryRun", "All".to_owned())]
    } else {
        Vec::new()
    };
    let result: ApplyResult = client
        .post_with(&["apply"], &query, &request)
        .await
        .with_context(|| {
            format!(
                "applying {} document(s){}",
                documents.len(),
                if options.dry_run { " (dry run)" } else { "" }
            )
        })?;
    out.write_all(plan::render(&result, options.style).as_bytes())?;
    Ok(result)
}

/// Reads every path: files as they are, directories' *.yaml, *.yml and *.json files in
/// name order, and `-` from `stdin` (once).
pub fn read_sources(paths: &[PathBuf], stdin: &mut dyn Read) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    let mut read_stdin = false;
    for path in paths {
        if path.as_os_str() == "-" {
            anyhow::ensure!(!read_stdin, "'-' (standard input) is given more than once");
            read_stdin = true;
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
            sources.push(Source {
                name: "<stdin>".to_owned(),
                text,
            });
            continue;
        }
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_dir() {
            for file in manifest_files(path)? {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}

/// The document files directly in `dir`, sorted by name.
fn manifest_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["yaml", "yml", "json"].contains(&e.to_ascii_lowercase().as_str()));
        if is_manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The message of a YAML error without its `at line …, column …` suffix.
pub(crate) fn plain_message(e: &serde_saphyr::Error, line_offset: u64) -> String {
    let opts = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
        line_offset: line_offset,
    };
    let text = e.render_with_options(opts);
    match e.location() {
        Some(l) => {
            let suffix = format!(" at line {}, column {}", l.line() + line_offset, l.column());
            text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
        }
        None => text,
    }
}

/// A `file:line:column: message` problem with the offending lines quoted under it.
fn yaml_problem(e: &serde_saphyr::Error, source: &str, chunk: &Chunk) -> String {
    let offset = chunk.offset();
    let (line, column) = e
        .location()
        .map_or((chunk.content_line(), 1), |l| (l.line() + offset, l.column()));
    let mut out = format!("{source}:{line}:{column}: {}", plain_message(e, offset));
    let opts = serde_saphyr::render_options! {
        line_offset: offset,
        source_name: Some(source),
    };
    // The snippet's own header repeats the message and location; keep only the quote.
    for l in e
        .render_with_options(opts)
        .lines()
        .filter(|l| !l.starts_with("error:") && !l.contains("-->"))
    {
        out.push_str("\n  ");
        out.push_str(l);
    }
    out
}

/// Parses and checks every document of every source. Either all documents are fine
/// (returned in apply order: users, teams, clusters, environments, applications, each in
/// input order) or every problem found is returned.
pub fn parse_sources(sources: &[Source]) -> Result<Vec<Document>, DocumentErrors> {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for source in sources {
        for chunk in split_documents(&source.text) {
            parse_chunk(&source.name, &chunk, &mut documents, &mut problems);
        }
    }
    let mut seen: BTreeMap<(KindName, String), Origin> = BTreeMap::new();
    for doc in &documents {
        let key = (doc.object.kind(), doc.object.name().to_owned());
        if let Some(first) = seen.get(&key) {
            problems.push(format!(
                "{}:1: {}/{} is also defined at {first}; keep one",
                doc.origin, key.0, key.1
            ));
        } else {
            seen.insert(key, doc.origin.clone());
        }
    }
    if !problems.is_empty() {
        return Err(DocumentErrors { problems });
    }
    documents.sort_by_key(|d| d.object.kind());
    Ok(documents)
}

fn parse_chunk(source: &str, chunk: &Chunk, documents: &mut Vec<Document>, problems: &mut Vec<String>) {
    let values: Vec<Value> = match serde_saphyr::from_str_multiple::<Value, Vec<_>>(&chunk.text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(yaml_problem(&e, source, chunk));
            return;
        }
    };
    let origin = Origin {
        source: source.to_owned(),
        line: chunk.content_line(),
    };
    // One value is the usual case: it is parsed again, typed, from its text so that
    // schema errors keep their line and column. Anything else falls back to JSON paths.
    let single = values.len() == 1;
    for value in values {
        let at = format!("{origin}:1");
        let Some(kind) = value.get("kind").and_then(Value::as_str).map(str::to_owned) else {
            problems.push(format!(
                "{at}: the document has no kind; use kind: User, Team, Cluster, Environment or Application"
            ));
            continue;
        };
        if let Some(items) = kind
            .strip_suffix("List")
            .and(value.get("items"))
            .and_then(Value::as_array)
        {
            for (i, item) in items.iter().enumerate() {
                let label = format!("{at}: items[{i}]");
                if let Some(object) = object_from_json(item, &label, problems) {
                    documents.push(Document {
                        origin: origin.clone(),
                        object,
                    });
                }
            }
            continue;
        }
        let object = if single {
            typed_from_yaml(&kind, (source, chunk, &value), &at, problems)
        } else {
            object_from_json(&value, &at, problems)
        };
        if let Some(object) = object {
            documents.push(Document {
                origin: origin.clone(),
                object,
            });
        }
    }
}

/// Why a kind that exists cannot be applied, or what to write instead of an unknown one.
fn refusal(kind: &str) -> String {
    match KindName::from_document_kind(kind) {
        Some(KindName::Release) => "kind Release cannot be applied: releases are immutable and made by \
                                    `berth deploy APP --image REF` (or POST /applications/APP/releases)"
            .to_owned(),
        Some(KindName::Deployment) => "kind Deployment cannot be applied: deployments are made by \
                                       `berth deploy` and `berth rollback`"
            .to_owned(),
        Some(KindName::Event) => "kind Event cannot be applied: events are recorded by Berth".to_owned(),
        _ => match kind.parse::<KindName>() {
            Ok(
                k @ (KindName::User
                | KindName::Team
                | KindName::Cluster
                | KindName::Environment
                | KindName::Application
                | KindName::Source),
            ) => {
                format!("unknown kind '{kind}'; did you mean kind: {}?", k.kind())
            }
            _ => {
                format!(
                    "unknown kind '{kind}'; apply takes User, Team, Cluster, Environment, Application and Source"
                )
            }
        },
    }
}

fn typed_from_yaml(
    kind: &str,
    (source, chunk, value): (&str, &Chunk, &Value),
    at: &str,
    problems: &mut Vec<String>,
) -> Option<Object> {
    let parsed = match KindName::from_document_kind(kind) {
        Some(KindName::User) => from_yaml(&chunk.text).map(Object::User),
        Some(KindName::Team) => from_yaml(&chunk.text).map(Object::Team),
        Some(KindName::Cluster) => from_yaml(&chunk.text).map(Object::Cluster),
        Some(KindName::Environment) => from_yaml(&chunk.text).map(Object::Environment),
        Some(KindName::Application) => from_yaml(&chunk.text).map(|a| Object::Application(Box::new(a))),
        Some(KindName::Source) => from_yaml(&chunk.text).map(Object::Source),
        _ => {
            problems.push(format!("{at}: {}", refusal(kind)));
            return None;
        }
    };
    match parsed {
        Ok(object) => checked(object, at, problems),
        Err(e) => {
            problems.push(yaml_problem(&e, source, chunk));
            // The YAML parse stops at the first problem; the JSON one names every unknown
            // field, so that one run shows them all.
            let mut all = Vec::new();
            object_from_json(value, at, &mut all);
            if all.first().is_some_and(|p| p.matches("\n  ").count() > 1) {
                problems.extend(all);
            }
            None
        }
    }
}

fn from_yaml<K: Kind>(text: &str) -> Result<Resource<K>, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

fn object_from_json(value: &Value, at: &str, problems: &mut Vec<String>) -> Option<Object> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
    let parsed = match KindName::from_document_kind(kind) {
        Some(KindName::User) => Resource::from_json(value).map(Object::User),
        Some(KindName::Team) => Resource::from_json(value).map(Object::Team),
        Some(KindName::Cluster) => Resource::from_json(value).map(Object::Cluster),
        Some(KindName::Environment) => Resource::from_json(value).map(Object::Environment),
        Some(KindName::Application) => Resource::from_json(value).map(|a| Object::Application(Box::new(a))),
        Some(KindName::Source) => Resource::from_json(value).map(Object::Source),
        _ => {
            problems.push(format!("{at}: {}", refusal(kind)));
            return None;
        }
    };
    match parsed {
        Ok(object) => checked(object, at, problems),
        Err(invalid) => {
            problems.push(invalid_problem(at, &invalid, None));
            None
        }
    }
}

fn checked(object: Object, at: &str, problems: &mut Vec<String>) -> Option<Object> {
    match object.validate() {
        Ok(()) => Some(object),
        Err(invalid) => {
            problems.push(invalid_problem(at, &invalid, Some(object.name())));
            None
        }
    }
}

fn invalid_problem(at: &str, invalid: &Invalid, name: Option<&str>) -> String {
    let mut out = format!("{at}: invalid {}", invalid.kind);
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        out.push_str(&format!(" '{name}'"));
    }
    out.push(':');
    for e in &invalid.errors {
        out.push_str(&format!("\n  {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str =
        "apiVersion: berth.dev/v1\nkind: Cluster\nmetadata:\n  name: local\nspec:\n  runtime: local\n";
    const ENV: &str = "apiVersion: berth.dev/v1\nkind: Environment\nmetadata:\n  name: qa\nspec:\n  clusters:\n  - cluster: local\n";
    const APP: &str = "apiVersion: berth.dev/v1\nkind: Application\nmetadata:\n  name: web\nspec:\n  image: \
                       127.0.0.1:5000/web:1\n  replicas: 2\n  env:\n    LISTEN_PORT: 8080\n";

    fn src(name: &str, text: &str) -> Source {
        Source {
            name: name.to_owned(),
            text: text.to_owned(),
        }
    }

    fn summary(docs: &[Document]) -> Vec<String> {
        docs.iter()
            .map(|d| format!("{}/{} @ {}", d.object.kind(), d.object.name(), d.origin))
            .collect()
    }

    fn problems(sources: &[Source]) -> Vec<String> {
        parse_sources(sources).unwrap_err().problems
    }

    #[test]
    fn multi_document_files_apply_in_dependency_order() {
        let text = format!("# everything for qa\n---\n{APP}---\n{ENV}\n---\n# nothing here\n---\n{CLUSTER}");
        let docs = parse_sources(&[src("all.yaml", &text)]).unwrap();
        assert_eq!(
            summary(&docs),
            [
                "cluster/local @ all.yaml:24",
                "environment/qa @ all.yaml:13",
                "application/web @ all.yaml:3"
            ]
        );
        // Typed parsing of YAML: `LISTEN_PORT: 8080` is the string "8080", defaults are filled in.
        let Object::Application(app) = &docs[2].object else {
            panic!("not an application")
        };
        assert_eq!(app.spec.env["LISTEN_PORT"], "8080");
        assert_eq!(app.spec.port, 8080);
        let body = docs[2].object.body().unwrap();
        assert_eq!(body["spec"]["replicas"], 2);
        assert!(body.get("status").is_none());
    }

    #[test]
    fn an_inline_kubeconfig_is_sent_to_be_sealed() {
        let kubeconfig = "apiVersion: v1\nclusters: [{name: c, cluster: {server: 'https://k'}}]\n\
                          contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n";
        let text = format!(
            "apiVersion: berth.dev/v1\nkind: Cluster\nmetadata:\n  name: prod\nspec:\n  runtime: kubernetes\n  \
             kubernetes:\n    context: x\n    kubeconfig:\n      inline: {}\n",
            serde_json::to_string(kubeconfig).unwrap()
        );
        let docs = parse_sources(&[src("prod.yaml", &text)]).unwrap();
        let body = docs[0].object.body().unwrap();
        assert_eq!(body["spec"]["kubernetes"]["kubeconfig"]["inline"], kubeconfig);
        assert_eq!(body["spec"]["kubernetes"]["context"], "x");
        assert!(
            !format!("{:?}", docs[0].object).contains("https://k"),
            "the document never prints"
        );
    }

    #[test]
    fn order_within_a_kind_follows_the_input() {
        let app2 = APP.replace("name: web", "name: api");
        let docs =
            parse_sources(&[src("a.yaml", APP), src("b.yaml", &app2), src("c.yaml", CLUSTER)]).unwrap();
        assert_eq!(
            summary(&docs),
            [
                "cluster/local @ c.yaml:1",
                "application/web @ a.yaml:1",
                "application/api @ b.yaml:1"
            ]
        );
    }

    #[test]
    fn directories_contribute_manifest_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("20-app.yaml"), APP).unwrap();
        std::fs::write(dir.path().join("10-env.yml"), ENV).unwrap();
        std::fs::write(
            dir.path().join("30-cluster.json"),
            r#"{"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "dc2"}, "spec": {}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("nested.yaml")).unwrap();
        let sources = read_sources(&[dir.path().to_path_buf()], &mut std::io::empty()).unwrap();
        let names: Vec<_> = sources
            .iter()
            .map(|s| {
                Path::new(&s.name)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["10-env.yml", "20-app.yaml", "30-cluster.json"]);
        let docs = parse_sources(&sources).unwrap();
        let kinds: Vec<_> = docs.iter().map(|d| d.object.name().to_owned()).collect();
        assert_eq!(kinds, ["dc2", "qa", "web"]);
    }

    #[test]
    fn stdin_is_read_once_and_only_when_asked() {
        struct NoStdin;
        impl Read for NoStdin {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                panic!("stdin was read")
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, CLUSTER).unwrap();
        let sources = read_sources(std::slice::from_ref(&file), &mut NoStdin).unwrap();
        assert_eq!(sources.len(), 1);

        let mut stdin = std::io::Cursor::new(APP.as_bytes());
        let sources = read_sources(&[PathBuf::from("-"), file], &mut stdin).unwrap();
        assert_eq!(sources[0].name, "<stdin>");
        assert_eq!(
            summary(&parse_sources(&sources).unwrap())[1],
            "application/web @ <stdin>:1"
        );

        let e = read_sources(&[PathBuf::from("-"), PathBuf::from("-")], &mut std::io::empty()).unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    #[test]
    fn missing_path_is_named() {
        let e = read_sources(&[PathBuf::from("/nonexistent/x.yaml")], &mut std::io::empty()).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot read /nonexistent/x.yaml"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let text = format!(
            "{CLUSTER}---\n{}",
            "apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: [qa\n"
        );
        let p = problems(&[src("envs.yaml", &text)]);
        assert_eq!(p.len(), 1, "{p:?}");
        let first = p[0].lines().next().unwrap();
        assert!(first.starts_with("envs.yaml:10:"), "{}", p[0]);
    }

    #[test]
    fn schema_errors_name_file_line_and_column() {
        let bad = APP.replace("replicas: 2", "replicas: three");
        let text = format!("{CLUSTER}---\n{bad}");
        let p = problems(&[src("apps.yaml", &text)]);
        insta::assert_snapshot!(p.join("\n"), @r"
        apps.yaml:14:13: invalid u32
             |
          12 | spec:
          13 |   image: 127.0.0.1:5000/web:1
          14 |   replicas: three
             |             ^ invalid u32
          15 |   env:
          16 |     LISTEN_PORT: 8080
             |
        ");
        let bad = APP.replace("replicas: 2", "replica: 2");
        let p = problems(&[src("apps.yaml", &bad)]);
        let first = p[0].lines().next().unwrap();
        assert!(
            first.starts_with("apps.yaml:7:3: unknown field `replica`"),
            "{first}"
        );
        // Several unknown fields: all of them in one run, each with its path.
        let bad = APP
            .replace("replicas: 2", "replica: 2")
            .replace("  env:", "  envs:")
            .replace("kind: Application", "kind: Application\nstatuss: {}");
        let p = problems(&[src("apps.yaml", &bad)]);
        assert_eq!(p.len(), 2, "{p:?}");
        let all = &p[1];
        assert!(all.starts_with("apps.yaml:1:1: invalid Application:"), "{all}");
        for path in [
            "\n  statuss: unknown field",
            "\n  spec.replica: unknown field",
            "\n  spec.envs: unknown field",
        ] {
            assert!(all.contains(path), "{path} missing: {all}");
        }
    }

    #[test]
    fn every_bad_document_is_reported_and_nothing_is_returned() {
        let invalid = APP
            .replace("name: web", "name: Web_1")
            .replace("replicas: 2", "replicas: 1000");
        let release = "apiVersion: berth.dev/v1\nkind: Release\nmetadata: {name: web-1}\nspec: {}\n";
        let deployment = "apiVersion: berth.dev/v1\nkind: Deployment\nmetadata: {name: web-qa-1}\nspec: {}\n";
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n";
        let lower = "apiVersion: berth.dev/v1\nkind: application\nmetadata: {name: p}\n";
        let nokind = "apiVersion: berth.dev/v1\nmetadata: {name: p}\n";
        let text = [
            CLUSTER, &invalid, release, deployment, pod, lower, nokind, CLUSTER,
        ]
        .join("---\n");
        let p = problems(&[src("mixed.yaml", &text)]);
        insta::assert_snapshot!(p.join("\n"), @r"
        mixed.yaml:8:1: invalid Application 'Web_1':
          metadata.name: 'Web_1' contains 'W', which a DNS-1123 label cannot hold (use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)
          spec.replicas: 1000 is more than the 100 allowed
        mixed.yaml:18:1: kind Release cannot be applied: releases are immutable and made by `berth deploy APP --image REF` (or POST /applications/APP/releases)
        mixed.yaml:23:1: kind Deployment cannot be applied: deployments are made by `berth deploy` and `berth rollback`
        mixed.yaml:28:1: unknown kind 'Pod'; apply takes User, Team, Cluster, Environment, Application and Source
        mixed.yaml:32:1: unknown kind 'application'; did you mean kind: Application?
        mixed.yaml:36:1: the document has no kind; use kind: User, Team, Cluster, Environment or Application
        mixed.yaml:39:1: cluster/local is also defined at mixed.yaml:1; keep one
        ");
    }

    #[test]
    fn json_lists_and_stdin_json_are_accepted() {
        let list = r#"{"apiVersion": "berth.dev/v1", "kind": "ClusterList", "items": [
            {"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "a"}, "spec": {}},
            {"apiVersion": "berth.dev/v1", "kind": "Cluster", "metadata": {"name": "b"}, "spec": {"datacenter": "dc2"},
             "status": {"phase": "Ready"}}
        ]}"#;
        let docs = parse_sources(&[src("<stdin>", list)]).unwrap();
        assert_eq!(summary(&docs), ["cluster/a @ <stdin>:1", "cluster/b @ <stdin>:1"]);
        let bad = list.replace("\"datacenter\"", "\"dc\"");
        let p = problems(&[src("l.json", &bad)]);
        assert!(
            p[0].starts_with("l.json:1:1: items[1]: invalid Cluster:\n  spec.dc: unknown field `dc`"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn empty_input_gives_no_documents() {
        assert!(
            parse_sources(&[src("e.yaml", "# nothing\n---\n---\n")])
                .unwrap()
                .is_empty()
        );
        assert!(parse_sources(&[src("e.yaml", "")]).unwrap().is_empty());
    }

    fn write_manifests(dir: &Path, replicas: u32) {
        std::fs::write(
            dir.join("1-app.yaml"),
            APP.replace("replicas: 2", &format!("replicas: {replicas}")),
        )
        .unwrap();
        std::fs::write(dir.join("2-infra.yaml"), format!("{ENV}---\n{CLUSTER}")).unwrap();
    }

    async fn apply_dir(client: &Client, dir: &Path) -> anyhow::Result<String> {
        let mut out = Vec::new();
        let args = ApplyArgs {
            files: vec![dir.to_path_buf()],
            dry_run: false,
            prune: PruneArgs::default(),
        };
        run(client, args, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn apply_creates_then_leaves_unchanged_then_configures() {
        let fake = crate::fake::FakeApi::default();
        let client = fake.serve().await;
        let dir = tempfile::tempdir().unwrap();
        write_manifests(dir.path(), 2);

        let out = apply_dir(&client, dir.path()).await.unwrap();
        assert_eq!(
            out,
            "cluster/local created\nenvironment/qa created\napplication/web created\n"
        );
        // One request: one transaction on the server.
        assert_eq!(fake.requests(), ["POST /apply"]);
        let stored = fake.objects.lock().unwrap()[&("applications".to_owned(), "web".to_owned())].clone();
        assert_eq!(stored["spec"]["env"]["LISTEN_PORT"], "8080");
        assert!(stored.get("status").is_none());

        let out = apply_dir(&client, dir.path()).await.unwrap();
        assert_eq!(
            out,
            "cluster/local unchanged\nenvironment/qa unchanged\napplication/web unchanged\n"
        );

        write_manifests(dir.path(), 3);
        let out = apply_dir(&client, dir.path()).await.unwrap();
        assert_eq!(
            out,
            "cluster/local unchanged\nenvironment/qa unchanged\napplication/web configured\n"
        );
    }

    #[tokio::test]
    async fn nothing_is_sent_when_any_document_is_bad() {
        let fake = crate::fake::FakeApi::default();
        let client = fake.serve().await;
        let dir = tempfile::tempdir().unwrap();
        write_manifests(dir.path(), 2);
        std::fs::write(
            dir.path().join("3-pod.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
        )
        .unwrap();
        let e = apply_dir(&client, dir.path()).await.unwrap_err();
        let report = crate::output::error_report(&e);
        let pod = dir.path().join("3-pod.yaml");
        assert_eq!(
            report,
            format!(
                "error: 1 problem in the documents; nothing was applied\n{}:1:1: unknown kind 'Pod'; apply takes \
                 User, Team, Cluster, Environment, Application and Source",
                pod.display()
            )
        );
        assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    }

    #[tokio::test]
    async fn a_server_refusal_stops_the_apply_and_names_the_document() {
        let fake = crate::fake::FakeApi::default();
        let client = fake.serve().await;
        let text = format!(
            "{APP}---\n{}---\n{CLUSTER}",
            ENV.replace("name: qa", "name: refused")
        );
        let docs = parse_sources(&[src("all.yaml", &text)]).unwrap();
        let mut out = Vec::new();
        let options = Options {
            dry_run: false,
            prune: None,
            style: Style {
                color: false,
                fields: false,
            },
        };
        let e = apply(&client, &docs, &options, &mut out).await.unwrap_err();
        assert_eq!(String::from_utf8(out).unwrap(), "");
        assert_eq!(
            crate::output::error_report(&e),
            "error: applying 3 document(s): Documents of the apply are refused: 1 problem(s); nothing was applied\n  \
             documents[1].spec.clusters[0].cluster: all.yaml:11: Environment 'refused' (document 1): names Cluster \
             'gone', which does not exist"
        );
        // Nothing was stored, not even the cluster before it.
        assert!(fake.objects.lock().unwrap().is_empty());
    }
}
