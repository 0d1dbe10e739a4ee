"""Rules 1–7 of docs/design.md#decision-rules on hand-made condition results (no snapshots involved)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from modelrollout.api.models import DecisionAction, ModelRolloutSpec, RiskLevel
from modelrollout.core.conditions.base import ConditionResult
from modelrollout.core.decision import Position, decide
from modelrollout.core.scoring import level_of, score_conditions
from modelrollout.core.snapshot import CanaryHealth

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
WEIGHTS = {"accuracy": 0.25, "latency": 0.20, "confidenceDrift": 0.15, "errorRate": 0.15, "cache": 0.10,
           "throughput": 0.10, "anomaly": 0.05}


def spec(**analysis: object) -> ModelRolloutSpec:
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "a"}, "canary": {"deployment": "b"},
        "steps": [{"weight": 5, "duration": "60s"}, {"weight": 25, "duration": "60s"}, {"weight": 100, "duration": "60s"}],
        "analysis": {"interval": "10s", **analysis},
    })


def results(**severities: float) -> list[ConditionResult]:
    return [ConditionResult(name=n, severity=severities.get(n, 0.0), weight=w) for n, w in WEIGHTS.items()]


def pos(step: int = 0, weight: int = 5, started: datetime = T0, **kw: object) -> Position:
    return Position(current_step=step, canary_weight=weight, step_started_at=started, **kw)  # type: ignore[arg-type]


def test_score_and_levels() -> None:
    assert score_conditions(results()) == 0.0
    assert score_conditions(results(**{n: 1.0 for n in WEIGHTS})) == pytest.approx(1.0)
    assert score_conditions(results(accuracy=1.0)) == pytest.approx(0.25)
    assert [level_of(x) for x in (0.0, 0.29, 0.3, 0.59, 0.6, 0.79, 0.8, 1.0)] == [
        RiskLevel.LOW, RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.HIGH,
        RiskLevel.CRITICAL, RiskLevel.CRITICAL]


def test_rule1_critical_condition_rolls_back_immediately() -> None:
    rs = results()
    rs[1] = ConditionResult(name="latency", severity=1.0, critical=True, weight=0.2, message="p95 7ms")
    d = decide(spec(), rs, None, pos(), T0)
    assert d.action == DecisionAction.ROLLBACK and d.trigger == "latency" and "critical" in d.reason


@pytest.mark.parametrize("health,needle", [
    (CanaryHealth(oom_killed=1), "OOMKilled"),
    (CanaryHealth(crash_looping=2), "CrashLoopBackOff"),
    (CanaryHealth(progress_deadline_exceeded=True), "progress deadline"),
    (CanaryHealth(unavailable_for_seconds=601), "unavailable"),
])
def test_rule1_kubernetes_health(health: CanaryHealth, needle: str) -> None:
    d = decide(spec(), results(), health, pos(), T0)
    assert d.action == DecisionAction.ROLLBACK and needle in d.reason and d.trigger == "kubernetesHealth"


def test_unavailable_below_deadline_is_not_a_failure() -> None:
    d = decide(spec(), results(), CanaryHealth(unavailable_for_seconds=599), pos(), T0)
    assert d.action == DecisionAction.CONTINUE


def test_rule2_score_at_critical_level_rolls_back() -> None:
    d = decide(spec(), results(**{n: 0.8 for n in WEIGHTS}), None, pos(), T0)
    assert d.action == DecisionAction.ROLLBACK and d.score == pytest.approx(0.8)


def test_rule4_high_risk_reduces_weight_not_below_first_step() -> None:
    high = results(**{n: 0.65 for n in WEIGHTS})
    d = decide(spec(), high, None, pos(step=1, weight=25), T0)
    assert d.action == DecisionAction.REDUCE and d.new_weight == 12
    d = decide(spec(), high, None, pos(step=0, weight=5), T0)
    assert d.new_weight == 5


def test_rule3_sustained_high_risk_rolls_back_at_the_right_tick() -> None:
    high = results(**{n: 0.65 for n in WEIGHTS})
    s = spec(sustainedHighSeconds=300)
    since = T0
    d = decide(s, high, None, pos(high_risk_since=since), T0 + timedelta(seconds=290))
    assert d.action == DecisionAction.REDUCE and d.high_risk_since == since
    d = decide(s, high, None, pos(high_risk_since=since), T0 + timedelta(seconds=300))
    assert d.action == DecisionAction.ROLLBACK and "sustained" in d.reason


def test_high_risk_clock_resets_when_score_drops() -> None:
    d = decide(spec(), results(), None, pos(high_risk_since=T0), T0 + timedelta(seconds=100))
    assert d.high_risk_since is None


def test_rule3_persistent_single_trigger_rolls_back_naming_it() -> None:
    rs = results(errorRate=0.3)
    s = spec(sustainedHighSeconds=300)
    d = decide(s, rs, None, pos(triggered_since={"errorRate": T0}), T0 + timedelta(seconds=299))
    assert d.action == DecisionAction.HOLD and "Triggered: errorRate" in d.reason
    d = decide(s, rs, None, pos(triggered_since={"errorRate": T0}), T0 + timedelta(seconds=300))
    assert d.action == DecisionAction.ROLLBACK and d.trigger == "errorRate" and "errorRate" in d.reason


def test_trigger_break_resets_clock() -> None:
    d = decide(spec(), results(), None, pos(triggered_since={"errorRate": T0}), T0 + timedelta(seconds=200))
    assert "errorRate" not in d.triggered_since
    d2 = decide(spec(), results(errorRate=0.2), None, pos(triggered_since=d.triggered_since), T0 + timedelta(seconds=210))
    assert d2.triggered_since["errorRate"] == T0 + timedelta(seconds=210)


def test_rule5_medium_risk_holds_at_half_interval() -> None:
    d = decide(spec(), results(**{n: 0.4 for n in WEIGHTS}), None, pos(), T0)
    assert d.action == DecisionAction.HOLD and d.next_interval == timedelta(seconds=5)


def test_rule6_triggered_holds_past_step_duration() -> None:
    d = decide(spec(), results(cache=0.1), None, pos(), T0 + timedelta(minutes=10))
    assert d.action == DecisionAction.HOLD and d.reason.startswith("Triggered: cache")


def test_rule6_inconclusive_holds_and_too_few_samples_does_not_count_as_no_data() -> None:
    rs = results()
    rs[0] = ConditionResult(name="accuracy", severity=0.0, inconclusive=True, weight=0.25,
                            message="64/100 labelled predictions")
    d = decide(spec(), rs, None, pos(consecutive_no_data=3), T0 + timedelta(minutes=10))
    assert d.action == DecisionAction.HOLD and "Inconclusive" in d.reason and "64/100" in d.reason
    assert d.consecutive_no_data == 0


@pytest.mark.parametrize("policy,expected", [("hold", DecisionAction.HOLD), ("rollback", DecisionAction.ROLLBACK)])
def test_no_data_policy_after_max_consecutive(policy: str, expected: DecisionAction) -> None:
    s = spec(noData={"policy": policy, "maxConsecutive": 3})
    rs = results()
    rs[2] = ConditionResult(name="confidenceDrift", severity=0.0, inconclusive=True, no_data=True, weight=0.15)
    d = decide(s, rs, None, pos(consecutive_no_data=1), T0 + timedelta(minutes=10))
    assert d.action == DecisionAction.HOLD and d.consecutive_no_data == 2
    d = decide(s, rs, None, pos(consecutive_no_data=2), T0 + timedelta(minutes=10))
    assert d.action == expected and d.consecutive_no_data == 3


def test_no_data_ignore_advances_but_never_promotes() -> None:
    s = spec(noData={"policy": "ignore", "maxConsecutive": 2})
    rs = results()
    rs[2] = ConditionResult(name="confidenceDrift", severity=0.0, inconclusive=True, no_data=True, weight=0.15)
    d = decide(s, rs, None, pos(consecutive_no_data=5), T0 + timedelta(minutes=10))
    assert d.action == DecisionAction.ADVANCE
    d = decide(s, rs, None, pos(step=2, weight=100, consecutive_no_data=5), T0 + timedelta(minutes=10))
    assert d.action == DecisionAction.HOLD and "never promotes" in d.reason


def test_rule7_continue_then_advance_then_promote() -> None:
    s = spec()
    assert decide(s, results(), None, pos(), T0 + timedelta(seconds=59)).action == DecisionAction.CONTINUE
    d = decide(s, results(), None, pos(), T0 + timedelta(seconds=60))
    assert d.action == DecisionAction.ADVANCE and d.new_weight == 25
    d = decide(s, results(), None, pos(step=2, weight=100), T0 + timedelta(seconds=60))
    assert d.action == DecisionAction.PROMOTE


def test_reduced_weight_is_restored_when_healthy() -> None:
    d = decide(spec(), results(), None, pos(step=1, weight=12), T0 + timedelta(seconds=5))
    assert d.action == DecisionAction.CONTINUE and d.new_weight == 25


def test_paused_holds_but_critical_still_rolls_back() -> None:
    assert decide(spec(), results(), None, pos(paused=True), T0 + timedelta(hours=1)).action == DecisionAction.HOLD
    rs = results()
    rs[0] = ConditionResult(name="accuracy", severity=1.0, critical=True, weight=0.25)
    assert decide(spec(), rs, None, pos(paused=True), T0).action == DecisionAction.ROLLBACK


def test_a_step_completes_only_on_a_canary_available_at_its_size() -> None:
    """Advancing (and promoting) waits for the canary's pods at the step's size; the wait is
    bounded by progressDeadlineSeconds after the step's end (600 s by default), then it is
    a Kubernetes-health rollback, never a rollout that waits for ever."""
    ended = T0 + timedelta(seconds=61)
    short = CanaryHealth(replicas=2, available_replicas=1)
    d = decide(spec(), results(), short, pos(), ended)
    assert d.action == DecisionAction.HOLD and "1/2 pods available" in d.reason, d.reason
    assert decide(spec(), results(), short, pos(), T0 + timedelta(seconds=30)).action == DecisionAction.CONTINUE
    at_size = CanaryHealth(replicas=2, available_replicas=2)
    assert decide(spec(), results(), at_size, pos(), ended).action == DecisionAction.ADVANCE
    last = pos(step=2, weight=100)
    assert decide(spec(), results(), short, last, ended).action == DecisionAction.HOLD
    assert decide(spec(), results(), at_size, last, ended).action == DecisionAction.PROMOTE
    # The clock: since the canary was first seen short (carried like highRiskSince), or the
    # step's end if later. Short since the step's end for 600 s: rolled back.
    first = decide(spec(), results(), short, pos(), ended)
    assert first.short_of_size_since == ended
    late = decide(spec(), results(), short, pos(short_of_size_since=ended), ended + timedelta(seconds=600))
    assert late.action == DecisionAction.ROLLBACK and late.trigger == "kubernetesHealth"
    assert "not available at its size" in late.reason and "progressDeadlineSeconds" in late.reason
    assert not late.reason.startswith("critical")  # rule 7's, not rule 1's
    # A step held long for other reasons, then short for one tick, only holds.
    much_later = T0 + timedelta(hours=2)
    once = decide(spec(), results(), short, pos(), much_later)
    assert once.action == DecisionAction.HOLD and once.short_of_size_since == much_later
    # At size again: the clock is cleared.
    assert decide(spec(), results(), at_size, pos(short_of_size_since=ended), much_later).short_of_size_since is None
    # Snapshots without the counts (replays, older files) are not held.
    assert decide(spec(), results(), CanaryHealth(), pos(), ended).action == DecisionAction.ADVANCE


def test_an_unreadable_canary_holds_the_step_end_then_rolls_back_never_promotes() -> None:
    """A tick whose read of the canary Deployment failed: the step's end waits as for a
    canary short of its size, on the same clock; a snapshot without health (a replay) is
    judged on what it holds."""
    s = spec(progressDeadlineSeconds=120)
    done = T0 + timedelta(minutes=20)  # past the step's duration
    held = decide(s, results(), None, pos(), done, health_unread="connection refused")
    assert held.action == DecisionAction.HOLD and "could not be read: connection refused" in held.reason
    assert held.short_of_size_since == done
    later = decide(s, results(), None, pos(short_of_size_since=done), done + timedelta(seconds=121),
                   health_unread="connection refused")
    assert later.action == DecisionAction.ROLLBACK and later.trigger == "kubernetesHealth"
    assert decide(s, results(), None, pos(), done).action == DecisionAction.ADVANCE  # replay: no health at all
