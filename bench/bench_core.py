"""Throughput of the decision core on realistic full snapshots (``make bench``).

Measures, on one core, evaluations per second of:

* ``evaluate``: the seven conditions (binomial gates, KS on the confidence histograms,
  the anomaly ensemble on 30-point series) + score + decision — the work of one tick;
* ``step``: the whole state-machine step, which also builds the new status (pydantic).

Rates are per second of this process's CPU time (one core), not wall time, so other load
on the machine does not distort them. Snapshots are the bundled examples (healthy, latency breach, accuracy drop, error spike,
drift, OOMKilled), parsed once. This is a benchmark, not a test: it prints numbers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import timedelta
from pathlib import Path

from modelrollout.api.manifests import load_rollout
from modelrollout.core.conditions import evaluate_all
from modelrollout.core.decision import Position, decide
from modelrollout.core.machine import evaluation_context, initial_status, step
from modelrollout.core.observations import MetricsObserved
from modelrollout.core.snapshot import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["healthy", "latency-breach", "accuracy-drop", "error-spike", "drift", "oom-killed"]


def _timeit(fn, min_seconds: float = 2.0) -> tuple[float, int]:
    """Calls per second of CPU time (process time), so a busy machine does not skew it."""
    n, start = 0, time.process_time()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.process_time() - start
        if elapsed >= min_seconds:
            return n / elapsed, n


def main() -> None:
    spec = load_rollout(ROOT / "examples/rollouts/fraud-scorer.yaml").spec
    snaps = [load_snapshot(json.loads((ROOT / f"examples/snapshots/{n}.json").read_text())) for n in NAMES]
    now = snaps[0].at
    status = initial_status(spec, now - timedelta(minutes=5))
    ctx = evaluation_context(spec, status, now)
    position = Position(current_step=0, canary_weight=status.canary_weight, step_started_at=status.step_started_at)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'snapshot':16} {'evaluate/s':>12} {'step/s':>10}  decision")
    totals, steps = [], []
    for name, snap in zip(NAMES, snaps):
        def evaluate(snap=snap):
            results = evaluate_all(snap, ctx, spec.analysis.custom)
            return decide(spec, results, snap.health.canary if snap.health else None, position, now)

        def full_step(snap=snap):
            return step(spec, status, MetricsObserved(snap), now)

        eval_rate, _ = _timeit(evaluate)
        step_rate, _ = _timeit(full_step, 1.0)
        totals.append(eval_rate)
        steps.append(step_rate)
        d = evaluate()
        print(f"{name:16} {eval_rate:12,.0f} {step_rate:10,.0f}  {d.action.value}: {d.reason[:60]}")
    mean = len(totals) / sum(1 / t for t in totals)
    step_mean = len(steps) / sum(1 / t for t in steps)
    print(f"\nmean (harmonic) evaluations/s: {mean:,.0f}  (target >= 10,000 on one core)")
    print(f"steps/s: {step_mean:,.0f}  (harmonic mean of the step column; target >= 20,000 on one core)")


if __name__ == "__main__":
    main()
