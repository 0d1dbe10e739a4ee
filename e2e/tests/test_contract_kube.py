"""Contract tests of the Kubernetes side against the local harness's real kube-apiserver.

What is asserted is what the apiserver answers (Deployments, HTTPRoutes, pods,
Events), never what the executor believes it did:

* one suite every traffic router passes (weights 5/25/100/0 set and read back,
  re-setting changes nothing);
* start_rollout records the stable and creates the canary with its overrides
  (GPU limits included); a model-digest mismatch refuses to start and touches nothing;
* promote moves the challenger's template (image, GPU limits, digest) to the stable
  and scales the canary to 0 — or, when the stable cannot become available, restores
  the recorded stable and keeps traffic on the canary;
* rollback phases restore the stable's template *exactly* (dict equality);
* canary_health sees both OOM shapes the harness injects;
* Events are posted on the ModelRollout and readable.

Timings of each action against the local apiserver are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import watch

from e2e.harness.cluster import REPO, Cluster, WaitTimeout
from e2e.harness.manifests import gpu_deployment, http_route
from modelrollout.adapters.kube import KubeExecutor, rollout_target
from modelrollout.adapters.kubeapi import KubeApi
from modelrollout.adapters.notifiers.events import EventRecorder
from modelrollout.adapters.workload import ROLE_LABEL, canary_health_of
from modelrollout.api.models import MODEL_DIGEST_ANNOTATION, ModelRolloutSpec, ModelRolloutStatus, RouterKind
from modelrollout.core.actions import EmitEvent, EventType
from modelrollout.core.observations import (
    InitFailed,
    Initialized,
    PromotionApplied,
    PromotionFailed,
    PromotionProgress,
    RollbackApplied,
)
from modelrollout.errors import ClusterConflict

pytestmark = pytest.mark.e2e

T = TypeVar("T")
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
TIMINGS: dict[str, list[float]] = {}


def run(what: str, coro: Awaitable[T]) -> T:
    """Run one executor call, recording how long the apiserver round trips took."""
    started = time.perf_counter()
    result = asyncio.run(coro)  # type: ignore[arg-type]
    TIMINGS.setdefault(what, []).append(time.perf_counter() - started)
    return result


@pytest.fixture(scope="module", autouse=True)
def _print_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        print("\n[contract-kube] action timings against the local apiserver (ms):")
        for what, values in sorted(TIMINGS.items()):
            values = sorted(values)
            print(f"  {what:<32} n={len(values):<3} median={1000 * values[len(values) // 2]:8.1f} "
                  f"max={1000 * values[-1]:8.1f}")


def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def executor(cluster: Cluster) -> KubeExecutor:
    return KubeExecutor(cluster.api_client, now, poll_interval=0.2)


def make_spec(router: str = "replicas", template: dict[str, Any] | None = None, pds: int = 60,
              stable: str = "fraud", canary: str = "fraud-canary") -> ModelRolloutSpec:
    data: dict[str, Any] = {
        "stable": {"deployment": stable},
        "canary": {"deployment": canary, "template": template or {"image": "fraud:v2"}},
        "traffic": {"router": router},
        "analysis": {"progressDeadlineSeconds": pds},
    }
    if router == "gatewayAPI":
        data["traffic"]["httpRoute"] = {"name": stable}
    return ModelRolloutSpec.model_validate(data)


def raw(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    """The Deployment exactly as the apiserver stores it (JSON, no client model in between)."""
    return json.loads(cluster.kubectl("-n", ns, "get", "deployment", name, "-o", "json"))


def route_weights(cluster: Cluster, ns: str, name: str) -> list[int]:
    r = cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", name)
    return [b.get("weight", 1) for b in r["spec"]["rules"][0]["backendRefs"]]


def wait_available(cluster: Cluster, ns: str, name: str, replicas: int, timeout: float = 60) -> None:
    cluster.wait_for(lambda: cluster.deployment_available(ns, name, replicas), timeout=timeout,
                     message=f"{ns}/{name} {replicas}/{replicas} available")


def deployment_condition(d: dict[str, Any], kind: str) -> str | None:
    return next((c.get("status") for c in (d.get("status") or {}).get("conditions") or [] if c.get("type") == kind),
                None)


def deployment_version_where(cluster: Cluster, ns: str, name: str, predicate: Callable[[dict[str, Any]], bool],
                             timeout: int = 30, message: str = "a Deployment version") -> dict[str, Any]:
    """The first version of the Deployment (API JSON) satisfying ``predicate``: the current one,
    or one written after it, seen on a watch -- however briefly it lasted."""
    listed = cluster.apps.list_namespaced_deployment(ns, field_selector=f"metadata.name={name}")
    current = raw(cluster, ns, name)
    if predicate(current):
        return current
    w = watch.Watch()
    try:
        for event in w.stream(cluster.apps.list_namespaced_deployment, ns, field_selector=f"metadata.name={name}",
                              resource_version=listed.metadata.resource_version, timeout_seconds=timeout):
            if event["type"] == "ERROR":
                raise AssertionError(f"watching {ns}/{name}: {event['raw_object']}")
            if event["type"] in ("ADDED", "MODIFIED") and predicate(event["raw_object"]):
                return event["raw_object"]
    finally:
        w.stop()
    raise WaitTimeout(f"no version of {ns}/{name} within {timeout}s: {message}")


# Written on the Deployment by the deployment controller once it has made the ReplicaSet of
# the current template: until then the controller itself is about to change the object.
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


def wait_controller_synced(cluster: Cluster, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    """The Deployment once the deployment controller has caught up with its spec: it has
    observed the current generation and written the revision annotation. Reading a
    Deployment's metadata before that races the controller's own first write."""
    def synced() -> dict[str, Any] | None:
        d = raw(cluster, ns, name)
        annotations = d["metadata"].get("annotations") or {}
        observed = (d.get("status") or {}).get("observedGeneration", 0)
        return d if REVISION_ANNOTATION in annotations and observed >= d["metadata"]["generation"] else None
    return cluster.wait_for(synced, timeout=timeout, message=f"{ns}/{name}: the deployment controller's revision "
                                                             "annotation and observedGeneration")


def started(cluster: Cluster, executor: KubeExecutor, ns: str, spec: ModelRolloutSpec,
            replicas: int = 3) -> ModelRolloutStatus:
    """A stable running, start_rollout done: the status the machine would hold at step 0."""
    cluster.apply(gpu_deployment(spec.stable.deployment, ns, replicas=replicas, image="fraud:v1", gpus=1))
    wait_available(cluster, ns, spec.stable.deployment, replicas)
    result = run("start_rollout", executor.start_rollout(ns, spec, ModelRolloutStatus(), rollout="fraud"))
    assert isinstance(result, Initialized), result
    return ModelRolloutStatus(stable_record=result.stable)


# ----------------------------------------------------------------------------- harness


def test_httproute_crd_is_served_at_v1(cluster: Cluster) -> None:
    crd = json.loads(cluster.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", "-o", "json"))
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert versions["v1"]["served"] and versions["v1"]["storage"]
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])


# ----------------------------------------------------------------------------- routers


@dataclass
class RouterCase:
    kind: RouterKind
    total: int = 3


@pytest.mark.parametrize("case", [RouterCase(RouterKind.REPLICAS), RouterCase(RouterKind.GATEWAY_API)],
                         ids=lambda c: c.kind.value)
def test_every_router_sets_and_reads_back_weights(cluster: Cluster, namespace: str, executor: KubeExecutor,
                                                  case: RouterCase) -> None:
    ns, total = namespace, case.total
    cluster.apply([gpu_deployment("fraud", ns, replicas=total, image="fraud:v1"),
                   gpu_deployment("fraud-canary", ns, replicas=0, image="fraud:v2")])
    if case.kind == RouterKind.GATEWAY_API:
        cluster.apply(http_route("fraud", ns, {"fraud": 100, "fraud-canary": 0}))
    spec = make_spec(case.kind.value)
    target = rollout_target(ns, spec, total)

    for percent in (5, 25, 100, 0):
        run(f"apply_weight[{case.kind.value}]", executor.apply_weight(target, case.kind, percent))
        canary_want = -(-total * percent // 100)
        stable = raw(cluster, ns, "fraud")["spec"]["replicas"]
        canary = raw(cluster, ns, "fraud-canary")["spec"]["replicas"]
        assert canary == canary_want, (percent, canary)
        if case.kind == RouterKind.REPLICAS:
            assert stable == total - canary_want
        else:
            assert stable == total  # the stable keeps full capacity under a gateway
            assert route_weights(cluster, ns, "fraud") == [100 - percent, percent]
        assert run(f"read_weight[{case.kind.value}]", executor.read_weight(target, case.kind)) == percent

        # Idempotent: setting the same weight again writes nothing.
        versions = (raw(cluster, ns, "fraud")["metadata"]["generation"],
                    raw(cluster, ns, "fraud-canary")["metadata"]["generation"])
        route_rv = (cluster.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes",
                                                                "fraud")["metadata"]["resourceVersion"]
                    if case.kind == RouterKind.GATEWAY_API else None)
        run(f"apply_weight[{case.kind.value}] (no-op)", executor.apply_weight(target, case.kind, percent))
        assert (raw(cluster, ns, "fraud")["metadata"]["generation"],
                raw(cluster, ns, "fraud-canary")["metadata"]["generation"]) == versions
        if route_rv is not None:
            assert cluster.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", ns, "httproutes", "fraud")["metadata"]["resourceVersion"] == route_rv

    # At 5 % of 3 replicas the canary really runs one pod.
    run("apply_weight", executor.apply_weight(target, case.kind, 5))
    wait_available(cluster, ns, "fraud-canary", 1)


def test_gateway_router_names_the_route_and_the_missing_backend(cluster: Cluster, namespace: str,
                                                                executor: KubeExecutor) -> None:
    ns = namespace
    cluster.apply([gpu_deployment("fraud", ns, replicas=2), gpu_deployment("fraud-canary", ns, replicas=0),
                   http_route("fraud", ns, {"fraud": 100})])
    target = rollout_target(ns, make_spec("gatewayAPI"), 2)
    with pytest.raises(ClusterConflict) as err:
        asyncio.run(executor.apply_weight(target, RouterKind.GATEWAY_API, 5))
    assert f"HTTPRoute {ns}/fraud" in str(err.value) and "'fraud-canary'" in str(err.value)
    assert route_weights(cluster, ns, "fraud") == [100]
    with pytest.raises(ClusterConflict, match=f"HTTPRoute {ns}/nope not found"):
        asyncio.run(executor.apply_weight(rollout_target(ns, make_spec("gatewayAPI", stable="nope"), 2),
                                        RouterKind.GATEWAY_API, 5))
    # start_rollout checks the route first: refused, nothing created.
    refused = run("start_rollout (bad route)", executor.start_rollout(ns, make_spec("gatewayAPI"), ModelRolloutStatus()))
    assert isinstance(refused, InitFailed) and "'fraud-canary'" in refused.reason, refused
    cluster.delete("deployment", "fraud-canary", ns)
    cluster.wait_for(lambda: not cluster.kubectl("-n", ns, "get", "deployment", "--ignore-not-found", "fraud-canary"),
                     timeout=30, message="fraud-canary deleted")
    refused = run("start_rollout (bad route)", executor.start_rollout(ns, make_spec("gatewayAPI"), ModelRolloutStatus()))
    assert isinstance(refused, InitFailed)
    assert not cluster.kubectl("-n", ns, "get", "deployment", "--ignore-not-found", "fraud-canary")


# ----------------------------------------------------------------------------- start


def test_start_rollout_records_the_stable_and_creates_the_canary(cluster: Cluster, namespace: str,
                                                                 executor: KubeExecutor) -> None:
    ns = namespace
    spec = make_spec(template={"image": "fraud:v2", "modelDigest": DIGEST_A, "env": {"MODEL_VERSION": "2"},
                               "resources": {"limits": {"nvidia.com/gpu": "2", "memory": "4Gi"}}})
    cluster.apply(gpu_deployment("fraud", ns, replicas=2, image="fraud:v1", gpus=1))
    wait_available(cluster, ns, "fraud", 2)
    stable_before = raw(cluster, ns, "fraud")

    result = run("start_rollout (create canary)", executor.start_rollout(ns, spec, ModelRolloutStatus(), rollout="fraud"))
    assert isinstance(result, Initialized), result
    assert result.stable.replicas == 2
    assert result.stable.template == stable_before["spec"]["template"]  # the whole template, exactly

    canary = raw(cluster, ns, "fraud-canary")
    assert canary["spec"]["replicas"] == 0
    assert canary["metadata"]["labels"]["modelrollout.io/rollout"] == "fraud"
    assert canary["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelrollout"
    assert "ownerReferences" not in canary["metadata"]
    assert canary["spec"]["selector"]["matchLabels"] == {"app": "fraud", ROLE_LABEL: "canary"}
    assert canary["spec"]["progressDeadlineSeconds"] == 60
    pod = canary["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app": "fraud", ROLE_LABEL: "canary"}
    assert pod["metadata"]["annotations"][MODEL_DIGEST_ANNOTATION] == DIGEST_A
    container = pod["spec"]["containers"][0]
    assert container["image"] == "fraud:v2"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "4Gi", "cpu": "1"}
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert {"name": "MODEL_VERSION", "value": "2"} in container["env"]
    assert raw(cluster, ns, "fraud")["metadata"]["generation"] == stable_before["metadata"]["generation"]

    # Twice is harmless: nothing is rewritten, the first record is what the machine keeps.
    status = ModelRolloutStatus(stable_record=result.stable)
    again = run("start_rollout (no-op)", executor.start_rollout(ns, spec, status, rollout="fraud"))
    assert isinstance(again, Initialized) and again.stable == result.stable
    assert raw(cluster, ns, "fraud-canary")["metadata"]["generation"] == canary["metadata"]["generation"]

    # The canary is schedulable with its 2 GPUs.
    run("apply_weight", executor.apply_weight(rollout_target(ns, spec, 2), RouterKind.REPLICAS, 25))
    wait_available(cluster, ns, "fraud-canary", 1)

    # A new revision re-deploys the challenger, after taking its traffic back to the stable:
    # the serving canary is never rolled to an unvalidated template under users.
    spec2 = make_spec(template={"image": "fraud:v3", "resources": {"limits": {"nvidia.com/gpu": "2"}}})
    assert isinstance(run("start_rollout (new revision)", executor.start_rollout(ns, spec2, status)), Initialized)
    canary2 = raw(cluster, ns, "fraud-canary")
    assert canary2["spec"]["template"]["spec"]["containers"][0]["image"] == "fraud:v3"
    assert MODEL_DIGEST_ANNOTATION not in (canary2["spec"]["template"]["metadata"].get("annotations") or {})
    assert canary2["spec"]["replicas"] == 0
    assert raw(cluster, ns, "fraud")["spec"]["replicas"] == 2


def test_digest_mismatch_refuses_to_start_and_touches_nothing(cluster: Cluster, namespace: str,
                                                              executor: KubeExecutor) -> None:
    ns = namespace
    cluster.apply([gpu_deployment("fraud", ns, replicas=2, image="fraud:v1"),
                   gpu_deployment("fraud-canary", ns, replicas=0, image="fraud:v2",
                                  pod_annotations={MODEL_DIGEST_ANNOTATION: DIGEST_B})])
    def written() -> dict[str, Any]:  # what a write would change (status churns on its own while pods start)
        return {n: (d["metadata"]["generation"], d["metadata"].get("annotations"), d["spec"])
                for n in ("fraud", "fraud-canary") for d in [raw(cluster, ns, n)]}

    # "before" only once the deployment controller has written its revision annotation:
    # read earlier, its own write would show up as a change the executor did not make.
    for name in ("fraud", "fraud-canary"):
        wait_controller_synced(cluster, ns, name)
    before = written()
    assert all(REVISION_ANNOTATION in annotations for _, annotations, _ in before.values()), before
    spec = make_spec(template={"image": "fraud:v2", "modelDigest": DIGEST_A})
    result = run("start_rollout (digest mismatch)", executor.start_rollout(ns, spec, ModelRolloutStatus()))
    assert isinstance(result, InitFailed)
    assert result.reason.startswith(f"spec.canary.template.modelDigest: {DIGEST_A} does not match the canary pod "
                                    f"template's annotation {MODEL_DIGEST_ANNOTATION} ({DIGEST_B})"), result.reason
    assert written() == before

    # The user's own canary with the right digest: started, its own labels and selector kept.
    ok = run("start_rollout (user canary)", executor.start_rollout(ns, make_spec(
        template={"modelDigest": DIGEST_B, "env": {"X": "1"}}), ModelRolloutStatus()))
    assert isinstance(ok, Initialized)
    canary = raw(cluster, ns, "fraud-canary")
    assert canary["spec"]["template"]["metadata"]["labels"] == {"app": "fraud-canary"}
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "fraud:v2"

    missing = run("start_rollout (no stable)", executor.start_rollout(ns, make_spec(stable="ghost"), ModelRolloutStatus()))
    assert isinstance(missing, InitFailed)
    assert missing.reason.startswith(f"spec.stable.deployment: Deployment {ns}/ghost not found")


# ----------------------------------------------------------------------------- promote


def promote_until_done(executor: KubeExecutor, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                       what: str) -> list[Any]:
    """Promote batch by batch, as the controller does, until the handover ends."""
    results: list[Any] = []
    for _ in range(20):
        results.append(run(what, executor.promote(ns, spec, status)))
        if not isinstance(results[-1], PromotionProgress):
            return results
    raise AssertionError(f"the handover did not end: {results}")


def test_promote_moves_the_challenger_to_the_stable(cluster: Cluster, namespace: str, executor: KubeExecutor) -> None:
    ns = namespace
    spec = make_spec(template={"image": "fraud:v2", "modelDigest": DIGEST_A,
                               "resources": {"limits": {"nvidia.com/gpu": "2"}}}, pds=60)
    status = started(cluster, executor, ns, spec, replicas=2)
    target = rollout_target(ns, spec, 2)
    run("apply_weight", executor.apply_weight(target, RouterKind.REPLICAS, 100))
    wait_available(cluster, ns, "fraud-canary", 2)
    status = status.model_copy(update={"canary_weight": 100})

    results = promote_until_done(executor, ns, spec, status, "promote (one batch)")
    assert isinstance(results[-1], PromotionApplied), results
    # 25 % of 2 rounds up to 1 pod a batch: the stable goes 0 -> 1 -> 2, then the canary goes.
    assert [r.stable_ready for r in results[:-1]] == [0, 1]
    stable = raw(cluster, ns, "fraud")
    pod = stable["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == "fraud:v2"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["metadata"]["annotations"][MODEL_DIGEST_ANNOTATION] == DIGEST_A
    assert pod["metadata"]["labels"] == {"app": "fraud"}
    assert stable["spec"]["replicas"] == 2
    assert cluster.deployment_available(ns, "fraud", 2)
    assert raw(cluster, ns, "fraud-canary")["spec"]["replicas"] == 0

    # Re-run after a crash: nothing changes.
    generation = stable["metadata"]["generation"]
    assert isinstance(run("promote (re-run)", executor.promote(ns, spec, status)), PromotionApplied)
    assert raw(cluster, ns, "fraud")["metadata"]["generation"] == generation


def test_promote_failure_stops_the_handover_where_it_is_naming_the_quota(cluster: Cluster, namespace: str,
                                                                       executor: KubeExecutor) -> None:
    """A GPU quota that holds the canary but not one more pod: the first batch is never
    created, the handover stops, the canary keeps serving, and the cause is the quota's."""
    ns = namespace
    spec = make_spec(template={"image": "fraud:v2", "resources": {"limits": {"nvidia.com/gpu": "2"},
                                                                  "requests": {"nvidia.com/gpu": "2"}}}, pds=3)
    status = started(cluster, executor, ns, spec, replicas=2)
    assert status.stable_record is not None
    run("apply_weight", executor.apply_weight(rollout_target(ns, spec, 2), RouterKind.REPLICAS, 100))
    wait_available(cluster, ns, "fraud-canary", 2)
    cluster.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpus", "namespace": ns},
                   "spec": {"hard": {"requests.nvidia.com/gpu": "4"}}})  # the canary's 2 x 2 GPUs, no more
    cluster.wait_for(lambda: (cluster.core.read_namespaced_resource_quota("gpus", ns).status.used or {})
                     .get("requests.nvidia.com/gpu") == "4", timeout=30, message="quota usage counted")
    status = status.model_copy(update={"canary_weight": 100})

    t0 = time.perf_counter()
    results = promote_until_done(executor, ns, spec, status, "promote (fails after deadline)")
    result = results[-1]
    assert isinstance(result, PromotionFailed), results
    assert 3 <= time.perf_counter() - t0 < 20
    assert "handover stopped at 0/2" in result.reason and "progressDeadlineSeconds" in result.reason
    assert "exceeded quota" in result.reason, result.reason
    stable = raw(cluster, ns, "fraud")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "fraud:v2"  # stopped where it was
    assert raw(cluster, ns, "fraud-canary")["spec"]["replicas"] == 2                  # still serving everything


# ----------------------------------------------------------------------------- rollback


@pytest.mark.parametrize("router", [RouterKind.REPLICAS, RouterKind.GATEWAY_API], ids=lambda r: r.value)
def test_rollback_phases_restore_the_stable_exactly(cluster: Cluster, namespace: str, executor: KubeExecutor,
                                                    router: RouterKind) -> None:
    ns = namespace
    if router == RouterKind.GATEWAY_API:
        cluster.apply(http_route("fraud", ns, {"fraud": 100, "fraud-canary": 0}))
    spec = make_spec(router.value, template={"image": "fraud:v2", "modelDigest": DIGEST_A, "env": {"A": "1"},
                                             "resources": {"limits": {"nvidia.com/gpu": "2", "memory": "8Gi"}}})
    status = started(cluster, executor, ns, spec, replicas=3)
    record = status.stable_record
    assert record is not None
    run("apply_weight", executor.apply_weight(rollout_target(ns, spec, 3), router, 25))
    # The worst case phase 2 must undo: the stable already took the challenger (a promotion cut short).
    canary_template = raw(cluster, ns, "fraud-canary")["spec"]["template"]
    cluster.kubectl("-n", ns, "patch", "deployment", "fraud", "--type=merge", "-p", json.dumps({"spec": {
        "replicas": 1, "template": {"metadata": {"annotations": canary_template["metadata"]["annotations"]},
                                    "spec": {"containers": canary_template["spec"]["containers"]}}}}))
    assert raw(cluster, ns, "fraud")["spec"]["template"] != record.template

    for phase in (1, 2, 3):
        for attempt in ("", " (re-run)"):
            result = run(f"rollback_phase {phase}{attempt}", executor.rollback_phase(ns, spec, status, phase))
            assert result == RollbackApplied(phase)
        if phase == 1:
            if router == RouterKind.GATEWAY_API:
                assert route_weights(cluster, ns, "fraud") == [100, 0]
            else:
                assert raw(cluster, ns, "fraud")["spec"]["replicas"] == 3
            assert raw(cluster, ns, "fraud-canary")["spec"]["replicas"] == 0

    stable = raw(cluster, ns, "fraud")
    assert stable["spec"]["template"] == record.template
    limits = stable["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "1", "cpu": "1", "memory": "2Gi"}
    assert "env" not in stable["spec"]["template"]["spec"]["containers"][0]
    assert stable["spec"]["replicas"] == 3
    assert raw(cluster, ns, "fraud-canary")["spec"]["replicas"] == 0
    wait_available(cluster, ns, "fraud", 3)
    generation = stable["metadata"]["generation"]
    run("rollback_phase 2 (re-run)", executor.rollback_phase(ns, spec, status, 2))
    assert raw(cluster, ns, "fraud")["metadata"]["generation"] == generation


# ----------------------------------------------------------------------------- health


@pytest.mark.parametrize("shape", ["crashloop-oom", "oomkilled"])
def test_canary_health_sees_oom_kills(cluster: Cluster, namespace: str, executor: KubeExecutor, shape: str) -> None:
    ns = namespace
    cluster.apply(gpu_deployment("fraud-canary", ns, replicas=1, pod_labels={"modelrollout.io/inject": shape}))

    def oom():
        h = asyncio.run(executor.canary_health(ns, "fraud-canary", 600))
        return h if h.oom_killed >= 1 else None

    t0 = time.perf_counter()
    health = cluster.wait_for(oom, timeout=30, interval=0.3, message=f"canary_health oom_killed ({shape})")
    TIMINGS.setdefault(f"OOM visible in canary_health ({shape})", []).append(time.perf_counter() - t0)
    if shape == "crashloop-oom":
        assert health.crash_looping >= 1
    run("canary_health", executor.canary_health(ns, "fraud-canary", 600))

    # Unavailability, as the deployment controller publishes it. Under crashloop-oom the pod
    # stays unready, so Available stays False once it is. Under oomkilled the ReplicaSet
    # replaces each Failed pod within a second and the new one is Ready at once: Available
    # flaps, False for well under a second at a time, and a read at a random moment (the
    # old poll) mostly sees True -- on a loaded machine for longer than any timeout. So the
    # Deployment is watched, and judged as it was when the controller said False.
    unavailable = deployment_version_where(
        cluster, ns, "fraud-canary", lambda d: deployment_condition(d, "Available") == "False",
        message="the deployment controller publishing Available=False")
    pods = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-l", "app=fraud-canary", "-o", "json"))["items"]
    observed = canary_health_of(unavailable, pods, now(), 600)
    assert observed.unavailable_for_seconds > 0 and observed.oom_killed >= 1, observed
    if shape == "crashloop-oom":  # a steady state: a fresh read says the same
        health = run("canary_health", executor.canary_health(ns, "fraud-canary", 600))
        assert health.unavailable_for_seconds > 0 and health.crash_looping >= 1, health


def test_canary_health_of_a_healthy_canary_and_an_older_revision(cluster: Cluster, namespace: str,
                                                                 executor: KubeExecutor) -> None:
    ns = namespace
    cluster.apply(gpu_deployment("fraud-canary", ns, replicas=1, pod_labels={"modelrollout.io/inject": "oomkilled"}))
    cluster.wait_for(lambda: asyncio.run(executor.canary_health(ns, "fraud-canary", 600)).oom_killed >= 1,
                     timeout=30, message="oom on the first revision")
    # A new revision without the injection: the old revision's Failed pods no longer count.
    cluster.apply(gpu_deployment("fraud-canary", ns, replicas=1, image="fraud:v3"))
    wait_available(cluster, ns, "fraud-canary", 1)
    health = asyncio.run(executor.canary_health(ns, "fraud-canary", 600))
    assert health.oom_killed == 0 and health.crash_looping == 0
    assert health.unavailable_for_seconds == 0 and not health.progress_deadline_exceeded
    with pytest.raises(ClusterConflict, match=f"Deployment {ns}/ghost not found"):
        asyncio.run(executor.canary_health(ns, "ghost", 600))


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Ref:
    namespace: str
    name: str
    uid: str


def modelrollout(cluster: Cluster, ns: str) -> dict[str, Any]:
    """A ModelRollout object (the CRD applied from crds/ if the cluster lacks it)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "e2e-tests",
                    "-f", str(Path(REPO) / "crds" / "modelrollout.io_modelrollouts.yaml"))
    cluster.wait_for(lambda: "True" in cluster.kubectl(
        "get", "crd", "modelrollouts.modelrollout.io", "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"),
        timeout=30, message="ModelRollout CRD established")
    cluster.apply({"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
                   "metadata": {"name": "fraud", "namespace": ns},
                   "spec": {"stable": {"deployment": "fraud"}, "canary": {"deployment": "fraud-canary"}}})
    return json.loads(cluster.kubectl("-n", ns, "get", "modelrollout", "fraud", "-o", "json"))


def test_the_stable_record_survives_the_status_round_trip_exactly(cluster: Cluster, namespace: str,
                                                                  executor: KubeExecutor) -> None:
    """Rollback phase 2 restores what status.stableRecord holds: the CRD must not prune or alter it."""
    ns = namespace
    status = started(cluster, executor, ns, make_spec(), replicas=2)
    modelrollout(cluster, ns)
    body = {"status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    cluster.custom.patch_namespaced_custom_object_status("modelrollout.io", "v1alpha1", ns, "modelrollouts", "fraud",
                                                         body)
    stored = json.loads(cluster.kubectl("-n", ns, "get", "modelrollout", "fraud", "-o", "json"))["status"]
    back = ModelRolloutStatus.model_validate(stored)
    assert back.stable_record == status.stable_record
    assert back.stable_record is not None and back.stable_record.template == raw(cluster, ns, "fraud")["spec"]["template"]


def test_events_are_posted_on_the_modelrollout(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    mro = modelrollout(cluster, ns)
    ref = Ref(ns, "fraud", mro["metadata"]["uid"])
    recorder = EventRecorder(KubeApi(cluster.api_client), now, instance="contract-test")
    run("event", recorder.emit(ref, EmitEvent(EventType.NORMAL, "StepStarted", "step 0: canary at 5%")))
    run("event", recorder.emit(ref, EmitEvent(EventType.WARNING, "RollbackStarted", "rolling back: " + "x" * 2000)))

    events = cluster.core.list_namespaced_event(ns, field_selector="involvedObject.name=fraud").items
    by_reason = {e.reason: e for e in events}
    assert set(by_reason) == {"StepStarted", "RollbackStarted"}
    started_ev = by_reason["StepStarted"]
    assert started_ev.type == "Normal" and started_ev.message == "step 0: canary at 5%"
    assert started_ev.involved_object.kind == "ModelRollout"
    assert started_ev.involved_object.api_version == "modelrollout.io/v1alpha1"
    assert started_ev.involved_object.uid == ref.uid
    assert started_ev.reporting_component == "modelrollout" and started_ev.source.component == "modelrollout"
    assert by_reason["RollbackStarted"].type == "Warning" and len(by_reason["RollbackStarted"].message) <= 1024
    # kubectl describe shows them.
    assert "StepStarted" in cluster.kubectl("-n", ns, "describe", "modelrollout", "fraud")
