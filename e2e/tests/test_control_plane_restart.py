"""The API server restarted mid-rollout (SIGKILL, then started again on the same etcd):
every watch the operator holds drops and its calls are refused for a few seconds. The
rollout neither loses its place nor applies anything twice, the serving floor holds,
and the operator acts again on its own: a promotion ends Succeeded with the challenger
on the stable, a rollback ends RolledBack with the stable exactly as recorded.

The restart is of the shared local API server: other pytest sessions attached to the
same cluster see it too (the session runs its tests one after another, so its own do not).
"""

from __future__ import annotations

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.invariants import ServingMonitor
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import SLOW_OPERATOR, OperatorProcess, delete_rollouts
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds  # noqa: F401 — fixture

pytestmark = pytest.mark.e2e

REPLICAS = 8
FLOOR = 6  # 8 recorded, maxUnavailable 25 %


def _no_step_twice(status: dict) -> None:
    steps = [(h.get("step"), h.get("weight")) for h in status.get("history", []) if h["kind"] == "step"]
    assert len(steps) == len(set(steps)), f"a step was applied twice: {steps}"
    rollbacks = [h for h in status.get("history", []) if h["kind"] == "rollback"
                 and (h.get("evidence") or {}).get("conditions") is not None]
    assert len(rollbacks) <= 1, f"the rollback started twice: {rollbacks}"


@pytest.mark.parametrize("end", ["promotion", "rollback"])
def test_an_apiserver_restart_mid_rollout_loses_nothing_and_the_operator_acts_again(
        crds: Cluster, namespace: str, end: str) -> None:  # noqa: F811 — fixture
    cluster = crds
    s = RolloutScenario(cluster, namespace, replicas=REPLICAS)
    # A pause before each phased action, so the handover and the rollback last long enough
    # for a restart to land inside them.
    op = OperatorProcess(cluster, namespace, "--action-delay", "1.0", name="slow", module=SLOW_OPERATOR).start()
    away: list[float] = []
    try:
        with ServingMonitor(cluster, namespace, s.stable, s.canary) as monitor:
            s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, gpus=1,
                                     steps=[{"weight": 25, "duration": "6s"}, {"weight": 100, "duration": "4s"}]))
            s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=90,
                          message="analysing at 25 %")
            away.append(cluster.restart_apiserver())  # in a step: watches and the daemon's calls drop
            if end == "promotion":
                s.wait_status(lambda st: st.get("phase") == "Promoting", timeout=120, message="the handover")
                away.append(cluster.restart_apiserver())  # in the handover
                done = s.wait_phase("Succeeded", "RolledBack", "Failed", timeout=240)
            else:
                cluster.simulator.set_behaviour(namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
                s.wait_status(lambda st: st.get("phase") == "RollingBack", timeout=120, message="the rollback")
                away.append(cluster.restart_apiserver())  # between rollback phases
                done = s.wait_phase("Succeeded", "RolledBack", "Failed", timeout=240)
        assert op.alive(), "the operator exited when the API server went away"
        _no_step_twice(done)
        if end == "promotion":
            assert done["phase"] == "Succeeded", done.get("message")
            image = s.template_of(s.stable)["spec"]["containers"][0]["image"]
            assert image == "registry.example/model:v2", image
        else:
            assert done["phase"] == "RolledBack", done.get("message")
            assert s.template_of(s.stable) == s.original_template
        assert s.replicas(s.stable) == REPLICAS and s.replicas(s.canary) == 0
        # Reads fail while the API server is away (nothing can change meanwhile: no
        # controller or kubelet acts without it); every sample taken shows the floor.
        assert len(monitor.errors) <= sum(away) / monitor.interval + 10, monitor.errors[:5]
        monitor.errors.clear()
        monitor.assert_serving_at_least(FLOOR)
        print(f"\n[apiserver restart, {end}] away {', '.join(f'{a:.1f}s' for a in away)}; "
              f"{len(monitor.samples)} samples, min serving {monitor.min_serving().serving} (floor {FLOOR})")
    finally:
        delete_rollouts(cluster, namespace)
        op.stop()
