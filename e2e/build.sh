#!/usr/bin/env bash
# Build (or fetch) every binary and manifest the local e2e cluster needs, and
# cache each under $MODELROLLOUT_CACHE/bin/<part>-<version>/.
#
# Why from Go modules: no Docker here and only PyPI, the Go module proxy and
# Debian's archive are reachable, so kind/k3d/envtest tarballs are out. Each
# part is built in a throwaway Go module of its own under $MODELROLLOUT_CACHE/src
# and moved into place only when complete, so an interrupted build is redone and
# a finished one is never repeated: a second run does nothing.
#
# Usage: e2e/build.sh [part...]   parts: prometheus etcd kubernetes kwok
#                                        gateway-api kwok-stages helm (default: all)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e/versions.sh
source "$HERE/versions.sh"

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN=local

ALL_PARTS=(prometheus etcd kubernetes kwok gateway-api kwok-stages helm)

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[build] ERROR: %s\n' "$*" >&2; exit 1; }

# Patterns that mean "the network or the registry did not answer" rather than
# "the code did not compile": we name the registry so the fix is obvious.
UNREACHABLE_RE='dial tcp|no such host|i/o timeout|connection refused|network is unreachable|TLS handshake timeout|Could not resolve|Failed to fetch|Temporary failure|Unable to connect|proxyconnect|unexpected EOF|403 Forbidden|502 Bad Gateway|503 Service Unavailable|Connection timed out'

# run_step DESCRIPTION REGISTRY CMD...: run CMD, keep its output in a log and
# show it; on failure say whether REGISTRY looked unreachable.
run_step() {
    local desc="$1" registry="$2"
    shift 2
    local steplog
    steplog="$(mktemp)"
    if ! "$@" 2>&1 | tee "$steplog" >&2; then
        if grep -Eqi "$UNREACHABLE_RE" "$steplog"; then
            rm -f "$steplog"
            die "$desc failed: $registry looks unreachable from this machine (network error above). This step needs $registry; check the network/proxy settings and re-run e2e/build.sh (finished parts are kept)."
        fi
        rm -f "$steplog"
        die "$desc failed (output above)."
    fi
    rm -f "$steplog"
}

GO_REGISTRY="the Go module proxy (GOPROXY=$(go env GOPROXY 2>/dev/null || echo '?'))"

need_go() {
    command -v go >/dev/null || die "go is not installed; the cluster binaries are built from Go modules (Go >= 1.25 needed)."
}

# module_info MODULE@VERSION FIELD: print a field of `go mod download -json`.
module_info() {
    local json
    json="$(cd "$MR_SRC" && go mod download -json "$1" 2>&1)" || {
        echo "$json" >&2
        if grep -Eqi "$UNREACHABLE_RE" <<<"$json"; then
            die "downloading $1 failed: $GO_REGISTRY looks unreachable."
        fi
        die "downloading $1 failed."
    }
    jq -r ".$2" <<<"$json"
}

# new_module DIR NAME: a fresh throwaway module in DIR.
new_module() {
    rm -rf "$1"
    mkdir -p "$1"
    (cd "$1" && go mod init "$2" >/dev/null 2>&1)
}

# write_tools_go DIR PKG...: a build-tagged file importing the main packages
# so `go mod tidy` resolves everything they need.
write_tools_go() {
    local dir="$1"
    shift
    {
        echo '//go:build tools'
        echo
        echo 'package tools'
        echo
        echo 'import ('
        local p
        for p in "$@"; do echo "	_ \"$p\""; done
        echo ')'
    } >"$dir/tools.go"
}

# finish TMPDIR DEST: atomically publish a finished part.
finish() {
    rm -rf "$2"
    mv "$1" "$2"
    touch "$2/.complete"
}

is_done() { [[ -f "$1/.complete" ]]; }

# go_build_part PART DEST MODULE@VERSION LDFLAGS PKG...: the common path for
# parts that are plain `go build`s of main packages of one module.
go_build_part() {
    local part="$1" dest="$2" modver="$3" ldflags="$4"
    shift 4
    local src tmp="$dest.tmp"
    src="$MR_SRC/$(basename "$dest")"
    new_module "$src" "modelrollout.local/build/$part"
    (
        cd "$src"
        run_step "go get $modver" "$GO_REGISTRY" go get "$modver"
        write_tools_go "$src" "$@"
        run_step "go mod tidy ($part)" "$GO_REGISTRY" go mod tidy
        rm -rf "$tmp"
        mkdir -p "$tmp"
        run_step "go build ($part)" "$GO_REGISTRY" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@"
    )
    finish "$tmp" "$dest"
}

build_prometheus() {
    if [[ -x "$PROMETHEUS_BIN" ]]; then
        log "prometheus: $PROMETHEUS_BIN present ($("$PROMETHEUS_BIN" --version 2>&1 | head -1))"
        return
    fi
    command -v apt-get >/dev/null || die "prometheus missing and apt-get unavailable: install Prometheus >= 2.42 and set PROMETHEUS_BIN."
    [[ $EUID -eq 0 ]] || die "prometheus missing: run 'apt-get install -y prometheus' as root (or set PROMETHEUS_BIN)."
    # Package lists may be absent on a fresh image: update once when the
    # package has no candidate.
    if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        run_step "apt-get update" "Debian's package archive" apt-get update
    fi
    # No systemd here, so the package's service is not started; we run the
    # binary ourselves with a generated config (e2e/cluster.sh).
    run_step "apt-get install prometheus" "Debian's package archive" \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
    [[ -x "$PROMETHEUS_BIN" ]] || die "apt installed prometheus but $PROMETHEUS_BIN is missing"
}

build_etcd() {
    is_done "$ETCD_DIR" && return
    # Debian's etcd-server is 3.4, which lacks RequestWatchProgress: client-go
    # 0.36 streaming watches complain on every watch. 3.6 from Go modules.
    go_build_part etcd "$ETCD_DIR" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "-s -w" \
        go.etcd.io/etcd/server/v3
    # The main package's directory is server/v3, so go names the binary "server".
    mv "$ETCD_DIR/server" "$ETCD"
}

build_kubernetes() {
    is_done "$K8S_DIR" && return
    local src="$MR_SRC/kubernetes-$K8S_VERSION" tmp="$K8S_DIR.tmp"
    new_module "$src" modelrollout.local/build/kubernetes
    local gomod
    gomod="$(module_info "k8s.io/kubernetes@$K8S_VERSION" GoMod)"
    # k8s.io/kubernetes replaces its staging modules with relative paths, which
    # only work inside its own repo: point each at its published v0.X.Y.
    local -a edits=(-require "k8s.io/kubernetes@$K8S_VERSION")
    local m
    while read -r m; do
        edits+=(-replace "$m=$m@$K8S_STAGING_VERSION")
    done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
    [[ ${#edits[@]} -gt 10 ]] || die "found no staging replaces in $gomod"
    log "kubernetes: $(((${#edits[@]} - 2) / 2)) staging modules pinned to $K8S_STAGING_VERSION"
    local -a pkgs=(
        k8s.io/kubernetes/cmd/kube-apiserver
        k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler
        k8s.io/kubernetes/cmd/kubectl
    )
    # Without these the binaries report v0.0.0-master+$Format:%H$ and kubectl
    # refuses to parse the server version.
    local minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local date ldflags="-s -w" p
    date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ldflags+=" -X $p.gitCommit=0000000000000000000000000000000000000000"
        ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    (
        cd "$src"
        go mod edit "${edits[@]}"
        write_tools_go "$src" "${pkgs[@]}"
        run_step "go mod tidy (kubernetes)" "$GO_REGISTRY" go mod tidy
        rm -rf "$tmp"
        mkdir -p "$tmp"
        # One build for all four so shared packages compile once.
        run_step "go build (kubernetes)" "$GO_REGISTRY" go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}"
    )
    finish "$tmp" "$K8S_DIR"
}

build_kwok() {
    is_done "$KWOK_DIR" && return
    go_build_part kwok "$KWOK_DIR" "sigs.k8s.io/kwok@$KWOK_VERSION" \
        "-s -w" sigs.k8s.io/kwok/cmd/kwok
}

build_helm() {
    is_done "$HELM_DIR" && return
    go_build_part helm "$HELM_DIR" "helm.sh/helm/v3@$HELM_VERSION" \
        "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

build_gateway_api() {
    is_done "$GATEWAY_API_DIR" && return
    local dir tmp="$GATEWAY_API_DIR.tmp"
    dir="$(module_info "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" Dir)"
    local crd="$dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
    [[ -f "$crd" ]] || die "HTTPRoute CRD not found at $crd"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp "$crd" "$tmp/"
    chmod u+w "$tmp"/*
    finish "$tmp" "$GATEWAY_API_DIR"
}

# kwok refuses to start without Stage objects; its module ships them. The
# project's own Stage (the realistic OOM/CrashLoop shape) lives in the repo
# (e2e/kwok/) and is appended by cluster.sh at start time, so editing it never
# needs a rebuild.
build_kwok_stages() {
    is_done "$KWOK_STAGES_DIR" && return
    local dir tmp="$KWOK_STAGES_DIR.tmp"
    dir="$(module_info "sigs.k8s.io/kwok@$KWOK_VERSION" Dir)/kustomize/stage"
    local -a files=(
        node/fast/node-initialize.yaml
        node/heartbeat/node-heartbeat.yaml
        pod/fast/pod-ready.yaml
        pod/fast/pod-complete.yaml
        pod/fast/pod-delete.yaml
        pod/chaos/pod-container-running-failed.yaml
    )
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local f first=1
    for f in "${files[@]}"; do
        [[ -f "$dir/$f" ]] || die "kwok stage $dir/$f missing"
        [[ $first -eq 1 ]] || echo '---' >>"$tmp/stages.yaml"
        first=0
        grep -v '^---[[:space:]]*$' "$dir/$f" >>"$tmp/stages.yaml"
    done
    finish "$tmp" "$KWOK_STAGES_DIR"
}

main() {
    local -a parts=("$@")
    [[ ${#parts[@]} -gt 0 ]] || parts=("${ALL_PARTS[@]}")
    command -v jq >/dev/null || die "jq is required (apt-get install -y jq)"
    mkdir -p "$MR_BIN" "$MR_SRC"
    # One builder at a time (make cluster-up and the pytest fixture may race);
    # two concurrent Go builds on 2 cores would also just thrash.
    exec 9>"$MODELROLLOUT_CACHE/.build.lock"
    if ! flock -n 9; then
        log "another build holds $MODELROLLOUT_CACHE/.build.lock; waiting (up to 30 min)"
        flock -w 1800 9 || die "timed out waiting for the build lock"
    fi
    local total_start=$SECONDS part start
    for part in "${parts[@]}"; do
        start=$SECONDS
        case "$part" in
        prometheus) build_prometheus ;;
        etcd | kubernetes | kwok | helm | gateway-api | kwok-stages)
            local dir
            case "$part" in
            etcd) dir="$ETCD_DIR" ;; kubernetes) dir="$K8S_DIR" ;; kwok) dir="$KWOK_DIR" ;;
            helm) dir="$HELM_DIR" ;; gateway-api) dir="$GATEWAY_API_DIR" ;; kwok-stages) dir="$KWOK_STAGES_DIR" ;;
            esac
            if is_done "$dir"; then
                log "$part: cached in $dir"
                continue
            fi
            need_go
            log "$part: building into $dir ..."
            "build_${part//-/_}"
            ;;
        *) die "unknown part '$part' (known: ${ALL_PARTS[*]})" ;;
        esac
        log "$part: done in $((SECONDS - start)) s"
    done
    log "all parts ready in $((SECONDS - total_start)) s (cache: $MODELROLLOUT_CACHE)"
}

# Run only when executed: e2e/build_argo.sh sources this file for its helpers.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
