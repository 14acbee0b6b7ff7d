#!/usr/bin/env bash
# Builds the test world (real Kubernetes control plane, kwok, Kubo, IPFS Cluster, helm) from the Go
# module proxy into a cache outside the repository, keyed by version. Skips what is already built.
#
#   scripts/test-world.sh [build|bindir|version|env] [component ...]
#
# Components: kubo ipfs-cluster etcd kwok kubernetes helm kubelet coredns prometheus node-images
# (default: all).
# kubelet, coredns and node-images are the real node's (tests/support/real_node.rs): node-images
# are the pause, ipfs/kubo and ipfs/ipfs-cluster images made by scripts/node-images.sh from the
# Kubo and IPFS Cluster binaries, keyed by a hash of their recipe and inputs.
# Cache: ${IPFS_KIT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ipfs-kit-operator/tools}/<name>-<version>/bin
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)

ETCD_VERSION=v3.6.16
K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
# v0.43.1 replaces go-libp2p with a fork the module proxy does not serve; v0.42.0 is the newest
# release that builds from the proxy alone.
KUBO_VERSION=v0.42.0
CLUSTER_VERSION=v1.1.6
HELM_VERSION=v3.22.0
# The real node: kubelet (same Kubernetes release, its own cache directory so that a cached
# `kubernetes` build stays valid) and CoreDNS for cluster.local.
KUBELET_VERSION=$K8S_VERSION
COREDNS_VERSION=v1.15.0
# Prometheus and promtool (the alert rules' checks and unit tests, the end-to-end alert test);
# the module proxy serves Prometheus 3.x under v0.3xx tags.
PROMETHEUS_VERSION=v0.316.0

# The node images' key: their recipe, the versions of what goes in, and Debian's packages used.
node_images_version() {
  local debs
  debs=$(dpkg-query -W -f '${Package}=${Version} ' busybox-static tini gosu 2>/dev/null || true)
  cat "$SCRIPTS/node-images.sh" "$SCRIPTS/oci.sh" "$SCRIPTS/node/pause.c" \
    <(echo "$KUBO_VERSION $CLUSTER_VERSION $debs") | sha256sum | cut -c1-12
}

TOOLS=${IPFS_KIT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ipfs-kit-operator/tools}
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
# The wrapper modules below are throwaway: no VCS stamping, no go.work from elsewhere.
export GOWORK=off

log() { printf '[test-world] %s\n' "$*" >&2; }

dir_of() { echo "$TOOLS/$1-$2"; }

# run_build NAME VERSION FUNC: calls FUNC WORKDIR OUTDIR unless OUTDIR/.done exists.
run_build() {
  local name=$1 version=$2 func=$3 out work start
  out=$(dir_of "$name" "$version")
  if [[ -f $out/.done ]]; then
    log "$name $version: cached in $out"
    return 0
  fi
  start=$(date +%s)
  log "$name $version: building (this takes a few minutes on 2 cores)..."
  work=$(mktemp -d "${TMPDIR:-/tmp}/ipfs-kit-build-$name.XXXXXX")
  rm -rf "$out"
  mkdir -p "$out/bin"
  if ! (cd "$work" && "$func" "$work" "$out/bin" "$version"); then
    log "$name $version: BUILD FAILED (work dir kept: $work)"
    return 1
  fi
  touch "$out/.done"
  rm -rf "$work"
  log "$name $version: done in $(($(date +%s) - start)) s -> $out/bin"
}

build_etcd() {
  local out=$2 v=$3
  go mod init example.invalid/etcdbin >/dev/null 2>&1
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
  go get "go.etcd.io/etcd/server/v3@$v"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" .
}

# The wrapper module over k8s.io/kubernetes with every staging module replaced by its release.
k8s_wrapper_module() {
  local v=$1 m s
  s="v0.${v#v1.}"
  go mod init example.invalid/k8sbins >/dev/null 2>&1
  for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
    cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt \
    kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
    mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming; do
    go mod edit -replace="k8s.io/$m=k8s.io/$m@$s"
  done
}

# Version ldflags, so that `--version` and the API's version tell the truth.
k8s_ldflags() {
  local v=$1 minor ld p
  minor=${v#v1.}; minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$ld"
}

build_kubernetes() {
  local out=$2 v=$3 m ld p
  k8s_wrapper_module "$v"
  p=k8s.io/kubernetes/cmd
  go get "$p/kube-apiserver@$v" "$p/kube-controller-manager@$v" "$p/kube-scheduler@$v" "$p/kubectl@$v"
  ld=$(k8s_ldflags "$v")
  for m in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "kubernetes $v: compiling $m"
    go build -trimpath -pgo=off -ldflags "$ld" -o "$out/$m" "$p/$m"
  done
}

# kubelet (and kube-proxy, for ClusterIP Services on the node) of the same release; reuses the
# module and build caches of build_kubernetes.
build_kubelet() {
  local out=$2 v=$3 m ld
  k8s_wrapper_module "$v"
  go get "k8s.io/kubernetes/cmd/kubelet@$v" "k8s.io/kubernetes/cmd/kube-proxy@$v"
  ld=$(k8s_ldflags "$v")
  for m in kubelet kube-proxy; do
    log "kubelet $v: compiling $m"
    go build -trimpath -pgo=off -ldflags "$ld" -o "$out/$m" "k8s.io/kubernetes/cmd/$m"
  done
}

# CoreDNS with only the plugins the node's DNS needs (the full plugin set pulls in every cloud
# SDK): a wrapper main as CoreDNS documents for external builds.
build_coredns() {
  local out=$2 v=$3 p
  go mod init example.invalid/corednsbin >/dev/null 2>&1
  cat >main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "errors", "log", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  p=github.com/coredns/coredns
  # The coremain package, not the module's root (that imports every plugin and its cloud SDK).
  go get "$p/coremain@$v"
  go build -trimpath -ldflags "-s -w -X $p/coremain.GitCommit=$v" -o "$out/coredns" .
}

build_kwok() {
  local out=$2 v=$3 stages
  GOBIN=$out go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  # kwok needs Stage objects; ship the upstream default ones next to the binary.
  stages=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$v/kustomize/stage
  {
    cat "$stages/node/fast/node-initialize.yaml"; echo "---"
    cat "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"; echo "---"
    cat "$stages/pod/fast/pod-ready.yaml"; echo "---"
    cat "$stages/pod/fast/pod-complete.yaml"; echo "---"
    cat "$stages/pod/fast/pod-delete.yaml"
  } >"$out/../kwok-stages.yaml"
}

# Builds main packages inside a writable copy of a module's own source, with its own go.mod and
# go.sum (keeps its exclude/replace directives and exact dependency versions).
build_in_module_copy() {
  local work=$1 out=$2 module=$3 version=$4 src
  shift 4
  src=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [[ -n $src ]] || { log "could not download $module@$version"; return 1; }
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  (cd "$work/src" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$out/" "$@")
}

build_kubo() {
  build_in_module_copy "$1" "$2" github.com/ipfs/kubo "$3" ./cmd/ipfs
}

build_ipfs_cluster() {
  build_in_module_copy "$1" "$2" github.com/ipfs-cluster/ipfs-cluster "$3" \
    ./cmd/ipfs-cluster-service ./cmd/ipfs-cluster-ctl
}

build_helm() {
  local out=$2 v=$3 minor
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  GOBIN=$out go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$v"
}

build_prometheus() {
  build_in_module_copy "$1" "$2" github.com/prometheus/prometheus "$3" ./cmd/prometheus ./cmd/promtool
}

build_node_images() {
  "$SCRIPTS/node-images.sh" "$2"
}

component_version() {
  case $1 in
    etcd) echo "$ETCD_VERSION" ;;
    kubernetes) echo "$K8S_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    kubo) echo "$KUBO_VERSION" ;;
    ipfs-cluster) echo "$CLUSTER_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kubelet) echo "$KUBELET_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    prometheus) echo "$PROMETHEUS_VERSION" ;;
    node-images) node_images_version ;;
    *) log "unknown component '$1' (known: ${ALL[*]})"; return 2 ;;
  esac
}

ALL=(kubo ipfs-cluster etcd kwok kubernetes helm kubelet coredns prometheus node-images)

cmd=${1:-build}
shift || true
comps=("$@")
[[ ${#comps[@]} -gt 0 ]] || comps=("${ALL[@]}")

case $cmd in
  build)
    command -v go >/dev/null || { log "go is required (the Go toolchain builds the test world)"; exit 1; }
    failed=()
    for c in "${comps[@]}"; do
      v=$(component_version "$c")
      run_build "$c" "$v" "build_${c//-/_}" || failed+=("$c")
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
      log "failed: ${failed[*]}"
      exit 1
    fi
    ;;
  bindir)
    # Prints a PATH fragment with every component's bin directory.
    path=""
    for c in "${comps[@]}"; do
      v=$(component_version "$c")
      path="$path${path:+:}$(dir_of "$c" "$v")/bin"
    done
    echo "$path"
    ;;
  version)
    # Prints the pinned version of each component.
    for c in "${comps[@]}"; do component_version "$c"; done
    ;;
  env)
    # Shell assignments the tests read (IPFS_KIT_BIN_<COMPONENT>, IPFS_KIT_KWOK_STAGES).
    for c in "${comps[@]}"; do
      v=$(component_version "$c")
      n=${c//-/_}; n=${n^^}
      echo "export IPFS_KIT_BIN_$n=$(dir_of "$c" "$v")/bin"
    done
    echo "export IPFS_KIT_KWOK_STAGES=$(dir_of kwok "$KWOK_VERSION")/kwok-stages.yaml"
    ;;
  *)
    log "usage: $0 [build|bindir|version|env] [component ...]"
    exit 2
    ;;
esac
