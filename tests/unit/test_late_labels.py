"""Late labels (docs/design.md#late-labels): no step completes, nor does the rollout
promote, before accuracy was judged on the challenger's own labels, at least
``labelDelay`` after it first served users; evidence of harm from early labels still
rolls back. Rules on hand-made results, then whole timelines through the state machine."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from modelrollout.api.models import DecisionAction, ModelRolloutSpec, ModelRolloutStatus, Phase
from modelrollout.core.actions import Promote, SetWeight
from modelrollout.core.conditions.base import ConditionResult
from modelrollout.core.decision import Position, decide
from modelrollout.core.machine import step
from modelrollout.core.observations import MetricsObserved, SpecChanged
from modelrollout.core.replay import settle
from modelrollout.core.snapshot import Snapshot, load_snapshot

from .factories import T0, begin, healthy_snapshot, make_spec, snapshot_dict, with_changes

WEIGHTS = {"accuracy": 0.25, "latency": 0.20, "confidenceDrift": 0.15, "errorRate": 0.15, "cache": 0.10,
           "throughput": 0.10, "anomaly": 0.05}


def results(accuracy: ConditionResult | None = None, *, without_accuracy: bool = False) -> list[ConditionResult]:
    out = [ConditionResult(name=n, severity=0.0, weight=w) for n, w in WEIGHTS.items()]
    if without_accuracy:
        return out[1:]
    if accuracy is not None:
        out[0] = accuracy
    return out


NO_LABELS = ConditionResult(name="accuracy", severity=0.0, inconclusive=True, no_data=True, weight=0.25,
                            message="no labelled predictions from the canary")


def pos(step: int = 0, weight: int = 5, **kw: object) -> Position:
    return Position(current_step=step, canary_weight=weight, step_started_at=T0, **kw)  # type: ignore[arg-type]


def test_label_delay_is_a_bounded_duration() -> None:
    assert make_spec(labelDelay="30m").analysis.label_delay == timedelta(minutes=30)
    assert make_spec().analysis.label_delay == timedelta(0)
    with pytest.raises(ValidationError, match="labelDelay must be between 0s and 7d"):
        make_spec(labelDelay="200h")


def test_a_step_waits_for_the_label_delay_then_completes_on_a_conclusive_accuracy() -> None:
    spec = make_spec(labelDelay="30m")  # steps of 60 s
    early = decide(spec, results(), None, pos(), T0 + timedelta(seconds=60))
    assert early.action == DecisionAction.HOLD and early.labels_judged_at is None
    assert "spec.analysis.labelDelay 30m" in early.reason and "served users for 60s" in early.reason
    done = T0 + timedelta(minutes=30)
    d = decide(spec, results(), None, pos(), done)
    assert d.action == DecisionAction.ADVANCE and d.labels_judged_at == done


def test_the_delay_counts_from_the_first_weighted_step_not_the_current_one() -> None:
    spec = make_spec(labelDelay="30m")
    d = decide(spec, results(), None, pos(step=1, weight=25, serving_since=T0 - timedelta(minutes=29)),
               T0 + timedelta(minutes=1))
    assert d.action == DecisionAction.ADVANCE


def test_once_judged_a_later_step_may_rest_on_it_but_missing_data_never_promotes() -> None:
    spec = make_spec(labelDelay="30m", noData={"policy": "ignore", "maxConsecutive": 2})
    judged = T0 - timedelta(minutes=5)
    d = decide(spec, results(NO_LABELS), None, pos(step=1, weight=25, labels_judged_at=judged, consecutive_no_data=5),
               T0 + timedelta(minutes=2))
    assert d.action == DecisionAction.ADVANCE and d.labels_judged_at == judged
    last = decide(spec, results(NO_LABELS), None,
                  pos(step=2, weight=100, labels_judged_at=judged, consecutive_no_data=5), T0 + timedelta(minutes=2))
    assert last.action == DecisionAction.HOLD and "never promotes" in last.reason


def test_no_data_ignore_no_longer_walks_past_an_accuracy_never_judged() -> None:
    """The hole this closes: labels hours late, ``noData.policy: ignore``, and the
    challenger reached 100 % without a single accuracy verdict."""
    spec = make_spec(noData={"policy": "ignore", "maxConsecutive": 2})
    d = decide(spec, results(NO_LABELS), None, pos(consecutive_no_data=5), T0 + timedelta(hours=3))
    assert d.action == DecisionAction.HOLD and d.trigger == "accuracy"
    assert "no labelled predictions" in d.reason and "accuracy.enabled: false" in d.reason


def test_a_disabled_accuracy_is_not_waited_for() -> None:
    spec = make_spec(labelDelay="30m")
    d = decide(spec, results(without_accuracy=True), None, pos(), T0 + timedelta(seconds=60))
    assert d.action == DecisionAction.ADVANCE and d.labels_judged_at is None


def test_early_labels_showing_harm_still_roll_back() -> None:
    spec = make_spec(labelDelay="30m")
    bad = ConditionResult(name="accuracy", severity=1.0, critical=True, weight=0.25,
                          message="accuracy 0.60 beyond its critical bound 0.75")
    d = decide(spec, results(bad), None, pos(), T0 + timedelta(seconds=20))
    assert d.action == DecisionAction.ROLLBACK and d.trigger == "accuracy"


def test_a_shadow_step_does_not_wait_for_labels() -> None:
    spec = make_spec(labelDelay="30m", spec_extra={"steps": [
        {"shadow": {"percent": 100, "duration": "60s"}}, {"weight": 100, "duration": "60s"}],
        "traffic": {"router": "gatewayAPI", "httpRoute": {"name": "fraud"}}})
    d = decide(spec, results(), None, pos(weight=0), T0 + timedelta(seconds=60))
    assert d.action == DecisionAction.ADVANCE


def tick(spec: ModelRolloutSpec, status: ModelRolloutStatus, at: datetime, snap: Snapshot):
    return settle(spec, step(spec, status, MetricsObserved(snap), at), at)


def no_labels(at: datetime, weight: int) -> Snapshot:
    data = snapshot_dict(at, weight)
    data = with_changes(data, "canary.predictions_evaluated", 0)
    return load_snapshot(with_changes(data, "canary.predictions_correct", 0))


def test_timeline_labels_arrive_after_the_delay_then_the_rollout_walks_on() -> None:
    """Steps of 60 s, labels 3 minutes late: the first step holds until 3 minutes after
    the challenger first served, status records when, and the later steps take 60 s each."""
    spec = make_spec(labelDelay="3m")
    status = begin(spec)
    advanced: list[float] = []
    for s in range(10, 600, 10):
        at = T0 + timedelta(seconds=s)
        snap = no_labels(at, status.canary_weight) if s < 120 else healthy_snapshot(at, status.canary_weight)
        t = tick(spec, status, at, snap)
        status = t.status
        if any(isinstance(a, SetWeight) for a in t.actions):
            advanced.append(s)
        if any(isinstance(a, Promote) for a in t.actions) or status.phase.is_terminal:
            break
    assert status.serving_since == T0
    assert status.labels_judged_at == T0 + timedelta(minutes=3)
    assert advanced == [180, 240]
    assert status.phase in (Phase.PROMOTING, Phase.SUCCEEDED)


def test_status_explains_the_wait_and_a_new_revision_forgets_the_judgement() -> None:
    spec = make_spec(labelDelay="3m")
    status = begin(spec)
    t = tick(spec, status, T0 + timedelta(seconds=70), healthy_snapshot(T0 + timedelta(seconds=70), 5))
    assert t.status.decision is not None and t.status.decision.action == DecisionAction.HOLD
    assert "labelDelay 3m" in t.status.message and t.status.serving_since == T0
    judged = tick(spec, t.status, T0 + timedelta(minutes=3), healthy_snapshot(T0 + timedelta(minutes=3), 5))
    assert judged.status.labels_judged_at == T0 + timedelta(minutes=3) and judged.status.current_step == 1
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["canary"]["template"] = {"image": "img:v3"}
    changed = ModelRolloutSpec.model_validate(data)
    restarted = step(changed, judged.status, SpecChanged(), T0 + timedelta(minutes=4)).status
    assert restarted.labels_judged_at is None and restarted.serving_since is None
