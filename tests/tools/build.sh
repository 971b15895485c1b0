#!/usr/bin/env bash
# Build the test tools from their own Go modules (kept apart from the k8s
# dependency graph of tests/controlplane) into $HOME/.cache/vworkspace/bin:
#   jaeger-<version>  (Jaeger v2, github.com/jaegertracing/jaeger/cmd/jaeger)
#   helm-<version>    (helm.sh/helm/v3/cmd/helm)
# The version is read from each go.mod; an existing binary is not rebuilt.
# Usage: build.sh [jaeger|helm]...   (default: both)
# Prints one path per tool, last lines of stdout, in argument order.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

CACHE="${VWORKSPACE_CACHE:-$HOME/.cache/vworkspace}"
export GOCACHE="${GOCACHE:-$CACHE/gocache}" GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
BIN_DIR="$CACHE/bin"
mkdir -p "$BIN_DIR"

build() { # name module-path package ldflags...
  local name=$1 mod=$2 pkg=$3 ldflags=$4 version out
  version=$(awk -v m="$mod" '$1 == m { print $2; exit }' "$name/go.mod")
  version=${version#v}
  out="$BIN_DIR/$name-$version"
  if [[ ! -x "$out" ]]; then
    echo "building $out" >&2
    ldflags=${ldflags//@VERSION@/$version}
    (cd "$name" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp.$$" "$pkg")
    mv -f "$out.tmp.$$" "$out"
  fi
  ln -sfn "$(basename "$out")" "$BIN_DIR/$name"
  echo "$out"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(jaeger helm)
for t in "${tools[@]}"; do
  case $t in
    jaeger) build jaeger github.com/jaegertracing/jaeger github.com/jaegertracing/jaeger/cmd/jaeger \
              "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v@VERSION@" ;;
    helm)   build helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm \
              "-X helm.sh/helm/v3/internal/version.version=v@VERSION@ -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
    *) echo "unknown tool: $t" >&2; exit 2 ;;
  esac
done
