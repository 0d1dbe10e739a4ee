"""Accuracy (docs/design.md#conditions, condition 1): the canary's share of correct labelled predictions.

Two gated checks, lower is worse: the absolute bound (``minAccuracy``, critical
``criticalAccuracy``) and the bound relative to the stable (stable × (1 − maxRelativeDrop),
critical stable × (1 − criticalRelativeDrop)). Both are one-sided exact binomial tests on
correct/evaluated: a canary below a bound by chance alone does not trigger. The stable's
accuracy is taken as known (its sample is far larger); when the stable has no labelled
predictions the relative check is skipped, never inconclusive.
"""

from __future__ import annotations

from ...api.thresholds import ConditionName
from ..snapshot import Snapshot
from .base import ConditionResult, EvaluationContext, counted
from .checks import conclude, deff_of, missing, no_data, positive, proportion_check, sample_rate, shortfall, window_seconds

NAME = ConditionName.ACCURACY.value
WHAT = "labelled predictions"


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.accuracy
    assert t is not None and t.min_accuracy is not None and t.critical_accuracy is not None
    assert t.max_relative_drop is not None and t.critical_relative_drop is not None and t.min_samples is not None
    weight = t.weight or 0.0
    alpha = ctx.significance
    window = window_seconds(snapshot, NAME)
    threshold: dict[str, float | int | str | bool | None] = {
        "min_accuracy": t.min_accuracy, "critical_accuracy": t.critical_accuracy,
        "max_relative_drop": t.max_relative_drop, "critical_relative_drop": t.critical_relative_drop,
        "relative_bound": None, "relative_critical": None, "alpha": alpha, "min_samples": t.min_samples,
    }
    canary = snapshot.canary
    n = canary.predictions_evaluated if canary is not None else None
    if not positive(n):
        return no_data(NAME, weight, f"no {WHAT} from the canary", samples=n, min_samples=t.min_samples,
                       window_seconds=window, threshold=threshold)
    assert canary is not None and n is not None
    if n < t.min_samples:
        return shortfall(NAME, weight, WHAT, n, t.min_samples, window_seconds=window,
                         rate=sample_rate(n, window, nominal=t.window, step_age=ctx.step_age),
                         threshold=threshold, observed={"n": n})
    correct = canary.predictions_correct
    if correct is None:
        return missing(NAME, weight, f"predictions_correct missing for the canary ({counted(n)} evaluated)",
                       samples=n, min_samples=t.min_samples, window_seconds=window, threshold=threshold)

    accuracy = correct / n
    observed: dict[str, float | int | str | bool | None] = {
        "accuracy": accuracy, "correct": correct, "n": n, "p_value": None, "stable_accuracy": None,
    }
    icc = ctx.dispersion.accuracy
    checks = [proportion_check("accuracy", correct, n, t.min_accuracy, t.critical_accuracy, "below", alpha,
                               deff=deff_of(ctx, icc, n, window))]
    notes: list[str] = []
    stable = snapshot.stable
    if stable is not None and positive(stable.predictions_evaluated) and stable.predictions_correct is not None:
        assert stable.predictions_evaluated is not None
        stable_accuracy = stable.predictions_correct / stable.predictions_evaluated
        keep, keep_critical = 1.0 - t.max_relative_drop, 1.0 - t.critical_relative_drop
        bound, critical = stable_accuracy * keep, stable_accuracy * keep_critical
        observed["stable_accuracy"] = stable_accuracy
        threshold["relative_bound"], threshold["relative_critical"] = bound, critical
        points = stable.intervals.predictions_evaluated if stable.intervals is not None else None
        deff = deff_of(ctx, icc, n, window, stable_n=stable.predictions_evaluated, stable_points=points, scale=keep)
        relative = proportion_check("accuracy", correct, n, bound, critical, "below", alpha, deff=deff)
        if relative is not None:
            relative = relative._replace(note=f" (stable {stable_accuracy:.3f} × {keep:g})")
        checks.append(relative)
        healthy_bound = max(t.min_accuracy, bound)
    else:
        notes.append("the stable has no labelled predictions: relative check skipped")
        healthy_bound = t.min_accuracy
    return conclude(
        NAME, weight, checks, alpha, gated=True, notes=notes,
        healthy=f"accuracy {accuracy:.3f} ≥ {healthy_bound:.3f} over {counted(n)} {WHAT}",
        observed=observed, threshold=threshold, samples=n, min_samples=t.min_samples, window_seconds=window,
    )
