"""Failures users met in the tools we are compared with, each as a test named after what it prevents.

docs/comparison.md ("Known failures of the anchors, as tests") maps each test to the
upstream report it answers. Every test runs the real operator on the local cluster.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from e2e.harness.admission import CHALLENGER, refuse_challenger_on_stable, wait_policy_active
from e2e.harness.cluster import Cluster
from e2e.harness.invariants import ServingMonitor
from e2e.harness.manifests import http_route, rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario
from e2e.harness.tcp_proxy import TcpProxy

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

STEPS = [{"weight": 25, "duration": "4s"}, {"weight": 100, "duration": "4s"}]


def route_weights(cluster: Cluster, namespace: str, route: str) -> dict[str, int]:
    obj = cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    return {b["name"]: int(b.get("weight", 1)) for b in obj["spec"]["rules"][0]["backendRefs"]}


def test_analysis_whose_measurements_all_error_never_passes(operator: OperatorProcess, namespace: str) -> None:
    """Every query fails from the first tick: the rollout holds at its first step and says
    why; it never advances and never promotes on measurements that errored."""
    s = RolloutScenario(operator.cluster, namespace)
    proxy = TcpProxy(int(s.cluster.prometheus_url.rsplit(":", 1)[1]))
    proxy.up = False
    try:
        s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, steps=STEPS,
                                 analysis={"prometheus": {"url": f"http://127.0.0.1:{proxy.port}"},
                                           "prometheusErrors": {"maxConsecutive": 1000, "then": "hold"}}))
        s.wait_status(lambda st: st.get("consecutivePrometheusErrors", 0) >= 3, timeout=60, message="errors counted")
        time.sleep(6)  # past the step's 4 s: an errored tick must not count as passed
        st = s.status()
        assert st["phase"] == "Progressing" and st["currentStep"] == 0 and st["canaryWeight"] == 25
        assert st["decision"]["action"] == "hold" and "Prometheus error" in st["decision"]["reason"]
        assert not [h for h in st.get("history", []) if h["kind"] == "promotion"]
    finally:
        proxy.close()


def test_a_failed_promotion_never_routes_users_to_a_stable_without_ready_pods(
        operator: OperatorProcess, namespace: str) -> None:
    """gatewayAPI: the stable cannot run the challenger. The route keeps every request on the
    canary while the stable has no ready pod, sampled every 250 ms, and after the failure."""
    cluster = operator.cluster
    route = "fraud"
    cluster.apply(http_route(route, namespace, {"fraud": 100, "fraud-canary": 0}))
    s = RolloutScenario(cluster, namespace, router="gatewayAPI", http_route=route, replicas=8)
    refusal = refuse_challenger_on_stable(namespace, s.stable, CHALLENGER)
    cluster.apply(refusal)
    try:
        wait_policy_active(cluster, namespace)
        s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, image=CHALLENGER, gpus=1,
                                 steps=STEPS, traffic={"router": "gatewayAPI", "httpRoute": {"name": route}},
                                 analysis={"progressDeadlineSeconds": 10}))
        broken: list[tuple[float, dict[str, int], int]] = []
        started = time.monotonic()
        with ServingMonitor(cluster, namespace, s.stable, s.canary) as monitor:
            while time.monotonic() - started < 180:
                weights = route_weights(cluster, namespace, route)
                ready = int(s.deployment(s.stable).status.available_replicas or 0)
                if weights.get("fraud", 0) > 0 and ready == 0:
                    broken.append((round(time.monotonic() - started, 2), weights, ready))
                if s.status().get("phase") in ("Failed", "Succeeded", "RolledBack"):
                    break
                time.sleep(0.25)
        status = s.status()
        assert status["phase"] == "Failed" and "handover stopped" in status["message"], status.get("message")
        assert not broken, f"the route sent users to a stable with no ready pod: {broken[:5]}"
        assert route_weights(cluster, namespace, route) == {"fraud": 0, "fraud-canary": 100}
        assert monitor.samples[-1].canary_ready == 8  # the canary still serves everything
        monitor.assert_serving_at_least(6)
    finally:
        for obj in refusal:
            cluster.delete(obj["kind"], obj["metadata"]["name"])


def test_an_abort_returns_all_traffic_to_the_stable_at_once(operator: OperatorProcess, namespace: str) -> None:
    """An abort at 50 % moves the route to 100/0 within seconds, whatever the canary's pods
    take to go, and ends with the stable exactly as it was."""
    cluster = operator.cluster
    route = "fraud"
    cluster.apply(http_route(route, namespace, {"fraud": 100, "fraud-canary": 0}))
    s = RolloutScenario(cluster, namespace, router="gatewayAPI", http_route=route)
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary,
                             steps=[{"weight": 50, "duration": "1h"}, {"weight": 100, "duration": "1h"}],
                             traffic={"router": "gatewayAPI", "httpRoute": {"name": route}}))
    cluster.wait_for(lambda: route_weights(cluster, namespace, route) == {"fraud": 50, "fraud-canary": 50},
                     timeout=60, message="50% on the route")
    t0 = time.monotonic()
    s.annotate("modelrollout.io/command", "abort@1")
    cluster.wait_for(lambda: route_weights(cluster, namespace, route) == {"fraud": 100, "fraud-canary": 0},
                     timeout=10, interval=0.1, message="the route back on the stable")
    moved = time.monotonic() - t0
    status = s.wait_phase("RolledBack", timeout=60)
    assert status["rollback"]["trigger"] == "manual"
    assert s.template_of(s.stable) == s.original_template and s.replicas(s.stable) == s.original_replicas
    assert s.replicas(s.canary) == 0
    print(f"\n[abort] route at 100/0 {moved:.2f}s after the annotation")


def test_a_retry_runs_the_analysis_again_from_the_first_step(operator: OperatorProcess, namespace: str) -> None:
    """After a rollback, retry re-runs every step's analysis on fresh data (it never resumes
    the old verdicts): with the canary still degraded it rolls back again, at step 0."""
    s = RolloutScenario(operator.cluster, namespace)
    s.cluster.simulator.set_behaviour(namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, steps=STEPS))
    first = s.wait_phase("RolledBack", timeout=120)
    rollbacks = len([h for h in first["history"] if h["kind"] == "rollback"])
    retried_at = time.time()
    s.annotate("modelrollout.io/command", "retry@1")
    s.wait_status(lambda st: st.get("phase") == "Progressing", timeout=60, message="retried")
    again = s.wait_phase("RolledBack", timeout=120)
    assert len([h for h in again["history"] if h["kind"] == "rollback"]) > rollbacks
    # the decision, not status.risk: a fast-path rollback before the step's first tick leaves
    # no tick verdict to read, and the decision is what rolled back either way
    decided = datetime.fromisoformat(again["decision"]["at"].replace("Z", "+00:00")).timestamp()
    assert again["decision"]["action"] == "rollback", again["decision"]
    assert decided >= retried_at - 1, "the verdict that rolled back again predates the retry"
    started = [h["evidence"] for h in again["history"] if h["kind"] == "rollback" and "step" in h.get("evidence", {})]
    assert started[-1]["trigger"] == "latency" and started[-1]["step"] == 0
    assert not [h for h in again["history"] if h["kind"] == "promotion"]


def test_a_custom_condition_on_a_metric_that_does_not_exist_never_passes(
        operator: OperatorProcess, namespace: str) -> None:
    """A typo in a custom query returns no series: the condition has no data, the rollout
    holds and says which condition, and it never advances on it."""
    s = RolloutScenario(operator.cluster, namespace)
    custom: dict[str, Any] = {"name": "gpuMemory", "query": 'max(model_gpu_memroy_bytes{deployment="{canary}"})',
                              "direction": "above", "threshold": 1e9, "critical": 2e9}
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, steps=STEPS,
                             analysis={"custom": [custom], "noData": {"policy": "hold", "maxConsecutive": 1000}}))
    s.wait_status(lambda st: st.get("risk") and st.get("consecutiveNoData", 0) >= 2, timeout=60, message="no data")
    time.sleep(6)  # past the step's 4 s
    st = s.status()
    assert st["phase"] == "Progressing" and st["currentStep"] == 0
    named = {c["name"]: c for c in st["risk"]["conditions"]}
    assert named["gpuMemory"]["noData"] is True
    assert st["decision"]["action"] == "hold" and "gpuMemory" in st["decision"]["reason"]


def test_a_promotion_waits_for_the_stables_new_pods_to_be_ready(operator: OperatorProcess, namespace: str) -> None:
    """The stable's new pods are refused for a while (as an image pull or a scheduler would
    delay them): the canary gives up no pod until stable pods are ready, the ready serving
    pods never drop below the floor, and the promotion completes once they are."""
    cluster = operator.cluster
    s = RolloutScenario(cluster, namespace, replicas=8)
    refusal = refuse_challenger_on_stable(namespace, s.stable, CHALLENGER)
    cluster.apply(refusal)
    try:
        wait_policy_active(cluster, namespace)
        with ServingMonitor(cluster, namespace, s.stable, s.canary) as monitor:
            s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, image=CHALLENGER, gpus=1,
                                     steps=STEPS, analysis={"progressDeadlineSeconds": 90}))
            s.wait_phase("Promoting", timeout=120)
            time.sleep(8)  # the first batch is refused for a while
            held = s.status()
            assert held["phase"] == "Promoting" and held["promotion"]["stableReady"] == 0
            assert s.replicas(s.canary) == 8  # nothing was taken from the canary
            for obj in refusal:
                cluster.delete(obj["kind"], obj["metadata"]["name"])
            done = s.wait_phase("Succeeded", "Failed", timeout=120)
        assert done["phase"] == "Succeeded", done.get("message")
        monitor.assert_serving_at_least(6)  # 8 recorded, maxUnavailable 25 %
    finally:
        for obj in refusal:
            cluster.delete(obj["kind"], obj["metadata"]["name"])
