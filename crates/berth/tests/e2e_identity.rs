//! Identity through the real `berth server` process: the per-address rate limit sees
//! each client's address (the server passes it on), and `--rotate-bootstrap-token`
//! retires the bootstrap token for a new one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, Ipv4Addr};

use reqwest::{Method, StatusCode};
use support::{Berth, Options};

/// A client whose connections come from `address` (any 127.x.y.z reaches loopback).
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .build()
        .unwrap()
}

async fn whoami(client: &reqwest::Client, berth: &Berth, token: &str) -> StatusCode {
    client
        .get(format!("{}/api/v1/whoami", berth.api))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_token_flood_is_limited_per_client_address() {
    // Per user 5 at once, so per address 20.
    let berth = Berth::start_with(Options {
        args: ["--rate-limit", "0.1", "--rate-burst", "5"]
            .map(str::to_owned)
            .to_vec(),
        ..Options::default()
    })
    .await;
    let flooder = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(whoami(&flooder, &berth, &format!("berth_invalid{i}")).await);
    }
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(refused, 5, "{statuses:?}");
    // Another address still gets answers: the limit is not one bucket for everyone.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(
        whoami(&other, &berth, "berth_invalid").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(whoami(&other, &berth, &berth.token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_bootstrap_token_retires_the_old_one() {
    let mut berth = Berth::start().await;
    let old = berth.token.clone();
    assert_eq!(whoami(&berth.http, &berth, &old).await, StatusCode::OK);
    berth.restart_with(&["--rotate-bootstrap-token"]).await;
    let new = std::fs::read_to_string(berth.data.join("bootstrap-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(whoami(&berth.http, &berth, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&berth.http, &berth, &new).await, StatusCode::OK);
    // The rotation is in the audit log.
    berth.token = new;
    let (s, log) = berth
        .call(Method::GET, "/audit?action=bootstrap.rotate&kind=Token", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{log}");
    assert_eq!(
        log["items"].as_array().unwrap().len(),
        2,
        "revoke + create: {log}"
    );
}
