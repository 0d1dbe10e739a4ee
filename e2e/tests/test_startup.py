"""The operator never waits silently at start-up (operator/modelrollout/startup/).

Each case runs ``python -m modelrollout run`` *without* ``--standalone`` as a real
process and measures, from the moment it is started, when its log says what it decided
and when a rollout gets a status:

(a) the peering object is missing and the operator may create it: it creates it, and a
    rollout gets a status within 30 s (shared cluster, one namespace);
(b) the peering CRD is not installed at all: it runs standalone and says why within 10 s,
    and serves rollouts;
(c) it may not create the peering object: within 10 s its log and its health endpoint
    say what it waits for and the command that ends the wait; the log repeats it; the
    command, run as printed, ends it and the rollout gets a status;
(d) it is started in the same second as its CRDs — right after they are created, while it
    runs its checks, and the moment ``helm install`` of the chart returns (as the chart's
    ServiceAccount) — and serves a rollout within 30 s. The last one meets the apiserver's
    429 "storage is (re)initializing" on kopf's first list of the brand-new CRD, which kopf
    retries by itself (the test prints what it saw).

(b) and (d) need a cluster without the peering CRDs, or with CRDs created with the
operator. The shared cluster has them, and other tests use them at the same time, so
those cases get a cluster of their own: a second kube-apiserver on the shared etcd
under its own key prefix (``PrivateApiserver``) — a real apiserver with no CRDs at all,
and no controller-manager (nothing needs pods here: any status the operator writes is
the proof it serves the rollout). (c) runs as a ServiceAccount whose RBAC allows
everything the operator does except creating peering objects.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.harness.cluster import REPO, Cluster, read_ports
from e2e.harness.manifests import GROUP, PLURAL, VERSION, gpu_deployment, rollout_manifest
from e2e.harness.operator_process import delete_rollouts, free_port
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds  # noqa: F401 — fixture

pytestmark = pytest.mark.e2e

SAY_WITHIN_S = 10.0       # the log (and the health endpoint) must say it within this from the start
STATUS_WITHIN_S = 30.0    # a rollout applied after the start gets a status within this
REPEAT_WITHIN_S = 45.0    # the repeat is due 30 s after the first line; leave room for a loaded machine


# ----------------------------------------------------------------------------- the operator


class Operator:
    """``modelrollout run`` as a process: peering on, a liveness endpoint, its log in a file,
    and the time since it was started."""

    def __init__(self, cluster: Cluster, log_name: str, *extra: str, kubeconfig: str | None = None) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.extra = list(extra)
        self.health_port = free_port()
        self.log_path = cluster.state / "logs" / f"startup-{log_name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0
        self._offset = 0

    def start(self) -> "Operator":
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, PYTHONUNBUFFERED="1")
        args = [sys.executable, "-m", "modelrollout", "run", "--prometheus-url", self.cluster.prometheus_url,
                "--metrics-port", str(free_port()), "--metrics-addr", "127.0.0.1",
                "--liveness", f"http://127.0.0.1:{self.health_port}/healthz", "--log-level", "INFO", *self.extra]
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')} {' '.join(args[2:])} =====\n".encode())
            self._offset = log.tell()
        self.t0 = time.monotonic()
        with self.log_path.open("ab") as out:   # the child keeps its own descriptor
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        return self

    def since_start(self) -> float:
        return time.monotonic() - self.t0

    def log(self) -> str:
        """This run's log only (the file is appended to across runs)."""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern: str, timeout: float, count: int = 1) -> tuple[float, list[str]]:
        """Seconds from the start until ``count`` log lines match ``pattern``, and the lines."""
        deadline = self.t0 + timeout
        while True:
            lines = [line for line in self.log().splitlines() if re.search(pattern, line)]
            if len(lines) >= count:
                return self.since_start(), lines
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the operator exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                                     f"{self.tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"{count} line(s) matching {pattern!r} not logged within {timeout:.0f}s of the "
                                     f"start (found {len(lines)}):\n{self.tail()}")
            time.sleep(0.1)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as resp:
            assert resp.status == 200
            return json.loads(resp.read())

    def wait_health(self, predicate: Any, timeout: float, message: str) -> tuple[float, dict[str, Any]]:
        """Seconds from the start until the health endpoint's JSON satisfies ``predicate``."""
        body = self.cluster.wait_for(lambda: (lambda h: h if predicate(h) else None)(self.health()),
                                     timeout=max(0.0, self.t0 + timeout - time.monotonic()), interval=0.2,
                                     message=message)
        return self.since_start(), body

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@contextlib.contextmanager
def running(op: Operator, namespaces: tuple[str, ...] = ()) -> Iterator[Operator]:
    """Whatever happens, the operator stopped (its rollouts released first) and its log
    printed when the test fails."""
    try:
        yield op
    except BaseException:
        print(f"\n----- operator log ({op.log_path}) -----\n{op.tail()}", file=sys.stderr)
        raise
    finally:
        for ns in namespaces:
            delete_rollouts(op.cluster, ns)
        op.stop()


def wait_any_status(cluster: Cluster, namespace: str, name: str, op: Operator, timeout: float) -> dict[str, Any]:
    """The rollout's status once the operator has written one (any phase: it served it)."""
    def status() -> dict[str, Any] | None:
        body = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return (body.get("status") or {}).get("phase") and body["status"]
    return cluster.wait_for(status, timeout=timeout, interval=0.2, message=f"a status on {namespace}/{name}")


def peering_exists(cluster: Cluster, namespace: str | None, name: str = "modelrollout") -> dict[str, Any] | None:
    custom = cluster.custom
    try:
        if namespace:
            return custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", name)
        return custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


# ----------------------------------------------------------------------------- a cluster of its own


class PrivateApiserver:
    """A second kube-apiserver on the shared etcd under a key prefix of its own.

    Why: the cases "the peering CRD is not installed" and "CRDs created in the same
    second as the operator starts" need CRDs that are absent or brand new, and the shared
    cluster's CRDs are in use by every other test. Same binary, certificates and flags
    as e2e/cluster.sh's apiserver, so the operator meets a real apiserver; compaction off,
    so it never compacts the shared etcd under the main apiserver. Its keys are deleted
    afterwards.
    """

    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        self.main = cluster
        self.port = free_port()
        self.prefix = f"/e2e-startup-{uuid.uuid4().hex[:8]}"
        self.etcd_port = read_ports(cluster.state)["ETCD_PORT"]
        self.log_path = cluster.state / "logs" / f"startup-apiserver-{self.prefix.rsplit('-', 1)[1]}.log"
        self.kubeconfig = workdir / "private.kubeconfig"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> Cluster:
        pki = self.main.state / "pki"
        binary = Path(self.main.kubectl_bin).parent / "kube-apiserver"
        args = [
            str(binary), "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}", "--etcd-prefix", self.prefix,
            "--etcd-compaction-interval", "0",
            "--bind-address", "127.0.0.1", "--secure-port", str(self.port),
            "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
            "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
            "--client-ca-file", str(pki / "ca.crt"),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(pki / "sa.pub"),
            "--service-account-signing-key-file", str(pki / "sa.key"),
            "--api-audiences", "https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range", "10.96.0.0/16", "--authorization-mode", "RBAC",
            "--allow-privileged=true", "--profiling=false",
        ]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "private", "cluster": {"server": f"https://127.0.0.1:{self.port}",
                                                         "certificate-authority": str(pki / "ca.crt")}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(pki / "admin.crt"),
                                                 "client-key": str(pki / "admin.key")}}],
            "contexts": [{"name": "private", "context": {"cluster": "private", "user": "admin"}}],
            "current-context": "private",
        }))
        self.kubeconfig.chmod(0o600)
        kubectl = [self.main.kubectl_bin, "--kubeconfig", str(self.kubeconfig)]

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, \
                f"the private kube-apiserver exited; log {self.log_path}"
            return subprocess.run([*kubectl, "get", "--raw", "/readyz"], capture_output=True, text=True,
                                  timeout=10).stdout.strip() == "ok"
        self.main.wait_for(ready, timeout=timeout, interval=0.5, message=f"the private kube-apiserver ({self.log_path})")
        private = Cluster(state=self.main.state, kubeconfig=str(self.kubeconfig),
                          prometheus_url=self.main.prometheus_url, simulator_url=self.main.simulator_url)
        private.wait_for(lambda: private.core.read_namespace("default"), timeout=30, message="namespace default")
        return private

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Every key it wrote: [prefix/, prefix0) — '0' follows '/'.
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        request = urllib.request.Request(f"http://127.0.0.1:{self.etcd_port}/v3/kv/deleterange", method="POST",
                                         data=json.dumps({"key": b64(self.prefix + "/"),
                                                          "range_end": b64(self.prefix + "0")}).encode())
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=10).read()


@pytest.fixture
def private(crds: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    server = PrivateApiserver(crds, tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


def apply_files(cluster: Cluster, *paths: str) -> None:
    args = ["apply", "--server-side", "--force-conflicts"]
    for path in paths:
        args += ["-f", str(REPO / path)]
    cluster.kubectl(*args)


def crd_established(cluster: Cluster, name: str) -> bool:
    out = cluster.kubectl("get", "crd", name, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}")
    return out.strip() == "True"


def stable_and_rollout(cluster: Cluster, namespace: str, name: str = "fraud") -> None:
    cluster.apply(gpu_deployment(name, namespace, replicas=2))
    cluster.apply(rollout_manifest(name, namespace, stable=name, canary=f"{name}-canary"))


# ----------------------------------------------------------------------------- (a) created when allowed


def test_a_missing_peering_object_is_created_and_a_rollout_gets_a_status(crds: Cluster, namespace: str) -> None:
    s = RolloutScenario(crds, namespace)
    assert peering_exists(crds, namespace) is None, "a fresh namespace has no KopfPeering"
    op = Operator(crds, namespace, "--namespace", namespace)
    with running(op.start(), (namespace,)):
        said, _ = op.wait_log(rf"INFO modelrollout\.startup: created KopfPeering {namespace}/modelrollout",
                              SAY_WITHIN_S)
        assert peering_exists(crds, namespace) is not None
        s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary))
        applied = op.since_start()
        status = wait_any_status(crds, namespace, s.name, op, STATUS_WITHIN_S)
        first_status = op.since_start()
        # kopf peers through it: its keep-alive put this operator in the object's status.
        peers = crds.wait_for(lambda: (peering_exists(crds, namespace) or {}).get("status"), timeout=10,
                              message="a peer in the KopfPeering")
        _, health = op.wait_health(lambda h: h.get("peering", "").startswith("ok:"), SAY_WITHIN_S + 20,
                                   "peering ok on /healthz")
    assert len(peers) == 1
    assert health["peering"] == f"ok: peering through KopfPeering {namespace}/modelrollout (created)"
    assert health["crd"] == "ok: modelrollouts.modelrollout.io is Established"
    print(f"\n[startup a] created the KopfPeering {said:.1f}s after start; rollout applied at {applied:.1f}s, "
          f"status ({status['phase']}) at {first_status:.1f}s ({first_status - applied:.1f}s after apply)")


# ----------------------------------------------------------------------------- (b) no peering CRD


def test_without_the_peering_crd_it_runs_standalone_says_why_and_serves_rollouts(private: Cluster) -> None:
    apply_files(private, "crds/modelrollout.io_modelrollouts.yaml")
    private.wait_for(lambda: crd_established(private, "modelrollouts.modelrollout.io"), timeout=30,
                     message="ModelRollout CRD Established")
    names = private.kubectl("get", "crd", "-o", "name")
    assert "kopf.dev" not in names, f"this cluster must have no peering CRD: {names}"
    op = Operator(private, "no-peering-crd")  # cluster-wide: it would need a ClusterKopfPeering
    with running(op.start(), ("default",)):
        said, [warning] = op.wait_log(r"WARNING modelrollout\.startup: the peering CRD", SAY_WITHIN_S)
        stable_and_rollout(private, "default")
        applied = op.since_start()
        status = wait_any_status(private, "default", "fraud", op, STATUS_WITHIN_S)
        first_status = op.since_start()
        _, health = op.wait_health(lambda h: "peering" in h, STATUS_WITHIN_S, "/healthz")
        log = op.log()
    assert "clusterkopfpeerings.kopf.dev is not installed" in warning and "running standalone" in warning
    assert "kubectl apply --server-side -f crds/kopf-peering.yaml" in warning
    assert "charts/modelrollout/crds/kopf-peering.yaml" in warning
    assert health["peering"].startswith("standalone: the peering CRD clusterkopfpeerings.kopf.dev is not installed")
    assert "CRDs not ready" not in log, "only the peering CRD is missing: a decision, nothing to wait for"
    print(f"\n[startup b] standalone warning {said:.1f}s after start; rollout applied at {applied:.1f}s, "
          f"status ({status['phase']}) at {first_status:.1f}s ({first_status - applied:.1f}s after apply)")


# ----------------------------------------------------------------------------- (c) not allowed to create


@contextlib.contextmanager
def limited_identity(cluster: Cluster, namespace: str, workdir: Path) -> Iterator[str]:
    """A kubeconfig for a ServiceAccount allowed everything the operator does in ``namespace``
    — and to read and patch peering objects, as kopf does — but not to create them. Its
    cluster-scoped grants (CRDs, namespaces: kopf's scans) are deleted afterwards."""
    sa = "startup-limited"
    cluster_name = f"{namespace}-startup"
    everything = ["get", "list", "watch", "create", "update", "patch", "delete"]
    cluster.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": sa, "namespace": namespace},
         "rules": [{"apiGroups": ["", "apps", "modelrollout.io", "gateway.networking.k8s.io"], "resources": ["*"],
                    "verbs": everything},
                   {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"],
                    "verbs": ["get", "list", "watch", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": sa, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": cluster_name},
         "rules": [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": cluster_name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]},
    ])
    try:
        yield _token_kubeconfig(cluster, namespace, sa, workdir)
    finally:
        cluster.delete("clusterrolebinding", cluster_name)
        cluster.delete("clusterrole", cluster_name)


def _token_kubeconfig(cluster: Cluster, namespace: str, sa: str, workdir: Path) -> str:
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    kubeconfig = workdir / "limited.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {k: v for k, v in admin.items()
                                                 if k in ("server", "certificate-authority")}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "e2e", "user": sa, "namespace": namespace}}],
        "current-context": sa,
    }))
    kubeconfig.chmod(0o600)
    can_create = subprocess.run([cluster.kubectl_bin, "--kubeconfig", str(kubeconfig), "auth", "can-i", "create",
                                 "kopfpeerings.kopf.dev", "-n", namespace], capture_output=True, text=True, timeout=30)
    assert can_create.stdout.strip() == "no", can_create
    return str(kubeconfig)


def test_not_allowed_to_create_it_says_what_it_waits_for_and_resumes_when_it_appears(
        crds: Cluster, namespace: str, tmp_path: Path) -> None:
    s = RolloutScenario(crds, namespace)
    waiting = rf"WARNING modelrollout\.startup: waiting for KopfPeering {namespace}/modelrollout: "
    with limited_identity(crds, namespace, tmp_path) as kubeconfig:
        op = Operator(crds, f"{namespace}-limited", "--namespace", namespace, kubeconfig=kubeconfig)
        with running(op.start(), (namespace,)):
            said, [line] = op.wait_log(waiting, SAY_WITHIN_S)
            on_health, health = op.wait_health(lambda h: "peering" in h, SAY_WITHIN_S, "/healthz answers")
            s.apply(rollout_manifest(s.name, namespace, stable=s.stable, canary=s.canary))
            # Held, as the message says, and said again while it is.
            repeated, lines = op.wait_log(waiting, REPEAT_WITHIN_S, count=2)
            assert not s.status(), f"kopf should hold the rollout while it waits: {s.status()}"
            assert peering_exists(crds, namespace) is None
            # The fix, exactly as printed, run by someone allowed to (the admin).
            command = line.split("Create it: ", 1)[1].split(" — or ", 1)[0]
            bindir = str(Path(crds.kubectl_bin).parent)
            fixed = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                                   env=dict(os.environ, KUBECONFIG=crds.kubeconfig,
                                            PATH=f"{bindir}:{os.environ['PATH']}"))
            assert fixed.returncode == 0, fixed.stderr
            fixed_at = op.since_start()
            resumed, _ = op.wait_log(rf"INFO modelrollout\.startup: KopfPeering {namespace}/modelrollout exists now",
                                     fixed_at + 10)
            status = wait_any_status(crds, namespace, s.name, op, STATUS_WITHIN_S)
            first_status = op.since_start()
            _, healed = op.wait_health(lambda h: h.get("peering", "").startswith("ok:"), first_status + 20,
                                       "peering ok on /healthz")
            forbidden = [x for x in op.log().splitlines() if "403" in x and "modelrollout.startup" not in x]
    assert "it does not exist and this operator may not create it (403: " in line
    assert "kopf holds every rollout until it exists" in line
    assert f"grant the operator's identity create on kopfpeerings.kopf.dev in namespace {namespace}" in line
    assert health["peering"] == line.split("WARNING modelrollout.startup: ", 1)[1]
    assert lines[1].split(": ", 1)[1] == lines[0].split(": ", 1)[1]
    assert healed["peering"] == f"ok: peering through KopfPeering {namespace}/modelrollout"
    assert not forbidden, f"refused calls other than the peering create:\n{forbidden[:10]}"
    print(f"\n[startup c] waiting line {said:.1f}s after start, on /healthz at {on_health:.1f}s, repeated at "
          f"{repeated:.1f}s; object created at {fixed_at:.1f}s, 'exists now' at {resumed:.1f}s, "
          f"status ({status['phase']}) at {first_status:.1f}s ({first_status - fixed_at:.1f}s after the fix)")


# ----------------------------------------------------------------------------- (d) with its CRDs


@pytest.mark.parametrize("order", ["crds-then-operator", "crds-during-its-checks"])
def test_started_in_the_same_second_as_its_crds_it_serves_a_rollout(private: Cluster, order: str) -> None:
    """``crds-then-operator``: helm's order — CRDs created (not yet Established), the operator
    started at once. ``crds-during-its-checks``: the operator is started first and the CRDs
    are created the moment its log says it found them missing — they appear while it decides."""
    assert "modelrollout.io" not in private.kubectl("get", "crd", "-o", "name")
    op = Operator(private, f"with-crds-{order}")
    files = ("crds/modelrollout.io_modelrollouts.yaml", "crds/kopf-peering.yaml")
    with running(op, ("default",)):
        if order == "crds-then-operator":
            apply_files(private, *files)   # returns once created, before Established
            crds_applied = time.monotonic()
            op.start()
        else:
            op.start()
            noticed, _ = op.wait_log(r"INFO modelrollout\.startup: CRDs not ready: modelrollouts\.modelrollout\.io "
                                     r"absent, clusterkopfpeerings\.kopf\.dev absent", SAY_WITHIN_S)
            apply_files(private, *files)
            crds_applied = time.monotonic()
        gap = crds_applied - op.t0
        private.wait_for(lambda: crd_established(private, "modelrollouts.modelrollout.io"), timeout=30,
                         message="ModelRollout CRD Established")
        stable_and_rollout(private, "default")
        applied = op.since_start()
        status = wait_any_status(private, "default", "fraud", op, max(1.0, STATUS_WITHIN_S - applied))
        first_status = op.since_start()
        peering = private.wait_for(lambda: (peering_exists(private, None) or {}).get("status"), timeout=10,
                                   message="this operator in the ClusterKopfPeering")
        log = op.log()
    assert first_status <= STATUS_WITHIN_S
    assert len(peering) == 1
    assert "created ClusterKopfPeering modelrollout" in log
    assert "running standalone" not in log, "the peering CRD was being installed, not absent"
    assert not re.search(r"has failed|Traceback", log), log
    too_many = [x for x in log.splitlines() if " 429" in x or "TooManyRequests" in x]
    print(f"\n[startup d {order}] CRDs applied {gap:+.1f}s from the operator's start; rollout applied at "
          f"{applied:.1f}s, status ({status['phase']}) at {first_status:.1f}s; 429s in the log: {len(too_many)}"
          + "".join(f"\n    {x[:300]}" for x in too_many[:3]))


def test_helm_install_then_the_operator_at_once_with_the_charts_service_account(private: Cluster,
                                                                                tmp_path: Path) -> None:
    """``helm install`` itself — CRDs from the chart's crds/, its RBAC, its ClusterKopfPeering —
    and the operator started the moment helm returns, as the chart's ServiceAccount: the
    start-up checks fit the chart's RBAC (list, never get), find the chart's peering object,
    and the rollout is served."""
    helm = sorted(Path.home().glob(".cache/modelrollout/bin/helm-*/helm"))
    assert helm, "helm is built by e2e/build.sh (part helm) before e2e tests are collected"
    private.kubectl("create", "namespace", "modelrollout-system")
    t0 = time.monotonic()
    installed = subprocess.run([str(helm[-1]), "--kubeconfig", private.kubeconfig, "install", "mro",
                                str(REPO / "charts" / "modelrollout"), "-n", "modelrollout-system",
                                "--set", "replicas=0"], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    token = private.kubectl("create", "token", "mro-modelrollout", "-n", "modelrollout-system",
                            "--duration=1h").strip()
    admin = yaml.safe_load(Path(private.kubeconfig).read_text())["clusters"][0]["cluster"]
    kubeconfig = tmp_path / "chart-sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "private", "cluster": admin}],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context": {"cluster": "private", "user": "chart-sa"}}],
        "current-context": "chart-sa",
    }))
    kubeconfig.chmod(0o600)
    op = Operator(private, "helm-install", kubeconfig=str(kubeconfig)).start()
    helm_took = op.t0 - t0
    with running(op, ("default",)):
        said, _ = op.wait_log(r"INFO modelrollout\.startup: peering through ClusterKopfPeering modelrollout \(found\)",
                              SAY_WITHIN_S)
        stable_and_rollout(private, "default")
        applied = op.since_start()
        status = wait_any_status(private, "default", "fraud", op, max(1.0, STATUS_WITHIN_S - applied))
        first_status = op.since_start()
        log = op.log()
    assert first_status <= STATUS_WITHIN_S
    refused = [x for x in log.splitlines() if re.search(r"forbidden|403", x, re.IGNORECASE)]
    assert not refused, "the chart's RBAC refused a call:\n" + "\n".join(refused[:10])
    assert not re.search(r"has failed|Traceback|WARNING modelrollout\.startup", log), log
    too_many = [x for x in log.splitlines() if " 429" in x or "TooManyRequests" in x]
    print(f"\n[startup d helm-install] helm install took {helm_took:.1f}s; operator found the chart's "
          f"ClusterKopfPeering {said:.1f}s after its start; rollout applied at {applied:.1f}s, status "
          f"({status['phase']}) at {first_status:.1f}s; 429s in the log: {len(too_many)}"
          + "".join(f"\n    {x[:300]}" for x in too_many[:3]))
