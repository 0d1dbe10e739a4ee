"""The executor's pure parts: template overrides, replica math, route weights, pod health."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelrollout.adapters.kube import pod_failure, rollout_target
from modelrollout.adapters.routers import ROUTERS, GatewayAPIRouter, ReplicasRouter, router_for
from modelrollout.adapters.routers.gateway_api import canary_weight_of, with_canary_weight
from modelrollout.adapters.routers.replicas import canary_replicas, split_replicas, weight_from_replicas
from modelrollout.adapters.workload import (
    ROLE_LABEL,
    PodFailure,
    TemplateError,
    apply_overrides,
    canary_deployment,
    canary_health_of,
    canary_pod_template,
    current_pod_template_hash,
    deployment_available,
    fewest_replicas_keeping,
    is_crash_looping,
    label_selector,
    max_unavailable_of,
    promoted_template,
    ready_kept,
)
from modelrollout.api.models import MODEL_DIGEST_ANNOTATION, CanaryTemplate, ModelRolloutSpec, RouterKind
from modelrollout.errors import ClusterConflict, InvalidSpec

DIGEST = "sha256:" + "ab" * 32
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def stable_template() -> dict:
    return {
        "metadata": {"labels": {"app": "fraud"}, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {
            "containers": [
                {"name": "server", "image": "fraud:v1", "env": [{"name": "MODEL", "value": "v1"},
                                                                 {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                 "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "2Gi"},
                               "requests": {"nvidia.com/gpu": "1", "memory": "2Gi", "cpu": "1"}}},
                {"name": "sidecar", "image": "proxy:1"},
            ],
            "restartPolicy": "Always",
        },
    }


def overrides(**kw) -> CanaryTemplate:
    return CanaryTemplate.model_validate(kw)


# ------------------------------------------------------------------------ templates


def test_overrides_image_resources_env_and_digest_on_the_first_container():
    base = stable_template()
    out = apply_overrides(base, overrides(image="fraud:v2", modelDigest=DIGEST,
                                          resources={"limits": {"nvidia.com/gpu": "2", "memory": "24Gi"}},
                                          env={"MODEL": "v2", "NEW": "1"}), "Deployment ml/fraud")
    c = out["spec"]["containers"][0]
    assert c["image"] == "fraud:v2"
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2", "memory": "24Gi"}
    # GPU request follows its limit (extended resources cannot be overcommitted); memory request is kept
    assert c["resources"]["requests"] == {"nvidia.com/gpu": "2", "memory": "2Gi", "cpu": "1"}
    assert c["env"] == [{"name": "MODEL", "value": "v2"},
                        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                        {"name": "NEW", "value": "1"}]
    assert out["metadata"]["annotations"] == {"prometheus.io/scrape": "true", MODEL_DIGEST_ANNOTATION: DIGEST}
    assert out["spec"]["containers"][1] == base["spec"]["containers"][1]
    assert base == stable_template(), "the input is never mutated"


def test_overrides_target_the_named_container_and_name_a_missing_one():
    out = apply_overrides(stable_template(), overrides(image="proxy:2", container="sidecar"), "Deployment ml/fraud")
    assert [c["image"] for c in out["spec"]["containers"]] == ["fraud:v1", "proxy:2"]
    with pytest.raises(TemplateError, match=r"spec.canary.template.container: 'nope' .*Deployment ml/fraud.*server, sidecar"):
        apply_overrides(stable_template(), overrides(container="nope"), "Deployment ml/fraud")


def test_gpu_limit_added_where_there_was_none():
    base = stable_template()
    del base["spec"]["containers"][0]["resources"]
    out = apply_overrides(base, overrides(resources={"limits": {"nvidia.com/gpu": "2"}}), "d")
    assert out["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}


def test_no_overrides_is_a_copy():
    assert apply_overrides(stable_template(), None, "d") == stable_template()


def test_canary_template_and_deployment_labels_and_selector():
    stable = {"metadata": {"name": "fraud"},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "fraud"}}, "template": stable_template(),
                       "strategy": {"type": "RollingUpdate"}}}
    template = canary_pod_template(stable_template(), overrides(image="fraud:v2"), "d")
    assert template["metadata"]["labels"] == {"app": "fraud", ROLE_LABEL: "canary"}
    dep = canary_deployment(name="fraud-canary", namespace="ml", stable=stable, template=template,
                            rollout="fraud-rollout", progress_deadline_seconds=120)
    assert dep["spec"]["replicas"] == 0
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "fraud", ROLE_LABEL: "canary"}}
    assert dep["metadata"]["labels"]["modelrollout.io/rollout"] == "fraud-rollout"
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelrollout"
    assert "ownerReferences" not in dep["metadata"]
    assert dep["spec"]["progressDeadlineSeconds"] == 120
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert stable["spec"]["selector"] == {"matchLabels": {"app": "fraud"}}


def test_promoted_template_takes_the_canary_but_keeps_stable_labels():
    canary = canary_pod_template(stable_template(), overrides(image="fraud:v2", modelDigest=DIGEST,
                                                              resources={"limits": {"nvidia.com/gpu": "2"}}), "d")
    promoted = promoted_template(canary, stable_template())
    assert promoted["metadata"]["labels"] == {"app": "fraud"}
    assert promoted["metadata"]["annotations"][MODEL_DIGEST_ANNOTATION] == DIGEST
    assert promoted["spec"] == canary["spec"]


# ------------------------------------------------------------------------ replica math


@pytest.mark.parametrize("total,percent,stable,canary", [
    (3, 5, 2, 1),      # ceil(0.15) = 1: never zero pods for a non-zero weight
    (3, 25, 2, 1),
    (3, 34, 1, 2),
    (3, 100, 0, 3),
    (3, 0, 3, 0),
    (10, 25, 7, 3),
    (20, 5, 19, 1),
    (0, 50, 0, 0),
    (1, 1, 0, 1),
])
def test_split_replicas(total, percent, stable, canary):
    assert split_replicas(total, percent) == (stable, canary)


def test_replica_math_rejects_out_of_range():
    with pytest.raises(ValueError):
        canary_replicas(3, 101)
    with pytest.raises(ValueError):
        canary_replicas(-1, 5)


@given(st.integers(0, 500), st.integers(0, 100))
def test_split_is_exact_and_monotone(total, percent):
    stable, canary = split_replicas(total, percent)
    assert stable + canary == total and stable >= 0
    assert canary * 100 >= total * percent > (canary - 1) * 100
    if percent < 100:
        assert split_replicas(total, percent + 1)[1] >= canary


@given(st.integers(1, 300), st.integers(0, 100))
def test_weight_read_back_is_consistent(total, percent):
    stable, canary = split_replicas(total, percent)
    assert weight_from_replicas(total, stable, canary, percent) == percent
    guessed = weight_from_replicas(total, stable, canary, None)
    assert guessed is not None and split_replicas(total, guessed) == (stable, canary)


def test_weight_read_back_cannot_tell():
    assert weight_from_replicas(3, 3, 1, 5) is None            # counts do not add up to the total
    assert weight_from_replicas(3, 2, 1, 50) is None           # counts disagree with the weight last set
    assert weight_from_replicas(3, 2, 1, None) == 1            # no annotation: smallest weight giving these counts
    assert weight_from_replicas(0, 0, 0, None) is None


# ------------------------------------------------------------------------ routers


def test_router_table_rejects_unknown_kinds():
    assert set(ROUTERS) == set(RouterKind)
    assert isinstance(router_for("replicas", api=None), ReplicasRouter)  # type: ignore[arg-type]
    assert isinstance(router_for(RouterKind.GATEWAY_API, api=None), GatewayAPIRouter)  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec, match=r"spec.traffic.router: 'istio' is not a known router; use one of: replicas, gatewayAPI"):
        router_for("istio", api=None)  # type: ignore[arg-type]


def route(*rules: list[dict]) -> dict:
    return {"metadata": {"name": "r", "namespace": "ml"}, "spec": {"rules": [{"backendRefs": r} for r in rules]}}


def test_route_weights_in_every_rule_with_the_pair():
    r = route([{"name": "fraud", "port": 80, "weight": 100}, {"name": "fraud-canary", "port": 80, "weight": 0}],
              [{"name": "other", "port": 80}],
              [{"name": "fraud", "port": 80}, {"name": "fraud-canary", "port": 80}])
    out = with_canary_weight(r, "fraud", "fraud-canary", 25, "HTTPRoute ml/r")
    assert [b.get("weight") for b in out["spec"]["rules"][0]["backendRefs"]] == [75, 25]
    assert out["spec"]["rules"][1] == r["spec"]["rules"][1]
    assert [b.get("weight") for b in out["spec"]["rules"][2]["backendRefs"]] == [75, 25]
    assert canary_weight_of(out, "fraud", "fraud-canary") == 25
    assert canary_weight_of(r, "fraud", "fraud-canary") is None  # rules disagree (0 vs 50)
    assert with_canary_weight(out, "fraud", "fraud-canary", 25, "x") == out  # idempotent


def test_route_missing_backend_is_named():
    r = route([{"name": "fraud", "port": 80}])
    with pytest.raises(ClusterConflict, match=r"HTTPRoute ml/r: spec.rules\[0\] has backendRef 'fraud' .* no backendRef named 'fraud-canary'"):
        with_canary_weight(r, "fraud", "fraud-canary", 5, "HTTPRoute ml/r")
    with pytest.raises(ClusterConflict, match=r"no rule has backendRefs named 'fraud' .* and 'fraud-canary'"):
        with_canary_weight(route([{"name": "x"}]), "fraud", "fraud-canary", 5, "HTTPRoute ml/r")
    assert canary_weight_of(r, "fraud", "fraud-canary") is None


def test_rollout_target_from_spec():
    spec = ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"}, "canary": {"deployment": "fraud-canary"},
        "traffic": {"router": "gatewayAPI", "httpRoute": {"name": "r", "namespace": "gw"}}})
    t = rollout_target("ml", spec, 4)
    assert (t.namespace, t.stable, t.canary, t.total_replicas, t.http_route, t.http_route_namespace) == \
        ("ml", "fraud", "fraud-canary", 4, "r", "gw")


# ------------------------------------------------------------------------ deployment status


def deployment(replicas=2, generation=3, observed=3, updated=2, available=2, total=2, conditions=()):
    return {"metadata": {"generation": generation, "uid": "u1", "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "fraud", ROLE_LABEL: "canary"}}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available,
                       "replicas": total, "conditions": list(conditions)}}


def test_deployment_available():
    assert deployment_available(deployment())
    assert not deployment_available(deployment(observed=2))          # controller has not seen the new template
    assert not deployment_available(deployment(updated=1))
    assert not deployment_available(deployment(total=3))             # an old pod is still around
    assert deployment_available({"metadata": {"generation": 1}, "spec": {"replicas": 0},
                                 "status": {"observedGeneration": 1}})


def test_a_deployment_mid_rollout_counts_only_the_ready_pods_its_controller_keeps():
    """Chaos run #77: the stable rolling back to its recorded template showed 8 ready at spec 6
    (pods of the challenger's ReplicaSet among them) and then 5: 6 less its own maxUnavailable."""
    assert [max_unavailable_of(deployment(replicas=n), n) for n in (1, 4, 6, 8)] == [0, 1, 1, 2]  # 25 %, rounded down
    none = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}}
    assert max_unavailable_of(none, 6) == 1  # both 0: the controller uses 1
    assert max_unavailable_of({"spec": {"strategy": {"type": "Recreate"}}}, 6) == 6
    rolled = deployment(replicas=6, updated=8, available=8, total=8)   # one ReplicaSet scaled down: surplus leaving
    rolling = deployment(replicas=6, updated=2, available=8, total=8)  # an older ReplicaSet still has pods
    assert ready_kept(rolled) == 6 and ready_kept(rolling) == 5
    assert ready_kept(deployment(replicas=6, observed=2, updated=6, available=6, total=6)) == 5  # not observed yet
    stable = deployment(replicas=8, updated=2, available=10, total=10)
    assert fewest_replicas_keeping(stable, ready=6, floor=6) == 8      # counted on while rolling: not shrunk
    assert fewest_replicas_keeping(stable, ready=0, floor=6) == 6      # the other side holds the floor alone
    assert fewest_replicas_keeping(deployment(replicas=8, updated=8, available=8, total=8), ready=6, floor=2) == 6


def test_label_selector():
    assert label_selector({"matchLabels": {"b": "2", "a": "1"},
                           "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                                                {"key": "u", "operator": "NotIn", "values": ["z"]},
                                                {"key": "e", "operator": "Exists"},
                                                {"key": "d", "operator": "DoesNotExist"}]}) == \
        "a=1,b=2,t in (x,y),u notin (z),e,!d"


def test_current_pod_template_hash_follows_the_revision():
    rs = lambda rev, h, uid="u1": {"metadata": {"annotations": {"deployment.kubernetes.io/revision": rev},  # noqa: E731
                                                "labels": {"pod-template-hash": h},
                                                "ownerReferences": [{"uid": uid, "controller": True}]}}
    dep = deployment()
    assert current_pod_template_hash(dep, [rs("1", "old"), rs("2", "new")]) == "new"
    assert current_pod_template_hash(dep, [rs("2", "foreign", uid="u2")]) is None


# ------------------------------------------------------------------------ pod health

OOM_FAILED = {  # kwok's chaos shape: restartPolicy Never / pod failed
    "metadata": {"name": "p1"},
    "status": {"phase": "Failed", "containerStatuses": [
        {"name": "server", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]},
}
OOM_CRASHLOOP = {  # what the kubelet does under restartPolicy Always
    "metadata": {"name": "p2"},
    "status": {"phase": "Running", "containerStatuses": [
        {"name": "server", "ready": False, "restartCount": 3,
         "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
}
EXIT_137_ONLY = {"metadata": {"name": "p3"}, "status": {"phase": "Failed", "containerStatuses": [
    {"name": "server", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}}
CRASHLOOP = {"metadata": {"name": "p4"}, "status": {"phase": "Running", "containerStatuses": [
    {"name": "server", "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
     "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
HEALTHY = {"metadata": {"name": "p5"}, "status": {"phase": "Running", "containerStatuses": [
    {"name": "server", "ready": True, "state": {"running": {"startedAt": "2026-11-26T12:00:00Z"}},
     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}  # recovered: not failing now
PENDING = {"metadata": {"name": "p6"}, "status": {"phase": "Pending"}}


@pytest.mark.parametrize("pod,expected", [
    (OOM_FAILED, PodFailure.OOM_KILLED),
    (OOM_CRASHLOOP, PodFailure.OOM_KILLED),
    (EXIT_137_ONLY, PodFailure.OOM_KILLED),
    (CRASHLOOP, PodFailure.CRASH_LOOP),
    (HEALTHY, None),
    (PENDING, None),
    ({}, None),
])
def test_pod_failure(pod, expected):
    assert pod_failure(pod) == expected


def test_pod_failure_ignores_pods_being_deleted_and_looks_at_init_containers():
    deleting = copy.deepcopy(OOM_FAILED)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    assert pod_failure(deleting) is None
    init = {"status": {"phase": "Pending", "initContainerStatuses": [
        {"name": "fetch-model", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}
    assert pod_failure(init) == PodFailure.OOM_KILLED
    assert pod_failure(OOM_FAILED) == "OOMKilled"  # a str, for status and Events


def test_canary_health_counts_and_availability():
    since = (NOW - timedelta(seconds=42)).isoformat().replace("+00:00", "Z")
    dep = deployment(conditions=[{"type": "Available", "status": "False", "lastTransitionTime": since},
                                 {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}])
    health = canary_health_of(dep, [OOM_FAILED, OOM_CRASHLOOP, CRASHLOOP, HEALTHY, PENDING], NOW, 600)
    assert health.oom_killed == 2
    assert health.crash_looping == 2
    assert health.unavailable_for_seconds == 42.0
    assert not health.progress_deadline_exceeded
    assert canary_health_of(dep, [], NOW, 30).progress_deadline_exceeded  # unavailable longer than the deadline
    stuck = deployment(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    assert canary_health_of(stuck, [], NOW, 600).progress_deadline_exceeded
    scaled_down = deployment(replicas=0, conditions=dep["status"]["conditions"])
    assert canary_health_of(scaled_down, [], NOW, 30) == canary_health_of(scaled_down, [], NOW, 30).model_copy(
        update={"unavailable_for_seconds": 0.0, "progress_deadline_exceeded": False})
    assert is_crash_looping(OOM_CRASHLOOP) and not is_crash_looping(OOM_FAILED)


# ------------------------------------------------------------------------ API errors and Events


def test_client_errors_are_translated_naming_the_object():
    import urllib3
    from kubernetes.client.exceptions import ApiException

    from modelrollout.adapters.kubeapi import Conflict, NotFound, Refused, translate
    from modelrollout.errors import ClusterUnavailable

    what = "Deployment ml/fraud"
    body = '{"kind":"Status","message":"spec.template.spec.containers[0].resources.requests: Invalid value"}'
    assert isinstance(translate(ApiException(status=404), what), NotFound)
    assert str(translate(ApiException(status=404), what)) == "Deployment ml/fraud not found"
    assert isinstance(translate(ApiException(status=409), what), Conflict)
    refused = translate(ApiException(status=422, body=body), what)
    assert isinstance(refused, Refused) and isinstance(refused, ClusterConflict)
    assert "refused (422): spec.template.spec.containers[0].resources.requests: Invalid value" in str(refused)
    for exc in (ApiException(status=503), ApiException(status=429),
                urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), ConnectionRefusedError()):
        assert isinstance(translate(exc, what), ClusterUnavailable), exc


def test_rollout_reads_and_status_writes_translate_errors_as_every_other_call():
    """One mapping (kubeapi.translate) for the ModelRollout store too; a read's 404 is ``None``."""
    import asyncio

    import urllib3
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    from modelrollout.adapters.kubeapi import Conflict, NotFound, Refused
    from modelrollout.adapters.rollouts import RolloutStore
    from modelrollout.controller import RolloutRef
    from modelrollout.errors import ClusterUnavailable

    class Failing:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def get_namespaced_custom_object(self, *args, **kwargs):
            raise self.exc

        def patch_namespaced_custom_object_status(self, *args, **kwargs):
            raise self.exc

    def store(exc: BaseException) -> RolloutStore:
        s = RolloutStore(k8s.ApiClient(k8s.Configuration()))
        s._custom = Failing(exc)  # type: ignore[assignment]
        return s

    ref = RolloutRef("ml", "fraud", "uid-1")
    assert asyncio.run(store(ApiException(status=404)).read(ref)) is None
    cases = [(ApiException(status=404), NotFound), (ApiException(status=409), Conflict),
             (ApiException(status=422), Refused), (ApiException(status=403), Refused),
             (ApiException(status=503), ClusterUnavailable),
             (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), ClusterUnavailable),
             (ConnectionRefusedError(), ClusterUnavailable)]
    for exc, family in cases:
        with pytest.raises(family, match="ModelRollout ml/fraud"):
            asyncio.run(store(exc).write_status(ref, {"phase": "Progressing"}))
        if family is not NotFound:
            with pytest.raises(family, match="ModelRollout ml/fraud"):
                asyncio.run(store(exc).read(ref))


def test_event_body_names_the_modelrollout():
    from dataclasses import dataclass

    from modelrollout.adapters.notifiers.events import event_body

    @dataclass
    class Ref:
        namespace: str = "ml"
        name: str = "fraud"
        uid: str = "u-1"

    body = event_body(Ref(), "Warning", "RolledBack", "m" * 5000, NOW, "pod-a")
    assert body["involvedObject"] == {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
                                      "name": "fraud", "namespace": "ml", "uid": "u-1"}
    assert body["type"] == "Warning" and body["reason"] == "RolledBack" and len(body["message"]) == 1024
    assert body["reportingComponent"] == "modelrollout" and body["source"] == {"component": "modelrollout"}
    assert body["firstTimestamp"] == "2026-11-26T12:00:00Z"


def test_canary_health_reports_its_size_and_the_pods_available_at_its_template() -> None:
    from datetime import datetime, timezone

    from modelrollout.adapters.workload import canary_health_of

    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    dep = {"metadata": {"generation": 3},
           "spec": {"replicas": 4},
           "status": {"observedGeneration": 3, "replicas": 5, "updatedReplicas": 3, "availableReplicas": 5}}
    health = canary_health_of(dep, [], now, 600)
    assert (health.replicas, health.available_replicas) == (4, 3)  # old-template pods do not count
    dep["status"].update(replicas=4, updatedReplicas=3, availableReplicas=3)  # 1 old pod may be one of the 3
    assert canary_health_of(dep, [], now, 600).available_replicas == 2
    dep["status"].update(replicas=4, updatedReplicas=4, availableReplicas=4)
    assert canary_health_of(dep, [], now, 600).available_replicas == 4
    dep["metadata"]["generation"] = 4  # scaled, not observed yet: its status is about the old size
    assert canary_health_of(dep, [], now, 600).available_replicas == 0


def test_canary_health_names_the_ready_pods_of_the_current_template_whose_model_is_judged() -> None:
    from datetime import datetime, timezone

    from modelrollout.adapters.workload import canary_health_of

    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    ready = {"type": "Ready", "status": "True"}
    dep = {"metadata": {"generation": 1}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}}
    pods = [
        {"metadata": {"name": "c-b"}, "status": {"phase": "Running", "conditions": [ready]}},
        {"metadata": {"name": "c-a"}, "status": {"phase": "Running", "conditions": [ready]}},
        {"metadata": {"name": "c-starting"}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False"}]}},
        {"metadata": {"name": "c-leaving", "deletionTimestamp": "2026-11-30T00:00:00Z"},
         "status": {"phase": "Running", "conditions": [ready]}},
    ]
    assert canary_health_of(dep, pods, now, 600).current_pods == ["c-a", "c-b"]
    # the current template's pods could not be told apart: unknown, not all of them
    assert canary_health_of(dep, pods, now, 600, at_current_template=False).current_pods is None
