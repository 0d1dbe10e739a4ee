"""Reading ModelRollouts and writing their status through the API server.

Status is written with a JSON merge patch of the whole status object: ``null`` values
remove fields that the machine cleared, and lists (conditions, history) are replaced as
a whole, which is what we want for them.

Every call has a request timeout: without one, a connection the apiserver never answers
would hold the rollout's lock (and a worker thread) forever, and its loop would wedge.
Client errors are translated by :func:`.kubeapi.translate`, the one apiserver error
mapping; only a read's 404 is not an error here (the rollout is gone: ``None``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from ..acting import write_in_flight
from ..api.models import API_GROUP, API_VERSION, PLURAL
from .kubeapi import translate


class RolloutStore:
    def __init__(self, api: k8s.ApiClient, request_timeout: float = 10.0,
                 on_request: Callable[[str], None] | None = None) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self._timeout = request_timeout
        self._on_request = on_request or (lambda verb: None)

    async def read(self, ref: Any) -> dict[str, Any] | None:
        """The resource as the API server has it now; None when it is gone."""
        self._on_request("GET")
        try:
            return await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, API_GROUP, API_VERSION, ref.namespace, PLURAL, ref.name,
                _request_timeout=self._timeout)
        except (ApiException, HTTPError, OSError) as exc:
            if isinstance(exc, ApiException) and exc.status == 404:
                return None
            raise translate(exc, f"ModelRollout {ref.namespace}/{ref.name}") from None

    async def write_status(self, ref: Any, status: dict[str, Any] | None) -> None:
        def patch() -> None:
            with write_in_flight():  # a clean stop with --shards waits for it (acting.py)
                self._custom.patch_namespaced_custom_object_status(
                    API_GROUP, API_VERSION, ref.namespace, PLURAL, ref.name, {"status": status},
                    _request_timeout=self._timeout)

        self._on_request("PATCH")
        try:
            await asyncio.to_thread(patch)
        except (ApiException, HTTPError, OSError) as exc:
            raise translate(exc, f"status of ModelRollout {ref.namespace}/{ref.name}") from None
