"""A typed client for the simulator's control API, so tests say what they mean
(`sim.set_behaviour(ns, "fraud-canary", latency_ms={"median": 3, "p95": 6})`)
instead of hand-building HTTP requests.

Standard library only: it is also handy from a REPL next to a running cluster.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode


class SimulatorError(RuntimeError):
    """The simulator answered with an error; the message is its JSON error text."""


class SimulatorClient:
    """Wraps POST /services, PUT /behaviour/{ns}/{deployment}, GET /state, ..."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except (json.JSONDecodeError, AttributeError):
                pass
            raise SimulatorError(f"{method} {path}: HTTP {e.code}: {text}") from None
        return json.loads(raw) if raw else None

    # -- services --
    def register_service(
        self,
        name: str,
        namespace: str,
        stable: str,
        canary: str | None = None,
        router: str = "replicas",
        rps: float = 100.0,
        http_route: str | None = None,
        stable_backend: str | None = None,
        canary_backend: str | None = None,
        argo_rollout: str | None = None,
    ) -> dict[str, Any]:
        """Register (or replace) a service: stable + canary Deployments whose
        traffic shares follow `router` ("replicas" or "gatewayAPI").

        With `argo_rollout`, `stable` and `canary` name the metrics of that Argo
        Rollout's stable and canary ReplicaSets instead of Deployments. A
        simulator too old to know the field echoes no "argoRollout" back."""
        body: dict[str, Any] = {
            "name": name, "namespace": namespace, "stable": stable, "canary": canary,
            "router": router, "rps": rps,
        }
        if http_route:
            body["httpRoute"] = http_route
        if stable_backend:
            body["stableBackend"] = stable_backend
        if canary_backend:
            body["canaryBackend"] = canary_backend
        if argo_rollout:
            body["argoRollout"] = argo_rollout
        return self._call("POST", "/services", body)

    def remove_service(self, namespace: str, name: str) -> None:
        self._call("DELETE", f"/services/{quote(namespace)}/{quote(name)}")

    # -- behaviour --
    def set_behaviour(self, namespace: str, deployment: str, image: str | None = None,
                      **behaviour: Any) -> dict[str, Any]:
        """Replace the behaviour of `deployment` ("*" = any in the namespace),
        optionally only for pods running `image`. Fields: latency_ms,
        error_rates, label_fraction, label_delay_s, accuracy, confidence_beta, cache_hit_rate,
        cache_lookups_per_request, evictions_per_minute, cache_lookup_ms,
        throughput_factor, model_digest (what model_info reports whatever the pod
        declares); absent ones take the healthy defaults."""
        body = dict(behaviour)
        if image is not None:
            body["image"] = image
        return self._call("PUT", f"/behaviour/{quote(namespace)}/{quote(deployment, safe='*')}", body)

    def clear_behaviour(self, namespace: str, deployment: str, image: str | None = None) -> None:
        path = f"/behaviour/{quote(namespace)}/{quote(deployment, safe='*')}"
        if image:
            path += "?" + urlencode({"image": image})
        self._call("DELETE", path)

    # -- housekeeping / reads --
    def forget_namespace(self, namespace: str) -> None:
        """Drop every service and behaviour of a namespace."""
        self._call("DELETE", f"/namespaces/{quote(namespace)}")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")

    def deployment_state(self, namespace: str, deployment: str) -> dict[str, Any] | None:
        return self.state()["deployments"].get(f"{namespace}/{deployment}")

    def healthy(self) -> bool:
        try:
            req = urllib.request.Request(self.base_url + "/healthz")
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status == 200
        except OSError:
            return False
