"""What kopf peers through, and the apiserver's answers about it: the data start-up works on.

``StartupApi`` is the three questions start-up asks (a CRD's state, whether a peering
object exists, what creating it gives); its answers are values, never exceptions, so
every decision is tested with a small fake. ``kube.py`` asks them of the real apiserver.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from ..api.models import API_GROUP, PLURAL

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
ROLLOUT_CRD = f"{PLURAL}.{API_GROUP}"
ROLLOUT_CRD_FILE = "crds/modelrollout.io_modelrollouts.yaml"
PEERING_CRD_FILE = "crds/kopf-peering.yaml"


# ------------------------------------------------------------------------ answers


class CrdState(StrEnum):
    ESTABLISHED = "established"
    PENDING = "pending"
    """Created but not yet Established: its objects cannot be created or watched yet."""
    ABSENT = "absent"
    UNKNOWN = "unknown"
    """Could not tell: listing CRDs was refused, or the apiserver failed."""


class Presence(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    UNKNOWN = "unknown"


class Creation(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    """409: someone (another replica, the chart) created it first — as good as created."""
    FORBIDDEN = "forbidden"
    NOT_SERVED = "not served"
    """404: its CRD is not served (yet), or its namespace does not exist."""
    FAILED = "failed"

    def is_there(self) -> bool:
        return self in (Creation.CREATED, Creation.EXISTS)


S = TypeVar("S", CrdState, Presence, Creation)


@dataclass(frozen=True, slots=True)
class Answer(Generic[S]):
    """One answer of the apiserver: a state, and the apiserver's own words when it refused or failed."""

    state: S
    detail: str = ""


# ------------------------------------------------------------------------ what kopf needs


class PeeringKind(StrEnum):
    CLUSTER = "ClusterKopfPeering"
    NAMESPACED = "KopfPeering"

    @property
    def plural(self) -> str:
        return f"{self.value.lower()}s"

    @property
    def crd(self) -> str:
        return f"{self.plural}.{PEERING_GROUP}"


@dataclass(frozen=True, slots=True)
class PeeringObject:
    """The object kopf peers through: one ClusterKopfPeering when the operator watches
    every namespace, one KopfPeering in each namespace when it watches named ones."""

    kind: PeeringKind
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.namespace}/{self.name}" if self.namespace else f"{self.kind.value} {self.name}"

    def manifest(self) -> dict[str, Any]:
        metadata: dict[str, str] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": self.kind.value, "metadata": metadata}

    def create_command(self) -> str:
        """A shell command that creates it, for logs and the health endpoint (idempotent: apply)."""
        return f"echo '{json.dumps(self.manifest(), separators=(',', ':'))}' | kubectl apply -f -"


def is_namespace_pattern(namespace: str) -> bool:
    """kopf's namespace patterns (globs, negations, lists): no single KopfPeering to check."""
    return any(c in namespace for c in "!*?,")


def peering_objects(peering_name: str, namespaces: Iterable[str]) -> tuple[PeeringObject, ...]:
    """What kopf will wait for: cluster-wide one ClusterKopfPeering, else one KopfPeering per
    named namespace (patterns are kopf's business: it peers in whatever matches)."""
    names = tuple(namespaces)
    if not names:
        return (PeeringObject(PeeringKind.CLUSTER, peering_name),)
    return tuple(PeeringObject(PeeringKind.NAMESPACED, peering_name, ns)
                 for ns in dict.fromkeys(names) if not is_namespace_pattern(ns))


def peering_kind(namespaces: Iterable[str]) -> PeeringKind:
    """kopf peers cluster-wide only when it watches every namespace."""
    return PeeringKind.NAMESPACED if tuple(namespaces) else PeeringKind.CLUSTER


class StartupApi(Protocol):
    """The three questions start-up asks the apiserver; answers, never exceptions."""

    def crd(self, name: str) -> Answer[CrdState]: ...
    def find(self, obj: PeeringObject) -> Answer[Presence]: ...
    def create(self, obj: PeeringObject) -> Answer[Creation]: ...
