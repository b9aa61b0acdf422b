#!/usr/bin/env bash
# Builds the pinned control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok) from the wrapper modules beside this script, and prints the directory
# that holds the binaries.
#
# The binaries are cached outside the repository in $BERTH_K8S_CACHE/<key>/bin, where <key>
# hashes the module files, this script, the Go version and the flags; a warm run only checks
# that directory. The result is also linked at tools/kubernetes/bin (ignored by git).
#
#   tools/kubernetes/build.sh          # build if needed, print the bin directory
#   BERTH_K8S_CACHE=/some/dir tools/kubernetes/build.sh
#
# Go builds run under `nice -n 19` so that they do not starve other work on small machines.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${BERTH_K8S_CACHE:-/var/cache/berth-kubernetes}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

fail() {
    echo "tools/kubernetes/build.sh: $*" >&2
    exit 1
}
command -v go >/dev/null || fail "go is not on PATH; install Go $(sed -n 's/^go //p' "$here/kube/go.mod") or newer"

# The release versions come from the pinned modules themselves.
kube_version=$(cd "$here/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(cd "$here/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
kwok_version=$(cd "$here/kwok" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok)
minor=${kube_version#v1.}
minor=${minor%%.*}
# A fixed build date (the release's own commit time) keeps the binaries reproducible.
kube_date=$(cd "$here/kube" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)

tags=selinux,notest,grpcnotrace
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$kube_date"
done
etcd_ldflags="-s -w"

key=$( {
    go version
    echo "$tags|$kube_ldflags|$etcd_ldflags|CGO_ENABLED=$CGO_ENABLED"
    cat "$here/build.sh" "$here"/kube/go.mod "$here"/kube/go.sum "$here"/etcd/go.mod \
        "$here"/etcd/go.sum "$here"/kwok/go.mod "$here"/kwok/go.sum
} | sha256sum | cut -c1-16)
out=$cache_root/$key
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

link() {
    ln -sfn "$out/bin" "$here/bin"
    echo "$out/bin"
}

complete=1
for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || complete=0; done
if [ "$complete" = 1 ] && [ -f "$out/stages/pod-ready.yaml" ]; then
    link
    exit 0
fi

mkdir -p "$cache_root" 2>/dev/null || fail "cannot create the cache directory $cache_root; set BERTH_K8S_CACHE to a writable directory"
tmp=$(mktemp -d "$cache_root/.build-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin" "$tmp/stages"

step() {
    local name=$1
    shift
    local start=$SECONDS
    echo "build.sh: building $name ..." >&2
    if ! "$@" >"$tmp/$name.log" 2>&1; then
        cat "$tmp/$name.log" >&2
        mkdir -p "$cache_root/failed"
        cp "$tmp/$name.log" "$cache_root/failed/$name.log"
        fail "building $name failed (log: $cache_root/failed/$name.log)"
    fi
    echo "build.sh: $name built in $((SECONDS - start)) s" >&2
}

# One go build for the four Kubernetes commands: they share most packages.
step kubernetes bash -c "cd '$here/kube' && nice -n 19 go build -trimpath -tags '$tags' \
    -ldflags '$kube_ldflags' -o '$tmp/bin/' k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl"
step etcd bash -c "cd '$here/etcd' && nice -n 19 go build -trimpath -ldflags '$etcd_ldflags' \
    -o '$tmp/bin/etcd' go.etcd.io/etcd/server/v3"
step kwok bash -c "cd '$here/kwok' && nice -n 19 go build -trimpath -ldflags '-s -w' \
    -o '$tmp/bin/kwok' sigs.k8s.io/kwok/cmd/kwok"

# kwok v0.8.0 has no built-in stages; they ship in its module under kustomize/stage.
kwok_dir=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$kwok_dir/kustomize/stage/$f" ] || fail "kwok stage file $f is missing from $kwok_dir"
    cp "$kwok_dir/kustomize/stage/$f" "$tmp/stages/$(basename "$f")"
done
printf 'kubernetes %s\netcd %s\nkwok %s\ngo %s\n' "$kube_version" "$etcd_version" \
    "$kwok_version" "$(go env GOVERSION)" >"$tmp/VERSIONS"

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
rm -f "$out"/*.log
link
