"""Cache: gated hit rate, evictions per minute and lookup time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from modelrollout.core.conditions import cache

from .support import DELETE, ctx, snap

BALANCED = ctx()  # hit rate 0.98 (critical 0.90); evictions 0.1/min (0.2); lookup 5 ms (10)


def canary(hits=98_500, misses=1_500, evictions=0.02, lookup=1.1):
    cache_ = {"hits": hits, "misses": misses, "evictions_per_minute": evictions, "lookup_ms": lookup}
    return snap(**{"canary.cache": cache_})


def test_healthy_is_not_triggered():
    r = cache.evaluate(snap(), BALANCED)
    assert (r.severity, r.critical, r.inconclusive, r.no_data) == (0.0, False, False, False)
    assert r.weight == 0.10 and r.observed["hit_rate"] == pytest.approx(0.985)


def test_hit_rate_at_bound_is_not_triggered():
    assert not cache.evaluate(canary(98_000, 2_000), BALANCED).triggered


def test_hit_rate_between_bounds():
    r = cache.evaluate(canary(94_000, 6_000), BALANCED)
    assert r.severity == pytest.approx(0.5) and not r.critical
    assert r.message.startswith("hit rate 0.9400 < 0.9800")


def test_hit_rate_at_and_beyond_critical():
    at = cache.evaluate(canary(90_000, 10_000), BALANCED)
    assert at.severity == pytest.approx(1.0) and not at.critical  # at C: the critical gate cannot reject
    beyond = cache.evaluate(canary(85_000, 15_000), BALANCED)
    assert beyond.critical


def test_hit_rate_beyond_bound_but_not_significant():
    r = cache.evaluate(canary(97, 3), BALANCED)  # 0.97 over 100 lookups: p ~ 0.32
    assert not r.triggered and r.observed["p_value"] == pytest.approx(binom.cdf(97, 100, 0.98))


def test_hit_rate_gate_flips_where_scipy_says():
    n = 2000
    boundary = max(x for x in range(n + 1) if binom.cdf(x, n, 0.98) < 0.05)
    assert cache.evaluate(canary(boundary, n - boundary), BALANCED).triggered
    assert not cache.evaluate(canary(boundary + 1, n - boundary - 1), BALANCED).triggered


@pytest.mark.parametrize("evictions, severity, critical", [
    (0.1, 0.0, False), (0.15, 0.5, False), (0.2, 1.0, False), (0.3, 1.0, True), (1.0, 1.0, True),
])
def test_evictions_over_a_day_of_evidence(evictions, severity, critical):
    """With 24 h of evidence the Poisson gate passes and the severity formula decides;
    exactly at the critical bound is not significantly beyond it, so not critical."""
    data = snap(**{"canary.cache.evictions_per_minute": evictions, "windows": {"cache": 86_400.0}})
    r = cache.evaluate(data, BALANCED)
    assert r.severity == pytest.approx(severity) and r.critical is critical


@pytest.mark.parametrize("lookup, severity, critical", [
    (5.0, 0.0, False), (7.5, 0.5, False), (10.0, 1.0, True), (40.0, 1.0, True),
])
def test_lookup_time(lookup, severity, critical):
    r = cache.evaluate(canary(lookup=lookup), BALANCED)
    assert r.severity == pytest.approx(severity) and r.critical is critical


def test_missing_eviction_or_lookup_is_inconclusive_but_counts():
    r = cache.evaluate(snap(**{"canary.cache.lookup_ms": DELETE}), BALANCED)
    assert r.inconclusive and not r.no_data and not r.triggered and "lookup_ms missing" in r.message
    r = cache.evaluate(snap(**{"canary.cache.evictions_per_minute": DELETE, "canary.cache.lookup_ms": 12.0}), BALANCED)
    assert r.inconclusive and r.critical


def test_too_few_lookups_is_inconclusive_with_progress():
    r = cache.evaluate(snap(**{"canary.cache": {"hits": 60, "misses": 4}, "windows": {"cache": 300.0}}), BALANCED)
    assert r.inconclusive and not r.no_data
    assert r.message == "64/100 cache lookups, minimum in ~3m at the current rate"


@pytest.mark.parametrize("changes", [
    {"canary.cache": DELETE},
    {"canary.cache": {"hits": 0, "misses": 0}},
    {"canary.cache.misses": DELETE},
])
def test_no_lookups_is_no_data(changes):
    r = cache.evaluate(snap(**changes), BALANCED)
    assert r.inconclusive and r.no_data


@pytest.mark.parametrize("profile, triggered", [("conservative", True), ("balanced", False), ("aggressive", False)])
def test_profiles_move_the_bounds(profile, triggered):
    # min hit rate 0.99 / 0.98 / 0.95
    assert cache.evaluate(canary(98_200, 1_800), ctx(profile)).triggered is triggered


@settings(max_examples=150, deadline=None)
@given(a=st.integers(0, 10_000), b=st.integers(0, 10_000), ev=st.floats(0, 1), lk=st.floats(0, 30))
def test_fewer_hits_never_lower_severity(a, b, ev, lk):
    lo, hi = sorted((a, b))
    r_lo = cache.evaluate(canary(lo, 10_000 - lo, ev, lk), BALANCED)
    r_hi = cache.evaluate(canary(hi, 10_000 - hi, ev, lk), BALANCED)
    assert r_lo.severity >= r_hi.severity and r_lo.critical >= r_hi.critical


def test_a_single_eviction_in_the_window_is_noise_not_a_breach() -> None:
    """0.2/min from one eviction in 5 minutes: beyond 0.1/min, not significant (Poisson)."""
    from modelrollout.core.conditions import cache as cache_condition
    from modelrollout.core.snapshot import load_snapshot

    from ..factories import snapshot_dict, with_changes
    from modelrollout.core.conditions.base import EvaluationContext
    from modelrollout.api.thresholds import Profile, resolve_conditions

    ctx = EvaluationContext(thresholds=resolve_conditions(Profile.BALANCED, None))
    data = with_changes(snapshot_dict(), "canary.cache.evictions_per_minute", 0.2)
    data["windows"] = {"cache": 300.0}
    one = cache_condition.evaluate(load_snapshot(data), ctx)
    assert one.severity == 0.0 and not one.critical
    data = with_changes(data, "canary.cache.evictions_per_minute", 1.0)  # 5 events where 0.5 are expected
    many = cache_condition.evaluate(load_snapshot(data), ctx)
    assert many.critical and many.severity == 1.0


def test_poisson_gate_flips_where_scipy_says() -> None:
    from scipy import stats as st

    from modelrollout.core.stats import poisson_gate

    mean = 0.1 * 5  # bound 0.1/min over 5 minutes
    for events in range(1, 8):
        gate = poisson_gate(events, 5.0, 0.1, 0.05)
        assert gate.p_value == pytest.approx(st.poisson.sf(events - 1, mean))
        assert gate.beyond == (st.poisson.sf(events - 1, mean) < 0.05)


def test_the_lookup_time_is_gated_by_the_histogram_spread_when_the_buckets_are_there() -> None:
    """A mean lookup a hair above its bound over lookups spread across 0-25 ms is noise;
    the same mean without buckets is a plain threshold, as before the gate."""
    from modelrollout.core.conditions import cache

    bound = BALANCED.thresholds.cache.max_lookup_ms  # type: ignore[union-attr]
    spread = {"le": [1.0, 2.5, 5.0, 10.0, 25.0], "counts": [150, 350, 600, 850, 1000]}  # 1,000 lookups, sd ~5 ms
    base = {"canary.cache.lookup_ms": bound * 1.02, "canary.cache.hits": 990, "canary.cache.misses": 10}
    noisy = cache.evaluate(snap(**base, **{"canary.cache.lookup_buckets": spread}), BALANCED)
    plain = cache.evaluate(snap(**base), BALANCED)
    assert noisy.severity == 0.0 and "lookup" in noisy.message and "not significant" in noisy.message
    assert plain.severity > 0.0
    tight = {"le": [bound * 0.9, bound * 1.1], "counts": [0, 1000]}  # every lookup within 10 % of the bound
    slow = cache.evaluate(snap(**{**base, "canary.cache.lookup_ms": bound * 1.05},
                               **{"canary.cache.lookup_buckets": tight}), BALANCED)
    assert slow.severity > 0.0 and slow.observed["p_value"] < 1e-6
