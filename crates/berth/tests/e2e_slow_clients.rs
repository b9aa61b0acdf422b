//! Slow clients are cut off after the server's bounds, over plain HTTP and over TLS, while
//! a normal client is answered promptly throughout: one that sends its request head a byte
//! at a time (slowloris), one that sends a body a byte at a time, and over TLS one that never
//! starts the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use support::{Berth, Options};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// The bounds the servers of these tests run with.
const HEADER_BOUND: Duration = Duration::from_secs(1);
const BODY_BOUND: Duration = Duration::from_secs(2);
/// Time a loaded machine may add to a bound before the cut is seen.
const SLACK: Duration = Duration::from_secs(3);

fn bounds() -> Vec<String> {
    ["--header-read-timeout", "1", "--body-read-timeout", "2"]
        .map(str::to_owned)
        .to_vec()
}

/// Writes `head`, then `trickle` one byte every 100 ms, until the server closes the
/// connection; returns how long that took and what the server answered.
async fn trickle<S>(stream: S, head: Vec<u8>, trickle: &'static [u8]) -> (Duration, String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        if writer.write_all(&head).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        for byte in trickle.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writing.abort();
    assert!(closed.is_ok(), "the slow client was not cut off within 30 s");
    (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
}

fn assert_cut(what: &str, took: Duration, bound: Duration) {
    assert!(
        took + Duration::from_millis(300) >= bound && took <= bound + SLACK,
        "{what}: cut after {took:?}, the bound is {bound:?}"
    );
}

/// `GET /healthz` every 100 ms for `during`; each must answer 200 within a second.
async fn normal_client(berth: &Berth, during: Duration) -> usize {
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < during {
        let t = Instant::now();
        let res = berth
            .http
            .get(format!("{}/healthz", berth.api))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .unwrap_or_else(|e| panic!("a normal client was not answered while slow ones hang: {e}"));
        assert!(res.status().is_success(), "{}", res.status());
        assert!(t.elapsed() < Duration::from_secs(1));
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answered
}

fn slow_head() -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec()
}

fn slow_body(token: &str) -> Vec<u8> {
    format!(
        "PUT /api/v1/applications/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"kind\": \""
    )
    .into_bytes()
}

/// The three clients at once: the slow head and the slow body are cut after their bounds,
/// the normal one is answered throughout.
async fn slow_clients_are_cut<S, F, Fut>(berth: &Berth, connect: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let (head_stream, body_stream) = (connect().await, connect().await);
    let ((head_took, head_answer), (body_took, body_answer), answered) = tokio::join!(
        trickle(head_stream, slow_head(), b"a"),
        trickle(body_stream, slow_body(&berth.token), b"a"),
        normal_client(berth, BODY_BOUND + Duration::from_secs(1)),
    );
    assert_cut("a request head sent a byte at a time", head_took, HEADER_BOUND);
    assert!(
        !head_answer.starts_with("HTTP/1.1 2"),
        "the slow head was answered: {head_answer}"
    );
    assert_cut("a request body sent a byte at a time", body_took, BODY_BOUND);
    assert!(
        body_answer.starts_with("HTTP/1.1 408")
            && body_answer.contains("application/problem+json")
            && body_answer.contains("problems/request-timeout")
            && body_answer.contains("send the whole body within that time"),
        "a late body is answered 408 problem+json: {body_answer}"
    );
    assert!(answered >= 10, "the normal client was answered {answered} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_over_plain_http_while_others_are_served() {
    let berth = Berth::start_with(Options {
        args: bounds(),
        ..Options::default()
    })
    .await;
    let addr = berth.api.trim_start_matches("http://").to_owned();
    slow_clients_are_cut(&berth, || {
        let addr = addr.clone();
        async move { TcpStream::connect(addr).await.unwrap() }
    })
    .await;
}

/// A self-signed certificate for 127.0.0.1 (not a CA: webpki takes it as its own anchor).
fn certificate(dir: &Path) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .output()
        .expect("openssl makes the test certificate (apt-get install openssl)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_over_tls_while_others_are_served() {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

    let certs = tempfile::tempdir().unwrap();
    certificate(certs.path());
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let mut args = bounds();
    args.extend([
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ]);
    let berth = Berth::start_with(Options {
        args,
        ca: Some(cert.clone()),
        ..Options::default()
    })
    .await;
    let addr = berth.api.trim_start_matches("https://").to_owned();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = || {
        let (connector, addr) = (connector.clone(), addr.clone());
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    };
    slow_clients_are_cut(&berth, connect).await;

    // A client that opens the connection and never starts the handshake.
    let tcp = TcpStream::connect(addr.clone()).await.unwrap();
    let (took, _) = trickle(tcp, Vec::new(), b"").await;
    assert_cut("a TLS client that never starts the handshake", took, HEADER_BOUND);
}
