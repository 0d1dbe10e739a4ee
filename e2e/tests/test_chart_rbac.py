"""The Helm chart's RBAC, proven on the live cluster rather than assumed.

The chart is helm-installed into the local cluster (unique release and namespace; the
in-cluster Deployment at 0 replicas). A token is minted for the chart's ServiceAccount
(TokenRequest, ``kubectl create token``) and written into a kubeconfig with the cluster's
server and CA and no other credential. Then:

- the operator runs out of cluster **as that ServiceAccount** (kopf peering on, through
  the chart's KopfPeering) and passes a healthy promotion and a latency rollback, and its
  log has no 403 — everything it tried, it was allowed;
- ``kubectl auth can-i --list`` as the ServiceAccount equals the rules below exactly, and a
  ``kubectl auth can-i`` matrix (every verb on every granted resource, plus Secrets,
  ConfigMaps, pod exec, RBAC objects, namespaces, other namespaces…) shows what is
  allowed and what is denied, in namespaced mode and in cluster-wide mode.

The expected rules are written here independently of the chart (tests/unit/test_chart.py
checks the rendered templates against the same list): each one is a call the operator makes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from e2e.harness.cluster import REPO, Cluster, built_path
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess, delete_rollouts
from e2e.harness.scenario import RolloutScenario
from e2e.harness.simulator_client import SimulatorError

from .operator_support import crds  # noqa: F401 — fixture

pytestmark = pytest.mark.e2e

CHART = REPO / "charts" / "modelrollout"
# Built before collection by the root conftest (e2e/build.sh helm), like every tool a test needs.
HELM = built_path("HELM")
GPU = "nvidia.com/gpu"

# What the operator calls, as `kubectl auth can-i --list` names it -> the verbs.
WORKLOAD = {
    "modelrollouts.modelrollout.io": {"get", "list", "watch", "patch"},   # controller GET; kopf list/watch/patch
    "modelrollouts.modelrollout.io/status": {"patch"},                    # status merge patch
    "deployments.apps": {"get", "create", "update", "patch"},             # canary create, template PUT, weight
    "deployments.apps/scale": {"patch"},                                  # replica counts
    "replicasets.apps": {"list"},                                         # canary health
    "pods": {"list", "watch"},                                            # canary health; kopf's canary pod watch
    "events": {"create"},                                                 # Events on rollouts
    "services": {"get"},                                                  # the stable's Service (shadow step)
    "httproutes.gateway.networking.k8s.io": {"get", "update"},            # gatewayAPI router
}
PEERING_VERBS = {"list", "watch", "patch"}
NAMESPACED_PEERING = {"kopfpeerings.kopf.dev": PEERING_VERBS}
CLUSTER_PEERING = {"clusterkopfpeerings.kopf.dev": PEERING_VERBS}
CRDS = {"customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"}}  # kopf's resource scan
NAMESPACES = {"namespaces": {"list", "watch"}}  # kopf, when it watches named namespaces (--namespace)

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")

# Never granted, in any namespace: secrets, config, pod access, workloads the operator
# does not manage, identities, RBAC objects, leases.
DENIED_NAMESPACED = [
    ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
    ("get", "configmaps"), ("list", "configmaps"), ("create", "configmaps"), ("update", "configmaps"),
    ("patch", "configmaps"), ("delete", "configmaps"),
    ("create", "pods"), ("delete", "pods"), ("update", "pods"), ("create", "pods/exec"), ("get", "pods/log"),
    ("create", "pods/eviction"), ("create", "serviceaccounts"), ("create", "serviceaccounts/token"),
    ("create", "services"), ("update", "services"), ("create", "statefulsets.apps"), ("create", "jobs.batch"),
    ("update", "ingresses.networking.k8s.io"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("bind", "roles.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"), ("create", "leases.coordination.k8s.io"),
    ("create", "httproutes.gateway.networking.k8s.io"), ("delete", "httproutes.gateway.networking.k8s.io"),
    ("create", "modelrollouts.modelrollout.io"), ("delete", "modelrollouts.modelrollout.io"),
    ("create", "events.events.k8s.io"),
]
# Cluster-scoped: nothing but reading CRDs (and its own ClusterKopfPeering cluster-wide).
DENIED_CLUSTER = [
    ("get", "namespaces"), ("create", "namespaces"), ("delete", "namespaces"), ("update", "namespaces"),
    ("create", "clusterroles.rbac.authorization.k8s.io"), ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("get", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "nodes"), ("patch", "nodes"), ("list", "persistentvolumes"),
    ("impersonate", "serviceaccounts"), ("impersonate", "users"), ("impersonate", "groups"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "clusterkopfpeerings.kopf.dev"), ("delete", "clusterkopfpeerings.kopf.dev"),
]


# ------------------------------------------------------------------------ helm and tokens


def helm(cluster: Cluster, *args: str, timeout: float = 120.0) -> str:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"helm is not built at {HELM}: the session builds it before collecting (e2e/build.sh helm); "
                    "see the build output above", pytrace=False)
    proc = subprocess.run([HELM, "--kubeconfig", cluster.kubeconfig, *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def token_kubeconfig(admin_kubeconfig: str, token: str, namespace: str) -> str:
    """A kubeconfig holding ``token`` only: the admin kubeconfig's server and CA, none of its credentials."""
    cluster = yaml.safe_load(Path(admin_kubeconfig).read_text())["clusters"][0]["cluster"]
    keep = ("server", "certificate-authority", "certificate-authority-data")
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {k: v for k, v in cluster.items() if k in keep}}],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context": {"cluster": "e2e", "user": "chart-sa", "namespace": namespace}}],
        "current-context": "chart-sa",
    })


def create_namespace(cluster: Cluster, name: str) -> None:
    cluster.core.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={"modelrollout.io/e2e": "true"})))
    cluster.wait_for(lambda: cluster.core.read_namespaced_service_account("default", name),
                     timeout=30, message=f"default ServiceAccount in {name}")


def delete_namespace(cluster: Cluster, name: str) -> None:
    with contextlib.suppress(SimulatorError, OSError):  # cleanup: the simulator may be gone
        cluster.simulator.forget_namespace(name)
    with contextlib.suppress(ApiException):
        cluster.core.delete_namespace(name)


@dataclass
class Release:
    """One installed release of the chart, and kubectl as its ServiceAccount."""

    cluster: Cluster
    name: str
    namespace: str
    service_account: str
    kubeconfig: str

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The cluster's kubectl with the token kubeconfig (the exit code is the caller's)."""
        return subprocess.run([self.cluster.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, timeout=30)

    def can_i(self, verb: str, resource: str, namespace: str | None) -> bool:
        """``kubectl auth can-i`` as the ServiceAccount; ``namespace=None``: at cluster scope."""
        args = ["auth", "can-i", verb]
        kind, _, sub = resource.partition("/")
        args += [kind, f"--subresource={sub}"] if sub else [kind]
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        proc = self.kubectl(*args)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout!r} {proc.stderr!r}"
        return answer == "yes"

    def review(self, verb: str, resource: str, namespace: str | None) -> bool:
        """The question ``kubectl auth can-i`` asks (a SelfSubjectAccessReview with the
        ServiceAccount's token), without a kubectl process per answer: for the big matrices."""
        kind, _, sub = resource.partition("/")
        plural, _, group = kind.partition(".")
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=plural, group=group, subresource=sub or None, namespace=namespace or "")))
        return bool(client.AuthorizationV1Api(self.api).create_self_subject_access_review(review).status.allowed)

    @functools.cached_property
    def api(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=self.kubeconfig)

    def allowed(self, namespace: str) -> dict[str, set[str]]:
        """``kubectl auth can-i --list -n NAMESPACE`` as the ServiceAccount: resource -> verbs.

        The self-review APIs every authenticated user has (system:basic-user) and the
        non-resource URLs (discovery, health) are left out.
        """
        proc = self.kubectl("auth", "can-i", "--list", "--no-headers", "-n", namespace)
        assert proc.returncode == 0, proc.stderr
        rules: dict[str, set[str]] = {}
        for line in proc.stdout.splitlines():
            if not line.strip() or line[0].isspace():
                continue  # a non-resource URL row
            resource = line.split()[0]
            if resource.startswith("selfsubject"):
                continue
            verbs = re.search(r"\[([^\]]*)\]\s*$", line)
            assert verbs, line
            rules.setdefault(resource, set()).update(verbs.group(1).split())
        return rules


@contextlib.contextmanager
def installed_chart(cluster: Cluster, workdir: Path, *values: str) -> Iterator[Release]:
    """helm install the chart (``values``: extra helm arguments) and mint a token; uninstalled afterwards."""
    suffix = uuid.uuid4().hex[:6]
    name, namespace = f"mro-{suffix}", f"e2e-chart-{suffix}"
    create_namespace(cluster, namespace)
    try:
        # replicas=0: the operator under test runs out of cluster; no image to pull, no pods to fake.
        helm(cluster, "install", name, str(CHART), "--namespace", namespace, "--set", "replicas=0", *values)
        service_account = f"{name}-modelrollout"
        token = cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").strip()
        kubeconfig = workdir / f"{name}.kubeconfig"
        kubeconfig.write_text(token_kubeconfig(cluster.kubeconfig, token, namespace))
        kubeconfig.chmod(0o600)
        yield Release(cluster, name, namespace, service_account, str(kubeconfig))
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            helm(cluster, "uninstall", name, "--namespace", namespace, "--wait", "--timeout", "60s")
        delete_namespace(cluster, namespace)


def union(*grants: dict[str, set[str]]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for g in grants:
        for resource, verbs in g.items():
            merged.setdefault(resource, set()).update(verbs)
    return merged


def verb_matrix(grants: dict[str, set[str]], namespace: str | None) -> dict[tuple[str, str, str | None], bool]:
    """Every verb on every resource of ``grants``: allowed exactly when granted."""
    return {(verb, resource, namespace): verb in verbs for resource, verbs in grants.items() for verb in VERBS}


def assert_matrix(release: Release, expected: dict[tuple[str, str, str | None], bool], *,
                  kubectl: bool = False) -> None:
    """Every answer as expected; ``kubectl``: ask with ``kubectl auth can-i`` itself (a process
    per question, so for the headline checks), else with the same SelfSubjectAccessReview."""
    ask = release.can_i if kubectl else release.review
    got = {check: ask(*check) for check in expected}
    wrong = [f"{'ALLOWED' if got[k] else 'DENIED'}: can-i {k[0]} {k[1]} in {k[2] or 'all namespaces'}"
             for k in expected if got[k] != expected[k]]
    assert not wrong, "\n".join(wrong)


def headline(watched: str, other: str, cluster_wide: bool) -> dict[tuple[str, str, str | None], bool]:
    """The headline checks (what the chart's RBAC must allow and deny), for ``kubectl auth can-i`` itself."""
    return {
        ("patch", "deployments.apps", watched): True,
        ("create", "deployments.apps", watched): True,
        ("patch", "modelrollouts.modelrollout.io/status", watched): True,
        ("create", "events", watched): True,
        ("get", "secrets", watched): False,
        ("list", "secrets", None): False,
        ("create", "pods", watched): False,
        ("delete", "pods", watched): False,
        ("delete", "deployments.apps", watched): False,
        ("create", "configmaps", watched): False,
        ("create", "clusterroles.rbac.authorization.k8s.io", None): False,
        ("delete", "namespaces", None): False,
        ("get", "modelrollouts.modelrollout.io", other): cluster_wide,
        ("patch", "deployments.apps", other): cluster_wide,
    }


def forbidden_lines(log: str) -> list[str]:
    """Log lines about a refused API call (kopf logs each 403 it retries, and its fallbacks)."""
    return [line for line in log.splitlines() if re.search(r"forbidden|permissions", line, re.IGNORECASE)]


# ------------------------------------------------------------------------- namespaced mode


@dataclass
class NamespacedEnv:
    release: Release
    namespace: str          # watched: the chart's Role, RoleBinding and KopfPeering are here
    operator: OperatorProcess


@pytest.fixture(scope="module")
def namespaced(crds: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamespacedEnv]:
    """The chart in namespaced mode watching one fresh namespace, and the operator running
    out of cluster with the ServiceAccount's token, peering through the chart's KopfPeering."""
    watched = f"e2e-chart-rbac-{uuid.uuid4().hex[:5]}"
    create_namespace(crds, watched)
    try:
        with installed_chart(crds, tmp_path_factory.mktemp("chart"), "--set", "namespaced=true",
                             "--set", f"watchNamespaces={{{watched}}}") as release:
            operator = OperatorProcess(crds, watched, name="chart-sa", standalone=False,
                                       kubeconfig=release.kubeconfig).start()
            try:
                yield NamespacedEnv(release, watched, operator)
            finally:
                delete_rollouts(crds, watched)
                operator.stop()
    finally:
        delete_namespace(crds, watched)


def assert_no_forbidden(op: OperatorProcess) -> None:
    text = op.log_path.read_text(errors="replace")
    assert op.alive(), f"operator exited:\n{op.log_tail()}"
    lines = forbidden_lines(text)
    assert not lines, "the operator was refused API calls:\n" + "\n".join(lines[:20])


def test_operator_as_the_chart_service_account_promotes_a_healthy_challenger(namespaced: NamespacedEnv) -> None:
    s = RolloutScenario(namespaced.release.cluster, namespaced.namespace, name="fraud")
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary, gpus=2))
    weights: set[int] = set()

    def progressed(status: dict[str, Any]) -> bool:
        weights.add(int(status.get("canaryWeight") or 0))
        return status.get("phase") == "Succeeded"
    try:
        status = s.wait_status(progressed, timeout=120, message="Succeeded")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- operator log ---\n{namespaced.operator.log_tail()}") from None
    assert {25, 50, 100} <= weights
    stable = s.template_of(s.stable)["spec"]["containers"][0]
    assert stable["image"] == "registry.example/model:v2" and stable["resources"]["limits"][GPU] == "2"
    assert s.replicas(s.canary) == 0 and s.replicas(s.stable) == 4
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"
    assert {"RolloutStarted", "StepAdvanced", "Promoted"} <= {e.reason for e in s.events()}
    # kopf peered through the chart's KopfPeering with the ServiceAccount's rights.
    peering = s.cluster.custom.get_namespaced_custom_object("kopf.dev", "v1", s.namespace, "kopfpeerings",
                                                            "modelrollout")
    assert peering.get("status"), f"no peer recorded in the KopfPeering: {peering}"
    assert_no_forbidden(namespaced.operator)


def test_operator_as_the_chart_service_account_rolls_back_a_latency_regression(namespaced: NamespacedEnv) -> None:
    s = RolloutScenario(namespaced.release.cluster, namespaced.namespace, name="ranker")
    s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary, gpus=2))
    try:
        s.wait_status(lambda st: st.get("canaryWeight") == 50, timeout=90, message="second step")
        s.cluster.simulator.set_behaviour(s.namespace, s.canary, latency_ms={"median": 8.0, "p95": 14.0})
        status = s.wait_phase("RolledBack", timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- operator log ---\n{namespaced.operator.log_tail()}") from None
    evidence = [h["evidence"] for h in status["history"]
                if h["kind"] == "rollback" and (h.get("evidence") or {}).get("conditions")]
    assert evidence and evidence[0]["trigger"] == "latency"
    assert s.replicas(s.stable) == s.original_replicas and s.template_of(s.stable) == s.original_template
    assert s.replicas(s.canary) == 0
    assert {c["type"]: c["status"] for c in status["conditions"]}["Degraded"] == "True"
    assert "RollbackStarted" in {e.reason for e in s.events()}
    assert_no_forbidden(namespaced.operator)


def test_namespaced_can_i_list_is_exactly_what_the_operator_uses(namespaced: NamespacedEnv) -> None:
    r = namespaced.release
    assert r.allowed(namespaced.namespace) == union(WORKLOAD, NAMESPACED_PEERING, CRDS, NAMESPACES)
    # Its own release namespace (where the ServiceAccount lives) and any other: the
    # cluster-scoped reads kopf needs, nothing in the namespace.
    assert r.allowed(r.namespace) == union(CRDS, NAMESPACES)
    assert r.allowed("default") == union(CRDS, NAMESPACES)


def test_namespaced_can_i_matrix(namespaced: NamespacedEnv) -> None:
    r, ns = namespaced.release, namespaced.namespace
    assert_matrix(r, headline(ns, "default", cluster_wide=False), kubectl=True)
    expected = verb_matrix(union(WORKLOAD, NAMESPACED_PEERING), ns)
    for other in (r.namespace, "default", None):  # another namespace, and cluster-wide
        expected |= verb_matrix({k: set() for k in union(WORKLOAD, NAMESPACED_PEERING)}, other)
    expected |= verb_matrix(union(CRDS, NAMESPACES), None)
    expected |= {(verb, resource, where): False for verb, resource in DENIED_NAMESPACED for where in (ns, None)}
    expected |= {(verb, resource, None): False for verb, resource in DENIED_CLUSTER}
    expected |= {("patch", "clusterkopfpeerings.kopf.dev", None): False}
    assert_matrix(r, expected)


# ------------------------------------------------------------------------ cluster-wide mode


@pytest.fixture(scope="module")
def cluster_wide(crds: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    # peering.create=false: the ClusterKopfPeering "modelrollout" is one per cluster, and the
    # cluster is shared; the RBAC for it is rendered all the same.
    with installed_chart(crds, tmp_path_factory.mktemp("chart"), "--set", "peering.create=false") as release:
        yield release


def test_cluster_wide_can_i_list_is_exactly_what_the_operator_uses(cluster_wide: Release) -> None:
    assert cluster_wide.allowed("default") == union(WORKLOAD, CLUSTER_PEERING, CRDS)
    assert cluster_wide.allowed(cluster_wide.namespace) == union(WORKLOAD, CLUSTER_PEERING, CRDS)


def test_cluster_wide_can_i_matrix(cluster_wide: Release) -> None:
    assert_matrix(cluster_wide, headline("default", cluster_wide.namespace, cluster_wide=True), kubectl=True)
    expected = verb_matrix(WORKLOAD, "default") | verb_matrix(WORKLOAD, None)
    expected |= verb_matrix(union(CLUSTER_PEERING, CRDS), None)
    expected |= {(verb, resource, where): False for verb, resource in DENIED_NAMESPACED for where in ("default", None)}
    expected |= {(verb, resource, None): False for verb, resource in DENIED_CLUSTER}
    expected |= {("list", "namespaces", None): False, ("watch", "namespaces", None): False,
                 ("patch", "kopfpeerings.kopf.dev", "default"): False}
    assert_matrix(cluster_wide, expected)
