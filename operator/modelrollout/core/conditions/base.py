"""What every condition returns, and the severity formula they all share.

A condition turns one snapshot into a ``ConditionResult``: a severity in [0, 1] with the
evidence behind it (observed values, thresholds, p-values, sample counts), so that
status, Events, webhooks and ``evaluate`` all show *why*, not just a bool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple, Protocol

from ...api.thresholds import ConditionOverrides
from ..dispersion import NONE, Dispersion
from ..snapshot import Snapshot

ObservedValues = dict[str, float | int | str | bool | None]


class ConditionResult(NamedTuple):
    """One condition's verdict on one snapshot.

    ``inconclusive`` means "not enough evidence to call it healthy" (too few samples or
    missing fields); ``no_data`` is the stronger "no samples at all", the only thing that
    counts toward ``noData.maxConsecutive``. An inconclusive condition has severity 0
    unless a check that *did* have evidence crossed its bound.

    A NamedTuple rather than a frozen dataclass: immutable all the same, and five times
    cheaper to build — seven are built per tick, and the core's budget is 100 µs a tick.
    The observed/threshold dicts are never mutated after construction.
    """

    name: str
    severity: float
    critical: bool = False
    inconclusive: bool = False
    no_data: bool = False
    weight: float = 0.0
    observed: ObservedValues = {}
    threshold: ObservedValues = {}
    message: str = ""
    samples: float | None = None
    min_samples: float | None = None
    window_seconds: float | None = None

    @property
    def triggered(self) -> bool:
        return self.severity > 0.0


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """What conditions need besides the snapshot: resolved thresholds and rollout position.

    ``canary_weight`` normalises throughput by traffic share (``mirror_percent`` instead
    during a shadow step, when the stable serves every user); ``step_age`` feeds the
    "minimum reached in about N minutes" estimates; ``significance`` is α for the
    one-sided binomial gates (the fast path passes α/10); ``dispersion`` widens them by the
    noise the stable shows beyond binomial (docs/decisions.md#overdispersion).
    """

    thresholds: ConditionOverrides
    significance: float = 0.05
    canary_weight: int = 5
    mirror_percent: int | None = None
    step_age: timedelta | None = None
    interval: timedelta | None = None  # analysis interval: anomaly series gain one point per interval
    dispersion: Dispersion = NONE

    @property
    def dispersion_interval_seconds(self) -> float | None:
        """The length of the intervals the dispersion describes: the ones it was measured
        on, else the analysis interval; a window holds ``window / this`` of them."""
        if self.dispersion.seconds:
            return self.dispersion.seconds
        return self.interval.total_seconds() if self.interval is not None else None


class Condition(Protocol):
    """A built-in condition module exposes one pure function of this shape."""

    def __call__(self, snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult: ...


def clamp01(value: float) -> float:
    return 0.0 if value <= 0.0 else 1.0 if value >= 1.0 else value


def severity_higher_is_worse(x: float, warn: float, crit: float) -> float:
    """docs/design.md#severity: sev = clamp((x − T)/(C − T)); 0 at or below T, 1 at or beyond C."""
    if x <= warn:
        return 0.0
    if crit <= warn:
        return 1.0
    return clamp01((x - warn) / (crit - warn))


def severity_lower_is_worse(x: float, warn: float, crit: float) -> float:
    """docs/design.md#severity: sev = clamp((T − x)/(T − C)); 0 at or above T, 1 at or below C."""
    if x >= warn:
        return 0.0
    if crit >= warn:
        return 1.0
    return clamp01((warn - x) / (warn - crit))


def counted(n: float) -> str:
    """A count as a whole number: ``increase()`` extrapolates counters to fractions (1181.02
    requests), and messages speak of requests and predictions, not of estimates."""
    return str(round(n))


def shortfall_message(what: str, samples: float, minimum: float, rate_per_second: float | None) -> str:
    """``accuracy: 64/100 labelled predictions, minimum in ~3m at the current rate``."""
    text = f"{int(samples)}/{int(minimum)} {what}"
    if rate_per_second and rate_per_second > 0:
        seconds = (minimum - samples) / rate_per_second
        text += f", minimum in ~{_human(seconds)} at the current rate"
    return text


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))}s"
    if seconds < 5400:
        return f"{round(seconds / 60)}m"
    return f"{seconds / 3600:.1f}h"
