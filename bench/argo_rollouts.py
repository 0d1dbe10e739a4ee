"""Argo Rollouts' side of the reaction-time comparison (``make bench-reaction``): not a test.

The same trial as our operator's (``bench/bench_reaction.py``), run with Argo Rollouts
``v1.10.1`` so the two numbers come from one machine, one cluster and one query: a
basic canary of 20 replicas at 25 % (5 pods), watched by a *background*
AnalysisTemplate on the p95 latency query our latency condition uses, with the same
critical bound, ``interval: 5s`` and ``failureLimit: 0``. We degrade the canary's
latency through the simulator and time from the breach being visible in Prometheus
(the query above the bound, polled every 50 ms) to the canary having 0 pods.

Argo's controller is built from its Go module by ``e2e/build_argo.sh`` (cached), its
CRDs come from the same module, and it runs out of cluster against the local
cluster's kubeconfig with ``--namespaced --leader-elect=false``, one per trial
namespace. Argo's canary pods belong to ReplicaSets owned by the Rollout, not to
Deployments, so the simulator is told to export them by the Rollout's template hashes
(``argoRollout`` in ``POST /services``) under two fixed ``deployment`` labels. A
simulator process older than that field (the shared cluster's simulator is only
restarted by ``cluster-up``) is detected, and a private simulator with this code is
started and scraped instead, so the query is unchanged.

    .venv/bin/python bench/argo_rollouts.py --trials 5 [--healthy-check]

Needs the local cluster (``make cluster-up``); the first run builds the controller
(minutes, then cached).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from e2e.harness.cluster import Cluster  # noqa: E402
from e2e.harness.operator_process import free_port  # noqa: E402
from e2e.harness.simulator_client import SimulatorClient  # noqa: E402

BUILD_SCRIPT = ROOT / "e2e" / "build_argo.sh"
ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"
HASH_LABEL = "rollouts-pod-template-hash"
ARGO_CRDS = ("rollouts", "analysisruns", "analysistemplates", "clusteranalysistemplates", "experiments")

# Defaults matched to our operator's reaction bench (bench/bench_operator.py,
# bench/bench_reaction.py): the latency condition's window and the balanced profile's
# critical p95 bound (3 ms × critical factor 2).
LATENCY_WINDOW = "20s"
CRITICAL_P95_MS = 6.0
DEGRADED_LATENCY_MS = {"median": 9.0, "p95": 16.0}
ROLLOUT = "model"
CANARY_LABEL = f"{ROLLOUT}-canary"  # the `deployment` label of the canary's metrics
STABLE_LABEL = ROLLOUT
STABLE_IMAGE = "registry.example/model:v1"
CANARY_IMAGE = "registry.example/model:v2"
REPLICAS = 20
CANARY_WEIGHT = 25
SERVICE_RPS = 4000.0  # the operator bench's RolloutScenario default
POLL_S = 0.05


# ----------------------------------------------------------------------------- build


def ensure_built(timeout: float = 3600.0) -> Path:
    """Build (or find cached) the controller and CRDs; returns their directory.

    The script prints its progress on stderr (passed through, so a cold build that
    takes minutes is visibly alive) and the directory as its last stdout line.
    """
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}); its output is above")
    out = Path(proc.stdout.strip().splitlines()[-1])
    if not (out / "rollouts-controller").is_file() or not (out / "crds").is_dir():
        raise RuntimeError(f"{BUILD_SCRIPT} reported {out}, which lacks rollouts-controller or crds/")
    return out


# ----------------------------------------------------------------------------- helpers


def install_crds(cluster: Cluster, argo_dir: Path) -> None:
    """Server-side apply Argo's CRDs (idempotent; they are large, hence server-side) and
    wait until they are Established so the first Rollout is not refused."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "bench-argo",
                    "-f", str(argo_dir / "crds"), timeout=120)
    ext = client.ApiextensionsV1Api(cluster.api_client)

    def established() -> bool:
        # Polled rather than `kubectl wait`: that errors out on a CRD created a moment
        # ago, whose status has no conditions yet.
        for plural in ARGO_CRDS:
            crd = ext.read_custom_resource_definition(f"{plural}.{ARGO_GROUP}", _request_timeout=5)
            conds = (crd.status.conditions if crd.status else None) or []
            if not any(c.type == "Established" and c.status == "True" for c in conds):
                return False
        return True

    cluster.wait_for(established, timeout=60, interval=0.3, message="Argo CRDs Established")


def fresh_namespace(cluster: Cluster, prefix: str) -> str:
    """A new namespace of our own (the cluster is shared: we only ever delete these)."""
    name = f"{prefix}-{int(time.time() * 1000) % 10_000_000}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", name), timeout=30,
                     message=f"default ServiceAccount in {name}")
    return name


def _log_path(cluster: Cluster, name: str) -> Path:
    path = cluster.state / "logs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM our own child, then SIGKILL if it lingers (never anything else)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return resp.status == 200
    except OSError:
        return False


# ----------------------------------------------------------------------------- processes


class ArgoController:
    """The Argo Rollouts controller as a child process, watching one namespace.

    Out of cluster with the admin kubeconfig, ``--namespaced --leader-elect=false``
    (one controller per trial namespace, no Lease to wait for), its log in the
    cluster's ``logs/`` directory. A context manager: the process never outlives the
    trial.
    """

    def __init__(self, cluster: Cluster, namespace: str, argo_dir: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.binary = argo_dir / "rollouts-controller"
        # Argo binds its metrics/healthz ports on every address, so the defaults 8090/8080
        # would collide between trials and other work: free loopback ports instead.
        self.metrics_port = free_port()
        self.healthz_port = free_port()
        self.log_path = _log_path(cluster, f"{namespace}-argo-rollouts.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> "ArgoController":
        args = [str(self.binary), "--kubeconfig", self.cluster.kubeconfig, "--namespace", self.namespace,
                "--namespaced", "--leader-elect=false", "--loglevel", "info",
                "--metricsPort", str(self.metrics_port), "--healthzPort", str(self.healthz_port)]
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(args)} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=ROOT)
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rollouts-controller exited ({self.proc.returncode}); log: {self.log_path}")
            return _http_ok(url)

        try:
            self.cluster.wait_for(healthy, timeout=timeout, interval=0.2, message=f"Argo controller {url}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "ArgoController":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrivateSimulator:
    """A simulator of this checkout's code, scraped by the cluster's Prometheus.

    Only used when the shared simulator predates the ``argoRollout`` service field:
    restarting the shared one would disturb everybody else's tests. Its series carry
    the same ``namespace``/``deployment`` labels (Prometheus honours them), so the
    PromQL is the same as with the shared simulator.
    """

    def __init__(self, cluster: Cluster, tag: str) -> None:
        self.cluster = cluster
        self.port = free_port()
        self.log_path = _log_path(cluster, f"{tag}-argo-simulator.log")
        self.target: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = SimulatorClient(f"http://127.0.0.1:{self.port}")

    def __enter__(self) -> "PrivateSimulator":
        python = os.environ.get("MODELROLLOUT_PYTHON") or sys.executable
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [python, "-m", "e2e.simulator", "--host", "127.0.0.1", "--port", str(self.port),
                 "--kubeconfig", self.cluster.kubeconfig], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=ROOT)
        try:
            self.cluster.wait_for(self.client.healthy, timeout=60, interval=0.2, message="private simulator")
            self.target = self.cluster.add_scrape_target(f"bench-argo-sim-{self.port}",
                                                         [f"127.0.0.1:{self.port}"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.target is not None:
            self.target.unlink(missing_ok=True)
        if self.proc is not None:
            _terminate(self.proc)


@contextmanager
def argo_simulator(cluster: Cluster, namespace: str, rps: float) -> Iterator[SimulatorClient]:
    """A simulator exporting the namespace's Rollout as STABLE_LABEL/CANARY_LABEL.

    The shared one when it knows ``argoRollout`` (it echoes the field back), else a
    private one. Either way the namespace is forgotten on exit.
    """
    shared = cluster.simulator
    echo = shared.register_service(ROLLOUT, namespace, stable=STABLE_LABEL, canary=CANARY_LABEL, rps=rps,
                                   argo_rollout=ROLLOUT)
    if echo.get("argoRollout") == ROLLOUT:
        try:
            yield shared
        finally:
            shared.forget_namespace(namespace)
        return
    shared.forget_namespace(namespace)  # it took the service for a pair of Deployments
    print("  (the shared simulator predates argoRollout: starting a private one)", file=sys.stderr, flush=True)
    with PrivateSimulator(cluster, namespace) as private:
        private.client.register_service(ROLLOUT, namespace, stable=STABLE_LABEL, canary=CANARY_LABEL, rps=rps,
                                        argo_rollout=ROLLOUT)
        try:
            yield private.client
        finally:
            private.client.forget_namespace(namespace)


# ----------------------------------------------------------------------------- manifests


def latency_query(namespace: str, window: str = LATENCY_WINDOW, deployment: str = CANARY_LABEL) -> str:
    """The p95 latency PromQL of our latency condition, in milliseconds."""
    return (f'histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket'
            f'{{namespace="{namespace}",deployment="{deployment}"}}[{window}]))) * 1000')


def first_samples_query(namespace: str, deployment: str = CANARY_LABEL) -> str:
    """The p95 of every request the deployment's pods have counted, in milliseconds: the
    breach's visibility for a canary slow from its first request, true from the first
    scrape of its pods on (``latency_query``'s ``rate()`` needs two scrapes of a series).
    The same end point on both sides of the comparison (bench/bench_reaction.py)."""
    return (f'histogram_quantile(0.95, sum by (le) (model_request_duration_seconds_bucket'
            f'{{namespace="{namespace}",deployment="{deployment}"}})) * 1000')


def analysis_template(namespace: str, prometheus_url: str, window: str, critical_ms: float,
                      interval: str = "5s") -> dict[str, Any]:
    """Background analysis on the same query and bound as our latency condition.

    ``len(result) > 0 &&`` keeps an empty answer (the canary's first seconds, before
    ``rate()`` has two samples) from being an evaluation *error*: after four of those
    (consecutiveErrorLimit) Argo would abort a healthy canary. Our operator likewise
    holds, rather than rolls back, on missing data. NaN compares false, as in ours.
    """
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}", "kind": "AnalysisTemplate",
        "metadata": {"name": f"{ROLLOUT}-latency", "namespace": namespace},
        "spec": {"metrics": [{
            "name": "latency-p95",
            "interval": interval,
            "failureLimit": 0,
            "failureCondition": f"len(result) > 0 && result[0] > {critical_ms}",
            "provider": {"prometheus": {"address": prometheus_url,
                                        "query": latency_query(namespace, window)}},
        }]},
    }


def rollout(namespace: str, replicas: int = REPLICAS, image: str = STABLE_IMAGE) -> dict[str, Any]:
    """A basic canary (no traffic router: the split is by pod count, as the simulator's
    ``replicas`` router models) of tiny pods; kwok fakes them, no GPU needed."""
    small = {"cpu": "10m", "memory": "16Mi"}
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}", "kind": "Rollout",
        "metadata": {"name": ROLLOUT, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": {"app": ROLLOUT}},
            "template": {
                "metadata": {"labels": {"app": ROLLOUT}},
                "spec": {"containers": [{"name": "server", "image": image,
                                         "resources": {"requests": small, "limits": small}}]},
            },
            "strategy": {"canary": {
                "steps": [{"setWeight": CANARY_WEIGHT}, {"pause": {}}],
                "analysis": {"templates": [{"templateName": f"{ROLLOUT}-latency"}]},
            }},
        },
    }


# ----------------------------------------------------------------------------- one trial


@dataclass
class ArgoTrial:
    """One trial's timings (seconds from the breach being visible in Prometheus)."""

    namespace: str
    to_scaled_zero: float  # the canary ReplicaSet's spec.replicas == 0
    to_no_pods: float  # ... and no canary pod left that is not being deleted: "the canary has 0 pods"
    aborted: bool
    message: str
    queries_per_second: float = 0.0  # Argo's measurements (one query each) per second of its AnalysisRun


class _Scene:
    """The cluster reads one trial needs, named for what they mean."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace

    def rollout(self) -> dict[str, Any]:
        return self.cluster.custom.get_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, self.ns, "rollouts",
                                                               ROLLOUT)

    def status(self) -> dict[str, Any]:
        return self.rollout().get("status") or {}

    def ready_pods(self, pod_hash: str) -> int:
        pods = self.cluster.core.list_namespaced_pod(self.ns, label_selector=f"{HASH_LABEL}={pod_hash}",
                                                     _request_timeout=5).items
        return sum(1 for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
                   and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))

    def pods(self, pod_hash: str) -> int:
        """Canary pods that exist and are not being deleted (as our bench counts its own)."""
        pods = self.cluster.core.list_namespaced_pod(self.ns, label_selector=f"{HASH_LABEL}={pod_hash}",
                                                     _request_timeout=5).items
        return sum(1 for p in pods if p.metadata.deletion_timestamp is None)

    def rs_replicas(self, pod_hash: str) -> int:
        rs = self.cluster.apps.read_namespaced_replica_set(f"{ROLLOUT}-{pod_hash}", self.ns, _request_timeout=5)
        return int(rs.spec.replicas or 0)

    def analysis_runs(self) -> list[dict[str, Any]]:
        return self.cluster.custom.list_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, self.ns,
                                                                 "analysisruns")["items"]

    def running_analysis_measured(self) -> bool:
        """A background AnalysisRun is Running and has taken a successful measurement."""
        for run in self.analysis_runs():
            st = run.get("status") or {}
            if st.get("phase") != "Running":
                continue
            for m in st.get("metricResults") or []:
                if any(x.get("phase") == "Successful" for x in m.get("measurements") or []):
                    return True
        return False


def _bring_up_canary(cluster: Cluster, ns: str, window: str, critical_ms: float,
                     replicas: int, timeout: float, interval: str = "5s",
                     degrade_from_start: SimulatorClient | None = None) -> tuple[_Scene, str]:
    """Create the Rollout at v1, update it to v2 and wait until the canary serves 25 %
    with analysis running and a healthy p95 visible. Returns the canary's pod hash.

    ``degrade_from_start``: the canary is slow from its first request (its behaviour is
    set on this simulator before the update) and nothing is waited for after the update
    but the canary's ReplicaSet: the trial times the breach from the step's start."""
    scene = _Scene(cluster, ns)
    cluster.apply(analysis_template(ns, cluster.prometheus_url, window, critical_ms, interval))
    cluster.apply(rollout(ns, replicas=replicas))
    cluster.wait_for(lambda: (lambda st: st.get("phase") == "Healthy" and st.get("availableReplicas") == replicas)(
        scene.status()), timeout=timeout, interval=0.3, message=f"Rollout {ns}/{ROLLOUT} Healthy at v1")
    stable_hash = scene.status()["stableRS"]
    if degrade_from_start is not None:
        degrade_from_start.set_behaviour(ns, CANARY_LABEL, latency_ms=dict(DEGRADED_LATENCY_MS))
    cluster.custom.patch_namespaced_custom_object(
        ARGO_GROUP, ARGO_VERSION, ns, "rollouts", ROLLOUT,
        {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": CANARY_IMAGE}]}}}})

    def canary_hash() -> str | None:
        h = scene.status().get("currentPodHash")
        return h if h and h != stable_hash else None

    chash = cluster.wait_for(canary_hash, timeout=30, interval=0.2, message="canary ReplicaSet")
    if degrade_from_start is not None:
        return scene, chash
    want = replicas * CANARY_WEIGHT // 100
    cluster.wait_for(lambda: scene.ready_pods(chash) == want and scene.status().get("currentStepIndex") == 1,
                     timeout=timeout, interval=0.3, message=f"{want} ready canary pods, paused at 25 %")
    cluster.wait_for(scene.running_analysis_measured, timeout=timeout, interval=0.3,
                     message="background AnalysisRun Running with a successful measurement")
    query = latency_query(ns, window)
    cluster.wait_for(lambda: (lambda v: v is not None and v < critical_ms)(cluster.prom_scalar(query)),
                     timeout=timeout, interval=0.3, message=f"healthy canary p95 visible ({query})")
    return scene, chash


def argo_reaction_detail(cluster: Cluster, namespace_prefix: str = "bench-argo", *, window: str = LATENCY_WINDOW,
                         critical_ms: float = CRITICAL_P95_MS, replicas: int = REPLICAS, rps: float = SERVICE_RPS,
                         argo_dir: Path | None = None, timeout: float = 180.0, interval: str = "5s",
                         at_start: bool = False) -> ArgoTrial:
    """One reaction trial with both end points (see ArgoTrial); cleans up after itself.

    ``interval``: the AnalysisTemplate's measurement interval. ``at_start``: the canary
    is slow from its first request (the breach comes with the step) instead of degraded
    once it has served healthy for a while."""
    argo_dir = argo_dir or ensure_built()
    install_crds(cluster, argo_dir)
    ns = fresh_namespace(cluster, namespace_prefix)
    controller = ArgoController(cluster, ns, argo_dir)
    try:
        with argo_simulator(cluster, ns, rps) as sim, controller:
            scene, chash = _bring_up_canary(cluster, ns, window, critical_ms, replicas, timeout, interval,
                                            degrade_from_start=sim if at_start else None)
            query = first_samples_query(ns) if at_start else latency_query(ns, window)
            if not at_start:
                # _bring_up_canary returns just after a measurement: degrade at a random moment
                # of Argo's measurement cycle, not always at its start (that would favour Argo).
                time.sleep(random.uniform(0.0, _seconds(interval)))
                sim.set_behaviour(ns, CANARY_LABEL, latency_ms=dict(DEGRADED_LATENCY_MS))
            visible = scaled = gone = None
            up = not at_start  # at the step's start the canary has no replicas yet: 0 means "not up"
            deadline = time.monotonic() + timeout
            # Each end point is stamped when its probe returns true, as bench_reaction's
            # poll_until does for ours.
            while time.monotonic() < deadline and (visible is None or scaled is None or gone is None):
                if visible is None:
                    value = cluster.prom_scalar(query)
                    if value is not None and value > critical_ms:
                        visible = time.monotonic()
                replicas_now = scene.rs_replicas(chash)
                up = up or replicas_now > 0
                if up and scaled is None and replicas_now == 0:
                    scaled = time.monotonic()
                if scaled is not None and gone is None and scene.pods(chash) == 0:
                    gone = time.monotonic()
                time.sleep(POLL_S)
            if visible is None or scaled is None or gone is None:
                raise RuntimeError(f"trial in {ns} did not finish in {timeout:.0f}s: visible={visible} "
                                   f"scaled={scaled} gone={gone}\n{controller.log_tail()}")
            st = scene.status()
            return ArgoTrial(ns, scaled - visible, gone - visible, bool(st.get("abort")),
                             str(st.get("message") or ""), measurement_rate(scene.analysis_runs()))
    finally:
        controller.stop()
        _delete_namespace(cluster, ns)


def argo_reaction_trial(cluster: Cluster, namespace_prefix: str = "bench-argo", window: str = LATENCY_WINDOW,
                        critical_ms: float = CRITICAL_P95_MS, **kwargs: Any) -> float:
    """Seconds from the p95 breach being visible in Prometheus to Argo's canary having 0
    pods: its ReplicaSet scaled to 0 and no canary pod left that is not being deleted —
    the end point bench/bench_reaction.py reads on our canary Deployment."""
    return argo_reaction_detail(cluster, namespace_prefix, window=window, critical_ms=critical_ms,
                                **kwargs).to_no_pods


def argo_healthy_check(cluster: Cluster, seconds: float = 60.0, namespace_prefix: str = "bench-argo-ok", *,
                       window: str = LATENCY_WINDOW, critical_ms: float = CRITICAL_P95_MS,
                       replicas: int = REPLICAS, rps: float = SERVICE_RPS, argo_dir: Path | None = None,
                       timeout: float = 180.0) -> dict[str, Any]:
    """False-rollback check: a healthy canary at 25 % must not be aborted within `seconds`.

    Returns ``{"aborted": bool, "measurements": n, "failed": n, "seconds": s}``; the
    simulator's noise at 5 canary pods is what could trip a ``failureLimit: 0``.
    """
    argo_dir = argo_dir or ensure_built()
    install_crds(cluster, argo_dir)
    ns = fresh_namespace(cluster, namespace_prefix)
    controller = ArgoController(cluster, ns, argo_dir)
    try:
        with argo_simulator(cluster, ns, rps), controller:
            scene, chash = _bring_up_canary(cluster, ns, window, critical_ms, replicas, timeout)
            start = time.monotonic()
            aborted = False
            while time.monotonic() - start < seconds:
                st = scene.status()
                if st.get("abort") or scene.rs_replicas(chash) == 0:
                    aborted = True
                    break
                time.sleep(1.0)
            measurements = failed = 0
            for run in scene.analysis_runs():
                for m in (run.get("status") or {}).get("metricResults") or []:
                    measurements += int(m.get("count") or 0)
                    failed += int(m.get("failed") or 0)
            return {"aborted": aborted, "measurements": measurements, "failed": failed,
                    "seconds": round(time.monotonic() - start, 1), "namespace": ns}
    finally:
        controller.stop()
        _delete_namespace(cluster, ns)


def _seconds(duration: str) -> float:
    """An Argo duration such as ``1s``, ``500ms`` or ``2m`` in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(f"not a duration: {duration!r}")


def measurement_rate(runs: list[dict[str, Any]]) -> float:
    """Measurements (one Prometheus query each) per second over the AnalysisRuns' lives,
    from their own status: each run's start to its last measurement's end (Argo keeps
    only the latest measurements, but counts them all)."""
    count, seconds = 0, 0.0
    for run in runs:
        st = run.get("status") or {}
        ends = [_epoch(x["finishedAt"]) for m in st.get("metricResults") or []
                for x in m.get("measurements") or [] if x.get("finishedAt")]
        if not st.get("startedAt") or not ends:
            continue
        count += sum(int(m.get("count") or 0) + int(m.get("error") or 0) for m in st.get("metricResults") or [])
        seconds += max(ends) - _epoch(st["startedAt"])
    return count / seconds if seconds > 0 else 0.0


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _delete_namespace(cluster: Cluster, ns: str) -> None:
    """Delete the trial's namespace (only ever one this module created)."""
    try:
        cluster.core.delete_namespace(ns)
    except ApiException as e:
        if e.status != 404:
            raise


# ----------------------------------------------------------------------------- main


def _summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.2f} s, min {min(values):.2f} s, max {max(values):.2f} s"
            if values else "no trials")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--window", default=LATENCY_WINDOW, help="rate() window of the p95 query")
    parser.add_argument("--critical-ms", type=float, default=CRITICAL_P95_MS)
    parser.add_argument("--healthy-check", type=float, default=0.0, metavar="SECONDS",
                        help="also run a healthy canary this long and report whether Argo aborted it")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    argo_dir = ensure_built()
    print(f"Argo Rollouts controller: {argo_dir} (ready in {time.monotonic() - t0:.0f} s)", flush=True)
    cluster = Cluster.from_state()
    trials: list[ArgoTrial] = []
    for i in range(args.trials):
        trial = argo_reaction_detail(cluster, window=args.window, critical_ms=args.critical_ms, argo_dir=argo_dir)
        trials.append(trial)
        print(f"  argo trial {i + 1}: visible → canary 0 pods: {trial.to_no_pods:.2f} s "
              f"(ReplicaSet scaled to 0 at {trial.to_scaled_zero:.2f} s; aborted: {trial.aborted}; {trial.message})",
              flush=True)
    scaled = [t.to_scaled_zero for t in trials]
    gone = [t.to_no_pods for t in trials]
    print(f"Argo Rollouts v1.10.1, {len(trials)} trials, window {args.window}:")
    print(f"  breach visible → canary 0 pods:             {_summary(gone)}")
    print(f"  breach visible → canary ReplicaSet at 0:    {_summary(scaled)}")
    healthy: dict[str, Any] | None = None
    if args.healthy_check > 0:
        healthy = argo_healthy_check(cluster, args.healthy_check, window=args.window,
                                     critical_ms=args.critical_ms, argo_dir=argo_dir)
        print(f"healthy canary for {healthy['seconds']} s: aborted={healthy['aborted']} "
              f"({healthy['measurements']} measurements, {healthy['failed']} failed)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trials": [t.__dict__ for t in trials], "healthy": healthy}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
