"""The statistics the conditions rely on: binomial gates, KS on histograms, anomaly scores.

This module owns every probability the core computes, so that the conditions stay
plain bookkeeping (bounds, severities, evidence). Distributions come from scipy and
array work from numpy; nothing here re-derives a distribution by hand.

Speed shapes the code. The core must run all seven conditions at >= 10,000
evaluations per second on one core, so:

* binomial tails use the ``scipy.special`` ufuncs ``bdtr``/``bdtrc`` (a few µs) rather
  than ``scipy.stats.binom`` (tens to hundreds of µs: argument checking, frozen
  distributions), and are only computed when the observed rate is already beyond the
  bound — the only case in which the test can matter;
* the KS p-value uses the asymptotic Kolmogorov distribution
  (``scipy.special.kolmogorov``) rather than ``scipy.stats.kstwo`` (~0.5 ms);
* the anomaly detectors run on one small 2-D array for all series at once, and
  finish the per-series arithmetic on Python floats (k <= a handful of series);
* results built on every evaluation are ``NamedTuple``s — immutable like a frozen
  dataclass, but built several times faster (a frozen dataclass sets each field
  through ``object.__setattr__``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Literal, NamedTuple

import numpy as np
from scipy.special import bdtr, bdtrc, kolmogorov, pdtrc

from ..api.thresholds import Sensitivity

Worse = Literal["above", "below"]

_COUNT_TOLERANCE = 1e-6
"""Counts from Prometheus' ``increase()`` are floats; 399.9999999 is 400, not 399."""


# ------------------------------------------------------------------ binomial gate


class GateResult(NamedTuple):
    """Outcome of a one-sided binomial gate (a NamedTuple: built on the hot path, see module doc).

    ``beyond`` is True only when the observed rate is beyond the bound *and* the exact
    test rejects "the true rate is on the good side" at α. ``p_value`` is None when the
    observed rate is not beyond the bound (the test is then not run: it cannot reject).
    """

    beyond: bool
    p_value: float | None


_NOT_BEYOND = GateResult(False, None)


def binomial_gate(x: float, n: float, bound: float, worse: Worse, alpha: float) -> GateResult:
    """Is the rate ``x/n`` significantly beyond ``bound`` (one-sided exact binomial test)?

    ``worse="above"`` (errors: x = failures): crossed when ``x/n > bound`` and
    ``P(X >= x | n, bound) < alpha``. ``worse="below"`` (accuracy, hit rate: x =
    successes): crossed when ``x/n < bound`` and ``P(X <= x | n, bound) < alpha``.

    Non-integer counts (Prometheus ``increase()`` extrapolates) are rounded in the
    conservative direction — the one that can only raise the p-value — after a 1e-6
    tolerance for float noise: failures down and n up when worse is above, successes
    up and n down when worse is below. A fraction of a count never makes a test reject.

    Edges: ``n <= 0`` is never beyond (no evidence). A bound of 0 with worse above (or
    1 with worse below) is crossed by a single failure: its p-value is exactly 0.
    A bound at or past the far end (>= 1 above, <= 0 below) can never be crossed.
    """
    if n <= 0.0:
        return _NOT_BEYOND
    rate = x / n
    if worse == "above":
        if not rate > bound or bound >= 1.0:
            return _NOT_BEYOND
        failures = math.floor(x + _COUNT_TOLERANCE)
        trials = math.ceil(n - _COUNT_TOLERANCE)
        if failures < 1:
            return GateResult(False, 1.0)
        if failures > trials:  # more failures than trials (misaligned windows): P(X >= x) = 0
            p = 0.0
        else:
            p = float(bdtrc(failures - 1, trials, bound))  # P(X >= failures)
    else:
        if not rate < bound or bound <= 0.0:
            return _NOT_BEYOND
        successes = math.ceil(x - _COUNT_TOLERANCE)
        trials = math.floor(n + _COUNT_TOLERANCE)
        if successes >= trials:
            return GateResult(False, 1.0)
        p = float(bdtr(successes, trials, bound))  # P(X <= successes)
    return GateResult(p < alpha, p)


def poisson_gate(count: float, exposure: float, bound_rate: float, alpha: float) -> GateResult:
    """Is an event rate ``count / exposure`` significantly above ``bound_rate``?

    For rare events counted over a window (cache evictions): crossed when the observed
    rate is above the bound and the one-sided exact Poisson test rejects "the true rate
    is at most the bound": ``P(X >= count | mean = bound_rate · exposure) < alpha``.
    Without it, one eviction in a 5-minute window reads as 0.2/min, twice a 0.1/min
    bound — a healthy model rolled back for a single event. The count is rounded down
    (a fraction of an event never rejects); no exposure is never beyond.
    """
    if exposure <= 0.0:
        return _NOT_BEYOND
    if not count / exposure > bound_rate:
        return _NOT_BEYOND
    events = math.floor(count + _COUNT_TOLERANCE)
    if events < 1:
        return GateResult(False, 1.0)
    mean = bound_rate * exposure
    if mean <= 0.0:
        return GateResult(True, 0.0)
    p = float(pdtrc(events - 1, mean))  # P(X >= events)
    return GateResult(p < alpha, p)


# ------------------------------------------------------------- KS on histograms


class KSResult(NamedTuple):
    """Two-sample Kolmogorov–Smirnov result computed from binned (cumulative) data."""

    statistic: float
    p_value: float
    n_a: float
    n_b: float


def _cdf_at(le: Sequence[float], counts: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Step-function CDF of one cumulative histogram at ``edges`` (0 below the first bound)."""
    le_arr = np.asarray(le, dtype=float)
    cum = np.asarray(counts, dtype=float) / counts[-1]
    idx = np.searchsorted(le_arr, edges, side="right") - 1  # largest bound <= edge
    return np.where(idx >= 0, cum[np.maximum(idx, 0)], 0.0)


def ks_from_histograms(
    le_a: Sequence[float], counts_a: Sequence[float], le_b: Sequence[float], counts_b: Sequence[float]
) -> KSResult:
    """KS statistic D and p-value from two Prometheus-style cumulative histograms.

    How: each histogram gives its empirical CDF exactly at its own bucket bounds
    (``counts[i] / counts[-1]``). The two sets of bounds are merged; at a bound a
    histogram does not have, its CDF is the value at its largest bound below (the only
    value the data supports, a step function), 0 below its first bound.
    ``D = max |F_a − F_b|`` over the merged bounds. The p-value is the asymptotic
    Kolmogorov distribution at ``sqrt(n_e)·D`` with ``n_e = n_a·n_b / (n_a + n_b)``
    (``scipy.special.kolmogorov``), the same large-sample form ``scipy.stats.ks_2samp``
    uses in its asymptotic mode.

    Why this is conservative: the raw-sample D is a supremum over all points, and binning
    only lets us look at the bucket bounds, so the binned D is never larger than the raw
    one; and a given D maps to the same p-value. Binning can hide a drift that happens
    inside one bucket, never invent one. The asymptotic distribution is accurate for the
    sample sizes the condition requires (>= 100 predictions on the canary's side).

    Counts may be non-integer (``increase()`` extrapolation); n_a and n_b are used as
    they are. Raises ``ValueError`` when a histogram holds no observations: a KS test
    needs samples on both sides, and callers check the totals first.
    """
    n_a = float(counts_a[-1])
    n_b = float(counts_b[-1])
    if n_a <= 0.0 or n_b <= 0.0:
        raise ValueError(f"KS needs observations on both sides (totals {n_a:g} and {n_b:g})")
    if le_a == le_b:  # the usual case (same bucket layout): no alignment, plain floats are faster
        d = max(abs(a / n_a - b / n_b) for a, b in zip(counts_a, counts_b))
    else:
        edges = np.union1d(np.asarray(le_a, dtype=float), np.asarray(le_b, dtype=float))
        d = float(np.max(np.abs(_cdf_at(le_a, counts_a, edges) - _cdf_at(le_b, counts_b, edges))))
    en = n_a * n_b / (n_a + n_b)
    p = float(kolmogorov(math.sqrt(en) * d)) if d > 0.0 else 1.0
    return KSResult(statistic=d, p_value=min(1.0, p), n_a=n_a, n_b=n_b)


# ------------------------------------------------------------------ anomaly ensemble


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Detector cut-offs for one sensitivity: the statistic at which a detector scores 1."""

    z: float
    iqr_k: float


SENSITIVITY_CUTOFFS: Mapping[Sensitivity, Cutoffs] = {
    Sensitivity.LOW: Cutoffs(z=4.0, iqr_k=3.0),
    Sensitivity.MEDIUM: Cutoffs(z=3.5, iqr_k=2.5),
    Sensitivity.HIGH: Cutoffs(z=3.0, iqr_k=2.0),
}
"""Chosen by Monte Carlo on healthy series (3 series × 30 iid points, see docs/conditions.md):
with 30 points the latest of three Gaussian series passes |z| > 3 in ~2% of ticks by
chance alone, so medium sits at 3.5 (and Tukey's k = 2.5, about 4 sd for Gaussian data)."""

RAMP_START = 0.5
"""A detector scores 0 below this fraction of its cut-off and rises linearly to 1 at it.

A linear score from 0 would let three middling statistics add up to a trigger; the
ramp keeps ordinary noise at 0 so that only statistics near their cut-offs count."""

DETECTOR_WEIGHTS = (0.4, 0.4, 0.2)
"""Ensemble weights of the z-score, IQR-fence and correlation-change detectors.

The two point detectors carry most of the weight because a spike is what the condition
is for: a spike that both of them call certain reaches confidence 0.8 by itself, while
a correlation change alone (0.2) never triggers. The point detectors look at the same
thing in two ways (mean/sd versus quartiles), so both must agree.
"""

MIN_CORRELATION_HALF = 8
"""Points per half below which the correlation detector abstains (Fisher z needs n > 3)."""

_RHO_CAP = 0.999999


class AnomalyScores(NamedTuple):
    """Ensemble verdict on the latest point of a handful of short series.

    Scores are in [0, 1] (1: the detector's statistic reached its sensitivity cut-off).
    ``series`` names the series whose point detectors scored highest, ``pair`` the two
    series whose correlation changed most; ``z``, ``iqr_distance`` and
    ``correlation_change`` are the raw statistics behind the scores. ``points`` is the
    largest number of non-null points in any series and ``used`` how many series had
    enough points to be scored.
    """

    confidence: float
    z_score: float
    iqr_score: float
    correlation_score: float
    z: float
    iqr_distance: float
    correlation_change: float
    series: str | None
    pair: tuple[str, str] | None
    points: int = 0
    used: int = 0


def _ramp(ratio: float) -> float:
    """Detector score from statistic / cut-off: 0 up to ``RAMP_START``, 1 from 1, linear between."""
    s = (ratio - RAMP_START) / (1.0 - RAMP_START)
    return 0.0 if s <= 0.0 else 1.0 if s >= 1.0 else s


_FLAT = 1e-12
"""Relative variance below which a series counts as flat (sums of squares round)."""


class _Moments(NamedTuple):
    """Everything the detectors need from a block of k aligned series, as Python floats.

    ``gram_*`` are the (k+1)×(k+1) cross-product matrices of the earlier half (``h``
    points) and the recent half, the extra row being ones: ``gram[i][k]`` is row i's
    sum and ``gram[k][k]`` the number of points. ``sorted_rest`` holds each row without
    its latest point, sorted; ``last`` the latest point.
    """

    n: int
    h: int
    gram_early: list[list[float]]
    gram_recent: list[list[float]]
    sorted_rest: list[list[float]]
    last: list[float]


def _moments(rows: Sequence[Sequence[float]]) -> _Moments:
    """Two small matrix products over the rows (equal lengths, no gaps).

    Numpy's per-call overhead dominates on 30-point series, so it does only what it is
    good at — the products that give every sum, sum of squares and cross-product at
    once — and the per-row arithmetic is finished on floats.
    """
    n = len(rows[0])
    h = n // 2
    block = np.fromiter(chain(*rows, [1.0] * n), dtype=float, count=(len(rows) + 1) * n).reshape(-1, n)
    early, recent = block[:, :h], block[:, h:]
    return _Moments(
        n, h, np.dot(early, early.T).tolist(), np.dot(recent, recent.T).tolist(),
        [sorted(r[:-1]) for r in rows], [r[-1] for r in rows],
    )


def _point_scores(mo: _Moments, cut: Cutoffs) -> list[tuple[float, float, float, float]]:
    """Per row: z-score and IQR-fence scores and their raw statistics (z, distance in IQRs).

    The rest's mean and sample sd come from the sums; its quartiles by numpy's default
    (linear) interpolation on the sorted rest.
    """
    m = mo.n - 1
    k = len(mo.last)
    p1, p3 = (m - 1) * 0.25, (m - 1) * 0.75
    i1, i3 = int(p1), int(p3)
    f1, f3 = p1 - i1, p3 - i3
    j1, j3 = min(i1 + 1, m - 1), min(i3 + 1, m - 1)
    early, recent = mo.gram_early, mo.gram_recent
    out: list[tuple[float, float, float, float]] = []
    for i in range(k):
        last = mo.last[i]
        total = early[i][k] + recent[i][k] - last
        squares = early[i][i] + recent[i][i] - last * last
        mean = total / m
        var = (squares - total * mean) / (m - 1)
        sd = math.sqrt(var) if var > _FLAT * (squares / m) else 0.0
        dev = abs(last - mean)
        if dev <= 1e-9 * abs(mean):
            dev = 0.0
        rest = mo.sorted_rest[i]
        q1 = rest[i1] + (rest[j1] - rest[i1]) * f1
        q3 = rest[i3] + (rest[j3] - rest[i3]) * f3
        beyond = max(last - q3, q1 - last, 0.0)
        iqr = q3 - q1
        z = dev / sd if sd > 0.0 else (math.inf if dev > 0.0 else 0.0)
        distance = beyond / iqr if iqr > 0.0 else (math.inf if beyond > 0.0 else 0.0)
        out.append((_ramp(z / cut.z), _ramp(distance / cut.iqr_k), z, distance))
    return out


def _correlation_change(mo: _Moments, names: Sequence[str]) -> tuple[float, tuple[str, str] | None]:
    """Largest Fisher-z statistic of a change in pairwise correlation, earlier vs recent half.

    ``z = |atanh r_recent − atanh r_early| / sqrt(1/(h₁−3) + 1/(h₂−3))``, approximately
    standard normal when nothing changed. Correlations come from the grams (a ones row
    gives the sums). Pairs where either half of either series is flat have no
    correlation to compare and are left out.
    """
    k = len(names)
    h = mo.h
    if k < 2 or h < MIN_CORRELATION_HALF:
        return 0.0, None
    se = math.sqrt(1.0 / (h - 3) + 1.0 / (mo.n - h - 3))
    halves = []
    for gram in (mo.gram_early, mo.gram_recent):
        count = gram[k][k]
        sums = [gram[i][k] for i in range(k)]
        spread = [gram[i][i] - sums[i] * sums[i] / count for i in range(k)]
        halves.append((gram, count, sums, [v if v > _FLAT * gram[i][i] else 0.0 for i, v in enumerate(spread)]))
    best, pair = 0.0, None
    for i in range(k):
        for j in range(i + 1, k):
            fisher = []
            for gram, count, sums, spread in halves:
                if spread[i] == 0.0 or spread[j] == 0.0:
                    break
                r = (gram[i][j] - sums[i] * sums[j] / count) / math.sqrt(spread[i] * spread[j])
                fisher.append(math.atanh(-_RHO_CAP if r < -_RHO_CAP else _RHO_CAP if r > _RHO_CAP else r))
            else:
                z = abs(fisher[1] - fisher[0]) / se
                if z > best:
                    best, pair = z, (names[i], names[j])
    return best, pair


_NOTHING = AnomalyScores(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None)


def anomaly_scores(
    series: Mapping[str, Sequence[float | None]], sensitivity: Sensitivity, min_points: int = 4
) -> AnomalyScores:
    """Ensemble anomaly confidence of the latest point of each series (oldest first).

    Detectors, each scored in [0, 1] by ``_ramp(statistic / cut-off)`` — 0 below half the
    sensitivity's cut-off (``SENSITIVITY_CUTOFFS``), 1 at and beyond it:

    * **z-score**: ``|latest − mean(rest)| / sd(rest)`` against ``z``;
    * **IQR fence**: how far the latest point lies outside the rest's quartile box, in
      IQRs, against ``k`` (1 at Tukey's fence ``Q3 + k·IQR``);
    * **correlation change**: for each pair of series, the Fisher-z statistic of the
      difference between their correlation in the earlier and in the recent half,
      against ``z``.

    ``confidence = 0.4·z + 0.4·IQR`` (from the series where that sum is largest)
    ``+ 0.2·correlation`` (largest over pairs). Null points are dropped per series;
    the correlation uses only the ticks where every series has a value, series being
    aligned on their latest point. A series whose rest is perfectly flat scores 1 on
    both point detectors if its latest point differs at all. Series with fewer than
    ``min_points`` non-null points (at least 4) sit out; with none left, every score is 0.
    """
    cut = SENSITIVITY_CUTOFFS[sensitivity]
    floor = max(4, min_points)
    names: list[str] = []
    values: list[Sequence[float | None]] = []
    gaps = False
    most = 0
    for name, raw in series.items():
        nulls = raw.count(None) if isinstance(raw, list) else sum(p is None for p in raw)
        count = len(raw) - nulls
        most = max(most, count)
        if count >= floor:
            names.append(name)
            values.append(raw)
            gaps = gaps or nulls > 0 or len(raw) != len(values[0])
    if not names:
        return _NOTHING._replace(points=most)
    if gaps:
        rows = [[p for p in v if p is not None] for v in values]
        points = [_point_scores(_moments([r]), cut)[0] for r in rows]
        length = max(len(v) for v in values)
        padded = [[None] * (length - len(v)) + list(v) for v in values]
        aligned = [list(col) for col in zip(*padded) if None not in col]
        if len(aligned) >= 4:
            corr, pair = _correlation_change(_moments([list(r) for r in zip(*aligned)]), names)
        else:
            corr, pair = 0.0, None
    else:
        mo = _moments(values)  # type: ignore[arg-type]
        points = _point_scores(mo, cut)
        corr, pair = _correlation_change(mo, names)
    w_z, w_iqr, w_corr = DETECTOR_WEIGHTS
    best, best_i = -1.0, 0
    for i, (z_score, iqr_score, _, _) in enumerate(points):
        combined = w_z * z_score + w_iqr * iqr_score
        if combined > best:
            best, best_i = combined, i
    z_score, iqr_score, z, distance = points[best_i]
    corr_score = _ramp(corr / cut.z)
    return AnomalyScores(
        min(1.0, best + w_corr * corr_score), z_score, iqr_score, corr_score, z, distance, corr,
        names[best_i], pair, most, len(names),
    )
