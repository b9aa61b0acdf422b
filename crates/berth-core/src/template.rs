//! The release template: what must have run in an upstream environment before a
//! release may run downstream (`policies.requireVerifiedIn`), and its hash.
//!
//! A release's template is its whole [`ApplicationSpec`]; some of it is meant to differ
//! per environment and is left out of the comparison:
//!
//! | field of the spec            | in the template hash | why                                           |
//! | ---------------------------- | -------------------- | --------------------------------------------- |
//! | `image`                      | its digest only      | what runs; the repository name is a label     |
//! | `command`, `args`            | yes                  | what the container runs                       |
//! | `port`, `healthCheck`        | yes                  | how it serves and is judged healthy           |
//! | `resources`                  | yes                  | limits change behaviour (OOM, throttling)     |
//! | `drainSeconds`, `terminationGraceSeconds` | yes     | how a replica stops (requests cut or not)     |
//! | `env`                        | yes                  | the variables every environment gets          |
//! | `configFiles`                | yes                  | files the app reads                           |
//! | `secrets`                    | yes (references)     | where secrets are delivered; values are per environment |
//! | `replicas`                   | no                   | capacity, chosen per environment              |
//! | `environments.<env>.*`       | no                   | the per-environment overrides: replicas, env values, hostname, autoscaling |
//! | `team`                       | no                   | who owns it, not what runs                    |
//! | `source`                     | no                   | how the image was built; the digest says what came out |
//!
//! So a release that changes the command, a config file or the resources is a new
//! template that has to pass the upstream environments again, while promoting the same
//! template with production's own replicas and variables is not.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::objects::ApplicationSpec;

/// The spec fields (JSON names) that are per-environment overrides or not about what
/// runs, and so are not part of the template.
pub const NOT_IN_TEMPLATE: [&str; 4] = ["replicas", "environments", "team", "source"];

/// The template of `spec` as a JSON object: the spec without [`NOT_IN_TEMPLATE`], with
/// `image` reduced to its digest (or kept whole when it has none).
#[must_use]
pub fn template_view(spec: &ApplicationSpec) -> serde_json::Map<String, Value> {
    let mut view = match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        // A spec always serializes to an object; an empty view would hash the same for
        // every spec, so keep the image at least.
        _ => serde_json::Map::from_iter([("image".to_owned(), Value::String(spec.image.clone()))]),
    };
    for field in NOT_IN_TEMPLATE {
        view.remove(field);
    }
    let image = spec
        .image
        .rsplit_once('@')
        .map_or(spec.image.as_str(), |(_, digest)| digest);
    view.insert("image".to_owned(), Value::String(image.to_owned()));
    view
}

/// The template hash of `spec`: `sha256:<hex>` of the canonical JSON (keys sorted) of
/// [`template_view`]. Two releases with the same hash run the same thing.
#[must_use]
pub fn template_hash(spec: &ApplicationSpec) -> String {
    let mut text = String::new();
    canonical(&Value::Object(template_view(spec)), &mut text);
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The template fields (JSON names) in which `a` and `b` differ, sorted.
#[must_use]
pub fn template_differences(a: &ApplicationSpec, b: &ApplicationSpec) -> Vec<String> {
    let (a, b) = (template_view(a), template_view(b));
    let mut fields: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// Writes `value` as JSON with object keys sorted, whatever map type serde_json uses.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String((*k).clone()));
                canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn spec(json: serde_json::Value) -> ApplicationSpec {
        let mut base = serde_json::json!({"image": format!("r/web@{D1}")});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn per_environment_overrides_keep_the_hash() {
        let base = template_hash(&spec(serde_json::json!({})));
        for same in [
            serde_json::json!({"replicas": 5}),
            serde_json::json!({"team": "pay"}),
            serde_json::json!({"image": format!("other.registry/web@{D1}")}),
            serde_json::json!({"environments": {"production": {"replicas": 3, "env": {"MODE": "prod"},
                "hostname": "shop.example.com"}}}),
            serde_json::json!({"source": {"git": "https://example.com/web.git", "builder": {"dockerfile": {}}}}),
        ] {
            assert_eq!(template_hash(&spec(same.clone())), base, "{same}");
        }
        assert!(base.starts_with("sha256:") && base.len() == 7 + 64, "{base}");
    }

    #[test]
    fn everything_that_changes_what_runs_changes_the_hash() {
        let base = spec(serde_json::json!({}));
        for (change, field) in [
            (serde_json::json!({"command": ["sh", "-c", "env"]}), "command"),
            (serde_json::json!({"args": ["--debug"]}), "args"),
            (serde_json::json!({"port": 9090}), "port"),
            (
                serde_json::json!({"healthCheck": {"path": "/ready"}}),
                "healthCheck",
            ),
            (serde_json::json!({"resources": {"memory": "64Mi"}}), "resources"),
            (serde_json::json!({"env": {"MODE": "fast"}}), "env"),
            (
                serde_json::json!({"configFiles": [{"path": "/etc/app.conf", "content": "x"}]}),
                "configFiles",
            ),
            (
                serde_json::json!({"secrets": [{"name": "db", "env": "DB"}]}),
                "secrets",
            ),
            (
                serde_json::json!({"image": "r/web@sha256:2222222222222222222222222222222222222222222222222222222222222222"}),
                "image",
            ),
        ] {
            let changed = spec(change.clone());
            assert_ne!(template_hash(&changed), template_hash(&base), "{change}");
            assert_eq!(template_differences(&base, &changed), [field], "{change}");
        }
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let a = spec(serde_json::json!({"env": {"A": "1", "B": "2"}}));
        let b = spec(serde_json::json!({"env": {"B": "2", "A": "1"}}));
        assert_eq!(template_hash(&a), template_hash(&b));
    }
}
