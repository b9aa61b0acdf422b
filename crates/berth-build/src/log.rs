//! A build's log while it runs: appended to by the builder, read and waited on by the
//! API's live stream.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The log of one build. Cheap to clone; clones share the text.
#[derive(Debug, Clone)]
pub struct BuildLog {
    text: Arc<Mutex<String>>,
    /// (length of the text, finished), for waiters.
    state: Arc<watch::Sender<(u64, bool)>>,
}

impl Default for BuildLog {
    fn default() -> Self {
        Self {
            text: Arc::default(),
            state: Arc::new(watch::channel((0, false)).0),
        }
    }
}

impl BuildLog {
    /// Appends one line.
    pub fn line(&self, line: impl AsRef<str>) {
        let len = {
            let mut text = self
                .text
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            text.push_str(line.as_ref().trim_end_matches('\n'));
            text.push('\n');
            text.len() as u64
        };
        self.state.send_modify(|s| s.0 = len);
    }

    /// Appends text as it came (a tool's output), line by line.
    pub fn output(&self, text: &str) {
        for line in text.lines() {
            self.line(line);
        }
    }

    /// Everything written so far.
    #[must_use]
    pub fn text(&self) -> String {
        self.text
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Marks the log complete; waiters wake.
    pub fn finish(&self) {
        self.state.send_modify(|s| s.1 = true);
    }

    /// Whether [`finish`](Self::finish) was called.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state.borrow().1
    }

    /// Watches (length, finished).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<(u64, bool)> {
        self.state.subscribe()
    }
}
