"""Per-condition thresholds and the three profiles: the one place defaults live.

Every threshold model exists twice in spirit: users write *overrides* (every field
optional, plus ``enabled`` and ``weight``) in ``spec.analysis.conditions``, and the core
works on *resolved* thresholds (every field set) obtained by laying the overrides over
a profile. Both are the same pydantic class: a field left ``None`` means "take the
profile's value", so the CRD schema, the docs and the core all read the same names.
"""

from __future__ import annotations

from functools import lru_cache
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .durations import Duration


class ApiModel(BaseModel):
    """Base of every resource model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class ConditionName(StrEnum):
    """The seven built-in risk conditions (docs/design.md#the-seven-conditions), keys in spec, status and evaluate."""

    ACCURACY = "accuracy"
    LATENCY = "latency"
    CONFIDENCE_DRIFT = "confidenceDrift"
    ERROR_RATE = "errorRate"
    CACHE = "cache"
    THROUGHPUT = "throughput"
    ANOMALY = "anomaly"


class Profile(StrEnum):
    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"


class Sensitivity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


Fraction = Field(default=None, ge=0.0, le=1.0)
Positive = Field(default=None, ge=0.0)


class ConditionBase(ApiModel):
    """Fields every condition shares: whether it is scored and with what weight."""

    enabled: bool | None = Field(default=None, description="false: neither scored nor inconclusive")
    weight: float | None = Field(default=None, ge=0.0, le=100.0, description="relative weight in the score")
    window: Duration | None = Field(default=None, description="nominal query window for the canary's side")
    min_samples: int | None = Field(default=None, ge=1, description="fewer samples make the condition inconclusive")

    def _check_lower_is_worse(self, warn: str, crit: str) -> None:
        w, c = getattr(self, warn), getattr(self, crit)
        if w is not None and c is not None and c >= w:
            raise ValueError(f"{to_camel(crit)} ({c}) must be below {to_camel(warn)} ({w}): lower is worse here")

    def _check_higher_is_worse(self, warn: str, crit: str) -> None:
        w, c = getattr(self, warn), getattr(self, crit)
        if w is not None and c is not None and c <= w:
            raise ValueError(f"{to_camel(crit)} ({c}) must exceed {to_camel(warn)} ({w}): higher is worse here")


class AccuracyThresholds(ConditionBase):
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description="warning bound T")
    critical_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description="critical bound C")
    max_relative_drop: float | None = Field(default=None, ge=0.0, le=1.0, description="warn below stable x (1 - this)")
    critical_relative_drop: float | None = Field(default=None, ge=0.0, le=1.0, description="critical below stable x (1 - this)")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        self._check_lower_is_worse("min_accuracy", "critical_accuracy")
        self._check_higher_is_worse("max_relative_drop", "critical_relative_drop")
        return self


class LatencyThresholds(ConditionBase):
    mean_ms: float | None = Field(default=None, gt=0.0)
    p95_ms: float | None = Field(default=None, gt=0.0)
    p99_ms: float | None = Field(default=None, gt=0.0)
    max_stable_ratio: float | None = Field(default=None, gt=1.0, description="warn above stable x this")
    critical_factor: float | None = Field(default=None, gt=1.0, description="critical bound = factor x warning bound")


class ConfidenceDriftThresholds(ConditionBase):
    max_p_value: float | None = Field(default=None, gt=0.0, lt=1.0, description="KS p-value below this is significant")
    min_statistic: float | None = Field(default=None, ge=0.0, le=1.0, description="warning bound on KS D")
    critical_statistic: float | None = Field(default=None, ge=0.0, le=1.0, description="critical bound on KS D")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        self._check_higher_is_worse("min_statistic", "critical_statistic")
        return self


class ErrorCategoryBounds(ApiModel):
    extraction: float | None = Fraction
    serialization: float | None = Fraction
    timeout: float | None = Fraction
    cache: float | None = Fraction
    other: float | None = Fraction


class ErrorRateThresholds(ConditionBase):
    max_rate: float | None = Field(default=None, ge=0.0, le=1.0, description="warning bound on the total error rate")
    baseline_rate: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="healthy error rate the bounds assume: the canary may exceed the stable by maxRate - baselineRate",
    )
    categories: ErrorCategoryBounds | None = None
    critical_factor: float | None = Field(default=None, gt=1.0, description="critical bound = factor x warning bound")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_rate is not None and self.baseline_rate is not None and self.baseline_rate > self.max_rate:
            raise ValueError(f"baselineRate ({self.baseline_rate}) must not exceed maxRate ({self.max_rate})")
        return self


class CacheThresholds(ConditionBase):
    min_hit_rate: float | None = Fraction
    critical_hit_rate: float | None = Fraction
    max_evictions_per_minute: float | None = Positive
    max_lookup_ms: float | None = Positive
    critical_factor: float | None = Field(default=None, gt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        self._check_lower_is_worse("min_hit_rate", "critical_hit_rate")
        return self


class ThroughputThresholds(ConditionBase):
    min_service_rps: float | None = Field(default=None, ge=0.0, description="0 switches the service-wide check off")
    critical_service_rps: float | None = Field(default=None, ge=0.0)
    max_share_drop: float | None = Field(default=None, ge=0.0, le=1.0, description="canary share-normalised RPS this far below the stable's warns")
    critical_share_drop: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_service_rps and self.critical_service_rps is not None and self.critical_service_rps >= self.min_service_rps:
            raise ValueError(
                f"criticalServiceRps ({self.critical_service_rps}) must be below minServiceRps ({self.min_service_rps})"
            )
        self._check_higher_is_worse("max_share_drop", "critical_share_drop")
        return self


class AnomalyThresholds(ConditionBase):
    sensitivity: Sensitivity | None = None
    min_confidence: float | None = Field(default=None, ge=0.0, lt=1.0, description="ensemble confidence that triggers")


class ConditionOverrides(ApiModel):
    """``spec.analysis.conditions``: per-condition overrides of the profile."""

    accuracy: AccuracyThresholds | None = None
    latency: LatencyThresholds | None = None
    confidence_drift: ConfidenceDriftThresholds | None = None
    error_rate: ErrorRateThresholds | None = None
    cache: CacheThresholds | None = None
    throughput: ThroughputThresholds | None = None
    anomaly: AnomalyThresholds | None = None


# --------------------------------------------------------------------------- profiles

DEFAULT_WEIGHTS: dict[ConditionName, float] = {
    ConditionName.ACCURACY: 0.25,
    ConditionName.LATENCY: 0.20,
    ConditionName.CONFIDENCE_DRIFT: 0.15,
    ConditionName.ERROR_RATE: 0.15,
    ConditionName.CACHE: 0.10,
    ConditionName.THROUGHPUT: 0.10,
    ConditionName.ANOMALY: 0.05,
}


def _common(name: ConditionName, window: str, min_samples: int) -> dict[str, Any]:
    return {"enabled": True, "weight": DEFAULT_WEIGHTS[name], "window": window, "min_samples": min_samples}


def _profile(
    *,
    accuracy: tuple[float, float, float, float],
    mean_ms: float,
    stable_ratio: float,
    error_rate: float,
    category_scale: float,
    hit_rate: tuple[float, float],
    service_rps: float,
    drift: tuple[float, float],
    sensitivity: Sensitivity,
) -> ConditionOverrides:
    p95 = mean_ms * 1.5
    return ConditionOverrides(
        accuracy=AccuracyThresholds(
            **_common(ConditionName.ACCURACY, "15m", 100),
            min_accuracy=accuracy[0], critical_accuracy=accuracy[1],
            max_relative_drop=accuracy[2], critical_relative_drop=accuracy[3],
        ),
        latency=LatencyThresholds(
            **_common(ConditionName.LATENCY, "60s", 1000),
            mean_ms=mean_ms, p95_ms=p95, p99_ms=2 * p95, max_stable_ratio=stable_ratio, critical_factor=2.0,
        ),
        confidence_drift=ConfidenceDriftThresholds(
            **_common(ConditionName.CONFIDENCE_DRIFT, "15m", 100),
            max_p_value=0.05, min_statistic=drift[0], critical_statistic=drift[1],
        ),
        error_rate=ErrorRateThresholds(
            **_common(ConditionName.ERROR_RATE, "5m", 100),
            max_rate=error_rate, baseline_rate=min(0.01, error_rate / 2), critical_factor=2.0,
            categories=ErrorCategoryBounds(
                extraction=round(0.03 * category_scale, 6), serialization=round(0.01 * category_scale, 6),
                timeout=round(0.02 * category_scale, 6), cache=round(0.01 * category_scale, 6),
                other=round(0.02 * category_scale, 6),
            ),
        ),
        cache=CacheThresholds(
            **_common(ConditionName.CACHE, "5m", 100),
            min_hit_rate=hit_rate[0], critical_hit_rate=hit_rate[1],
            max_evictions_per_minute=0.1, max_lookup_ms=5.0, critical_factor=2.0,
        ),
        throughput=ThroughputThresholds(
            **_common(ConditionName.THROUGHPUT, "5m", 1),
            min_service_rps=service_rps, critical_service_rps=service_rps / 2,
            max_share_drop=0.30, critical_share_drop=0.60,
        ),
        anomaly=AnomalyThresholds(
            **_common(ConditionName.ANOMALY, "15m", 30), sensitivity=sensitivity, min_confidence=0.8,
        ),
    )


PROFILES: dict[Profile, ConditionOverrides] = {
    Profile.CONSERVATIVE: _profile(
        accuracy=(0.90, 0.80, 0.03, 0.10), mean_ms=1.5, stable_ratio=1.3, error_rate=0.02, category_scale=0.5,
        hit_rate=(0.99, 0.95), service_rps=40_000, drift=(0.08, 0.25), sensitivity=Sensitivity.HIGH,
    ),
    Profile.BALANCED: _profile(
        accuracy=(0.85, 0.75, 0.05, 0.15), mean_ms=2.0, stable_ratio=1.5, error_rate=0.05, category_scale=1.0,
        hit_rate=(0.98, 0.90), service_rps=30_000, drift=(0.10, 0.30), sensitivity=Sensitivity.MEDIUM,
    ),
    Profile.AGGRESSIVE: _profile(
        accuracy=(0.80, 0.70, 0.08, 0.20), mean_ms=2.5, stable_ratio=2.0, error_rate=0.08, category_scale=1.5,
        hit_rate=(0.95, 0.85), service_rps=25_000, drift=(0.15, 0.40), sensitivity=Sensitivity.LOW,
    ),
}
"""The threshold presets, fully populated. Everything else reads defaults from here."""


def _merge(base: BaseModel, override: BaseModel | None) -> Any:
    """Lay the fields set in ``override`` over ``base``, recursing into nested models."""
    if override is None:
        return base
    updates: dict[str, Any] = {}
    for field in type(override).model_fields:
        value = getattr(override, field)
        if value is None:
            continue
        current = getattr(base, field)
        updates[field] = _merge(current, value) if isinstance(value, BaseModel) and current is not None else value
    merged = base.model_copy(update=updates)
    return type(base).model_validate(merged.model_dump())


@lru_cache(maxsize=256)
def resolve_conditions(profile: Profile, overrides: ConditionOverrides | None) -> ConditionOverrides:
    """The thresholds the core uses: the profile with the spec's overrides laid over it.

    Raises ``ValueError`` when an override makes a pair inconsistent with the profile
    (e.g. a critical bound on the wrong side of the profile's warning bound).
    """
    return _merge(PROFILES[profile], overrides)
