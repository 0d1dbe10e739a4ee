"""Checks: the unit every condition is made of, and how a condition summarises them.

A condition is a handful of checks ("p95 against 3 ms", "timeout errors against 2%").
Each check that has something to say becomes a ``Check`` — a bound crossed, or crossed
without significance — and checks with nothing to say are ``None``, so a healthy
snapshot allocates almost nothing (the core runs 10,000+ evaluations a second).
``conclude`` turns a condition's checks into its ``ConditionResult``: severity is the
maximum, critical is any, and the message describes the check that decided.

The sample bookkeeping shared by all conditions (no data, too few samples, the rate
at which the minimum will be reached) lives here too, so that every condition says
"64/100 labelled predictions" the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from scipy.special import fdtr, ndtr

from ..dispersion import design_effect, per_interval, relative_design_effect, widened
from ..snapshot import Histogram, Snapshot
from ..stats import Worse, binomial_gate, poisson_gate
from .base import (
    ConditionResult,
    EvaluationContext,
    ObservedValues,
    severity_higher_is_worse,
    severity_lower_is_worse,
    shortfall_message,
)


class Check(NamedTuple):
    """One check whose value lies beyond its warning bound (significantly or not).

    A NamedTuple rather than a frozen dataclass: as immutable, several times cheaper to
    build, and conditions build several per evaluation when a rollout goes bad.

    ``severity`` is 0 when a gated proportion is beyond its bound without significance;
    ``note`` says where a relative bound comes from (" (stable 0.920 × 0.95)").
    """

    label: str
    value: float
    bound: float
    critical_bound: float
    worse: Worse
    severity: float
    critical: bool
    p_value: float | None = None
    unit: str = ""
    digits: int = 3
    note: str = ""


def proportion_check(
    label: str,
    x: float,
    n: float,
    bound: float,
    critical_bound: float,
    worse: Worse,
    alpha: float,
    *,
    digits: int = 3,
    note: str = "",
    deff: float = 1.0,
) -> Check | None:
    """A gated proportion check (docs/design.md#significance); None when x/n is within bound.

    Severity follows the formula once the warning gate is significant. Critical needs
    the critical gate too: a rate at or past the critical bound whose distance from it
    is not significant is severe (up to 1) but not critical. ``deff`` > 1 widens both
    gates by the traffic's overdispersion: the test runs on ``n / deff`` trials at the
    same rate (docs/decisions.md#overdispersion).
    """
    rate = x / n if n > 0 else 0.0
    x, n = widened(x, n, deff)
    gate = binomial_gate(x, n, bound, worse, alpha)
    if gate.p_value is None:
        return None
    if not gate.beyond:
        return Check(label, rate, bound, critical_bound, worse, 0.0, False, gate.p_value, digits=digits, note=note)
    if worse == "above":
        severity = severity_higher_is_worse(rate, bound, critical_bound)
    else:
        severity = severity_lower_is_worse(rate, bound, critical_bound)
    critical = severity >= 1.0 and binomial_gate(x, n, critical_bound, worse, alpha).beyond
    return Check(label, rate, bound, critical_bound, worse, severity, critical, gate.p_value, digits=digits, note=note)


def event_rate_check(
    label: str,
    rate: float,
    exposure: float,
    bound: float,
    critical_bound: float,
    alpha: float,
    *,
    unit: str = "",
    digits: int = 3,
) -> Check | None:
    """A rate of rare events (per unit of ``exposure``), gated by an exact Poisson test.

    Like ``proportion_check`` for counts without a denominator of trials: beyond the
    warning bound only when significant; critical only when also significantly beyond
    the critical bound. None when the rate is within bound.
    """
    count = rate * exposure
    gate = poisson_gate(count, exposure, bound, alpha)
    if gate.p_value is None:
        return None
    if not gate.beyond:
        return Check(label, rate, bound, critical_bound, "above", 0.0, False, gate.p_value, unit=unit, digits=digits)
    severity = severity_higher_is_worse(rate, bound, critical_bound)
    critical = severity >= 1.0 and poisson_gate(count, exposure, critical_bound, alpha).beyond
    return Check(label, rate, bound, critical_bound, "above", severity, critical, gate.p_value, unit=unit,
                 digits=digits)


def deff_of(ctx: EvaluationContext, icc: float, n: float, window: float | None, *,
            stable_n: float | None = None, stable_points: list[float | None] | None = None,
            scale: float | None = None) -> float:
    """The canary's design effect for a proportion of ``n`` samples over ``window`` seconds;
    with ``scale``, for a bound of ``scale`` × the stable's rate, the stable's ``stable_n``
    samples (``stable_points``: its counts per interval, when read) adding their noise.
    1 without overdispersion."""
    if icc <= 0.0:
        return 1.0
    interval = ctx.dispersion_interval_seconds
    m = per_interval(n, window, interval)
    if scale is None:
        return design_effect(icc, m)
    known = [p for p in stable_points or () if p is not None]
    stable_m = sum(known) / len(known) if known else per_interval(stable_n or 0.0, window, interval)
    return relative_design_effect(icc, n, m, stable_n, stable_m, scale)


def share_drop_check(label: str, ratio: float, shapes: tuple[float, float], bound: float, critical_bound: float,
                     alpha: float) -> Check | None:
    """A gated drop of a rate ratio (the canary's per-percent RPS over the stable's); None
    within bound.

    Each side's count over its window is taken as Poisson around a rate that wanders
    (Gamma-distributed, ``dispersion.rate_shapes``), so the ratio of the two is F-distributed
    around the true ratio: the drop beyond ``bound`` counts when
    ``P = F(ratio / (1 − bound); 2·shape_c, 2·shape_s) < α``. The F keeps the heavy left
    tail that one wandering interval has, which a normal approximation of the log ratio
    does not. Critical needs the same at the critical bound.
    """
    drop = 1.0 - ratio
    if not drop > bound or bound >= 1.0:
        return None
    d1, d2 = 2.0 * shapes[0], 2.0 * shapes[1]

    def p_at(limit: float) -> float:
        return 0.0 if ratio <= 0.0 else float(fdtr(d1, d2, ratio / (1.0 - limit)))

    p = p_at(bound)
    if not p < alpha:
        return Check(label, drop, bound, critical_bound, "above", 0.0, False, p)
    severity = severity_higher_is_worse(drop, bound, critical_bound)
    critical = severity >= 1.0 and (ratio <= 0.0 if critical_bound >= 1.0 else p_at(critical_bound) < alpha)
    return Check(label, drop, bound, critical_bound, "above", severity, critical, p)


def bound_check(
    label: str,
    value: float,
    bound: float,
    critical_bound: float,
    worse: Worse,
    *,
    unit: str = "",
    digits: int = 3,
    note: str = "",
) -> Check | None:
    """A plain threshold check (no significance gate); None when the value is within bound.

    Critical at or beyond the critical bound (where the severity formula reaches 1).
    """
    if worse == "above":
        if not value > bound:
            return None
        severity = severity_higher_is_worse(value, bound, critical_bound)
    else:
        if not value < bound:
            return None
        severity = severity_lower_is_worse(value, bound, critical_bound)
    return Check(label, value, bound, critical_bound, worse, severity, severity >= 1.0,
                 unit=unit, digits=digits, note=note)


def slower_than(buckets: Histogram, n: float, limit: float) -> float:
    """Requests slower than ``limit`` (the buckets' unit): ``n`` less the cumulative count
    at ``limit``, interpolated linearly within its bucket as ``histogram_quantile`` does
    (the first bucket from 0). Past the last finite bucket it is unknowable, and taken as
    0: no significance can rest on it (``histogram_quantile`` reports that bucket's bound
    then, so a bound past it is not crossed anyway)."""
    le, counts = buckets.le, buckets.counts
    if limit >= le[-1]:
        return 0.0
    lower, below = 0.0, 0.0
    for upper, cumulative in zip(le, counts):
        if limit <= upper:
            share = (limit - lower) / (upper - lower) if upper > lower else 1.0
            at = below + (cumulative - below) * max(0.0, share)
            return max(0.0, max(n, counts[-1]) - at)
        lower, below = upper, cumulative
    return 0.0  # unreachable: limit < le[-1]


def quantile_check(
    label: str,
    value: float,
    bound: float,
    critical_bound: float,
    q: float,
    buckets: Histogram | None,
    n: float,
    alpha: float,
    *,
    unit: str = "",
    digits: int = 3,
    note: str = "",
) -> Check | None:
    """A quantile (p95, p99) against a bound, gated by the requests in the tail (docs/design.md#significance).

    "The true q-quantile is at most B" means at most a share 1 − q of requests are slower
    than B; the exact binomial test on the requests the histogram counts above B (out of
    ``n``) rejects it at ``alpha`` or not. Beyond the bound without significance is
    severity 0, as for proportions; critical needs the same test at the critical bound.
    Without buckets (the fast path; a snapshot that has none) it is a plain threshold
    check, as before the gate."""
    if not value > bound:
        return None
    if buckets is None:
        return bound_check(label, value, bound, critical_bound, "above", unit=unit, digits=digits, note=note)
    n = max(n, buckets.counts[-1])
    share = 1.0 - q
    gate = binomial_gate(slower_than(buckets, n, bound), n, share, "above", alpha)
    if not gate.beyond:
        p = gate.p_value if gate.p_value is not None else 1.0
        return Check(label, value, bound, critical_bound, "above", 0.0, False, p, unit=unit, digits=digits, note=note)
    severity = severity_higher_is_worse(value, bound, critical_bound)
    critical = severity >= 1.0 and binomial_gate(slower_than(buckets, n, critical_bound), n, share, "above",
                                                 alpha).beyond
    return Check(label, value, bound, critical_bound, "above", severity, critical, gate.p_value, unit=unit,
                 digits=digits, note=note)


def mean_check(
    label: str,
    value: float,
    bound: float,
    critical_bound: float,
    buckets: Histogram | None,
    n: float,
    alpha: float,
    *,
    unit: str = "",
    digits: int = 3,
    note: str = "",
) -> Check | None:
    """A mean against a bound, gated by a one-sided z-test whose standard error comes from
    the histogram's spread (uniform within each bucket, the open one at its lower bound:
    an underestimate of a heavy tail's spread, so slightly eager, never blind).
    Without buckets, a plain threshold check."""
    if not value > bound:
        return None
    if buckets is None or n <= 1:
        return bound_check(label, value, bound, critical_bound, "above", unit=unit, digits=digits, note=note)
    n = max(n, buckets.counts[-1])
    first, second, lower, below = 0.0, 0.0, 0.0, 0.0
    for upper, cumulative in zip(buckets.le, buckets.counts):
        mid = (lower + upper) / 2.0
        first += (cumulative - below) * mid
        second += (cumulative - below) * (mid * mid + (upper - lower) ** 2 / 12.0)  # uniform within the bucket
        lower, below = upper, cumulative
    first += (n - below) * lower
    second += (n - below) * lower * lower
    # the spread of the binned values (both moments from the same bins, so never negative)
    variance = max(second / n - (first / n) ** 2, 1e-12)
    se = (variance / n) ** 0.5

    def p_at(limit: float) -> float:
        return float(ndtr(-(value - limit) / se))

    p = p_at(bound)
    if not p < alpha:
        return Check(label, value, bound, critical_bound, "above", 0.0, False, p, unit=unit, digits=digits, note=note)
    severity = severity_higher_is_worse(value, bound, critical_bound)
    critical = severity >= 1.0 and p_at(critical_bound) < alpha
    return Check(label, value, bound, critical_bound, "above", severity, critical, p, unit=unit, digits=digits,
                 note=note)


def _num(value: float, digits: int, unit: str) -> str:
    return f"{value:.{digits}f}{unit}"


def describe(check: Check, alpha: float) -> str:
    """One clause on the check: ``accuracy 0.800 < 0.874 (stable 0.920 × 0.95), p=1e-09``."""
    op = ">" if check.worse == "above" else "<"
    value = _num(check.value, check.digits, check.unit)
    p = f", p={check.p_value:.2g}" if check.p_value is not None else ""
    if check.critical:
        crit = _num(check.critical_bound, check.digits, check.unit)
        return f"{check.label} {value} beyond its critical bound {crit}{p}"
    bound = _num(check.bound, check.digits, check.unit)
    if check.severity <= 0.0:
        return (f"{check.label} {value} {op} {bound}{check.note} "
                f"but not significant (p={check.p_value:.2g} ≥ α={alpha:g})")
    return f"{check.label} {value} {op} {bound}{check.note}{p}"


def decisive(checks: list[Check | None]) -> tuple[float, bool, Check | None, int]:
    """Severity (max), critical (any), the check that decided, and how many checks triggered.

    The deciding check is the most severe (critical first); when none is severe, the
    non-significant crossing with the smallest p-value, so the message can say why the
    condition did not trigger.
    """
    severity, critical, best, triggered = 0.0, False, None, 0
    for c in checks:
        if c is None:
            continue
        if c.severity > 0.0:
            triggered += 1
        if best is None:
            best = c
        elif (c.critical, c.severity) > (best.critical, best.severity):
            best = c
        elif best.severity == 0.0 and c.severity == 0.0 and (c.p_value or 1.0) < (best.p_value or 1.0):
            best = c
        critical = critical or c.critical
        if c.severity > severity:
            severity = c.severity
    return severity, critical, best, triggered


def conclude(
    name: str,
    weight: float,
    checks: list[Check | None],
    alpha: float,
    *,
    healthy: str,
    observed: ObservedValues,
    threshold: ObservedValues,
    samples: float | None,
    min_samples: float | None,
    window_seconds: float | None,
    notes: list[str] | None = None,
    inconclusive: bool = False,
    gated: bool = False,
) -> ConditionResult:
    """Assemble a condition's result from its checks.

    ``healthy`` is the message when no check crossed a bound; ``notes`` are appended
    (skipped relative checks, missing fields). ``inconclusive`` is set by callers when a
    field some check needs was missing: the checks that had data still count. ``gated``
    conditions get ``observed["p_value"]``: the p-value behind the deciding check (None
    when no bound was crossed, so no test was run).
    """
    severity, critical, best, triggered = decisive(checks)
    if gated:
        observed["p_value"] = best.p_value if best is not None else None
    message = describe(best, alpha) if best is not None else healthy
    if triggered > 1:
        message += f" (+{triggered - 1} more check{'s' if triggered > 2 else ''} beyond bound)"
    if notes:
        message += "; " + "; ".join(notes)
    return ConditionResult(
        name=name, severity=severity, critical=critical, inconclusive=inconclusive, no_data=False,
        weight=weight, observed=observed, threshold=threshold, message=message,
        samples=samples, min_samples=min_samples, window_seconds=window_seconds,
    )


# ------------------------------------------------------------------------ samples


def window_seconds(snapshot: Snapshot, name: str) -> float | None:
    """Seconds the canary's counts for ``name`` cover, when the snapshot says so."""
    windows = snapshot.windows
    return windows.get(name) if windows else None


def sample_rate(
    samples: float, window: float | None, per_second: float | None = None, *,
    nominal: timedelta | None = None, step_age: timedelta | None = None,
) -> float | None:
    """Samples per second, for the "minimum in ~N minutes" estimate; None when unknown.

    In order: the window the counts covered (``snapshot.windows``); a caller's direct
    estimate (the canary's RPS when samples are requests); the window docs/design.md#windows prescribes
    at low traffic — the nominal window grown to the step's age — when the step's age is
    known.
    """
    if window:
        return samples / window
    if per_second and per_second > 0:
        return per_second
    if nominal is not None and step_age is not None:
        seconds = max(nominal, step_age).total_seconds()
        return samples / seconds if seconds > 0 else None
    return None


def no_data(
    name: str, weight: float, message: str, *, min_samples: float | None, window_seconds: float | None,
    samples: float | None = None, observed: ObservedValues | None = None, threshold: ObservedValues | None = None,
) -> ConditionResult:
    """Inconclusive with no samples at all: the only outcome that counts toward ``noData``."""
    return ConditionResult(
        name=name, severity=0.0, inconclusive=True, no_data=True, weight=weight,
        observed=observed or {}, threshold=threshold or {}, message=message,
        samples=samples, min_samples=min_samples, window_seconds=window_seconds,
    )


def shortfall(
    name: str, weight: float, what: str, samples: float, minimum: float, *,
    window_seconds: float | None, rate: float | None, observed: ObservedValues | None = None,
    threshold: ObservedValues | None = None,
) -> ConditionResult:
    """Inconclusive with some samples but fewer than the minimum: holds, never counts as no data."""
    return ConditionResult(
        name=name, severity=0.0, inconclusive=True, no_data=False, weight=weight,
        observed=observed or {}, threshold=threshold or {},
        message=shortfall_message(what, samples, minimum, rate),
        samples=samples, min_samples=minimum, window_seconds=window_seconds,
    )


def missing(
    name: str, weight: float, message: str, *, samples: float | None, min_samples: float | None,
    window_seconds: float | None, observed: ObservedValues | None = None, threshold: ObservedValues | None = None,
) -> ConditionResult:
    """Inconclusive although samples exist: a field the condition needs is absent."""
    return ConditionResult(
        name=name, severity=0.0, inconclusive=True, no_data=False, weight=weight,
        observed=observed or {}, threshold=threshold or {}, message=message,
        samples=samples, min_samples=min_samples, window_seconds=window_seconds,
    )


def positive(value: float | None) -> bool:
    """A count or rate that can serve as a denominator (present and > 0)."""
    return value is not None and value > 0.0
