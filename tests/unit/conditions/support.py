"""Builders for condition tests: a healthy snapshot as plain data, tweaked per test."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import numpy as np

from modelrollout.api.thresholds import ConditionOverrides, Profile, resolve_conditions
from modelrollout.core.conditions.base import EvaluationContext
from modelrollout.core.snapshot import Snapshot, load_snapshot

LE = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def beta_histogram(a: float, b: float, n: int, le: list[float] = LE) -> dict[str, Any]:
    """A cumulative histogram of n Beta(a, b) confidences, counts from the exact CDF."""
    from scipy.stats import beta

    counts = [float(round(n * beta.cdf(edge, a, b))) for edge in le]
    counts[-1] = float(n)
    return {"le": list(le), "counts": counts}


def noise_series(seed: int = 1, n: int = 30) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {
        "latency_p95_ms": (2.1 + 0.05 * rng.standard_normal(n)).round(4).tolist(),
        "error_rate": (0.002 + 0.0001 * rng.standard_normal(n)).round(6).tolist(),
        "rps": (2000 + 20 * rng.standard_normal(n)).round(2).tolist(),
    }


def side(scale: float = 1.0, accuracy: float = 0.92) -> dict[str, Any]:
    """One side's healthy metrics; ``scale`` multiplies every count."""
    requests = 600_000 * scale
    evaluated = 18_000 * scale
    return {
        "requests": requests,
        "rps": 2000.0 * scale,
        "errors": {"extraction": 0.001 * requests, "serialization": 0.0001 * requests,
                   "timeout": 0.0005 * requests, "cache": 0.0001 * requests, "other": 0.0002 * requests},
        "latency_ms": {"mean": 1.4, "p95": 2.1, "p99": 2.9, "count": 120_000 * scale},
        "predictions_evaluated": evaluated,
        "predictions_correct": round(evaluated * accuracy),
        "confidence": beta_histogram(8, 2, int(1_800_000 * scale)),
        "cache": {"hits": 0.985 * requests, "misses": 0.015 * requests, "evictions_per_minute": 0.02, "lookup_ms": 1.1},
        "series": noise_series(),
    }


def healthy() -> dict[str, Any]:
    """A healthy snapshot at 5%: canary 2,000 RPS, stable 38,000 RPS."""
    return {"version": 1, "at": "2026-11-24T12:00:00Z", "canary": side(), "stable": side(19.0)}


def snap(data: dict[str, Any] | None = None, **changes: Any) -> Snapshot:
    """Build a Snapshot from ``data`` (default: healthy) with dotted-path ``changes``.

    ``snap(**{"canary.latency_ms.p95": 2.6})``; a value of ``DELETE`` removes the key.
    """
    data = copy.deepcopy(data if data is not None else healthy())
    for path, value in changes.items():
        keys = path.split(".")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return load_snapshot(data)


DELETE = object()


def ctx(
    profile: Profile | str = Profile.BALANCED,
    overrides: dict[str, Any] | None = None,
    *,
    significance: float = 0.05,
    canary_weight: int = 5,
    step_age: timedelta | None = None,
    interval: timedelta | None = None,
) -> EvaluationContext:
    resolved = resolve_conditions(Profile(profile), ConditionOverrides.model_validate(overrides or {}))
    return EvaluationContext(thresholds=resolved, significance=significance, canary_weight=canary_weight,
                             step_age=step_age, interval=interval)
