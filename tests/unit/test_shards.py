"""Sharding by Leases: who owns what (rendezvous hashing), lapse, fence and join grace
(``core/shards.py``), and the renew-and-list loop over a fake Lease store
(``shard_membership.py``). docs/operator.md#sharding."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrollout.core.shards import LeaseSeen, ShardTimings, ShardView, leave, observe, owner_of
from modelrollout.errors import ClusterUnavailable
from modelrollout.shard_membership import ShardMembership

T = ShardTimings()
KEYS = [f"ns-{i % 7}/rollout-{i}" for i in range(3000)]


def test_rollouts_spread_evenly_over_the_members() -> None:
    members = ["a", "b", "c"]
    counts = Counter(owner_of(k, members) for k in KEYS)
    assert set(counts) == set(members)
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_the_owner_does_not_depend_on_the_members_order() -> None:
    assert all(owner_of(k, ["a", "b", "c"]) == owner_of(k, ["c", "a", "b"]) for k in KEYS[:200])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh-0123456789", min_size=1, max_size=12), min_size=2, max_size=8, unique=True),
       st.data())
def test_a_member_leaving_moves_only_its_own_rollouts(members: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(members))
    rest = [m for m in members if m != gone]
    for key in KEYS[:300]:
        before, after = owner_of(key, members), owner_of(key, rest)
        assert after == before or before == gone


def test_a_member_joining_takes_only_rollouts_it_now_wins() -> None:
    for key in KEYS[:500]:
        before, after = owner_of(key, ["a", "b"]), owner_of(key, ["a", "b", "c"])
        assert after == before or after == "c"


def test_nobody_owns_anything_without_members() -> None:
    assert owner_of("ns/x", []) is None


def _joined(identity: str, others: list[str], at: float = 0.0) -> ShardView:
    leases = [LeaseSeen(identity, "1", name=f"lease-{identity}")] + [LeaseSeen(o, "1", name=f"lease-{o}") for o in others]
    return observe(ShardView(identity=identity), leases, started_at=at, renewed=True, now=at, timings=T)


def test_a_new_member_acts_only_after_its_join_grace() -> None:
    view = _joined("a", [])
    key = KEYS[0]
    assert view.owner(key) == "a"
    assert not view.owns(key, 1.0, T)
    for t in range(1, 12):
        view = observe(view, [LeaseSeen("a", str(t))], started_at=t, renewed=True, now=t, timings=T)
    assert not view.owns(key, T.join_grace_seconds - 0.01, T)
    assert view.owns(key, T.join_grace_seconds, T)


def test_a_member_that_cannot_renew_stops_acting_before_the_others_see_its_lease_lapse() -> None:
    """The fence closes at ``fence_seconds`` after the last good round began; the others
    count the member at least ``lease_seconds`` after they last saw its Lease change,
    which was no earlier than that round began."""
    a = _joined("a", ["b"], at=0.0)
    b = _joined("b", ["a"], at=0.0)
    t = 0.0
    while t < 20.0:  # both renew every second
        t += 1.0
        leases = [LeaseSeen("a", str(t)), LeaseSeen("b", str(t))]
        a = observe(a, leases, started_at=t, renewed=True, now=t, timings=T)
        b = observe(b, leases, started_at=t, renewed=True, now=t, timings=T)
    a_key = next(k for k in KEYS if a.owner(k) == "a")
    assert a.owns(a_key, t, T) and not b.owns(a_key, t, T)
    last_good = t
    # From now on a's renewals fail (its Lease stays at version last_good), b keeps going.
    while t < last_good + 20.0:
        t += 0.25
        a = observe(a, None, started_at=t, renewed=False, now=t, timings=T)
        if t == int(t):
            b = observe(b, [LeaseSeen("a", str(last_good)), LeaseSeen("b", str(t))], started_at=t, renewed=True,
                        now=t, timings=T)
        assert not (a.owns(a_key, t, T) and b.owns(a_key, t, T)), f"both own {a_key} at t={t}"
        if t >= last_good + T.fence_seconds:
            assert not a.acting(t, T)
    assert b.owns(a_key, t, T), "b took a's rollout over once a's Lease lapsed"
    assert b.members == ("b",)


def test_a_lease_that_keeps_changing_is_live_whatever_time_it_carries() -> None:
    """Lapse is judged by when the observer saw the Lease change, so a member whose clock
    is hours behind still counts while it renews."""
    b = _joined("b", ["a"])
    for t in range(1, 60):
        b = observe(b, [LeaseSeen("a", f"v{t}"), LeaseSeen("b", f"v{t}")], started_at=t, renewed=True, now=t,
                    timings=T)
    assert b.members == ("a", "b")


def test_a_member_back_after_a_gap_rejoins_with_a_fresh_grace() -> None:
    a = _joined("a", [], at=0.0)
    for t in range(1, 20):
        a = observe(a, [LeaseSeen("a", str(t))], started_at=t, renewed=True, now=t, timings=T)
    assert a.acting(19.5, T)
    # Eight seconds without a good round: it fenced itself and the others may have taken over.
    a = observe(a, [LeaseSeen("a", "27")], started_at=27.0, renewed=True, now=27.0, timings=T)
    assert a.joined_at == 27.0
    assert not a.acting(27.5, T)
    for t in range(28, 40):
        a = observe(a, [LeaseSeen("a", str(t))], started_at=t, renewed=True, now=t, timings=T)
        assert a.acting(t, T) == (t >= 27.0 + T.join_grace_seconds)


def test_a_lease_marked_left_is_gone_at_once_and_a_vanished_one_only_once_it_lapses() -> None:
    b = _joined("b", ["a", "c"])
    b = observe(b, [LeaseSeen("a", "1", left=True), LeaseSeen("b", "2")], started_at=1.0, renewed=True, now=1.0,
                timings=T)
    assert b.members == ("b", "c"), "a left: gone now; c vanished (deleted by hand?): still counted"
    for t in range(2, 12):
        b = observe(b, [LeaseSeen("b", str(t))], started_at=t, renewed=True, now=t, timings=T)
        assert ("c" in b.members) == (t - 0.0 <= T.lease_seconds), t
    assert not leave(b).acting(100.0, T)


def test_a_failed_renewal_keeps_the_replica_in_its_own_members() -> None:
    a = _joined("a", ["b"])
    a = observe(a, [LeaseSeen("a", "1"), LeaseSeen("b", "2")], started_at=1.0, renewed=False, now=1.0, timings=T)
    assert a.members == ("a", "b")


def test_a_round_slower_than_the_margin_confirms_nothing() -> None:
    a = _joined("a", [])
    for t in range(1, 12):
        a = observe(a, [LeaseSeen("a", str(t))], started_at=t, renewed=True, now=t + 0.2, timings=T)
    assert a.acting(11.3, T)
    slow = observe(a, [LeaseSeen("a", "12")], started_at=12.0, renewed=True, now=12.0 + T.margin_seconds, timings=T)
    assert slow.confirmed_at == a.confirmed_at


def test_a_recreated_lease_means_a_fresh_join_grace() -> None:
    a = _joined("a", [])
    for t in range(1, 12):
        a = observe(a, [LeaseSeen("a", str(t))], started_at=t, renewed=True, now=t, timings=T)
    assert a.acting(11.0, T)
    a = observe(a, [LeaseSeen("b", "1")], started_at=12.0, renewed=True, now=12.0, timings=T, created=True)
    assert not a.acting(12.5, T)


def test_lease_names_are_unique_and_valid_whatever_the_identity_length() -> None:
    from modelrollout.adapters.leases import lease_name

    long_pod = "modelrollout-ml-platform-production-rollouts-modelrollout-7d9f8c6b5-x2x4z"
    names = {lease_name("ml-platform-production-rollouts", f"{long_pod}-{suffix}") for suffix in ("a1b2c3", "d4e5f6")}
    assert len(names) == 2
    assert all(len(n) <= 63 and n[0].isalnum() and n[-1].isalnum() for n in names)


def test_long_lapsed_leases_are_offered_for_deletion_with_their_version() -> None:
    b = _joined("b", ["old"])
    for t in range(1, 130):
        b = observe(b, [LeaseSeen("old", "1", name="lease-old"), LeaseSeen("b", str(t))], started_at=t, renewed=True, now=t,
                    timings=T)
    assert b.stale(129.0, T) == [LeaseSeen("old", "1", name="lease-old")]


def test_timings_that_could_let_two_replicas_act_are_refused() -> None:
    with pytest.raises(ValueError, match="fence_seconds < lease_seconds"):
        ShardTimings(lease_seconds=5.0, fence_seconds=6.0)
    with pytest.raises(ValueError, match="join_grace_seconds"):
        ShardTimings(join_grace_seconds=3.0)


# ----------------------------------------------------------------------------- the loop


class FakeLeases:
    """The group's Leases as a dict: holder -> version (bumped on every renewal)."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.left: set[str] = set()
        self.failing: set[str] = set()
        self.deleted: list[str] = []

    async def renew(self, identity: str, lease_seconds: float, now: datetime) -> bool:
        if identity in self.failing:
            raise ClusterUnavailable("apiserver unreachable")
        created = identity not in self.versions
        self.versions[identity] = self.versions.get(identity, 0) + 1
        return created

    async def list(self) -> list[LeaseSeen]:
        return [LeaseSeen(h, str(v), f"lease-{h}", h in self.left) for h, v in self.versions.items()]

    async def mark_left(self, identity: str, now: datetime) -> None:
        self.left.add(identity)
        self.versions[identity] += 1

    async def delete(self, name: str, version: str | None = None) -> None:
        holder = name.removeprefix("lease-")
        if version is None or str(self.versions.get(holder)) == version:
            self.versions.pop(holder, None)
            self.deleted.append(holder)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _member(store: FakeLeases, name: str, clock: Clock) -> ShardMembership:
    return ShardMembership(store, name, lambda: datetime(2026, 11, 30, tzinfo=timezone.utc), monotonic=clock)


def test_three_replicas_split_the_rollouts_and_survivors_take_a_dead_ones_share() -> None:
    async def scenario() -> None:
        store, clock = FakeLeases(), Clock()
        replicas = {n: _member(store, n, clock) for n in ("a", "b", "c")}
        keys = [k.split("/") for k in KEYS[:300]]

        def owners() -> list[list[str]]:
            return [[n for n, m in replicas.items() if m.owns(ns, name)] for ns, name in keys]

        for _ in range(15):
            for m in replicas.values():
                await m.round()
            clock.t += 1.0
        split = owners()
        assert all(len(o) == 1 for o in split)
        assert Counter(o[0] for o in split).keys() == {"a", "b", "c"}
        changed = replicas["a"].change()
        # c dies: its Lease stops changing. Nobody owns c's rollouts twice, ever; a and b
        # pick them up once it lapses.
        dead = replicas.pop("c")
        for step in range(int(T.lease_seconds + 2 * T.renew_seconds)):
            for m in replicas.values():
                await m.round()
            assert all(len(o) <= 1 for o in owners())
            clock.t += 1.0
        assert changed.is_set()
        assert all(len(o) == 1 for o in owners())
        assert not dead.acting()  # its own view: no good round for far longer than the fence

    asyncio.run(scenario())


def test_a_replica_whose_renewals_fail_fences_itself_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelrollout.shards")
    async def scenario() -> None:
        store, clock = FakeLeases(), Clock()
        a = _member(store, "a", clock)
        for _ in range(14):
            await a.round()
            clock.t += 1.0
        assert a.acting()
        store.failing.add("a")
        for _ in range(8):
            await a.round()
            clock.t += 1.0
        assert not a.acting()
        store.failing.clear()
        await a.round()
        assert not a.acting(), "back after the fence: a fresh join grace"

    asyncio.run(scenario())
    assert sum("renewing the Lease failed" in r.getMessage() for r in caplog.records) == 1
    assert any("Lease renewed again" in r.getMessage() for r in caplog.records)


def test_leaving_marks_the_lease_so_the_others_take_over_at_the_next_round() -> None:
    async def scenario() -> None:
        store, clock = FakeLeases(), Clock()
        a, b = _member(store, "a", clock), _member(store, "b", clock)
        for _ in range(14):
            await a.round()
            await b.round()
            clock.t += 1.0
        await a.leave()
        assert not a.acting() and "a" in store.left
        await b.round()
        assert b.view.members == ("b",)
        assert all(b.owns(*k.split("/")) for k in KEYS[:50])

    asyncio.run(scenario())


def test_an_action_stops_at_its_first_kubernetes_call_once_the_shard_moved() -> None:
    """A promotion can wait minutes for pods: every call inside it asks again (acting.py)."""
    from modelrollout.acting import acting_for, writes_in_flight
    from modelrollout.adapters.kubeapi import KubeApi
    from modelrollout.errors import NotShardOwner

    api = KubeApi(api_client=None)  # type: ignore[arg-type]
    calls: list[tuple[str, int]] = []

    def request_sync(method: str, path: str, *_: object) -> dict[str, object]:
        calls.append((method, writes_in_flight()))
        return {}

    api._request_sync = request_sync  # type: ignore[method-assign]
    owned = [True]

    async def scenario() -> None:
        with acting_for(lambda: owned[0]):
            await api.request("PATCH", "/apis/apps/v1/namespaces/ml/deployments/a", "Deployment ml/a", body={})
            await api.request("GET", "/apis/apps/v1/namespaces/ml/deployments/a", "Deployment ml/a")
            owned[0] = False
            with pytest.raises(NotShardOwner, match="Deployment ml/b: not sent"):
                await api.request("GET", "/apis/apps/v1/namespaces/ml/deployments/b", "Deployment ml/b")
        await api.request("GET", "/api/v1/namespaces/ml/pods", "pods outside any action")

    asyncio.run(scenario())
    assert calls == [("PATCH", 1), ("GET", 0), ("GET", 0)]
    assert writes_in_flight() == 0
