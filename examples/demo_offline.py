"""Walk the bundled example snapshots through ``modelrollout evaluate`` and print a table.

No cluster needed: this is the decision core on its own, exactly as the operator runs
it (``make demo-offline``). Each row is one snapshot; the columns are the decision and
the severity of each of the seven conditions (``!`` critical, ``?`` inconclusive).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLLOUT = ROOT / "examples/rollouts/fraud-scorer.yaml"
SNAPSHOTS = ["healthy", "latency-breach", "accuracy-drop", "error-spike", "drift", "no-data", "oom-killed"]
SHORT = {"accuracy": "acc", "latency": "lat", "confidenceDrift": "drift", "errorRate": "err", "cache": "cache",
         "throughput": "tput", "anomaly": "anom"}


def evaluate(snapshot: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "modelrollout", "evaluate", "-f", str(ROLLOUT), "--snapshot", str(snapshot), "--compact"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


def cell(condition: dict) -> str:
    mark = "!" if condition["critical"] else "?" if condition["inconclusive"] else " "
    return f"{condition['severity']:.2f}{mark}"


def main() -> None:
    print(f"modelrollout evaluate -f {ROLLOUT.relative_to(ROOT)} --snapshot examples/snapshots/<name>.json\n")
    header = f"{'snapshot':15} {'action':9} {'score':>5} {'level':8} " + " ".join(f"{v:>6}" for v in SHORT.values())
    print(header)
    print("-" * len(header))
    reasons = []
    for name in SNAPSHOTS:
        result = evaluate(ROOT / f"examples/snapshots/{name}.json")
        by_name = {c["name"]: c for c in result["conditions"]}
        cells = " ".join(f"{cell(by_name[k]) if k in by_name else '-':>6}" for k in SHORT)
        print(f"{name:15} {result['action']:9} {result['score']:5.2f} {result['level']:8} {cells}")
        reasons.append(f"  {name:15} {result['reason']}")
    print("\n(! critical, ? inconclusive)\n\nreasons:")
    print("\n".join(reasons))


if __name__ == "__main__":
    main()
