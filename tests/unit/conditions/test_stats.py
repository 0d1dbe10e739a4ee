"""Statistics: binomial gates against scipy.stats, KS from histograms against ks_2samp, anomaly ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import binom, ks_2samp

from modelrollout.api.thresholds import Sensitivity
from modelrollout.core.stats import (
    SENSITIVITY_CUTOFFS,
    anomaly_scores,
    binomial_gate,
    ks_from_histograms,
)

# ------------------------------------------------------------------ binomial gate


@pytest.mark.parametrize("n, bound, alpha", [(100, 0.05, 0.05), (500, 0.01, 0.05), (2000, 0.02, 0.005), (37, 0.2, 0.1)])
def test_gate_above_flips_where_scipy_says(n, bound, alpha):
    # smallest failure count whose upper tail P(X >= x) is below alpha
    boundary = min(x for x in range(n + 1) if binom.sf(x - 1, n, bound) < alpha)
    below, at = binomial_gate(boundary - 1, n, bound, "above", alpha), binomial_gate(boundary, n, bound, "above", alpha)
    assert not below.beyond and at.beyond
    assert at.p_value == pytest.approx(binom.sf(boundary - 1, n, bound), rel=1e-9)


@pytest.mark.parametrize("n, bound, alpha", [(100, 0.85, 0.05), (1000, 0.98, 0.05), (300, 0.5, 0.01), (150, 0.9, 0.1)])
def test_gate_below_flips_where_scipy_says(n, bound, alpha):
    boundary = max(x for x in range(n + 1) if binom.cdf(x, n, bound) < alpha)
    at, above = binomial_gate(boundary, n, bound, "below", alpha), binomial_gate(boundary + 1, n, bound, "below", alpha)
    assert at.beyond and not above.beyond
    assert at.p_value == pytest.approx(binom.cdf(boundary, n, bound), rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1), bound=st.floats(0.001, 0.999), above=st.booleans())
@example(n=418, frac=0.9375, bound=0.15625, above=True)  # a tail of 1.8e-277 (found by a CI run)
@example(n=359, frac=0.046875, bound=0.8828125, above=False)  # 2.3e-291, 1.5e-4 apart (found locally)
@example(n=467, frac=0.0625, bound=0.8125, above=False)  # 1.1e-275, 1.1e-2 apart (found locally)
@example(n=599, frac=0.03125, bound=0.71875, above=False)  # 1.9e-287, 11 % apart (found locally)
def test_gate_p_value_is_the_exact_binomial_tail(n, frac, bound, above):
    x = round(frac * n)
    gate = binomial_gate(x, n, bound, "above" if above else "below", 0.05)
    beyond = x / n > bound if above else x / n < bound
    if not beyond:
        assert not gate.beyond and gate.p_value is None
        return
    expected = binom.sf(x - 1, n, bound) if above else binom.cdf(x, n, bound)
    # scipy's binom and the gate's bdtr/bdtrc are two algorithms: they agree to 1e-6 except in
    # tails far past any alpha (seen: 3.4e-6 apart at p = 1.8e-277, n = 418, 1.5e-4 at
    # p = 2.3e-291, n = 359, and 1.1e-2 at p = 1.1e-275, n = 467), where only the order of
    # magnitude can matter (seen 11 % apart at p = 1.9e-287, n = 599): there, within a factor e.
    if expected > 1e-100:
        assert gate.p_value == pytest.approx(expected, rel=1e-6, abs=1e-300)
    else:
        assert gate.p_value is not None and gate.p_value < 1e-90
        if gate.p_value > 0 and expected > 0:
            assert abs(math.log(gate.p_value) - math.log(expected)) < 1.0
    assert gate.beyond == (expected < 0.05)


def test_rate_on_the_good_side_runs_no_test():
    assert binomial_gate(1, 100, 0.05, "above", 0.05).p_value is None
    assert binomial_gate(99, 100, 0.85, "below", 0.05).p_value is None
    assert binomial_gate(5, 100, 0.05, "above", 0.05).p_value is None  # at the bound is not beyond


def test_no_trials_is_never_beyond():
    assert binomial_gate(0, 0, 0.05, "above", 0.05) == binomial_gate(0, 0, 0.9, "below", 0.05)
    assert not binomial_gate(0, 0, 0.05, "above", 0.05).beyond


def test_bound_zero_or_one_is_crossed_by_a_single_event():
    assert binomial_gate(1, 1000, 0.0, "above", 0.05).beyond
    assert binomial_gate(1, 1000, 0.0, "above", 0.05).p_value == 0.0
    assert binomial_gate(999, 1000, 1.0, "below", 0.05).beyond
    assert not binomial_gate(1000, 1000, 1.0, "below", 0.05).beyond


def test_bounds_at_the_far_end_are_never_crossed():
    assert not binomial_gate(1000, 1000, 1.0, "above", 0.05).beyond
    assert not binomial_gate(0, 1000, 0.0, "below", 0.05).beyond
    assert not binomial_gate(1000, 1000, 1.3, "above", 0.05).beyond  # a relative bound past 1


def test_non_integer_counts_round_conservatively():
    n, bound = 500, 0.05
    boundary = min(x for x in range(n + 1) if binom.sf(x - 1, n, bound) < 0.05)
    # a fraction of a failure never tips the test: boundary - 0.4 failures acts like boundary - 1
    assert not binomial_gate(boundary - 0.4, n, bound, "above", 0.05).beyond
    assert binomial_gate(boundary - 1e-9, n, bound, "above", 0.05).beyond  # float noise is not a fraction
    assert not binomial_gate(boundary, n + 0.3, bound, "above", 0.05).p_value < binom.sf(boundary - 1, n, bound)
    m, b = 200, 0.85
    below = max(x for x in range(m + 1) if binom.cdf(x, m, b) < 0.05)
    # successes round up: boundary + 0.5 acts like boundary + 1 (not significant)
    assert binomial_gate(below, m, b, "below", 0.05).beyond
    assert not binomial_gate(below + 0.5, m, b, "below", 0.05).beyond
    assert binomial_gate(below + 1e-9, m, b, "below", 0.05).beyond


def test_more_failures_than_trials_is_beyond():
    gate = binomial_gate(12, 10, 0.5, "above", 0.05)
    assert gate.beyond and gate.p_value == 0.0


# ------------------------------------------------------------------ KS from histograms


def cumulative(samples: np.ndarray, le: list[float]) -> list[float]:
    return [float(np.count_nonzero(samples <= edge)) for edge in le]


def test_identical_histograms_have_no_drift():
    le = [0.1 * i for i in range(1, 11)]
    counts = [0, 3, 10, 40, 90, 200, 400, 700, 900, 1000]
    ks = ks_from_histograms(le, counts, le, [c * 7 for c in counts])
    assert ks.statistic == 0.0 and ks.p_value == 1.0
    assert (ks.n_a, ks.n_b) == (1000, 7000)


def test_shifted_beta_distributions_are_significant():
    rng = np.random.default_rng(3)
    le = [0.1 * i for i in range(1, 11)]
    a, b = rng.beta(8, 2, 500), rng.beta(6, 3, 50_000)
    ks = ks_from_histograms(le, cumulative(a, le), le, cumulative(b, le))
    assert ks.statistic > 0.1 and ks.p_value < 1e-6


def test_same_distribution_is_not_significant():
    rng = np.random.default_rng(4)
    le = [0.05 * i for i in range(1, 21)]
    a, b = rng.beta(8, 2, 500), rng.beta(8, 2, 50_000)
    ks = ks_from_histograms(le, cumulative(a, le), le, cumulative(b, le))
    assert ks.p_value > 0.05


@pytest.mark.parametrize("seed, shift", [(5, 0.0), (6, 0.5), (7, 1.0), (8, 2.0)])
def test_fine_bins_agree_with_ks_2samp_on_raw_samples(seed, shift):
    rng = np.random.default_rng(seed)
    a, b = rng.beta(8 - shift, 2, 400), rng.beta(8, 2, 3000)
    le = list(np.linspace(0.0005, 1.0, 2000))
    ks = ks_from_histograms(le, cumulative(a, le), le, cumulative(b, le))
    raw = ks_2samp(a, b, method="asymp")
    assert ks.statistic <= raw.statistic + 1e-12  # binning can only shrink D
    assert ks.statistic == pytest.approx(raw.statistic, abs=0.01)
    if raw.pvalue > 1e-12:
        assert math.log10(ks.p_value) == pytest.approx(math.log10(raw.pvalue), abs=0.5)


def test_coarse_bins_never_exceed_raw_d():
    rng = np.random.default_rng(9)
    for _ in range(20):
        a, b = rng.beta(5, 2, 300), rng.beta(4, 2, 300)
        le = sorted(set(np.round(rng.uniform(0, 1, 8), 3).tolist())) + [1.0]
        ks = ks_from_histograms(le, cumulative(a, le), le, cumulative(b, le))
        assert ks.statistic <= ks_2samp(a, b).statistic + 1e-12


def test_different_bucket_layouts_are_aligned_as_step_functions():
    # A has bounds 0.5, 1.0; B has 0.25, 0.5, 0.75, 1.0
    ks = ks_from_histograms([0.5, 1.0], [50, 100], [0.25, 0.5, 0.75, 1.0], [10, 50, 60, 100])
    # at 0.25: F_a = 0 (below its first bound), F_b = 0.1; at 0.75: F_a = 0.5, F_b = 0.6
    assert ks.statistic == pytest.approx(0.1)
    ks2 = ks_from_histograms([0.5, 1.0], [50, 100], [0.25, 0.5, 0.75, 1.0], [40, 50, 95, 100])
    assert ks2.statistic == pytest.approx(0.45)  # at 0.75: 0.5 vs 0.95


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=2, max_size=12), st.lists(st.integers(0, 50), min_size=2, max_size=12))
def test_aligned_path_matches_the_general_path(inc_a, inc_b):
    size = min(len(inc_a), len(inc_b))
    le = [float(i + 1) for i in range(size)]
    ca, cb = np.cumsum(inc_a[:size]).tolist(), np.cumsum(inc_b[:size]).tolist()
    if ca[-1] == 0 or cb[-1] == 0:
        return
    same = ks_from_histograms(le, ca, le, cb)
    # a bound nobody observes in B's layout forces the general (union) path with the same CDFs
    le_b = le + [le[-1] + 1.0]
    general = ks_from_histograms(le, ca, le_b, cb + [cb[-1]])
    assert same.statistic == pytest.approx(general.statistic, abs=1e-12)
    assert same.p_value == pytest.approx(general.p_value, rel=1e-9)


def test_empty_histogram_is_an_error():
    with pytest.raises(ValueError, match="both sides"):
        ks_from_histograms([1.0], [0], [1.0], [5])


# ------------------------------------------------------------------ anomaly ensemble


def three(seed: int, n: int = 30) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((3, n))
    return {"latency_p95_ms": (2 + 0.1 * m[0]).tolist(), "error_rate": (0.01 + 0.001 * m[1]).tolist(),
            "rps": (2000 + 20 * m[2]).tolist()}


@pytest.mark.parametrize("sensitivity", list(Sensitivity))
def test_a_spike_in_the_latest_point_is_confident(sensitivity):
    series = three(1)
    series["latency_p95_ms"][-1] = 2 + 0.1 * 8  # 8 sd above
    scores = anomaly_scores(series, sensitivity)
    assert scores.confidence >= 0.8
    assert scores.series == "latency_p95_ms" and scores.z > 6
    assert scores.z_score == 1.0 and scores.iqr_score == 1.0


def test_a_drop_counts_too():
    series = three(2)
    series["rps"][-1] = 2000 - 20 * 9
    assert anomaly_scores(series, Sensitivity.MEDIUM).confidence >= 0.8


def test_healthy_noise_is_rarely_confident():
    """Monte Carlo of A/A series: the per-tick rate at which noise alone reaches 0.8."""
    rate = {s: np.mean([anomaly_scores(three(1000 + i), s).confidence >= 0.8 for i in range(2000)])
            for s in Sensitivity}
    assert rate[Sensitivity.LOW] <= 0.003
    assert rate[Sensitivity.MEDIUM] <= 0.01
    assert rate[Sensitivity.HIGH] <= 0.03
    assert rate[Sensitivity.LOW] <= rate[Sensitivity.MEDIUM] <= rate[Sensitivity.HIGH]


def test_higher_sensitivity_is_never_less_confident():
    for seed in range(50):
        series = three(seed)
        series["error_rate"][-1] += 0.001 * (seed % 7)
        low, med, high = (anomaly_scores(series, s).confidence for s in Sensitivity)
        assert low <= med <= high


def test_a_correlation_break_alone_does_not_trigger():
    rng = np.random.default_rng(5)
    base = rng.standard_normal(30)
    other = np.concatenate([base[:15], -base[15:]]) + 0.05 * rng.standard_normal(30)
    scores = anomaly_scores({"a": base.tolist(), "b": other.tolist()}, Sensitivity.HIGH)
    assert scores.correlation_score == 1.0 and scores.pair == ("a", "b")
    assert scores.confidence < 0.8


def test_flat_series_that_moves_is_anomalous_and_one_that_stays_is_not():
    flat = {"x": [0.0] * 30}
    assert anomaly_scores(flat, Sensitivity.MEDIUM).confidence == 0.0
    flat["x"][-1] = 0.001
    scores = anomaly_scores(flat, Sensitivity.MEDIUM)
    assert scores.confidence == pytest.approx(0.8) and math.isinf(scores.z)
    tenths = {"x": [0.1] * 30}  # sums of squares of 0.1 round; still flat
    assert anomaly_scores(tenths, Sensitivity.MEDIUM).confidence == 0.0


def test_gaps_are_dropped_per_series():
    series = three(6)
    gapped = {k: list(v) for k, v in series.items()}
    gapped["rps"] = [None, None] + gapped["rps"][2:]
    trimmed = {k: list(v) for k, v in series.items()}
    trimmed["rps"] = trimmed["rps"][2:]
    only_rps = lambda s: anomaly_scores({"rps": s["rps"]}, Sensitivity.MEDIUM)  # noqa: E731
    assert only_rps(gapped).z == pytest.approx(only_rps(trimmed).z)
    assert only_rps(gapped).iqr_distance == pytest.approx(only_rps(trimmed).iqr_distance)
    # the correlation uses the ticks all series share, aligned on the latest point
    assert anomaly_scores(gapped, Sensitivity.MEDIUM).correlation_change == pytest.approx(
        anomaly_scores({k: v[2:] for k, v in series.items()}, Sensitivity.MEDIUM).correlation_change)


def test_point_statistics_match_numpy():
    series = three(8)
    for name, values in series.items():
        scores = anomaly_scores({name: values}, Sensitivity.MEDIUM)
        rest, last = np.array(values[:-1]), values[-1]
        assert scores.z == pytest.approx(abs(last - rest.mean()) / rest.std(ddof=1), rel=1e-6)
        q1, q3 = np.percentile(rest, [25, 75])
        assert scores.iqr_distance == pytest.approx(max(last - q3, q1 - last, 0) / (q3 - q1), rel=1e-6, abs=1e-9)


def test_correlation_change_matches_numpy():
    series = three(10)
    a, b = np.array(series["latency_p95_ms"]), np.array(series["rps"])
    r1, r2 = np.corrcoef(a[:15], b[:15])[0, 1], np.corrcoef(a[15:], b[15:])[0, 1]
    expected = abs(np.arctanh(r2) - np.arctanh(r1)) / math.sqrt(2 / 12)
    got = anomaly_scores({"latency_p95_ms": series["latency_p95_ms"], "rps": series["rps"]}, Sensitivity.MEDIUM)
    assert got.correlation_change == pytest.approx(expected, rel=1e-6)


def test_cutoffs_tighten_with_sensitivity():
    low, med, high = (SENSITIVITY_CUTOFFS[s] for s in Sensitivity)
    assert low.z > med.z > high.z and low.iqr_k > med.iqr_k > high.iqr_k
