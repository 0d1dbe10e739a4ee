"""One rollout's reconcile loop: load state, observe, call the core, persist, execute.

This is the thin shell around ``core.machine.step``. It knows nothing of kopf or of the
concrete adapters (``wiring.py`` hands it a resource reader, a status writer and the
protocols below), so it can be driven in tests and by the fast path alike. The order of operations is what makes it crash-safe:

1. the new status (the *intent*) is written before any action is executed;
2. actions are idempotent targets, so after a SIGKILL ``pending_actions(status)`` is
   re-applied on start and changes nothing that already holds;
3. the completion of a phased action (start, promote, rollback phase n) is itself an
   observation fed back through the machine and persisted before the next phase.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from .acting import acting_for
from .adapters.metrics.base import MetricsSource, SnapshotRequest
from .adapters.notifiers.base import Notifier
from .api.manifests import ManifestError, parse_spec
from .api.models import DecisionAction, DecisionPath, KubeCondition, ModelRolloutSpec, ModelRolloutStatus, Phase
from .clock import Clock
from .core.actions import (
    Action,
    EmitEvent,
    EventType,
    MirrorTraffic,
    Notify,
    PrepareCanary,
    Promote,
    RollbackPhase,
    SetWeight,
    StartRollout,
)
from .core.machine import Transition, pending_actions, step
from .core.material import materially_different
from .core.observations import (
    Command,
    CommandKind,
    CriticalSignal,
    MetricsFailed,
    MetricsObserved,
    Observation,
    SpecChanged,
)
from .core.records import set_condition
from .core.snapshot import CanaryHealth, Health, Snapshot
from .errors import InvalidSpec, MetricsUnavailable, ModelRolloutError, NotShardOwner, UnreadableStatus
from .telemetry import OperatorMetrics

log = logging.getLogger("modelrollout.controller")

COMMAND_ANNOTATION = "modelrollout.io/command"
"""``promote`` | ``promote-full`` | ``abort`` | ``retry``, optionally ``kind@id`` to repeat one."""

UNREADABLE_RECHECK_SECONDS = 300.0
"""An unreadable status is looked at again this often, and at once when the resource changes."""

COMMANDS = {"promote": CommandKind.PROMOTE, "promote-full": CommandKind.PROMOTE_FULL,
            "abort": CommandKind.ABORT, "retry": CommandKind.RETRY}


@dataclass(frozen=True, slots=True)
class RolloutRef:
    namespace: str
    name: str
    uid: str


class StatusWriter(Protocol):
    async def __call__(self, ref: RolloutRef, status: dict[str, Any] | None) -> None: ...


class EventSink(Protocol):
    async def emit(self, ref: RolloutRef, event: EmitEvent) -> None: ...


class Executor(Protocol):
    """Carries out the machine's actions on the cluster (``adapters/kube.py``); each phased
    action answers with the observation the machine expects next."""

    async def start_rollout(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, *,
                            rollout: str | None = None) -> Observation: ...
    async def set_weight(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int) -> None: ...
    async def prepare_canary(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int,
                             replicas: int | None = None) -> None: ...
    async def mirror_traffic(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int,
                             size_percent: int, replicas: int | None = None) -> None: ...
    async def promote(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus) -> Observation: ...
    async def rollback_phase(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, phase: int) -> Observation: ...
    async def canary_health(self, ns: str, canary: str, progress_deadline_seconds: int) -> CanaryHealth: ...


RolloutReader = Callable[[RolloutRef], Awaitable[dict[str, Any] | None]]
RequestBuilder = Callable[[RolloutRef, ModelRolloutSpec, ModelRolloutStatus, datetime], SnapshotRequest]
"""Builds a rollout's metrics request (``wiring.snapshot_request``); raises InvalidSpec on an unusable spec."""


@dataclass
class Controller:
    """Everything a rollout's loop needs, wired once (``wiring.compose``)."""

    read_rollout: RolloutReader
    executor: Executor
    metrics_source: MetricsSource
    events: EventSink
    notifier: Notifier
    write_status: StatusWriter
    clock: Clock
    telemetry: OperatorMetrics
    build_request: RequestBuilder
    default_profile: str | None = None
    """``--default-profile``: the profile of rollouts whose spec names none."""
    may_act: Callable[[RolloutRef], bool] = lambda ref: True
    """Whether this replica may write the rollout's status and act on its cluster objects now:
    always, except with ``--shards`` (``ShardMembership.owns``). Asked before every status
    write and every action, so a replica that loses a rollout mid-reconcile stops at once."""
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    status_heartbeat: timedelta | None = None
    """``--status-heartbeat``: a status that changed nothing material (``core.material``) is
    written at most this often; None writes every change (docs/operator.md#quiet-status-writes)."""
    held: dict[str, "HeldStatus"] = field(default_factory=dict)
    """Per rollout (uid): the status as last written and the newer one held back, if any."""

    def parse(self, body: Mapping[str, Any]) -> ModelRolloutSpec:
        """The rollout's spec, validated, with the operator's default profile (ManifestError if invalid)."""
        return parse_spec(dict(body.get("spec") or {}), self.default_profile)

    def lock_for(self, ref: RolloutRef) -> asyncio.Lock:
        """One lock per rollout: the tick, the fast path and the pod watch never interleave."""
        return self.locks.setdefault(ref.uid, asyncio.Lock())

    # ------------------------------------------------------------------ entry points

    async def reconcile(self, ref: RolloutRef, *, resume: bool = False) -> float | None:
        """Bring one rollout forward; seconds until it wants to run again (None: it is gone).

        The resource is read fresh (GET) under the rollout's lock: acting on a body older
        than our own last status write could apply an action twice.
        """
        async with self.lock_for(ref):
            body = await self.read_rollout(ref)
            if body is None:
                self.held.pop(ref.uid, None)
                return None
            return await self._reconcile(ref, body, resume=resume)

    async def signal(self, ref: RolloutRef, signal: CriticalSignal) -> bool:
        """A critical breach from outside the tick (fast path, pod watch). True if it acted."""
        if not self.may_act(ref):
            return False
        async with self.lock_for(ref):
            body = await self.read_rollout(ref)
            if body is None:
                return False
            spec = self._spec_or_none(body)
            try:
                status = self._current(ref, status_of(body))
            except UnreadableStatus:
                return False  # the tick holds it and says why
            if spec is None or status.phase not in (Phase.PROGRESSING, Phase.PAUSED):
                return False
            await self._drive(ref, spec, status, signal, _generation(body))
            return True

    # ------------------------------------------------------------------ internals

    def _check_owner(self, ref: RolloutRef) -> None:
        if not self.may_act(ref):
            raise NotShardOwner(f"{ref.namespace}/{ref.name} belongs to another replica now (--shards)")

    async def _write(self, ref: RolloutRef, status: dict[str, Any] | None) -> None:
        self._check_owner(ref)
        self.held.pop(ref.uid, None)  # whatever was held back, the resource now says otherwise
        await self.write_status(ref, status)
        self.telemetry.status_writes.inc()

    def forget_held(self, uid: str) -> None:
        """A rollout deleted, or now another replica's (--shards): nothing of it is held back."""
        self.held.pop(uid, None)

    def _current(self, ref: RolloutRef, persisted: ModelRolloutStatus) -> ModelRolloutStatus:
        """The status to go on from: the one held back, while the resource still holds what
        this replica last wrote; else the resource's own (someone else wrote since, or this
        replica restarted: the persisted status has everything material)."""
        held = self.held.get(ref.uid)
        if held is None:
            return persisted
        # Compared materially: the apiserver's merge patch drops the nulls inside the
        # conditions' observed values, so what comes back is never byte for byte what was sent.
        if not materially_different(held.written, persisted):
            return held.latest
        del self.held[ref.uid]
        return persisted

    def _may_hold_back(self, ref: RolloutRef, after: ModelRolloutStatus, transition: Transition) -> bool:
        """Whether ``after`` may stay unwritten for now: a heartbeat is set, nothing is to be
        executed on it (the intent is always written before its actions), it changes nothing
        material since the last write, and that write is younger than the heartbeat."""
        held = self.held.get(ref.uid)
        if self.status_heartbeat is None or held is None or transition.actions:
            return False
        if self.clock.now() - held.written_at >= self.status_heartbeat:
            return False
        return not materially_different(held.written, after)

    def _spec_or_none(self, body: Mapping[str, Any]) -> ModelRolloutSpec | None:
        try:
            return self.parse(body)
        except ManifestError:
            return None

    async def _reconcile(self, ref: RolloutRef, body: Mapping[str, Any], *, resume: bool) -> float:
        try:
            status = self._current(ref, status_of(body))
        except UnreadableStatus as exc:
            await self._unreadable_status(ref, body, str(exc))
            return UNREADABLE_RECHECK_SECONDS
        try:
            spec = self.parse(body)
        except ManifestError as exc:
            await self._invalid_spec(ref, status, str(exc), _generation(body))
            return 3600.0
        generation = _generation(body)
        now = self.clock.now()
        if status.phase not in (Phase.PROMOTING, Phase.ROLLING_BACK):  # those finish whatever the spec says
            try:  # query overrides and label values: checked before anything is started, not at the first tick
                self.build_request(ref, spec, status, now)
            except InvalidSpec as exc:
                await self._invalid_spec(ref, status, str(exc), generation)
                return 3600.0
        status = await self._clear_invalid_spec(ref, status, generation, now)

        if resume and status.phase not in (Phase.PENDING,):
            # After a restart: make the cluster match the persisted intent (idempotent).
            status = await self._execute_all(ref, spec, status, pending_actions(spec, status), generation)

        command = _command_of(body, status)
        if command is not None:
            kind, command_id = command
            persisted = status
            status = status.model_copy(update={"last_command": command_id})
            # Compared with what is persisted, so the id is written even when the machine
            # ignores the command (retry while Progressing): else it would look new forever.
            status = await self._drive(ref, spec, status, Command(kind), generation, persisted=persisted)
            return 0.0

        if status.phase in (Phase.INITIALIZING, Phase.PROMOTING, Phase.ROLLING_BACK) and not resume:
            status = await self._execute_all(ref, spec, status, pending_actions(spec, status), generation)
            return 0.0 if status.phase in (Phase.INITIALIZING, Phase.PROMOTING, Phase.ROLLING_BACK) else self._wait(spec, status)

        if status.phase.is_analysing and status.next_evaluation_at is not None and now < status.next_evaluation_at \
                and status.observed_generation == generation and spec.paused == (status.phase == Phase.PAUSED):
            return (status.next_evaluation_at - now).total_seconds()

        if status.phase.is_analysing and status.revision is not None and spec.paused == (status.phase == Phase.PAUSED) \
                and status.step_started_at is not None:
            if status.next_evaluation_at is not None and now >= status.next_evaluation_at:  # due, not a spec change
                self.telemetry.tick_lag_seconds.observe((now - status.next_evaluation_at).total_seconds())
            try:
                observation = await self._observe(ref, spec, status, now)
            except InvalidSpec as exc:  # e.g. an unusable query override or an unsafe label value
                await self._invalid_spec(ref, status, str(exc), generation)
                return 3600.0
        else:
            observation = SpecChanged()
        started = time.perf_counter()
        status = await self._drive(ref, spec, status, observation, generation)
        self.telemetry.tick_seconds.observe(time.perf_counter() - started)
        return self._wait(spec, status)

    def _wait(self, spec: ModelRolloutSpec, status: ModelRolloutStatus) -> float:
        if status.phase.is_terminal:
            return 3600.0
        if status.next_evaluation_at is None:
            return spec.analysis.interval.total_seconds()
        return max(0.0, (status.next_evaluation_at - self.clock.now()).total_seconds())

    async def _observe(self, ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                       now: datetime) -> Observation:
        request = self.build_request(ref, spec, status, now)
        snapshot_task = asyncio.ensure_future(self.metrics_source.snapshot(request, now))
        unread: ModelRolloutError | None = None
        try:
            health: CanaryHealth | None = await self.executor.canary_health(
                ref.namespace, spec.canary.deployment, spec.analysis.progress_deadline_seconds)
        except ModelRolloutError as exc:
            log.warning("%s/%s: canary health unavailable: %s", ref.namespace, ref.name, exc)
            health, unread = None, exc
        result = await snapshot_task
        if isinstance(result, MetricsUnavailable):
            return MetricsFailed(str(result))
        if health is not None:
            result = _with_health(result, health)
        else:  # a step must not complete on a canary nobody could see (docs/design.md#kubernetes-health)
            result = result.model_copy(update={"health": Health(canary_unread=str(unread))})
        return MetricsObserved(result)

    async def _drive(self, ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                     observation: Observation, generation: int | None,
                     persisted: ModelRolloutStatus | None = None) -> ModelRolloutStatus:
        """Feed one observation, persist, execute; follow completions until quiet.

        ``persisted``: the status as stored, when ``status`` already carries changes of
        the caller's (the first write compares against it)."""
        queue: list[Observation] = [observation]
        before = persisted if persisted is not None else status
        while queue:
            obs = queue.pop(0)
            transition = step(spec, status, obs, self.clock.now(), generation)
            await self._persist(ref, before, transition)
            before = transition.status
            status = transition.status
            for action in transition.actions:
                follow = await self._execute(ref, spec, status, action)
                if follow is not None:
                    queue.append(follow)
        return status

    async def _execute_all(self, ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                           actions: tuple[Action, ...], generation: int | None) -> ModelRolloutStatus:
        for action in actions:
            follow = await self._execute(ref, spec, status, action)
            if follow is not None:
                status = await self._drive(ref, spec, status, follow, generation)
        return status

    async def _persist(self, ref: RolloutRef, before: ModelRolloutStatus, transition: Transition) -> None:
        after = transition.status
        if after != before:
            if self._may_hold_back(ref, after, transition):
                self.held[ref.uid] = self.held[ref.uid].holding(after)
                self.telemetry.status_writes_held.inc()
            else:
                await self._write(ref, _status_dict(after))
                if self.status_heartbeat is not None:
                    self.held[ref.uid] = HeldStatus(after, after, self.clock.now())
        self._record_telemetry(ref, transition)

    def _record_telemetry(self, ref: RolloutRef, transition: Transition) -> None:
        status = transition.status
        severities = [(c.name, c.severity) for c in (status.risk.conditions if status.risk else [])]
        # The exact score, from this tick's decision only (status keeps 2 places for kubectl;
        # without a decision the gauge keeps its last value).
        score = transition.decision.score if transition.decision is not None else None
        self.telemetry.record_status(ref.namespace, ref.name, status.phase, status.canary_weight,
                                     status.current_step, score, severities)
        started_rollback = any(isinstance(a, RollbackPhase) and a.phase == 1 for a in transition.actions)
        if transition.decision is not None:
            self.telemetry.decisions.labels(transition.decision.action.value, DecisionPath.TICK).inc()
        elif started_rollback and status.rollback:  # a signal: fast path, pod watch or a command
            self.telemetry.decisions.labels(DecisionAction.ROLLBACK, status.rollback.path).inc()
        if started_rollback and status.rollback:
            self.telemetry.rollbacks.labels(ref.namespace, ref.name, status.rollback.trigger, status.rollback.path).inc()

    async def _execute(self, ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                       action: Action) -> Observation | None:
        """One action, every Kubernetes call of which first asks ``may_act`` (``acting.py``):
        a promotion that waits minutes for pods stops at its next call once the shard moved."""
        self._check_owner(ref)
        with acting_for(lambda: self.may_act(ref)):
            return await self._execute_owned(ref, spec, status, action)

    async def _execute_owned(self, ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                             action: Action) -> Observation | None:
        ns = ref.namespace
        if isinstance(action, EmitEvent):
            # The log carries every transition the Events carry: Events expire after an hour,
            # and a log that says nothing between start and stop explains no stuck rollout.
            level = logging.WARNING if action.type == EventType.WARNING else logging.INFO
            log.log(level, "%s/%s: %s: %s", ns, ref.name, action.reason, action.message)
            await _best_effort(self.events.emit(ref, action), "event")
            return None
        if isinstance(action, Notify):
            payload = {"namespace": ns, "name": ref.name, **action.payload}
            await _best_effort(self.notifier.notify(action.kind, payload), "webhook")
            return None
        if isinstance(action, SetWeight):
            await self.executor.set_weight(ns, spec, status, action.percent)
            return None
        if isinstance(action, PrepareCanary):
            await self.executor.prepare_canary(ns, spec, status, action.percent, action.replicas)
            return None
        if isinstance(action, MirrorTraffic):
            await self.executor.mirror_traffic(ns, spec, status, action.percent, action.size_percent, action.replicas)
            return None
        if isinstance(action, StartRollout):
            return await self.executor.start_rollout(ns, spec, status, rollout=ref.name)
        if isinstance(action, Promote):
            return await self.executor.promote(ns, spec, status)
        if isinstance(action, RollbackPhase):
            return await self.executor.rollback_phase(ns, spec, status, action.phase)
        raise TypeError(f"unknown action {action!r}")

    async def _clear_invalid_spec(self, ref: RolloutRef, status: ModelRolloutStatus, generation: int | None,
                                  now: datetime) -> ModelRolloutStatus:
        """An edited spec that parses lifts ``Ready=False, InvalidSpec`` (GitOps health reads it).

        Only for a new generation: an InvalidSpec found later in the same generation (an
        unusable query override) would otherwise be cleared and set again on every wake.
        """
        current = {c.type: c for c in status.conditions}.get("Ready")
        if current is None or current.reason != "InvalidSpec" or status.observed_generation == generation:
            return status
        message = status.message if not (status.message or "").startswith("invalid spec:") else "spec is valid again"
        new = status.model_copy(update={
            "message": message,
            "conditions": set_condition(list(status.conditions), "Ready", True, "SpecValid", "spec is valid", now),
        })
        await self._write(ref, _status_dict(new))
        return new

    async def _unreadable_status(self, ref: RolloutRef, body: Mapping[str, Any], problems: str) -> None:
        """Hold: say so in ``Ready=False, UnreadableStatus`` and an Event, once per distinct problem.

        Only ``message`` and ``conditions`` are written (a merge patch), so whatever of the
        status can still be read, the stable record above all, stays as it is.
        """
        raw = dict(body.get("status") or {})
        message = (f"unreadable status, holding (nothing is changed until it is fixed): {problems}; restore the "
                   "status, or delete the ModelRollout and apply it again to start over")
        if raw.get("message") == message:
            return
        kept: list[KubeCondition] = []
        for item in raw.get("conditions") or []:
            try:
                kept.append(KubeCondition.model_validate(item))
            except ValidationError:
                continue
        conditions = set_condition(kept, "Ready", False, "UnreadableStatus", message, self.clock.now())
        log.error("%s/%s: %s", ref.namespace, ref.name, message)
        await self._write(ref, {"message": message,
                                      "conditions": [c.model_dump(mode="json", by_alias=True) for c in conditions]})
        await _best_effort(self.events.emit(ref, EmitEvent(EventType.WARNING, "UnreadableStatus", message)), "event")

    async def _invalid_spec(self, ref: RolloutRef, status: ModelRolloutStatus, message: str,
                            generation: int | None) -> None:
        now = self.clock.now()
        current = {c.type: c for c in status.conditions}.get("Ready")
        if current is not None and current.reason == "InvalidSpec" and current.message == message \
                and status.observed_generation == generation:
            return
        new = status.model_copy(update={
            "observed_generation": generation, "message": f"invalid spec: {message}",
            "conditions": set_condition(list(status.conditions), "Ready", False, "InvalidSpec", message, now),
        })
        await self._write(ref, _status_dict(new))
        await _best_effort(self.events.emit(ref, EmitEvent(EventType.WARNING, "InvalidSpec", message)), "event")


def _with_health(snapshot: Snapshot, health: CanaryHealth) -> Snapshot:
    return snapshot.model_copy(update={"health": Health(canary=health)})


async def _best_effort(awaitable: Awaitable[Any], what: str) -> None:
    try:
        await awaitable
    except Exception as exc:  # noqa: BLE001 — notifications must never break a rollout
        log.warning("%s failed: %s", what, exc)


def _generation(body: Mapping[str, Any]) -> int | None:
    meta = body.get("metadata") or {}
    value = meta.get("generation")
    return int(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class HeldStatus:
    """What the resource holds (as this replica wrote it, and when) and the newer status
    held back from it (``--status-heartbeat``)."""

    written: ModelRolloutStatus
    latest: ModelRolloutStatus
    written_at: datetime

    def holding(self, latest: ModelRolloutStatus) -> "HeldStatus":
        return HeldStatus(self.written, latest, self.written_at)


def status_of(body: Mapping[str, Any]) -> ModelRolloutStatus:
    """The persisted status; :class:`UnreadableStatus` (naming the fields) when it does not parse.

    Never an empty status in its place: that would start the rollout over and record the
    stable afresh, losing the record mid-promotion or mid-rollback.
    """
    raw = dict(body.get("status") or {})
    raw.pop("kopf", None)
    if not raw:
        return ModelRolloutStatus()
    try:
        return ModelRolloutStatus.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"status.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise UnreadableStatus(problems) from None


def _status_dict(status: ModelRolloutStatus) -> dict[str, Any]:
    """JSON for a merge patch: None fields become null, so cleared fields are removed."""
    return status.model_dump(mode="json", by_alias=True)


def _command_of(body: Mapping[str, Any], status: ModelRolloutStatus) -> tuple[CommandKind, str] | None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(COMMAND_ANNOTATION)
    if not value:
        return None
    kind_text = value.split("@", 1)[0].strip()
    command_id = value.strip() if "@" in value else f"{value.strip()}@{(body.get('metadata') or {}).get('generation')}"
    if command_id == status.last_command:
        return None
    kind = COMMANDS.get(kind_text)
    if kind is None:
        log.warning("ignoring unknown %s=%r (allowed: %s)", COMMAND_ANNOTATION, value, ", ".join(COMMANDS))
        return None
    return kind, command_id
