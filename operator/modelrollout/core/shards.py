"""Which replica drives which rollout: rendezvous hashing over the replicas whose Lease lives.

docs/operator.md#sharding. With ``--shards`` every replica keeps one Kubernetes Lease
and renews it; the members are the replicas whose Lease changed recently, and a rollout
belongs to the member with the highest ``hash(member, namespace/name)`` (rendezvous
hashing). That choice moves only what must move: a member that leaves hands on exactly
its own rollouts, and one that joins takes only rollouts it now wins; nobody else's
assignment changes.

*Never two at once* rests on three timings, the scheme of client-go's leader election
(lease 15 s, renew deadline 10 s) applied per member:

* **lapse** — a member counts as gone when its Lease has not changed for
  ``lease_seconds`` *by the observer's own clock* (from the end of the round in which it
  saw the change to the start of the round that finds none, so a slow list cannot make
  a live member look lapsed; clock skew between nodes does not matter). A Lease that
  vanishes (deleted by hand) lapses the same way: only a Lease its holder marked as left
  is gone at once;
* **fence** — a member acts only while its last confirmed round began less than
  ``fence_seconds`` ago; ``lease_seconds − fence_seconds`` is the margin for a request
  already in flight when it fences, and a round that took longer than that margin
  confirms nothing;
* **join grace** — a member that (re)joins acts only ``join_grace_seconds`` after its
  Lease certainly exists: by then every other member has seen it (within one round) or
  has fenced itself, with the same margin for requests in flight. A member rejoins when
  its Lease had to be created again, or when its last confirmed round is a fence time
  old (the others may have seen it lapse).

Pure: times are monotonic seconds passed in; the Lease I/O is ``adapters/leases.py``, the
loop that drives it ``shard_membership.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class ShardTimings:
    """The Lease timings (docs/operator.md#sharding). With the defaults a killed replica's
    rollouts move within ``lease_seconds`` plus about two rounds: ~12 s."""

    lease_seconds: float = 10.0
    renew_seconds: float = 1.0
    fence_seconds: float = 5.0
    join_grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_seconds < self.fence_seconds < self.lease_seconds:
            raise ValueError("shard timings: need 0 < renew_seconds < fence_seconds < lease_seconds, got "
                             f"{self.renew_seconds}, {self.fence_seconds}, {self.lease_seconds}")
        if self.join_grace_seconds < self.lease_seconds:
            raise ValueError("shard timings: join_grace_seconds must be at least lease_seconds "
                             f"({self.lease_seconds}), got {self.join_grace_seconds}")

    @property
    def margin_seconds(self) -> float:
        """Time between a member's fence and its lapse in the others' eyes: for requests in flight."""
        return self.lease_seconds - self.fence_seconds


@dataclass(frozen=True, slots=True)
class LeaseSeen:
    """One member's Lease as listed: its holder, a value that changes on every renewal (the
    object's resourceVersion), its object name, and whether its holder marked it as left."""

    holder: str
    version: str
    name: str = ""
    left: bool = False


@dataclass(frozen=True, slots=True)
class Sighting:
    """What an observer last saw of one member's Lease, and when it changed (its own monotonic time)."""

    lease: LeaseSeen
    changed_at: float


@dataclass(frozen=True, slots=True)
class ShardView:
    """One replica's knowledge of the group, as of its last renew-and-list round."""

    identity: str
    members: tuple[str, ...] = ()
    """Live members, sorted; this replica included while it is a member in its own eyes."""
    confirmed_at: float | None = None
    """Monotonic start of the last confirmed round (list and renewal succeeded, in time)."""
    joined_at: float | None = None
    """When this replica's Lease certainly existed for its current membership (None: not a member, or left)."""
    sightings: Mapping[str, Sighting] = field(default_factory=dict)
    left: bool = False

    def acting(self, now: float, timings: ShardTimings) -> bool:
        """Whether this replica may act on anything at all at ``now``."""
        return (not self.left and self.confirmed_at is not None and self.joined_at is not None
                and now - self.confirmed_at < timings.fence_seconds
                and now - self.joined_at >= timings.join_grace_seconds)

    def owner(self, key: str) -> str | None:
        """The member a rollout (``namespace/name``) belongs to in this view."""
        return owner_of(key, self.members)

    def owns(self, key: str, now: float, timings: ShardTimings) -> bool:
        return self.acting(now, timings) and self.owner(key) == self.identity

    def stale(self, now: float, timings: ShardTimings) -> list[LeaseSeen]:
        """Other members' Leases unchanged for ten lease times: leftovers of replicas that
        stopped or restarted under a new identity, to delete (on condition that the
        version is still this one)."""
        return [seen.lease for holder, seen in self.sightings.items()
                if holder != self.identity and seen.lease.name and now - seen.changed_at > 10 * timings.lease_seconds]


def owner_of(key: str, members: Sequence[str]) -> str | None:
    """Rendezvous (highest random weight) hashing: the member with the largest
    ``blake2b(member, key)``. Stable across processes and Python versions (not ``hash()``)."""
    best: tuple[bytes, str] | None = None
    encoded = key.encode()
    for member in members:
        weight = hashlib.blake2b(member.encode() + b"\0" + encoded, digest_size=8).digest()
        if best is None or (weight, member) > best:
            best = (weight, member)
    return best[1] if best is not None else None


def observe(view: ShardView, leases: Iterable[LeaseSeen] | None, *, started_at: float, renewed: bool,
            now: float, timings: ShardTimings, created: bool = False) -> ShardView:
    """The view after one round that ran from ``started_at`` to ``now``: ``leases`` the
    group's Leases as listed (None: the list failed), ``renewed`` whether this replica's
    renewal then succeeded, ``created`` whether it had to create its Lease anew.

    A round without a list changes nothing but time: the fence closes by itself. A
    failed renewal keeps this replica in its own members (the fence stops it acting;
    dropping it would hand its rollouts around for one round)."""
    if view.left or leases is None:
        return view
    sightings = dict(view.sightings)
    for lease in leases:
        seen = sightings.get(lease.holder)
        if seen is None or seen.lease != lease:
            sightings[lease.holder] = Sighting(lease, now)
    # Judged at the round's start: the list ran after it, so "unchanged since" is certain then.
    live = {holder for holder, seen in sightings.items()
            if not seen.lease.left and started_at - seen.changed_at <= timings.lease_seconds}
    for holder, seen in list(sightings.items()):
        if holder != view.identity and started_at - seen.changed_at > 20 * timings.lease_seconds:
            del sightings[holder]  # gone long ago, and its Lease with it (or left for others to collect)
    if view.joined_at is not None or renewed:
        live.add(view.identity)
    else:
        live.discard(view.identity)
    members = tuple(sorted(live))
    confirmed = renewed and now - started_at < timings.margin_seconds
    if not confirmed:
        return replace(view, members=members, sightings=sightings)
    rejoin = (created or view.joined_at is None or view.confirmed_at is None
              or now - view.confirmed_at >= timings.fence_seconds)
    return replace(view, members=members, sightings=sightings, confirmed_at=started_at,
                   joined_at=now if rejoin else view.joined_at)


def leave(view: ShardView) -> ShardView:
    """Stop acting at once (a clean shutdown, before the Lease is marked as left)."""
    return replace(view, left=True, joined_at=None, members=tuple(m for m in view.members if m != view.identity))


__all__ = ["LeaseSeen", "ShardTimings", "ShardView", "Sighting", "leave", "observe", "owner_of"]
