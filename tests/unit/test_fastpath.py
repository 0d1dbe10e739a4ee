"""The critical fast path: its pure judgement (core.fastpath) and its loop (modelrollout.fast_path_loop).

The loop is driven with a fake batch source and a fake controller: what matters here is
which rollouts are checked, how the queries are batched and that only critical breaches
reach ``Controller.signal``. The cluster-level behaviour is in e2e/tests/test_fast_path.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelrollout.adapters.metrics.plan import plan_queries
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.api.models import DecisionPath, ModelRolloutSpec, ModelRolloutStatus, Phase
from modelrollout.clock import SettableClock
from modelrollout.controller import RolloutRef
from modelrollout.core.actions import RollbackPhase
from modelrollout.core.conditions import evaluate_all
from modelrollout.core.fastpath import critical_breach, critical_results, pod_health_signal, watches
from modelrollout.core.machine import evaluation_context, step
from modelrollout.core.observations import CriticalSignal, MetricsObserved
from modelrollout.core.snapshot import CanaryHealth, Snapshot, load_snapshot
from modelrollout.core.windows import FAST_PATH_CONDITIONS, FastPathLook, fast_path_look
from modelrollout.fast_path_loop import FastPathLoop, deployment_of_pod
from modelrollout.telemetry import OperatorMetrics

from .factories import T0, begin, healthy_snapshot, make_spec, snapshot_dict, with_changes


def at_25(spec: ModelRolloutSpec) -> tuple[ModelRolloutStatus, datetime]:
    """A rollout advanced to 25 % on healthy ticks, and a time when its step is older than
    every condition's window (so the fast path reads the tick's windows, see ``fast_path_look``)."""
    status = begin(spec)
    at = T0
    for s in range(10, 61, 10):
        at = T0 + timedelta(seconds=s)
        status = step(spec, status, MetricsObserved(healthy_snapshot(at, status.canary_weight)), at).status
    assert status.canary_weight == 25 and status.phase == Phase.PROGRESSING
    assert status.step_started_at is not None
    return status, status.step_started_at + timedelta(hours=1)


def test_a_step_younger_than_a_window_is_read_exactly() -> None:
    """Young series: increase() extrapolates each one on its own, so the fast path reads
    exact counter differences over the window instead (see fast_path_look), and judges them."""
    spec = make_spec()
    status, old = at_25(spec)
    assert status.step_started_at is not None
    young = status.step_started_at + timedelta(seconds=5)
    look = fast_path_look(spec, status, young)
    assert look.exact == set(look.windows) == {c.value for c in FAST_PATH_CONDITIONS}
    assert look.windows == fast_path_look(spec, status, old).windows  # the tick's windows all along
    breach = healthy_snapshot(young, 25, latency=(5.0, 8.0, 12.0))
    assert critical_breach(spec, status, breach, young) is not None
    latency_window = look.windows["latency"]
    covered = fast_path_look(spec, status, status.step_started_at + latency_window)
    assert "latency" in covered.windows and "latency" not in covered.exact
    assert fast_path_look(spec, status, old).exact == frozenset()


# ------------------------------------------------------------------------ the judgement


def test_healthy_canary_raises_nothing() -> None:
    spec = make_spec()
    status, at = at_25(spec)
    assert critical_breach(spec, status, healthy_snapshot(at, 25), at) is None


def test_critical_latency_signals_a_fast_path_rollback_the_machine_applies() -> None:
    spec = make_spec()
    status, at = at_25(spec)
    at += timedelta(seconds=1)
    signal = critical_breach(spec, status, healthy_snapshot(at, 25, latency=(5.0, 8.0, 12.0)), at)
    assert signal is not None
    assert signal.path == "fastPath" and signal.trigger == "latency"
    assert signal.reason.startswith("critical: latency:")
    assert signal.evidence["significance"] == pytest.approx(spec.analysis.significance / 10)
    t = step(spec, status, signal, at)
    assert t.status.phase == Phase.ROLLING_BACK and t.actions[0] == RollbackPhase(1)
    assert t.status.rollback and t.status.rollback.path == "fastPath" and t.status.rollback.trigger == "latency"
    assert t.status.history[-1].evidence["path"] == "fastPath"
    # status.risk shows the condition as the fast path saw it, not the last healthy tick
    latency = next(c for c in t.status.risk.conditions if c.name == "latency")
    assert latency.critical and latency.severity == 1.0 and latency.message.endswith("(fastPath)")
    assert latency.observed["p95_ms"] == 8.0
    assert next(c for c in t.status.history[-1].evidence["conditions"] if c["name"] == "latency")["critical"]


def test_fast_path_needs_ten_times_the_evidence_of_the_tick() -> None:
    """Some accuracy drops are critical for the tick (α) but not yet for the fast path (α/10);
    a deep enough drop is critical for both."""
    spec = make_spec()
    status, at = at_25(spec)
    tick_ctx = evaluation_context(spec, status, at)
    base = snapshot_dict(at, 25)
    n = base["canary"]["predictions_evaluated"]
    tick_only = both = None
    for correct in range(int(n * 0.95), 0, -1):
        snap = load_snapshot(with_changes(base, "canary.predictions_correct", correct))
        tick = any(r.critical for r in evaluate_all(snap, tick_ctx) if r.name == "accuracy")
        fast = any(r.name == "accuracy" for r in critical_results(spec, status, snap, at))
        assert not (fast and not tick), f"fast path critical where the tick is not (correct={correct}/{n})"
        if tick and not fast and tick_only is None:
            tick_only = correct
        if tick and fast:
            both = correct
            break
    assert tick_only is not None, "no accuracy is critical at α yet not at α/10"
    assert both is not None and both < tick_only


@pytest.mark.parametrize("change", [
    {"analysis": {"dryRun": True}},
    {"phase": Phase.SUCCEEDED},
    {"phase": Phase.ROLLING_BACK},
    {"canary_weight": 0},
])
def test_fast_path_leaves_alone_what_it_must_not_touch(change: dict[str, Any]) -> None:
    spec = make_spec(**change.pop("analysis", {}))
    status, at = at_25(make_spec())
    status = status.model_copy(update=change)
    breach = healthy_snapshot(at, 25, latency=(5.0, 8.0, 12.0))
    assert not watches(spec, status)
    assert critical_breach(spec, status, breach, at) is None


def test_windows_are_the_ticks_for_the_critical_conditions_only() -> None:
    spec = make_spec(conditions={"cache": {"enabled": False}})
    status, at = at_25(spec)
    windows = fast_path_look(spec, status, at).windows
    assert set(windows) == {c.value for c in FAST_PATH_CONDITIONS} - {"cache"}
    assert "throughput" not in windows and "anomaly" not in windows


def test_pod_health_signal_only_for_oom_and_crash_loops() -> None:
    spec = make_spec()
    status, _ = at_25(spec)
    signal = pod_health_signal(spec, status, CanaryHealth(oom_killed=1), pod="fraud-canary-abc")
    assert isinstance(signal, CriticalSignal) and signal.path == "podWatch" and signal.trigger == "kubernetesHealth"
    assert signal.reason == "critical: 1 canary pod(s) OOMKilled (exit 137)"
    assert signal.evidence["pod"] == "fraud-canary-abc"
    crash = pod_health_signal(spec, status, CanaryHealth(crash_looping=2))
    assert crash is not None and "CrashLoopBackOff" in crash.reason
    assert pod_health_signal(spec, status, CanaryHealth(progress_deadline_exceeded=True)) is None
    assert pod_health_signal(spec, status, CanaryHealth()) is None
    done = status.model_copy(update={"phase": Phase.ROLLED_BACK})
    assert pod_health_signal(spec, done, CanaryHealth(oom_killed=1)) is None


# ------------------------------------------------------------------------ the request


def test_fast_path_request_has_no_series_no_custom_and_flat_query_count() -> None:
    spec = make_spec(custom=[{"name": "revenue", "query": "sum(x)", "threshold": 1.0, "critical": 0.5, "direction": "below"}])
    status, at = at_25(make_spec())
    request = SnapshotRequest.for_fast_path(namespace="ml", name="r0", spec=spec, status=status,
                                            look=fast_path_look(spec, status, at))
    assert request.series_window is None and request.interval_points == 0 and request.custom == ()
    assert set(request.windows) == {c.value for c in FAST_PATH_CONDITIONS}
    many = [SnapshotRequest.for_fast_path(namespace=f"ns{i}", name=f"r{i}", spec=spec, status=status,
                                          look=fast_path_look(spec, status, at))
            for i in range(100)]
    assert len(plan_queries(many)) == len(plan_queries([request]))


def test_a_young_step_is_read_exactly_in_queries_shared_by_every_rollout() -> None:
    """Both sides of the critical conditions (drift's stable baseline aside) are read as
    exact counter differences over their windows; every rollout with the same windows
    shares the queries, however young or old its step (measured: one sub-query per step
    start instant instead, with PromQL's @, took Prometheus 21 s for 100 instants)."""
    spec = make_spec()
    status, old = at_25(spec)
    assert status.step_started_at is not None
    young = status.step_started_at + timedelta(seconds=3)
    request = SnapshotRequest.for_fast_path(namespace="ml", name="r0", spec=spec, status=status,
                                            look=fast_path_look(spec, status, young))
    assert request.exact == {c.value for c in FAST_PATH_CONDITIONS}
    queries = plan_queries([request])
    exact = [q for q in queries if q.key.exact]
    assert exact and all(" offset " in q.promql and "increase(" not in q.promql and "rate(" not in q.promql
                         for q in exact)
    # only the stable's long baseline windows (accuracy, latency, errors, drift) use increase()
    assert all(q.key.window_s == int(spec.analysis.baseline_window.total_seconds())
               for q in queries if not q.key.exact)
    others = []
    for i in range(20):
        later = status.model_copy(update={"step_started_at": status.step_started_at + timedelta(seconds=i / 7)})
        others.append(SnapshotRequest.for_fast_path(namespace=f"ns{i}", name=f"r{i}", spec=spec, status=later,
                                                    look=fast_path_look(spec, later, young)))
    assert len(plan_queries([request, *others])) == len(queries)
    covered = SnapshotRequest.for_fast_path(namespace="ns-old", name="old", spec=spec, status=status,
                                            look=fast_path_look(spec, status, old))
    assert len(plan_queries([request, covered])) == len(queries) + len(exact)  # the increase() forms as well


def test_an_overridden_template_waits_for_the_step_to_cover_its_window() -> None:
    """A user's PromQL cannot be rewritten to count exactly: that condition is left
    out of the young step's fast path (the tick still judges it), the others are read exactly."""
    override = "sum by ({by}) (increase(my_requests_total{{selector}}[{window}]))"
    spec = make_spec(queries={"requests": override})
    status, old = at_25(make_spec())
    assert status.step_started_at is not None
    young = status.step_started_at + timedelta(seconds=3)
    request = SnapshotRequest.for_fast_path(namespace="ml", name="r0", spec=spec, status=status,
                                            look=fast_path_look(spec, status, young))
    assert "errorRate" not in request.windows and "errorRate" not in request.exact
    assert "latency" in request.exact
    covered = SnapshotRequest.for_fast_path(namespace="ml", name="r0", spec=spec, status=status,
                                            look=fast_path_look(spec, status, old))
    assert "errorRate" in covered.windows and covered.exact == frozenset()
    with pytest.raises(ValueError, match="overridden template"):
        SnapshotRequest(key="ml/r0", namespace="ml", stable="a", canary="b", windows={"errorRate": timedelta(5)},
                        queries={"requests": override}, exact=frozenset({"errorRate"}))


# ------------------------------------------------------------------------ the loop


class FakeSource:
    def __init__(self, snapshots: dict[str, Snapshot]) -> None:
        self.snapshots_by_key = snapshots
        self.batches: list[tuple[list[str], DecisionPath]] = []

    async def snapshots(self, requests: list[Any], at: datetime, *,
                        path: DecisionPath = DecisionPath.TICK) -> dict[str, Any]:
        self.batches.append(([r.key for r in requests], path))
        return {r.key: self.snapshots_by_key[r.key] for r in requests}


class FakeExecutor:
    def __init__(self, health: CanaryHealth) -> None:
        self.health = health
        self.calls: list[tuple[str, str]] = []

    async def canary_health(self, ns: str, canary: str, progress_deadline_seconds: int) -> CanaryHealth:
        self.calls.append((ns, canary))
        return self.health


class FakeController:
    def __init__(self, health: CanaryHealth = CanaryHealth()) -> None:
        self.signals: list[tuple[RolloutRef, CriticalSignal]] = []
        self.executor = FakeExecutor(health)

    async def signal(self, ref: RolloutRef, signal: CriticalSignal) -> bool:
        self.signals.append((ref, signal))
        return True

    def parse(self, body: dict[str, Any]) -> ModelRolloutSpec:
        from modelrollout.api.manifests import parse_spec
        return parse_spec(body.get("spec"))


def body(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> dict[str, Any]:
    return {"spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "status": status.model_dump(mode="json", by_alias=True)}


def fast_path(source: FakeSource, controller: FakeController, at: datetime) -> FastPathLoop:
    def request(ref: RolloutRef, spec: ModelRolloutSpec, status: ModelRolloutStatus, look: FastPathLook) -> Any:
        return SnapshotRequest.for_fast_path(namespace=ref.namespace, name=ref.name, spec=spec, status=status,
                                             look=look)
    return FastPathLoop(controller, lambda url: source, request, SettableClock(at), OperatorMetrics())  # type: ignore[arg-type]


def test_one_batch_for_all_rollouts_and_only_breaches_are_signalled() -> None:
    spec = make_spec()
    status, at = at_25(spec)
    refs = [RolloutRef("ml", f"r{i}", f"uid-{i}") for i in range(3)]
    snaps = {"ml/r0": healthy_snapshot(at, 25), "ml/r1": healthy_snapshot(at, 25, latency=(5.0, 8.0, 12.0)),
             "ml/r2": healthy_snapshot(at, 25, latency=(5.0, 8.0, 12.0))}
    source, controller = FakeSource(snaps), FakeController()
    fp = fast_path(source, controller, at)
    for ref in refs:
        fp.observe(ref, body(spec, status))
    for ref in refs[:2]:  # r2's daemon runs elsewhere (a frozen peer here): not ours to check
        fp.activate(ref.uid)
    breaches = asyncio.run(fp.check_once())
    assert source.batches == [(["ml/r0", "ml/r1"], "fastPath")]
    assert [ref.name for ref, _ in breaches] == ["r1"]
    assert [(ref.name, s.trigger) for ref, s in controller.signals] == [("r1", "latency")]
    # checked: not due again before fastPathInterval
    assert asyncio.run(fp.check_once()) == [] and len(source.batches) == 1
    assert fp.period() == spec.analysis.fast_path_interval.total_seconds()


def test_terminal_and_invalid_rollouts_drop_out_of_the_loop() -> None:
    spec = make_spec()
    status, at = at_25(spec)
    fp = fast_path(FakeSource({}), FakeController(), at)
    ref = RolloutRef("ml", "r0", "uid-0")
    fp.activate(ref.uid)
    fp.observe(ref, body(spec, status.model_copy(update={"phase": Phase.ROLLED_BACK})))
    assert fp.due(1e9) == []
    fp.observe(ref, {"spec": {"steps": "not a list"}})
    assert ref.uid not in fp.watched
    assert fp.period() == 1.0


def test_pod_failure_is_confirmed_on_the_current_revision_before_signalling() -> None:
    spec = make_spec()
    status, at = at_25(spec)
    ref = RolloutRef("ml", "r0", "uid-0")
    healthy_now = FakeController(CanaryHealth())  # the failed pod belongs to an older revision
    fp = fast_path(FakeSource({}), healthy_now, at)
    fp.observe(ref, body(spec, status))
    fp.activate(ref.uid)
    assert asyncio.run(fp.pod_failed("ml", "fraud-canary", "fraud-canary-old-x")) is False
    assert healthy_now.executor.calls == [("ml", "fraud-canary")] and healthy_now.signals == []
    oom = FakeController(CanaryHealth(oom_killed=1))
    fp = fast_path(FakeSource({}), oom, at)
    fp.observe(ref, body(spec, status))
    fp.activate(ref.uid)
    assert asyncio.run(fp.pod_failed("ml", "other-deployment", "p")) is False  # not a canary we drive
    assert asyncio.run(fp.pod_failed("ml", "fraud-canary", "fraud-canary-5d9c-x")) is True
    assert oom.signals[0][1].path == "podWatch"


def oom_pod(replicaset: str, template_hash: str, labels: dict[str, str] | None = None) -> dict:
    return {"metadata": {"labels": {"pod-template-hash": template_hash, **(labels or {})},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": replicaset}]},
            "status": {"containerStatuses": [{"name": "server", "state": {"terminated": {"reason": "OOMKilled",
                                                                                        "exitCode": 137}}}]}}


def test_the_pod_watch_follows_a_canary_by_ownership_not_by_our_label() -> None:
    """A user-owned canary's pods carry only the user's labels (no modelrollout.io/role):
    its OOMKilled pod still rolls back at once; another Deployment's failed pod or a
    healthy pod never costs a health read."""
    spec = make_spec()
    status, at = at_25(spec)
    ref = RolloutRef("ml", "r0", "uid-0")
    controller = FakeController(CanaryHealth(oom_killed=1))
    fp = fast_path(FakeSource({}), controller, at)
    fp.observe(ref, body(spec, status))
    fp.activate(ref.uid)
    healthy = {**oom_pod("fraud-canary-7f9", "7f9"), "status": {}}
    assert asyncio.run(fp.pod_changed("ml", "fraud-canary-7f9-a", healthy)) is False
    other = oom_pod("billing-5c4", "5c4", {"app": "billing"})
    assert asyncio.run(fp.pod_changed("ml", "billing-5c4-a", other)) is False
    assert controller.executor.calls == []  # neither read the canary's health
    user_owned = oom_pod("fraud-canary-7f9", "7f9", {"app": "fraud", "track": "canary"})
    assert asyncio.run(fp.pod_changed("ml", "fraud-canary-7f9-b", user_owned)) is True
    assert controller.executor.calls == [("ml", "fraud-canary")]
    assert controller.signals[0][1].path == "podWatch"


def test_deployment_of_pod_from_its_replicaset_owner() -> None:
    pod = {"metadata": {"labels": {"pod-template-hash": "5d9c7f"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "fraud-canary-5d9c7f"}]}}
    assert deployment_of_pod(pod) == "fraud-canary"
    assert deployment_of_pod({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "name": "x"}]}}) is None


# ------------------------------------------------------------------------ the cadence (analysis.fastPathInterval)


def test_fast_path_interval_is_a_duration_from_100ms_to_60s() -> None:
    from modelrollout.api.manifests import ManifestError, parse_spec

    assert make_spec().analysis.fast_path_interval == timedelta(seconds=1)
    assert make_spec(fastPathInterval="250ms").analysis.fast_path_interval == timedelta(milliseconds=250)
    raw = make_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    for bad in ("50ms", "2m"):
        raw["analysis"]["fastPathInterval"] = bad
        with pytest.raises(ManifestError, match=rf"spec\.analysis\.fastPathInterval: .*100ms and 60s, not {bad}"):
            parse_spec(raw)


def test_deprecated_fast_path_seconds_still_sets_the_cadence() -> None:
    """Manifests written before fastPathInterval (GitOps repositories) keep working unchanged."""
    spec = make_spec(fastPathSeconds=0.5)
    assert spec.analysis.fast_path_interval == timedelta(milliseconds=500)
    assert make_spec(fastPathSeconds=0.5, fastPathInterval="500ms").analysis.fast_path_interval == timedelta(
        milliseconds=500)
    # 1 is what the old CRD's default stored in every rollout: an explicit fastPathInterval wins over it.
    assert make_spec(fastPathSeconds=1, fastPathInterval="2s").analysis.fast_path_interval == timedelta(seconds=2)
    status, at = at_25(spec)
    fp = fast_path(FakeSource({}), FakeController(), at)
    fp.observe(RolloutRef("ml", "r0", "uid-0"), body(spec, status))
    fp.activate("uid-0")
    assert fp.period() == 0.5


def test_fast_path_seconds_and_interval_that_disagree_are_refused_naming_both() -> None:
    from modelrollout.api.manifests import ManifestError, parse_spec

    raw = make_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["analysis"].update({"fastPathSeconds": 0.5, "fastPathInterval": "2s"})
    with pytest.raises(ManifestError) as caught:
        parse_spec(raw)
    assert str(caught.value) == ("spec.analysis: fastPathSeconds (0.5) and fastPathInterval (2s) disagree; "
                                 "fastPathSeconds is deprecated: remove it and keep fastPathInterval")


# ------------------------------------------------------------------------ default profile (run --default-profile)


def test_operator_default_profile_applies_only_when_the_spec_names_none() -> None:
    from modelrollout.api.manifests import parse_spec

    raw = make_spec().model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["analysis"].pop("profile")
    assert parse_spec(raw).analysis.profile.value == "balanced"
    assert parse_spec(raw, "conservative").analysis.profile.value == "conservative"
    raw["analysis"]["profile"] = "aggressive"
    assert parse_spec(raw, "conservative").analysis.profile.value == "aggressive"
    assert parse_spec({"stable": {"deployment": "a"}, "canary": {"deployment": "b"}},
                      "aggressive").analysis.profile.value == "aggressive"
