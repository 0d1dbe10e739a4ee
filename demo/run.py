"""``make demo``: two ModelRollouts on the local cluster, watched live until both end.

What it does, in order (``make demo`` runs ``make install`` first, and ``make
cluster-build`` unless a cluster is already running):

1. attaches to the local cluster (``e2e/cluster.sh``), or starts it and remembers that
   it did (``<state>/demo/started-cluster``), so only a cluster the demo started is
   ever stopped by it;
2. installs the CRDs and creates the namespace ``modelrollout-demo`` (``--namespace``);
3. applies ``demo/deployments.yaml`` (fraud-detector v1 and recommender v1, 10 GPU
   pods each) and registers both with the metrics simulator (2000 requests/s each);
4. starts the operator in the background (``python -m modelrollout run --namespace …
   --standalone``; log in ``<state>/logs/<namespace>-operator.log``);
5. applies ``demo/fraud-detector.yaml`` and ``demo/recommender.yaml``;
6. shows their live progress every second (an in-place table on a terminal, appended
   lines otherwise) and, a few seconds into recommender's 25 % step, makes its canary
   slow through the simulator so the operator rolls it back;
7. when both have ended, prints what happened (from ``status.history``) and commands to
   look around, and exits 0 only if fraud-detector is ``Succeeded`` and recommender
   ``RolledBack``.

Interactive runs leave the cluster, the namespace and the operator running for a look
around; ``make demo-down`` (``demo/run.py down``) removes them. ``--ci`` (or ``CI=1``)
cleans up at the end instead. Ctrl-C cleans up at any time: the rollouts are deleted
while the operator still runs (its finalizer holds them), then the operator is stopped,
the namespace deleted, and the cluster stopped if the demo started it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # e2e/ is a package at the repository root, not installed

import yaml  # noqa: E402
from kubernetes import client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from e2e.harness.cluster import CLUSTER_SH, Cluster, state_dir  # noqa: E402
from e2e.harness.manifests import GROUP, PLURAL, VERSION  # noqa: E402
from e2e.harness.operator_process import delete_rollouts, free_port, install_crds  # noqa: E402
from modelrollout.plugin import parse_time  # noqa: E402

DEMO = ROOT / "demo"
DEFAULT_NAMESPACE = "modelrollout-demo"
DEMO_LABEL = "modelrollout.io/demo"
# Each rollout's manifest and the end state the demo expects of it.
EXPECTED = {"fraud-detector": "Succeeded", "recommender": "RolledBack"}
DEGRADED = "recommender"
DEGRADE_AFTER_S = 4.0  # seconds into the 25 % step
DEGRADE_AT_WEIGHT = 25
# Twice as slow (healthy: median 1.0 ms, p95 1.8 ms): beyond the latency bounds relative to
# the stable (x1.5), far from the critical ones (x3), so no single check rolls it back at
# once -- the operator holds the step and rolls back once latency has stayed triggered
# for sustainedHighSeconds (10 s in the demo manifests).
DEGRADATION: dict[str, Any] = {"latency_ms": {"median": 2.0, "p95": 3.6}}
DEGRADATION_TEXT = "twice as slow (simulator: latency median 1 -> 2 ms, p95 1.8 -> 3.6 ms)"
SERVICE_RPS = 2000.0
TERMINAL = {"Succeeded", "RolledBack", "Failed"}
DEFAULT_TIMEOUT_S = 300.0
SHORT = {"accuracy": "acc", "latency": "lat", "confidenceDrift": "drift", "errorRate": "err", "cache": "cache",
         "throughput": "tput", "anomaly": "anom"}

EXIT_OK, EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: like Ctrl-C, clean up everything the demo started. A
    BaseException, as KeyboardInterrupt, so no retry loop swallows it."""


# ----------------------------------------------------------------------------- rendering (pure)


def cell(condition: Mapping[str, Any] | None) -> str:
    """A condition's severity, ``!`` when critical, ``?`` when inconclusive; ``-`` if absent."""
    if condition is None:
        return "-"
    mark = "!" if condition.get("critical") else "?" if condition.get("inconclusive") or condition.get("noData") else ""
    return f"{float(condition.get('severity') or 0):.2f}{mark}"


def step_cell(body: Mapping[str, Any]) -> str:
    status = body.get("status") or {}
    total = len((body.get("spec") or {}).get("steps") or []) or 3
    return f"{int(status.get('currentStep') or 0) + 1}/{total}" if status.get("phase") else f"-/{total}"


HEADER = (f"{'NAME':<15} {'PHASE':<12} {'STEP':<5} {'WEIGHT':>6} {'SCORE':>5} {'LEVEL':<8} "
          + " ".join(f"{v:>6}" for v in SHORT.values()))


def row(name: str, body: Mapping[str, Any] | None) -> list[str]:
    """The table row of one rollout and, under it, its last decision."""
    if body is None:
        return [f"{name:<15} {'(not created yet)'}"]
    status = body.get("status") or {}
    risk = status.get("risk") or {}
    by_name = {c.get("name"): c for c in risk.get("conditions") or []}
    score = f"{float(risk['score']):.2f}" if risk.get("score") is not None else "-"
    line = (f"{name:<15} {status.get('phase') or 'Pending':<12} {step_cell(body):<5} "
            f"{str(status.get('canaryWeight') or 0) + '%':>6} {score:>5} {risk.get('level') or '-':<8} "
            + " ".join(f"{cell(by_name.get(k)):>6}" for k in SHORT))
    decision = status.get("decision") or {}
    if decision:
        reason = f"{decision.get('action')}: {decision.get('reason', '')}"
    else:
        reason = status.get("message") or "waiting for the operator"
    return [line.rstrip(), f"{'':<15} -> {reason}"]


def history_line(name: str, entry: Mapping[str, Any], t0: datetime, total_steps: int) -> str:
    at = parse_time(entry.get("at"))
    elapsed = f"{max(0, (at - t0).total_seconds()):4.0f}s" if at else "    -"
    where = ""
    if entry.get("step") is not None:
        where = f"step {int(entry['step']) + 1}/{total_steps}"
        if entry.get("weight") is not None:
            where += f" {entry['weight']}%"
    return f"{elapsed}  {name:<15} {entry.get('kind', ''):<9} {where:<14} {entry.get('message', '')}".rstrip()


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def evidence_lines(evidence: Mapping[str, Any]) -> list[str]:
    """The trigger of a rollback and the evidence for it, in a few lines."""
    lines = [f"trigger:   {evidence.get('trigger', '?')} (caught by the {evidence.get('path', 'tick')} path)"]
    signal_ = evidence.get("signal") or {}
    if signal_:  # the 1 s critical fast path: the observation it acted on
        observed = ", ".join(f"{k}={_fmt(v)}" for k, v in (signal_.get("observed") or {}).items())
        lines.append(f"evidence:  {signal_.get('condition')}: {observed}")
    conditions = [c for c in evidence.get("conditions") or []
                  if c.get("critical") or c.get("triggered") or float(c.get("severity") or 0) > 0]
    conditions.sort(key=lambda c: (not c.get("critical"), -float(c.get("severity") or 0)))
    for c in conditions[:3]:
        lines.append(f"evidence:  {c.get('name')} severity {float(c.get('severity') or 0):.2f}"
                     f"{' CRITICAL' if c.get('critical') else ''}: {c.get('message', '')}")
    if evidence.get("score") is not None and not signal_:
        lines.append(f"score:     {float(evidence['score']):.2f} ({evidence.get('level', '-')}) when it rolled back")
    return lines


def summarize(name: str, body: Mapping[str, Any] | None, expected: str, *, now_line: str = "",
              max_score: float | None = None, degraded_at: datetime | None = None) -> list[str]:
    """What happened to one rollout, from its status.history."""
    if body is None:
        return [f"!! {name}: never created", ""]
    status = body.get("status") or {}
    phase = status.get("phase") or "Pending"
    history = status.get("history") or []
    total = len((body.get("spec") or {}).get("steps") or [])
    pad = " " * 6
    lines = [f"{'ok' if phase == expected else '!!'}  {name:<15} {phase:<11} (expected {expected})"]
    weights = " -> ".join(f"{h.get('weight')}%" for h in history if h.get("kind") == "step")
    if weights:
        lines.append(f"{pad}steps:     {weights}")
    promoted = [h for h in history if h.get("kind") == "promotion"]
    if promoted:
        lines.append(f"{pad}promoted:  {promoted[-1].get('message', '')}")
    started = next((h for h in history if h.get("kind") == "rollback" and h.get("evidence", {}).get("trigger")
                    and "startedAt" in h.get("evidence", {})), None)
    if started is not None:
        evidence = started["evidence"]
        where = f"step {int(evidence.get('step', 0)) + 1}/{total} ({evidence.get('weight', '?')}%)"
        after = ""
        at = parse_time(started.get("at"))
        if degraded_at is not None and at is not None:
            after = f", {max(0.0, (at - degraded_at).total_seconds()):.0f} s after its canary degraded"
        lines.append(f"{pad}rolled back at {where}{after}")
        lines.append(f"{pad}reason:    {evidence.get('reason', started.get('message', ''))}")
        lines += [pad + line for line in evidence_lines(evidence)]
        done = next((h for h in history if h.get("kind") == "rollback" and
                     (h.get("evidence") or {}).get("timeToRecoverSeconds") is not None), None)
        if done is not None:
            seconds = float(done["evidence"]["timeToRecoverSeconds"])
            lines.append(f"{pad}recovered: rollback complete in {seconds:.1f} s "
                         "(traffic, replicas, pod template, canary at 0)")
    if max_score is not None:
        lines.append(f"{pad}highest risk score seen: {max_score:.2f}")
    if phase not in TERMINAL and status.get("decision"):
        lines.append(f"{pad}last decision: {status['decision'].get('action')}: {status['decision'].get('reason')}")
    if now_line:
        lines.append(f"{pad}now:       {now_line}")
    lines.append("")
    return lines


def problems(bodies: Mapping[str, Mapping[str, Any] | None], expected: Mapping[str, str] = EXPECTED) -> list[str]:
    """Why the demo did not end as expected (empty when it did)."""
    out = []
    for name, want in expected.items():
        body = bodies.get(name)
        got = ((body or {}).get("status") or {}).get("phase") or ("absent" if body is None else "Pending")
        if got != want:
            out.append(f"{name} is {got}, expected {want}")
    return out


class Display:
    """Events as permanent lines; the table redrawn in place on a terminal, appended as
    changed rows otherwise (CI logs, pipes)."""

    def __init__(self, stream: TextIO, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.frame_lines: list[str] = []
        self.drawn = 0
        self.last_rows: dict[str, list[str]] = {}
        self.header_printed = False

    def _width(self) -> int:
        return max(40, shutil.get_terminal_size((120, 24)).columns - 1)

    def _erase(self) -> None:
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _draw(self) -> None:
        width = self._width()
        for line in self.frame_lines:
            self.stream.write(line[:width] + "\n")
        self.drawn = len(self.frame_lines)
        self.stream.flush()

    def event(self, text: str) -> None:
        self._erase()
        self.stream.write(text + "\n")
        if self.tty:
            self._draw()
        self.stream.flush()

    def frame(self, title: str, rows: Mapping[str, list[str]], elapsed: float) -> None:
        if self.tty:
            self._erase()
            self.frame_lines = ["", title, HEADER, *[line for lines in rows.values() for line in lines]]
            self._draw()
            return
        if not self.header_printed:
            self.stream.write(f"{'':>5}  {HEADER}\n")
            self.header_printed = True
        for name, lines in rows.items():
            if self.last_rows.get(name) != lines:
                self.last_rows[name] = lines
                self.stream.write(f"{elapsed:4.0f}s  {lines[0]}\n")
                for extra in lines[1:]:
                    self.stream.write(f"{'':>5}  {extra}\n")
        self.stream.flush()

    def finish(self) -> None:
        """Leave the last frame on screen; later output goes below it."""
        self.drawn = 0
        self.frame_lines = []


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


# ----------------------------------------------------------------------------- state files


def demo_dir(state: Path) -> Path:
    d = state / "demo"
    d.mkdir(parents=True, exist_ok=True)
    return d


def operator_pid_file(state: Path, namespace: str) -> Path:
    return demo_dir(state) / f"{namespace}.operator.pid"


def operator_log(state: Path, namespace: str) -> Path:
    return state / "logs" / f"{namespace}-operator.log"


def started_marker(state: Path) -> Path:
    return demo_dir(state) / "started-cluster"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie holds nothing
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def operator_pid(state: Path, namespace: str) -> int | None:
    """The demo operator's pid for `namespace`, if it is still that process."""
    pid = _read_pid(operator_pid_file(state, namespace))
    if pid is None or not _alive(pid):
        return None
    cmd = _cmdline(pid)
    return pid if "modelrollout" in cmd and " run " in cmd and namespace in cmd else None


def lease(state: Path, pid: int, on: bool = True) -> None:
    """A lease in <state>/sessions (see e2e/conftest.py): while its pid lives, a pytest
    session that started the cluster leaves it running for us."""
    f = state / "sessions" / str(pid)
    if on:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    else:
        f.unlink(missing_ok=True)


def other_live_leases(state: Path, exclude: set[int]) -> list[int]:
    live = []
    for f in (state / "sessions").glob("*"):
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if pid not in exclude and _alive(pid):
            live.append(pid)
    return live


# ----------------------------------------------------------------------------- cluster


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MODELROLLOUT_PYTHON", sys.executable)
    return env


def cluster_healthy() -> bool:
    proc = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True,
                          env=_script_env(), timeout=60)
    return proc.returncode == 0


def cluster_env_lines() -> list[str]:
    out = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, env=_script_env(),
                         timeout=30).stdout
    return [line for line in out.splitlines() if line.strip()]


def ensure_cluster(state: Path) -> None:
    if cluster_healthy():
        say(f"reusing the running local cluster (state {state})")
        return
    say("starting the local cluster (e2e/cluster.sh up; ~20 s when the binaries are built)")
    marker = started_marker(state)
    marker.write_text("starting\n")  # an interrupted start is ours to stop
    proc = subprocess.run(["bash", str(CLUSTER_SH), "up"], env=_script_env(), stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"e2e/cluster.sh up failed (exit {proc.returncode}); logs in {state}/logs")
    # Recording etcd's pid ties the marker to this cluster: one restarted by someone
    # else since is not the demo's to stop.
    marker.write_text((state / "pids" / "etcd.pid").read_text())


def maybe_stop_cluster(state: Path, own: set[int]) -> None:
    marker = started_marker(state)
    if not marker.exists():
        return
    recorded = marker.read_text().strip()
    current = _read_pid(state / "pids" / "etcd.pid")
    if recorded != "starting" and (current is None or recorded != str(current)):
        marker.unlink(missing_ok=True)
        say("the cluster was restarted since the demo started it: leaving it alone")
        return
    demos = [p.name.removesuffix(".operator.pid") for p in demo_dir(state).glob("*.operator.pid")]
    others = other_live_leases(state, own)
    if others:
        # Hand it over to the pytest fixture's rule: the last session to leave stops it.
        (state / "started-by-pytest").touch()
        marker.unlink(missing_ok=True)
        say(f"leaving the cluster up: still used by pid(s) {others} (the last of them stops it)")
        return
    if demos:
        say(f"leaving the cluster up: demo namespace(s) {', '.join(demos)} still recorded")
        return
    say("stopping the local cluster (the demo started it)")
    subprocess.run(["bash", str(CLUSTER_SH), "down"], env=_script_env(), stdout=sys.stderr, stderr=sys.stderr,
                   timeout=300)
    marker.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- namespace and objects


def load(path: Path, namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        d.setdefault("metadata", {})["namespace"] = namespace
    return docs


def read_namespace(cluster: Cluster, namespace: str) -> client.V1Namespace | None:
    try:
        return cluster.core.read_namespace(namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def create_namespace(cluster: Cluster, state: Path, namespace: str) -> None:
    existing = read_namespace(cluster, namespace)
    if existing is not None and not existing.metadata.deletion_timestamp:
        if (existing.metadata.labels or {}).get(DEMO_LABEL) != "true":
            raise SystemExit(f"namespace {namespace} exists and was not created by the demo; "
                             "pick another with --namespace")
        say(f"namespace {namespace} is left from an earlier demo: removing it first")
        teardown_namespace(cluster, state, namespace)
        existing = read_namespace(cluster, namespace)
    if existing is not None:
        cluster.wait_for(lambda: read_namespace(cluster, namespace) is None, timeout=120, interval=0.5,
                         message=f"namespace {namespace} to be deleted")
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={DEMO_LABEL: "true"})))
    # Pods are refused until the namespace's default ServiceAccount exists.
    cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", namespace), timeout=60,
                     message=f"default ServiceAccount in {namespace}")


def start_operator(cluster: Cluster, state: Path, namespace: str) -> subprocess.Popen[bytes]:
    log_path = operator_log(state, namespace)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [sys.executable, "-m", "modelrollout", "run", "--namespace", namespace,
            "--prometheus-url", cluster.prometheus_url, "--standalone",
            "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"]
    env = dict(os.environ, KUBECONFIG=cluster.kubeconfig, PYTHONUNBUFFERED="1")
    with log_path.open("ab") as log:
        log.write(f"\n===== demo operator {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(args)}\n".encode())
        log.flush()
        # Its own session: Ctrl-C reaches the demo, which still needs the operator to
        # release the rollouts' finalizers before stopping it.
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=ROOT, start_new_session=True)
    operator_pid_file(state, namespace).write_text(f"{proc.pid}\n")
    # Prometheus scrapes the operator's own /metrics too (modelrollout_risk_score, ...).
    cluster.add_scrape_target(f"{namespace}-operator", [f"127.0.0.1:{port}"], {"component": "modelrollout-demo"})
    return proc


def stop_operator(state: Path, namespace: str) -> None:
    pid = operator_pid(state, namespace)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        lease(state, pid, on=False)
    operator_pid_file(state, namespace).unlink(missing_ok=True)
    (state / "prometheus" / "targets" / f"{namespace}-operator.json").unlink(missing_ok=True)


def teardown_namespace(cluster: Cluster, state: Path, namespace: str) -> None:
    """Rollouts first (the operator's finalizer holds them), then the operator, the
    simulator's services, the namespace."""
    ns = read_namespace(cluster, namespace)
    if ns is not None and (ns.metadata.labels or {}).get(DEMO_LABEL) != "true":
        stop_operator(state, namespace)
        say(f"namespace {namespace} was not created by the demo: left alone")
        return
    running = operator_pid(state, namespace) is not None
    if ns is not None:
        with contextlib.suppress(ApiException):
            delete_rollouts(cluster, namespace, timeout=20.0 if running else 1.0)
    stop_operator(state, namespace)
    with contextlib.suppress(Exception):
        cluster.simulator.forget_namespace(namespace)
    if ns is not None:
        with contextlib.suppress(ApiException):
            cluster.core.delete_namespace(namespace)
        say(f"deleted namespace {namespace} (rollouts, operator, simulated traffic)")


# ----------------------------------------------------------------------------- the run


def get_rollout(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def deployment_line(cluster: Cluster, namespace: str, name: str) -> str:
    """What the stable runs now, and the canary's size."""
    try:
        d = cluster.apps.read_namespaced_deployment(name, namespace)
    except ApiException:
        return f"{name} is absent"
    c = d.spec.template.spec.containers[0]
    gpus = (c.resources.limits or {}).get("nvidia.com/gpu", "0")
    try:
        canary = f"{cluster.apps.read_namespaced_deployment(f'{name}-canary', namespace).spec.replicas} replicas"
    except ApiException:
        canary = "absent"
    unit = "GPU" if str(gpus) == "1" else "GPUs"
    return f"{name} runs {c.image} ({d.spec.replicas} replicas, {gpus} {unit} each); {name}-canary: {canary}"


@dataclass
class Watched:
    bodies: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    max_score: dict[str, float] = field(default_factory=dict)
    degraded_at: datetime | None = None
    ended: str = ""
    seconds: float = 0.0


def watch(cluster: Cluster, namespace: str, proc: subprocess.Popen[bytes], display: Display,
          timeout: float) -> Watched:
    """Refresh the table every second until both rollouts are terminal (or time runs out),
    degrading recommender's canary on the way."""
    result = Watched()
    t0_wall = datetime.now(timezone.utc)
    t0 = time.monotonic()
    seen: dict[str, set[tuple[str, str, str]]] = {name: set() for name in EXPECTED}
    at_weight_since: float | None = None
    title = f"namespace {namespace}  (Ctrl-C stops the demo and cleans up)"
    while True:
        elapsed = time.monotonic() - t0
        result.seconds = elapsed
        bodies = result.bodies = {name: get_rollout(cluster, namespace, name) for name in EXPECTED}
        for name, body in bodies.items():
            status = (body or {}).get("status") or {}
            score = (status.get("risk") or {}).get("score")
            if score is not None:
                result.max_score[name] = max(result.max_score.get(name, 0.0), float(score))
            total = len(((body or {}).get("spec") or {}).get("steps") or [])
            for h in status.get("history") or []:
                key = (str(h.get("at")), str(h.get("kind")), str(h.get("message")))
                if key not in seen[name]:
                    seen[name].add(key)
                    display.event(history_line(name, h, t0_wall, total))
        status = (bodies.get(DEGRADED) or {}).get("status") or {}
        if (result.degraded_at is None and status.get("phase") == "Progressing"
                and int(status.get("canaryWeight") or 0) >= DEGRADE_AT_WEIGHT):
            at_weight_since = at_weight_since if at_weight_since is not None else elapsed
            if elapsed - at_weight_since >= DEGRADE_AFTER_S:
                cluster.simulator.set_behaviour(namespace, f"{DEGRADED}-canary", **DEGRADATION)
                result.degraded_at = datetime.now(timezone.utc)
                display.event(f"{elapsed:4.0f}s  {DEGRADED:<15} {'DEMO':<9} {'':<14} "
                              f"{DEGRADED}-canary becomes {DEGRADATION_TEXT}")
        display.frame(f"t+{elapsed:.0f}s  {title}", {name: row(name, body) for name, body in bodies.items()},
                      elapsed)
        phases = {((b or {}).get("status") or {}).get("phase") for b in bodies.values()}
        if phases <= TERMINAL:
            result.ended = f"both rollouts ended after {elapsed:.0f} s"
            return result
        if proc.poll() is not None:
            result.ended = f"the operator exited (code {proc.returncode}) after {elapsed:.0f} s"
            return result
        if elapsed > timeout:
            result.ended = f"the rollouts did not end within {timeout:.0f} s"
            return result
        time.sleep(1.0)


def look_around(namespace: str, state: Path, kept: bool) -> list[str]:
    env = cluster_env_lines()
    kubeconfig = next((line for line in env if line.startswith("export KUBECONFIG=")), "")
    path = next((line.split("#")[0].strip() for line in env if line.startswith("export PATH=")), "")
    path = path.replace("export PATH=", f"export PATH={ROOT / '.venv' / 'bin'}:") if path else ""
    ns = f"-n {namespace}"
    lines = ["Look around (kubectl and the kubectl-modelrollout plugin):", "", f"  {kubeconfig}", f"  {path}",
             f"  kubectl get mro {ns}",
             f"  kubectl modelrollout {ns} status recommender       # risk, every condition, history",
             f"  kubectl modelrollout {ns} history fraud-detector",
             f"  kubectl describe mro {ns} recommender              # Events too",
             f"  kubectl get deploy {ns}",
             f"  less {operator_log(state, namespace)}"]
    if kept:
        lines += ["",
                  "The operator is still running, so you can drive it. Let recommender try again, healthy this time:",
                  f"  curl -X DELETE {_sim_url(env)}/behaviour/{namespace}/recommender-canary",
                  f"  kubectl modelrollout {ns} retry recommender && kubectl get mro {ns} -w",
                  "", "Stop the demo (operator, namespace, and the cluster if the demo started it):",
                  "  make demo-down"]
    return lines


def _sim_url(env: list[str]) -> str:
    line = next((x for x in env if x.startswith("export MODELROLLOUT_SIMULATOR_URL=")), "")
    return line.split("=", 1)[1] if line else "http://127.0.0.1:19100"


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP behave like Ctrl-C: clean up, then exit."""
    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def up(args: argparse.Namespace) -> int:
    state = state_dir()
    namespace = args.namespace
    ci = args.ci
    tty = sys.stdout.isatty() and not ci
    own = {os.getpid()}
    cluster: Cluster | None = None
    proc: subprocess.Popen[bytes] | None = None
    keep = False
    code = EXIT_SETUP
    try:
        with signals_interrupt():
            ensure_cluster(state)
            lease(state, os.getpid())
            cluster = Cluster.from_state(state)
            say("installing the CRDs (crds/)")
            install_crds(cluster)
            say(f"creating namespace {namespace}")
            create_namespace(cluster, state, namespace)
            say("applying demo/deployments.yaml: fraud-detector v1 and recommender v1, 10 GPU pods each")
            cluster.apply(load(DEMO / "deployments.yaml", namespace))
            for name in EXPECTED:
                cluster.simulator.register_service(name, namespace, stable=name, canary=f"{name}-canary",
                                                   router="replicas", rps=SERVICE_RPS)
            for name in EXPECTED:
                cluster.wait_for(lambda n=name: cluster.deployment_available(namespace, n, 10), timeout=120,
                                 message=f"{name} available")
            say(f"simulated traffic: {SERVICE_RPS:g} requests/s per model, metrics scraped by Prometheus every 1 s")
            proc = start_operator(cluster, state, namespace)
            say(f"operator started (pid {proc.pid}, log {operator_log(state, namespace)})")
            for name in EXPECTED:
                cluster.apply(load(DEMO / f"{name}.yaml", namespace))
            say("applied demo/fraud-detector.yaml and demo/recommender.yaml: 5% -> 25% -> 100%, 15 s steps; "
                f"recommender's canary will degrade {DEGRADE_AFTER_S:g} s into its 25% step")
            print("\n(severities per condition: 0 healthy .. 1 critical bound; ! critical, ? not enough data yet)",
                  flush=True)
            display = Display(sys.stdout, tty)
            watched = watch(cluster, namespace, proc, display, args.timeout)
            bodies = watched.bodies
            display.finish()
            print()
            say(watched.ended)
            print()
            for name, want in EXPECTED.items():
                print("\n".join(summarize(name, bodies.get(name), want,
                                          now_line=deployment_line(cluster, namespace, name),
                                          max_score=watched.max_score.get(name),
                                          degraded_at=watched.degraded_at if name == DEGRADED else None)))
            wrong = problems(bodies)
            code = EXIT_FAILED if wrong else EXIT_OK
            if wrong:
                say("FAILED: " + "; ".join(wrong))
                print(f"--- last lines of the operator log ({operator_log(state, namespace)}) ---")
                with contextlib.suppress(OSError):
                    print("\n".join(operator_log(state, namespace).read_text(errors="replace").splitlines()[-30:]))
                print()
            else:
                say("demo OK: fraud-detector was promoted, recommender was rolled back")
                print()
            keep = args.keep or not ci
            print("\n".join(look_around(namespace, state, keep and proc.poll() is None)))
            print(flush=True)
            if keep:
                # The demo's pid leaves now; the operator's pid keeps the cluster leased.
                lease(state, proc.pid)
                return code
    except (KeyboardInterrupt, Interrupted):
        print("", flush=True)
        say("interrupted: cleaning up what the demo started")
        code = EXIT_INTERRUPTED
    except SystemExit as e:
        if isinstance(e.code, str):
            say(f"ERROR: {e.code}")
        code = EXIT_SETUP if e.code else EXIT_OK
    except Exception as e:  # noqa: BLE001 - reported, then cleaned up
        say(f"ERROR: {type(e).__name__}: {e}")
        code = EXIT_SETUP
    finally:
        if not keep:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
            try:
                if cluster is None and state_has_cluster(state):
                    with contextlib.suppress(Exception):
                        cluster = Cluster.from_state(state)
                if cluster is not None:
                    teardown_namespace(cluster, state, namespace)
                else:
                    stop_operator(state, namespace)
            except Exception as e:  # noqa: BLE001
                say(f"cleanup: {type(e).__name__}: {e} (run `make demo-down`)")
            lease(state, os.getpid(), on=False)
            maybe_stop_cluster(state, own)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        else:
            lease(state, os.getpid(), on=False)
    return code


def state_has_cluster(state: Path) -> bool:
    return (state / "ports.env").exists()


def down(args: argparse.Namespace) -> int:
    state = state_dir()
    namespace = args.namespace
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if state_has_cluster(state) and cluster_healthy():
        cluster = Cluster.from_state(state)
        teardown_namespace(cluster, state, namespace)
    else:
        stop_operator(state, namespace)
        say("no running cluster: nothing to delete")
    maybe_stop_cluster(state, {os.getpid()})
    say("demo down")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["up", "down"], default="up",
                        help="up (default): run the demo; down: remove it (make demo-down)")
    parser.add_argument("--namespace", default=os.environ.get("MODELROLLOUT_DEMO_NAMESPACE", DEFAULT_NAMESPACE),
                        help=f"namespace of the demo (default {DEFAULT_NAMESPACE}, env MODELROLLOUT_DEMO_NAMESPACE)")
    parser.add_argument("--ci", action="store_true",
                        default=os.environ.get("CI", "").lower() not in ("", "0", "false", "no"),
                        help="non-interactive: plain output, clean up at the end (default when CI is set)")
    parser.add_argument("--keep", action="store_true", help="with --ci: leave the demo running at the end")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds the rollouts may take once started (default {DEFAULT_TIMEOUT_S:g})")
    args = parser.parse_args(argv)
    return up(args) if args.command == "up" else down(args)


if __name__ == "__main__":
    sys.exit(main())
