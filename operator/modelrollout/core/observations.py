"""What the state machine observes: the only way facts enter ``core.machine.step``.

A metrics snapshot or a query error (the regular tick), a critical signal (fast path,
pod watch), the completion of an action (reported by the executor) or a manual command.
Frozen data in their own module because both sides speak them: the machine consumes
them, and the adapters that carry out actions answer with them (``adapters/kube.py``
returns ``Initialized``, ``PromotionApplied``, ``RollbackApplied`` …) without depending
on the machine itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..api.models import DecisionPath, StableRecord
from .snapshot import Snapshot

@dataclass(frozen=True, slots=True)
class MetricsObserved:
    """A regular tick: the Prometheus adapter's snapshot for this rollout."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class MetricsFailed:
    """Prometheus unreachable or erroring: never an exception, always this."""

    error: str


@dataclass(frozen=True, slots=True)
class CriticalSignal:
    """A breach caught outside the tick: the fast path or the canary pod watch."""

    path: DecisionPath  # FAST_PATH or POD_WATCH
    trigger: str        # condition name or kubernetesHealth
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Initialized:
    """``StartRollout`` succeeded; carries the stable as it was (recorded only the first time)."""

    stable: StableRecord


@dataclass(frozen=True, slots=True)
class InitFailed:
    """``StartRollout`` refused: e.g. the model digest does not match. Nothing was changed."""

    reason: str


@dataclass(frozen=True, slots=True)
class RollbackApplied:
    phase: int


@dataclass(frozen=True, slots=True)
class PromotionApplied:
    pass


@dataclass(frozen=True, slots=True)
class PromotionProgress:
    """One handover batch done: ``stable_ready`` stable pods run the challenger, the canary keeps the rest."""

    stable_ready: int
    canary_replicas: int
    total: int


@dataclass(frozen=True, slots=True)
class PromotionFailed:
    reason: str


class CommandKind(StrEnum):
    PROMOTE = "promote"          # skip to the next step (promote from the last)
    PROMOTE_FULL = "promoteFull"  # promote now
    ABORT = "abort"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind


@dataclass(frozen=True, slots=True)
class SpecChanged:
    """Re-read of the spec (new generation, pause/resume): reconcile without metrics."""


Observation = (
    MetricsObserved | MetricsFailed | CriticalSignal | Initialized | InitFailed | RollbackApplied
    | PromotionApplied | PromotionProgress | PromotionFailed | Command | SpecChanged
)


__all__ = [
    "Command", "CommandKind", "CriticalSignal", "InitFailed", "Initialized", "MetricsFailed", "MetricsObserved",
    "Observation", "PromotionApplied", "PromotionFailed", "PromotionProgress", "RollbackApplied", "SpecChanged",
]
