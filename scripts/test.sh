#!/usr/bin/env bash
# Runs the whole test suite: format, lints, unit and integration tests (the integration
# tests use real Podman containers, a real OCI registry and a real PostgreSQL, which this
# script starts).
#
#   scripts/test.sh          (as root on Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}

bash scripts/setup-runtime.sh up
export DOCKER_HOST=unix:///run/podman/podman.sock
# The store's conformance suite runs against PostgreSQL too (setup-runtime.sh started it);
# without this the PostgreSQL tests fail rather than pass unrun.
export BERTH_TEST_POSTGRES=postgres://postgres@127.0.0.1:55432/postgres

# fmt and clippy come with the toolchain; where they are missing and rustup cannot add
# them, say so loudly instead of passing quietly.
for tool in rustfmt:fmt clippy:clippy; do
  component=${tool%%:*} sub=${tool##*:}
  if ! cargo "$sub" --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
    rustup component add "$component" >/dev/null 2>&1 || true
  fi
done
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "########## SKIPPED: cargo fmt is not installed and could not be installed ##########"
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets -q -- -D warnings
else
  echo "########## SKIPPED: cargo clippy is not installed and could not be installed ##########"
fi

# The TLS end-to-end test makes its certificates with openssl.
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

# nextest runs the tests in parallel processes with per-test timeouts; it installs from
# crates.io once per machine (kept in ~/.cargo/bin). Plain cargo test if that fails.
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked --quiet || echo "cargo-nextest could not be installed; using cargo test"
fi
nextest=false
cargo nextest --version >/dev/null 2>&1 && nextest=true
if $nextest; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

# only_tests PACKAGE [TEST]: one package's tests (or one of its test programs), one at a
# time, from the workspace build above. nextest selects them; `cargo test -p` would build
# them again with that package's own features: a second copy of most of the dependency
# tree, gigabytes of disk a CI machine may not have.
only_tests() {
  if $nextest; then
    local set="package($1)"
    [ -z "${2:-}" ] || set+=" and binary($2)"
    cargo nextest run --workspace --no-fail-fast --test-threads=1 -E "$set"
  else
    cargo test -p "$1" ${2:+--test "$2"} --no-fail-fast -- --test-threads=1
  fi
}

# Every Kubernetes manifest the renderer makes for a fixture set must validate (strictly:
# no unknown fields) against the official schemas of the oldest Kubernetes Berth
# supports (1.33, k8s-openapi's v1_33) and the newest one kubernetes-validate ships.
# The schemas come inside the PyPI package, so validation itself works offline. The
# example that renders them was built with the tests above.
venv=target/kubernetes-validate-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
schemas=$("$venv/bin/python" -c 'import kubernetes_validate, os; print(os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema"))')
newest=$(ls "$schemas" | sed -n 's/^v\([0-9.]*\)-local-strict$/\1/p' | sort -V | tail -1)
"$target/debug/examples/manifests" target/rendered-manifests
for version in 1.33.0 "$newest"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" target/rendered-manifests/*.yaml
  echo "rendered manifests valid for Kubernetes $version"
done

# The Kubernetes suite again, against real control planes built from the pinned Go modules
# (tools/kubernetes; cached, so only the first run on a machine compiles): the runtime's
# suite on one cluster, then the server end-to-end tests deploying to two (the clusters
# stand in for two datacenters). A failure to build or start them fails here, naming the
# component and its log: it is never skipped. One test at a time: Berth prunes what it
# manages cluster-wide, so two tests on one cluster would prune each other.
# Go's build cache for them (gigabytes) would never be read again once the binaries are
# cached by their inputs: it lives in a directory of its own for the one build.
gocache=$(mktemp -d)
k8s_bin=$(GOCACHE="$gocache" tools/kubernetes/build.sh) || { rm -rf "$gocache"; exit 1; }
rm -rf "$gocache"
k8s_names=(ci-$$-a ci-$$-b)
trap 'for c in "${k8s_names[@]}"; do tools/kubernetes/cluster.sh down "$c" || true; done' EXIT
k8s_kubeconfigs=()
for c in "${k8s_names[@]}"; do
  k8s_kubeconfigs+=("$(tools/kubernetes/cluster.sh up "$c")")
done
BERTH_TEST_K8S=real KUBECONFIG="${k8s_kubeconfigs[0]}" BERTH_TEST_KUBECTL="$k8s_bin/kubectl" \
  BERTH_TEST_IMAGE="registry.example.com/web@sha256:$(printf '%064d' 1)" \
  only_tests berth-runtime-kube
BERTH_TEST_K8S=real BERTH_TEST_KUBECONFIGS="${k8s_kubeconfigs[0]}:${k8s_kubeconfigs[1]}" \
  only_tests berth-server e2e_kube
for c in "${k8s_names[@]}"; do tools/kubernetes/cluster.sh down "$c"; done
trap - EXIT

# Fuzz the REST API with schemathesis against a real server: no 5xx, nothing the OpenAPI
# document does not describe, at least 1,000 generated requests.
bash scripts/fuzz-api.sh
