"""``StartupApi`` on the real apiserver: the only start-up code that talks to the cluster.

It lists with a field selector rather than GETting one object: the chart grants
list/watch/patch on peering objects and list/watch on CRDs (what kopf itself needs),
and no get.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from .peering import PEERING_GROUP, PEERING_VERSION, Answer, CrdState, Creation, PeeringObject, Presence


class KubeStartupApi:
    """``StartupApi`` on the kubernetes client: raw JSON (no typed models to trip over
    fields newer than the client), short timeouts, errors turned into answers."""

    def __init__(self, api_client: Any, request_timeout: float = 5.0) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout

    def _call(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
              body: Any = None) -> tuple[int, Any]:
        """(HTTP status, parsed body); status 0 when the apiserver could not be reached."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            params = self.api_client.param_serialize(method=method, resource_path=path, query_params=query or None,
                                                     header_params=headers, body=body, auth_settings=["BearerToken"])
            response = self.api_client.call_api(*params, _request_timeout=self.request_timeout)
            raw = response.read()
        except Exception as exc:  # noqa: BLE001 — connection errors, timeouts: an answer, not a crash
            return 0, f"apiserver unreachable: {type(exc).__name__}: {exc}"
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return int(response.status), data

    @staticmethod
    def _detail(status: int, data: Any) -> str:
        message = data.get("message") if isinstance(data, dict) else data
        return f"{status}: {message}" if status else str(message)

    def _list_by_name(self, path: str, name: str) -> tuple[int, Any]:
        return self._call("GET", path, [("fieldSelector", f"metadata.name={name}")])

    def crd(self, name: str) -> Answer[CrdState]:
        status, data = self._list_by_name("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", name)
        if status != 200 or not isinstance(data, dict):
            return Answer(CrdState.UNKNOWN, f"listing CRDs: {self._detail(status, data)}")
        items = data.get("items") or []
        if not items:
            return Answer(CrdState.ABSENT)
        conditions = (items[0].get("status") or {}).get("conditions") or []
        established = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
        return Answer(CrdState.ESTABLISHED if established else CrdState.PENDING)

    @staticmethod
    def _path(obj: PeeringObject) -> str:
        base = f"/apis/{PEERING_GROUP}/{PEERING_VERSION}"
        if obj.namespace:
            return f"{base}/namespaces/{quote(obj.namespace)}/{obj.kind.plural}"
        return f"{base}/{obj.kind.plural}"

    def find(self, obj: PeeringObject) -> Answer[Presence]:
        status, data = self._list_by_name(self._path(obj), obj.name)
        if status != 200 or not isinstance(data, dict):
            return Answer(Presence.UNKNOWN, self._detail(status, data))
        return Answer(Presence.PRESENT if data.get("items") else Presence.ABSENT)

    def create(self, obj: PeeringObject) -> Answer[Creation]:
        status, data = self._call("POST", self._path(obj), body=obj.manifest())
        state = {201: Creation.CREATED, 200: Creation.CREATED, 409: Creation.EXISTS, 403: Creation.FORBIDDEN,
                 404: Creation.NOT_SERVED}.get(status, Creation.FAILED)
        return Answer(state, "" if state.is_there() else self._detail(status, data))
