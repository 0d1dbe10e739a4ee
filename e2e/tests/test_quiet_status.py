"""Quiet status writes on the real cluster (docs/operator.md#quiet-status-writes).

With ``--status-heartbeat``, a tick that changes nothing material is not written: a
healthy canary in a long step costs the apiserver one status write per heartbeat instead
of one per interval. What must still hold, checked on every read: the step ends on time
(a material change is written at once), nothing moves backwards, and a SIGKILL in the
middle of held-back ticks loses nothing (the persisted status has everything material).
"""

from __future__ import annotations

import re
import time
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import pytest

from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, delete_rollouts  # noqa: F401 — fixture

pytestmark = pytest.mark.e2e

HEARTBEAT = 20
STEP = 40
INTERVAL = 2


def counter(op: OperatorProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_quiet_step_is_written_at_the_heartbeat_and_still_ends_on_time(crds, namespace: str) -> None:  # noqa: F811
    s = RolloutScenario(crds, namespace)
    op = OperatorProcess(crds, namespace, "--status-heartbeat", f"{HEARTBEAT}s", name="quiet").start()
    try:
        s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, interval=f"{INTERVAL}s",
                                 steps=[{"weight": 25, "duration": f"{STEP}s"}, {"weight": 50, "duration": "4s"},
                                        {"weight": 100, "duration": "4s"}]))
        s.wait_status(lambda st: (st.get("decision") or {}).get("action") == "continue", timeout=60,
                      message="a healthy tick in the first step")
        writes, held = counter(op, "modelrollout_status_writes_total"), counter(op, "modelrollout_status_writes_held_total")
        seen: set[str] = set()
        last: dict[str, Any] = {}
        until = time.monotonic() + 16
        while time.monotonic() < until:  # 8 intervals of a healthy step
            last = s.status()
            assert last.get("canaryWeight") == 25 and last.get("phase") == "Progressing", last.get("message")
            seen.add((last.get("risk") or {}).get("evaluatedAt", ""))
            time.sleep(0.25)
        wrote = counter(op, "modelrollout_status_writes_total") - writes
        kept = counter(op, "modelrollout_status_writes_held_total") - held
        print(f"\n[quiet status] over 16 s of a healthy step at a {INTERVAL} s interval: {wrote:.0f} status writes, "
              f"{kept:.0f} held back, {len(seen)} distinct evaluatedAt seen (heartbeat {HEARTBEAT} s)")
        assert kept >= 5, f"only {kept} ticks held back in 16 s at a {INTERVAL} s interval"
        assert wrote <= 1, f"{wrote} status writes in 16 s with a {HEARTBEAT} s heartbeat"
        assert len(seen) <= 2

        # SIGKILL while ticks are held back: the restarted operator goes on from the persisted status.
        op.kill()
        time.sleep(1)
        op.start()
        weights: list[int] = []
        step_started = at(last["stepStartedAt"])
        advanced_at: datetime | None = None
        until = time.monotonic() + 120
        status: dict[str, Any] = {}
        while time.monotonic() < until:
            status = s.status()
            weight = int(status.get("canaryWeight") or 0)
            assert not weights or weight >= weights[-1] or status.get("phase") == "Succeeded", \
                f"weight went back {weights[-1]} -> {weight}: {status.get('message')}"
            if weight == 50 and advanced_at is None:
                advanced_at = at(status["stepStartedAt"])
            weights.append(weight)
            if status.get("phase") in ("Succeeded", "Failed", "RolledBack"):
                break
            time.sleep(0.25)
        assert status.get("phase") == "Succeeded", status.get("message")
        assert advanced_at is not None, f"never seen at 50 %: {sorted(set(weights))}"
        late = advanced_at - (step_started + timedelta(seconds=STEP))
        print(f"[quiet status] the {STEP} s step ended {late.total_seconds():.1f} s after its time")
        assert timedelta(0) <= late <= timedelta(seconds=3 * INTERVAL + 2), late
    finally:
        delete_rollouts(crds, namespace)
        op.stop()
