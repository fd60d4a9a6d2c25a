#!/usr/bin/env bash
# Builds (once) the control-plane binaries the tests and the demo need, into a
# cache outside the repository, and prints their paths as KEY=/abs/path lines
# (also written to $CACHE/tools.env, which src/kit/devenv reads).
#
#   kube-apiserver, kubectl  from tools/k8s   (Go module proxy, ~10-20 min cold)
#   helm                     from tools/helm  (skipped with --no-helm)
#   kube-state-metrics       from tools/ksm   (test-only; skipped with --no-helm too)
#   crane                    from tools/crane (image assembly; skipped with --no-helm too)
#   etcd                     from the etcd-bin-vendored-linux-amd64 crate
#
# Cache directories are keyed by version and by the hash of the wrapper
# module's go.sum, so a version bump builds fresh and a warm run only checks
# that files exist. Progress goes to stderr; stdout carries only KEY=VALUE.
set -euo pipefail

K8S_VERSION=v1.36.5
HELM_VERSION=v3.22.0
ETCD_VERSION=3.6.8

usage() {
    echo "usage: $0 [--no-helm]" >&2
    exit 2
}

with_helm=1
for arg in "$@"; do
    case "$arg" in
        --no-helm) with_helm=0 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $arg" >&2; usage ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SPARKJOBRUN_CACHE:-$HOME/.cache/sparkjobrun-operator}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

log() { echo "ensure-tools: $*" >&2; }

# Two concurrent runs (parallel CI jobs, two terminals) must not build the
# same thing twice or see each other's half-written files.
exec 9>"$cache/.lock"
if ! flock -n 9; then
    log "another ensure-tools run holds $cache/.lock, waiting"
    flock 9
fi

gosum_hash() { sha256sum "$1" | cut -c1-12; }

# go_build OUT_DIR MODULE_DIR LDFLAGS PKG... : builds into a temp dir next to
# OUT_DIR, then renames each binary into place, so an interrupted build never
# leaves a partial binary under its final name.
go_build() {
    local out=$1 moddir=$2 ldflags=$3
    shift 3
    local tmp
    tmp=$(mktemp -d "$out/.build.XXXXXX")
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    (cd "$moddir" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
        go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@")
    local pkg
    for pkg in "$@"; do
        mv -f "$tmp/${pkg##*/}" "$out/${pkg##*/}"
    done
    rm -rf "$tmp"
    trap - EXIT
}

need_go() {
    if ! command -v go >/dev/null; then
        log "go is not installed; it is needed to build $1"
        exit 1
    fi
}

# --- kube-apiserver + kubectl -------------------------------------------
k8s_bin=$cache/k8s-$K8S_VERSION-$(gosum_hash "$repo/tools/k8s/go.sum")/bin
if [[ ! -x $k8s_bin/kube-apiserver || ! -x $k8s_bin/kubectl ]]; then
    need_go "kube-apiserver"
    mkdir -p "$k8s_bin"
    minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    ldflags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    log "building kube-apiserver and kubectl $K8S_VERSION into $k8s_bin (10-20 min on 2 cores when cold)"
    start=$SECONDS
    go_build "$k8s_bin" "$repo/tools/k8s" "$ldflags" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    log "kube-apiserver and kubectl built in $((SECONDS - start)) s"
fi

# --- helm -----------------------------------------------------------------
helm_bin=""
if [[ $with_helm == 1 ]]; then
    helm_bin=$cache/helm-$HELM_VERSION-$(gosum_hash "$repo/tools/helm/go.sum")/bin
    if [[ ! -x $helm_bin/helm ]]; then
        need_go "helm"
        mkdir -p "$helm_bin"
        ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
        # As helm's Makefile does: the Kubernetes version helm assumes for
        # .Capabilities and deprecation lint follows its client-go (v0.N -> 1.N).
        client_go=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$repo/tools/helm/go.mod")
        kminor=${client_go#v0.}
        kminor=${kminor%%.*}
        for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
            ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
        done
        log "building helm $HELM_VERSION into $helm_bin"
        start=$SECONDS
        go_build "$helm_bin" "$repo/tools/helm" "$ldflags" helm.sh/helm/v3/cmd/helm
        log "helm built in $((SECONDS - start)) s"
    fi
fi

# --- kube-state-metrics (tests of docs/kube-state-metrics.yaml) ---------------
ksm_bin=""
if [[ $with_helm == 1 ]]; then
    ksm_version=$(awk '$1 == "k8s.io/kube-state-metrics/v2" { print $2 }' "$repo/tools/ksm/go.mod")
    ksm_bin=$cache/ksm-$ksm_version-$(gosum_hash "$repo/tools/ksm/go.sum")/bin
    if [[ ! -x $ksm_bin/kube-state-metrics ]]; then
        need_go "kube-state-metrics"
        mkdir -p "$ksm_bin"
        log "building kube-state-metrics $ksm_version into $ksm_bin (about 2 min on 2 cores)"
        start=$SECONDS
        # Not go_build: the binary is named after the module (kube-state-metrics), not the
        # package path's last element (v2).
        tmp=$(mktemp "$ksm_bin/.ksm.XXXXXX")
        (cd "$repo/tools/ksm" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
            go build -trimpath -o "$tmp" k8s.io/kube-state-metrics/v2)
        mv -f "$tmp" "$ksm_bin/kube-state-metrics"
        log "kube-state-metrics built in $((SECONDS - start)) s"
    fi
fi

# --- crane (tools/image.sh assembles the OCI image with it) -------------------
crane_bin=""
if [[ $with_helm == 1 ]]; then
    crane_version=$(awk '$1 == "github.com/google/go-containerregistry" { print $2 }' "$repo/tools/crane/go.mod")
    crane_bin=$cache/crane-$crane_version-$(gosum_hash "$repo/tools/crane/go.sum")/bin
    if [[ ! -x $crane_bin/crane ]]; then
        need_go "crane"
        mkdir -p "$crane_bin"
        log "building crane $crane_version into $crane_bin"
        go_build "$crane_bin" "$repo/tools/crane" "" github.com/google/go-containerregistry/cmd/crane
    fi
fi

# --- etcd -----------------------------------------------------------------
etcd_bin=$cache/etcd-v$ETCD_VERSION/bin
if [[ ! -x $etcd_bin/etcd ]]; then
    log "fetching the etcd-bin-vendored-linux-amd64 $ETCD_VERSION crate"
    (cd "$repo" && cargo fetch --quiet)
    src=""
    for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"etcd-bin-vendored-linux-amd64-$ETCD_VERSION"; do
        if [[ -f $dir/bin/etcd ]]; then
            src=$dir/bin/etcd
            break
        fi
    done
    if [[ -z $src ]]; then
        log "etcd-bin-vendored-linux-amd64-$ETCD_VERSION/bin/etcd not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src after cargo fetch"
        exit 1
    fi
    mkdir -p "$etcd_bin"
    tmp=$(mktemp "$etcd_bin/.etcd.XXXXXX")
    cp "$src" "$tmp"
    chmod 755 "$tmp"
    mv -f "$tmp" "$etcd_bin/etcd"
    log "etcd $ETCD_VERSION copied to $etcd_bin/etcd"
fi

# --- report -----------------------------------------------------------------
env_lines="KUBE_APISERVER=$k8s_bin/kube-apiserver
KUBECTL=$k8s_bin/kubectl
ETCD=$etcd_bin/etcd"
if [[ -n $helm_bin ]]; then
    env_lines+="
HELM=$helm_bin/helm
KUBE_STATE_METRICS=$ksm_bin/kube-state-metrics
CRANE=$crane_bin/crane"
elif [[ -f $cache/tools.env ]]; then
    # Keep a helm built by an earlier run without --no-helm.
    old_helm=$(grep '^HELM=' "$cache/tools.env" || true)
    if [[ -n $old_helm && -x ${old_helm#HELM=} ]]; then
        env_lines+="
$old_helm"
    fi
fi
printf '%s\n' "$env_lines" >"$cache/tools.env.tmp"
mv -f "$cache/tools.env.tmp" "$cache/tools.env"
printf '%s\n' "$env_lines"
