//! Drift: what of the object Berth applied is no longer as Berth applied it. Pure.
//!
//! The comparison is "desired ⊆ observed": every field Berth sets must have Berth's
//! value; fields others add (defaults, controllers' annotations, a mesh's sidecar) are
//! none of Berth's business. Lists of named things (containers, env, ports, volumes,
//! mounts) are matched by their key, as server-side apply merges them.

use serde_json::Value;

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Where, e.g. `.spec.replicas` or `.spec.template.spec.containers[web].image`.
    pub path: String,
    /// Berth's value.
    pub desired: Value,
    /// The value found (`None` when the field is gone).
    pub observed: Option<Value>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.observed {
            Some(o) => write!(
                f,
                "{} is {} instead of {}",
                self.path,
                short(o),
                short(&self.desired)
            ),
            None => write!(
                f,
                "{} was removed (Berth sets {})",
                self.path,
                short(&self.desired)
            ),
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

/// The key a list element is matched by.
fn element_key(v: &Value) -> Option<(&'static str, String)> {
    for k in ["name", "containerPort", "mountPath", "type", "ip"] {
        if let Some(x) = v.get(k) {
            return Some((k, x.to_string()));
        }
    }
    if let Some(p) = v.get("port") {
        return Some(("port", p.to_string()));
    }
    None
}

/// The fields of `desired` whose value `observed` does not have.
#[must_use]
pub fn differences(desired: &Value, observed: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    // A real API server leaves apiVersion and kind out of the items of a list (only the
    // list itself carries them), so they are never compared: the path already says both.
    if let Value::Object(d) = desired {
        let mut path = String::new();
        for (k, dv) in d.iter().filter(|(k, _)| *k != "apiVersion" && *k != "kind") {
            path.clear();
            path.push('.');
            path.push_str(k);
            walk(dv, observed.get(k), &mut path, &mut out);
        }
    } else {
        walk(desired, Some(observed), &mut String::new(), &mut out);
    }
    out
}

fn walk(desired: &Value, observed: Option<&Value>, path: &mut String, out: &mut Vec<Difference>) {
    match (desired, observed) {
        (Value::Object(d), Some(Value::Object(o))) => {
            for (k, dv) in d {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                walk(dv, o.get(k), path, out);
                path.truncate(len);
            }
        }
        (Value::Array(d), Some(Value::Array(o))) => {
            let keyed = !d.is_empty() && d.iter().all(|e| element_key(e).is_some());
            if keyed {
                for dv in d {
                    let Some((k, key)) = element_key(dv) else { continue };
                    let len = path.len();
                    path.push_str(&format!("[{}]", key.trim_matches('"')));
                    let found = o
                        .iter()
                        .find(|e| e.get(k).map(Value::to_string).as_deref() == Some(&key));
                    match found {
                        Some(ov) => walk(dv, Some(ov), path, out),
                        None => out.push(Difference {
                            path: path.clone(),
                            desired: dv.clone(),
                            observed: None,
                        }),
                    }
                    path.truncate(len);
                }
            } else if d.len() != o.len() {
                out.push(Difference {
                    path: path.clone(),
                    desired: desired.clone(),
                    observed: observed.cloned(),
                });
            } else {
                for (i, (dv, ov)) in d.iter().zip(o).enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(dv, Some(ov), path, out);
                    path.truncate(len);
                }
            }
        }
        (d, Some(o)) if same_scalar(d, o) => {}
        (d, o) => out.push(Difference {
            path: path.clone(),
            desired: d.clone(),
            observed: o.cloned(),
        }),
    }
}

/// Equal, allowing for the API server writing an int-or-string as the other.
fn same_scalar(d: &Value, o: &Value) -> bool {
    if d == o {
        return true;
    }
    match (d, o) {
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => n.to_string() == *s,
        (Value::Object(a), Value::Object(b)) => a.is_empty() && b.is_empty(),
        _ => false,
    }
}

/// The field managers other than `berth` that own `path` (as shown by [`Difference`]),
/// read from the object's `managedFields`; used to say who changed a field.
#[must_use]
pub fn managers_of(observed: &Value, path: &str) -> Vec<String> {
    let Some(entries) = observed["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let manager = e["manager"].as_str().unwrap_or_default();
        if manager == crate::FIELD_MANAGER {
            continue;
        }
        if owns(&e["fieldsV1"], path) && !out.iter().any(|m| m == manager) {
            out.push(manager.to_owned());
        }
    }
    out
}

/// Whether a `fieldsV1` tree contains the field at `path` (list keys by value only).
fn owns(tree: &Value, path: &str) -> bool {
    let mut node = tree;
    for step in path_steps(path) {
        let next = match step {
            Step::Field(f) => node.get(format!("f:{f}")),
            Step::Key(k) => node.as_object().and_then(|m| {
                m.iter()
                    .find(|(name, _)| name.starts_with("k:") && name.contains(&format!(":{k}")))
                    .map(|(_, v)| v)
            }),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    true
}

enum Step {
    Field(String),
    Key(String),
}

fn path_steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            out.push(Step::Field(rest[..i].to_owned()));
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                let key = &rest[1..end];
                let key = if key.parse::<u64>().is_ok() {
                    key.to_owned()
                } else {
                    format!("\"{key}\"")
                };
                out.push(Step::Key(key));
                rest = &rest[end + 1..];
            }
        } else {
            out.push(Step::Field(rest.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn additions_by_others_are_not_drift() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "a", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}});
        let observed = json!({"spec": {"replicas": 2, "progressDeadlineSeconds": 600, "template": {"spec": {
            "containers": [{"name": "sidecar", "image": "s"},
                {"name": "web", "image": "a", "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}});
        assert_eq!(differences(&desired, &observed), []);
    }

    #[test]
    fn changes_and_removals_are_named() {
        let desired = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 2,
            "template": {"spec": {"containers": [{"name": "web", "image": "a", "args": ["x"]}]}}}});
        let observed = json!({"metadata": {"labels": {}}, "spec": {"replicas": 5,
            "template": {"spec": {"containers": [{"name": "web", "image": "b", "args": ["x", "y"]}]}}}});
        let d: Vec<String> = differences(&desired, &observed)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            d,
            [
                ".metadata.labels.a was removed (Berth sets \"1\")",
                ".spec.replicas is 5 instead of 2",
                ".spec.template.spec.containers[web].args is [\"x\",\"y\"] instead of [\"x\"]",
                ".spec.template.spec.containers[web].image is \"b\" instead of \"a\"",
            ]
        );
    }

    #[test]
    fn managers_are_found_in_managed_fields() {
        let observed = json!({"metadata": {"managedFields": [
            {"manager": "berth", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-edit", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {"f:image": {}}}}}}}}]}});
        assert_eq!(
            managers_of(&observed, ".spec.template.spec.containers[web].image"),
            ["kubectl-edit"]
        );
        assert!(managers_of(&observed, ".spec.replicas").is_empty());
    }

    #[test]
    fn list_items_without_api_version_and_kind_are_not_drift() {
        // What a real API server's list returns for an object Berth applied.
        let desired = json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "berth-quota"}, "spec": {"hard": {"pods": "20"}}});
        let listed = json!({"metadata": {"name": "berth-quota"}, "spec": {"hard": {"pods": "20"}}});
        assert_eq!(differences(&desired, &listed), vec![]);
    }
}
