"""The traffic-router interface: two methods, our own types (Flagger's router.go shape).

A router moves a share of the service's traffic to the canary and reads back what is
actually applied (``None`` when it cannot tell). Both must be idempotent: setting the
weight that is already set changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    """Everything a router needs to know about one rollout's workloads."""

    namespace: str
    stable: str                 # stable Deployment name (and, by convention, its Service)
    canary: str                 # canary Deployment name (and its Service)
    total_replicas: int         # the stable's replicas before the rollout (status.stableRecord)
    http_route: str | None = None
    http_route_namespace: str | None = None
    min_serving: int = 0
    """Ready serving pods (stable + canary) a weight change must never go below (spec.promotion.maxUnavailable)."""
    deadline_seconds: float = 600.0
    """How long a weight change waits for the growing side's pods before it gives up (progressDeadlineSeconds)."""


class TrafficRouter(Protocol):
    async def set_canary_weight(self, target: RolloutTarget, percent: int) -> None: ...

    async def read_canary_weight(self, target: RolloutTarget) -> int | None: ...
