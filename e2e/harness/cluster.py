"""A handle on the local e2e cluster for tests: kubeconfig, a ready kubernetes
ApiClient, Prometheus, the simulator, and the few helpers every test needs
(apply a manifest, wait for a condition, run a PromQL query).

It only talks to an already running cluster; starting/stopping is
e2e/cluster.sh's job (driven by the pytest fixture in e2e/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config

from e2e.harness.simulator_client import SimulatorClient

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "e2e" / "cluster.sh"
DEFAULT_STATE = REPO / "e2e" / ".state"

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """wait_for ran out of time; an AssertionError so pytest shows it as a failure."""


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("MODELROLLOUT_STATE") or DEFAULT_STATE)


def read_ports(state: Path) -> dict[str, int]:
    """Ports recorded by `cluster.sh up` (ports.env)."""
    ports: dict[str, int] = {}
    f = state / "ports.env"
    if f.exists():
        for line in f.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                ports[k.strip()] = int(v.strip())
    return ports


def built_path(variable: str) -> str:
    """Where e2e/versions.sh puts a built binary or file (``KUBECTL``, ``HELM``, ...),
    honouring MODELROLLOUT_CACHE and the pinned versions."""
    out = subprocess.run(
        ["bash", "-c", f'source "{REPO}/e2e/versions.sh"; echo "${{{variable}}}"'],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def kubectl_path() -> str:
    """The kubectl built with the cluster (the image's own kubectl is older)."""
    return built_path("KUBECTL")


@dataclass
class Cluster:
    """What a test gets from the `cluster` fixture."""

    state: Path
    kubeconfig: str
    prometheus_url: str
    simulator_url: str
    api_client: client.ApiClient = field(init=False)
    simulator: SimulatorClient = field(init=False)
    kubectl_bin: str = field(default_factory=kubectl_path)

    def __post_init__(self) -> None:
        self.api_client = config.new_client_from_config(config_file=self.kubeconfig)
        self.simulator = SimulatorClient(self.simulator_url)

    @classmethod
    def from_state(cls, state: Path | None = None) -> "Cluster":
        """Attach to the cluster whose state dir is `state` (default e2e/.state)."""
        state = state or state_dir()
        ports = read_ports(state)
        if not ports:
            raise RuntimeError(f"no running cluster recorded in {state} (run `make cluster-up`)")
        return cls(
            state=state,
            kubeconfig=str(state / "kubeconfig"),
            prometheus_url=f"http://127.0.0.1:{ports['PROM_PORT']}",
            simulator_url=f"http://127.0.0.1:{ports['SIM_PORT']}",
        )

    # -- typed API groups, for brevity in tests --
    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    # -- control-plane faults --
    def restart_apiserver(self, timeout: float = 120.0) -> float:
        """SIGKILL the API server and start it again on the same etcd (``cluster.sh
        restart-apiserver``): every client's connections and watches drop, nothing stored is
        lost. Returns the seconds it was away. Other clients (controller manager, kwok, the
        operator) reconnect on their own; that is what a test of this fault checks."""
        started = time.monotonic()
        proc = subprocess.run(["bash", str(CLUSTER_SH), "restart-apiserver"], capture_output=True, text=True,
                              timeout=timeout, env=dict(os.environ, MODELROLLOUT_STATE=str(self.state)))
        if proc.returncode != 0:
            raise RuntimeError(f"cluster.sh restart-apiserver failed ({proc.returncode}): {proc.stderr.strip()[-600:]}")
        return time.monotonic() - started

    # -- kubectl --
    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60.0) -> str:
        """Run the cluster's kubectl; raises with its stderr on failure."""
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, manifest: str | Mapping[str, Any] | Iterable[Mapping[str, Any]],
              namespace: str | None = None) -> str:
        """Server-side apply YAML text, one object or a list of objects (any kind,
        CRDs included: kubectl knows how to apply what the dynamic client
        would have to discover)."""
        if isinstance(manifest, str):
            text = manifest
        elif isinstance(manifest, Mapping):
            text = yaml.safe_dump(dict(manifest))
        else:
            text = yaml.safe_dump_all([dict(m) for m in manifest])
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager", "e2e-tests", "-f", "-"]
        if namespace:
            args = ["-n", namespace, *args]
        return self.kubectl(*args, input=text)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        args = ["delete", kind, name, "--ignore-not-found", "--wait=false"]
        if namespace:
            args = ["-n", namespace, *args]
        self.kubectl(*args)

    # -- Prometheus --
    def prom_query(self, query: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Instant query; returns the result vector (raises on a PromQL error)."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"PromQL {query!r}: {body}")
        return body["data"]["result"]

    def prom_scalar(self, query: str) -> float | None:
        """First sample's value of an instant query, or None when empty/NaN."""
        res = self.prom_query(query)
        if not res:
            return None
        v = float(res[0]["value"][1])
        return None if v != v else v

    def add_scrape_target(self, name: str, targets: list[str], labels: dict[str, str] | None = None) -> Path:
        """Have Prometheus scrape `targets` (host:port, loopback) as job "extra"
        (file_sd: picked up within ~1-2 s). Returns the file to delete later."""
        f = self.state / "prometheus" / "targets" / f"{name}.json"
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels or {}}]))
        tmp.rename(f)  # atomic: Prometheus never reads half a file
        return f

    # -- waiting --
    @staticmethod
    def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2,
                 message: str = "condition") -> T:
        """Poll until predicate() is truthy and return its value; exceptions
        count as 'not yet' (the last one is reported on timeout)."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        value: Any = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as e:  # noqa: BLE001 - retried, then reported
                last = e
            if time.monotonic() >= deadline:
                detail = f"; last error: {type(last).__name__}: {last}" if last else f"; last value: {value!r}"
                raise WaitTimeout(f"timed out after {timeout}s waiting for {message}{detail}")
            time.sleep(interval)

    def deployment_available(self, namespace: str, name: str, replicas: int) -> bool:
        d = self.apps.read_namespaced_deployment(name, namespace)
        s = d.status
        return (
            (s.available_replicas or 0) == replicas
            and (s.ready_replicas or 0) == replicas
            and (s.replicas or 0) == replicas
            and (s.updated_replicas or 0) == replicas
            and (s.observed_generation or 0) >= (d.metadata.generation or 0)
        )
