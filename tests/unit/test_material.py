"""Which status changes must be written at once (docs/operator.md#quiet-status-writes): a
healthy tick that only moves the clock is not material; anything a restart resumes from or
a reader acts on is."""

from __future__ import annotations

from datetime import timedelta

from modelrollout.api.models import DecisionAction, DispersionStatus, ModelRolloutStatus
from modelrollout.core.machine import step
from modelrollout.core.material import material, materially_different
from modelrollout.core.observations import MetricsObserved
from modelrollout.core.replay import settle
from modelrollout.core.snapshot import load_snapshot

from .factories import T0, begin, healthy_snapshot, make_spec, snapshot_dict, with_changes

SPEC = make_spec(spec_extra={"steps": [{"weight": 5, "duration": "10m"}, {"weight": 100, "duration": "10m"}]})


def tick(status: ModelRolloutStatus, seconds: int, snap=None) -> ModelRolloutStatus:
    at = T0 + timedelta(seconds=seconds)
    return settle(SPEC, step(SPEC, status, MetricsObserved(snap or healthy_snapshot(at, status.canary_weight)), at),
                  at).status


def test_a_healthy_tick_that_only_moves_the_clock_is_not_material() -> None:
    a = tick(begin(SPEC), 10)
    b = tick(a, 20)
    assert a != b  # evaluatedAt, nextEvaluationAt, the countdown in the reason all moved
    assert a.decision is not None and b.decision is not None and a.decision.reason != b.decision.reason
    assert not materially_different(a, b)
    assert material(a) == material(b)


def test_a_new_trigger_a_new_action_and_a_step_change_are_material() -> None:
    a = tick(begin(SPEC), 10)
    slow = load_snapshot(with_changes(snapshot_dict(T0 + timedelta(seconds=20), 5), "canary.latency_ms.p95", 4.2))
    triggered = tick(a, 20, slow)
    assert triggered.risk is not None and any(c.triggered for c in triggered.risk.conditions)
    assert materially_different(a, triggered)
    advanced = tick(a, 600)
    assert advanced.current_step == 1 and materially_different(a, advanced)


def test_a_reason_whose_words_change_is_material_even_when_the_action_stays() -> None:
    a = tick(begin(SPEC), 10)
    assert a.decision is not None
    held = a.model_copy(update={"decision": a.decision.model_copy(update={
        "action": DecisionAction.CONTINUE, "reason": "healthy (score 0.03); step 0 ends in 9m40s"})})
    counted = held.model_copy(update={"decision": held.decision.model_copy(update={  # type: ignore[union-attr]
        "reason": "healthy (score 0.01); step 0 ends in 9m30s"})})
    waiting = held.model_copy(update={"decision": held.decision.model_copy(update={  # type: ignore[union-attr]
        "reason": "step 0 healthy for 10m00s; waiting for the declared model: 1/2 pods"})})
    assert not materially_different(held, counted)
    assert materially_different(held, waiting)


def test_dispersion_is_written_as_its_intervals_double_then_only_at_the_heartbeat() -> None:
    measured = DispersionStatus(accuracy=0.002, error_rate=0.01, cache=0.004, rate=0.3, intervals=12,
                                interval_seconds=30.0)
    a = tick(begin(SPEC), 10).model_copy(update={"dispersion": measured})
    assert a.dispersion is not None
    def with_intervals(n: int) -> ModelRolloutStatus:
        return a.model_copy(update={"dispersion": measured.model_copy(update={"intervals": n})})

    moved = a.model_copy(update={"dispersion": measured.model_copy(update={"error_rate": 0.02})})
    assert not materially_different(a, moved)
    assert not materially_different(a, with_intervals(13)) and not materially_different(a, with_intervals(15))
    assert materially_different(a, with_intervals(16)) and materially_different(a, with_intervals(7))
