"""KubeExecutor's order of operations on an in-memory fake apiserver (no cluster).

The fake keeps resourceVersion and generation like the apiserver does, so
"idempotent" is checked the same way the contract tests check it: no write, no new
generation. The real apiserver is exercised by e2e/tests/test_contract_kube.py.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from modelrollout.adapters.kube import KubeExecutor, rollout_target
from modelrollout.adapters.kubeapi import Conflict, NotFound
from modelrollout.api.models import MODEL_DIGEST_ANNOTATION, ModelRolloutSpec, ModelRolloutStatus, PromotionStatus, RouterKind
from modelrollout.core.observations import (
    InitFailed,
    Initialized,
    PromotionApplied,
    PromotionFailed,
    PromotionProgress,
    RollbackApplied,
)
from modelrollout.errors import CapacityWait, ClusterConflict, InvalidSpec

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
DIGEST = "sha256:" + "c" * 64
Json = dict[str, Any]


def _merge(target: Json, patch: Json) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


class FakeApi:
    """Deployments in a dict, with resourceVersion/generation semantics and injectable 409s."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], Json] = {}
        self.writes: list[tuple[str, str]] = []
        self.conflicts = 0
        self._rv = 0
        self.available = True  # whether a written Deployment's controller reports it rolled out
        self.peak = 0  # most pods the two Deployments asked for at once
        self.not_ready: set[str] = set()  # Deployments whose new pods do not become ready (yet)
        self.serving: list[int] = []  # ready pods of all Deployments after every write
        # Pods being deleted that a Deployment's availableReplicas still counts (its ReplicaSet's
        # status lags a scale-down); list_pods shows them with a deletionTimestamp.
        self.leaving: dict[str, int] = {}

    def _bump(self, obj: Json, spec_changed: bool) -> None:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        if spec_changed:
            meta["generation"] = meta.get("generation", 0) + 1
        want = obj["spec"].get("replicas", 1)
        key = (meta.get("namespace"), meta.get("name"))
        self.peak = max(self.peak, want + sum(d["spec"].get("replicas", 1) for k, d in self.deployments.items()
                                              if k != key))
        if self.available and meta.get("name") not in self.not_ready:
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": want, "updatedReplicas": want,
                             "availableReplicas": want}
        elif meta.get("name") in self.not_ready:  # pods already ready stay ready; new ones wait
            ready = min(want, int((obj.get("status") or {}).get("availableReplicas") or 0))
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": want, "updatedReplicas": want,
                             "availableReplicas": ready}
        else:
            obj["status"] = {"observedGeneration": meta["generation"], "replicas": want, "updatedReplicas": want,
                             "availableReplicas": 0}

    def record_serving(self) -> None:
        self.serving.append(sum(int((d.get("status") or {}).get("availableReplicas") or 0)
                                - self.leaving.get(d["metadata"]["name"], 0)
                                for d in self.deployments.values()))

    def become_ready(self, name: str, pods: int = 1) -> None:
        obj = self.deployments[("ml", name)]
        st = obj["status"]
        st["availableReplicas"] = min(obj["spec"]["replicas"], st["availableReplicas"] + pods)
        self.record_serving()

    def settle(self) -> None:
        """The controllers catch up: every Deployment's status reflects ``available`` now."""
        for obj in self.deployments.values():
            self._bump(obj, spec_changed=False)

    def add(self, ns: str, body: Json) -> None:
        body = copy.deepcopy(body)
        body["metadata"].update({"namespace": ns, "uid": body["metadata"]["name"]})
        self._bump(body, spec_changed=True)
        self.deployments[(ns, body["metadata"]["name"])] = body

    async def read_deployment(self, ns: str, name: str) -> Json:
        try:
            return copy.deepcopy(self.deployments[(ns, name)])
        except KeyError:
            raise NotFound(f"Deployment {ns}/{name} not found") from None

    async def create_deployment(self, ns: str, body: Json) -> Json:
        name = body["metadata"]["name"]
        if (ns, name) in self.deployments:
            raise Conflict(f"Deployment {ns}/{name} exists")
        self.writes.append(("create", name))
        self.add(ns, body)
        return await self.read_deployment(ns, name)

    async def replace_deployment(self, ns: str, name: str, body: Json) -> Json:
        current = self.deployments[(ns, name)]
        if self.conflicts:
            self.conflicts -= 1
            self._bump(current, spec_changed=False)  # someone else wrote in between
            raise Conflict(f"Deployment {ns}/{name}: conflict")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(f"Deployment {ns}/{name}: stale resourceVersion")
        self.writes.append(("replace", name))
        new = copy.deepcopy(body)
        new["metadata"]["generation"] = current["metadata"]["generation"]
        self._bump(new, spec_changed=new["spec"] != current["spec"])
        self.deployments[(ns, name)] = new
        return copy.deepcopy(new)

    async def patch_deployment(self, ns: str, name: str, patch: Json) -> Json:
        obj = self.deployments[(ns, name)]
        before = copy.deepcopy(obj["spec"])
        _merge(obj, patch)
        self.writes.append(("patch", name))
        self._bump(obj, spec_changed=obj["spec"] != before)
        self.record_serving()
        return copy.deepcopy(obj)

    async def scale_deployment(self, ns: str, name: str, replicas: int) -> Json:
        return await self.patch_deployment(ns, name, {"spec": {"replicas": replicas}})

    async def list_pods(self, ns: str, selector: str) -> list[Json]:
        """Every Deployment's pods, as its ReplicaSet owns them: ``availableReplicas`` ready ones,
        of which ``leaving`` are being deleted (the selector is ignored: ownership decides)."""
        pods: list[Json] = []
        for (dep_ns, name), dep in self.deployments.items():
            if dep_ns != ns:
                continue
            owner = [{"uid": f"{dep['metadata']['uid']}-rs", "controller": True}]
            available = int((dep.get("status") or {}).get("availableReplicas") or 0)
            leaving = self.leaving.get(name, 0)
            for i in range(available):
                meta: Json = {"name": f"{name}-{i}", "ownerReferences": owner}
                if i < leaving:
                    meta["deletionTimestamp"] = "2026-11-26T12:00:00Z"
                pods.append({"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        return pods

    async def list_replicasets(self, ns: str, selector: str) -> list[Json]:
        return [{"metadata": {"name": f"{name}-rs", "uid": f"{dep['metadata']['uid']}-rs",
                              "ownerReferences": [{"uid": dep["metadata"]["uid"], "controller": True}]}}
                for (dep_ns, name), dep in self.deployments.items() if dep_ns == ns]


def stable_body(replicas: int = 3) -> Json:
    return {"metadata": {"name": "fraud", "labels": {"app": "fraud"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "fraud"}},
                     "template": {"metadata": {"labels": {"app": "fraud"}},
                                  "spec": {"containers": [{"name": "server", "image": "fraud:v1",
                                                           "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}


def spec(**template: Any) -> ModelRolloutSpec:
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"},
        "canary": {"deployment": "fraud-canary", "template": template or {"image": "fraud:v2"}},
        "analysis": {"progressDeadlineSeconds": 30}})


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def world() -> tuple[FakeApi, FakeClock, KubeExecutor]:
    api, clock = FakeApi(), FakeClock()
    api.add("ml", stable_body())
    return api, clock, KubeExecutor(api, clock.now, poll_interval=1.0, sleep=clock.sleep)  # type: ignore[arg-type]


def test_start_is_idempotent_and_keeps_the_first_record(world) -> None:
    api, clock, ex = world
    first = asyncio.run(ex.start_rollout("ml", spec(), ModelRolloutStatus(), rollout="fraud"))
    assert isinstance(first, Initialized) and first.stable.replicas == 3 and first.stable.recorded_at == T0
    assert api.writes == [("create", "fraud-canary")]
    # The stable was scaled meanwhile (replicas router at 25 %): the record still says 3.
    asyncio.run(api.scale_deployment("ml", "fraud", 2))
    api.writes.clear()
    clock.t += timedelta(minutes=1)
    again = asyncio.run(ex.start_rollout("ml", spec(), ModelRolloutStatus(stable_record=first.stable), rollout="fraud"))
    assert isinstance(again, Initialized) and again.stable == first.stable
    assert api.writes == []


def test_start_survives_a_409_race(world) -> None:
    api, _, ex = world
    asyncio.run(ex.start_rollout("ml", spec(), ModelRolloutStatus()))
    api.conflicts = 2
    result = asyncio.run(ex.start_rollout("ml", spec(image="fraud:v3"), ModelRolloutStatus()))
    assert isinstance(result, Initialized)
    assert api.deployments[("ml", "fraud-canary")]["spec"]["template"]["spec"]["containers"][0]["image"] == "fraud:v3"
    api.conflicts = 99
    with pytest.raises(ClusterConflict):
        asyncio.run(ex.start_rollout("ml", spec(image="fraud:v4"), ModelRolloutStatus()))


def test_start_refuses_a_bad_container_and_a_digest_mismatch_without_writing(world) -> None:
    api, _, ex = world
    bad = asyncio.run(ex.start_rollout("ml", spec(container="nope"), ModelRolloutStatus()))
    assert isinstance(bad, InitFailed) and bad.reason.startswith("spec.canary.template.container: 'nope'")
    user = stable_body(0)
    user["metadata"]["name"] = "fraud-canary"
    api.add("ml", user)
    api.writes.clear()
    refused = asyncio.run(ex.start_rollout("ml", spec(modelDigest=DIGEST), ModelRolloutStatus()))
    assert isinstance(refused, InitFailed)
    assert f"{MODEL_DIGEST_ANNOTATION} (absent)" in refused.reason
    assert api.writes == []


def _promote_until_done(ex: KubeExecutor, s: ModelRolloutSpec, status: ModelRolloutStatus) -> list[object]:
    results: list[object] = []
    for _ in range(20):
        results.append(asyncio.run(ex.promote("ml", s, status)))
        if not isinstance(results[-1], PromotionProgress):
            return results
    raise AssertionError(f"the handover did not end: {results}")


def test_promote_hands_over_in_batches_within_the_surge(world) -> None:
    api, _, ex = world
    s = spec(image="fraud:v2", resources={"limits": {"nvidia.com/gpu": "2"}})
    record = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus())).stable  # type: ignore[union-attr]
    # The machine's SetWeight: the target (and its serving floor) comes from the recorded stable.
    asyncio.run(ex.set_weight("ml", s, ModelRolloutStatus(stable_record=record), 100))
    assert api.deployments[("ml", "fraud")]["spec"]["replicas"] == 0
    api.peak = 0
    results = _promote_until_done(ex, s, ModelRolloutStatus(stable_record=record, canary_weight=100))
    # 25 % of 3 rounds up to 1 pod per batch: 0->1, 1->2, 2->3, then the canary goes.
    assert [r.stable_ready for r in results if isinstance(r, PromotionProgress)] == [0, 1, 2]
    assert isinstance(results[-1], PromotionApplied)
    assert api.peak == 3 + 1  # the larger side plus the surge, never two full copies
    stable = api.deployments[("ml", "fraud")]
    assert stable["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert stable["spec"]["template"]["metadata"]["labels"] == {"app": "fraud"}
    assert stable["spec"]["replicas"] == 3
    assert api.deployments[("ml", "fraud-canary")]["spec"]["replicas"] == 0


def test_a_batch_that_never_becomes_ready_stops_the_handover_where_it_is(world) -> None:
    api, clock, ex = world
    s = spec(image="fraud:v2")
    record = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus())).stable  # type: ignore[union-attr]
    asyncio.run(ex.apply_weight(rollout_target("ml", s, 3), RouterKind.REPLICAS, 100))
    status = ModelRolloutStatus(stable_record=record, canary_weight=100)
    api.available = False
    first = asyncio.run(ex.promote("ml", s, status))
    assert first == PromotionProgress(stable_ready=0, canary_replicas=3, total=3)
    started = clock.t
    failed = asyncio.run(ex.promote("ml", s, status))
    assert isinstance(failed, PromotionFailed), failed
    assert "handover stopped at 0/3" in failed.reason and "within 30s" in failed.reason
    assert clock.t - started >= timedelta(seconds=30)
    # Where it stopped: the canary still holds all its pods; the stable's unready batch stays.
    assert api.deployments[("ml", "fraud-canary")]["spec"]["replicas"] == 3
    assert api.deployments[("ml", "fraud")]["spec"]["replicas"] == 1

    api.available = True
    api.settle()
    assert isinstance(_promote_until_done(ex, s, status)[-1], PromotionApplied)
    assert api.deployments[("ml", "fraud")]["spec"]["replicas"] == 3


def test_a_restart_resumes_a_batch_deadline_instead_of_starting_it_over(world) -> None:
    """The batch began 25 s ago (status.promotion.batchStartedAt) when the operator restarted:
    the 30 s deadline has 5 s left, not 30 (refused pods under repeated restarts end Failed)."""
    api, clock, ex = world
    s = spec(image="fraud:v2")
    record = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus())).stable  # type: ignore[union-attr]
    asyncio.run(ex.apply_weight(rollout_target("ml", s, 3), RouterKind.REPLICAS, 100))
    api.available = False
    status = ModelRolloutStatus(stable_record=record, canary_weight=100)
    assert isinstance(asyncio.run(ex.promote("ml", s, status)), PromotionProgress)
    status = status.model_copy(update={"promotion": PromotionStatus(
        started_at=clock.t - timedelta(seconds=40), batch=1, total=3, batch_started_at=clock.t - timedelta(seconds=25))})
    resumed = clock.t
    failed = asyncio.run(ex.promote("ml", s, status))
    assert isinstance(failed, PromotionFailed), failed
    assert timedelta(seconds=5) <= clock.t - resumed < timedelta(seconds=8), clock.t - resumed


def test_a_retry_after_a_stopped_handover_restores_the_recorded_stable(world) -> None:
    api, _, ex = world
    s = spec(image="fraud:v2")
    record = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus())).stable  # type: ignore[union-attr]
    asyncio.run(ex.apply_weight(rollout_target("ml", s, 3), RouterKind.REPLICAS, 100))
    asyncio.run(ex.promote("ml", s, ModelRolloutStatus(stable_record=record, canary_weight=100)))
    assert api.deployments[("ml", "fraud")]["spec"]["template"] != record.template
    again = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus(stable_record=record), rollout="fraud"))
    assert isinstance(again, Initialized) and again.stable == record
    assert api.deployments[("ml", "fraud")]["spec"]["template"] == record.template


def stable_pods_ready_one_per_poll(replicas: int) -> tuple[FakeApi, KubeExecutor]:
    """A stable of ``replicas`` whose new pods become ready one per poll of the executor."""
    api, clock = FakeApi(), FakeClock()
    api.add("ml", stable_body(replicas))

    async def sleep(seconds: float) -> None:
        api.become_ready("fraud")
        await clock.sleep(seconds)

    return api, KubeExecutor(api, clock.now, poll_interval=1.0, sleep=sleep)  # type: ignore[arg-type]


def test_a_rollback_from_100_percent_removes_canary_pods_only_as_stable_pods_become_ready() -> None:
    """The serving floor: with 8 recorded replicas and maxUnavailable 25 %, at least 6
    pods stay ready while traffic leaves a canary that serves everything."""
    api, ex = stable_pods_ready_one_per_poll(8)
    s = spec(image="fraud:v2")
    asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus()))
    target = rollout_target("ml", s, 8)
    assert target.min_serving == 6
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 100))
    assert api.deployments[("ml", "fraud")]["spec"]["replicas"] == 0
    api.not_ready.add("fraud")
    api.serving.clear()
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 0))
    assert api.deployments[("ml", "fraud-canary")]["spec"]["replicas"] == 0
    assert api.deployments[("ml", "fraud")]["spec"]["replicas"] == 8
    assert min(api.serving) >= 6, api.serving
    assert api.serving[:2] == [8, 6]  # the first writes already remove the 2 pods the floor allows


def test_a_weight_change_gives_up_when_the_other_side_never_becomes_ready(world) -> None:
    api, clock, ex = world
    s = spec(image="fraud:v2")
    asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus()))
    target = rollout_target("ml", s, 3)
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 100))
    api.not_ready.add("fraud")
    started = clock.t
    with pytest.raises(CapacityWait, match=r"fraud-canary keeps 3 pods \(wants 0\).*too few ready pods"):
        asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 0))
    assert clock.t - started >= timedelta(seconds=30)
    assert api.deployments[("ml", "fraud-canary")]["spec"]["replicas"] == 3  # still serving


def test_rollback_phases_are_resumable_and_exact(world) -> None:
    api, _, ex = world
    s = spec(image="fraud:v2", env={"A": "1"})
    record = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus())).stable  # type: ignore[union-attr]
    asyncio.run(ex.apply_weight(rollout_target("ml", s, 3), RouterKind.REPLICAS, 25))
    canary = api.deployments[("ml", "fraud-canary")]
    asyncio.run(api.patch_deployment("ml", "fraud", {"spec": {"template": canary["spec"]["template"]}}))
    status = ModelRolloutStatus(stable_record=record, canary_weight=25)
    for phase in (1, 2, 3):
        assert asyncio.run(ex.rollback_phase("ml", s, status, phase)) == RollbackApplied(phase)
    stable = api.deployments[("ml", "fraud")]
    assert stable["spec"]["template"] == record.template and stable["spec"]["replicas"] == 3
    api.writes.clear()
    for phase in (1, 2, 3):
        asyncio.run(ex.rollback_phase("ml", s, status, phase))
    assert api.writes == []
    with pytest.raises(ValueError):
        asyncio.run(ex.rollback_phase("ml", s, status, 4))
    # Aborted before anything was recorded: phase 1 leaves the stable's count alone.
    del api.deployments[("ml", "fraud-canary")]
    assert asyncio.run(ex.rollback_phase("ml", s, ModelRolloutStatus(), 1)) == RollbackApplied(1)
    assert asyncio.run(ex.rollback_phase("ml", s, ModelRolloutStatus(), 3)) == RollbackApplied(3)


def test_unknown_router_is_an_error(world) -> None:
    _, _, ex = world
    with pytest.raises(InvalidSpec, match="spec.traffic.router: 'linkerd'"):
        asyncio.run(ex.apply_weight(rollout_target("ml", spec(), 3), "linkerd", 5))  # type: ignore[arg-type]


def test_a_rollback_right_after_a_scale_down_never_counts_the_pods_being_removed() -> None:
    """Seen in the chaos run: the stable was just scaled 6 -> 4 and its status still said 6
    available; trusting it dropped the canary to 0 and left 4 serving under a floor of 6."""
    api, ex = stable_pods_ready_one_per_poll(8)
    s = spec(image="fraud:v2")
    asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus()))
    target = rollout_target("ml", s, 8)
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 50))
    stable = api.deployments[("ml", "fraud")]
    assert stable["spec"]["replicas"] == 4
    stable["status"]["availableReplicas"] = 6  # the status lags the scale-down
    api.not_ready.add("fraud")
    canary_sizes: list[int] = []
    patch = api.patch_deployment

    async def recording_patch(ns: str, name: str, body: Json) -> Json:
        out = await patch(ns, name, body)
        if name == "fraud-canary":
            canary_sizes.append(out["spec"]["replicas"])
        return out

    api.patch_deployment = recording_patch  # type: ignore[method-assign]
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 0))
    # 4 stable pods stay, so the canary keeps 2 of its 4 until more stable pods are ready
    # (trusting the stale 6 would have dropped it to 0 at once: 4 serving under a floor of 6).
    assert canary_sizes[0] == 2, canary_sizes
    assert canary_sizes[-1] == 0 and api.deployments[("ml", "fraud")]["spec"]["replicas"] == 8


def executor_with_armed_polls(on_poll: Callable[[FakeApi, int], None]
                              ) -> tuple[FakeApi, KubeExecutor, dict[str, Any]]:
    """A stable of 8 and an executor whose polls, once ``polls["armed"]`` is set, are counted
    and call ``on_poll(api, n)``: the cluster changes at a chosen poll of the change under test."""
    api, clock = FakeApi(), FakeClock()
    api.add("ml", stable_body(8))
    polls: dict[str, Any] = {"n": 0, "armed": False}

    async def sleep(seconds: float) -> None:
        if polls["armed"]:
            polls["n"] += 1
            on_poll(api, polls["n"])
        await clock.sleep(seconds)

    return api, KubeExecutor(api, clock.now, poll_interval=1.0, sleep=sleep), polls  # type: ignore[arg-type]


def test_a_rollback_right_after_a_step_never_counts_stable_pods_still_leaving() -> None:
    """Chaos finding 4 (docs/chaos.md): promote (stable 6 -> 4) and abort 0.2 s later. The
    rollback grew the stable to 8 while its status still counted 2 pods of the scale-down
    being deleted; once spec.replicas was 8 the cap no longer hid them, the canary went to 1
    and 5 pods served under a floor of 6. The pods themselves are counted now."""

    def on_poll(api: FakeApi, n: int) -> None:
        stable = api.deployments[("ml", "fraud")]
        if n == 3:  # the ReplicaSet's status catches up: the leaving pods are gone from it
            stable["status"]["availableReplicas"] -= api.leaving.pop("fraud", 0)
            api.record_serving()
        elif n > 3:
            api.become_ready("fraud")

    api, ex, polls = executor_with_armed_polls(on_poll)
    s = spec(image="fraud:v2")
    asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus()))
    target = rollout_target("ml", s, 8)
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 50))
    stable = api.deployments[("ml", "fraud")]
    assert stable["spec"]["replicas"] == 4
    stable["status"]["availableReplicas"] = 6  # 2 of them are being deleted
    api.leaving["fraud"] = 2
    api.not_ready.add("fraud")
    api.serving.clear()
    polls["armed"] = True
    asyncio.run(ex.apply_weight(target, RouterKind.REPLICAS, 0))
    assert api.deployments[("ml", "fraud")]["spec"]["replicas"] == 8
    assert api.deployments[("ml", "fraud-canary")]["spec"]["replicas"] == 0
    assert min(api.serving) >= 6, api.serving


def test_ready_pods_staying_counts_only_the_deployments_own_ready_pods_not_being_deleted() -> None:
    from modelrollout.adapters.workload import ready_pods_staying

    dep = {"metadata": {"uid": "d1"}}
    rs = [{"metadata": {"uid": "rs1", "ownerReferences": [{"uid": "d1", "controller": True}]}},
          {"metadata": {"uid": "rs-other", "ownerReferences": [{"uid": "canary", "controller": True}]}}]
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}

    def pod(owner: str, status: Json, deleting: bool = False) -> Json:
        meta: Json = {"ownerReferences": [{"uid": owner, "controller": True}]}
        if deleting:
            meta["deletionTimestamp"] = "2026-11-26T12:00:00Z"
        return {"metadata": meta, "status": status}

    pods = [pod("rs1", ready), pod("rs1", ready), pod("rs1", ready, deleting=True),
            pod("rs1", {"conditions": [{"type": "Ready", "status": "False"}]}), pod("rs-other", ready)]
    assert ready_pods_staying(dep, rs, pods) == 2
    assert ready_pods_staying({"metadata": {}}, rs, pods) == 0


def test_a_step_never_shrinks_a_stable_still_rolling_back_to_its_recorded_template() -> None:
    """Chaos run #77: the retry restored the stable's template after a refused promotion; the
    stable was still rolling (10 ready over two ReplicaSets, 2 updated) when step 0 cut it to 6,
    the floor, and its own rolling update then took it to 5 (maxUnavailable 25 % of 6)."""
    api, clock = FakeApi(), FakeClock()
    api.add("ml", stable_body(8))
    polls = 0

    async def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:  # the stable's rollout completes: only pods of the recorded template are left
            api.deployments[("ml", "fraud")]["status"].update(replicas=8, updatedReplicas=8, availableReplicas=8)
        await clock.sleep(seconds)

    ex = KubeExecutor(api, clock.now, poll_interval=1.0, sleep=sleep)  # type: ignore[arg-type]
    s = spec(image="fraud:v2")
    asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus()))
    api.deployments[("ml", "fraud")]["status"].update(replicas=10, updatedReplicas=2, availableReplicas=10)
    api.not_ready.add("fraud-canary")  # the step's canary pods are not ready before the stable settles
    stable_sizes: list[tuple[int, int]] = []
    patch = api.patch_deployment

    async def recording_patch(ns: str, name: str, body: Json) -> Json:
        if name == "fraud":
            stable_sizes.append((polls, body["spec"]["replicas"]))
        return await patch(ns, name, body)

    api.patch_deployment = recording_patch  # type: ignore[method-assign]
    asyncio.run(ex.apply_weight(rollout_target("ml", s, 8), RouterKind.REPLICAS, 25))
    # Cut to 6 at once (poll 0), its own rollout may leave 5; it is shrunk only once rolled out.
    assert stable_sizes == [(3, 6)], stable_sizes


def test_a_retry_moves_no_traffic_before_the_stable_has_rolled_back_to_its_recorded_template() -> None:
    def on_poll(api: FakeApi, n: int) -> None:
        if n == 3:  # the challenger's ReplicaSet is gone: rolled back at 2 pods
            api.deployments[("ml", "fraud")]["status"].update(replicas=2, updatedReplicas=2, availableReplicas=2)

    api, ex, polls = executor_with_armed_polls(on_poll)
    s = spec(image="fraud:v2")
    record = asyncio.run(ex.start_rollout("ml", s, ModelRolloutStatus())).stable  # type: ignore[union-attr]
    asyncio.run(ex.apply_weight(rollout_target("ml", s, 8), RouterKind.REPLICAS, 100))
    status = ModelRolloutStatus(stable_record=record, canary_weight=100)
    assert isinstance(asyncio.run(ex.promote("ml", s, status)), PromotionProgress)  # stable: challenger, 2 pods
    replace, patch = api.replace_deployment, api.patch_deployment
    first_traffic_write: list[int] = []

    async def rolling_replace(ns: str, name: str, body: Json) -> Json:
        out = await replace(ns, name, body)
        if name == "fraud":  # the controller starts rolling back: the challenger's pods are still there
            api.deployments[(ns, name)]["status"].update(replicas=4, updatedReplicas=2, availableReplicas=2)
        return out

    async def recording_patch(ns: str, name: str, body: Json) -> Json:
        first_traffic_write.append(polls["n"])
        return await patch(ns, name, body)

    api.replace_deployment, api.patch_deployment = rolling_replace, recording_patch  # type: ignore[method-assign]
    polls["armed"] = True
    again = asyncio.run(ex.start_rollout("ml", s, status, rollout="fraud"))
    assert isinstance(again, Initialized), again
    assert api.deployments[("ml", "fraud")]["spec"]["template"] == record.template
    assert first_traffic_write and first_traffic_write[0] >= 3, first_traffic_write


class ServiceApi(FakeApi):
    """FakeApi plus the stable's Service and the HTTPRoute of a gatewayAPI rollout."""

    def __init__(self, selector: dict[str, str] | None) -> None:
        super().__init__()
        self.selector = selector
        self.route = {"spec": {"rules": [{"backendRefs": [{"name": "fraud", "port": 80, "weight": 100},
                                                          {"name": "fraud-canary", "port": 80, "weight": 0}]}]}}

    async def read_service(self, ns: str, name: str) -> Json:
        if self.selector is None:
            raise NotFound(f"Service {ns}/{name} not found")
        return {"metadata": {"name": name}, "spec": {"selector": self.selector}}

    async def read_httproute(self, ns: str, name: str) -> Json:
        return copy.deepcopy(self.route)


def shadow_rollout_spec() -> ModelRolloutSpec:
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"}, "canary": {"deployment": "fraud-canary", "template": {"image": "fraud:v2"}},
        "traffic": {"router": "gatewayAPI", "httpRoute": {"name": "fraud"}},
        "steps": [{"shadow": {"duration": "1m"}}, {"weight": 5, "duration": "1m"}, {"weight": 100, "duration": "1m"}]})


@pytest.mark.parametrize("selector,refused", [
    ({"app": "fraud"}, True),                                   # the canary's pods carry app: fraud too
    ({"app": "fraud", "modelrollout.io/role": "stable"}, False),  # the canary's say role: canary
    ({}, False),                                                # endpoints managed by hand
    (None, False),                                              # no such Service: nobody is served
])
def test_a_shadow_start_refuses_a_stable_service_that_would_serve_users_from_the_canary(
        selector: dict[str, str] | None, refused: bool) -> None:
    api, clock = ServiceApi(selector), FakeClock()
    stable = stable_body()
    if selector and "modelrollout.io/role" in selector:
        stable["spec"]["template"]["metadata"]["labels"]["modelrollout.io/role"] = "stable"
    api.add("ml", stable)
    ex = KubeExecutor(api, clock.now, poll_interval=1.0, sleep=clock.sleep)  # type: ignore[arg-type]
    result = asyncio.run(ex.start_rollout("ml", shadow_rollout_spec(), ModelRolloutStatus()))
    if refused:
        assert isinstance(result, InitFailed), result
        assert "Service ml/fraud" in result.reason and "modelrollout.io/role: stable" in result.reason
        assert ("ml", "fraud-canary") not in api.deployments  # nothing changed
    else:
        assert isinstance(result, Initialized), result


def test_promotion_keeps_the_stable_s_role_label_its_service_selects() -> None:
    from modelrollout.adapters.workload import canary_pod_template, promoted_template

    stable_template = {"metadata": {"labels": {"app": "fraud", "modelrollout.io/role": "stable"}},
                       "spec": {"containers": [{"name": "server", "image": "fraud:v1"}]}}
    canary = canary_pod_template(stable_template, None, "Deployment ml/fraud")
    assert canary["metadata"]["labels"]["modelrollout.io/role"] == "canary"
    assert promoted_template(canary, stable_template)["metadata"]["labels"] == stable_template["metadata"]["labels"]
