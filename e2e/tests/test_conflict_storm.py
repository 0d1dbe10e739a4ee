"""A competing writer on both Deployments (an HPA, a GitOps controller, a human with
kubectl) makes the operator's read-modify-writes lose the race now and then (409s).
The rollout still walks its steps and hands over, and the ready serving pods never drop
below the floor, sampled every 250 ms (docs/operator.md, "The serving floor")."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes.client.rest import ApiException

from e2e.harness.invariants import ServingMonitor
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e


def test_a_409_storm_from_a_competing_writer_neither_wedges_nor_breaks_the_floor(
        operator: OperatorProcess, namespace: str) -> None:
    cluster = operator.cluster
    s = RolloutScenario(cluster, namespace, replicas=8)
    stop = threading.Event()
    writes = {"ok": 0, "missing": 0}

    def compete() -> None:  # annotations only: what it changes is not ours, but every write bumps resourceVersion
        n = 0
        while not stop.is_set() and n < 20_000:
            n += 1
            for name in (s.stable, s.canary):
                try:
                    cluster.apps.patch_namespaced_deployment(
                        name, namespace, {"metadata": {"annotations": {"e2e/competitor": str(n)}}})
                    writes["ok"] += 1
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    writes["missing"] += 1
            # Once a second: faster starves kube-controller-manager's own status writes (they
            # 409 too, and it backs off exponentially), which stalls any rollout, ours or not.
            time.sleep(1.0)

    writer = threading.Thread(target=compete, daemon=True)
    with ServingMonitor(cluster, namespace, s.stable, s.canary) as monitor:
        writer.start()
        try:
            s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, gpus=1,
                                     steps=[{"weight": 25, "duration": "4s"}, {"weight": 100, "duration": "4s"}],
                                     promotion={"maxSurge": "50%"}))  # two batches: the storm slows each
            done = s.wait_phase("Succeeded", "RolledBack", "Failed", timeout=240)
        finally:
            stop.set()
            writer.join(timeout=10)
    assert done["phase"] == "Succeeded", done.get("message")
    assert writes["ok"] > 20, writes
    monitor.assert_serving_at_least(6)  # 8 recorded, maxUnavailable 25 %
    stable = s.deployment(s.stable)
    assert stable.spec.replicas == 8 and s.replicas(s.canary) == 0
    print(f"\n[409 storm] {writes['ok']} competing writes; min serving {monitor.min_serving().serving}")
