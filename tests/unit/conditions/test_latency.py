"""Latency: mean/p95/p99 against absolute bounds and against the stable's; significance-gated when the snapshot has the duration buckets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrollout.core.conditions import latency

from .support import DELETE, ctx, snap

BALANCED = ctx()  # mean 2.0, p95 3.0, p99 6.0 ms; stable ratio 1.5; critical x2


def canary(mean=1.4, p95=2.1, p99=2.9, count=120_000, stable=True, **more):
    changes = {"canary.latency_ms": {"mean": mean, "p95": p95, "p99": p99, "count": count}, **more}
    if not stable:
        changes["stable.latency_ms"] = DELETE
    return snap(**changes)


def test_healthy_is_not_triggered():
    r = latency.evaluate(snap(), BALANCED)
    assert (r.severity, r.critical, r.inconclusive, r.no_data) == (0.0, False, False, False)
    assert r.weight == 0.20 and r.samples == 120_000
    assert r.observed["p95_ms"] == 2.1 and r.threshold["p95_ms"] == 3.0 and r.threshold["critical_p95_ms"] == 6.0


def test_at_warning_bound_is_not_triggered():
    assert latency.evaluate(canary(p95=3.0, stable=False), BALANCED).severity == 0.0


def test_between_bounds_is_proportional():
    r = latency.evaluate(canary(p95=4.5, stable=False), BALANCED)
    assert r.severity == pytest.approx(0.5) and not r.critical
    assert r.message.startswith("p95 4.50ms > 3.00ms")


def test_at_critical_bound_is_critical():
    r = latency.evaluate(canary(p95=6.0, stable=False), BALANCED)
    assert r.severity == 1.0 and r.critical


def test_beyond_critical_bound_is_critical():
    r = latency.evaluate(canary(mean=9.0, stable=False), BALANCED)
    assert r.severity == 1.0 and r.critical and "critical" in r.message


def test_condition_takes_the_worst_statistic():
    r = latency.evaluate(canary(mean=2.5, p95=3.3, p99=9.0, stable=False), BALANCED)
    assert r.severity == pytest.approx(0.5)  # p99: (9 - 6) / (12 - 6); mean 0.25, p95 0.1
    assert r.message.startswith("p99") and "+2 more checks" in r.message


def test_relative_to_stable():
    # stable p95 1.5 -> bound 2.25, critical 4.5; canary 2.6 (1.73x) is fine in absolute terms
    r = latency.evaluate(canary(p95=2.6, **{"stable.latency_ms.p95": 1.5}), BALANCED)
    assert r.severity == pytest.approx((2.6 - 2.25) / (4.5 - 2.25))
    assert r.threshold["relative_p95_ms"] == pytest.approx(2.25)
    assert r.threshold["relative_critical_p95_ms"] == pytest.approx(4.5)
    assert "(stable 1.50ms × 1.5)" in r.message


def test_relative_critical_scales_the_relative_bound():
    r = latency.evaluate(canary(p95=2.9, **{"stable.latency_ms.p95": 0.9}), BALANCED)
    # bound 1.35, critical 2.7: 2.9 is beyond
    assert r.critical


@pytest.mark.parametrize("stable", [DELETE, {"p95": 0.0}, {"count": 10}])
def test_relative_checks_skipped_without_stable_latency(stable):
    r = latency.evaluate(canary(p95=2.6, **{"stable.latency_ms": stable}), BALANCED)
    assert not r.triggered and not r.inconclusive
    assert "relative check" in r.message and r.observed["stable_p95_ms"] in (None, 0.0)


def test_missing_statistic_is_inconclusive_but_present_ones_count():
    r = latency.evaluate(snap(**{"canary.latency_ms.p99": DELETE}), BALANCED)
    assert r.inconclusive and not r.no_data and not r.triggered and "p99 missing" in r.message
    r = latency.evaluate(snap(**{"canary.latency_ms.p99": DELETE, "canary.latency_ms.p95": 7.0}), BALANCED)
    assert r.inconclusive and r.critical


def test_all_statistics_missing_is_inconclusive():
    r = latency.evaluate(snap(**{"canary.latency_ms": {"count": 5000}}), BALANCED)
    assert r.inconclusive and not r.no_data and r.severity == 0.0


def test_too_few_requests_is_inconclusive_with_progress():
    r = latency.evaluate(canary(count=640, **{"canary.rps": 20.0}), BALANCED)
    assert r.inconclusive and not r.no_data
    assert r.message == "640/1000 requests, minimum in ~18s at the current rate"


def test_requests_stand_in_for_a_missing_latency_count():
    r = latency.evaluate(snap(**{"canary.latency_ms.count": DELETE, "canary.requests": 500}), BALANCED)
    assert r.inconclusive and r.samples == 500


@pytest.mark.parametrize("changes", [
    {"canary.latency_ms": DELETE},
    {"canary.latency_ms.count": 0},
    {"canary.latency_ms.count": DELETE, "canary.requests": DELETE},
    {"canary": DELETE},
])
def test_no_samples_is_no_data(changes):
    r = latency.evaluate(snap(**changes), BALANCED)
    assert r.inconclusive and r.no_data and r.severity == 0.0


@pytest.mark.parametrize("profile, triggered", [("conservative", True), ("balanced", False), ("aggressive", False)])
def test_profiles_move_the_bounds(profile, triggered):
    # mean bounds 1.5 / 2.0 / 2.5 ms
    assert latency.evaluate(canary(mean=1.8, stable=False), ctx(profile)).triggered is triggered


def test_overrides_apply():
    c = ctx(overrides={"latency": {"p95Ms": 2.0, "criticalFactor": 3.0}})
    r = latency.evaluate(canary(p95=3.0, stable=False), c)
    assert r.severity == pytest.approx(0.25)  # (3 - 2) / (6 - 2)


@settings(max_examples=200, deadline=None)
@given(stat=st.sampled_from(["mean", "p95", "p99"]), a=st.floats(0.01, 30), b=st.floats(0.01, 30), stable=st.booleans())
def test_worse_latency_never_lowers_severity(stat, a, b, stable):
    lo, hi = sorted((a, b))
    r_lo = latency.evaluate(canary(stable=stable, **{f"canary.latency_ms.{stat}": lo}), BALANCED)
    r_hi = latency.evaluate(canary(stable=stable, **{f"canary.latency_ms.{stat}": hi}), BALANCED)
    assert r_hi.severity >= r_lo.severity and r_hi.critical >= r_lo.critical


# ---------------------------------------------------------------- the significance gate (buckets)

LE_MS = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 25.0]


def lognormal_buckets(n: int, median_ms: float, p95_ms: float) -> dict:
    """Expected cumulative counts of ``n`` lognormal latencies in the contract-like buckets."""
    from scipy.stats import lognorm, norm
    sigma = math.log(p95_ms / median_ms) / norm.ppf(0.95)
    cdf = lognorm.cdf(LE_MS, sigma, scale=median_ms)
    return {"le": LE_MS, "counts": [round(float(c) * n) for c in cdf]}


def gated(p95: float, count: int, buckets: dict, **more) -> latency.ConditionResult:
    return latency.evaluate(canary(p95=p95, count=count, stable=False, **{"canary.latency_ms.buckets": buckets},
                                   **more), BALANCED)


def test_slower_than_interpolates_within_a_bucket_as_histogram_quantile_does() -> None:
    from modelrollout.core.conditions.checks import slower_than
    from modelrollout.core.snapshot import Histogram
    h = Histogram(le=[1.0, 2.0, 4.0], counts=[10.0, 50.0, 90.0])
    assert slower_than(h, 100, 1.5) == pytest.approx(100 - 30)   # halfway through (1, 2]: 10 + 20
    assert slower_than(h, 100, 0.5) == pytest.approx(100 - 5)    # the first bucket from 0
    assert slower_than(h, 100, 4.0) == 0.0 and slower_than(h, 100, 9.0) == 0.0  # past the last finite bucket


def test_a_p95_beyond_its_bound_by_noise_is_not_yet_significant() -> None:
    """1,000 requests whose true p95 is the bound (3 ms), read a little above it: the
    requests slower than 3 ms are ~5 %, as the bound allows; held, never scored."""
    buckets = lognormal_buckets(1000, 1.3, 3.0)
    buckets["counts"][5] -= 8  # 58 of 1,000 slower than 3 ms: 5.8 %, p ≈ 0.14
    r = gated(3.1, 1000, buckets)
    assert r.severity == 0.0 and not r.critical
    assert "but not significant" in r.message and r.observed["p_value"] > 0.05


def test_a_p95_well_beyond_its_bound_is_significant_and_scored() -> None:
    r = gated(4.5, 6000, lognormal_buckets(6000, 2.0, 4.5))
    assert r.severity == pytest.approx(0.5) and not r.critical
    assert r.observed["p_value"] < 1e-6 and "not significant" not in r.message


def test_a_critical_p95_on_enough_requests_is_critical_and_on_few_is_not() -> None:
    many = gated(6.5, 6000, lognormal_buckets(6000, 3.0, 6.5))
    assert many.critical
    # 40 requests: the p95 is 2 of them; nothing that few is evidence of a critical tail
    few = gated(6.5, 40, lognormal_buckets(40, 3.0, 6.5), **{"canary.requests": 40})
    assert not few.critical


def test_without_buckets_the_checks_are_plain_thresholds_as_before() -> None:
    r = latency.evaluate(canary(p95=3.1, count=1000, stable=False), BALANCED)
    assert r.severity == pytest.approx(0.1 / 3.0) and "p_value" not in r.observed


def test_the_mean_is_gated_by_the_histogram_spread() -> None:
    # mean 2.05 ms against a bound of 2.0 over 1,000 requests spread over 0.5-10 ms: noise
    noise = latency.evaluate(canary(mean=2.05, count=1000, stable=False,
                                    **{"canary.latency_ms.buckets": lognormal_buckets(1000, 1.5, 4.0)}), BALANCED)
    assert noise.severity == 0.0 and "mean" in noise.message and "not significant" in noise.message
    real = latency.evaluate(canary(mean=3.0, p95=2.9, count=50_000, stable=False,
                                   **{"canary.latency_ms.buckets": lognormal_buckets(50_000, 2.5, 2.9)}), BALANCED)
    assert real.severity == pytest.approx(0.5) and real.observed["p_value"] < 1e-6


def test_relative_bounds_are_gated_the_same_way() -> None:
    # stable p95 5/3 -> relative bound 2.5 (a bucket's edge); the canary's 2.6 over 1,000 requests is noise
    buckets = lognormal_buckets(1000, 1.2, 2.5)
    buckets["counts"][4] -= 8  # 58 of 1,000 slower than 2.5 ms
    r = latency.evaluate(canary(p95=2.6, count=1000, **{"stable.latency_ms.p95": 5 / 3,
                                                         "canary.latency_ms.buckets": buckets}), BALANCED)
    assert r.severity == 0.0 and "stable 1.67ms" in r.message and "not significant" in r.message
    worse = lognormal_buckets(6000, 1.5, 2.9)
    r = latency.evaluate(canary(p95=2.9, count=6000, **{"stable.latency_ms.p95": 5 / 3,
                                                         "canary.latency_ms.buckets": worse}), BALANCED)
    assert r.severity > 0.0 and r.observed["p_value"] < 1e-6
