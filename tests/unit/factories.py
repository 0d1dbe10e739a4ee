"""Builders for specs, snapshots and started rollouts used across the unit tests.

``healthy_snapshot`` is a canary indistinguishable from its stable at a 40k RPS service;
tests change one thing from it, which keeps each test's intent readable.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from scipy import stats

from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus, Phase, StableRecord
from modelrollout.core.actions import SetWeight, StartRollout
from modelrollout.core.machine import Initialized, SpecChanged, step
from modelrollout.core.snapshot import Snapshot, load_snapshot

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
LE = [round(0.1 * i, 1) for i in range(1, 11)]
RECORD = StableRecord(replicas=4, template={"spec": {"containers": [{"name": "m", "image": "img:v1"}]}}, recorded_at=T0)


def make_spec(**analysis: Any) -> ModelRolloutSpec:
    extra = analysis.pop("spec_extra", {})
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"}, "canary": {"deployment": "fraud-canary", "template": {"image": "img:v2"}},
        "steps": [{"weight": 5, "duration": "60s"}, {"weight": 25, "duration": "60s"}, {"weight": 100, "duration": "60s"}],
        "analysis": {"interval": "10s", "sustainedHighSeconds": 300, **analysis},
        **extra,
    })


def confidence(n: float, a: float = 9.0, b: float = 2.0) -> dict[str, Any]:
    return {"le": LE, "counts": [round(float(c) * n) for c in stats.beta.cdf(LE, a, b)]}


def side(rps: float, *, accuracy: float = 0.92, latency: tuple[float, float, float] = (1.4, 2.1, 2.9),
         error_rate: float = 0.002, beta: tuple[float, float] = (9.0, 2.0), window_conf: float = 900.0) -> dict[str, Any]:
    requests = rps * 300
    evaluated = round(rps * 900 * 0.01)
    return {
        "requests": round(requests), "rps": rps,
        "errors": {"extraction": round(requests * error_rate * 0.5), "serialization": 0,
                   "timeout": round(requests * error_rate * 0.5), "cache": 0, "other": 0},
        "latency_ms": {"mean": latency[0], "p95": latency[1], "p99": latency[2], "count": round(rps * 60)},
        "predictions_evaluated": evaluated, "predictions_correct": round(evaluated * accuracy),
        "confidence": confidence(max(rps, 1) * window_conf, *beta),
        "cache": {"hits": round(requests * 0.995), "misses": round(requests * 0.005), "evictions_per_minute": 0.01,
                  "lookup_ms": 1.0},
        "series": {"latency_p95_ms": [latency[1] + 0.01 * ((i * 7) % 5 - 2) for i in range(30)],
                   "error_rate": [error_rate * (1 + 0.02 * ((i * 3) % 5 - 2)) for i in range(30)],
                   "rps": [rps * (1 + 0.005 * ((i * 11) % 5 - 2)) for i in range(30)]},
    }


def snapshot_dict(at: datetime = T0, weight: int = 5, total_rps: float = 40_000.0, **canary: Any) -> dict[str, Any]:
    canary_rps = total_rps * weight / 100
    stable_rps = total_rps - canary_rps
    stable = side(stable_rps if stable_rps > 0 else total_rps, window_conf=86_400.0)
    if stable_rps == 0:
        stable["rps"] = 0.0
    return {
        "version": 1, "at": at.isoformat(),
        "stable": stable,
        "canary": side(canary_rps, **canary),
        "health": {"canary": {"oom_killed": 0, "crash_looping": 0, "unavailable_for_seconds": 0,
                              "progress_deadline_exceeded": False}},
    }


def healthy_snapshot(at: datetime = T0, weight: int = 5, **canary: Any) -> Snapshot:
    return load_snapshot(snapshot_dict(at, weight, **canary))


def with_changes(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of ``data`` with a dotted path set (``canary.latency_ms.p95``); None deletes."""
    out = copy.deepcopy(data)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return out


def ticks(start: datetime, seconds: int, every: int = 10) -> list[datetime]:
    return [start + timedelta(seconds=s) for s in range(every, seconds + 1, every)]


def begin(spec: ModelRolloutSpec, now: datetime = T0) -> ModelRolloutStatus:
    """A rollout of ``spec`` started and initialized at ``now``: Progressing at its first step (5 %)."""
    t = step(spec, None, SpecChanged(), now)
    assert t.status.phase == Phase.INITIALIZING
    assert isinstance(t.actions[0], StartRollout)
    t = step(spec, t.status, Initialized(RECORD), now)
    assert t.status.phase == Phase.PROGRESSING and t.actions[0] == SetWeight(5)
    return t.status
