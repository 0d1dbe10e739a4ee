"""The replicas router: traffic follows pod counts behind one Service.

With no mesh or gateway, a Service that selects both the stable's and the canary's
pods spreads requests roughly by ready-pod count. So ``w`` % of traffic means
``ceil(total × w / 100)`` canary pods and ``total − that`` stable pods, where
``total`` is the stable's replica count recorded before the rollout: at 5 % of 3
replicas the canary gets 1 pod (the share actually served is 1/3 — the floor the
replica granularity allows, never zero), at 100 % the canary runs ``total`` and the
stable 0, at 0 % the reverse.

Setting a weight reads both Deployments and writes only what differs, growing one
side before shrinking the other so capacity never dips — except at 0 % (a rollback),
where both writes go out together: the canary is the problem, and leaving it serving
while the stable scales up is the slower harm. The requested percent is
also kept in the canary's annotation ``modelrollout.io/canary-weight`` so
``read_canary_weight`` can answer exactly when the replica counts agree with it (a
pod count alone cannot distinguish 5 % from 30 % of 3 replicas).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..kubeapi import KubeApi, NotFound
from ..workload import replicas_of
from .base import RolloutTarget

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

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    async def set_canary_weight(self, target: RolloutTarget, percent: int) -> None:
        stable_want, canary_want = split_replicas(target.total_replicas, percent)
        stable, canary = await asyncio.gather(self._api.read_deployment(target.namespace, target.stable),
                                              self._read_canary(target, required=canary_want > 0))
        if canary is None:  # 0 % with the canary gone: only the stable has anything to do
            if replicas_of(stable) != stable_want:
                await self._api.scale_deployment(target.namespace, target.stable, stable_want)
            return
        annotations = canary.get("metadata", {}).get("annotations") or {}
        canary_ok = replicas_of(canary) == canary_want and annotations.get(WEIGHT_ANNOTATION) == str(percent)
        stable_ok = replicas_of(stable) == stable_want

        async def canary_write() -> None:
            if not canary_ok:
                await self._api.patch_deployment(target.namespace, target.canary, {
                    "metadata": {"annotations": {WEIGHT_ANNOTATION: str(percent)}},
                    "spec": {"replicas": canary_want},
                })

        async def stable_write() -> None:
            if not stable_ok:
                await self._api.scale_deployment(target.namespace, target.stable, stable_want)

        # Traffic off the canary (rollback, abort): both writes at once. The canary is the
        # problem, and the stable's extra pods take longer to become ready than either write.
        if percent == 0:
            await asyncio.gather(canary_write(), stable_write())
        # Otherwise grow first, shrink second: capacity never dips below the total.
        elif canary_want > replicas_of(canary):
            await canary_write()
            await stable_write()
        else:
            await stable_write()
            await canary_write()

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
