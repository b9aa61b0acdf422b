//! The router against fake backends on loopback: routing by host, round-robin, retries
//! past dead backends, the router's own answers, and forwarding headers.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::HashSet, convert::Infallible, net::SocketAddr, time::Duration};

use berth_core::render::WorkloadKey;
use berth_runtime_local::{Backend, Route, RouteTable, Router, RouterOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, sync::oneshot};

/// A backend that answers with its name and what it received.
async fn echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    let header = |n: &str| {
                        request
                            .headers()
                            .get(n)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default()
                    };
                    let text = format!(
                        "{name} {} {} host={} xff={} xfh={} xfp={} secret={} ",
                        request.method(),
                        request.uri(),
                        header("host"),
                        header("x-forwarded-for"),
                        header("x-forwarded-host"),
                        header("x-forwarded-proto"),
                        header("x-secret"),
                    );
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    let mut response = Response::new(Full::new(Bytes::from(format!(
                        "{text}body={}",
                        String::from_utf8_lossy(&body)
                    ))));
                    response
                        .headers_mut()
                        .insert("keep-alive", "timeout=5".parse().unwrap());
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A port where nothing listens.
async fn dead() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A backend that accepts connections and drops them without answering.
async fn resetting() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

fn route(hosts: &[&str], backends: &[SocketAddr]) -> Route {
    Route {
        key: WorkloadKey {
            application: "web".into(),
            environment: "qa".into(),
        },
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        backends: backends
            .iter()
            .map(|addr| Backend {
                addr: *addr,
                container: format!("c{}", addr.port()),
            })
            .collect(),
        replicas: 2,
        status: None,
    }
}

async fn serve(table: RouteTable, options: RouterOptions) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(Router::new(table, options).run(listener, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    host: &str,
    body: &'static [u8],
    headers: &[(&str, &str)],
) -> (StatusCode, String, hyper::HeaderMap) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/path?q=1"))
        .header("host", host);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(request.body(Full::new(Bytes::from_static(body))).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

#[tokio::test]
async fn round_robin_across_clusters_and_retry_past_dead_backends() {
    let (a, b, gone, reset) = (echo("a").await, echo("b").await, dead().await, resetting().await);
    let table = RouteTable::new();
    table.set_cluster("dc1", vec![route(&["web.qa.test"], &[a, gone])]);
    table.set_cluster("dc2", vec![route(&["web.qa.test"], &[b, reset])]);
    let (addr, _stop) = serve(table, RouterOptions::default()).await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let (status, body, _) = send(&client, addr, Method::GET, "Web.QA.test:80", b"", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        seen.insert(body[..1].to_owned());
    }
    assert_eq!(seen.len(), 2, "both live backends served: {seen:?}");

    // A request that is not idempotent is retried only when no connection was made:
    // past the dead port, but not past a backend that dropped it mid-way.
    let mut posts = HashSet::new();
    for _ in 0..8 {
        let (status, body, _) = send(&client, addr, Method::POST, "web.qa.test", b"hello", &[]).await;
        if status == StatusCode::OK {
            assert!(body.ends_with("body=hello"), "{body}");
            posts.insert(body[..1].to_owned());
        } else {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        }
    }
    assert!(!posts.is_empty());
}

#[tokio::test]
async fn the_router_answers_itself_when_it_cannot_forward() {
    let a = echo("a").await;
    let table = RouteTable::new();
    table.set_cluster("dc1", vec![route(&["web.qa.test"], &[a])]);
    let mut empty = route(&["down.qa.test"], &[]);
    empty.key.application = "down".into();
    empty.status = Some("image x cannot be pulled".into());
    table.set_cluster("dc2", vec![empty]);
    let (addr, _stop) = serve(
        table,
        RouterOptions {
            max_body_bytes: 16,
            ..RouterOptions::default()
        },
    )
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http();

    let (status, body, headers) = send(&client, addr, Method::GET, "nobody.qa.test", b"", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("nobody.qa.test"), "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let (status, body, _) = send(&client, addr, Method::GET, "down.qa.test", b"", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("down/qa") && body.contains("cannot be pulled"),
        "{body}"
    );

    let (status, _, _) = send(
        &client,
        addr,
        Method::POST,
        "web.qa.test",
        b"more than sixteen bytes",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let gone = dead().await;
    let table = RouteTable::new();
    table.set_cluster("dc1", vec![route(&["web.qa.test"], &[gone])]);
    let (addr, _stop2) = serve(table, RouterOptions::default()).await;
    let (status, body, _) = send(&client, addr, Method::GET, "web.qa.test", b"", &[]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("web/qa"), "{body}");
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_ones_dropped() {
    let a = echo("a").await;
    let table = RouteTable::new();
    table.set_cluster("dc1", vec![route(&[], &[a])]);
    let (addr, _stop) = serve(
        table,
        RouterOptions {
            domain: Some("localhost".into()),
            ..RouterOptions::default()
        },
    )
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let (status, body, headers) = send(
        &client,
        addr,
        Method::GET,
        "web.qa.localhost:8080",
        b"",
        &[("connection", "x-secret"), ("x-secret", "1")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.starts_with(
            "a GET /path?q=1 host=web.qa.localhost:8080 xff=127.0.0.1 xfh=web.qa.localhost:8080 xfp=http secret= "
        ),
        "{body}"
    );
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let table = RouteTable::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(Router::serve(listener, table, async move {
        let _ = rx.await;
    }));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let (status, _, _) = send(&client, addr, Method::GET, "x.test", b"", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(client);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
