"""Write the replay examples (``examples/replay/*.jsonl``) from the synthetic traffic.

    .venv/bin/python bench/make_replay_examples.py

A 2,000 RPS service (``examples/rollouts/replay-2k.yaml``: the fraud-scorer rollout with
the 30,000 RPS service-wide bound switched off), canary weights following the steps. Each
file is one rollout simulated tick by tick through the state machine (``synthetic.simulate``,
fixed seeds, so the files are reproducible); every line is the snapshot (format v1) the
Prometheus adapter would have built at that tick, windows included:

* ``healthy.jsonl``: 40 ticks (20 minutes) of a challenger identical to the champion;
  the rollout holds while the anomaly series fills up, advances to 25 % after 15 minutes;
* ``accuracy-drop.jsonl``: a challenger 12 points less accurate (0.80 vs 0.92); accuracy
  triggers from the first tick and the rollout is rolled back 300 s later (rule 3).

Replay them with::

    modelrollout replay -f examples/rollouts/replay-2k.yaml --snapshots examples/replay/accuracy-drop.jsonl

The first line is the rollout's first moment (the canary has served nothing yet: no
data, hold), because ``modelrollout replay`` starts the rollout at the first line; the
simulation starts there too, so replaying a file gives exactly the decisions the
simulation took.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from synthetic import HEALTHY, TrafficConfig, simulate  # noqa: E402

from modelrollout.api.manifests import load_rollout  # noqa: E402
from modelrollout.core.replay import replay  # noqa: E402
from modelrollout.core.snapshot import load_snapshot  # noqa: E402

from bench_judgement import T0  # noqa: E402

ROLLOUT = ROOT / "examples/rollouts/replay-2k.yaml"
OUT = ROOT / "examples/replay"
EXAMPLES = {
    # name: (canary behaviour, ticks, seed)
    "healthy": (HEALTHY, 40, 1),
    "accuracy-drop": (HEALTHY.scaled(accuracy=0.80), 40, 2),
}


def _round(value: object) -> object:
    """Shorter lines: floats to 6 significant digits (counts stay exact)."""
    if isinstance(value, float):
        return value if value.is_integer() else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def main() -> None:
    spec = load_rollout(ROLLOUT).spec
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (behaviour, ticks, seed) in EXAMPLES.items():
        config = TrafficConfig(total_rps=2_000.0, canary=behaviour)
        lines = []
        decisions = []
        last = None
        for tick in simulate(spec, config, np.random.default_rng(seed), T0, timedelta(hours=2),
                             keep_snapshots=True, validate="all", tick_at_start=True):
            lines.append(json.dumps(_round(tick.snapshot), separators=(",", ":")))
            decisions.append(tick.transition.decision)
            last = tick
            if len(lines) >= ticks:
                break
        path = OUT / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        # The file must replay to the simulation's own decisions (rounding must not matter).
        replayed = [t.decision for t in replay(spec, (load_snapshot(json.loads(line)) for line in lines))]
        same = sum(a is not None and b is not None and (a.action, a.reason) == (b.action, b.reason)
                   for a, b in zip(replayed, decisions))
        assert same == len(lines), f"{name}: replay agrees with the simulation on {same}/{len(lines)} ticks"
        assert last is not None and last.transition.decision is not None
        print(f"wrote {path.relative_to(ROOT)}: {len(lines)} ticks; last decision "
              f"{last.transition.decision.action.value}: {last.transition.decision.reason[:80]}")


if __name__ == "__main__":
    main()
