"""Error rate (docs/design.md#conditions, condition 4): the canary's failed requests, in total and per category.

All checks are gated proportions, higher is worse (one-sided exact binomial tests on
errors/requests):

* total against ``maxRate``, critical at ``maxRate × criticalFactor``;
* total against the stable: the canary may exceed the stable's rate by the headroom the
  absolute bound allows over a healthy rate, ``maxRate − baselineRate`` (warning), and by
  ``criticalFactor`` times that headroom (critical);
* each category against its own bound (``categories``), critical at × ``criticalFactor``.

A category absent from ``errors`` counts as zero errors in it (Prometheus only has a
labelled series once that label value has occurred; ``ErrorCounts.total`` sums the
present ones). ``errors`` absent altogether while there are requests is inconclusive.
"""

from __future__ import annotations

from ...api.thresholds import ConditionName
from ..snapshot import ERROR_CATEGORIES, Snapshot
from .base import ConditionResult, EvaluationContext, counted
from .checks import (
    Check,
    conclude,
    deff_of,
    missing,
    no_data,
    positive,
    proportion_check,
    sample_rate,
    shortfall,
    window_seconds,
)

NAME = ConditionName.ERROR_RATE.value
WHAT = "requests"
_KEYS = tuple(
    (c, f"{c} errors", f"{c}_rate", f"{c}_max_rate", f"{c}_critical_rate") for c in ERROR_CATEGORIES
)
"""Per category: field, label, observed key, threshold keys (built once: this runs every tick)."""


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.error_rate
    assert t is not None and t.max_rate is not None and t.baseline_rate is not None
    assert t.critical_factor is not None and t.categories is not None and t.min_samples is not None
    weight = t.weight or 0.0
    alpha = ctx.significance
    window = window_seconds(snapshot, NAME)
    factor = t.critical_factor
    headroom = t.max_rate - t.baseline_rate
    threshold: dict[str, float | int | str | bool | None] = {
        "max_rate": t.max_rate, "critical_rate": t.max_rate * factor, "baseline_rate": t.baseline_rate,
        "relative_bound": None, "relative_critical": None,
    }
    bounds = t.categories
    for category, _, _, max_key, critical_key in _KEYS:
        bound = getattr(bounds, category)
        threshold[max_key] = bound
        threshold[critical_key] = bound * factor if bound is not None else None
    threshold["alpha"] = alpha
    threshold["min_samples"] = t.min_samples

    canary = snapshot.canary
    n = canary.requests if canary is not None else None
    if not positive(n):
        return no_data(NAME, weight, f"no {WHAT} to the canary", samples=n, min_samples=t.min_samples,
                       window_seconds=window, threshold=threshold)
    assert canary is not None and n is not None
    if n < t.min_samples:
        return shortfall(NAME, weight, WHAT, n, t.min_samples, window_seconds=window,
                         rate=sample_rate(n, window, canary.rps, nominal=t.window, step_age=ctx.step_age),
                         threshold=threshold, observed={"n": n})
    errors = canary.errors
    total = errors.total() if errors is not None else None
    if errors is None or total is None:
        return missing(NAME, weight, f"error counts missing for the canary ({counted(n)} requests)", samples=n,
                       min_samples=t.min_samples, window_seconds=window, threshold=threshold)

    rate = total / n
    observed: dict[str, float | int | str | bool | None] = {
        "error_rate": rate, "errors": total, "n": n, "p_value": None, "stable_error_rate": None,
    }
    icc = ctx.dispersion.errors
    deff = deff_of(ctx, icc, n, window)
    checks: list[Check | None] = [
        proportion_check("error rate", total, n, t.max_rate, t.max_rate * factor, "above", alpha, digits=4,
                         deff=deff),
    ]
    notes: list[str] = []
    stable = snapshot.stable
    stable_total = stable.errors.total() if stable is not None and stable.errors is not None else None
    if stable is not None and positive(stable.requests) and stable_total is not None:
        assert stable.requests is not None
        stable_rate = stable_total / stable.requests
        bound, critical = stable_rate + headroom, stable_rate + factor * headroom
        observed["stable_error_rate"] = stable_rate
        threshold["relative_bound"], threshold["relative_critical"] = bound, critical
        points = stable.intervals.requests if stable.intervals is not None else None
        relative_deff = deff_of(ctx, icc, n, window, stable_n=stable.requests, stable_points=points, scale=1.0)
        relative = proportion_check("error rate", total, n, bound, critical, "above", alpha, digits=4,
                                    deff=relative_deff)
        if relative is not None:
            relative = relative._replace(note=f" (stable {stable_rate:.4f} + {headroom:g})")
        checks.append(relative)
    else:
        notes.append("the stable has no error rate: relative check skipped")
    for category, label, rate_key, _, _ in _KEYS:
        count = getattr(errors, category) or 0.0
        observed[rate_key] = count / n
        bound = getattr(bounds, category)
        if bound is not None:
            checks.append(proportion_check(label, count, n, bound, bound * factor, "above", alpha, digits=4,
                                           deff=deff))
    return conclude(
        NAME, weight, checks, alpha, gated=True, notes=notes,
        healthy=f"error rate {rate:.4f} ({counted(total)}/{counted(n)}) within bounds",
        observed=observed, threshold=threshold, samples=n, min_samples=t.min_samples, window_seconds=window,
    )
