"""Composition: the one place that builds the operator's parts and hands them to kopf.

``handlers.py`` holds the kopf handlers and nothing else; it receives a ``compose``
callable and calls it once the event loop runs (kopf's startup handler). Everything
concrete — the Kubernetes client, the executor, the Prometheus router, the notifiers,
the request builders that put the core's windows into a ``SnapshotRequest`` — is chosen
here, so the controller and the fast path only ever see their protocols. Tests compose
differently through the same door: ``wrap_executor`` decorates the cluster executor
(``e2e/harness/slow_operator.py`` slows the phased actions down to SIGKILL the operator
in the middle of one) without a hook in the product's own code.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .adapters.kube import KubeExecutor
from .adapters.kubeapi import KubeApi
from .adapters.leases import KubeLeases
from .adapters.metrics.batching import PrometheusRouter
from .adapters.metrics.request import SnapshotRequest
from .adapters.notifiers.events import EventRecorder
from .adapters.notifiers.webhook import WebhookNotifier
from .adapters.rollouts import RolloutStore
from .api.models import ModelRolloutSpec, ModelRolloutStatus
from .clock import Clock, SystemClock
from .controller import Controller, Executor, RolloutRef
from .core.windows import FastPathLook, plan_windows
from .fast_path_loop import FastPathLoop
from .handlers import make_registry
from .shard_membership import ShardMembership, default_identity
from .startup import KubeStartupApi, StartupWatch, prepare
from .telemetry import OperatorMetrics

LEASE_REQUEST_TIMEOUT_SECONDS = 2.0
"""A Lease renewal or list slower than this fails the round (the fence counts from its start)."""

API_THREADS = 32
"""Threads of the loop's default executor, where every Kubernetes API call runs, and
connections of the API client's pool (one per thread)."""

ExecutorHook = Callable[[Executor], Executor]
"""Decorates the cluster executor: the identity in production, a fault injector in tests."""


@dataclass(frozen=True, slots=True)
class Operator:
    """What the kopf handlers drive: every rollout's loop, and the operator-wide fast path."""

    controller: Controller
    fast_path: FastPathLoop
    shards: ShardMembership | None = None
    """This replica's membership of the shard group (``--shards``); None: it drives every rollout."""


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
    min_rate_window_seconds: float = 60.0
    """The shortest window a range query's point is read over (anomaly series, the stable's
    counts per interval): at least 4 of Prometheus' scrape intervals."""
    status_heartbeat_seconds: float | None = None
    """``--status-heartbeat``: a status changing nothing material is written at most this
    often (None: every change, the default; docs/operator.md#quiet-status-writes)."""
    liveness_endpoint: str | None = None
    default_profile: str | None = None
    peering_lifetime_seconds: int = 10
    """How long a replica's peering record counts without a refresh (kopf's default is 60 s):
    a SIGKILLed acting replica is replaced by the next one within about this long."""
    shards: bool = False
    """``--shards``: replicas split the rollouts by Leases instead of one acting (docs/operator.md#sharding)."""
    shard_group: str = "modelrollout"
    shard_namespace: str = "default"
    identity: str = field(default_factory=default_identity)


def api_client() -> k8s.ApiClient:
    """In-cluster config when running in a pod, else the current kubeconfig."""
    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = API_THREADS  # one connection per API thread
    return k8s.ApiClient(configuration)


def snapshot_request(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                     now: datetime) -> SnapshotRequest:
    """The tick's request: the windows the core plans, asked of the rollout's Prometheus."""
    return SnapshotRequest.for_rollout(namespace=ref.namespace, name=ref.name, spec=spec, status=status,
                                       windows=plan_windows(spec, status, now))


def fast_path_request(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                      look: FastPathLook) -> SnapshotRequest:
    """The fast path's request: the critical conditions' windows (read exactly while the
    step is younger than them), as the core planned them (``core.windows.fast_path_look``)."""
    return SnapshotRequest.for_fast_path(namespace=ref.namespace, name=ref.name, spec=spec, status=status, look=look)


def compose(config: OperatorConfig, clock: Clock, *, wrap_executor: ExecutorHook | None = None) -> Operator:
    """The controller and the fast path, wired to the cluster, Prometheus and the notifiers.

    Called inside the running loop (kopf's startup handler): API calls run in the loop's
    default executor (``asyncio.to_thread``), sized here for many rollouts, so a fast-path
    rollback never queues behind a wave of ticks' GETs (Python's default is cpu_count + 4
    threads: 6 on a 2-core node).
    """
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="kube-api"))
    api = api_client()
    telemetry = OperatorMetrics()
    if config.metrics_port:
        telemetry.serve(config.metrics_port, config.metrics_addr)
    def count_request(verb: str) -> None:
        telemetry.kube_requests.labels(verb).inc()

    kube = KubeApi(api, on_request=count_request)
    store = RolloutStore(api, on_request=count_request)
    executor: Executor = KubeExecutor(kube, now=clock.now)
    if wrap_executor is not None:
        executor = wrap_executor(executor)
    metrics = PrometheusRouter(config.prometheus_url, config.query_timeout_seconds, telemetry.observe_query,
                               timedelta(seconds=config.min_rate_window_seconds),
                               on_batch=telemetry.tick_batch_rollouts.observe)
    controller = Controller(
        read_rollout=store.read,
        executor=executor,
        metrics_source=metrics,
        events=EventRecorder(kube, now=clock.now),
        notifier=WebhookNotifier(list(config.webhooks)),
        write_status=store.write_status,
        clock=clock,
        telemetry=telemetry,
        build_request=snapshot_request,
        default_profile=config.default_profile,
        status_heartbeat=(timedelta(seconds=config.status_heartbeat_seconds)
                          if config.status_heartbeat_seconds is not None else None),
    )
    fast_path = FastPathLoop(controller, metrics.batch_source, fast_path_request, clock, telemetry)
    shards = None
    if config.shards:
        lease_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-leases")  # never behind rollouts' calls
        leases = KubeLeases(KubeApi(api, request_timeout=LEASE_REQUEST_TIMEOUT_SECONDS, executor=lease_threads,
                                    on_request=count_request),
                            config.shard_namespace, config.shard_group)
        shards = ShardMembership(leases, config.identity, clock.now, telemetry=telemetry)
        membership = shards
        controller.may_act = lambda ref: membership.owns(ref.namespace, ref.name)
    return Operator(controller=controller, fast_path=fast_path, shards=shards)


class QuietEventHandlers(logging.Filter):
    """Drops kopf's "Handler '...' succeeded." lines of the watch-event handlers.

    kopf logs each event handler's success at INFO: one line per status write of every
    rollout (``wake``) and per change of every pod a ReplicaSet owns (``canary_pod``, which
    sees all of a namespace's pods), so at any scale the log is nothing else. Their
    failures, and every other handler's lines, are kept.
    """

    QUIET = frozenset({"Handler 'wake' succeeded.", "Handler 'canary_pod' succeeded."})
    """The handlers' ids are set in handlers.py (``id=``) so that this match is exact."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in self.QUIET


def run(config: OperatorConfig, *, wrap_executor: ExecutorHook | None = None) -> None:
    """Run the operator until interrupted (``modelrollout run``).

    First the start-up checks (the ``startup`` package): without ``--standalone`` kopf would wait
    silently for a missing peering object, so it is found or created here, the operator
    runs standalone when the peering CRD is not installed at all, and anything it still
    waits for is logged and reported on the health endpoint until it is resolved.
    """
    clock = SystemClock()
    api = KubeStartupApi(api_client())
    report = prepare(api, peering_name=config.peering_name, namespaces=config.namespaces,
                     standalone=config.standalone, clock=clock, sleep=time.sleep, sharded=config.shards)
    if report.peering.standalone and not config.standalone:
        config = replace(config, standalone=True)  # the peering CRD is not installed: nobody to peer with
    watch = StartupWatch(api, report, clock)
    watch.start()
    # kopf logs every probe that succeeds at INFO, two lines per kubelet probe: failures only.
    logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(QuietEventHandlers())
    registry = make_registry(config, lambda: compose(config, clock, wrap_executor=wrap_executor))
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


__all__ = ["API_THREADS", "ExecutorHook", "Operator", "OperatorConfig", "QuietEventHandlers", "api_client", "compose", "fast_path_request", "run",
           "snapshot_request"]
