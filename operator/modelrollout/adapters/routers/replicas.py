"""The replicas router: traffic follows pod counts behind one Service.

With no mesh or gateway, a Service that selects both the stable's and the canary's
pods spreads requests roughly by ready-pod count. So ``w`` % of traffic means
``ceil(total × w / 100)`` canary pods and ``total − that`` stable pods, where
``total`` is the stable's replica count recorded before the rollout: at 5 % of 3
replicas the canary gets 1 pod (the share actually served is 1/3 — the floor the
replica granularity allows, never zero), at 100 % the canary runs ``total`` and the
stable 0, at 0 % the reverse.

Setting a weight reads both Deployments and writes only what differs. One side grows;
the other shrinks only as far as the growing side's *ready* pods allow, so the ready
serving pods never drop below ``target.min_serving`` (the stable's recorded replicas
less ``spec.promotion.maxUnavailable``, never 0): what can go at once goes in the same
instant as the growing write (at 0 %, a rollback, that is every canary pod the stable
can spare), and the rest follows as the other side's pods become ready, or the change
gives up after ``target.deadline_seconds`` with :class:`CapacityWait` (retried). A side still rolling
between two pod templates counts only the ready pods its own controller keeps (``spec.replicas``
less its own maxUnavailable) and is not shrunk while the floor depends on it (``workload.ready_kept``,
``fewest_replicas_keeping``), and never more than its ready pods that are not being deleted
(``workload.ready_pods_staying``: ``availableReplicas`` still counts, for a moment, the pods of a
scale-down issued just before). The requested percent is
also kept in the canary's annotation ``modelrollout.io/canary-weight`` so
``read_canary_weight`` can answer exactly when the replica counts agree with it (a
pod count alone cannot distinguish 5 % from 30 % of 3 replicas).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import CapacityWait
from ..kubeapi import KubeApi, NotFound
from ..workload import (
    fewest_replicas_keeping,
    label_selector,
    ready_kept,
    ready_pods_staying,
    replicas_of,
    serving_replicas,
)
from .base import RolloutTarget

Sleep = Callable[[float], Awaitable[None]]

WEIGHT_ANNOTATION = "modelrollout.io/canary-weight"


def canary_replicas(total: int, percent: int) -> int:
    """ceil(total × percent / 100), in integers (no float rounding at any size)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent: {percent} must be within [0, 100]")
    if total < 0:
        raise ValueError(f"total: {total} replicas must be >= 0")
    return -(-total * percent // 100)


def split_replicas(total: int, percent: int) -> tuple[int, int]:
    """(stable, canary) replicas for ``percent`` % of traffic to the canary."""
    canary = canary_replicas(total, percent)
    return total - canary, canary


def weight_from_replicas(total: int, stable: int, canary: int, annotated: int | None) -> int | None:
    """The weight these replica counts implement, or None when they match no weight.

    The annotated (last requested) weight when the counts agree with it, None when they
    do not (someone scaled by hand, or a change is half-applied); without an
    annotation, the smallest weight that yields the counts. Counts that do not add up
    to ``total`` answer None.
    """
    if stable + canary != total or stable < 0 or canary < 0:
        return None
    if annotated is not None:
        ok = 0 <= annotated <= 100 and split_replicas(total, annotated) == (stable, canary)
        return annotated if ok else None
    if total == 0:
        return None
    for percent in range(101):
        if split_replicas(total, percent) == (stable, canary):
            return percent
    return None


class ReplicasRouter:
    """``TrafficRouter`` by replica counts (``spec.traffic.router: replicas``)."""

    def __init__(self, api: KubeApi, *, poll_interval: float = 0.25, max_poll_interval: float = 2.0,
                 sleep: Sleep = asyncio.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._poll = poll_interval
        self._max_poll = max_poll_interval
        """The wait for the grown side's pods starts polling every ``poll_interval`` and
        doubles it up to ``max_poll_interval``: pods that are ready within a second are
        seen at once, and a long wait (pods scheduled slowly on a busy cluster) costs a
        GET pair every 2 s, not 8 GETs a second per rollout — measured at 200 rollouts
        stepping together, the fixed 0.25 s poll kept the apiserver too busy to answer."""
        self._sleep = sleep
        self._monotonic = monotonic

    async def set_canary_weight(self, target: RolloutTarget, percent: int) -> None:
        stable_want, canary_want = split_replicas(target.total_replicas, percent)
        stable, canary = await asyncio.gather(self._api.read_deployment(target.namespace, target.stable),
                                              self._read_canary(target, required=canary_want > 0))
        if canary is None:  # 0 % with the canary gone: only the stable has anything to do
            if replicas_of(stable) != stable_want:
                await self._api.scale_deployment(target.namespace, target.stable, stable_want)
            return
        annotations = canary.get("metadata", {}).get("annotations") or {}
        annotated = annotations.get(WEIGHT_ANNOTATION) == str(percent)
        ns = target.namespace

        async def write_canary(replicas: int) -> None:
            if replicas != replicas_of(canary) or not annotated:
                await self._api.patch_deployment(ns, target.canary, {
                    "metadata": {"annotations": {WEIGHT_ANNOTATION: str(percent)}},
                    "spec": {"replicas": replicas},
                })

        async def write_stable(replicas: int) -> None:
            if replicas != replicas_of(stable):
                await self._api.scale_deployment(ns, target.stable, replicas)

        # Grow one side, shrink the other only as far as the grown side's ready pods allow:
        # the ready serving pods never drop below target.min_serving. The first shrink is
        # computed from what is ready now (growing never lowers it), so both writes go out
        # together: at 0 % (a rollback) the canary loses every pod the stable can spare at once.
        if canary_want > replicas_of(canary):
            grow, grow_want, grow_write = target.canary, canary_want, write_canary
            shrink, shrink_want, shrink_write, shrink_dep = target.stable, stable_want, write_stable, stable
            grow_dep = canary
        else:
            grow, grow_want, grow_write = target.stable, stable_want, write_stable
            shrink, shrink_want, shrink_write, shrink_dep = target.canary, canary_want, write_canary, canary
            grow_dep = stable
        # Before our write: a stale status never counts more. Either side may be mid-rollout (the
        # stable rolling back to its recorded template after a stopped promotion): only the ready
        # pods its own controller keeps count, and a side counted on is not shrunk until rolled out.
        staying = ready_kept(grow_dep)
        keep = fewest_replicas_keeping(shrink_dep, target.min_serving - staying, shrink_want)
        if keep < replicas_of(shrink_dep):  # a shrink relies on the grown side's pods: confirm them from the pods
            staying = min(staying, await self._ready_pods(ns, grow_dep))
            keep = fewest_replicas_keeping(shrink_dep, target.min_serving - staying, shrink_want)
        await asyncio.gather(grow_write(grow_want), shrink_write(keep))
        if keep <= shrink_want:
            return
        deadline = self._monotonic() + target.deadline_seconds
        poll = self._poll
        while keep > shrink_want:
            if self._monotonic() >= deadline:
                raise CapacityWait(
                    f"Deployment {ns}/{shrink} keeps {keep} pods (wants {shrink_want}): Deployment {ns}/{grow} has "
                    f"too few ready pods to keep {target.min_serving} serving (spec.promotion.maxUnavailable) after "
                    f"{target.deadline_seconds:.0f}s (spec.analysis.progressDeadlineSeconds); retrying")
            await self._sleep(poll)
            poll = min(poll * 2, self._max_poll)
            grown, shrunk = await asyncio.gather(self._api.read_deployment(ns, grow),
                                                 self._api.read_deployment(ns, shrink))
            ready = serving_replicas(grown)
            if ready is None:  # our write not observed yet: its status says nothing
                continue
            lower = fewest_replicas_keeping(shrunk, target.min_serving - ready, shrink_want)
            if lower < keep:  # the status allows a shrink: confirm from the pods (the status lags deletions)
                ready = min(ready, await self._ready_pods(ns, grown))
                lower = fewest_replicas_keeping(shrunk, target.min_serving - ready, shrink_want)
            if lower < keep:
                keep = lower
                if shrink == target.canary:
                    await self._api.patch_deployment(ns, shrink, {"spec": {"replicas": keep}})
                else:
                    await self._api.scale_deployment(ns, shrink, keep)

    async def _ready_pods(self, ns: str, deployment: dict[str, Any]) -> int:
        """Its ready pods not being deleted, counted from the pods: the status lags a scale-down."""
        selector = label_selector(deployment.get("spec", {}).get("selector") or {})
        pods, replicasets = await asyncio.gather(self._api.list_pods(ns, selector),
                                                 self._api.list_replicasets(ns, selector))
        return ready_pods_staying(deployment, replicasets, pods)

    async def _read_canary(self, target: RolloutTarget, required: bool) -> dict[str, Any] | None:
        try:
            return await self._api.read_deployment(target.namespace, target.canary)
        except NotFound:
            if required:
                raise
            return None

    async def read_canary_weight(self, target: RolloutTarget) -> int | None:
        stable, canary = await asyncio.gather(self._api.read_deployment(target.namespace, target.stable),
                                              self._api.read_deployment(target.namespace, target.canary))
        raw = (canary.get("metadata", {}).get("annotations") or {}).get(WEIGHT_ANNOTATION)
        annotated = int(raw) if raw is not None and raw.isdigit() else None
        return weight_from_replicas(target.total_replicas, replicas_of(stable), replicas_of(canary), annotated)
