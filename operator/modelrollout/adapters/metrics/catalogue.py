"""What each risk condition reads from Prometheus, and how the answers become snapshot fields.

One entry per built-in condition of ``core.conditions.CONDITIONS`` (the authoritative
list; a condition without an entry, or an entry without a condition, fails at import),
holding everything the adapter knows about that condition:

* ``queries``: the instant-query templates (names in ``promql.DEFAULT_QUERIES``) read
  for both sides over the condition's window;
* ``stable``: which window the stable's side is read over (docs/design.md#the-stables-side);
* ``fill``: how one side's answers become ``SideMetrics`` fields.

Thresholds stay in the core; the only number this side uses is a condition's minimum
samples, which decides the stable's window (``StableSide.SAMPLES``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ...api.thresholds import ConditionName
from ...core.conditions import CONDITIONS
from ...core.snapshot import ERROR_CATEGORIES
from . import promql

Read = Callable[[str], Any]
"""One side's parsed answer to a template (by name) over the window being filled."""

Fill = Callable[[Read], dict[str, Any]]
"""One side's ``SideMetrics`` fields of a condition, from its answers."""


class StableSide(StrEnum):
    """Which window the stable's side of a condition is read over."""

    CANARY_WINDOW = "canaryWindow"
    """The canary's window only: the cache condition has no stable comparison, and
    throughput's service-wide check adds the stable's *current* RPS to the canary's (a
    24 h average would double-count at 100 %)."""
    SAMPLES = "samples"
    """The canary's window when the stable has the condition's minimum samples there
    (``MetricEntry.samples`` counts them), else the baseline window."""
    BASELINE = "baseline"
    """Always the baseline window: drift compares with the stable over the baseline window (docs/design.md#the-stables-side)."""


@dataclass(frozen=True, slots=True)
class MetricEntry:
    """Everything the metrics adapter knows about one condition."""

    queries: tuple[str, ...]
    stable: StableSide = StableSide.CANARY_WINDOW
    samples: str | None = None
    """With ``StableSide.SAMPLES``: the template counting the stable's samples."""
    fill: Fill | None = None
    """None: the condition's fields come from elsewhere (anomaly: the range-query series)."""
    tick_queries: tuple[str, ...] = ()
    """Read by the tick only, never by the fast path (whose cost must not grow with a
    histogram's buckets) and never exactly; ``fill`` reads None for them there."""

    def __post_init__(self) -> None:
        unknown = [q for q in (*self.queries, *self.tick_queries, self.samples)
                   if q is not None and q not in promql.DEFAULT_QUERIES]
        if unknown:
            raise ValueError(f"unknown query template(s) {unknown}")
        if (self.stable == StableSide.SAMPLES) != (self.samples is not None):
            raise ValueError("a samples template goes with StableSide.SAMPLES, and only with it")

    @property
    def reads_stable_baseline(self) -> bool:
        """Whether the stable's side may be read over the baseline window (so it is queried there)."""
        return self.stable != StableSide.CANARY_WINDOW


# ------------------------------------------------------------------ one side's fields


def _accuracy(read: Read) -> dict[str, Any]:
    evaluated = read("predictions_evaluated")
    correct = read("predictions_correct")
    if evaluated is not None and correct is not None:
        # increase() extrapolates each counter on its own: keep correct <= evaluated.
        correct = min(correct, evaluated)
    return {"predictions_evaluated": evaluated, "predictions_correct": correct}


def _latency(read: Read) -> dict[str, Any]:
    values: dict[str, Any] = {
        "mean": read("latency_mean_ms"), "p95": read("latency_p95_ms"),
        "p99": read("latency_p99_ms"), "count": read("latency_count"),
    }
    if not any(v is not None for v in values.values()):
        return {"latency_ms": None}
    return {"latency_ms": _with_buckets(values, "buckets", read("latency_buckets"))}


def _with_buckets(values: dict[str, Any], key: str, buckets: Any) -> dict[str, Any]:
    """``values`` with a duration histogram's finite buckets in ms under ``key``, when read
    (the tick's significance gates use them; the fast path reads none)."""
    hist = promql.latency_histogram(buckets) if buckets else None
    if hist is not None:
        values[key] = {"le": hist.le, "counts": hist.counts}
    return values


def _error_rate(read: Read) -> dict[str, Any]:
    return {"requests": read("requests"), "errors": error_counts(read("errors"))}


def _confidence(read: Read) -> dict[str, Any]:
    buckets = read("confidence")
    hist = promql.confidence_histogram(buckets) if buckets else None
    return {"confidence": {"le": hist.le, "counts": hist.counts} if hist else None}


def _cache(read: Read) -> dict[str, Any]:
    results = read("cache_requests")
    hits = misses = None
    if results:
        # A server exports the result it has seen; the other one is 0, not unknown.
        hits, misses = results.get("hit") or 0.0, results.get("miss") or 0.0
    values: dict[str, Any] = {"hits": hits, "misses": misses,
                              "evictions_per_minute": read("cache_evictions_per_minute"),
                              "lookup_ms": read("cache_lookup_ms")}
    if not any(v is not None for v in values.values()):
        return {"cache": None}
    return {"cache": _with_buckets(values, "lookup_buckets", read("cache_lookup_buckets"))}


def _throughput(read: Read) -> dict[str, Any]:
    return {"rps": read("rps")}


def error_counts(by_category: Mapping[str, float | None] | None) -> dict[str, float] | None:
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


# ------------------------------------------------------------------ the catalogue

_ENTRIES: dict[ConditionName, MetricEntry] = {
    ConditionName.ACCURACY: MetricEntry(("predictions_evaluated", "predictions_correct"),
                                        StableSide.SAMPLES, "predictions_evaluated", _accuracy),
    ConditionName.LATENCY: MetricEntry(("latency_mean_ms", "latency_p95_ms", "latency_p99_ms", "latency_count"),
                                       StableSide.SAMPLES, "latency_count", _latency,
                                       tick_queries=("latency_buckets",)),
    ConditionName.CONFIDENCE_DRIFT: MetricEntry(("confidence",), StableSide.BASELINE, fill=_confidence),
    ConditionName.ERROR_RATE: MetricEntry(("requests", "errors"), StableSide.SAMPLES, "requests", _error_rate),
    ConditionName.CACHE: MetricEntry(("cache_requests", "cache_evictions_per_minute", "cache_lookup_ms"),
                                     fill=_cache, tick_queries=("cache_lookup_buckets",)),
    ConditionName.THROUGHPUT: MetricEntry(("rps",), fill=_throughput),
    ConditionName.ANOMALY: MetricEntry(()),  # range queries: promql.SERIES_QUERIES
}


def _catalogue() -> dict[str, MetricEntry]:
    """The entries in ``core.conditions.CONDITIONS`` order, keyed by condition name; every
    condition has exactly one."""
    missing = [c.name.value for c in CONDITIONS if c.name not in _ENTRIES]
    extra = [n.value for n in _ENTRIES if n not in {c.name for c in CONDITIONS}]
    if missing or extra:
        raise RuntimeError(f"metrics catalogue out of step with core.conditions: missing {missing}, extra {extra}")
    return {c.name.value: _ENTRIES[c.name] for c in CONDITIONS}


CATALOGUE: dict[str, MetricEntry] = _catalogue()
"""Condition name (a ``SnapshotRequest.windows`` key) -> what it reads from Prometheus."""


__all__ = ["CATALOGUE", "Fill", "MetricEntry", "Read", "StableSide", "error_counts"]
