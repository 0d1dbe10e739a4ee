"""Batching: the per-rollout calls of concurrent ticks become one batch per Prometheus.

The operator runs one asyncio task per rollout and ticks them on the interval grid, so
the ticks of many rollouts arrive together, as one wave. ``BatchingMetricsSource`` gathers
them into one ``snapshots`` call, whose queries serve every rollout of the batch
(``plan.py``): the query count grows with conditions and distinct windows, never with
rollouts. The fast path reuses the same machinery with fewer conditions and
``path=DecisionPath.FAST_PATH``, sending its own whole batches. ``PrometheusRouter`` keeps one
batching source per Prometheus URL, so rollouts sharing a Prometheus share its queries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from ...api.models import DecisionPath
from ...core.snapshot import Snapshot
from ...errors import MetricsUnavailable, OperatorBug
from .base import MetricsBatchSource
from .request import SnapshotRequest
from .transport import PrometheusMetricsSource, QueryHook

BatchHook = Callable[[int], None]
"""``on_batch(rollouts)``: called once per batch sent, with how many rollouts it serves."""


class BatchingMetricsSource:
    """Coalesces concurrent per-rollout ``snapshot`` calls into one ``snapshots`` batch.

    The operator runs one task per rollout and ticks them on the interval grid, but each
    reads its rollout from the apiserver first, so one instant's ticks arrive as a wave
    spread over up to a second at 100 rollouts. The first caller opens a batch; it is
    sent once no caller joined for ``window`` seconds, or ``max_wait`` after it opened,
    whichever is first, so a wave becomes one batch (and one set of queries) while a lone
    tick waits only ``window``. The batch's ``at`` is the latest ``at`` among its callers.
    Two calls for the same rollout key in one batch share one query: the later request wins.
    """

    def __init__(self, source: MetricsBatchSource, *, window: float = 0.05, max_wait: float = 0.5,
                 path: DecisionPath = DecisionPath.TICK, on_batch: BatchHook | None = None) -> None:
        """``on_batch(rollouts)``: called with the size of every batch sent (operator metrics)."""
        if not 0 < window <= max_wait:
            raise ValueError(f"window ({window}) must be positive and at most max_wait ({max_wait})")
        self.source = source
        self.on_batch = on_batch
        self.window = window
        self.max_wait = max_wait
        self.path = path
        self._last_arrival = 0.0
        self._pending: dict[str, tuple[SnapshotRequest, list[asyncio.Future[Snapshot | MetricsUnavailable]]]] = {}
        self._pending_at: datetime | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # batches sent (for tests and logs)

    async def snapshot(self, request: SnapshotRequest, at: datetime) -> Snapshot | MetricsUnavailable:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Snapshot | MetricsUnavailable] = loop.create_future()
        entry = self._pending.get(request.key)
        futures = entry[1] if entry else []
        futures.append(fut)
        self._pending[request.key] = (request, futures)
        self._pending_at = at if self._pending_at is None else max(self._pending_at, at)
        self._last_arrival = loop.time()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later(), name="prometheus-batch")
        return await fut

    async def _flush_later(self) -> None:
        loop = asyncio.get_running_loop()
        opened = loop.time()
        try:
            while True:  # until quiet for ``window``, or ``max_wait`` after opening
                wait = min(self._last_arrival + self.window, opened + self.max_wait) - loop.time()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            batch = self._take()[0]
            for _, futures in batch.values():
                for f in futures:
                    f.cancel()
            raise
        batch, at = self._take()
        if not batch or at is None:
            return
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(batch))
        requests_ = [req for req, _ in batch.values()]
        try:
            results = await self.source.snapshots(requests_, at, path=self.path)
        except asyncio.CancelledError:
            for _, futures in batch.values():
                for f in futures:
                    f.cancel()
            raise
        except BaseException as exc:  # an OperatorBug: every caller gets it, none hangs
            bug = exc if isinstance(exc, Exception) else OperatorBug(f"{type(exc).__name__}: {exc}")
            for _, futures in batch.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(bug)
            return
        for key, (_, futures) in batch.items():
            value = results.get(key) or MetricsUnavailable(f"no answer for {key}")
            for f in futures:
                if not f.done():
                    f.set_result(value)

    def _take(self) -> tuple[dict[str, tuple[SnapshotRequest, list[asyncio.Future[Snapshot | MetricsUnavailable]]]],
                             datetime | None]:
        batch, at = self._pending, self._pending_at
        self._pending, self._pending_at, self._flusher = {}, None, None
        return batch, at


class PrometheusRouter:
    """Snapshots from the Prometheus each rollout names, else the operator's default.

    One batching source per URL: rollouts sharing a Prometheus share its queries.
    """

    def __init__(self, default_url: str, timeout: float, on_query: QueryHook | None = None,
                 min_rate_window: timedelta = timedelta(seconds=60), on_batch: BatchHook | None = None) -> None:
        self.default_url = default_url
        self.timeout = timeout
        self.on_query = on_query
        self.on_batch = on_batch
        self.min_rate_window = min_rate_window
        self._sources: dict[str, BatchingMetricsSource] = {}

    def source(self, url: str | None) -> BatchingMetricsSource:
        url = url or self.default_url
        if url not in self._sources:
            self._sources[url] = BatchingMetricsSource(PrometheusMetricsSource(
                url, query_timeout=self.timeout, on_query=self.on_query, min_rate_window=self.min_rate_window),
                on_batch=self.on_batch)
        return self._sources[url]

    async def snapshot(self, request: SnapshotRequest, at: datetime) -> Snapshot | MetricsUnavailable:
        return await self.source(request.prometheus_url).snapshot(request, at)

    def batch_source(self, url: str | None) -> MetricsBatchSource:
        """The unbatched source of a URL: the fast path sends its own whole batches."""
        return self.source(url).source


__all__ = ["BatchingMetricsSource", "PrometheusRouter"]
