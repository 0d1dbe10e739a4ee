"""Accuracy: gated binomial checks against the absolute and the stable-relative bounds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from modelrollout.core.conditions import accuracy

from .support import DELETE, ctx, snap

BALANCED = ctx()


def canary(correct: float, n: float, stable: bool = False, **more):
    changes = {"canary.predictions_evaluated": n, "canary.predictions_correct": correct, **more}
    if not stable:
        changes["stable"] = DELETE
    return snap(**changes)


def test_healthy_canary_is_not_triggered():
    r = accuracy.evaluate(snap(), BALANCED)
    assert (r.severity, r.critical, r.inconclusive, r.no_data) == (0.0, False, False, False)
    assert r.weight == 0.25
    assert r.observed["accuracy"] == pytest.approx(0.92)
    assert r.samples == 18_000 and r.min_samples == 100


def test_at_warning_bound_is_not_triggered():
    r = accuracy.evaluate(canary(8500, 10_000), BALANCED)
    assert r.severity == 0.0 and not r.triggered
    assert r.observed["p_value"] is None  # not beyond: no test run


def test_between_bounds_is_proportional():
    r = accuracy.evaluate(canary(80_000, 100_000), BALANCED)
    assert r.severity == pytest.approx(0.5)  # (0.85 - 0.80) / (0.85 - 0.75)
    assert r.triggered and not r.critical
    assert r.observed["p_value"] < 1e-12


def test_at_critical_bound_is_severe_but_not_critical():
    # exactly at C the critical gate cannot reject "true rate >= C" (p ~ 0.5)
    r = accuracy.evaluate(canary(75_000, 100_000), BALANCED)
    assert r.severity == pytest.approx(1.0)
    assert not r.critical


def test_beyond_critical_bound_is_critical():
    r = accuracy.evaluate(canary(70_000, 100_000), BALANCED)
    assert r.severity == 1.0 and r.critical
    assert "critical" in r.message


def test_beyond_critical_point_estimate_without_significance_is_not_critical():
    # 0.74 over 200: beyond the warning bound significantly, not significantly beyond 0.75
    r = accuracy.evaluate(canary(148, 200), BALANCED)
    assert r.severity == 1.0 and not r.critical


def test_beyond_bound_but_not_significant_is_not_triggered():
    r = accuracy.evaluate(canary(84, 100), BALANCED)
    assert r.severity == 0.0 and not r.triggered
    assert r.observed["p_value"] == pytest.approx(binom.cdf(84, 100, 0.85))
    assert "not significant" in r.message


@pytest.mark.parametrize("n, alpha", [(100, 0.05), (250, 0.05), (1000, 0.01), (400, 0.005)])
def test_gate_flips_exactly_where_the_p_value_crosses_alpha(n, alpha):
    # largest number of correct predictions whose lower tail is still below alpha (slow scipy path)
    boundary = max(x for x in range(n + 1) if binom.cdf(x, n, 0.85) < alpha)
    c = ctx(significance=alpha)
    assert accuracy.evaluate(canary(boundary, n), c).triggered
    assert not accuracy.evaluate(canary(boundary + 1, n), c).triggered


def test_shortfall_is_inconclusive_with_progress_not_no_data():
    r = accuracy.evaluate(canary(60, 64), BALANCED)
    assert r.inconclusive and not r.no_data and r.severity == 0.0
    assert r.message.startswith("64/100 labelled predictions")
    assert r.samples == 64 and r.min_samples == 100


def test_shortfall_estimates_time_to_minimum_from_the_window():
    r = accuracy.evaluate(canary(60, 64, **{"windows": {"accuracy": 900.0}}), BALANCED)
    # 64 in 900 s -> 36 more at 0.0711/s ~ 506 s
    assert r.message == "64/100 labelled predictions, minimum in ~8m at the current rate"
    assert r.window_seconds == 900.0


def test_shortfall_without_windows_assumes_the_window_grew_to_the_step_age():
    # 64 over max(15 min, 30 min) -> 36 more at 0.0356/s ~ 1012 s
    r = accuracy.evaluate(canary(60, 64), ctx(step_age=timedelta(minutes=30)))
    assert r.message == "64/100 labelled predictions, minimum in ~17m at the current rate"
    r = accuracy.evaluate(canary(60, 64), ctx(step_age=timedelta(minutes=5)))  # nominal 15 min: ~8m
    assert r.message == "64/100 labelled predictions, minimum in ~8m at the current rate"


@pytest.mark.parametrize("changes", [
    {"canary.predictions_evaluated": 0, "canary.predictions_correct": 0},
    {"canary.predictions_evaluated": DELETE},
    {"canary": DELETE},
])
def test_no_samples_is_no_data(changes):
    r = accuracy.evaluate(snap(**changes), BALANCED)
    assert r.inconclusive and r.no_data and r.severity == 0.0


def test_missing_correct_count_is_inconclusive_not_no_data():
    r = accuracy.evaluate(snap(**{"canary.predictions_correct": DELETE}), BALANCED)
    assert r.inconclusive and not r.no_data


@pytest.mark.parametrize("profile, severity", [
    ("conservative", pytest.approx(0.8)),  # (0.90 - 0.82) / (0.90 - 0.80)
    ("balanced", pytest.approx(0.3)),      # (0.85 - 0.82) / (0.85 - 0.75)
    ("aggressive", 0.0),                   # 0.82 >= 0.80
])
def test_profiles_move_the_bounds(profile, severity):
    r = accuracy.evaluate(canary(82_000, 100_000), ctx(profile))
    assert r.severity == severity


def test_relative_bound_triggers_when_absolute_does_not():
    # stable 0.95 -> relative bound 0.9025; canary 0.88 is fine in absolute terms
    r = accuracy.evaluate(snap(**{
        "canary.predictions_evaluated": 20_000, "canary.predictions_correct": 17_600,
        "stable.predictions_evaluated": 1_000_000, "stable.predictions_correct": 950_000,
    }), BALANCED)
    assert r.triggered and not r.critical
    assert r.threshold["relative_bound"] == pytest.approx(0.9025)
    assert r.threshold["relative_critical"] == pytest.approx(0.8075)
    assert r.severity == pytest.approx((0.9025 - 0.88) / (0.9025 - 0.8075))
    assert "stable 0.950 × 0.95" in r.message


def test_evidence_matches_the_documented_example():
    r = accuracy.evaluate(snap(**{
        "canary.predictions_evaluated": 500, "canary.predictions_correct": 400,
        "stable.predictions_evaluated": 100_000, "stable.predictions_correct": 92_000,
    }), BALANCED)
    assert r.observed["accuracy"] == 0.8 and r.observed["correct"] == 400 and r.observed["n"] == 500
    assert r.observed["stable_accuracy"] == pytest.approx(0.92)
    assert r.observed["p_value"] == pytest.approx(binom.cdf(400, 500, 0.92 * 0.95), rel=1e-6)
    assert r.threshold["min_accuracy"] == 0.85 and r.threshold["critical_accuracy"] == 0.75
    assert r.threshold["relative_bound"] == pytest.approx(0.874) and r.threshold["alpha"] == 0.05
    assert r.message.startswith("accuracy 0.800 < 0.874 (stable 0.920 × 0.95), p=")
    assert all(isinstance(v, (int, float)) or v is None for v in r.observed.values())


@pytest.mark.parametrize("stable", [DELETE, {"requests": 10}, {"predictions_evaluated": 0, "predictions_correct": 0}])
def test_relative_check_skipped_without_stable_labels(stable):
    # 0.88 would trigger against stable 0.95; without it only the absolute bound decides
    r = accuracy.evaluate(snap(**{"canary.predictions_evaluated": 20_000, "canary.predictions_correct": 17_600,
                                  "stable": stable}), BALANCED)
    assert not r.triggered and not r.inconclusive
    assert r.observed["stable_accuracy"] is None and r.threshold["relative_bound"] is None
    assert "relative check skipped" in r.message


@settings(max_examples=200, deadline=None)
@given(n=st.integers(100, 20_000), a=st.floats(0, 1), b=st.floats(0, 1), stable=st.booleans())
def test_worse_accuracy_never_lowers_severity(n, a, b, stable):
    better, worse = round(max(a, b) * n), round(min(a, b) * n)
    c = BALANCED
    r_better = accuracy.evaluate(canary(better, n, stable=stable), c)
    r_worse = accuracy.evaluate(canary(worse, n, stable=stable), c)
    assert r_worse.severity >= r_better.severity
    assert r_worse.critical >= r_better.critical
    assert 0.0 <= r_worse.severity <= 1.0


def test_messages_speak_of_whole_predictions():
    """increase() extrapolates counters to fractions; a message says "1181", never "1181.02"."""
    r = accuracy.evaluate(canary(1100.4, 1181.02), BALANCED)
    assert "over 1181 labelled predictions" in r.message, r.message
