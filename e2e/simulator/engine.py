"""The simulator's state: registered services, scripted behaviours, observed
pods and their counters, and the two loops that move them (a 10 Hz traffic
tick and a ~0.5 s apiserver poll).

All mutation happens under one lock; the collector and the control API read
consistent snapshots under the same lock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from e2e.simulator.behaviour import DEFAULT_BEHAVIOUR, Behaviour, BehaviourError
from e2e.simulator.kube import DeploymentView, KubeReader, RouteView, argo_rollout_views
from e2e.simulator.model import PodCounters

log = logging.getLogger(__name__)

Router = Literal["replicas", "gatewayAPI"]
ANY = "*"


@dataclass(frozen=True)
class Service:
    """A stable + canary pair behind one router, offered `rps` in total."""

    name: str
    namespace: str
    stable: str
    canary: str | None
    router: Router
    rps: float
    http_route: str | None = None
    # HTTPRoute backendRefs name Services; by default a Service is named like
    # its Deployment.
    stable_backend: str | None = None
    canary_backend: str | None = None
    # When set, `stable` and `canary` are not Deployments but the names under
    # which this Argo Rollout's stable and canary ReplicaSets are exported.
    argo_rollout: str | None = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Service":
        """Parse the POST /services body; raises BehaviourError naming the field."""
        if not isinstance(obj, dict):
            raise BehaviourError("service must be a JSON object")
        for f in ("name", "namespace", "stable"):
            if not isinstance(obj.get(f), str) or not obj[f]:
                raise BehaviourError(f"service.{f} must be a non-empty string")
        router = obj.get("router", "replicas")
        if router not in ("replicas", "gatewayAPI"):
            raise BehaviourError("service.router must be 'replicas' or 'gatewayAPI'")
        route = obj.get("httpRoute")
        if isinstance(route, dict):
            route = route.get("name")
        if router == "gatewayAPI" and not route:
            route = obj["name"]
        rps = obj.get("rps", 100.0)
        if isinstance(rps, bool) or not isinstance(rps, (int, float)) or rps < 0:
            raise BehaviourError("service.rps must be a number >= 0")
        canary = obj.get("canary")
        if canary is not None and not isinstance(canary, str):
            raise BehaviourError("service.canary must be a string or null")
        argo = obj.get("argoRollout")
        if argo is not None and (not isinstance(argo, str) or not argo):
            raise BehaviourError("service.argoRollout must be a non-empty string or null")
        if argo and canary == obj["stable"]:
            raise BehaviourError("service.canary must differ from service.stable for an argoRollout")
        return cls(
            name=obj["name"], namespace=obj["namespace"], stable=obj["stable"], canary=canary or None,
            router=router, rps=float(rps), http_route=route,
            stable_backend=obj.get("stableBackend"), canary_backend=obj.get("canaryBackend"),
            argo_rollout=argo or None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "namespace": self.namespace, "stable": self.stable, "canary": self.canary,
            "router": self.router, "httpRoute": self.http_route, "rps": self.rps,
            "stableBackend": self.stable_backend or self.stable,
            "canaryBackend": self.canary_backend or self.canary,
            "argoRollout": self.argo_rollout,
        }

    def deployments(self) -> list[str]:
        return [d for d in (self.stable, self.canary) if d]


class Simulator:
    """Owns all mutable state; safe to call from the HTTP threads."""

    def __init__(self, reader: KubeReader | None, seed: int | None = None) -> None:
        self._reader = reader
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(seed)
        self._services: dict[tuple[str, str], Service] = {}
        # (namespace, deployment or "*") -> image or "*" -> behaviour
        self._behaviours: dict[tuple[str, str], dict[str, Behaviour]] = {}
        self._views: dict[tuple[str, str], DeploymentView] = {}
        self._routes: dict[tuple[str, str], RouteView] = {}
        self._shares: dict[tuple[str, str], float] = {}
        self._offered: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], float] = {}
        self._counters: dict[tuple[str, str], dict[str, PodCounters]] = {}
        self._last_tick = time.monotonic()
        self._last_refresh: float | None = None
        self._refresh_error: str | None = None
        self._stop = threading.Event()

    # ---- control API -------------------------------------------------
    def register_service(self, svc: Service) -> None:
        with self._lock:
            self._services[(svc.namespace, svc.name)] = svc
            self._recompute_shares()

    def remove_service(self, namespace: str, name: str) -> bool:
        with self._lock:
            gone = self._services.pop((namespace, name), None) is not None
            self._forget_unregistered()
            return gone

    def set_behaviour(self, namespace: str, deployment: str, behaviour: Behaviour, image: str | None) -> None:
        with self._lock:
            self._behaviours.setdefault((namespace, deployment), {})[image or ANY] = behaviour

    def clear_behaviour(self, namespace: str, deployment: str, image: str | None) -> None:
        with self._lock:
            by_image = self._behaviours.get((namespace, deployment), {})
            if image:
                by_image.pop(image, None)
            else:
                self._behaviours.pop((namespace, deployment), None)

    def forget_namespace(self, namespace: str) -> None:
        """Drop every service and behaviour of a namespace (test teardown)."""
        with self._lock:
            for key in [k for k in self._services if k[0] == namespace]:
                del self._services[key]
            for key in [k for k in self._behaviours if k[0] == namespace]:
                del self._behaviours[key]
            self._forget_unregistered()

    def reset(self) -> None:
        with self._lock:
            self._services.clear()
            self._behaviours.clear()
            self._forget_unregistered()

    def behaviour_for(self, namespace: str, deployment: str, image: str | None) -> tuple[Behaviour, str]:
        """Most specific first: (deployment, image), (any deployment, image),
        (deployment, any image), (any, any), then the healthy default. The
        image-keyed namespace-wide entry is what makes a stable that took the
        canary's template after promotion behave like the canary did."""
        with self._lock:
            for dep_key, img_key in ((deployment, image), (ANY, image), (deployment, ANY), (ANY, ANY)):
                if img_key is None:
                    continue
                b = self._behaviours.get((namespace, dep_key), {}).get(img_key)
                if b is not None:
                    return b, f"{dep_key}@{img_key}"
            return DEFAULT_BEHAVIOUR, "default"

    # ---- loops ---------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Advance every ready pod's counters by the time since the last tick."""
        now = time.monotonic() if now is None else now
        with self._lock:
            dt = min(now - self._last_tick, 5.0)  # a stalled process does not burst
            self._last_tick = now
            if dt <= 0:
                return
            for key, pods in self._counters.items():
                view = self._views.get(key)
                if view is None or not view.exists:
                    continue
                ready = view.ready_pods
                per_pod = self._offered.get(key, 0.0) / len(ready) if ready else 0.0
                for p in ready:
                    b, _ = self.behaviour_for(key[0], key[1], p.image)
                    pods.setdefault(p.name, PodCounters()).advance(
                        self._rng, b, per_pod, dt, 1.0 / len(ready)
                    )

    def refresh(self) -> None:
        """Poll the apiserver for every registered deployment and route."""
        if self._reader is None:
            return
        with self._lock:
            services = list(self._services.values())
        views: dict[tuple[str, str], DeploymentView] = {}
        routes: dict[tuple[str, str], RouteView] = {}
        try:
            for ns in sorted({s.namespace for s in services}):
                pods = self._reader.namespace_pods(ns)
                deployments = self._reader.namespace_deployments(ns)
                for s in services:
                    if s.namespace != ns:
                        continue
                    if s.argo_rollout:
                        stable, canary = argo_rollout_views(self._reader.argo_rollout(ns, s.argo_rollout), pods)
                        views[(ns, s.stable)] = stable
                        if s.canary:
                            views[(ns, s.canary)] = canary
                    for d in s.deployments():
                        if (ns, d) not in views:
                            views[(ns, d)] = self._reader.deployment_view(deployments.get(d), pods)
                    if s.router == "gatewayAPI" and s.http_route and (ns, s.http_route) not in routes:
                        routes[(ns, s.http_route)] = self._reader.http_route(ns, s.http_route)
        except Exception as e:  # keep the last known state; report the error in /state
            with self._lock:
                self._refresh_error = f"{type(e).__name__}: {e}"[:500]
            log.warning("apiserver poll failed: %s", e)
            return
        with self._lock:
            self._views = views
            self._routes = routes
            self._refresh_error = None
            self._last_refresh = time.time()
            for key, view in views.items():
                pods = self._counters.setdefault(key, {})
                # A pod that is no longer ready loses its counters: its server
                # restarted (or it is gone), as a real one would.
                alive = {p.name for p in view.ready_pods}
                for name in [n for n in pods if n not in alive]:
                    del pods[name]
            self._forget_unregistered()
            self._recompute_shares()

    def run(self, poll_interval: float = 0.5, tick_hz: float = 10.0) -> list[threading.Thread]:
        """Start the tick and poll threads (daemons; stop() ends them)."""

        def ticker() -> None:
            while not self._stop.wait(1.0 / tick_hz):
                try:
                    self.tick()
                except Exception:  # never let the clock die
                    log.exception("tick failed")

        def poller() -> None:
            while not self._stop.is_set():
                t0 = time.monotonic()
                self.refresh()
                self._stop.wait(max(0.05, poll_interval - (time.monotonic() - t0)))

        threads = [threading.Thread(target=ticker, name="tick", daemon=True),
                   threading.Thread(target=poller, name="poll", daemon=True)]
        for t in threads:
            t.start()
        return threads

    def stop(self) -> None:
        self._stop.set()

    # ---- reads ---------------------------------------------------------
    def snapshot(self) -> list[tuple[str, str, str, PodCounters]]:
        """(namespace, deployment, pod, counters) for every ready pod, deep-copied
        so the exposition is built outside the lock."""
        import copy

        with self._lock:
            out = []
            for (ns, dep), pods in sorted(self._counters.items()):
                view = self._views.get((ns, dep))
                if view is None or not view.exists:
                    continue
                for p in view.ready_pods:
                    c = pods.get(p.name)
                    if c is not None:
                        out.append((ns, dep, p.name, copy.deepcopy(c)))
            return out

    def model_digests(self) -> list[tuple[str, str, str, str]]:
        """(namespace, deployment, pod, digest) for every ready pod: what each server
        reports it loaded (its behaviour's model_digest, else what its pod declares)."""
        with self._lock:
            out = []
            for (ns, dep) in sorted(self._counters):
                view = self._views.get((ns, dep))
                if view is None or not view.exists:
                    continue
                for p in view.ready_pods:
                    digest = self.behaviour_for(ns, dep, p.image)[0].model_digest or p.model_digest
                    if digest is not None:
                        out.append((ns, dep, p.name, digest))
            return out

    def state(self) -> dict[str, Any]:
        """Everything a test may want to assert on, as JSON."""
        with self._lock:
            deployments: dict[str, Any] = {}
            for key in sorted(self._deployment_keys()):
                ns, dep = key
                view = self._views.get(key, DeploymentView(exists=False))
                pods = self._counters.get(key, {})
                deployments[f"{ns}/{dep}"] = {
                    "namespace": ns,
                    "deployment": dep,
                    "exists": view.exists,
                    "readyReplicas": view.ready_replicas,
                    "templateImage": view.template_image,
                    "share": self._shares.get(key, 0.0),
                    "offeredRps": self._offered.get(key, 0.0),
                    "droppedRps": self._dropped.get(key, 0.0),
                    "pods": [
                        {
                            "name": p.name,
                            "image": p.image,
                            "modelDigest": self.behaviour_for(ns, dep, p.image)[0].model_digest or p.model_digest,
                            "behaviour": self.behaviour_for(ns, dep, p.image)[1],
                            "requests": pods[p.name].requests if p.name in pods else 0,
                        }
                        for p in view.ready_pods
                    ],
                    "behaviour": self.behaviour_for(ns, dep, view.template_image)[0].to_json(),
                    "behaviourKey": self.behaviour_for(ns, dep, view.template_image)[1],
                }
            return {
                "services": [s.to_json() for s in self._services.values()],
                "deployments": deployments,
                "routes": {f"{ns}/{n}": {"exists": r.exists, "weights": r.weights, "mirrors": r.mirrors}
                           for (ns, n), r in self._routes.items()},
                "behaviours": {
                    f"{ns}/{dep}": {img: b.to_json() for img, b in by_img.items()}
                    for (ns, dep), by_img in self._behaviours.items()
                },
                "lastRefresh": self._last_refresh,
                "refreshError": self._refresh_error,
            }

    # ---- internals -----------------------------------------------------
    def _deployment_keys(self) -> set[tuple[str, str]]:
        return {(s.namespace, d) for s in self._services.values() for d in s.deployments()}

    def _forget_unregistered(self) -> None:
        keep = self._deployment_keys()
        for store in (self._counters, self._views, self._shares, self._offered, self._dropped):
            for key in [k for k in store if k not in keep]:
                del store[key]
        routes = {(s.namespace, s.http_route) for s in self._services.values() if s.http_route}
        for key in [k for k in self._routes if k not in routes]:
            del self._routes[key]

    def _recompute_shares(self) -> None:
        """Split each service's RPS by the router's observed state."""
        shares: dict[tuple[str, str], float] = {}
        offered: dict[tuple[str, str], float] = {}
        dropped: dict[tuple[str, str], float] = {}
        for s in self._services.values():
            ns = s.namespace
            weights: dict[str, float] = {}
            if s.router == "replicas":
                for d in s.deployments():
                    v = self._views.get((ns, d))
                    weights[d] = float(len(v.ready_pods)) if v and v.exists else 0.0
                total = sum(weights.values())
            else:
                route = self._routes.get((ns, s.http_route or ""))
                rw = route.weights if route and route.exists else {}
                backends = {s.stable: s.stable_backend or s.stable}
                if s.canary:
                    backends[s.canary] = s.canary_backend or s.canary
                for d, backend in backends.items():
                    weights[d] = float(rw.get(backend, 0))
                # Backends that are neither stable nor canary still take their share.
                total = float(sum(rw.values()))
                # A RequestMirror filter copies its share of the route's requests to a backend
                # (docs/shadow.md): served by it, answered to no one, dropped silently when it
                # has no ready pod (a gateway never fails a request for its mirror).
                for d, backend in backends.items():
                    copied = (route.mirrors.get(backend, 0.0) if route and route.exists else 0.0) / 100.0
                    v = self._views.get((ns, d))
                    if copied > 0 and v and v.exists and v.ready_pods:
                        offered[(ns, d)] = offered.get((ns, d), 0.0) + copied * s.rps
            for d, w in weights.items():
                share = w / total if total > 0 else 0.0
                key = (ns, d)
                shares[key] = shares.get(key, 0.0) + share
                v = self._views.get(key)
                if v and v.exists and v.ready_pods:
                    offered[key] = offered.get(key, 0.0) + share * s.rps
                else:
                    dropped[key] = dropped.get(key, 0.0) + share * s.rps
        self._shares, self._offered, self._dropped = shares, offered, dropped
