//! How the CLI shows things: aligned tables, ages, YAML and JSON, errors.
//!
//! Rendering functions are pure (they take `now` rather than reading the clock) so that
//! tables can be snapshot-tested.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How `get` prints what it found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// YAML documents (one per object), ready for `berth apply`.
    Yaml,
    /// JSON: the object, or a list object for several.
    Json,
}

/// A table with a header row and left-aligned columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Spaces between columns.
const GAP: usize = 3;

impl Table {
    /// An empty table with these column titles.
    #[must_use]
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty and extra cells are kept.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Whether no row was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    #[must_use]
    pub fn render(&self) -> String {
        let columns = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(&" ".repeat(pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// How long ago `then` was, kubectl-style: `45s`, `12m`, `5h`, `3d`.
#[must_use]
pub fn age(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(then) = then else {
        return "<unknown>".to_owned();
    };
    let s = (now - then).num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A duration in seconds as `12s` or `3m04s`.
#[must_use]
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3_600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60)
    }
}

/// Values as YAML: one document per value, separated by `---`.
pub fn yaml_documents<T: Serialize>(values: &[T]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(v).map_err(|e| anyhow::anyhow!("cannot write YAML: {e}"))?);
    }
    Ok(out)
}

/// `value` in `format` for scripts (pretty JSON, or one YAML document), or `None` for
/// [`Format::Table`], which each command draws itself.
pub fn document<T: Serialize>(format: Format, value: &T) -> anyhow::Result<Option<String>> {
    match format {
        Format::Json => json(value).map(Some),
        Format::Yaml => yaml_documents(std::slice::from_ref(value)).map(Some),
        Format::Table => Ok(None),
    }
}

/// A value as pretty JSON with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

/// The text printed for a failed command: `error: …` with its causes and any
/// per-field lines the server sent.
#[must_use]
pub fn error_report(e: &anyhow::Error) -> String {
    let mut out = String::from("error: ");
    let _ = write!(out, "{e:#}");
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn table_aligns_columns_and_trims() {
        let mut t = Table::new(&["NAME", "IMAGE", "REPLICAS"]);
        t.row(["web", "reg/web:1", "3"]);
        t.row(["a-longer-name", "", "1"]);
        t.row(["x", "reg/x@sha256:abc", ""]);
        insta::assert_snapshot!(t.render(), @r"
        NAME            IMAGE              REPLICAS
        web             reg/web:1          3
        a-longer-name                      1
        x               reg/x@sha256:abc
        ");
    }

    #[test]
    fn ages() {
        let now = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (7_199, "119m"),
            (7_200, "2h"),
            (172_799, "47h"),
            (172_800, "2d"),
            (-5, "0s"),
        ];
        for (secs, want) in cases {
            let then = now - chrono::Duration::seconds(secs);
            assert_eq!(age(Some(then), now), want, "{secs}");
        }
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(184), "3m04s");
        assert_eq!(duration(3_720), "1h02m");
    }

    #[test]
    fn error_report_includes_context_and_field_lines() {
        let api = crate::client::ApiError::from_body(
            reqwest::StatusCode::CONFLICT,
            r#"{"title":"Conflict","detail":"application/web changed since you read it",
                "errors":[{"path":"metadata.resourceVersion","message":"is 4, not 3","hint":"get it again"}]}"#,
        );
        let e = anyhow::Error::new(api).context("applying application/web");
        assert_eq!(
            error_report(&e),
            "error: applying application/web: Conflict: application/web changed since you read it\n  \
             metadata.resourceVersion: is 4, not 3 (get it again)"
        );
    }

    #[test]
    fn yaml_documents_are_separated() {
        let v = [serde_json::json!({"a": 1}), serde_json::json!({"b": "no"})];
        assert_eq!(yaml_documents(&v).unwrap(), "a: 1\n---\nb: \"no\"\n");
    }
}
