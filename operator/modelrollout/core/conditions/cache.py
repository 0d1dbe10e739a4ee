"""Cache (docs/design.md#conditions, condition 5): hit rate, evictions and lookup time of the canary's cache.

* hit rate = hits / (hits + misses), lower is worse, a gated proportion (one-sided exact
  binomial test) against ``minHitRate``, critical ``criticalHitRate``;
* evictions per minute, higher is worse, against ``maxEvictionsPerMinute``, critical at
  × ``criticalFactor`` — gated by a one-sided exact Poisson test on the count over the
  window (evictions are rare events: one in 5 minutes is 0.2/min, and must not decide);
* lookup time in ms (a mean), higher is worse, against ``maxLookupMs``, critical at ×
  ``criticalFactor`` — gated by a z-test with the lookup histogram's spread when the
  snapshot has its buckets (the tick reads them), a plain threshold otherwise.

Samples are lookups (hits + misses). A missing eviction rate or lookup time makes the
condition inconclusive while the checks that have data still count.
"""

from __future__ import annotations

from ...api.thresholds import ConditionName
from ..snapshot import Snapshot
from .base import ConditionResult, EvaluationContext, counted
from .checks import (
    Check,
    conclude,
    deff_of,
    event_rate_check,
    mean_check,
    no_data,
    positive,
    proportion_check,
    sample_rate,
    shortfall,
    window_seconds,
)

NAME = ConditionName.CACHE.value
WHAT = "cache lookups"


def evaluate(snapshot: Snapshot, ctx: EvaluationContext) -> ConditionResult:
    t = ctx.thresholds.cache
    assert t is not None and t.min_hit_rate is not None and t.critical_hit_rate is not None
    assert t.max_evictions_per_minute is not None and t.max_lookup_ms is not None
    assert t.critical_factor is not None and t.min_samples is not None
    weight = t.weight or 0.0
    alpha = ctx.significance
    window = window_seconds(snapshot, NAME)
    factor = t.critical_factor
    threshold: dict[str, float | int | str | bool | None] = {
        "min_hit_rate": t.min_hit_rate, "critical_hit_rate": t.critical_hit_rate,
        "max_evictions_per_minute": t.max_evictions_per_minute,
        "critical_evictions_per_minute": t.max_evictions_per_minute * factor,
        "max_lookup_ms": t.max_lookup_ms, "critical_lookup_ms": t.max_lookup_ms * factor,
        "alpha": alpha, "min_samples": t.min_samples,
    }
    cache = snapshot.canary.cache if snapshot.canary is not None else None
    hits = cache.hits if cache is not None else None
    misses = cache.misses if cache is not None else None
    lookups = hits + misses if hits is not None and misses is not None else None
    if cache is None or not positive(lookups):
        return no_data(NAME, weight, f"no {WHAT} from the canary", samples=lookups, min_samples=t.min_samples,
                       window_seconds=window, threshold=threshold)
    assert hits is not None and lookups is not None
    if lookups < t.min_samples:
        return shortfall(NAME, weight, WHAT, lookups, t.min_samples, window_seconds=window,
                         rate=sample_rate(lookups, window, nominal=t.window, step_age=ctx.step_age),
                         threshold=threshold, observed={"lookups": lookups})

    hit_rate = hits / lookups
    evictions, lookup_ms = cache.evictions_per_minute, cache.lookup_ms
    observed: dict[str, float | int | str | bool | None] = {
        "hit_rate": hit_rate, "hits": hits, "lookups": lookups, "p_value": None,
        "evictions_per_minute": evictions, "lookup_ms": lookup_ms,
    }
    checks: list[Check | None] = [
        proportion_check("hit rate", hits, lookups, t.min_hit_rate, t.critical_hit_rate, "below", alpha, digits=4,
                         deff=deff_of(ctx, ctx.dispersion.cache, lookups, window)),
    ]
    absent = []
    if evictions is None:
        absent.append("evictions_per_minute")
    else:
        minutes = (window if window is not None else (t.window.total_seconds() if t.window else 300.0)) / 60.0
        checks.append(event_rate_check("evictions", evictions, minutes, t.max_evictions_per_minute,
                                       t.max_evictions_per_minute * factor, alpha, unit="/min"))
    if lookup_ms is None:
        absent.append("lookup_ms")
    else:
        checks.append(mean_check("lookup", lookup_ms, t.max_lookup_ms, t.max_lookup_ms * factor,
                                 cache.lookup_buckets, lookups, alpha, unit="ms", digits=2))
    notes = [f"{' and '.join(absent)} missing: inconclusive"] if absent else None
    return conclude(
        NAME, weight, checks, alpha, gated=True, notes=notes, inconclusive=bool(absent),
        healthy=f"hit rate {hit_rate:.4f} over {counted(lookups)} lookups within bounds",
        observed=observed, threshold=threshold, samples=lookups, min_samples=t.min_samples, window_seconds=window,
    )
