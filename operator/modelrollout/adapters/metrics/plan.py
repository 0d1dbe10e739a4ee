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

from ...api.thresholds import ConditionName
from . import promql
from .catalogue import CATALOGUE, StableSide
from .promql import Pair
from .request import SnapshotRequest


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
    exact: bool = False         # exact counter differences over the window (promql.EXACT_QUERIES)

    @property
    def is_range(self) -> bool:
        return self.range_s is not None


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    key: QueryKey
    promql: str


def whole_seconds(window: timedelta) -> int:
    """A window as PromQL receives it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(window.total_seconds() - 1e-9))


def query_key(request: SnapshotRequest, name: str, window: timedelta, *, range_s: int | None = None,
              step_s: int | None = None, exact: bool = False) -> QueryKey:
    """The query reading template ``name`` over ``window``; ``exact``: its exact form
    (``promql.EXACT_QUERIES``), shared by every request with the same window."""
    template = promql.EXACT_QUERIES[name] if exact else request.templates[name]
    return QueryKey(name, template, whole_seconds(window), request.labels.namespace, request.labels.deployment,
                    range_s, step_s, exact)


class QueryPlan:
    """Which queries a batch needs, and which of them each request depends on."""

    def __init__(self, requests: Sequence[SnapshotRequest], min_rate_window: timedelta) -> None:
        self.pairs: dict[QueryKey, set[Pair]] = {}
        self.needs: dict[str, set[QueryKey]] = {}
        self.min_rate_window = min_rate_window
        for r in requests:
            needs = self.needs.setdefault(r.key, set())
            canary, stable = (r.namespace, r.canary), (r.namespace, r.stable)
            for condition, window in r.windows.items():
                entry = CATALOGUE[condition]
                exact = condition in r.exact
                for metric in entry.queries:
                    # The canary's window; the stable is read there too unless drift.
                    same = [canary] if entry.stable == StableSide.BASELINE else [canary, stable]
                    self._add(needs, query_key(r, metric, window, exact=exact), same)
                    if entry.reads_stable_baseline:
                        self._add(needs, query_key(r, metric, r.baseline_window), [stable])
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
        return query_key(r, name, rate_window, range_s=whole_seconds(r.series_window),
                         step_s=whole_seconds(r.series_step))

    def queries(self) -> list[PlannedQuery]:
        out = []
        for key, pairs in sorted(self.pairs.items(), key=lambda kv: (kv[0].name, kv[0].window_s, kv[0].range_s or 0,
                                                                      kv[0].exact, kv[0].template,
                                                                      kv[0].namespace_label,
                                                                      kv[0].deployment_label)):
            selector = promql.build_selector(key.namespace_label, key.deployment_label, pairs)
            text = promql.render(key.template, selector=selector, window=timedelta(seconds=key.window_s),
                                 by=f"{key.namespace_label}, {key.deployment_label}")
            out.append(PlannedQuery(key, text))
        return out


def plan_queries(requests: Sequence[SnapshotRequest],
                 min_rate_window: timedelta = timedelta(seconds=60)) -> list[PlannedQuery]:
    """The batched queries (custom conditions aside) that ``snapshots(requests)`` sends."""
    return QueryPlan(requests, min_rate_window).queries()


__all__ = ["PlannedQuery", "QueryKey", "QueryPlan", "plan_queries", "query_key", "whole_seconds"]
