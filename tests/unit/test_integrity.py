"""Model integrity (docs/integrity.md): the model the canary's servers report against the
digest the rollout declares; requireImageDigest at the model and in the CRD."""

from __future__ import annotations

import asyncio
import copy
import re
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelrollout.adapters.metrics import promql
from modelrollout.adapters.metrics.plan import plan_queries
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.adapters.routers import GatewayAPIRouter
from modelrollout.adapters.routers.base import RolloutTarget
from modelrollout.adapters.routers.gateway_api import canary_weight_of
from modelrollout.api.crd import CEL_RULES
from modelrollout.api.models import DecisionAction, ModelRolloutSpec, ModelRolloutStatus, Phase
from modelrollout.errors import InvalidSpec
from modelrollout.core.actions import PrepareCanary, SetWeight
from modelrollout.core.fastpath import critical_breach, watches
from modelrollout.core.integrity import MODEL_INTEGRITY, awaiting_model, dark_start, judge_integrity
from modelrollout.core.machine import pending_actions, revision_of, step
from modelrollout.core.observations import (
    Command,
    CommandKind,
    Initialized,
    MetricsFailed,
    MetricsObserved,
    SpecChanged,
)
from modelrollout.core.snapshot import Snapshot, load_snapshot
from modelrollout.core.windows import fast_path_look

from .factories import RECORD, T0, begin, snapshot_dict
from .test_promql import AT, healthy_table, request, run_snapshots, vec

DECLARED = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


def spec_with_digest(digest: str | None = DECLARED, **canary: Any) -> ModelRolloutSpec:
    template: dict[str, Any] = {"image": "img:v2"}
    if digest is not None:
        template["modelDigest"] = digest
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"},
        "canary": {"deployment": "fraud-canary", "template": template, **canary},
        "steps": [{"weight": 5, "duration": "60s"}, {"weight": 25, "duration": "60s"}, {"weight": 100, "duration": "60s"}],
        "analysis": {"interval": "10s", "sustainedHighSeconds": 300},
    })


def reporting(digests: dict[str, str] | None, at=T0, weight: int = 5, current: list[str] | None = None) -> Snapshot:
    """A healthy snapshot whose canary pods report ``digests`` (pod -> digest); ``current``:
    the canary's ready pods at its current template (default: the reporting ones)."""
    data = snapshot_dict(at, weight)
    if digests is not None:
        data["canary"]["model_digests"] = digests
    pods = sorted(digests or {}) if current is None else current
    data["health"]["canary"].update(replicas=len(pods), available_replicas=len(pods), current_pods=pods)
    return load_snapshot(data)


def judged(snapshot: Snapshot, spec: ModelRolloutSpec | None = None):
    return judge_integrity(spec or spec_with_digest(), snapshot, snapshot.health.canary if snapshot.health else None)


# ------------------------------------------------------------------------ the verdict


def test_no_declared_digest_is_never_judged() -> None:
    verdict = judged(reporting({"c-0": OTHER}), spec_with_digest(None))
    assert verdict.breach is None and verdict.unverified is None


def test_every_ready_pod_on_the_declared_digest_is_verified() -> None:
    verdict = judged(reporting({"c-0": DECLARED, "c-1": DECLARED}))
    assert verdict.breach is None and verdict.unverified is None
    assert verdict.evidence == {"declared": DECLARED, "served": {"c-0": DECLARED, "c-1": DECLARED}}


def test_one_pod_on_another_digest_is_a_breach_naming_the_pod_and_both_digests() -> None:
    verdict = judged(reporting({"c-0": DECLARED, "c-1": OTHER}))
    assert verdict.breach is not None and f"c-1 reports {OTHER}" in verdict.breach and DECLARED in verdict.breach
    assert verdict.evidence["served"] == {"c-0": DECLARED, "c-1": OTHER}


def test_a_pod_reporting_two_models_is_a_breach() -> None:
    both = ",".join(sorted((DECLARED, OTHER)))
    assert judged(reporting({"c-0": both})).breach is not None


def test_pods_of_an_earlier_template_do_not_condemn_the_current_one() -> None:
    """Old pods, terminating or not replaced yet, report the model they were given."""
    snap = reporting({"old-0": OTHER, "old-1": OTHER, "new-0": DECLARED}, current=["new-0"])
    verdict = judged(snap)
    assert verdict.breach is None and verdict.unverified is None
    assert verdict.evidence["served"] == {"new-0": DECLARED}
    assert judged(reporting({"old-0": OTHER, "new-0": OTHER}, current=["new-0"])).breach is not None


def test_without_the_current_pods_no_pod_is_condemned() -> None:
    """A failed health read (or a replay) cannot tell an old pod from a current one."""
    data = snapshot_dict(T0, 5)
    data["canary"]["model_digests"] = {"old-0": OTHER, "new-0": DECLARED}
    snap = load_snapshot(data)
    assert snap.health is not None and snap.health.canary is not None and snap.health.canary.current_pods is None
    verdict = judged(snap)
    assert verdict.breach is None and verdict.unverified is not None and "current pods are unknown" in verdict.unverified
    data["canary"]["model_digests"] = {"new-0": DECLARED}
    assert judged(load_snapshot(data)).unverified is None


@pytest.mark.parametrize("digests,current,why", [
    (None, ["c-0", "c-1"], "0/2 ready canary pods"),      # the server exports no model_info
    ({}, ["c-0", "c-1"], "0/2 ready canary pods"),
    ({"c-0": DECLARED}, ["c-0", "c-1"], "1/2 ready canary pods"),  # c-1 not scraped yet
    ({"old-0": OTHER}, [], "no canary pod is ready yet"),
])
def test_unconfirmed_model_is_unverified_not_a_breach(digests: dict[str, str] | None, current: list[str],
                                                      why: str) -> None:
    verdict = judged(reporting(digests, current=current))
    assert verdict.breach is None and verdict.unverified is not None and why in verdict.unverified


def test_no_model_info_and_no_health_is_unverified() -> None:
    verdict = judge_integrity(spec_with_digest(), load_snapshot(snapshot_dict(T0, 5)), None)
    assert verdict.unverified is not None and "the server must export it" in verdict.unverified


# ------------------------------------------------------------------------ the machine


def progressed(spec: ModelRolloutSpec, digests: dict[str, str] | None, seconds: int = 70,
               current: list[str] | None = None, start: ModelRolloutStatus | None = None):
    """Healthy ticks every 10 s for ``seconds`` with the canary reporting ``digests``."""
    status = start or begin(spec)
    transition = None
    for s in range(10, seconds + 1, 10):
        at = T0 + timedelta(seconds=s)
        transition = step(spec, status, MetricsObserved(reporting(digests, at, status.canary_weight, current)), at)
        status = transition.status
    return status, transition


def test_a_verified_model_advances_as_any_other() -> None:
    status, _ = progressed(spec_with_digest(), {"c-0": DECLARED, "c-1": DECLARED})
    assert status.phase == Phase.PROGRESSING and status.current_step == 1


def test_an_unverified_model_holds_its_step_and_says_why_then_rolls_back_at_the_deadline() -> None:
    spec = spec_with_digest()
    status, transition = progressed(spec, {"c-0": DECLARED}, current=["c-0", "c-1"])
    assert status.phase == Phase.PROGRESSING and status.current_step == 0 and status.canary_weight == 5
    assert transition is not None and transition.decision is not None
    assert transition.decision.action == DecisionAction.HOLD
    assert "waiting for the declared model: 1/2 ready canary pods" in status.message
    deadline = spec.analysis.progress_deadline_seconds
    status, transition = progressed(spec, {"c-0": DECLARED}, seconds=60 + deadline + 10, current=["c-0", "c-1"])
    assert status.phase == Phase.ROLLING_BACK and status.rollback is not None
    assert status.rollback.trigger == MODEL_INTEGRITY and "not confirmed" in status.rollback.reason


def test_another_digest_rolls_back_on_the_tick_with_both_digests_in_the_evidence() -> None:
    status, transition = progressed(spec_with_digest(), {"c-0": OTHER, "c-1": OTHER}, seconds=10)
    assert status.phase == Phase.ROLLING_BACK
    assert status.rollback is not None and status.rollback.trigger == MODEL_INTEGRITY
    assert transition is not None and transition.decision is not None  # a decision, as every rollback of a tick
    assert transition.decision.action == DecisionAction.ROLLBACK
    evidence = status.history[-1].evidence
    assert evidence["trigger"] == MODEL_INTEGRITY and evidence["conditions"]
    assert evidence["signal"] == {"declared": DECLARED, "served": {"c-0": OTHER, "c-1": OTHER}}


def test_a_dry_run_records_the_breach_once_and_waits_for_its_next_tick() -> None:
    spec = ModelRolloutSpec.model_validate({**spec_with_digest().model_dump(by_alias=True, exclude_none=True),
                                            "analysis": {"interval": "10s", "dryRun": True}})
    status = step(spec, None, SpecChanged(), T0).status
    at = T0 + timedelta(seconds=10)
    t = step(spec, status, MetricsObserved(reporting({"c-0": OTHER}, at, status.canary_weight)), at)
    assert t.status.phase == Phase.PROGRESSING and t.actions and t.status.message.startswith("dryRun: would rollback")
    assert t.status.next_evaluation_at is not None and t.status.next_evaluation_at > at
    again = step(spec, t.status, MetricsObserved(reporting({"c-0": OTHER}, at, status.canary_weight)), at)
    assert again.actions == ()  # the same decision is not announced twice


def test_the_fast_path_leaves_the_model_to_the_tick_and_does_not_read_it() -> None:
    spec = spec_with_digest()
    status = begin(spec)
    assert status.step_started_at is not None
    at = status.step_started_at + timedelta(seconds=1)
    look = fast_path_look(spec, status, at)
    assert critical_breach(spec, status, reporting({"c-0": OTHER}, at), at, look) is None
    request = SnapshotRequest.for_fast_path(namespace="ml", name="r", spec=spec, status=status, look=look)
    assert request.model_digest is None


def test_requiring_an_image_digest_does_not_change_the_revision() -> None:
    """An admission policy is not what the challenger runs: switching it, or upgrading to an
    operator that knows it, must not restart a rollout (the revision is a hash of the canary)."""
    assert revision_of(spec_with_digest()) == "96035351c8da4cd3"  # as computed before the field existed (6bc1b9a)
    pinned = {"image": "r/m@" + DECLARED, "modelDigest": DECLARED}
    a = ModelRolloutSpec.model_validate({"stable": {"deployment": "s"}, "canary": {"deployment": "c", "template": pinned}})
    b = ModelRolloutSpec.model_validate({"stable": {"deployment": "s"},
                                         "canary": {"deployment": "c", "template": pinned, "requireImageDigest": True}})
    assert revision_of(a) == revision_of(b)


# ------------------------------------------------------------------------ the query


def test_the_digests_are_read_only_for_rollouts_that_declare_one_in_one_shared_query() -> None:
    plain = plan_queries([request()])
    declared = [request(ns=f"ns{i}", model_digest=DECLARED) for i in range(20)]
    planned = plan_queries(declared + [request(ns="other")])
    assert len(planned) == len(plain) + 1
    digests = [q for q in planned if q.key.name == "model_digests"]
    assert len(digests) == 1 and digests[0].promql.startswith("max by (namespace, deployment, pod, digest) (model_info{")
    assert 'namespace=~"ns0|' in digests[0].promql and "other" not in digests[0].promql


def test_the_request_carries_the_declared_digest_on_the_tick() -> None:
    spec = spec_with_digest()
    status = begin(spec)
    tick = SnapshotRequest.for_rollout(namespace="ml", name="r", spec=spec, status=status, windows={})
    assert tick.model_digest == DECLARED
    assert SnapshotRequest.for_rollout(namespace="ml", name="r", spec=spec_with_digest(None), status=status,
                                       windows={}).model_digest is None


def test_the_snapshot_holds_the_digest_of_each_canary_pod() -> None:
    table = healthy_table()
    table[("model_digests", 1)] = {("ml", "fraud-canary"): {"c-0": DECLARED, "c-1": OTHER}, ("ml", "fraud"): {"s-0": OTHER}}
    out, _, _ = run_snapshots([request(model_digest=DECLARED)], table)
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.canary is not None and snap.stable is not None
    assert snap.canary.model_digests == {"c-0": DECLARED, "c-1": OTHER}
    assert snap.stable.model_digests is None
    assert snap.at == AT


def test_a_pod_scraped_twice_is_one_pod_and_two_models_on_one_pod_are_both_seen() -> None:
    rows = [vec("ml", "c", 1, pod="c-0", digest=DECLARED), vec("ml", "c", 1, pod="c-0", digest=DECLARED),
            vec("ml", "c", 1, pod="c-1", digest=OTHER), vec("ml", "c", 1, pod="c-1", digest=DECLARED)]
    parsed = promql.parse_pod_digests(rows, "namespace", "deployment")
    assert parsed == {("ml", "c"): {"c-0": DECLARED, "c-1": f"{DECLARED},{OTHER}"}}


def test_a_canary_without_model_info_has_no_digests_not_an_error() -> None:
    out, _, _ = run_snapshots([request(model_digest=DECLARED)], healthy_table())
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.canary is not None and snap.canary.model_digests is None


@pytest.mark.parametrize("override,needle", [
    ("max by ({by}, pod, digest) (max_over_time(model_info{{selector}}[{window}]))", "has no {window}"),
    ("max by ({by}, digest) (model_info{{selector}})", "'pod' and 'digest' labels"),
])
def test_an_override_of_the_digest_query_is_checked(override: str, needle: str) -> None:
    with pytest.raises(InvalidSpec, match=re.escape(needle)):
        promql.resolve_queries({"model_digests": override})
    assert promql.resolve_queries({"model_digests": "max by ({by}, pod, digest) (my_model_info{{selector}})"})


# ------------------------------------------------------------------------ requireImageDigest

IMAGES = [
    ("registry.example/model@" + DECLARED, True),
    ("registry.example/model:v2@" + DECLARED, True),
    ("registry.example/model:v2", False),
    ("registry.example/model@sha256:abc", False),
    ("registry.example/model@" + DECLARED + "\n", False),
    ("registry.example/model@" + DECLARED.upper().replace("SHA256", "sha256"), False),
]


@pytest.mark.parametrize("image,pinned", IMAGES)
def test_require_image_digest_the_model_and_the_crd_agree(image: str, pinned: bool) -> None:
    import celpy

    manifest = {"deployment": "fraud-canary", "requireImageDigest": True, "template": {"image": image}}
    try:
        ModelRolloutSpec.model_validate({"stable": {"deployment": "fraud"}, "canary": manifest})
        by_model = True
    except ValidationError as e:
        assert "spec.canary.template.image must be pinned by digest" in str(e)
        by_model = False
    rule = next(r["rule"] for r in CEL_RULES[("spec", "canary")] if "requireImageDigest" in r["rule"])
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    by_cel = bool(program.evaluate({"self": celpy.json_to_cel(manifest)}))
    assert by_model == by_cel == pinned


def test_require_image_digest_refuses_no_image_at_all() -> None:
    with pytest.raises(ValidationError, match="got None"):
        ModelRolloutSpec.model_validate({"stable": {"deployment": "fraud"},
                                         "canary": {"deployment": "c", "requireImageDigest": True}})


# ------------------------------------------------------------------------ the dark start (Gateway API)


def gateway_spec(digest: str | None = DECLARED, **analysis: Any) -> ModelRolloutSpec:
    template: dict[str, Any] = {"image": "img:v2"}
    if digest is not None:
        template["modelDigest"] = digest
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"}, "canary": {"deployment": "fraud-canary", "template": template},
        "traffic": {"router": "gatewayAPI", "httpRoute": {"name": "fraud"}},
        "steps": [{"weight": 5, "duration": "60s"}, {"weight": 25, "duration": "60s"}, {"weight": 100, "duration": "60s"}],
        "analysis": {"interval": "10s", "sustainedHighSeconds": 300, "progressDeadlineSeconds": 120, **analysis},
    })


def dark_begin(spec: ModelRolloutSpec):
    t = step(spec, None, SpecChanged(), T0)
    t = step(spec, t.status, Initialized(RECORD), T0)
    return t


def test_a_declared_model_behind_a_gateway_starts_dark_scaled_with_no_traffic() -> None:
    spec = gateway_spec()
    t = dark_begin(spec)
    assert t.status.phase == Phase.PROGRESSING and t.status.canary_weight == 0 and t.status.current_step == 0
    assert t.actions[0] == PrepareCanary(5)
    assert "no traffic until its servers report the declared model" in t.status.message
    assert awaiting_model(spec, t.status)
    assert pending_actions(spec, t.status) == (PrepareCanary(5),)  # a restart scales it again, never routes
    assert not watches(spec, t.status)  # nothing to watch on the fast path: no traffic
    # without a digest, or with the replicas router, the first step routes at once
    assert dark_begin(gateway_spec(None)).actions[0] == SetWeight(5)
    assert not dark_start(spec_with_digest())


def test_the_dark_canary_gets_its_weight_once_every_pod_reports_the_declared_model() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    at = T0 + timedelta(seconds=10)
    held = step(spec, status, MetricsObserved(reporting({"c-0": DECLARED}, at, 0, ["c-0", "c-1"])), at)
    assert held.actions == () and held.status.canary_weight == 0
    assert held.status.message.startswith("no traffic yet: waiting for the declared model: 1/2 ready canary pods")
    assert held.status.consecutive_no_data == 0  # no traffic is not missing data
    at += timedelta(seconds=10)
    go = step(spec, held.status, MetricsObserved(reporting({"c-0": DECLARED, "c-1": DECLARED}, at, 0)), at)
    assert go.actions[0] == SetWeight(5) and go.status.canary_weight == 5 and go.status.step_started_at == at
    assert not awaiting_model(spec, go.status) and pending_actions(spec, go.status) == (SetWeight(5),)


def test_a_dark_canary_on_another_model_rolls_back_before_any_traffic() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    at = T0 + timedelta(seconds=10)
    t = step(spec, status, MetricsObserved(reporting({"c-0": OTHER, "c-1": OTHER}, at, 0)), at)
    assert t.status.phase == Phase.ROLLING_BACK and t.status.rollback is not None
    assert t.status.rollback.trigger == MODEL_INTEGRITY and t.status.history[-1].weight == 0


def test_a_model_never_confirmed_rolls_back_after_the_progress_deadline_not_never() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    for s in range(10, 121, 10):
        at = T0 + timedelta(seconds=s)
        status = step(spec, status, MetricsObserved(reporting(None, at, 0, ["c-0"])), at).status
    assert status.phase == Phase.ROLLING_BACK and status.rollback is not None
    assert status.rollback.trigger == MODEL_INTEGRITY
    assert "not confirmed by the canary's servers within spec.analysis.progressDeadlineSeconds (120s)" \
        in status.rollback.reason


def test_a_dark_canary_that_cannot_come_up_rolls_back_on_kubernetes_health() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    at = T0 + timedelta(seconds=10)
    data = snapshot_dict(at, 0)
    data["health"]["canary"].update(oom_killed=1)
    t = step(spec, status, MetricsObserved(load_snapshot(data)), at)
    assert t.status.phase == Phase.ROLLING_BACK and t.status.rollback is not None
    assert t.status.rollback.trigger == "kubernetesHealth"


class _RouteApi:
    """The four KubeApi calls the Gateway API router's dark start makes."""

    def __init__(self) -> None:
        self.route = {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": {"rules": [{"backendRefs": [
            {"name": "fraud", "port": 80, "weight": 100}, {"name": "fraud-canary", "port": 80, "weight": 0}]}]}}
        self.canary = {"metadata": {"name": "fraud-canary"}, "spec": {"replicas": 0}}
        self.writes: list[str] = []

    async def read_httproute(self, ns: str, name: str) -> dict:
        return copy.deepcopy(self.route)

    async def replace_httproute(self, ns: str, name: str, body: dict) -> None:
        self.writes.append("route")
        self.route = body

    async def read_deployment(self, ns: str, name: str) -> dict:
        return copy.deepcopy(self.canary)

    async def scale_deployment(self, ns: str, name: str, replicas: int) -> None:
        self.writes.append(f"scale {replicas}")
        self.canary["spec"]["replicas"] = replicas


def test_the_gateway_router_scales_a_dark_canary_and_keeps_its_route_weight_at_zero() -> None:
    api = _RouteApi()
    router = GatewayAPIRouter(api)  # type: ignore[arg-type]
    target = RolloutTarget(namespace="ml", stable="fraud", canary="fraud-canary", total_replicas=8,
                           http_route="fraud")
    asyncio.run(router.prepare_dark(target, 25))
    assert api.canary["spec"]["replicas"] == 2
    assert canary_weight_of(api.route, "fraud", "fraud-canary") == 0
    assert api.writes == ["scale 2"]  # the route already gave the canary 0: untouched
    asyncio.run(router.prepare_dark(target, 25))
    assert api.writes == ["scale 2"]  # idempotent: a restart re-applies it for nothing


def dark_tick(spec: ModelRolloutSpec, status: ModelRolloutStatus, seconds: int, digests: dict[str, str] | None,
              current: list[str] | None = None, replicas: int | None = None, health: bool = True):
    at = T0 + timedelta(seconds=seconds)
    data = snapshot_dict(at, 0)
    if digests is not None:
        data["canary"]["model_digests"] = digests
    if health:
        pods = sorted(digests or {}) if current is None else current
        data["health"]["canary"].update(replicas=len(pods) if replicas is None else replicas,
                                        available_replicas=len(pods), current_pods=pods)
    else:
        del data["health"]
    return step(spec, status, MetricsObserved(load_snapshot(data)), at)


def test_the_dark_start_ends_only_once_every_pod_that_will_serve_was_checked() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    confirmed = {"c-0": DECLARED}
    for why, kwargs in [
        ("current pods are unknown", {"health": False}),                       # the health read failed
        ("not at its size yet (1/2 pods available)", {"replicas": 2}),        # the second pod not up yet
    ]:
        t = dark_tick(spec, status, 10, confirmed, **kwargs)
        assert t.actions == () and t.status.canary_weight == 0, why
        assert why in t.status.message
    assert dark_tick(spec, status, 10, confirmed).actions[0] == SetWeight(5)


def test_a_failed_health_read_never_condemns_a_dark_canary() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    t = dark_tick(spec, status, 10, {"old-0": OTHER, "c-0": DECLARED}, health=False)
    assert t.status.phase == Phase.PROGRESSING and t.status.canary_weight == 0


def test_pausing_the_dark_start_holds_it_and_restarts_its_deadline() -> None:
    spec = gateway_spec()
    paused = ModelRolloutSpec.model_validate({**spec.model_dump(by_alias=True, exclude_none=True), "paused": True})
    status = dark_begin(spec).status
    t = dark_tick(paused, status, 500, {"c-0": DECLARED})  # long past the 120 s deadline
    assert t.status.phase == Phase.PAUSED and t.status.canary_weight == 0 and t.actions[:1] != (SetWeight(5),)
    status = t.status
    t = dark_tick(paused, status, 600, {"c-0": DECLARED})
    assert t.status.canary_weight == 0 and t.status.step_started_at == T0 + timedelta(seconds=600)
    resumed = dark_tick(spec, t.status, 610, {"c-0": DECLARED}, current=["c-0", "c-1"])
    assert resumed.status.phase == Phase.PROGRESSING and resumed.status.canary_weight == 0  # held, not condemned


def test_a_dark_start_neither_routes_nor_rolls_back_in_a_dry_run() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    dry = gateway_spec(dryRun=True)
    for digests in ({"c-0": DECLARED}, {"c-0": OTHER}):
        t = dark_tick(dry, status, 10, digests)
        assert t.actions == () and t.status.phase == Phase.PROGRESSING and t.status.canary_weight == 0
        assert t.status.message.startswith("dryRun: no traffic yet")


def test_prometheus_errors_in_the_dark_start_count_only_in_a_row() -> None:
    spec = gateway_spec(prometheusErrors={"maxConsecutive": 3, "then": "rollback"})
    status = dark_begin(spec).status
    for s in range(10, 70, 20):
        status = step(spec, status, MetricsFailed("Prometheus unreachable"), T0 + timedelta(seconds=s)).status
        status = dark_tick(spec, status, s + 10, {"c-0": DECLARED}, current=["c-0", "c-1"]).status
        assert status.consecutive_prometheus_errors == 0
    assert status.phase == Phase.PROGRESSING


def test_a_manual_promote_from_the_dark_start_routes_the_first_step_only() -> None:
    spec = gateway_spec()
    status = dark_begin(spec).status
    t = step(spec, status, Command(CommandKind.PROMOTE), T0 + timedelta(seconds=5))
    assert t.actions[0] == SetWeight(5) and t.status.current_step == 0 and t.status.canary_weight == 5
    assert "before its model was confirmed" in t.status.message


def test_a_model_unconfirmed_right_after_a_canary_short_of_size_is_not_condemned_at_once() -> None:
    """Two waits, two clocks: a canary short of its size for most of the deadline, then at
    size with its new pod not scraped yet, has not been unconfirmed for that long."""
    spec = spec_with_digest()
    status, _ = progressed(spec, {"c-0": DECLARED}, seconds=60)
    status = status.model_copy(update={"short_of_size_since": T0 + timedelta(seconds=60)})
    at = T0 + timedelta(seconds=60 + spec.analysis.progress_deadline_seconds - 10)
    t = step(spec, status, MetricsObserved(reporting({"c-0": DECLARED}, at, status.canary_weight, ["c-0", "c-1"])), at)
    assert t.status.phase == Phase.PROGRESSING and t.status.model_unconfirmed_since == at
    assert "waiting for the declared model" in t.status.message
