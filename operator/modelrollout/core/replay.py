"""Replay: carry a rollout's status through a sequence of snapshots, tick by tick.

The same state machine the operator runs, with the cluster replaced by instant success:
``StartRollout``, each rollback phase and ``Promote`` complete at once. That makes
replay the tool for tuning thresholds on recorded data and the engine of the judgement
benchmark, and guarantees that what it reports is what the operator would have decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api.models import ModelRolloutSpec, ModelRolloutStatus, StableRecord
from .actions import Action, Promote, RollbackPhase, StartRollout, describe
from .decision import Decision
from .machine import Transition, step
from .observations import Initialized, MetricsObserved, Observation, PromotionApplied, RollbackApplied, SpecChanged
from .snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class ReplayTick:
    at: datetime
    status: ModelRolloutStatus
    decision: Decision | None
    actions: tuple[Action, ...]


def settle(spec: ModelRolloutSpec, transition: Transition, now: datetime) -> Transition:
    """Complete the actions of a transition as if the cluster obeyed instantly."""
    status, actions, decision = transition.status, list(transition.actions), transition.decision
    queue = list(transition.actions)
    while queue:
        action = queue.pop(0)
        follow: Transition | None = None
        if isinstance(action, StartRollout):
            record = StableRecord(replicas=0, template={}, recorded_at=now)
            follow = step(spec, status, Initialized(record), now)
        elif isinstance(action, RollbackPhase):
            follow = step(spec, status, RollbackApplied(action.phase), now)
        elif isinstance(action, Promote):
            follow = step(spec, status, PromotionApplied(), now)
        if follow is not None:
            status = follow.status
            actions.extend(follow.actions)
            queue.extend(follow.actions)
    return Transition(status, tuple(actions), decision)


def start(spec: ModelRolloutSpec, now: datetime) -> ModelRolloutStatus:
    """A rollout that has just begun its first step at ``now``."""
    return settle(spec, step(spec, None, SpecChanged(), now), now).status


def replay(spec: ModelRolloutSpec, snapshots: Iterable[Snapshot],
           status: ModelRolloutStatus | None = None) -> Iterator[ReplayTick]:
    """One ReplayTick per snapshot; the rollout starts at the first snapshot's time."""
    for snapshot in snapshots:
        now = snapshot.at
        if status is None:
            status = start(spec, now)
        if status.phase.is_terminal:
            yield ReplayTick(now, status, None, ())
            continue
        transition = settle(spec, step(spec, status, MetricsObserved(snapshot), now), now)
        status = transition.status
        yield ReplayTick(now, status, transition.decision, transition.actions)


Observe = Callable[[ModelRolloutStatus, datetime], Observation]
"""What the tick at ``at`` observes, given the status carried to it (its windows depend on it)."""


def replay_observed(spec: ModelRolloutSpec, times: Iterable[datetime], observe: Observe,
                    status: ModelRolloutStatus | None = None) -> Iterator[ReplayTick]:
    """One ReplayTick per time, each observation asked for with the status carried so far.

    For sources whose answer depends on the status, as Prometheus' does: the operator plans
    each tick's windows from the step's age and weight (``core.windows.plan_windows``), so a
    replay from Prometheus must ask tick by tick, not read a file of finished snapshots.
    """
    for now in times:
        if status is None:
            status = start(spec, now)
        if status.phase.is_terminal:
            yield ReplayTick(now, status, None, ())
            continue
        transition = settle(spec, step(spec, status, observe(status, now), now), now)
        status = transition.status
        yield ReplayTick(now, status, transition.decision, transition.actions)


def decision_record(decision: Decision | None, status: ModelRolloutStatus, *, verbose: bool = False) -> dict[str, Any]:
    """The JSON object ``evaluate`` prints and ``replay`` writes per line."""
    if decision is None:
        # No decision: a terminal rollout, or a tick that decided nothing (a Prometheus error
        # holds; a signal acts): its status message says what happened.
        reason = status.message if status.message and not status.phase.is_terminal else f"rollout is {status.phase.value}"
        record: dict[str, Any] = {"action": None, "reason": reason, "score": None,
                                  "level": None, "conditions": []}
    else:
        since = decision.triggered_since
        record = {
            "action": decision.action.value,
            "reason": decision.reason,
            "score": round(decision.score, 6),
            "level": decision.level.value,
            "trigger": decision.trigger,
            "conditions": [
                {
                    "name": r.name, "severity": round(r.severity, 6), "triggered": r.triggered, "critical": r.critical,
                    "inconclusive": r.inconclusive, "observed": dict(r.observed), "threshold": dict(r.threshold),
                    "message": r.message,
                    **({"noData": True} if r.no_data else {}),
                    **({"triggeredSince": since[r.name].isoformat()} if r.name in since else {}),
                }
                for r in decision.conditions
            ],
        }
    if verbose:
        record.update({"phase": status.phase.value, "step": status.current_step, "weight": status.canary_weight})
    return record


def tick_record(tick: ReplayTick, *, with_status: bool = False) -> dict[str, Any]:
    record = {"at": tick.at.isoformat().replace("+00:00", "Z"), **decision_record(tick.decision, tick.status, verbose=True)}
    record["actions"] = [describe(a) for a in tick.actions]
    if with_status:
        record["status"] = tick.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return record


class ReplaySummary:
    """What ``replay`` prints at the end, gathered tick by tick (a replay may be 100,000
    ticks long, or stream from stdin: only the acting ticks are kept)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: datetime | None = None
        self.last: ReplayTick | None = None
        self.acting: list[str] = []

    def add(self, tick: ReplayTick) -> None:
        self.count += 1
        self.first = self.first or tick.at
        self.last = tick
        decision = tick.decision
        if decision is not None and decision.action.acts:
            trigger = f" [{decision.trigger}]" if decision.trigger else ""
            self.acting.append(f"  {_z(tick.at)} {decision.action.value}{trigger}: {decision.reason}")
        elif decision is None and any(isinstance(a, RollbackPhase) and a.phase == 1 for a in tick.actions):
            rollback = tick.status.rollback
            trigger = f" [{rollback.trigger}]" if rollback is not None and rollback.trigger else ""
            reason = rollback.reason if rollback is not None else tick.status.message
            self.acting.append(f"  {_z(tick.at)} rollback{trigger}: {reason}")

    def text(self) -> str:
        if self.last is None or self.first is None:
            return "replay: no ticks"
        lines = [f"replay: {self.count} ticks from {_z(self.first)} to {_z(self.last.at)}; "
                 f"{len(self.acting)} acting decision(s)", *self.acting]
        status = self.last.status
        lines.append(f"  final phase {status.phase.value}, step {status.current_step}, weight {status.canary_weight}%")
        return "\n".join(lines)


def summarize(ticks: Iterable[ReplayTick]) -> str:
    """The end-of-replay summary of ``ticks`` (see ``ReplaySummary``)."""
    summary = ReplaySummary()
    for tick in ticks:
        summary.add(tick)
    return summary.text()


def _z(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
