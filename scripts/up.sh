#!/usr/bin/env bash
# Brings Berth up on this machine with a sample application running in qa and
# production, then prints where to reach them.
#
#   scripts/up.sh            (as root on Debian/Ubuntu: it installs Podman and a registry)
#
# What it does: installs and starts the local runtime (Podman's Docker API socket and an
# OCI registry on 127.0.0.1:5000), builds berth, starts `berth server` in the background
# (data in .berth/, API on 127.0.0.1:7070, router on 127.0.0.1:8080), applies
# examples/hello and deploys it to qa and production. Re-running restarts the server
# with a fresh build and keeps the data.
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

log "building berth (release; the first build takes a few minutes)"
cargo build --release -q -p berth
BERTH="$ROOT/target/release/berth"

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

"$BERTH" apply -f examples/hello/
"$BERTH" deploy hello --env qa
"$BERTH" deploy hello --env production

echo
echo "Berth is up."
echo "  API:     http://$API   (token in $DATA/bootstrap-token)"
echo "  Try:     export BERTH_SERVER=http://$API BERTH_TOKEN=\$(cat $DATA/bootstrap-token)"
echo "           $BERTH status hello"
for env in qa production; do
  url="http://hello.$env.localhost:${ROUTER##*:}/"
  code=$(curl -s -o /dev/null -w '%{http_code}' --resolve "hello.$env.localhost:${ROUTER##*:}:127.0.0.1" "$url" || true)
  echo "  $env:  $url  (HTTP $code)"
done
