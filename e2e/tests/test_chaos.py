"""The SIGKILL chaos machinery (e2e/chaos.py, docs/chaos.md) kept exercised by `make test`.

``make chaos`` runs it at scale (200 kills, ~30 min). Here: the monitor's checks on
synthetic observations (each invariant can fail: a monitor that never flags anything
proves nothing), and a tiny real run — 2 rollouts, 8 kills, under 3 minutes — that must
end with no violation and kills in at least two different phases.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from e2e.chaos import ChaosConfig, run_chaos
from e2e.harness.cluster import Cluster
from e2e.harness.invariants import Lifecycle, RolloutMonitor, serving_bound

TEMPLATE = {"metadata": {"labels": {"app": "model"}},
            "spec": {"containers": [{"name": "server", "image": "registry.example/model:v1"}]}}


def rollout(phase: str, *, critical: tuple[str, ...] = (), record: int | None = 8, revision: str = "r1",
            template: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "revision": revision, "currentStep": 0, "canaryWeight": 25}
    if record is not None:
        status["stableRecord"] = {"replicas": record, "template": template or TEMPLATE,
                                  "recordedAt": "2026-01-01T00:00:00Z"}
    status["risk"] = {"score": 0.1, "level": "low", "evaluatedAt": "2026-01-01T00:00:00Z",
                      "conditions": [{"name": n, "severity": 1.0, "critical": True} for n in critical]
                      + [{"name": "cache", "severity": 0.0, "critical": False}]}
    return {"spec": {"stable": {"deployment": "model"}, "canary": {"deployment": "model-c2"}}, "status": status}


def deployments(stable_ready: int, canary_ready: int, *, stable_replicas: int = 8,
                stable_template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    def dep(name: str, replicas: int, ready: int, template: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": name, "generation": 1, "uid": name},
                "spec": {"replicas": replicas, "template": template}, "status": {"availableReplicas": ready}}
    return {"model": dep("model", stable_replicas, stable_ready, stable_template or TEMPLATE),
            "model-c2": dep("model-c2", canary_ready, canary_ready, TEMPLATE)}


def monitor() -> RolloutMonitor:
    m = RolloutMonitor(k8s.ApiClient(), "ns", "model", "model")
    m.expect(Lifecycle(label="synthetic", budget_seconds=10.0, before_template=copy.deepcopy(TEMPLATE),
                       before_replicas=8))
    return m


def test_the_bound_is_the_record_less_a_quarter_rounded_down_and_never_zero() -> None:
    assert [serving_bound(n) for n in (1, 2, 3, 4, 8, 20)] == [1, 2, 3, 3, 6, 15]
    assert serving_bound(8, 3) == 5 and serving_bound(8, "100%") == 1 and serving_bound(0) == 0


def test_the_monitor_flags_each_invariant_and_nothing_on_a_safe_rollout() -> None:
    safe = monitor()
    t = time.monotonic()
    safe.observe(rollout("Progressing"), deployments(6, 2), t)
    safe.observe(rollout("Promoting"), deployments(4, 4), t + 0.25)
    safe.observe(rollout("RolledBack", critical=("latency",)), deployments(8, 0), t + 0.5)
    assert safe.violations == []

    m = monitor()
    m.observe(rollout("Progressing"), deployments(3, 2), t)                              # (a) 5 < 6
    m.observe(rollout("Progressing"), deployments(4, 1), t + 0.25)                       # same episode
    m.observe(rollout("Promoting", critical=("accuracy",)), deployments(6, 2), t + 0.5)  # (b)
    m.observe(rollout("Progressing"), deployments(6, 2), t + 11.0)                        # (c) 11 s > 10 s
    changed = copy.deepcopy(TEMPLATE)
    changed["spec"]["containers"][0]["image"] = "registry.example/model:v2"
    m.observe(rollout("RolledBack"), deployments(8, 0, stable_template=changed), t + 11.5)  # (d)
    m.observe(rollout("RolledBack"), deployments(7, 0, stable_replicas=7), t + 12.0)       # (d) replicas
    kinds = [v.invariant for v in m.violations]
    assert kinds == ["a", "b", "c", "d"], [v.report() for v in m.violations]
    assert m.violations[0].samples == 2 and "5 ready serving pods < bound 6" in m.violations[0].detail
    assert "accuracy" in m.violations[1].detail
    assert "template captured before the rollout" in m.violations[3].detail
    assert m.violations[3].samples == 2


def test_recovery_is_the_next_status_write_after_a_kill() -> None:
    m = monitor()
    t = time.monotonic()
    body = rollout("Progressing")
    m.observe(body, deployments(6, 2), t)
    m.mark_kill(t + 0.1, "Progressing", body["status"])
    m.observe(body, deployments(6, 2), t + 1.0)
    assert m.pending_recovery()
    later = copy.deepcopy(body)
    later["status"]["canaryWeight"] = 50
    m.observe(later, deployments(4, 4), t + 3.1)
    assert not m.pending_recovery()
    assert m.recoveries[0][1] == pytest.approx(3.0)


@pytest.mark.e2e
def test_a_small_chaos_run_keeps_every_invariant(cluster: Cluster) -> None:
    """2 rollouts side by side, 8 SIGKILLs, the monitor sampling all along."""
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    started = time.monotonic()
    result = run_chaos(cluster, ChaosConfig(kills=8, rollouts=2, budget_seconds=165, drain_seconds=75, seed=11),
                       out=out)
    took = time.monotonic() - started
    report = "\n".join(lines[-40:])
    assert not result.violations, report
    assert result.kills >= 8, report
    assert len([p for p, n in result.kills_by_phase.items() if n]) >= 2, report
    assert result.rollouts >= 2 and not result.problems, report
    assert result.samples > 200 and result.monitor_errors == 0, report
    assert lines[-1].startswith("chaos: ") and lines[-1] == result.line()
    assert took < 180, f"the small chaos run took {took:.0f}s"
