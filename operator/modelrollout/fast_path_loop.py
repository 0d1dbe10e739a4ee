"""The critical fast path and the canary pod watch: rollbacks that do not wait for a tick.

docs/design.md#fast-path: a critical breach must reach "canary at 0 %" in about a second whatever the
analysis interval. Two sources feed ``Controller.signal``:

* **The fast path loop.** One task per operator, not per rollout: every
  ``analysis.fastPathInterval`` it builds the fast-path request of every rollout due,
  sends them as *one* batch per Prometheus (the batch issues one query per metric and
  window for all rollouts, grouped by namespace and deployment, so the query rate is
  flat from 1 to 100 rollouts) and hands each snapshot to the pure
  ``core.fastpath.critical_breach``. It never advances or promotes: its only output is
  a rollback signal.
* **The pod watch.** kopf streams the changes of pods that a ReplicaSet owns (label
  ``pod-template-hash``), and a failed one is traced to its Deployment by its owner's
  name: the canary's pods are found by ownership, not by a label the operator sets, so a
  canary Deployment the user owns (its pods lack ``modelrollout.io/role``) is watched as
  closely as one the operator created. A pod that is OOMKilled or crash-looping makes us
  re-read the canary's *current* ReplicaSet's pods (a failed pod of an earlier revision
  must not condemn the new one) and signal at once.

What the loop knows of each rollout comes from the watch stream (kopf's event handler
calls ``observe`` with every new body), so a check costs no apiserver GET; the signal
itself re-reads the rollout fresh under its lock before acting, so a stale body can
never apply a rollback twice or to a rollout that moved on. Only rollouts whose kopf
daemon runs in this process are checked: a peer frozen by a higher-priority operator
stops its daemons, and with them its fast path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .adapters.metrics.base import MetricsBatchSource, SnapshotRequest
from .adapters.workload import POD_TEMPLATE_HASH, pod_failure
from .api.manifests import ManifestError
from .api.models import DecisionPath, ModelRolloutSpec, ModelRolloutStatus
from .clock import Clock
from .controller import Controller, RolloutRef, status_of
from .core.fastpath import critical_breach, pod_health_signal, watches
from .core.observations import CriticalSignal
from .core.snapshot import Snapshot
from .core.windows import FastPathLook, fast_path_look
from .errors import MetricsUnavailable, ModelRolloutError, UnreadableStatus
from .telemetry import OperatorMetrics

log = logging.getLogger("modelrollout.fastpath")

IDLE_PERIOD_SECONDS = 1.0
"""How often the loop wakes when no rollout is watched (to notice new ones)."""

POD_WATCH_LABEL = POD_TEMPLATE_HASH
"""The pods the pod watch follows carry this label: every pod a Deployment's ReplicaSet owns.
A healthy pod costs one cheap check; a failed one counts only if its Deployment is a
watched canary."""


RequestFactory = Callable[[RolloutRef, ModelRolloutSpec, ModelRolloutStatus, FastPathLook], SnapshotRequest]
"""Builds one rollout's fast-path request (``SnapshotRequest.for_fast_path``) for the look the
core planned; may raise on a bad spec."""


@dataclass
class Watched:
    """The latest body the watch delivered for one rollout, parsed once."""

    ref: RolloutRef
    spec: ModelRolloutSpec
    status: ModelRolloutStatus
    checked_at: float = 0.0  # monotonic time of the last fast-path check


class FastPathLoop:
    """The operator-wide fast path loop and pod-failure entry point."""

    def __init__(self, controller: Controller, sources: Callable[[str | None], MetricsBatchSource],
                 build_request: RequestFactory, clock: Clock, telemetry: OperatorMetrics) -> None:
        self.controller = controller
        self.sources = sources
        self.build_request = build_request
        self.clock = clock
        self.telemetry = telemetry
        self.watched: dict[str, Watched] = {}
        self.active: set[str] = set()
        self.cycles = 0
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ what to watch

    def observe(self, ref: RolloutRef, body: Mapping[str, Any]) -> None:
        """Record the rollout's latest body (from kopf's watch stream)."""
        try:
            spec = self.controller.parse(body)
            status = status_of(body)
        except (ManifestError, UnreadableStatus):  # the tick reports both; nothing to check meanwhile
            self.watched.pop(ref.uid, None)
            return
        previous = self.watched.get(ref.uid)
        self.watched[ref.uid] = Watched(ref, spec, status, previous.checked_at if previous else 0.0)
        if previous is None:
            self._changed.set()

    def forget(self, uid: str) -> None:
        self.watched.pop(uid, None)
        self.active.discard(uid)

    def drop_body(self, uid: str) -> None:
        """Let go of a rollout's body without forgetting that its daemon runs here (--shards:
        another replica's rollout costs no parsing and no memory; its next body, once it is
        ours again, is observed as usual)."""
        self.watched.pop(uid, None)

    def activate(self, uid: str) -> None:
        """This process drives the rollout (its daemon runs here): check it."""
        self.active.add(uid)
        self._changed.set()

    def deactivate(self, uid: str) -> None:
        self.active.discard(uid)

    def due(self, now: float) -> list[Watched]:
        """Rollouts whose last check is at least ~one fastPathInterval old.

        A quarter of a period of slack: cycles wake on a wall-clock grid and start a few
        ms early or late, and a strict comparison would skip every other cycle.
        """
        return [w for uid, w in self.watched.items()
                if uid in self.active and watches(w.spec, w.status)
                and now - w.checked_at >= 0.75 * w.spec.analysis.fast_path_interval.total_seconds()]

    def period(self) -> float:
        """The loop's cadence in seconds: the shortest ``fastPathInterval`` among watched rollouts."""
        periods = [w.spec.analysis.fast_path_interval.total_seconds() for uid, w in self.watched.items()
                   if uid in self.active and watches(w.spec, w.status)]
        return min(periods) if periods else IDLE_PERIOD_SECONDS

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Check due rollouts on a grid of ``period()`` seconds until cancelled.

        The grid is offset by half a period: ticks are aligned to whole multiples of
        their interval, and a cycle starting at the same instant would queue behind the
        tick's batch at Prometheus and then behind its lock.
        """
        while True:
            period = self.period()
            delay = period - ((time.time() + period / 2) % period)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 — the loop must outlive any one bad cycle
                self.telemetry.operator_errors.labels(DecisionPath.FAST_PATH).inc()
                log.exception("fast path cycle failed (an operator error)")

    async def check_once(self) -> list[tuple[RolloutRef, CriticalSignal]]:
        """One cycle: a batch per Prometheus for the due rollouts; act on critical breaches."""
        started = time.monotonic()
        due = self.due(started)
        if not due:
            return []
        now = self.clock.now()
        groups: dict[str | None, list[tuple[Watched, SnapshotRequest]]] = {}
        looks: dict[str, FastPathLook] = {}  # planned once per rollout and cycle: the query and the judgement agree
        for w in due:
            w.checked_at = started
            try:
                look = looks[w.ref.uid] = fast_path_look(w.spec, w.status, now)
                request = self.build_request(w.ref, w.spec, w.status, look)
            except (ModelRolloutError, ValueError) as exc:  # the tick reports an unusable spec
                log.debug("%s/%s: no fast path: %s", w.ref.namespace, w.ref.name, exc)
                continue
            groups.setdefault(request.prometheus_url, []).append((w, request))
        answers = await asyncio.gather(*(self._batch(url, items, now) for url, items in groups.items()))
        log.debug("fast path: %d rollout(s) queried in %.0f ms", len(due), 1000 * (time.monotonic() - started))
        breaches: list[tuple[RolloutRef, CriticalSignal]] = []
        for items, results in zip(groups.values(), answers):
            for w, request in items:
                snapshot = results.get(request.key)
                if not isinstance(snapshot, Snapshot):
                    continue  # Prometheus trouble is the tick's to count (noData / prometheusErrors)
                signal = critical_breach(w.spec, w.status, snapshot, now, looks[w.ref.uid])
                if signal is not None:
                    breaches.append((w.ref, signal))
        self.cycles += 1
        self.telemetry.fast_path_rollouts.set(len(due))
        if breaches:
            await asyncio.gather(*(self._signal(ref, signal) for ref, signal in breaches))
        self.telemetry.fast_path_cycle_seconds.observe(time.monotonic() - started)
        return breaches

    async def _batch(self, url: str | None, items: list[tuple[Watched, SnapshotRequest]],
                     at: datetime) -> dict[str, Snapshot | MetricsUnavailable]:
        return await self.sources(url).snapshots([request for _, request in items], at, path=DecisionPath.FAST_PATH)

    async def _signal(self, ref: RolloutRef, signal: CriticalSignal) -> None:
        started = time.monotonic()
        try:
            acted = await self.controller.signal(ref, signal)
        except Exception:  # noqa: BLE001 — the tick retries whatever the signal left undone
            log.exception("%s/%s: fast path rollback failed", ref.namespace, ref.name)
            return
        if acted:
            log.warning("%s/%s: %s (%s; rollback applied in %.0f ms)", ref.namespace, ref.name, signal.reason,
                        signal.path, 1000 * (time.monotonic() - started))

    # ------------------------------------------------------------------ pod watch

    def rollouts_with_canary(self, namespace: str, deployment: str) -> list[Watched]:
        return [w for uid, w in self.watched.items()
                if uid in self.active and w.ref.namespace == namespace and w.spec.canary.deployment == deployment]

    async def pod_changed(self, namespace: str, pod: str, body: Mapping[str, Any]) -> bool:
        """A pod's new state from the watch: a failed pod (OOMKilled, crash-looping) of a
        watched canary Deployment goes to ``pod_failed``. True if a rollout was rolled back."""
        if pod_failure(body) is None:
            return False
        deployment = deployment_of_pod(body)
        if deployment is None or not self.rollouts_with_canary(namespace, deployment):
            return False
        return await self.pod_failed(namespace, deployment, pod)

    async def pod_failed(self, namespace: str, deployment: str, pod: str) -> bool:
        """A canary pod failed: confirm on the current revision's pods, then signal. True if acted."""
        acted = False
        for w in self.rollouts_with_canary(namespace, deployment):
            try:
                health = await self.controller.executor.canary_health(
                    namespace, deployment, w.spec.analysis.progress_deadline_seconds)
            except ModelRolloutError as exc:
                log.warning("%s/%s: canary health unavailable after pod %s failed: %s",
                            namespace, w.ref.name, pod, exc)
                continue
            signal = pod_health_signal(w.spec, w.status, health, pod)
            if signal is None:
                continue
            try:
                if await self.controller.signal(w.ref, signal):
                    acted = True
                    log.warning("%s/%s: %s (%s)", namespace, w.ref.name, signal.reason, signal.path)
            except Exception:  # noqa: BLE001
                log.exception("%s/%s: pod-watch rollback failed", namespace, w.ref.name)
        return acted


def deployment_of_pod(pod: Mapping[str, Any]) -> str | None:
    """The Deployment that owns a pod, from its ReplicaSet owner's name (no API call).

    A Deployment's ReplicaSet is named ``<deployment>-<pod-template-hash>``.
    """
    meta = pod.get("metadata") or {}
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    for owner in meta.get("ownerReferences") or []:
        name = owner.get("name") or ""
        if owner.get("kind") == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
    return None


__all__ = ["POD_WATCH_LABEL", "FastPathLoop", "Watched", "deployment_of_pod"]
