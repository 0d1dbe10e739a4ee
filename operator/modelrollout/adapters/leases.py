"""The shard group's Leases (coordination.k8s.io/v1) on the API server.

One Lease per replica, named ``<group>-<hash of its identity>``, labelled
``modelrollout.io/shard-group=<group>`` and annotated with its holder, in the operator's
namespace. A renewal is a merge patch of ``spec.renewTime`` (created on 404); listing
the group by label gives every member's ``resourceVersion``, which is what the others
watch change
(``core/shards.py``: lapse is judged by the observer's own clock, never by the time
written). ``kubectl get leases -l modelrollout.io/shard-group`` shows the members.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from urllib.parse import quote

from ..core.shards import LeaseSeen
from .kubeapi import KubeApi, NotFound

GROUP_LABEL = "modelrollout.io/shard-group"
HOLDER_ANNOTATION = "modelrollout.io/shard-holder"
LEFT_ANNOTATION = "modelrollout.io/shard-left"
"""Set by a replica that stopped cleanly: the others take its rollouts at their next round
instead of waiting for its Lease to lapse."""


def lease_name(group: str, identity: str) -> str:
    """``<group>-<hash of the identity>``: unique per identity whatever its length (a pod
    name can exceed what a name may hold once the group is prefixed)."""
    digest = hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()
    prefix = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in group.lower()).strip("-")[:40] or "shard"
    return f"{prefix}-{digest}"


class KubeLeases:
    """The verbs ``ShardMembership`` uses: renew its own Lease, list the group's, mark its
    own as left, delete one."""

    def __init__(self, api: KubeApi, namespace: str, group: str) -> None:
        self.api = api
        self.namespace = namespace
        self.group = group

    def _path(self, name: str | None = None) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace)}/leases"
        return base if name is None else f"{base}/{quote(name)}"

    async def renew(self, identity: str, lease_seconds: float, now: datetime) -> bool:
        """Touch this replica's Lease; True when it had to be created (first round, or
        someone deleted it: either way the others may not count us yet)."""
        name = lease_name(self.group, identity)
        stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": identity, "leaseDurationSeconds": max(1, round(lease_seconds)), "renewTime": stamp}
        what = f"Lease {self.namespace}/{name}"
        try:
            await self.api.request("PATCH", self._path(name), what, body={"spec": spec},
                                   content_type="application/merge-patch+json")
            return False
        except NotFound:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": self.namespace, "labels": {GROUP_LABEL: self.group},
                                 "annotations": {HOLDER_ANNOTATION: identity}},
                    "spec": {**spec, "acquireTime": stamp}}
            await self.api.request("POST", self._path(), what, body=body)
            return True

    async def list(self) -> list[LeaseSeen]:
        """Every member's Lease: holder, resourceVersion, name, and whether it left."""
        data = await self.api.request("GET", self._path(), f"Leases of shard group {self.group}",
                                      query=[("labelSelector", f"{GROUP_LABEL}={self.group}")])
        seen = []
        for item in data.get("items") or []:
            meta = item.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            holder = annotations.get(HOLDER_ANNOTATION) or (item.get("spec") or {}).get("holderIdentity")
            if holder:
                seen.append(LeaseSeen(holder=holder, version=str(meta.get("resourceVersion") or ""),
                                      name=str(meta.get("name") or ""), left=LEFT_ANNOTATION in annotations))
        return seen

    async def mark_left(self, identity: str, now: datetime) -> None:
        """Say in our Lease that we stopped acting: the others drop us at their next round."""
        name = lease_name(self.group, identity)
        stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.api.request("PATCH", self._path(name), f"Lease {self.namespace}/{name}",
                               body={"metadata": {"annotations": {LEFT_ANNOTATION: stamp}}},
                               content_type="application/merge-patch+json")

    async def delete(self, name: str, version: str | None = None) -> None:
        """Remove a Lease; with ``version``, only if nobody renewed it since (409 otherwise)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                **({"preconditions": {"resourceVersion": version}} if version else {})}
        try:
            await self.api.request("DELETE", self._path(name), f"Lease {self.namespace}/{name}", body=body)
        except NotFound:
            pass


__all__ = ["GROUP_LABEL", "LEFT_ANNOTATION", "KubeLeases", "lease_name"]
