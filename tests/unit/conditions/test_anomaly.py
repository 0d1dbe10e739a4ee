"""Anomaly: the detector ensemble over the canary's series, as a condition."""

from __future__ import annotations

import numpy as np
import pytest

from modelrollout.core.conditions import anomaly

from .support import DELETE, ctx, noise_series, snap

BALANCED = ctx()  # medium sensitivity, min confidence 0.8, 30 points


def with_series(series, **more):
    return snap(**{"canary.series": series, **more})


def spiked(sigmas: float, seed: int = 1):
    series = noise_series(seed)
    series["latency_p95_ms"][-1] = 2.1 + 0.05 * sigmas
    return series


def test_healthy_noise_is_not_triggered():
    r = anomaly.evaluate(snap(), BALANCED)
    assert (r.severity, r.critical, r.inconclusive, r.no_data) == (0.0, False, False, False)
    assert r.observed["confidence"] < 0.8 and r.samples == 30 and r.weight == 0.05


def test_a_spike_triggers_but_is_never_critical():
    r = anomaly.evaluate(with_series(spiked(10)), BALANCED)
    assert r.triggered and not r.critical
    assert r.observed["series"] == "latency_p95_ms" and r.observed["confidence"] >= 0.8
    assert r.message.startswith("latest point anomalous")


def test_reaching_min_confidence_always_triggers():
    flat = {"x": [1.0] * 29 + [2.0]}  # z and IQR both infinite: confidence exactly 0.8
    r = anomaly.evaluate(with_series(flat), BALANCED)
    assert r.observed["confidence"] == pytest.approx(0.8)
    assert r.severity == pytest.approx(anomaly.SEVERITY_FLOOR)
    assert r.observed["z"] is None  # infinite statistics are reported as None (status is JSON)


def test_severity_rises_with_confidence():
    c = ctx(overrides={"anomaly": {"minConfidence": 0.5}})
    r = anomaly.evaluate(with_series(spiked(10)), c)
    assert r.severity == pytest.approx((r.observed["confidence"] - 0.5) / 0.5)


@pytest.mark.parametrize("profile, triggered", [("conservative", True), ("balanced", False), ("aggressive", False)])
def test_sensitivity_per_profile(profile, triggered):
    # a 3.2-sigma spike: high sensitivity (z 3.0) calls it, medium (3.5) and low (4.0) do not
    series = {"x": (np.random.default_rng(3).standard_normal(29) * 0.1 + 5).tolist()}
    rest = np.array(series["x"])
    series["x"].append(float(rest.mean() + 3.2 * rest.std(ddof=1)))
    r = anomaly.evaluate(with_series(series), ctx(profile))
    assert r.triggered is triggered, r.observed


def test_iid_noise_rarely_triggers():
    triggered = sum(anomaly.evaluate(with_series(noise_series(seed)), BALANCED).triggered for seed in range(300))
    assert triggered <= 6


def test_too_few_points_is_inconclusive_with_progress():
    short = {k: v[:20] for k, v in noise_series().items()}
    r = anomaly.evaluate(with_series(short), BALANCED)
    assert r.inconclusive and not r.no_data and r.message.startswith("20/30 points")


def test_nulls_do_not_count_as_points():
    series = noise_series()
    series["rps"] = [None] * 5 + series["rps"][5:]
    short = {"rps": series["rps"]}
    r = anomaly.evaluate(with_series(short), BALANCED)
    assert r.inconclusive and r.samples == 25
    r = anomaly.evaluate(with_series(series), BALANCED)  # the other series have 30: rps sits out
    assert not r.inconclusive and r.observed["series_used"] == 2


@pytest.mark.parametrize("series", [DELETE, {}, {"x": [None] * 30}, {"x": []}])
def test_no_points_is_no_data(series):
    r = anomaly.evaluate(snap(**{"canary.series": series}), BALANCED)
    assert r.inconclusive and r.no_data
