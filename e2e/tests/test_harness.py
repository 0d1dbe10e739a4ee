"""Tests of the e2e harness itself: the fake GPU nodes schedule and
scale Deployments, HTTPRoutes work, the simulator's series reach Prometheus and
react to scripted changes within seconds, OOM injection shows in pod status,
and cluster-down leaves nothing behind.

Each can fail: they assert on the apiserver's and Prometheus's answers, not on
what the harness believes it did.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from e2e.harness.cluster import CLUSTER_SH, Cluster, read_ports
from e2e.harness.manifests import gpu_deployment, http_route

pytestmark = pytest.mark.e2e

KWOK_NODES = {"kwok-gpu-0", "kwok-gpu-1"}


def _live_pods(cluster: Cluster, namespace: str, app: str) -> list:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def _ready_pods(cluster: Cluster, namespace: str, app: str) -> list:
    return [
        p for p in _live_pods(cluster, namespace, app)
        if p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def test_fake_gpu_nodes_advertise_gpus(cluster: Cluster) -> None:
    nodes = {n.metadata.name: n for n in cluster.core.list_node().items}
    assert KWOK_NODES <= set(nodes)
    for name in KWOK_NODES:
        n = nodes[name]
        # What cluster.sh advertised (MODELROLLOUT_NODE_GPUS, default 64).
        assert n.status.allocatable["nvidia.com/gpu"] == os.environ.get("MODELROLLOUT_NODE_GPUS", "64")
        assert n.status.capacity["cpu"] == "32"
        assert any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)


def test_gpu_deployment_becomes_available(cluster: Cluster, namespace: str) -> None:
    cluster.apply(gpu_deployment("scorer", namespace, replicas=3, gpus=1))
    cluster.wait_for(lambda: cluster.deployment_available(namespace, "scorer", 3), timeout=60,
                     message="scorer 3/3 available")
    pods = _ready_pods(cluster, namespace, "scorer")
    assert len(pods) == 3
    assert {p.spec.node_name for p in pods} <= KWOK_NODES
    for p in pods:
        assert p.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"


def test_scaling_changes_pods(cluster: Cluster, namespace: str) -> None:
    cluster.apply(gpu_deployment("scaler", namespace, replicas=1))
    cluster.wait_for(lambda: cluster.deployment_available(namespace, "scaler", 1), timeout=60,
                     message="scaler 1/1")
    for replicas in (5, 1):
        cluster.apps.patch_namespaced_deployment_scale(
            "scaler", namespace, {"spec": {"replicas": replicas}})
        cluster.wait_for(lambda r=replicas: cluster.deployment_available(namespace, "scaler", r),
                         timeout=60, message=f"scaler {replicas}/{replicas}")
        # Surplus pods are really gone (kwok's pod-delete stage), not just unready.
        cluster.wait_for(lambda r=replicas: len(cluster.core.list_namespaced_pod(
            namespace, label_selector="app=scaler").items) == r, timeout=60,
            message=f"exactly {replicas} scaler pods")


def test_httproute_create_and_patch_weights(cluster: Cluster, namespace: str) -> None:
    cluster.apply(http_route("scorer", namespace, {"scorer": 100, "scorer-canary": 0}))
    grp, ver = "gateway.networking.k8s.io", "v1"
    r = cluster.custom.get_namespaced_custom_object(grp, ver, namespace, "httproutes", "scorer")
    assert [b["weight"] for b in r["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    # What a gatewayAPI router does: rewrite the weights.
    rules = r["spec"]["rules"]
    rules[0]["backendRefs"][0]["weight"] = 75
    rules[0]["backendRefs"][1]["weight"] = 25
    cluster.custom.patch_namespaced_custom_object(grp, ver, namespace, "httproutes", "scorer",
                                                  {"spec": {"rules": rules}})
    r = cluster.custom.get_namespaced_custom_object(grp, ver, namespace, "httproutes", "scorer")
    assert [b["weight"] for b in r["spec"]["rules"][0]["backendRefs"]] == [75, 25]
    assert r["metadata"]["generation"] == 2


CONTRACT_SERIES = [
    "model_requests_total",
    "model_request_errors_total",
    "model_request_duration_seconds_bucket",
    "model_request_duration_seconds_sum",
    "model_request_duration_seconds_count",
    "model_predictions_evaluated_total",
    "model_predictions_correct_total",
    "model_prediction_confidence_bucket",
    "model_cache_requests_total",
    "model_cache_evictions_total",
    "model_cache_lookup_duration_seconds_bucket",
]


def test_simulator_series_in_prometheus_follow_replicas_and_behaviour(cluster: Cluster, namespace: str) -> None:
    cluster.apply([gpu_deployment("fraud", namespace, replicas=3, image="fraud:v1"),
                   gpu_deployment("fraud-canary", namespace, replicas=1, image="fraud:v2")])
    for name, n in (("fraud", 3), ("fraud-canary", 1)):
        cluster.wait_for(lambda name=name, n=n: cluster.deployment_available(namespace, name, n),
                         timeout=60, message=f"{name} available")
    sim = cluster.simulator
    sim.register_service("fraud", namespace, stable="fraud", canary="fraud-canary", router="replicas", rps=400)

    sel = f'namespace="{namespace}",deployment="fraud-canary"'
    # Every contract series exists, labelled namespace/deployment/pod.
    for series in CONTRACT_SERIES:
        res = cluster.wait_for(lambda s=series: cluster.prom_query(f"{s}{{{sel}}}"), timeout=20,
                               message=f"{series} in Prometheus")
        assert res[0]["metric"]["pod"].startswith("fraud-canary-")
    cats = {r["metric"]["category"] for r in cluster.prom_query(f"model_request_errors_total{{{sel}}}")}
    assert cats == {"extraction", "serialization", "timeout", "cache", "other"}
    results = {r["metric"]["result"] for r in cluster.prom_query(f"model_cache_requests_total{{{sel}}}")}
    assert results == {"hit", "miss"}
    les = {r["metric"]["le"] for r in cluster.prom_query(f"model_prediction_confidence_bucket{{{sel}}}")}
    assert {"0.1", "0.5", "1.0", "+Inf"} <= les
    # One pod label value per ready pod.
    stable_pods = {r["metric"]["pod"] for r in cluster.prom_query(
        f'model_requests_total{{namespace="{namespace}",deployment="fraud"}}')}
    assert stable_pods == {p.metadata.name for p in _ready_pods(cluster, namespace, "fraud")}

    # Traffic follows the replica ratio (3:1 of 400 RPS). A rate over a window
    # longer than the series' life underestimates, hence the wait.
    def rates() -> tuple[float, float] | None:
        s = cluster.prom_scalar(f'sum(rate(model_requests_total{{namespace="{namespace}",deployment="fraud"}}[5s]))')
        c = cluster.prom_scalar(f"sum(rate(model_requests_total{{{sel}}}[5s]))")
        return (s, c) if s and c and 240 < s < 360 and 60 < c < 140 else None

    cluster.wait_for(rates, timeout=20, message="stable ~300 RPS and canary ~100 RPS")

    # The 60 s window the operator's default templates use answers too.
    p95_60 = f"histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket{{{sel}}}[60s])))"
    assert cluster.wait_for(lambda: cluster.prom_scalar(p95_60), timeout=15, message="60s p95")

    # A scripted latency change shows in a short-window p95 within 5 s.
    p95_5 = f"histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket{{{sel}}}[5s])))"
    before = cluster.wait_for(lambda: cluster.prom_scalar(p95_5), timeout=10, message="5s p95")
    assert before < 0.003, f"healthy p95 should be < 3 ms, got {before * 1000:.2f} ms"
    t0 = time.monotonic()
    sim.set_behaviour(namespace, "fraud-canary", latency_ms={"median": 8.0, "p95": 12.0})
    after = cluster.wait_for(lambda: (v := cluster.prom_scalar(p95_5)) is not None and v > 0.006 and v,
                             timeout=10, interval=0.1, message="p95 above 6 ms")
    elapsed = time.monotonic() - t0
    assert elapsed <= 5.0, f"latency change took {elapsed:.1f}s to show in PromQL (p95 {after * 1000:.1f} ms)"
    # The stable is untouched.
    stable_p95 = cluster.prom_scalar(
        f'histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket'
        f'{{namespace="{namespace}",deployment="fraud"}}[5s])))')
    assert stable_p95 is not None and stable_p95 < 0.003


def test_simulator_share_follows_httproute_weights(cluster: Cluster, namespace: str) -> None:
    cluster.apply([gpu_deployment("ranker", namespace, replicas=2),
                   gpu_deployment("ranker-canary", namespace, replicas=2),
                   http_route("ranker", namespace, {"ranker": 90, "ranker-canary": 10})])
    for name in ("ranker", "ranker-canary"):
        cluster.wait_for(lambda name=name: cluster.deployment_available(namespace, name, 2), timeout=60,
                         message=f"{name} available")
    sim = cluster.simulator
    sim.register_service("ranker", namespace, stable="ranker", canary="ranker-canary",
                         router="gatewayAPI", http_route="ranker", rps=1000)

    def share(dep: str) -> float:
        st = sim.deployment_state(namespace, dep)
        return st["share"] if st else -1.0

    cluster.wait_for(lambda: abs(share("ranker-canary") - 0.1) < 1e-9, timeout=5, message="canary share 0.1")
    assert abs(share("ranker") - 0.9) < 1e-9
    cluster.custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "ranker",
        {"spec": {"rules": [{"backendRefs": [{"name": "ranker", "port": 8080, "weight": 0},
                                             {"name": "ranker-canary", "port": 8080, "weight": 100}]}]}})
    cluster.wait_for(lambda: share("ranker-canary") == 1.0, timeout=3, message="canary share 1.0 after patch")
    # And Prometheus sees the stable's traffic stop.
    q = f'sum(rate(model_requests_total{{namespace="{namespace}",deployment="ranker"}}[3s]))'
    cluster.wait_for(lambda: cluster.prom_scalar(q) == 0.0, timeout=15, message="stable rate 0")


def _container_status(cluster: Cluster, namespace: str, app: str):
    pods = _live_pods(cluster, namespace, app)
    for p in pods:
        for cs in p.status.container_statuses or []:
            yield p, cs


def _deployment_saw_no_ready_pod(cluster: Cluster, namespace: str, name: str):
    d = cluster.apps.read_namespaced_deployment(name, namespace)
    caught_up = (d.status.observed_generation or 0) >= (d.metadata.generation or 0)
    return d if caught_up and not d.status.ready_replicas else None


def _assert_unavailable(d) -> None:
    """The Deployment counts no pod available and says so in its Available condition."""
    s = d.status
    assert not s.available_replicas and s.unavailable_replicas == d.spec.replicas, s
    available = {c.type: c for c in s.conditions or []}.get("Available")
    assert available is not None and available.status == "False", s.conditions


def test_oom_injection_crashloop_shape(cluster: Cluster, namespace: str) -> None:
    """Realistic OOM under restartPolicy Always: Running, not ready, CrashLoopBackOff,
    lastState OOMKilled, restartCount rising."""
    cluster.apply(gpu_deployment("oom-loop", namespace, replicas=1,
                                 pod_labels={"modelrollout.io/inject": "crashloop-oom"}))

    def crashlooping() -> bool:
        for p, cs in _container_status(cluster, namespace, "oom-loop"):
            term = cs.last_state.terminated if cs.last_state else None
            waiting = cs.state.waiting if cs.state else None
            if (term and term.reason == "OOMKilled" and term.exit_code == 137
                    and waiting and waiting.reason == "CrashLoopBackOff"
                    and cs.restart_count > 0 and not cs.ready and p.status.phase == "Running"
                    and cs.state.running is None):
                return True
        return False

    cluster.wait_for(crashlooping, timeout=30, message="CrashLoopBackOff with lastState OOMKilled")
    # The Deployment's counts lag the pod: kwok made the pod Ready before the Stage crashed it
    # a second later, and the ReplicaSet controller, then the deployment controller, catch up
    # in turn. Read the Deployment once its controller has observed the pod unready (its
    # current generation observed, readyReplicas 0), not at whatever moment the pod changed.
    d = cluster.wait_for(lambda: _deployment_saw_no_ready_pod(cluster, namespace, "oom-loop"), timeout=30,
                         message="oom-loop: the deployment controller observing the pod unready")
    _assert_unavailable(d)
    # The loop goes on: restartCount keeps rising (every 5 s), the pod is not replaced.
    first = {p.metadata.name: cs.restart_count for p, cs in _container_status(cluster, namespace, "oom-loop")}
    cluster.wait_for(lambda: any(cs.restart_count > first.get(p.metadata.name, 99)
                                 for p, cs in _container_status(cluster, namespace, "oom-loop")),
                     timeout=15, message="restartCount rising")
    assert {p.metadata.name for p in _live_pods(cluster, namespace, "oom-loop")} == set(first)
    # Still not available after restarts: the loop never makes the pod count again.
    _assert_unavailable(cluster.apps.read_namespaced_deployment("oom-loop", namespace))


def test_oom_injection_oomkilled_shape(cluster: Cluster, namespace: str) -> None:
    """kwok's chaos shape: state.terminated OOMKilled, exit 137, phase Failed."""
    cluster.apply(gpu_deployment("oom-fail", namespace, replicas=1,
                                 pod_labels={"modelrollout.io/inject": "oomkilled"}))

    def oomkilled() -> bool:
        for p, cs in _container_status(cluster, namespace, "oom-fail"):
            term = cs.state.terminated if cs.state else None
            if term and term.reason == "OOMKilled" and term.exit_code == 137 and p.status.phase == "Failed":
                return True
        return False

    cluster.wait_for(oomkilled, timeout=30, message="pod Failed with state.terminated OOMKilled")


def _port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cluster_down_leaves_nothing_running(cluster: Cluster) -> None:
    """A second, throwaway cluster on other ports: up, then down, then nothing is left.

    (The session's cluster is left alone; it only proves the binaries exist.)
    """
    # Below the session cluster's ports, so still under the kernel's ephemeral
    # range (a listener there can collide with outgoing connections).
    offset = -1000
    env = dict(os.environ)
    env.setdefault("MODELROLLOUT_PYTHON", sys.executable)
    base = read_ports(cluster.state)
    names = {
        "ETCD_PORT": "MODELROLLOUT_ETCD_PORT", "ETCD_PEER_PORT": "MODELROLLOUT_ETCD_PEER_PORT",
        "APISERVER_PORT": "MODELROLLOUT_APISERVER_PORT", "CM_PORT": "MODELROLLOUT_CONTROLLER_MANAGER_PORT",
        "SCHED_PORT": "MODELROLLOUT_SCHEDULER_PORT", "KWOK_PORT": "MODELROLLOUT_KWOK_PORT",
        "PROM_PORT": "MODELROLLOUT_PROMETHEUS_PORT", "SIM_PORT": "MODELROLLOUT_SIMULATOR_PORT",
    }
    ports = {k: base[k] + offset for k in names}
    busy = [p for p in ports.values() if _port_bound(p)]
    assert not busy, f"ports for the throwaway cluster already in use: {busy}"
    for k, var in names.items():
        env[var] = str(ports[k])
    with tempfile.TemporaryDirectory(prefix="mr-e2e-down-") as tmp:
        env["MODELROLLOUT_STATE"] = tmp
        env["MODELROLLOUT_SKIP_BUILD"] = "1"
        t0 = time.monotonic()
        up = subprocess.run(["bash", str(CLUSTER_SH), "up"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        up_s = time.monotonic() - t0
        pids = {f.stem: int(f.read_text()) for f in (Path(tmp) / "pids").glob("*.pid")}
        assert len(pids) == 7, pids
        assert all(_pid_alive(p) for p in pids.values())
        assert all(_port_bound(p) for p in ports.values())
        # `up` again is a no-op on a healthy cluster.
        again = subprocess.run(["bash", str(CLUSTER_SH), "up"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "already up" in again.stderr
        assert {f.stem: int(f.read_text()) for f in (Path(tmp) / "pids").glob("*.pid")} == pids

        down = subprocess.run(["bash", str(CLUSTER_SH), "down"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert down.returncode == 0, down.stderr[-3000:]
        alive = {n: p for n, p in pids.items() if _pid_alive(p)}
        assert not alive, f"still running after down: {alive}"
        bound = [p for p in ports.values() if _port_bound(p)]
        assert not bound, f"ports still bound after down: {bound}"
        assert not (Path(tmp) / "data").exists()
        status = subprocess.run(["bash", str(CLUSTER_SH), "status"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert status.returncode != 0
    # The session cluster is still fine.
    assert cluster.core.list_node().items
    print(f"second cluster warm start: {up_s:.1f}s")
