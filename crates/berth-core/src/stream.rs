//! A YAML stream split into its documents, each with the line it starts on: so that an
//! error found in one document later (typed parsing, validation on the server) can name
//! the line of the file it was written on. Used by `berth apply` and the GitOps syncer.

/// One YAML document's text and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The document's lines, its `---` line included.
    pub text: String,
    /// Line (from 1) of the chunk's first line in its source.
    pub first_line: u64,
}

impl Chunk {
    /// Lines before this chunk, to turn a chunk-relative line into a source line.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.first_line - 1
    }

    /// Line of the first content, for problems that have no finer location.
    #[must_use]
    pub fn content_line(&self) -> u64 {
        let skip = self
            .text
            .lines()
            .position(|l| is_content(l) && !is_document_start(l))
            .unwrap_or(0);
        self.first_line + skip as u64
    }
}

/// Whether a line starts a document (`---`, alone or followed by a blank).
#[must_use]
pub fn is_document_start(line: &str) -> bool {
    line.trim_end_matches(['\n', '\r'])
        .strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// Whether a `---` line also carries content, as in `--- {a: 1}`.
fn starts_with_content(line: &str) -> bool {
    line.strip_prefix("---")
        .map(str::trim)
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('#'))
}

/// Whether a line carries a document's content (not blank, comment or directive).
fn is_content(line: &str) -> bool {
    let t = line.trim();
    !(t.is_empty() || t.starts_with('#') || line.starts_with('%'))
}

/// Splits a YAML stream at its `---` lines, keeping each document's starting line so
/// that typed errors found later can still name the line in the source.
#[must_use]
pub fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        text: String::new(),
        first_line: 1,
    };
    let mut has_content = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // A `---` after content starts the next document; directives and comments
        // before the first `---` belong to the document that follows them.
        if is_document_start(line) {
            let next = Chunk {
                text: String::new(),
                first_line: i as u64 + 1,
            };
            if has_content {
                chunks.push(std::mem::replace(&mut current, next));
            } else if !current.text.lines().any(|l| l.starts_with('%')) {
                // Only comments and blank lines so far: an empty document, dropped so
                // that the next one is parsed on its own.
                current = next;
            }
            has_content = false;
        }
        current.text.push_str(line);
        if is_document_start(line) {
            has_content |= starts_with_content(line);
        } else if is_content(line) {
            has_content = true;
        }
    }
    if has_content {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_splitting_keeps_line_numbers() {
        let chunks = split_documents("%YAML 1.2\n---\na: 1\n--- # two\nb: 2\n...\n---\n\n");
        let got: Vec<_> = chunks.iter().map(|c| (c.first_line, c.content_line())).collect();
        assert_eq!(got, [(1, 3), (4, 5)]);
        assert!(is_document_start("---\n") && is_document_start("--- {a: 1}") && !is_document_start("----"));
    }
}
