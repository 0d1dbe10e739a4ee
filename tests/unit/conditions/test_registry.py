"""The registry: order, enabled conditions only, weights, custom conditions last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelrollout.api.models import CustomCondition
from modelrollout.api.thresholds import ConditionName
from modelrollout.core.conditions import BUILTIN, enabled_builtins, evaluate_all
from modelrollout.core.snapshot import load_snapshot

from .support import ctx, snap

ORDER = ["accuracy", "latency", "confidenceDrift", "errorRate", "cache", "throughput", "anomaly"]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "snapshots"


def test_builtins_in_spec_table_order():
    assert [n.value for n in BUILTIN] == ORDER == [n.value for n in ConditionName]


def test_all_enabled_by_default_with_their_weights():
    results = evaluate_all(snap(), ctx(), [])
    assert [r.name for r in results] == ORDER
    assert [r.weight for r in results] == [0.25, 0.20, 0.15, 0.15, 0.10, 0.10, 0.05]
    assert not any(r.triggered or r.inconclusive for r in results)


def test_disabled_conditions_are_absent():
    c = ctx(overrides={"cache": {"enabled": False}, "anomaly": {"enabled": False}})
    results = evaluate_all(snap(**{"canary.cache": {"hits": 1, "misses": 99}}), c, [])
    assert [r.name for r in results] == ["accuracy", "latency", "confidenceDrift", "errorRate", "throughput"]
    assert [n.value for n in enabled_builtins(c.thresholds)] == [r.name for r in results]


def test_weight_overrides_are_carried():
    results = evaluate_all(snap(), ctx(overrides={"latency": {"weight": 2.0}}), [])
    assert results[1].name == "latency" and results[1].weight == 2.0


def test_custom_conditions_follow_and_disabled_ones_are_absent():
    custom = [
        CustomCondition(name="gpu", query="q", threshold=0.8, critical=0.95, weight=0.2),
        CustomCondition(name="off", query="q", threshold=1, critical=2, enabled=False),
        CustomCondition(name="drawdown", query="q", threshold=0.1, critical=0.2),
    ]
    results = evaluate_all(snap(custom={"gpu": {"value": 0.9}, "drawdown": {"value": 0.0}}), ctx(), custom)
    assert [r.name for r in results][-2:] == ["gpu", "drawdown"] and len(results) == 9
    assert results[-2].triggered and results[-2].weight == 0.2


def test_a_snapshot_without_canary_is_no_data_everywhere():
    results = evaluate_all(snap(canary=None), ctx(), [])
    assert all(r.inconclusive and r.no_data and not r.triggered for r in results)


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.json")) if EXAMPLES.exists() else [])
def test_bundled_examples_evaluate(name):
    s = load_snapshot(json.loads((EXAMPLES / f"{name}.json").read_text()))
    results = evaluate_all(s, ctx(), [])
    assert len(results) == 7
    for r in results:
        assert 0.0 <= r.severity <= 1.0
        assert not (r.critical and not r.triggered)
        json.dumps({"observed": r.observed, "threshold": r.threshold}, allow_nan=False)


def leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("confidence",):
            yield from leaves(value, path + ".")
        else:
            yield path


# fields whose absence is deliberately not inconclusive (see docs/conditions.md)
TOLERATED = {
    "canary.latency_ms.count",  # falls back to canary.requests
    *(f"canary.errors.{c}" for c in ("extraction", "serialization", "timeout", "cache", "other")),  # absent = 0
    "canary.series.latency_p95_ms", "canary.series.error_rate", "canary.series.rps",  # the others still have 30
}


@pytest.mark.parametrize("absent", ["deleted", "null"])
def test_every_missing_canary_field_makes_something_inconclusive(absent):
    from .support import DELETE, healthy

    for path in leaves(healthy()["canary"], "canary."):
        if path in TOLERATED:
            continue
        results = evaluate_all(snap(**{path: DELETE if absent == "deleted" else None}), ctx(), [])
        assert any(r.inconclusive for r in results), path
        assert not any(r.triggered for r in results), path
