"""Model integrity on the local cluster (docs/integrity.md): the simulated servers report
the model they loaded as ``model_info``; a rollout that declares
``spec.canary.template.modelDigest`` promotes when every canary pod reports it, rolls back
when one reports another, and ``requireImageDigest`` refuses a tag at admission."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import GROUP, PLURAL, VERSION, http_route, rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

DECLARED = "sha256:" + "d1" * 32
OTHER = "sha256:" + "e2" * 32


@pytest.fixture
def scenario(crds: Cluster, namespace: str) -> RolloutScenario:
    return RolloutScenario(crds, namespace)


def declaring(s: RolloutScenario, digest: str = DECLARED, **canary: Any) -> dict[str, Any]:
    manifest = rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary)
    manifest["spec"]["canary"]["template"]["modelDigest"] = digest
    manifest["spec"]["canary"].update(canary)
    return manifest


def reported_digests(cluster: Cluster, namespace: str, deployment: str) -> set[str]:
    rows = cluster.prom_query(f'model_info{{namespace="{namespace}",deployment="{deployment}"}}')
    return {r["metric"]["digest"] for r in rows}


def test_a_model_every_canary_pod_reports_is_promoted(scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.apply(declaring(s))
    s.wait_status(lambda st: (st.get("canaryWeight") or 0) >= 25, timeout=60, message="first step")
    s.cluster.wait_for(lambda: reported_digests(s.cluster, s.namespace, s.canary) == {DECLARED}, timeout=30,
                       message="the canary's pods reporting the declared digest in model_info")
    status = s.wait_phase("Succeeded", timeout=150)
    assert "promotion" in [h["kind"] for h in status["history"]]


def test_a_canary_serving_another_model_is_rolled_back_at_its_first_step_naming_both_digests(
        scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.cluster.simulator.set_behaviour(s.namespace, s.canary, model_digest=OTHER)
    s.apply(declaring(s))
    weights: set[int] = set()

    def rolled_back(status: dict[str, Any]) -> bool:
        weights.add(int(status.get("canaryWeight") or 0))
        return status.get("phase") == "RolledBack"

    status = s.wait_status(rolled_back, timeout=90, message="RolledBack")
    assert weights <= {0, 25}, f"the unverified model got more traffic than its first step: {weights}"
    rollback = status["rollback"]
    assert rollback["trigger"] == "modelIntegrity", rollback
    assert DECLARED in rollback["reason"] and OTHER in rollback["reason"]
    started = next(h for h in status["history"] if h["kind"] == "rollback" and h.get("evidence", {}).get("signal"))
    assert started["evidence"]["signal"]["declared"] == DECLARED
    assert OTHER in started["evidence"]["signal"]["served"].values()
    assert s.replicas(s.canary) == 0 and s.replicas(s.stable) == s.original_replicas


def test_require_image_digest_refuses_a_tag_at_admission(scenario: RolloutScenario) -> None:
    s = scenario

    def create(manifest: dict[str, Any]) -> Any:
        return s.cluster.custom.create_namespaced_custom_object(GROUP, VERSION, s.namespace, PLURAL, manifest)

    with pytest.raises(ApiException) as refused:
        create(declaring(s, requireImageDigest=True))  # the manifest's image is a tag
    assert refused.value.status == 422
    assert "spec.canary.template.image must be pinned by digest" in str(refused.value.body)
    pinned = declaring(s, requireImageDigest=True)
    pinned["spec"]["canary"]["template"]["image"] = "registry.example/model@" + DECLARED
    assert create(pinned)["spec"]["canary"]["requireImageDigest"] is True  # accepted


def route_weights(cluster: Cluster, namespace: str, route: str) -> dict[str, int]:
    obj = cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    return {b["name"]: b.get("weight", 1) for b in obj["spec"]["rules"][0]["backendRefs"]}


def gateway_rollout(crds: Cluster, namespace: str) -> tuple[RolloutScenario, dict[str, Any]]:
    crds.apply(http_route("fraud", namespace, {"fraud": 100, "fraud-canary": 0}))
    s = RolloutScenario(crds, namespace, router="gatewayAPI", http_route="fraud")
    manifest = declaring(s)
    manifest["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": {"name": "fraud"}}
    return s, manifest


def test_behind_a_gateway_the_canary_gets_no_traffic_until_its_model_is_confirmed(
        crds: Cluster, namespace: str, operator: OperatorProcess) -> None:
    s, manifest = gateway_rollout(crds, namespace)
    s.apply(manifest)
    seen: list[tuple[int, int]] = []  # (canary weight on the route, canary pods ready)

    def dark_then_routed() -> bool:
        weight = route_weights(crds, namespace, "fraud")["fraud-canary"]
        ready = int(s.deployment(s.canary).status.ready_replicas or 0)
        seen.append((weight, ready))
        return weight > 0

    crds.wait_for(dark_then_routed, timeout=60, interval=0.1, message="the canary routed after its model was confirmed")
    assert any(w == 0 and ready > 0 for w, ready in seen), f"the canary never ran dark: {seen[:20]}"
    history = s.status()["history"]
    assert any("no traffic until its servers report the declared model" in h["message"] for h in history)
    assert any("confirmed on every canary pod" in h["message"] for h in history)
    assert "ModelVerified" in {e.reason for e in s.events()}
    s.wait_phase("Succeeded", timeout=150)


def test_behind_a_gateway_a_canary_serving_another_model_never_gets_a_request(
        crds: Cluster, namespace: str, operator: OperatorProcess) -> None:
    s, manifest = gateway_rollout(crds, namespace)
    crds.simulator.set_behaviour(namespace, s.canary, model_digest=OTHER)
    s.apply(manifest)
    weights: set[int] = set()
    served: list[int] = []  # requests counted by the canary's servers, sampled

    def rolled_back() -> bool:
        weights.add(route_weights(crds, namespace, "fraud")["fraud-canary"])
        canary = crds.simulator.state()["deployments"].get(f"{namespace}/{s.canary}") or {}
        served.append(sum(p["requests"] for p in canary.get("pods", [])))
        return s.status().get("phase") == "RolledBack"

    crds.wait_for(rolled_back, timeout=90, interval=0.1, message="RolledBack")
    assert weights == {0}, f"the route gave the wrong model traffic: {weights}"
    assert max(served) == 0, f"the wrong model served requests: {max(served)}"
    status = s.status()
    assert status["rollback"]["trigger"] == "modelIntegrity"
    assert OTHER in status["rollback"]["reason"]
    assert s.replicas(s.canary) == 0
