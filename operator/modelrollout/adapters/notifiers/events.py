"""Kubernetes Events on the ModelRollout: what ``kubectl describe mro`` and ``kubectl get events`` show.

A plain client-based recorder rather than ``kopf.event()``: kopf's needs a handler
context, and Events are also posted from the fast path and the pod watch. It writes
``core/v1`` Events (what ``kubectl describe`` lists), with the ModelRollout as
``involvedObject`` and ``modelrollout`` as the reporting component.

Best effort by design: a failed Event is logged and dropped, never raised, so an
apiserver hiccup cannot stall a rollback (the status and its history remain the
record of truth).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from kubernetes.client import ApiClient

from ...api.models import API_GROUP, API_VERSION, KIND
from ...core.actions import EmitEvent, EventType
from ..kubeapi import KubeApi

log = logging.getLogger("modelrollout.events")

COMPONENT = "modelrollout"
MESSAGE_LIMIT = 1024


class ObjectRef(Protocol):
    """The ModelRollout an Event is about (the controller's ``RolloutRef`` fits)."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def uid(self) -> str: ...


def _timestamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(ref: ObjectRef, type_: EventType | str, reason: str, message: str, at: datetime,
               instance: str) -> dict[str, Any]:
    """A core/v1 Event about ``ref``."""
    stamp = _timestamp(at)
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
        "involvedObject": {
            "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
            "name": ref.name, "namespace": ref.namespace, "uid": ref.uid,
        },
        "type": str(type_),
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Posts Events; ``emit`` matches the controller's ``EventSink``."""

    def __init__(self, api: ApiClient | KubeApi, now: Callable[[], datetime], instance: str | None = None) -> None:
        self._api = api if isinstance(api, KubeApi) else KubeApi(api)
        self._now = now
        self._instance = instance or socket.gethostname()

    async def emit(self, ref: ObjectRef, event: EmitEvent) -> None:
        await self.record(ref, event.type, event.reason, event.message)

    async def record(self, ref: ObjectRef, type_: EventType | str, reason: str, message: str) -> None:
        body = event_body(ref, type_, reason, message, self._now(), self._instance)
        try:
            await self._api.create_event(ref.namespace, body)
        except Exception as exc:  # noqa: BLE001 - Events are best effort
            log.warning("Event %s on %s/%s not recorded: %s", reason, ref.namespace, ref.name, exc)
