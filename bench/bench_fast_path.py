"""CPU of one fast-path cycle per rollout, without Prometheus (part of ``make bench``).

What the operator's fast path does in Python for N rollouts every ``fastPathInterval``,
on answers shaped like Prometheus' (canned, so the figure is the operator's alone):
plan the rollouts' windows (``fast_path_look``) and requests, plan the batched queries,
parse the answers, assemble and validate one snapshot per rollout, and judge it
(``critical_breach``). Prometheus' own work and the HTTP round trip are not included
(``make bench-scale`` measures the whole on the local cluster). Two cases: every step
older than its windows (``increase()`` queries) and every step a few seconds old (exact
counter differences, docs/design.md#fast-path). Rates are per second of this process's
CPU time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from modelrollout.adapters.metrics import promql
from modelrollout.adapters.metrics.assembly import SnapshotAssembler, parse_answer
from modelrollout.adapters.metrics.plan import PlannedQuery, QueryPlan
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.api.manifests import load_rollout
from modelrollout.api.models import ModelRolloutSpec, ModelRolloutStatus, Phase
from modelrollout.core.fastpath import critical_breach
from modelrollout.core.machine import initial_status
from modelrollout.core.windows import fast_path_look

ROOT = Path(__file__).resolve().parent.parent
ROLLOUTS = 1000
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
BUCKETS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0", "+Inf")


def canned_rows(q: PlannedQuery, plan: QueryPlan) -> list[dict[str, Any]]:
    """A healthy answer for every (namespace, deployment) the query selects."""
    rows: list[dict[str, Any]] = []
    extra = promql.EXTRA_LABEL.get(q.key.name)
    value = {"latency_mean_ms": 1.4, "latency_p95_ms": 2.1, "latency_p99_ms": 2.9, "cache_lookup_ms": 0.2,
             "cache_evictions_per_minute": 0.0, "predictions_correct": 920.0, "predictions_evaluated": 1000.0}
    for ns, deployment in sorted(plan.pairs[q.key]):
        labels = {"namespace": ns, "deployment": deployment}
        if extra == "le":
            for i, le in enumerate(BUCKETS):
                rows.append({"metric": {**labels, "le": le}, "value": [0, str(100.0 * min(i + 1, 10))]})
        elif extra == "category":
            for category in ("timeout", "serialization", "extraction", "cache", "other"):
                rows.append({"metric": {**labels, "category": category}, "value": [0, "2"]})
        elif extra == "result":
            rows += [{"metric": {**labels, "result": "hit"}, "value": [0, "985"]},
                     {"metric": {**labels, "result": "miss"}, "value": [0, "15"]}]
        else:
            rows.append({"metric": labels, "value": [0, str(value.get(q.key.name, 10_000.0))]})
    return rows


def at_25(spec: ModelRolloutSpec, step_age: timedelta) -> ModelRolloutStatus:
    """A rollout in its 25 % step, begun ``step_age`` before ``NOW``."""
    return initial_status(spec, NOW - step_age).model_copy(update={
        "phase": Phase.PROGRESSING, "canary_weight": 25, "current_step": 1, "step_started_at": NOW - step_age,
        "revision": "bench"})


def rollout_specs(spec: ModelRolloutSpec, n: int) -> list[ModelRolloutSpec]:
    """n rollouts of the same profile, each with its own Deployments (as a cluster has them)."""
    return [spec.model_copy(update={"stable": spec.stable.model_copy(update={"deployment": f"m{i}"}),
                                    "canary": spec.canary.model_copy(update={"deployment": f"m{i}-c"})})
            for i in range(n)]


def cycle(specs: list[ModelRolloutSpec], status: ModelRolloutStatus, now: datetime) -> dict[str, float]:
    """One cycle's CPU seconds by stage."""
    spent: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.process_time()
        out = fn()
        spent[stage] = spent.get(stage, 0.0) + time.process_time() - t0
        return out

    looks = timed("requests", lambda: [fast_path_look(spec, status, now) for spec in specs])
    requests = timed("requests", lambda: [
        SnapshotRequest.for_fast_path(namespace="ns", name=f"r{i}", spec=spec, status=status, look=look)
        for i, (spec, look) in enumerate(zip(specs, looks))])
    plan = timed("plan", lambda: QueryPlan(requests, timedelta(seconds=60)))
    queries = timed("plan", plan.queries)
    raw = {q.key: canned_rows(q, plan) for q in queries}  # Prometheus' side: not timed
    answers = timed("parse", lambda: {key: parse_answer(key, rows) for key, rows in raw.items()})
    snapshots = timed("snapshots", lambda: [SnapshotAssembler(r, answers, plan, now).snapshot() for r in requests])
    signals = timed("judgement", lambda: [critical_breach(spec, status, s, now, look)
                                          for spec, s, look in zip(specs, snapshots, looks)])
    assert not any(signals), "the canned answers are healthy: the fast path must not fire"
    return spent


def main() -> None:
    spec = load_rollout(ROOT / "examples/rollouts/fraud-scorer.yaml").spec
    print(f"\nfast path, {ROLLOUTS:,} rollouts per cycle, CPU per cycle (Prometheus and HTTP not included):")
    for label, age in (("steps older than their windows", timedelta(hours=1)),
                       ("steps 5 s old (exact counts)", timedelta(seconds=5))):
        status, specs = at_25(spec, age), rollout_specs(spec, ROLLOUTS)
        cycle(specs[:50], status, NOW)  # warm caches and imports
        best: dict[str, float] | None = None
        for _ in range(3):
            spent = cycle(specs, status, NOW)
            if best is None or sum(spent.values()) < sum(best.values()):
                best = spent
        assert best is not None
        total = sum(best.values())
        stages = ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in best.items())
        print(f"  {label}: {1e6 * total / ROLLOUTS:.0f} µs per rollout per check ({stages}); at 1 check/s, "
              f"{ROLLOUTS:,} rollouts cost {100 * total:.0f} % of a core (target 5 %)")


if __name__ == "__main__":
    main()
