//! [`KubeRuntime`]: one Kubernetes cluster behind Berth's [`ClusterRuntime`] trait.
//!
//! A pass is level-triggered and keeps nothing the next pass needs:
//!
//! ```text
//!  desired workloads ──render──▶ wanted objects (kind, namespace, name, hash)
//!  LIST every kind, label app.kubernetes.io/managed-by=berth, 250 per page
//!        │  per object: hash annotation differs → outdated (Berth wants something new)
//!        │              same hash, fields differ → drifted (someone changed it)
//!        │              not wanted, Berth's labels → prune
//!        ▼
//!  apply (server-side, field manager `berth`, force only by policy) what is missing,
//!  outdated or drifted; delete what is pruned; read rollout status; report.
//! ```
//!
//! A pass where nothing changed makes no write request at all. Known-good objects are
//! remembered by resource version, so a steady pass does not even compare fields again
//! (an optimisation only: after a restart everything is compared once).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use berth_core::{
    instance::{Instance, LogQuery, Terminated},
    objects::{KubeconfigSource, KubernetesRuntime},
    ports::{ClusterReport, ClusterRuntime, LogFeed, Notice, RuntimeChanges, RuntimeError, WorkloadReport},
    render::{Workload, WorkloadKey},
};
use futures::{StreamExt, stream};
use kube::{
    Client, Config,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::{ObjectList, Request},
};
use rand::Rng;
use serde_json::Value;
use tokio::{sync::Notify, task::JoinHandle, time::Instant};

use crate::{
    FIELD_MANAGER,
    diff::{self, Difference},
    error::{Error, Result},
    keyed::{self, Echo, ObjKey, Plan, Text, WatchCache, Watched},
    render::{self, APPLICATION, APPLIED_HASH, ENVIRONMENT, MANAGED_BY, MANAGED_SELECTOR, ObjectKind},
    status::{self, DeploymentState, Rollout},
};

#[path = "operate.rs"]
mod operate;

/// How long a rollout may be in progress before its pods are looked at for an
/// explanation (a stalled one is explained at once): a rollout that completes in a few
/// seconds needs none, and a pod list is the most expensive read of a namespace.
const EXPLAIN_AFTER: Duration = Duration::from_secs(5);

/// Tuning of a Kubernetes runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Requests in flight at once per cluster.
    pub concurrency: usize,
    /// Objects per list page.
    pub page_size: u32,
    /// Longest wait for one request.
    pub request_timeout: Duration,
    /// Retries of a request that failed with 429, 5xx or a transport error.
    pub retries: u32,
    /// Stop applying after this long in one pass and report the rest as waiting (the
    /// next pass goes on), so a pass answers before the reconciler gives up on it.
    pub pass_budget: Option<Duration>,
    /// Watch Berth's objects and wake the reconciler when they change.
    pub watch: bool,
    /// Pod lists per pass to explain rollouts that do not progress.
    pub pod_lookups: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            concurrency: 32,
            page_size: 250,
            request_timeout: Duration::from_secs(10),
            // With a 5 s connect timeout, three attempts at a silent server still end
            // before the reconciler's 20 s limit on a pass.
            retries: 2,
            pass_budget: Some(Duration::from_secs(15)),
            watch: true,
            pod_lookups: 20,
        }
    }
}

/// How the cluster is reached.
#[derive(Clone)]
enum Access {
    Kubeconfig(Box<Kubeconfig>, Option<String>),
    InCluster,
}

/// What a pass found for one wanted object.
enum Seen {
    InSync,
    Outdated,
    Drifted(Vec<Difference>, Vec<String>),
    /// Applying it conflicted with another manager, and nothing changed since: the
    /// conflict stands (reported again in the workload's message, not as a new notice,
    /// and not applied again).
    Conflicted(String),
}

/// What a pass keeps of an apply's answer (the rest of the object is skipped while
/// parsing: thousands of answers go by in a pass).
#[derive(serde::Deserialize)]
struct Applied {
    metadata: AppliedMeta,
    #[serde(default)]
    status: Option<Value>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppliedMeta {
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    generation: Option<u64>,
}

/// One object as a pass judged it.
enum Observed {
    /// Berth wants it: how it stands, and the rollout if it is a Deployment.
    Wanted(ObjKey, Seen, Option<(usize, Rollout)>, String),
    /// Berth's, but no longer wanted.
    Unwanted(ObjKey, WorkloadKey),
}

/// How per-key work ended for one object.
enum Done {
    /// Compared and found as Berth wants it (the object as read).
    Verified(Value),
    /// Applied (the answer).
    Applied(Applied),
    /// The request failed.
    Failed(Failure),
    /// Not tried: the call ran out of time.
    Postponed,
}

/// A request that failed.
enum Failure {
    Kube(kube::Error),
    Timeout(Duration),
}

/// A Kubernetes cluster as a [`ClusterRuntime`].
pub struct KubeRuntime {
    inner: Arc<Inner>,
}

/// The runtime's state, shared with the tasks a pass spawns: the reconciler polls every
/// cluster from one task, so the CPU work of a pass (rendering, comparing, parsing) is
/// spread over the runtime's threads by spawning the applies.
struct Inner {
    name: String,
    access: Access,
    options: RuntimeOptions,
    client: tokio::sync::OnceCell<Client>,
    /// Objects known to match what Berth applied: key → (resourceVersion, hash).
    verified: Arc<Mutex<HashMap<ObjKey, Verified>>>,
    /// What the watches say about Berth's objects.
    cache: Arc<Mutex<WatchCache>>,
    /// Namespaces known to exist.
    namespaces: Mutex<HashSet<String>>,
    /// Objects whose apply conflicted: key → (generation or resourceVersion, hash, what was
    /// reported).
    conflicted: Mutex<HashMap<ObjKey, (String, String, String)>>,
    changed: Arc<Notify>,
    watches: Mutex<Vec<JoinHandle<()>>>,
    /// Since when each key's rollout has been in progress (or stalled).
    rolling_since: Mutex<HashMap<WorkloadKey, Instant>>,
    /// What each key's workload last rendered to: per-key work plans from these hashes
    /// and renders a whole object only to apply it (a key is looked at again on every
    /// status change of its rollout, and rendering is JSON building plus a SHA-256).
    rendered: Mutex<HashMap<WorkloadKey, Rendered>>,
}

/// What Berth last left in one object: its resourceVersion and hash. Boxed: the table
/// of a cluster's objects keeps room for about twice the entries it holds.
type Verified = Box<(Text, Text)>;

/// The objects one workload renders to, without their bodies.
struct Rendered {
    /// [`fingerprint`] of the workload.
    fingerprint: u64,
    /// Each object but the Namespace, and its hash.
    objects: Arc<[(ObjKey, Text)]>,
}

/// A fingerprint of everything in a workload (secret values included): equal
/// fingerprints render to the same objects. Kept in memory only.
fn fingerprint(w: &Workload) -> u64 {
    let mut h = DefaultHasher::new();
    w.hash(&mut h);
    h.finish()
}

impl Drop for Inner {
    fn drop(&mut self) {
        for w in self
            .watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            w.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn collection_path(kind: ObjectKind, namespace: Option<&str>) -> String {
    let (g, v, _, plural) = kind.gvk();
    let base = if g.is_empty() {
        format!("/api/{v}")
    } else {
        format!("/apis/{g}/{v}")
    };
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{base}/namespaces/{ns}/{plural}"),
        _ => format!("{base}/{plural}"),
    }
}

impl KubeRuntime {
    /// A runtime for cluster `name`; the kubeconfig is read and its context checked now,
    /// the connection is made on first use.
    pub fn new(name: &str, spec: &KubernetesRuntime, options: RuntimeOptions) -> Result<Self> {
        let access = if spec.in_cluster {
            Access::InCluster
        } else {
            let kc = match &spec.kubeconfig {
                Some(KubeconfigSource::Path(p)) => Kubeconfig::read_from(p),
                Some(KubeconfigSource::Inline(doc)) => Kubeconfig::from_yaml(doc.expose()),
                Some(KubeconfigSource::Sealed(_)) => {
                    return Err(Error::InvalidKubeconfig {
                        cluster: name.to_owned(),
                        reason: "it is sealed and was not opened (the server opens it with its secrets keys)"
                            .to_owned(),
                    });
                }
                None => {
                    return Err(Error::InvalidKubeconfig {
                        cluster: name.to_owned(),
                        reason: "none given".to_owned(),
                    });
                }
            }
            .map_err(|e| Error::InvalidKubeconfig {
                cluster: name.to_owned(),
                reason: crate::error::describe_kubeconfig_error(&e),
            })?;
            let context = spec.context.clone().or_else(|| kc.current_context.clone());
            match &context {
                Some(c) if !kc.contexts.iter().any(|n| &n.name == c) => {
                    return Err(Error::UnknownContext {
                        cluster: name.to_owned(),
                        context: c.clone(),
                        available: kc
                            .contexts
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                None => {
                    return Err(Error::InvalidKubeconfig {
                        cluster: name.to_owned(),
                        reason: "it has no current-context and spec.kubernetes.context is not set".to_owned(),
                    });
                }
                Some(_) => {}
            }
            Access::Kubeconfig(Box::new(kc), spec.context.clone())
        };
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                access,
                options,
                client: tokio::sync::OnceCell::new(),
                verified: Arc::new(Mutex::new(HashMap::new())),
                cache: Arc::new(Mutex::new(WatchCache::default())),
                namespaces: Mutex::new(HashSet::new()),
                conflicted: Mutex::new(HashMap::new()),
                changed: Arc::new(Notify::new()),
                watches: Mutex::new(Vec::new()),
                rolling_since: Mutex::new(HashMap::new()),
                rendered: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Notified when Berth's objects change on the cluster (watch events), so that the
    /// reconciler passes at once.
    #[must_use]
    pub fn changed(&self) -> Arc<Notify> {
        self.inner.changed.clone()
    }
}

impl Inner {
    async fn client(&self) -> Result<Client> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let mut config = match &self.access {
                    Access::InCluster => Config::incluster().map_err(|e| Error::InCluster {
                        cluster: self.name.clone(),
                        reason: e.to_string(),
                    })?,
                    Access::Kubeconfig(kc, context) => {
                        let opts = KubeConfigOptions {
                            context: context.clone(),
                            ..KubeConfigOptions::default()
                        };
                        Config::from_custom_kubeconfig((**kc).clone(), &opts)
                            .await
                            .map_err(|e| Error::InvalidKubeconfig {
                                cluster: self.name.clone(),
                                reason: crate::error::describe_kubeconfig_error(&e),
                            })?
                    }
                };
                // Retries are ours: bounded, jittered, and within the pass budget
                // (kube's default retries 429 up to 15 times, for minutes).
                config.default_retry = false;
                config.connect_timeout = Some(Duration::from_secs(5));
                Client::try_from(config).map_err(|e| Error::InvalidKubeconfig {
                    cluster: self.name.clone(),
                    reason: e.to_string(),
                })
            })
            .await?;
        Ok(client.clone())
    }

    /// One request with a timeout, retried with jittered exponential backoff on 429,
    /// 5xx and transport errors.
    async fn call<T, F, Fut>(&self, f: F) -> std::result::Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            let outcome = match tokio::time::timeout(self.options.request_timeout, f()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => Failure::Kube(e),
                Err(_) => Failure::Timeout(self.options.request_timeout),
            };
            let retryable = match &outcome {
                Failure::Kube(kube::Error::Api(s)) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
                Failure::Kube(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
                Failure::Kube(_) => false,
                Failure::Timeout(_) => true,
            };
            if !retryable || attempt >= self.options.retries {
                return Err(outcome);
            }
            let base = Duration::from_millis(100u64 << attempt.min(5));
            let jitter = rand::rng().random_range(0..=base.as_millis() as u64);
            tokio::time::sleep(base + Duration::from_millis(jitter)).await;
            attempt += 1;
        }
    }

    /// What the delete of `obj`, which Berth no longer wants, came to: a notice (none when
    /// it was already gone), or the error when the whole cluster failed.
    fn pruned(
        &self,
        obj: &ObjKey,
        key: WorkloadKey,
        removed: std::result::Result<(), Failure>,
    ) -> Result<Option<Notice>> {
        let (warning, reason, message) = match removed {
            Ok(()) => (
                false,
                "Pruned",
                format!("removed {obj}, which Berth no longer wants"),
            ),
            Err(Failure::Kube(kube::Error::Api(s))) if s.code == 404 => return Ok(None),
            Err(f) => {
                let e = self.error(f);
                if e.is_cluster_wide() {
                    return Err(e);
                }
                (true, "PruneFailed", format!("could not remove {obj}: {e}"))
            }
        };
        Ok(Some(Notice {
            key,
            warning,
            reason: reason.to_owned(),
            message,
        }))
    }

    fn error(&self, f: Failure) -> Error {
        match f {
            Failure::Kube(e) => Error::from_kube(&self.name, &e),
            Failure::Timeout(d) => Error::Unreachable {
                cluster: self.name.clone(),
                reason: format!("no answer within {}s", d.as_secs()),
            },
        }
    }

    async fn list_all(&self, client: &Client, path: &str, selector: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        self.list_pages(client, path, selector, |page| out.extend(page))
            .await?;
        Ok(out)
    }

    /// Lists page by page, handing each page to `each`: memory stays at one page however
    /// many objects there are.
    async fn list_pages(
        &self,
        client: &Client,
        path: &str,
        selector: &str,
        mut each: impl FnMut(Vec<Value>),
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default()
                .labels(selector)
                .limit(self.options.page_size);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let req = Request::new(path).list(&lp).map_err(|e| Error::Api {
                cluster: self.name.clone(),
                message: e.to_string(),
            })?;
            let page: ObjectList<Value> = self
                .call(|| client.request::<ObjectList<Value>>(clone_request(&req)))
                .await
                .map_err(|f| self.error(f))?;
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            each(page.items);
            if token.is_none() {
                return Ok(());
            }
        }
    }

    /// What the objects of one kind on the cluster say, against what Berth wants.
    async fn observe(
        &self,
        client: &Client,
        kind: ObjectKind,
        desired: &[Workload],
        wanted: &BTreeMap<ObjKey, (usize, Text)>,
    ) -> Result<Vec<Observed>> {
        let mut out = Vec::new();
        let path = collection_path(kind, None);
        self.list_pages(client, &path, MANAGED_SELECTOR, |page| {
            out.extend(
                page.iter()
                    .filter_map(|obj| self.judge(kind, obj, desired, wanted)),
            );
        })
        .await?;
        Ok(out)
    }

    fn judge(
        &self,
        kind: ObjectKind,
        obj: &Value,
        desired: &[Workload],
        wanted: &BTreeMap<ObjKey, (usize, Text)>,
    ) -> Option<Observed> {
        let meta = &obj["metadata"];
        let key = ObjKey {
            kind,
            namespace: meta["namespace"].as_str().unwrap_or_default().into(),
            name: meta["name"].as_str().unwrap_or_default().into(),
        };
        let Some((i, hash)) = wanted.get(&key) else {
            let labels = &meta["labels"];
            // Only what carries Berth's ownership labels, never anything else.
            if labels[MANAGED_BY] == "berth"
                && let Some(app) = labels[APPLICATION].as_str()
            {
                let env = labels[ENVIRONMENT].as_str().unwrap_or_default().to_owned();
                return Some(Observed::Unwanted(
                    key,
                    WorkloadKey {
                        application: app.to_owned(),
                        environment: env,
                    },
                ));
            }
            return None;
        };
        let w = &desired[*i];
        let rv: Text = meta["resourceVersion"].as_str().unwrap_or_default().into();
        // A conflict stands while nothing changed: not the object, not what Berth wants,
        // and the environment still does not force. "The object" is its generation where it
        // has one: on a real cluster the controllers write the status of a Deployment, HPA
        // or PDB all the time, and each write is a new resourceVersion but the same spec.
        let version = meta["generation"]
            .as_i64()
            .map_or_else(|| rv.to_string(), |g| format!("generation {g}"));
        let standing = lock(&self.conflicted)
            .get(&key)
            .filter(|(v, h, _)| *v == version && h == hash && !w.force_conflicts)
            .map(|(_, _, m)| m.clone());
        let state = if let Some(message) = standing {
            Seen::Conflicted(message)
        } else if meta["annotations"][APPLIED_HASH].as_str() != Some(hash.as_str()) {
            Seen::Outdated
        } else if lock(&self.verified)
            .get(&key)
            .is_some_and(|v| v.0 == rv && v.1 == *hash)
        {
            Seen::InSync
        } else {
            let diffs = render::manifest(w, kind)
                .map(|m| diff::differences(&m.body, obj))
                .unwrap_or_default();
            if diffs.is_empty() {
                lock(&self.verified).insert(key.clone(), Box::new((rv.clone(), hash.clone())));
                Seen::InSync
            } else {
                let mut managers: Vec<String> = Vec::new();
                for d in &diffs {
                    for m in diff::managers_of(obj, &d.path) {
                        if !managers.contains(&m) {
                            managers.push(m);
                        }
                    }
                }
                Seen::Drifted(diffs, managers)
            }
        };
        let rollout = (kind == ObjectKind::Deployment)
            .then(|| (*i, status::rollout(w, &DeploymentState::of_object(obj))));
        Some(Observed::Wanted(key, state, rollout, version))
    }

    async fn apply(
        &self,
        client: &Client,
        m: &render::Manifest,
        force: bool,
    ) -> std::result::Result<Applied, Failure> {
        let ns = (!m.namespace.is_empty()).then_some(m.namespace.as_str());
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = force;
        let req = Request::new(collection_path(m.kind, ns))
            .patch(&m.name, &pp, &Patch::Apply(&m.body))
            .map_err(|e| Failure::Kube(kube::Error::BuildRequest(e)))?;
        self.call(|| client.request::<Applied>(clone_request(&req))).await
    }

    fn start_watches(&self, client: &Client) {
        let mut watches = lock(&self.watches);
        if !self.options.watch || !watches.is_empty() {
            return;
        }
        for kind in ObjectKind::ALL.into_iter().filter(|k| k.per_application()) {
            let (g, v, k, plural) = kind.gvk();
            let ar = kube::core::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk(g, v, k),
                plural,
            );
            let api: kube::Api<kube::core::DynamicObject> = kube::Api::all_with(client.clone(), &ar);
            let changed = self.changed.clone();
            let (cache, verified) = (self.cache.clone(), self.verified.clone());
            watches.push(tokio::spawn(async move {
                use kube::runtime::watcher::Event;
                let config = kube::runtime::watcher::Config::default().labels(MANAGED_SELECTOR);
                let mut events = Box::pin(kube::runtime::watcher(api, config));
                while let Some(e) = events.next().await {
                    let news = match e {
                        Ok(Event::Apply(obj) | Event::InitApply(obj)) => seen(kind, &obj, &cache, &verified),
                        Ok(Event::Delete(obj)) => gone(kind, &obj, &cache),
                        Ok(Event::Init) => {
                            lock(&cache).relisting.insert(kind, HashSet::new());
                            false
                        }
                        Ok(Event::InitDone) => relisted(kind, &cache),
                        // The watcher relists by itself; until it has, what it said of this
                        // kind may be stale (per-key work lists it instead) and the cluster
                        // may be gone (the reconciler asks). Wait a little not to spin.
                        Err(_) => {
                            {
                                let mut c = lock(&cache);
                                c.broken = true;
                                c.synced.remove(&kind);
                            }
                            changed.notify_one();
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            false
                        }
                    };
                    if news {
                        changed.notify_one();
                    }
                }
            }));
        }
    }

    /// One pass; see the module documentation.
    #[allow(clippy::too_many_lines)]
    async fn pass(self: &Arc<Self>, desired: &[Workload]) -> Result<ClusterReport> {
        let client = self.client().await?;
        self.start_watches(&client);
        let budget_end = self.options.pass_budget.map(|b| Instant::now() + b);

        {
            // Keys no longer wanted here need no memory of what they rendered to.
            let keys: HashSet<&WorkloadKey> = desired.iter().map(|w| &w.key).collect();
            lock(&self.rendered).retain(|k, _| keys.contains(k));
        }
        // What Berth wants: object → (workload, hash).
        let mut wanted: BTreeMap<ObjKey, (usize, Text)> = BTreeMap::new();
        let mut namespaces: BTreeMap<String, usize> = BTreeMap::new();
        for (i, w) in desired.iter().enumerate() {
            namespaces.entry(render::namespace(w)).or_insert(i);
            for (id, hash) in self.rendered(w).iter() {
                wanted.entry(id.clone()).or_insert((i, hash.clone()));
            }
        }

        // What is there, kind by kind, page by page.
        let kinds: Vec<ObjectKind> = ObjectKind::ALL
            .into_iter()
            .filter(|k| *k != ObjectKind::Namespace)
            .collect();
        let wanted_ref = &wanted;
        let observations = stream::iter(kinds.into_iter().map(|kind| {
            let client = client.clone();
            async move { self.observe(&client, kind, desired, wanted_ref).await }
        }))
        .buffer_unordered(3)
        .collect::<Vec<_>>()
        .await;
        let existing_ns: HashSet<String> = self
            .list_all(
                &client,
                &collection_path(ObjectKind::Namespace, None),
                MANAGED_SELECTOR,
            )
            .await?
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
            .collect();

        let mut seen: HashMap<ObjKey, Seen> = HashMap::new();
        let mut observed_rv: HashMap<ObjKey, String> = HashMap::new();
        let mut rollouts: HashMap<usize, Rollout> = HashMap::new();
        let mut prune: Vec<(ObjKey, WorkloadKey)> = Vec::new();
        for list in observations {
            for o in list? {
                match o {
                    Observed::Wanted(key, state, rollout, rv) => {
                        if let Some((i, r)) = rollout {
                            rollouts.insert(i, r);
                        }
                        observed_rv.insert(key.clone(), rv);
                        seen.insert(key, state);
                    }
                    Observed::Unwanted(key, wk) => prune.push((key, wk)),
                }
            }
        }

        let mut problems: HashMap<usize, Vec<String>> = HashMap::new();
        let mut notices: Vec<Notice> = Vec::new();
        let notice = |w: &Workload, warning: bool, reason: &str, message: String| Notice {
            key: w.key.clone(),
            warning,
            reason: reason.to_owned(),
            message,
        };

        // Namespaces first: everything else lives in them.
        let missing_ns: Vec<(String, usize)> = namespaces
            .iter()
            .filter(|(n, _)| !existing_ns.contains(*n))
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        lock(&self.namespaces).extend(existing_ns.iter().cloned());
        let ns_results = stream::iter(missing_ns.into_iter().map(|(_, i)| {
            let client = client.clone();
            let m = render::namespace_manifest(&desired[i]);
            async move { (i, m.name.clone(), self.apply(&client, &m, false).await) }
        }))
        .buffer_unordered(self.options.concurrency)
        .collect::<Vec<_>>()
        .await;
        for (i, name, r) in ns_results {
            if r.is_ok() {
                lock(&self.namespaces).insert(name);
            }
            if let Err(f) = r {
                let e = self.error(f);
                if e.is_cluster_wide() {
                    return Err(e);
                }
                problems.entry(i).or_default().push(e.to_string());
            }
        }

        // Then every object that is missing, outdated or drifted.
        let mut todo: Vec<(ObjKey, usize, Option<Seen>)> = Vec::new();
        for (key, (i, _)) in &wanted {
            match seen.remove(key) {
                Some(Seen::InSync) => {}
                Some(Seen::Conflicted(message)) => problems.entry(*i).or_default().push(message),
                other => todo.push((key.clone(), *i, other)),
            }
        }
        todo.sort_by_key(|(k, _, _)| k.kind);
        let results = stream::iter(todo.into_iter().map(|(key, i, state)| {
            // Each apply is its own task with its own copy of the workload, so that the
            // rendering and parsing run on every thread the runtime has.
            let (client, inner, w) = (client.clone(), self.clone(), desired[i].clone());
            let task = async move {
                if budget_end.is_some_and(|end| Instant::now() > end) {
                    return (key, i, state, None);
                }
                let w = &w;
                let Some(m) = render::manifest(w, key.kind) else {
                    return (key, i, state, None);
                };
                // Keep only what the report needs of the answer, not the whole object:
                // thousands of applied objects must not stay in memory at once.
                let r = inner.apply(&client, &m, w.force_conflicts).await.map(|a| {
                    let rollout = (key.kind == ObjectKind::Deployment).then(|| {
                        status::rollout(
                            w,
                            &DeploymentState::of(a.metadata.generation.unwrap_or(0), a.status.as_ref()),
                        )
                    });
                    (a.metadata.resource_version, rollout, m.hash)
                });
                (key, i, state, Some(r))
            };
            async move { tokio::spawn(task).await.ok() }
        }))
        .buffer_unordered(self.options.concurrency)
        .filter_map(std::future::ready)
        .collect::<Vec<_>>()
        .await;
        let mut waiting: HashMap<usize, u32> = HashMap::new();
        for (key, i, state, result) in results {
            let w = &desired[i];
            let Some(result) = result else {
                *waiting.entry(i).or_default() += 1;
                continue;
            };
            match result {
                Ok((rv, rollout, hash)) => {
                    lock(&self.conflicted).remove(&key);
                    let before = lock(&self.verified)
                        .insert(key.clone(), Box::new((rv.as_str().into(), hash.as_str().into())));
                    if let Some(r) = rollout {
                        rollouts.insert(i, r);
                    }
                    match state {
                        Some(Seen::Drifted(diffs, managers)) => {
                            let list: Vec<String> = diffs.iter().take(5).map(ToString::to_string).collect();
                            let by = if managers.is_empty() {
                                String::new()
                            } else {
                                format!(" by {}", managers.join(", "))
                            };
                            notices.push(notice(
                                w,
                                true,
                                "DriftCorrected",
                                format!(
                                    "{key} was changed outside Berth{by} ({}); re-applied",
                                    list.join("; ")
                                ),
                            ));
                        }
                        None if before.is_some_and(|v| v.1 == *hash) => {
                            notices.push(notice(
                                w,
                                true,
                                "DriftCorrected",
                                format!("{key} was deleted outside Berth; re-created"),
                            ));
                        }
                        _ => {}
                    }
                }
                Err(f) => {
                    let conflict = match &f {
                        Failure::Kube(kube::Error::Api(s)) if s.code == 409 => Some(s.message.clone()),
                        _ => None,
                    };
                    if let Some(message) = conflict {
                        let what = match &state {
                            Some(Seen::Drifted(diffs, _)) => format!(
                                " after it was changed outside Berth ({})",
                                diffs
                                    .iter()
                                    .take(3)
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            ),
                            _ => String::new(),
                        };
                        let text = format!(
                            "{key}: another field manager owns fields Berth sets{what}: {message}; \
                             Berth leaves them alone unless the environment sets rollout.forceConflicts: true"
                        );
                        notices.push(notice(w, true, "ApplyConflict", text.clone()));
                        let rv = observed_rv.get(&key).cloned().unwrap_or_default();
                        let hash = wanted.get(&key).map(|(_, h)| h.to_string()).unwrap_or_default();
                        lock(&self.conflicted).insert(key.clone(), (rv, hash, text.clone()));
                        problems.entry(i).or_default().push(text);
                        continue;
                    }
                    let e = self.error(f);
                    if e.is_cluster_wide() {
                        return Err(e);
                    }
                    problems.entry(i).or_default().push(format!("{key}: {e}"));
                }
            }
        }

        // Objects Berth no longer wants.
        let pruned = stream::iter(prune.into_iter().map(|(key, wk)| {
            let client = client.clone();
            async move {
                let req = Request::new(collection_path(key.kind, Some(key.namespace.as_str())))
                    .delete(&key.name, &DeleteParams::background())
                    .map_err(|e| Failure::Kube(kube::Error::BuildRequest(e)));
                let r = match req {
                    Ok(req) => self.call(|| client.request::<Value>(clone_request(&req))).await,
                    Err(f) => Err(f),
                };
                (key, wk, r)
            }
        }))
        .buffer_unordered(self.options.concurrency)
        .collect::<Vec<_>>()
        .await;
        for (key, wk, r) in pruned {
            lock(&self.verified).remove(&key);
            notices.extend(self.pruned(&key, wk, r.map(drop))?);
        }

        lock(&self.rolling_since).retain(|k, _| desired.iter().any(|w| w.key == *k));
        self.explain_slow_rollouts(&client, desired, &mut rollouts, &problems, budget_end)
            .await;

        let workloads = desired
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let r = rollouts.remove(&i).unwrap_or_default();
                let message = with_waiting(
                    problems.remove(&i).map(|p| p.join("; ")).or(r.message),
                    waiting.get(&i).copied(),
                );
                WorkloadReport {
                    key: w.key.clone(),
                    counts: r.counts,
                    message,
                    stalled: r.stalled,
                }
            })
            .collect();
        tracing::debug!(
            cluster = %self.name,
            workloads = desired.len(),
            notices = notices.len(),
            "kubernetes pass done"
        );
        Ok(ClusterReport { workloads, notices })
    }
}

/// The object key and what the watch keeps of `obj`; `None` for an object without
/// Berth's labels.
fn watched_of(kind: ObjectKind, obj: &kube::core::DynamicObject) -> Option<(ObjKey, Watched)> {
    let meta = &obj.metadata;
    let labels = meta.labels.as_ref()?;
    if labels.get(MANAGED_BY).map(String::as_str) != Some("berth") {
        return None;
    }
    let key = WorkloadKey {
        application: labels.get(APPLICATION)?.clone(),
        environment: labels.get(ENVIRONMENT).cloned().unwrap_or_default(),
    };
    let rollout = (kind == ObjectKind::Deployment).then(|| {
        let generation = meta.generation.and_then(|g| u64::try_from(g).ok()).unwrap_or(0);
        Box::new(DeploymentState::of(generation, obj.data.get("status")))
    });
    Some((
        ObjKey {
            kind,
            namespace: meta.namespace.as_deref().unwrap_or_default().into(),
            name: meta.name.as_deref().unwrap_or_default().into(),
        },
        Watched {
            resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
            generation: meta.generation,
            hash: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(APPLIED_HASH))
                .map(|h| h.as_str().into()),
            key,
            rollout,
        },
    ))
}

/// Records a watched object; whether the reconciler should look at its key.
fn seen(
    kind: ObjectKind,
    obj: &kube::core::DynamicObject,
    cache: &Mutex<WatchCache>,
    verified: &Mutex<HashMap<ObjKey, Verified>>,
) -> bool {
    let Some((id, now)) = watched_of(kind, obj) else {
        return false;
    };
    let mut cache = lock(cache);
    if let Some(seen) = cache.relisting.get_mut(&kind) {
        seen.insert(id.clone());
    }
    let previous = cache.objects.get(&id).map(Box::as_ref);
    if previous.is_some_and(|p| p.resource_version == now.resource_version) {
        return false;
    }
    let echo = keyed::judge_event(kind, previous, &now, lock(verified).get_mut(&id).map(Box::as_mut));
    let key = now.key.clone();
    cache.objects.insert(id, Box::new(now));
    if echo == Echo::Key {
        cache.changed.insert(key);
        true
    } else {
        false
    }
}

/// Forgets a deleted object; its key should be looked at.
fn gone(kind: ObjectKind, obj: &kube::core::DynamicObject, cache: &Mutex<WatchCache>) -> bool {
    let Some((id, w)) = watched_of(kind, obj) else {
        return false;
    };
    let mut cache = lock(cache);
    cache.objects.remove(&id);
    cache.changed.insert(w.key);
    true
}

/// A relist of `kind` ended: what it did not show is gone.
fn relisted(kind: ObjectKind, cache: &Mutex<WatchCache>) -> bool {
    let mut cache = lock(cache);
    let listed = cache.relisting.remove(&kind).unwrap_or_default();
    let gone: Vec<ObjKey> = cache
        .objects
        .keys()
        .filter(|k| k.kind == kind && !listed.contains(*k))
        .cloned()
        .collect();
    for id in &gone {
        if let Some(w) = cache.objects.remove(id) {
            cache.changed.insert(w.key);
        }
    }
    cache.synced.insert(kind);
    !gone.is_empty()
}

impl Inner {
    /// Whether every per-application kind's watch has listed once.
    fn watches_synced(&self) -> bool {
        let cache = lock(&self.cache);
        self.options.watch
            && ObjectKind::ALL
                .into_iter()
                .filter(|k| k.per_application())
                .all(|k| cache.synced.contains(&k))
    }

    /// The objects of `key` on the cluster: from the watches when they are synced, else
    /// listed by Berth's labels.
    async fn objects_of(&self, client: &Client, key: &WorkloadKey) -> Result<Vec<ObjKey>> {
        if self.watches_synced() {
            return Ok(lock(&self.cache)
                .objects
                .iter()
                .filter(|(_, w)| w.key == *key)
                .map(|(k, _)| k.clone())
                .collect());
        }
        let selector = format!(
            "{MANAGED_SELECTOR},{APPLICATION}={},{ENVIRONMENT}={}",
            key.application, key.environment
        );
        let mut out = Vec::new();
        for kind in ObjectKind::ALL.into_iter().filter(|k| k.per_application()) {
            for obj in self
                .list_all(client, &collection_path(kind, None), &selector)
                .await?
            {
                out.push(ObjKey {
                    kind,
                    namespace: obj["metadata"]["namespace"].as_str().unwrap_or_default().into(),
                    name: obj["metadata"]["name"].as_str().unwrap_or_default().into(),
                });
            }
        }
        Ok(out)
    }

    /// The objects `w` renders to (but its Namespace) and their hashes, rendered again
    /// only when the workload changed since.
    fn rendered(&self, w: &Workload) -> Arc<[(ObjKey, Text)]> {
        let print = fingerprint(w);
        if let Some(r) = lock(&self.rendered).get(&w.key)
            && r.fingerprint == print
        {
            return Arc::clone(&r.objects);
        }
        let objects: Arc<[(ObjKey, Text)]> = render::manifests(w)
            .into_iter()
            .filter(|m| m.kind != ObjectKind::Namespace)
            .map(|m| {
                (
                    ObjKey {
                        kind: m.kind,
                        namespace: m.namespace.into(),
                        name: m.name.into(),
                    },
                    m.hash.into(),
                )
            })
            .collect();
        lock(&self.rendered).insert(
            w.key.clone(),
            Rendered {
                fingerprint: print,
                objects: Arc::clone(&objects),
            },
        );
        objects
    }

    /// Per-key work: the objects of `desired` applied where the watches do not show them
    /// as Berth left them, the objects of the other `keys` deleted; reports `desired`.
    #[allow(clippy::too_many_lines)]
    async fn apply_keys(
        self: &Arc<Self>,
        keys: &[WorkloadKey],
        desired: &[Workload],
    ) -> Result<ClusterReport> {
        let client = self.client().await?;
        self.start_watches(&client);
        let budget_end = self.options.pass_budget.map(|b| Instant::now() + b);
        let synced = self.watches_synced();
        let mut notices: Vec<Notice> = Vec::new();
        let mut problems: HashMap<usize, Vec<String>> = HashMap::new();
        let mut rollouts: HashMap<usize, Rollout> = HashMap::new();

        // Keys no longer wanted here: remove what Berth runs for them.
        let wanted_keys: HashSet<&WorkloadKey> = desired.iter().map(|w| &w.key).collect();
        for key in keys.iter().filter(|k| !wanted_keys.contains(k)) {
            lock(&self.rendered).remove(key);
            for obj in self.objects_of(&client, key).await? {
                let req = Request::new(collection_path(obj.kind, Some(obj.namespace.as_str())))
                    .delete(&obj.name, &DeleteParams::background())
                    .map_err(|e| Error::Api {
                        cluster: self.name.clone(),
                        message: e.to_string(),
                    })?;
                lock(&self.verified).remove(&obj);
                let removed = self.call(|| client.request::<Value>(clone_request(&req))).await;
                notices.extend(self.pruned(&obj, key.clone(), removed.map(drop))?);
            }
        }

        // Plan: per wanted object, skip or apply.
        let mut todo: Vec<(usize, render::Manifest, Plan, Option<Text>)> = Vec::new();
        for (i, w) in desired.iter().enumerate() {
            let ns = render::namespace(w);
            if !lock(&self.namespaces).contains(&ns) {
                todo.push((
                    i,
                    render::namespace_manifest(w),
                    Plan::Apply {
                        recreated: false,
                        changed: false,
                    },
                    None,
                ));
            }
            for (id, hash) in self.rendered(w).iter() {
                let (plan, watched_rv, rollout) = {
                    let cache = lock(&self.cache);
                    let watched = cache.objects.get(id).map(Box::as_ref);
                    let plan = keyed::plan_object(
                        hash,
                        w.force_conflicts,
                        synced,
                        watched,
                        lock(&self.verified).get(id).map(Box::as_ref),
                        lock(&self.conflicted).get(id),
                    );
                    (
                        plan,
                        watched.map(|w| w.resource_version.clone()),
                        watched.and_then(|w| w.rollout.clone()),
                    )
                };
                match plan {
                    Plan::Skip => {
                        if let Some(doc) = rollout {
                            rollouts.insert(i, status::rollout(w, &doc));
                        }
                    }
                    Plan::Standing(message) => problems.entry(i).or_default().push(message),
                    plan @ Plan::Apply { .. } => {
                        // The whole object, to apply it.
                        if let Some(m) = render::manifest(w, id.kind) {
                            todo.push((i, m, plan, watched_rv));
                        }
                    }
                }
            }
        }
        // Namespaces first: everything else lives in them.
        todo.sort_by_key(|(_, m, _, _)| m.kind);

        let results = stream::iter(todo.into_iter().map(|(i, m, plan, watched_rv)| {
            let (client, inner, force) = (client.clone(), self.clone(), desired[i].force_conflicts);
            async move {
                if budget_end.is_some_and(|end| Instant::now() > end) {
                    return (i, m, plan, watched_rv, Done::Postponed, None);
                }
                // Changed since Berth left it: compare first, as a full pass does, so that
                // a status write is not taken for drift and drift is reported in full.
                let mut drift = None;
                if matches!(plan, Plan::Apply { changed: true, .. })
                    && let Ok(req) = Request::new(collection_path(m.kind, Some(&m.namespace)))
                        .get(&m.name, &kube::api::GetParams::default())
                    && let Ok(obj) = inner.call(|| client.request::<Value>(clone_request(&req))).await
                {
                    let diffs = diff::differences(&m.body, &obj);
                    if diffs.is_empty() {
                        return (i, m, plan, watched_rv, Done::Verified(obj), None);
                    }
                    let mut managers: Vec<String> = Vec::new();
                    for d in &diffs {
                        for who in diff::managers_of(&obj, &d.path) {
                            if !managers.contains(&who) {
                                managers.push(who);
                            }
                        }
                    }
                    drift = Some((diffs, managers));
                }
                let done = match inner.apply(&client, &m, force).await {
                    Ok(a) => Done::Applied(a),
                    Err(f) => Done::Failed(f),
                };
                (i, m, plan, watched_rv, done, drift)
            }
        }))
        .buffered(self.options.concurrency)
        .collect::<Vec<_>>()
        .await;
        let mut waiting: HashMap<usize, u32> = HashMap::new();
        for (i, m, plan, watched_rv, result, drift) in results {
            let w = &desired[i];
            let id = ObjKey {
                kind: m.kind,
                namespace: m.namespace.as_str().into(),
                name: m.name.as_str().into(),
            };
            match result {
                Done::Verified(obj) => {
                    let rv: Text = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .into();
                    if m.kind == ObjectKind::Deployment {
                        rollouts.insert(i, status::rollout(w, &DeploymentState::of_object(&obj)));
                    }
                    lock(&self.verified).insert(id, Box::new((rv, m.hash.as_str().into())));
                }
                Done::Applied(applied) => {
                    if m.kind == ObjectKind::Namespace {
                        lock(&self.namespaces).insert(m.name.clone());
                        continue;
                    }
                    lock(&self.conflicted).remove(&id);
                    let rv = applied.metadata.resource_version.clone();
                    if m.kind == ObjectKind::Deployment {
                        let d = DeploymentState::of(
                            applied.metadata.generation.unwrap_or(0),
                            applied.status.as_ref(),
                        );
                        rollouts.insert(i, status::rollout(w, &d));
                    }
                    lock(&self.verified)
                        .insert(id.clone(), Box::new((rv.as_str().into(), m.hash.as_str().into())));
                    match plan {
                        Plan::Apply { recreated: true, .. } => notices.push(Notice {
                            key: w.key.clone(),
                            warning: true,
                            reason: "DriftCorrected".to_owned(),
                            message: format!("{id} was deleted outside Berth; re-created"),
                        }),
                        // Berth's apply moved the object back: someone had changed it.
                        Plan::Apply { changed: true, .. }
                            if watched_rv.as_ref().is_some_and(|w| *w != rv) =>
                        {
                            let message = match &drift {
                                Some((diffs, managers)) => {
                                    let list: Vec<String> =
                                        diffs.iter().take(5).map(ToString::to_string).collect();
                                    let by = if managers.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" by {}", managers.join(", "))
                                    };
                                    format!(
                                        "{id} was changed outside Berth{by} ({}); re-applied",
                                        list.join("; ")
                                    )
                                }
                                None => format!("{id} was changed outside Berth; re-applied"),
                            };
                            notices.push(Notice {
                                key: w.key.clone(),
                                warning: true,
                                reason: "DriftCorrected".to_owned(),
                                message,
                            });
                        }
                        _ => {}
                    }
                }
                Done::Failed(Failure::Kube(kube::Error::Api(s))) if s.code == 409 => {
                    let text = format!(
                        "{id}: another field manager owns fields Berth sets: {}; \
                         Berth leaves them alone unless the environment sets rollout.forceConflicts: true",
                        s.message
                    );
                    notices.push(Notice {
                        key: w.key.clone(),
                        warning: true,
                        reason: "ApplyConflict".to_owned(),
                        message: text.clone(),
                    });
                    let version = lock(&self.cache).objects.get(&id).map_or_else(String::new, |o| {
                        o.generation
                            .map_or_else(|| o.resource_version.to_string(), |g| format!("generation {g}"))
                    });
                    lock(&self.conflicted).insert(id.clone(), (version, m.hash.clone(), text.clone()));
                    problems.entry(i).or_default().push(text);
                }
                Done::Failed(f) => {
                    let e = self.error(f);
                    if e.is_cluster_wide() {
                        return Err(e);
                    }
                    problems.entry(i).or_default().push(format!("{id}: {e}"));
                }
                Done::Postponed => *waiting.entry(i).or_default() += 1,
            }
        }

        {
            let mut since = lock(&self.rolling_since);
            for k in keys.iter().filter(|k| !wanted_keys.contains(k)) {
                since.remove(k);
            }
        }
        self.explain_slow_rollouts(&client, desired, &mut rollouts, &problems, budget_end)
            .await;
        let workloads = desired
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let r = rollouts.remove(&i).unwrap_or_default();
                WorkloadReport {
                    key: w.key.clone(),
                    counts: r.counts,
                    message: with_waiting(
                        problems.remove(&i).map(|p| p.join("; ")).or(r.message),
                        waiting.get(&i).copied(),
                    ),
                    stalled: r.stalled,
                }
            })
            .collect();
        Ok(ClusterReport { workloads, notices })
    }

    /// Explains rollouts that do not progress from their pods: stalled ones, and ones in
    /// progress for [`EXPLAIN_AFTER`] or more, up to `pod_lookups` of them and within the
    /// call's time.
    async fn explain_slow_rollouts(
        &self,
        client: &Client,
        desired: &[Workload],
        rollouts: &mut HashMap<usize, Rollout>,
        problems: &HashMap<usize, Vec<String>>,
        budget_end: Option<Instant>,
    ) {
        let mut lookups = 0;
        for (i, w) in desired.iter().enumerate() {
            let Some(r) = rollouts.get_mut(&i) else { continue };
            let now = Instant::now();
            let rolling = (r.stalled || r.in_progress) && r.counts.ready < w.replicas;
            let since = {
                let mut since = lock(&self.rolling_since);
                if !rolling {
                    since.remove(&w.key);
                    continue;
                }
                *since.entry(w.key.clone()).or_insert(now)
            };
            if lookups >= self.options.pod_lookups
                || problems.contains_key(&i)
                || !r.stalled && now.duration_since(since) < EXPLAIN_AFTER
                || budget_end.is_some_and(|end| now > end)
            {
                continue;
            }
            lookups += 1;
            let selector = format!("app.kubernetes.io/instance={}", render::instance(w));
            let path = format!("/api/v1/namespaces/{}/pods", render::namespace(w));
            let Ok(pods) = self.list_all(client, &path, &selector).await else {
                continue;
            };
            // A release whose pods crash-loop fails now, not at its progress deadline.
            if let Some(looping) = crate::pods::crash_loop(&pods, w.release, r.counts.ready) {
                let answers = self.probe_answers(client, looping).await;
                let why = crate::pods::crash_loop_message(
                    looping,
                    w.release,
                    crate::pods::killing_answer(looping, &answers),
                );
                let lines = self.previous_lines(client, looping).await;
                let quoted = berth_core::instance::ExitReason::unhealthy(None)
                    .with_lines(&lines)
                    .quoted_lines();
                r.stalled = true;
                r.in_progress = false;
                r.message = Some(format!("{why}{quoted}"));
                continue;
            }
            // Pods that run but are not ready: what their readiness probe last answered.
            let mut readiness = HashMap::new();
            for p in pods
                .iter()
                .filter(|p| crate::pods::release(p) == w.release && crate::pods::runs_unready(p))
                .take(operate::READINESS_LOOKUPS)
            {
                if let Some(answer) = self.probe_answers(client, p).await.readiness {
                    readiness.insert(crate::pods::name(p).to_owned(), answer);
                }
            }
            if let Some(why) = status::pod_problems(&pods, &readiness) {
                r.message = Some(match &r.message {
                    Some(m) => format!("{m}; {why}"),
                    None => why,
                });
            }
        }
    }
}

/// A workload's message, with how many of its objects a call ran out of time for.
fn with_waiting(message: Option<String>, waiting: Option<u32>) -> Option<String> {
    let Some(n) = waiting else { return message };
    let wait = format!("{n} object(s) wait for the next pass (this one ran out of time)");
    Some(message.map_or(wait.clone(), |m| format!("{m}; {wait}")))
}

/// `kube::core::Request` builds `http::Request<Vec<u8>>`, which is not `Clone`.
fn clone_request(req: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut out = http::Request::new(req.body().clone());
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.headers_mut() = req.headers().clone();
    out
}

#[async_trait]
impl ClusterRuntime for KubeRuntime {
    async fn version(&self) -> Result<String, RuntimeError> {
        let this = &self.inner;
        let client = this.client().await?;
        let v = this
            .call(|| client.apiserver_version())
            .await
            .map_err(|f| this.error(f))?;
        let ready = this
            .call(|| {
                let req = http::Request::get("/readyz").body(Vec::new());
                let client = client.clone();
                async move {
                    let req = req.map_err(kube::Error::HttpError)?;
                    client.request_text(req).await
                }
            })
            .await
            .map_err(|f| match this.error(f) {
                Error::Overloaded { message, .. } | Error::Api { message, .. } => Error::NotReady {
                    cluster: this.name.clone(),
                    message,
                },
                e => e,
            })?;
        Ok(format!("Kubernetes {} ({})", v.git_version, ready.trim()))
    }

    async fn reconcile(&self, desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        Ok(self.inner.pass(desired).await?)
    }

    async fn apply(&self, keys: &[WorkloadKey], desired: &[Workload]) -> Result<ClusterReport, RuntimeError> {
        Ok(self.inner.apply_keys(keys, desired).await?)
    }

    /// The keys whose objects the watches saw change (not Berth's own applies).
    fn changes(&self) -> RuntimeChanges {
        let mut cache = lock(&self.inner.cache);
        let keys: Vec<WorkloadKey> = cache.changed.drain().collect();
        if std::mem::take(&mut cache.broken) {
            return RuntimeChanges::WatchFailed(keys);
        }
        if keys.is_empty() {
            RuntimeChanges::None
        } else {
            RuntimeChanges::Keys(keys)
        }
    }

    /// The pods of the key, in every namespace of the cluster.
    async fn instances(&self, key: &WorkloadKey) -> Result<Vec<Instance>, RuntimeError> {
        Ok(self.inner.instances(key).await?)
    }

    /// Pod logs through the API server (which asks the pod's kubelet).
    async fn logs(&self, key: &WorkloadKey, query: &LogQuery) -> Result<LogFeed, RuntimeError> {
        self.inner.logs(key, query).await
    }

    /// The run before the current one of every pod that restarted: Kubernetes keeps the
    /// log of one previous run per container, for as long as the pod exists.
    async fn terminated(&self, key: &WorkloadKey) -> Result<Vec<Terminated>, RuntimeError> {
        Ok(self.inner.terminated(key).await?)
    }

    /// With watches, a full pass only catches what a watch missed: every half hour.
    fn full_resync_period(&self) -> Duration {
        if self.inner.options.watch {
            Duration::from_secs(1800)
        } else {
            Duration::from_secs(60)
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_core::objects::SecretValue;

    use super::*;

    /// The memory of what a workload rendered to is reused only for the same workload:
    /// anything that shapes an object, secret values included (they are not serialized),
    /// gives another fingerprint.
    #[test]
    fn a_workload_changed_anywhere_has_another_fingerprint() {
        let w = Workload {
            image: "registry/app@sha256:1".to_owned(),
            replicas: 2,
            ..Workload::default()
        };
        assert_eq!(fingerprint(&w), fingerprint(&w.clone()));
        let mut other = w.clone();
        other.replicas = 3;
        assert_ne!(fingerprint(&w), fingerprint(&other));
        let mut secret = w.clone();
        secret
            .secret_env
            .insert("TOKEN".to_owned(), SecretValue::new("one".to_owned()));
        let mut rotated = secret.clone();
        rotated
            .secret_env
            .insert("TOKEN".to_owned(), SecretValue::new("two".to_owned()));
        assert_ne!(fingerprint(&w), fingerprint(&secret));
        assert_ne!(fingerprint(&secret), fingerprint(&rotated));
    }
}
