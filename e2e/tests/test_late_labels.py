"""Late labels on the real cluster (docs/design.md#late-labels).

The simulator holds the canary's labels back (``label_delay_s``), as a label pipeline
whose ground truth arrives after the prediction does. Two properties, each checked on
every read of the status, not only at the end:

* with ``spec.analysis.labelDelay``, the challenger stays at its first weight until
  accuracy was judged on its own labels, at least that delay after it first served,
  even when the first labels came sooner;
* with ``noData.policy: ignore`` and no label at all for the challenger, it never
  leaves its first weight (before, it walked to 100 % on the other conditions); the
  message names the fix, and disabling accuracy lets it finish.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from e2e.harness.manifests import rollout_manifest
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

FIRST = 25
STEPS = [{"weight": FIRST, "duration": "4s"}, {"weight": 50, "duration": "4s"}, {"weight": 100, "duration": "4s"}]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def watch(s: RolloutScenario, until: Any, timeout: float, invariant: Any) -> dict[str, Any]:
    """Poll the status every 0.2 s, asserting ``invariant`` on each read, until ``until`` holds."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = s.status()
        invariant(status)
        if until(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s; last status: phase {status.get('phase')}, "
                         f"weight {status.get('canaryWeight')}, message {status.get('message')!r}")


def test_the_first_step_waits_for_labels_that_come_late(crds, namespace: str, operator) -> None:  # noqa: F811
    """Labels 5 s late here, 20 s at worst as declared: the first ones make accuracy
    conclusive within seconds, and the step still waits out the declared delay."""
    delay = 20
    s = RolloutScenario(crds, namespace)
    crds.simulator.set_behaviour(namespace, s.canary, label_delay_s=5)
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, steps=STEPS,
                             analysis={"labelDelay": f"{delay}s"}))
    waited: list[str] = []

    def judged_before_moving_on(status: dict[str, Any]) -> None:
        if status.get("phase") == "Progressing" and "labelDelay" in (status.get("message") or ""):
            waited.append(status["message"])
        if int(status.get("canaryWeight") or 0) > FIRST or status.get("phase") in ("Promoting", "Succeeded"):
            assert status.get("labelsJudgedAt"), f"left its first weight unjudged: {status.get('message')}"
            assert at(status["labelsJudgedAt"]) - at(status["servingSince"]) >= timedelta(seconds=delay), status

    final = watch(s, lambda st: st.get("phase") in ("Succeeded", "Failed", "RolledBack"), 150,
                  judged_before_moving_on)
    assert final["phase"] == "Succeeded", final.get("message")
    assert waited, "the first step never said it was waiting for labels"
    print(f"\n[late labels] served {final['servingSince']}, judged {final['labelsJudgedAt']}; "
          f"while waiting: {waited[0]!r}")


def test_a_challenger_without_labels_never_walks_past_its_first_weight(crds, namespace: str, operator) -> None:  # noqa: F811
    s = RolloutScenario(crds, namespace)
    crds.simulator.set_behaviour(namespace, s.canary, label_fraction=0.0)
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, steps=STEPS,
                             analysis={"noData": {"policy": "ignore", "maxConsecutive": 2}}))

    def never_past_first(status: dict[str, Any]) -> None:
        assert int(status.get("canaryWeight") or 0) <= FIRST, f"walked on without labels: {status.get('message')}"
        assert status.get("phase") not in ("Promoting", "Succeeded"), status.get("message")

    held = watch(s, lambda st: "accuracy.enabled: false" in (st.get("message") or ""), 60, never_past_first)
    assert "waiting for accuracy on the challenger's own labels" in held["message"]
    first_seen = time.monotonic()
    watch(s, lambda st: time.monotonic() - first_seen > 15, 30, never_past_first)  # well past its 4 s step

    s.patch_spec({"analysis": {"conditions": {"accuracy": {"enabled": False}}}})  # the fix the message names
    final = s.wait_phase("Succeeded", "Failed", "RolledBack", timeout=90)
    assert final["phase"] == "Succeeded", final.get("message")
    assert not final.get("labelsJudgedAt")
