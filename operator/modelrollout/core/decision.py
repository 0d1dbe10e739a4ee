"""The decision rules of docs/design.md#decision-rules: one action per tick, first rule wins.

``decide`` is pure and cheap (it runs on every tick and in the fast path, and the
judgement benchmark replays hundreds of thousands of ticks through it). It also derives
the persistent-trigger clocks (``triggeredSince`` per condition, ``highRiskSince``) and
the no-data counter, because those are inputs to the very rules that read them and
must move in lockstep with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..api.models import DecisionAction, ModelRolloutSpec, NoDataPolicy, RiskLevel
from .conditions.base import ConditionResult
from .integrity import MODEL_INTEGRITY, IntegrityVerdict
from .scoring import HIGH_AT, MEDIUM_AT, CRITICAL_AT, level_of, score_conditions
from ..api.thresholds import ConditionName
from .snapshot import CanaryHealth

ACCURACY = ConditionName.ACCURACY.value


@dataclass(frozen=True, slots=True)
class Position:
    """Where the rollout stands: the parts of status the rules read."""

    current_step: int
    canary_weight: int
    step_started_at: datetime
    paused: bool = False
    triggered_since: Mapping[str, datetime] = field(default_factory=dict)
    high_risk_since: datetime | None = None
    consecutive_no_data: int = 0
    short_of_size_since: datetime | None = None
    model_unconfirmed_since: datetime | None = None
    serving_since: datetime | None = None
    labels_judged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict of one tick with all its evidence (feeds status, Events, evaluate)."""

    action: DecisionAction
    reason: str
    score: float
    level: RiskLevel
    conditions: tuple[ConditionResult, ...]
    trigger: str | None = None
    triggered_since: Mapping[str, datetime] = field(default_factory=dict)
    high_risk_since: datetime | None = None
    consecutive_no_data: int = 0
    next_interval: timedelta = timedelta(seconds=30)
    new_weight: int | None = None
    short_of_size_since: datetime | None = None
    model_unconfirmed_since: datetime | None = None
    labels_judged_at: datetime | None = None


def health_failure(health: CanaryHealth | None, progress_deadline_seconds: int) -> str | None:
    """Kubernetes health is outside the score and always critical (docs/design.md#kubernetes-health)."""
    if health is None:
        return None
    if health.oom_killed:
        return f"{health.oom_killed} canary pod(s) OOMKilled (exit 137)"
    if health.crash_looping:
        return f"{health.crash_looping} canary pod(s) in CrashLoopBackOff"
    if health.progress_deadline_exceeded:
        return "canary exceeded its progress deadline"
    if health.unavailable_for_seconds >= progress_deadline_seconds:
        return f"canary unavailable for {health.unavailable_for_seconds:.0f}s (deadline {progress_deadline_seconds}s)"
    return None


def short_of_size(health: CanaryHealth | None) -> str | None:
    """Why the canary is not available at its size yet, or None when it is (or unknown)."""
    if health is None or health.replicas is None or health.available_replicas is None:
        return None
    if health.available_replicas >= health.replicas:
        return None
    return f"{health.available_replicas}/{health.replicas} pods available"


def labels_judged(results: Sequence[ConditionResult], position: Position, label_delay: timedelta,
                  now: datetime) -> datetime | None:
    """When accuracy was first judged on the challenger's own labels (docs/design.md#late-labels).

    Labels are counted when they arrive, up to ``labelDelay`` after their predictions, so
    the first ones are those that came fastest: a biased sample (the easy cases are often
    labelled first). A verdict on them still rolls back (evidence of harm is never
    ignored), but it does not let a step complete: that needs a conclusive accuracy
    (enough labels, not "no data") at least ``labelDelay`` after the challenger first
    served users. Once judged, it stays judged for the revision: a later step may rest on
    labels of an earlier step's predictions. None while not yet judged, and also when
    accuracy is disabled (the gate then does not apply)."""
    if position.labels_judged_at is not None:
        return position.labels_judged_at
    accuracy = next((r for r in results if r.name == ACCURACY), None)
    if accuracy is None or accuracy.inconclusive or accuracy.no_data:
        return None
    serving = _serving_since(position)
    if serving is None or now - serving < label_delay:
        return None
    return now


def _serving_since(position: Position) -> datetime | None:
    """A canary with weight has served at least since its step began (callers that do not
    track the first weighted step, e.g. ``evaluate`` and replays, give only that)."""
    if position.serving_since is not None:
        return position.serving_since
    return position.step_started_at if position.canary_weight > 0 else None


def _awaiting_labels(results: Sequence[ConditionResult], position: Position, label_delay: timedelta,
                     now: datetime) -> str | None:
    """Why the step cannot complete yet for want of a judgement on labels, or None."""
    accuracy = next((r for r in results if r.name == ACCURACY), None)
    if accuracy is None or position.labels_judged_at is not None:
        return None
    fix = "; a model without labels: spec.analysis.conditions.accuracy.enabled: false"
    serving = _serving_since(position)
    if serving is None:
        return "the challenger has not served users yet" + fix
    served = now - serving
    if served < label_delay:
        return (f"labels of the challenger's predictions can take spec.analysis.labelDelay {_secs(label_delay)} "
                f"to arrive; it has served users for {_secs(served)}")
    return f"accuracy: {accuracy.message or 'no verdict yet'}{fix}"


def _clocks(
    results: Sequence[ConditionResult], position: Position, score: float, now: datetime
) -> tuple[dict[str, datetime], datetime | None]:
    since: dict[str, datetime] = {}
    for r in results:
        if r.triggered:
            since[r.name] = position.triggered_since.get(r.name, now)
    high = (position.high_risk_since or now) if score >= HIGH_AT else None
    return since, high


def _names(results: Sequence[ConditionResult]) -> str:
    return ", ".join(r.name for r in results)


def decide(
    spec: ModelRolloutSpec,
    results: Sequence[ConditionResult],
    health: CanaryHealth | None,
    position: Position,
    now: datetime,
    *,
    integrity: IntegrityVerdict | None = None,
    health_unread: str | None = None,
) -> Decision:
    """Apply rules 1–7 to one tick's condition results.

    ``health_unread``: why the operator could not read the canary's Deployment this tick;
    the step's end then waits as for a canary short of its size, on the same clock and
    deadline, so an unreadable canary is never promoted and never wedges the rollout.

    ``integrity``: what the canary's servers report against the declared model
    (``core.integrity``): a breach is rule 1; an unconfirmed model holds the step's end
    like a canary short of its size, with the same deadline on its own clock."""
    analysis = spec.analysis
    score = score_conditions(results)
    level = level_of(score)
    interval = analysis.interval
    sustained = timedelta(seconds=analysis.sustained_high_seconds)
    since, high_since = _clocks(results, position, score, now)
    no_data = [r for r in results if r.no_data]
    no_data_count = position.consecutive_no_data + 1 if no_data else 0
    conds = tuple(results)
    short = short_of_size(health) or (f"its Deployment could not be read: {health_unread}" if health_unread else None)
    short_since = (position.short_of_size_since or now) if short is not None else None
    unverified = integrity.unverified if integrity is not None else None
    unconfirmed_since = (position.model_unconfirmed_since or now) if unverified is not None else None
    judged_at = labels_judged(results, position, analysis.label_delay, now)

    def verdict(action: DecisionAction, reason: str, trigger: str | None = None, *,
                next_interval: timedelta = interval, new_weight: int | None = None) -> Decision:
        return Decision(action, reason, score, level, conds, trigger, since, high_since, no_data_count,
                        next_interval, new_weight, short_since, unconfirmed_since, judged_at)

    # Rule 1: anything critical, or Kubernetes says the canary is unhealthy.
    failure = health_failure(health, analysis.progress_deadline_seconds)
    if failure:
        return verdict(DecisionAction.ROLLBACK, f"critical: {failure}", "kubernetesHealth")
    if integrity is not None and integrity.breach is not None:
        return verdict(DecisionAction.ROLLBACK, f"critical: {MODEL_INTEGRITY}: {integrity.breach}", MODEL_INTEGRITY)
    critical = [r for r in results if r.critical]
    if critical:
        first = critical[0]
        return verdict(DecisionAction.ROLLBACK, f"critical: {first.name}: {first.message}", first.name)

    # Rule 2: overall risk critical.
    if score >= CRITICAL_AT:
        return verdict(DecisionAction.ROLLBACK, f"critical risk {score:.2f}", _top(results))

    # Rule 3: sustained high risk, or one condition triggered without a break.
    if high_since is not None and now - high_since >= sustained:
        return verdict(DecisionAction.ROLLBACK,
                       f"high risk {score:.2f} sustained for {_secs(now - high_since)}", _top(results))
    persistent = [r for r in results if r.triggered and now - since[r.name] >= sustained]
    if persistent:
        first = max(persistent, key=lambda r: now - since[r.name])
        return verdict(DecisionAction.ROLLBACK,
                       f"{first.name} triggered for {_secs(now - since[first.name])}: {first.message}", first.name)

    if position.paused:
        return verdict(DecisionAction.HOLD, "paused", next_interval=interval / 2 if score >= MEDIUM_AT else interval)

    # Rule 4: high risk reduces the canary's share (never below the first weighted step's);
    # a shadow step serves no user, so there is nothing to reduce: it holds, and rule 3
    # rolls back if the risk lasts.
    if score >= HIGH_AT and (spec.steps[position.current_step].shadow is not None or position.canary_weight == 0):
        return verdict(DecisionAction.HOLD, f"high risk {score:.2f} on mirrored traffic", _top(results),
                       next_interval=interval / 2)
    if score >= HIGH_AT:
        floor = spec.first_weight
        reduced = min(position.canary_weight, max(floor, position.canary_weight // 2))  # a reduce never raises
        return verdict(DecisionAction.REDUCE, f"high risk {score:.2f}: canary weight {position.canary_weight}% -> {reduced}%",
                       _top(results), next_interval=interval / 2, new_weight=reduced)

    # Rule 5: medium risk holds and looks again sooner.
    if score >= MEDIUM_AT:
        return verdict(DecisionAction.HOLD, f"medium risk {score:.2f}", _top(results), next_interval=interval / 2)

    # Rule 6: a step never advances on a triggered condition or on missing evidence.
    triggered = [r for r in results if r.triggered]
    if triggered:
        return verdict(DecisionAction.HOLD, f"Triggered: {_names(triggered)}", triggered[0].name)
    ignore_no_data = (
        no_data and no_data_count >= analysis.no_data.max_consecutive and analysis.no_data.policy == NoDataPolicy.IGNORE
    )
    if no_data and no_data_count >= analysis.no_data.max_consecutive:
        policy = analysis.no_data.policy
        if policy == NoDataPolicy.ROLLBACK:
            return verdict(DecisionAction.ROLLBACK,
                           f"no data for {no_data_count} ticks from {_names(no_data)} (noData.policy rollback)",
                           no_data[0].name)
        if policy == NoDataPolicy.HOLD:
            return verdict(DecisionAction.HOLD,
                           f"Inconclusive: no data for {no_data_count} ticks from {_names(no_data)} (noData.policy hold)",
                           no_data[0].name)
    inconclusive = [r for r in results if r.inconclusive and not (ignore_no_data and r.no_data)]
    if inconclusive:
        detail = "; ".join(f"{r.name}: {r.message}" if r.message else r.name for r in inconclusive)
        return verdict(DecisionAction.HOLD, f"Inconclusive: {detail}", inconclusive[0].name)

    # Rule 7: healthy. Advance when the step's time is up; missing data never promotes.
    step = spec.steps[position.current_step]
    held = step.hold_for
    if position.canary_weight != step.traffic_weight:
        return verdict(DecisionAction.CONTINUE, f"healthy: restoring step weight {step.traffic_weight}%",
                       new_weight=step.traffic_weight)
    if now - position.step_started_at < held:
        remaining = held - (now - position.step_started_at)
        return verdict(DecisionAction.CONTINUE, f"healthy (score {score:.2f}); step {position.current_step} ends in {_secs(remaining)}")
    # A step completes only on a canary that served its share at full size, with the
    # declared model confirmed on every ready pod (docs/integrity.md). Each wait is bounded:
    # progressDeadlineSeconds of it, counted from when it was first seen (its own clock in
    # status: shortOfSizeSince, modelUnconfirmedSince) or from the step's end if later — a
    # step held long for other reasons is not condemned by one such tick afterwards.
    step_end = position.step_started_at + held
    deadline = timedelta(seconds=analysis.progress_deadline_seconds)
    setting = f"spec.analysis.progressDeadlineSeconds {analysis.progress_deadline_seconds}"
    if short is not None and short_since is not None:
        waited = now - max(short_since, step_end)
        if waited >= deadline:
            return verdict(DecisionAction.ROLLBACK,
                           f"canary not available at its size for {_secs(waited)} after step "
                           f"{position.current_step}'s time was up ({short}; {setting})", "kubernetesHealth")
        return verdict(DecisionAction.HOLD, f"step {position.current_step} healthy for {_secs(held)}; waiting "
                                            f"for the canary to be available at its size ({short})")
    if unverified is not None and unconfirmed_since is not None:
        waited = now - max(unconfirmed_since, step_end)
        if waited >= deadline:
            return verdict(DecisionAction.ROLLBACK,
                           f"{MODEL_INTEGRITY}: the declared model not confirmed for {_secs(waited)} after step "
                           f"{position.current_step}'s time was up ({unverified}; {setting})", MODEL_INTEGRITY)
        return verdict(DecisionAction.HOLD, f"step {position.current_step} healthy for {_secs(held)}; waiting "
                                            f"for the declared model: {unverified}", MODEL_INTEGRITY)
    # A step that served users completes only once accuracy was judged on the challenger's
    # own labels, late as they come (docs/design.md#late-labels). A shadow step serves
    # none: its end waits for nothing here, and the next step's does.
    if spec.steps[position.current_step].shadow is None:
        awaiting = _awaiting_labels(results, replace(position, labels_judged_at=judged_at), analysis.label_delay, now)
        if awaiting is not None:
            return verdict(DecisionAction.HOLD, f"step {position.current_step} healthy for {_secs(held)}; waiting "
                                                f"for accuracy on the challenger's own labels: {awaiting}", ACCURACY)
    if position.current_step + 1 < len(spec.steps):
        nxt = spec.steps[position.current_step + 1]
        return verdict(DecisionAction.ADVANCE,
                       f"step {position.current_step} healthy for {_secs(held)}: advancing to {nxt.traffic_weight}%",
                       new_weight=nxt.traffic_weight)
    if no_data:
        return verdict(DecisionAction.HOLD, f"Inconclusive: no data from {_names(no_data)}; missing data never promotes",
                       no_data[0].name)
    return verdict(DecisionAction.PROMOTE, f"last step healthy for {_secs(held)}: promoting")


def _top(results: Sequence[ConditionResult]) -> str | None:
    """The condition contributing most to the score (for reasons and evidence)."""
    best = max(results, key=lambda r: r.weight * r.severity, default=None)
    return best.name if best is not None and best.severity > 0 else None


def _secs(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds / 3600:.1f}h"
