"""The rollout state machine: ``step(spec, status, observation, now) -> Transition``.

Everything the operator needs to resume lives in the status this returns; the actions
are idempotent targets (see ``actions.py``). The operator persists the new status
*before* executing the actions, so after a SIGKILL at any point ``pending_actions``
re-derives from status what must (still) hold in the cluster, and re-applying it is a
no-op. Observations (``observations.py``) are the only way facts enter: a metrics
snapshot or query error (regular tick), a critical signal (fast path, pod watch), the
completion of an action, or a manual command. How a transition is written into status
(conditions, history, risk, rollback evidence) is ``records.py``'s; this module decides
which transition happens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..api.models import (
    DispersionStatus,
    DecisionAction,
    DecisionPath,
    DecisionStatus,
    ErrorPolicy,
    HistoryEntry,
    HistoryKind,
    ModelRolloutSpec,
    ModelRolloutStatus,
    Phase,
    PromotionStatus,
    RiskLevel,
    RollbackStatus,
)
from .actions import (
    Action,
    EmitEvent,
    EventType,
    Notify,
    Promote,
    RollbackPhase,
    SetWeight,
    StartRollout,
)
from .conditions import evaluate_all
from .conditions.base import EvaluationContext
from .dispersion import NONE as NO_DISPERSION
from .dispersion import Dispersion
from .dispersion import estimate as estimate_dispersion
from .decision import Decision, Position, decide, health_failure, short_of_size
from .observations import (
    Command,
    CommandKind,
    CriticalSignal,
    Initialized,
    InitFailed,
    MetricsFailed,
    MetricsObserved,
    Observation,
    PromotionApplied,
    PromotionFailed,
    PromotionProgress,
    RollbackApplied,
    SpecChanged,
)
from .integrity import (
    MODEL_INTEGRITY,
    IntegrityVerdict,
    awaiting_model,
    dark_start,
    declared_digest,
    judge_integrity,
    unconfirmed_for_too_long,
)
from .records import capped_history, evidence_of, risk_of, updated_conditions, with_signal
from .shadow import mirror_action, mirroring, prepare_action, shadow_of, step_description
from .snapshot import CanaryHealth


@dataclass(frozen=True, slots=True)
class Transition:
    status: ModelRolloutStatus
    actions: tuple[Action, ...] = ()
    decision: Decision | None = None


# ----------------------------------------------------------------------------- helpers


def revision_of(spec: ModelRolloutSpec) -> str:
    """Hash of what the challenger runs; progress is keyed to it (flagger#1152)."""
    # requireImageDigest is an admission policy, not what runs: switching it restarts nothing
    # (and rollouts written before it existed keep their revision).
    canary = spec.canary.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"require_image_digest"})
    digest = hashlib.sha256(json.dumps(canary, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def next_tick(now: datetime, interval: timedelta) -> datetime:
    """The first multiple of ``interval`` (since the epoch) after ``now``.

    Rollouts sharing an interval tick at the same instants, so the operator can batch
    their Prometheus queries into one per metric.
    """
    seconds = interval.total_seconds()
    epoch = now.timestamp()
    ticks = int(epoch // seconds) + 1
    return datetime.fromtimestamp(ticks * seconds, tz=now.tzinfo)


def evaluation_context(spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime,
                       significance: float | None = None, dispersion: Dispersion | None = None) -> EvaluationContext:
    """The conditions' context; ``dispersion`` measured on this snapshot, else the last one
    the status recorded (the fast path's case), else none (docs/decisions.md#overdispersion)."""
    age = now - status.step_started_at if status.step_started_at else None
    if dispersion is None and status.dispersion is not None:
        d = status.dispersion
        dispersion = Dispersion(d.accuracy, d.error_rate, d.cache, d.rate, d.intervals, d.interval_seconds)
    if dispersion is not None:  # a measure never seen is binomial
        dispersion = Dispersion(dispersion.accuracy or 0.0, dispersion.errors or 0.0, dispersion.cache or 0.0,
                                dispersion.rate or 0.0, dispersion.intervals, dispersion.seconds)
    return EvaluationContext(
        dispersion=dispersion or NO_DISPERSION,
        thresholds=spec.analysis.resolved_conditions(),
        significance=spec.analysis.significance if significance is None else significance,
        canary_weight=status.canary_weight,
        mirror_percent=status.mirror_percent,
        step_age=age,
        interval=spec.analysis.interval,
    )


# ---------------------------------------------------------------------------- the step


def step(spec: ModelRolloutSpec, status: ModelRolloutStatus | None, observation: Observation, now: datetime,
         generation: int | None = None) -> Transition:
    """Advance the rollout by one observation. Pure: same inputs, same output."""
    transition = _step(spec, status, observation, now, generation)
    progress = f"{min(transition.status.current_step, len(spec.steps) - 1) + 1}/{len(spec.steps)}"
    if transition.status.step_progress == progress:
        return transition
    return replace(transition, status=transition.status.model_copy(update={"step_progress": progress}))


def _step(spec: ModelRolloutSpec, status: ModelRolloutStatus | None, observation: Observation, now: datetime,
          generation: int | None) -> Transition:
    status = status or ModelRolloutStatus()
    if generation is not None and status.observed_generation != generation:
        status = status.model_copy(update={"observed_generation": generation})
    revision = revision_of(spec)

    if isinstance(observation, Command):
        return _command(spec, status, observation.kind, revision, now)

    # A new challenger revision restarts the analysis from the first step, except while
    # promoting or rolling back: those finish first, then the new revision starts fresh.
    if status.revision != revision and status.phase not in (Phase.PROMOTING, Phase.ROLLING_BACK):
        return _start(spec, status, revision, now, restart=status.revision is not None)

    phase = status.phase
    if phase == Phase.INITIALIZING:
        return _initializing(spec, status, observation, now)
    if phase in (Phase.PROGRESSING, Phase.PAUSED):
        return _progressing(spec, status, observation, now)
    if phase == Phase.PROMOTING:
        return _promoting(spec, status, observation, now)
    if phase == Phase.ROLLING_BACK:
        return _rolling_back(spec, status, observation, now)
    return Transition(status)  # terminal or pending with nothing to do


def _start(spec: ModelRolloutSpec, status: ModelRolloutStatus, revision: str, now: datetime, restart: bool) -> Transition:
    # The stable record survives every phase but success: a retry or a new revision after
    # Failed or RolledBack starts from the stable as it was before any rollout touched it
    # (re-reading it after a promotion stopped half-way would record 0 replicas). Only a
    # promoted stable is the new champion, to be recorded afresh.
    keep_record = status.phase != Phase.SUCCEEDED
    message = f"revision {revision}: starting rollout" + (" (challenger changed: restarting at step 0)" if restart else "")
    new = ModelRolloutStatus(
        phase=Phase.INITIALIZING,
        observed_generation=status.observed_generation,
        revision=revision,
        current_step=0,
        canary_weight=status.canary_weight if keep_record else 0,
        stable_record=status.stable_record if keep_record else None,
        # The command id that led here (retry) or any before it: dropping it would make the
        # annotation still on the resource look new, and run again on the fresh rollout.
        last_command=status.last_command,
        message=message,
        conditions=updated_conditions(status, now, Ready=(True, "Initializing", message),
                               Progressing=(True, "Initializing", message),
                               Complete=(False, "Initializing", message), Degraded=(False, "Initializing", message)),
        history=capped_history(status, HistoryEntry(at=now, kind=HistoryKind.REVISION, message=message)),
    )
    if spec.analysis.dry_run:
        # Dry run never acts: no canary is created, analysis runs on what exists.
        shadow = shadow_of(spec, 0)
        new = new.model_copy(update={"phase": Phase.PROGRESSING, "step_started_at": now,
                                     "canary_weight": spec.steps[0].traffic_weight,
                                     "mirror_percent": shadow.percent if shadow is not None else None,
                                     "message": message + " (dryRun: analysis only)"})
        return Transition(new, (EmitEvent(EventType.NORMAL, "DryRun", new.message),))
    return Transition(new, (StartRollout(revision), EmitEvent(EventType.NORMAL, "RolloutStarted", message)))


def _initializing(spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: Observation, now: datetime) -> Transition:
    if isinstance(obs, Initialized):
        record = status.stable_record or obs.stable
        first = spec.steps[0].traffic_weight
        dark = dark_start(spec)
        shadow = shadow_of(spec, 0)
        if dark:
            message = (f"step 0: canary scaled for {step_description(spec, 0)} with no traffic until its servers report "
                       f"the declared model {declared_digest(spec)} (docs/integrity.md)")
        elif shadow is not None:
            message = f"step 0: {_shadow_text(shadow.percent)}"
        else:
            message = f"step 0: canary at {first}%"
        new = status.model_copy(update={
            "phase": Phase.PROGRESSING, "stable_record": record, "current_step": 0, "canary_weight": 0 if dark else first,
            "mirror_percent": shadow.percent if shadow is not None and not dark else None,
            "step_started_at": now, "next_evaluation_at": next_tick(now, spec.analysis.interval), "message": message,
            "high_risk_since": None, "short_of_size_since": None, "model_unconfirmed_since": None,
            "consecutive_no_data": 0,
            "consecutive_prometheus_errors": 0, "risk": None,
            "conditions": updated_conditions(status, now, Progressing=(True, "StepStarted", message)),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.STEP, message=message, step=0,
                                                           weight=0 if dark else first)),
        })
        if dark:
            return Transition(new, (prepare_action(spec), EmitEvent(EventType.NORMAL, "AwaitingModel", message)))
        if shadow is not None:
            return Transition(new, (mirror_action(spec), EmitEvent(EventType.NORMAL, "ShadowStarted", message)))
        return Transition(new, (SetWeight(first), EmitEvent(EventType.NORMAL, "StepStarted", message)))
    if isinstance(obs, InitFailed):
        message = f"cannot start: {obs.reason}"
        new = status.model_copy(update={
            "phase": Phase.FAILED, "message": message,
            "conditions": updated_conditions(status, now, Ready=(False, "StartFailed", message),
                                      Progressing=(False, "StartFailed", message)),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.DECISION, message=message)),
        })
        return Transition(new, (EmitEvent(EventType.WARNING, "StartFailed", message),))
    return Transition(status)


def _progressing(spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: Observation, now: datetime) -> Transition:
    # Pause and resume are spec fields: GitOps and kubectl agree on them.
    if spec.paused != (status.phase == Phase.PAUSED):
        phase = Phase.PAUSED if spec.paused else Phase.PROGRESSING
        message = "paused: analysis continues, nothing advances" if spec.paused else "resumed"
        status = status.model_copy(update={
            "phase": phase, "message": message,
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.MANUAL, message=message)),
        })
        if isinstance(obs, SpecChanged):
            return Transition(status, (EmitEvent(EventType.NORMAL, "Paused" if spec.paused else "Resumed", message),))

    if isinstance(obs, CriticalSignal):
        return _begin_rollback(spec, with_signal(status, obs, now), now, reason=obs.reason, trigger=obs.trigger,
                               path=obs.path, decision=None, extra=dict(obs.evidence))
    if isinstance(obs, MetricsFailed):
        return _metrics_failed(spec, status, obs, now)
    if not isinstance(obs, MetricsObserved):
        return Transition(status)

    snapshot = obs.snapshot
    health = snapshot.health.canary if snapshot.health else None
    integrity = judge_integrity(spec, snapshot, health)
    if awaiting_model(spec, status):
        return _awaiting_model(spec, status, integrity, health, now)  # no traffic: no condition to judge
    shadow = shadow_of(spec, status.current_step)
    if shadow is not None and status.mirror_percent != shadow.percent and not spec.analysis.dry_run:
        # The spec's shadow step and the mirror in status disagree (a shadow step inserted or
        # its percent edited mid-way, dryRun switched off): the mirror follows the spec first,
        # and the step is judged from the next tick on what the route now copies.
        message = f"step {status.current_step}: {_shadow_text(shadow.percent)} (the spec's shadow step re-applied)"
        new = status.model_copy(update={
            "mirror_percent": shadow.percent, "canary_weight": 0, "message": message,
            "next_evaluation_at": next_tick(now, spec.analysis.interval),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.STEP, message=message,
                                                           step=status.current_step, weight=0)),
        })
        return Transition(new, (mirror_action(spec), EmitEvent(EventType.NORMAL, "ShadowStarted", message)))
    measured = merged_dispersion(estimate_dispersion(snapshot.stable) if stable_serves(status) else None, status)
    ctx = evaluation_context(spec, status, now, dispersion=measured)
    results = evaluate_all(snapshot, ctx, spec.analysis.custom)
    previous_since = {c.name: c.triggered_since for c in (status.risk.conditions if status.risk else [])
                      if c.triggered_since is not None}
    assert status.step_started_at is not None
    position = Position(
        current_step=status.current_step, canary_weight=status.canary_weight, step_started_at=status.step_started_at,
        paused=status.phase == Phase.PAUSED, triggered_since=previous_since, high_risk_since=status.high_risk_since,
        short_of_size_since=status.short_of_size_since,
        model_unconfirmed_since=status.model_unconfirmed_since,
        consecutive_no_data=status.consecutive_no_data,
        serving_since=serving_since_of(spec, status), labels_judged_at=status.labels_judged_at,
    )
    decision = decide(spec, results, health, position, now, integrity=integrity,
                      health_unread=snapshot.health.canary_unread if snapshot.health else None)
    transition = apply_decision(spec, status, decision, now,
                                extra=integrity.evidence if decision.trigger == MODEL_INTEGRITY else None)
    if measured is None:
        return transition
    return replace(transition, status=transition.status.model_copy(update={"dispersion": dispersion_status(measured)}))


def serving_since_of(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> datetime | None:
    """When the challenger first served users: recorded once, at the first tick of its
    first weighted step (that step began when its weight was set; a shadow step serves
    nobody). Late labels are counted from then (docs/design.md#late-labels)."""
    if status.serving_since is not None:
        return status.serving_since
    if status.canary_weight > 0 and shadow_of(spec, status.current_step) is None:
        return status.step_started_at
    return None


def stable_serves(status: ModelRolloutStatus) -> bool:
    """Whether the stable's counts per interval still describe its traffic. At 100 % they
    drain to nothing within the intervals' range, and an estimate on the drained tail is
    wrong both ways (measured on a benchmark rollout: the cache's correlation fell from
    0.047 to 0.013 while the truth was 0.045, the rate's wander rose from 0.5 to 49): the
    recorded one is kept instead (docs/decisions.md#overdispersion)."""
    return status.canary_weight < 100


def merged_dispersion(measured: Dispersion | None, status: ModelRolloutStatus) -> Dispersion | None:
    """This tick's estimate, each measure the stable could not show now (at 100 % it serves
    nothing) kept from the last one recorded: the traffic's wander does not stop being
    there because the stable stopped serving."""
    before = status.dispersion
    if before is None:
        return measured
    if measured is None:
        return Dispersion(before.accuracy, before.error_rate, before.cache, before.rate, before.intervals,
                          before.interval_seconds)
    return Dispersion(
        measured.accuracy if measured.accuracy is not None else before.accuracy,
        measured.errors if measured.errors is not None else before.error_rate,
        measured.cache if measured.cache is not None else before.cache,
        measured.rate if measured.rate is not None else before.rate,
        measured.intervals, measured.seconds,
    )


def dispersion_status(d: Dispersion) -> DispersionStatus:
    """The estimate as status records it, to two significant digits (a status write per
    tick should not carry noise in the fifth digit)."""
    def sig(x: float | None) -> float:
        return float(f"{x:.2g}") if x else 0.0
    return DispersionStatus(accuracy=sig(d.accuracy), error_rate=sig(d.errors), cache=sig(d.cache), rate=sig(d.rate),
                            intervals=d.intervals, interval_seconds=d.seconds)


def _awaiting_model(spec: ModelRolloutSpec, status: ModelRolloutStatus, integrity: IntegrityVerdict,
                    health: CanaryHealth | None, now: datetime) -> Transition:
    """The dark start (docs/integrity.md): the canary is up with no traffic; it gets the
    first step's weight once it is at its size and every ready pod of its current template
    reports the declared model. Conditions are not judged (there is no traffic to judge);
    Kubernetes health still is, and an unconfirmed model is bounded by
    ``progressDeadlineSeconds`` from the dark start (restarted while paused)."""
    assert status.step_started_at is not None
    interval = spec.analysis.interval

    def hold(reason: str, **changes: Any) -> Transition:
        return Transition(status.model_copy(update={
            "message": reason, "decision": DecisionStatus(action=DecisionAction.HOLD, reason=reason, at=now),
            "next_evaluation_at": next_tick(now, interval), "consecutive_prometheus_errors": 0, **changes,
        }))

    if spec.analysis.dry_run:  # switched on mid-way: nothing is routed, nothing rolled back
        return hold(f"dryRun: no traffic yet; the declared model: {integrity.breach or integrity.unverified or 'confirmed'}")
    failure = health_failure(health, spec.analysis.progress_deadline_seconds)
    if failure:
        return _begin_rollback(spec, status, now, reason=f"critical: {failure}", trigger="kubernetesHealth",
                               path=DecisionPath.TICK, decision=None)
    if integrity.breach is not None:
        return _begin_rollback(spec, status, now, reason=f"critical: {MODEL_INTEGRITY}: {integrity.breach}",
                               trigger=MODEL_INTEGRITY, path=DecisionPath.TICK, decision=None,
                               extra=integrity.evidence)
    if spec.paused:
        return hold("paused before any traffic: the declared model is checked on resume", step_started_at=now)
    why = integrity.unverified or _not_all_checked(health)
    if why is None:
        first = spec.steps[0].traffic_weight
        shadow = shadow_of(spec, 0)
        routed = _shadow_text(shadow.percent) if shadow is not None else f"canary at {first}%"
        message = f"step 0: {routed} (the declared model {declared_digest(spec)} confirmed on every canary pod)"
        new = status.model_copy(update={
            "canary_weight": first, "mirror_percent": shadow.percent if shadow is not None else None,
            "step_started_at": now, "message": message,
            "decision": DecisionStatus(action=DecisionAction.CONTINUE, reason=message, at=now),
            "next_evaluation_at": next_tick(now, interval), "consecutive_prometheus_errors": 0,
            "conditions": updated_conditions(status, now, Progressing=(True, "StepStarted", message)),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.STEP, message=message, step=0,
                                                           weight=first)),
        })
        route: Action = mirror_action(spec) if shadow is not None else SetWeight(first)
        return Transition(new, (route, EmitEvent(EventType.NORMAL, "ModelVerified", message)))
    too_long = unconfirmed_for_too_long(spec, status.step_started_at, now)
    if too_long:
        return _begin_rollback(spec, status, now, reason=f"{MODEL_INTEGRITY}: {too_long} ({why})",
                               trigger=MODEL_INTEGRITY, path=DecisionPath.TICK, decision=None,
                               extra=integrity.evidence)
    return hold(f"no traffic yet: waiting for the declared model: {why}")


def _shadow_text(percent: int) -> str:
    return f"shadow: {percent}% of requests mirrored to the canary, every user served by the stable"


def _not_all_checked(health: CanaryHealth | None) -> str | None:
    """Why a confirmed model may still not leave the dark start: every pod that will serve
    must have been checked, so the canary must be at its size and its pods known."""
    if health is None or health.current_pods is None:
        return "the canary's current pods are unknown (its health could not be read)"
    short = short_of_size(health)
    if short is not None:
        return f"the canary is not at its size yet ({short})"
    if health.replicas is not None and len(health.current_pods) < health.replicas:
        return f"{len(health.current_pods)}/{health.replicas} canary pods ready"
    return None


def apply_decision(spec: ModelRolloutSpec, status: ModelRolloutStatus, decision: Decision, now: datetime,
                   path: DecisionPath = DecisionPath.TICK, extra: dict[str, Any] | None = None) -> Transition:
    """Record a decision in status and turn it into actions (none in dryRun); ``extra``:
    evidence of a rollback beyond the conditions' (a model's digests)."""
    base = status.model_copy(update={
        "risk": risk_of(decision, now),
        "decision": DecisionStatus(action=decision.action, reason=decision.reason, at=now, path=path),
        "high_risk_since": decision.high_risk_since,
        "short_of_size_since": decision.short_of_size_since,
        "model_unconfirmed_since": decision.model_unconfirmed_since,
        "consecutive_no_data": decision.consecutive_no_data,
        "consecutive_prometheus_errors": 0,
        "next_evaluation_at": next_tick(now, decision.next_interval),
        "serving_since": serving_since_of(spec, status),
        "labels_judged_at": status.labels_judged_at or decision.labels_judged_at,
    })
    dry = spec.analysis.dry_run
    action = decision.action
    if dry:
        if action.acts and (status.decision is None or status.decision.action != action):
            message = f"dryRun: would {action.value}: {decision.reason}"
            base = base.model_copy(update={
                "message": message,
                "history": capped_history(base, HistoryEntry(at=now, kind=HistoryKind.DECISION, message=message,
                                                       step=status.current_step, weight=status.canary_weight,
                                                       score=round(decision.score, 6))),
            })
            return Transition(base, (EmitEvent(EventType.NORMAL, "DryRunDecision", message),), decision)
        return Transition(base.model_copy(update={"message": f"dryRun: {decision.reason}"}), (), decision)

    if action == DecisionAction.ROLLBACK:
        return _begin_rollback(spec, base, now, reason=decision.reason, trigger=decision.trigger or "score",
                               path=path, decision=decision, extra=extra)
    if action == DecisionAction.PROMOTE:
        message = f"promoting revision {status.revision}: {decision.reason}"
        new = base.model_copy(update={
            "phase": Phase.PROMOTING, "message": message, "promotion": _promotion_started(status, now),
            "mirror_percent": None,  # the handover's first route write drops any mirror
            "conditions": updated_conditions(base, now, Progressing=(True, "Promoting", message)),
            "history": capped_history(base, HistoryEntry(at=now, kind=HistoryKind.PROMOTION, message=message,
                                                         step=status.current_step, weight=status.canary_weight,
                                                         score=round(decision.score, 6))),
        })
        return Transition(new, (Promote(status.revision or ""), EmitEvent(EventType.NORMAL, "Promoting", message)), decision)
    if action == DecisionAction.ADVANCE:
        nxt = status.current_step + 1
        weight = spec.steps[nxt].traffic_weight
        message = f"step {nxt}: canary at {weight}% ({decision.reason})"
        new = base.model_copy(update={
            "current_step": nxt, "canary_weight": weight, "mirror_percent": None, "step_started_at": now,
            "message": message,
            "conditions": updated_conditions(base, now, Progressing=(True, "StepAdvanced", message)),
            "history": capped_history(base, HistoryEntry(at=now, kind=HistoryKind.STEP, message=message, step=nxt,
                                                         weight=weight, score=round(decision.score, 6))),
        })
        return Transition(new, (SetWeight(weight), EmitEvent(EventType.NORMAL, "StepAdvanced", message)), decision)
    if action in (DecisionAction.REDUCE, DecisionAction.CONTINUE) and decision.new_weight is not None \
            and decision.new_weight != status.canary_weight:
        weight = decision.new_weight
        kind = HistoryKind.DECISION if action == DecisionAction.REDUCE else HistoryKind.STEP
        message = f"canary weight {status.canary_weight}% -> {weight}%: {decision.reason}"
        new = base.model_copy(update={
            # a weight set by a weighted step ends any mirror (a spec edited mid-shadow)
            "canary_weight": weight, "mirror_percent": None, "step_started_at": now, "message": message,
            "history": capped_history(base, HistoryEntry(at=now, kind=kind, message=message, step=status.current_step,
                                                   weight=weight, score=round(decision.score, 6))),
        })
        event = EventType.WARNING if action == DecisionAction.REDUCE else EventType.NORMAL
        return Transition(new, (SetWeight(weight), EmitEvent(event, "WeightReduced" if action == DecisionAction.REDUCE
                                                             else "WeightRestored", message)), decision)
    return Transition(base.model_copy(update={"message": decision.reason}), (), decision)


def _metrics_failed(spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: MetricsFailed, now: datetime) -> Transition:
    errors = status.consecutive_prometheus_errors + 1
    policy = spec.analysis.prometheus_errors
    interval = spec.analysis.interval
    if errors >= policy.max_consecutive and policy.then == ErrorPolicy.ROLLBACK and not spec.analysis.dry_run:
        reason = f"Prometheus failed {errors} times in a row ({obs.error}); prometheusErrors.then rollback"
        new = status.model_copy(update={"consecutive_prometheus_errors": errors})
        return _begin_rollback(spec, new, now, reason=reason, trigger="prometheusErrors", path=DecisionPath.TICK,
                              decision=None)
    reason = f"hold: Prometheus error {errors}/{policy.max_consecutive}: {obs.error}"
    new = status.model_copy(update={
        "consecutive_prometheus_errors": errors,
        "decision": DecisionStatus(action=DecisionAction.HOLD, reason=reason, at=now),
        "next_evaluation_at": next_tick(now, interval), "message": reason,
    })
    return Transition(new, (EmitEvent(EventType.WARNING, "MetricsUnavailable", reason),) if errors == 1 else ())


def _begin_rollback(spec: ModelRolloutSpec, status: ModelRolloutStatus, now: datetime, *, reason: str, trigger: str,
                    path: DecisionPath, decision: Decision | None, extra: dict[str, Any] | None = None) -> Transition:
    """Every rollback goes through here: one path that records evidence and notifies."""
    if spec.analysis.dry_run:
        message = f"dryRun: would roll back ({path}): {reason}"
        return Transition(status.model_copy(update={"message": message}),
                          (EmitEvent(EventType.NORMAL, "DryRunDecision", message),), decision)
    evidence = evidence_of(decision, status)
    evidence.update({"trigger": trigger, "path": path, "reason": reason, "startedAt": now.isoformat()})
    if extra:
        evidence["signal"] = extra
    message = f"rolling back ({path}): {reason}"
    new = status.model_copy(update={
        "phase": Phase.ROLLING_BACK,
        "mirror_percent": None,  # rollback phase 1 sets the route to 0 %, which removes the mirror
        "rollback": RollbackStatus(reason=reason, trigger=trigger, path=path, started_at=now, completed_phase=0),
        "decision": DecisionStatus(action=DecisionAction.ROLLBACK, reason=reason, at=now, path=path),
        "message": message,
        "conditions": updated_conditions(status, now, Progressing=(False, "RollingBack", message),
                                  Degraded=(True, "RollingBack", message)),
        "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.ROLLBACK, message=message,
                                                 step=status.current_step, weight=status.canary_weight,
                                                 score=round(decision.score, 6) if decision else None,
                                                 evidence=evidence)),
    })
    return Transition(new, (RollbackPhase(1), EmitEvent(EventType.WARNING, "RollbackStarted", message)), decision)


def _rolling_back(spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: Observation, now: datetime) -> Transition:
    assert status.rollback is not None
    if not isinstance(obs, RollbackApplied) or obs.phase != status.rollback.completed_phase + 1:
        return Transition(status)
    rollback = status.rollback.model_copy(update={"completed_phase": obs.phase})
    if obs.phase < 3:
        return Transition(status.model_copy(update={"rollback": rollback}), (RollbackPhase(obs.phase + 1),))
    recovered = (now - status.rollback.started_at).total_seconds()
    message = f"rolled back: {status.rollback.reason} (recovered in {recovered:.1f}s)"
    evidence = {"trigger": status.rollback.trigger, "path": status.rollback.path, "reason": status.rollback.reason,
                "startedAt": status.rollback.started_at.isoformat(), "completedAt": now.isoformat(),
                "timeToRecoverSeconds": round(recovered, 3)}
    new = status.model_copy(update={
        "phase": Phase.ROLLED_BACK, "rollback": rollback, "canary_weight": 0, "message": message,
        "next_evaluation_at": None,
        "conditions": updated_conditions(status, now, Progressing=(False, "RolledBack", message),
                                  Degraded=(True, "RolledBack", message), Complete=(False, "RolledBack", message)),
        "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.ROLLBACK, message=message,
                                                       evidence=evidence)),
    })
    payload = {"rollout_phase": "RolledBack", "message": message, "text": f":rotating_light: {message}", **evidence}
    return Transition(new, (EmitEvent(EventType.WARNING, "RolledBack", message), Notify("rolledBack", payload)))


def _promotion_started(status: ModelRolloutStatus, now: datetime) -> PromotionStatus:
    total = status.stable_record.replicas if status.stable_record else 0
    return PromotionStatus(started_at=now, total=total, batch_started_at=now)


def _promoting(spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: Observation, now: datetime) -> Transition:
    if isinstance(obs, PromotionProgress):
        previous = status.promotion or _promotion_started(status, now)
        # The next batch's deadline counts from now, persisted: a restart resumes the wait, it
        # does not start it over (docs/operator.md, "Promotion").
        progress = previous.model_copy(update={"batch": previous.batch + 1, "stable_ready": obs.stable_ready,
                                               "canary_replicas": obs.canary_replicas, "total": obs.total,
                                               "batch_started_at": now})
        message = (f"promoting revision {status.revision}: handover batch {progress.batch}, "
                   f"{obs.stable_ready}/{obs.total} stable pods ready with the challenger, canary at {obs.canary_replicas}")
        new = status.model_copy(update={"promotion": progress, "message": message})
        return Transition(new, (Promote(status.revision or ""),))
    if isinstance(obs, PromotionApplied):
        message = f"promoted revision {status.revision}: the stable now runs the challenger"
        promotion = status.promotion
        if promotion is not None:
            promotion = promotion.model_copy(update={"stable_ready": promotion.total, "canary_replicas": 0})
            message += f" (handover in {(now - promotion.started_at).total_seconds():.1f}s)"
        new = status.model_copy(update={
            "phase": Phase.SUCCEEDED, "canary_weight": 0, "promoted_at": now, "message": message,
            "promotion": promotion,
            "next_evaluation_at": None,
            "conditions": updated_conditions(status, now, Progressing=(False, "Succeeded", message),
                                      Complete=(True, "Promoted", message), Degraded=(False, "Promoted", message)),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.PROMOTION, message=message)),
        })
        payload = {"rollout_phase": "Succeeded", "message": message, "text": f":white_check_mark: {message}"}
        return Transition(new, (EmitEvent(EventType.NORMAL, "Promoted", message), Notify("promoted", payload)))
    if isinstance(obs, PromotionFailed):
        message = (f"promotion failed: {obs.reason}; the handover stopped where it was, serving from the ready pods "
                   "of both sides (retry, or a new revision, starts again from the recorded stable)")
        new = status.model_copy(update={
            "phase": Phase.FAILED, "message": message, "next_evaluation_at": None,
            "conditions": updated_conditions(status, now, Progressing=(False, "PromotionFailed", message),
                                      Degraded=(True, "PromotionFailed", message)),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.PROMOTION, message=message)),
        })
        return Transition(new, (EmitEvent(EventType.WARNING, "PromotionFailed", message),
                                Notify("promotionFailed", {"message": message, "text": message})))
    return Transition(status)


def _command(spec: ModelRolloutSpec, status: ModelRolloutStatus, kind: CommandKind, revision: str,
             now: datetime) -> Transition:
    phase = status.phase
    if kind == CommandKind.RETRY:
        if phase in (Phase.ROLLED_BACK, Phase.FAILED):
            return _start(spec, status, revision, now, restart=False)
        return Transition(status)
    if kind == CommandKind.ABORT:
        if phase in (Phase.INITIALIZING, Phase.PROGRESSING, Phase.PAUSED):
            # An abort's trigger is the command itself, named like its path.
            return _begin_rollback(spec, status, now, reason="aborted by user", trigger=DecisionPath.MANUAL,
                                   path=DecisionPath.MANUAL, decision=None)
        return Transition(status)
    if phase not in (Phase.PROGRESSING, Phase.PAUSED):
        return Transition(status)
    last = len(spec.steps) - 1
    if kind == CommandKind.PROMOTE and awaiting_model(spec, status):
        # One step forward from the dark start is the first step's traffic (or mirror), model
        # unconfirmed: the user's call, recorded as such (docs/integrity.md).
        weight = spec.steps[0].traffic_weight
        shadow = shadow_of(spec, 0)
        message = f"manual promote: step 0, {step_description(spec, 0)} before its model was confirmed"
        new = status.model_copy(update={
            "canary_weight": weight, "mirror_percent": shadow.percent if shadow is not None else None,
            "step_started_at": now, "message": message,
            "decision": DecisionStatus(action=DecisionAction.CONTINUE, reason="manual promote", at=now,
                                       path=DecisionPath.MANUAL),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.MANUAL, message=message, step=0,
                                                           weight=weight)),
        })
        route: Action = mirror_action(spec) if shadow is not None else SetWeight(weight)
        return Transition(new, (route, EmitEvent(EventType.NORMAL, "ManualPromote", message)))
    if kind == CommandKind.PROMOTE and status.current_step < last:
        nxt = status.current_step + 1
        weight = spec.steps[nxt].traffic_weight
        message = f"manual promote: step {nxt}, canary at {weight}%"
        new = status.model_copy(update={
            "current_step": nxt, "canary_weight": weight, "mirror_percent": None, "step_started_at": now,
            "message": message,
            "decision": DecisionStatus(action=DecisionAction.ADVANCE, reason="manual promote", at=now,
                                       path=DecisionPath.MANUAL),
            "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.MANUAL, message=message, step=nxt,
                                                           weight=weight)),
        })
        return Transition(new, (SetWeight(weight), EmitEvent(EventType.NORMAL, "ManualPromote", message)))
    message = f"manual full promote of revision {status.revision}"
    new = status.model_copy(update={
        "phase": Phase.PROMOTING, "message": message, "promotion": _promotion_started(status, now),
        "mirror_percent": None,  # the handover's first route write drops any mirror
        "decision": DecisionStatus(action=DecisionAction.PROMOTE, reason="manual promote", at=now, path=DecisionPath.MANUAL),
        "history": capped_history(status, HistoryEntry(at=now, kind=HistoryKind.MANUAL, message=message)),
    })
    return Transition(new, (Promote(status.revision or revision), EmitEvent(EventType.NORMAL, "ManualPromote", message)))


def pending_actions(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> tuple[Action, ...]:
    """What must hold in the cluster for this status: re-applied after a restart.

    Every action is a target state, so applying it when it already holds is a no-op.
    """
    if spec.analysis.dry_run:
        return ()
    phase = status.phase
    if phase == Phase.INITIALIZING and status.revision:
        return (StartRollout(status.revision),)
    if phase in (Phase.PROGRESSING, Phase.PAUSED):
        if awaiting_model(spec, status):
            return (prepare_action(spec),)
        if mirroring(status) and shadow_of(spec, 0) is not None and status.current_step == 0:
            return (mirror_action(spec, status.mirror_percent),)  # the mirror status records, not an edit's
        return (SetWeight(status.canary_weight),)
    if phase == Phase.PROMOTING:
        return (Promote(status.revision or ""),)
    if phase == Phase.ROLLING_BACK and status.rollback is not None:
        return (RollbackPhase(min(3, status.rollback.completed_phase + 1)),)
    return ()


def initial_status(spec: ModelRolloutSpec, now: datetime, step_index: int = 0) -> ModelRolloutStatus:
    """A rollout freshly at ``step_index``: what ``evaluate`` assumes without ``--status``."""
    shadow = shadow_of(spec, step_index)
    return ModelRolloutStatus(
        phase=Phase.PROGRESSING, revision=revision_of(spec), current_step=step_index,
        canary_weight=spec.steps[step_index].traffic_weight, step_started_at=now,
        mirror_percent=shadow.percent if shadow is not None else None,
    )


__all__ = [
    "Transition", "apply_decision", "evaluation_context", "initial_status", "next_tick", "pending_actions",
    "revision_of", "step", "RiskLevel",
]
