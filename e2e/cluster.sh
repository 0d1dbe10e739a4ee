#!/usr/bin/env bash
# Start, stop and inspect the local e2e cluster: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok (fake GPU nodes), Prometheus and
# the metrics simulator, all as plain processes bound to loopback.
#
# Why processes and not containers: there is no Docker here; every binary comes
# from e2e/build.sh (cached Go-module builds and Debian's Prometheus).
#
# Usage: e2e/cluster.sh up|down|status|env|restart-apiserver
#
# State (certs, kubeconfig, pid files, logs, data) lives in
#   $MODELROLLOUT_STATE (default: <repo>/e2e/.state)
# Ports (all on 127.0.0.1) come from these variables, recorded in
# $MODELROLLOUT_STATE/ports.env at `up` so `down`/`status` use the same ones:
#   MODELROLLOUT_ETCD_PORT (12379)  MODELROLLOUT_ETCD_PEER_PORT (12380)
#   MODELROLLOUT_APISERVER_PORT (16443)
#   MODELROLLOUT_CONTROLLER_MANAGER_PORT (16257)  MODELROLLOUT_SCHEDULER_PORT (16259)
#   MODELROLLOUT_KWOK_PORT (16280)
#   MODELROLLOUT_PROMETHEUS_PORT (19090)  MODELROLLOUT_SIMULATOR_PORT (19100)
# MODELROLLOUT_PYTHON: interpreter for the simulator (default <repo>/.venv/bin/python).
# MODELROLLOUT_SKIP_BUILD=1: fail instead of building missing binaries.
# MODELROLLOUT_NODE_COUNT (2), MODELROLLOUT_NODE_GPUS (64): the fake GPU nodes.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=e2e/versions.sh
source "$HERE/versions.sh"

STATE="${MODELROLLOUT_STATE:-$REPO/e2e/.state}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
PKI="$STATE/pki"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
DATA="$STATE/data"
KUBECONFIG_PATH="$STATE/kubeconfig"

# Ports: the ones recorded by a running cluster win over the environment, so
# `down` with a different environment still stops what `up` started.
if [[ -f "$STATE/ports.env" ]]; then
    # shellcheck disable=SC1091
    source "$STATE/ports.env"
fi
ETCD_PORT="${ETCD_PORT:-${MODELROLLOUT_ETCD_PORT:-12379}}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-${MODELROLLOUT_ETCD_PEER_PORT:-12380}}"
APISERVER_PORT="${APISERVER_PORT:-${MODELROLLOUT_APISERVER_PORT:-16443}}"
CM_PORT="${CM_PORT:-${MODELROLLOUT_CONTROLLER_MANAGER_PORT:-16257}}"
SCHED_PORT="${SCHED_PORT:-${MODELROLLOUT_SCHEDULER_PORT:-16259}}"
KWOK_PORT="${KWOK_PORT:-${MODELROLLOUT_KWOK_PORT:-16280}}"
PROM_PORT="${PROM_PORT:-${MODELROLLOUT_PROMETHEUS_PORT:-19090}}"
SIM_PORT="${SIM_PORT:-${MODELROLLOUT_SIMULATOR_PORT:-19100}}"

PYTHON="${MODELROLLOUT_PYTHON:-$REPO/.venv/bin/python}"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
# Fake nodes: MODELROLLOUT_NODE_COUNT of them, each with MODELROLLOUT_NODE_GPUS GPUs.
NODE_GPUS="${MODELROLLOUT_NODE_GPUS:-64}"
NODE_NAMES=()
for ((i = 0; i < ${MODELROLLOUT_NODE_COUNT:-2}; i++)); do NODE_NAMES+=("kwok-gpu-$i"); done
# Components in start order; `down` walks it backwards.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus simulator)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[cluster] ERROR: %s\n' "$*" >&2
    exit 1
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

ports_of() {
    case "$1" in
    etcd) echo "$ETCD_PORT $ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$APISERVER_PORT" ;;
    kube-controller-manager) echo "$CM_PORT" ;;
    kube-scheduler) echo "$SCHED_PORT" ;;
    kwok) echo "$KWOK_PORT" ;;
    prometheus) echo "$PROM_PORT" ;;
    simulator) echo "$SIM_PORT" ;;
    esac
}

all_ports() {
    local c
    for c in "${COMPONENTS[@]}"; do ports_of "$c"; done | tr ' ' '\n'
}

port_bound() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

pid_of() {
    if [[ -f "$PIDS/$1.pid" ]]; then cat "$PIDS/$1.pid"; fi
}

# cmdline_marker NAME: a string the component's command line must contain, so
# a recorded pid reused by an unrelated process (after a reboot) is never
# taken for ours, let alone signalled.
cmdline_marker() {
    case "$1" in
    simulator) echo "e2e.simulator" ;;
    prometheus) echo "prometheus" ;;
    *) echo "$1" ;;
    esac
}

alive() {
    local pid
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] && ! dead "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(cmdline_marker "$1")"
}

# healthy COMPONENT: one quick probe, no waiting.
healthy() {
    alive "$1" || return 1
    local tls=(--cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
    case "$1" in
    etcd) curl -fsS -m 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' ;;
    kube-apiserver) [[ "$(curl -fsS -m 2 "${tls[@]}" "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null)" == ok ]] ;;
    kube-controller-manager) curl -fsS -m 2 -k "https://127.0.0.1:$CM_PORT/healthz" >/dev/null 2>&1 ;;
    kube-scheduler) curl -fsS -m 2 -k "https://127.0.0.1:$SCHED_PORT/healthz" >/dev/null 2>&1 ;;
    kwok) curl -fsS -m 2 "http://127.0.0.1:$KWOK_PORT/healthz" >/dev/null 2>&1 ;;
    prometheus) curl -fsS -m 2 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 ;;
    simulator) curl -fsS -m 2 "http://127.0.0.1:$SIM_PORT/healthz" >/dev/null 2>&1 ;;
    esac
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s, bounded.
# (DESCRIPTION documents the call site; callers print their own error.)
wait_until() {
    local timeout="$1"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.1
    done
}

# start NAME CMD...: run CMD detached (own session, so a Ctrl-C or the caller's
# exit does not take it down), output to logs/NAME.log, pid to pids/NAME.pid.
start() {
    local name="$1"
    shift
    local p
    for p in $(ports_of "$name"); do
        port_bound "$p" && die "port 127.0.0.1:$p (for $name) is already in use by another process; set MODELROLLOUT_*_PORT to free ports (see e2e/cluster.sh header)"
    done
    mkdir -p "$PIDS" "$LOGS"
    # The pid is written by the process itself just before exec, so the pid
    # file names the real daemon, not a wrapper.
    # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
        >"$LOGS/$name.log" 2>&1 </dev/null &
    wait_until 5 "$name pid file" test -s "$PIDS/$name.pid" || die "$name did not start"
}

# await NAME SECONDS: wait for the health probe, failing early if it died.
await() {
    local name="$1" timeout="$2" start=$SECONDS
    local deadline=$((SECONDS + timeout))
    until healthy "$name"; do
        if ! alive "$name"; then
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name exited during start-up (log: $LOGS/$name.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name not healthy after ${timeout}s (log: $LOGS/$name.log)"
        fi
        sleep 0.2
    done
    log "$name ready ($((SECONDS - start)) s, pid $(pid_of "$name"))"
}

ensure_binaries() {
    local missing=0 f
    for f in "$KUBE_APISERVER" "$KUBE_CONTROLLER_MANAGER" "$KUBE_SCHEDULER" "$KUBECTL" "$ETCD" "$KWOK" \
        "$HTTPROUTE_CRD" "$KWOK_STAGES" "$PROMETHEUS_BIN"; do
        [[ -e "$f" ]] || missing=1
    done
    if ((missing)); then
        [[ "${MODELROLLOUT_SKIP_BUILD:-0}" != 1 ]] || die "binaries missing and MODELROLLOUT_SKIP_BUILD=1; run e2e/build.sh"
        log "binaries missing: running e2e/build.sh (a cold build takes several minutes on 2 cores)"
        "$HERE/build.sh"
    fi
    [[ -x "$PYTHON" ]] || die "no Python at $PYTHON for the simulator: run 'make install' (or set MODELROLLOUT_PYTHON)"
}

gen_pki() {
    mkdir -p "$PKI"
    [[ -f "$PKI/.complete" ]] && return
    log "generating CA, serving, admin and service-account keys in $PKI"
    (
        cd "$PKI"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
            -subj "/CN=modelrollout-e2e-ca" 2>/dev/null
        cat >apiserver.ext <<EOF
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:$SERVICE_IP, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage = serverAuth
keyUsage = critical, digitalSignature, keyEncipherment
EOF
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile apiserver.ext -out apiserver.crt 2>/dev/null
        printf 'extendedKeyUsage = clientAuth\nkeyUsage = critical, digitalSignature, keyEncipherment\n' >client.ext
        openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=modelrollout-admin" 2>/dev/null
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile client.ext -out admin.crt 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        rm -f ./*.csr
        chmod 600 ./*.key
        touch .complete
    )
}

write_kubeconfig() {
    cat >"$KUBECONFIG_PATH" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelrollout-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: modelrollout-e2e
  context: {cluster: modelrollout-e2e, user: admin}
current-context: modelrollout-e2e
EOF
    chmod 600 "$KUBECONFIG_PATH"
}

write_prometheus_config() {
    mkdir -p "$STATE/prometheus/targets"
    # Extra scrape targets (the operator's /metrics, ...): tests drop file_sd
    # JSON files here; Prometheus re-reads them within ~1 s.
    [[ -f "$STATE/prometheus/targets/extra.json" ]] || echo '[]' >"$STATE/prometheus/targets/extra.json"
    cat >"$STATE/prometheus/prometheus.yml" <<EOF
# Generated by e2e/cluster.sh: scrape everything every second so tests see
# changes quickly.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: simulator
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$SIM_PORT']
  - job_name: extra
    honor_labels: true
    file_sd_configs:
      - files: ['$STATE/prometheus/targets/*.json']
        refresh_interval: 1s
EOF
}

write_nodes() {
    local n
    for n in "${NODE_NAMES[@]}"; do
        cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    nvidia.com/gpu.present: "true"
status:
  capacity: {cpu: "32", memory: 256Gi, pods: "110", nvidia.com/gpu: "$NODE_GPUS"}
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", nvidia.com/gpu: "$NODE_GPUS"}
EOF
    done
}

nodes_ready() {
    local ready
    ready="$(kc get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c '=True$' || true)"
    [[ "$ready" -ge "${#NODE_NAMES[@]}" ]]
}

default_sa_exists() { kc -n default get serviceaccount default >/dev/null 2>&1; }

crd_established() {
    [[ "$(kc get crd httproutes.gateway.networking.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]]
}

all_healthy() {
    local c
    for c in "${COMPONENTS[@]}"; do healthy "$c" || return 1; done
}

any_alive() {
    local c
    for c in "${COMPONENTS[@]}"; do alive "$c" && return 0; done
    return 1
}

# A listening port inside the kernel's ephemeral range can be taken at any
# moment by an outgoing connection's local port (kubectl, curl, the apiserver's
# etcd client...), and then bind fails at random: warn about such choices.
warn_ephemeral_ports() {
    local lo hi p
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
    for p in $(all_ports); do
        if ((p >= lo && p <= hi)); then
            log "WARNING: port $p is inside the ephemeral range $lo-$hi; pick ports below $lo to avoid random bind failures"
        fi
    done
}

# The API server's command line, in one place: `up` and `restart-apiserver` use it.
start_apiserver() {
    start kube-apiserver "$KUBE_APISERVER" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
        --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --api-audiences https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,DefaultStorageClass,DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota \
        --allow-privileged=true --profiling=false \
        --event-ttl 1h
}

# restart-apiserver: SIGKILL the API server and start it again on the same etcd, as a
# crash-and-restart of the control plane does: every client's watches and connections
# drop, and nothing in etcd is lost. The chaos run injects it (docs/chaos.md).
cmd_restart_apiserver() {
    healthy kube-apiserver || die "the API server is not up: nothing to restart (run: $0 up)"
    local pid t0=$SECONDS
    pid="$(pid_of kube-apiserver)"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 "kube-apiserver exit" dead "$pid" || die "kube-apiserver (pid $pid) survived SIGKILL"
    wait_until 10 "apiserver port free" bash -c "! ss -Hltn 'sport = :$APISERVER_PORT' | grep -q ." ||
        die "port $APISERVER_PORT still bound 10 s after the API server died"
    rm -f "$PIDS/kube-apiserver.pid"
    log "kube-apiserver killed (pid $pid); starting it again"
    start_apiserver
    await kube-apiserver 90
    log "kube-apiserver restarted in $((SECONDS - t0)) s"
}

cmd_up() {
    local t0=$SECONDS
    if all_healthy; then
        log "already up and healthy (state $STATE); nothing to do"
        print_env
        return 0
    fi
    if any_alive; then
        log "a previous cluster is partly running: stopping it first"
        cmd_down
    fi
    ensure_binaries
    warn_ephemeral_ports
    # A cluster started here is nobody's but its starter's: the pytest fixture
    # marks the ones it starts itself (see e2e/conftest.py).
    rm -f "$STATE/started-by-pytest"
    cat >"$STATE/ports.env" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
CM_PORT=$CM_PORT
SCHED_PORT=$SCHED_PORT
KWOK_PORT=$KWOK_PORT
PROM_PORT=$PROM_PORT
SIM_PORT=$SIM_PORT
EOF
    gen_pki
    write_kubeconfig
    rm -rf "$DATA"
    mkdir -p "$DATA" "$LOGS" "$PIDS"

    start etcd "$ETCD" --name modelrollout-e2e --data-dir "$DATA/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "modelrollout-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --log-level warn
    await etcd 30

    start_apiserver
    await kube-apiserver 90

    start kube-controller-manager "$KUBE_CONTROLLER_MANAGER" \
        --kubeconfig "$KUBECONFIG_PATH" \
        --authentication-kubeconfig "$KUBECONFIG_PATH" --authorization-kubeconfig "$KUBECONFIG_PATH" \
        --bind-address 127.0.0.1 --secure-port "$CM_PORT" \
        --leader-elect=false \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --use-service-account-credentials=true \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --profiling=false
    start kube-scheduler "$KUBE_SCHEDULER" \
        --kubeconfig "$KUBECONFIG_PATH" \
        --authentication-kubeconfig "$KUBECONFIG_PATH" --authorization-kubeconfig "$KUBECONFIG_PATH" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" \
        --leader-elect=false --profiling=false

    # The repo's own Stages are appended to kwok's shipped ones at every start,
    # so editing e2e/kwok/*.yaml needs no rebuild.
    {
        cat "$KWOK_STAGES"
        local f
        for f in "$HERE"/kwok/*.yaml; do
            echo '---'
            cat "$f"
        done
    } >"$STATE/kwok-stages.yaml"
    start kwok "$KWOK" --kubeconfig "$KUBECONFIG_PATH" \
        --config "$STATE/kwok-stages.yaml" \
        --manage-all-nodes=false \
        --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
        --node-ip 10.244.0.1 --cidr 10.244.0.0/16 \
        --server-address "127.0.0.1:$KWOK_PORT"

    write_prometheus_config
    start prometheus "$PROMETHEUS_BIN" \
        --config.file "$STATE/prometheus/prometheus.yml" \
        --storage.tsdb.path "$DATA/prometheus" \
        --storage.tsdb.retention.time 1d \
        --web.listen-address "127.0.0.1:$PROM_PORT" \
        --web.enable-lifecycle --web.enable-admin-api \
        --log.level warn

    start simulator env PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
        "$PYTHON" -m e2e.simulator --host 127.0.0.1 --port "$SIM_PORT" --kubeconfig "$KUBECONFIG_PATH"

    await kube-controller-manager 60
    await kube-scheduler 60
    await kwok 60
    log "creating fake GPU nodes: ${NODE_NAMES[*]}"
    write_nodes | kc apply -f - >/dev/null
    log "applying the Gateway API HTTPRoute CRD ($GATEWAY_API_VERSION)"
    kc apply --server-side --force-conflicts -f "$HTTPROUTE_CRD" >/dev/null
    wait_until 60 "nodes Ready" nodes_ready || die "kwok nodes not Ready after 60 s (log: $LOGS/kwok.log)"
    log "nodes Ready"
    wait_until 60 "HTTPRoute CRD" crd_established || die "HTTPRoute CRD not Established after 60 s"
    wait_until 60 "default ServiceAccount" default_sa_exists || die "controller manager created no default ServiceAccount in 60 s (log: $LOGS/kube-controller-manager.log)"
    await prometheus 60
    await simulator 60
    log "cluster up in $((SECONDS - t0)) s"
    print_env
}

# dead PID: gone, or a zombie waiting for a reaper (it holds no port or file).
dead() {
    ! kill -0 "$1" 2>/dev/null && return 0
    [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" == Z ]]
}

# stop NAME: SIGTERM, wait up to 20 s, then SIGKILL; only the recorded pid.
stop() {
    local name="$1" pid t0=$SECONDS
    pid="$(pid_of "$name")"
    [[ -n "$pid" ]] || return 0
    if alive "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_until 20 "$name exit" dead "$pid"; then
            log "$name (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_until 5 "$name exit" dead "$pid" || log "WARNING: $name (pid $pid) still alive"
        fi
        log "$name stopped (pid $pid, $((SECONDS - t0)) s)"
    fi
    rm -f "$PIDS/$name.pid"
}

cmd_down() {
    local i
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        stop "${COMPONENTS[i]}"
    done
    rm -rf "$DATA"
    local p busy=()
    for p in $(all_ports); do port_bound "$p" && busy+=("$p"); done
    if ((${#busy[@]})); then
        log "WARNING: ports still bound after stopping: ${busy[*]} (another process owns them?)"
    fi
    rm -f "$STATE/ports.env" "$STATE/started-by-pytest"
    log "cluster down (state $STATE: data removed; pki, kubeconfig and logs kept)"
}

cmd_status() {
    local c ok=0 pid
    for c in "${COMPONENTS[@]}"; do
        pid="$(pid_of "$c")"
        if healthy "$c"; then
            printf '%-24s healthy  pid %-8s port %s\n' "$c" "$pid" "$(ports_of "$c")"
        elif alive "$c"; then
            printf '%-24s UNHEALTHY pid %-8s port %s\n' "$c" "$pid" "$(ports_of "$c")"
            ok=1
        else
            printf '%-24s down\n' "$c"
            ok=1
        fi
    done
    if ((ok == 0)); then
        if [[ -x "$KUBECTL" ]]; then kc get nodes 2>/dev/null || true; fi
        print_env
    fi
    return $ok
}

print_env() {
    cat <<EOF
export KUBECONFIG=$KUBECONFIG_PATH
export MODELROLLOUT_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export MODELROLLOUT_SIMULATOR_URL=http://127.0.0.1:$SIM_PORT
export PATH=$K8S_DIR:\$PATH   # kubectl $K8S_VERSION
EOF
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
env) print_env ;;
restart-apiserver) cmd_restart_apiserver ;;
*)
    echo "usage: $0 up|down|status|env|restart-apiserver" >&2
    exit 2
    ;;
esac
