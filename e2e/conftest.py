"""Pytest fixtures for e2e tests: one local cluster per session, one namespace per test.

`cluster` attaches to a running cluster (make cluster-up) or starts one with
e2e/cluster.sh, and stops it at the end of the session if it started it (and no
other pytest session still uses it), unless MODELROLLOUT_KEEP_CLUSTER=1. The
binaries are built before collection by the root conftest.py (e2e/build.sh, cached;
a cold build takes several minutes and prints its progress); cluster.sh would
build whatever is still missing.

A failing test's report ends with the last lines of every operator log it started
(``OperatorProcess`` in e2e/harness/operator_process.py) and with what its namespace
held when it failed (each ModelRollout's phase, step, message and last decision; each
Deployment's replicas): see pytest_runtest_makereport.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import CLUSTER_SH, Cluster, state_dir
from e2e.harness.manifests import GROUP, PLURAL, VERSION
from e2e.harness.simulator_client import SimulatorError

# A cold start includes the Go builds (~8 min on 2 cores, measured); leave room.
UP_TIMEOUT_S = 45 * 60
# How much of each operator log a failing test's report shows.
OPERATOR_LOG_LINES = 200
_FIRST_OPERATOR = pytest.StashKey[int]()


@contextlib.contextmanager
def _uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let the cluster's progress reach the terminal despite pytest's capture."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def _script_env() -> dict[str, str]:
    env = dict(os.environ)
    # The simulator runs on this interpreter, which has the project's deps.
    env.setdefault("MODELROLLOUT_PYTHON", sys.executable)
    return env


def _cluster_healthy() -> bool:
    proc = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True,
                          env=_script_env(), timeout=60)
    return proc.returncode == 0


def _sessions_dir() -> Path:
    d = state_dir() / "sessions"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _other_live_sessions() -> list[int]:
    """Other pytest processes attached to this cluster (stale leases are removed)."""
    live = []
    for f in _sessions_dir().glob("*"):
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        if _pid_alive(pid):
            live.append(pid)
        else:
            f.unlink(missing_ok=True)
    return live


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The running local cluster (started here when absent).

    Several pytest sessions may share one cluster (developers run suites side
    by side): each holds a lease file in <state>/sessions/, and a cluster that
    a fixture started is stopped by the last session to leave, never under
    another one's feet. A cluster started by hand (make cluster-up) is left
    running.
    """
    started_marker = state_dir() / "started-by-pytest"
    if not _cluster_healthy():
        with _uncaptured(request.config):
            print(f"\n[e2e] no healthy cluster in {state_dir()}: starting one "
                  "(a first run builds the binaries: several minutes)", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            # Output goes straight to the terminal (stderr), so a cold build shows progress.
            proc = subprocess.run(["bash", str(CLUSTER_SH), "up"], env=_script_env(),
                                  stdout=sys.stderr, stderr=sys.stderr, timeout=UP_TIMEOUT_S)
            if proc.returncode != 0:
                pytest.fail(f"e2e/cluster.sh up failed (exit {proc.returncode}); logs in {state_dir()}/logs",
                            pytrace=False)
            print(f"[e2e] cluster up in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
        started_marker.touch()
    lease = _sessions_dir() / str(os.getpid())
    lease.touch()
    c = Cluster.from_state()
    try:
        yield c
    finally:
        lease.unlink(missing_ok=True)
        others = _other_live_sessions()
        keep = os.environ.get("MODELROLLOUT_KEEP_CLUSTER") == "1"
        if started_marker.exists() and not keep and not others:
            started_marker.unlink(missing_ok=True)
            with _uncaptured(request.config):
                subprocess.run(["bash", str(CLUSTER_SH), "down"], env=_script_env(),
                               stdout=sys.stderr, stderr=sys.stderr, timeout=300)
        elif started_marker.exists() and others and not keep:
            with _uncaptured(request.config):
                print(f"\n[e2e] leaving the cluster up: still used by pytest pid(s) {others}",
                      file=sys.stderr, flush=True)


def _slug(text: str, limit: int = 30) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-") or "t"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; deleted (with its simulator state) afterwards."""
    name = f"e2e-{_slug(request.node.name.removeprefix('test_'))}-{uuid.uuid4().hex[:5]}"
    cluster.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"modelrollout.io/e2e": "true"}))
    )
    # Pods are refused until the namespace's default ServiceAccount exists.
    cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", name),
                     timeout=30, message=f"default ServiceAccount in {name}")
    try:
        yield name
    finally:
        with contextlib.suppress(SimulatorError, OSError):  # cleanup: the simulator may be gone
            cluster.simulator.forget_namespace(name)
        try:
            cluster.core.delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise
        # Not waited for: the namespace controller takes 5-10 s per namespace, and
        # the fake nodes have GPUs to spare (MODELROLLOUT_NODE_GPUS, 64 each).


# ----------------------------------------------------------------------------- operator logs on failure


def _started_operators() -> list:
    """OperatorProcess objects started so far this session (none if no test module used them)."""
    support = sys.modules.get("e2e.harness.operator_process")
    return list(getattr(support, "STARTED", ())) if support is not None else []


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_FIRST_OPERATOR] = len(_started_operators())
    yield


def _operators_of(item: pytest.Item) -> list:
    """The operators a test may have depended on: those started since its setup began,
    and older ones (module- or session-scoped) still running. Each process object once."""
    started = _started_operators()
    first = item.stash.get(_FIRST_OPERATOR, len(started))
    seen: set[int] = set()
    chosen = []
    for i, op in enumerate(started):
        if id(op) in seen or (i < first and not op.alive()):
            continue
        seen.add(id(op))
        chosen.append(op)
    return chosen


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing e2e test's report ends with the tail of every operator log it started."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for op in _operators_of(item):
        state = "running" if op.alive() else f"exited {op.proc.returncode}" if op.proc is not None else "not started"
        report.sections.append((f"operator log {op.log_path} ({state}; last {OPERATOR_LOG_LINES} lines)",
                                op.log_tail(OPERATOR_LOG_LINES)))
    namespace, cluster = item.funcargs.get("namespace"), item.funcargs.get("cluster") or item.funcargs.get("crds")
    if isinstance(namespace, str) and isinstance(cluster, Cluster):
        report.sections.append((f"namespace {namespace} at the failure", _namespace_state(cluster, namespace)))


def _namespace_state(cluster: Cluster, namespace: str) -> str:
    """What a failed wait was waiting on: an operator that logs nothing (a step held,
    a canary short of its size) still says why in the rollout's status."""
    lines: list[str] = []
    try:
        rollouts = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        for r in rollouts:
            st = r.get("status") or {}
            decision = st.get("decision") or {}
            lines.append(f"ModelRollout {r['metadata']['name']}: phase {st.get('phase')}, step {st.get('currentStep')}, "
                         f"weight {st.get('canaryWeight')}, stepStartedAt {st.get('stepStartedAt')}, "
                         f"shortOfSizeSince {st.get('shortOfSizeSince')}")
            lines.append(f"  message: {st.get('message')}")
            lines.append(f"  decision: {decision.get('action')} at {decision.get('at')} ({decision.get('path')}): "
                         f"{decision.get('reason')}")
            lines.extend(f"  history: {h.get('at')} {h.get('kind')}: {h.get('message')}"
                         for h in (st.get("history") or [])[-8:])
        for d in cluster.apps.list_namespaced_deployment(namespace).items:
            s = d.status
            lines.append(f"Deployment {d.metadata.name}: spec {d.spec.replicas}, ready {s.ready_replicas}, "
                         f"available {s.available_replicas}, updated {s.updated_replicas}")
    except Exception as e:  # noqa: BLE001 - a report must not fail the report
        lines.append(f"(could not read the namespace: {type(e).__name__}: {e})")
    return "\n".join(lines) + "\n"
