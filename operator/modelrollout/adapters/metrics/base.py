"""The metrics-source interfaces: the cut between the operator and whatever reads metrics.

Two narrow protocols typed with our own models. ``MetricsSource`` is what a rollout's
tick needs (one snapshot, or why there is none); ``MetricsBatchSource`` is what the fast
path needs (one batch for many rollouts, keyed by ``SnapshotRequest.key``). Neither
judges what it reads, and neither raises for Prometheus' failures: those are
``MetricsUnavailable`` values. This module imports no client library, so the shell
(``controller.py``, ``fast_path_loop.py``) can depend on it without the transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ...api.models import DecisionPath
from ...core.snapshot import Snapshot
from ...errors import MetricsUnavailable
from .request import SnapshotRequest


class MetricsSource(Protocol):
    """What the operator's tick needs: one rollout's snapshot (or why there is none)."""

    async def snapshot(self, request: SnapshotRequest, at: datetime) -> Snapshot | MetricsUnavailable: ...


class MetricsBatchSource(Protocol):
    """One batch of rollouts' snapshots at once: one answer (or reason) per request key."""

    async def snapshots(self, requests: Sequence[SnapshotRequest], at: datetime, *,
                        path: DecisionPath = DecisionPath.TICK) -> dict[str, Snapshot | MetricsUnavailable]: ...


__all__ = ["MetricsBatchSource", "MetricsSource", "SnapshotRequest"]
