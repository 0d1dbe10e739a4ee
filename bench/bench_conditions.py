"""Time of the seven risk conditions alone (``evaluate_all``), per snapshot and per condition.

Complements ``bench_core.py`` (conditions + score + decision): this one says where the
time of a tick goes. CPU time (``time.process_time``) is measured, the best of several
runs, so that other processes on a shared machine disturb the figure less; a pure
Python reference loop is timed alongside so figures from different machines can be
compared. Run: ``.venv/bin/python bench/bench_conditions.py [snapshot names…]``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modelrollout.api.thresholds import Profile, resolve_conditions
from modelrollout.core.conditions import BUILTIN, evaluate_all
from modelrollout.core.conditions.base import EvaluationContext
from modelrollout.core.snapshot import load_snapshot

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["healthy", "latency-breach", "accuracy-drop", "error-spike", "drift"]


def per_call_us(fn: Callable[[], object], calls: int = 2000, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return best * 1e6


def main(names: list[str]) -> None:
    ctx = EvaluationContext(thresholds=resolve_conditions(Profile.BALANCED, None), canary_weight=5)
    reference = per_call_us(lambda: sum(range(100)), calls=20000)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}; reference sum(range(100)) = {reference:.2f} µs")
    for name in names:
        snapshot = load_snapshot(json.loads((ROOT / "examples" / "snapshots" / f"{name}.json").read_text()))
        total = per_call_us(lambda: evaluate_all(snapshot, ctx, []))
        parts = {c.value: per_call_us(lambda fn=fn: fn(snapshot, ctx)) for c, fn in BUILTIN.items()}
        detail = "  ".join(f"{k} {v:.1f}" for k, v in parts.items())
        print(f"{name:15} evaluate_all {total:6.1f} µs ({1e6 / total:7,.0f}/s)  |  {detail}")


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
