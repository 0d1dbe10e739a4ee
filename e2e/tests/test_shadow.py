"""The shadow step on the local cluster (docs/shadow.md): the operator adds a RequestMirror
filter to the HTTPRoute while the weights stay 100/0; the simulator mirrors what the route
mirrors, so the canary's metrics come from copies no user receives. A healthy challenger
goes shadow -> 25 -> 50 -> 100; a slow one and an inaccurate one are rolled back during the
shadow step, and the route, sampled throughout, never gives them a user's request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import GROUP, PLURAL, VERSION, http_route, rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

ROUTE = "fraud"
SHADOW_STEPS = [{"shadow": {"percent": 100, "duration": "10s"}},
                {"weight": 25, "duration": "6s"}, {"weight": 50, "duration": "6s"}, {"weight": 100, "duration": "6s"}]


def route_state(cluster: Cluster, namespace: str) -> tuple[int, int | None]:
    """(the canary's weight on the route, the percent mirrored to it or None)."""
    obj = cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", ROUTE)
    rule = obj["spec"]["rules"][0]
    weight = next(b.get("weight", 1) for b in rule["backendRefs"] if b["name"] == "fraud-canary")
    mirrors = [f["requestMirror"] for f in rule.get("filters") or [] if f.get("type") == "RequestMirror"]
    assert len(mirrors) <= 1, f"more than one mirror on the route: {mirrors}"
    if mirrors:
        assert mirrors[0]["backendRef"]["name"] == "fraud-canary", mirrors
    return weight, (int(mirrors[0].get("percent", 100)) if mirrors else None)


def shadow_rollout(crds: Cluster, namespace: str, steps: list[dict[str, Any]] | None = None
                   ) -> tuple[RolloutScenario, dict[str, Any]]:
    crds.apply(http_route(ROUTE, namespace, {"fraud": 100, "fraud-canary": 0}))
    s = RolloutScenario(crds, namespace, router="gatewayAPI", http_route=ROUTE)
    manifest = rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary, steps=steps or SHADOW_STEPS,
                                traffic={"router": "gatewayAPI", "httpRoute": {"name": ROUTE}})
    return s, manifest


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def canary_requests(cluster: Cluster, namespace: str, canary: str) -> float:
    state = cluster.simulator.state()["deployments"].get(f"{namespace}/{canary}") or {}
    return float(sum(p["requests"] for p in state.get("pods", [])))


def test_a_healthy_challenger_is_judged_on_mirrored_traffic_then_routed_and_promoted(
        crds: Cluster, namespace: str, operator: OperatorProcess) -> None:
    s, manifest = shadow_rollout(crds, namespace)
    s.apply(manifest)
    seen: list[tuple[int, int | None, int]] = []  # (route weight, mirror, status step)
    served_while_dark: list[float] = []

    def routed() -> bool:
        weight, mirror = route_state(crds, namespace)
        status = s.status()
        seen.append((weight, mirror, int(status.get("currentStep") or 0)))
        if weight == 0 and mirror is not None:
            served_while_dark.append(canary_requests(crds, namespace, s.canary))
        assert not (weight > 0 and mirror is not None), "users routed to the canary while it was still mirrored"
        return weight > 0

    crds.wait_for(routed, timeout=90, interval=0.2, message="the canary routed after its shadow step")
    assert any(m == 100 for _, m, _ in seen), f"the route never mirrored: {seen[:10]}"
    assert served_while_dark and max(served_while_dark) > 0, "the canary answered no mirrored request"
    status = s.wait_phase("Succeeded", timeout=150)
    assert route_state(crds, namespace) == (0, None)  # promoted: the stable serves everything, no mirror left
    steps = [h for h in status["history"] if h["kind"] == "step"]
    assert "shadow: 100% of requests mirrored" in steps[0]["message"] and steps[0]["weight"] == 0
    assert [h.get("weight") for h in steps[1:4]] == [25, 50, 100]
    assert "ShadowStarted" in {e.reason for e in s.events()}


@pytest.mark.parametrize("behaviour,condition", [
    ({"latency_ms": {"median": 8.0, "p95": 14.0}}, "latency"),
    ({"accuracy": 0.55}, "accuracy"),
], ids=["slow", "inaccurate"])
def test_a_degraded_challenger_is_rolled_back_in_its_shadow_step_without_serving_a_user(
        crds: Cluster, namespace: str, operator: OperatorProcess, behaviour: dict[str, Any], condition: str) -> None:
    # a shadow step long enough that only a rollback ends it within the test's wait
    s, manifest = shadow_rollout(crds, namespace, [{"shadow": {"duration": "10m"}}, *SHADOW_STEPS[1:]])
    crds.simulator.set_behaviour(namespace, s.canary, **behaviour)
    s.apply(manifest)
    weights: set[int] = set()
    mirrored: list[int | None] = []

    def rolled_back() -> bool:
        weight, mirror = route_state(crds, namespace)
        weights.add(weight)
        mirrored.append(mirror)
        return s.status().get("phase") == "RolledBack"

    crds.wait_for(rolled_back, timeout=120, interval=0.1, message="RolledBack during the shadow step")
    assert weights == {0}, f"the route gave the degraded canary users' traffic: {weights}"
    assert 100 in mirrored, "the canary was never mirrored to"
    status = s.status()
    assert status["rollback"]["trigger"] == condition, status["rollback"]
    assert status["currentStep"] == 0 and not status.get("mirrorPercent")
    started = next(h for h in status["history"] if h["kind"] == "step")
    print(f"shadow {condition}: rolled back by the {status['rollback']['path']} "
          f"{_seconds(status['rollback']['startedAt']) - _seconds(started['at']):.2f} s after the shadow step began")
    assert route_state(crds, namespace) == (0, None), "the mirror outlived the rollback"
    assert s.replicas(s.canary) == 0 and s.replicas(s.stable) == s.original_replicas


def test_a_shadow_step_with_the_replicas_router_is_refused_at_admission(
        crds: Cluster, namespace: str) -> None:
    manifest = rollout_manifest("fraud", namespace, stable="fraud", canary="fraud-canary", steps=SHADOW_STEPS)
    with pytest.raises(ApiException) as refused:
        crds.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    assert refused.value.status == 422
    assert "needs spec.traffic.router gatewayAPI" in str(refused.value.body)
    manifest["spec"]["steps"] = [SHADOW_STEPS[1], SHADOW_STEPS[0], *SHADOW_STEPS[2:]]
    manifest["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": {"name": ROUTE}}
    with pytest.raises(ApiException) as second:
        crds.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    assert "only the first step may be a shadow step" in str(second.value.body)


def test_a_stable_service_that_selects_the_canary_too_is_refused_then_fixed_by_a_role_label(
        crds: Cluster, namespace: str, operator: OperatorProcess) -> None:
    """The route's stable backend is a Service; one selecting only `app: fraud` would also
    pick the canary's pods (they carry the stable's labels), serving users from the
    canary during its shadow step. The start is refused naming the fix; with
    `modelrollout.io/role: stable` on the stable's pods and in the selector, a retry runs
    and the promoted stable keeps that label."""
    from kubernetes import client

    s, manifest = shadow_rollout(crds, namespace)
    crds.core.create_namespaced_service(namespace, client.V1Service(
        metadata=client.V1ObjectMeta(name="fraud"),
        spec=client.V1ServiceSpec(selector={"app": "fraud"}, ports=[client.V1ServicePort(port=8080)])))
    s.apply(manifest)
    failed = s.wait_phase("Failed", timeout=60)
    assert "selects the canary's pods too" in failed["message"] and "modelrollout.io/role: stable" in failed["message"]
    assert route_state(crds, namespace) == (0, None)  # nothing was changed
    crds.apps.patch_namespaced_deployment(s.stable, namespace, {"spec": {"template": {"metadata": {
        "labels": {"modelrollout.io/role": "stable"}}}}})
    crds.wait_for(lambda: crds.deployment_available(namespace, s.stable, s.original_replicas), timeout=60,
                  message="the stable rolled to its labelled pods")
    crds.core.patch_namespaced_service("fraud", namespace, {"spec": {"selector": {
        "app": "fraud", "modelrollout.io/role": "stable"}}})
    s.annotate("modelrollout.io/command", "retry")
    s.wait_phase("Succeeded", timeout=150)
    labels = s.template_of(s.stable)["metadata"]["labels"]
    assert labels.get("modelrollout.io/role") == "stable", labels
