"""Anomaly (docs/design.md#conditions, condition 7): is the canary's latest tick out of line with its recent past?

An ensemble of detectors (z-score, IQR fence, change in cross-metric correlation; see
``stats.anomaly_scores``) over the canary's per-interval series (``canary.series``:
latency_p95_ms, error_rate, rps, … oldest first). Series with at least ``minSamples``
non-null points take part; fewer than that in every series is inconclusive.

Triggered when the ensemble confidence reaches ``minConfidence``; severity
``clamp((confidence − minConfidence) / (1 − minConfidence))`` with a floor of
``SEVERITY_FLOOR`` so that reaching ``minConfidence`` always triggers. Never critical: an
anomaly is a reason to look and to hold, not proof of harm, and the conditions that
measure harm have their own critical bounds.
"""

from __future__ import annotations

import math

from ...api.thresholds import ConditionName, Sensitivity
from ..snapshot import Snapshot
from ..stats import anomaly_scores
from .base import ConditionResult, EvaluationContext, clamp01
from .checks import no_data, shortfall, window_seconds

NAME = ConditionName.ANOMALY.value
WHAT = "points"
SEVERITY_FLOOR = 0.01


def _finite(value: float) -> float | None:
    """Status is JSON: a flat series' infinite z-score is reported as None (its score is 1)."""
    return value if math.isfinite(value) else None


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.anomaly
    assert t is not None and t.min_confidence is not None and t.min_samples is not None
    weight = t.weight or 0.0
    window = window_seconds(snapshot, NAME)
    sensitivity = t.sensitivity or Sensitivity.MEDIUM
    threshold: dict[str, float | int | str | bool | None] = {
        "min_confidence": t.min_confidence, "sensitivity": sensitivity.value, "min_samples": t.min_samples,
    }
    series = snapshot.canary.series if snapshot.canary is not None else None
    scores = anomaly_scores(series or {}, sensitivity, t.min_samples)
    samples = scores.points
    if samples == 0:
        return no_data(NAME, weight, "no series points from the canary", samples=samples,
                       min_samples=t.min_samples, window_seconds=window, threshold=threshold)
    if samples < t.min_samples:
        return shortfall(NAME, weight, WHAT, samples, t.min_samples, window_seconds=window,
                         rate=1.0 / ctx.interval.total_seconds() if ctx.interval else None,
                         threshold=threshold, observed={"points": samples})
    confidence = scores.confidence
    severity = 0.0
    if confidence >= t.min_confidence:
        severity = max(SEVERITY_FLOOR, clamp01((confidence - t.min_confidence) / (1.0 - t.min_confidence)))
    observed: dict[str, float | int | str | bool | None] = {
        "confidence": confidence, "z_score": scores.z_score, "iqr_score": scores.iqr_score,
        "correlation_score": scores.correlation_score,
        "z": _finite(scores.z), "iqr_distance": _finite(scores.iqr_distance),
        "correlation_change": scores.correlation_change, "series": scores.series,
        "pair": "/".join(scores.pair) if scores.pair else None, "points": samples, "series_used": scores.used,
    }
    verdict = "anomalous" if severity > 0.0 else "normal"
    message = (
        f"latest point {verdict}: ensemble confidence {confidence:.2f} "
        f"{'≥' if severity > 0.0 else '<'} {t.min_confidence:g} "
        f"({scores.series} z={scores.z:.1f}, IQR distance {scores.iqr_distance:.1f}; "
        f"correlation change z={scores.correlation_change:.1f})"
    )
    return ConditionResult(
        name=NAME, severity=severity, critical=False, weight=weight, observed=observed, threshold=threshold,
        message=message, samples=samples, min_samples=t.min_samples, window_seconds=window,
    )
