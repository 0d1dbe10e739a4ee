"""Step sizing (``modelrollout plan``, docs/tuning.md#sizing-steps): how long each step
needs at a given traffic before its conditions can say anything.

For each step and each enabled built-in condition:

* the **evidence rate**: the events per second the condition counts on the canary at that
  step's share of ``rps`` (labelled predictions for accuracy, requests for the error rate,
  cache lookups, latency observations and confidence scores; one reading per interval for
  throughput and the anomaly ensemble's series);
* the **minimum**: ``minSamples`` (the anomaly ensemble: 30 points) — before it, the
  condition is inconclusive and the step cannot complete;
* for the gated proportions (accuracy against ``minAccuracy``, the error rate against
  ``maxRate``, the cache hit rate against ``minHitRate``): the samples for **90 % power**:
  a canary whose true rate sits at the *critical* bound is found beyond the *warning*
  bound by the one-sided exact binomial test at ``analysis.significance`` in 90 % of its
  windows. The exact test (``scipy.stats.binom``) is searched for the smallest such n;
* whether that many samples fit in the condition's nominal window. When they do not, the
  operator grows the window up to the step's age (docs/design.md#windows), so the
  condition still concludes, later: the plan says so.

For accuracy, labels are counted when they arrive, up to ``analysis.labelDelay`` after
their predictions: the time it needs is that delay plus the time to gather its samples
(the plan shows the delay's share). The delay is taken whole, the worst case; labels that
come sooner only shorten it.

A step is too short for a condition when its duration is below the time that condition
needs. What is *not* modelled: the relative bounds against the stable (they depend on the stable's own rate), custom
conditions (their sample counts come from their own queries) and overdispersed traffic;
the times are for steady, independent requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta

from scipy.stats import binom

from ..api.models import ModelRolloutSpec, Step
from ..api.thresholds import ConditionName, ConditionOverrides

POWER = 0.90
ANOMALY_POINTS = 30  # core/conditions/anomaly.py: the series the ensemble needs
N_MAX = 100_000_000


@dataclass(frozen=True, slots=True)
class ConditionPlan:
    condition: str
    evidence: str            # what is counted ("labelled predictions", "requests", …)
    rate: float              # those per second on the canary at this step
    minimum: int             # minSamples (or points)
    power_n: int | None      # samples for 90 % power at the critical bound, gated proportions only
    needs: timedelta | None  # time to the larger of the two; None: no evidence at this rate
    window: timedelta | None
    fits_window: bool        # the nominal window holds that many samples (else it grows to the step's age)
    note: str = ""
    delay: timedelta = timedelta(0)  # of ``needs``: waiting for the evidence to be counted at all (late labels)


@dataclass(frozen=True, slots=True)
class StepPlan:
    index: int
    label: str               # "5%" or "shadow 100%"
    duration: timedelta
    canary_rps: float
    conditions: tuple[ConditionPlan, ...]

    @property
    def too_short_for(self) -> list[str]:
        return [c.condition for c in self.conditions if c.needs is None or c.needs > self.duration]


def samples_for_power(bound: float, critical: float, worse: str, alpha: float, power: float = POWER) -> int | None:
    """The smallest n at which a true rate of ``critical`` is significantly beyond
    ``bound`` (one-sided exact binomial test at ``alpha``) with probability ``power``;
    None when it is not beyond at all or needs more than ``N_MAX``."""
    if worse == "below" and not critical < bound or worse == "above" and not critical > bound:
        return None
    if not 0.0 < bound < 1.0:
        return 1 if (worse == "above" and bound <= 0.0) or (worse == "below" and bound >= 1.0) else None

    def achieved(n: int) -> float:
        if worse == "below":  # reject when X <= k: the largest k with P(X <= k | bound) < alpha
            k = int(binom.ppf(alpha, n, bound))
            while k >= 0 and binom.cdf(k, n, bound) >= alpha:
                k -= 1
            return float(binom.cdf(k, n, critical)) if k >= 0 else 0.0
        k = int(binom.isf(alpha, n, bound))  # reject when X >= k: the smallest k with P(X >= k | bound) < alpha
        while binom.sf(k - 1, n, bound) >= alpha:
            k += 1
        return float(binom.sf(k - 1, n, critical))

    lo, hi = 1, 1
    while achieved(hi) < power:
        lo, hi = hi, hi * 2
        if hi > N_MAX:
            return None
    while lo < hi:  # the exact test's power saw-tooths: the first n past the target, near enough
        mid = (lo + hi) // 2
        if achieved(mid) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _needs(count: int, rate: float) -> timedelta | None:
    return timedelta(seconds=count / rate) if rate > 0 else None


def _proportion(name: str, evidence: str, rate: float, minimum: int, window: timedelta | None,
                bound: float | None, critical: float | None, worse: str, alpha: float) -> ConditionPlan:
    power_n = samples_for_power(bound, critical, worse, alpha) if bound is not None and critical is not None else None
    count = max(minimum, power_n or 0)
    needs = _needs(count, rate)
    fits = window is None or rate * window.total_seconds() >= count
    note = (f"{bound:g} vs critical {critical:g}" if bound is not None and critical is not None else "no absolute bound")
    return ConditionPlan(name, evidence, rate, minimum, power_n, needs, window, fits, note)


def _delayed(plan: ConditionPlan, delay: timedelta) -> ConditionPlan:
    """Evidence counted only once it arrives: ``delay`` is added to the time it needs."""
    if delay <= timedelta(0) or plan.needs is None:
        return plan
    needs = plan.needs + delay
    share = delay / needs
    note = f"{plan.note}; labelDelay {_duration(delay)} is {share:.0%} of it"
    return replace(plan, needs=needs, delay=delay, note=note)


def _counted(name: str, evidence: str, rate: float, minimum: int, window: timedelta | None,
             note: str = "") -> ConditionPlan:
    fits = window is None or rate * window.total_seconds() >= minimum
    needs = _needs(minimum, rate)
    return ConditionPlan(name, evidence, rate, minimum, None, needs, window, fits, note)


def plan_step(spec: ModelRolloutSpec, index: int, rps: float, label_share: float) -> StepPlan:
    step: Step = spec.steps[index]
    share = step.shadow.percent if step.shadow is not None else step.traffic_weight
    canary_rps = rps * share / 100.0
    t: ConditionOverrides = spec.analysis.resolved_conditions()
    alpha = spec.analysis.significance
    per_interval = 1.0 / spec.analysis.interval.total_seconds()
    plans: list[ConditionPlan] = []
    N = ConditionName
    acc = t.accuracy
    if acc is not None and acc.enabled is not False:
        accuracy = _proportion(N.ACCURACY.value, "labelled predictions", canary_rps * label_share,
                               acc.min_samples or 1, acc.window, acc.min_accuracy, acc.critical_accuracy, "below",
                               alpha)
        plans.append(_delayed(accuracy, spec.analysis.label_delay))
    lat = t.latency
    if lat is not None and lat.enabled is not False:
        plans.append(_counted(N.LATENCY.value, "requests", canary_rps, lat.min_samples or 1, lat.window,
                              "mean/p95/p99 gated on the duration buckets"))
    drift = t.confidence_drift
    if drift is not None and drift.enabled is not False:
        plans.append(_counted(N.CONFIDENCE_DRIFT.value, "predictions", canary_rps, drift.min_samples or 1,
                              drift.window, "KS test against the stable's baseline"))
    err = t.error_rate
    if err is not None and err.enabled is not False:
        critical = err.max_rate * err.critical_factor if err.max_rate is not None and err.critical_factor else None
        plans.append(_proportion(N.ERROR_RATE.value, "requests", canary_rps, err.min_samples or 1, err.window,
                                 err.max_rate, critical, "above", alpha))
    cache = t.cache
    if cache is not None and cache.enabled is not False:
        plans.append(_proportion(N.CACHE.value, "cache lookups", canary_rps, cache.min_samples or 1, cache.window,
                                 cache.min_hit_rate, cache.critical_hit_rate, "below", alpha))
    tp = t.throughput
    if tp is not None and tp.enabled is not False:
        plans.append(_counted(N.THROUGHPUT.value, "RPS readings", per_interval, tp.min_samples or 1, None,
                              "skipped while the step is younger than its window"))
    anomaly = t.anomaly
    if anomaly is not None and anomaly.enabled is not False:
        plans.append(_counted(N.ANOMALY.value, "series points (one per interval)", per_interval, ANOMALY_POINTS,
                              None))
    label = f"shadow {share}%" if step.shadow is not None else f"{share}%"
    return StepPlan(index, label, step.hold_for, canary_rps, tuple(plans))


def plan(spec: ModelRolloutSpec, rps: float, label_share: float) -> list[StepPlan]:
    if not rps > 0:
        raise ValueError(f"--rps: {rps} must be above 0")
    if not 0 < label_share <= 1:
        raise ValueError(f"--label-share: {label_share} must be within (0, 1]")
    return [plan_step(spec, i, rps, label_share) for i in range(len(spec.steps))]


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    seconds = delta.total_seconds()
    if seconds < 1:
        return "<1s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render(plans: list[StepPlan], rps: float, label_share: float, alpha: float,
           label_delay: timedelta = timedelta(0)) -> str:
    """The plan as text: one table per step, then the steps too short for something."""
    late = f" arriving up to {_duration(label_delay)} late (labelDelay)" if label_delay > timedelta(0) else ""
    lines = [f"traffic {rps:g} RPS, labels on {label_share:.0%} of predictions{late}, significance {alpha:g}; "
             f"'needs' = time to minSamples, and for gated proportions to {POWER:.0%} power at the critical bound"]
    short: list[str] = []
    for p in plans:
        lines.append("")
        lines.append(f"step {p.index + 1}: {p.label} for {_duration(p.duration)}, canary {p.canary_rps:g} RPS")
        lines.append(f"  {'condition':<16} {'evidence/s':>11} {'minimum':>8} {'90% power':>10} {'needs':>7}  note")
        for c in p.conditions:
            power = f"{c.power_n:,}" if c.power_n is not None else "-"
            fits = "" if c.fits_window else f" (more than its {_duration(c.window)} window holds: it grows to the step's age)"
            mark = " *" if c.needs is None or c.needs > p.duration else ""
            lines.append(f"  {c.condition:<16} {c.rate:>11.3g} {c.minimum:>8,} {power:>10} "
                         f"{_duration(c.needs):>7}{mark}  {c.note}{fits}".rstrip())
        if p.too_short_for:
            short.append(f"step {p.index + 1} ({p.label}, {_duration(p.duration)}): too short for "
                         + ", ".join(p.too_short_for))
    lines.append("")
    if short:
        lines.append("* steps too short to judge a condition (the step holds until it has the evidence, "
                     "so it lasts longer than written, or the condition stays inconclusive):")
        lines.extend(f"  {s}" for s in short)
    else:
        lines.append("every step is long enough for every enabled condition at this traffic")
    lines.append("not modelled: relative bounds against the stable, custom conditions, "
                 "overdispersed traffic (docs/tuning.md#sizing-steps)")
    return "\n".join(lines)
