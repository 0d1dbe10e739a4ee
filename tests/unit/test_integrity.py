"""Model integrity (docs/integrity.md): the model the canary's servers report against the
digest the rollout declares; requireImageDigest at the model and in the CRD."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelrollout.adapters.metrics.plan import plan_queries
from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.api.crd import CEL_RULES
from modelrollout.api.models import DecisionAction, ModelRolloutSpec, Phase
from modelrollout.core.fastpath import critical_breach
from modelrollout.core.integrity import MODEL_INTEGRITY, judge_integrity
from modelrollout.core.machine import step
from modelrollout.core.observations import MetricsObserved
from modelrollout.core.snapshot import Snapshot, load_snapshot
from modelrollout.core.windows import fast_path_look

from .factories import T0, begin, snapshot_dict
from .test_promql import AT, healthy_table, request, run_snapshots

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


def reporting(digests: dict[str, float] | None, at=T0, weight: int = 5, available: int | None = 2) -> Snapshot:
    data = snapshot_dict(at, weight)
    if digests is not None:
        data["canary"]["model_digests"] = digests
    if available is not None:
        data["health"]["canary"].update(replicas=available, available_replicas=available)
    return load_snapshot(data)


# ------------------------------------------------------------------------ the verdict


def test_no_declared_digest_is_never_judged() -> None:
    verdict = judge_integrity(spec_with_digest(None), reporting({OTHER: 2}))
    assert verdict.breach is None and verdict.unverified is None


def test_every_available_pod_on_the_declared_digest_is_verified() -> None:
    verdict = judge_integrity(spec_with_digest(), reporting({DECLARED: 2}), reporting({DECLARED: 2}).health.canary)
    assert verdict.breach is None and verdict.unverified is None
    assert verdict.evidence == {"declared": DECLARED, "served": {DECLARED: 2}}


def test_one_pod_on_another_digest_is_a_breach_naming_both_digests() -> None:
    snap = reporting({DECLARED: 1, OTHER: 1})
    verdict = judge_integrity(spec_with_digest(), snap, snap.health.canary)
    assert verdict.breach is not None and OTHER in verdict.breach and DECLARED in verdict.breach
    assert verdict.evidence["served"] == {DECLARED: 1, OTHER: 1}


@pytest.mark.parametrize("digests,available,why", [
    (None, 2, "no canary pod reports"),           # the server exports no model_info
    ({}, 2, "no canary pod reports"),
    ({DECLARED: 1}, 2, "1/2 available canary pods"),
    ({DECLARED: 0}, None, "no canary pod reports"),
])
def test_unconfirmed_model_is_unverified_not_a_breach(digests: dict[str, float] | None, available: int | None,
                                                      why: str) -> None:
    snap = reporting(digests, available=available)
    verdict = judge_integrity(spec_with_digest(), snap, snap.health.canary)
    assert verdict.breach is None and verdict.unverified is not None and why in verdict.unverified


# ------------------------------------------------------------------------ the machine


def progressed(spec: ModelRolloutSpec, digests: dict[str, float] | None, seconds: int = 70):
    """Healthy ticks every 10 s for ``seconds`` with the canary reporting ``digests``."""
    status = begin(spec)
    transition = None
    for s in range(10, seconds + 1, 10):
        at = T0 + timedelta(seconds=s)
        transition = step(spec, status, MetricsObserved(reporting(digests, at, status.canary_weight)), at)
        status = transition.status
    return status, transition


def test_a_verified_model_advances_as_any_other() -> None:
    status, _ = progressed(spec_with_digest(), {DECLARED: 2})
    assert status.phase == Phase.PROGRESSING and status.current_step == 1


def test_an_unverified_model_holds_its_step_and_says_why() -> None:
    status, transition = progressed(spec_with_digest(), {DECLARED: 1})
    assert status.phase == Phase.PROGRESSING and status.current_step == 0 and status.canary_weight == 5
    assert transition is not None and transition.decision is not None
    assert transition.decision.action == DecisionAction.HOLD
    assert "waiting for the declared model: 1/2 available canary pods" in status.message


def test_another_digest_rolls_back_on_the_tick_with_both_digests_in_the_evidence() -> None:
    status, transition = progressed(spec_with_digest(), {OTHER: 2}, seconds=10)
    assert status.phase == Phase.ROLLING_BACK
    assert status.rollback is not None and status.rollback.trigger == MODEL_INTEGRITY
    evidence = status.history[-1].evidence
    assert evidence["trigger"] == MODEL_INTEGRITY
    assert evidence["signal"] == {"declared": DECLARED, "served": {OTHER: 2}}


def test_another_digest_is_caught_by_the_fast_path_from_the_steps_first_second() -> None:
    spec = spec_with_digest()
    status = begin(spec)
    assert status.step_started_at is not None
    at = status.step_started_at + timedelta(seconds=1)
    signal = critical_breach(spec, status, reporting({OTHER: 1, DECLARED: 1}, at), at, fast_path_look(spec, status, at))
    assert signal is not None and signal.trigger == MODEL_INTEGRITY and signal.path == "fastPath"
    assert signal.evidence["served"] == {OTHER: 1, DECLARED: 1}
    assert critical_breach(spec, status, reporting({DECLARED: 2}, at), at) is None


# ------------------------------------------------------------------------ the query


def test_the_digests_are_read_only_for_rollouts_that_declare_one_in_one_shared_query() -> None:
    plain = plan_queries([request()])
    declared = [request(ns=f"ns{i}", model_digest=DECLARED) for i in range(20)]
    planned = plan_queries(declared)
    assert len(planned) == len(plain) + 1
    digests = [q for q in planned if q.key.name == "model_digests"]
    assert len(digests) == 1 and digests[0].promql.startswith("count by (namespace, deployment, digest) (model_info{")
    assert 'deployment=~"fraud-canary"' in digests[0].promql and "fraud\"" not in digests[0].promql


def test_the_request_carries_the_declared_digest_on_both_paths() -> None:
    spec = spec_with_digest()
    status = begin(spec)
    tick = SnapshotRequest.for_rollout(namespace="ml", name="r", spec=spec, status=status, windows={})
    assert tick.model_digest == DECLARED
    assert SnapshotRequest.for_rollout(namespace="ml", name="r", spec=spec_with_digest(None), status=status,
                                       windows={}).model_digest is None


def test_the_snapshot_holds_the_canarys_pods_per_digest() -> None:
    table = healthy_table()
    table[("model_digests", 1)] = {("ml", "fraud-canary"): {DECLARED: 3, OTHER: 1}, ("ml", "fraud"): {OTHER: 4}}
    out, _, _ = run_snapshots([request(model_digest=DECLARED)], table)
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.canary is not None and snap.stable is not None
    assert snap.canary.model_digests == {DECLARED: 3, OTHER: 1}
    assert snap.stable.model_digests is None
    assert snap.at == AT


def test_a_canary_without_model_info_has_no_digests_not_an_error() -> None:
    out, _, _ = run_snapshots([request(model_digest=DECLARED)], healthy_table())
    snap = out["ml/fraud"]
    assert isinstance(snap, Snapshot) and snap.canary is not None and snap.canary.model_digests is None


# ------------------------------------------------------------------------ requireImageDigest


def test_require_image_digest_refuses_a_tag_naming_the_field_and_the_fix() -> None:
    with pytest.raises(ValidationError, match=r"spec.canary.template.image must be pinned by digest.*'img:v2'"):
        spec_with_digest(requireImageDigest=True)
    pinned = ModelRolloutSpec.model_validate({
        "stable": {"deployment": "fraud"},
        "canary": {"deployment": "fraud-canary", "requireImageDigest": True,
                   "template": {"image": "registry.example/model@" + DECLARED}},
    })
    assert pinned.canary.require_image_digest


def test_the_crd_refuses_a_tag_at_admission_too() -> None:
    rules = CEL_RULES[("spec", "canary")]
    assert any("requireImageDigest" in r["rule"] and "@sha256:[a-f0-9]{64}$" in r["rule"] for r in rules)
