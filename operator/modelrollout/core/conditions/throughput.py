"""Throughput (docs/design.md#conditions, condition 6): does the service still serve, and does the canary keep up?

* whole service = stable RPS + canary RPS, lower is worse, against ``minServiceRps``
  (critical ``criticalServiceRps``); ``minServiceRps: 0`` switches it off;
* share-normalised: the canary's RPS per percent of traffic against the stable's,
  ``ratio = (canary / w) / (stable / (100 − w))`` with w = ``ctx.canary_weight``; the
  drop ``1 − ratio`` is higher-is-worse against ``maxShareDrop`` (critical
  ``criticalShareDrop``). A canary that sheds load or times out serves less than its
  share even when the router sends it its share.

During a shadow step (``ctx.mirror_percent`` = p) the canary answers copies that no user
receives: the service is the stable alone, and the share compares the canary's RPS per
mirrored percent with the stable's per percent of all traffic, ``(canary / p) / (stable / 100)``.

The share check is also skipped while the step is younger than the throughput window:
the rate would reach back to before the step's weight took effect (``plan_windows``
caps this condition's window at the step's age, so the check resumes quickly).

The minimum sample is one RPS reading from the canary; a canary serving nothing (RPS 0
or zero requests) is *no data*, like every other condition with zero requests (docs/design.md#samples),
not a 100% share drop: it holds and counts toward ``noData``. The share check compares with
the stable, so it is skipped (never inconclusive) at w = 0 or 100 or when the stable's
RPS is absent or zero. The service check needs the stable's RPS while the stable serves
(0 ≤ w < 100): absent, it makes the condition inconclusive; at w = 100 an absent stable
RPS counts as 0 (the stable serves nothing then).
"""

from __future__ import annotations

from ...api.thresholds import ConditionName
from ..snapshot import Snapshot
from .base import ConditionResult, EvaluationContext
from ..dispersion import rate_shapes
from .checks import Check, bound_check, conclude, no_data, share_drop_check, window_seconds

NAME = ConditionName.THROUGHPUT.value
MIN_WANDERING_INTERVALS = 2
"""Intervals the share check needs when the stable's rate wanders beyond Poisson."""


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.throughput
    assert t is not None and t.min_service_rps is not None and t.critical_service_rps is not None
    assert t.max_share_drop is not None and t.critical_share_drop is not None and t.min_samples is not None
    weight = t.weight or 0.0
    window = window_seconds(snapshot, NAME)
    w = ctx.canary_weight
    mirror = ctx.mirror_percent
    # (canary's share, stable's share) of the route's requests, in percent
    canary_share, stable_share = (mirror, 100) if mirror else (w, 100 - w)
    shared = bool(mirror) or 0 < w < 100
    threshold: dict[str, float | int | str | bool | None] = {
        "min_service_rps": t.min_service_rps, "critical_service_rps": t.critical_service_rps,
        "max_share_drop": t.max_share_drop, "critical_share_drop": t.critical_share_drop,
    }
    canary = snapshot.canary
    canary_rps = canary.rps if canary is not None else None
    if canary_rps is None or canary_rps <= 0.0 or (canary is not None and canary.requests == 0):
        what = "no RPS reading for the canary" if canary_rps is None else "no requests to the canary"
        return no_data(NAME, weight, what, samples=0, min_samples=t.min_samples,
                       window_seconds=window, threshold=threshold)
    stable_rps = snapshot.stable.rps if snapshot.stable is not None else None
    observed: dict[str, float | int | str | bool | None] = {
        "service_rps": None, "canary_rps": canary_rps, "stable_rps": stable_rps,
        "share_drop": None, "canary_weight": w,
    }
    if mirror:
        observed["mirror_percent"] = mirror
    checks: list[Check | None] = []
    notes: list[str] = []
    inconclusive = False
    if t.min_service_rps > 0.0:
        if stable_rps is None and w < 100:
            inconclusive = True
            notes.append("no RPS reading for the stable: service-wide check inconclusive")
        else:
            service = (stable_rps or 0.0) + (0.0 if mirror else canary_rps)
            observed["service_rps"] = service
            checks.append(bound_check("service RPS", service, t.min_service_rps, t.critical_service_rps, "below",
                                      digits=0))
    stable_per_percent = 0.0
    span = window if window is not None else (t.window.total_seconds() if t.window else 0.0)
    young = ctx.step_age is not None and ctx.step_age.total_seconds() < span
    if young and shared:
        # The rate window reaches back before this step's weight took effect: the canary's
        # RPS would be compared with a share it did not have yet.
        notes.append(f"step younger than the {span:.0f}s window: share check skipped")
    elif shared and stable_rps is not None and stable_rps > 0.0:
        stable_per_percent = stable_rps / stable_share
    seconds = span if span > 0 else 1.0
    length = ctx.dispersion_interval_seconds
    intervals = seconds / length if length else 1.0
    if stable_per_percent > 0.0 and ctx.dispersion.rate and intervals < MIN_WANDERING_INTERVALS:
        # One interval of a wandering rate carries a heavy left tail; even the F test left
        # first-tick false alarms there (docs/decisions.md#overdispersion).
        notes.append(f"rate wanders (CV² {ctx.dispersion.rate:.2g}): share check waits for "
                     f"{MIN_WANDERING_INTERVALS} intervals of the step")
        stable_per_percent = 0.0
        young = True
    if stable_per_percent > 0.0:
        ratio = (canary_rps / canary_share) / stable_per_percent
        observed["share_drop"] = 1.0 - ratio
        assert stable_rps is not None
        shapes = rate_shapes(canary_rps * seconds, stable_rps * seconds, ctx.dispersion.rate, intervals, intervals)
        checks.append(share_drop_check("canary share-normalised RPS drop", ratio, shapes, t.max_share_drop,
                                       t.critical_share_drop, ctx.significance))
    elif shared and not young:
        notes.append("the stable serves no RPS: share check skipped")
    service_text = f"service {observed['service_rps']:.0f} RPS, " if observed["service_rps"] is not None else ""
    return conclude(
        NAME, weight, checks, ctx.significance, notes=notes, inconclusive=inconclusive, gated=True,
        healthy=f"{service_text}canary {canary_rps:.1f} RPS at {f'{mirror}% mirrored' if mirror else f'{w}%'} within bounds",
        observed=observed, threshold=threshold, samples=1, min_samples=t.min_samples, window_seconds=window,
    )
