//! The object store: every object as compact JSON, a global resource version, field
//! ownership (`managedFields`) and a bounded history of watch events.
//!
//! One mutex guards a cluster's objects; each write takes it once, so writes are
//! serialised exactly as the API server serialises them per object.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::{
    fields::{self, FieldSet, Path},
    resources::{AUTOSCALERS, DEPLOYMENTS, NAMESPACES, RESOURCES, ResourceType},
};

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// An error the API server would answer with, as a `Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`…
    pub reason: String,
    /// The sentence.
    pub message: String,
    /// Field-level causes (for conflicts: the fields and their managers).
    pub causes: Vec<(String, String, String)>,
}

impl ApiError {
    /// An error without causes.
    #[must_use]
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            causes: Vec::new(),
        }
    }

    fn not_found(r: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", plural_group(r)),
        )
    }

    /// The `Status` document.
    #[must_use]
    pub fn status(&self) -> Value {
        let causes: Vec<Value> = self
            .causes
            .iter()
            .map(|(t, m, f)| json!({"reason": t, "message": m, "field": f}))
            .collect();
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason,
               "details": {"causes": causes}, "code": self.code})
    }
}

fn plural_group(r: &ResourceType) -> String {
    if r.group.is_empty() {
        r.plural.to_owned()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}

/// What happened to an object, for watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventType {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// Index into [`RESOURCES`].
    pub resource: usize,
    /// Resource version of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// Namespace.
    pub namespace: String,
    /// Labels of the object.
    pub labels: BTreeMap<String, String>,
    /// Name.
    pub name: String,
    /// The object after the change (before it, for deletions), as JSON.
    pub raw: Bytes,
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object as JSON.
    pub raw: Bytes,
    /// Its labels, for selectors without parsing.
    pub labels: BTreeMap<String, String>,
    /// Its resource version.
    pub rv: u64,
}

/// How a patch body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386.
    Merge,
    /// Strategic merge (approximated: list-maps merge by key, `null` deletes).
    Strategic,
    /// RFC 6902.
    Json,
    /// Server-side apply.
    Apply {
        /// Take over conflicting fields.
        force: bool,
    },
}

pub(crate) struct Inner {
    pub(crate) rv: u64,
    pub(crate) objects: Vec<BTreeMap<Key, Stored>>,
    pub(crate) history: VecDeque<Arc<WatchEvent>>,
    history_cap: usize,
    next_ip: u32,
}

/// The objects of one fake cluster.
pub struct Store {
    inner: Mutex<Inner>,
    /// One channel per resource, as the API server has one watch cache per resource: a
    /// watcher of a quiet kind does not fall behind because another kind is busy.
    events: Vec<broadcast::Sender<Arc<WatchEvent>>>,
    /// Moves when every watch should end as expired (a test's injected fault).
    expired: watch::Sender<u64>,
    rollouts: mpsc::UnboundedSender<Key>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: String,
    fields: FieldSet,
}

fn read_managed(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                    subresource: e["subresource"].as_str().map(str::to_owned),
                    time: e["time"].as_str().unwrap_or_default().to_owned(),
                    fields: fields::from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_managed(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": fields::to_fields_v1(&e.fields)});
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.insert("managedFields".to_owned(), Value::Array(list));
    }
}

fn entry_mut<'a>(
    entries: &'a mut Vec<Entry>,
    manager: &str,
    operation: &str,
    api_version: &str,
) -> &'a mut Entry {
    let at = entries
        .iter()
        .position(|e| e.manager == manager && e.operation == operation && e.subresource.is_none());
    let i = at.unwrap_or_else(|| {
        entries.push(Entry {
            manager: manager.to_owned(),
            operation: operation.to_owned(),
            api_version: api_version.to_owned(),
            subresource: None,
            time: String::new(),
            fields: FieldSet::new(),
        });
        entries.len() - 1
    });
    let e = &mut entries[i];
    e.time = now();
    e.api_version = api_version.to_owned();
    e
}

/// Drops paths that no longer exist in the object, and empty entries.
fn prune_entries(entries: &mut Vec<Entry>, object: &Value) {
    for e in entries.iter_mut() {
        e.fields.retain(|p| fields::get(object, p).is_some());
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// Ownership after an update (PUT or a non-apply patch) by `manager`: it owns what it
/// changed, and nobody owns what is gone.
fn update_ownership(entries: &mut Vec<Entry>, manager: &str, api_version: &str, old: &Value, new: &Value) {
    let new_fields = fields::field_set(new);
    let changed = fields::changed(old, new, &new_fields);
    if !changed.is_empty() {
        for e in entries.iter_mut().filter(|e| e.manager != manager) {
            e.fields.retain(|p| !changed.contains(p));
        }
        entry_mut(entries, manager, "Update", api_version)
            .fields
            .extend(changed);
    }
    prune_entries(entries, new);
}

/// Strips what clients may not set through the main resource.
fn strip_server_fields(object: &mut Value) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for k in [
            "managedFields",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ] {
            meta.remove(k);
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value, strategic: bool) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if k.starts_with("$") {
                        continue;
                    }
                    if v.is_null() {
                        t.remove(k);
                    } else if strategic && v.is_array() && t.get(k).is_some_and(Value::is_array) {
                        let mut wrapper = Value::Object(Map::from_iter([(k.clone(), t[k].clone())]));
                        fields::merge(
                            &mut wrapper,
                            &Value::Object(Map::from_iter([(k.clone(), v.clone())])),
                        );
                        t.insert(k.clone(), wrapper[k].take());
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v, strategic);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Defaults the API server fills in, for the kinds where Berth's comparisons meet them.
fn apply_defaults(r: &ResourceType, object: &mut Value, ip: u32) {
    match r.kind {
        "Deployment" => {
            let spec = &mut object["spec"];
            if spec.is_object() {
                for (k, v) in [
                    ("replicas", json!(1)),
                    ("progressDeadlineSeconds", json!(600)),
                    ("revisionHistoryLimit", json!(10)),
                ] {
                    if spec.get(k).is_none() {
                        spec[k] = v;
                    }
                }
                if let Some(cs) = spec["template"]["spec"]["containers"].as_array_mut() {
                    for c in cs {
                        if c.get("imagePullPolicy").is_none() {
                            c["imagePullPolicy"] = json!("IfNotPresent");
                        }
                        if c.get("terminationMessagePath").is_none() {
                            c["terminationMessagePath"] = json!("/dev/termination-log");
                        }
                    }
                }
            }
        }
        "Service" => {
            let spec = &mut object["spec"];
            if spec.is_object() {
                if spec.get("type").is_none() {
                    spec["type"] = json!("ClusterIP");
                }
                if spec.get("clusterIP").is_none() {
                    let ip = format!("10.96.{}.{}", (ip >> 8) & 0xff, ip & 0xff);
                    spec["clusterIP"] = json!(ip);
                    spec["clusterIPs"] = json!([ip]);
                }
                if let Some(ps) = spec["ports"].as_array_mut() {
                    for p in ps {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Whether two objects differ outside `metadata` and `status` (what bumps generation).
fn spec_differs(a: &Value, b: &Value) -> bool {
    let rest = |v: &'_ Value| -> Vec<(String, Value)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| *k != "metadata" && *k != "status")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let keys =
                |m: &Map<String, Value>| m.keys().filter(|k| *k != "metadata" && *k != "status").count();
            keys(x) != keys(y)
                || x.iter()
                    .filter(|(k, _)| *k != "metadata" && *k != "status")
                    .any(|(k, v)| y.get(k) != Some(v))
        }
        _ => rest(a) != rest(b),
    }
}

impl Store {
    /// An empty store; rollouts receive the keys of deployments whose spec changed.
    pub(crate) fn new(history_cap: usize, rollouts: mpsc::UnboundedSender<Key>) -> Self {
        let events = RESOURCES.iter().map(|_| broadcast::channel(4096).0).collect();
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: vec![BTreeMap::new(); RESOURCES.len()],
                history: VecDeque::new(),
                history_cap,
                next_ip: 10,
            }),
            events,
            expired: watch::Sender::new(0),
            rollouts,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver of every change of `resource` (an index into [`RESOURCES`]) from now on.
    pub(crate) fn subscribe(&self, resource: usize) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events[resource].subscribe()
    }

    /// A receiver that changes when every watch should end as expired.
    pub(crate) fn expiry(&self) -> watch::Receiver<u64> {
        self.expired.subscribe()
    }

    /// Ends every watch with `410 Expired` and forgets the history, so that watchers must
    /// list again, as after an API server restart or a compaction.
    pub fn expire_watches(&self) {
        self.lock().history.clear();
        self.expired.send_modify(|g| *g += 1);
    }

    /// The current resource version.
    #[must_use]
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, r: usize, key: &Key) -> Result<Bytes, ApiError> {
        self.lock().objects[r]
            .get(key)
            .map(|s| s.raw.clone())
            .ok_or_else(|| ApiError::not_found(&RESOURCES[r], &key.1))
    }

    /// One object, parsed.
    #[must_use]
    pub fn get_value(&self, r: usize, key: &Key) -> Option<Value> {
        let raw = self.lock().objects[r].get(key).map(|s| s.raw.clone())?;
        serde_json::from_slice(&raw).ok()
    }

    fn check_namespace(inner: &Inner, r: &ResourceType, namespace: &str) -> Result<(), ApiError> {
        if r.namespaced && !inner.objects[NAMESPACES].contains_key(&(String::new(), namespace.to_owned())) {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("namespaces \"{namespace}\" not found"),
            ));
        }
        Ok(())
    }

    /// Stores `object` under `key` at a new resource version and tells watchers.
    fn commit(
        &self,
        inner: &mut Inner,
        r: usize,
        key: &Key,
        old: Option<&Value>,
        mut object: Value,
    ) -> Bytes {
        inner.rv += 1;
        let rv = inner.rv;
        let rt = &RESOURCES[r];
        let generation_changed = match old {
            None => true,
            Some(o) => rt.generation && spec_differs(o, &object),
        };
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.insert("resourceVersion".to_owned(), json!(rv.to_string()));
            if rt.generation {
                let g = old
                    .and_then(|o| o["metadata"]["generation"].as_u64())
                    .unwrap_or(0);
                meta.insert(
                    "generation".to_owned(),
                    json!(if generation_changed { g + 1 } else { g.max(1) }),
                );
            }
        }
        if let Some(m) = object.as_object_mut() {
            m.insert("apiVersion".to_owned(), json!(rt.api_version()));
            m.insert("kind".to_owned(), json!(rt.kind));
        }
        let raw = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        let labels = labels_of(&object);
        inner.objects[r].insert(
            key.clone(),
            Stored {
                raw: raw.clone(),
                labels: labels.clone(),
                rv,
            },
        );
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(inner, r, key, kind, labels, raw.clone());
        if (r == DEPLOYMENTS && generation_changed) || r == AUTOSCALERS {
            let _ = self.rollouts.send(key.clone());
        }
        raw
    }

    fn record(
        &self,
        inner: &mut Inner,
        r: usize,
        key: &Key,
        kind: EventType,
        labels: BTreeMap<String, String>,
        raw: Bytes,
    ) {
        let event = Arc::new(WatchEvent {
            resource: r,
            rv: inner.rv,
            kind,
            namespace: key.0.clone(),
            name: key.1.clone(),
            labels,
            raw,
        });
        if inner.history.len() >= inner.history_cap {
            inner.history.pop_front();
        }
        inner.history.push_back(event.clone());
        let _ = self.events[r].send(event);
    }

    fn new_object(r: &ResourceType, key: &Key) -> Value {
        let mut meta = json!({"name": key.1, "uid": uid(), "creationTimestamp": now()});
        if r.namespaced {
            meta["namespace"] = json!(key.0);
        }
        json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": meta})
    }

    /// `POST`: creates an object.
    pub fn create(
        &self,
        r: usize,
        namespace: &str,
        mut body: Value,
        manager: &str,
    ) -> Result<Bytes, ApiError> {
        let rt = &RESOURCES[r];
        let name = body["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name: Required value: name is required"))?
            .to_owned();
        let key = (namespace.to_owned(), name);
        let mut inner = self.lock();
        Self::check_namespace(&inner, rt, namespace)?;
        if inner.objects[r].contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", plural_group(rt), key.1),
            ));
        }
        strip_server_fields(&mut body);
        if rt.status
            && let Some(m) = body.as_object_mut()
        {
            m.remove("status");
        }
        let mut object = Self::new_object(rt, &key);
        fields::merge(&mut object, &body);
        normalize(rt, &mut object);
        inner.next_ip += 1;
        apply_defaults(rt, &mut object, inner.next_ip);
        let mut entries = Vec::new();
        update_ownership(&mut entries, manager, &rt.api_version(), &Value::Null, &object);
        write_managed(&mut object, &entries);
        Ok(self.commit(&mut inner, r, &key, None, object))
    }

    /// `PUT`: replaces an object (or only its status).
    pub fn replace(
        &self,
        r: usize,
        key: &Key,
        mut body: Value,
        manager: &str,
        status_only: bool,
    ) -> Result<Bytes, ApiError> {
        let rt = &RESOURCES[r];
        let mut inner = self.lock();
        let old = current(&inner, r, key)?;
        if let Some(want) = body["metadata"]["resourceVersion"].as_str()
            && !want.is_empty()
            && want != old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    plural_group(rt),
                    key.1
                ),
            ));
        }
        let mut object = if status_only {
            let mut o = old.clone();
            o["status"] = body["status"].take();
            o
        } else {
            strip_server_fields(&mut body);
            let mut o = body;
            o["metadata"]["name"] = json!(key.1);
            for k in [
                "uid",
                "creationTimestamp",
                "generation",
                "managedFields",
                "resourceVersion",
            ] {
                if let Some(v) = old["metadata"].get(k) {
                    o["metadata"][k] = v.clone();
                }
            }
            if rt.namespaced {
                o["metadata"]["namespace"] = json!(key.0);
            }
            if rt.status {
                copy_field(&mut o, &old, "status");
            }
            o
        };
        normalize(rt, &mut object);
        apply_defaults(rt, &mut object, 0);
        self.finish_update(&mut inner, r, key, &old, object, manager, status_only)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &self,
        inner: &mut Inner,
        r: usize,
        key: &Key,
        old: &Value,
        mut object: Value,
        manager: &str,
        status_only: bool,
    ) -> Result<Bytes, ApiError> {
        if !status_only {
            let mut entries = read_managed(old);
            update_ownership(&mut entries, manager, &RESOURCES[r].api_version(), old, &object);
            write_managed(&mut object, &entries);
        }
        if object == *old {
            // No change: the API server answers with the object and no new version.
            return Ok(inner.objects[r]
                .get(key)
                .map(|s| s.raw.clone())
                .unwrap_or_default());
        }
        Ok(self.commit(inner, r, key, Some(old), object))
    }

    /// `PATCH`: merge, strategic, JSON patch or server-side apply.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        r: usize,
        key: &Key,
        kind: PatchType,
        body: &[u8],
        manager: Option<&str>,
        status_only: bool,
    ) -> Result<Bytes, ApiError> {
        let rt = &RESOURCES[r];
        let patch: Value = match kind {
            PatchType::Apply { .. } => parse_yaml_or_json(body)?,
            _ => serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON patch body: {e}")))?,
        };
        let mut inner = self.lock();
        if let PatchType::Apply { force } = kind {
            let manager = manager.ok_or_else(|| {
                ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                )
            })?;
            return self.apply(&mut inner, r, key, patch, manager, force, status_only);
        }
        let manager = manager.unwrap_or("unknown");
        let old = current(&inner, r, key)?;
        let mut object = old.clone();
        match kind {
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::new(400, "BadRequest", format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut object, &ops)
                    .map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}")))?;
            }
            PatchType::Strategic => merge_patch(&mut object, &patch, true),
            _ => merge_patch(&mut object, &patch, false),
        }
        if status_only {
            let status = object["status"].take();
            object = old.clone();
            object["status"] = status;
        } else {
            if rt.status {
                copy_field(&mut object, &old, "status");
            }
            for k in [
                "name",
                "uid",
                "creationTimestamp",
                "generation",
                "managedFields",
                "resourceVersion",
            ] {
                copy_field(&mut object["metadata"], &old["metadata"], k);
            }
        }
        normalize(rt, &mut object);
        apply_defaults(rt, &mut object, 0);
        self.finish_update(&mut inner, r, key, &old, object, manager, status_only)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        inner: &mut Inner,
        r: usize,
        key: &Key,
        mut config: Value,
        manager: &str,
        force: bool,
        status_only: bool,
    ) -> Result<Bytes, ApiError> {
        let rt = &RESOURCES[r];
        Self::check_namespace(inner, rt, &key.0)?;
        if config["kind"].as_str().is_some_and(|k| k != rt.kind) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!("the kind {} does not match {}", config["kind"], rt.kind),
            ));
        }
        if config["metadata"]["name"].as_str().is_some_and(|n| n != key.1) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        strip_server_fields(&mut config);
        if rt.status
            && !status_only
            && let Some(m) = config.as_object_mut()
        {
            m.remove("status");
        }
        normalize(rt, &mut config);
        let old = inner.objects[r]
            .get(key)
            .and_then(|s| serde_json::from_slice::<Value>(&s.raw).ok());
        let mut entries = old.as_ref().map(read_managed).unwrap_or_default();
        let config_fields = fields::field_set(&config);
        let mut conflicts: Vec<(String, String, Path)> = Vec::new();
        if let Some(old) = &old {
            for e in entries.iter().filter(|e| e.manager != manager) {
                for p in e.fields.intersection(&config_fields) {
                    if !fields::is_element(p) && fields::get(old, p) != fields::get(&config, p) {
                        conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
                    }
                }
            }
        }
        if !conflicts.is_empty() && !force {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {}", fields::display(p)))
                .collect();
            let message = if lines.len() == 1 {
                format!("Apply failed with 1 conflict: {}", lines[0])
            } else {
                format!(
                    "Apply failed with {} conflicts: {}",
                    lines.len(),
                    lines.join("\n")
                )
            };
            let mut err = ApiError::new(409, "Conflict", message);
            err.causes = conflicts
                .iter()
                .map(|(m, v, p)| {
                    (
                        "FieldManagerConflict".to_owned(),
                        format!("conflict with \"{m}\" using {v}"),
                        fields::display(p),
                    )
                })
                .collect();
            return Err(err);
        }
        let mut object = match &old {
            Some(o) => o.clone(),
            None => Self::new_object(rt, key),
        };
        let previous: FieldSet = entries
            .iter()
            .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource.is_none())
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut gone: Vec<&Path> = previous
            .difference(&config_fields)
            .filter(|p| {
                !entries
                    .iter()
                    .any(|e| e.manager != manager && e.fields.contains(*p))
            })
            .collect();
        gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
        // Only removals (and forced take-overs) can leave owned paths that no longer
        // exist; a plain create or merge cannot, and checking every path is costly.
        let needs_pruning = !gone.is_empty() || (force && !conflicts.is_empty());
        for p in gone {
            fields::remove(&mut object, p);
        }
        fields::merge(&mut object, &config);
        if old.is_none() {
            inner.next_ip += 1;
        }
        apply_defaults(rt, &mut object, inner.next_ip);
        if force {
            let taken: FieldSet = conflicts.into_iter().map(|(_, _, p)| p).collect();
            for e in entries.iter_mut().filter(|e| e.manager != manager) {
                e.fields.retain(|p| !taken.contains(p));
            }
        }
        entry_mut(&mut entries, manager, "Apply", &rt.api_version()).fields = config_fields;
        if needs_pruning {
            prune_entries(&mut entries, &object);
        }
        write_managed(&mut object, &entries);
        if let Some(o) = &old
            && *o == object
        {
            return Ok(inner.objects[r]
                .get(key)
                .map(|s| s.raw.clone())
                .unwrap_or_default());
        }
        Ok(self.commit(inner, r, key, old.as_ref(), object))
    }

    /// `DELETE`: removes an object (a namespace takes everything in it along).
    pub fn delete(&self, r: usize, key: &Key) -> Result<Bytes, ApiError> {
        let mut inner = self.lock();
        let stored = inner.objects[r]
            .remove(key)
            .ok_or_else(|| ApiError::not_found(&RESOURCES[r], &key.1))?;
        inner.rv += 1;
        self.record(
            &mut inner,
            r,
            key,
            EventType::Deleted,
            stored.labels,
            stored.raw.clone(),
        );
        if r == NAMESPACES {
            for (i, rt) in RESOURCES.iter().enumerate() {
                if !rt.namespaced {
                    continue;
                }
                let keys: Vec<Key> = inner.objects[i]
                    .range((key.1.clone(), String::new())..)
                    .take_while(|(k, _)| k.0 == key.1)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    if let Some(s) = inner.objects[i].remove(&k) {
                        inner.rv += 1;
                        self.record(&mut inner, i, &k, EventType::Deleted, s.labels, s.raw);
                    }
                }
            }
        }
        if r == DEPLOYMENTS {
            let _ = self.rollouts.send(key.clone());
        }
        Ok(stored.raw)
    }

    /// Replaces the status of an object as a controller would (no ownership change).
    /// Returns whether anything changed.
    pub fn write_status(&self, r: usize, key: &Key, status: Value) -> bool {
        let mut inner = self.lock();
        let Ok(old) = current(&inner, r, key) else {
            return false;
        };
        if old["status"] == status {
            return false;
        }
        let mut object = old.clone();
        object["status"] = status;
        self.commit(&mut inner, r, key, Some(&old), object);
        true
    }
}

/// Sets `dst[key]` to `src[key]`, or removes it when `src` has none.
fn copy_field(dst: &mut Value, src: &Value, key: &str) {
    if let Some(m) = dst.as_object_mut() {
        match src.get(key) {
            Some(v) => {
                m.insert(key.to_owned(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
}

fn current(inner: &Inner, r: usize, key: &Key) -> Result<Value, ApiError> {
    let stored = inner.objects[r]
        .get(key)
        .ok_or_else(|| ApiError::not_found(&RESOURCES[r], &key.1))?;
    serde_json::from_slice(&stored.raw)
        .map_err(|e| ApiError::new(500, "InternalError", format!("stored object is not JSON: {e}")))
}

/// Secrets: `stringData` is written into `data` (base64), as the API server does.
fn normalize(r: &ResourceType, object: &mut Value) {
    if r.kind == "Secret"
        && let Some(Value::Object(sd)) = object.as_object_mut().and_then(|m| m.remove("stringData"))
    {
        use base64::Engine;
        for (k, v) in sd {
            let text = v.as_str().unwrap_or_default();
            object["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

fn parse_yaml_or_json(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new(400, "BadRequest", "the apply body is not UTF-8"))?;
    serde_saphyr::from_str(text).map_err(|e| {
        ApiError::new(
            400,
            "BadRequest",
            format!("the apply body is neither JSON nor YAML: {e}"),
        )
    })
}

fn uid() -> String {
    use sha2::{Digest, Sha256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = hex::encode(Sha256::digest(format!("{n}-{}", now()).as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let (tx, _rx) = mpsc::unbounded_channel();
        let s = Store::new(100, tx);
        s.create(NAMESPACES, "", json!({"metadata": {"name": "qa"}}), "test")
            .unwrap();
        s
    }

    fn key() -> Key {
        ("qa".into(), "web".into())
    }

    fn deployment(replicas: u32, image: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}))
        .unwrap()
    }

    fn value(raw: &Bytes) -> Value {
        serde_json::from_slice(raw).unwrap()
    }

    #[test]
    fn apply_creates_then_conflicts_with_another_manager_unless_forced() {
        let s = store();
        let apply = PatchType::Apply { force: false };
        let v = value(
            &s.patch(
                DEPLOYMENTS,
                &key(),
                apply,
                &deployment(2, "a"),
                Some("berth"),
                false,
            )
            .unwrap(),
        );
        assert_eq!(v["metadata"]["generation"], 1);
        assert_eq!(v["metadata"]["managedFields"][0]["manager"], "berth");
        // Same manager again, same content: no new version.
        let again = value(
            &s.patch(
                DEPLOYMENTS,
                &key(),
                apply,
                &deployment(2, "a"),
                Some("berth"),
                false,
            )
            .unwrap(),
        );
        assert_eq!(
            again["metadata"]["resourceVersion"],
            v["metadata"]["resourceVersion"]
        );
        // Someone else scales with a merge patch: they own spec.replicas now.
        s.patch(
            DEPLOYMENTS,
            &key(),
            PatchType::Merge,
            br#"{"spec":{"replicas":5}}"#,
            Some("kubectl-edit"),
            false,
        )
        .unwrap();
        let err = s
            .patch(
                DEPLOYMENTS,
                &key(),
                apply,
                &deployment(2, "b"),
                Some("berth"),
                false,
            )
            .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"kubectl-edit\""),
            "{}",
            err.message
        );
        assert!(err.message.contains(".spec.replicas"), "{}", err.message);
        // Same value as the other manager: shared, no conflict.
        s.patch(
            DEPLOYMENTS,
            &key(),
            apply,
            &deployment(5, "b"),
            Some("berth"),
            false,
        )
        .unwrap();
        let forced = value(
            &s.patch(
                DEPLOYMENTS,
                &key(),
                PatchType::Apply { force: true },
                &deployment(2, "c"),
                Some("berth"),
                false,
            )
            .unwrap(),
        );
        assert_eq!(forced["spec"]["replicas"], 2);
        assert_eq!(forced["metadata"]["generation"], 4);
    }

    #[test]
    fn apply_removes_fields_the_manager_no_longer_sets() {
        let s = store();
        let apply = PatchType::Apply { force: false };
        let with_label = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}}))
        .unwrap();
        s.patch(1, &key(), apply, &with_label, Some("berth"), false)
            .unwrap();
        let without = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "labels": {"a": "1"}}, "data": {"x": "1"}}))
        .unwrap();
        let v = value(&s.patch(1, &key(), apply, &without, Some("berth"), false).unwrap());
        assert_eq!(v["metadata"]["labels"], json!({"a": "1"}));
    }

    #[test]
    fn stale_resource_versions_conflict_and_status_is_separate() {
        let s = store();
        let created = value(
            &s.create(
                DEPLOYMENTS,
                "qa",
                serde_json::from_slice(&deployment(1, "a")).unwrap(),
                "t",
            )
            .unwrap(),
        );
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        assert_eq!(
            s.replace(DEPLOYMENTS, &key(), stale, "t", false)
                .unwrap_err()
                .code,
            409
        );
        let mut fresh = created.clone();
        fresh["status"] = json!({"readyReplicas": 9});
        let v = value(&s.replace(DEPLOYMENTS, &key(), fresh.clone(), "t", false).unwrap());
        assert!(v["status"].is_null(), "the main resource ignores status");
        let v = value(&s.replace(DEPLOYMENTS, &key(), fresh, "t", true).unwrap());
        assert_eq!(v["status"]["readyReplicas"], 9);
        assert_eq!(v["metadata"]["generation"], 1);
    }

    #[test]
    fn namespaced_objects_need_their_namespace() {
        let s = store();
        let err = s
            .create(1, "nope", json!({"metadata": {"name": "x"}}), "t")
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (404, "namespaces \"nope\" not found")
        );
    }
}
