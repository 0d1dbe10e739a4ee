"""The operator end to end on the local cluster: promotion, rollbacks, routers, controls.

Each test runs the real operator process against the real kube-apiserver and the real
Prometheus scraping the simulator, and asserts on Deployments, HTTPRoutes, Events and
status. Durations are seconds so the suite stays fast.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import http_route, rollout_manifest
from e2e.harness.operator_process import OperatorProcess, delete_rollouts
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

GPU = "nvidia.com/gpu"


def container(template: dict[str, Any]) -> dict[str, Any]:
    return template["spec"]["containers"][0]


def history_kinds(status: dict[str, Any]) -> list[str]:
    return [h["kind"] for h in status.get("history", [])]


def rollback_evidence(status: dict[str, Any]) -> dict[str, Any]:
    """The evidence of the rollback's start, whichever path took it: a tick records every
    condition's result, the fast path the signal that fired (it judges a step from its
    first second, so a canary bad from the start is usually its catch)."""
    entries = [h for h in status.get("history", []) if h["kind"] == "rollback"
               and (h.get("evidence", {}).get("conditions") or h.get("evidence", {}).get("signal"))]
    assert entries, f"no rollback evidence in history: {status.get('history')}"
    return entries[0]["evidence"]


def conditions_beyond(evidence: dict[str, Any]) -> set[str]:
    """The conditions the rollback's evidence shows beyond a bound."""
    if evidence.get("conditions"):
        return {c["name"] for c in evidence["conditions"] if c["severity"] > 0}
    signal = evidence["signal"]
    return {name for name in (signal.get("condition"), *signal.get("alsoCritical", [])) if name}


def assert_stable_restored(s: RolloutScenario) -> None:
    """The stable's replicas, pod template and GPU limits are exactly as before the rollout."""
    assert s.replicas(s.stable) == s.original_replicas
    after = s.template_of(s.stable)
    assert after == s.original_template
    assert container(after)["resources"]["limits"][GPU] == "1"
    assert s.replicas(s.canary) == 0


@pytest.fixture
def scenario(crds: Cluster, namespace: str) -> RolloutScenario:
    return RolloutScenario(crds, namespace)


def test_healthy_challenger_is_promoted(scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary, gpus=2))
    weights_seen: set[int] = set()
    def progressed(status: dict[str, Any]) -> bool:
        weights_seen.add(int(status.get("canaryWeight") or 0))
        return status.get("phase") == "Succeeded"
    status = s.wait_status(progressed, timeout=150, message="Succeeded")
    assert {25, 50, 100} <= weights_seen
    stable = s.template_of(s.stable)
    assert container(stable)["image"] == "registry.example/model:v2"
    assert container(stable)["resources"]["limits"][GPU] == "2"
    assert s.replicas(s.canary) == 0
    assert s.replicas(s.stable) == 4
    assert history_kinds(status).count("step") == 3 and "promotion" in history_kinds(status)
    complete = {c["type"]: c for c in status["conditions"]}["Complete"]
    assert complete["status"] == "True"
    reasons = {e.reason for e in s.events()}
    assert {"RolloutStarted", "StepStarted", "StepAdvanced", "Promoting", "Promoted"} <= reasons


def test_latency_breach_at_second_step_rolls_back_and_restores_the_stable(
        scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary, gpus=2))
    s.wait_status(lambda st: st.get("canaryWeight") == 50, timeout=90, message="second step")
    s.cluster.simulator.set_behaviour(s.namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
    status = s.wait_phase("RolledBack", timeout=90)
    evidence = rollback_evidence(status)
    assert evidence["trigger"] == "latency"
    assert_stable_restored(s)
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["status"] == "True"
    assert "RollbackStarted" in {e.reason for e in s.events()}


@pytest.mark.parametrize("behaviour,condition", [
    ({"accuracy": 0.55}, "accuracy"),
    ({"error_rates": {"serialization": 0.05}}, "errorRate"),
    ({"confidence_beta": {"a": 2.0, "b": 5.0}}, "confidenceDrift"),
], ids=["accuracy-drop", "serialization-errors", "confidence-drift"])
def test_degradation_rolls_back_naming_the_condition(scenario: RolloutScenario, operator: OperatorProcess,
                                                     behaviour: dict[str, Any], condition: str) -> None:
    s = scenario
    s.cluster.simulator.set_behaviour(s.namespace, s.canary, **behaviour)
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary))
    status = s.wait_phase("RolledBack", timeout=120)
    evidence = rollback_evidence(status)
    assert evidence["trigger"] == condition, evidence["reason"]
    assert condition in conditions_beyond(evidence)
    assert_stable_restored(s)


def test_gateway_api_weights_follow_steps_and_drop_to_zero_on_rollback(crds: Cluster, namespace: str,
                                                                        operator: OperatorProcess) -> None:
    route = "fraud"
    crds.apply(http_route(route, namespace, {"fraud": 100, "fraud-canary": 0}))
    s = RolloutScenario(crds, namespace, router="gatewayAPI", http_route=route)
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                             traffic={"router": "gatewayAPI", "httpRoute": {"name": route}}))

    def weights() -> dict[str, int]:
        obj = crds.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
        return {b["name"]: b.get("weight", 1) for b in obj["spec"]["rules"][0]["backendRefs"]}

    crds.wait_for(lambda: weights() == {"fraud": 75, "fraud-canary": 25}, timeout=60, message="25% on the route")
    crds.wait_for(lambda: weights() == {"fraud": 50, "fraud-canary": 50}, timeout=60, message="50% on the route")
    crds.simulator.set_behaviour(namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
    s.wait_phase("RolledBack", timeout=90)
    assert weights() == {"fraud": 100, "fraud-canary": 0}


def test_dry_run_records_decisions_and_changes_nothing(scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.cluster.simulator.set_behaviour(s.namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                             analysis={"dryRun": True}))
    status = s.wait_status(lambda st: (st.get("decision") or {}).get("action") is not None, timeout=60,
                           message="a decision")
    time.sleep(4)
    status = s.status()
    assert status["phase"] == "Progressing"
    assert s.replicas(s.stable) == 4
    assert s.template_of(s.stable) == s.original_template  # as captured before the rollout
    with pytest.raises(ApiException, match=r"\(404\)") as never_created:
        s.deployment(s.canary)
    assert never_created.value.status == 404
    assert any("DryRun" in e.reason for e in s.events())


def test_pause_resume_abort_and_manual_promote(scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                             steps=[{"weight": 25, "duration": "1h"}, {"weight": 50, "duration": "1h"},
                                    {"weight": 100, "duration": "1h"}]))
    s.wait_status(lambda st: st.get("phase") == "Progressing" and st.get("canaryWeight") == 25, timeout=60,
                  message="first step")
    s.patch_spec({"paused": True})
    s.wait_phase("Paused", timeout=30)
    s.patch_spec({"paused": False})
    s.wait_phase("Progressing", timeout=30)
    s.annotate("modelrollout.io/command", "promote@1")
    s.wait_status(lambda st: st.get("canaryWeight") == 50, timeout=30, message="manual promote to 50%")
    s.annotate("modelrollout.io/command", "abort@2")
    s.wait_phase("RolledBack", timeout=60)
    assert_stable_restored(s)
    s.annotate("modelrollout.io/command", "retry@3")
    s.wait_status(lambda st: st.get("phase") == "Progressing" and st.get("canaryWeight") == 25, timeout=60,
                  message="retried rollout at its first step")


def test_operator_default_profile_applies_to_rollouts_without_one(scenario: RolloutScenario, crds: Cluster,
                                                                   namespace: str) -> None:
    """``--default-profile`` (the chart's ``defaultProfile``): the CRD leaves the field unset."""
    from modelrollout.api.thresholds import PROFILES, Profile

    op = OperatorProcess(crds, namespace, "--default-profile", "conservative").start()
    try:
        s = scenario
        manifest = rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                                    steps=[{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}])
        s.apply(manifest)
        assert "profile" not in (s.get()["spec"].get("analysis") or {})  # no apiserver default
        status = s.wait_status(lambda st: st.get("risk"), timeout=60, message="first evaluation")
        latency = next(c for c in status["risk"]["conditions"] if c["name"] == "latency")
        assert latency["threshold"]["p95_ms"] == PROFILES[Profile.CONSERVATIVE].latency.p95_ms
        assert PROFILES[Profile.CONSERVATIVE].latency.p95_ms != PROFILES[Profile.BALANCED].latency.p95_ms
    finally:
        delete_rollouts(crds, namespace)
        op.stop()
