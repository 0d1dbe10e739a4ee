"""Error rate: gated binomial checks on the total, the total relative to the stable, and each category."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from modelrollout.core.conditions import errors

from .support import DELETE, ctx, snap

BALANCED = ctx()  # total 0.05 (critical 0.10), baseline 0.01; categories .03/.01/.02/.01/.02


def canary(n=100_000, stable=False, **counts):
    errs = {"extraction": 0, "serialization": 0, "timeout": 0, "cache": 0, "other": 0, **counts}
    changes = {"canary.requests": n, "canary.errors": errs}
    if not stable:
        changes["stable"] = DELETE
    return snap(**changes)


def test_healthy_is_not_triggered():
    r = errors.evaluate(snap(), BALANCED)
    assert (r.severity, r.critical, r.inconclusive, r.no_data) == (0.0, False, False, False)
    assert r.weight == 0.15 and r.samples == 600_000
    assert r.observed["error_rate"] == pytest.approx(0.0019)


def test_total_at_warning_bound_is_not_triggered():
    # spread so that no category is above its own bound: 5% total
    r = errors.evaluate(canary(extraction=2500, timeout=1500, other=1000), BALANCED)
    assert r.observed["error_rate"] == pytest.approx(0.05) and not r.triggered


def test_total_between_bounds_is_proportional():
    # 7.5% total = halfway between 5% and 10%; categories: extraction 3%, timeout 2%, other 2%, ... at bounds
    r = errors.evaluate(canary(extraction=3000, timeout=2000, other=2000, serialization=250, cache=250), BALANCED)
    assert r.observed["error_rate"] == pytest.approx(0.075)
    assert r.severity == pytest.approx(0.5) and not r.critical
    assert r.message.startswith("error rate 0.0750 > 0.0500")


def test_total_at_and_beyond_critical():
    # total exactly 10% (extraction and timeout exactly at their own critical bounds): severe, but no
    # critical gate can reject "the true rate is at or below the bound" for a rate equal to it
    at = errors.evaluate(canary(n=1_000_000, extraction=60_000, timeout=40_000), BALANCED)
    assert at.severity == pytest.approx(1.0) and not at.critical
    beyond = errors.evaluate(canary(extraction=12_000), BALANCED)
    assert beyond.critical and "critical" in beyond.message


def test_category_between_bounds():
    r = errors.evaluate(canary(serialization=1200), BALANCED)  # 1.2% vs 1% (critical 2%)
    assert r.severity == pytest.approx(0.2) and not r.critical
    assert r.message.startswith("serialization errors 0.0120 > 0.0100")
    assert r.observed["serialization_rate"] == pytest.approx(0.012)
    assert r.threshold["serialization_max_rate"] == 0.01 and r.threshold["serialization_critical_rate"] == 0.02


def test_category_beyond_critical():
    r = errors.evaluate(canary(timeout=5000), BALANCED)  # 5% vs timeout critical 4%
    assert r.critical and r.message.startswith("timeout errors")


def test_category_at_critical_bound_is_not_critical():
    r = errors.evaluate(canary(cache=2000), BALANCED)  # exactly 2% = cache critical
    assert r.severity == pytest.approx(1.0) and not r.critical


def test_beyond_bound_but_not_significant():
    # 2 serialization errors in 150 requests (1.3% > 1%): p ~ 0.44
    r = errors.evaluate(canary(n=150, serialization=2), BALANCED)
    assert not r.triggered
    assert r.observed["p_value"] == pytest.approx(binom.sf(1, 150, 0.01))
    assert "not significant" in r.message


@pytest.mark.parametrize("n", [200, 1000, 5000])
def test_gate_flips_exactly_where_the_p_value_crosses_alpha(n):
    boundary = min(x for x in range(n + 1) if binom.sf(x - 1, n, 0.01) < 0.05)
    assert not errors.evaluate(canary(n=n, serialization=boundary - 1), BALANCED).triggered
    assert errors.evaluate(canary(n=n, serialization=boundary), BALANCED).triggered


def test_relative_to_stable():
    # stable 2% -> bound 2% + (5% - 1%) = 6%, critical 2% + 2 x 4% = 10%; canary 4.4% + 1.6% = ... spread
    s = snap(**{"canary.requests": 100_000,
                "canary.errors": {"extraction": 2900, "serialization": 0, "timeout": 1900, "cache": 0, "other": 1900},
                "stable.requests": 1_000_000,
                "stable.errors": {"extraction": 20_000, "serialization": 0, "timeout": 0, "cache": 0, "other": 0}})
    r = errors.evaluate(s, BALANCED)
    assert r.threshold["relative_bound"] == pytest.approx(0.06)
    assert r.threshold["relative_critical"] == pytest.approx(0.10)
    assert r.observed["stable_error_rate"] == pytest.approx(0.02)
    # total 6.7%: absolute (6.7-5)/5 = 0.34, relative (6.7-6)/4 = 0.175 -> absolute decides
    assert r.severity == pytest.approx(0.34)
    healthy_stable = snap(**{"canary.requests": 100_000,
                             "canary.errors": {"extraction": 2900, "timeout": 1900, "other": 1900},
                             "stable.requests": 1_000_000, "stable.errors": {"other": 1000}})
    # stable 0.1% -> bound 4.1%: relative severity (6.7 - 4.1) / 8 = 0.325 < absolute 0.34
    assert errors.evaluate(healthy_stable, BALANCED).threshold["relative_bound"] == pytest.approx(0.041)


def test_relative_bound_triggers_when_absolute_does_not():
    # stable 0.1%: relative bound 4.1%; canary 4.6% (below 5%) spread across categories within their bounds
    s = snap(**{"canary.requests": 100_000,
                "canary.errors": {"extraction": 2000, "timeout": 1300, "other": 1300},
                "stable.requests": 1_000_000, "stable.errors": {"other": 1000}})
    r = errors.evaluate(s, BALANCED)
    assert r.triggered and "(stable 0.0010 + 0.04)" in r.message


def test_relative_check_skipped_without_stable():
    r = errors.evaluate(canary(extraction=2000, timeout=1300, other=1300), BALANCED)
    assert not r.triggered and not r.inconclusive and "relative check skipped" in r.message
    assert r.observed["stable_error_rate"] is None


def test_absent_categories_count_as_zero():
    r = errors.evaluate(snap(**{"canary.errors": {"timeout": 30}}), BALANCED)
    assert not r.inconclusive and r.observed["errors"] == 30 and r.observed["extraction_rate"] == 0.0


def test_missing_errors_with_requests_is_inconclusive():
    for errs in (DELETE, {}):
        r = errors.evaluate(snap(**{"canary.errors": errs}), BALANCED)
        assert r.inconclusive and not r.no_data


def test_too_few_requests_is_inconclusive_with_progress():
    r = errors.evaluate(snap(**{"canary.requests": 64, "canary.rps": 0.2, "canary.errors": {"other": 0}}), BALANCED)
    assert r.inconclusive and not r.no_data
    assert r.message == "64/100 requests, minimum in ~3m at the current rate"


@pytest.mark.parametrize("changes", [{"canary.requests": 0}, {"canary.requests": DELETE}, {"canary": DELETE}])
def test_no_requests_is_no_data(changes):
    r = errors.evaluate(snap(**changes), BALANCED)
    assert r.inconclusive and r.no_data


@pytest.mark.parametrize("profile, severity", [
    ("conservative", 1.0),  # timeout 0.01 (critical 0.02)
    ("balanced", 0.0),      # timeout 0.02
    ("aggressive", 0.0),    # timeout 0.03
])
def test_profiles_move_the_bounds(profile, severity):
    r = errors.evaluate(canary(timeout=2000), ctx(profile))
    assert r.severity == pytest.approx(severity)


@settings(max_examples=150, deadline=None)
@given(category=st.sampled_from(["extraction", "serialization", "timeout", "cache", "other"]),
       a=st.integers(0, 20_000), b=st.integers(0, 20_000), stable=st.booleans())
def test_more_errors_never_lower_severity(category, a, b, stable):
    lo, hi = sorted((a, b))
    r_lo = errors.evaluate(canary(stable=stable, **{category: lo}), BALANCED)
    r_hi = errors.evaluate(canary(stable=stable, **{category: hi}), BALANCED)
    assert r_hi.severity >= r_lo.severity and r_hi.critical >= r_lo.critical
