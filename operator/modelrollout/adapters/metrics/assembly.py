"""Snapshot assembly: one batch's parsed answers -> one Snapshot v1 per rollout.

Pure (no I/O): the transport hands over every answer of the batch by ``QueryKey``, and
this module picks each rollout's values out of them — its canary's and its stable's
pairs, over the windows its request names — and fills the snapshot through the
catalogue (``catalogue.py``), so a condition's fields are defined in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from ...api.thresholds import ConditionName
from ...core.snapshot import Snapshot
from ...errors import MetricsUnavailable
from . import promql
from .catalogue import CATALOGUE, StableSide
from .plan import QueryKey, QueryPlan, whole_seconds
from .promql import Pair
from .request import SnapshotRequest

log = logging.getLogger(__name__)

TICK_ONLY: frozenset[str] = frozenset(q for entry in CATALOGUE.values() for q in entry.tick_queries)

Answer = Any  # parsed per template kind; see parse_answer


def parse_answer(key: QueryKey, result: Any) -> Answer:
    """A query's raw answer, parsed for the kind of template it answers."""
    if not isinstance(result, list):
        raise MetricsUnavailable(f"query {key.name}: unexpected answer {type(result).__name__} (not a vector)")
    if key.is_range:
        extra = promql.EXTRA_LABEL.get(key.name)
        if extra:
            return promql.parse_matrix_labelled(result, key.namespace_label, key.deployment_label, extra)
        return promql.parse_matrix(result, key.namespace_label, key.deployment_label)
    if key.name == "model_digests":
        return promql.parse_pod_digests(result, key.namespace_label, key.deployment_label)
    extra = promql.EXTRA_LABEL.get(key.name)
    if extra:
        return promql.parse_labelled(result, key.namespace_label, key.deployment_label, extra)
    return promql.parse_vector(result, key.namespace_label, key.deployment_label)


class SnapshotAssembler:
    """Builds one rollout's snapshot from the batch's parsed answers."""

    def __init__(self, request: SnapshotRequest, answers: Mapping[QueryKey, Answer], plan: QueryPlan,
                 at: datetime, read_at: Mapping[QueryKey, datetime] | None = None) -> None:
        """``read_at``: range answers read at another instant than ``at`` (an earlier batch's,
        reused: ``range_reuse.py``); their points lie on that instant's grid."""
        self.r = request
        self.answers = answers
        self.plan = plan
        self.at = at
        self.read_at = read_at or {}

    def get(self, name: str, window: timedelta, pair: Pair, exact: bool = False) -> Any:
        return self.answers[self.plan.key(self.r, name, window, exact=exact)].get(pair)

    def stable_window(self, condition: str, window: timedelta) -> tuple[timedelta, bool]:
        """docs/design.md#the-stables-side: same window (read the same way as the canary's)
        when it holds the minimum, else baseline. With whether it is read exactly."""
        entry = CATALOGUE[condition]
        if entry.stable == StableSide.BASELINE:
            return self.r.baseline_window, False
        exact = condition in self.r.exact
        if entry.samples is None:
            return window, exact
        samples = self.get(entry.samples, window, (self.r.namespace, self.r.stable), exact)
        if samples is not None and samples >= self.r.minimum(condition):
            return window, exact
        return self.r.baseline_window, False

    def snapshot(self) -> Snapshot:
        r = self.r
        canary_pair, stable_pair = (r.namespace, r.canary), (r.namespace, r.stable)
        canary: dict[str, Any] = {}
        stable: dict[str, Any] = {}
        windows: dict[str, float] = {}
        for condition, window in r.windows.items():
            windows[condition] = float(whole_seconds(window))
            fill = CATALOGUE[condition].fill
            if fill is None:
                continue
            canary.update(fill(self._reader(window, condition in r.exact, canary_pair)))
            stable.update(fill(self._reader(*self.stable_window(condition, window), stable_pair)))
        if self.plan.series_names(r):
            assert r.series_window is not None
            windows[ConditionName.ANOMALY.value] = float(whole_seconds(r.series_window))
            canary["series"] = self.series(canary_pair)
        if self.plan.interval_names(r):
            stable["intervals"] = self.intervals(stable_pair)
        if r.model_digest is not None:
            canary["model_digests"] = self.answers[self.plan.digests_key(r)].get(canary_pair)
        return Snapshot.model_validate(without_none({
            "version": 1, "at": self.at, "canary": canary, "stable": stable, "windows": windows,
        }))

    def _reader(self, window: timedelta, exact: bool, pair: Pair) -> Any:
        """One side's answers over one window, by template name (a catalogue ``Read``);
        None for a tick-only template in the fast path's request (not queried)."""
        def read(name: str) -> Any:
            if name in TICK_ONLY:
                return None if self.r.fast_path else self.get(name, window, pair)
            return self.get(name, window, pair, exact)
        return read

    def intervals(self, pair: Pair) -> dict[str, Any] | None:
        """The stable's counts per interval (docs/decisions.md#overdispersion), on the grid
        of the interval queries; None when Prometheus has none of them."""
        r = self.r
        step = whole_seconds(self.plan.interval_step(r))
        range_s = whole_seconds(self.plan.interval_range(r))
        out: dict[str, Any] = {}
        for name, key in promql.INTERVAL_QUERIES.items():
            query = self.plan.interval_key(r, name)
            points = self.answers[query].get(pair)
            if not points:
                continue
            grid = series_grid(self.read_at.get(query, self.at), range_s, step)
            if name in promql.EXTRA_LABEL:  # errors by category: each, and their total per interval
                categories = {c: promql.series_points(p, grid) for c, p in sorted(points.items())}
                out["error_categories"] = categories
                columns = zip(*categories.values())
                out[key] = [None if all(v is None for v in col) else sum(v or 0.0 for v in col) for col in columns]
            else:
                out[key] = promql.series_points(points, grid)
        if not out:
            return None
        out["seconds"] = float(step)
        return out

    def series(self, pair: Pair) -> dict[str, list[float | None]] | None:
        names = self.plan.series_names(self.r)
        if not names:
            return None
        r = self.r
        assert r.series_window is not None and r.series_step is not None
        out: dict[str, list[float | None]] = {}
        for name in names:
            query = self.plan.series_key(r, name)
            points = self.answers[query].get(pair)
            if points:
                grid = series_grid(self.read_at.get(query, self.at), whole_seconds(r.series_window),
                                   whole_seconds(r.series_step))
                out[promql.SERIES_QUERIES[name]] = promql.series_points(points, grid)
        return out or None


def without_none(data: dict[str, Any]) -> dict[str, Any]:
    """Absent rather than null: both mean "no data" in Snapshot v1, and absence is the
    form every validator accepts (lists keep their None points: gaps in a series)."""
    return {k: without_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def range_bounds(at: datetime, range_s: int) -> tuple[datetime, datetime]:
    return at - timedelta(seconds=range_s), at


def series_grid(at: datetime, range_s: int, step_s: int) -> list[float]:
    """The timestamps Prometheus evaluates a range query at (the client rounds to seconds)."""
    start_dt, end_dt = range_bounds(at, range_s)
    start, end = round(start_dt.timestamp()), round(end_dt.timestamp())
    return [float(start + k * step_s) for k in range(int((end - start) // step_s) + 1)]


def single_value(raw: Any, where: str) -> float | None:
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


__all__ = ["Answer", "SnapshotAssembler", "parse_answer", "range_bounds", "series_grid", "single_value",
           "without_none"]
