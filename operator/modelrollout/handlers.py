"""kopf handlers: one daemon per ModelRollout drives ``Controller.reconcile``.

Handlers only load state, call the controller and sleep; all decisions are in the core,
all cluster I/O behind the controller's protocols, and what is built from what in
``wiring.py``, which passes the parts in (``make_registry(config, compose)``). Why a daemon and not timers:
each rollout has its own cadence (its interval, halved at medium risk, zero while
phases are in flight), and the next wake-up is in its status, so a restarted operator
resumes on time.

Two replicas use kopf peering with distinct priorities: the highest one acts, the others
freeze (kopf freezes *all* operators when priorities are equal, so the default priority
is drawn at random per process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import kopf

from .api.models import API_GROUP, API_VERSION, PLURAL
from .controller import Controller, RolloutRef
from .errors import ClusterConflict, ClusterUnavailable, NotShardOwner
from .fast_path_loop import POD_WATCH_LABEL, FastPathLoop
from .shard_membership import ShardMembership

if TYPE_CHECKING:  # wiring imports this module to register the handlers
    from .wiring import Operator, OperatorConfig

log = logging.getLogger("modelrollout.handlers")

RETRY_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

SHARD_IDLE_RECHECK_SECONDS = 30.0
"""How often a rollout another replica drives is looked at when nothing wakes it (--shards)."""


def make_registry(config: OperatorConfig, compose: Callable[[], Operator]) -> kopf.OperatorRegistry:
    """A fresh registry with our handlers (a function so tests can run operators side by side).

    ``compose`` builds the operator's parts; it is called once, inside the running loop
    (kopf's startup handler)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        """The kubernetes client's config: in-cluster, or the current kubeconfig."""
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="modelrollout.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="modelrollout.io")
        settings.persistence.finalizer = "modelrollout.io/finalizer"
        settings.peering.priority = config.priority
        settings.peering.lifetime = config.peering_lifetime_seconds
        settings.peering.standalone = config.standalone
        if not config.standalone:
            settings.peering.name = config.peering_name
        settings.posting.enabled = False  # our Events carry evidence; kopf's log events would be noise
        settings.watching.server_timeout = 60
        operator = compose()
        memo.controller = operator.controller
        memo.wakeups = {}
        memo.fast_path = operator.fast_path
        memo.fast_path_task = asyncio.create_task(memo.fast_path.run(), name="modelrollout-fast-path")
        memo.shards = operator.shards
        if operator.shards is not None:
            memo.shards_task = asyncio.create_task(operator.shards.run(), name="modelrollout-shards")
            log.info("shard %s: sharding by Leases (group %s)", operator.shards.identity, config.shard_group)
        log.info("modelrollout operator starting: priority %s, prometheus %s", config.priority, config.prometheus_url)

    @kopf.on.probe(id="peering", registry=registry)
    def peering_probe(memo: kopf.Memo, **_: Any) -> str:
        """The health endpoint's ``peering``, as ``startup.StartupWatch`` last saw it: ``ok: peering through …``,
        ``standalone: …`` or ``waiting for ClusterKopfPeering modelrollout: … Create it: …``."""
        watch = getattr(memo, "startup", None)
        return watch.probe()["peering"] if watch is not None else "not checked (no start-up checks in this process)"

    @kopf.on.probe(id="crd", registry=registry)
    def crd_probe(memo: kopf.Memo, **_: Any) -> str:
        """The health endpoint's ``crd``: whether the ModelRollout CRD is Established yet."""
        watch = getattr(memo, "startup", None)
        return watch.probe()["crd"] if watch is not None else "not checked (no start-up checks in this process)"

    @kopf.on.cleanup(registry=registry)
    async def stop_fast_path(memo: kopf.Memo, **_: Any) -> None:
        for attribute in ("fast_path_task", "shards_task"):
            task: asyncio.Task[None] | None = getattr(memo, attribute, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        shards: ShardMembership | None = getattr(memo, "shards", None)
        if shards is not None:
            await shards.leave()

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, id="wake", registry=registry)
    async def wake(uid: str, name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, type: str | None,
                   **_: Any) -> None:
        """Spec edits, annotations (manual commands) and pause/resume wake the daemon now;
        every body also refreshes what the fast path knows of the rollout."""
        fast_path: FastPathLoop = memo.fast_path
        shards: ShardMembership | None = memo.shards
        if type == "DELETED":
            fast_path.forget(uid)
        elif shards is not None and not shards.owns(namespace, name):
            fast_path.drop_body(uid)  # another replica's (--shards): neither parsed nor held until it is ours
            return  # nor its daemon woken: a change of the group wakes it
        else:
            fast_path.observe(RolloutRef(namespace=namespace, name=name, uid=uid), body)
        event = memo.wakeups.get(uid)
        if event is not None:
            event.set()

    @kopf.on.event("", "v1", "pods", id="canary_pod", labels={POD_WATCH_LABEL: kopf.PRESENT}, registry=registry)
    async def canary_pod(name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, type: str | None,
                         **_: Any) -> None:
        """An OOMKilled or crash-looping canary pod rolls back now, not at the next tick (any
        ReplicaSet's pod is streamed: a user-owned canary's pods carry no label of ours)."""
        if type == "DELETED":
            return
        fast_path: FastPathLoop = memo.fast_path
        await fast_path.pod_changed(namespace, name, body)

    @kopf.daemon(API_GROUP, API_VERSION, PLURAL, registry=registry, cancellation_timeout=10.0)
    async def rollout(name: str, namespace: str, uid: str, stopped: kopf.DaemonStopped, memo: kopf.Memo,
                      **_: Any) -> None:
        controller: Controller = memo.controller
        ref = RolloutRef(namespace=namespace, name=name, uid=uid)
        wake_event: asyncio.Event = memo.wakeups.setdefault(uid, asyncio.Event())
        fast_path: FastPathLoop = memo.fast_path
        shards: ShardMembership | None = memo.shards
        driving = False
        resume = True
        failures = 0
        try:
            while not stopped:
                # Read before anything else: a change of the group while we reconcile must wake the wait below.
                group_change = shards.change() if shards is not None else None
                if shards is not None and not shards.owns(namespace, name):
                    # Another replica's rollout (--shards): no fast path, no reconcile; look
                    # again when the group changes (the watch does not wake it meanwhile).
                    if driving:
                        driving = False
                        controller.forget_held(uid)
                        fast_path.deactivate(uid)
                        controller.telemetry.shard_rollouts.dec()
                        controller.telemetry.forget(namespace, name)  # its gauges are the new owner's to export
                        log.info("%s/%s: shard: released at %.3f (now %s's)", namespace, name, time.time(),
                                 shards.view.owner(f"{namespace}/{name}") or "nobody's")
                    await _first_of(group_change, wake_event, timeout=SHARD_IDLE_RECHECK_SECONDS)
                    wake_event.clear()
                    continue
                if not driving:
                    driving = True
                    resume = True  # the previous owner may have died mid-action: re-apply the persisted intent
                    fast_path.activate(uid)  # a frozen peer's daemons stop, and with them its fast path
                    if shards is not None:
                        controller.telemetry.shard_rollouts.inc()
                        log.info("%s/%s: shard: driving at %.3f", namespace, name, time.time())
                if shards is not None and uid not in fast_path.watched:
                    # Its body was dropped while it was another's (the watch sends the next only on a change).
                    await _observe_fresh(controller, fast_path, ref)
                wake_event.clear()
                try:
                    delay = await controller.reconcile(ref, resume=resume)
                    if delay is None:
                        return  # deleted
                    resume = False
                    failures = 0
                except NotShardOwner:
                    continue  # lost mid-reconcile: the top of the loop lets go
                except (ClusterUnavailable, ClusterConflict) as exc:
                    delay = RETRY_BACKOFF_SECONDS[min(failures, len(RETRY_BACKOFF_SECONDS) - 1)]
                    failures += 1
                    resume = True  # an action may be half-applied: re-apply the persisted intent first
                    log.warning("%s/%s: %s; retrying in %.0fs", namespace, name, exc, delay)
                except Exception:  # noqa: BLE001 — a bug in one rollout must not stop the others
                    delay = RETRY_BACKOFF_SECONDS[min(failures, len(RETRY_BACKOFF_SECONDS) - 1)]
                    failures += 1
                    resume = True
                    controller.telemetry.operator_errors.labels("reconcile").inc()
                    log.exception("%s/%s: reconcile failed (an operator error, not the cluster's); retrying in %.0fs",
                                  namespace, name, delay)
                await _sleep_while_owned(delay, wake_event, shards, group_change, namespace, name)
        finally:
            memo.wakeups.pop(uid, None)
            fast_path.deactivate(uid)
            if driving and shards is not None:
                controller.telemetry.shard_rollouts.dec()

    @kopf.on.delete(API_GROUP, API_VERSION, PLURAL, registry=registry, optional=True)
    async def forget(name: str, namespace: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
        controller: Controller = memo.controller
        controller.telemetry.forget(namespace, name)
        controller.forget_held(uid)
        memo.fast_path.forget(uid)

    return registry


async def _observe_fresh(controller: Controller, fast_path: FastPathLoop, ref: RolloutRef) -> None:
    """Hand the fast path the body of a rollout just taken over (--shards): the watch
    stream's last body was dropped while it was another replica's."""
    try:
        body = await controller.read_rollout(ref)
    except (ClusterUnavailable, ClusterConflict) as exc:
        log.warning("%s/%s: not checked by the fast path until its next change: %s", ref.namespace, ref.name, exc)
        return
    if body is not None:
        fast_path.observe(ref, body)


async def _sleep_while_owned(delay: float, wake_event: asyncio.Event, shards: ShardMembership | None,
                             group_change: asyncio.Event | None, namespace: str, name: str) -> None:
    """Wait ``delay`` seconds, or until the resource changes, or (--shards) the rollout stops
    being ours; a change of the group that leaves it ours does not cut the wait short (a
    reconcile of every rollout at each change would flood the apiserver when it can least
    afford it)."""
    deadline = time.monotonic() + delay
    change = group_change
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or wake_event.is_set():
            return
        await _first_of(wake_event, *([change] if change is not None else []), timeout=remaining)
        if shards is None or change is None or not change.is_set():
            return  # woken by the resource, or the time is up
        if not shards.owns(namespace, name):
            return  # the top of the daemon's loop lets go
        change = shards.change()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Wait until any of the events is set, or ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


__all__ = ["make_registry"]
