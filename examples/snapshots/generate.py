"""Regenerate the bundled example snapshots (deterministic: expected values, fixed seed).

    .venv/bin/python examples/snapshots/generate.py

The service serves 40,000 RPS with the canary at 5 % (2,000 RPS), a large
service's shape. Each file changes one thing from ``healthy.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).parent
LE = [round(0.1 * i, 1) for i in range(1, 11)]
WINDOWS = {"accuracy": 900.0, "latency": 60.0, "confidenceDrift": 900.0, "errorRate": 300.0, "cache": 300.0,
           "throughput": 300.0, "anomaly": 900.0}


def confidence(n: float, a: float, b: float) -> dict:
    cdf = stats.beta.cdf(LE, a, b)
    return {"le": LE, "counts": [round(float(c) * n) for c in cdf]}


def side(rps: float, *, accuracy: float = 0.92, latency: tuple[float, float, float] = (1.4, 2.1, 2.9),
         error_rates: dict[str, float] | None = None, beta: tuple[float, float] = (9.0, 2.0),
         label_share: float = 0.01, confidence_seconds: float = 900.0, seed: int = 1) -> dict:
    rates = error_rates or {"extraction": 0.001, "serialization": 0.0001, "timeout": 0.0005, "cache": 0.0001,
                            "other": 0.0002}
    requests = rps * WINDOWS["errorRate"]
    evaluated = round(rps * WINDOWS["accuracy"] * label_share)
    lookups = requests
    rng = np.random.default_rng(seed)
    total_error = sum(rates.values())
    return {
        "requests": round(requests),
        "rps": rps,
        "errors": {k: round(v * requests) for k, v in rates.items()},
        "latency_ms": {"mean": latency[0], "p95": latency[1], "p99": latency[2], "count": round(rps * WINDOWS["latency"])},
        "predictions_evaluated": evaluated,
        "predictions_correct": round(evaluated * accuracy),
        "confidence": confidence(rps * confidence_seconds, *beta),
        "cache": {"hits": round(lookups * 0.985), "misses": round(lookups * 0.015), "evictions_per_minute": 0.02,
                  "lookup_ms": 1.1},
        "series": {
            "latency_p95_ms": [round(float(x), 4) for x in latency[1] + rng.normal(0, 0.05, 30)],
            "error_rate": [round(float(x), 6) for x in total_error + rng.normal(0, total_error * 0.05, 30)],
            "rps": [round(float(x), 2) for x in rps + rng.normal(0, rps * 0.01, 30)],
        },
    }


def snapshot(canary: dict, stable: dict | None = None, health: dict | None = None) -> dict:
    return {
        "version": 1,
        "at": "2026-11-24T12:00:00Z",
        "windows": WINDOWS,
        "stable": stable if stable is not None else side(38_000.0, confidence_seconds=86_400.0, seed=2),
        "canary": canary,
        "health": {"canary": health or {"oom_killed": 0, "crash_looping": 0, "unavailable_for_seconds": 0,
                                         "progress_deadline_exceeded": False}},
    }


def main() -> None:
    files = {
        "healthy": snapshot(side(2000.0)),
        "latency-breach": snapshot(side(2000.0, latency=(4.5, 7.2, 9.8))),
        "accuracy-drop": snapshot(side(2000.0, accuracy=0.80)),
        "error-spike": snapshot(side(2000.0, error_rates={"extraction": 0.001, "serialization": 0.012,
                                                          "timeout": 0.0005, "cache": 0.0001, "other": 0.0002})),
        "drift": snapshot(side(2000.0, beta=(5.0, 2.0))),
        "no-data": {"version": 1, "at": "2026-11-24T12:00:00Z", "stable": side(38_000.0, seed=2),
                    "canary": {"requests": 0, "rps": 0.0}},
        "oom-killed": snapshot(side(2000.0), health={"oom_killed": 2, "crash_looping": 0,
                                                     "unavailable_for_seconds": 12, "progress_deadline_exceeded": False}),
    }
    for name, data in files.items():
        (HERE / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {name}.json")


if __name__ == "__main__":
    main()
