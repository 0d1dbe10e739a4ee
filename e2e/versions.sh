# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Sourced by e2e/build.sh and e2e/cluster.sh: one place for the pinned versions
# and the cache layout, so the builder and the launcher never disagree.
# Versions are the ones measured to build and work together on this machine
# kind (see docs/local-cluster.md).

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
# k8s.io/kubernetes v1.X.Y depends on its staging modules at v0.X.Y.
K8S_STAGING_VERSION="v0.${K8S_VERSION#v1.}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.3}"
# Argo Rollouts, for the reaction-time comparison (bench/argo_rollouts.py, built by
# e2e/build_argo.sh). v1.10.2 declares `go 1.26.10` (the machine has 1.26.8 and
# GOTOOLCHAIN=local); v1.10.1 declares `go 1.26.1`.
ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.10.1}"

MODELROLLOUT_CACHE="${MODELROLLOUT_CACHE:-$HOME/.cache/modelrollout}"
MR_BIN="$MODELROLLOUT_CACHE/bin"
MR_SRC="$MODELROLLOUT_CACHE/src"

K8S_DIR="$MR_BIN/kubernetes-$K8S_VERSION"
ETCD_DIR="$MR_BIN/etcd-$ETCD_VERSION"
KWOK_DIR="$MR_BIN/kwok-$KWOK_VERSION"
HELM_DIR="$MR_BIN/helm-$HELM_VERSION"
GATEWAY_API_DIR="$MR_BIN/gateway-api-$GATEWAY_API_VERSION"
KWOK_STAGES_DIR="$MR_BIN/kwok-stages-$KWOK_VERSION"
ARGO_ROLLOUTS_DIR="$MR_BIN/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
PROMETHEUS_BIN="${PROMETHEUS_BIN:-/usr/bin/prometheus}"

KUBE_APISERVER="$K8S_DIR/kube-apiserver"
KUBE_CONTROLLER_MANAGER="$K8S_DIR/kube-controller-manager"
KUBE_SCHEDULER="$K8S_DIR/kube-scheduler"
KUBECTL="$K8S_DIR/kubectl"
ETCD="$ETCD_DIR/etcd"
KWOK="$KWOK_DIR/kwok"
HELM="$HELM_DIR/helm"
HTTPROUTE_CRD="$GATEWAY_API_DIR/gateway.networking.k8s.io_httproutes.yaml"
KWOK_STAGES="$KWOK_STAGES_DIR/stages.yaml"
ARGO_ROLLOUTS_CONTROLLER="$ARGO_ROLLOUTS_DIR/rollouts-controller"
ARGO_ROLLOUTS_CRDS="$ARGO_ROLLOUTS_DIR/crds"
