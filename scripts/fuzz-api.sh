#!/usr/bin/env bash
# Fuzzes the REST API: schemathesis (from PyPI, in a venv under target/) generates requests
# from /api/v1/openapi.json against a real `berth server` (debug binary, fresh data
# directory, the bootstrap admin token) and fails on any 5xx or on any answer the
# document does not describe (status code, content type, headers, body schema).
#
#   scripts/fuzz-api.sh              (part of scripts/test.sh)
#   FUZZ_EXAMPLES=200 scripts/fuzz-api.sh   (more cases per operation)
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv=target/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

# The whole workspace's programs, as the test run built them (`-p berth` would build them
# again with one package's features); nothing to do after scripts/test.sh's tests.
cargo build -q --workspace --bins --examples
bin=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d)
server=
kube=
cleanup() {
  for pid in $server $kube; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A Kubernetes cluster for the seed data: Berth's fake API server (real HTTP, the real
# kube client on Berth's side), so deployments run to Succeeded without a real cluster.
"$bin/examples/serve" "$work/kubeconfig" >"$work/kube.out" 2>&1 &
kube=$!
for _ in $(seq 100); do [ -s "$work/kubeconfig" ] && break; sleep 0.1; done
[ -s "$work/kubeconfig" ] || { cat "$work/kube.out"; echo "the fake Kubernetes API did not start" >&2; exit 1; }

# Rate limits are the subject of their own tests; here they would only turn requests
# into 429s.
"$bin/berth" server --listen 127.0.0.1:0 --router-listen 127.0.0.1:0 \
  --data-dir "$work/data" --rate-limit 1000000 --rate-burst 1000000 \
  --insecure-registry 127.0.0.1:5000 \
  >"$work/stdout" 2>"$work/server.log" &
server=$!
api=
for _ in $(seq 100); do
  api=$(sed -n 's/^berth API on \(http:\/\/[^ ]*\) .*/\1/p' "$work/stdout")
  [ -n "$api" ] && break
  sleep 0.1
done
[ -n "$api" ] || { cat "$work/server.log"; echo "the server did not start" >&2; exit 1; }
token=$(cat "$work/data/bootstrap-token")

# Something real for the generated requests to find: clusters (one Kubernetes), environments,
# a team, an application with a secret, a deployment in qa and its promotion to production.
"$venv/bin/python" scripts/fuzz-seed.py "$api" "$token" "$work/kubeconfig"

examples=${FUZZ_EXAMPLES:-25}
mkdir -p target/fuzz-report
rm -f target/fuzz-report/events.ndjson
set +e
# From target/fuzz-report, where schemathesis also keeps its own cache (.schemathesis).
# One worker: with two, the coverage phase's concurrent code generation crashed CPython
# 3.11 ("SystemError: AST constructor recursion depth mismatch") on a clean clone.
(cd target/fuzz-report && "../../$venv/bin/st" --no-color --config-file ../../scripts/schemathesis.toml run "$api/api/v1/openapi.json" \
  --url "$api/api/v1" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$examples" \
  --workers 1 \
  --request-timeout 10 \
  --seed 1 \
  --generation-database none \
  --report ndjson --report-ndjson-path events.ndjson)
status=$?
set -e

# How many requests were answered, by status (from the report's recorded interactions).
requests=$("$venv/bin/python" - target/fuzz-report/events.ndjson <<'PY'
import collections, json, sys
statuses = collections.Counter()
with open(sys.argv[1]) as events:
    for line in events:
        finished = json.loads(line).get("ScenarioFinished")
        for interaction in ((finished or {}).get("recorder", {}).get("interactions") or {}).values():
            if interaction.get("response"):
                statuses[interaction["response"]["status_code"]] += 1
print(" ".join(f"{code}:{n}" for code, n in sorted(statuses.items())), file=sys.stderr)
print(sum(statuses.values()))
PY
)
echo "schemathesis sent $requests requests"
if grep -q 'panicked' "$work/server.log"; then
  grep -B2 -A5 'panicked' "$work/server.log" >&2
  echo "the server panicked while fuzzed" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis found answers that break the API's contract (see above)" >&2
  exit "$status"
fi
if [ "${requests:-0}" -lt 1000 ]; then
  echo "only $requests requests were generated; expected at least 1000" >&2
  exit 1
fi
