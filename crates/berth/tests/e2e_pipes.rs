//! The CLI writing into a pipe whose reader has gone (`berth describe application web | head`):
//! every command ends quietly, exit code 0 and nothing on stderr, as a Unix tool does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Stdio;

use reqwest::Method;
use support::{Berth, web_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_ends_quietly_when_the_reader_of_its_output_is_gone() {
    let berth = Berth::start().await;
    berth.platform(60).await;
    let (s, b) = berth
        .call(
            Method::PUT,
            "/applications/web",
            Some(web_app("hi", 1, "/healthz")),
        )
        .await;
    assert!(s.is_success(), "{b}");

    let commands: &[&[&str]] = &[
        &["describe", "application", "web"],
        &["get", "applications"],
        &["get", "application", "web", "-o", "yaml"],
        &["get", "clusters"],
        &["get", "environments"],
        &["status", "web"],
        &["events"],
        &["whoami"],
        &["token", "list"],
        &["audit"],
        &["audit", "verify"],
    ];
    for args in commands {
        // The control: the command works and prints something when someone reads it.
        let out = berth.cli(args);
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "berth {args:?} should print something: {out:?}"
        );

        // A pipe whose reading end is closed before the command writes: every write fails
        // with EPIPE (Rust ignores SIGPIPE, so the process sees the error).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = berth
            .cli_command(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?} into a closed pipe: status {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "berth {args:?} into a closed pipe should print nothing, printed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
