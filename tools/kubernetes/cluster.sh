#!/usr/bin/env bash
# Starts and stops a Kubernetes control plane on loopback, built by build.sh.
#
#   tools/kubernetes/cluster.sh up NAME      # start (building first if needed); prints the kubeconfig path
#   tools/kubernetes/cluster.sh down NAME    # stop it and remove its work directory
#   tools/kubernetes/cluster.sh status NAME  # the components' state
#   tools/kubernetes/cluster.sh kubeconfig NAME
#
# Each cluster lives in $BERTH_K8S_WORK/NAME (default /tmp/berth-k8s/NAME): certificates and
# the service-account key (made with openssl), etcd's data, each component's log, and the
# admin kubeconfig at NAME/kubeconfig. Every cluster takes its own block of six ports
# (BERTH_K8S_PORT_BASE, else the first free block from 21000 up), so several run at once.
# Components: etcd (--unsafe-no-fsync), kube-apiserver (RBAC), kube-controller-manager,
# kube-scheduler and kwok, which plays the kubelet for BERTH_K8S_NODES (default 3) fake nodes
# so that pods become Running and Ready without containers.
# For big loads (the benchmark): BERTH_K8S_NODE_PODS, BERTH_K8S_NODE_CPU and
# BERTH_K8S_NODE_MEMORY (each node's capacity, default 250 pods, 64 CPUs, 256Gi) and
# BERTH_K8S_CLIENT_QPS (the controller-manager's and scheduler's API rate, default
# Kubernetes' own: 20 and 50 requests a second).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work_root=${BERTH_K8S_WORK:-/tmp/berth-k8s}
nodes=${BERTH_K8S_NODES:-3}
node_pods=${BERTH_K8S_NODE_PODS:-250}
node_cpu=${BERTH_K8S_NODE_CPU:-64}
node_memory=${BERTH_K8S_NODE_MEMORY:-256Gi}
client_qps=()
[ -n "${BERTH_K8S_CLIENT_QPS:-}" ] &&
    client_qps=(--kube-api-qps="$BERTH_K8S_CLIENT_QPS" --kube-api-burst="$((BERTH_K8S_CLIENT_QPS * 2))")
wait_seconds=${BERTH_K8S_WAIT:-180}
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
fail() {
    echo "cluster.sh: $*" >&2
    exit 1
}

[ $# -ge 2 ] || usage
cmd=$1
name=$2
[[ $name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || fail "cluster name '$name' must be lowercase letters, digits and '-' (at most 31)"
W=$work_root/$name

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_ports() {
    local base
    if [ -n "${BERTH_K8S_PORT_BASE:-}" ]; then
        base=$BERTH_K8S_PORT_BASE
        for i in 0 1 2 3 4 5; do
            port_free $((base + i)) || fail "port $((base + i)) (BERTH_K8S_PORT_BASE=$base + $i) is in use"
        done
        echo "$base"
        return
    fi
    # Skip blocks that another cluster recorded, even if it is down for a moment.
    local taken
    taken=$(cat "$work_root"/*/ports 2>/dev/null || true)
    for ((base = 21000; base < 30000; base += 10)); do
        grep -qx "$base" <<<"$taken" && continue
        local ok=1
        for i in 0 1 2 3 4 5; do port_free $((base + i)) || { ok=0; break; }; done
        [ "$ok" = 1 ] && { echo "$base"; return; }
    done
    fail "no free block of six ports between 21000 and 30000"
}

certs() {
    local p=$W/pki
    mkdir -p "$p"
    (
        cd "$p"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=berth-$name-ca" 2>/dev/null
        leaf() { # name subject [extensions]
            openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
                -out "$1.crt" -extfile <(printf '%s\n' "${3:-extendedKeyUsage=clientAuth}") 2>/dev/null
            rm -f "$1.csr"
        }
        leaf apiserver "/CN=kube-apiserver" \
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
        leaf admin "/O=system:masters/CN=berth-admin"
        leaf controller-manager "/CN=system:kube-controller-manager"
        leaf scheduler "/CN=system:kube-scheduler"
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    ) || fail "openssl could not make the certificates in $p"
}

kubeconfig() { # file user
    cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 "$W/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$W/pki/$2.crt")
    client-key-data: $(base64 -w0 "$W/pki/$2.key")
contexts:
- name: $name
  context: {cluster: $name, user: $2}
current-context: $name
KC
}

start() { # component args...
    local c=$1
    shift
    setsid "$@" >"$W/logs/$c.log" 2>&1 </dev/null &
    echo $! >"$W/pids/$c"
}

alive() { [ -f "$W/pids/$1" ] && kill -0 "$(cat "$W/pids/$1")" 2>/dev/null; }

wait_for() { # component check-command...
    local c=$1
    shift
    local end=$((SECONDS + wait_seconds))
    until "$@" >/dev/null 2>&1; do
        if ! alive "$c"; then
            echo "cluster.sh: $c exited while starting; the end of its log ($W/logs/$c.log):" >&2
            tail -n 25 "$W/logs/$c.log" >&2
            down_quiet
            fail "cluster '$name' did not come up: $c failed (log: $W/logs/$c.log)"
        fi
        if [ $SECONDS -ge $end ]; then
            echo "cluster.sh: $c is not healthy after ${wait_seconds}s; the end of its log ($W/logs/$c.log):" >&2
            tail -n 25 "$W/logs/$c.log" >&2
            down_quiet
            fail "cluster '$name' did not come up: $c not healthy in ${wait_seconds}s (log: $W/logs/$c.log)"
        fi
        sleep 0.5
    done
}

stop_all() {
    local c pid
    for ((i = ${#components[@]} - 1; i >= 0; i--)); do
        c=${components[i]}
        [ -f "$W/pids/$c" ] || continue
        pid=$(cat "$W/pids/$c")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$W/pids/$c"
    done
}

# On a failed start the logs stay for reading; only the processes go.
down_quiet() { stop_all; }

up() {
    if [ -d "$W" ]; then
        for c in "${components[@]}"; do
            alive "$c" && fail "cluster '$name' is already running (tools/kubernetes/cluster.sh down $name first)"
        done
        rm -rf "$W"
    fi
    local bin
    bin=$("$here/build.sh") || fail "building the control plane failed (see above)"
    stages=$(dirname "$bin")/stages
    mkdir -p "$W"/{logs,pids,etcd,cert-dir}
    local base
    base=$(pick_ports)
    echo "$base" >"$W/ports"
    etcd_port=$base
    etcd_peer=$((base + 1))
    api_port=$((base + 2))
    cm_port=$((base + 3))
    sched_port=$((base + 4))
    kwok_port=$((base + 5))
    certs
    kubeconfig "$W/kubeconfig" admin
    kubeconfig "$W/controller-manager.kubeconfig" controller-manager
    kubeconfig "$W/scheduler.kubeconfig" scheduler
    local curl_admin=(curl -sf --cacert "$W/pki/ca.crt" --cert "$W/pki/admin.crt" --key "$W/pki/admin.key")

    start etcd "$bin/etcd" --name=default --data-dir="$W/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
        --initial-cluster="default=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync=true \
        --quota-backend-bytes=4294967296 --log-level=warn
    wait_for etcd curl -sf "http://127.0.0.1:$etcd_port/health"

    start kube-apiserver "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 --secure-port="$api_port" --advertise-address=127.0.0.1 \
        --endpoint-reconciler-type=none --cert-dir="$W/cert-dir" \
        --tls-cert-file="$W/pki/apiserver.crt" --tls-private-key-file="$W/pki/apiserver.key" \
        --client-ca-file="$W/pki/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$W/pki/sa.pub" --service-account-signing-key-file="$W/pki/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 --authorization-mode=Node,RBAC --allow-privileged=true
    wait_for kube-apiserver "${curl_admin[@]}" "https://127.0.0.1:$api_port/readyz"

    start kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig="$W/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$W/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$W/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$cm_port" --cert-dir="$W/cert-dir" \
        --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$W/pki/sa.key" --root-ca-file="$W/pki/ca.crt" \
        --cluster-signing-cert-file="$W/pki/ca.crt" --cluster-signing-key-file="$W/pki/ca.key" \
        --service-cluster-ip-range=10.96.0.0/16 "${client_qps[@]}"
    wait_for kube-controller-manager curl -skf "https://127.0.0.1:$cm_port/healthz"

    start kube-scheduler "$bin/kube-scheduler" --kubeconfig="$W/scheduler.kubeconfig" \
        --authentication-kubeconfig="$W/scheduler.kubeconfig" \
        --authorization-kubeconfig="$W/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$sched_port" --leader-elect=false "${client_qps[@]}"
    wait_for kube-scheduler curl -skf "https://127.0.0.1:$sched_port/healthz"

    local config=$W/kwok.yaml
    : >"$config"
    for f in node-initialize.yaml node-heartbeat-with-lease.yaml pod-ready.yaml pod-complete.yaml pod-delete.yaml; do
        { cat "$stages/$f"; echo "---"; } >>"$config"
    done
    start kwok "$bin/kwok" --kubeconfig="$W/kubeconfig" --config="$config" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
        --cidr=10.244.0.0/16 --node-ip=10.0.0.1 --node-lease-duration-seconds=40 \
        --server-address="127.0.0.1:$kwok_port"
    wait_for kwok curl -sf "http://127.0.0.1:$kwok_port/healthz"

    for i in $(seq 1 "$nodes"); do
        cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  allocatable: {cpu: "$node_cpu", memory: $node_memory, pods: "$node_pods"}
  capacity: {cpu: "$node_cpu", memory: $node_memory, pods: "$node_pods"}
---
NODE
    done >"$W/nodes.yaml"
    "$bin/kubectl" --kubeconfig="$W/kubeconfig" apply -f "$W/nodes.yaml" >"$W/logs/nodes.log" 2>&1 ||
        { cat "$W/logs/nodes.log" >&2; down_quiet; fail "creating the fake nodes failed (log: $W/logs/nodes.log)"; }
    wait_for kwok "$bin/kubectl" --kubeconfig="$W/kubeconfig" wait --for=condition=Ready node --all --timeout=2s
    # Pods need the default service account, which the controller-manager creates.
    wait_for kube-controller-manager "$bin/kubectl" --kubeconfig="$W/kubeconfig" get serviceaccount default -n default

    echo "cluster.sh: '$name' is up: API https://127.0.0.1:$api_port, $nodes kwok nodes, logs in $W/logs" >&2
    echo "$W/kubeconfig"
}

status() {
    [ -d "$W" ] || fail "no cluster '$name' (no $W)"
    local bad=0
    for c in "${components[@]}"; do
        if alive "$c"; then echo "$c running (pid $(cat "$W/pids/$c"))"; else echo "$c stopped (log: $W/logs/$c.log)"; bad=1; fi
    done
    return $bad
}

case $cmd in
up) up ;;
down)
    [ -d "$W" ] || { echo "cluster.sh: no cluster '$name'" >&2; exit 0; }
    stop_all
    rm -rf "$W"
    ;;
status) status ;;
kubeconfig) [ -f "$W/kubeconfig" ] && echo "$W/kubeconfig" || fail "no cluster '$name'" ;;
*) usage ;;
esac
