"""Custom conditions: a PromQL value against the user's threshold and critical bound."""

from __future__ import annotations

import pytest

from modelrollout.api.models import CustomCondition
from modelrollout.core.conditions import evaluate_custom

from .support import ctx, snap

DRAWDOWN = CustomCondition(name="drawdown", query="max_drawdown", direction="above", threshold=0.1, critical=0.2,
                           weight=0.3)
SHARPE = CustomCondition(name="sharpe", query="sharpe", direction="below", threshold=1.0, critical=0.5,
                         min_samples_query="count", min_samples=50)
BALANCED = ctx()


def custom(**entries):
    return snap(custom=entries)


@pytest.mark.parametrize("value, severity, critical", [
    (0.05, 0.0, False), (0.1, 0.0, False), (0.15, 0.5, False), (0.2, 1.0, True), (0.5, 1.0, True),
])
def test_above(value, severity, critical):
    r = evaluate_custom(DRAWDOWN, custom(drawdown={"value": value}), BALANCED)
    assert r.severity == pytest.approx(severity) and r.critical is critical
    assert r.name == "drawdown" and r.weight == 0.3 and not r.inconclusive
    assert r.observed["value"] == value and r.threshold["threshold"] == 0.1


@pytest.mark.parametrize("value, severity, critical", [
    (1.5, 0.0, False), (1.0, 0.0, False), (0.75, 0.5, False), (0.5, 1.0, True), (-2.0, 1.0, True),
])
def test_below(value, severity, critical):
    r = evaluate_custom(SHARPE, custom(sharpe={"value": value, "samples": 500}), BALANCED)
    assert r.severity == pytest.approx(severity) and r.critical is critical


def test_message_names_value_and_bound():
    r = evaluate_custom(DRAWDOWN, custom(drawdown={"value": 0.15}), BALANCED)
    assert r.message == "drawdown 0.1500 > 0.1000"


def test_too_few_samples_is_inconclusive_with_progress():
    r = evaluate_custom(SHARPE, custom(sharpe={"value": 0.1, "samples": 32}), BALANCED)
    assert r.inconclusive and not r.no_data and r.severity == 0.0
    assert r.message.startswith("32/50 samples")


def test_zero_samples_is_no_data():
    r = evaluate_custom(SHARPE, custom(sharpe={"value": 0.1, "samples": 0}), BALANCED)
    assert r.inconclusive and r.no_data


def test_missing_sample_count_with_a_samples_query_is_inconclusive():
    r = evaluate_custom(SHARPE, custom(sharpe={"value": 0.1}), BALANCED)
    assert r.inconclusive and not r.no_data


def test_without_a_samples_query_the_value_is_enough():
    r = evaluate_custom(DRAWDOWN, custom(drawdown={"value": 0.15, "samples": 0}), BALANCED)
    assert not r.inconclusive and r.triggered


@pytest.mark.parametrize("entries", [{}, {"drawdown": {}}, {"other": {"value": 1.0}}])
def test_missing_value_is_no_data(entries):
    r = evaluate_custom(DRAWDOWN, custom(**entries), BALANCED)
    assert r.inconclusive and r.no_data


def test_absent_custom_section_is_no_data():
    r = evaluate_custom(DRAWDOWN, snap(), BALANCED)
    assert r.inconclusive and r.no_data
