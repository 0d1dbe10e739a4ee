#!/usr/bin/env bash
# Build the Argo Rollouts controller and copy its CRDs, for the reaction-time
# comparison in bench/argo_rollouts.py, cached under
# $MODELROLLOUT_CACHE/bin/argo-rollouts-<version>/ (rollouts-controller, crds/).
#
# Why from the Go module: no container images can be pulled here, only the Go
# module proxy is reachable. github.com/argoproj/argo-rollouts pins every
# k8s.io/* module (and two forks) with `replace` lines, which `go install
# ...@version` ignores, so -- as e2e/build.sh does for k8s.io/kubernetes -- a
# throwaway module requires it and copies those replace lines, then builds
# cmd/rollouts-controller. The CRDs come from the same module's manifests/crds/,
# so binary and CRDs can never disagree.
#
# Idempotent: a finished build is marked .complete and never repeated; an
# interrupted one is redone. Shares e2e/build.sh's helpers and its build lock
# (two Go builds on 2 cores only thrash). The Go build runs under `nice` with
# -p 2 so the running cluster and other work keep the CPU they need.
#
# Usage: e2e/build_argo.sh        (prints the install directory on stdout)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e/build.sh
source "$HERE/build.sh" # helpers only (its main runs only when executed)

ARGO_MODULE="github.com/argoproj/argo-rollouts"

build_argo_rollouts() {
    local src="$MR_SRC/argo-rollouts-$ARGO_ROLLOUTS_VERSION" tmp="$ARGO_ROLLOUTS_DIR.tmp"
    new_module "$src" modelrollout.local/build/argo-rollouts
    log "argo-rollouts: fetching $ARGO_MODULE@$ARGO_ROLLOUTS_VERSION from the Go module proxy"
    local gomod dir
    gomod="$(module_info "$ARGO_MODULE@$ARGO_ROLLOUTS_VERSION" GoMod)"
    dir="$(module_info "$ARGO_MODULE@$ARGO_ROLLOUTS_VERSION" Dir)"
    [[ -d "$dir/manifests/crds" ]] || die "no manifests/crds in $dir"

    # The module's own toolchain floor: say so plainly rather than let the
    # build fail with a cryptic "go.mod requires go >= ..." deep in `tidy`.
    local want have
    want="$(go mod edit -json "$gomod" | jq -r '.Go // empty')"
    have="$(go env GOVERSION)"
    have="${have#go}"
    if [[ -n "$want" ]] && [[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]]; then
        die "$ARGO_MODULE@$ARGO_ROLLOUTS_VERSION needs Go >= $want; this machine has Go $have (GOTOOLCHAIN=local: no toolchain download). Use an ARGO_ROLLOUTS_VERSION whose go.mod asks for <= $have."
    fi

    # Copy every replace line (module => module version) of its go.mod. A
    # replace to a local path could not be honoured outside its repository:
    # refuse it by name instead of building something else.
    local -a edits=(-require "$ARGO_MODULE@$ARGO_ROLLOUTS_VERSION")
    local old new ver n=0
    while IFS=$'\t' read -r old new ver; do
        [[ -n "$ver" ]] || die "$ARGO_MODULE go.mod replaces $old with the local path $new: cannot build outside its repository"
        edits+=(-replace "$old=$new@$ver")
        n=$((n + 1))
    done < <(go mod edit -json "$gomod" | jq -r '.Replace[]? | [.Old.Path, .New.Path, (.New.Version // "")] | @tsv')
    log "argo-rollouts: copied $n replace lines from its go.mod (go $want, building with go $have)"

    local pkg="$ARGO_MODULE/cmd/rollouts-controller"
    local vpkg="$ARGO_MODULE/utils/version" date ldflags
    date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    # Without these the binary reports v99.99.99 (the package's fallback).
    ldflags="-s -w -X $vpkg.version=${ARGO_ROLLOUTS_VERSION#v} -X $vpkg.buildDate=$date"
    ldflags+=" -X $vpkg.gitTag=$ARGO_ROLLOUTS_VERSION -X $vpkg.gitTreeState=clean"
    (
        cd "$src"
        go mod edit "${edits[@]}"
        write_tools_go "$src" "$pkg"
        log "argo-rollouts: go mod tidy (downloads the dependencies on a cold module cache)"
        run_step "go mod tidy (argo-rollouts)" "$GO_REGISTRY" go mod tidy
        rm -rf "$tmp"
        mkdir -p "$tmp/crds"
        log "argo-rollouts: go build $pkg (nice, -p 2; several minutes on a cold build cache)"
        run_step "go build (argo-rollouts)" "$GO_REGISTRY" \
            nice -n 10 go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp/rollouts-controller" "$pkg"
    )
    local f
    for f in "$dir"/manifests/crds/*-crd.yaml; do
        cp "$f" "$tmp/crds/"
    done
    chmod -R u+w "$tmp/crds"
    [[ -n "$(ls "$tmp/crds")" ]] || die "no CRDs copied from $dir/manifests/crds"
    "$tmp/rollouts-controller" --version >/dev/null || die "the built rollouts-controller does not run"
    finish "$tmp" "$ARGO_ROLLOUTS_DIR"
}

argo_main() {
    command -v jq >/dev/null || die "jq is required (apt-get install -y jq)"
    mkdir -p "$MR_BIN" "$MR_SRC"
    exec 9>"$MODELROLLOUT_CACHE/.build.lock"
    if ! flock -n 9; then
        log "another build holds $MODELROLLOUT_CACHE/.build.lock; waiting (up to 30 min)"
        flock -w 1800 9 || die "timed out waiting for the build lock"
    fi
    local start=$SECONDS
    if is_done "$ARGO_ROLLOUTS_DIR"; then
        log "argo-rollouts: cached in $ARGO_ROLLOUTS_DIR"
    else
        need_go
        log "argo-rollouts: building $ARGO_ROLLOUTS_VERSION into $ARGO_ROLLOUTS_DIR ..."
        build_argo_rollouts
        log "argo-rollouts: done in $((SECONDS - start)) s ($("$ARGO_ROLLOUTS_CONTROLLER" --version 2>&1 | head -1))"
    fi
    echo "$ARGO_ROLLOUTS_DIR"
}

argo_main "$@"
