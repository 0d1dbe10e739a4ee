"""Weighted risk score and levels (docs/design.md#risk-score): many conditions -> one number -> one level."""

from __future__ import annotations

from collections.abc import Sequence

from ..api.models import RiskLevel
from .conditions.base import ConditionResult

MEDIUM_AT = 0.3
HIGH_AT = 0.6
CRITICAL_AT = 0.8


def score_conditions(results: Sequence[ConditionResult]) -> float:
    """``Σ wᵢ·sevᵢ / Σ wᵢ`` over the enabled conditions, capped at 1.

    Inconclusive conditions stay in the denominator with severity 0: missing evidence
    must not *raise* the score (rollback is for evidence of harm), and rule 6 of the
    decision makes sure it can't lower the bar for advancing either.
    """
    total_weight = 0.0
    weighted = 0.0
    for result in results:
        total_weight += result.weight
        weighted += result.weight * result.severity
    if total_weight <= 0.0:
        return 0.0
    score = weighted / total_weight
    return 1.0 if score > 1.0 else score


def level_of(score: float) -> RiskLevel:
    """low < 0.3 ≤ medium < 0.6 ≤ high < 0.8 ≤ critical."""
    if score >= CRITICAL_AT:
        return RiskLevel.CRITICAL
    if score >= HIGH_AT:
        return RiskLevel.HIGH
    if score >= MEDIUM_AT:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW
