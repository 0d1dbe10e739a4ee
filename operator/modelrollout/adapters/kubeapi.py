"""The few apiserver calls the operator makes, as raw JSON, with errors translated.

Why raw JSON rather than the client's typed methods: the operator records the stable's
pod template and later restores it *exactly*. The typed models of the ``kubernetes``
client (v37) are pydantic models that forbid unknown fields, so a template carrying a
field newer than the client would fail to round-trip, and any model round-trip risks
dropping or renaming something. Here the body read is the body written, byte for byte
in meaning. The ``ApiClient`` still provides configuration, TLS, auth and pooling.

Every call runs in a worker thread (the client is synchronous) and translates
``ApiException`` and transport errors at this boundary (STYLE: ``map_exceptions``).
:func:`translate` is the operator's one apiserver error mapping; ``rollouts.py`` (the
ModelRollout reads and status writes) uses it too:

* 404 -> :class:`NotFound` (a :class:`ClusterConflict`) naming the object;
* 409 -> :class:`Conflict` (a :class:`ClusterConflict`); read-modify-write callers
  retry it a few times (:func:`retry_conflicts`) before letting it through;
* 429, 5xx, timeouts and connection errors -> :class:`ClusterUnavailable`;
* any other 4xx (403 RBAC, 422 invalid) -> :class:`Refused` (a :class:`ClusterConflict`)
  with the apiserver's message.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from ..acting import ensure_may_act, write_in_flight
from ..errors import ClusterConflict, ClusterUnavailable

log = logging.getLogger("modelrollout.kube")

Json = dict[str, Any]
T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
CONFLICT_RETRIES = 5
"""Attempts of a read-modify-write that keeps losing the optimistic-concurrency race."""


class NotFound(ClusterConflict):
    """The object does not exist (HTTP 404)."""


class Conflict(ClusterConflict):
    """Someone else wrote the object between our read and our write (HTTP 409)."""


class Refused(ClusterConflict):
    """The apiserver rejected the request itself (400/403/422: invalid, forbidden)."""


def _message_of(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return str(body)
    return str(exc.reason or "")


def translate(exc: BaseException, what: str) -> Exception:
    """The package's error for a client failure on ``what`` (e.g. ``Deployment ml/fraud``)."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        detail = _message_of(exc)
        if status == 404:
            return NotFound(f"{what} not found")
        if status == 409:
            return Conflict(f"{what}: conflict (409): {detail}")
        if status == 429 or status >= 500 or status == 0:
            return ClusterUnavailable(f"{what}: apiserver answered {status}: {detail}")
        return Refused(f"{what}: apiserver refused ({status}): {detail}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError)):
        return ClusterUnavailable(f"{what}: apiserver unreachable: {type(exc).__name__}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


async def retry_conflicts(attempt: Callable[[], Awaitable[T]], what: str,
                          retries: int = CONFLICT_RETRIES) -> T:
    """Run a read-modify-write ``attempt`` again while it loses a 409 race."""
    for n in range(1, retries + 1):
        try:
            return await attempt()
        except Conflict:
            if n == retries:
                raise
            log.debug("%s: 409 conflict, re-reading (attempt %d/%d)", what, n, retries)
            await asyncio.sleep(0.05 * n)
    raise AssertionError("unreachable")


class KubeApi:
    """A narrow JSON client: the verbs the executor, routers and event recorder use.

    Small enough to fake in a test with a dict of objects; paths are the plain REST
    paths of the Kubernetes API.
    """

    def __init__(self, api_client: ApiClient, request_timeout: float = 10.0,
                 executor: ThreadPoolExecutor | None = None,
                 on_request: Callable[[str], None] | None = None) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        self.executor = executor
        """Threads for the calls; None: the loop's default executor (a pool of its own keeps
        the shard group's Lease rounds from queueing behind the rollouts' calls)."""
        self.on_request = on_request
        """Called with the HTTP verb of every call (the operator's API-call counter)."""

    # ----------------------------------------------------------------- generic verbs

    def _request_sync(self, method: str, path: str, query: list[tuple[str, str]] | None,
                      body: Any, content_type: str) -> Json:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.api_client.param_serialize(
            method=method, resource_path=path, query_params=query or None, header_params=headers,
            body=body, auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*params, _request_timeout=self.request_timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(data) if data else {}

    async def request(self, method: str, path: str, what: str, *, query: list[tuple[str, str]] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Json:
        """One call in a worker thread; client errors come back as the package's errors.

        Inside an action, only while this replica may still act for its rollout
        (``acting.ensure_may_act``, --shards)."""
        ensure_may_act(what)
        if self.on_request is not None:
            self.on_request(method)
        writes = method != "GET"

        def call() -> Json:
            if not writes:
                return self._request_sync(method, path, query, body, content_type)
            with write_in_flight():
                return self._request_sync(method, path, query, body, content_type)

        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, contextvars.copy_context().run, call)
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise translate(exc, what) from exc

    # ----------------------------------------------------------------- Deployments

    @staticmethod
    def _deployment_path(ns: str, name: str | None = None) -> str:
        base = f"/apis/apps/v1/namespaces/{quote(ns)}/deployments"
        return base if name is None else f"{base}/{quote(name)}"

    async def read_deployment(self, ns: str, name: str) -> Json:
        return await self.request("GET", self._deployment_path(ns, name), f"Deployment {ns}/{name}")

    async def create_deployment(self, ns: str, body: Json) -> Json:
        name = body.get("metadata", {}).get("name", "?")
        return await self.request("POST", self._deployment_path(ns), f"Deployment {ns}/{name}", body=body)

    async def replace_deployment(self, ns: str, name: str, body: Json) -> Json:
        """PUT with the body's resourceVersion: a concurrent write yields :class:`Conflict`."""
        return await self.request("PUT", self._deployment_path(ns, name), f"Deployment {ns}/{name}", body=body)

    async def patch_deployment(self, ns: str, name: str, patch: Json) -> Json:
        """JSON merge patch (RFC 7386) of the Deployment."""
        return await self.request("PATCH", self._deployment_path(ns, name), f"Deployment {ns}/{name}",
                                  body=patch, content_type=MERGE_PATCH)

    async def scale_deployment(self, ns: str, name: str, replicas: int) -> Json:
        """Merge-patch the ``scale`` subresource (touches nothing but the replica count)."""
        return await self.request("PATCH", self._deployment_path(ns, name) + "/scale", f"Deployment {ns}/{name}",
                                  body={"spec": {"replicas": replicas}}, content_type=MERGE_PATCH)

    async def list_replicasets(self, ns: str, selector: str) -> list[Json]:
        result = await self.request("GET", f"/apis/apps/v1/namespaces/{quote(ns)}/replicasets",
                                    f"ReplicaSets in {ns} ({selector})", query=[("labelSelector", selector)])
        return list(result.get("items") or [])

    # ----------------------------------------------------------------- Pods, Events

    async def list_pods(self, ns: str, selector: str) -> list[Json]:
        result = await self.request("GET", f"/api/v1/namespaces/{quote(ns)}/pods", f"Pods in {ns} ({selector})",
                                    query=[("labelSelector", selector)])
        return list(result.get("items") or [])

    async def read_service(self, ns: str, name: str) -> Json:
        return await self.request("GET", f"/api/v1/namespaces/{quote(ns)}/services/{quote(name)}", f"Service {ns}/{name}")

    async def create_event(self, ns: str, body: Json) -> Json:
        return await self.request("POST", f"/api/v1/namespaces/{quote(ns)}/events", f"Event in {ns}", body=body)

    # ----------------------------------------------------------------- HTTPRoutes

    @staticmethod
    def _route_path(ns: str, name: str) -> str:
        return f"/apis/gateway.networking.k8s.io/v1/namespaces/{quote(ns)}/httproutes/{quote(name)}"

    async def read_httproute(self, ns: str, name: str) -> Json:
        return await self.request("GET", self._route_path(ns, name), f"HTTPRoute {ns}/{name}")

    async def replace_httproute(self, ns: str, name: str, body: Json) -> Json:
        return await self.request("PUT", self._route_path(ns, name), f"HTTPRoute {ns}/{name}", body=body)
