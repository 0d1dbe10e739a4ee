"""Which status changes must be written at once (docs/operator.md#quiet-status-writes).

Every tick builds a new status, and most ticks change only what the next tick derives
afresh: when it was evaluated, the values each condition observed, the countdown in the
reason ("step 0 ends in 3m20s"), the next tick's time, the overdispersion estimate (written again each time the intervals it
rests on double). With
``--status-heartbeat`` the controller writes such a status at most that often, and any
other change at once. What counts as *material* is everything a restart resumes from
and everything a reader acts on: phase, step, weight, the stable record, the clocks of
the rules (``triggeredSince``, ``highRiskSince``, ``shortOfSizeSince``…), the counters,
history, Kubernetes conditions, the risk level and each condition's flags, the decision's
action — and the reason's words, so that "Inconclusive: …" becoming "waiting for the
declared model: …" is written even though both hold. Only the numbers in a reason or
message are not material.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from ..api.models import ConditionStatus, ModelRolloutStatus, RiskStatus

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _words(text: str) -> str:
    """A reason or message without its numbers: what it says, not how far along it is."""
    return _NUMBER.sub("#", text)


def material(status: ModelRolloutStatus) -> ModelRolloutStatus:
    """``status`` with every non-material field blanked (two statuses whose material views
    are equal differ only in what the next tick re-derives)."""
    risk = status.risk
    if risk is not None:
        risk = RiskStatus(score=0.0, level=risk.level, evaluated_at=_EPOCH, conditions=[
            ConditionStatus(name=c.name, severity=0.0, triggered=c.triggered,
                            critical=c.critical, inconclusive=c.inconclusive, no_data=c.no_data,
                            triggered_since=c.triggered_since)
            for c in risk.conditions
        ])
    decision = status.decision
    if decision is not None:
        decision = decision.model_copy(update={"at": _EPOCH, "reason": _words(decision.reason)})
    dispersion = status.dispersion
    if dispersion is not None:  # written each time its intervals double (the estimate firms up); else at the heartbeat
        dispersion = dispersion.model_copy(update={"accuracy": 0.0, "error_rate": 0.0, "cache": 0.0, "rate": 0.0,
                                                   "intervals": dispersion.intervals.bit_length()})
    return status.model_copy(update={
        "risk": risk, "decision": decision, "message": _words(status.message), "next_evaluation_at": None,
        "dispersion": dispersion,
    })


def materially_different(a: ModelRolloutStatus, b: ModelRolloutStatus) -> bool:
    """Whether writing ``b`` over ``a`` changes anything material."""
    return a != b and material(a) != material(b)


__all__ = ["material", "materially_different"]
