"""Synthetic model-serving traffic, turned into Snapshot v1 objects tick by tick.

The judgement benchmark (``bench_judgement.py``) and the replay examples
(``make_replay_examples.py``) drive whole rollouts through the real state machine on
traffic drawn here. The generator plays the part of the model servers *and* of the
Prometheus adapter: it draws what the servers would count in each analysis interval,
then sums those counts over the window the core asks for
(``core.windows.plan_windows``), exactly as the adapter's ``increase(...[window])``
queries would.

Per interval (one *bin* per tick, ``dt`` seconds long) and per side:

* requests: per-second Poisson traffic summed over the bin, i.e. ``Poisson(rps·dt)``;
  the canary's rps is the service's total times the canary weight that held during
  the bin (read from the carried status), the stable serves the rest;
* errors: binomial per category; labelled predictions ``Binomial(requests, label_share)``
  and correct ones ``Binomial(labelled, accuracy)``; cache hits binomial; evictions Poisson;
* latency: lognormal. Small bins (<= ``RAW_MAX`` requests) draw every request; larger
  ones draw, per bin, the latency sum (normal, by the CLT) and the number of requests
  at or below the distribution's true p95 and p99 (binomial). A window's quantile is
  then the Bahadur estimate ``x_p + (p − F_n(x_p)) / f(x_p)``: asymptotically normal with
  sd ``sqrt(p(1−p)/n) / f(x_p)`` — the sampling noise of a sample quantile — and
  correlated across overlapping windows as real estimates are;
* prediction confidence: Beta-distributed, multinomial over ten buckets
  (le = 0.1 … 1.0), cumulated over the window into a Prometheus-style histogram.

The stable's side of each comparison uses the canary's window when the stable has the
condition's minimum samples there, otherwise a 24 h baseline drawn once per rollout at
the stable's healthy parameters with all of the service's traffic (as before the
rollout); at 100 % the stable serves nothing, so the baseline is used. Confidence
drift always compares against the baseline, as docs/design.md#the-stables-side says.

RPS (throughput) is a rate, not a count: the canary's rps is normalised by its current
weight in the core, so a window straddling a weight change would understate it. The
generator therefore reads rps over ``min(nominal window, time since the weight last
changed)`` (``rps_window="step"``, the default; this is what we recommend the
Prometheus adapter do). ``rps_window="nominal"`` reproduces the naive
``rate(...[5m])`` across the change.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from scipy import stats

from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus
from modelrollout.core.snapshot import (
    ERROR_CATEGORIES,
    Cache,
    CanaryHealth,
    ErrorCounts,
    Health,
    Histogram,
    Intervals,
    Latency,
    SideMetrics,
    Snapshot,
)

LE = [round(0.1 * i, 1) for i in range(1, 11)]
RAW_MAX = 400
"""Bins with at most this many requests draw every request's latency."""
SERIES_POINTS = 30
BASELINE_SECONDS = 86_400.0
HEALTHY_ERRORS: dict[str, float] = {
    "extraction": 0.001, "serialization": 0.0001, "timeout": 0.0005, "cache": 0.0001, "other": 0.0002,
}

DURATION_BUCKETS_MS: tuple[float, ...] = tuple(1000.0 * b for b in (
    0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.00225, 0.0025,
    0.00275, 0.003, 0.0035, 0.004, 0.0045, 0.005, 0.006, 0.007, 0.008, 0.01, 0.0125,
    0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
))
"""Request-latency bucket bounds (ms) of the simulator's ``model_request_duration_seconds``."""
_BUCKET_EDGES = np.asarray(DURATION_BUCKETS_MS)

# Layout of one bin's count vector.
_REQ = 0
_ERR = slice(1, 6)
_EVAL = 6
_CORRECT = 7
_LAT_SUM = 8
_BELOW95 = 9
_BELOW99 = 10
_CONF = slice(11, 21)
_HITS = 21
_EVICT = 22
_BUCKETS = slice(23, 23 + len(DURATION_BUCKETS_MS) + 1)   # per bucket (not cumulative), +Inf last
_WIDTH = 23 + len(DURATION_BUCKETS_MS) + 1


@dataclass(frozen=True)
class Behaviour:
    """What one model does: the parameters its traffic is drawn from."""

    accuracy: float = 0.92
    latency_mean_ms: float = 1.4
    latency_p95_ms: float = 2.1
    latency_scale: float = 1.0
    error_rates: dict[str, float] = field(default_factory=lambda: dict(HEALTHY_ERRORS))
    confidence_beta: tuple[float, float] = (9.0, 2.0)
    hit_rate: float = 0.985
    evictions_per_minute: float = 0.02
    lookup_ms: float = 1.1

    def scaled(self, **changes: Any) -> "Behaviour":
        return replace(self, **changes)


HEALTHY = Behaviour()


@dataclass(frozen=True)
class Shape:
    """How far the traffic departs from what the statistical gates assume (all off: i.i.d.).

    Production traffic is not i.i.d. (docs/benchmarks.md#production-shaped-traffic): clients
    stick to pods, so each interval's rate and proportions wander around their means on each
    side independently; load follows the day; labels come late; latency is only seen through
    histogram buckets; scrapes go missing; a new canary starts cold.
    """

    rate_cv: float = 0.0
    """Each side's request rate in each interval is its mean × Gamma(mean 1, this CV)."""
    icc: tuple[float, float] | None = None
    """Intra-class correlation of the proportions (accuracy, each error category, cache
    hits), drawn per rollout log-uniformly in this range: each interval's probability is
    Beta-distributed around the true one, so counts are beta-binomial."""
    diurnal_swing: float = 1.0
    """Peak-to-trough ratio of the service's load over 24 h (a sine, random phase)."""
    label_delay_minutes: float = 0.0
    """Labels arrive uniformly 0..this many minutes after their prediction."""
    labels_never: float = 0.0
    """Share of would-be labels that never arrive."""
    histogram_latency: bool = False
    """Latency only through the contract's buckets: quantiles by ``histogram_quantile``'s
    linear interpolation, with its error."""
    gap_probability: float = 0.0
    """Per side and interval: a scrape gap or a pod restart's counter reset loses part of
    the interval's counts (each counter thinned on its own, as ``increase()`` does)."""
    cold_start: float = 0.0
    """The canary's latency is × (1 + this) when it starts, decaying with ``cold_seconds``."""
    cold_seconds: float = 60.0

    @property
    def name(self) -> str:
        return "i.i.d." if self == IID else "production-shaped"


IID = Shape()
PRODUCTION = Shape(rate_cv=0.5, icc=(0.001, 0.05), diurnal_swing=3.0, label_delay_minutes=30.0, labels_never=0.05,
                   histogram_latency=True, gap_probability=0.02, cold_start=0.5)
"""The production shape of ``make bench-judgement`` (docs/benchmarks.md#production-shaped-traffic)."""
SHAPES: dict[str, Shape] = {"iid": IID, "production": PRODUCTION}



class _Side:
    """Precomputed distribution constants of one side (stable or canary)."""

    def __init__(self, b: Behaviour) -> None:
        self.b = b
        # Lognormal with the given mean and p95 (before scaling): solve for sigma.
        ratio = b.latency_mean_ms / b.latency_p95_ms          # = exp(s^2/2 - z95 s)
        z95, z99 = stats.norm.ppf(0.95), stats.norm.ppf(0.99)
        # s^2/2 - z95 s - ln(ratio) = 0, smaller root
        c = -math.log(ratio)
        self.sigma = z95 - math.sqrt(z95 * z95 - 2 * c)
        median = b.latency_p95_ms / math.exp(z95 * self.sigma) * b.latency_scale
        self.mu = math.log(median)
        self.mean = median * math.exp(self.sigma ** 2 / 2)
        self.sd = self.mean * math.sqrt(math.exp(self.sigma ** 2) - 1)
        self.x95 = median * math.exp(z95 * self.sigma)
        self.x99 = median * math.exp(z99 * self.sigma)
        pdf = lambda x, z: stats.norm.pdf(z) / (x * self.sigma)  # noqa: E731
        self.f95 = pdf(self.x95, z95)
        self.f99 = pdf(self.x99, z99)
        self.err = np.array([b.error_rates.get(c, 0.0) for c in ERROR_CATEGORIES])
        self.proportions = np.concatenate([self.err, [b.accuracy, b.hit_rate]])
        cdf = stats.beta.cdf(LE, *b.confidence_beta)
        self.conf_p = np.diff(np.concatenate([[0.0], cdf]))
        self.conf_p = self.conf_p / self.conf_p.sum()


def _quantile95(values: np.ndarray) -> float:
    """numpy's default (linear) p95 of a small sample, without ``np.quantile``'s overhead."""
    ordered = np.sort(values)
    pos = 0.95 * (len(ordered) - 1)
    i = int(pos)
    j = min(i + 1, len(ordered) - 1)
    return float(ordered[i] + (ordered[j] - ordered[i]) * (pos - i))


def _beta_around(rng: np.random.Generator, p: float | np.ndarray, icc: float) -> float | np.ndarray:
    """One interval's probability: Beta with mean ``p`` and intra-class correlation ``icc``
    (α + β = 1/icc − 1), so a count over it is beta-binomial."""
    if icc <= 0.0:
        return p
    total = 1.0 / icc - 1.0
    p_arr = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    drawn = rng.beta(p_arr * total, (1.0 - p_arr) * total)
    return drawn if np.ndim(p) else float(drawn)


@functools.lru_cache(maxsize=4096)
def _bucket_probs(mu: float, sigma: float) -> np.ndarray:
    """Lognormal(mu, sigma) mass in each latency bucket (+Inf last)."""
    cdf = stats.norm.cdf((np.log(_BUCKET_EDGES) - mu) / sigma)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum()


def histogram_quantile(q: float, buckets: np.ndarray) -> float | None:
    """Prometheus' ``histogram_quantile`` on per-bucket counts (+Inf last): linear
    interpolation inside the bucket holding the rank, 0 as the first bucket's lower bound,
    the highest finite bound when the rank falls in +Inf."""
    cum = np.cumsum(buckets)
    total = cum[-1]
    if total <= 0:
        return None
    rank = q * total
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(DURATION_BUCKETS_MS):
        return DURATION_BUCKETS_MS[-1]
    lower = DURATION_BUCKETS_MS[i - 1] if i > 0 else 0.0
    below = cum[i - 1] if i > 0 else 0.0
    inside = cum[i] - below
    upper = DURATION_BUCKETS_MS[i]
    return lower + (upper - lower) * ((rank - below) / inside if inside > 0 else 1.0)


def _draw_bin(rng: np.random.Generator, side: _Side, n: int, dt: float, label_share: float,
              icc: float = 0.0, histogram: bool = False, latency_factor: float = 1.0
              ) -> tuple[np.ndarray, float | None]:
    """One interval's counts for one side, and its p95 (the anomaly series point).

    ``icc``: the proportions of this interval are drawn around the side's (beta-binomial
    counts); ``histogram``: latency is counted in buckets and its p95 read by
    ``histogram_quantile``; ``latency_factor`` scales this interval's latency (a cold start).
    """
    v = np.zeros(_WIDTH)
    if n <= 0:
        v[_EVICT] = rng.poisson(side.b.evictions_per_minute * dt / 60.0)
        return v, None
    v[_REQ] = n
    if icc > 0:  # this interval's probabilities, drawn at once: errors by category, accuracy, hit rate
        drawn = _beta_around(rng, side.proportions, icc)
        err, accuracy, hit_rate = drawn[:5], float(drawn[5]), float(drawn[6])
    else:
        err, accuracy, hit_rate = side.err, side.b.accuracy, side.b.hit_rate
    v[_ERR] = rng.binomial(n, err)
    ev = rng.binomial(n, label_share)
    v[_EVAL] = ev
    v[_CORRECT] = rng.binomial(ev, accuracy) if ev else 0
    if histogram:
        mu = side.mu + math.log(latency_factor)
        if n <= RAW_MAX:
            lat = np.exp(mu + side.sigma * rng.standard_normal(n))
            v[_LAT_SUM] = lat.sum()
            v[_BUCKETS] = np.bincount(np.searchsorted(_BUCKET_EDGES, lat, side="left"),
                                      minlength=len(DURATION_BUCKETS_MS) + 1)
        else:
            v[_LAT_SUM] = rng.normal(n * side.mean * latency_factor, math.sqrt(n) * side.sd * latency_factor)
            v[_BUCKETS] = rng.multinomial(n, _bucket_probs(round(mu, 3), round(side.sigma, 4)))
        p95 = histogram_quantile(0.95, v[_BUCKETS])
    elif n <= RAW_MAX:
        lat = np.exp(side.mu + side.sigma * rng.standard_normal(n))
        v[_LAT_SUM] = lat.sum()
        v[_BELOW95] = np.count_nonzero(lat <= side.x95)
        v[_BELOW99] = np.count_nonzero(lat <= side.x99)
        p95 = _quantile95(lat)
    else:
        v[_LAT_SUM] = rng.normal(n * side.mean, math.sqrt(n) * side.sd)
        below = rng.binomial(n, (0.95, 0.99))
        v[_BELOW95], v[_BELOW99] = below
        p95 = side.x95 + (0.95 - below[0] / n) / side.f95
    v[_CONF] = rng.multinomial(n, side.conf_p)
    v[_HITS] = rng.binomial(n, hit_rate)
    v[_EVICT] = rng.poisson(side.b.evictions_per_minute * dt / 60.0)
    return v, p95


def _thin(rng: np.random.Generator, v: np.ndarray) -> np.ndarray:
    """A scrape gap or counter reset: each counter of the interval loses part of its
    count on its own (``increase()`` extrapolates each series separately)."""
    keep = rng.uniform(0.3, 0.9)
    out = v.copy()
    counts = np.r_[_REQ, np.arange(_ERR.start, _ERR.stop), _EVAL, _CORRECT, _BELOW95, _BELOW99,
                   np.arange(_CONF.start, _CONF.stop), _HITS, _EVICT, np.arange(_BUCKETS.start, _BUCKETS.stop)]
    out[counts] = rng.binomial(v[counts].astype(np.int64), keep)
    out[_LAT_SUM] = v[_LAT_SUM] * keep
    out[_CORRECT] = min(out[_CORRECT], out[_EVAL])
    out[_HITS] = min(out[_HITS], out[_REQ])
    return out


class _Bins:
    """One side's bins with prefix sums, so that any window's counts are one subtraction."""

    def __init__(self, t0: datetime) -> None:
        self.t0 = t0
        self.ends: list[float] = [0.0]            # bin end times (s since t0); ends[0] is the origin
        self.cum: list[np.ndarray] = [np.zeros(_WIDTH)]

    def add(self, end: float, v: np.ndarray) -> None:
        self.ends.append(end)
        self.cum.append(self.cum[-1] + v)

    def last(self, k: int) -> np.ndarray:
        """The last ``k`` bins' own counts (not cumulated), oldest first."""
        k = min(k, len(self.cum) - 1)
        if k <= 0:
            return np.zeros((0, _WIDTH))
        cum = np.asarray(self.cum[-k - 1:])
        return np.diff(cum, axis=0)

    def window(self, seconds: float) -> np.ndarray:
        """Counts of the bins that end within the last ``seconds`` (bins are aligned to ticks)."""
        now = self.ends[-1]
        start = bisect.bisect_right(self.ends, now - seconds + 1e-6) - 1
        start = max(start, 0)
        return self.cum[-1] - self.cum[start]


def _latency_from(v: np.ndarray, side: _Side, histogram: bool = False, buckets: bool = True) -> dict[str, Any] | None:
    n = v[_REQ]
    if n <= 0:
        return None
    if histogram:
        p95 = histogram_quantile(0.95, v[_BUCKETS])
        p99 = histogram_quantile(0.99, v[_BUCKETS])
        if p95 is None or p99 is None:
            return None
    else:
        p95 = side.x95 + (0.95 - v[_BELOW95] / n) / side.f95
        p99 = side.x99 + (0.99 - v[_BELOW99] / n) / side.f99
    latency: dict[str, Any] = {"mean": max(v[_LAT_SUM] / n, 1e-6), "p95": max(p95, 1e-6),
                               "p99": max(p99, p95, 1e-6), "count": n}
    if histogram and buckets:  # the buckets too, as the tick reads them: latency's significance gate uses them
        latency["buckets"] = {"le": list(DURATION_BUCKETS_MS),
                              "counts": [float(c) for c in np.cumsum(v[_BUCKETS])[:-1]]}
    return latency


def _cumulative(conf: np.ndarray) -> dict[str, list[float]]:
    return {"le": LE, "counts": [float(c) for c in np.cumsum(conf)]}


def _errors(v: np.ndarray) -> dict[str, float]:
    return {c: float(x) for c, x in zip(ERROR_CATEGORIES, v[_ERR])}


@dataclass
class TrafficConfig:
    total_rps: float
    canary: Behaviour = HEALTHY
    stable: Behaviour = HEALTHY
    label_share: float = 0.10
    rps_window: Literal["step", "nominal"] = "step"
    shape: Shape = IID
    intervals: bool = True
    """Give the stable's counts per interval (what the operator measures overdispersion on)."""
    latency_buckets: bool = True
    """With histogram latency, give the duration buckets too (latency's significance gate
    reads them; without them its checks are plain thresholds, as in the fast path)."""


class SyntheticTraffic:
    """Bins of traffic for one rollout, and the snapshot the adapter would build from them.

    Call ``advance(now, weight)`` once per tick with the canary weight that held since the
    previous tick, then ``snapshot(now, windows, status)``.
    """

    def __init__(self, spec: ModelRolloutSpec, config: TrafficConfig, rng: np.random.Generator, t0: datetime) -> None:
        self.spec = spec
        self.config = config
        self.rng = rng
        self.t0 = t0
        self.canary_side = _Side(config.canary)
        self.stable_side = _Side(config.stable)
        self.canary = _Bins(t0)
        self.stable = _Bins(t0)
        self.series: dict[str, list[float | None]] = {"latency_p95_ms": [], "error_rate": [], "rps": []}
        self.now = t0
        resolved = spec.analysis.resolved_conditions()
        self.min_samples = {
            "accuracy": resolved.accuracy.min_samples, "latency": resolved.latency.min_samples,
            "errorRate": resolved.error_rate.min_samples, "cache": resolved.cache.min_samples,
        }
        self.throughput_window = resolved.throughput.window.total_seconds()
        shape = self.shape = config.shape
        self.baseline = self._baseline()
        self.icc = 0.0
        if shape.icc is not None:
            lo, hi = shape.icc
            self.icc = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        self.phase = float(rng.uniform(0.0, BASELINE_SECONDS)) if shape.diurnal_swing > 1.0 else 0.0
        # Labels on their way, per side: [arrival (s since t0), evaluated, correct].
        self.labels_pending: dict[str, list[list[float]]] = {"canary": [], "stable": []}
        if shape.label_delay_minutes > 0:
            self._prime_stable_labels()
        self.stable_before = self._stable_before() if config.intervals else np.zeros((0, _WIDTH))
        if config.rps_window == "nominal":
            self._prehistory()

    def _prehistory(self) -> None:
        """15 minutes of the stable alone before the rollout, so nominal windows reaching
        back past the start see the traffic that was there (only needed for nominal RPS
        windows; step-clamped windows never reach back)."""
        interval = self.spec.analysis.interval
        start = self.t0 - timedelta(minutes=15)
        self.t0 = start
        self.canary.t0 = self.stable.t0 = start
        self.now = start
        while self.now < self.t0 + timedelta(minutes=15):
            self._bin(self.now + interval, 0, series=False)


    def _stable_before(self) -> np.ndarray:
        """The stable's intervals before the rollout, serving every request: the adapter's
        per-interval counts reach back past the rollout's start."""
        dt = self.spec.analysis.interval.total_seconds()
        rows = []
        for j in range(SERIES_POINTS, 0, -1):
            mean = self.config.total_rps * dt * self._load(-j * dt + dt / 2)
            if self.shape.rate_cv > 0:
                k = 1.0 / self.shape.rate_cv ** 2
                mean *= self.rng.gamma(k, 1.0 / k)
            v, _ = _draw_bin(self.rng, self.stable_side, int(self.rng.poisson(mean)), dt, self.config.label_share,
                             self.icc, False)
            rows.append(v)
        return np.asarray(rows)

    def _prime_stable_labels(self) -> None:
        """The stable served every request before the rollout: labels of those predictions
        are still arriving when it starts."""
        dt = self.spec.analysis.interval.total_seconds()
        delay = self.shape.label_delay_minutes * 60.0
        t = -delay
        while t < 0:
            n = int(self.rng.poisson(self.config.total_rps * dt))
            ev = int(self.rng.binomial(n, self.config.label_share))
            correct = int(self.rng.binomial(ev, self.config.stable.accuracy)) if ev else 0
            self._send_labels("stable", t + dt, ev, correct)
            t += dt

    def _send_labels(self, side: str, made: float, ev: int, correct: int) -> None:
        """Labels of predictions made by ``made`` (s since t0): a share never arrives, the
        rest arrive uniformly over the delay (six slices, each at its middle)."""
        shape = self.shape
        rng = self.rng
        if shape.labels_never > 0 and ev:
            kept = int(rng.binomial(ev, 1.0 - shape.labels_never))
            correct = int(rng.hypergeometric(correct, ev - correct, kept)) if kept else 0
            ev = kept
        if ev <= 0:
            return
        slices = 6
        parts = rng.multinomial(ev, [1.0 / slices] * slices)
        left_correct, left = correct, ev
        width = shape.label_delay_minutes * 60.0 / slices
        pending = self.labels_pending[side]
        for j, part in enumerate(parts):
            if part <= 0:
                continue
            c = int(rng.hypergeometric(left_correct, left - left_correct, part)) if left > part else left_correct
            left_correct -= c
            left -= int(part)
            pending.append([made + (j + 0.5) * width, float(part), float(c)])

    def _arrived_labels(self, side: str, until: float) -> tuple[float, float]:
        pending = self.labels_pending[side]
        ev = correct = 0.0
        keep = []
        for item in pending:
            if item[0] <= until:
                ev += item[1]
                correct += item[2]
            else:
                keep.append(item)
        self.labels_pending[side] = keep
        return ev, correct

    def _load(self, at: float) -> float:
        """The service's load factor at ``at`` (s since t0): 1 without a diurnal swing."""
        swing = self.shape.diurnal_swing
        if swing <= 1.0:
            return 1.0
        a = (swing - 1.0) / (swing + 1.0)
        return 1.0 + a * math.sin(2.0 * math.pi * (at + self.phase) / BASELINE_SECONDS)

    def _baseline(self) -> np.ndarray:
        """24 h of the stable at its healthy parameters with all of the service's traffic."""
        n = int(self.rng.poisson(self.config.total_rps * BASELINE_SECONDS))
        v, _ = _draw_bin(self.rng, self.stable_side, n, BASELINE_SECONDS, self.config.label_share,
                         histogram=self.shape.histogram_latency)
        return v

    def advance(self, now: datetime, weight: int, mirror: int | None = None) -> None:
        """Traffic up to ``now`` at ``weight`` % to the canary, or, in a shadow step
        (docs/shadow.md), every request to the stable and ``mirror`` % copied to the canary."""
        self._bin(now, weight, series=True, mirror=mirror)

    def _bin(self, now: datetime, weight: int, *, series: bool, mirror: int | None = None) -> None:
        dt = (now - self.now).total_seconds()
        if dt <= 0:
            return
        end = (now - self.t0).total_seconds()
        total = self.config.total_rps
        shape = self.shape
        rng = self.rng
        canary_share, stable_share = (mirror, 100) if mirror else (weight, 100 - weight)
        canary_mean = total * canary_share / 100.0 * dt
        stable_mean = total * stable_share / 100.0 * dt
        if shape.diurnal_swing > 1.0:
            load = self._load(end - dt / 2)
            canary_mean *= load
            stable_mean *= load
        if shape.rate_cv > 0:
            k = 1.0 / shape.rate_cv ** 2
            canary_mean *= rng.gamma(k, 1.0 / k)
            stable_mean *= rng.gamma(k, 1.0 / k)
        canary_n = int(rng.poisson(canary_mean))
        stable_n = int(rng.poisson(stable_mean))
        if shape == IID:
            cv, p95 = _draw_bin(rng, self.canary_side, canary_n, dt, self.config.label_share)
            sv, _ = _draw_bin(rng, self.stable_side, stable_n, dt, self.config.label_share)
        else:
            cold = 1.0 + shape.cold_start * math.exp(-max(end - dt / 2, 0.0) / shape.cold_seconds)
            cv, p95 = _draw_bin(rng, self.canary_side, canary_n, dt, self.config.label_share, self.icc,
                                shape.histogram_latency, cold)
            sv, _ = _draw_bin(rng, self.stable_side, stable_n, dt, self.config.label_share, self.icc,
                              shape.histogram_latency)
            if shape.label_delay_minutes > 0:
                for name, v in (("canary", cv), ("stable", sv)):
                    self._send_labels(name, end, int(v[_EVAL]), int(v[_CORRECT]))
                    v[_EVAL], v[_CORRECT] = self._arrived_labels(name, end)
            elif shape.labels_never > 0:
                for v in (cv, sv):
                    kept = int(rng.binomial(int(v[_EVAL]), 1.0 - shape.labels_never))
                    v[_CORRECT] = rng.hypergeometric(int(v[_CORRECT]), int(v[_EVAL] - v[_CORRECT]), kept) if kept else 0
                    v[_EVAL] = kept
            if shape.gap_probability > 0:
                if rng.random() < shape.gap_probability:
                    cv = _thin(rng, cv)
                if rng.random() < shape.gap_probability:
                    sv = _thin(rng, sv)
        self.canary.add(end, cv)
        self.stable.add(end, sv)
        if canary_n > 0 and series:
            self._point(p95, float(cv[_ERR].sum()) / canary_n, canary_n / dt)
        self.now = now

    def _point(self, p95: float | None, error_rate: float, rps: float) -> None:
        for key, value in (("latency_p95_ms", p95), ("error_rate", error_rate), ("rps", rps)):
            points = self.series[key]
            points.append(None if value is None else round(value, 6))
            if len(points) > SERIES_POINTS:
                del points[0]

    def _stable_or_baseline(self, seconds: float, measure: int, minimum: int) -> np.ndarray:
        same = self.stable.window(seconds)
        return same if same[measure] >= minimum else self.baseline

    def snapshot_dict(self, now: datetime, windows: dict[str, timedelta], status: ModelRolloutStatus) -> dict[str, Any]:
        """The snapshot (as JSON-ready data) the adapter would build for this tick."""
        w = {k: v.total_seconds() for k, v in windows.items()}
        c_acc = self.canary.window(w["accuracy"])
        c_lat = self.canary.window(w["latency"])
        c_err = self.canary.window(w["errorRate"])
        c_cache = self.canary.window(w["cache"])
        c_conf = self.canary.window(w["confidenceDrift"])
        s_acc = self._stable_or_baseline(w["accuracy"], _EVAL, self.min_samples["accuracy"])
        s_lat = self._stable_or_baseline(w["latency"], _REQ, self.min_samples["latency"])
        s_err = self._stable_or_baseline(w["errorRate"], _REQ, self.min_samples["errorRate"])
        s_cache = self._stable_or_baseline(w["cache"], _REQ, self.min_samples["cache"])

        rps_seconds = w.get("throughput", self.throughput_window)
        if self.config.rps_window == "step" and status.step_started_at is not None:
            age = (now - status.step_started_at).total_seconds()
            rps_seconds = min(rps_seconds, max(age, 1.0))
        canary_rps = float(self.canary.window(rps_seconds)[_REQ]) / rps_seconds
        stable_rps = float(self.stable.window(rps_seconds)[_REQ]) / rps_seconds

        canary_eviction_minutes = max(w["cache"], 1.0) / 60.0
        canary: dict[str, Any] = {
            "requests": float(c_err[_REQ]),
            "rps": canary_rps,
            "errors": _errors(c_err),
            "latency_ms": _latency_from(c_lat, self.canary_side, self.shape.histogram_latency,
                                        self.config.latency_buckets),
            "predictions_evaluated": float(c_acc[_EVAL]),
            "predictions_correct": float(c_acc[_CORRECT]),
            "confidence": _cumulative(c_conf[_CONF]) if c_conf[_REQ] > 0 else None,
            "cache": {"hits": float(c_cache[_HITS]), "misses": float(c_cache[_REQ] - c_cache[_HITS]),
                      "evictions_per_minute": float(c_cache[_EVICT]) / canary_eviction_minutes,
                      "lookup_ms": self.config.canary.lookup_ms},
            "series": {k: list(v) for k, v in self.series.items()},
        }
        declared = self.spec.canary.template.model_digest if self.spec.canary.template else None
        if declared is not None:
            canary["model_digests"] = {"canary-0": declared}  # the simulated server loaded the declared model
        stable: dict[str, Any] = {
            "requests": float(s_err[_REQ]),
            "rps": stable_rps,
            "errors": _errors(s_err),
            "latency_ms": _latency_from(s_lat, self.stable_side, self.shape.histogram_latency,
                                        self.config.latency_buckets),
            "predictions_evaluated": float(s_acc[_EVAL]),
            "predictions_correct": float(s_acc[_CORRECT]),
            "confidence": _cumulative(self.baseline[_CONF]),
            "cache": {"hits": float(s_cache[_HITS]), "misses": float(s_cache[_REQ] - s_cache[_HITS]),
                      "evictions_per_minute": self.config.stable.evictions_per_minute,
                      "lookup_ms": self.config.stable.lookup_ms},
        }
        if self.config.intervals:
            stable["intervals"] = self._intervals(self.stable)
        return {
            "version": 1,
            "at": now.isoformat().replace("+00:00", "Z"),
            "windows": w,
            "stable": stable,
            "canary": canary,
            "health": {"canary": {"oom_killed": 0, "crash_looping": 0, "unavailable_for_seconds": 0.0,
                                  "progress_deadline_exceeded": False}},
        }

    def _intervals(self, bins: "_Bins") -> dict[str, list[float | None]]:
        """The stable's counts per interval over the last ``SERIES_POINTS`` intervals, as the
        adapter reads them (range queries, one point per interval; before the rollout, the
        stable served everything)."""
        last = bins.last(SERIES_POINTS)
        if len(last) < SERIES_POINTS and len(self.stable_before):
            last = np.concatenate([self.stable_before[len(last) - SERIES_POINTS:], last]) if len(last) else \
                self.stable_before
        if len(last) == 0:
            return {}
        return {
            "requests": last[:, _REQ].tolist(),
            "errors": last[:, _ERR].sum(axis=1).tolist(),
            "error_categories": {c: last[:, _ERR.start + i].tolist() for i, c in enumerate(ERROR_CATEGORIES)},
            "predictions_evaluated": last[:, _EVAL].tolist(),
            "predictions_correct": last[:, _CORRECT].tolist(),
            "cache_hits": last[:, _HITS].tolist(),
            "cache_misses": (last[:, _REQ] - last[:, _HITS]).tolist(),
        }

    def snapshot(self, now: datetime, windows: dict[str, timedelta], status: ModelRolloutStatus) -> Snapshot:
        return Snapshot.model_validate(self.snapshot_dict(now, windows, status))


def construct_snapshot(data: dict[str, Any], at: datetime) -> Snapshot:
    """``Snapshot`` from the generator's own (already well-formed) data, skipping validation.

    Validation costs about a fifth of a simulated tick, mostly the per-point check of the
    90 series points; the benchmark validates the first snapshot of every rollout (and the
    replay examples validate all of them), so the shape is checked, just not re-checked.
    """
    def side(d: dict[str, Any] | None) -> SideMetrics | None:
        if d is None:
            return None
        conf = d.get("confidence")
        cache = d.get("cache")
        lat = d.get("latency_ms")
        if lat is not None and lat.get("buckets") is not None:
            lat = {**lat, "buckets": Histogram.model_construct(**lat["buckets"])}
        return SideMetrics.model_construct(
            requests=d.get("requests"), rps=d.get("rps"),
            errors=ErrorCounts.model_construct(**d["errors"]) if d.get("errors") is not None else None,
            latency_ms=Latency.model_construct(**lat) if lat is not None else None,
            predictions_evaluated=d.get("predictions_evaluated"), predictions_correct=d.get("predictions_correct"),
            confidence=Histogram.model_construct(le=conf["le"], counts=conf["counts"]) if conf is not None else None,
            cache=Cache.model_construct(**cache) if cache is not None else None,
            series=d.get("series"), model_digests=d.get("model_digests"),
            intervals=Intervals.model_construct(**d["intervals"]) if d.get("intervals") else None,
        )

    health = data["health"]["canary"]
    return Snapshot.model_construct(
        version=1, at=at, stable=side(data.get("stable")), canary=side(data.get("canary")),
        health=Health.model_construct(canary=CanaryHealth.model_construct(**health)), custom=None,
        windows=data.get("windows"),
    )


@dataclass(frozen=True)
class Tick:
    """One tick of a simulated rollout: what was observed and what the machine did."""

    at: datetime
    snapshot: dict[str, Any] | None
    transition: Any  # core.machine.Transition
    weight: int      # canary weight that held during the interval
    fast_path: Any = None  # the fast path's verdict on the same snapshot (CriticalSignal | None), if asked


def simulate(spec: ModelRolloutSpec, config: TrafficConfig, rng: np.random.Generator, t0: datetime,
             horizon: timedelta, *, keep_snapshots: bool = False, validate: str = "first",
             tick_at_start: bool = False, fast_path: bool = False) -> Iterator[Tick]:
    """Drive one rollout through ``core.replay``'s machinery until it ends or the horizon passes.

    Each tick's traffic is drawn at the weight of the *current* status (so weights follow
    the steps, reductions and rollbacks), the windows come from ``plan_windows``, and the
    next tick comes at ``status.nextEvaluationAt`` (half the interval on medium risk), as
    in the operator. ``validate``: "all" parses every snapshot with pydantic, "first"
    (the default) only the first of the rollout and constructs the rest unvalidated.
    ``tick_at_start`` adds a tick at ``t0`` itself, before the canary has served anything
    (what ``modelrollout replay`` does with a file's first line: the rollout starts there).
    ``fast_path`` also runs the critical fast path's judgement (``core.fastpath``, α/10) on
    each tick's snapshot with the status before the tick, as the operator's fast path would
    see it at that instant; its verdict is reported, not acted on.
    """
    from modelrollout.core.fastpath import critical_breach
    from modelrollout.core.machine import step
    from modelrollout.core.observations import MetricsObserved
    from modelrollout.core.windows import plan_windows
    from modelrollout.core.replay import settle, start

    status = start(spec, t0)
    traffic = SyntheticTraffic(spec, config, rng, t0)
    interval = spec.analysis.interval
    now = t0
    end = t0 + horizon
    first = True
    pending_start = tick_at_start
    while not status.phase.is_terminal:
        if pending_start:
            pending_start = False
        else:
            nxt = status.next_evaluation_at or now + interval
            if nxt <= now:
                nxt = now + interval
            if nxt > end:
                return
            now = nxt
        weight = status.canary_weight
        traffic.advance(now, weight, status.mirror_percent)
        data = traffic.snapshot_dict(now, plan_windows(spec, status, now), status)
        if validate == "all" or (validate == "first" and first):
            snap = Snapshot.model_validate(data)
            first = False
        else:
            snap = construct_snapshot(data, now)
        signal = critical_breach(spec, status, snap, now) if fast_path else None
        transition = settle(spec, step(spec, status, MetricsObserved(snap), now), now)
        status = transition.status
        yield Tick(now, data if keep_snapshots else None, transition, weight, signal)


__all__ = ["Behaviour", "HEALTHY", "HEALTHY_ERRORS", "IID", "PRODUCTION", "SHAPES", "Shape", "SyntheticTraffic", "Tick", "TrafficConfig", "LE", "construct_snapshot", "simulate"]
