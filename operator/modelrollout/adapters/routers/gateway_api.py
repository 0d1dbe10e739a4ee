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

A shadow step (docs/shadow.md) keeps the weights at 100/0 and adds to every paired rule a
``RequestMirror`` filter whose backendRef is the canary's Service (Gateway API v1.3+
``percent``). The operator owns exactly the mirror filters that point at the canary: every
other weight change (a weighted step, a rollback) removes them, so no path can leave a
mirror behind. Filters of the user's own are left alone.
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


MIRROR_FILTER = "RequestMirror"


def _pairs(route: Json, stable: str, canary: str, where: str) -> list[tuple[list[Json], list[Json]]]:
    """Per rule that references the pair: (stable refs, canary refs). Raises naming what is missing."""
    return [(s, c) for _, s, c in _paired_rules(route, stable, canary, where)]


def _paired_rules(route: Json, stable: str, canary: str, where: str) -> list[tuple[Json, list[Json], list[Json]]]:
    """Per rule that references the pair: (rule, stable refs, canary refs)."""
    pairs: list[tuple[Json, list[Json], list[Json]]] = []
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
            pairs.append((rule, s, c))
    if not pairs:
        raise ClusterConflict(
            f"{where}: no rule has backendRefs named {stable!r} (stable) and {canary!r} (canary); by convention the "
            f"route splits traffic between Services named like the two Deployments — add both to a rule's backendRefs")
    return pairs


def _is_canary_mirror(flt: Json, canary: str) -> bool:
    if flt.get("type") != MIRROR_FILTER:
        return False
    return _is_backend((flt.get("requestMirror") or {}).get("backendRef") or {}, canary)


def _mirror_filter(canary_ref: Json, percent: int) -> Json:
    backend = {k: canary_ref[k] for k in ("name", "namespace", "port") if k in canary_ref}
    return {"type": MIRROR_FILTER, "requestMirror": {"backendRef": backend, "percent": percent}}


def with_canary_weight(route: Json, stable: str, canary: str, percent: int, where: str,
                       mirror_percent: int | None = None) -> Json:
    """A copy of ``route`` with stable weight ``100 − percent`` and canary ``percent`` in every
    paired rule, and in each of them a mirror of ``mirror_percent`` % of its requests to the
    canary (None: no mirror of ours)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent: {percent} must be within [0, 100]")
    if mirror_percent is not None and not 1 <= mirror_percent <= 100:
        raise ValueError(f"mirror_percent: {mirror_percent} must be within [1, 100]")
    out = copy.deepcopy(route)
    for rule, stable_refs, canary_refs in _paired_rules(out, stable, canary, where):
        for ref in stable_refs:
            ref["weight"] = 100 - percent
        for ref in canary_refs:
            ref["weight"] = percent
        filters = [f for f in rule.get("filters") or [] if not _is_canary_mirror(f, canary)]
        if mirror_percent is not None:
            filters.append(_mirror_filter(canary_refs[0], mirror_percent))
        if filters:
            rule["filters"] = filters
        else:
            rule.pop("filters", None)
    return out


def mirror_percent_of(route: Json, stable: str, canary: str) -> int | None:
    """The percent of requests the route mirrors to the canary (Gateway API: ``percent``, or
    ``fraction`` in percent; neither = 100), None when no paired rule mirrors to it or
    the rules disagree."""
    try:
        rules = _paired_rules(route, stable, canary, "route")
    except ClusterConflict:
        return None
    seen: set[int | None] = set()
    for rule, _, _ in rules:
        mirrors = [f["requestMirror"] for f in rule.get("filters") or [] if _is_canary_mirror(f, canary)]
        if not mirrors:
            seen.add(None)
            continue
        mirror = mirrors[0]
        if "percent" in mirror:
            seen.add(int(mirror["percent"]))
        elif "fraction" in mirror:
            fraction = mirror["fraction"]
            seen.add(round(100 * int(fraction["numerator"]) / int(fraction.get("denominator", 100))))
        else:
            seen.add(100)
    return seen.pop() if len(seen) == 1 else None


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

    async def prepare_dark(self, target: RolloutTarget, percent: int, replicas: int | None = None) -> None:
        """The canary scaled for ``percent`` % (or to ``replicas``) while the route gives it
        0 % and mirrors nothing: its servers come up and report the model they loaded
        before any request reaches them (a model awaiting its digest, docs/integrity.md).
        Idempotent."""
        ns, name = self._route(target)
        await self._set_route(ns, name, target, 0)
        want = replicas if replicas is not None else canary_replicas(target.total_replicas, percent)
        if replicas_of(await self._api.read_deployment(target.namespace, target.canary)) != want:
            await self._api.scale_deployment(target.namespace, target.canary, want)

    async def mirror(self, target: RolloutTarget, percent: int, replicas: int) -> None:
        """A shadow step (docs/shadow.md): every user on the stable, ``percent`` % of the
        requests copied to the canary, scaled to ``replicas`` (grown before the mirror is
        added, shrunk after). Idempotent."""
        ns, name = self._route(target)
        current = replicas_of(await self._api.read_deployment(target.namespace, target.canary))
        if replicas > current:
            await self._api.scale_deployment(target.namespace, target.canary, replicas)
        await self._set_route(ns, name, target, 0, mirror_percent=percent)
        if replicas < current:
            await self._api.scale_deployment(target.namespace, target.canary, replicas)

    async def set_route_weight(self, target: RolloutTarget, percent: int) -> None:
        """Only the route's weights (the promotion handover scales the Deployments itself)."""
        ns, name = self._route(target)
        await self._set_route(ns, name, target, percent)

    async def _set_route(self, ns: str, name: str, target: RolloutTarget, percent: int,
                         mirror_percent: int | None = None) -> None:
        where = f"HTTPRoute {ns}/{name} (spec.traffic.httpRoute)"

        async def attempt() -> None:
            route = await self._api.read_httproute(ns, name)
            desired = with_canary_weight(route, target.stable, target.canary, percent, where, mirror_percent)
            if desired != route:
                await self._api.replace_httproute(ns, name, desired)

        await retry_conflicts(attempt, where)

    async def read_canary_weight(self, target: RolloutTarget) -> int | None:
        ns, name = self._route(target)
        route = await self._api.read_httproute(ns, name)
        return canary_weight_of(route, target.stable, target.canary)
