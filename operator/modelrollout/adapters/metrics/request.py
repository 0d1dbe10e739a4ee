"""What one rollout asks of Prometheus on one look: ``SnapshotRequest``.

A request is plain, validated data, built from the rollout's spec and status and the
windows the core planned (``core.windows``): the adapter never decides a window. Every
value that will enter PromQL is checked on construction, so a request that exists is
safe to batch with other rollouts' requests, and a bad spec fails here, naming the
field, instead of failing a whole batch at Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from ...api.models import CustomCondition, MetricLabels, ModelRolloutSpec, ModelRolloutStatus
from ...api.thresholds import PROFILES, ConditionName, Profile
from ...core.conditions import CONDITIONS, thresholds_of
from ...core.windows import FastPathLook
from . import promql
from .catalogue import CATALOGUE

_DEFAULT_MIN_SAMPLES: dict[str, float] = {
    c.name.value: float(thresholds_of(PROFILES[Profile.BALANCED], c.name).min_samples or 0) for c in CONDITIONS
}
"""A condition's minimum samples when the request does not say (the balanced profile's)."""


@dataclass(frozen=True)
class SnapshotRequest:
    """What one rollout needs from Prometheus this tick.

    Validated on construction: ``UnsafeLabelValue`` names the field whose value cannot
    enter a PromQL matcher, ``InvalidSpec`` names an unknown or unusable template override
    (``spec.analysis.queries.<name>``). An instance that exists is safe to batch.
    """

    key: str                                  # "namespace/name" of the ModelRollout
    namespace: str
    stable: str                               # Deployment names
    canary: str
    windows: Mapping[str, timedelta]          # condition key -> canary window (core.windows.plan_windows)
    baseline_window: timedelta = timedelta(hours=24)
    series_window: timedelta | None = None    # anomaly series: how far back (None: no series)
    series_step: timedelta | None = None      # ... and one point per step (the analysis interval)
    interval_length: timedelta | None = None  # the stable's counts per interval: each interval's length
    interval_points: int = 0                  # ... and how many (0: none; the fast path reads none)
    canary_weight: int = 0
    labels: MetricLabels = field(default_factory=MetricLabels)
    queries: Mapping[str, str] = field(default_factory=dict)   # spec.analysis.queries overrides
    custom: Sequence[CustomCondition] = ()
    min_samples: Mapping[str, float] = field(default_factory=dict)  # condition -> minimum (default: balanced)
    prometheus_url: str | None = None         # spec.analysis.prometheus.url (None: the operator's default)
    exact: frozenset[str] = frozenset()       # conditions read as exact counter differences over their window
    model_digest: str | None = None           # spec.canary.template.modelDigest: read the canary's model_info
    fast_path: bool = False                   # the fast path's request: no tick-only templates (catalogue)
    templates: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        promql.check_namespace(self.namespace, "metadata.namespace")
        promql.check_deployment(self.stable, "spec.stable.deployment")
        promql.check_deployment(self.canary, "spec.canary.deployment")
        promql.check_label_name(self.labels.namespace, "spec.analysis.labels.namespace")
        promql.check_label_name(self.labels.deployment, "spec.analysis.labels.deployment")
        unknown = set(self.windows) - set(CATALOGUE)
        if unknown:
            raise ValueError(f"windows: unknown condition(s) {sorted(unknown)}; known: {sorted(CATALOGUE)}")
        if (self.series_window is None) != (self.series_step is None):
            raise ValueError("series_window and series_step go together")
        if self.series_step is not None and self.series_step.total_seconds() < 1:
            raise ValueError("series_step must be at least 1s")
        if self.interval_points and (self.interval_length is None or self.interval_length.total_seconds() < 1):
            raise ValueError("interval_points needs an interval_length of at least 1s")
        if not self.exact <= set(self.windows):
            raise ValueError(f"exact: {sorted(self.exact - set(self.windows))} have no window")
        object.__setattr__(self, "templates", promql.resolve_queries(self.queries))
        overridden = [c for c in self.exact if not reads_exactly(c, self.queries)]
        if overridden:
            raise ValueError(f"exact: {sorted(overridden)} read an overridden template (spec.analysis.queries)")

    @classmethod
    def for_rollout(cls, *, namespace: str, name: str, spec: ModelRolloutSpec, status: ModelRolloutStatus | None,
                    windows: Mapping[str, timedelta], series_points: int = 30,
                    max_series_window: timedelta = timedelta(hours=6), fast_path: bool = False,
                    exact: frozenset[str] = frozenset()) -> "SnapshotRequest":
        """The request the regular tick makes for one rollout, from its spec, its status and
        the windows the core planned (``core.windows.plan_windows``).

        The anomaly series (when ``windows`` has anomaly) covers ``max(series_points,
        anomaly.minSamples)`` analysis intervals (capped at ``max_series_window``). The
        stable's counts per interval, which measure the traffic's overdispersion, are
        ``series_points`` intervals whatever conditions are enabled: every proportion's
        gate is widened by them (docs/decisions.md#overdispersion).
        ``fast_path`` and ``exact``: see ``for_fast_path``.
        """
        status = status or ModelRolloutStatus()
        analysis = spec.analysis
        resolved = analysis.resolved_conditions()
        minimums = {c.name.value: float(thresholds_of(resolved, c.name).min_samples or 0) for c in CONDITIONS}
        series_window = series_step = None
        if ConditionName.ANOMALY.value in windows and not fast_path:
            series_step = analysis.interval
            points = max(series_points, int(minimums[ConditionName.ANOMALY.value]))
            series_window = min(series_step * points, max_series_window)
        interval_length = None if fast_path else analysis.interval
        return cls(
            key=f"{namespace}/{name}", namespace=namespace, stable=spec.stable.deployment,
            canary=spec.canary.deployment, windows=dict(windows), baseline_window=analysis.baseline_window,
            series_window=series_window, series_step=series_step, canary_weight=status.canary_weight,
            interval_length=interval_length, interval_points=0 if fast_path else series_points,
            labels=analysis.labels, queries=dict(analysis.queries),
            custom=() if fast_path else tuple(c for c in analysis.custom if c.enabled), min_samples=minimums,
            prometheus_url=analysis.prometheus.url if analysis.prometheus else None, exact=exact,
            # The digests are judged by the tick, which knows the canary's current pods.
            model_digest=spec.canary.template.model_digest if spec.canary.template and not fast_path else None,
            fast_path=fast_path,
        )

    @classmethod
    def for_fast_path(cls, *, namespace: str, name: str, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                      look: FastPathLook) -> "SnapshotRequest":
        """The fast path's request: the critical conditions' windows as the core planned
        them (``core.windows.fast_path_look``).

        Conditions the current step does not cover yet are read as exact counter
        differences, except those whose templates ``spec.analysis.queries`` overrides (a
        user's PromQL cannot be rewritten safely): they are left to the tick until the
        step covers their window. No anomaly series and no custom conditions (per-rollout
        queries would make the fast path's cost grow with rollouts).
        """
        exact = frozenset(c for c in look.exact if reads_exactly(c, spec.analysis.queries))
        windows = {c: w for c, w in look.windows.items() if c not in look.exact or c in exact}
        return cls.for_rollout(namespace=namespace, name=name, spec=spec, status=status, windows=windows,
                               fast_path=True, exact=exact)

    def minimum(self, condition: str) -> float:
        value = self.min_samples.get(condition)
        return float(value) if value is not None else _DEFAULT_MIN_SAMPLES.get(condition, 1.0)


def reads_exactly(condition: str, overrides: Mapping[str, str]) -> bool:
    """Whether a condition's counts can be read as exact counter differences: all its
    templates are the defaults (``promql.EXACT_QUERIES`` has their rewritten form)."""
    entry = CATALOGUE.get(condition)
    return (entry is not None and bool(entry.queries)
            and all(q in promql.EXACT_QUERIES and q not in overrides for q in entry.queries))


__all__ = ["SnapshotRequest", "reads_exactly"]
