"""Promotion that never needs two copies of the model and never takes it offline.

Each test runs a real rollout on the local cluster with a ``ServingMonitor`` sampling
both Deployments every 250 ms: the ready serving pods (stable + canary) must never
drop below the stable's recorded replicas less ``spec.promotion.maxUnavailable``
(25 % by default) at any moment, not only at the end (docs/operator.md, "Promotion").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.harness.admission import CHALLENGER, refuse_challenger_on_stable, wait_policy_active
from e2e.harness.cluster import Cluster
from e2e.harness.invariants import ServingMonitor
from e2e.harness.manifests import http_route, rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

STABLE_REPLICAS = 20
BOUND = STABLE_REPLICAS - STABLE_REPLICAS * 25 // 100  # maxUnavailable 25 % of 20: 15 pods always ready
STEPS = [{"weight": 5, "duration": "6s"}, {"weight": 25, "duration": "6s"}, {"weight": 100, "duration": "6s"}]


def quota(namespace: str, gpus: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpus", "namespace": namespace},
            "spec": {"hard": {"requests.nvidia.com/gpu": str(gpus)}}}


@pytest.fixture
def refusal(cluster: Cluster, namespace: str) -> Iterator[list[dict[str, Any]]]:
    objects = refuse_challenger_on_stable(namespace, "fraud", CHALLENGER)
    yield objects
    for obj in objects:
        cluster.delete(obj["kind"], obj["metadata"]["name"])


def test_a_healthy_challenger_promotes_under_a_gpu_quota_that_cannot_hold_two_copies(
        operator: OperatorProcess, namespace: str) -> None:
    """Stable 20 x 1 GPU, challenger 2 GPUs a pod, quota 64: every step fits (55 at most), a
    promotion that copied the whole challenger onto the stable at once would need 80."""
    cluster = operator.cluster
    scenario = RolloutScenario(cluster, namespace, replicas=STABLE_REPLICAS)
    cluster.apply(quota(namespace, 64))
    with ServingMonitor(cluster, namespace, scenario.stable, scenario.canary) as monitor:
        scenario.apply(rollout_manifest("fraud", namespace, stable=scenario.stable, canary=scenario.canary,
                                        image=CHALLENGER, gpus=2, steps=STEPS,
                                        analysis={"progressDeadlineSeconds": 60}))
        status = scenario.wait_phase("Succeeded", "Failed", "RolledBack", timeout=240)
    assert status["phase"] == "Succeeded", status.get("message")
    peak = monitor.peak_gpus()
    assert peak.gpus <= 64, f"peak {peak} exceeds the quota"
    monitor.assert_serving_at_least(BOUND)
    promotion = status["promotion"]
    assert promotion["batch"] >= 4 and promotion["stableReady"] == promotion["total"] == STABLE_REPLICAS
    stable = scenario.deployment(scenario.stable)
    assert stable.spec.replicas == STABLE_REPLICAS
    container = stable.spec.template.spec.containers[0]
    assert container.image == CHALLENGER and container.resources.limits["nvidia.com/gpu"] == "2"
    assert scenario.replicas(scenario.canary) == 0
    print(f"\n[promotion under quota] peak {peak.gpus}/64 GPUs at {peak.at}s, {promotion['batch']} batches, "
          f"{status['message']}; min serving {monitor.min_serving().serving} (bound {BOUND}), "
          f"{len(monitor.samples)} samples")


@pytest.mark.parametrize("restart", ["retry", "newRevision", "retryAfterAllowed"])
def test_a_refused_promotion_keeps_serving_and_a_restart_never_drops_below_the_bound(
        operator: OperatorProcess, namespace: str, refusal: list[dict[str, Any]], restart: str) -> None:
    """The stable cannot run the challenger: the handover stops where it is, the canary keeps
    serving, the cause is named; retry or a new revision starts from the recorded stable.

    ``retryAfterAllowed``: the refusal goes first, so the stable's challenger ReplicaSet
    gets its pods before the retry, and the stable then rolls back to the recorded template
    with ready pods of both templates (its own rolling update may delete ready pods down to
    its own maxUnavailable: found by the chaos run, docs/chaos.md)."""
    cluster = operator.cluster
    scenario = RolloutScenario(cluster, namespace, replicas=STABLE_REPLICAS)
    cluster.apply(refusal)
    wait_policy_active(cluster, namespace)
    manifest = rollout_manifest("fraud", namespace, stable=scenario.stable, canary=scenario.canary,
                                image=CHALLENGER, gpus=1, steps=STEPS, analysis={"progressDeadlineSeconds": 15})
    with ServingMonitor(cluster, namespace, scenario.stable, scenario.canary) as monitor:
        scenario.apply(manifest)
        failed = scenario.wait_phase("Failed", "Succeeded", "RolledBack", timeout=240)
        assert failed["phase"] == "Failed", failed.get("message")
        reasons = {c["type"]: c["reason"] for c in failed["conditions"]}
        assert reasons["Progressing"] == "PromotionFailed"
        assert "cannot run" in failed["message"] and "handover stopped at 0/20" in failed["message"], failed["message"]
        assert failed["stableRecord"]["replicas"] == STABLE_REPLICAS
        assert scenario.replicas(scenario.canary) == STABLE_REPLICAS  # still serving everything
        failed_at = monitor.now()

        if restart == "retry":
            scenario.annotate("modelrollout.io/command", "retry")
            scenario.wait_status(lambda s: s.get("phase") == "Progressing", timeout=60, message="retry started")
            assert scenario.template_of(scenario.stable) == scenario.original_template
            for obj in refusal:  # the nodes can run it now
                cluster.delete(obj["kind"], obj["metadata"]["name"])
        elif restart == "retryAfterAllowed":
            for obj in refusal:
                cluster.delete(obj["kind"], obj["metadata"]["name"])
            cluster.wait_for(lambda: (scenario.deployment(scenario.stable).status.ready_replicas or 0) > 0, timeout=60,
                             message="the stable's challenger pods, admitted now, ready")
            scenario.annotate("modelrollout.io/command", "retry")
            scenario.wait_status(lambda s: s.get("phase") == "Progressing", timeout=120, message="retry started")
            assert scenario.template_of(scenario.stable) == scenario.original_template
        else:
            scenario.patch_spec({"canary": {"template": {"image": "registry.example/model:v3"}}})
            scenario.wait_status(lambda s: s.get("revision") != failed["revision"] and s.get("phase") != "Failed",
                                 timeout=60, message="the new revision started")
        done = scenario.wait_phase("Succeeded", "Failed", "RolledBack", timeout=240)
        after = monitor.since(failed_at)
    assert done["phase"] == "Succeeded", done.get("message")
    assert done["stableRecord"]["replicas"] == STABLE_REPLICAS
    monitor.assert_serving_at_least(BOUND)
    assert len(after) > 20
    print(f"\n[refused promotion, {restart}] min serving {monitor.min_serving().serving} overall, "
          f"{monitor.min_serving(after).serving} after the failure (bound {BOUND}); {len(monitor.samples)} samples; "
          f"failed: {failed['message'][:160]}")


def test_a_step_completes_only_once_the_canary_is_available_at_its_size(operator: OperatorProcess,
                                                                         namespace: str) -> None:
    """gatewayAPI keeps the stable at its 4 pods (1 GPU each) and scales the canary (2 GPUs a
    pod) with the weight. A quota of 6 GPUs admits the canary's pod at 25 % but not its second
    at 50 %: the step's time runs out and the rollout holds at 50 %, saying why, instead of
    advancing on a canary that never served its share; with the quota raised it goes on."""
    cluster = operator.cluster
    route = "fraud"
    cluster.apply(quota(namespace, 6))
    cluster.apply(http_route(route, namespace, {"fraud": 100, "fraud-canary": 0}))
    s = RolloutScenario(cluster, namespace, router="gatewayAPI", http_route=route, replicas=4)
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary,
                             steps=[{"weight": 25, "duration": "6s"}, {"weight": 50, "duration": "6s"},
                                    {"weight": 100, "duration": "6s"}],
                             traffic={"router": "gatewayAPI", "httpRoute": {"name": route}}))
    held = s.wait_status(lambda st: st.get("currentStep") == 1 and "available at its size" in (st.get("message") or ""),
                         timeout=150, message="held at step 1 for the canary's size")
    assert "1/2 pods available" in held["message"], held["message"]
    time.sleep(8)  # the 6 s step is long over
    now = s.status()
    assert (now["phase"], now["currentStep"], now["canaryWeight"]) == ("Progressing", 1, 50), now.get("message")
    cluster.apply(quota(namespace, 16))
    final = s.wait_phase("Succeeded", "RolledBack", "Failed", timeout=300)
    assert final["phase"] == "Succeeded", final.get("message")
