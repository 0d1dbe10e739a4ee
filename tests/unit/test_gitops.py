"""GitOps integration (gitops/, docs/gitops.md): the Argo CD health check, run as Lua, and
the Flux health expressions, run as CEL, on ModelRollouts in every phase.

The statuses come from the operator's own state machine (``core.machine.step``, as the
controller drives it), serialised the way the controller writes them, so the checks are
tested on what the operator really writes, not on hand-made guesses. The Lua runs on
Lua 5.1 (``lupa``), the language version of the gopher-lua VM Argo CD embeds; the CEL
runs on ``cel-python``.
"""

from __future__ import annotations

import copy
import functools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.api.manifests import ManifestError, iter_documents, parse_spec
from modelrollout.api.models import DecisionPath, ModelRolloutSpec, ModelRolloutStatus, Phase, StableRecord
from modelrollout.core.machine import step
from modelrollout.core.observations import (
    Command,
    CommandKind,
    CriticalSignal,
    InitFailed,
    Initialized,
    MetricsObserved,
    PromotionApplied,
    PromotionFailed,
    RollbackApplied,
    SpecChanged,
)
from modelrollout.core.records import set_condition
from modelrollout.core.snapshot import load_snapshot

# In the `test` extra (make install): lupa runs the Argo CD Lua health check, cel-python the Flux CEL ones.
import celpy  # noqa: E402
from lupa import lua51  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"
ARGO = GITOPS / "argocd" / "modelrollout.io" / "ModelRollout"
HEALTH_LUA = (ARGO / "health.lua").read_text()
ROLLOUT = GITOPS / "apps" / "fraud-scorer" / "rollout" / "modelrollout.yaml"
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)

# What each phase means to Argo CD (the mapping in docs/gitops.md) and to Flux.
ARGO_BY_PHASE = {
    Phase.SUCCEEDED: "Healthy",
    Phase.PENDING: "Progressing", Phase.INITIALIZING: "Progressing", Phase.PROGRESSING: "Progressing",
    Phase.PROMOTING: "Progressing", Phase.ROLLING_BACK: "Progressing",
    Phase.PAUSED: "Suspended",
    Phase.ROLLED_BACK: "Degraded", Phase.FAILED: "Degraded",
}
FLUX_BY_ARGO = {"Healthy": "current", "Progressing": "inProgress", "Suspended": "inProgress", "Degraded": "failed"}


# ----------------------------------------------------------------------------- real statuses


def rollout_manifest() -> dict[str, Any]:
    return yaml.safe_load(ROLLOUT.read_text())


def status_dict(status: ModelRolloutStatus) -> dict[str, Any]:
    """As the apiserver stores it: the controller's JSON merge patch, whose nulls delete fields."""
    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [prune(v) for v in value]
        return value
    return prune(status.model_dump(mode="json", by_alias=True))


def invalid_spec(status: ModelRolloutStatus, message: str, generation: int, now: datetime) -> ModelRolloutStatus:
    """What ``Controller._invalid_spec`` writes (the controller, not the machine, owns it)."""
    return status.model_copy(update={
        "observed_generation": generation, "message": f"invalid spec: {message}",
        "conditions": set_condition(list(status.conditions), "Ready", False, "InvalidSpec", message, now),
    })


def lifecycle() -> dict[str, tuple[dict[str, Any], ModelRolloutStatus | None, int]]:
    """Named samples: (spec, status, metadata.generation), one or more per phase."""
    manifest = rollout_manifest()
    spec = ModelRolloutSpec.model_validate(manifest["spec"])
    paused_spec = spec.model_copy(update={"paused": True})
    raw, raw_paused = manifest["spec"], {**manifest["spec"], "paused": True}
    t = T0
    record = StableRecord(replicas=4, template={"metadata": {"labels": {"app": "fraud-scorer"}}}, recorded_at=t)
    snapshot = load_snapshot(json.loads((ROOT / "examples/snapshots/healthy.json").read_text()))

    initializing = step(spec, None, SpecChanged(), t, 1).status
    progressing = step(spec, initializing, Initialized(record), t, 1).status
    progressing = step(spec, progressing, MetricsObserved(snapshot.model_copy(update={"at": t + timedelta(seconds=30)})),
                       t + timedelta(seconds=30), 1).status
    paused = step(paused_spec, progressing, SpecChanged(), t + timedelta(minutes=1), 2).status
    promoting = step(spec, progressing, Command(CommandKind.PROMOTE_FULL), t + timedelta(minutes=2), 1).status
    succeeded = step(spec, promoting, PromotionApplied(), t + timedelta(minutes=3), 1).status
    promotion_failed = step(spec, promoting, PromotionFailed(
        "the stable Deployment ml/fraud-scorer did not become available with the challenger's template within 600s "
        "(spec.analysis.progressDeadlineSeconds): 2/4 available"), t + timedelta(minutes=12), 1).status
    start_failed = step(spec, initializing, InitFailed(
        "spec.stable.deployment: Deployment ml/fraud-scorer not found; the stable (champion) Deployment must exist "
        "before the rollout starts"), t, 1).status
    rolling_back = step(spec, progressing, CriticalSignal(
        path=DecisionPath.FAST_PATH, trigger="latency",
        reason="critical: latency: p95 14.0ms beyond its critical bound 6.0ms"),
        t + timedelta(minutes=4), 1).status
    rolled_back = rolling_back
    for phase in (1, 2, 3):
        rolled_back = step(spec, rolled_back, RollbackApplied(phase), t + timedelta(minutes=4, seconds=phase), 1).status
    # A spec past admission but refused by the operator: the message is parse_spec's, as in the controller.
    bad = copy.deepcopy(raw)
    bad["analysis"]["conditions"] = {"accuracy": {"criticalAccuracy": 0.9}}
    with pytest.raises(ManifestError) as refused:
        parse_spec(bad)
    invalid = invalid_spec(ModelRolloutStatus(), str(refused.value), 1, t)
    invalid_mid_rollout = invalid_spec(progressing, "spec.analysis.queries.latencyP95: unknown query name; known names: "
                                       "cache_evictions_per_minute, …", 3, t + timedelta(minutes=5))
    return {
        "no-status": (raw, None, 1),
        "pending": (raw, ModelRolloutStatus(observed_generation=1), 1),
        "initializing": (raw, initializing, 1),
        "progressing": (raw, progressing, 1),
        "paused": (raw_paused, paused, 2),
        "promoting": (raw, promoting, 1),
        "succeeded": (raw, succeeded, 1),
        "succeeded-new-commit-not-yet-seen": (raw, succeeded, 2),
        "rolling-back": (raw, rolling_back, 1),
        "rolled-back": (raw, rolled_back, 1),
        "failed-promotion": (raw, promotion_failed, 1),
        "failed-start": (raw, start_failed, 1),
        "invalid-spec": (bad, invalid, 1),
        "invalid-spec-mid-rollout": (raw, invalid_mid_rollout, 3),
    }


def resource(spec: dict[str, Any], status: ModelRolloutStatus | None, generation: int) -> dict[str, Any]:
    obj = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
           "metadata": {"name": "fraud-scorer", "namespace": "ml", "generation": generation},
           "spec": copy.deepcopy(spec)}
    if status is not None:
        obj["status"] = status_dict(status)
    return obj


def expected(name: str, status: ModelRolloutStatus | None) -> str:
    if name in ("no-status", "succeeded-new-commit-not-yet-seen"):
        return "Progressing"
    if name.startswith("invalid-spec"):
        return "Degraded"
    assert status is not None
    return ARGO_BY_PHASE[status.phase]


# ----------------------------------------------------------------------------- runners


def argo_health(obj: dict[str, Any], script: str = HEALTH_LUA) -> dict[str, Any]:
    """Run a health script as Argo CD does: the resource in the global ``obj``, a table back."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    return {"status": hs["status"], "message": hs["message"]}


def flux_expressions() -> dict[str, str]:
    docs = list(yaml.safe_load_all((GITOPS / "flux" / "kustomizations.yaml").read_text()))
    rollout_ks = next(d for d in docs if d["metadata"]["name"] == "fraud-scorer-rollout")
    check, = [c for c in rollout_ks["spec"]["healthCheckExprs"] if c["kind"] == "ModelRollout"]
    assert check["apiVersion"] == "modelrollout.io/v1alpha1"
    return {k: check[k] for k in ("inProgress", "failed", "current")}


@functools.cache
def flux_programs() -> tuple[tuple[str, Any], ...]:
    env = celpy.Environment()
    return tuple((key, env.program(env.compile(expr))) for key, expr in flux_expressions().items())


def flux_health(obj: dict[str, Any]) -> str:
    """kustomize-controller's order: inProgress, then failed, then current. An expression
    that cannot be evaluated (e.g. no status yet) keeps the resource in progress."""
    activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
    for key, program in flux_programs():
        try:
            result = program.evaluate(activation)
        except celpy.CELEvalError:
            return "inProgress"
        if isinstance(result, celpy.CELEvalError):
            return "inProgress"
        if bool(result):
            return key
    return "inProgress"


SAMPLES = lifecycle()


# ----------------------------------------------------------------------------- Argo CD


def test_every_phase_has_a_sample_and_a_health_status():
    assert set(ARGO_BY_PHASE) == set(Phase)
    seen = {status.phase for _, status, _ in SAMPLES.values() if status is not None}
    assert seen == set(Phase), set(Phase) - seen


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_argo_cd_health_of_real_statuses(name):
    spec, status, generation = SAMPLES[name]
    health = argo_health(resource(spec, status, generation))
    assert health["status"] == expected(name, status), health
    if status is not None and generation == status.observed_generation:
        if name.startswith("invalid-spec"):
            ready = {c.type: c for c in status.conditions}["Ready"]
            assert health["message"] == f"InvalidSpec: {ready.message}"
        else:
            assert health["message"] == (f"{status.phase.value}: {status.message}" if status.message
                                         else status.phase.value)
    else:
        assert "operator" in health["message"], health


def test_rolled_back_message_names_the_trigger():
    spec, status, generation = SAMPLES["rolled-back"]
    health = argo_health(resource(spec, status, generation))
    assert health["status"] == "Degraded"
    assert health["message"].startswith("RolledBack: rolled back: critical: latency: p95 14.0ms")


def test_unknown_phase_is_unknown_not_healthy():
    obj = resource(*SAMPLES["progressing"])
    obj["status"]["phase"] = "Exploded"
    assert argo_health(obj)["status"] == "Unknown"


def test_argocd_cm_carries_the_same_script():
    cm = yaml.safe_load((GITOPS / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"] == {**cm["metadata"], "name": "argocd-cm", "namespace": "argocd"}
    assert cm["data"]["resource.customizations.health.modelrollout.io_ModelRollout"] == HEALTH_LUA


def health_cases() -> list[dict[str, Any]]:
    return yaml.safe_load((ARGO / "health_test.yaml").read_text())["tests"]


@pytest.mark.parametrize("case", health_cases(), ids=lambda c: Path(c["inputPath"]).stem)
def test_argo_cd_health_test_yaml(case):
    """Argo CD's own test format (resource_customizations/<group>/<kind>/health_test.yaml)."""
    obj = yaml.safe_load((ARGO / case["inputPath"]).read_text())
    assert argo_health(obj) == case["healthStatus"]


def test_testdata_is_what_the_operator_writes():
    files = sorted((ARGO / "testdata").glob("*.yaml"))
    assert {f"testdata/{f.name}" for f in files} == {c["inputPath"] for c in health_cases()}
    for f in files:
        obj = yaml.safe_load(f.read_text())
        status = ModelRolloutStatus.model_validate(obj["status"]) if "status" in obj else None
        refused = status is not None and any(c.reason == "InvalidSpec" for c in status.conditions)
        if refused:  # the operator's own refusal, word for word
            with pytest.raises(ManifestError) as error:
                parse_spec(obj["spec"])
            assert status.message == f"invalid spec: {error.value}"
        else:
            parse_spec(obj["spec"])


def test_argo_cd_application_ignores_what_the_operator_owns():
    app = yaml.safe_load((GITOPS / "argocd" / "application.yaml").read_text())
    assert app["kind"] == "Application" and app["apiVersion"] == "argoproj.io/v1alpha1"
    assert (ROOT / app["spec"]["source"]["path"]).is_dir()
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    ignored, = app["spec"]["ignoreDifferences"]
    assert (ignored["kind"], ignored["name"]) == ("Deployment", "fraud-scorer")
    assert set(ignored["jsonPointers"]) == {"/spec/replicas", "/spec/template"}


# ----------------------------------------------------------------------------- Flux


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_flux_health_expressions_agree_with_argo_cd(name):
    spec, status, generation = SAMPLES[name]
    assert flux_health(resource(spec, status, generation)) == FLUX_BY_ARGO[expected(name, status)]


def test_flux_example_parses_with_the_expected_kinds():
    docs = [d for f in sorted((GITOPS / "flux").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = sorted((d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "fraud-scorer-rollout"),
                     ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "fraud-scorer-stable"),
                     ("source.toolkit.fluxcd.io/v1", "GitRepository", "ml-models")]
    by_name = {d["metadata"]["name"]: d for d in docs}
    for name in ("fraud-scorer-stable", "fraud-scorer-rollout"):
        spec = by_name[name]["spec"]
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "ml-models"}
        assert spec["wait"] is True and spec["prune"] is True
        assert (ROOT / spec["path"]).is_dir(), spec["path"]
    assert by_name["fraud-scorer-rollout"]["spec"]["dependsOn"] == [{"name": "fraud-scorer-stable"}]


def test_the_example_app_is_a_valid_rollout_of_its_stable_deployment():
    rollouts = [d for d in iter_documents(ROLLOUT) if not d.skipped]
    assert len(rollouts) == 1 and rollouts[0].rollout is not None, rollouts
    rollout = rollouts[0].rollout
    deployments = [d for d in yaml.safe_load_all((ROLLOUT.parent.parent / "stable" / "deployment.yaml").read_text())
                   if d and d["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == [rollout.spec.stable.deployment]
    assert deployments[0]["metadata"]["namespace"] == rollout.metadata["namespace"]
    assert deployments[0]["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/ssa"] == "IfNotPresent"


# ----------------------------------------------------------------------------- regenerating testdata/

TESTDATA = {  # sample -> file name, in Argo CD's <health>_<what>.yaml style
    "no-status": "progressing_noStatus", "initializing": "progressing_initializing",
    "progressing": "progressing_firstStep", "paused": "suspended_paused", "promoting": "progressing_promoting",
    "succeeded": "healthy_promoted", "succeeded-new-commit-not-yet-seen": "progressing_newGenerationNotObserved",
    "rolling-back": "progressing_rollingBack", "rolled-back": "degraded_rolledBack",
    "failed-promotion": "degraded_promotionFailed", "failed-start": "degraded_startFailed",
    "invalid-spec": "degraded_invalidSpec",
}


def write_testdata() -> None:
    """Rewrite testdata/ and health_test.yaml from lifecycle() (after a change to the
    operator's status or messages): ``.venv/bin/python -m tests.unit.test_gitops``."""
    class Dumper(yaml.SafeDumper):
        pass
    Dumper.add_representer(str, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data))
    for old in (ARGO / "testdata").glob("*.yaml"):
        old.unlink()
    cases = []
    for name, stem in TESTDATA.items():
        obj = resource(*SAMPLES[name])
        obj["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "1"}
        if "status" in obj:
            obj["status"].pop("history", None)
            for condition in (obj["status"].get("risk") or {}).get("conditions", []):
                condition.pop("observed", None)
                condition.pop("threshold", None)
        header = (f"# {name}: written by the operator's state machine (tests/unit/test_gitops.py lifecycle());\n"
                  "# status.history and the conditions' observed/threshold values left out for brevity.\n")
        (ARGO / "testdata" / f"{stem}.yaml").write_text(header + yaml.dump(obj, Dumper=Dumper, sort_keys=False, width=120))
        cases.append({"healthStatus": argo_health(obj), "inputPath": f"testdata/{stem}.yaml"})
    (ARGO / "health_test.yaml").write_text(yaml.dump({"tests": cases}, sort_keys=False, width=200))


if __name__ == "__main__":
    write_testdata()
