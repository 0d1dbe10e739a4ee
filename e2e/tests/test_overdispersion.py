"""Overdispersion measured on the real cluster (docs/decisions.md#overdispersion).

The tick reads the stable's counts per interval from Prometheus (six range queries), and
records how much wider than binomial they wander in ``status.dispersion``. Here the
stable's error rate is made to burst on and off, interval by interval, as traffic stuck
to a few pods does: the recorded intra-class correlation of errors must rise well above
the one of the same stable serving i.i.d. traffic, and the healthy canary, whose error
rate is the stable's own steady one, must stay in its step all along.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds  # noqa: F401 — fixture

pytestmark = pytest.mark.e2e

# Prometheus scrapes every second here: 4 s intervals hold 4 scrapes (docs/prometheus.md).
MIN_RATE_WINDOW = "4"
QUIET = {"extraction": 0.0005, "serialization": 0.0005, "timeout": 0.0005, "cache": 0.0005, "other": 0.0005}
BURST = {**QUIET, "timeout": 0.08}


def dispersion(status: dict[str, Any]) -> dict[str, Any]:
    return status.get("dispersion") or {}


def test_bursts_of_the_stable_raise_the_measured_dispersion_and_the_canary_stays(crds, namespace: str) -> None:  # noqa: F811
    s = RolloutScenario(crds, namespace)
    op = OperatorProcess(crds, namespace, "--min-rate-window", MIN_RATE_WINDOW, name="dispersion").start()
    try:
        s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary,
                                 steps=[{"weight": 25, "duration": "10m"}, {"weight": 100, "duration": "4s"}]))
        steady = s.wait_status(lambda st: dispersion(st).get("intervals", 0) >= 8, timeout=90,
                               message="status.dispersion on 8 intervals")
        assert dispersion(steady)["intervalSeconds"] == 4.0, dispersion(steady)
        quiet = float(dispersion(steady).get("errorRate", 0.0))

        phases: set[str] = set()
        bursty = 0.0
        until = time.monotonic() + 75
        on = False
        while time.monotonic() < until:  # 8 s on, 8 s off: two intervals of each
            on = not on
            s.cluster.simulator.set_behaviour(namespace, s.stable, error_rates=BURST if on else QUIET)
            switch = time.monotonic() + 8
            while time.monotonic() < switch:
                st = s.status()
                phases.add(st.get("phase", ""))
                bursty = max(bursty, float(dispersion(st).get("errorRate", 0.0)))
                time.sleep(0.5)
            if bursty >= 0.01 and not on:
                break
        s.cluster.simulator.set_behaviour(namespace, s.stable, error_rates=QUIET)
        print(f"\n[overdispersion] errors' intra-class correlation (95% upper bound): i.i.d. {quiet}, "
              f"bursting {bursty}; phases seen {sorted(phases)}")
        assert bursty >= 0.01, f"bursts of 8 % errors every other pair of intervals measured as only {bursty}"
        assert quiet < bursty / 3, f"i.i.d. traffic measured as {quiet}, bursting as {bursty}"
        assert phases == {"Progressing"}, f"the healthy canary left its step: {phases}, {s.status().get('message')}"
    finally:
        op.stop()
