"""Per-pod counters of the metrics contract, advanced in simulated time.

Simulated time is wall time: every tick adds what `rate × dt` of traffic would
have produced, drawn with Poisson/binomial/multinomial noise so that rates and
quantiles computed from Prometheus look like a real server's (noisy at low
traffic, tight at high traffic), which is what the operator's significance
rules are for.

Histograms are advanced by drawing bucket counts from the distribution's CDF
(a multinomial), not by sampling each request, so 40 000 RPS costs the same as
20 RPS.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from e2e.simulator.behaviour import ERROR_CATEGORIES, Behaviour

# Upper bounds (seconds) of the request-latency buckets. Fine around the
# default 1.5-6 ms latency thresholds so quantiles interpolated from Prometheus land
# within ~0.25 ms of the truth.
DURATION_BUCKETS: tuple[float, ...] = (
    0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.00225, 0.0025,
    0.00275, 0.003, 0.0035, 0.004, 0.0045, 0.005, 0.006, 0.007, 0.008, 0.01, 0.0125,
    0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)
# Prediction confidence over [0, 1].
CONFIDENCE_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CACHE_LOOKUP_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
)


@functools.lru_cache(maxsize=1024)
def _lognormal_bucket_probs(bounds: tuple[float, ...], mu: float, sigma: float) -> np.ndarray:
    """Probability mass of each bucket (non-cumulative), +Inf last; cached
    because behaviours change rarely and ticks come at 10 Hz."""
    cdf = stats.norm.cdf((np.log(np.asarray(bounds)) - mu) / sigma)
    return _masses(cdf)


@functools.lru_cache(maxsize=1024)
def _beta_bucket_probs(bounds: tuple[float, ...], a: float, b: float) -> np.ndarray:
    return _masses(stats.beta.cdf(np.asarray(bounds), a, b))


def _masses(cdf: np.ndarray) -> np.ndarray:
    cdf = np.clip(np.concatenate([cdf, [1.0]]), 0.0, 1.0)
    p = np.diff(np.concatenate([[0.0], cdf]))
    p = np.clip(p, 0.0, None)
    return p / p.sum()


@dataclass
class Histogram:
    """A cumulative-on-export histogram: per-bucket counts (+Inf last) and a sum."""

    bounds: tuple[float, ...]
    counts: np.ndarray = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)

    def add(self, counts: np.ndarray, value_sum: float) -> None:
        self.counts += counts
        self.total += value_sum

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as Prometheus exposes them."""
        cum = np.cumsum(self.counts)
        out = [(_fmt(b), float(c)) for b, c in zip(self.bounds, cum[:-1])]
        out.append(("+Inf", float(cum[-1])))
        return out


def _fmt(x: float) -> str:
    return repr(float(x))


@dataclass
class PodCounters:
    """All contract series of one pod (counters only ever grow)."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=lambda: {c: 0 for c in ERROR_CATEGORIES})
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    predictions_evaluated: int = 0
    predictions_correct: int = 0
    confidence: Histogram = field(default_factory=lambda: Histogram(CONFIDENCE_BUCKETS))
    cache_hits: int = 0
    cache_misses: int = 0
    cache_evictions: int = 0
    cache_lookup: Histogram = field(default_factory=lambda: Histogram(CACHE_LOOKUP_BUCKETS))
    # Labels come late (Behaviour.label_delay_s): (pod age when due, evaluated, correct),
    # counted when they arrive, as a label pipeline's counters are.
    age: float = 0.0
    labels_pending: list[tuple[float, int, int]] = field(default_factory=list)
    # Fractional eviction expectation carried between ticks is not needed: a
    # Poisson draw per tick has the right mean at any dt.

    def _arrive_labels(self) -> None:
        if not self.labels_pending or self.labels_pending[0][0] > self.age:
            return
        keep: list[tuple[float, int, int]] = []
        for due, evaluated, correct in self.labels_pending:
            if due <= self.age:
                self.predictions_evaluated += evaluated
                self.predictions_correct += correct
            else:
                keep.append((due, evaluated, correct))
        self.labels_pending = keep

    def advance(self, rng: np.random.Generator, b: Behaviour, offered_rps: float, dt: float,
                eviction_share: float) -> None:
        """Add dt seconds of traffic at offered_rps to this pod, behaving as b."""
        if dt <= 0:
            return
        self.age += dt
        self._arrive_labels()
        n = int(rng.poisson(max(0.0, offered_rps * b.throughput_factor * dt)))
        # Evictions happen with or without traffic (memory pressure).
        self.cache_evictions += int(rng.poisson(b.evictions_per_minute * eviction_share * dt / 60.0))
        if n == 0:
            return
        self.requests += n
        probs = np.array([b.error_rates[c] for c in ERROR_CATEGORIES] + [0.0])
        probs[-1] = max(0.0, 1.0 - probs[:-1].sum())
        draws = rng.multinomial(n, probs / probs.sum())
        for c, k in zip(ERROR_CATEGORIES, draws[:-1]):
            self.errors[c] += int(k)
        ok = int(draws[-1])

        # Latency of every request, failed ones included.
        mu, sigma = b.latency_mu, b.latency_sigma
        counts = rng.multinomial(n, _lognormal_bucket_probs(DURATION_BUCKETS, mu, sigma))
        mean_s = b.latency_mean_ms / 1000.0
        var_s = (math.exp(sigma**2) - 1.0) * math.exp(2 * mu + sigma**2)
        self.duration.add(counts, max(0.0, rng.normal(n * mean_s, math.sqrt(n * var_s))))

        # Every successful request is a prediction with a confidence.
        if ok:
            ca, cb = b.confidence_a, b.confidence_b
            self.confidence.add(
                rng.multinomial(ok, _beta_bucket_probs(CONFIDENCE_BUCKETS, ca, cb)),
                ok * ca / (ca + cb),
            )
            evaluated = int(rng.binomial(ok, b.label_fraction))
            correct = int(rng.binomial(evaluated, b.accuracy))
            if b.label_delay_s > 0 and evaluated:
                self.labels_pending.append((self.age + b.label_delay_s, evaluated, correct))
            else:
                self.predictions_evaluated += evaluated
                self.predictions_correct += correct

        lookups = int(rng.poisson(n * b.cache_lookups_per_request))
        if lookups:
            hits = int(rng.binomial(lookups, b.cache_hit_rate))
            self.cache_hits += hits
            self.cache_misses += lookups - hits
            lmu = math.log(b.cache_lookup_median_ms / 1000.0)
            lsig = max(1e-6, b.cache_lookup_sigma)
            self.cache_lookup.add(
                rng.multinomial(lookups, _lognormal_bucket_probs(CACHE_LOOKUP_BUCKETS, lmu, lsig)),
                lookups * math.exp(lmu + lsig**2 / 2),
            )
