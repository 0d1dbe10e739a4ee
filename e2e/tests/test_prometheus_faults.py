"""Prometheus misbehaving in every way seen in production: the rollout holds, never advances
on missing or unusable data, never rolls a healthy canary back for it, and carries on
once Prometheus answers properly again (docs/operator.md, "Crash safety" and
docs/troubleshooting.md).

A ``FaultyPrometheus`` proxy sits between the operator and the real Prometheus; the
rollout's status is sampled every 300 ms while each fault lasts longer than a step.
"""

from __future__ import annotations

import time

import pytest

from e2e.harness.faulty_prometheus import FaultyPrometheus
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

FAULT_SECONDS = 7.0  # each fault outlasts the 4 s step: an advance would show
NO_ADVANCE = ("down", "slow", "nan", "empty")


def test_prometheus_down_slow_nan_empty_or_partial_never_advances_nor_rolls_back(
        operator: OperatorProcess, namespace: str) -> None:
    s = RolloutScenario(operator.cluster, namespace)
    prom = FaultyPrometheus(s.cluster.prometheus_url)
    try:
        s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary,
                                 steps=[{"weight": 25, "duration": "4s"}, {"weight": 100, "duration": "4s"}],
                                 analysis={"prometheus": {"url": prom.url},
                                           "prometheusErrors": {"maxConsecutive": 1000, "then": "hold"},
                                           "noData": {"policy": "hold", "maxConsecutive": 1000}}))
        s.wait_status(lambda st: st.get("phase") == "Progressing", timeout=60, message="first step")
        seen: dict[str, list[tuple[str, int]]] = {}
        for mode in (*NO_ADVANCE, "partial"):
            prom.mode = mode
            until = time.monotonic() + FAULT_SECONDS
            while time.monotonic() < until:
                st = s.status()
                seen.setdefault(mode, []).append((st.get("phase", ""), int(st.get("currentStep", 0))))
                if st.get("phase") != "Progressing":
                    pytest.fail(f"{mode}: the healthy rollout left Progressing: {st.get('message')}; "
                                f"risk {st.get('risk')}")
                time.sleep(0.3)
        for mode, samples in seen.items():
            phases = {p for p, _ in samples}
            assert phases <= {"Progressing"}, f"{mode}: the healthy rollout left Progressing: {phases}"
            if mode in NO_ADVANCE:
                assert {step for _, step in samples} == {0}, f"{mode}: advanced on data it could not use: {samples}"
        held = s.status()
        assert held["decision"]["action"] == "hold", held["decision"]
        assert all(prom.requests[m] > 0 for m in (*NO_ADVANCE, "partial")), prom.requests
        prom.mode = "ok"
        done = s.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
        assert done["phase"] == "Succeeded", done.get("message")
        print(f"\n[prometheus faults] requests per mode {prom.requests}")
    finally:
        prom.close()
