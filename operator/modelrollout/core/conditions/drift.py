"""Confidence drift (docs/design.md#conditions, condition 3): has the canary's confidence distribution moved?

A two-sample Kolmogorov–Smirnov test of the canary's prediction-confidence histogram
(the condition's window) against the stable's (read over the baseline window, 24 h by
default), both cumulative Prometheus histograms; see ``stats.ks_from_histograms`` for how
D and the p-value come from binned CDFs. Triggered when ``p < maxPValue`` and
``D > minStatistic``; severity is higher-is-worse on D between ``minStatistic`` and
``criticalStatistic`` and 0 unless the test is significant; critical at
``D >= criticalStatistic`` when significant.

The reference decides everything here, so:

* no stable histogram at all (the side or its ``confidence`` is absent: the query failed
  or the series does not exist) makes the condition inconclusive, ``no_data`` False when
  the canary has samples — drift cannot be judged without a reference, and absent data
  is never healthy;
* a stable histogram that is present but empty (the stable served nothing over the
  whole baseline window: a brand-new service) skips the test, severity 0 and *not*
  inconclusive, as docs/design.md#the-stables-side asks of every comparison with the stable, so the rollout
  cannot wedge at its last step.
"""

from __future__ import annotations

from ...api.thresholds import ConditionName
from ..snapshot import Snapshot
from ..stats import ks_from_histograms
from .base import ConditionResult, EvaluationContext, counted, severity_higher_is_worse
from .checks import conclude, missing, no_data, sample_rate, shortfall, window_seconds

NAME = ConditionName.CONFIDENCE_DRIFT.value
WHAT = "predictions"


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.confidence_drift
    assert t is not None and t.max_p_value is not None and t.min_statistic is not None
    assert t.critical_statistic is not None and t.min_samples is not None
    weight = t.weight or 0.0
    window = window_seconds(snapshot, NAME)
    threshold: dict[str, float | int | str | bool | None] = {
        "max_p_value": t.max_p_value, "min_statistic": t.min_statistic,
        "critical_statistic": t.critical_statistic, "min_samples": t.min_samples,
    }
    canary = snapshot.canary
    hist = canary.confidence if canary is not None else None
    samples = hist.total if hist is not None else None
    if hist is None or not samples or samples <= 0.0:
        return no_data(NAME, weight, f"no {WHAT} in the canary's confidence histogram", samples=samples,
                       min_samples=t.min_samples, window_seconds=window, threshold=threshold)
    if samples < t.min_samples:
        return shortfall(NAME, weight, WHAT, samples, t.min_samples, window_seconds=window,
                         rate=sample_rate(samples, window, nominal=t.window, step_age=ctx.step_age),
                         threshold=threshold, observed={"n_canary": samples})
    reference = snapshot.stable.confidence if snapshot.stable is not None else None
    observed: dict[str, float | int | str | bool | None] = {
        "statistic": None, "p_value": None, "n_canary": samples, "n_stable": None,
    }
    if reference is None:
        return missing(NAME, weight, "no stable confidence histogram to compare with: drift cannot be judged",
                       samples=samples, min_samples=t.min_samples, window_seconds=window,
                       observed=observed, threshold=threshold)
    observed["n_stable"] = reference.total
    if reference.total <= 0.0:
        return conclude(
            NAME, weight, [], ctx.significance, observed=observed, threshold=threshold,
            healthy="the stable has no predictions over the baseline window: drift check skipped",
            samples=samples, min_samples=t.min_samples, window_seconds=window,
        )
    ks = ks_from_histograms(hist.le, hist.counts, reference.le, reference.counts)
    observed["statistic"], observed["p_value"] = ks.statistic, ks.p_value
    significant = ks.p_value < t.max_p_value
    severity = severity_higher_is_worse(ks.statistic, t.min_statistic, t.critical_statistic) if significant else 0.0
    critical = significant and ks.statistic >= t.critical_statistic
    text = f"KS D={ks.statistic:.3f}, p={ks.p_value:.2g} ({counted(samples)} canary vs {counted(reference.total)} stable predictions)"
    if critical:
        message = f"{text}: beyond the critical D {t.critical_statistic:g}"
    elif severity > 0.0:
        message = f"{text}: drift, D > {t.min_statistic:g} and p < {t.max_p_value:g}"
    elif ks.statistic > t.min_statistic:
        message = f"{text}: D > {t.min_statistic:g} but not significant (p ≥ {t.max_p_value:g})"
    else:
        message = f"{text}: no drift"
    return ConditionResult(
        name=NAME, severity=severity, critical=critical, weight=weight, observed=observed, threshold=threshold,
        message=message, samples=samples, min_samples=t.min_samples, window_seconds=window,
    )
