//! `-w/--watch` for `get` and `status`: poll the server and print only what changed, so
//! the output stays one line (or one block) per change, in a terminal and in a pipe.
//!
//! Tables print their header once and then each row that is new or changed (its age
//! too, so a row comes back when it ages into the next unit); JSON prints one compact
//! document per line whenever the answer changes; YAML and text print the whole answer
//! again, separated by `---` or a blank line.

use std::{collections::HashSet, future::Future, io::Write, process::ExitCode, time::Duration};

use crate::client::is_unreachable;

/// The flags of a watchable command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WatchArgs {
    /// Keep watching: print what changes until interrupted.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Time between polls while watching (500ms, 2s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval, requires = "watch")]
    pub interval: Duration,
}

/// Parses `500ms`, `2s`, `1m` (a bare number is seconds); at least 100 ms.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, "s"), |i| t.split_at(i));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: write e.g. 500ms, 2s or 1m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("'{text}': unknown unit '{unit}'; use ms, s or m")),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("'{text}' is too short to poll a server: at least 100ms"));
    }
    Ok(d)
}

/// One poll's answer, as it will be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// A table: printed as the header once, then new or changed rows.
    Rows {
        /// The header line.
        header: String,
        /// One line per object.
        rows: Vec<String>,
    },
    /// A compact JSON document, printed on one line when it changes.
    Line(String),
    /// Text or YAML, printed whole when it changes, after `separator` from the second time.
    Block {
        /// The answer.
        text: String,
        /// What goes between two answers (`---\n` for YAML, `\n` for text).
        separator: &'static str,
    },
}

impl Snapshot {
    /// A rendered table split into its header and rows.
    #[must_use]
    pub fn rows(table: &str) -> Self {
        let mut lines = table.lines().map(str::to_owned);
        let header = lines.next().unwrap_or_default();
        Self::Rows {
            header,
            rows: lines.collect(),
        }
    }
}

/// What has been printed, so that the next snapshot prints only its changes.
#[derive(Debug, Default)]
pub struct Printed {
    header: Option<String>,
    rows: HashSet<String>,
    last: Option<String>,
}

impl Printed {
    /// The text to print for `snapshot` (empty when nothing changed).
    pub fn update(&mut self, snapshot: Snapshot) -> String {
        let mut out = String::new();
        match snapshot {
            Snapshot::Rows { header, rows } => {
                if self.header.as_ref() != Some(&header) {
                    out.push_str(&header);
                    out.push('\n');
                    self.header = Some(header);
                }
                for row in &rows {
                    if !self.rows.contains(row) {
                        out.push_str(row);
                        out.push('\n');
                    }
                }
                self.rows = rows.into_iter().collect();
            }
            Snapshot::Line(line) => {
                if self.last.as_ref() != Some(&line) {
                    out.push_str(&line);
                    out.push('\n');
                    self.last = Some(line);
                }
            }
            Snapshot::Block { text, separator } => {
                if self.last.as_ref() != Some(&text) {
                    if self.last.is_some() {
                        out.push_str(separator);
                    }
                    out.push_str(&text);
                    self.last = Some(text);
                }
            }
        }
        out
    }
}

/// Polls the server this many times in a row without reaching it before giving up.
const MAX_UNREACHABLE: u32 = 30;

/// Calls `poll` every `interval` and prints what changed, until interrupted or the
/// server stays unreachable for [`MAX_UNREACHABLE`] polls; any other error ends it.
pub async fn run<F, Fut>(
    interval: Duration,
    mut poll: F,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Snapshot>>,
{
    let mut printed = Printed::default();
    let mut unreachable = 0;
    loop {
        match poll().await {
            Ok(snapshot) => {
                unreachable = 0;
                out.write_all(printed.update(snapshot).as_bytes())?;
                out.flush()?;
            }
            Err(e) if is_unreachable(&e) && unreachable < MAX_UNREACHABLE => {
                if unreachable == 0 {
                    eprintln!("warning: {e:#}; still trying");
                }
                unreachable += 1;
            }
            Err(e) => return Err(e.context("watching")),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("10ms").unwrap_err().contains("at least 100ms"));
        assert!(parse_interval("2h").unwrap_err().contains("unknown unit 'h'"));
        assert!(parse_interval("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn only_changes_are_printed() {
        let mut p = Printed::default();
        let table = |rows: &[&str]| Snapshot::Rows {
            header: "NAME   PHASE".into(),
            rows: rows.iter().map(|r| (*r).to_owned()).collect(),
        };
        assert_eq!(p.update(table(&["a   Ready"])), "NAME   PHASE\na   Ready\n");
        assert_eq!(p.update(table(&["a   Ready"])), "");
        assert_eq!(p.update(table(&["a   Ready", "b   Pending"])), "b   Pending\n");
        assert_eq!(p.update(table(&["a   Ready", "b   Ready"])), "b   Ready\n");
        // A row that disappears and comes back is new again.
        assert_eq!(p.update(table(&["a   Ready"])), "");
        assert_eq!(p.update(table(&["a   Ready", "b   Ready"])), "b   Ready\n");

        let mut p = Printed::default();
        assert_eq!(p.update(Snapshot::Line("{\"a\":1}".into())), "{\"a\":1}\n");
        assert_eq!(p.update(Snapshot::Line("{\"a\":1}".into())), "");
        assert_eq!(p.update(Snapshot::Line("{\"a\":2}".into())), "{\"a\":2}\n");

        let mut p = Printed::default();
        let block = |t: &str| Snapshot::Block {
            text: t.into(),
            separator: "---\n",
        };
        assert_eq!(p.update(block("a: 1\n")), "a: 1\n");
        assert_eq!(p.update(block("a: 1\n")), "");
        assert_eq!(p.update(block("a: 2\n")), "---\na: 2\n");
    }
}
