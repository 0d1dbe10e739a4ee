"""The risk conditions: the one list of built-ins, and one call that runs them all.

``CONDITIONS`` is authoritative: one entry per built-in condition module, in the order of the
docs/design.md#the-seven-conditions table, with the ``ConditionName`` it judges and the ``ConditionOverrides``
attribute holding its thresholds (derived from the name: the attribute's camelCase
alias *is* the name, so spec, status and code cannot disagree). Everything that
enumerates conditions — ``BUILTIN``, ``FIELDS``, the metrics catalogue in
``adapters/metrics/catalogue.py``, the default minimum samples of a request — is
derived from it. Adding a condition means its module here, its thresholds model in
``api/thresholds.py``, its metrics catalogue entry and its docs.

``evaluate_all`` runs the enabled ones, then the enabled custom conditions, and returns
their results in that order. A disabled condition is absent from the result — neither
scored nor inconclusive (docs/design.md#conditions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...api.models import CustomCondition
from ...api.thresholds import ConditionBase, ConditionName, ConditionOverrides
from ..snapshot import Snapshot
from . import accuracy, anomaly, cache, drift, errors, latency, throughput
from .base import Condition, ConditionResult, EvaluationContext
from .custom import evaluate_custom


@dataclass(frozen=True, slots=True)
class BuiltinCondition:
    """One built-in condition: what it is called, how it judges, where its thresholds live."""

    name: ConditionName
    evaluate: Condition
    field: str
    """Attribute of ``ConditionOverrides`` holding the condition's resolved thresholds."""


def _thresholds_field(name: ConditionName) -> str:
    """The ``ConditionOverrides`` attribute whose camelCase alias is ``name``."""
    for attribute, info in ConditionOverrides.model_fields.items():
        if (info.alias or attribute) == name.value:
            return attribute
    raise LookupError(f"ConditionOverrides has no thresholds for condition {name.value!r}")


CONDITIONS: tuple[BuiltinCondition, ...] = tuple(
    BuiltinCondition(ConditionName(module.NAME), module.evaluate, _thresholds_field(ConditionName(module.NAME)))
    for module in (accuracy, latency, drift, errors, cache, throughput, anomaly)
)
"""Every built-in condition, in the order of docs/design.md#the-seven-conditions (the order of results and of the score)."""

if [c.name for c in CONDITIONS] != list(ConditionName):
    raise RuntimeError("core.conditions.CONDITIONS must list every ConditionName once, in the enum's order")

BUILTIN: dict[ConditionName, Condition] = {c.name: c.evaluate for c in CONDITIONS}
"""Each built-in condition's ``evaluate``, in the order of docs/design.md#the-seven-conditions."""

FIELDS: dict[ConditionName, str] = {c.name: c.field for c in CONDITIONS}
"""Attribute of ``ConditionOverrides`` holding each condition's resolved thresholds."""


def thresholds_of(resolved: ConditionOverrides, name: ConditionName) -> ConditionBase:
    value = getattr(resolved, FIELDS[name])
    assert value is not None, f"thresholds for {name.value} are not resolved"
    return value


def enabled_builtins(resolved: ConditionOverrides) -> list[ConditionName]:
    """The built-in conditions that are scored, in the order of docs/design.md#the-seven-conditions."""
    return [name for name in BUILTIN if thresholds_of(resolved, name).enabled is not False]


def evaluate_all(
    snapshot: Snapshot, ctx: EvaluationContext, custom: Sequence[CustomCondition] = ()
) -> list[ConditionResult]:
    """Every enabled condition's result: the built-ins in the order of docs/design.md#the-seven-conditions, then the custom ones."""
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
    "CONDITIONS",
    "BuiltinCondition",
    "Condition",
    "ConditionResult",
    "EvaluationContext",
    "FIELDS",
    "enabled_builtins",
    "evaluate_all",
    "evaluate_custom",
    "thresholds_of",
]
