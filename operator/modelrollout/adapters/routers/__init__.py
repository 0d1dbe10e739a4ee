"""Traffic routers by kind: one module per backend, one factory table.

An unknown kind is an error naming the allowed ones, never a fallback to some default
router (fluxcd/flagger#1872 silently fell back to Istio).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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


def router_factory(kind: RouterKind | str,
                   factories: Mapping[RouterKind, RouterFactory] = ROUTERS) -> tuple[RouterKind, RouterFactory]:
    """The factory for ``spec.traffic.router``; InvalidSpec naming the allowed kinds on a
    kind we do not have, never a default (flagger#1872)."""
    try:
        key = RouterKind(kind)
    except ValueError:
        key = None
    if key is None or key not in factories:
        allowed = ", ".join(k.value for k in factories)
        raise InvalidSpec(f"spec.traffic.router: {str(kind)!r} is not a known router; use one of: {allowed}")
    return key, factories[key]


def router_for(kind: RouterKind | str, api: KubeApi) -> TrafficRouter:
    """The router for ``spec.traffic.router``; raises InvalidSpec on a kind we do not have."""
    return router_factory(kind)[1](api)


__all__ = ["ROUTERS", "GatewayAPIRouter", "ReplicasRouter", "RolloutTarget", "RouterFactory", "TrafficRouter",
           "router_factory", "router_for"]
