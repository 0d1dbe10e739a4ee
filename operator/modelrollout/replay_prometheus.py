"""Replay from Prometheus: what a rollout's thresholds would have decided over a past window.

``modelrollout replay --prometheus URL --from T1 --to T2`` (docs/decisions.md#replay-from-prometheus)
asks Prometheus, at each past tick, exactly what the operator's tick asks: the request is
built by the same ``wiring.snapshot_request`` from the status carried to that tick (the
windows depend on the step's age and weight), sent through the same
``PrometheusMetricsSource`` with the tick's time as the query's evaluation time, and the
answer goes through the same state machine (``core.replay.replay_observed``). Only the
Kubernetes side is absent: pod health (OOMKilled, CrashLoopBackOff, availability) is not
in Prometheus, and actions complete at once as in every replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from .adapters.metrics.transport import PrometheusMetricsSource
from .api.models import ModelRolloutSpec, ModelRolloutStatus
from .controller import RolloutRef
from .core.observations import MetricsFailed, MetricsObserved, Observation
from .core.replay import ReplayTick, replay_observed
from .core.snapshot import Snapshot
from .wiring import snapshot_request

MAX_TICKS = 100_000
"""A replay is bounded: about a week at 6 s a tick. Longer windows take a coarser ``--step``."""


def tick_times(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """``start``, ``start + every``, ... up to ``end`` inclusive; raises ValueError naming the option."""
    if every < timedelta(seconds=1):
        raise ValueError(f"--step: {every.total_seconds():g}s is shorter than Prometheus' 1 s resolution; use 1s or more")
    if end <= start:
        raise ValueError(f"--to {end.isoformat()} is not after --from {start.isoformat()}")
    count = int((end - start) / every) + 1
    if count > MAX_TICKS:
        raise ValueError(f"--from/--to/--step make {count} ticks, more than {MAX_TICKS}; use a longer --step")
    return [start + i * every for i in range(count)]


class PrometheusReplay:
    """Observations as the rollout's tick would have read them from Prometheus at past moments."""

    def __init__(self, url: str, namespace: str, name: str, spec: ModelRolloutSpec, *,
                 source: PrometheusMetricsSource | None = None, headers: Mapping[str, str] | None = None,
                 verify_tls: bool = True) -> None:
        """``headers`` (e.g. ``Authorization``) go with every query; ``verify_tls=False``
        accepts any certificate (a Prometheus behind a self-signed proxy)."""
        self.ref = RolloutRef(namespace=namespace, name=name, uid="replay")
        self.spec = spec
        self.source = source or PrometheusMetricsSource(url, headers=headers, verify_tls=verify_tls)
        self._loop = asyncio.new_event_loop()

    def unreachable(self) -> str | None:
        """None when Prometheus answers, else why not: a replay against a mistyped URL would
        otherwise be a run of Prometheus errors, held and then rolled back by the rollout's
        own prometheusErrors policy, and read like a judgement."""
        return self.source.unreachable()

    def observe(self, status: ModelRolloutStatus, at: datetime) -> Observation:
        request = snapshot_request(self.ref, self.spec, status, at)
        answers = self._loop.run_until_complete(self.source.snapshots([request], at))
        result = answers.get(request.key)
        if isinstance(result, Snapshot):
            return MetricsObserved(result)
        return MetricsFailed(str(result) if result is not None else "Prometheus gave no answer")

    def ticks(self, times: list[datetime], status: ModelRolloutStatus | None = None) -> Iterator[ReplayTick]:
        return replay_observed(self.spec, times, self.observe, status)

    def close(self) -> None:
        self.source.close()
        self._loop.close()


__all__ = ["MAX_TICKS", "PrometheusReplay", "tick_times"]
