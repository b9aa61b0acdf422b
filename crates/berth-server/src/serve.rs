//! Serving the API over plain HTTP or TLS, with every client bounded in time, so that a
//! slow or stalled client holds only its own connection and never the server's stop.
//!
//! ```text
//!  TcpListener ──accept──▶ [TLS handshake ≤ header bound] ──▶ hyper http1 ──▶ body deadline ──▶ axum Router
//!     (one task per connection)        request head ≤ header bound ┘     body ≤ body bound → 408
//!  shutdown: stop accepting, end event streams, let the rest finish ≤ drain, then drop them
//! ```

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use berth_api::error::ApiError;
use hyper::body::{Body as _, Frame, SizeHint};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    time::Sleep,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;

/// How long a client may take over each part of a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the connection being ready for a request to its whole head (request line and
    /// headers) having arrived; over TLS the handshake gets the same time again.
    pub header_read: Duration,
    /// From the head to the last byte of the body.
    pub body_read: Duration,
    /// How long open connections get to finish after the server begins to stop.
    pub drain: Duration,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` is cancelled,
/// then lets open connections finish for at most [`Limits::drain`].
///
/// Each request carries [`ConnectInfo`] with the client's address.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(limits.body_read, bound_body));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            app: app.clone(),
            peer,
            limits,
            shutdown: shutdown.clone(),
            watcher: graceful.watcher(),
        };
        match tls.clone() {
            None => drop(tokio::spawn(connection.serve(tcp))),
            Some(acceptor) => drop(tokio::spawn(async move {
                match tokio::time::timeout(limits.header_read, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => connection.serve(stream).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            })),
        }
    }
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "API connections still open after {:?}; closing them",
            limits.drain
        );
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: axum::Router,
    peer: SocketAddr,
    limits: Limits,
    shutdown: CancellationToken,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    async fn serve(self, io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
        let Self {
            app,
            peer,
            limits,
            shutdown,
            watcher,
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let shutdown = shutdown.clone();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await?;
                Ok::<_, std::convert::Infallible>(until_shutdown(response, shutdown))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read)
            .serve_connection(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %e, "API connection ended with an error");
        }
    }
}

/// An event stream (`text/event-stream`) never ends by itself: it ends when the server
/// begins to stop, so that stopping does not wait for its reader. Clients reconnect.
fn until_shutdown(response: Response, shutdown: CancellationToken) -> Response {
    let streams = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !streams {
        return response;
    }
    response.map(|body| {
        Body::new(UntilShutdown {
            inner: body,
            shutdown: Box::pin(shutdown.cancelled_owned()),
        })
    })
}

/// A response body that ends when the server begins to stop.
struct UntilShutdown {
    inner: Body,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl hyper::body::Body for UntilShutdown {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }
}

/// The request body took longer than the bound to arrive.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
struct BodyTimedOut(Duration);

/// A request body that fails once its deadline has passed, and says so in `expired`.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyTimedOutOr;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOutOr::TimedOut(BodyTimedOut(this.limit)))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(BodyTimedOutOr::Body)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why reading a bounded request body failed.
#[derive(Debug, thiserror::Error)]
enum BodyTimedOutOr {
    /// The deadline passed.
    #[error(transparent)]
    TimedOut(BodyTimedOut),
    /// The connection failed.
    #[error(transparent)]
    Body(axum::Error),
}

/// Gives each request body `limit` to arrive; a request whose body is late is answered
/// `408 Request Timeout` and its connection closed, whatever the handler made of the
/// failed read.
async fn bound_body(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    tracing::debug!(?limit, "request body too slow; answered 408");
    let mut response = ApiError::BodyTimedOut { limit }.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A positive number of seconds (`2`, `0.5`) as a duration: the value of the time flags.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("'{text}' is not a positive number of seconds (e.g. 10 or 0.5)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_flags_take_positive_seconds_only() {
        assert_eq!(seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "abc", "", "NaN", "inf", "1e300"] {
            let err = seconds(bad).unwrap_err();
            assert!(err.contains("positive number of seconds"), "{bad}: {err}");
        }
    }
}
