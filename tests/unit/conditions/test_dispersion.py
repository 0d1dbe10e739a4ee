"""Overdispersion (docs/decisions.md#overdispersion): the stable's wander measured, the gates widened by it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest

from modelrollout.core import dispersion
from modelrollout.core.conditions import accuracy, cache, errors, throughput
from modelrollout.core.dispersion import Dispersion, icc_upper, rate_excess_upper

from .support import ctx, snap

INTERVAL = timedelta(seconds=30)


def beta_binomial(rng: np.random.Generator, n: int, p: float, icc: float, k: int) -> tuple[list[float], list[float]]:
    total = 1.0 / icc - 1.0
    ps = rng.beta(p * total, (1 - p) * total, size=k)
    x = rng.binomial(n, ps)
    return x.astype(float).tolist(), [float(n)] * k


def test_the_icc_bound_covers_the_truth_and_stays_near_zero_for_binomial_data() -> None:
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(300):
        x, n = beta_binomial(rng, 5000, 0.92, 0.02, 30)
        covered.append(icc_upper(x, n) >= 0.02)  # type: ignore[operator]
    assert 0.91 <= np.mean(covered) <= 0.99  # a 95 % upper bound
    binomial = [icc_upper(rng.binomial(5000, 0.92, size=30).astype(float).tolist(), [5000.0] * 30)
                for _ in range(300)]
    assert max(binomial) < 0.002 and np.median(binomial) < 0.0005  # of the order of 1/n per interval


def test_the_rate_bound_covers_a_wandering_rate_and_not_a_poisson_one() -> None:
    rng = np.random.default_rng(8)
    wandering = [rate_excess_upper(rng.poisson(60_000 * rng.gamma(4.0, 0.25, size=30)).tolist()) for _ in range(300)]
    assert 0.91 <= np.mean([w >= 0.25 for w in wandering]) <= 0.99  # type: ignore[operator]
    poisson = [rate_excess_upper(rng.poisson(60_000, size=30).tolist()) for _ in range(300)]
    assert max(poisson) < 0.0002  # type: ignore[type-var]


def test_too_few_intervals_or_no_spread_give_no_estimate() -> None:
    assert icc_upper([1, 2, 3], [10, 10, 10]) is None
    assert icc_upper([0, 0, 0, 0], [10, 10, 10, 10]) is None  # nothing succeeded: no spread to measure
    assert icc_upper([5, None, 6, 7, 8, 2], [10, 10, None, 10, 10, 10]) is not None  # gaps skipped, four left
    assert rate_excess_upper([0, 0, 0, 0]) is None
    assert dispersion.estimate(None) is None


def stable_intervals(rng: np.random.Generator, icc: float, k: int = 30) -> dict[str, list[float]]:
    requests = [57_000.0] * k
    hits, _ = beta_binomial(rng, 57_000, 0.985, icc, k)
    evaluated = [5_700.0] * k
    correct, _ = beta_binomial(rng, 5_700, 0.92, icc, k)
    errs, _ = beta_binomial(rng, 57_000, 0.0019, icc, k)
    return {"requests": requests, "errors": errs, "predictions_evaluated": evaluated, "predictions_correct": correct,
            "cache_hits": hits, "cache_misses": [r - h for r, h in zip(requests, hits)]}


def test_estimate_reads_every_proportion_of_the_stables_intervals() -> None:
    s = snap(**{"stable.intervals": stable_intervals(np.random.default_rng(3), 0.01)})
    d = dispersion.estimate(s.stable)
    assert d is not None and d.intervals == 30
    for value in (d.accuracy, d.errors, d.cache):
        assert value is not None and 0.003 < value < 0.05
    assert d.rate is not None and d.rate < 1e-6  # constant requests: no wander


def wandering(icc: float = 0.0, rate: float = 0.0) -> dispersion.Dispersion:
    return Dispersion(accuracy=icc, errors=icc, cache=icc, rate=rate, intervals=30)


def with_dispersion(d: Dispersion, **kw: object):
    return dataclasses.replace(ctx(interval=INTERVAL, **kw), dispersion=d)


# A canary's window of 5 minutes (10 intervals) at 2,000 requests per interval.
WINDOWS = {"windows": {"accuracy": 300, "cache": 300, "errorRate": 300, "throughput": 300}}


def canary(**fields: float):
    changes = {f"canary.{k}": v for k, v in fields.items()}
    return snap(**changes, **{"windows": WINDOWS["windows"]})


def test_a_wander_the_stable_shows_is_not_evidence_but_a_real_drop_still_is() -> None:
    # hit rate 0.975 over 20,000 lookups against a 0.98 bound: p ~ 1e-4 under binomial noise
    wander = canary(**{"cache.hits": 19_500.0, "cache.misses": 500.0})
    assert cache.evaluate(wander, ctx(interval=INTERVAL)).triggered
    widened = cache.evaluate(wander, with_dispersion(wandering(0.01)))
    assert not widened.triggered and "not significant" in widened.message
    # a canary at 0.85 is far beyond anything a wander of that size explains
    bad = canary(**{"cache.hits": 17_000.0, "cache.misses": 3_000.0})
    assert cache.evaluate(bad, with_dispersion(wandering(0.01))).critical


def test_accuracy_relative_bound_adds_the_stables_own_noise() -> None:
    # canary 0.885 over 3,000 labels vs stable 0.92 × 0.95 = 0.874 ... not beyond; at 0.86 it is
    ok = canary(predictions_evaluated=3000.0, predictions_correct=2580.0)
    plain = accuracy.evaluate(ok, ctx(interval=INTERVAL))
    widened = accuracy.evaluate(ok, with_dispersion(wandering(0.02)))
    assert plain.triggered and not widened.triggered
    far = canary(predictions_evaluated=3000.0, predictions_correct=2400.0)  # 0.80
    assert accuracy.evaluate(far, with_dispersion(wandering(0.02))).triggered


def test_error_bursts_within_the_wander_are_not_critical() -> None:
    burst = canary(**{"requests": 20_000.0, "errors.timeout": 60.0})  # total ~0.7 % vs 0.5 % timeout bound
    assert errors.evaluate(burst, ctx(interval=INTERVAL)).triggered
    assert not errors.evaluate(burst, with_dispersion(wandering(0.01))).critical


def test_throughput_share_drop_is_gated_by_the_rates_wander() -> None:
    # canary at 5 % serving 1,200 RPS where 2,000 is its share: a 40 % drop over 5 minutes
    drop = snap(**{"canary.rps": 1200.0, "stable.rps": 38_000.0, "windows": {"throughput": 300}})
    steady = throughput.evaluate(drop, ctx(interval=INTERVAL))
    assert steady.triggered and steady.observed["p_value"] is not None and steady.observed["p_value"] < 1e-6
    noisy = throughput.evaluate(drop, with_dispersion(wandering(rate=0.25)))
    assert not noisy.triggered and "not significant" in noisy.message  # a 0.5 CV per interval hides it
    collapse = snap(**{"canary.rps": 100.0, "stable.rps": 38_000.0, "windows": {"throughput": 300}})
    assert throughput.evaluate(collapse, with_dispersion(wandering(rate=0.25))).critical


def test_one_interval_of_a_wandering_rate_is_no_evidence() -> None:
    young = snap(**{"canary.rps": 100.0, "stable.rps": 38_000.0, "windows": {"throughput": 30}})
    c = dataclasses.replace(ctx(interval=INTERVAL, step_age=timedelta(seconds=30)), dispersion=wandering(rate=0.25))
    r = throughput.evaluate(young, c)
    assert not r.triggered and "waits for 2 intervals" in r.message


@pytest.mark.parametrize("icc", [0.0, 0.001, 0.05])
def test_design_effect_grows_with_requests_per_interval(icc: float) -> None:
    small, large = dispersion.design_effect(icc, 10), dispersion.design_effect(icc, 10_000)
    assert 1.0 <= small <= large and (icc > 0) == (large > 1.0)
