"""The query plan: which PromQL queries one batch of requests needs, and who needs each.

Requests that agree on a query's template, window and label names share it: a query
names no rollout, it selects every (namespace, deployment) pair of the batch that
needs it and groups ``by`` the label names, so the number of queries grows with
conditions and distinct windows, never with rollouts. Planning is pure (no I/O), so the
tests count and read the queries a batch would send.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import NamedTuple

from ...api.thresholds import ConditionName
from . import promql
from .catalogue import CATALOGUE, StableSide
from .promql import Pair
from .request import SnapshotRequest


class QueryKey(NamedTuple):
    """One PromQL query of a batch; requests that agree on all of it share the query.

    A named tuple rather than a dataclass: a batch of 1,000 rollouts builds and hashes
    about 50,000 of these per fast-path cycle, and a tuple's hash and equality run in C
    (measured: a third of the plan's and the assembly's time with a frozen dataclass).
    """

    name: str                  # template name (promql.DEFAULT_QUERIES)
    template: str
    window_s: int              # {window}: the counts' window, or a series point's rate window
    namespace_label: str
    deployment_label: str
    range_s: int | None = None  # range queries: how far back ...
    step_s: int | None = None   # ... and the resolution
    exact: bool = False         # exact counter differences over the window (promql.EXACT_QUERIES)

    @property
    def is_range(self) -> bool:
        return self.range_s is not None


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    key: QueryKey
    promql: str


@lru_cache(maxsize=1024)
def whole_seconds(window: timedelta) -> int:
    """A window as PromQL receives it: whole seconds, rounded up, at least 1 (cached: a
    handful of distinct windows, asked for tens of thousands of times per batch)."""
    return max(1, math.ceil(window.total_seconds() - 1e-9))


def query_key(request: SnapshotRequest, name: str, window: timedelta, *, range_s: int | None = None,
              step_s: int | None = None, exact: bool = False) -> QueryKey:
    """The query reading template ``name`` over ``window``; ``exact``: its exact form
    (``promql.EXACT_QUERIES``), shared by every request with the same window."""
    template = promql.EXACT_QUERIES[name] if exact else request.templates[name]
    return QueryKey(name, template, whole_seconds(window), request.labels.namespace, request.labels.deployment,
                    range_s, step_s, exact)


MODEL_DIGESTS_KEY_WINDOW = timedelta(seconds=1)
"""The key window of the instant ``model_digests`` query (its template has no ``{window}``)."""

MAX_INTERVAL_RANGE = timedelta(hours=6)
"""How far back the stable's counts per interval go at most (as the anomaly series)."""

Shape = tuple[object, ...]
"""What a request asks for, without its names: requests of one shape need the same queries."""


class QueryPlan:
    """Which queries a batch needs, and which of them each request depends on.

    Requests of the same shape (windows, exact conditions, label names, templates; in
    practice, rollouts sharing a profile) need the same queries, so their keys are
    worked out once per shape and each request only adds its pairs: at 1,000 rollouts
    planning one key at a time took 100 ms of every fast-path cycle.
    """

    def __init__(self, requests: Sequence[SnapshotRequest], min_rate_window: timedelta) -> None:
        self.pairs: dict[QueryKey, set[Pair]] = {}
        self.needs: dict[str, frozenset[QueryKey]] = {}
        self.min_rate_window = min_rate_window
        self._shapes: dict[str, Shape] = {}
        self._keys: dict[tuple[object, ...], QueryKey] = {}
        planned: dict[Shape, tuple[frozenset[QueryKey], list[tuple[QueryKey, str]]]] = {}
        for r in requests:
            shape = self._shapes[r.key] = shape_of(r)
            if shape not in planned:
                planned[shape] = self._plan_shape(r)
            needs, sides = planned[shape]
            self.needs[r.key] = needs
            canary, stable = (r.namespace, r.canary), (r.namespace, r.stable)
            for key, side in sides:
                pairs = self.pairs.setdefault(key, set())
                if side != "stable":
                    pairs.add(canary)
                if side != "canary":
                    pairs.add(stable)

    def _plan_shape(self, r: SnapshotRequest) -> tuple[frozenset[QueryKey], list[tuple[QueryKey, str]]]:
        """One shape's keys, each with the side(s) it reads: "both", "canary" or "stable"."""
        sides: list[tuple[QueryKey, str]] = []
        for condition, window in r.windows.items():
            entry = CATALOGUE[condition]
            exact = condition in r.exact
            tick_only = () if r.fast_path else entry.tick_queries
            for metric in (*entry.queries, *tick_only):
                # The canary's window; the stable is read there too unless drift.
                sides.append((self.key(r, metric, window, exact=exact and metric not in tick_only),
                              "canary" if entry.stable == StableSide.BASELINE else "both"))
                if entry.reads_stable_baseline:
                    sides.append((self.key(r, metric, r.baseline_window), "stable"))
        for name in self.series_names(r):
            sides.append((self.series_key(r, name), "canary"))
        for name in self.interval_names(r):
            sides.append((self.interval_key(r, name), "stable"))
        if r.model_digest is not None:
            sides.append((self.digests_key(r), "canary"))
        return frozenset(k for k, _ in sides), sides

    def digests_key(self, r: SnapshotRequest) -> QueryKey:
        """The query of the digests the canary's pods report (docs/integrity.md)."""
        return self.key(r, "model_digests", MODEL_DIGESTS_KEY_WINDOW)

    def key(self, r: SnapshotRequest, name: str, window: timedelta, *, exact: bool = False,
            range_s: int | None = None, step_s: int | None = None) -> QueryKey:
        """``query_key`` for a request of this plan, remembered per shape (the assembly asks
        for each key of each rollout again)."""
        shape = self._shapes.get(r.key) or shape_of(r)
        memo = (shape, name, window, exact, range_s, step_s)
        found = self._keys.get(memo)
        if found is None:
            found = self._keys[memo] = query_key(r, name, window, exact=exact, range_s=range_s, step_s=step_s)
        return found

    @staticmethod
    def series_names(r: SnapshotRequest) -> list[str]:
        if r.series_window is None or ConditionName.ANOMALY.value not in r.windows:
            return []
        return list(promql.SERIES_QUERIES)

    def series_key(self, r: SnapshotRequest, name: str) -> QueryKey:
        assert r.series_window is not None and r.series_step is not None
        rate_window = max(r.series_step, self.min_rate_window)
        return self.key(r, name, rate_window, range_s=whole_seconds(r.series_window),
                        step_s=whole_seconds(r.series_step))

    @staticmethod
    def interval_names(r: SnapshotRequest) -> list[str]:
        """The stable's per-interval counts, read by the tick and not by the fast path,
        which uses the dispersion the tick recorded (docs/decisions.md#overdispersion)."""
        if not r.interval_points:
            return []
        return list(promql.INTERVAL_QUERIES)

    def interval_step(self, r: SnapshotRequest) -> timedelta:
        """Each interval's length: the analysis interval, at least the shortest rate window
        (so that ``increase()`` has samples), and the step between points: no overlap."""
        assert r.interval_length is not None
        return max(r.interval_length, self.min_rate_window)

    def interval_range(self, r: SnapshotRequest) -> timedelta:
        """How far back the intervals go: ``interval_points`` of them, at most
        ``MAX_INTERVAL_RANGE`` (older traffic says little about today's)."""
        return min(self.interval_step(r) * r.interval_points, MAX_INTERVAL_RANGE)

    def interval_key(self, r: SnapshotRequest, name: str) -> QueryKey:
        step = self.interval_step(r)
        return self.key(r, name, step, range_s=whole_seconds(self.interval_range(r)), step_s=whole_seconds(step))

    def queries(self) -> list[PlannedQuery]:
        out = []
        selectors: dict[tuple[str, str, frozenset[Pair]], str] = {}  # most queries select the same pairs
        for key, pairs in sorted(self.pairs.items(), key=lambda kv: (kv[0].name, kv[0].window_s, kv[0].range_s or 0,
                                                                      kv[0].exact, kv[0].template,
                                                                      kv[0].namespace_label,
                                                                      kv[0].deployment_label)):
            out.append(PlannedQuery(key, render_query(key, frozenset(pairs), selectors)))
        return out


def render_query(key: QueryKey, pairs: frozenset[Pair],
                 selectors: dict[tuple[str, str, frozenset[Pair]], str] | None = None) -> str:
    """The PromQL of ``key`` selecting ``pairs``; ``selectors`` memoises the selector of
    each pair set (a batch's queries mostly select the same pairs)."""
    which = (key.namespace_label, key.deployment_label, pairs)
    selector = selectors.get(which) if selectors is not None else None
    if selector is None:
        selector = promql.build_selector(*which)
        if selectors is not None:
            selectors[which] = selector
    return promql.render(key.template, selector=selector, window=timedelta(seconds=key.window_s),
                         by=f"{key.namespace_label}, {key.deployment_label}")


def shape_of(r: SnapshotRequest) -> Shape:
    return (tuple(r.windows.items()), r.exact, r.labels.namespace, r.labels.deployment, r.baseline_window,
            r.series_window, r.series_step, r.interval_length, r.interval_points, tuple(sorted(r.queries.items())),
            r.model_digest is not None, r.fast_path)


def plan_queries(requests: Sequence[SnapshotRequest],
                 min_rate_window: timedelta = timedelta(seconds=60)) -> list[PlannedQuery]:
    """The batched queries (custom conditions aside) that ``snapshots(requests)`` sends."""
    return QueryPlan(requests, min_rate_window).queries()


__all__ = ["PlannedQuery", "QueryKey", "QueryPlan", "Shape", "plan_queries", "query_key", "render_query", "shape_of",
           "whole_seconds"]
