"""The kubectl plugin: rendering of real status shapes, patch bodies, phase checks, the CLI surface.

The resources below have the shape the operator writes (they validate against
``ModelRolloutStatus``), taken from a rollout rolled back at its second step by a
latency regression, and one still progressing.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner

from modelrollout import plugin
from modelrollout.api.models import ModelRolloutStatus

NOW = datetime(2026, 11, 26, 17, 30, tzinfo=timezone.utc)


def _iso(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


LATENCY = {"name": "latency", "severity": 1.0, "triggered": True, "critical": True, "inconclusive": False,
           "triggeredSince": _iso(3), "samples": 5400, "minSamples": 1000,
           "observed": {"mean_ms": 2.9, "p95_ms": 6.4, "p99_ms": 8.8, "stable_p95_ms": 2.1},
           "threshold": {"mean_ms": 2.0, "p95_ms": 3.0, "p99_ms": 6.0, "p95_ratio": 1.5},
           "message": "p95 6.4ms > critical 6.0ms"}
ACCURACY = {"name": "accuracy", "severity": 0.0, "triggered": False, "critical": False, "inconclusive": True,
            "samples": 64, "minSamples": 100, "observed": {"accuracy": 0.91}, "threshold": {"accuracy": 0.85},
            "message": "accuracy: 64/100 labelled predictions"}
ERRORS = {"name": "errorRate", "severity": 0.12, "triggered": True, "critical": False, "inconclusive": False,
          "observed": {"total": 0.056}, "threshold": {"total": 0.05}, "message": "error rate 5.6% > 5%"}


def progressing() -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": "fraud-scorer", "namespace": "ml", "creationTimestamp": _iso(125), "generation": 1},
        "spec": {"stable": {"deployment": "fraud-scorer"},
                 "canary": {"deployment": "fraud-scorer-canary", "template": {"image": "registry.example/fraud:v2"}},
                 "steps": [{"weight": 5, "duration": "15m"}, {"weight": 25, "duration": "30m"},
                           {"weight": 100, "duration": "1h"}]},
        "status": {
            "phase": "Progressing", "observedGeneration": 1, "revision": "7f3c2a9e", "currentStep": 1,
            "canaryWeight": 25, "stepStartedAt": _iso(12),
            "risk": {"score": 0.42, "level": "medium", "evaluatedAt": _iso(0.25),
                     "conditions": [ACCURACY, {**LATENCY, "severity": 0.4, "critical": False,
                                               "observed": {"p95_ms": 3.4}, "threshold": {"p95_ms": 3.0},
                                               "message": "p95 3.4ms"}, ERRORS]},
            "decision": {"action": "hold", "reason": "medium risk 0.42", "at": _iso(0.25), "path": "tick"},
            "nextEvaluationAt": _iso(-0.25),
            "conditions": [{"type": "Ready", "status": "True", "reason": "Progressing", "message": "",
                            "lastTransitionTime": _iso(120)},
                           {"type": "Progressing", "status": "True", "reason": "StepAdvanced", "message": "step 2",
                            "lastTransitionTime": _iso(12)}],
            "history": [
                {"at": _iso(120), "kind": "revision", "message": "new revision 7f3c2a9e"},
                {"at": _iso(105), "kind": "step", "message": "step 1 passed, canary at 25%", "step": 1, "weight": 25,
                 "score": 0.05},
            ],
        },
    }


def rolled_back() -> dict[str, Any]:
    body = progressing()
    status = body["status"]
    evidence = {"phase": "Progressing", "step": 1, "weight": 25, "score": 0.71, "level": "high",
                "trigger": "latency", "path": "tick", "reason": "critical: latency p95 6.4ms",
                "startedAt": _iso(2), "conditions": [ACCURACY, LATENCY, ERRORS]}
    status.update({
        "phase": "RolledBack", "canaryWeight": 0, "message": "rolled back: critical: latency p95 6.4ms (recovered in 4.2s)",
        "risk": {"score": 0.71, "level": "high", "evaluatedAt": _iso(2), "conditions": [ACCURACY, LATENCY, ERRORS]},
        "decision": {"action": "rollback", "reason": "critical: latency p95 6.4ms", "at": _iso(2), "path": "tick"},
        "rollback": {"reason": "critical: latency p95 6.4ms", "trigger": "latency", "path": "tick",
                     "startedAt": _iso(2), "completedPhase": 3},
        "nextEvaluationAt": None, "lastCommand": "abort@2026-11-26T17:00:00.000001Z",
    })
    status["history"] += [
        {"at": _iso(2), "kind": "rollback", "message": "rolling back (tick): critical: latency p95 6.4ms",
         "step": 1, "weight": 25, "score": 0.71, "evidence": evidence},
        {"at": _iso(1.9), "kind": "rollback", "message": "rolled back: critical: latency p95 6.4ms (recovered in 4.2s)",
         "evidence": {"trigger": "latency", "path": "tick", "reason": "critical: latency p95 6.4ms",
                      "startedAt": _iso(2), "completedAt": _iso(1.9), "timeToRecoverSeconds": 4.2}},
    ]
    return body


@pytest.mark.parametrize("make", [progressing, rolled_back])
def test_fixtures_have_the_operators_status_shape(make):
    ModelRolloutStatus.model_validate(make()["status"])


# --------------------------------------------------------------------------- rendering


def test_status_shows_steps_weight_risk_and_every_condition():
    text = plugin.render_status(progressing(), NOW)
    assert "ModelRollout ml/fraud-scorer" in text
    assert "Phase:    Progressing" in text
    assert "Step:     2/3   canary weight 25%" in text
    lines = text.splitlines()
    step_lines = [line for line in lines if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(step_lines) == 3
    assert "5%" in step_lines[0] and "15m" in step_lines[0] and "done" in step_lines[0]
    assert "25%" in step_lines[1] and "30m" in step_lines[1] and "current, 12m in" in step_lines[1]
    assert "100%" in step_lines[2] and "1h" in step_lines[2] and "done" not in step_lines[2]
    assert "score 0.42  level medium" in text
    assert next(line for line in lines if "CONDITION" in line).split() == ["CONDITION", "SEVERITY", "STATE", "MESSAGE"]
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("accuracy"))
    assert "inconclusive" in lines[at] and "64/100 labelled predictions" in lines[at]
    assert lines[at + 1].split() == ["observed", "accuracy=0.91"]
    assert lines[at + 2].split() == ["threshold", "accuracy=0.85"]
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("latency"))
    assert "0.40" in lines[at] and "triggered" in lines[at] and "p95 3.4ms" in lines[at]
    assert lines[at + 1].split() == ["observed", "p95_ms=3.4"] and lines[at + 2].split() == ["threshold", "p95_ms=3"]
    assert "Decision: hold (tick, 15s ago): medium risk 0.42" in text
    assert "History (last 2 of 2)" in text


def test_status_of_a_rollback_flags_critical_and_shows_evidence():
    text = plugin.render_status(rolled_back(), NOW)
    latency = next(line for line in text.splitlines() if line.strip().startswith("latency"))
    assert "critical,triggered" in latency and "1.00" in latency
    assert "stopped here" in text and "current" not in text
    assert "Last command: abort@2026-11-26T17:00:00.000001Z" in text
    assert "evidence: trigger=latency; score=0.71 (high); latency sev 1.00 CRITICAL" in text
    assert "recovered in 4.2s" in text
    assert "Next evaluation" not in text


def test_status_of_a_new_rollout_without_status_renders_default_steps():
    body = progressing()
    del body["status"]
    del body["spec"]["steps"]
    text = plugin.render_status(body, NOW)
    assert "Phase:    Pending" in text and "Step:     -/3" in text
    assert "not evaluated yet" in text
    assert "15m" in text and "30m" in text and "1h" in text


# A latency condition as the operator wrote it (e2e run): many values on each side.
REAL_LATENCY = {
    "name": "latency", "severity": 1.0, "triggered": True, "critical": True, "inconclusive": False,
    "observed": {"mean_ms": 1.889, "p95_ms": 8.517, "p99_ms": 12.6, "requests": 10496.1, "stable_mean_ms": 1.065,
                 "stable_p95_ms": 1.802, "stable_p99_ms": 2.294},
    "threshold": {"critical_factor": 2.0, "critical_mean_ms": 4.0, "critical_p95_ms": 6.0, "critical_p99_ms": 12.0,
                  "max_stable_ratio": 1.5, "mean_ms": 2.0, "min_samples": 200, "p95_ms": 3.0, "p99_ms": 6.0,
                  "relative_critical_mean_ms": 3.194, "relative_critical_p95_ms": 5.406,
                  "relative_critical_p99_ms": 6.883, "relative_mean_ms": 1.597, "relative_p95_ms": 2.703,
                  "relative_p99_ms": 3.442},
    "message": "p95 8.52ms beyond its critical bound 6.00ms (+4 more checks beyond bound)",
}


@pytest.mark.parametrize("width", [80, 120])
def test_condition_values_wrap_to_the_terminal_with_shared_names_first(width):
    body = progressing()
    body["status"]["risk"]["conditions"] = [REAL_LATENCY, ACCURACY]
    text = plugin.render_status(body, NOW, width=width)
    assert max(len(line) for line in text.splitlines() if "=" in line and "Message" not in line) <= width
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("latency"))
    assert "critical,triggered" in lines[at] and "beyond its critical bound 6.00ms" in lines[at]
    assert lines[at + 1].split()[:3] == ["observed", "mean_ms=1.889,", "p95_ms=8.517,"]
    threshold = next(line for line in lines[at + 1:] if line.split()[:1] == ["threshold"])
    # the bounds named like an observed value come first: mean_ms, p95_ms, p99_ms
    assert threshold.split()[1:4] == ["mean_ms=2,", "p95_ms=3,", "p99_ms=6,"]
    continued = lines[lines.index(threshold) + 1]
    assert continued.startswith(" " * threshold.index("mean_ms")) and "=" in continued


def test_succeeded_marks_every_step_done():
    body = progressing()
    body["status"].update(phase="Succeeded", currentStep=2, canaryWeight=0)
    text = plugin.render_status(body, NOW)
    assert sum("done" in line for line in text.splitlines()) == 3


def test_pending_command_is_shown_until_the_operator_records_it():
    body = progressing()
    body["metadata"]["annotations"] = {plugin.COMMAND_ANNOTATION: "promote@2026-11-26T17:29:59.000000Z"}
    assert "Pending command: promote@2026-11-26T17:29:59.000000Z" in plugin.render_status(body, NOW)
    body["status"]["lastCommand"] = "promote@2026-11-26T17:29:59.000000Z"
    assert plugin.pending_command(body) is None


def test_list_has_kubectl_columns():
    other = rolled_back()
    other["metadata"].update(name="ranker", namespace="search")
    text = plugin.render_list([progressing(), other], NOW, all_namespaces=True)
    header, first, second = text.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "STEP", "WEIGHT", "SCORE", "LEVEL", "AGE"]
    assert first.split() == ["ml", "fraud-scorer", "Progressing", "2/3", "25%", "0.42", "medium", "2h5m"]
    assert second.split()[:4] == ["search", "ranker", "RolledBack", "2/3"]
    assert plugin.render_list([progressing()], NOW).splitlines()[0].split()[0] == "NAME"


def test_history_table_summarises_rollback_evidence():
    text = plugin.render_history(rolled_back(), NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "AGE", "KIND", "STEP", "WEIGHT", "SCORE", "MESSAGE"]
    assert sum(" rollback " in line for line in lines) == 2
    evidence = [line for line in lines if "evidence:" in line]
    assert len(evidence) == 2
    # the worst condition first (critical), then by severity; healthy ones left out
    assert evidence[0].index("latency") < evidence[0].index("errorRate")
    assert "accuracy" not in evidence[0]
    assert "latency sev 1.00 CRITICAL: p95 6.4ms > critical 6.0ms [mean_ms 2.9 vs 2, p95_ms 6.4 vs 3," in evidence[0]
    assert plugin.render_history({"metadata": {"name": "x", "namespace": "y"}}, NOW) == "modelrollout y/x: no history yet"


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (119, "119s"), (600, "10m"), (3600, "1h"),
                                               (3 * 3600 + 1200, "3h20m"), (86400 * 2 + 3600 * 4, "2d4h")])
def test_age(seconds, text):
    assert plugin.format_age(NOW - timedelta(seconds=seconds), NOW) == text
    assert plugin.format_age(None, NOW) == "-"


# ------------------------------------------------------------------ commands and patches


def test_command_patch_writes_the_annotation_with_a_microsecond_utc_id():
    at = datetime(2026, 11, 26, 17, 0, 0, 42, tzinfo=timezone.utc)
    assert plugin.command_patch("abort", at) == {
        "metadata": {"annotations": {"modelrollout.io/command": "abort@2026-11-26T17:00:00.000042Z"}}}
    local = at.astimezone(timezone(timedelta(hours=2)))
    assert plugin.command_id("promote-full", local) == "promote-full@2026-11-26T17:00:00.000042Z"
    with pytest.raises(ValueError, match="unknown command 'skip'"):
        plugin.command_id("skip", at)


def test_pause_resume_are_spec_merge_patches():
    assert plugin.paused_patch(True) == {"spec": {"paused": True}}
    assert plugin.paused_patch(False) == {"spec": {"paused": False}}


def test_plugin_speaks_the_operators_command_vocabulary():
    from modelrollout.controller import COMMAND_ANNOTATION, COMMANDS

    assert plugin.COMMAND_ANNOTATION == COMMAND_ANNOTATION
    assert set(plugin.COMMAND_PHASES) == set(COMMANDS)


@pytest.mark.parametrize(("kind", "phase", "ok"), [
    ("retry", "RolledBack", True), ("retry", "Failed", True), ("retry", "Progressing", False),
    ("abort", "Progressing", True), ("abort", "Paused", True), ("abort", "Succeeded", False),
    ("promote", "Progressing", True), ("promote-full", "Paused", True), ("promote", "RolledBack", False),
])
def test_commands_are_refused_in_phases_where_the_operator_ignores_them(kind, phase, ok):
    body = progressing()
    body["status"]["phase"] = phase
    if ok:
        plugin.check_command(kind, body)
    else:
        with pytest.raises(plugin.PluginError, match=f"ml/fraud-scorer is {phase}: {kind} applies only"):
            plugin.check_command(kind, body)


# -------------------------------------------------------------------------------- CLI


class FakeCluster:
    """Stands in for ``plugin.Cluster``: the one boundary with the API server."""

    def __init__(self, bodies: dict[str, dict[str, Any]], namespace: str = "ml") -> None:
        self.bodies = bodies
        self.namespace = namespace
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.bodies:
            raise plugin.PluginError(f"modelrollout {name!r} not found in namespace {self.namespace!r}")
        return copy.deepcopy(self.bodies[name])

    def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        return [copy.deepcopy(b) for b in self.bodies.values()]

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((name, body))
        return self.bodies[name]


@pytest.fixture
def cluster(monkeypatch):
    ranker = rolled_back()
    ranker["metadata"]["name"] = "ranker"
    fake = FakeCluster({"fraud-scorer": progressing(), "ranker": ranker})
    monkeypatch.setattr(plugin, "Cluster", lambda target: fake)
    return fake


def test_help_lists_every_command():
    result = CliRunner().invoke(plugin.main, ["--help"])
    assert result.exit_code == 0
    for command in ("status", "list", "promote", "abort", "retry", "pause", "resume", "history"):
        assert command in result.output
    for option in ("--namespace", "--kubeconfig", "--context"):
        assert option in result.output
    promote = CliRunner().invoke(plugin.main, ["promote", "--help"])
    assert promote.exit_code == 0 and "--full" in promote.output
    status = CliRunner().invoke(plugin.main, ["status", "--help"])
    assert "--watch" in status.output


def test_promote_full_patches_the_annotation(cluster):
    result = CliRunner().invoke(plugin.main, ["-n", "ml", "promote", "--full", "fraud-scorer"])
    assert result.exit_code == 0, result.output
    (name, body), = cluster.patches
    value = body["metadata"]["annotations"]["modelrollout.io/command"]
    assert name == "fraud-scorer" and value.startswith("promote-full@") and value.endswith("Z")
    assert "full promotion requested" in result.output and value in result.output


def test_retry_outside_rolled_back_exits_1_without_patching(cluster):
    result = CliRunner().invoke(plugin.main, ["retry", "fraud-scorer"])
    assert result.exit_code == 1
    assert "is Progressing: retry applies only when the rollout is Failed or RolledBack" in result.output
    assert cluster.patches == []
    assert CliRunner().invoke(plugin.main, ["retry", "ranker"]).exit_code == 0


def test_pause_then_already_paused(cluster):
    result = CliRunner().invoke(plugin.main, ["pause", "fraud-scorer"])
    assert result.exit_code == 0 and cluster.patches == [("fraud-scorer", {"spec": {"paused": True}})]
    cluster.bodies["fraud-scorer"]["spec"]["paused"] = True
    again = CliRunner().invoke(plugin.main, ["pause", "fraud-scorer"])
    assert again.exit_code == 0 and "already paused" in again.output and len(cluster.patches) == 1
    resumed = CliRunner().invoke(plugin.main, ["resume", "fraud-scorer"])
    assert resumed.exit_code == 0 and cluster.patches[-1] == ("fraud-scorer", {"spec": {"paused": False}})


def test_not_found_exits_1_naming_name_and_namespace(cluster):
    result = CliRunner().invoke(plugin.main, ["status", "nope"])
    assert result.exit_code == 1 and "'nope' not found in namespace 'ml'" in result.output


def test_status_watch_stops_at_a_terminal_phase(cluster):
    result = CliRunner().invoke(plugin.main, ["status", "--watch", "ranker"])
    assert result.exit_code == 0 and "RolledBack" in result.output


def test_list_and_history_commands(cluster):
    listed = CliRunner().invoke(plugin.main, ["list", "-A"])
    assert listed.exit_code == 0 and "fraud-scorer" in listed.output and "ranker" in listed.output
    history = CliRunner().invoke(plugin.main, ["history", "ranker"])
    assert history.exit_code == 0 and "evidence: trigger=latency" in history.output


def test_missing_kubeconfig_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(plugin.main, ["--kubeconfig", str(tmp_path / "none"), "list"])
    assert result.exit_code == 1
    assert "no usable kubeconfig" in result.output and "--kubeconfig" in result.output


def test_a_kubeconfig_list_is_merged_like_kubectl_does(tmp_path, monkeypatch):
    """KUBECONFIG=a:b: the context can live in the second file (kubectl merges the list)."""
    import yaml

    second = tmp_path / "b"
    second.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "from-b"}}],
        "current-context": "ctx",
    }))
    listed = f"{tmp_path / 'missing'}{':'}{second}"
    seen = []
    monkeypatch.setattr(plugin, "Cluster", lambda target: seen.append(target) or FakeCluster({}))
    result = CliRunner().invoke(plugin.main, ["list"], env={"KUBECONFIG": listed})
    assert result.exit_code == 0 and seen[0].kubeconfig == listed
    monkeypatch.undo()
    assert plugin.Cluster(plugin.Target(kubeconfig=listed, context=None, namespace=None)).namespace == "from-b"


@pytest.mark.parametrize("args", [
    ["-n", "risk", "status", "fraud-scorer"],
    ["status", "fraud-scorer", "-n", "risk"],           # kubectl habit: flags after the command
    ["-n", "ml", "status", "--namespace", "risk", "fraud-scorer"],
], ids=["before", "after", "after-wins"])
def test_namespace_and_context_are_taken_before_or_after_the_command(args, monkeypatch):
    seen = []
    fake = FakeCluster({"fraud-scorer": progressing()})
    monkeypatch.setattr(plugin, "Cluster", lambda target: seen.append(target) or fake)
    result = CliRunner().invoke(plugin.main, args)
    assert result.exit_code == 0, result.output
    assert seen[0].namespace == "risk"
    result = CliRunner().invoke(plugin.main, ["list", "--context", "prod", "--kubeconfig", "/tmp/kc", "-A"])
    assert result.exit_code == 0 and seen[-1] == plugin.Target(kubeconfig="/tmp/kc", context="prod", namespace=None)
