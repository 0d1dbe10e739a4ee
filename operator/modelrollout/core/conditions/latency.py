"""Latency (docs/design.md#conditions, condition 2): the canary's mean, p95 and p99 in milliseconds.

Higher is worse. Each statistic has an absolute check (``meanMs``/``p95Ms``/``p99Ms``,
critical at ``criticalFactor`` × the bound) and a check relative to the stable's same
statistic (bound stable × ``maxStableRatio``, critical stable × ``maxStableRatio`` ×
``criticalFactor``, i.e. the critical bound scales the warning bound by the same factor
as the absolute checks). When the snapshot has the canary's duration buckets (the tick
reads them), each check is significance-gated (docs/design.md#significance): p95 and p99
by an exact binomial test on the requests slower than the bound, the mean by a z-test
with the histogram's spread; the stable's statistic is taken as known, as for
proportions. Without buckets (the fast path) they are plain threshold checks.

A missing statistic makes the condition inconclusive while the statistics that are
present still count; a missing stable statistic only skips its relative check.
"""

from __future__ import annotations

from ...api.thresholds import ConditionName
from ..snapshot import Snapshot
from .base import ConditionResult, EvaluationContext
from .checks import (
    Check,
    conclude,
    mean_check,
    missing,
    no_data,
    positive,
    quantile_check,
    sample_rate,
    shortfall,
    window_seconds,
)

NAME = ConditionName.LATENCY.value
WHAT = "requests"
STATISTICS = ("mean", "p95", "p99")
QUANTILES = {"p95": 0.95, "p99": 0.99}
_KEYS = tuple((s, f"{s}_ms", f"stable_{s}_ms", f"relative_{s}_ms", f"relative_critical_{s}_ms") for s in STATISTICS)
"""Per statistic: field, observed keys, threshold keys (built once: this runs every tick)."""


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.latency
    assert t is not None and t.mean_ms is not None and t.p95_ms is not None and t.p99_ms is not None
    assert t.max_stable_ratio is not None and t.critical_factor is not None and t.min_samples is not None
    weight = t.weight or 0.0
    window = window_seconds(snapshot, NAME)
    factor, ratio = t.critical_factor, t.max_stable_ratio
    bounds = {"mean": t.mean_ms, "p95": t.p95_ms, "p99": t.p99_ms}
    threshold: dict[str, float | int | str | bool | None] = {
        "mean_ms": t.mean_ms, "p95_ms": t.p95_ms, "p99_ms": t.p99_ms,
        "critical_mean_ms": t.mean_ms * factor, "critical_p95_ms": t.p95_ms * factor,
        "critical_p99_ms": t.p99_ms * factor,
        "max_stable_ratio": ratio, "critical_factor": factor, "min_samples": t.min_samples,
    }
    canary = snapshot.canary
    latency = canary.latency_ms if canary is not None else None
    samples = None
    if canary is not None:
        samples = latency.count if latency is not None and latency.count is not None else canary.requests
    if latency is None or not positive(samples):
        what = "no latency from the canary" if latency is None else "no requests to the canary"
        return no_data(NAME, weight, what, samples=samples, min_samples=t.min_samples, window_seconds=window,
                       threshold=threshold)
    assert canary is not None and samples is not None
    if samples < t.min_samples:
        return shortfall(NAME, weight, WHAT, samples, t.min_samples, window_seconds=window,
                         rate=sample_rate(samples, window, canary.rps, nominal=t.window, step_age=ctx.step_age),
                         threshold=threshold,
                         observed={"requests": samples})

    stable_latency = snapshot.stable.latency_ms if snapshot.stable is not None else None
    buckets = latency.buckets
    alpha = ctx.significance

    def gated(stat: str, value: float, bound: float, note: str = "") -> Check | None:
        assert samples is not None
        if stat == "mean":
            return mean_check(stat, value, bound, bound * factor, buckets, samples, alpha, unit="ms", digits=2,
                              note=note)
        return quantile_check(stat, value, bound, bound * factor, QUANTILES[stat], buckets, samples, alpha,
                              unit="ms", digits=2, note=note)

    observed: dict[str, float | int | str | bool | None] = {"requests": samples}
    checks: list[Check | None] = []
    absent: list[str] = []
    skipped: list[str] = []
    for stat, key, stable_key, relative_key, relative_critical_key in _KEYS:
        value = getattr(latency, stat)
        stable_value = getattr(stable_latency, stat) if stable_latency is not None else None
        observed[key] = value
        observed[stable_key] = stable_value
        if value is None:
            absent.append(stat)
            continue
        bound = bounds[stat]
        checks.append(gated(stat, value, bound))
        if positive(stable_value):
            assert stable_value is not None
            relative_bound = stable_value * ratio
            threshold[relative_key] = relative_bound
            threshold[relative_critical_key] = relative_bound * factor
            checks.append(gated(stat, value, relative_bound, f" (stable {stable_value:.2f}ms × {ratio:g})"))
        else:
            threshold[relative_key] = None
            threshold[relative_critical_key] = None
            skipped.append(stat)
    if len(absent) == len(STATISTICS):
        return missing(NAME, weight, "latency has no mean, p95 or p99 for the canary", samples=samples,
                       min_samples=t.min_samples, window_seconds=window, observed=observed, threshold=threshold)
    notes = []
    if absent:
        notes.append(f"{', '.join(absent)} missing: inconclusive")
    if skipped and len(skipped) + len(absent) == len(STATISTICS):
        notes.append("the stable has no latency: relative checks skipped")
    elif skipped:
        notes.append(f"the stable has no {', '.join(skipped)}: relative check skipped")
    if absent:
        shown = ", ".join(f"{s} {getattr(latency, s):.2f}ms" for s in STATISTICS if s not in absent)
    else:
        shown = f"mean {latency.mean:.2f}ms, p95 {latency.p95:.2f}ms, p99 {latency.p99:.2f}ms"
    return conclude(
        NAME, weight, checks, alpha, gated=buckets is not None, notes=notes, inconclusive=bool(absent),
        healthy=f"{shown} within bounds", observed=observed, threshold=threshold,
        samples=samples, min_samples=t.min_samples, window_seconds=window,
    )
