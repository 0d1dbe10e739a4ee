"""Running the operator for e2e tests: as a real process (so it can be SIGKILLed).

``OperatorProcess`` starts ``python -m modelrollout run`` against the harness cluster,
watching one namespace, with its logs in the state directory (or another entry point
taking the same options: ``SLOW_OPERATOR`` adds ``--action-delay``). Tests assert on the
cluster (Deployments, HTTPRoutes, Events, status), never on log text; the log is
printed when a test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import gpu_deployment

ROOT = Path(__file__).resolve().parents[2]
SLOW_OPERATOR = "e2e.harness.slow_operator"
"""The operator with a pause before each phased action (``--action-delay SECONDS``)."""
GROUP, VERSION, PLURAL = "modelrollout.io", "v1alpha1", "modelrollouts"
# Every operator process started in this session, in start order (restarts included):
# e2e/conftest.py attaches the log tails of the ones a failing test used to its report.
STARTED: list["OperatorProcess"] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    def __init__(self, cluster: Cluster, namespace: str, *extra: str, name: str = "operator",
                 standalone: bool = True, kubeconfig: str | None = None, module: str = "modelrollout") -> None:
        self.cluster = cluster
        self.module = module  # run as ``python -m <module> run …``
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
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, PYTHONUNBUFFERED="1")
        args = [sys.executable, "-m", self.module, "run", "--namespace", self.namespace,
                "--prometheus-url", self.cluster.prometheus_url, "--metrics-port", str(self.metrics_port),
                "--metrics-addr", "127.0.0.1", "--log-level", "INFO", *self.extra]
        if self.standalone:
            args.append("--standalone")
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
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
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/modelrollouts.modelrollout.io", "crd/kopfpeerings.kopf.dev",
                    "crd/clusterkopfpeerings.kopf.dev")


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    install_crds(cluster)
    return cluster


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


@pytest.fixture
def operator(crds: Cluster, namespace: str) -> Iterator[OperatorProcess]:
    """The operator watching the test's namespace (its log tail is in a failing test's report)."""
    proc = OperatorProcess(crds, namespace).start()
    yield proc
    delete_rollouts(crds, namespace)
    proc.stop()


# ----------------------------------------------------------------------------- helpers


def rollout_manifest(name: str, namespace: str, *, stable: str, canary: str, image: str = "registry.example/model:v2",
                     gpus: int = 2, steps: list[dict[str, Any]] | None = None, interval: str = "2s",
                     analysis: dict[str, Any] | None = None, traffic: dict[str, Any] | None = None,
                     **spec: Any) -> dict[str, Any]:
    """A rollout tuned for e2e speed: second-long steps and intervals, small windows."""
    fast = {"window": "20s"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "stable": {"deployment": stable},
            "canary": {"deployment": canary, "template": {
                "image": image, "resources": {"limits": {"nvidia.com/gpu": str(gpus)},
                                               "requests": {"nvidia.com/gpu": str(gpus)}}}},
            "traffic": traffic or {"router": "replicas"},
            "steps": steps or [{"weight": 25, "duration": "6s"}, {"weight": 50, "duration": "6s"},
                               {"weight": 100, "duration": "6s"}],
            "analysis": {
                "interval": interval, "sustainedHighSeconds": 10,
                "conditions": {
                    "accuracy": {"window": "30s", "minSamples": 50},
                    "latency": {**fast, "minSamples": 200},
                    "confidenceDrift": {"window": "30s", "minSamples": 100},
                    "errorRate": {**fast},
                    "cache": {**fast},
                    "throughput": {"window": "20s", "minServiceRps": 0},
                    "anomaly": {"enabled": False},
                },
                "baselineWindow": "2m",
                **(analysis or {}),
            },
            **spec,
        },
    }


class RolloutScenario:
    """A stable Deployment serving a simulated model, ready for a rollout."""

    def __init__(self, cluster: Cluster, namespace: str, *, name: str = "fraud", replicas: int = 4,
                 rps: float = 4000.0, router: str = "replicas", http_route: str | None = None) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.stable = name
        self.canary = f"{name}-canary"
        cluster.apply(gpu_deployment(self.stable, namespace, replicas=replicas, image="registry.example/model:v1"))
        cluster.wait_for(lambda: cluster.deployment_available(namespace, self.stable, replicas), timeout=60,
                         message=f"{self.stable} available")
        cluster.simulator.register_service(name, namespace, stable=self.stable, canary=self.canary, router=router,
                                           rps=rps, http_route=http_route)
        self.original_replicas = replicas
        self.original_template = self.template_of(self.stable)

    def deployment(self, name: str) -> Any:
        return self.cluster.apps.read_namespaced_deployment(name, self.namespace)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.apply(manifest)

    def get(self, name: str | None = None) -> dict[str, Any]:
        return self.cluster.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                               name or self.name)

    def status(self, name: str | None = None) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait_phase(self, *phases: str, timeout: float = 90.0, name: str | None = None) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in phases else None
        return self.cluster.wait_for(check, timeout=timeout, interval=0.2,
                                     message=f"phase in {phases} (last: {self.status(name).get('phase')})")

    def wait_status(self, predicate: Any, timeout: float = 60.0, message: str = "status") -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = self.status()
            return status if predicate(status) else None
        return self.cluster.wait_for(check, timeout=timeout, interval=0.2, message=message)

    def replicas(self, name: str) -> int:
        return int(self.deployment(name).spec.replicas or 0)

    def events(self) -> list[Any]:
        items = self.cluster.core.list_namespaced_event(self.namespace).items
        return [e for e in items if e.involved_object.kind == "ModelRollout"]

    def annotate(self, key: str, value: str) -> None:
        self.cluster.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"metadata": {"annotations": {key: value}}})

    def patch_spec(self, spec: dict[str, Any]) -> None:
        self.cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                          {"spec": spec})

    def template_of(self, name: str) -> dict[str, Any]:
        return self.cluster.api_client.sanitize_for_serialization(self.deployment(name).spec.template)


def dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def is_not_found(exc: ApiException) -> bool:
    return exc.status == 404
