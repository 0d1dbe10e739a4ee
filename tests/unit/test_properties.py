"""Properties of the decision core that must hold for every snapshot (hypothesis).

* the score is always in [0, 1];
* making any single metric worse never lowers the score, and never turns a rollback
  into something else;
* a snapshot with any field a condition needs missing (absent or null) never advances
  or promotes, even when the step's duration has elapsed;
* same inputs, same output.

Snapshots are drawn around the healthy shape of ``factories`` (a 40k/2k/20 RPS service,
canary at 5/25/100 %) with every metric free to land anywhere plausible — healthy,
triggered or critical — so the properties are exercised on all sides of every bound.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modelrollout.api.models import DecisionAction, ModelRolloutStatus, Phase
from modelrollout.core.conditions import evaluate_all
from modelrollout.core.conditions.base import ConditionResult
from modelrollout.core.decision import Position, decide
from modelrollout.core.machine import evaluation_context, initial_status, step
from modelrollout.core.observations import MetricsObserved
from modelrollout.core.scoring import score_conditions
from modelrollout.core.snapshot import ERROR_CATEGORIES, load_snapshot

from .factories import LE, T0, make_spec

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC = make_spec()
NOW = T0 + timedelta(minutes=10)
WEIGHTS = (5, 25, 100)

# ------------------------------------------------------------------------ strategies

rates = st.floats(min_value=0.0, max_value=0.2, allow_nan=False)


@st.composite
def sides(draw: st.DrawFn, rps: float) -> dict[str, Any]:
    """One side of a snapshot with every metric drawn (counts consistent with each other)."""
    requests = float(max(1, round(rps * 300)))
    evaluated = float(draw(st.integers(min_value=1, max_value=max(1, int(rps * 90)))))
    accuracy = draw(st.floats(min_value=0.3, max_value=1.0))
    mean = draw(st.floats(min_value=0.5, max_value=6.0))
    p95 = mean * draw(st.floats(min_value=1.0, max_value=3.0))
    p99 = p95 * draw(st.floats(min_value=1.0, max_value=3.0))
    errors = {c: float(round(requests * draw(rates) / 4)) for c in ERROR_CATEGORIES}
    hit = draw(st.floats(min_value=0.8, max_value=1.0))
    a, b = draw(st.floats(min_value=1.5, max_value=12.0)), draw(st.floats(min_value=1.0, max_value=4.0))
    n_conf = float(max(1, round(rps * 900)))
    from scipy import stats as sps

    counts = [round(float(c) * n_conf) for c in sps.beta.cdf(LE, a, b)]
    counts[-1] = n_conf
    jitter = draw(st.lists(st.floats(min_value=-0.05, max_value=0.05), min_size=30, max_size=30))
    return {
        "requests": requests, "rps": rps * draw(st.floats(min_value=0.3, max_value=1.2)),
        "errors": errors,
        "latency_ms": {"mean": mean, "p95": p95, "p99": p99, "count": float(max(1, round(rps * 60)))},
        "predictions_evaluated": evaluated, "predictions_correct": float(round(evaluated * accuracy)),
        "confidence": {"le": LE, "counts": [float(c) for c in counts]},
        "cache": {"hits": float(round(requests * hit)), "misses": float(requests - round(requests * hit)),
                  "evictions_per_minute": draw(st.floats(min_value=0.0, max_value=0.5)),
                  "lookup_ms": draw(st.floats(min_value=0.1, max_value=15.0))},
        "series": {"latency_p95_ms": [p95 * (1 + j) for j in jitter],
                   "error_rate": [0.002 * (1 + j) for j in jitter[::-1]],
                   "rps": [rps * (1 + j / 5) for j in jitter]},
    }


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    total = draw(st.sampled_from([20.0, 2_000.0, 40_000.0]))
    weight = draw(st.sampled_from(WEIGHTS))
    canary = draw(sides(total * weight / 100))
    stable = draw(sides(total))  # the baseline-sized stable
    if weight == 100:
        stable["rps"] = 0.0
    data = {"version": 1, "at": NOW.isoformat(), "stable": stable, "canary": canary,
            "health": {"canary": {"oom_killed": 0, "crash_looping": 0, "unavailable_for_seconds": 0,
                                  "progress_deadline_exceeded": False}}}
    return data, weight


def status_at(weight: int, elapsed: timedelta = timedelta(minutes=10)) -> ModelRolloutStatus:
    index = WEIGHTS.index(weight)
    return initial_status(SPEC, NOW - elapsed, step_index=index)


def results_of(data: dict[str, Any], weight: int) -> list[ConditionResult]:
    status = status_at(weight)
    return evaluate_all(load_snapshot(data), evaluation_context(SPEC, status, NOW), SPEC.analysis.custom)


# -------------------------------------------------------------------- the properties


@SETTINGS
@given(snapshots())
def test_score_is_always_between_0_and_1(case: tuple[dict[str, Any], int]) -> None:
    data, weight = case
    results = results_of(data, weight)
    score = score_conditions(results)
    assert 0.0 <= score <= 1.0
    assert all(0.0 <= r.severity <= 1.0 for r in results)


@SETTINGS
@given(st.lists(st.tuples(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=100.0)),
                max_size=12))
def test_score_of_any_severities_and_weights_is_between_0_and_1(items: list[tuple[float, float]]) -> None:
    results = [ConditionResult(name=f"c{i}", severity=s, weight=w) for i, (s, w) in enumerate(items)]
    assert 0.0 <= score_conditions(results) <= 1.0


def _worsen(data: dict[str, Any], metric: str, amount: float) -> dict[str, Any]:
    """A copy of ``data`` with one canary metric made worse by ``amount`` in (0, 1]."""
    out = copy.deepcopy(data)
    c = out["canary"]
    if metric == "accuracy":
        c["predictions_correct"] = float(int(c["predictions_correct"] * (1 - amount)))
    elif metric in ("mean", "p95", "p99"):
        c["latency_ms"][metric] *= 1 + 3 * amount
    elif metric in ERROR_CATEGORIES:
        room = c["requests"] - sum(c["errors"].values())
        c["errors"][metric] += float(int(room * amount * 0.2))
    elif metric == "hit_rate":
        moved = float(int(c["cache"]["hits"] * amount * 0.2))
        c["cache"]["hits"] -= moved
        c["cache"]["misses"] += moved
    elif metric == "evictions":
        c["cache"]["evictions_per_minute"] += amount
    elif metric == "lookup":
        c["cache"]["lookup_ms"] *= 1 + 3 * amount
    elif metric == "rps":
        c["rps"] *= 1 - amount
    else:  # pragma: no cover - the strategy only draws the names above
        raise AssertionError(metric)
    return out


METRICS = ["accuracy", "mean", "p95", "p99", *ERROR_CATEGORIES, "hit_rate", "evictions", "lookup", "rps"]


@SETTINGS
@given(snapshots(), st.sampled_from(METRICS), st.floats(min_value=0.01, max_value=1.0),
       st.integers(min_value=0, max_value=600))
def test_a_worse_metric_never_lowers_the_score_nor_undoes_a_rollback(
    case: tuple[dict[str, Any], int], metric: str, amount: float, triggered_for: int
) -> None:
    data, weight = case
    worse = _worsen(data, metric, amount)
    before, after = results_of(data, weight), results_of(worse, weight)
    assert score_conditions(after) >= score_conditions(before) - 1e-12
    for b, a in zip(before, after):
        assert a.name == b.name
        assert a.severity >= b.severity - 1e-12, (metric, b.message, a.message)
        assert a.critical or not b.critical, (metric, b.message, a.message)

    # The decision, with every condition's trigger clock already running for a while.
    since = NOW - timedelta(seconds=triggered_for)
    position = Position(current_step=WEIGHTS.index(weight), canary_weight=weight, step_started_at=NOW - timedelta(minutes=10),
                        triggered_since={r.name: since for r in before}, high_risk_since=since)
    d_before = decide(SPEC, before, None, position, NOW)
    d_after = decide(SPEC, after, None, position, NOW)
    if d_before.action == DecisionAction.ROLLBACK:
        assert d_after.action == DecisionAction.ROLLBACK, (metric, d_before.reason, d_after.reason)


REQUIRED = [
    "canary", "canary.requests", "canary.rps", "canary.errors", "canary.latency_ms", "canary.latency_ms.mean",
    "canary.latency_ms.p95", "canary.latency_ms.p99", "canary.predictions_evaluated", "canary.predictions_correct",
    "canary.confidence", "canary.cache", "canary.cache.hits", "canary.cache.misses",
    "canary.cache.evictions_per_minute", "canary.cache.lookup_ms", "canary.series", "stable", "stable.confidence",
]
"""Fields some condition cannot do without. ``stable.rps`` is required below 100 % only (at 100 % the stable serves nothing)."""


def _remove(data: dict[str, Any], path: str, null: bool) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if null:
        node[keys[-1]] = None
    else:
        del node[keys[-1]]
    return out


def _healthy(weight: int) -> dict[str, Any]:
    from .factories import snapshot_dict

    return snapshot_dict(NOW, weight)


def test_the_healthy_snapshot_advances_and_promotes_when_the_step_is_done() -> None:
    """The control for the next property: without the deletion, these statuses move on."""
    for weight, action in ((5, DecisionAction.ADVANCE), (25, DecisionAction.ADVANCE), (100, DecisionAction.PROMOTE)):
        t = step(SPEC, status_at(weight, timedelta(hours=2)), MetricsObserved(load_snapshot(_healthy(weight))), NOW)
        assert t.decision is not None and t.decision.action == action, t.decision


@SETTINGS
@given(st.sampled_from(WEIGHTS), st.sampled_from(REQUIRED + ["stable.rps"]), st.integers(min_value=0, max_value=20))
def test_missing_data_never_advances_or_promotes(weight: int, path: str, no_data_ticks: int) -> None:
    assume(not (path == "stable.rps" and weight == 100))
    data = _remove(_healthy(weight), path, null=False)
    status = status_at(weight, timedelta(hours=2)).model_copy(update={"consecutive_no_data": no_data_ticks})
    t = step(SPEC, status, MetricsObserved(load_snapshot(data)), NOW)
    assert t.decision is not None
    assert t.decision.action not in (DecisionAction.ADVANCE, DecisionAction.PROMOTE), (path, t.decision.reason)
    assert t.status.phase not in (Phase.PROMOTING, Phase.SUCCEEDED)
    assert t.status.current_step == status.current_step


NULLABLE = [p for p in REQUIRED if p.count(".") >= 1 and p not in ("canary.errors", "canary.latency_ms",
                                                                   "canary.confidence", "canary.cache", "canary.series",
                                                                   "stable.confidence")]
"""Numeric leaves: null must read as absent (docs/design.md#snapshot)."""


@pytest.mark.parametrize("path", NULLABLE)
def test_a_null_number_reads_as_missing_and_never_advances(path: str) -> None:
    data = _remove(_healthy(5), path, null=True)
    t = step(SPEC, status_at(5, timedelta(hours=2)), MetricsObserved(load_snapshot(data)), NOW)
    assert t.decision is not None and t.decision.action not in (DecisionAction.ADVANCE, DecisionAction.PROMOTE)


def test_nan_reads_as_missing() -> None:
    data = _healthy(5)
    data["canary"]["latency_ms"]["p95"] = float("nan")
    t = step(SPEC, status_at(5, timedelta(hours=2)), MetricsObserved(load_snapshot(data)), NOW)
    assert t.decision is not None and t.decision.action == DecisionAction.HOLD


@SETTINGS
@given(st.sampled_from(REQUIRED), st.sampled_from(["hold", "ignore", "rollback"]))
def test_missing_data_never_promotes_whatever_the_no_data_policy(path: str, policy: str) -> None:
    spec = make_spec(noData={"policy": policy, "maxConsecutive": 1})
    data = _remove(_healthy(100), path, null=False)
    status = initial_status(spec, NOW - timedelta(hours=2), step_index=2).model_copy(update={"consecutive_no_data": 5})
    t = step(spec, status, MetricsObserved(load_snapshot(data)), NOW)
    assert t.decision is not None and t.decision.action != DecisionAction.PROMOTE, (path, t.decision.reason)


@SETTINGS
@given(snapshots(), st.integers(min_value=0, max_value=3600))
def test_same_inputs_same_output(case: tuple[dict[str, Any], int], age: int) -> None:
    data, weight = case
    status = status_at(weight, timedelta(seconds=age))
    a = step(SPEC, status, MetricsObserved(load_snapshot(copy.deepcopy(data))), NOW)
    b = step(SPEC, status.model_copy(deep=True), MetricsObserved(load_snapshot(copy.deepcopy(data))), NOW)
    assert a.status == b.status
    assert a.actions == b.actions
    assert a.decision == b.decision
