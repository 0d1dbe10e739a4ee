"""Range answers shared by the tick batches of one instant (pure: no I/O, clock as ``at``).

Rollouts sharing an interval tick at the same instants, but their ticks do not all reach
Prometheus in one batch: each rollout reads its workload from the apiserver first, so at
100 rollouts one instant's ticks arrive spread over about a second and go out as several
batches. Every batch used to send its own nine range queries (the anomaly series and the
stable's counts per interval), each selecting only that batch's pairs, so the range
queries grew with the number of batches: at 100 rollouts they were three quarters of the
tick's queries.

A range answer hardly changes within a small part of its step (its points are one step
apart), so the first batch of an instant reads each range query for every pair asked
for it recently, and the batches that follow within ``reuse_for(step)`` take their pairs
from that answer, on the grid it was read at (``read_at``). A pair not in it (a new
rollout) makes the next batch read again, for all. Only the latest answer per query is
kept, and only while it can still be reused: memory is one instant's answers.
docs/prometheus.md#range-queries-shared-across-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .plan import QueryKey
from .promql import Pair

REUSE_FRACTION = 0.1
"""A range answer is reused for at most this share of its step ..."""

MAX_REUSE = timedelta(seconds=5)
"""... and at most this long (a 30 s interval: 3 s; the fast path reads no range)."""

REMEMBER_STEPS = 2.5
"""A pair asked for a range query is included in its reads for this many steps after it
was last asked (rollouts tick once per step; a finished rollout drops out)."""


@dataclass(frozen=True, slots=True)
class RangeRead:
    at: datetime             # the batch's instant the answer was read at: its grid
    pairs: frozenset[Pair]   # the pairs the query selected (absent from the answer: no data)
    answer: Any              # parsed: {pair: points}


class RangeReuse:
    """The latest answer of each range query, and the pairs recently asked for it."""

    def __init__(self, *, fraction: float = REUSE_FRACTION, max_reuse: timedelta = MAX_REUSE,
                 remember_steps: float = REMEMBER_STEPS) -> None:
        self.fraction = fraction
        self.max_reuse = max_reuse
        self.remember_steps = remember_steps
        self._reads: dict[QueryKey, RangeRead] = {}
        self._asked: dict[QueryKey, dict[Pair, datetime]] = {}

    def reuse_for(self, key: QueryKey) -> timedelta:
        assert key.step_s is not None
        return min(timedelta(seconds=key.step_s * self.fraction), self.max_reuse)

    def ask(self, key: QueryKey, pairs: frozenset[Pair] | set[Pair], at: datetime) -> RangeRead | None:
        """Notes that ``pairs`` are asked now; the answer read within ``reuse_for`` of ``at``
        that selected all of them, or None (read again, ``pairs_to_read``).

        Within, either side: a batch's ``at`` is the latest of its callers' clocks, read
        before each fetched its rollout, so a later batch of the same wave may carry an
        earlier ``at`` than the batch that read the answer."""
        assert key.step_s is not None
        asked = self._asked.setdefault(key, {})
        horizon = timedelta(seconds=key.step_s * self.remember_steps)
        for pair in [p for p, when in asked.items() if not timedelta(0) <= at - when <= horizon]:
            del asked[pair]
        for pair in pairs:
            asked[pair] = at
        read = self._reads.get(key)
        if read is None or abs(at - read.at) > self.reuse_for(key) or not pairs <= read.pairs:
            return None
        return read

    def pairs_to_read(self, key: QueryKey) -> frozenset[Pair]:
        """The pairs asked now and within ``remember_steps`` steps (``ask``): the batches
        still to come at this instant will ask for them."""
        return frozenset(self._asked.get(key, ()))

    def remember(self, key: QueryKey, pairs: frozenset[Pair], at: datetime, answer: Any) -> None:
        self._reads[key] = RangeRead(at, pairs, answer)
        for stale in [k for k, r in self._reads.items() if abs(at - r.at) > self.reuse_for(k)]:
            del self._reads[stale]


__all__ = ["RangeRead", "RangeReuse"]
