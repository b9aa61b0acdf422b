#!/usr/bin/env bash
# Brings Berth up on this machine with a sample application running in qa and
# production, then prints where to reach them.
#
#   scripts/up.sh            (as root on Debian/Ubuntu: it installs Podman and a registry)
#
# What it does: installs and starts the local runtime (Podman's Docker API socket, an OCI
# registry on 127.0.0.1:5000 and a jlink'd JRE base image), builds berth, starts
# `berth server` in the background (data in .berth/, API on 127.0.0.1:7070, router on
# 127.0.0.1:8080), puts examples/java-hello in a git repository (.berth/java-hello),
# builds it with the java builder, deploys it to qa and promotes the same digest to
# production. Re-running restarts the server with a fresh build and keeps the data; an
# unchanged commit is not built again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE="$ROOT/.berth"
DATA="$STATE/data"
API=127.0.0.1:7070
ROUTER=127.0.0.1:8080
log() { printf '[berth-up %s] %s\n' "$(date +%T)" "$*" >&2; }

bash scripts/setup-runtime.sh up
export DOCKER_HOST=unix:///run/podman/podman.sock

# A debug build: on 2 cores it takes half the time of a release build on a fresh machine,
# and it shares its artifacts with scripts/test.sh. (Benchmarks use release builds.)
log "building berth (the first build takes a few minutes)"
cargo build -q -p berth
BERTH="${CARGO_TARGET_DIR:-$ROOT/target}/debug/berth"

mkdir -p "$STATE"
if [ -f "$STATE/server.pid" ] && kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; then
  log "stopping the running server (pid $(cat "$STATE/server.pid"))"
  kill "$(cat "$STATE/server.pid")"
  for _ in $(seq 1 50); do kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null || break; sleep 0.1; done
fi
setsid nohup "$BERTH" server --listen "$API" --router-listen "$ROUTER" --data-dir "$DATA" \
  --insecure-registry 127.0.0.1:5000 >>"$STATE/server.log" 2>&1 </dev/null &
echo $! >"$STATE/server.pid"
for _ in $(seq 1 100); do
  curl -fsS "http://$API/healthz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null || { tail -20 "$STATE/server.log"; exit 1; }
  sleep 0.1
done
log "server up (pid $(cat "$STATE/server.pid"), log $STATE/server.log)"

export BERTH_SERVER="http://$API"
BERTH_TOKEN=$(cat "$DATA/bootstrap-token")
export BERTH_TOKEN

"$BERTH" apply -f examples/hello/platform.yaml

# The sample's source goes into a git repository, as an application team's would be;
# a new commit only when examples/java-hello changed.
REPO="$STATE/java-hello"
mkdir -p "$REPO"
if [ ! -d "$REPO/.git" ]; then git -C "$REPO" init -q -b main; fi
rm -rf "$REPO/src" && cp -r examples/java-hello/src "$REPO/src"
git -C "$REPO" add -A
if ! git -C "$REPO" diff --cached --quiet 2>/dev/null || ! git -C "$REPO" rev-parse -q --verify HEAD >/dev/null; then
  git -C "$REPO" -c user.name="berth up" -c user.email=up@berth.invalid commit -q -m "java-hello from examples/"
fi
sed "s#GIT_URL#file://$REPO#" examples/java-hello/java-hello.yaml | "$BERTH" apply -f -

"$BERTH" build java-hello                                  # once per commit: a re-run reuses it
"$BERTH" deploy java-hello --env qa
"$BERTH" promote java-hello --from qa --to production      # the digest qa verified
"$BERTH" provenance java-hello --env production

echo
echo "Berth is up."
echo "  API:     http://$API   (token in $DATA/bootstrap-token)"
echo "  Try:     export BERTH_SERVER=http://$API BERTH_TOKEN=\$(cat $DATA/bootstrap-token)"
echo "           $BERTH status java-hello"
for env in qa production; do
  url="http://java-hello.$env.localhost:${ROUTER##*:}/"
  code=$(curl -s -o /dev/null -w '%{http_code}' --resolve "java-hello.$env.localhost:${ROUTER##*:}:127.0.0.1" "$url" || true)
  echo "  $env:  $url  (HTTP $code)"
done
