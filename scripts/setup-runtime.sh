#!/usr/bin/env bash
# setup-runtime.sh — a daemonless, Docker-API-compatible container runtime plus a
# local OCI registry, on a fresh Debian 12 (bookworm) machine: root, 2 cores,
# cgroup v1 "hybrid" layout, no systemd, CAP_SYS_RESOURCE
# dropped (hard rlimits cannot be raised), no container registry reachable.
#
# Verified 2026-11-26 with podman 4.3.1, runc 1.1.5, buildah 1.28.2, conmon 2.1.6,
# netavark/aardvark-dns 1.4.0, docker-registry (distribution) 2.8.2, skopeo 1.9.3,
# busybox-static 1.35.0; clients: bollard 0.21.1, oci-client 0.18.0, docker CLI 28.2.2.
#
# Usage:  setup-runtime.sh [up|install|check|status|down]        (default: up)
#   install only the apt packages (e.g. a separate, cacheable CI step).
#   up      install packages, write config, build the base image, start the podman
#           API socket, the registry and a throwaway PostgreSQL (not with
#           WITH_POSTGRES=0). Idempotent: re-running is a no-op (~1 s).
#   check   smoke test: run a container with a port mapping, push/pull via the registry.
#   status  print what is running.
#   down    stop the services this script started (by their PID files only) and
#           remove the PostgreSQL data directory.
#
# After `up`:  export DOCKER_HOST=unix:///run/podman/podman.sock
#   - bollard: Docker::connect_with_defaults() (reads DOCKER_HOST) or
#     Docker::connect_with_podman_defaults(); plain /var/run/docker.sock also works
#     because `up` symlinks it to the podman socket when nothing else is there.
#   - registry: http://127.0.0.1:5000 (plain HTTP; podman/buildah/skopeo are told it
#     is insecure by /etc/containers/registries.conf.d/50-local-runtime.conf).
#   - base image: localhost/busybox:latest (and 127.0.0.1:5000/busybox:latest), built
#     from Debian's busybox-static because nothing can be pulled from Docker Hub.
#   - PostgreSQL (Debian's, for the store's conformance suite): 127.0.0.1:55432 only,
#     user postgres without a password, data in /tmp/berth-postgres (throwaway):
#     export BERTH_TEST_POSTGRES=postgres://postgres@127.0.0.1:55432/postgres
#
# Timings seen (2 cores): apt-get update 1-3 s; package install ~15-18 s on the `rust`
# image (35 packages, ~35 MB of .debs), 41 s incl. update on a debootstrap minbase
# (218 packages); `up` after that ~1.3-2.2 s, a re-run ~0.6 s; container start 0.2-0.4 s.
set -euo pipefail

: "${LOCAL_RUNTIME_DIR:=/var/lib/berth-runtime}"   # registry data, pid files, logs
: "${PODMAN_SOCK:=/run/podman/podman.sock}"
: "${REGISTRY_ADDR:=127.0.0.1:5000}"
: "${BASE_IMAGE:=localhost/busybox:latest}"
: "${LINK_DOCKER_SOCK:=1}"                        # 0: leave /var/run/docker.sock alone
: "${JRE_IMAGE:=berth/jre:17}"                   # the java builder's default base image
: "${TOMCAT_IMAGE:=berth/tomcat:10.1}"            # the java builder's base image for a war
: "${PG_PORT:=55432}"                            # PostgreSQL, on 127.0.0.1 only
: "${PG_DIR:=/tmp/berth-postgres}"               # its data, socket and log: throwaway
: "${WITH_POSTGRES:=1}"                          # 0: neither install nor start it (up.sh)

RUN_DIR="$LOCAL_RUNTIME_DIR/run"
LOG_DIR="$LOCAL_RUNTIME_DIR/log"
REG_DIR="$LOCAL_RUNTIME_DIR/registry"
CONF=/etc/containers/containers.conf
REGCONF=/etc/containers/registries.conf.d/50-local-runtime.conf

log() { printf '[berth-setup %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# --------------------------------------------------------------------------- packages
# podman pulls in (as Depends/Recommends) conmon, containers-common, buildah,
# fuse-overlayfs, slirp4netns, uidmap, catatonit. netavark + aardvark-dns are named
# explicitly so that the netavark backend (with container-name DNS on user networks)
# is used, not CNI. iptables MUST be named: netavark 1.4 shells out to it for NAT and
# port mapping but does not depend on it, and the fresh image lacks it (it only came
# in by accident via containernetworking-plugins). runc is required: crun 1.8 fails
# here with "cgroups in hybrid mode not supported". docker-registry = distribution 2.8.2.
# openjdk-17-jdk-headless: jlink makes the JRE base image of Berth's java builder, and
# javac compiles java sources for it. libtomcat10-java + tomcat10-common: Debian's Tomcat
# 10.1 (Jakarta EE 10) jars for the servlet base image (not `tomcat10`, which is the
# systemd service around them). maven: the java builder runs `mvn package` on the build
# host for a commit with a pom.xml. postgresql: the server the store's PostgreSQL
# conformance tests run against (Debian 12 ships 15).
PKGS=(podman runc buildah catatonit netavark aardvark-dns iptables skopeo docker-registry
      busybox-static iproute2 iputils-ping curl jq openjdk-17-jdk-headless git
      libtomcat10-java tomcat10-common maven)
[ "$WITH_POSTGRES" = 0 ] || PKGS+=(postgresql)

install_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "packages: all present"; return; fi
  log "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local i
  for i in 1 2 3; do
    if apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; then
      log "packages: done"; return 0
    fi
    log "apt attempt $i failed, retrying in 5 s"; sleep 5
  done
  die "apt-get install failed"
}

# --------------------------------------------------------------------------- config
# Why each setting:
#  runtime=runc          crun 1.8.1 refuses the cgroup v1+v2 hybrid layout of this VM.
#  cgroup_manager        no systemd (PID 1 is not systemd) -> cgroupfs.
#  events_logger=file    no journald.
#  network_backend       netavark (+aardvark-dns for name resolution on user networks);
#                        explicit, because podman otherwise guesses (CNI vs netavark)
#                        and warns about Debian's CNI conflist when CNI plugins are absent.
#  default_ulimits       rootful podman asks for nofile=1048576 / nproc=4194304 by
#                        default; CAP_SYS_RESOURCE is not in the bounding set here, so
#                        runc's setrlimit fails ("error setting rlimit type 7/6:
#                        operation not permitted"). Values must stay <= the hard limits
#                        podman runs under (nofile: `ulimit -Hn`, 20000 seen; nproc:
#                        podman caps itself at 32768). NPROC is not enforced for uid 0.
write_if_changed() {  # $1=path, stdin=content; returns 0 if the file changed
  local tmp; tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mkdir -p "$(dirname "$1")"; mv "$tmp" "$1"; chmod 644 "$1"; return 0
}

CONFIG_CHANGED=0
write_containers_conf() {  # $1=nofile $2=nproc
  if write_if_changed "$CONF" <<EOF
# Written by setup-runtime.sh — see the comments there.
[containers]
default_ulimits = ["nofile=$1:$1", "nproc=$2:$2"]
log_driver = "k8s-file"

[network]
network_backend = "netavark"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  then CONFIG_CHANGED=1; log "config: wrote $CONF (nofile=$1 nproc=$2)"; fi
}

configure() {
  local hn hu
  hn=$(ulimit -Hn); [ "$hn" = unlimited ] && hn=65536; [ "$hn" -gt 65536 ] && hn=65536
  hu=$(ulimit -Hu); [ "$hu" = unlimited ] && hu=16384; [ "$hu" -gt 16384 ] && hu=16384
  # Keep an existing, already-validated value (idempotent) unless it exceeds the limits.
  if [ -f "$CONF" ] && grep -q 'setup-runtime.sh' "$CONF"; then
    local cur; cur=$(sed -n 's/.*"nofile=\([0-9]*\):.*/\1/p' "$CONF")
    if [ -n "$cur" ] && [ "$cur" -le "$hn" ]; then hn=$cur; fi
    cur=$(sed -n 's/.*"nproc=\([0-9]*\):.*/\1/p' "$CONF")
    if [ -n "$cur" ] && [ "$cur" -le "$hu" ]; then hu=$cur; fi
  fi
  if [ -f "$CONF" ] && ! grep -q 'setup-runtime.sh' "$CONF" && [ ! -f "$CONF.orig-local-runtime" ]; then
    cp -p "$CONF" "$CONF.orig-local-runtime"; log "config: kept the old $CONF as $CONF.orig-local-runtime"
  fi
  write_containers_conf "$hn" "$hu"
  local extra=""
  case "$REGISTRY_ADDR" in 127.0.0.1:5000|localhost:5000) ;;
    *) extra=$(printf '\n[[registry]]\nlocation = "%s"\ninsecure = true' "$REGISTRY_ADDR") ;;
  esac
  if write_if_changed "$REGCONF" <<EOF
# Written by setup-runtime.sh: the local registry speaks plain HTTP.
[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "localhost:5000"
insecure = true
$extra
EOF
  then CONFIG_CHANGED=1; log "config: wrote $REGCONF"; fi
}

# --------------------------------------------------------------------------- base image
# No registry can be pulled from, so the base image is made from busybox-static.
build_base_image() {
  if podman image exists "$BASE_IMAGE"; then log "image: $BASE_IMAGE present"; return; fi
  local root="$LOCAL_RUNTIME_DIR/busybox-rootfs" a
  rm -rf "$root"; mkdir -p "$root"/{bin,etc,tmp,www,proc,sys,dev,root}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  echo 'hello from busybox' >"$root/www/index.html"
  tar -C "$root" -cf "$LOCAL_RUNTIME_DIR/busybox-rootfs.tar" .
  podman import -q --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
    "$LOCAL_RUNTIME_DIR/busybox-rootfs.tar" "$BASE_IMAGE" >/dev/null
  rm -rf "$root" "$LOCAL_RUNTIME_DIR/busybox-rootfs.tar"
  log "image: built $BASE_IMAGE ($(podman image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
}

# Prove that `podman run` works with the config; if the rlimits are still too high
# for this process's hard limits, fall back to 1024:1024 (known to work).
validate_run() {
  local out
  if out=$(podman run --rm "$BASE_IMAGE" true 2>&1); then log "podman run: OK"; return; fi
  if grep -q 'rlimit' <<<"$out"; then
    log "podman run failed on rlimits ($out); falling back to nofile/nproc=1024"
    write_containers_conf 1024 1024
    podman run --rm "$BASE_IMAGE" true || die "podman run still fails"
    log "podman run: OK (1024 rlimits)"
  else
    die "podman run failed: $out"
  fi
}

# --------------------------------------------------------------------------- services
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# Whether the service of PID file $1 works in a directory that has since been deleted
# (one started by an older version of this script from a checkout removed since): conmon
# inherits podman's working directory and fails every container start with "Failed to
# get working directory" ("write child: broken pipe" through the API).
cwd_gone() { pid_alive "$1" && [[ "$(readlink "/proc/$(cat "$1")/cwd")" == *" (deleted)" ]]; }
api_up() { curl -fsS --max-time 2 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1; }
reg_up() { curl -fsS --max-time 2 "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; }
wait_for() {  # $1=name $2=check-fn
  local i; for i in $(seq 1 100); do "$2" && return 0; sleep 0.1; done
  die "$1 did not come up (see $LOG_DIR)"
}

start_podman_api() {
  # A config change needs a restart of a service that this script started, and so does
  # one whose working directory is gone.
  if cwd_gone "$RUN_DIR/podman-api.pid"; then CONFIG_CHANGED=1; fi
  if [ "$CONFIG_CHANGED" = 1 ] && pid_alive "$RUN_DIR/podman-api.pid"; then
    log "podman API: restarting to pick up new config (or a working directory of its own)"
    local pid i; pid=$(cat "$RUN_DIR/podman-api.pid"); kill "$pid"
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  elif [ "$CONFIG_CHANGED" = 1 ] && api_up; then
    log "podman API: WARNING config changed but the running service was not started by this script; restart it by hand"
  fi
  if api_up; then log "podman API: already up at $PODMAN_SOCK"; return; fi
  mkdir -p "$(dirname "$PODMAN_SOCK")"; rm -f "$PODMAN_SOCK"
  # --time=0: never exit on idle. setsid+nohup: survive the calling shell; output goes
  # to a log file and stdin is /dev/null so a CI runner's pipes are not held open.
  # (Run from a non-interactive shell, setsid does not fork, so $! is podman's PID.)
  # Started in /, never in the caller's directory: see cwd_gone.
  (cd / && exec setsid nohup podman system service --time=0 "unix://$PODMAN_SOCK" \
    >>"$LOG_DIR/podman-api.log" 2>&1 </dev/null) &
  echo $! >"$RUN_DIR/podman-api.pid"
  wait_for "podman API" api_up
  log "podman API: up at $PODMAN_SOCK (pid $(cat "$RUN_DIR/podman-api.pid"))"
}

link_docker_sock() {
  [ "$LINK_DOCKER_SOCK" = 1 ] || return 0
  if [ -S /var/run/docker.sock ] && ! [ -L /var/run/docker.sock ]; then
    log "docker.sock: a real Docker socket exists, leaving it alone"; return
  fi
  ln -sfn "$PODMAN_SOCK" /var/run/docker.sock
}

start_registry() {
  mkdir -p "$REG_DIR/data"
  write_if_changed "$REG_DIR/config.yml" <<EOF || true
version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  secret: berth-registry-not-secret
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  if reg_up; then log "registry: already up at $REGISTRY_ADDR"; return; fi
  # Debian's unit would run it as user docker-registry via systemd; there is no
  # systemd here, so run the binary directly (as root, data under $REG_DIR).
  (cd / && exec setsid nohup docker-registry serve "$REG_DIR/config.yml" \
    >>"$LOG_DIR/registry.log" 2>&1 </dev/null) &
  echo $! >"$RUN_DIR/registry.pid"
  wait_for "registry" reg_up
  log "registry: up at http://$REGISTRY_ADDR (pid $(cat "$RUN_DIR/registry.pid"))"
}

# The newest PostgreSQL server installed (Debian keeps each major in its own directory).
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
pg_up() { local bin; bin=$(pg_bin); [ -n "$bin" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

# A PostgreSQL of our own rather than Debian's cluster: on loopback only, on a port of its
# own, with a data directory made here (initdb) that `down` removes. It runs as the
# postgres user (the server refuses root) without systemd, through pg_ctl.
start_postgres() {
  local bin; bin=$(pg_bin)
  [ -n "$bin" ] || die "postgresql: no server under /usr/lib/postgresql (apt-get install -y postgresql)"
  if pg_up; then log "postgresql: already up at 127.0.0.1:$PG_PORT"; return; fi
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    rm -rf "$PG_DIR"
    install -d -o postgres -g postgres -m 0700 "$PG_DIR"
    runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
      -E UTF8 --no-locale >>"$LOG_DIR/postgres-initdb.log" 2>&1 \
      || die "postgresql: initdb failed (see $LOG_DIR/postgres-initdb.log)"
  fi
  # fsync off: the data is thrown away, and tests commit a lot.
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=300 -c fsync=off" \
    start >/dev/null || die "postgresql: did not start (see $PG_DIR/postgres.log)"
  wait_for "postgresql" pg_up
  log "postgresql: up at postgres://postgres@127.0.0.1:$PG_PORT/postgres (data $PG_DIR)"
}

stop_postgres() {
  local bin; bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null \
      && log "stopped postgresql ($PG_DIR)"
  fi
  rm -rf "$PG_DIR"
}

push_base_image() {
  local name="${BASE_IMAGE#localhost/}" ; local repo="${name%:*}" tag="${name##*:}"
  if curl -fsS "http://$REGISTRY_ADDR/v2/$repo/tags/list" 2>/dev/null | grep -q "\"$tag\""; then
    log "registry: $REGISTRY_ADDR/$name present"; return
  fi
  podman push -q "$BASE_IMAGE" "$REGISTRY_ADDR/$name" >/dev/null
  log "registry: pushed $REGISTRY_ADDR/$name"
}

# --------------------------------------------------------------------------- JRE base image
# The modules of the JRE: what a servlet container and the usual web application need
# (Tomcat: java.management, java.naming, java.instrument, java.security.jgss, java.sql;
# Spring and java.beans: java.desktop; JMX over RMI: java.rmi, java.management.rmi).
JRE_MODULES=java.base,java.logging,java.management,java.management.rmi,java.naming,java.net.http,java.xml,java.xml.crypto,java.instrument,java.security.jgss,java.security.sasl,java.sql,java.desktop,java.rmi,java.scripting,java.compiler,jdk.httpserver,jdk.crypto.ec,jdk.unsupported,jdk.management,jdk.naming.dns,jdk.charsets,jdk.zipfs

# The dev.berth.recipe label of an image in the local registry (empty when absent): a
# hash of how the image is made, so that a changed recipe rebuilds it.
registry_recipe() {  # $1=repository $2=tag
  local manifest config
  manifest=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_ADDR/v2/$1/manifests/$2" 2>/dev/null) || return 0
  config=$(jq -r '.config.digest // empty' <<<"$manifest")
  [ -n "$config" ] || return 0
  curl -fsS "http://$REGISTRY_ADDR/v2/$1/blobs/$config" 2>/dev/null \
    | jq -r '.config.Labels["dev.berth.recipe"] // empty' || true
}

jre_recipe() { { declare -f build_jre_image; echo "$JRE_MODULES"; java -version 2>&1; } | sha256sum | cut -c1-16; }

# The java builder puts applications on a JRE image, and nothing can be pulled from
# public registries: jlink a small runtime from the machine's JDK, add the shared
# libraries it links against and busybox, and push it to the local registry as
# $REGISTRY_ADDR/$JRE_IMAGE.
build_jre_image() {
  local ref="$REGISTRY_ADDR/$JRE_IMAGE" repo="${JRE_IMAGE%:*}" tag="${JRE_IMAGE##*:}" recipe
  recipe=$(jre_recipe)
  if [ "$(registry_recipe "$repo" "$tag")" = "$recipe" ]; then
    log "registry: $ref present"; return
  fi
  local jdk; jdk=$(dirname "$(dirname "$(readlink -f "$(command -v jlink)")")")
  local root="$LOCAL_RUNTIME_DIR/jre-rootfs" lib
  rm -rf "$root"; mkdir -p "$root"/{bin,etc,tmp,app}
  chmod 1777 "$root/tmp"
  "$jdk/bin/jlink" --module-path "$jdk/jmods" --add-modules "$JRE_MODULES" \
    --strip-debug --no-man-pages --no-header-files --compress=2 --output "$root/opt/java"
  # The dynamic loader and every library the runtime links against, at the same paths.
  for lib in $( { ldd "$root/opt/java/bin/java"; find "$root/opt/java/lib" -name '*.so' -exec ldd {} \; ; } 2>/dev/null \
               | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
    [ -e "$lib" ] && { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
  cp /bin/busybox "$root/bin/busybox"
  for lib in sh ls cat env wget; do ln -sf busybox "$root/bin/$lib"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  tar -C "$root" -cf "$LOCAL_RUNTIME_DIR/jre-rootfs.tar" .
  podman import -q --change 'ENV PATH=/opt/java/bin:/bin' --change 'ENV JAVA_HOME=/opt/java' \
    --change "LABEL dev.berth.recipe=$recipe" \
    --change 'CMD ["java", "-version"]' "$LOCAL_RUNTIME_DIR/jre-rootfs.tar" "localhost/$JRE_IMAGE" >/dev/null
  rm -rf "$root" "$LOCAL_RUNTIME_DIR/jre-rootfs.tar"
  podman run --rm "localhost/$JRE_IMAGE" java -version >/dev/null 2>&1 || die "the JRE image does not run java"
  podman push -q --format oci "localhost/$JRE_IMAGE" "$ref" >/dev/null
  log "registry: pushed $ref (jlink'd from $jdk)"
}

# --------------------------------------------------------------------------- Tomcat base image
# The java builder's base for a war: the JRE image's layer (shared, so mounted, never
# uploaded twice) plus one layer of Tomcat 10.1 from Debian's packages, configured by
# scripts/tomcat/ (HTTP only, logs to stdout, stops on SIGTERM after the requests in
# flight, exits when its application fails to start). Labels tell the java builder where
# the application goes.
TOMCAT_HOME=/usr/local/tomcat
build_tomcat_image() {
  local ref="$REGISTRY_ADDR/$TOMCAT_IMAGE" repo="${TOMCAT_IMAGE%:*}" tag="${TOMCAT_IMAGE##*:}" recipe
  local here; here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  local version; version=$(dpkg-query -W -f='${Version}' libtomcat10-java)
  recipe=$( { declare -f build_tomcat_image; echo "$version"; jre_recipe; cat "$here"/tomcat/*.xml \
              "$here"/tomcat/*.properties "$here"/tomcat/src/dev/berth/tomcat/*.java; } | sha256sum | cut -c1-16)
  if [ "$(registry_recipe "$repo" "$tag")" = "$recipe" ]; then
    log "registry: $ref present"; return
  fi
  local root="$LOCAL_RUNTIME_DIR/tomcat-rootfs" jar real
  rm -rf "$root"; mkdir -p "$root$TOMCAT_HOME"/{bin,lib,conf,webapps,logs,temp,work}
  cp -L /usr/share/tomcat10/bin/bootstrap.jar /usr/share/tomcat10/bin/tomcat-juli.jar "$root$TOMCAT_HOME/bin/"
  # By their real names: the jars' manifests name each other so (Class-Path). Not
  # catalina-ant (Ant tasks) nor tomcat-jni (the native APR library is not there).
  for jar in /usr/share/tomcat10/lib/*.jar; do
    case "$(basename "$jar")" in catalina-ant.jar|tomcat-jni.jar) continue ;; esac
    real=$(readlink -f "$jar"); cp "$real" "$root$TOMCAT_HOME/lib/$(basename "$real")"
  done
  # Jasper compiles JSPs with the Eclipse compiler, named so in its Class-Path.
  cp -L /usr/share/java/eclipse-jdt-core.jar "$root$TOMCAT_HOME/lib/eclipse-jdt-core.jar"
  cp "$here"/tomcat/{server.xml,context.xml,web.xml,logging.properties} "$root$TOMCAT_HOME/conf/"
  local classes; classes=$(mktemp -d)
  javac --release 17 -nowarn -d "$classes" -cp "$root$TOMCAT_HOME/lib/*" "$here"/tomcat/src/dev/berth/tomcat/*.java
  # LastError, a log handler, on the system class path (bin/berth-juli.jar: the log
  # manager makes handlers with the system class loader); the listener, which needs
  # Catalina's classes, in lib/ with them.
  jar --create --file "$root$TOMCAT_HOME/bin/berth-juli.jar" -C "$classes" dev/berth/tomcat/LastError.class
  rm "$classes"/dev/berth/tomcat/LastError.class
  jar --create --file "$root$TOMCAT_HOME/lib/berth-tomcat.jar" -C "$classes" .
  rm -rf "$classes"
  local ctr; ctr=$(buildah from -q --pull=never "localhost/$JRE_IMAGE")
  buildah copy -q "$ctr" "$root$TOMCAT_HOME" "$TOMCAT_HOME" >/dev/null
  rm -rf "$root"
  # catalina.sh's settings, without the shell script: java is PID 1 and gets SIGTERM.
  local cp="$TOMCAT_HOME/bin/bootstrap.jar:$TOMCAT_HOME/bin/tomcat-juli.jar:$TOMCAT_HOME/bin/berth-juli.jar"
  buildah config \
    --entrypoint "[\"java\", \"-Dcatalina.home=$TOMCAT_HOME\", \"-Dcatalina.base=$TOMCAT_HOME\", \"-Djava.io.tmpdir=$TOMCAT_HOME/temp\", \"-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager\", \"-Djava.util.logging.config.file=$TOMCAT_HOME/conf/logging.properties\", \"-Djdk.tls.ephemeralDHKeySize=2048\", \"-Djava.protocol.handler.pkgs=org.apache.catalina.webresources\", \"--add-opens=java.base/java.lang=ALL-UNNAMED\", \"--add-opens=java.base/java.io=ALL-UNNAMED\", \"--add-opens=java.base/java.util=ALL-UNNAMED\", \"--add-opens=java.base/java.util.concurrent=ALL-UNNAMED\", \"--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED\", \"-cp\", \"$cp\", \"org.apache.catalina.startup.Bootstrap\", \"start\"]" \
    --cmd '[]' --env CATALINA_HOME="$TOMCAT_HOME" --workingdir "$TOMCAT_HOME" --port 8080 \
    --label dev.berth.recipe="$recipe" \
    --label dev.berth.servlet-container="tomcat/${version%%-*}" \
    --label dev.berth.webapps="$TOMCAT_HOME/webapps" "$ctr"
  buildah commit -q --format oci --rm "$ctr" "localhost/$TOMCAT_IMAGE" >/dev/null
  podman run --rm --entrypoint java "localhost/$TOMCAT_IMAGE" -cp "$TOMCAT_HOME/lib/*" \
    org.apache.catalina.util.ServerInfo >/dev/null 2>&1 || die "the Tomcat image does not run Tomcat"
  podman push -q --format oci "localhost/$TOMCAT_IMAGE" "$ref" >/dev/null
  log "registry: pushed $ref (Tomcat ${version%%-*} from Debian's packages)"
}

# --------------------------------------------------------------------------- commands
cmd_up() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  install_packages
  configure
  build_base_image
  validate_run
  start_podman_api
  link_docker_sock
  start_registry
  push_base_image
  build_jre_image
  build_tomcat_image
  [ "$WITH_POSTGRES" = 0 ] || start_postgres
  log "ready: export DOCKER_HOST=unix://$PODMAN_SOCK ; registry http://$REGISTRY_ADDR"
}

cmd_check() {
  local name="local-runtime-check-$$" port=18999 ref="$REGISTRY_ADDR/local-runtime-check:latest" i
  podman run -d --rm --name "$name" -p "127.0.0.1:$port:8080" "$BASE_IMAGE" \
    httpd -f -p 8080 -h /www >/dev/null
  local ok=0
  for i in $(seq 1 50); do
    if curl -fs "http://127.0.0.1:$port/index.html" >/dev/null; then ok=1; break; fi; sleep 0.1
  done
  [ "$ok" = 1 ] || { podman rm -f -t0 "$name" >/dev/null; die "port mapping check failed"; }
  podman rm -f -t0 "$name" >/dev/null
  podman tag "$BASE_IMAGE" "$ref"
  podman push -q "$ref" >/dev/null
  podman rmi "$ref" >/dev/null
  curl -fsS -X POST --unix-socket "$PODMAN_SOCK" \
    "http://d/v1.41/images/create?fromImage=${ref%:*}&tag=latest" | grep -q 'Download complete' \
    || die "pull through the Docker API failed"
  podman rmi "$ref" >/dev/null
  curl -fsS --unix-socket "$PODMAN_SOCK" http://d/v1.41/containers/json >/dev/null
  log "check: OK (run + port mapping, push, pull via /images/create, /containers/json)"
}

cmd_status() {
  printf 'podman API  %s  %s\n' "$(api_up && echo up || echo down)" "$PODMAN_SOCK"
  printf 'registry    %s  http://%s\n' "$(reg_up && echo up || echo down)" "$REGISTRY_ADDR"
  printf 'postgresql  %s  127.0.0.1:%s\n' "$(pg_up && echo up || echo down)" "$PG_PORT"
  podman info --format 'runtime={{.Host.OCIRuntime.Name}} cgroups={{.Host.CgroupManager}}/{{.Host.CgroupsVersion}} network={{.Host.NetworkBackend}} storage={{.Store.GraphDriverName}}' 2>/dev/null || true
}

cmd_down() {
  local f
  for f in "$RUN_DIR/podman-api.pid" "$RUN_DIR/registry.pid"; do
    if pid_alive "$f"; then kill "$(cat "$f")" && log "stopped pid $(cat "$f") ($(basename "$f" .pid))"; fi
    rm -f "$f"
  done
  stop_postgres
}

case "${1:-up}" in
  up) cmd_up ;;
  install) install_packages ;;
  check) cmd_check ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *) die "usage: $0 [up|install|check|status|down]" ;;
esac
