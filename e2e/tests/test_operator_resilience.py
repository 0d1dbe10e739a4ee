"""The operator under failure: OOMKilled canaries, Prometheus outages, SIGKILL, bad specs,
revision changes and two replicas."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import SLOW_OPERATOR, OperatorProcess, delete_rollouts
from e2e.harness.scenario import RolloutScenario
from e2e.harness.tcp_proxy import TcpProxy

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e


@pytest.fixture
def scenario(crds: Cluster, namespace: str) -> RolloutScenario:
    return RolloutScenario(crds, namespace)


def assert_no_duplicates(status: dict[str, Any]) -> None:
    """Each step entered once, one rollback record per rollback: nothing applied twice."""
    steps = [(h.get("step"), h.get("weight")) for h in status.get("history", []) if h["kind"] == "step"]
    assert len(steps) == len(set(steps)), f"a step was applied twice: {steps}"
    starts = [h for h in status.get("history", []) if h["kind"] == "rollback" and (h.get("evidence") or {}).get("conditions") is not None]
    assert len(starts) <= 1, f"rollback started twice: {starts}"


@pytest.mark.parametrize("inject", ["oomkilled", "crashloop-oom"])
def test_oomkilled_canary_rolls_back_at_once(scenario: RolloutScenario, operator: OperatorProcess, inject: str) -> None:
    s = scenario
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                             steps=[{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}]))
    s.wait_status(lambda st: st.get("phase") == "Progressing" and st.get("canaryWeight") == 25, timeout=60,
                  message="first step")
    s.cluster.apps.patch_namespaced_deployment(s.canary, s.namespace, {
        "spec": {"template": {"metadata": {"labels": {"modelrollout.io/inject": inject}}}}})
    status = s.wait_phase("RolledBack", timeout=60)
    rollback = [h for h in status["history"] if h["kind"] == "rollback"][0]
    assert rollback["evidence"]["trigger"] == "kubernetesHealth"
    assert "OOMKilled" in rollback["evidence"]["reason"] or "CrashLoop" in rollback["evidence"]["reason"]
    assert s.replicas(s.canary) == 0


def test_prometheus_down_holds_never_promotes_then_applies_policy(scenario: RolloutScenario,
                                                                   operator: OperatorProcess) -> None:
    s = scenario
    prom_port = int(s.cluster.prometheus_url.rsplit(":", 1)[1])
    proxy = TcpProxy(prom_port)
    try:
        s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                                 steps=[{"weight": 25, "duration": "8s"}, {"weight": 100, "duration": "8s"}],
                                 analysis={"prometheus": {"url": f"http://127.0.0.1:{proxy.port}"},
                                           "prometheusErrors": {"maxConsecutive": 12, "then": "rollback"}}))
        s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=60, message="analysing")
        proxy.up = False
        held = s.wait_status(lambda st: st.get("consecutivePrometheusErrors", 0) >= 2, timeout=60,
                             message="errors counted")
        # Held past the step's 8 s: errors never advance a step.
        time.sleep(8)
        held = s.status()
        assert held["phase"] == "Progressing" and held["canaryWeight"] == 25 and held["decision"]["action"] == "hold"
        status = s.wait_phase("RolledBack", timeout=60)
        assert [h for h in status["history"] if h["kind"] == "rollback"][0]["evidence"]["trigger"] == "prometheusErrors"
        assert all(h["kind"] != "promotion" for h in status["history"])
    finally:
        proxy.close()


def test_sigkill_mid_step_resumes_and_succeeds(scenario: RolloutScenario, crds: Cluster, namespace: str) -> None:
    s = scenario
    op = OperatorProcess(crds, namespace).start()
    try:
        s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary))
        s.wait_status(lambda st: st.get("canaryWeight") == 50, timeout=90, message="second step")
        op.kill()
        time.sleep(1)
        op.start()
        status = s.wait_phase("Succeeded", timeout=120)
        assert_no_duplicates(status)
        assert s.replicas(s.canary) == 0
        assert s.template_of(s.stable)["spec"]["containers"][0]["image"] == "registry.example/model:v2"
    finally:
        delete_rollouts(crds, namespace)
        op.stop()


def test_sigkill_mid_rollback_resumes_and_restores(scenario: RolloutScenario, crds: Cluster, namespace: str) -> None:
    s = scenario
    # Fault injection: a pause before each phased action makes "mid-rollback" reproducible.
    op = OperatorProcess(crds, namespace, "--action-delay", "1.5", name="slow", module=SLOW_OPERATOR)
    op.start()
    try:
        s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary))
        s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=90, message="analysing")
        s.cluster.simulator.set_behaviour(s.namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
        s.wait_status(lambda st: st.get("phase") == "RollingBack" and (st.get("rollback") or {}).get("completedPhase", 0) >= 1,
                      timeout=60, message="rollback phase 1 done")
        op.kill()
        mid = s.status()
        assert mid["phase"] == "RollingBack", mid.get("phase")
        op.start()
        status = s.wait_phase("RolledBack", timeout=60)
        assert_no_duplicates(status)
        assert s.replicas(s.stable) == s.original_replicas
        assert s.template_of(s.stable) == s.original_template
        assert s.replicas(s.canary) == 0
    finally:
        delete_rollouts(crds, namespace)
        op.stop()


def test_template_change_restarts_and_new_revision_after_rollback_starts_fresh(
        scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                             steps=[{"weight": 25, "duration": "6s"}, {"weight": 50, "duration": "1h"},
                                    {"weight": 100, "duration": "1h"}]))
    s.wait_status(lambda st: st.get("canaryWeight") == 50, timeout=90, message="second step")
    first_revision = s.status()["revision"]
    s.patch_spec({"canary": {"template": {"image": "registry.example/model:v3"}}})
    status = s.wait_status(lambda st: st.get("revision") != first_revision and st.get("phase") == "Progressing",
                           timeout=60, message="restart on the new revision")
    assert status["currentStep"] == 0 and status["canaryWeight"] == 25
    assert s.template_of(s.canary)["spec"]["containers"][0]["image"] == "registry.example/model:v3"
    s.annotate("modelrollout.io/command", "abort@1")
    s.wait_phase("RolledBack", timeout=60)
    s.patch_spec({"canary": {"template": {"image": "registry.example/model:v4"}}})
    status = s.wait_status(lambda st: st.get("phase") == "Progressing" and st.get("canaryWeight") == 25,
                           timeout=60, message="fresh rollout of v4")
    assert status["currentStep"] == 0


def test_reapplying_the_same_manifest_changes_nothing(scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    manifest = rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary,
                                steps=[{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}])
    s.apply(manifest)
    s.wait_status(lambda st: st.get("canaryWeight") == 25 and st.get("risk"), timeout=60, message="analysing")
    before = s.status()
    s.apply(manifest)
    time.sleep(3)
    after = s.status()
    assert after["revision"] == before["revision"] and after["currentStep"] == before["currentStep"]
    assert after["stepStartedAt"] == before["stepStartedAt"]
    assert Counter(h["kind"] for h in after["history"])["revision"] == 1


INVALID = {
    "steps-not-increasing": ({"steps": [{"weight": 50, "duration": "1m"}, {"weight": 25, "duration": "1m"},
                                        {"weight": 100, "duration": "1m"}]}, "increas"),
    "last-step-not-100": ({"steps": [{"weight": 5, "duration": "1m"}, {"weight": 50, "duration": "1m"}]}, "100"),
    "gateway-without-route": ({"traffic": {"router": "gatewayAPI"}}, "httpRoute"),
    "bad-duration": ({"steps": [{"weight": 100, "duration": "5 minutes"}]}, "duration"),
    "fast-path-interval-too-short": ({"analysis": {"fastPathInterval": "50ms"}}, "fastPathInterval"),
    "baseline-window-zero": ({"analysis": {"baselineWindow": "0ms"}}, "baselineWindow"),
    "steps-empty": ({"steps": []}, "spec.steps"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_admission_rejects_invalid_manifests(crds: Cluster, namespace: str, name: str) -> None:
    change, needle = INVALID[name]
    manifest = rollout_manifest("bad", namespace, stable="fraud", canary="fraud-canary")
    manifest["spec"].update(change)
    proc = subprocess.run([crds.kubectl_bin, "--kubeconfig", crds.kubeconfig, "apply", "-f", "-"],
                          input=json.dumps(manifest), capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, f"{name} was admitted"
    assert needle in proc.stderr, proc.stderr
    assert "evaluating rule" not in proc.stderr, f"a CEL rule failed instead of reporting: {proc.stderr}"


def test_spec_past_admission_but_invalid_sets_invalid_spec_and_touches_nothing(
        scenario: RolloutScenario, operator: OperatorProcess) -> None:
    s = scenario
    manifest = rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary)
    # Valid for the CRD schema, invalid for the operator: a critical bound on the wrong side
    # of the *profile's* warning bound (0.85) — admission only sees fields written in the manifest.
    manifest["spec"]["analysis"]["conditions"]["accuracy"] = {"criticalAccuracy": 0.9}
    s.apply(manifest)
    status = s.wait_status(lambda st: any(c.get("reason") == "InvalidSpec" for c in st.get("conditions", [])),
                           timeout=30, message="InvalidSpec")
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and "spec.analysis" in ready["message"] and "criticalAccuracy" in ready["message"]
    assert "Value error" not in ready["message"]
    time.sleep(2)
    assert s.replicas(s.stable) == s.original_replicas and s.template_of(s.stable) == s.original_template
    with pytest.raises(ApiException, match=r"\(404\)"):
        s.deployment(s.canary)
    # Fixing the spec lifts InvalidSpec (Argo CD / Flux health read Ready) and the rollout starts.
    s.patch_spec({"analysis": {"conditions": {"accuracy": {"criticalAccuracy": 0.8}}}})
    status = s.wait_status(lambda st: {c["type"]: c for c in st.get("conditions", [])}["Ready"]["status"] == "True"
                           and st.get("phase") in ("Initializing", "Progressing"), timeout=60, message="Ready again")
    assert {c["type"]: c for c in status["conditions"]}["Ready"]["reason"] != "InvalidSpec"


def test_two_operator_replicas_only_one_acts(scenario: RolloutScenario, crds: Cluster, namespace: str) -> None:
    s = scenario
    crds.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                "metadata": {"name": "modelrollout", "namespace": namespace}})
    low = OperatorProcess(crds, namespace, "--priority", "10", name="low", standalone=False).start()
    high = OperatorProcess(crds, namespace, "--priority", "20", name="high", standalone=False).start()
    try:
        s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary))
        s.wait_phase("Succeeded", timeout=150)

        def decisions(op: OperatorProcess) -> float:
            import urllib.request
            text = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("modelrollout_decisions_total{"))

        assert decisions(high) > 0
        assert decisions(low) == 0
        assert_no_duplicates(s.status())
    finally:
        delete_rollouts(crds, namespace)
        low.stop()
        high.stop()



def test_the_other_replica_takes_over_within_15s_when_the_acting_one_is_killed(
        scenario: RolloutScenario, crds: Cluster, namespace: str) -> None:
    """kopf peering: SIGKILL leaves the acting replica's peering record behind; it expires
    after its lifetime (10 s, docs/operator.md "High availability"), and the other replica
    acts. Never both: the survivor's decisions start only after the kill."""
    s = scenario
    crds.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                "metadata": {"name": "modelrollout", "namespace": namespace}})
    low = OperatorProcess(crds, namespace, "--priority", "10", name="low", standalone=False).start()
    high = OperatorProcess(crds, namespace, "--priority", "20", name="high", standalone=False).start()

    def decisions(op: OperatorProcess) -> float:
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("modelrollout_decisions_total{"))

    try:
        s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary, interval="1s",
                                 steps=[{"weight": 25, "duration": "1h"}, {"weight": 100, "duration": "1h"}]))
        crds.wait_for(lambda: decisions(high) >= 3, timeout=60, message="the high-priority replica acting")
        assert decisions(low) == 0
        high.kill()
        killed = time.monotonic()
        crds.wait_for(lambda: decisions(low) > 0, timeout=30, interval=0.2, message="the other replica acting")
        takeover = time.monotonic() - killed
        assert takeover < 15, f"took {takeover:.1f}s"
        assert s.status()["phase"] == "Progressing"
        assert_no_duplicates(s.status())
        print(f"\n[failover] the other replica acted {takeover:.1f}s after the SIGKILL")
    finally:
        delete_rollouts(crds, namespace)
        low.stop()
        high.stop()
