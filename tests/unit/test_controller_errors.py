"""Errors keep their meaning: an unreadable status holds, it never starts the rollout over."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from modelrollout.controller import Controller, RolloutRef
from modelrollout.core.actions import EmitEvent
from modelrollout.telemetry import OperatorMetrics

from .factories import T0, make_spec


class Clock:
    def now(self) -> datetime:
        return T0


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def emit(self, ref: RolloutRef, event: EmitEvent) -> None:
        self.calls.append(("event", event))

    async def notify(self, kind: str, payload: dict[str, Any]) -> None:
        self.calls.append(("notify", kind))

    async def write_status(self, ref: RolloutRef, status: dict[str, Any] | None) -> None:
        self.calls.append(("status", status))

    def __getattr__(self, name: str) -> Any:  # any executor or metrics call is an action: none may happen
        async def acted(*args: Any, **kwargs: Any) -> None:
            self.calls.append(("acted", name))
            raise AssertionError(f"{name} called for a rollout whose status is unreadable")
        return acted


def controller(body: dict[str, Any], rec: Recorder) -> Controller:
    async def read(ref: RolloutRef) -> dict[str, Any]:
        return body

    async def write(ref: RolloutRef, status: dict[str, Any] | None) -> None:  # a merge patch, as the apiserver does
        await rec.write_status(ref, status)
        body["status"].update(status or {})

    return Controller(read_rollout=read, executor=rec, metrics_source=rec, events=rec, notifier=rec,  # type: ignore[arg-type]
                      write_status=write, clock=Clock(), telemetry=OperatorMetrics(),  # type: ignore[arg-type]
                      build_request=lambda *a: None)  # type: ignore[arg-type,return-value]


RECORD = {"replicas": 20, "template": {"spec": {"containers": [{"name": "m", "image": "v1"}]}},
          "recordedAt": "2026-11-24T12:00:00Z"}


def body() -> dict[str, Any]:
    spec = make_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    status = {"phase": "Promoting", "currentStep": "two", "stableRecord": RECORD,
              "conditions": [{"type": "Complete", "status": "False", "reason": "Initializing",
                              "lastTransitionTime": "2026-11-24T12:00:00Z"}]}
    return {"metadata": {"name": "fraud", "namespace": "ml", "generation": 3}, "spec": spec, "status": status}


def test_an_unreadable_status_holds_with_a_condition_and_an_event_and_never_starts_over() -> None:
    rec = Recorder()
    c = controller(body(), rec)
    ref = RolloutRef("ml", "fraud", "uid-1")
    for resume in (True, False):
        asyncio.run(c.reconcile(ref, resume=resume))
    writes = [payload for kind, payload in rec.calls if kind == "status"]
    assert len(writes) == 1, rec.calls  # the second wake sees the same problem: nothing new to say
    assert set(writes[0]) == {"message", "conditions"}  # a merge patch: the stable record is not touched
    assert "status.currentStep" in writes[0]["message"] and "holding" in writes[0]["message"]
    ready = {c["type"]: c for c in writes[0]["conditions"]}
    assert ready["Ready"]["status"] == "False" and ready["Ready"]["reason"] == "UnreadableStatus"
    assert ready["Complete"]["reason"] == "Initializing"  # the readable conditions are kept
    events = [e for kind, e in rec.calls if kind == "event"]
    assert [e.reason for e in events] == ["UnreadableStatus"]
    assert not [name for kind, name in rec.calls if kind == "acted"]


def test_a_signal_never_acts_on_an_unreadable_status() -> None:
    from modelrollout.api.models import DecisionPath
    from modelrollout.core.observations import CriticalSignal

    rec = Recorder()
    acted = asyncio.run(controller(body(), rec).signal(RolloutRef("ml", "fraud", "uid-1"),
                                                       CriticalSignal(DecisionPath.FAST_PATH, "latency", "p95 9ms")))
    assert acted is False and rec.calls == []


def test_durations_too_large_for_any_clock_name_the_field_instead_of_crashing() -> None:
    import pytest

    from modelrollout.api.manifests import ManifestError, parse_spec

    for written in ("99999999999h", "9" * 400 + "s"):
        with pytest.raises(ManifestError, match=r"spec\.steps\[0\]\.duration: .* is too large"):
            parse_spec({"stable": {"deployment": "a"}, "canary": {"deployment": "b"},
                        "steps": [{"weight": 100, "duration": written}]})


def test_an_unusable_query_override_is_invalid_before_anything_starts() -> None:
    from modelrollout.errors import InvalidSpec

    rec = Recorder()
    b = body()
    b["status"] = {}

    def request(*_: Any) -> None:
        raise InvalidSpec("spec.analysis.queries.p99: unknown query name")

    c = controller(b, rec)
    c.build_request = request  # type: ignore[assignment]
    asyncio.run(c.reconcile(RolloutRef("ml", "fraud", "uid-1")))
    writes = [payload for kind, payload in rec.calls if kind == "status"]
    assert writes and "invalid spec: spec.analysis.queries.p99" in writes[-1]["message"]
    assert not [name for kind, name in rec.calls if kind == "acted"]  # no canary, no weight


def test_a_replica_that_loses_the_rollout_mid_reconcile_stops_before_its_next_write_or_action() -> None:
    """--shards: ``may_act`` is asked before every status write and every action, so a
    replica whose shard moved on stops at once (docs/operator.md#sharding)."""
    import pytest

    from modelrollout.errors import NotShardOwner

    fresh = body()
    fresh["status"] = {}
    answers = iter([True])  # owner for the first write only
    rec = Recorder()
    c = controller(fresh, rec)
    c.may_act = lambda ref: next(answers, False)
    with pytest.raises(NotShardOwner, match="ml/fraud belongs to another replica"):
        asyncio.run(c.reconcile(RolloutRef("ml", "fraud", "uid-1")))
    assert [kind for kind, _ in rec.calls] == ["status"], rec.calls  # the intent, then nothing acted

    rec = Recorder()
    c = controller(body(), rec)
    c.may_act = lambda ref: False
    from modelrollout.api.models import DecisionPath
    from modelrollout.core.observations import CriticalSignal
    assert asyncio.run(c.signal(RolloutRef("ml", "fraud", "uid-1"),
                                CriticalSignal(DecisionPath.FAST_PATH, "latency", "p95 9ms"))) is False
    assert rec.calls == []


def test_a_failed_read_of_the_canary_reaches_the_decision_as_unread_not_as_a_replay() -> None:
    """The operator's tick whose canary health read fails: the snapshot says why, so the
    step's end waits (docs/design.md#kubernetes-health) instead of passing as in a replay."""
    from modelrollout.core.machine import initial_status
    from modelrollout.core.observations import MetricsObserved
    from modelrollout.errors import ClusterConflict

    from .factories import healthy_snapshot

    class Source:
        async def snapshot(self, request: Any, now: datetime) -> Any:
            return healthy_snapshot(T0)

    class Executor:
        async def canary_health(self, ns: str, canary: str, deadline: int) -> Any:
            raise ClusterConflict("Deployment ml/fraud-canary: apiserver answered 503")

    rec = Recorder()
    c = controller(body(), rec)
    c.metrics_source, c.executor = Source(), Executor()  # type: ignore[assignment]
    spec = make_spec()
    observed = asyncio.run(c._observe(RolloutRef("ml", "fraud", "u"), spec, initial_status(spec, T0), T0))
    assert isinstance(observed, MetricsObserved) and observed.snapshot.health is not None
    assert observed.snapshot.health.canary is None
    assert "apiserver answered 503" in (observed.snapshot.health.canary_unread or "")
