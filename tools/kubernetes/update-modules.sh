#!/usr/bin/env bash
# Regenerates the pinned wrapper modules under tools/kubernetes/ from the versions below.
#
# Run this only to move to another release; build.sh never rewrites the modules. The replace
# block is generated from the release's own go.mod (its `=> ./staging` lines), never typed by
# hand: k8s.io/kubernetes requires every staging module at v0.0.0 and replaces it with a path
# inside its repository, and a dependency's replace lines are ignored, so a wrapper module
# must point each one at its published v0.MINOR.PATCH itself.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

here=$(cd "$(dirname "$0")" && pwd)
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

staging_version=v0.${KUBE_VERSION#v1.}   # v1.36.3 -> v0.36.3

# --- kubernetes -----------------------------------------------------------------------
cd "$here/kube"
rm -f go.mod go.sum
go mod init berth.dev/tools/kubernetes/kube >/dev/null 2>&1
kube_mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*#\1#p' "$kube_mod")
if [ "${#staging[@]}" -eq 0 ]; then
    echo "update-modules: no '=> ./staging' lines in $kube_mod" >&2
    exit 1
fi
args=()
for m in "${staging[@]}"; do args+=("-replace=$m=$m@$staging_version"); done
go mod edit "${args[@]}"
go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    go get -tool "k8s.io/kubernetes/cmd/$cmd@$KUBE_VERSION"
done
go mod tidy
echo "kube: k8s.io/kubernetes $KUBE_VERSION, ${#staging[@]} staging modules at $staging_version"

# --- etcd (its own module, so it does not move the apiserver's etcd client) ------------
cd "$here/etcd"
rm -f go.mod go.sum
go mod init berth.dev/tools/kubernetes/etcd >/dev/null 2>&1
go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
go mod tidy
echo "etcd: go.etcd.io/etcd/server/v3 $ETCD_VERSION"

# --- kwok -----------------------------------------------------------------------------
cd "$here/kwok"
rm -f go.mod go.sum
go mod init berth.dev/tools/kubernetes/kwok >/dev/null 2>&1
go get -tool "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
go mod tidy
echo "kwok: sigs.k8s.io/kwok $KWOK_VERSION"
