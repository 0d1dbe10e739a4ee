"""Custom conditions (docs/design.md#custom-conditions): a user's PromQL value judged against their own bounds.

The adapter runs ``query`` (and ``minSamplesQuery`` when given) and puts the results in
``snapshot.custom[name] = {value, samples}``; this module only judges them:
``direction: above`` is higher-is-worse, ``below`` lower-is-worse, between ``threshold``
(warning) and ``critical``; critical at or beyond ``critical``. No significance gate: the
value is whatever the query computes, not a proportion we can test.

Samples: with a ``minSamplesQuery``, ``samples`` must be present and reach
``minSamples`` (absent: inconclusive; 0: no data). Without one, the value itself is the
evidence — a present value is enough and ``samples`` (if the adapter still sends it)
is only reported. A missing entry or value is no data.
"""

from __future__ import annotations

from ...api.models import CustomCondition, Direction
from ..snapshot import Snapshot
from .base import ConditionResult, EvaluationContext
from .checks import bound_check, conclude, missing, no_data, sample_rate, shortfall, window_seconds


def evaluate_custom(spec: CustomCondition, snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    name = spec.name
    window = window_seconds(snapshot, name)
    threshold: dict[str, float | int | str | bool | None] = {
        "threshold": spec.threshold, "critical": spec.critical, "direction": spec.direction.value,
        "min_samples": spec.min_samples if spec.min_samples_query else None,
    }
    entry = snapshot.custom.get(name) if snapshot.custom else None
    value = entry.value if entry is not None else None
    samples = entry.samples if entry is not None else None
    minimum = spec.min_samples if spec.min_samples_query else None
    if value is None:
        return no_data(name, spec.weight, f"no value for custom condition {name}", samples=samples,
                       min_samples=minimum, window_seconds=window, threshold=threshold)
    observed: dict[str, float | int | str | bool | None] = {"value": value, "samples": samples}
    if minimum is not None:
        if samples is None:
            return missing(name, spec.weight, f"sample count missing for {name} (minSamplesQuery gave nothing)",
                           samples=None, min_samples=minimum, window_seconds=window, observed=observed,
                           threshold=threshold)
        if samples <= 0.0:
            return no_data(name, spec.weight, f"no samples behind custom condition {name}", samples=samples,
                           min_samples=minimum, window_seconds=window, observed=observed, threshold=threshold)
        if samples < minimum:
            return shortfall(name, spec.weight, "samples", samples, minimum, window_seconds=window,
                             rate=sample_rate(samples, window), observed=observed, threshold=threshold)
    worse = "above" if spec.direction == Direction.ABOVE else "below"
    check = bound_check(name, value, spec.threshold, spec.critical, worse, digits=4)
    op = "≤" if worse == "above" else "≥"
    return conclude(
        name, spec.weight, [check], ctx.significance, healthy=f"{name} {value:.4f} {op} {spec.threshold:g}",
        observed=observed, threshold=threshold, samples=samples, min_samples=minimum, window_seconds=window,
    )
