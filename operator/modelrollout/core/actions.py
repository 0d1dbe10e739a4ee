"""Actions: what the state machine asks the cluster to do, as frozen plain data.

The core never touches the cluster. It returns these; the operator's executor carries
them out idempotently (every action describes a target state, not a delta), so a
restart that re-executes an action already applied changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class StartRollout:
    """Verify the model digest, record the stable (once), create/update the canary at 0 replicas."""

    revision: str


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Route ``percent`` of traffic to the canary (replicas: ceil(total·w/100) canary pods)."""

    percent: int


@dataclass(frozen=True, slots=True)
class PrepareCanary:
    """Scale the canary for ``percent`` while no traffic is routed to it (Gateway API:
    the route's canary weight stays 0), so its servers can prove which model they loaded
    before any user reaches them (docs/integrity.md)."""

    percent: int
    replicas: int | None = None
    """An explicit size (a shadow step's ``shadow.replicas``) instead of ``percent``'s share."""


@dataclass(frozen=True, slots=True)
class MirrorTraffic:
    """A shadow step (docs/shadow.md): every user on the stable (route weights 100/0),
    ``percent`` % of the route's requests copied to the canary (a RequestMirror filter),
    the canary scaled to ``replicas``, or for ``size_percent`` % of traffic when None.
    Any later ``SetWeight`` or rollback removes the mirror."""

    percent: int
    size_percent: int
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class Promote:
    """Stable takes the challenger's template, becomes available, gets 100%; canary to 0."""

    revision: str


@dataclass(frozen=True, slots=True)
class RollbackPhase:
    """One of the three rollback phases of docs/design.md#rollback.

    1: traffic to 0 % canary at once; 2: restore the stable's replicas, template and GPU
    limits from ``status.stableRecord``; 3: scale the canary to 0.
    """

    phase: int


@dataclass(frozen=True, slots=True)
class EmitEvent:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Notify:
    """A webhook notification (JSON). Sent best-effort; never delays a rollback."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


Action = StartRollout | SetWeight | PrepareCanary | MirrorTraffic | Promote | RollbackPhase | EmitEvent | Notify


def describe(action: Action) -> dict[str, Any]:
    """JSON-friendly form for replay output and logs."""
    data: dict[str, Any] = {"type": type(action).__name__}
    for name in action.__slots__:  # type: ignore[attr-defined]
        value = getattr(action, name)
        data[name] = value.value if isinstance(value, StrEnum) else value
    return data
