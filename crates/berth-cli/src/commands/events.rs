//! `berth events [-f] [--app APP] [--since SEQ]`: the platform's event log.
//!
//! Without `-f` the log is read page by page (`GET /events?after=…`). With `-f` the
//! command follows the server-sent-event stream and, when the connection drops,
//! reconnects with `Last-Event-ID` so that no event is missed or shown twice.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::Context;
use berth_core::objects::Event;
use futures::StreamExt;

use super::variant;
use crate::client::{ApiError, Client};
use crate::output::Format;
use berth_contract::EventList;

/// Arguments of `berth events`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Keep watching and print events as they happen.
    #[arg(short, long)]
    pub follow: bool,
    /// Only events about this application.
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// Only events after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub since: u64,
    /// `json`: the events as a list object (with -f, one JSON event per line); `yaml`:
    /// a list (not with -f).
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Events asked for per page.
const PAGE: usize = 500;

/// Runs `berth events`.
pub async fn run(
    client: &Client,
    args: EventsArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    if args.follow {
        if args.output == Format::Yaml {
            anyhow::bail!(
                "a followed stream is not YAML: use -o json (one JSON event per line) or the default text"
            );
        }
        let json = args.output == Format::Json;
        follow_as(
            client,
            args.app.as_deref(),
            args.since,
            &Backoff::default(),
            json,
            out,
        )
        .await?;
    } else {
        let events = list(client, args.app.as_deref(), args.since).await?;
        match args.output {
            Format::Json => {
                out.write_all(crate::output::json(&serde_json::json!({"items": events}))?.as_bytes())?
            }
            Format::Yaml => {
                out.write_all(crate::output::yaml_documents(std::slice::from_ref(&events))?.as_bytes())?
            }
            Format::Table => {
                for e in &events {
                    writeln!(out, "{}", line(e))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every event after `after` (about `app`, when given), oldest first.
pub async fn list(client: &Client, app: Option<&str>, after: u64) -> anyhow::Result<Vec<Event>> {
    let mut all = Vec::new();
    let mut after = after;
    loop {
        let page = page(client, app, after, PAGE).await?;
        // Stop on an empty page, and on a server that ignores `after` (no progress).
        match page.last().map(|e| e.seq) {
            Some(last) if last > after => {
                after = last;
                all.extend(page);
            }
            _ => return Ok(all),
        }
    }
}

/// One page of events after `after`.
pub async fn page(
    client: &Client,
    app: Option<&str>,
    after: u64,
    limit: usize,
) -> anyhow::Result<Vec<Event>> {
    let mut query = vec![("after", after.to_string()), ("limit", limit.to_string())];
    if let Some(app) = app {
        query.push(("application", app.to_owned()));
    }
    let page: EventList = client.get(&["events"], &query).await.context("reading events")?;
    Ok(page.items)
}

/// The object an event is about, as `kind/name`.
#[must_use]
pub fn object(e: &Event) -> String {
    format!("{}/{}", e.event.kind.to_ascii_lowercase(), e.event.name)
}

/// One event as a line: `SEQ TIME TYPE REASON OBJECT [ENV/CLUSTER] MESSAGE (ACTOR)`.
#[must_use]
pub fn line(e: &Event) -> String {
    let mut where_ = Vec::new();
    if let Some(env) = &e.event.environment {
        where_.push(format!("env={env}"));
    }
    if let Some(cluster) = &e.event.cluster {
        where_.push(format!("cluster={cluster}"));
    }
    let where_ = if where_.is_empty() {
        String::new()
    } else {
        format!(" [{}]", where_.join(" "))
    };
    format!(
        "{:>6}  {}  {:<7}  {}  {}{where_}: {} (by {})",
        e.seq,
        e.time.format("%Y-%m-%dT%H:%M:%SZ"),
        variant(&e.event.event_type),
        e.event.reason,
        object(e),
        e.event.message,
        e.event.actor,
    )
}

/// How long to wait before reconnecting a dropped stream.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// A stream silent this long is presumed dead and reopened.
    pub idle: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            idle: Duration::from_secs(90),
        }
    }
}

/// Follows the event stream from after `after`, forever: a dropped connection is
/// reopened with `Last-Event-ID`. Returns only on an error answer from the server
/// (such as 401 or 404), which retrying would not fix.
pub async fn follow(
    client: &Client,
    app: Option<&str>,
    after: u64,
    backoff: &Backoff,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    follow_as(client, app, after, backoff, false, out).await
}

/// [`follow`], printing each event as one line of JSON when `json`.
pub async fn follow_as(
    client: &Client,
    app: Option<&str>,
    after: u64,
    backoff: &Backoff,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let mut last = after;
    let mut wait = backoff.initial;
    let mut warned = false;
    loop {
        let mut query = vec![("after", last.to_string())];
        if let Some(app) = app {
            query.push(("application", app.to_owned()));
        }
        let resumed = (last > 0).then_some(last);
        match client.stream(&["events", "stream"], &query, resumed).await {
            Ok(resp) => {
                if warned {
                    eprintln!("reconnected to the event stream");
                    warned = false;
                }
                wait = backoff.initial;
                let mut decoder = SseDecoder::default();
                let mut body = resp.bytes_stream();
                loop {
                    let chunk = match tokio::time::timeout(backoff.idle, body.next()).await {
                        Ok(Some(Ok(bytes))) => bytes,
                        // The stream ended, failed, or went silent: reconnect.
                        Ok(Some(Err(_)) | None) | Err(_) => break,
                    };
                    for message in decoder.push(&chunk) {
                        if let Some(e) = event_of(&message, last) {
                            last = e.seq;
                            if json {
                                writeln!(out, "{}", serde_json::to_string(&e)?)?;
                            } else {
                                writeln!(out, "{}", line(&e))?;
                            }
                        }
                    }
                    out.flush()?;
                }
            }
            Err(e) if e.downcast_ref::<ApiError>().is_some() => {
                return Err(e.context("following events"));
            }
            Err(e) => {
                if !warned {
                    eprintln!("warning: {e:#}; retrying");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(backoff.max);
    }
}

/// The event a stream message carries, unless it is another kind of message or one
/// already shown.
fn event_of(message: &SseMessage, last: u64) -> Option<Event> {
    if !matches!(message.event.as_deref(), None | Some("event" | "message")) {
        return None;
    }
    let event: Event = match serde_json::from_str(&message.data) {
        Ok(e) => e,
        Err(err) => {
            eprintln!("warning: skipping an event this client does not understand: {err}");
            return None;
        }
    };
    (event.seq > last).then_some(event)
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseMessage {
    /// `id:`, when sent.
    pub id: Option<String>,
    /// `event:`, when sent.
    pub event: Option<String>,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Decodes a `text/event-stream` body that arrives in arbitrary chunks.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseDecoder {
    /// Feeds bytes; returns the messages completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(bytes);
        let mut done = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw);
            let line = text.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    done.push(std::mem::take(&mut self.current));
                } else {
                    self.current = SseMessage::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment, e.g. a keep-alive
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                _ => {}
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        Router,
        extract::{Query, State},
        http::HeaderMap,
        response::{IntoResponse, Response},
        routing::get,
    };

    use serde::Deserialize;

    use super::*;
    use crate::commands::get::tests::event;

    #[test]
    fn sse_decoding_across_chunks() {
        let mut d = SseDecoder::default();
        assert!(d.push(b": keep-alive\n\nid: 1\nevent: ev").is_empty());
        let m = d.push(b"ent\ndata: {\"a\":\ndata: 1}\r\n\r\nid: 2\ndata:x\n\n");
        assert_eq!(
            m,
            [
                SseMessage {
                    id: Some("1".into()),
                    event: Some("event".into()),
                    data: "{\"a\":\n1}".into()
                },
                SseMessage {
                    id: Some("2".into()),
                    event: None,
                    data: "x".into()
                }
            ]
        );
    }

    #[test]
    fn event_lines() {
        let mut e = event(
            7,
            "RolloutSucceeded",
            "Deployment",
            "web-qa-3",
            "release 4 is live",
        );
        e.event.environment = Some("qa".into());
        e.event.cluster = Some("local".into());
        assert_eq!(
            line(&e),
            "     7  2026-11-26T11:59:30Z  Normal   RolloutSucceeded  deployment/web-qa-3 [env=qa cluster=local]: \
             release 4 is live (by alice)"
        );
    }

    /// The events this fake server knows, and the `Last-Event-ID` of each stream request.
    #[derive(Clone, Default)]
    struct Log {
        events: Arc<Vec<Event>>,
        resumed_from: Arc<Mutex<Vec<Option<String>>>>,
    }

    #[derive(Deserialize)]
    struct After {
        after: u64,
        limit: Option<usize>,
    }

    async fn list_events(State(log): State<Log>, Query(q): Query<After>) -> Response {
        let items: Vec<_> = log
            .events
            .iter()
            .filter(|e| e.seq > q.after)
            .take(q.limit.unwrap_or(100).min(2))
            .cloned()
            .collect();
        axum::Json(serde_json::json!({ "items": items })).into_response()
    }

    /// Sends at most two events per connection, then hangs up.
    async fn stream(State(log): State<Log>, headers: HeaderMap, Query(q): Query<After>) -> Response {
        let last = headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        log.resumed_from.lock().unwrap().push(last);
        let mut body = String::from(": hello\n\n");
        for e in log.events.iter().filter(|e| e.seq > q.after).take(2) {
            body.push_str(&format!(
                "id: {}\nevent: event\ndata: {}\n\n",
                e.seq,
                serde_json::to_string(e).unwrap()
            ));
        }
        ([("content-type", "text/event-stream")], body).into_response()
    }

    async fn serve(log: Log) -> Client {
        let app = Router::new()
            .route("/api/v1/events", get(list_events))
            .route("/api/v1/events/stream", get(stream))
            .with_state(log);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Client::new(&crate::config::Target::new(&format!("http://{addr}"))).unwrap()
    }

    fn log_of(n: u64) -> Log {
        Log {
            events: Arc::new(
                (1..=n)
                    .map(|i| event(i, "Created", "Application", &format!("a{i}"), "x"))
                    .collect(),
            ),
            ..Log::default()
        }
    }

    #[tokio::test]
    async fn listing_reads_every_page() {
        let client = serve(log_of(5)).await;
        let seqs: Vec<u64> = list(&client, None, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let seqs: Vec<u64> = list(&client, None, 3)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [4, 5]);
    }

    /// A `Write` the test can read while the command still runs.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn following_reconnects_with_last_event_id() {
        let log = log_of(5);
        let client = serve(log.clone()).await;
        let out = Shared::default();
        let mut writer = out.clone();
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
            idle: Duration::from_secs(5),
        };
        let task = tokio::spawn(async move { follow(&client, None, 1, &backoff, &mut writer).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            if text.lines().count() >= 4 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "only got:\n{text}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let seqs: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(seqs, ["2", "3", "4", "5"]);
        let resumed = log.resumed_from.lock().unwrap().clone();
        assert_eq!(resumed[..2], [Some("1".to_owned()), Some("3".to_owned())]);
    }

    #[tokio::test]
    async fn following_stops_on_an_error_answer() {
        let app = Router::new().route(
            "/api/v1/events/stream",
            get(|| async {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    [("content-type", "application/problem+json")],
                    r#"{"title":"Unauthorized","status":401,"detail":"the token is not valid"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(&crate::config::Target::new(&format!("http://{addr}"))).unwrap();
        let e = follow(&client, None, 0, &Backoff::default(), &mut Vec::new())
            .await
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("following events: Unauthorized: the token is not valid\n  no token was sent"),
            "{msg}"
        );
    }
}
