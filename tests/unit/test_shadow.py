"""The shadow step (docs/shadow.md): requests mirrored to the canary while every user is
served by the stable; judged like any step, rolled back without a user ever served by it."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelrollout.adapters.routers import GatewayAPIRouter
from modelrollout.adapters.routers.base import RolloutTarget
from modelrollout.adapters.routers.gateway_api import canary_weight_of, mirror_percent_of, with_canary_weight
from modelrollout.api.crd import CEL_RULES
from modelrollout.api.models import DecisionAction, DecisionPath, ModelRolloutSpec, Phase
from modelrollout.core.actions import MirrorTraffic, PrepareCanary, RollbackPhase, SetWeight
from modelrollout.core.conditions import throughput
from modelrollout.core.conditions.base import ConditionResult
from modelrollout.core.decision import Position, decide
from modelrollout.core.fastpath import watches
from modelrollout.core.integrity import awaiting_model
from modelrollout.core.machine import evaluation_context, initial_status, pending_actions, step
from modelrollout.core.observations import (
    Command,
    CommandKind,
    CriticalSignal,
    Initialized,
    MetricsObserved,
    SpecChanged,
)
from modelrollout.core.snapshot import Snapshot, load_snapshot

from .factories import RECORD, T0, side, snapshot_dict

DECLARED = "sha256:" + "a" * 64
SHADOW = {"shadow": {"percent": 100, "duration": "60s"}}
WEIGHTED = [{"weight": 5, "duration": "60s"}, {"weight": 25, "duration": "60s"}, {"weight": 100, "duration": "60s"}]
GATEWAY = {"router": "gatewayAPI", "httpRoute": {"name": "fraud"}}


def shadow_spec(shadow: dict[str, Any] | None = None, *, digest: str | None = None,
                traffic: dict[str, Any] | None = None, **analysis: Any) -> ModelRolloutSpec:
    template: dict[str, Any] = {"image": "img:v2"}
    if digest:
        template["modelDigest"] = digest
    return ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"}, "canary": {"deployment": "fraud-canary", "template": template},
        "traffic": traffic or GATEWAY,
        "steps": [shadow or SHADOW, *WEIGHTED],
        "analysis": {"interval": "10s", "sustainedHighSeconds": 300, "progressDeadlineSeconds": 120, **analysis},
    })


def mirrored(at=T0, percent: int = 100, total_rps: float = 40_000.0, **canary: Any) -> Snapshot:
    """A snapshot of a shadow step: the stable serves every request, the canary answers
    ``percent`` % of them as copies."""
    data = snapshot_dict(at, 50, total_rps)
    data["stable"] = side(total_rps, window_conf=86_400.0)
    data["canary"] = side(total_rps * percent / 100, **canary)
    return load_snapshot(data)


def shadowing(spec: ModelRolloutSpec):
    t = step(spec, None, SpecChanged(), T0)
    return step(spec, t.status, Initialized(RECORD), T0)


# ------------------------------------------------------------------------------- the spec


def test_a_shadow_step_parses_and_routes_no_user_traffic() -> None:
    spec = shadow_spec({"shadow": {"percent": 50, "duration": "10m", "replicas": 2}})
    first = spec.steps[0]
    assert first.shadow is not None and first.shadow.percent == 50 and first.shadow.replicas == 2
    assert first.traffic_weight == 0 and first.hold_for == timedelta(minutes=10)
    assert spec.first_weight == 5
    assert shadow_spec({"shadow": {"duration": "1m"}}).steps[0].shadow.percent == 100  # type: ignore[union-attr]


@pytest.mark.parametrize("steps,message", [
    ([{"shadow": {"duration": "1m"}, "weight": 5}, *WEIGHTED], "a shadow step has no weight or duration"),
    ([{"weight": 5}, *WEIGHTED[1:]], "duration required"),
    ([{"duration": "1m"}, *WEIGHTED[1:]], "weight required"),
    ([WEIGHTED[0], SHADOW, *WEIGHTED[1:]], "steps[1].shadow: only the first step may be a shadow step"),
    ([SHADOW], "the last step must be 100, not a shadow step"),
    ([SHADOW, {"weight": 25, "duration": "1m"}, {"weight": 5, "duration": "1m"}, WEIGHTED[2]],
     "steps[2].weight: 5 must exceed the previous step (25)"),
])
def test_malformed_shadow_steps_are_refused_naming_the_field(steps: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        ModelRolloutSpec.model_validate({"stable": {"deployment": "a"}, "canary": {"deployment": "b"},
                                         "traffic": GATEWAY, "steps": steps})
    assert message in str(err.value)


def test_a_shadow_step_with_the_replicas_router_is_refused_saying_why() -> None:
    with pytest.raises(ValidationError) as err:
        shadow_spec(traffic={"router": "replicas"})
    assert "steps[0].shadow: a shadow step needs traffic.router gatewayAPI" in str(err.value)
    assert "RequestMirror" in str(err.value)


def _cel(rule: str, value: Any) -> bool:
    import celpy

    env = celpy.Environment()
    return bool(env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(value)}))


SPECS = [
    ({"traffic": GATEWAY, "steps": [SHADOW, *WEIGHTED]}, True),
    ({"traffic": {"router": "replicas"}, "steps": [SHADOW, *WEIGHTED]}, False),
    ({"steps": [SHADOW, *WEIGHTED]}, False),  # the default router is replicas
    ({"traffic": {"router": "replicas"}, "steps": WEIGHTED}, True),
    ({"traffic": GATEWAY, "steps": [WEIGHTED[0], SHADOW, *WEIGHTED[1:]]}, False),
    ({"traffic": GATEWAY, "steps": [SHADOW, SHADOW, *WEIGHTED]}, False),
    ({"traffic": GATEWAY, "steps": [{"shadow": {"duration": "1m"}, "weight": 5}, *WEIGHTED[1:]]}, False),
    ({"traffic": GATEWAY, "steps": [{"weight": 5}, *WEIGHTED[1:]]}, False),
]


@pytest.mark.parametrize("spec,valid", SPECS)
def test_the_shadow_rules_of_the_model_and_the_crd_agree(spec: dict[str, Any], valid: bool) -> None:
    """The CEL rules that need no Kubernetes extension, run with celpy against the model."""
    full = {"stable": {"deployment": "a"}, "canary": {"deployment": "b"}, **spec}
    try:
        ModelRolloutSpec.model_validate(full)
        by_model = True
    except ValidationError:
        by_model = False
    spec_rule = next(r["rule"] for r in CEL_RULES[("spec",)] if "shadow" in r["rule"])
    list_rule = next(r["rule"] for r in CEL_RULES[("spec", "steps")] if "self[0].shadow" in r["rule"])
    item_rule, = (r["rule"] for r in CEL_RULES[("spec", "steps", "[]")])
    by_cel = (_cel(spec_rule, full) and _cel(list_rule, full["steps"])
              and all(_cel(item_rule, s) for s in full["steps"]))
    assert by_model == by_cel == valid


# ------------------------------------------------------------------------ the state machine


def test_a_rollout_starts_its_shadow_step_mirroring_with_every_user_on_the_stable() -> None:
    spec = shadow_spec()
    t = shadowing(spec)
    assert t.status.phase == Phase.PROGRESSING and t.status.canary_weight == 0 and t.status.mirror_percent == 100
    assert t.actions[0] == MirrorTraffic(percent=100, size_percent=5, replicas=None)
    assert t.actions[1].reason == "ShadowStarted"  # type: ignore[union-attr]
    assert "every user served by the stable" in t.status.message
    assert t.status.history[-1].weight == 0
    assert pending_actions(spec, t.status) == (MirrorTraffic(100, 5, None),)  # a restart mirrors again
    assert watches(spec, t.status)  # the fast path judges mirrored traffic too
    assert not awaiting_model(spec, t.status)
    sized = shadowing(shadow_spec({"shadow": {"percent": 30, "duration": "60s", "replicas": 3}}))
    assert sized.actions[0] == MirrorTraffic(percent=30, size_percent=5, replicas=3)


def test_a_healthy_shadow_step_advances_to_the_first_weight_and_drops_the_mirror() -> None:
    spec = shadow_spec()
    status = shadowing(spec).status
    for s in range(10, 61, 10):
        at = T0 + timedelta(seconds=s)
        t = step(spec, status, MetricsObserved(mirrored(at)), at)
        status = t.status
    assert t.decision is not None and t.decision.action == DecisionAction.ADVANCE, t.status.message
    assert t.actions[0] == SetWeight(5)
    assert status.current_step == 1 and status.canary_weight == 5 and status.mirror_percent is None
    assert pending_actions(spec, status) == (SetWeight(5),)


def test_a_critical_breach_on_mirrored_traffic_rolls_back_and_removes_the_mirror() -> None:
    spec = shadow_spec()
    status = shadowing(spec).status
    at = T0 + timedelta(seconds=30)
    t = step(spec, status, MetricsObserved(mirrored(at, accuracy=0.70)), at)
    assert t.status.phase == Phase.ROLLING_BACK and t.status.rollback is not None
    assert t.status.rollback.trigger == "accuracy"
    assert t.status.mirror_percent is None and t.actions[0] == RollbackPhase(1)
    assert t.status.history[-1].weight == 0  # no user was ever served by it


def test_a_fast_path_signal_during_the_shadow_step_rolls_back() -> None:
    spec = shadow_spec()
    status = shadowing(spec).status
    signal = CriticalSignal(path=DecisionPath.FAST_PATH, trigger="latency", reason="critical: latency p95 900ms")
    t = step(spec, status, signal, T0 + timedelta(seconds=2))
    assert t.status.phase == Phase.ROLLING_BACK and t.status.mirror_percent is None


def test_high_risk_on_mirrored_traffic_holds_there_is_no_share_to_reduce() -> None:
    spec = shadow_spec()
    high = [ConditionResult(name=n, severity=0.65, weight=1.0 / 7) for n in
            ("accuracy", "latency", "confidenceDrift", "errorRate", "cache", "throughput", "anomaly")]
    position = Position(current_step=0, canary_weight=0, step_started_at=T0)
    d = decide(spec, high, None, position, T0 + timedelta(seconds=30))
    assert d.action == DecisionAction.HOLD and "on mirrored traffic" in d.reason and d.new_weight is None
    weighted = Position(current_step=1, canary_weight=25, step_started_at=T0)
    assert decide(spec, high, None, weighted, T0 + timedelta(seconds=30)).action == DecisionAction.REDUCE
    assert decide(spec, high, None, Position(current_step=0, canary_weight=0, step_started_at=T0, high_risk_since=T0),
                  T0 + timedelta(seconds=300)).action == DecisionAction.ROLLBACK  # sustained: rule 3 still rolls back


def test_throughput_compares_the_mirrored_share_with_the_stable_s_whole() -> None:
    spec = shadow_spec()
    status = shadowing(spec).status.model_copy(update={"mirror_percent": 50,
                                                       "step_started_at": T0 - timedelta(minutes=10)})
    ctx = evaluation_context(spec, status, T0)
    healthy = throughput.evaluate(mirrored(T0, percent=50), ctx)
    assert not healthy.triggered and abs(float(healthy.observed["share_drop"] or 0)) < 1e-9  # type: ignore[arg-type]
    assert healthy.observed["service_rps"] == pytest.approx(40_000.0)  # copies serve no user
    shedding = load_snapshot({**snapshot_dict(T0, 50), "stable": side(40_000.0, window_conf=86_400.0),
                              "canary": side(20_000.0 * 0.4)})
    dropped = throughput.evaluate(shedding, ctx)
    assert dropped.observed["share_drop"] == pytest.approx(0.6)
    assert dropped.critical or dropped.triggered


def test_a_dark_start_precedes_the_mirror_when_a_model_digest_is_declared() -> None:
    spec = shadow_spec({"shadow": {"duration": "60s", "replicas": 2}}, digest=DECLARED)
    t = shadowing(spec)
    assert t.actions[0] == PrepareCanary(5, replicas=2) and t.status.mirror_percent is None
    assert awaiting_model(spec, t.status) and pending_actions(spec, t.status) == (PrepareCanary(5, replicas=2),)
    data = snapshot_dict(T0 + timedelta(seconds=10), 0)
    data["canary"]["model_digests"] = {"c-0": DECLARED, "c-1": DECLARED}
    data["health"]["canary"].update(replicas=2, available_replicas=2, current_pods=["c-0", "c-1"])
    at = T0 + timedelta(seconds=10)
    go = step(spec, t.status, MetricsObserved(load_snapshot(data)), at)
    assert go.actions[0] == MirrorTraffic(100, 5, 2), go.status.message
    assert go.status.mirror_percent == 100 and go.status.canary_weight == 0 and not awaiting_model(spec, go.status)
    assert "shadow" in go.status.message and "confirmed on every canary pod" in go.status.message


def test_manual_promote_leaves_the_shadow_step_for_the_first_weight() -> None:
    spec = shadow_spec()
    status = shadowing(spec).status
    t = step(spec, status, Command(CommandKind.PROMOTE), T0 + timedelta(seconds=5))
    assert t.actions[0] == SetWeight(5) and t.status.current_step == 1 and t.status.mirror_percent is None


def test_initial_status_of_a_shadow_step_mirrors() -> None:
    spec = shadow_spec()
    status = initial_status(spec, T0)
    assert status.canary_weight == 0 and status.mirror_percent == 100
    assert initial_status(spec, T0, 1).mirror_percent is None


# ------------------------------------------------------------------------------- the router


ROUTE = {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": {"rules": [
    {"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x", "value": "1"}]}}],
     "backendRefs": [{"name": "fraud", "port": 80, "weight": 100}, {"name": "fraud-canary", "port": 8080, "weight": 0}]},
    {"matches": [{"path": {"type": "PathPrefix", "value": "/health"}}],
     "backendRefs": [{"name": "other", "port": 80}]},
]}}


def test_the_route_gains_a_mirror_to_the_canary_and_loses_it_with_the_next_weight() -> None:
    mirrored_route = with_canary_weight(ROUTE, "fraud", "fraud-canary", 0, "route", mirror_percent=100)
    rule = mirrored_route["spec"]["rules"][0]
    assert rule["filters"][0]["type"] == "RequestHeaderModifier"  # the user's filter stays
    assert rule["filters"][1] == {"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "fraud-canary", "port": 8080}, "percent": 100}}
    assert mirrored_route["spec"]["rules"][1] == ROUTE["spec"]["rules"][1]  # a rule without the pair: untouched
    assert mirror_percent_of(mirrored_route, "fraud", "fraud-canary") == 100
    assert canary_weight_of(mirrored_route, "fraud", "fraud-canary") == 0
    again = with_canary_weight(mirrored_route, "fraud", "fraud-canary", 0, "route", mirror_percent=100)
    assert again == mirrored_route  # idempotent: one mirror, never two
    routed = with_canary_weight(mirrored_route, "fraud", "fraud-canary", 5, "route")
    assert mirror_percent_of(routed, "fraud", "fraud-canary") is None
    assert routed["spec"]["rules"][0]["filters"] == ROUTE["spec"]["rules"][0]["filters"]
    bare = copy.deepcopy(ROUTE)
    del bare["spec"]["rules"][0]["filters"]
    assert "filters" not in with_canary_weight(
        with_canary_weight(bare, "fraud", "fraud-canary", 0, "r", 40), "fraud", "fraud-canary", 0, "r")["spec"]["rules"][0]


def test_a_mirror_written_as_a_fraction_or_without_a_share_is_read_back() -> None:
    route = with_canary_weight(ROUTE, "fraud", "fraud-canary", 0, "route", mirror_percent=100)
    mirror = route["spec"]["rules"][0]["filters"][1]["requestMirror"]
    del mirror["percent"]
    assert mirror_percent_of(route, "fraud", "fraud-canary") == 100
    mirror["fraction"] = {"numerator": 1, "denominator": 4}
    assert mirror_percent_of(route, "fraud", "fraud-canary") == 25


class _RouteApi:
    def __init__(self, canary_replicas: int = 0) -> None:
        self.route = copy.deepcopy(ROUTE)
        self.canary = {"metadata": {"name": "fraud-canary"}, "spec": {"replicas": canary_replicas}}
        self.writes: list[str] = []

    async def read_httproute(self, ns: str, name: str) -> dict:
        return copy.deepcopy(self.route)

    async def replace_httproute(self, ns: str, name: str, body: dict) -> None:
        self.writes.append(f"route mirror={mirror_percent_of(body, 'fraud', 'fraud-canary')}")
        self.route = body

    async def read_deployment(self, ns: str, name: str) -> dict:
        return copy.deepcopy(self.canary)

    async def scale_deployment(self, ns: str, name: str, replicas: int) -> None:
        self.writes.append(f"scale {replicas}")
        self.canary["spec"]["replicas"] = replicas


TARGET = RolloutTarget(namespace="ml", stable="fraud", canary="fraud-canary", total_replicas=8, http_route="fraud")


def test_the_router_grows_the_canary_before_mirroring_and_a_weight_removes_the_mirror() -> None:
    api = _RouteApi()
    router = GatewayAPIRouter(api)  # type: ignore[arg-type]
    asyncio.run(router.mirror(TARGET, 100, 2))
    assert api.writes == ["scale 2", "route mirror=100"]
    asyncio.run(router.mirror(TARGET, 100, 2))
    assert api.writes == ["scale 2", "route mirror=100"]  # idempotent: nothing written again
    asyncio.run(router.set_canary_weight(TARGET, 5))
    assert api.writes[-2:] == ["route mirror=None", "scale 1"]  # 5 % of 8: one pod, shrunk after the route moved
    assert canary_weight_of(api.route, "fraud", "fraud-canary") == 5
    asyncio.run(router.mirror(TARGET, 100, 2))
    asyncio.run(router.set_canary_weight(TARGET, 0))  # rollback phase 1: weight 0 ends the mirror too
    assert mirror_percent_of(api.route, "fraud", "fraud-canary") is None


def test_the_router_shrinks_an_oversized_canary_after_the_mirror_is_set() -> None:
    api = _RouteApi(canary_replicas=4)
    asyncio.run(GatewayAPIRouter(api).mirror(TARGET, 50, 1))  # type: ignore[arg-type]
    assert api.writes == ["route mirror=50", "scale 1"]


# --------------------------------------------------------------- spec edits and odd paths


def test_a_shadow_step_inserted_mid_way_mirrors_instead_of_setting_weight_zero() -> None:
    weighted = ModelRolloutSpec.model_validate({**shadow_spec().model_dump(mode="json", by_alias=True,
                                                                           exclude_none=True), "steps": WEIGHTED})
    status = step(weighted, None, SpecChanged(), T0).status
    status = step(weighted, status, Initialized(RECORD), T0).status
    assert status.canary_weight == 5 and status.mirror_percent is None
    spec = shadow_spec()  # the user inserts a shadow step as step 0
    at = T0 + timedelta(seconds=10)
    t = step(spec, status, MetricsObserved(mirrored(at)), at)
    assert t.actions[0] == MirrorTraffic(100, 5, None) and t.status.mirror_percent == 100
    assert t.status.canary_weight == 0 and pending_actions(spec, t.status) == (MirrorTraffic(100, 5, None),)


def test_an_edited_percent_is_applied_by_the_next_tick_and_a_restart_reapplies_what_status_records() -> None:
    spec = shadow_spec()
    status = shadowing(spec).status
    edited = shadow_spec({"shadow": {"percent": 10, "duration": "60s"}})
    assert pending_actions(edited, status) == (MirrorTraffic(100, 5, None),)  # what was judged, until the tick
    at = T0 + timedelta(seconds=10)
    t = step(edited, status, MetricsObserved(mirrored(at)), at)
    assert t.actions[0] == MirrorTraffic(10, 5, None) and t.status.mirror_percent == 10
    assert pending_actions(edited, t.status) == (MirrorTraffic(10, 5, None),)


def test_removing_the_shadow_step_mid_way_never_raises_traffic_on_high_risk() -> None:
    spec = shadow_spec()
    high = [ConditionResult(name=n, severity=0.65, weight=1.0 / 7) for n in
            ("accuracy", "latency", "confidenceDrift", "errorRate", "cache", "throughput", "anomaly")]
    without = ModelRolloutSpec.model_validate({**spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                                               "steps": WEIGHTED})
    d = decide(without, high, None, Position(current_step=0, canary_weight=0, step_started_at=T0), T0)
    assert d.action == DecisionAction.HOLD and d.new_weight is None, d


def test_a_full_promote_from_the_shadow_step_clears_the_mirror_in_status() -> None:
    spec = shadow_spec()
    t = step(spec, shadowing(spec).status, Command(CommandKind.PROMOTE_FULL), T0 + timedelta(seconds=5))
    assert t.status.phase == Phase.PROMOTING and t.status.mirror_percent is None


def test_a_dry_run_with_a_shadow_step_and_a_digest_analyses_instead_of_waiting_dark() -> None:
    spec = shadow_spec(digest=DECLARED, dryRun=True)
    t = step(spec, None, SpecChanged(), T0)
    assert t.status.mirror_percent == 100 and not awaiting_model(spec, t.status)
    at = T0 + timedelta(seconds=10)
    t = step(spec, t.status, MetricsObserved(mirrored(at)), at)
    assert t.decision is not None, t.status.message  # judged, not held dark
    assert all(a.__class__.__name__ == "EmitEvent" for a in t.actions)  # and nothing acted on
