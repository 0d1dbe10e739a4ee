"""Replicas with ``--shards`` split the rollouts by Leases: a third joins two that act, one
is SIGKILLed and its rollouts are taken over within 15 s, another stops cleanly and hands
over within 5 s, and no rollout is ever driven by two replicas at once
(docs/operator.md#sharding).

"At once" is checked over the whole run, not at the end: each replica logs, with the
time, when it starts driving a rollout and when it lets go (``shard: driving at T`` /
``shard: released at T``), before its first write and after its last. Those intervals,
per rollout, must never overlap between replicas (a SIGKILLed replica's intervals end
at the kill). Every replica runs on this machine, so the times share one clock. The
cluster side is checked too: every rollout keeps being evaluated after the kill, and no
step or rollback is ever recorded twice.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import datetime

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess, delete_rollouts
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds  # noqa: F401 — fixture
from .test_operator_resilience import assert_no_duplicates

pytestmark = pytest.mark.e2e

ROLLOUTS = 12
PROMOTING = 3
"""The first rollouts have 20 s steps: they advance and promote while replicas join, die and leave."""
TAKEOVER_LIMIT_SECONDS = 15.0
CLEAN_HANDOVER_LIMIT_SECONDS = 5.0
LEFT = re.compile(r"shard \S+: left the group at (?P<at>[0-9.]+)")
LINE = re.compile(r"(?P<ns>[\w.-]+)/(?P<name>[\w.-]+): shard: (?P<what>driving|released) at (?P<at>[0-9.]+)")

Intervals = dict[str, dict[str, list[list[float]]]]  # rollout -> replica -> [[start, end, open], ...]


def driving_intervals(replicas: dict[str, OperatorProcess], ended: dict[str, float]) -> Intervals:
    """Per rollout and replica, the intervals in which the replica drove it. An interval
    still open ends now, or at the replica's SIGKILL or stop (``ended``), and is marked
    open (1.0) only while its replica lives."""
    now = time.time()
    out: Intervals = defaultdict(dict)
    for who, op in replicas.items():
        if not op.starts:
            continue  # not started yet: no log
        for match in LINE.finditer(op.log_path.read_text(errors="replace")):
            spans = out[match["name"]].setdefault(who, [])
            at = float(match["at"])
            if match["what"] == "driving":
                if spans and spans[-1][2]:  # kopf restarted the daemon: its previous interval ends here
                    spans[-1][1], spans[-1][2] = at, 0.0
                spans.append([at, ended.get(who, now), 0.0 if who in ended else 1.0])
            elif spans:
                spans[-1][1], spans[-1][2] = at, 0.0
        for match in LEFT.finditer(op.log_path.read_text(errors="replace")):  # a clean stop: nothing after this
            for by in out.values():
                for span in by.get(who, []):
                    if span[0] <= float(match["at"]) < span[1]:
                        span[1], span[2] = float(match["at"]), 0.0
    return out


def drivers_now(intervals: Intervals) -> dict[str, set[str]]:
    """Who drives each rollout now: the live replicas with an open interval."""
    return {name: {who for who, spans in by.items() if spans and spans[-1][2]} for name, by in intervals.items()}


def assert_never_two_at_once(intervals: Intervals) -> None:
    for name, by in intervals.items():
        spans = [(start, end, who) for who, ss in by.items() for start, end, _ in ss]
        for i, (s1, e1, w1) in enumerate(spans):
            for s2, e2, w2 in spans[i + 1:]:
                if w1 != w2:
                    assert e1 <= s2 or e2 <= s1, (f"{name}: driven by {w1} over [{s1:.3f}, {e1:.3f}] and by {w2} "
                                                  f"over [{s2:.3f}, {e2:.3f}]")


def first_driving_after(intervals: Intervals, names: list[str], after: float) -> dict[str, float]:
    """For each rollout, when a replica started driving it after ``after``."""
    out = {}
    for name in names:
        starts = [start for ss in intervals.get(name, {}).values() for start, _, _ in ss if start > after]
        if starts:
            out[name] = min(starts)
    return out


def evaluated_at(s: RolloutScenario, name: str) -> float:
    risk = s.status(name).get("risk") or {}
    text = risk.get("evaluatedAt")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def shares_of(split: dict[str, set[str]]) -> dict[str, list[str]]:
    shares: dict[str, list[str]] = defaultdict(list)
    for name, drivers in split.items():
        (who,) = tuple(drivers)
        shares[who].append(name)
    return shares


def test_replicas_split_the_rollouts_join_and_take_over_a_killed_or_stopped_ones(crds: Cluster, namespace: str) -> None:
    scenarios = [RolloutScenario(crds, namespace, name=f"m{i}", replicas=2, rps=500.0) for i in range(ROLLOUTS)]
    shard = ["--shards", "--shard-namespace", namespace, "--shard-group", "e2e"]
    replicas = {who: OperatorProcess(crds, namespace, *shard, "--identity", who, name=who, standalone=False)
                for who in ("replica-a", "replica-b", "replica-c")}
    ended: dict[str, float] = {}
    s0 = scenarios[0]
    promoting = {s.name for s in scenarios[:PROMOTING]}

    def one_driver_each(among: set[str]) -> dict[str, set[str]] | None:
        now = drivers_now(driving_intervals(replicas, ended))
        done = len(now) == ROLLOUTS and all(len(d) == 1 for d in now.values())
        return now if done and set().union(*now.values()) == among else None

    try:
        replicas["replica-a"].start()
        replicas["replica-b"].start()
        for s in scenarios:
            steps = ([{"weight": 25, "duration": "20s"}, {"weight": 100, "duration": "20s"}] if s.name in promoting
                     else [{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}])
            s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, interval="1s", gpus=1,
                                     steps=steps))
        for s in scenarios:
            s.wait_status(lambda st: st.get("phase") in ("Progressing", "Promoting", "Succeeded")
                          and (st.get("risk") or {}).get("evaluatedAt"), timeout=120, message=f"{s.name} progressing")
        split = crds.wait_for(lambda: one_driver_each({"replica-a", "replica-b"}), timeout=60,
                              message="each rollout driven by exactly one of two replicas")
        print(f"\n[shards] two replicas: { {w: len(n) for w, n in sorted(shares_of(split).items())} }")

        # A third joins the acting group: it takes only rollouts it now wins, after its grace.
        replicas["replica-c"].start()
        joined = time.time()
        split = crds.wait_for(lambda: one_driver_each({"replica-a", "replica-b", "replica-c"}), timeout=60,
                              message="the third replica driving its share")
        shares = shares_of(split)
        print(f"[shards] three replicas, {time.time() - joined:.1f}s after the third started: "
              f"{ {w: len(n) for w, n in sorted(shares.items())} }")

        victim = max(shares, key=lambda w: len(shares[w]))
        moved = shares[victim]
        replicas[victim].kill()
        killed = time.time()
        ended[victim] = killed
        crds.wait_for(lambda: all(len(drivers_now(driving_intervals(replicas, ended)).get(n, ())) == 1 for n in moved)
                      and all(evaluated_at(s0, n) > killed for n in moved if n not in promoting),
                      timeout=45, interval=0.2, message=f"{victim}'s rollouts taken over")
        taken = first_driving_after(driving_intervals(replicas, ended), moved, killed)
        takeover = max(taken.values()) - killed
        evaluated = max((evaluated_at(s0, n) for n in moved if n not in promoting), default=killed) - killed
        print(f"[shards] {len(moved)} rollouts of the SIGKILLed {victim}: driven by the survivors "
              f"{takeover:.1f}s after the kill (the last of them evaluated again by {evaluated:.1f}s)")
        assert takeover < TAKEOVER_LIMIT_SECONDS, f"took {takeover:.1f}s"

        # The survivors kept their own rollouts through the failover (rendezvous hashing).
        now = drivers_now(driving_intervals(replicas, ended))
        for who, names in shares.items():
            if who != victim:
                assert all(now[n] == {who} for n in names), (who, {n: now[n] for n in names})

        # A clean stop marks its Lease as left: the last replica takes over at its next round.
        leaving = next(w for w in replicas if w not in ended)
        handed = [n for n, d in now.items() if d == {leaving}]
        replicas[leaving].stop()
        ended[leaving] = time.time()
        left_at = [float(m["at"]) for m in LEFT.finditer(replicas[leaving].log_path.read_text(errors="replace"))]
        assert left_at, f"{leaving} did not log leaving the group"
        last = next(w for w in replicas if w not in ended)
        crds.wait_for(lambda: all(drivers_now(driving_intervals(replicas, ended)).get(n) == {last} for n in handed),
                      timeout=30, interval=0.2, message=f"{last} driving {leaving}'s rollouts")
        handover = max(first_driving_after(driving_intervals(replicas, ended), handed, left_at[-1]).values()) - left_at[-1]
        print(f"[shards] {leaving} stopped cleanly: {len(handed)} rollouts driven by {last} {handover:.1f}s after it left")
        assert handover < CLEAN_HANDOVER_LIMIT_SECONDS, f"clean handover took {handover:.1f}s"
        crds.wait_for(lambda: all(evaluated_at(s0, n) > left_at[-1] for n in handed if n not in promoting),
                      timeout=30, interval=0.2,
                      message="the handed-over rollouts evaluated again")

        assert_never_two_at_once(driving_intervals(replicas, ended))
        for s in scenarios:
            status = s.status()
            expected = ("Progressing", "Promoting", "Succeeded") if s.name in promoting else ("Progressing",)
            assert status.get("phase") in expected, (s.name, status.get("phase"), status.get("message"))
            assert_no_duplicates(status)
        for s in scenarios[:PROMOTING]:
            s.wait_phase("Succeeded", timeout=90, name=s.name)
    finally:
        delete_rollouts(crds, namespace)
        for op in replicas.values():
            op.stop()
