"""How the state machine writes facts into status: conditions, history, risk and evidence.

``core.machine`` decides *what* happens to a rollout; this module owns the shape in
which it is recorded, so every transition reports the same way: Kubernetes conditions
keep their ``lastTransitionTime`` unless their status flips, history is capped at
``HISTORY_LIMIT``, the risk view carries every condition's observed values and
thresholds, and a rollback's evidence record is built in one place whatever triggered
it. ``kubectl describe``, Events, webhooks and ``evaluate`` then show the same facts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from ..api.models import (
    HISTORY_LIMIT,
    ConditionStatus,
    HistoryEntry,
    KubeCondition,
    ModelRolloutStatus,
    RiskStatus,
)
from .conditions.base import ConditionResult
from .decision import Decision
from .observations import CriticalSignal

def capped_history(status: ModelRolloutStatus, *entries: HistoryEntry) -> list[HistoryEntry]:
    return (list(status.history) + list(entries))[-HISTORY_LIMIT:]


def set_condition(
    conditions: list[KubeCondition], type_: str, value: bool, reason: str, message: str, now: datetime
) -> list[KubeCondition]:
    status: Literal["True", "False"] = "True" if value else "False"
    out: list[KubeCondition] = []
    found = False
    for c in conditions:
        if c.type == type_:
            found = True
            when = c.last_transition_time if c.status == status else now
            out.append(KubeCondition(type=type_, status=status, reason=reason, message=message, last_transition_time=when))
        else:
            out.append(c)
    if not found:
        out.append(KubeCondition(type=type_, status=status, reason=reason, message=message, last_transition_time=now))
    return out


def updated_conditions(status: ModelRolloutStatus, now: datetime, **updates: tuple[bool, str, str]) -> list[KubeCondition]:
    result = list(status.conditions)
    for type_, (value, reason, message) in updates.items():
        result = set_condition(result, type_, value, reason, message, now)
    return result


def _status_conditions(results: tuple[ConditionResult, ...], since: Mapping[str, datetime]) -> list[ConditionStatus]:
    return [
        ConditionStatus(
            name=r.name, severity=round(r.severity, 6), triggered=r.triggered, critical=r.critical,
            inconclusive=r.inconclusive, no_data=r.no_data, triggered_since=since.get(r.name),
            window_seconds=r.window_seconds, samples=r.samples, min_samples=r.min_samples, observed=dict(r.observed), threshold=dict(r.threshold), message=r.message,
        )
        for r in results
    ]


def shown_score(score: float) -> float:
    """The score to 2 places, rounded down so it never reads as the next level (the levels'
    bounds are whole hundredths); the exact score is in the history entries and evidence
    of decisions and in the ``modelrollout_risk_score`` metric."""
    return math.floor(score * 100 + 1e-9) / 100


def risk_of(decision: Decision, now: datetime) -> RiskStatus:
    return RiskStatus(score=shown_score(decision.score), level=decision.level, evaluated_at=now,
                      conditions=_status_conditions(decision.conditions, decision.triggered_since))


def evidence_of(decision: Decision | None, status: ModelRolloutStatus) -> dict[str, Any]:
    """The rollback evidence record: trigger, every condition's values, score, times."""
    record: dict[str, Any] = {"phase": status.phase.value, "step": status.current_step, "weight": status.canary_weight}
    if decision is not None:
        record.update({
            "score": round(decision.score, 6), "level": decision.level.value, "trigger": decision.trigger,
            "conditions": [
                {"name": r.name, "severity": round(r.severity, 6), "critical": r.critical, "inconclusive": r.inconclusive,
                 "observed": dict(r.observed), "threshold": dict(r.threshold), "message": r.message}
                for r in decision.conditions
            ],
        })
    elif status.risk is not None:
        record.update({"score": status.risk.score, "level": status.risk.level.value,
                       "conditions": [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in status.risk.conditions]})
    return record


def with_signal(status: ModelRolloutStatus, signal: CriticalSignal, now: datetime) -> ModelRolloutStatus:
    """``status.risk`` with the signalled condition as the fast path saw it.

    Without this, a fast-path rollback would show the last (healthy) tick's verdict for
    the very condition that caused it, in ``kubectl describe`` and in the evidence. The
    score and level stay the tick's: the fast path does not score.
    """
    name = signal.evidence.get("condition")
    if status.risk is None or not name:
        return status
    conditions = [
        c.model_copy(update={
            "severity": 1.0, "triggered": True, "critical": True, "inconclusive": False, "no_data": False,
            "triggered_since": c.triggered_since or now,
            "observed": dict(signal.evidence.get("observed") or c.observed),
            "threshold": dict(signal.evidence.get("threshold") or c.threshold),
            "message": f"{signal.evidence.get('message') or signal.reason} ({signal.path})",
        }) if c.name == name else c
        for c in status.risk.conditions
    ]
    return status.model_copy(update={"risk": status.risk.model_copy(update={"conditions": conditions})})


__all__ = ["capped_history", "evidence_of", "risk_of", "set_condition", "updated_conditions", "with_signal"]
