"""Traffic routers by kind: one module per backend, one factory table.

An unknown kind is an error naming the allowed ones, never a fallback to some default
router (fluxcd/flagger#1872 silently fell back to Istio).
"""

from __future__ import annotations

from collections.abc import Callable

from ...api.models import RouterKind
from ...errors import InvalidSpec
from ..kubeapi import KubeApi
from .base import RolloutTarget, TrafficRouter
from .gateway_api import GatewayAPIRouter
from .replicas import ReplicasRouter

RouterFactory = Callable[..., TrafficRouter]
"""``factory(api, sleep=..., monotonic=...)``: the clock lets a router wait for pods in tests without real time."""

ROUTERS: dict[RouterKind, RouterFactory] = {
    RouterKind.REPLICAS: ReplicasRouter,
    RouterKind.GATEWAY_API: GatewayAPIRouter,
}


def router_for(kind: RouterKind | str, api: KubeApi) -> TrafficRouter:
    """The router for ``spec.traffic.router``; raises InvalidSpec on a kind we do not have."""
    try:
        factory = ROUTERS[RouterKind(kind)]
    except (ValueError, KeyError):
        allowed = ", ".join(k.value for k in ROUTERS)
        raise InvalidSpec(f"spec.traffic.router: {str(kind)!r} is not a known router; use one of: {allowed}") from None
    return factory(api)


__all__ = ["ROUTERS", "GatewayAPIRouter", "ReplicasRouter", "RolloutTarget", "RouterFactory", "TrafficRouter",
           "router_for"]
