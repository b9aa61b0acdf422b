//! Label and field selectors, as the API server parses them from query strings.

use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// A selector the fake cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct BadSelector(pub String);

impl Selector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(text: &str) -> Result<Self, BadSelector> {
        let mut out = Vec::new();
        for part in split_top(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, set)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().to_owned(), set_values(set, part)?)
            } else if let Some((k, set)) = part.split_once(" in ") {
                Requirement::In(k.trim().to_owned(), set_values(set, part)?)
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.to_owned())
            } else {
                return Err(BadSelector(part.to_owned()));
            };
            out.push(req);
        }
        Ok(Self(out))
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

fn set_values(set: &str, part: &str) -> Result<Vec<String>, BadSelector> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| BadSelector(part.to_owned()))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

/// Splits on commas outside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0u32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A field selector: only `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `metadata.name=web,metadata.namespace!=x`.
    pub fn parse(text: &str) -> Result<Self, BadSelector> {
        Self::parse_with(text, &[])
    }

    /// Parses a selector that may also name the fields in `more` (`reason` on events).
    pub fn parse_with(text: &str, more: &[&str]) -> Result<Self, BadSelector> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(BadSelector(part.to_owned()));
            };
            if !matches!(field.trim(), "metadata.name" | "metadata.namespace")
                && !more.contains(&field.trim())
            {
                return Err(BadSelector(format!(
                    "field label not supported: {}",
                    field.trim()
                )));
            }
            out.push((field.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(out))
    }

    /// Whether an object with this name and namespace is selected.
    #[must_use]
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = if field == "metadata.name" { name } else { namespace };
            (actual == value) == *equal
        })
    }

    /// Whether `object` is selected, reading each field named (`involvedObject.name`)
    /// from it; a missing field is the empty string, as on the API server.
    #[must_use]
    pub fn matches_object(&self, object: &serde_json::Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = object
                .pointer(&pointer)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_match_like_the_api_server() {
        let l = labels(&[("app.kubernetes.io/managed-by", "berth"), ("env", "qa")]);
        let cases = [
            ("", true),
            ("app.kubernetes.io/managed-by=berth", true),
            ("app.kubernetes.io/managed-by==berth,env=qa", true),
            ("env!=qa", false),
            ("env in (qa, prod)", true),
            ("env notin (qa)", false),
            ("tier", false),
            ("!tier", true),
            ("env in (prod),app.kubernetes.io/managed-by=berth", false),
        ];
        for (text, want) in cases {
            assert_eq!(Selector::parse(text).unwrap().matches(&l), want, "{text}");
        }
        assert!(Selector::parse("env in qa").is_err());
    }

    #[test]
    fn field_selectors_name_and_namespace() {
        let f = FieldSelector::parse("metadata.name=web,metadata.namespace!=kube-system").unwrap();
        assert!(f.matches("qa", "web"));
        assert!(!f.matches("kube-system", "web"));
        assert!(FieldSelector::parse("spec.nodeName=x").is_err());
    }
}
