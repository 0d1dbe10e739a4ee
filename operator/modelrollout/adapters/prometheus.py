"""The Prometheus metrics source: one batch of queries -> one Snapshot v1 per rollout.

Shape, and why:

* **Batched across rollouts.** ``PrometheusMetricsSource.snapshots`` takes every rollout
  that ticks now and issues *one* query per (metric, window, template, label names) for
  all of them, grouped ``by (namespace, deployment)``; the answer is split per rollout.
  Rollouts with the same windows share every query, so the query count grows with
  conditions and distinct windows, never with rollouts (issue 5 item 2; the fast path of
  issue 9 reuses the same machinery with fewer conditions and ``path="fastPath"``).
  ``BatchingMetricsSource`` gathers the per-rollout calls of concurrent ticks (one asyncio
  task per rollout, aligned to the interval grid) into such batches.
* **Raises only for its own bugs, never judges.** Any Prometheus failure becomes a
  ``MetricsUnavailable`` value for the rollouts whose queries failed (every rollout, when
  Prometheus is down), and so does an answer that does not fit the snapshot format. Any
  other exception is a defect of the operator and is raised as ``OperatorBug``: it must
  never pass for "Prometheus unavailable" and count toward ``prometheusErrors``;
  an absent series is a ``None`` field, which the core turns into inconclusive / no data.
  Thresholds live in the core; the only numbers used here are the minimum samples that
  decide which window the stable's side is read over (SPEC §3 "The stable's side").
* **One consistent read per batch.** The instant queries of a batch that use the default
  templates go out as *one* PromQL query (``label_replace(q0, "mr_query", "0", "", "") or
  label_replace(q1, …)``), split by that label on return. Prometheus answers one query
  from one snapshot of its head; separate queries do not agree with one another when a
  scrape is committed between them, and for a young series (a canary a few scrapes old)
  ``increase(correct)`` and ``increase(evaluated)`` read from different scrapes were seen
  to differ by half — a healthy canary's accuracy read as 0.48, "significant" at p=1e-34.
  Overridden templates are sent on their own, so a broken override fails only its rollouts.
* **Synchronous client in threads.** prometheus-api-client is requests-based; each query
  runs in a small dedicated thread pool (not the loop's default executor, which kopf
  uses for sync handlers) with three timeouts: Prometheus' own ``timeout`` parameter, the
  requests timeout, and an ``asyncio`` deadline that bounds the wait even if a socket hangs.

The PromQL text lives in ``adapters/promql.py``; docs/prometheus.md is the reference.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import requests
from pydantic import ValidationError
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..api.models import CustomCondition, MetricLabels, ModelRolloutSpec, ModelRolloutStatus
from ..api.thresholds import PROFILES, ConditionName, Profile
from ..core.snapshot import ERROR_CATEGORIES, Snapshot
from ..errors import MetricsUnavailable, OperatorBug
from . import promql
from .promql import Pair

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ what each condition reads

CONDITION_METRICS: dict[str, tuple[str, ...]] = {
    ConditionName.ACCURACY.value: ("predictions_evaluated", "predictions_correct"),
    ConditionName.LATENCY.value: ("latency_mean_ms", "latency_p95_ms", "latency_p99_ms", "latency_count"),
    ConditionName.CONFIDENCE_DRIFT.value: ("confidence",),
    ConditionName.ERROR_RATE.value: ("requests", "errors"),
    ConditionName.CACHE.value: ("cache_requests", "cache_evictions_per_minute", "cache_lookup_ms"),
    ConditionName.THROUGHPUT.value: ("rps",),
    ConditionName.ANOMALY.value: (),  # range queries, see SERIES_QUERIES
}
"""Instant-query templates each condition needs, for both sides."""

STABLE_SAMPLES: dict[str, str] = {
    ConditionName.ACCURACY.value: "predictions_evaluated",
    ConditionName.LATENCY.value: "latency_count",
    ConditionName.ERROR_RATE.value: "requests",
}
"""Conditions whose stable side is read over the canary's window when the stable has the
condition's minimum samples there (this metric counts them), else over the baseline window."""

STABLE_BASELINE_ONLY = frozenset({ConditionName.CONFIDENCE_DRIFT.value})
"""Drift always compares with the stable over the baseline window (SPEC §3)."""

# Every other condition (cache, throughput) reads the stable over the canary's window only:
# the cache condition has no stable comparison, and throughput's service-wide check adds
# the stable's *current* RPS to the canary's — a 24 h average would double-count at 100 %.

BUNDLE_LABEL = "mr_query"
"""Label that tags each sub-query's series in a bundled query (removed from the answers)."""

MAX_BUNDLE_CHARS = 200_000
"""A bundle longer than this is split (Prometheus reads queries from the URL; keep it sane)."""

_DEFAULT_MIN_SAMPLES: dict[str, float] = {
    name.value: float(getattr(PROFILES[Profile.BALANCED], _f).min_samples)
    for name, _f in (
        (ConditionName.ACCURACY, "accuracy"), (ConditionName.LATENCY, "latency"),
        (ConditionName.CONFIDENCE_DRIFT, "confidence_drift"), (ConditionName.ERROR_RATE, "error_rate"),
        (ConditionName.CACHE, "cache"), (ConditionName.THROUGHPUT, "throughput"), (ConditionName.ANOMALY, "anomaly"),
    )
}

QueryHook = Callable[[str, float, bool], None]
"""``on_query(path, seconds, ok)``: called once per query sent to Prometheus."""


# -------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class SnapshotRequest:
    """What one rollout needs from Prometheus this tick.

    Validated on construction: ``UnsafeLabelValue`` names the field whose value cannot
    enter a PromQL matcher, ``InvalidSpec`` names an unknown or unusable template override
    (``spec.analysis.queries.<name>``). An instance that exists is safe to batch.
    """

    key: str                                  # "namespace/name" of the ModelRollout
    namespace: str
    stable: str                               # Deployment names
    canary: str
    windows: Mapping[str, timedelta]          # condition key -> canary window (core.windows.plan_windows)
    baseline_window: timedelta = timedelta(hours=24)
    series_window: timedelta | None = None    # anomaly series: how far back (None: no series)
    series_step: timedelta | None = None      # ... and one point per step (the analysis interval)
    canary_weight: int = 0
    labels: MetricLabels = field(default_factory=MetricLabels)
    queries: Mapping[str, str] = field(default_factory=dict)   # spec.analysis.queries overrides
    custom: Sequence[CustomCondition] = ()
    min_samples: Mapping[str, float] = field(default_factory=dict)  # condition -> minimum (default: balanced)
    templates: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        promql.check_namespace(self.namespace, "metadata.namespace")
        promql.check_deployment(self.stable, "spec.stable.deployment")
        promql.check_deployment(self.canary, "spec.canary.deployment")
        promql.check_label_name(self.labels.namespace, "spec.analysis.labels.namespace")
        promql.check_label_name(self.labels.deployment, "spec.analysis.labels.deployment")
        unknown = set(self.windows) - set(CONDITION_METRICS)
        if unknown:
            raise ValueError(f"windows: unknown condition(s) {sorted(unknown)}; known: {sorted(CONDITION_METRICS)}")
        if (self.series_window is None) != (self.series_step is None):
            raise ValueError("series_window and series_step go together")
        if self.series_step is not None and self.series_step.total_seconds() < 1:
            raise ValueError("series_step must be at least 1s")
        object.__setattr__(self, "templates", promql.resolve_queries(self.queries))

    @classmethod
    def for_rollout(cls, *, namespace: str, name: str, spec: ModelRolloutSpec, status: ModelRolloutStatus | None,
                    windows: Mapping[str, timedelta], series_points: int = 30,
                    max_series_window: timedelta = timedelta(hours=6)) -> "SnapshotRequest":
        """The request the regular tick makes for one rollout, from its spec, its status and
        the windows the core planned (``core.windows.plan_windows``).

        The anomaly series (when ``windows`` has anomaly) covers ``max(series_points,
        anomaly.minSamples)`` analysis intervals (capped at ``max_series_window``).
        """
        from ..core.conditions import thresholds_of

        status = status or ModelRolloutStatus()
        analysis = spec.analysis
        resolved = analysis.resolved_conditions()
        minimums = {
            c.value: float(thresholds_of(resolved, c).min_samples or 0) for c in ConditionName
        }
        series_window = series_step = None
        if ConditionName.ANOMALY.value in windows:
            series_step = analysis.interval
            points = max(series_points, int(minimums[ConditionName.ANOMALY.value]))
            series_window = min(series_step * points, max_series_window)
        return cls(
            key=f"{namespace}/{name}", namespace=namespace, stable=spec.stable.deployment,
            canary=spec.canary.deployment, windows=dict(windows), baseline_window=analysis.baseline_window,
            series_window=series_window, series_step=series_step, canary_weight=status.canary_weight,
            labels=analysis.labels, queries=dict(analysis.queries),
            custom=tuple(c for c in analysis.custom if c.enabled), min_samples=minimums,
        )

    @classmethod
    def for_fast_path(cls, *, namespace: str, name: str, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                      windows: Mapping[str, timedelta]) -> "SnapshotRequest":
        """The fast path's request: the critical conditions' windows
        (``core.windows.fast_path_windows``) only.

        No anomaly series and no custom conditions (per-rollout queries would make the
        fast path's cost grow with rollouts).
        """
        tick = cls.for_rollout(namespace=namespace, name=name, spec=spec, status=status, windows=windows)
        return dataclasses.replace(tick, series_window=None, series_step=None, custom=())

    def minimum(self, condition: str) -> float:
        value = self.min_samples.get(condition)
        return float(value) if value is not None else _DEFAULT_MIN_SAMPLES.get(condition, 1.0)


class MetricsSource(Protocol):
    """What the operator's tick needs: one rollout's snapshot (or why there is none)."""

    async def snapshot(self, request: SnapshotRequest, at: datetime) -> Snapshot | MetricsUnavailable: ...


# ------------------------------------------------------------------------------ query plan


@dataclass(frozen=True, slots=True)
class QueryKey:
    """One PromQL query of a batch; requests that agree on all of it share the query."""

    name: str                  # template name (promql.DEFAULT_QUERIES)
    template: str
    window_s: int              # {window}: the counts' window, or a series point's rate window
    namespace_label: str
    deployment_label: str
    range_s: int | None = None  # range queries: how far back ...
    step_s: int | None = None   # ... and the resolution

    @property
    def is_range(self) -> bool:
        return self.range_s is not None


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    key: QueryKey
    promql: str


def _seconds(window: timedelta) -> int:
    return max(1, math.ceil(window.total_seconds() - 1e-9))


def _key(request: SnapshotRequest, name: str, window: timedelta, *, range_s: int | None = None,
         step_s: int | None = None) -> QueryKey:
    return QueryKey(name, request.templates[name], _seconds(window), request.labels.namespace,
                    request.labels.deployment, range_s, step_s)


class _Plan:
    """Which queries a batch needs, and which of them each request depends on."""

    def __init__(self, requests: Sequence[SnapshotRequest], min_rate_window: timedelta) -> None:
        self.pairs: dict[QueryKey, set[Pair]] = {}
        self.needs: dict[str, set[QueryKey]] = {}
        self.min_rate_window = min_rate_window
        for r in requests:
            needs = self.needs.setdefault(r.key, set())
            canary, stable = (r.namespace, r.canary), (r.namespace, r.stable)
            for condition, window in r.windows.items():
                for metric in CONDITION_METRICS[condition]:
                    # The canary's window; the stable is read there too unless drift.
                    same = [canary] if condition in STABLE_BASELINE_ONLY else [canary, stable]
                    self._add(needs, _key(r, metric, window), same)
                    if condition in STABLE_SAMPLES or condition in STABLE_BASELINE_ONLY:
                        self._add(needs, _key(r, metric, r.baseline_window), [stable])
            for name in self.series_names(r):
                self._add(needs, self.series_key(r, name), [canary])

    def _add(self, needs: set[QueryKey], key: QueryKey, pairs: list[Pair]) -> None:
        self.pairs.setdefault(key, set()).update(pairs)
        needs.add(key)

    @staticmethod
    def series_names(r: SnapshotRequest) -> list[str]:
        if r.series_window is None or ConditionName.ANOMALY.value not in r.windows:
            return []
        return list(promql.SERIES_QUERIES)

    def series_key(self, r: SnapshotRequest, name: str) -> QueryKey:
        assert r.series_window is not None and r.series_step is not None
        rate_window = max(r.series_step, self.min_rate_window)
        return _key(r, name, rate_window, range_s=_seconds(r.series_window), step_s=_seconds(r.series_step))

    def queries(self) -> list[PlannedQuery]:
        out = []
        for key, pairs in sorted(self.pairs.items(), key=lambda kv: (kv[0].name, kv[0].window_s, kv[0].range_s or 0,
                                                                      kv[0].template, kv[0].namespace_label,
                                                                      kv[0].deployment_label)):
            selector = promql.build_selector(key.namespace_label, key.deployment_label, pairs)
            text = promql.render(key.template, selector=selector, window=timedelta(seconds=key.window_s),
                                 by=f"{key.namespace_label}, {key.deployment_label}")
            out.append(PlannedQuery(key, text))
        return out


def plan_queries(requests: Sequence[SnapshotRequest],
                 min_rate_window: timedelta = timedelta(seconds=60)) -> list[PlannedQuery]:
    """The batched queries (custom conditions aside) that ``snapshots(requests)`` sends."""
    return _Plan(requests, min_rate_window).queries()


# --------------------------------------------------------------------------------- answers


Answer = Any  # parsed per template kind; see _parse


def _parse(key: QueryKey, result: Any) -> Answer:
    if not isinstance(result, list):
        raise MetricsUnavailable(f"query {key.name}: unexpected answer {type(result).__name__} (not a vector)")
    if key.is_range:
        return promql.parse_matrix(result, key.namespace_label, key.deployment_label)
    extra = promql.EXTRA_LABEL.get(key.name)
    if extra:
        return promql.parse_labelled(result, key.namespace_label, key.deployment_label, extra)
    return promql.parse_vector(result, key.namespace_label, key.deployment_label)


class _Assembler:
    """Builds one rollout's snapshot from the batch's parsed answers."""

    def __init__(self, request: SnapshotRequest, answers: Mapping[QueryKey, Answer], plan: _Plan,
                 at: datetime) -> None:
        self.r = request
        self.answers = answers
        self.plan = plan
        self.at = at

    def get(self, name: str, window: timedelta, pair: Pair) -> Any:
        return self.answers[_key(self.r, name, window)].get(pair)

    # -- per condition: the fields of one side over one window --
    def accuracy(self, window: timedelta, pair: Pair) -> dict[str, Any]:
        evaluated = self.get("predictions_evaluated", window, pair)
        correct = self.get("predictions_correct", window, pair)
        if evaluated is not None and correct is not None:
            # increase() extrapolates each counter on its own: keep correct <= evaluated.
            correct = min(correct, evaluated)
        return {"predictions_evaluated": evaluated, "predictions_correct": correct}

    def latency(self, window: timedelta, pair: Pair) -> dict[str, Any]:
        values = {
            "mean": self.get("latency_mean_ms", window, pair), "p95": self.get("latency_p95_ms", window, pair),
            "p99": self.get("latency_p99_ms", window, pair), "count": self.get("latency_count", window, pair),
        }
        return {"latency_ms": values if any(v is not None for v in values.values()) else None}

    def error_rate(self, window: timedelta, pair: Pair) -> dict[str, Any]:
        return {"requests": self.get("requests", window, pair),
                "errors": _error_counts(self.get("errors", window, pair))}

    def confidence(self, window: timedelta, pair: Pair) -> dict[str, Any]:
        buckets = self.get("confidence", window, pair)
        hist = promql.confidence_histogram(buckets) if buckets else None
        return {"confidence": {"le": hist.le, "counts": hist.counts} if hist else None}

    def cache(self, window: timedelta, pair: Pair) -> dict[str, Any]:
        results = self.get("cache_requests", window, pair)
        hits = misses = None
        if results:
            # A server exports the result it has seen; the other one is 0, not unknown.
            hits, misses = results.get("hit") or 0.0, results.get("miss") or 0.0
        values = {"hits": hits, "misses": misses,
                  "evictions_per_minute": self.get("cache_evictions_per_minute", window, pair),
                  "lookup_ms": self.get("cache_lookup_ms", window, pair)}
        return {"cache": values if any(v is not None for v in values.values()) else None}

    def throughput(self, window: timedelta, pair: Pair) -> dict[str, Any]:
        return {"rps": self.get("rps", window, pair)}

    FILL: dict[str, str] = {
        ConditionName.ACCURACY.value: "accuracy", ConditionName.LATENCY.value: "latency",
        ConditionName.CONFIDENCE_DRIFT.value: "confidence", ConditionName.ERROR_RATE.value: "error_rate",
        ConditionName.CACHE.value: "cache", ConditionName.THROUGHPUT.value: "throughput",
    }

    def stable_window(self, condition: str, window: timedelta) -> timedelta:
        """SPEC §3 "The stable's side": same window when it holds the minimum, else baseline."""
        if condition in STABLE_BASELINE_ONLY:
            return self.r.baseline_window
        counted = STABLE_SAMPLES.get(condition)
        if counted is None:
            return window
        samples = self.get(counted, window, (self.r.namespace, self.r.stable))
        if samples is not None and samples >= self.r.minimum(condition):
            return window
        return self.r.baseline_window

    def snapshot(self) -> Snapshot:
        r = self.r
        canary_pair, stable_pair = (r.namespace, r.canary), (r.namespace, r.stable)
        canary: dict[str, Any] = {}
        stable: dict[str, Any] = {}
        windows: dict[str, float] = {}
        for condition, window in r.windows.items():
            windows[condition] = float(_seconds(window))
            fill = self.FILL.get(condition)
            if fill is None:
                continue
            canary.update(getattr(self, fill)(window, canary_pair))
            stable.update(getattr(self, fill)(self.stable_window(condition, window), stable_pair))
        if self.plan.series_names(r):
            assert r.series_window is not None
            windows[ConditionName.ANOMALY.value] = float(_seconds(r.series_window))
            canary["series"] = self.series(canary_pair)
        return Snapshot.model_validate(_without_none({
            "version": 1, "at": self.at, "canary": canary, "stable": stable, "windows": windows,
        }))

    def series(self, pair: Pair) -> dict[str, list[float | None]] | None:
        names = self.plan.series_names(self.r)
        if not names:
            return None
        r = self.r
        assert r.series_window is not None and r.series_step is not None
        grid = _series_grid(self.at, _seconds(r.series_window), _seconds(r.series_step))
        out: dict[str, list[float | None]] = {}
        for name in names:
            points = self.answers[self.plan.series_key(r, name)].get(pair)
            if points:
                out[promql.SERIES_QUERIES[name]] = promql.series_points(points, grid)
        return out or None


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    """Absent rather than null: both mean "no data" in Snapshot v1, and absence is the
    form every validator accepts (lists keep their None points: gaps in a series)."""
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def _error_counts(by_category: Mapping[str, float | None] | None) -> dict[str, float] | None:
    """Categories the server exports; the contract's others are 0, unknown ones go to 'other'.

    None when the deployment exports no error series at all (we cannot tell "no errors"
    from "no error metric": servers should initialise every category at 0)."""
    if not by_category:
        return None
    counts = {c: 0.0 for c in ERROR_CATEGORIES}
    for category, value in by_category.items():
        target = category if category in counts else "other"
        counts[target] += value or 0.0
    return counts


def _range_bounds(at: datetime, range_s: int) -> tuple[datetime, datetime]:
    return at - timedelta(seconds=range_s), at


def _series_grid(at: datetime, range_s: int, step_s: int) -> list[float]:
    """The timestamps Prometheus evaluates a range query at (the client rounds to seconds)."""
    start_dt, end_dt = _range_bounds(at, range_s)
    start, end = round(start_dt.timestamp()), round(end_dt.timestamp())
    return [float(start + k * step_s) for k in range(int((end - start) // step_s) + 1)]


# ---------------------------------------------------------------------------------- source


class _TransportDown(MetricsUnavailable):
    """Prometheus itself failed (connection, timeout, 5xx): the rest of the batch is skipped."""


class PrometheusMetricsSource:
    """Batched Prometheus queries -> Snapshot v1 per rollout. One instance per Prometheus URL."""

    def __init__(
        self,
        url: str,
        *,
        query_timeout: float = 5.0,
        max_concurrency: int = 8,
        min_rate_window: timedelta = timedelta(seconds=60),
        long_window_cache_ttl: timedelta | None = timedelta(seconds=60),
        long_window: timedelta = timedelta(hours=1),
        on_query: QueryHook | None = None,
        verify_tls: bool = True,
        headers: Mapping[str, str] | None = None,
        client: PrometheusConnect | None = None,
        bundle: bool = True,
    ) -> None:
        """
        query_timeout: seconds one query may take (Prometheus' ``timeout`` parameter, the
            HTTP timeout, and an asyncio deadline); a batch takes at most about this long
            when Prometheus is down (the first transport failure skips the rest).
        min_rate_window: shortest rate window of an anomaly-series point (≥ 4 scrape intervals).
        long_window_cache_ttl: answers of queries over windows ≥ ``long_window`` (the 24 h
            baseline) are reused for this long, measured on the batches' ``at`` — a 24 h
            window hardly moves in a minute, and the 1 s fast path would otherwise re-read it
            every second. None disables the cache.
        on_query: ``on_query(path, seconds, ok)`` once per query sent (operator metrics).
        bundle: send the batch's default-template instant queries as one query (see the
            module docstring); False sends one query per template and window.
        """
        self.bundle = bundle
        self.url = url.rstrip("/")
        self.query_timeout = float(query_timeout)
        self.min_rate_window = min_rate_window
        self.on_query = on_query
        self._cache_ttl = long_window_cache_ttl
        self._long_window_s = _seconds(long_window)
        self._cache: dict[str, tuple[datetime, Any]] = {}
        self._client = client or PrometheusConnect(
            url=self.url, disable_ssl=not verify_tls, headers=dict(headers) if headers else None,
            retry=Retry(total=0, raise_on_status=False),  # our tick is the retry; never stall a batch
        )
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="prometheus")
        self._max_concurrency = max_concurrency
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # ---- the one public operation --------------------------------------------------
    async def snapshots(self, requests: Sequence[SnapshotRequest], at: datetime,
                        *, path: str = "tick") -> dict[str, Snapshot | MetricsUnavailable]:
        """One snapshot (or the reason there is none) per request key. Never raises."""
        try:
            return await self._snapshots(requests, at, path)
        except OperatorBug:
            raise
        except Exception as exc:  # a defect of ours, not Prometheus being unavailable
            raise OperatorBug(f"building snapshots from {self.url} failed: {type(exc).__name__}: {exc}") from exc

    async def _snapshots(self, requests: Sequence[SnapshotRequest], at: datetime,
                         path: str) -> dict[str, Snapshot | MetricsUnavailable]:
        if not requests:
            return {}
        plan = _Plan(requests, self.min_rate_window)
        down: list[_TransportDown] = []
        planned = plan.queries()
        custom_calls = [(r, i, c) for r in requests for i, c in enumerate(r.custom)]
        answers: dict[QueryKey, Any] = {}
        failures: dict[QueryKey, BaseException] = {}
        bundled: list[PlannedQuery] = []
        single: list[PlannedQuery] = []
        for q in planned:
            hit = self._cached(q, at)
            if hit is not None:
                answers[q.key] = hit[1]
            elif self.bundle and not q.key.is_range and q.key.template == promql.DEFAULT_QUERIES.get(q.key.name):
                bundled.append(q)
            else:
                single.append(q)
        bundles = _chunks(bundled, MAX_BUNDLE_CHARS)

        results = await asyncio.gather(
            *(self._answer_bundle(b, at, path, down) for b in bundles),
            *(self._answer(q, at, path, down) for q in single),
            *(self._custom(r, i, c, at, path, down) for r, i, c in custom_calls),
            return_exceptions=True,
        )
        for b, res in zip(bundles, results[: len(bundles)]):
            for q in b:
                if isinstance(res, BaseException):
                    failures[q.key] = res
                else:
                    answers[q.key] = res[q.key]
        rest = results[len(bundles):]
        for q, res in zip(single, rest[: len(single)]):
            if isinstance(res, BaseException):
                failures[q.key] = res
            else:
                answers[q.key] = res
        custom: dict[str, dict[str, Any]] = {}
        custom_failures: dict[str, BaseException] = {}
        for (r, _, c), res in zip(custom_calls, rest[len(single):]):
            if isinstance(res, BaseException):
                custom_failures.setdefault(r.key, res)
            else:
                custom.setdefault(r.key, {})[c.name] = res

        out: dict[str, Snapshot | MetricsUnavailable] = {}
        for r in requests:
            failed = next((failures[k] for k in plan.needs[r.key] if k in failures), None) or custom_failures.get(r.key)
            if failed is not None:
                if not isinstance(failed, MetricsUnavailable):  # the client's errors are classified in _run
                    raise OperatorBug(f"query for {r.key} failed: {type(failed).__name__}: {failed}") from failed
                out[r.key] = MetricsUnavailable(str(failed))
                continue
            try:
                snap = _Assembler(r, answers, plan, at).snapshot()
                if r.key in custom:
                    snap = snap.model_copy(update={"custom": Snapshot.model_validate(
                        {"at": at, "custom": _without_none(custom[r.key])}).custom})
                out[r.key] = snap
            except (MetricsUnavailable, ValidationError) as exc:  # an answer that does not fit the snapshot format
                log.warning("snapshot for %s: %s", r.key, exc)
                out[r.key] = MetricsUnavailable(f"Prometheus {self.url}: answer for {r.key} unusable: {exc}")
        return out

    # ---- queries ------------------------------------------------------------------
    def _cacheable(self, q: PlannedQuery) -> bool:
        return self._cache_ttl is not None and not q.key.is_range and q.key.window_s >= self._long_window_s

    def _cached(self, q: PlannedQuery, at: datetime) -> tuple[datetime, Any] | None:
        if not self._cacheable(q):
            return None
        hit = self._cache.get(q.promql)
        if hit is not None and timedelta(0) <= at - hit[0] <= self._cache_ttl:  # type: ignore[operator]
            return hit
        return None

    def _remember(self, q: PlannedQuery, at: datetime, parsed: Any) -> None:
        if self._cacheable(q):
            self._cache[q.promql] = (at, parsed)
            self._expire(at)

    async def _answer_bundle(self, qs: list[PlannedQuery], at: datetime, path: str,
                             down: list[_TransportDown]) -> dict[QueryKey, Answer]:
        """Several instant queries as one (one consistent read); their answers by key.

        A refused bundle (a PromQL error Prometheus names) is retried query by query, so
        the error lands on the queries — and rollouts — it belongs to.
        """
        if len(qs) == 1:
            return {qs[0].key: await self._answer(qs[0], at, path, down)}
        text = " or ".join(f'label_replace({q.promql}, "{BUNDLE_LABEL}", "{i}", "", "")' for i, q in enumerate(qs))
        try:
            raw = await self._run("bundle", path, down, lambda: self._client.custom_query(
                text, params={"time": f"{at.timestamp():.3f}", "timeout": f"{self.query_timeout:g}s"},
                timeout=self.query_timeout))
        except _TransportDown:
            raise
        except MetricsUnavailable:
            answers = await asyncio.gather(*(self._answer(q, at, path, down) for q in qs), return_exceptions=True)
            out: dict[QueryKey, Answer] = {}
            for q, a in zip(qs, answers):
                if isinstance(a, BaseException):
                    raise a
                out[q.key] = a
            return out
        if not isinstance(raw, list):
            raise MetricsUnavailable(f"bundled query: unexpected answer {type(raw).__name__} (not a vector)")
        parts: list[list[Any]] = [[] for _ in qs]
        for row in raw:
            metric = dict(row.get("metric") or {})
            index = metric.pop(BUNDLE_LABEL, None)
            if index is not None and index.isdigit() and int(index) < len(qs):
                parts[int(index)].append({**row, "metric": metric})
        out = {}
        for q, rows in zip(qs, parts):
            parsed = _parse(q.key, rows)
            self._remember(q, at, parsed)
            out[q.key] = parsed
        return out

    async def _answer(self, q: PlannedQuery, at: datetime, path: str, down: list[_TransportDown]) -> Answer:
        hit = self._cached(q, at)
        if hit is not None:
            return hit[1]
        if q.key.is_range:
            assert q.key.range_s is not None and q.key.step_s is not None
            start, end = _range_bounds(at, q.key.range_s)
            raw = await self._run(q.key.name, path, down, lambda: self._client.custom_query_range(
                q.promql, start_time=start, end_time=end, step=f"{q.key.step_s}s",
                params={"timeout": f"{self.query_timeout:g}s"}, timeout=self.query_timeout))
        else:
            raw = await self._run(q.key.name, path, down, lambda: self._client.custom_query(
                q.promql, params={"time": f"{at.timestamp():.3f}", "timeout": f"{self.query_timeout:g}s"},
                timeout=self.query_timeout))
        parsed = _parse(q.key, raw)
        self._remember(q, at, parsed)
        return parsed

    def _expire(self, at: datetime) -> None:
        assert self._cache_ttl is not None
        for text in [t for t, (when, _) in self._cache.items() if not timedelta(0) <= at - when <= self._cache_ttl]:
            del self._cache[text]

    async def _custom(self, r: SnapshotRequest, index: int, c: CustomCondition, at: datetime, path: str,
                      down: list[_TransportDown]) -> dict[str, float | None]:
        """A custom condition: per-rollout PromQL (not batched: it is the user's own text)."""
        out: dict[str, float | None] = {"value": None, "samples": None}
        for field_name, query in (("query", c.query), ("minSamplesQuery", c.min_samples_query)):
            if query is None:
                continue
            text = promql.render_custom(query, r.namespace, r.stable, r.canary)
            where = f"spec.analysis.custom[{index}].{field_name} ({c.name})"
            try:
                raw = await self._run(f"custom:{c.name}", path, down, lambda text=text: self._client.custom_query(
                    text, params={"time": f"{at.timestamp():.3f}", "timeout": f"{self.query_timeout:g}s"},
                    timeout=self.query_timeout))
            except _TransportDown:
                raise
            except MetricsUnavailable as exc:
                raise MetricsUnavailable(f"{where}: {exc}") from None
            out["value" if field_name == "query" else "samples"] = _single_value(raw, where)
        return out

    def _semaphore(self) -> asyncio.Semaphore:
        """The concurrency limit of the running loop (a semaphore is bound to one loop;
        tests and CLIs may run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self._max_concurrency))
        return self._slots[1]

    def _classify(self, name: str, exc: BaseException) -> MetricsUnavailable:
        """A client exception as the error the core sees; _TransportDown when Prometheus
        itself is down (connection, timeout, HTTP 5xx) rather than one query refused."""
        timed_out = f"Prometheus {self.url}: query {name} timed out after {self.query_timeout:g}s"
        if isinstance(exc, (asyncio.TimeoutError, requests.Timeout)):
            return _TransportDown(timed_out)
        if isinstance(exc, requests.ConnectionError):
            reason = _connection_reason(exc)
            if isinstance(reason, ReadTimeoutError):  # urllib3 wraps it when retries are off
                return _TransportDown(timed_out)
            return _TransportDown(f"Prometheus {self.url} unreachable: {_short(_clean(reason))}")
        if isinstance(exc, PrometheusApiClientException):
            text = _api_error(exc)
            if str(exc).startswith("HTTP Status Code 5"):
                return _TransportDown(f"Prometheus {self.url}: query {name}: {text}")
            return MetricsUnavailable(f"Prometheus {self.url}: query {name} refused: {text}")
        if isinstance(exc, MetricsUnavailable):
            return exc
        return MetricsUnavailable(f"Prometheus {self.url}: query {name} failed: {type(exc).__name__}: {_short(exc)}")

    async def _run(self, name: str, path: str, down: list[_TransportDown], call: Callable[[], Any]) -> Any:
        """Run one blocking query in the pool; translate every failure to MetricsUnavailable."""
        async with self._semaphore():
            if down:  # Prometheus already failed in this batch: do not queue behind a dead server
                raise down[0]
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            ok = False
            try:
                result = await asyncio.wait_for(loop.run_in_executor(self._executor, call),
                                                timeout=self.query_timeout + 0.5)
                ok = True
                return result
            except Exception as exc:  # noqa: BLE001 - every failure becomes data, see _classify
                error = self._classify(name, exc)
                if isinstance(error, _TransportDown):
                    down.append(error)
                raise error from None
            finally:
                if self.on_query is not None:
                    try:
                        self.on_query(path, time.monotonic() - t0, ok)
                    except Exception:  # noqa: BLE001 - accounting must never break a batch
                        log.exception("on_query hook failed")


def _chunks(queries: list[PlannedQuery], max_chars: int) -> list[list[PlannedQuery]]:
    """Bundles of at most ``max_chars`` of PromQL (queries stay in plan order: a
    condition's metrics sort together, so a split rarely separates a ratio's halves)."""
    out: list[list[PlannedQuery]] = []
    size = 0
    for q in queries:
        if not out or size + len(q.promql) > max_chars:
            out.append([])
            size = 0
        out[-1].append(q)
        size += len(q.promql) + 60
    return out


def _connection_reason(exc: BaseException) -> BaseException:
    """The urllib3 error under a requests.ConnectionError (MaxRetryError.reason), if any."""
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    reason = getattr(inner, "reason", None)
    return reason if isinstance(reason, BaseException) else inner


def _api_error(exc: PrometheusApiClientException) -> str:
    """'HTTP 400: 1:61: parse error: …' from the client's "HTTP Status Code 400 (b'{json}')"."""
    text = str(exc)
    match = re.match(r"HTTP Status Code (\d+) \((.*)\)$", text, re.S)
    if not match:
        return _short(text)
    code, body = match.groups()
    detail = body
    try:
        payload = json.loads(ast.literal_eval(body))
        detail = payload.get("error") or payload.get("errorType") or body
    except (ValueError, SyntaxError, TypeError, AttributeError):
        pass
    return _short(f"HTTP {code}: {detail}")


def _clean(exc: BaseException) -> str:
    """'Failed to establish a new connection: [Errno 111] Connection refused', without the
    object reprs and URLs urllib3 puts around it."""
    text = str(exc)
    if "object at 0x" in text and ": " in text:
        text = text.split(": ", 1)[1]
    return text


def _short(exc: BaseException | str, limit: int = 300) -> str:
    text = str(exc).replace("\\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _single_value(raw: Any, where: str) -> float | None:
    """The one value of a custom query: a scalar or a one-element vector.

    Several series are ambiguous (which one is "the canary's"?): the value is None (no
    data) and a warning names the query; aggregate it (``max(...)``, ``sum(...)``)."""
    if isinstance(raw, list) and len(raw) == 2 and not isinstance(raw[0], dict):
        return promql.sample_value(raw[1])  # resultType scalar
    if not isinstance(raw, list) or not raw:
        return None
    if len(raw) > 1:
        log.warning("%s returned %d series; expected one value (aggregate the query)", where, len(raw))
        return None
    value = raw[0].get("value") or [None, None]
    return promql.sample_value(value[1])


# ------------------------------------------------------------------------------- batching


class BatchingMetricsSource:
    """Coalesces concurrent per-rollout ``snapshot`` calls into one ``snapshots`` batch.

    The operator runs one task per rollout and ticks them on the interval grid, so the
    ticks of many rollouts arrive within milliseconds; the first caller opens a batch,
    callers within ``window`` seconds join it, and one ``snapshots()`` call serves them
    all. The batch's ``at`` is the latest ``at`` among its callers. Two calls for the same
    rollout key in one batch share one query: the later request wins.
    """

    def __init__(self, source: PrometheusMetricsSource, *, window: float = 0.05, path: str = "tick") -> None:
        self.source = source
        self.window = window
        self.path = path
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
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later(), name="prometheus-batch")
        return await fut

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.window)
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
