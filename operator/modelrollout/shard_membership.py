"""This replica's membership of the shard group: renew our Lease, list the others', every second.

docs/operator.md#sharding. The judgement — who is a member, which rollout is whose,
when this replica may act — is ``core/shards.py``; this module runs the renew-and-list
round on a timer, keeps the resulting view, and tells the rollouts' daemons when the
assignment may have changed. ``owns`` is asked before every reconcile, and by the
controller before every status write and every action (``Controller.may_act``), so a
replica that loses a rollout mid-reconcile stops at its next write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from .acting import writes_in_flight
from .core.shards import LeaseSeen, ShardTimings, ShardView, leave, observe
from .errors import ModelRolloutError
from .telemetry import OperatorMetrics

log = logging.getLogger("modelrollout.shards")


class LeaseStore(Protocol):
    """The group's Leases (``adapters/leases.py``; a dict in the unit tests)."""

    async def renew(self, identity: str, lease_seconds: float, now: datetime) -> bool: ...
    async def list(self) -> list[LeaseSeen]: ...
    async def mark_left(self, identity: str, now: datetime) -> None: ...
    async def delete(self, name: str, version: str | None = None) -> None: ...


def default_identity() -> str:
    """The pod's name (its host name) plus a random suffix: a restarted process is a new
    member, so its predecessor's Lease can never be mistaken for its own."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{secrets.token_hex(3)}"


class ShardMembership:
    def __init__(self, leases: LeaseStore, identity: str, wall_clock: Callable[[], datetime],
                 timings: ShardTimings = ShardTimings(), telemetry: OperatorMetrics | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.leases = leases
        self.identity = identity
        self.wall_clock = wall_clock
        self.timings = timings
        self.telemetry = telemetry
        self.monotonic = monotonic
        self.view = ShardView(identity=identity)
        self._changed = asyncio.Event()
        self._signature: tuple[tuple[str, ...], bool] = ((), False)
        self._failing = False

    # ------------------------------------------------------------------ asked by the daemons

    def owns(self, namespace: str, name: str) -> bool:
        return self.view.owns(f"{namespace}/{name}", self.monotonic(), self.timings)

    def acting(self) -> bool:
        return self.view.acting(self.monotonic(), self.timings)

    def change(self) -> asyncio.Event:
        """An event set at the next change of members or of ``acting`` (a fresh one after each)."""
        return self._changed

    # ------------------------------------------------------------------ the round

    async def round(self) -> ShardView:
        """List the group's Leases, then renew ours; fold the result into the view.

        The list comes first and a renewal only after it succeeded: a replica that cannot
        see the group must not stay alive in the others' eyes while it acts on nothing."""
        started = self.monotonic()
        renewed, created, leases = False, False, None
        try:
            leases = await self.leases.list()
        except ModelRolloutError as exc:
            self._report_failure(f"listing the group's Leases failed: {exc}")
        if leases is not None:
            try:
                created = await self.leases.renew(self.identity, self.timings.lease_seconds, self.wall_clock())
                renewed = True
            except ModelRolloutError as exc:
                self._report_failure(f"renewing the Lease failed: {exc}")
        if renewed and self._failing:
            self._failing = False
            log.info("shard %s: Lease renewed again", self.identity)
        before = self.view.members
        self.view = observe(self.view, leases, started_at=started, renewed=renewed, now=self.monotonic(),
                            timings=self.timings, created=created)
        if self.view.members != before:
            log.info("shard %s: members now %s", self.identity, ", ".join(self.view.members) or "none")
        await self._collect_stale()
        self._publish()
        return self.view

    def _report_failure(self, message: str) -> None:
        if not self._failing:
            log.warning("shard %s: %s; this replica stops acting %.0fs after its last renewal unless one succeeds",
                        self.identity, message, self.timings.fence_seconds)
        self._failing = True

    async def _collect_stale(self) -> None:
        for lease in self.view.stale(self.monotonic(), self.timings):
            try:
                await self.leases.delete(lease.name, lease.version)
                log.info("shard %s: deleted the Lease of %s, unchanged for %.0fs", self.identity, lease.holder,
                         10 * self.timings.lease_seconds)
            except ModelRolloutError:
                pass  # renewed meanwhile (409), or another member deleted it first

    def _publish(self) -> None:
        """Wake the daemons when the assignment may have changed; update the gauges."""
        acting = self.acting()
        signature = (self.view.members, acting)
        if signature != self._signature:
            if acting != self._signature[1]:
                log.info("shard %s: %s", self.identity, "acting" if acting else "not acting")
            self._signature = signature
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        if self.telemetry is not None:
            self.telemetry.shard_members.set(len(self.view.members))
            self.telemetry.shard_acting.set(1.0 if acting else 0.0)

    async def run(self) -> None:
        """Rounds every ``renew_seconds`` until cancelled (``leave`` then hands the rollouts on)."""
        while True:
            started = self.monotonic()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 — membership must outlive one bad round; the fence covers it
                log.exception("shard %s: membership round failed (an operator error)", self.identity)
            await asyncio.sleep(max(0.05, self.timings.renew_seconds - (self.monotonic() - started)))
            self._publish()  # the fence or the join grace may have moved between rounds

    async def leave(self, drain_seconds: float = 10.0) -> None:
        """Stop acting, wait for the writes still in flight in worker threads (a cancelled
        daemon does not stop its thread's request), then mark our Lease as left so the
        others take our rollouts at their next round instead of waiting for it to lapse."""
        self.view = leave(self.view)
        self._publish()
        deadline = self.monotonic() + drain_seconds
        while writes_in_flight() and self.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if writes_in_flight():
            log.warning("shard %s: %d write(s) still in flight after %.0fs; not marking the Lease as left, "
                        "the others take over once it lapses", self.identity, writes_in_flight(), drain_seconds)
            return
        log.info("shard %s: left the group at %.3f: acting on nothing from now on", self.identity, time.time())
        try:
            await self.leases.mark_left(self.identity, self.wall_clock())
        except ModelRolloutError as exc:
            log.warning("shard %s: could not mark its Lease as left (%s); the others take over once it lapses",
                        self.identity, exc)


__all__ = ["LeaseStore", "ShardMembership", "default_identity"]
