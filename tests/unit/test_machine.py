"""Whole-rollout timelines through the state machine, driven by an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from modelrollout.api.models import DecisionAction, DecisionPath, ModelRolloutSpec, ModelRolloutStatus, Phase, StableRecord
from modelrollout.core.actions import EmitEvent, Notify, Promote, RollbackPhase, SetWeight, StartRollout
from modelrollout.core.machine import pending_actions, revision_of, step
from modelrollout.core.observations import (
    Command,
    CommandKind,
    CriticalSignal,
    InitFailed,
    Initialized,
    MetricsFailed,
    MetricsObserved,
    PromotionApplied,
    PromotionFailed,
    PromotionProgress,
    RollbackApplied,
    SpecChanged,
)
from modelrollout.core.replay import settle, start
from modelrollout.core.snapshot import load_snapshot
from modelrollout.core.windows import plan_windows

from .factories import RECORD, T0, begin, healthy_snapshot, make_spec, snapshot_dict, with_changes

def run(spec: ModelRolloutSpec, status: ModelRolloutStatus, times: list[datetime], make) -> list:
    """Tick at each time with ``make(at, weight)``; returns [(time, transition)] until terminal."""
    out = []
    for at in times:
        t = settle(spec, step(spec, status, MetricsObserved(make(at, status.canary_weight)), at), at)
        out.append((at, t))
        status = t.status
        if status.phase.is_terminal:
            break
    return out


def every(seconds: int, until: int) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in range(seconds, until + 1, seconds)]


def test_healthy_rollout_walks_5_25_100_and_succeeds() -> None:
    spec = make_spec()
    status = begin(spec)
    timeline = run(spec, status, every(10, 400), lambda at, w: healthy_snapshot(at, w))
    weights = [(at - T0).total_seconds() for at, t in timeline if any(isinstance(a, SetWeight) for a in t.actions)]
    assert weights == [60.0, 120.0]  # 25% at 60 s, 100% at 120 s
    final_at, final = timeline[-1]
    assert (final_at - T0).total_seconds() == 180.0
    assert final.status.phase == Phase.SUCCEEDED
    assert any(isinstance(a, Promote) for a in final.actions)
    kinds = [h.kind for h in final.status.history]
    assert kinds.count("step") == 3 and "promotion" in kinds
    complete = {c.type: c for c in final.status.conditions}["Complete"]
    assert complete.status == "True" and complete.reason == "Promoted"


def test_status_shows_the_step_as_n_of_m_and_the_score_to_two_places() -> None:
    """kubectl's STEP column reads ``status.stepProgress`` ("2/3"), SCORE ``status.risk.score``."""
    from modelrollout.core.records import shown_score

    spec = make_spec()
    status = begin(spec)
    timeline = run(spec, status, every(10, 400), lambda at, w: healthy_snapshot(at, w))
    progress = [t.status.step_progress for _, t in timeline]
    assert progress[0] == "1/3" and "2/3" in progress and progress[-1] == "3/3"
    for _, t in timeline:
        if t.status.risk is not None:
            assert t.status.risk.score == round(t.status.risk.score, 2)
    assert [shown_score(x) for x in (0.0, 0.598, 0.6, 0.3, 0.8, 1.0, 0.12345)] == [0.0, 0.59, 0.6, 0.3, 0.8, 1.0, 0.12]


def test_latency_breach_at_25_percent_rolls_back_in_phase_order() -> None:
    spec = make_spec()
    status = begin(spec)
    for at in every(10, 60):
        status = step(spec, status, MetricsObserved(healthy_snapshot(at, status.canary_weight)), at).status
    assert status.canary_weight == 25
    at = T0 + timedelta(seconds=70)
    t = step(spec, status, MetricsObserved(healthy_snapshot(at, 25, latency=(5.0, 8.0, 12.0))), at)
    assert t.status.phase == Phase.ROLLING_BACK and t.decision and t.decision.action == DecisionAction.ROLLBACK
    assert t.actions[0] == RollbackPhase(1) and t.status.rollback and t.status.rollback.trigger == "latency"
    evidence = t.status.history[-1].evidence
    assert evidence and evidence["trigger"] == "latency"
    assert {c["name"] for c in evidence["conditions"]} >= {"latency", "accuracy"}
    assert pending_actions(spec, t.status) == (RollbackPhase(1),)
    order = []
    status = t.status
    for phase in (1, 2, 3):
        nt = step(spec, status, RollbackApplied(phase), at + timedelta(seconds=phase))
        order.extend(type(a).__name__ + (f"({a.phase})" if isinstance(a, RollbackPhase) else "") for a in nt.actions)
        status = nt.status
    assert order == ["RollbackPhase(2)", "RollbackPhase(3)", "EmitEvent", "Notify"]
    assert status.phase == Phase.ROLLED_BACK and status.canary_weight == 0
    assert {c.type: c.status for c in status.conditions}["Degraded"] == "True"
    assert status.history[-1].evidence["timeToRecoverSeconds"] == 3.0


def test_rollback_phase_reports_are_idempotent() -> None:
    spec = make_spec()
    status = begin(spec)
    t = step(spec, status, CriticalSignal(DecisionPath.POD_WATCH, "kubernetesHealth", "pod OOMKilled"), T0)
    again = step(spec, t.status, RollbackApplied(2), T0)  # out of order: ignored
    assert again.status == t.status and again.actions == ()
    once = step(spec, t.status, RollbackApplied(1), T0)
    twice = step(spec, once.status, RollbackApplied(1), T0)  # duplicate report after a restart
    assert twice.actions == () and twice.status == once.status


def sustained_high(at: datetime, weight: int) -> object:
    """Latency and accuracy both at severity ~0.7: score ≈ 0.7 with only those two enabled."""
    data = snapshot_dict(at, weight, latency=(3.4, 5.1, 7.0), accuracy=0.78)
    data = with_changes(data, "stable.predictions_correct", round(data["stable"]["predictions_evaluated"] * 0.86))
    return load_snapshot(data)


def test_high_score_held_for_sustained_seconds_rolls_back_at_the_right_tick() -> None:
    off = {"enabled": False}
    spec = make_spec(conditions={"confidenceDrift": off, "errorRate": off, "cache": off, "throughput": off,
                                 "anomaly": off}, sustainedHighSeconds=300)
    status = begin(spec)
    timeline = run(spec, status, every(10, 400), sustained_high)
    first = timeline[0][1].decision
    assert first is not None and first.action == DecisionAction.REDUCE and 0.6 <= first.score < 0.8
    rolled = [(at, t) for at, t in timeline if t.decision and t.decision.action == DecisionAction.ROLLBACK]
    assert rolled, "never rolled back"
    assert (rolled[0][0] - T0).total_seconds() == 310.0  # high since the first tick at 10 s; 300 s later
    assert all(t.decision.action != DecisionAction.ROLLBACK for at, t in timeline if at < rolled[0][0])


def test_no_data_holds_then_applies_policy() -> None:
    spec = make_spec(noData={"policy": "rollback", "maxConsecutive": 4})
    status = begin(spec)
    def no_canary(at: datetime, weight: int):
        return load_snapshot(with_changes(snapshot_dict(at, weight), "canary", {"requests": 0, "rps": 0.0}))
    timeline = run(spec, status, every(10, 100), no_canary)
    actions = [t.decision.action for _, t in timeline if t.decision]
    assert actions[:3] == [DecisionAction.HOLD] * 3
    assert actions[3] == DecisionAction.ROLLBACK
    assert timeline[3][1].status.phase == Phase.ROLLED_BACK  # settled through the three phases


def test_prometheus_errors_hold_then_then_policy() -> None:
    spec = make_spec(prometheusErrors={"maxConsecutive": 3, "then": "rollback"})
    status = begin(spec)
    seen = []
    for i, at in enumerate(every(10, 40)):
        t = step(spec, status, MetricsFailed("connection refused"), at)
        seen.append((t.status.phase, t.status.consecutive_prometheus_errors))
        status = t.status
    assert seen[0] == (Phase.PROGRESSING, 1) and seen[1] == (Phase.PROGRESSING, 2)
    assert seen[2][0] == Phase.ROLLING_BACK and status.rollback and status.rollback.trigger == "prometheusErrors"


def test_prometheus_errors_never_advance_even_past_step_duration() -> None:
    spec = make_spec(prometheusErrors={"maxConsecutive": 100, "then": "hold"})
    status = begin(spec)
    for at in every(10, 300):
        status = step(spec, status, MetricsFailed("timeout"), at).status
    assert status.current_step == 0 and status.phase == Phase.PROGRESSING


def test_template_change_mid_rollout_restarts_at_step_zero() -> None:
    spec = make_spec()
    status = begin(spec)
    for at in every(10, 70):
        status = step(spec, status, MetricsObserved(healthy_snapshot(at, status.canary_weight)), at).status
    assert status.current_step == 1
    changed = spec.model_copy(update={"canary": spec.canary.model_copy(update={"template": spec.canary.template.model_copy(update={"image": "img:v3"})})})
    assert revision_of(changed) != revision_of(spec)
    at = T0 + timedelta(seconds=80)
    t = step(changed, status, MetricsObserved(healthy_snapshot(at, 25)), at)
    assert t.status.phase == Phase.INITIALIZING and t.status.current_step == 0
    assert t.status.stable_record == RECORD  # the stable as it was before the *first* change
    assert isinstance(t.actions[0], StartRollout)
    t = step(changed, t.status, Initialized(StableRecord(replicas=9, template={}, recorded_at=at)), at)
    assert t.status.current_step == 0 and t.status.canary_weight == 5 and t.status.stable_record == RECORD


def test_new_revision_after_rollback_starts_fresh_from_the_record() -> None:
    spec = make_spec()
    signal = CriticalSignal(DecisionPath.FAST_PATH, "latency", "p95 9ms")
    status = settle(spec, step(spec, begin(spec), signal, T0), T0).status
    assert status.phase == Phase.ROLLED_BACK
    assert step(spec, status, SpecChanged(), T0).status == status  # same revision: stays rolled back
    changed = make_spec().model_copy(update={"canary": make_spec().canary.model_copy(update={"deployment": "fraud-canary-2"})})
    t = step(changed, status, SpecChanged(), T0)
    assert t.status.phase == Phase.INITIALIZING and t.status.stable_record == RECORD and len(t.status.history) > 1


def _failed_promotion(spec: ModelRolloutSpec) -> ModelRolloutStatus:
    t = step(spec, begin(spec), Command(CommandKind.PROMOTE_FULL), T0)
    t = step(spec, t.status, PromotionProgress(stable_ready=0, canary_replicas=4, total=4), T0)
    assert t.status.phase == Phase.PROMOTING and t.actions == (Promote(t.status.revision),)
    assert t.status.promotion.batch == 1 and t.status.promotion.total == 4
    failed = step(spec, t.status, PromotionFailed("handover stopped at 1/4"), T0).status
    assert failed.phase == Phase.FAILED
    return failed


def test_each_handover_batch_records_when_it_began() -> None:
    """The executor counts a batch's progressDeadlineSeconds from this persisted moment, so a
    restarted operator resumes the wait instead of starting it over."""
    spec = make_spec()
    t = step(spec, begin(spec), Command(CommandKind.PROMOTE_FULL), T0)
    assert t.status.promotion.batch_started_at == T0
    later = T0 + timedelta(seconds=7)
    t = step(spec, t.status, PromotionProgress(stable_ready=1, canary_replicas=3, total=4), later)
    assert t.status.promotion.batch_started_at == later and t.status.promotion.started_at == T0


def test_the_stable_record_survives_a_failed_promotion_and_its_retry() -> None:
    """A retry (or a new revision) after Failed starts from the record, never from the
    half-handed-over stable (which would record 0 replicas and split 0 between both sides)."""
    spec = make_spec()
    failed = _failed_promotion(spec)
    retried = step(spec, failed, Command(CommandKind.RETRY), T0)
    assert retried.status.phase == Phase.INITIALIZING and retried.status.stable_record == RECORD
    other = RECORD.model_copy(update={"replicas": 0})  # what re-reading the stable would say now
    started = step(spec, retried.status, Initialized(other), T0)
    assert started.status.stable_record == RECORD and started.actions[0] == SetWeight(5)
    assert pending_actions(spec, started.status) == (SetWeight(5),)
    changed = make_spec(spec_extra={"canary": {"deployment": "fraud-canary", "template": {"image": "img:v3"}}})
    assert step(changed, failed, SpecChanged(), T0).status.stable_record == RECORD


def test_only_a_promoted_stable_is_recorded_afresh() -> None:
    spec = make_spec()
    t = step(spec, begin(spec), Command(CommandKind.PROMOTE_FULL), T0)
    done = step(spec, t.status, PromotionApplied(), T0).status
    assert done.phase == Phase.SUCCEEDED and done.promotion.stable_ready == done.promotion.total == 4
    changed = make_spec(spec_extra={"canary": {"deployment": "fraud-canary", "template": {"image": "img:v3"}}})
    assert step(changed, done, SpecChanged(), T0).status.stable_record is None


def test_dry_run_records_decisions_and_never_acts() -> None:
    spec = make_spec(dryRun=True)
    t = step(spec, None, SpecChanged(), T0)
    assert t.status.phase == Phase.PROGRESSING
    assert all(isinstance(a, EmitEvent) for a in t.actions)
    status = t.status
    at = T0 + timedelta(seconds=10)
    t = step(spec, status, MetricsObserved(healthy_snapshot(at, 5, latency=(5.0, 8.0, 12.0))), at)
    assert t.status.phase == Phase.PROGRESSING
    assert all(isinstance(a, EmitEvent) for a in t.actions)
    assert t.status.decision and t.status.decision.action == DecisionAction.ROLLBACK
    assert "would" in t.status.history[-1].message
    assert pending_actions(spec, t.status) == ()


def test_digest_mismatch_fails_without_touching_anything() -> None:
    spec = make_spec()
    t = step(spec, None, SpecChanged(), T0)
    t = step(spec, t.status, InitFailed("modelDigest sha256:aa… does not match the pod template's"), T0)
    assert t.status.phase == Phase.FAILED and [type(a) for a in t.actions] == [EmitEvent]
    assert {c.type: c.reason for c in t.status.conditions}["Ready"] == "StartFailed"


def test_promotion_failure_is_failed_not_succeeded() -> None:
    spec = make_spec()
    status = begin(spec)
    t = step(spec, status, Command(CommandKind.PROMOTE_FULL), T0)
    assert t.status.phase == Phase.PROMOTING and isinstance(t.actions[0], Promote)
    failed = step(spec, t.status, PromotionFailed("stable not available within 600s"), T0)
    assert failed.status.phase == Phase.FAILED
    ok = step(spec, t.status, PromotionApplied(), T0)
    assert ok.status.phase == Phase.SUCCEEDED and any(isinstance(a, Notify) for a in ok.actions)


def test_manual_commands() -> None:
    spec = make_spec()
    status = begin(spec)
    t = step(spec, status, Command(CommandKind.PROMOTE), T0)
    assert t.status.current_step == 1 and t.actions[0] == SetWeight(25)
    t = step(spec, t.status, Command(CommandKind.ABORT), T0)
    assert t.status.phase == Phase.ROLLING_BACK and t.status.rollback.trigger == "manual"
    done = settle(spec, t, T0).status
    assert done.phase == Phase.ROLLED_BACK
    t = step(spec, done, Command(CommandKind.RETRY), T0)
    assert t.status.phase == Phase.INITIALIZING and t.status.current_step == 0


def test_a_fresh_start_keeps_the_last_command_id() -> None:
    """The controller records a command's id in the status it persists with the command's
    transition; a retry (or a new revision) starts a fresh status, which must keep it, or
    the annotation still on the resource would count as new and run again."""
    spec = make_spec()
    rolled_back = settle(spec, step(spec, begin(spec), Command(CommandKind.ABORT), T0), T0).status
    recorded = rolled_back.model_copy(update={"last_command": "retry@2026-11-26T17:00:00.000000Z"})
    t = step(spec, recorded, Command(CommandKind.RETRY), T0)
    assert t.status.phase == Phase.INITIALIZING
    assert t.status.last_command == "retry@2026-11-26T17:00:00.000000Z"
    changed = make_spec(spec_extra={"canary": {"deployment": "fraud-canary", "template": {"image": "img:v3"}}})
    t = step(changed, recorded.model_copy(update={"last_command": "abort@1"}), SpecChanged(), T0)
    assert t.status.phase == Phase.INITIALIZING and t.status.last_command == "abort@1"


def test_pause_and_resume_follow_the_spec_field() -> None:
    spec = make_spec()
    status = begin(spec)
    paused = spec.model_copy(update={"paused": True})
    t = step(paused, status, SpecChanged(), T0)
    assert t.status.phase == Phase.PAUSED
    at = T0 + timedelta(seconds=200)
    t = step(paused, t.status, MetricsObserved(healthy_snapshot(at)), at)
    assert t.status.phase == Phase.PAUSED and t.status.current_step == 0 and t.decision.action == DecisionAction.HOLD
    t = step(spec, t.status, MetricsObserved(healthy_snapshot(at)), at)
    assert t.status.phase == Phase.PROGRESSING and t.status.current_step == 1


def test_pending_actions_resume_each_phase() -> None:
    spec = make_spec()
    status = begin(spec)
    assert pending_actions(spec, status) == (SetWeight(5),)
    assert pending_actions(spec, start(spec, T0)) == (SetWeight(5),)


def test_windows_grow_at_low_traffic_and_stay_nominal_at_high() -> None:
    spec = make_spec()
    status = begin(spec)
    at = T0 + timedelta(minutes=20)
    high = step(spec, status, MetricsObserved(healthy_snapshot(at, 5)), at).status
    plan = plan_windows(spec, high, at + timedelta(seconds=10))
    assert plan["latency"] == timedelta(seconds=60) and plan["accuracy"] == timedelta(minutes=15)
    low = step(spec, status, MetricsObserved(load_snapshot(snapshot_dict(at, 5, total_rps=20.0))), at).status
    grown = plan_windows(spec, low, at + timedelta(seconds=10))
    assert grown["latency"] > timedelta(seconds=60)  # 1 RPS canary: 1000 requests need ~17 min
    assert grown["latency"] == timedelta(minutes=20, seconds=10)


def test_step_is_deterministic() -> None:
    spec = make_spec()
    status = begin(spec)
    snap = healthy_snapshot(T0 + timedelta(seconds=10), 5, accuracy=0.83)
    a = step(spec, status, MetricsObserved(snap), T0 + timedelta(seconds=10))
    b = step(spec, status, MetricsObserved(snap), T0 + timedelta(seconds=10))
    assert a == b
