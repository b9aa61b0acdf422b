#!/usr/bin/env bash
# The Kubernetes runtime benchmark against three real control planes (tools/kubernetes)
# with kwok nodes, side by side with the fake's figures in docs/benchmarks.md.
#
#   scripts/bench-kube-real.sh N [bench options]    e.g. scripts/bench-kube-real.sh 1000
#
# Brings up three fresh clusters (bench-1..3) sized for N applications, runs
# `examples/bench --kubeconfigs …` once, prints the load average before and after, and
# stops the clusters. Every application has 1–3 replicas (pods on kwok's nodes) asking
# for 500m CPU and 512Mi each, so the clusters get node capacity for 3 N such pods (pods,
# CPU and memory: a first run with 64-CPU nodes left a third of the pods unschedulable),
# and the controller-manager and
# scheduler a higher API rate than Kubernetes' default 20/50 a second, which alone would
# take longer than the benchmark to create the ReplicaSets and pods.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: scripts/bench-kube-real.sh N [bench options]}
shift
export BERTH_K8S_NODES=${BERTH_K8S_NODES:-10}
per_node=$(((3 * n + BERTH_K8S_NODES - 1) / BERTH_K8S_NODES + 10))
export BERTH_K8S_NODE_PODS=${BERTH_K8S_NODE_PODS:-$per_node}
export BERTH_K8S_NODE_CPU=${BERTH_K8S_NODE_CPU:-$((per_node / 2 + 1))}
export BERTH_K8S_NODE_MEMORY=${BERTH_K8S_NODE_MEMORY:-$((per_node / 2 + 1))Gi}
export BERTH_K8S_CLIENT_QPS=${BERTH_K8S_CLIENT_QPS:-200}
cargo build -q --release -p berth-runtime-kube --example bench
bench=${CARGO_TARGET_DIR:-target}/release/examples/bench
names=(bench-1 bench-2 bench-3)
trap 'for c in "${names[@]}"; do tools/kubernetes/cluster.sh down "$c" || true; done' EXIT
kubeconfigs=()
for c in "${names[@]}"; do
    kubeconfigs+=("$(tools/kubernetes/cluster.sh up "$c")")
done
echo "load average before: $(cat /proc/loadavg)"
"$bench" --kubeconfigs "$(IFS=:; echo "${kubeconfigs[*]}")" "$@" "$n"
echo "load average after: $(cat /proc/loadavg)"
