//! Field sets and the merge rules of server-side apply, close enough to the API server's
//! to report the same conflicts between field managers.
//!
//! A field set is a set of paths into an object. A path ends in a field (a leaf: a
//! scalar, an atomic list or an empty map) or in a list element (`k:{"name":"web"}` for
//! list-maps keyed by name, `v:"x"` for sets). They convert to and from the `fieldsV1`
//! trees the API server writes into `metadata.managedFields`.
//!
//! Which lists merge by key is schema knowledge; only the lists of the kinds Berth
//! writes are known here (containers, env, ports, volumes, volume mounts, conditions…).
//! Every other list is atomic, as a list without `x-kubernetes-list-type` is.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// A map field: `f:name`.
    Field(String),
    /// A list-map element by its key fields, as compact JSON: `k:{"name":"web"}`.
    Key(String),
    /// A set element by value, as JSON: `v:"x"`.
    Value(String),
}

/// A path into an object.
pub type Path = Vec<Step>;

/// A set of paths.
pub type FieldSet = BTreeSet<Path>;

/// The key fields of a list, from its field name and an element; `None` for atomic lists.
fn list_keys(field: &str, element: &Value) -> Option<&'static [&'static str]> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => {
            Some(&["name"])
        }
        "ports" if element.get("containerPort").is_some() => Some(&["containerPort", "protocol"]),
        "ports" if element.get("port").is_some() => Some(&["port", "protocol"]),
        "volumeMounts" => Some(&["mountPath"]),
        "conditions" => Some(&["type"]),
        "ownerReferences" => Some(&["uid"]),
        "hostAliases" => Some(&["ip"]),
        _ => None,
    }
}

fn is_set(field: &str) -> bool {
    field == "finalizers"
}

/// The key of a list-map element as compact JSON with sorted keys; `protocol` defaults
/// to TCP as the API server defaults it before merging.
fn element_key(element: &Value, keys: &[&str]) -> String {
    let mut key = BTreeMap::new();
    for k in keys {
        match element.get(*k) {
            Some(v) => {
                key.insert((*k).to_owned(), v.clone());
            }
            None if *k == "protocol" => {
                key.insert("protocol".to_owned(), Value::String("TCP".to_owned()));
            }
            None => {}
        }
    }
    serde_json::to_string(&key).unwrap_or_default()
}

/// The field names in a list-map key (`{"containerPort":8080,"protocol":"TCP"}`).
fn key_names(key: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(key) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn matches_key(element: &Value, names: &[String], key: &str) -> bool {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    !names.is_empty() && element_key(element, &names) == key
}

/// Top-level and metadata fields that no manager owns.
fn unowned(path: &[Step]) -> bool {
    match path {
        [Step::Field(f)] => matches!(f.as_str(), "apiVersion" | "kind" | "status"),
        [Step::Field(m), Step::Field(f)] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
                | "selfLink"
        ),
        _ => false,
    }
}

/// Every path the object sets.
#[must_use]
pub fn field_set(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(map) = object {
        collect(map, &mut Vec::new(), &mut out);
    }
    out
}

fn collect(map: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) {
    for (k, v) in map {
        prefix.push(Step::Field(k.clone()));
        if !unowned(prefix) {
            match v {
                Value::Object(m) if !m.is_empty() => collect(m, prefix, out),
                Value::Array(items) if !items.is_empty() => {
                    if let Some(keys) = list_keys(k, &items[0]) {
                        for item in items {
                            prefix.push(Step::Key(element_key(item, keys)));
                            out.insert(prefix.clone());
                            if let Value::Object(m) = item {
                                collect(m, prefix, out);
                            }
                            prefix.pop();
                        }
                    } else if is_set(k) {
                        for item in items {
                            prefix.push(Step::Value(item.to_string()));
                            out.insert(prefix.clone());
                            prefix.pop();
                        }
                    } else {
                        out.insert(prefix.clone());
                    }
                }
                _ => {
                    out.insert(prefix.clone());
                }
            }
        }
        prefix.pop();
    }
}

/// The value at `path`, if the object has it.
#[must_use]
pub fn get<'a>(object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut at = object;
    for step in path {
        at = match step {
            Step::Field(f) => at.get(f)?,
            Step::Key(k) => {
                let names = key_names(k);
                at.as_array()?.iter().find(|e| matches_key(e, &names, k))?
            }
            Step::Value(v) => at.as_array()?.iter().find(|e| is_value(e, v))?,
        };
    }
    Some(at)
}

/// Whether a set element is the one written as JSON `v`.
fn is_value(element: &Value, v: &str) -> bool {
    serde_json::from_str::<Value>(v).is_ok_and(|x| x == *element)
}

/// Removes the value at `path` (a field, or a list element); absent paths are ignored.
pub fn remove(object: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for step in parent {
        let next = match step {
            Step::Field(f) => at.get_mut(f),
            Step::Key(k) => at.as_array_mut().and_then(|a| {
                let names = key_names(k);
                a.iter_mut().find(|e| matches_key(e, &names, k))
            }),
            Step::Value(v) => at
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|e| is_value(e, v))),
        };
        match next {
            Some(n) => at = n,
            None => return,
        }
    }
    match last {
        Step::Field(f) => {
            if let Some(m) = at.as_object_mut() {
                m.remove(f);
            }
        }
        Step::Key(k) => {
            if let Some(a) = at.as_array_mut() {
                let names = key_names(k);
                a.retain(|e| !matches_key(e, &names, k));
            }
        }
        Step::Value(v) => {
            if let Some(a) = at.as_array_mut() {
                a.retain(|e| !is_value(e, v));
            }
        }
    }
}

/// Merges `patch` into `target` the way server-side apply does: maps merge field by
/// field, list-maps merge element by key, everything else is replaced.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, pv) in p {
                match t.get_mut(k) {
                    Some(tv) => merge_field(k, tv, pv),
                    None => {
                        t.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn merge_field(field: &str, target: &mut Value, patch: &Value) {
    match (&mut *target, patch) {
        (Value::Object(_), Value::Object(_)) => merge(target, patch),
        (Value::Array(t), Value::Array(p)) if !p.is_empty() => {
            if let Some(keys) = list_keys(field, &p[0]) {
                for item in p {
                    let key = element_key(item, keys);
                    match t.iter_mut().find(|e| element_key(e, keys) == key) {
                        Some(existing) => merge(existing, item),
                        None => t.push(item.clone()),
                    }
                }
            } else if is_set(field) {
                for item in p {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
            } else {
                *target = patch.clone();
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Whether a path is a list element rather than a field.
#[must_use]
pub fn is_element(path: &[Step]) -> bool {
    matches!(path.last(), Some(Step::Key(_) | Step::Value(_)))
}

/// The paths whose value differs between `old` and `new`, among the paths `new` sets.
#[must_use]
pub fn changed(old: &Value, new: &Value, new_fields: &FieldSet) -> FieldSet {
    new_fields
        .iter()
        .filter(|p| {
            if is_element(p) {
                get(old, p).is_none()
            } else {
                get(old, p) != get(new, p)
            }
        })
        .cloned()
        .collect()
}

/// A path as the API server prints it in conflict messages: `.spec.replicas`,
/// `.spec.template.spec.containers[name="web"].image`.
#[must_use]
pub fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Step::Key(k) => {
                let inner = serde_json::from_str::<BTreeMap<String, Value>>(k)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                out.push('[');
                out.push_str(&inner);
                out.push(']');
            }
            Step::Value(v) => {
                out.push_str(&format!("[={v}]"));
            }
        }
    }
    out
}

/// The `fieldsV1` tree of a field set.
#[must_use]
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert_tree(&mut root, path, is_element(path));
    }
    Value::Object(root)
}

fn insert_tree(node: &mut Map<String, Value>, path: &[Step], element: bool) {
    let Some((first, rest)) = path.split_first() else {
        if element {
            node.insert(".".to_owned(), Value::Object(Map::new()));
        }
        return;
    };
    let key = match first {
        Step::Field(f) => format!("f:{f}"),
        Step::Key(k) => format!("k:{k}"),
        Step::Value(v) => format!("v:{v}"),
    };
    if let Value::Object(m) = node.entry(key).or_insert_with(|| Value::Object(Map::new())) {
        insert_tree(m, rest, element);
    }
}

/// The field set of a `fieldsV1` tree.
#[must_use]
pub fn from_fields_v1(tree: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = tree {
        parse_tree(m, &mut Vec::new(), &mut out);
    }
    out
}

fn parse_tree(node: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) {
    for (k, child) in node {
        if k == "." {
            out.insert(prefix.clone());
            continue;
        }
        let step = if let Some(f) = k.strip_prefix("f:") {
            Step::Field(f.to_owned())
        } else if let Some(key) = k.strip_prefix("k:") {
            Step::Key(key.to_owned())
        } else if let Some(v) = k.strip_prefix("v:") {
            Step::Value(v.to_owned())
        } else {
            continue;
        };
        prefix.push(step);
        match child {
            Value::Object(m) if !m.is_empty() => parse_tree(m, prefix, out),
            _ => {
                out.insert(prefix.clone());
            }
        }
        prefix.pop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                 "args": ["a", "b"]}
            ]}}}
        })
    }

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let set = field_set(&deployment("img:1"));
        let tree = to_fields_v1(&set);
        assert_eq!(from_fields_v1(&tree), set);
        let c = &tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:args"], json!({}));
        assert!(
            c["f:ports"]["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"]["f:containerPort"].is_object()
        );
        assert!(tree.get("f:apiVersion").is_none());
    }

    #[test]
    fn list_maps_merge_by_key_and_atomic_lists_are_replaced() {
        let mut live = deployment("img:1");
        let sidecar = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "side:1", "args": ["x"]}]}}}});
        merge(&mut live, &sidecar);
        let names: Vec<&str> = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "sidecar"]);
        merge(
            &mut live,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["c"]}]}}}}),
        );
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["c"])
        );
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["image"],
            "img:1"
        );
    }

    #[test]
    fn changed_and_removed_paths() {
        let old = deployment("img:1");
        let new = deployment("img:2");
        let set = field_set(&new);
        let ch: Vec<String> = changed(&old, &new, &set).iter().map(|p| display(p)).collect();
        assert_eq!(ch, [".spec.template.spec.containers[name=\"web\"].image"]);
        let mut gone = new.clone();
        let path = vec![
            Step::Field("spec".into()),
            Step::Field("template".into()),
            Step::Field("spec".into()),
            Step::Field("containers".into()),
            Step::Key("{\"name\":\"web\"}".into()),
        ];
        assert!(get(&gone, &path).is_some());
        remove(&mut gone, &path);
        assert_eq!(gone["spec"]["template"]["spec"]["containers"], json!([]));
    }
}
