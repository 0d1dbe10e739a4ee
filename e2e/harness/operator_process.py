"""The operator as a real process (so it can be SIGKILLed), and the CRDs and rollouts it works on.

``OperatorProcess`` starts ``python -m modelrollout run`` against the harness cluster,
watching one namespace, with its logs in the state directory. Tests assert on the
cluster (Deployments, HTTPRoutes, Events, status), never on log text; the log is
printed when a test fails. The e2e tests, the benchmarks, the chaos and fuzz runs and
the demo all start the operator this way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from kubernetes.client.rest import ApiException

from e2e.harness.cluster import REPO, Cluster
from e2e.harness.manifests import GROUP, PLURAL, VERSION

# Every operator process started in this session, in start order (restarts included):
# e2e/conftest.py attaches the log tails of the ones a failing test used to its report.
SLOW_OPERATOR = "e2e.harness.slow_operator"
"""The operator with a pause before each phased action (``--action-delay SECONDS``): the
entry point to pass as ``OperatorProcess(module=…)`` when a test must hit a phase mid-way."""
STARTED: list["OperatorProcess"] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    def __init__(self, cluster: Cluster, namespace: str, *extra: str, name: str = "operator",
                 standalone: bool = True, kubeconfig: str | None = None, module: str = "modelrollout",
                 command: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.module = module  # run as ``python -m <module> run …`` (SLOW_OPERATOR: the e2e fault injection)
        # ``command`` replaces ``python -m <module>`` (the image test: chroot into the image's
        # root as its user); ``env`` replaces this process's environment (KUBECONFIG added).
        self.command = command
        self.env = env
        self.namespace = namespace
        # Whose credentials the operator runs with: the cluster admin's by default, a
        # ServiceAccount token's in the RBAC test (test_chart_rbac.py).
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.extra = list(extra)
        self.standalone = standalone
        self.metrics_port = free_port()
        self.log_path = cluster.state / "logs" / f"{namespace}-{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> "OperatorProcess":
        env = dict(self.env if self.env is not None else os.environ, KUBECONFIG=self.kubeconfig, PYTHONUNBUFFERED="1")
        args = [*(self.command or [sys.executable, "-m", self.module]), "run", "--namespace", self.namespace,
                "--prometheus-url", self.cluster.prometheus_url, "--metrics-port", str(self.metrics_port),
                "--metrics-addr", "127.0.0.1", "--log-level", "INFO", *self.extra]
        if self.standalone:
            args.append("--standalone")
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.starts += 1
        STARTED.append(self)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final status write — the crash the operator must survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def install_crds(cluster: Cluster) -> None:
    for path in ("crds/modelrollout.io_modelrollouts.yaml", "crds/kopf-peering.yaml"):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/modelrollouts.modelrollout.io", "crd/kopfpeerings.kopf.dev",
                    "crd/clusterkopfpeerings.kopf.dev")


def delete_rollouts(cluster: Cluster, namespace: str, timeout: float = 20.0) -> None:
    """Delete the namespace's ModelRollouts while an operator still runs to release them.

    The operator's finalizer holds a deleted rollout until its daemon has stopped; if
    no operator is left (or it is too slow), the finalizers are removed so the test
    namespace can go.
    """
    custom = cluster.custom
    try:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    except ApiException:
        return
    for item in items:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, item["metadata"]["name"])
        except ApiException:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
            return
        time.sleep(0.3)
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        try:
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, item["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
        except ApiException:
            pass
