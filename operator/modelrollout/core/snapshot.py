"""Metrics snapshot, format v1: the only metrics input of the decision core.

The Prometheus adapter builds one snapshot per rollout per tick; ``modelrollout
evaluate`` reads one from a file and ``replay`` reads one per line. Every field may be
absent or null: absence makes the conditions that need it inconclusive, never healthy,
so NaN and infinities are normalised to ``None`` on the way in (argo-rollouts#1466).
See docs/snapshot.md for the field-by-field reference.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

SNAPSHOT_VERSION = 1
ERROR_CATEGORIES = ("extraction", "serialization", "timeout", "cache", "other")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str) and value.strip().lower() in ("nan", "+inf", "-inf", "inf"):
        return None
    return value


def _finite_non_negative(value: float | None) -> float | None:
    """NaN and infinities (as floats or as pydantic parsed them from strings) are None;
    a negative number is an error. One call per field: the fast path validates a
    thousand snapshots a second."""
    if value is None or value != value or value in (math.inf, -math.inf):
        return None
    if value < 0:
        raise ValueError(f"{value} is negative; counts, rates and times are >= 0")
    return value


Num = Annotated[float | None, AfterValidator(_finite_non_negative)]
Count = Num


class SnapshotModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorCounts(SnapshotModel):
    extraction: Count = None
    serialization: Count = None
    timeout: Count = None
    cache: Count = None
    other: Count = None

    def total(self) -> float | None:
        """Sum of the categories that are present; None when none is."""
        values = [getattr(self, c) for c in ERROR_CATEGORIES if getattr(self, c) is not None]
        return float(sum(values)) if values else None


class Histogram(SnapshotModel):
    """A cumulative histogram as Prometheus exposes it: upper bounds and counts <= each."""

    le: list[float]
    counts: list[float]

    @field_validator("le", "counts", mode="before")
    @classmethod
    def _no_placeholders(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [float("inf") if isinstance(v, str) and v in ("+Inf", "inf", "Inf") else v for v in value]
        return value

    @model_validator(mode="after")
    def _shape(self) -> "Histogram":
        if len(self.le) != len(self.counts):
            raise ValueError(f"le has {len(self.le)} bounds but counts has {len(self.counts)} values; they pair up")
        if not self.le:
            raise ValueError("le is empty; a histogram needs at least one bucket")
        if any(b2 <= b1 for b1, b2 in zip(self.le, self.le[1:])):
            raise ValueError("le must be strictly increasing")
        if any(c2 < c1 for c1, c2 in zip(self.counts, self.counts[1:])):
            raise ValueError("counts must be non-decreasing (cumulative buckets)")
        if any(c < 0 or not math.isfinite(c) for c in self.counts):
            raise ValueError("counts must be finite and >= 0")
        return self

    @property
    def total(self) -> float:
        return self.counts[-1]


class Latency(SnapshotModel):
    mean: Num = None
    p95: Num = None
    p99: Num = None
    count: Count = Field(default=None, description="requests in the latency window (default: the side's requests)")
    buckets: Histogram | None = Field(
        default=None, description="the duration histogram's finite buckets over the window, in ms (cumulative); "
                                  "with them mean, p95 and p99 are significance-gated")


class Cache(SnapshotModel):
    hits: Count = None
    misses: Count = None
    evictions_per_minute: Num = None
    lookup_ms: Num = None
    lookup_buckets: Histogram | None = Field(
        default=None, description="the lookup-duration histogram's finite buckets over the window, in ms "
                                  "(cumulative); with them the lookup time is significance-gated")


IntervalPoints = list[Annotated[float | None, BeforeValidator(_finite_or_none)]]


class Intervals(SnapshotModel):
    """Counts per analysis interval, oldest first (null: no data for that interval).

    Read for the stable: how much its rates wander from one interval to the next is how
    much wider than binomial the gates must be (docs/decisions.md#overdispersion)."""

    seconds: float | None = Field(default=None, gt=0, description="each interval's length (default: the analysis interval)")
    requests: IntervalPoints | None = None
    errors: IntervalPoints | None = None
    error_categories: dict[str, IntervalPoints] | None = Field(
        default=None, description="errors per interval by category (bursts of one category are their own)")
    predictions_evaluated: IntervalPoints | None = None
    predictions_correct: IntervalPoints | None = None
    cache_hits: IntervalPoints | None = None
    cache_misses: IntervalPoints | None = None


class SideMetrics(SnapshotModel):
    """One side (stable or canary) of the comparison, counts over each condition's window."""

    requests: Count = None
    rps: Num = None
    errors: ErrorCounts | None = None
    latency_ms: Latency | None = None
    predictions_evaluated: Count = None
    predictions_correct: Count = None
    confidence: Histogram | None = None
    cache: Cache | None = None
    series: dict[str, list[Annotated[float | None, BeforeValidator(_finite_or_none)]]] | None = None
    model_digests: dict[str, str] | None = Field(
        default=None, description="pod -> the model digest it reports in model_info (docs/integrity.md)")
    intervals: Intervals | None = Field(
        default=None, description="counts per analysis interval (the stable's: docs/decisions.md#overdispersion)")

    @model_validator(mode="after")
    def _consistent(self) -> "SideMetrics":
        if (
            self.predictions_evaluated is not None
            and self.predictions_correct is not None
            and self.predictions_correct > self.predictions_evaluated
        ):
            raise ValueError(
                f"predictions_correct ({self.predictions_correct}) exceeds predictions_evaluated "
                f"({self.predictions_evaluated})"
            )
        return self


class CanaryHealth(SnapshotModel):
    oom_killed: int = Field(default=0, ge=0)
    crash_looping: int = Field(default=0, ge=0)
    unavailable_for_seconds: float = Field(default=0.0, ge=0.0)
    progress_deadline_exceeded: bool = False
    replicas: int | None = Field(default=None, ge=0, description="the canary Deployment's spec.replicas")
    available_replicas: int | None = Field(
        default=None, ge=0,
        description="its pods available at the current template (0 while the controller has not seen the latest "
                    "spec); a step never completes while fewer than replicas are (docs/design.md#decision-rules)")
    current_pods: list[str] | None = Field(
        default=None,
        description="names of its ready pods at the current template: the pods whose model is judged "
                    "(docs/integrity.md); None when unknown")


class Health(SnapshotModel):
    canary: CanaryHealth | None = None
    canary_unread: str | None = Field(
        default=None, description="why the operator could not read the canary's Deployment this tick; "
                                  "a step does not complete on a canary whose size is unknown "
                                  "(absent from replayed snapshots, which carry no health or their own)")


class CustomNum(SnapshotModel):
    """A custom condition's value may be negative (e.g. a drawdown), unlike the contract's."""

    value: Annotated[float | None, BeforeValidator(_finite_or_none)] = None
    samples: Count = None


class Snapshot(SnapshotModel):
    version: Literal[1] = SNAPSHOT_VERSION
    at: datetime
    stable: SideMetrics | None = None
    canary: SideMetrics | None = None
    health: Health | None = None
    custom: dict[str, CustomNum] | None = Field(default=None, description="custom condition name -> value")
    windows: dict[str, float] | None = Field(default=None, description="condition -> seconds its canary counts cover")

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> Any:
        if value != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {value!r} is not supported; this operator reads version 1")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("at must carry a timezone, e.g. 2026-11-24T12:00:00Z")
        return value


def load_snapshot(data: dict[str, Any]) -> Snapshot:
    """Validate a decoded snapshot; raises pydantic.ValidationError naming the field."""
    return Snapshot.model_validate(data)
