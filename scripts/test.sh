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
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
