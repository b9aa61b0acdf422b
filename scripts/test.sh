#!/usr/bin/env bash
# Runs the whole test suite: format, lints, unit and integration tests (the integration
# tests use real Podman containers and a real OCI registry, which this script starts).
#
#   scripts/test.sh          (as root on Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-runtime.sh up
export DOCKER_HOST=unix:///run/podman/podman.sock

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The TLS end-to-end test makes its certificates with openssl.
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

# Fuzz the REST API with schemathesis against a real server: no 5xx, nothing the OpenAPI
# document does not describe, at least 1,000 generated requests.
bash scripts/fuzz-api.sh
