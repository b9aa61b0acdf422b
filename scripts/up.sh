#!/usr/bin/env bash
# Brings Berth up on this machine with a sample application running in qa and
# production, then prints where to reach them.
#
#   scripts/up.sh            (as root on Debian/Ubuntu: it installs Podman and a registry)
#
# What it does: installs and starts the local runtime (Podman's Docker API socket, an OCI
# registry on 127.0.0.1:5000, a jlink'd JRE and a Tomcat base image), builds berth, starts
# `berth server` in the background (data in .berth/, API on 127.0.0.1:7070, router on
# 127.0.0.1:8080), puts examples/java-hello and examples/java-webapp in git repositories
# (.berth/java-hello, .berth/java-webapp), builds them with the java builder (java-webapp
# with Maven first, as a WAR on Tomcat), deploys each to qa and promotes the same digest
# to production. Re-running restarts the server with a fresh build and keeps the data; an
# unchanged commit is not built again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE="$ROOT/.berth"
DATA="$STATE/data"
API=127.0.0.1:7070
ROUTER=127.0.0.1:8080
log() { printf '[berth-up %s] %s\n' "$(date +%T)" "$*" >&2; }

# The local platform runs on SQLite: no PostgreSQL (the test suite's) is installed or started.
WITH_POSTGRES=0 bash scripts/setup-runtime.sh up
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

# Each sample's source goes into a git repository, as an application team's would be
# (a new commit only when examples/APP changed), and is built from there, deployed to qa
# and promoted to production: java-hello (plain sources, javac) and java-webapp (a WAR
# built by Maven from its pom.xml, on the Tomcat base).
ship() {  # $1=application, a directory of examples/ with $1.yaml
  local app=$1 repo="$STATE/$1"
  mkdir -p "$repo"
  if [ ! -d "$repo/.git" ]; then git -C "$repo" init -q -b main; fi
  rm -rf "$repo/src" && cp -r "examples/$app/src" "$repo/src"
  if [ -f "examples/$app/pom.xml" ]; then cp "examples/$app/pom.xml" "$repo/pom.xml"; fi
  git -C "$repo" add -A
  if ! git -C "$repo" diff --cached --quiet 2>/dev/null || ! git -C "$repo" rev-parse -q --verify HEAD >/dev/null; then
    git -C "$repo" -c user.name="berth up" -c user.email=up@berth.invalid commit -q -m "$app from examples/"
  fi
  sed "s#GIT_URL#file://$repo#" "examples/$app/$app.yaml" | "$BERTH" apply -f -
  "$BERTH" build "$app"                                  # once per commit: a re-run reuses it
  "$BERTH" deploy "$app" --env qa
  "$BERTH" promote "$app" --from qa --to production      # the digest qa verified
  "$BERTH" provenance "$app" --env production
}
APPS=(java-hello java-webapp)
for app in "${APPS[@]}"; do ship "$app"; done

echo
echo "Berth is up."
echo "  API:     http://$API   (token in $DATA/bootstrap-token)"
echo "  Try:     export BERTH_SERVER=http://$API BERTH_TOKEN=\$(cat $DATA/bootstrap-token)"
echo "           $BERTH status java-hello"
for app in "${APPS[@]}"; do
  for env in qa production; do
    url="http://$app.$env.localhost:${ROUTER##*:}/"
    code=$(curl -s -o /dev/null -w '%{http_code}' --resolve "$app.$env.localhost:${ROUTER##*:}:127.0.0.1" "$url" || true)
    printf '  %-11s %-12s %s  (HTTP %s)\n' "$app" "$env:" "$url" "$code"
  done
done
