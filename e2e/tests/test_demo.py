"""`make demo` in CI mode, against the running local cluster.

The e2e test runs ``demo/run.py --ci`` as CI would (``CI=1 make demo``), in a namespace
of its own so it never collides with a developer's ``make demo``, and checks the exit
code, the two end states in the summary, and that it cleaned up after itself without
stopping the shared cluster (it did not start it). The offline tests cover the pure
rendering and the verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo import run as demo  # noqa: E402
from e2e.harness.cluster import CLUSTER_SH, Cluster  # noqa: E402

DEMO_TIMEOUT_S = 170


@pytest.mark.e2e
def test_demo_in_ci_mode_promotes_one_rolls_back_the_other_and_cleans_up(cluster: Cluster) -> None:
    namespace = f"e2e-demo-{uuid.uuid4().hex[:5]}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("CI", None)  # --ci says it; CI=1 must not be needed
    proc = subprocess.run([sys.executable, str(ROOT / "demo" / "run.py"), "--ci", "--namespace", namespace,
                           "--timeout", "150"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "ok  fraud-detector  Succeeded" in out
    assert "ok  recommender     RolledBack" in out
    assert "trigger:   latency" in out
    assert "\x1b[" not in out  # not a terminal: appended lines, no redraw
    # Cleaned up: operator stopped, namespace going, simulator forgotten...
    assert not (cluster.state / "demo" / f"{namespace}.operator.pid").exists()
    ns = demo.read_namespace(cluster, namespace)
    assert ns is None or ns.metadata.deletion_timestamp is not None
    assert not any(s["namespace"] == namespace for s in cluster.simulator.state()["services"])
    # ... and the shared cluster, which the demo did not start, is still up.
    status = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout


# ----------------------------------------------------------------------------- offline


def _body(phase: str | None, step: int = 0, weight: int = 0, history: list | None = None,
          conditions: list | None = None) -> dict:
    status = {"phase": phase, "currentStep": step, "canaryWeight": weight, "history": history or []}
    if conditions is not None:
        status["risk"] = {"score": 0.06, "level": "low", "conditions": conditions}
        status["decision"] = {"action": "hold", "reason": "Triggered: latency"}
    return {"spec": {"steps": [{"weight": 5}, {"weight": 25}, {"weight": 100}]}, "status": status}


def test_row_shows_step_weight_score_and_compact_severities() -> None:
    lines = demo.row("recommender", _body("Progressing", 1, 25, conditions=[
        {"name": "accuracy", "severity": 0.0, "inconclusive": True},
        {"name": "latency", "severity": 0.27, "triggered": True},
        {"name": "errorRate", "severity": 1.0, "critical": True},
    ]))
    assert lines[0].split()[:6] == ["recommender", "Progressing", "2/3", "25%", "0.06", "low"]
    assert "0.00?" in lines[0] and "0.27" in lines[0] and "1.00!" in lines[0]
    assert lines[0].split()[-1] == "-"  # anomaly absent (disabled)
    assert lines[1].strip() == "-> hold: Triggered: latency"


def test_summary_tells_the_rollback_from_the_history() -> None:
    at = datetime(2026, 11, 26, 18, 0, 30, tzinfo=timezone.utc)
    history = [
        {"kind": "step", "weight": 5, "step": 0}, {"kind": "step", "weight": 25, "step": 1},
        {"kind": "rollback", "at": at.isoformat(), "message": "rolling back (tick): latency triggered for 11s",
         "evidence": {"trigger": "latency", "path": "tick", "step": 1, "weight": 25, "startedAt": at.isoformat(),
                      "reason": "latency triggered for 11s: p99 4.49ms > 3.52ms", "score": 0.06, "level": "low",
                      "conditions": [{"name": "latency", "severity": 0.27, "triggered": True,
                                      "message": "p99 4.49ms > 3.52ms"},
                                     {"name": "accuracy", "severity": 0.0, "message": "fine"}]}},
        {"kind": "rollback", "message": "rolled back", "evidence": {"trigger": "latency",
                                                                    "timeToRecoverSeconds": 0.5}},
    ]
    text = "\n".join(demo.summarize("recommender", _body("RolledBack", 1, 0, history), "RolledBack",
                                    degraded_at=at - timedelta(seconds=17)))
    assert text.startswith("ok  recommender     RolledBack")
    assert "steps:     5% -> 25%" in text
    assert "rolled back at step 2/3 (25%), 17 s after its canary degraded" in text
    assert "trigger:   latency (caught by the tick path)" in text
    assert "evidence:  latency severity 0.27: p99 4.49ms > 3.52ms" in text
    assert "accuracy" not in text  # healthy conditions are not evidence
    assert "rollback complete in 0.5 s" in text


def test_verdict_needs_both_expected_end_states() -> None:
    ok = {"fraud-detector": _body("Succeeded"), "recommender": _body("RolledBack")}
    assert demo.problems(ok) == []
    assert demo.problems({"fraud-detector": _body("RolledBack"), "recommender": _body("RolledBack")}) == [
        "fraud-detector is RolledBack, expected Succeeded"]
    assert demo.problems({"fraud-detector": None, "recommender": _body(None)}) == [
        "fraud-detector is absent, expected Succeeded", "recommender is Pending, expected RolledBack"]


def test_plain_display_appends_changed_rows_only() -> None:
    import io

    stream = io.StringIO()
    display = demo.Display(stream, tty=False)
    rows = {"a": ["a-row", "a-reason"], "b": ["b-row", "b-reason"]}
    display.frame("title", rows, 1.0)
    display.frame("title", rows, 2.0)
    display.frame("title", {**rows, "b": ["b-row2", "b-reason"]}, 3.0)
    text = stream.getvalue()
    assert text.count("a-row") == 1 and text.count("b-row2") == 1 and "\x1b[" not in text
