"""What a simulated model server does: the knobs a test scripts.

A Behaviour is plain data parsed from the control API's JSON. The defaults are a
healthy server under the `balanced` profile in docs/design.md#the-seven-conditions (p95 well under 3 ms,
error rate well under 1 %, accuracy 0.92, cache hit rate 0.995), so a test
only states what it wants to be different.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

ERROR_CATEGORIES: tuple[str, ...] = ("extraction", "serialization", "timeout", "cache", "other")

# z of the 95th percentile of the standard normal: turns (median, p95) into a
# lognormal sigma.
_Z95 = 1.6448536269514722


class BehaviourError(ValueError):
    """The control API got a behaviour it cannot simulate; the message names the field."""


@dataclass(frozen=True)
class Behaviour:
    """One model revision's behaviour. Units are in the field names."""

    # Request latency: lognormal, given by its median and 95th percentile.
    latency_median_ms: float = 1.0
    latency_p95_ms: float = 1.8
    # Probability that a request fails, per category (a request fails in at most one).
    error_rates: dict[str, float] = field(default_factory=lambda: {c: 0.0005 for c in ERROR_CATEGORIES})
    # Fraction of successful predictions that later get ground-truth feedback.
    label_fraction: float = 0.1
    # Seconds between a prediction and its label's arrival in the counters.
    label_delay_s: float = 0.0
    accuracy: float = 0.92
    # Prediction confidence ~ Beta(a, b).
    confidence_a: float = 8.0
    confidence_b: float = 2.0
    cache_hit_rate: float = 0.995
    cache_lookups_per_request: float = 1.0
    evictions_per_minute: float = 0.0
    cache_lookup_median_ms: float = 0.3
    cache_lookup_sigma: float = 0.5
    # Share of the offered traffic the server actually handles (< 1: a canary
    # that cannot keep up, for the throughput condition).
    throughput_factor: float = 1.0
    # The model digest the server reports in model_info whatever its pod declares (a
    # server that loaded another model than its pod template names); None: the pod's own.
    model_digest: str | None = None

    @property
    def latency_mu(self) -> float:
        """Lognormal mu of the latency in seconds."""
        return math.log(self.latency_median_ms / 1000.0)

    @property
    def latency_sigma(self) -> float:
        """Lognormal sigma of the latency."""
        return max(1e-6, math.log(self.latency_p95_ms / self.latency_median_ms) / _Z95)

    @property
    def latency_mean_ms(self) -> float:
        """Expected latency, used for the histogram's _sum."""
        return self.latency_median_ms * math.exp(self.latency_sigma**2 / 2)

    def to_json(self) -> dict[str, Any]:
        """The JSON shape the control API accepts (round-trips through from_json)."""
        d = asdict(self)
        return {
            "latency_ms": {"median": d["latency_median_ms"], "p95": d["latency_p95_ms"]},
            "error_rates": dict(d["error_rates"]),
            "label_fraction": d["label_fraction"],
            "label_delay_s": d["label_delay_s"],
            "accuracy": d["accuracy"],
            "confidence_beta": {"a": d["confidence_a"], "b": d["confidence_b"]},
            "cache_hit_rate": d["cache_hit_rate"],
            "cache_lookups_per_request": d["cache_lookups_per_request"],
            "evictions_per_minute": d["evictions_per_minute"],
            "cache_lookup_ms": {"median": d["cache_lookup_median_ms"], "sigma": d["cache_lookup_sigma"]},
            "throughput_factor": d["throughput_factor"],
            "model_digest": d["model_digest"],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Behaviour":
        """Parse the control API's JSON; absent fields keep the healthy defaults.

        latency_ms is {"median", "p95"} or {"mean", "sigma"} (sigma of the
        log); cache_lookup_ms is a number (the median) or {"median", "sigma"}.
        """
        if not isinstance(obj, dict):
            raise BehaviourError("behaviour must be a JSON object")
        known = {
            "image", "latency_ms", "error_rates", "label_fraction", "label_delay_s", "accuracy", "confidence_beta",
            "cache_hit_rate", "cache_lookups_per_request", "evictions_per_minute", "cache_lookup_ms",
            "throughput_factor", "model_digest",
        }
        unknown = set(obj) - known
        if unknown:
            raise BehaviourError(f"unknown behaviour field(s): {sorted(unknown)}; known: {sorted(known)}")
        kw: dict[str, Any] = {}
        lat = obj.get("latency_ms")
        if lat is not None:
            if not isinstance(lat, dict):
                raise BehaviourError("latency_ms must be {median, p95} or {mean, sigma}")
            if "median" in lat:
                kw["latency_median_ms"] = _pos(lat["median"], "latency_ms.median")
                kw["latency_p95_ms"] = _pos(lat.get("p95", kw["latency_median_ms"] * 1.8), "latency_ms.p95")
                if kw["latency_p95_ms"] < kw["latency_median_ms"]:
                    raise BehaviourError("latency_ms.p95 must be >= latency_ms.median")
            elif "mean" in lat:
                mean = _pos(lat["mean"], "latency_ms.mean")
                sigma = _nonneg(lat.get("sigma", 0.35), "latency_ms.sigma")
                median = mean / math.exp(sigma**2 / 2)
                kw["latency_median_ms"] = median
                kw["latency_p95_ms"] = median * math.exp(_Z95 * max(sigma, 1e-6))
            else:
                raise BehaviourError("latency_ms needs median (and p95) or mean (and sigma)")
        if "error_rates" in obj:
            rates = obj["error_rates"]
            if not isinstance(rates, dict):
                raise BehaviourError("error_rates must be an object {category: probability}")
            bad = set(rates) - set(ERROR_CATEGORIES)
            if bad:
                raise BehaviourError(f"error_rates: unknown categories {sorted(bad)}; known: {list(ERROR_CATEGORIES)}")
            full = {c: _prob(rates.get(c, 0.0), f"error_rates.{c}") for c in ERROR_CATEGORIES}
            if sum(full.values()) > 1.0:
                raise BehaviourError("error_rates must sum to at most 1")
            kw["error_rates"] = full
        for name in ("label_fraction", "accuracy", "cache_hit_rate"):
            if name in obj:
                kw[name] = _prob(obj[name], name)
        if "label_delay_s" in obj:
            kw["label_delay_s"] = _nonneg(obj["label_delay_s"], "label_delay_s")
        if "confidence_beta" in obj:
            cb = obj["confidence_beta"]
            if not isinstance(cb, dict) or "a" not in cb or "b" not in cb:
                raise BehaviourError("confidence_beta must be {a, b}")
            kw["confidence_a"] = _pos(cb["a"], "confidence_beta.a")
            kw["confidence_b"] = _pos(cb["b"], "confidence_beta.b")
        for name in ("cache_lookups_per_request", "evictions_per_minute", "throughput_factor"):
            if name in obj:
                kw[name] = _nonneg(obj[name], name)
        if obj.get("model_digest") is not None:
            digest = obj["model_digest"]
            if not isinstance(digest, str) or not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
                raise BehaviourError("model_digest must be sha256:<64 lowercase hex>")
            kw["model_digest"] = digest
        if "cache_lookup_ms" in obj:
            cl = obj["cache_lookup_ms"]
            if isinstance(cl, dict):
                kw["cache_lookup_median_ms"] = _pos(cl.get("median", 0.3), "cache_lookup_ms.median")
                kw["cache_lookup_sigma"] = _nonneg(cl.get("sigma", 0.5), "cache_lookup_ms.sigma")
            else:
                kw["cache_lookup_median_ms"] = _pos(cl, "cache_lookup_ms")
        return cls(**kw)


def _num(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise BehaviourError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _pos(v: Any, name: str) -> float:
    x = _num(v, name)
    if x <= 0:
        raise BehaviourError(f"{name} must be > 0, got {x}")
    return x


def _nonneg(v: Any, name: str) -> float:
    x = _num(v, name)
    if x < 0:
        raise BehaviourError(f"{name} must be >= 0, got {x}")
    return x


def _prob(v: Any, name: str) -> float:
    x = _num(v, name)
    if not 0.0 <= x <= 1.0:
        raise BehaviourError(f"{name} must be in [0, 1], got {x}")
    return x


DEFAULT_BEHAVIOUR = Behaviour()
