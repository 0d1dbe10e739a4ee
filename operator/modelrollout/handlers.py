"""kopf wiring: one daemon per ModelRollout drives ``Controller.reconcile``.

Handlers only load state, call the controller and sleep; all decisions are in the core
and all cluster I/O in the adapters. Why a daemon and not timers: each rollout has its
own cadence (its interval, halved at medium risk, zero while phases are in flight), and
the next wake-up is in its status, so a restarted operator resumes on time.

Two replicas use kopf peering with distinct priorities: the highest one acts, the others
freeze (kopf freezes *all* operators when priorities are equal, so the default priority
is drawn at random per process).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .api.models import API_GROUP, API_VERSION, PLURAL, ModelRolloutSpec, ModelRolloutStatus
from .clock import Clock, SystemClock
from .controller import Controller, RolloutRef
from .adapters.workload import CANARY_ROLE, ROLE_LABEL, pod_failure
from .errors import ClusterConflict, ClusterUnavailable
from .fastpath import FastPath, deployment_of_pod
from .telemetry import OperatorMetrics

log = logging.getLogger("modelrollout.handlers")

RETRY_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
API_THREADS = 32


@dataclass
class OperatorConfig:
    prometheus_url: str = "http://127.0.0.1:9090"
    namespaces: tuple[str, ...] = ()
    metrics_port: int | None = 8080
    metrics_addr: str = "0.0.0.0"
    webhooks: tuple[str, ...] = ()
    priority: int = field(default_factory=lambda: random.randint(1, 1_000_000))
    peering_name: str = "modelrollout"
    standalone: bool = False
    query_timeout_seconds: float = 5.0
    liveness_endpoint: str | None = None
    default_profile: str | None = None
    peering_lifetime_seconds: int = 10
    """How long a replica's peering record counts without a refresh (kopf's default is 60 s):
    a SIGKILLed acting replica is replaced by the next one within about this long."""


def make_registry(config: OperatorConfig, clock: Clock | None = None) -> kopf.OperatorRegistry:
    """A fresh registry with our handlers (a function so tests can run operators side by side)."""
    registry = kopf.OperatorRegistry()
    clock = clock or SystemClock()

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
        # API calls run in the loop's default executor (asyncio.to_thread): size it for many
        # rollouts, so a fast-path rollback never queues behind a wave of ticks' GETs
        # (Python's default is cpu_count + 4 threads: 6 on a 2-core node).
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="kube-api"))
        memo.controller = build_controller(config, clock)
        memo.wakeups = {}
        memo.fast_path = build_fast_path(memo.controller, clock)
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

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def wake(uid: str, name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, type: str | None,
                   **_: Any) -> None:
        """Spec edits, annotations (manual commands) and pause/resume wake the daemon now;
        every body also refreshes what the fast path knows of the rollout."""
        fast_path: FastPath = memo.fast_path
        if type == "DELETED":
            fast_path.forget(uid)
        else:
            fast_path.observe(RolloutRef(namespace=namespace, name=name, uid=uid), body)
        event = memo.wakeups.get(uid)
        if event is not None:
            event.set()

    @kopf.on.event("", "v1", "pods", labels={ROLE_LABEL: CANARY_ROLE}, registry=registry)
    async def canary_pod(name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, type: str | None,
                         **_: Any) -> None:
        """An OOMKilled or crash-looping canary pod rolls back now, not at the next tick."""
        if type == "DELETED" or pod_failure(body) is None:
            return
        deployment = deployment_of_pod(body)
        if deployment is not None:
            await memo.fast_path.pod_failed(namespace, deployment, name)

    @kopf.daemon(API_GROUP, API_VERSION, PLURAL, registry=registry, cancellation_timeout=10.0)
    async def rollout(name: str, namespace: str, uid: str, stopped: kopf.DaemonStopped, memo: kopf.Memo,
                      **_: Any) -> None:
        controller: Controller = memo.controller
        ref = RolloutRef(namespace=namespace, name=name, uid=uid)
        wake_event: asyncio.Event = memo.wakeups.setdefault(uid, asyncio.Event())
        fast_path: FastPath = memo.fast_path
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


# ------------------------------------------------------------------------------ wiring


def api_client() -> k8s.ApiClient:
    """In-cluster config when running in a pod, else the current kubeconfig."""
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = API_THREADS  # one connection per API thread
    return k8s.ApiClient(configuration)


def snapshot_request(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, now: Any) -> Any:
    from .adapters.metrics.request import SnapshotRequest
    from .core.windows import plan_windows

    return SnapshotRequest.for_rollout(namespace=ref.namespace, name=ref.name, spec=spec, status=status,
                                       windows=plan_windows(spec, status, now))


def router_target(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus) -> Any:
    from .adapters.kube import rollout_target

    total = status.stable_record.replicas if status.stable_record else 0
    return rollout_target(ref.namespace, spec, total)


def fast_path_request(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, now: Any) -> Any:
    from .adapters.metrics.request import SnapshotRequest
    from .core.windows import fast_path_windows

    return SnapshotRequest.for_fast_path(namespace=ref.namespace, name=ref.name, spec=spec, status=status,
                                         windows=fast_path_windows(spec, status, now))


def build_fast_path(controller: Controller, clock: Clock) -> FastPath:
    from .adapters.metrics.batching import PrometheusRouter

    router: PrometheusRouter = controller.metrics_source  # type: ignore[assignment]
    return FastPath(controller, router.batch_source, fast_path_request, clock, controller.telemetry)


def build_controller(config: OperatorConfig, clock: Clock) -> Controller:
    from .adapters.kube import KubeExecutor
    from .adapters.metrics.batching import PrometheusRouter
    from .adapters.notifiers.events import EventRecorder
    from .adapters.notifiers.webhook import WebhookNotifier
    from .adapters.rollouts import RolloutStore

    api = api_client()
    telemetry = OperatorMetrics()
    if config.metrics_port:
        telemetry.serve(config.metrics_port, config.metrics_addr)
    store = RolloutStore(api)
    return Controller(
        read_rollout=store.read,
        executor=KubeExecutor(api, now=clock.now),
        metrics_source=PrometheusRouter(config.prometheus_url, config.query_timeout_seconds, telemetry.observe_query),
        events=EventRecorder(api, now=clock.now),
        notifier=WebhookNotifier(list(config.webhooks)),
        write_status=store.write_status,
        clock=clock,
        telemetry=telemetry,
        build_request=snapshot_request,
        build_target=router_target,
        default_prometheus_url=config.prometheus_url,
        default_profile=config.default_profile,
        action_delay=float(os.environ.get("MODELROLLOUT_ACTION_DELAY_SECONDS", "0") or 0),
    )


def run(config: OperatorConfig) -> None:
    """Run the operator until interrupted (``modelrollout run``).

    First the start-up checks (``startup.py``): without ``--standalone`` kopf would wait
    silently for a missing peering object, so it is found or created here, the operator
    runs standalone when the peering CRD is not installed at all, and anything it still
    waits for is logged and reported on the health endpoint until it is resolved.
    """
    import time
    from dataclasses import replace

    from .startup import KubeStartupApi, StartupWatch, prepare

    clock = SystemClock()
    api = KubeStartupApi(api_client())
    report = prepare(api, peering_name=config.peering_name, namespaces=config.namespaces,
                     standalone=config.standalone, clock=clock, sleep=time.sleep)
    if report.peering.standalone and not config.standalone:
        config = replace(config, standalone=True)  # the peering CRD is not installed: nobody to peer with
    watch = StartupWatch(api, report, clock)
    watch.start()
    # kopf logs every probe that succeeds at INFO, two lines per kubelet probe: failures only.
    logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)
    registry = make_registry(config)
    try:
        kopf.run(
            registry=registry,
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            standalone=config.standalone,
            priority=config.priority,
            # A peering name makes peering mandatory in kopf: only when replicas must coordinate.
            peering_name=None if config.standalone else config.peering_name,
            liveness_endpoint=config.liveness_endpoint,
            memo=kopf.Memo(startup=watch),
        )
    finally:
        watch.stop()


__all__ = ["OperatorConfig", "make_registry", "run", "ModelRolloutSpec", "ModelRolloutStatus"]
