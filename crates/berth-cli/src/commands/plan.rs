//! What an apply did or would do, per object: created, configured (with a field-level
//! diff), unchanged, pruned; and what deploying the changed applications would roll out
//! in each environment they run in. Coloured on a terminal, plain when piped.

use std::{collections::BTreeMap, fmt::Write as _};

use berth_contract::{Action, AppliedObject, ApplyResult};
use serde_json::Value;

use crate::kind::KindName;

/// How a plan is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours (a terminal that did not ask for `NO_COLOR`).
    pub color: bool,
    /// Field-level changes under each configured object.
    pub fields: bool,
}

impl Style {
    /// Colours when stdout is a terminal and `NO_COLOR` is not set.
    #[must_use]
    pub fn for_stdout(fields: bool) -> Self {
        use std::io::IsTerminal;
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            fields,
        }
    }
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// The lines of `result`: `kind/name action` per object (with `(dry run)` and the
/// would-be verbs for a dry run) and, with `style.fields`, `  ~ path: old -> new` under
/// each configured object and the rollouts a deploy would make
/// (`  ~ web in qa: release 1 -> new release 2 (env)`).
#[must_use]
pub fn render(result: &ApplyResult, style: Style) -> String {
    let mut out = String::new();
    for object in &result.objects {
        let kind = KindName::from_document_kind(&object.kind)
            .map_or_else(|| object.kind.to_lowercase(), |k| k.to_string());
        let (mark, color) = match object.action {
            Action::Created => ('+', GREEN),
            Action::Configured => ('~', YELLOW),
            Action::Unchanged => (' ', ""),
            Action::Pruned => ('-', RED),
        };
        let verb = if result.dry_run {
            match object.action {
                Action::Created => "would be created".to_owned(),
                Action::Configured => "would be configured".to_owned(),
                Action::Unchanged => "unchanged".to_owned(),
                Action::Pruned => "would be pruned".to_owned(),
            }
        } else {
            object.action.to_string()
        };
        let line = if style.fields {
            format!("{mark} {kind}/{} {verb}", object.name)
        } else {
            format!("{kind}/{} {verb}", object.name)
        };
        paint(&mut out, &line, color, style.color);
        if style.fields && object.action == Action::Configured {
            for change in changes(object) {
                paint(&mut out, &format!("    {change}"), color, style.color);
            }
        }
    }
    if style.fields && !result.rollouts.is_empty() {
        out.push_str("a deploy would roll out:\n");
        for r in &result.rollouts {
            let release = if r.new_release {
                format!("new release {}", r.release)
            } else {
                format!("release {}", r.release)
            };
            let line = format!(
                "  ~ {} in {}: release {} -> {release} ({})",
                r.application,
                r.environment,
                r.running_release,
                r.changes.join(", ")
            );
            paint(&mut out, &line, YELLOW, style.color);
        }
    }
    out
}

fn paint(out: &mut String, line: &str, color: &str, enabled: bool) {
    if enabled && !color.is_empty() {
        let _ = writeln!(out, "{color}{line}{RESET}");
    } else {
        let _ = writeln!(out, "{line}");
    }
}

/// The fields of spec and labels that differ between `before` and `after`, one line
/// each: `~ path: old -> new`, `+ path: new`, `- path: old`.
#[must_use]
pub fn changes(object: &AppliedObject) -> Vec<String> {
    let flat = |v: Option<&Value>| {
        let mut fields = BTreeMap::new();
        if let Some(v) = v {
            if let Some(labels) = v.pointer("/metadata/labels") {
                flatten("metadata.labels", labels, &mut fields);
            }
            if let Some(spec) = v.get("spec") {
                flatten("spec", spec, &mut fields);
            }
        }
        fields
    };
    let before = flat(object.before.as_ref());
    let after = flat(object.after.as_ref());
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    for (path, old) in &before {
        match after.get(path) {
            Some(new) if new != old => {
                out.insert(path, format!("~ {path}: {old} -> {new}"));
            }
            Some(_) => {}
            None => {
                out.insert(path, format!("- {path}: {old}"));
            }
        }
    }
    for (path, new) in &after {
        if !before.contains_key(path) {
            out.insert(path, format!("+ {path}: {new}"));
        }
    }
    out.into_values().collect()
}

/// Leaves of `value` by path (`spec.env.MODE`, `spec.command[1]`); empty objects and
/// arrays are leaves too, so that emptying one shows.
fn flatten(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        leaf => {
            out.insert(path.to_owned(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(action: Action, before: Option<Value>, after: Option<Value>) -> AppliedObject {
        AppliedObject {
            kind: "Application".into(),
            name: "web".into(),
            action,
            before,
            after,
        }
    }

    #[test]
    fn a_plan_names_what_a_deploy_would_roll_out_where() {
        let rollout = |env: &str, release: u64, new_release: bool| berth_contract::Rollout {
            application: "web".into(),
            environment: env.into(),
            running_release: 1,
            release,
            new_release,
            changes: vec!["configFiles".into(), "env".into()],
        };
        let result = ApplyResult {
            dry_run: true,
            rollouts: vec![rollout("production", 2, false), rollout("qa", 3, true)],
            objects: Vec::new(),
        };
        let style = |color| Style { color, fields: true };
        assert_eq!(
            render(&result, style(false)),
            "a deploy would roll out:\n  \
             ~ web in production: release 1 -> release 2 (configFiles, env)\n  \
             ~ web in qa: release 1 -> new release 3 (configFiles, env)\n"
        );
        assert!(
            render(&result, style(true))
                .contains("\x1b[33m  ~ web in qa: release 1 -> new release 3 (configFiles, env)\x1b[0m"),
        );
        let plain_apply = Style {
            color: false,
            fields: false,
        };
        assert_eq!(
            render(&result, plain_apply),
            "",
            "a plain apply prints its objects only"
        );
    }

    #[test]
    fn a_plan_names_each_object_and_each_changed_field() {
        let before = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "env": {"A": "1", "B": "2"}, "command": ["a"]}});
        let after = json!({"metadata": {"name": "web", "labels": {"tier": "web"}}, "spec": {"replicas": 3, "env": {"A": "1"}, "command": ["a", "b"]}});
        let result = ApplyResult {
            dry_run: true,
            rollouts: Vec::new(),
            objects: vec![
                object(Action::Created, None, Some(after.clone())),
                object(Action::Configured, Some(before), Some(after.clone())),
                object(Action::Unchanged, Some(after.clone()), Some(after)),
                object(Action::Pruned, Some(json!({})), None),
            ],
        };
        let plain = render(
            &result,
            Style {
                color: false,
                fields: true,
            },
        );
        assert_eq!(
            plain,
            "+ application/web would be created\n\
             ~ application/web would be configured\n    \
             + metadata.labels.tier: \"web\"\n    \
             + spec.command[1]: \"b\"\n    \
             - spec.env.B: \"2\"\n    \
             ~ spec.replicas: 2 -> 3\n  \
             application/web unchanged\n\
             - application/web would be pruned\n"
        );
        // On a terminal the same, coloured; piped output has no escape codes.
        let colored = render(
            &result,
            Style {
                color: true,
                fields: true,
            },
        );
        assert!(
            colored.contains("\x1b[32m+ application/web would be created\x1b[0m"),
            "{colored}"
        );
        assert!(!plain.contains('\x1b'));
        // Without fields (a plain apply), the lines the apply always printed.
        let applied = ApplyResult {
            dry_run: false,
            rollouts: Vec::new(),
            objects: result.objects,
        };
        assert!(
            render(
                &applied,
                Style {
                    color: false,
                    fields: false
                }
            )
            .starts_with("application/web created\n")
        );
    }
}
