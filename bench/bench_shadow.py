"""Shadow-step benchmark (``make bench-shadow``): what a shadow step saves users.

The same challengers are rolled out twice, on the same synthetic traffic seeds
(``synthetic.py``, driven through the operator's own state machine as in
``bench_judgement.py``): once with the default steps (5 % 15m, 25 % 30m, 100 % 1h), once
with a shadow step of 10 minutes mirroring 100 % of requests before them
(docs/shadow.md). Interval 30 s, balanced profile, 2,000 RPS.

Reported per (challenger, steps): rollouts, rolled back, promoted, unfinished at the
horizon, median time to rollback, and the **user requests answered by the challenger**
before its end: the canary's share of the users' traffic summed over the ticks, the
number a shadow step is meant to bring to 0 for a degraded model. Mirrored copies are not
user requests. A rollout whose simulation raises counts as a failed trial and is
reported, not dropped.

    .venv/bin/python bench/bench_shadow.py              # 100 rollouts per row (~1 min)
    .venv/bin/python bench/bench_shadow.py --rollouts 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic import HEALTHY, Behaviour, TrafficConfig, simulate  # noqa: E402
from modelrollout.api.models import ModelRolloutSpec  # noqa: E402

RPS = 2_000.0
HORIZON = timedelta(hours=3)
T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
CHALLENGERS: list[tuple[str, Behaviour]] = [
    ("healthy", HEALTHY),
    ("accuracy 0.92 -> 0.80", HEALTHY.scaled(accuracy=0.80)),
    ("accuracy 0.92 -> 0.87", HEALTHY.scaled(accuracy=0.87)),
    ("latency x3", HEALTHY.scaled(latency_scale=3.0)),
    ("errors x50", HEALTHY.scaled(error_rates={k: v * 50 for k, v in HEALTHY.error_rates.items()})),
]
WEIGHTED = [{"weight": 5, "duration": "15m"}, {"weight": 25, "duration": "30m"}, {"weight": 100, "duration": "1h"}]


def rollout(shadow: bool) -> ModelRolloutSpec:
    steps = ([{"shadow": {"percent": 100, "duration": "10m"}}] if shadow else []) + WEIGHTED
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "scorer"}, "canary": {"deployment": "scorer-canary"},
        "traffic": {"router": "gatewayAPI", "httpRoute": {"name": "scorer"}}, "steps": steps,
        "analysis": {"interval": "30s", "profile": "balanced", "conditions": {"throughput": {"minServiceRps": 0}}},
    })


def run_one(spec: ModelRolloutSpec, behaviour: Behaviour, seed: int) -> tuple[str, float, float | None]:
    """(end phase, user requests answered by the challenger, seconds to rollback or None)."""
    rng = np.random.default_rng(seed)
    served = 0.0
    previous = T0
    phase, rolled_at = "Progressing", None
    for tick in simulate(spec, TrafficConfig(total_rps=RPS, canary=behaviour), rng, T0, HORIZON):
        served += RPS * tick.weight / 100.0 * (tick.at - previous).total_seconds()
        previous = tick.at
        status = tick.transition.status
        phase = status.phase.value
        if status.rollback is not None and rolled_at is None:
            rolled_at = (status.rollback.started_at - T0).total_seconds()
    return phase, served, rolled_at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=100, help="rollouts per row (default 100)")
    args = parser.parse_args()
    started = time.monotonic()
    print(f"bench-shadow: {args.rollouts} rollouts per row, {RPS:,.0f} RPS, interval 30 s, balanced; "
          "the same seeds on both sides", flush=True)
    header = (f"| challenger | steps | rollouts | failed trials | rolled back | promoted | unfinished "
              f"| median rollback (min) | user requests answered by the challenger, median (max) |")
    lines = [header, "|" + "---|" * 9]
    for name, behaviour in CHALLENGERS:
        for shadow in (False, True):
            spec = rollout(shadow)
            ends: list[str] = []
            served: list[float] = []
            rollback_s: list[float] = []
            failed = 0
            for i in range(args.rollouts):
                try:
                    phase, users, rolled = run_one(spec, behaviour, 10_000 + i)
                except Exception as exc:  # noqa: BLE001 — a failed trial is counted and reported
                    failed += 1
                    print(f"  failed trial {name} shadow={shadow} seed {10_000 + i}: {exc!r}", file=sys.stderr)
                    continue
                ends.append(phase)
                served.append(users)
                if rolled is not None:
                    rollback_s.append(rolled)
            median_rb = f"{statistics.median(rollback_s) / 60:.1f}" if rollback_s else "–"
            users_text = f"{statistics.median(served):,.0f} ({max(served):,.0f})" if served else "–"
            lines.append(f"| {name} | {'shadow 10m, ' if shadow else ''}5/25/100 | {args.rollouts} | {failed} "
                         f"| {ends.count('RolledBack')} | {ends.count('Succeeded')} "
                         f"| {len(ends) - ends.count('RolledBack') - ends.count('Succeeded')} | {median_rb} "
                         f"| {users_text} |")
            print(lines[-1], flush=True)
    print(f"bench-shadow: done in {time.monotonic() - started:.0f} s")
    out = Path(__file__).resolve().parent / "results" / "shadow.md"
    out.write_text("# Shadow step (`make bench-shadow`)\n\n" + "\n".join(lines) + "\n")
    print(f"bench-shadow: wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
