"""Replay from Prometheus without a Prometheus: the request of each tick follows the carried
status (as the operator's does), answers go through the state machine, and bad windows are
refused naming the option. The real Prometheus is in e2e/tests/test_replay_prometheus.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.api.models import Phase
from modelrollout.core.replay import summarize
from modelrollout.errors import MetricsUnavailable
from modelrollout.replay_prometheus import MAX_TICKS, PrometheusReplay, tick_times

from .factories import T0, healthy_snapshot, make_spec


class FakeSource:
    """Answers like PrometheusMetricsSource; records what each tick asked and when."""

    def __init__(self, fail_at: set[datetime] | None = None) -> None:
        self.asked: list[tuple[datetime, SnapshotRequest]] = []
        self.fail_at = fail_at or set()
        self.closed = False

    async def snapshots(self, requests: list[SnapshotRequest], at: datetime, **_: Any) -> dict[str, Any]:
        (request,) = requests
        self.asked.append((at, request))
        if at in self.fail_at:
            return {request.key: MetricsUnavailable("Prometheus: connection refused")}
        return {request.key: healthy_snapshot(at, request.canary_weight)}

    def close(self) -> None:
        self.closed = True


def test_each_tick_asks_with_the_status_carried_to_it() -> None:
    spec = make_spec()
    source = FakeSource(fail_at={T0 + timedelta(seconds=20)})
    replay = PrometheusReplay("http://prometheus.invalid", "ml", "fraud", spec, source=source)  # type: ignore[arg-type]
    ticks = list(replay.ticks(tick_times(T0, T0 + timedelta(seconds=200), timedelta(seconds=10))))
    replay.close()
    assert source.closed
    assert [at for at, _ in source.asked] == [t.at for t in ticks if not t.status.phase.is_terminal or t.decision]
    # The rollout's own key and Deployments; the weight follows the carried status: 5 % until
    # the first step's 60 s are up, then 25 %, then 100 %.
    assert {r.key for _, r in source.asked} == {"ml/fraud"}
    weights = [r.canary_weight for _, r in source.asked]
    assert weights[:6] == [5] * 6 and 25 in weights and 100 in weights
    # A failed query is a Prometheus error of that tick, as in the operator: a hold, no action.
    failed = next(t for t in ticks if t.at == T0 + timedelta(seconds=20))
    assert failed.decision is None and "Prometheus error" in failed.status.message
    assert ticks[-1].status.phase == Phase.SUCCEEDED
    text = summarize(ticks)
    assert "advance" in text and "promote" in text and "final phase Succeeded" in text


def test_tick_times_are_bounded_and_name_the_option() -> None:
    assert tick_times(T0, T0 + timedelta(seconds=60), timedelta(seconds=30)) == [
        T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)]
    with pytest.raises(ValueError, match="--to .* is not after --from"):
        tick_times(T0, T0, timedelta(seconds=30))
    with pytest.raises(ValueError, match="--step: 0.5s"):
        tick_times(T0, T0 + timedelta(hours=1), timedelta(milliseconds=500))
    with pytest.raises(ValueError, match=f"more than {MAX_TICKS}"):
        tick_times(T0, T0 + timedelta(days=30), timedelta(seconds=1))


def test_a_rollback_without_a_decision_is_in_the_summary_and_no_tick_hides_its_reason() -> None:
    """Prometheus failing at every tick: the rollout's prometheusErrors policy (rollback after
    2 here) acts without a decision; the lines and the summary say so."""
    spec = make_spec(prometheusErrors={"maxConsecutive": 2, "then": "rollback"})
    times = tick_times(T0, T0 + timedelta(seconds=40), timedelta(seconds=10))
    replay = PrometheusReplay("http://prometheus.invalid", "ml", "fraud", spec,
                              source=FakeSource(fail_at=set(times)))  # type: ignore[arg-type]
    ticks = list(replay.ticks(times))
    from modelrollout.core.replay import tick_record

    assert "Prometheus error 1/2" in tick_record(ticks[0])["reason"]
    text = summarize(ticks)
    assert "1 acting decision(s)" in text and "rollback [prometheusErrors]" in text, text
    assert "final phase RolledBack" in text
