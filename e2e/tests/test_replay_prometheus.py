"""``modelrollout replay --prometheus``: a past window of the real Prometheus, replayed
through the rollout's thresholds, gives the decisions the operator took live.

A live rollout on the local cluster advances from 25 % to 50 %, then its canary turns
slow and it is rolled back. Replaying the same manifest over the same window, tick by
tick from the moment its first step began, must show the same acting decisions: an
advance to step 1 and a rollback in step 1 for latency, each at about the moment the
operator took it (the live rollback may come from the fast path, which only runs
live, so a couple of intervals of slack).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
INTERVAL_S = 2


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_replayed_window_gives_the_decisions_taken_live(crds: Any, namespace: str, operator: OperatorProcess,
                                                           tmp_path: Path) -> None:
    s = RolloutScenario(crds, namespace)
    manifest = rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, interval=f"{INTERVAL_S}s",
                                steps=[{"weight": 25, "duration": "12s"}, {"weight": 50, "duration": "1h"},
                                       {"weight": 100, "duration": "1h"}])
    s.apply(manifest)
    s.wait_status(lambda st: st.get("currentStep") == 1, timeout=120, message="advanced to step 1")
    time.sleep(6)
    s.cluster.simulator.set_behaviour(namespace, s.canary, latency_ms={"median": 9.0, "p95": 16.0})
    live = s.wait_phase("RolledBack", timeout=120)
    time.sleep(2)  # the last scrapes land
    history = live["history"]
    first_step = next(h for h in history if h["kind"] == "step" and h.get("step") == 0)
    advance = next(h for h in history if h["kind"] == "step" and h.get("step") == 1)
    rollback = next(h for h in history if h["kind"] == "rollback")
    assert live["rollback"]["trigger"] == "latency", live["rollback"]

    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(manifest))
    start, end = at(first_step["at"]), at(rollback["at"]) + timedelta(seconds=6)
    time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 1)  # the whole window is past
    out = subprocess.run(
        [sys.executable, "-m", "modelrollout", "replay", "-f", str(path), "--prometheus", s.cluster.prometheus_url,
         "--from", start.isoformat(), "--to", end.isoformat(), "--step", f"{INTERVAL_S}s"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    ticks = [json.loads(line) for line in out.stdout.splitlines()]
    acting = [t for t in ticks if t["action"] in ("advance", "promote", "rollback", "reduce")]
    print(f"\n[replay] live: advance {advance['at']}, rollback {rollback['at']} ({live['rollback']['path']}); "
          f"replayed: {[(t['at'], t['action'], t['step'], t.get('trigger')) for t in acting]}\n{out.stderr}")
    # Each line's step is the carried status after the decision: the advance lands in step 1.
    assert [(t["action"], t["step"]) for t in acting] == [("advance", 1), ("rollback", 1)], acting
    assert acting[1]["trigger"] == "latency"
    slack = timedelta(seconds=2 * INTERVAL_S + 3)
    assert abs(at(acting[0]["at"]) - at(advance["at"])) <= slack
    assert abs(at(acting[1]["at"]) - at(rollback["at"])) <= slack
    assert "2 acting decision(s)" in out.stderr and "final phase RolledBack" in out.stderr
