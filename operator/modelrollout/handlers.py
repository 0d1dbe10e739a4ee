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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import kopf

from .api.models import API_GROUP, API_VERSION, PLURAL
from .controller import Controller, RolloutRef
from .errors import ClusterConflict, ClusterUnavailable
from .fast_path_loop import POD_WATCH_LABEL, FastPathLoop

if TYPE_CHECKING:  # wiring imports this module to register the handlers
    from .wiring import Operator, OperatorConfig

log = logging.getLogger("modelrollout.handlers")

RETRY_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


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
        task: asyncio.Task[None] | None = getattr(memo, "fast_path_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, id="wake", registry=registry)
    async def wake(uid: str, name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, type: str | None,
                   **_: Any) -> None:
        """Spec edits, annotations (manual commands) and pause/resume wake the daemon now;
        every body also refreshes what the fast path knows of the rollout."""
        fast_path: FastPathLoop = memo.fast_path
        if type == "DELETED":
            fast_path.forget(uid)
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
        fast_path.activate(uid)  # a frozen peer's daemons stop, and with them its fast path
        resume = True
        failures = 0
        try:
            while not stopped:
                wake_event.clear()
                try:
                    delay = await controller.reconcile(ref, resume=resume)
                    if delay is None:
                        return  # deleted
                    resume = False
                    failures = 0
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
                if delay > 0:
                    try:
                        await asyncio.wait_for(wake_event.wait(), timeout=delay)
                    except asyncio.TimeoutError:
                        pass
        finally:
            memo.wakeups.pop(uid, None)
            fast_path.deactivate(uid)

    @kopf.on.delete(API_GROUP, API_VERSION, PLURAL, registry=registry, optional=True)
    async def forget(name: str, namespace: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
        controller: Controller = memo.controller
        controller.telemetry.forget(namespace, name)
        memo.fast_path.forget(uid)

    return registry


__all__ = ["make_registry"]
