"""Overdispersion: how much wider than binomial (or Poisson) the noise of a rate really is.

The gates of the proportions assume every request independent. Production traffic is not:
clients stick to pods (gRPC, keep-alive), so one interval's accuracy, error rate or hit
rate wanders around its mean, and a canary on a few pods sees bursts the stable averages
away. A binomial test on 40,000 requests then calls a burst "significant" that is only
the traffic's own wander (docs/decisions.md#overdispersion).

The stable shows the same wander, so it is measured there: the stable's counts per analysis
interval (``SideMetrics.intervals``) give, for each proportion, its intra-class correlation
ρ (beta-binomial: an interval of m requests has variance ``m·p(1−p)·(1 + (m−1)ρ)``), and
for the request rate its variance beyond Poisson. Each estimate is the one-sided 95 %
upper confidence bound, not the point estimate: ten intervals give a noisy estimate, and
an underestimate would let the wander through as evidence, while an overestimate only
costs a little power (at ρ = 0 the bound is of the order of 1 / requests per interval).

The canary's test is then widened by its design effect, ``1 + (m_c − 1)ρ`` with m_c its
requests per interval, plus the stable's own sampling noise when the bound is relative
to the stable (the stable's rate is estimated too). Widening divides the counts by the
design effect before the exact test (an effective sample size, Kish's design effect):
the test keeps its exact form and the same rounding rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy.special import chdtri

from .snapshot import SideMetrics

MIN_INTERVALS = 4
"""Intervals needed before an estimate is made (three degrees of freedom)."""

CONFIDENCE = 0.95
"""One-sided confidence of the upper bound used for ρ and the rate's extra variance."""


class Dispersion(NamedTuple):
    """What the stable's intervals say about the noise beyond binomial (docs/decisions.md#overdispersion).

    ``accuracy``, ``errors``, ``cache``: intra-class correlations (upper bounds) of correct
    among labelled predictions, errors among requests, hits among lookups. ``rate``: the
    relative variance of one interval's request rate beyond Poisson (a CV of 0.5 is 0.25).
    ``intervals``: how many intervals they rest on. Zeros mean "binomial" (i.i.d.).
    ``estimate`` leaves a measure None when the stable's intervals could not show it (no
    labels, no requests); the machine then keeps the last value it recorded.
    """

    accuracy: float | None = 0.0
    errors: float | None = 0.0
    cache: float | None = 0.0
    rate: float | None = 0.0
    intervals: int = 0
    seconds: float | None = None
    """Length of the intervals measured (None: the analysis interval)."""


NONE = Dispersion()


@lru_cache(maxsize=256)
def _chi2_lower(dof: int) -> float:
    """The (1 − CONFIDENCE) quantile of χ²(dof): dividing X² by it bounds its scale from above."""
    return float(chdtri(dof, CONFIDENCE))


def _pairs(x: Sequence[float | None] | None, n: Sequence[float | None] | None) -> tuple[np.ndarray, np.ndarray]:
    """The intervals with both counts known, ``0 <= x <= n`` and ``n > 0``, as arrays."""
    if not x or not n:
        return _EMPTY, _EMPTY
    xs = np.array(x, dtype=float)  # None -> nan
    ns = np.array(n[:len(xs)], dtype=float)
    xs = xs[:len(ns)]
    keep = (ns > 0) & (xs >= 0) & (xs <= ns)  # nan compares False
    return xs[keep], ns[keep]


_EMPTY = np.zeros(0)


def icc_upper(x: Sequence[float | None] | None, n: Sequence[float | None] | None) -> float | None:
    """Upper bound on the intra-class correlation of ``x_i`` successes in ``n_i`` trials.

    Williams' moment estimator: under a beta-binomial with correlation ρ, Pearson's
    ``X² = Σ (x_i − n_i p̂)² / (n_i p̂ (1 − p̂))`` has expectation
    ``(k − 1) + ρ·Σ (1 − n_i/N)(n_i − 1)``. ``X²`` is taken as a scaled χ²(k − 1), whose
    scale is bounded from above by ``X² / χ²_{0.05}(k − 1)``; ρ follows. None with fewer
    than ``MIN_INTERVALS`` usable intervals, or when nothing or everything succeeded
    (no spread to measure).
    """
    xs, ns = _pairs(x, n)
    k = len(xs)
    if k < MIN_INTERVALS:
        return None
    total_n = float(ns.sum())
    p = float(xs.sum()) / total_n
    if p <= 0.0 or p >= 1.0:
        return None
    chi2 = float(np.sum((xs - ns * p) ** 2 / ns)) / (p * (1.0 - p))
    denominator = float(np.sum((1.0 - ns / total_n) * (ns - 1.0)))
    if denominator <= 0.0:
        return None
    scale = chi2 / _chi2_lower(k - 1)
    return min(1.0, max(0.0, (scale - 1.0) * (k - 1) / denominator))


def rate_excess_upper(counts: Sequence[float | None] | None) -> float | None:
    """Upper bound on the relative variance of an interval's count beyond Poisson.

    For counts ``y_i`` of equal intervals with mean ȳ: Poisson gives ``var = ȳ``; a rate
    multiplied per interval by a factor of relative variance c gives ``ȳ + c·ȳ²``. With the
    sample variance bounded from above as for ``icc_upper``, ``c = (s²_up − ȳ) / ȳ²``.
    """
    values = [float(c) for c in counts or () if c is not None and c >= 0]
    k = len(values)
    if k < MIN_INTERVALS:
        return None
    mean = sum(values) / k
    if mean <= 0.0:
        return None
    variance = sum((v - mean) ** 2 for v in values) / (k - 1)
    upper = variance * (k - 1) / _chi2_lower(k - 1)
    return max(0.0, (upper - mean) / (mean * mean))


def estimate(stable: SideMetrics | None) -> Dispersion | None:
    """The stable's dispersion from its per-interval counts; None when it has none."""
    intervals = stable.intervals if stable is not None else None
    if intervals is None:
        return None
    accuracy = icc_upper(intervals.predictions_correct, intervals.predictions_evaluated)
    # One correlation for every error check: the largest of the total's and each category's
    # (a category's bursts are diluted in the total, and its own check needs their width).
    found_errors = [icc_upper(points, intervals.requests) for points in
                    (intervals.errors, *(intervals.error_categories or {}).values())]
    known_errors = [e for e in found_errors if e is not None]
    errors = max(known_errors) if known_errors else None
    lookups = None
    if intervals.cache_hits is not None and intervals.cache_misses is not None:
        lookups = [None if h is None or m is None else h + m
                   for h, m in zip(intervals.cache_hits, intervals.cache_misses)]
    cache = icc_upper(intervals.cache_hits, lookups)
    rate = rate_excess_upper(intervals.requests)
    found = [v for v in (accuracy, errors, cache, rate) if v is not None]
    if not found:
        return None
    used = sum(1 for r in intervals.requests or () if r is not None)
    return Dispersion(accuracy, errors, cache, rate, used, intervals.seconds)


def per_interval(n: float, window_seconds: float | None, interval_seconds: float | None) -> float:
    """Samples per analysis interval in a window of ``n`` samples (the whole window when unknown)."""
    if not window_seconds or not interval_seconds or window_seconds <= interval_seconds:
        return n
    return n * interval_seconds / window_seconds


def design_effect(icc: float, per_interval_n: float) -> float:
    """Variance of a beta-binomial count over the binomial one: ``1 + (m − 1)ρ``, at least 1."""
    if icc <= 0.0 or per_interval_n <= 1.0:
        return 1.0
    return 1.0 + (per_interval_n - 1.0) * icc


def relative_design_effect(icc: float, n: float, per_interval_n: float, stable_n: float | None,
                           stable_per_interval: float | None, scale: float) -> float:
    """The canary's variance factor when its bound is ``scale`` × the stable's rate (or the
    stable's rate plus a constant: scale 1): the canary's own design effect plus the
    stable's estimate's variance, both over the canary's binomial variance.

    ``n·scale²·deff_s / N_s`` is that second term; it is left out without overdispersion
    (ρ = 0), where the stable's far larger sample was always taken as known.
    """
    own = design_effect(icc, per_interval_n)
    if icc <= 0.0 or not stable_n or stable_n <= 0.0:
        return own
    stable_deff = design_effect(icc, stable_per_interval if stable_per_interval else stable_n)
    return own + n * scale * scale * stable_deff / stable_n


def widened(x: float, n: float, deff: float) -> tuple[float, float]:
    """Counts with the same rate and ``n / deff`` trials: the effective sample."""
    if deff <= 1.0:
        return x, n
    return x / deff, n / deff


def rate_shapes(canary_n: float, stable_n: float, rate_excess: float, canary_intervals: float,
                stable_intervals: float) -> tuple[float, float]:
    """Gamma shapes of each side's count over its window, relative to its mean: Poisson
    (relative variance 1/N) plus the rate's wander, which averages over the window's
    intervals (c/k). The shape is one over that relative variance; the ratio of the two
    sides is then F(2·shape_c, 2·shape_s) (``checks.share_drop_check``)."""
    def shape(count: float, k: float) -> float:
        variance = (1.0 / count if count > 0 else 1.0) + rate_excess / max(k, 1.0)
        return 1.0 / variance
    return shape(canary_n, canary_intervals), shape(stable_n, stable_intervals)


__all__ = ["Dispersion", "NONE", "design_effect", "estimate", "icc_upper", "per_interval",
           "rate_excess_upper", "rate_shapes", "relative_design_effect", "widened"]
