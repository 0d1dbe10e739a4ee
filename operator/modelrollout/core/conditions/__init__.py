"""The risk conditions: a registry of the seven built-ins and one call that runs them all.

``BUILTIN`` maps each ``ConditionName`` to its module's ``evaluate`` in the SPEC §3 table
order; ``evaluate_all`` runs the enabled ones, then the enabled custom conditions, and
returns their results in that order. A disabled condition is absent from the result —
neither scored nor inconclusive (SPEC §3, metrics contract).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...api.models import CustomCondition
from ...api.thresholds import ConditionBase, ConditionName, ConditionOverrides
from ..snapshot import Snapshot
from . import accuracy, anomaly, cache, drift, errors, latency, throughput
from .base import Condition, ConditionResult, EvaluationContext
from .custom import evaluate_custom

BUILTIN: dict[ConditionName, Condition] = {
    ConditionName.ACCURACY: accuracy.evaluate,
    ConditionName.LATENCY: latency.evaluate,
    ConditionName.CONFIDENCE_DRIFT: drift.evaluate,
    ConditionName.ERROR_RATE: errors.evaluate,
    ConditionName.CACHE: cache.evaluate,
    ConditionName.THROUGHPUT: throughput.evaluate,
    ConditionName.ANOMALY: anomaly.evaluate,
}

FIELDS: dict[ConditionName, str] = {
    ConditionName.ACCURACY: "accuracy",
    ConditionName.LATENCY: "latency",
    ConditionName.CONFIDENCE_DRIFT: "confidence_drift",
    ConditionName.ERROR_RATE: "error_rate",
    ConditionName.CACHE: "cache",
    ConditionName.THROUGHPUT: "throughput",
    ConditionName.ANOMALY: "anomaly",
}
"""Attribute of ``ConditionOverrides`` holding each condition's resolved thresholds."""


def thresholds_of(resolved: ConditionOverrides, name: ConditionName) -> ConditionBase:
    value = getattr(resolved, FIELDS[name])
    assert value is not None, f"thresholds for {name.value} are not resolved"
    return value


def enabled_builtins(resolved: ConditionOverrides) -> list[ConditionName]:
    """The built-in conditions that are scored, in SPEC table order."""
    return [name for name in BUILTIN if thresholds_of(resolved, name).enabled is not False]


def evaluate_all(
    snapshot: Snapshot, ctx: EvaluationContext, custom: Sequence[CustomCondition] = ()
) -> list[ConditionResult]:
    """Every enabled condition's result: the built-ins in SPEC order, then the custom ones."""
    resolved = ctx.thresholds
    results = [
        evaluate(snapshot, ctx)
        for name, evaluate in BUILTIN.items()
        if getattr(resolved, FIELDS[name]).enabled is not False
    ]
    results.extend(evaluate_custom(spec, snapshot, ctx) for spec in custom if spec.enabled)
    return results


__all__ = [
    "BUILTIN",
    "Condition",
    "ConditionResult",
    "EvaluationContext",
    "enabled_builtins",
    "evaluate_all",
    "evaluate_custom",
    "thresholds_of",
]
