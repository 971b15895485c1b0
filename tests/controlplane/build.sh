#!/usr/bin/env bash
# Build the controlplane binary (etcd + kube-apiserver in one process) into
#   $HOME/.cache/vworkspace/bin/controlplane-<k8s version>-<hash>
# where <hash> = first 12 hex chars of sha256(go.mod go.sum *.go).
# Does nothing when that binary already exists. Last stdout line: the binary path.
# A symlink $HOME/.cache/vworkspace/bin/controlplane points at the newest build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

CACHE="${VWORKSPACE_CACHE:-$HOME/.cache/vworkspace}"
export GOCACHE="${GOCACHE:-$CACHE/gocache}" GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
BIN_DIR="$CACHE/bin"
mkdir -p "$BIN_DIR"

K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' go.mod)
HASH=$(cat go.mod go.sum $(ls *.go | LC_ALL=C sort) | sha256sum | cut -c1-12)
OUT="$BIN_DIR/controlplane-$K8S_VERSION-$HASH"

if [[ ! -x "$OUT" ]]; then
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "building $OUT (this takes several minutes cold)" >&2
  go build -trimpath -ldflags "$ldflags" -o "$OUT.tmp.$$" .
  mv -f "$OUT.tmp.$$" "$OUT"
fi
ln -sfn "$(basename "$OUT")" "$BIN_DIR/controlplane"
echo "$OUT"
