"""Query windows: how far back each condition's canary counts reach on the next look.

Planned here, in the core, once per look, because the windows are part of the judgement:
a window too short for the traffic makes a condition inconclusive, one reaching back
before the step's weight took effect compares the canary with the wrong share, and one
older than a young series reads ``increase()``'s extrapolation artefacts as a breach.
The metrics adapter only receives the result (``SnapshotRequest.windows``) and never
decides a window itself, so the tick, the fast path, ``evaluate`` and the benchmarks
all read the same evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..api.models import ModelRolloutSpec, ModelRolloutStatus
from ..api.thresholds import ConditionName
from .conditions import thresholds_of

MIN_THROUGHPUT_WINDOW = timedelta(seconds=10)
"""The shortest throughput window: a rate over less than this is mostly scrape jitter."""

FAST_PATH_CONDITIONS: tuple[ConditionName, ...] = (
    ConditionName.ACCURACY,
    ConditionName.LATENCY,
    ConditionName.CONFIDENCE_DRIFT,
    ConditionName.ERROR_RATE,
    ConditionName.CACHE,
)
"""Conditions with a critical bound that a counter query can show within a second.

Throughput is left to the tick: its share-normalised drop jumps at every weight change
and its service-wide RPS needs a stable window. Anomaly has no critical bound."""


def plan_windows(spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime) -> dict[str, timedelta]:
    """Which window each condition's canary counts should cover on the next query.

    The nominal window, grown to the step's age when the nominal window is expected to
    hold fewer than the minimum samples (docs/design.md#windows: windows grow at low traffic). The
    expectation comes from the previous evaluation's sample rate, so the window does
    not flap between nominal and grown once evidence suffices only in the larger one.
    """
    resolved = spec.analysis.resolved_conditions()
    previous = {c.name: c for c in (status.risk.conditions if status.risk else [])}
    age = now - status.step_started_at if status.step_started_at else timedelta(0)
    plan: dict[str, timedelta] = {}
    for name in ConditionName:
        th = thresholds_of(resolved, name)
        if not th.enabled:
            continue
        assert th.window is not None  # resolved thresholds always carry a window
        nominal = th.window
        window = nominal
        prev = previous.get(name.value)
        if prev and prev.window_seconds and prev.samples is not None:
            rate = prev.samples / prev.window_seconds
            if rate * nominal.total_seconds() < (th.min_samples or 0):
                window = max(nominal, age)
        elif prev and prev.inconclusive and not prev.no_data:
            window = max(nominal, age)
        if name == ConditionName.THROUGHPUT:
            # A rate over time before the step's weight took effect is compared with the
            # wrong share; keep the throughput window inside the step (at least 10s).
            window = max(min(window, age), min(nominal, MIN_THROUGHPUT_WINDOW))
        plan[name.value] = window
    return plan


@dataclass(frozen=True, slots=True)
class FastPathLook:
    """What the fast path reads on one look: each critical condition's window, and which
    of them are read as exact counter differences over that window.

    ``exact`` holds the conditions whose window the current step does not cover yet: the
    adapter reads them as each counter's exact difference between now and one window
    ago, a series born or reset since counting from zero (docs/design.md#fast-path),
    never as ``increase()``, which extrapolates young series.
    """

    windows: dict[str, timedelta]
    exact: frozenset[str] = frozenset()


def fast_path_look(spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime) -> FastPathLook:
    """The tick's windows (``plan_windows``) for the enabled fast-path conditions; those
    the current step does not cover yet are read exactly.

    Same windows as the tick, so "visible in Prometheus" means the same thing on both
    paths. A window longer than the step's age reaches back before the canary's pods (or
    this step's new pods) existed, and Prometheus' ``increase()`` extrapolates each young
    series on its own: measured on the local cluster, a healthy canary 5 s old read 0.77
    accuracy from counters whose raw ratio was 0.89 (``increase(evaluated)`` extrapolated
    by 45 %, ``increase(correct)`` by 26 %), which the binomial gate then calls
    significant at any α. Exact differences have no such artefact, so a canary bad from
    its first request is judged as soon as its evidence suffices, whatever the step's age.
    """
    resolved = spec.analysis.resolved_conditions()
    enabled = {c.value for c in FAST_PATH_CONDITIONS if thresholds_of(resolved, c).enabled is not False}
    age = now - status.step_started_at if status.step_started_at else timedelta(0)
    windows = {name: window for name, window in plan_windows(spec, status, now).items() if name in enabled}
    return FastPathLook(windows, frozenset(name for name, window in windows.items() if window > age))


__all__ = ["FAST_PATH_CONDITIONS", "MIN_THROUGHPUT_WINDOW", "FastPathLook", "fast_path_look", "plan_windows"]
