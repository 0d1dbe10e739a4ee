"""The Gateway API router: HTTPRoute backendRef weights (``spec.traffic.router: gatewayAPI``).

Convention: the route named by ``spec.traffic.httpRoute`` sends traffic to two
Services named like the two Deployments — the backendRef whose ``name`` equals the
stable Deployment's name and the one whose ``name`` equals the canary Deployment's
name (``kind`` Service, the default). In every rule that references them, the
canary's weight becomes ``w`` and the stable's ``100 − w``; rules that reference
neither are left alone. A route without both backends is an error that names the
route, the rule and the missing backend (argo-rollouts' gateway plugin reports a
missing backend without naming it), never a silent no-op.

Capacity follows traffic: the canary Deployment is scaled to ``ceil(total × w / 100)``
replicas (grown before the weight rises, shrunk after it falls) while the stable keeps
its recorded total, so the stable can take 100 % back at any moment.

``read_canary_weight`` reads the route back (flagger's ``GetRoutes``): the canary's
share of the two weights, or None when the rules disagree or the route has no pair.
"""

from __future__ import annotations

import copy
from typing import Any

from ...errors import ClusterConflict, InvalidSpec
from ..kubeapi import KubeApi, NotFound, retry_conflicts
from ..workload import replicas_of
from .base import RolloutTarget
from .replicas import canary_replicas

Json = dict[str, Any]


def _is_backend(ref: Json, name: str) -> bool:
    return ref.get("name") == name and ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core")


def _pairs(route: Json, stable: str, canary: str, where: str) -> list[tuple[list[Json], list[Json]]]:
    """Per rule that references the pair: (stable refs, canary refs). Raises naming what is missing."""
    pairs: list[tuple[list[Json], list[Json]]] = []
    for i, rule in enumerate(route.get("spec", {}).get("rules") or []):
        refs = rule.get("backendRefs") or []
        s = [r for r in refs if _is_backend(r, stable)]
        c = [r for r in refs if _is_backend(r, canary)]
        if s and not c:
            raise ClusterConflict(
                f"{where}: spec.rules[{i}] has backendRef {stable!r} (the stable) but no backendRef named {canary!r} "
                f"(the canary Deployment's name; by convention its Service has the same name); "
                f"add {{name: {canary}, port: <port>, weight: 0}} to that rule")
        if c and not s:
            raise ClusterConflict(
                f"{where}: spec.rules[{i}] has backendRef {canary!r} (the canary) but no backendRef named {stable!r} "
                f"(the stable Deployment's name); add {{name: {stable}, port: <port>, weight: 100}} to that rule")
        if s and c:
            pairs.append((s, c))
    if not pairs:
        raise ClusterConflict(
            f"{where}: no rule has backendRefs named {stable!r} (stable) and {canary!r} (canary); by convention the "
            f"route splits traffic between Services named like the two Deployments — add both to a rule's backendRefs")
    return pairs


def with_canary_weight(route: Json, stable: str, canary: str, percent: int, where: str) -> Json:
    """A copy of ``route`` with stable weight ``100 − percent`` and canary ``percent`` in every paired rule."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent: {percent} must be within [0, 100]")
    out = copy.deepcopy(route)
    for stable_refs, canary_refs in _pairs(out, stable, canary, where):
        for ref in stable_refs:
            ref["weight"] = 100 - percent
        for ref in canary_refs:
            ref["weight"] = percent
    return out


def canary_weight_of(route: Json, stable: str, canary: str) -> int | None:
    """The canary's percent of the pair's weights (absent weight = 1, the Gateway API default)."""
    try:
        pairs = _pairs(route, stable, canary, "route")
    except ClusterConflict:
        return None
    seen: set[int] = set()
    for stable_refs, canary_refs in pairs:
        s = sum(int(r.get("weight", 1)) for r in stable_refs)
        c = sum(int(r.get("weight", 1)) for r in canary_refs)
        if s + c == 0:
            return None
        seen.add(round(100 * c / (s + c)))
    return seen.pop() if len(seen) == 1 else None


async def verify_route(api: KubeApi, target: RolloutTarget) -> str | None:
    """Why the route cannot carry this rollout (naming route and backend), or None when it can.

    Called before a rollout starts, so a wrong route fails the start with nothing
    changed instead of failing every later weight change.
    """
    ns, name = GatewayAPIRouter._route(target)
    where = f"HTTPRoute {ns}/{name} (spec.traffic.httpRoute)"
    try:
        route = await api.read_httproute(ns, name)
    except NotFound:
        return f"spec.traffic.httpRoute.name: HTTPRoute {ns}/{name} not found; create it or fix the name"
    try:
        _pairs(route, target.stable, target.canary, where)
    except ClusterConflict as exc:
        return str(exc)
    return None


class GatewayAPIRouter:
    """``TrafficRouter`` over a ``gateway.networking.k8s.io/v1`` HTTPRoute."""

    def __init__(self, api: KubeApi, **_clock: Any) -> None:
        self._api = api

    @staticmethod
    def _route(target: RolloutTarget) -> tuple[str, str]:
        if not target.http_route:
            raise InvalidSpec("spec.traffic.httpRoute: required when router is gatewayAPI; "
                              "add httpRoute: {name: <HTTPRoute>}")
        return target.http_route_namespace or target.namespace, target.http_route

    async def set_canary_weight(self, target: RolloutTarget, percent: int) -> None:
        ns, name = self._route(target)
        want = canary_replicas(target.total_replicas, percent)
        try:
            current: int | None = replicas_of(await self._api.read_deployment(target.namespace, target.canary))
        except NotFound:
            if want > 0:
                raise
            current = None  # 0 % with the canary gone: only the route has anything to do
        grow = current is not None and want > current
        if grow:
            await self._api.scale_deployment(target.namespace, target.canary, want)
        await self._set_route(ns, name, target, percent)
        if current is not None and not grow and want != current:
            await self._api.scale_deployment(target.namespace, target.canary, want)

    async def prepare_dark(self, target: RolloutTarget, percent: int) -> None:
        """The canary scaled for ``percent`` % while the route gives it 0 %: its servers
        come up and report the model they loaded before any user reaches them (a model
        awaiting its digest, docs/integrity.md). Idempotent."""
        ns, name = self._route(target)
        await self._set_route(ns, name, target, 0)
        want = canary_replicas(target.total_replicas, percent)
        if replicas_of(await self._api.read_deployment(target.namespace, target.canary)) != want:
            await self._api.scale_deployment(target.namespace, target.canary, want)

    async def set_route_weight(self, target: RolloutTarget, percent: int) -> None:
        """Only the route's weights (the promotion handover scales the Deployments itself)."""
        ns, name = self._route(target)
        await self._set_route(ns, name, target, percent)

    async def _set_route(self, ns: str, name: str, target: RolloutTarget, percent: int) -> None:
        where = f"HTTPRoute {ns}/{name} (spec.traffic.httpRoute)"

        async def attempt() -> None:
            route = await self._api.read_httproute(ns, name)
            desired = with_canary_weight(route, target.stable, target.canary, percent, where)
            if desired != route:
                await self._api.replace_httproute(ns, name, desired)

        await retry_conflicts(attempt, where)

    async def read_canary_weight(self, target: RolloutTarget) -> int | None:
        ns, name = self._route(target)
        route = await self._api.read_httproute(ns, name)
        return canary_weight_of(route, target.stable, target.canary)
