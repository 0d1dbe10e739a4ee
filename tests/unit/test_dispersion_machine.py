"""The tick measures the stable's wander and records it; the fast path reads it from status
(docs/decisions.md#overdispersion)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus
from modelrollout.core.fastpath import critical_breach
from modelrollout.core.machine import evaluation_context, step
from modelrollout.core.observations import MetricsObserved
from modelrollout.core.snapshot import load_snapshot

from .factories import T0, begin, make_spec, snapshot_dict


def intervals(rng: np.random.Generator, icc: float, requests: float = 12_000.0, k: int = 30) -> dict[str, list[float]]:
    total = 1.0 / icc - 1.0
    hits = rng.binomial(int(requests), rng.beta(0.995 * total, 0.005 * total, size=k)).astype(float).tolist()
    return {"requests": [requests] * k, "cache_hits": hits, "cache_misses": [requests - h for h in hits]}


def test_the_tick_records_the_stables_dispersion_and_keeps_it_when_the_stable_falls_silent() -> None:
    spec = make_spec()
    status = begin(spec)
    data = snapshot_dict(T0 + timedelta(seconds=10))
    data["stable"]["intervals"] = intervals(np.random.default_rng(1), 0.01)
    t = step(spec, status, MetricsObserved(load_snapshot(data)), T0 + timedelta(seconds=10))
    d = t.status.dispersion
    assert d is not None and d.intervals == 30 and 0.003 < d.cache < 0.05 and d.rate == 0.0
    assert d.accuracy == 0.0  # the stable's labels per interval were not read: binomial
    # the stable serves nothing now (all zeros): the measured cache wander stays
    silent = snapshot_dict(T0 + timedelta(seconds=20))
    silent["stable"]["intervals"] = {"requests": [0.0] * 30, "cache_hits": [0.0] * 30, "cache_misses": [0.0] * 30}
    t2 = step(spec, t.status, MetricsObserved(load_snapshot(silent)), T0 + timedelta(seconds=20))
    assert t2.status.dispersion is not None and t2.status.dispersion.cache == d.cache


def error_intervals(rng: np.random.Generator, icc: float, requests: float = 12_000.0, k: int = 30
                    ) -> dict[str, list[float]]:
    total = 1.0 / icc - 1.0
    errs = rng.binomial(int(requests), rng.beta(0.002 * total, 0.998 * total, size=k)).astype(float).tolist()
    return {"requests": [requests] * k, "errors": errs}


def measured_status(spec: ModelRolloutSpec, at: datetime, stable_intervals: dict[str, list[float]]) -> ModelRolloutStatus:
    """The status after a first tick whose stable showed these counts per interval."""
    data = snapshot_dict(at)
    data["stable"]["intervals"] = stable_intervals
    return step(spec, begin(spec), MetricsObserved(load_snapshot(data)), at).status


def test_the_fast_path_judges_with_the_dispersion_the_status_recorded() -> None:
    spec = make_spec()
    at = T0 + timedelta(seconds=10)
    status = measured_status(spec, at, error_intervals(np.random.default_rng(2), 0.05))
    assert status.dispersion is not None and status.dispersion.error_rate > 0.01
    assert evaluation_context(spec, status, at).dispersion.errors == status.dispersion.error_rate
    # a canary window of 5 minutes with 9 % errors (critical bound 8.2 % relative to the stable):
    # binomially certain, not beyond the wander of errors that come in bursts (ICC ~0.02-0.05)
    at2 = at + timedelta(seconds=5)
    burst = snapshot_dict(at2, error_rate=0.09)
    burst["windows"] = {"errorRate": 300.0}
    snap = load_snapshot(burst)
    assert critical_breach(spec, status.model_copy(update={"dispersion": None}), snap, at2) is not None
    assert critical_breach(spec, status, snap, at2) is None


def test_at_100_percent_the_recorded_dispersion_is_kept_whatever_the_drained_stable_shows() -> None:
    """The stable's intervals drain to nothing at 100 %: their tail (partial intervals,
    a falling rate) must not replace what was measured while it served."""
    spec = make_spec()
    at = T0 + timedelta(seconds=10)
    status = measured_status(spec, at, intervals(np.random.default_rng(3), 0.04))
    before = status.dispersion
    assert before is not None and before.cache > 0.02
    full = status.model_copy(update={"canary_weight": 100})
    drained = snapshot_dict(at + timedelta(seconds=30))
    requests = [12_000.0] * 26 + [6_000.0, 1_000.0, 40.0, 0.0]  # the ramp-down
    drained["stable"]["intervals"] = {"requests": requests, "cache_hits": [r * 0.985 for r in requests],
                                      "cache_misses": [r * 0.015 for r in requests]}
    after = step(spec, full, MetricsObserved(load_snapshot(drained)), at + timedelta(seconds=30)).status
    assert after.dispersion == before
    # below 100 % the same counts are measured (no wander in them: the cache's correlation falls)
    measured = step(spec, status, MetricsObserved(load_snapshot(drained)), at + timedelta(seconds=30)).status
    assert measured.dispersion is not None and measured.dispersion.cache < before.cache
