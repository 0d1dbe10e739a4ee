"""``kubectl modelrollout`` end to end: the installed console script drives a real rollout.

The plugin runs as a process (``.venv/bin/kubectl-modelrollout``, and once through
``kubectl modelrollout`` to prove kubectl finds it on PATH) against the real API server,
while the real operator acts on what it writes. Each command is checked on the cluster
(``spec.paused``, ``status.lastCommand``, phase, weight, Deployments), not only on its output.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds, operator  # noqa: F401 — fixtures

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
PLUGIN = BIN / "kubectl-modelrollout"
HOUR_STEPS = [{"weight": 25, "duration": "1h"}, {"weight": 50, "duration": "1h"}, {"weight": 100, "duration": "1h"}]


class Plugin:
    """``kubectl-modelrollout -n NAMESPACE …`` with the cluster's kubeconfig in $KUBECONFIG."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        if not PLUGIN.exists():  # the project installs it (make install: pip install -e '.[test,bench]')
            pytest.fail(f"{PLUGIN} is not installed: run `make install` (pip install -e .)", pytrace=False)
        self.cluster = cluster
        self.namespace = namespace
        self.env = dict(os.environ, KUBECONFIG=cluster.kubeconfig,
                        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")

    def __call__(self, *args: str, ok: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(PLUGIN), "-n", self.namespace, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        if ok:
            assert proc.returncode == 0, f"kubectl-modelrollout {' '.join(args)}: exit {proc.returncode}\n" \
                                         f"{proc.stdout}\n{proc.stderr}"
        return proc

    def watch(self, name: str) -> subprocess.Popen[str]:
        # SIGINT back to its default in the child: a test run started in the background
        # (``cmd &`` without job control) inherits SIGINT ignored, and Python then installs
        # no KeyboardInterrupt handler, so the Ctrl-C below would never arrive.
        return subprocess.Popen([str(PLUGIN), "-n", self.namespace, "status", "--watch", name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_output(proc: subprocess.Popen[str], timeout: float) -> None:
    """Until the process has printed something (it is running by then). Reads nothing:
    ``communicate`` reads the pipe's fd directly and would miss what a readline buffered."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout:.0f}s"


def frames(output: str, namespace: str, name: str) -> list[str]:
    """``status --watch`` output cut into its refreshes (one header line each)."""
    header = f"ModelRollout {namespace}/{name}"
    return [header + part for part in output.split(header)[1:]]


def rows(text: str, first: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.split()[:1] == [first]]


def test_plugin_drives_a_rollout(crds: Cluster, namespace: str, operator: OperatorProcess) -> None:
    s = RolloutScenario(crds, namespace)
    run = Plugin(crds, namespace)
    s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary, steps=HOUR_STEPS))
    def evaluated(st: dict[str, Any]) -> bool:
        latency = [c for c in (st.get("risk") or {}).get("conditions") or [] if c["name"] == "latency"]
        return st.get("phase") == "Progressing" and st.get("canaryWeight") == 25 \
            and bool(latency and "p95_ms" in (latency[0].get("observed") or {})) \
            and bool((st.get("decision") or {}).get("action"))
    s.wait_status(evaluated, timeout=60, message="first step evaluated, latency observed")

    # The read-only commands side by side (each is a Python process: seconds on a busy machine).
    with ThreadPoolExecutor(max_workers=4) as pool:
        listed, all_namespaces, text = (f.result().stdout for f in [
            pool.submit(run, "list"), pool.submit(run, "list", "-A"), pool.submit(run, "status", s.name)])
        # kubectl finds the plugin on PATH: `kubectl modelrollout …` runs the same script
        # (and, kubectl-style, -n may follow the command).
        via_kubectl = subprocess.run([crds.kubectl_bin, "modelrollout", "list", "-n", namespace],
                                     capture_output=True, text=True, env=run.env, timeout=30)

    # list: kubectl's columns.
    assert listed.splitlines()[0].split() == ["NAME", "PHASE", "STEP", "WEIGHT", "SCORE", "LEVEL", "AGE"]
    row, = rows(listed, s.name)
    assert row[1:4] == ["Progressing", "1/3", "25%"]
    assert via_kubectl.returncode == 0 and rows(via_kubectl.stdout, s.name), via_kubectl.stderr
    assert rows(all_namespaces, namespace)[0][1] == s.name

    # status: steps, weight, score, every condition with observed vs threshold, last decision.
    assert f"ModelRollout {namespace}/{s.name}" in text
    assert "Phase:    Progressing" in text and "Step:     1/3   canary weight 25%" in text
    step_lines = [line.strip() for line in text.splitlines() if re.match(r"\s+[123]\. ", line)]
    assert len(step_lines) == 3 and "current" in step_lines[0] and "1h" in step_lines[0]
    assert re.search(r"Risk:\s+score [0-9.]+\s+level (low|medium|high|critical)", text), text
    lines = text.splitlines()
    header = next(line for line in lines if "CONDITION" in line)
    assert header.split() == ["CONDITION", "SEVERITY", "STATE", "MESSAGE"]
    names = [c["name"] for c in s.status()["risk"]["conditions"]]
    assert {"latency", "errorRate", "accuracy"} <= set(names)
    rows_at = [next(i for i, line in enumerate(lines) if line.split()[:1] == [name]) for name in names]
    for name, at, end in zip(names, rows_at, [*rows_at[1:], len(lines)]):
        # each condition: its row (severity, state, message), then its values under it
        assert re.fullmatch(r"\d\.\d\d", lines[at].split()[1]), lines[at]
        labels = [line.split()[0] for line in lines[at + 1:end] if line.split()[:1] in (["observed"], ["threshold"])]
        assert labels in (["observed", "threshold"], ["threshold"]), (name, lines[at:end])
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["latency"])
    assert "p95_ms=" in lines[at + 1] and "p95_ms=" in next(line for line in lines[at + 2:] if "threshold" in line)
    assert max(len(line) for line in lines if line.split()[:1] in (["observed"], ["threshold"])) <= 120
    assert re.search(r"Decision: \w+ \(tick, ", text), text

    # status --watch, bounded: it refreshes until Ctrl-C, which ends it cleanly.
    watch = run.watch(s.name)
    try:
        # Ctrl-C once it is refreshing (not while Python is still starting: a loaded 2-core
        # machine takes seconds to import the kubernetes client), then let it end cleanly.
        _wait_for_output(watch, timeout=60)
        time.sleep(5)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0 and "Traceback" not in err, err
    shots = frames(out, namespace, s.name)
    assert len(shots) >= 2 and all("Phase:    Progressing" in shot for shot in shots), out[:3000]

    # pause / resume: spec.paused, and the operator's phase follows.
    assert "paused (spec.paused=true)" in run("pause", s.name).stdout
    assert s.get()["spec"]["paused"] is True
    s.wait_phase("Paused", timeout=30)
    assert "already paused" in run("pause", s.name).stdout
    assert "(spec.paused)" in run("status", s.name).stdout
    assert "resumed (spec.paused=false)" in run("resume", s.name).stdout
    assert s.get()["spec"]["paused"] is False
    s.wait_phase("Progressing", timeout=30)

    # commands the operator would ignore are refused, with nothing written.
    refused = run("retry", s.name, ok=False)
    assert refused.returncode == 1 and "is Progressing: retry applies only when the rollout is" in refused.stderr
    # The same command as a raw annotation (GitOps, kubectl annotate): recorded once and
    # ignored; the analysis goes on (it used to spin re-reading the "new" command forever).
    evaluated = s.status()["risk"]["evaluatedAt"]
    s.annotate("modelrollout.io/command", "retry@raw-1")
    s.wait_status(lambda st: st.get("lastCommand") == "retry@raw-1", timeout=20, message="ignored command recorded")
    s.wait_status(lambda st: st["risk"]["evaluatedAt"] != evaluated, timeout=20, message="analysis goes on")
    assert s.status()["phase"] == "Progressing"
    missing = run("status", "nope", ok=False)
    assert missing.returncode == 1 and f"'nope' not found in namespace '{namespace}'" in missing.stderr

    # promote: one step forward.
    out = run("promote", s.name).stdout
    command = re.search(r"modelrollout.io/command=(promote@\S+?)\)", out).group(1)
    s.wait_status(lambda st: st.get("canaryWeight") == 50 and st.get("lastCommand") == command, timeout=30,
                  message=f"{command} applied")
    # the status is written before the action: the canary follows (2 of 4 pods at 50 %)
    crds.wait_for(lambda: s.replicas(s.canary) == 2, timeout=15, message="canary scaled to 2 of 4")

    # abort: rolled back, the stable restored.
    command = re.search(r"=(abort@\S+?)\)", run("abort", s.name).stdout).group(1)
    st = s.wait_phase("RolledBack", timeout=60)
    assert st["lastCommand"] == command
    assert s.replicas(s.canary) == 0 and s.template_of(s.stable) == s.original_template
    text = run("status", s.name).stdout
    assert "Phase:    RolledBack" in text and "stopped here" in text
    history = run("history", s.name).stdout
    assert history.splitlines()[0].split() == ["TIME", "AGE", "KIND", "STEP", "WEIGHT", "SCORE", "MESSAGE"]
    assert "aborted by user" in history and "evidence: trigger=manual" in history

    # retry: back at the first step.
    command = re.search(r"=(retry@\S+?)\)", run("retry", s.name).stdout).group(1)
    s.wait_status(lambda st: st.get("phase") == "Progressing" and st.get("canaryWeight") == 25
                  and st.get("lastCommand") == command, timeout=60, message="retried at the first step")

    # promote --full, watched live: the watch refreshes until Succeeded, then exits by itself.
    watch = run.watch(s.name)
    try:
        time.sleep(2.5)  # at least one frame while Progressing
        command = re.search(r"=(promote-full@\S+?)\)", run("promote", "--full", s.name).stdout).group(1)
        out, err = watch.communicate(timeout=90)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    shots = frames(out, namespace, s.name)
    assert len(shots) >= 2 and "Phase:    Progressing" in shots[0], out[:2000]
    assert "Phase:    Succeeded" in shots[-1]
    st = s.status()
    assert st["phase"] == "Succeeded" and st["lastCommand"] == command
    assert s.template_of(s.stable)["spec"]["containers"][0]["image"] == "registry.example/model:v2"
    assert s.replicas(s.canary) == 0
    kinds = [r[2] for r in rows_after_header(run("history", s.name).stdout)]
    assert {"step", "rollback", "promotion"} <= set(kinds), kinds
    assert "paused" in run("pause", s.name).stdout  # a terminal rollout: noted for the next one
    assert "takes effect on the next rollout" in run("resume", s.name).stdout


def rows_after_header(text: str) -> list[list[str]]:
    """History rows (time, age, kind, …); the evidence lines under a rollback left out."""
    return [line.split() for line in text.splitlines()[1:] if line[:1].isdigit()]
