"""The Helm chart: lints, renders, and grants only what the operator uses.

Runs the helm binary the cluster harness builds (``make cluster-build`` puts it in
``~/.cache/modelrollout/bin/helm-*/helm``); no cluster is needed. Installing the chart
and proving the RBAC with a real ServiceAccount (the operator runs with its token; a
``kubectl auth can-i`` matrix) is e2e/tests/test_chart_rbac.py, against the same list.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.cluster import built_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout"
# Built before collection by the root conftest (e2e/build.sh helm), like every tool a test needs.
HELM = [built_path("HELM")]

NAMESPACED = ["--set", "namespaced=true", "--set", "watchNamespaces={ml,risk}"]
WORKLOAD_RESOURCES = {"modelrollouts", "modelrollouts/status", "deployments", "deployments/scale", "replicasets",
                      "pods", "events", "httproutes", "services"}

# What the operator calls, per (apiGroup, resource): the chart must grant exactly these verbs.
EXPECTED_VERBS = {
    ("modelrollout.io", "modelrollouts"): {"get", "list", "watch", "patch"},  # GET fresh; kopf list/watch/patch
    ("modelrollout.io", "modelrollouts/status"): {"patch"},                   # status merge patch
    ("apps", "deployments"): {"get", "create", "update", "patch"},            # canary, template PUT, weight
    ("apps", "deployments/scale"): {"patch"},                                 # replica counts
    ("apps", "replicasets"): {"list"},                                        # canary health
    ("", "pods"): {"list", "watch"},                                          # canary health, kopf pod watch
    ("", "events"): {"create"},                                               # Events on rollouts
    ("", "services"): {"get"},                                                # the stable's Service (shadow)
    ("gateway.networking.k8s.io", "httproutes"): {"get", "update"},           # gatewayAPI router
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},  # kopf's resource scan
}
PEERING_VERBS = {"list", "watch", "patch"}
CLUSTER_WIDE_ONLY = {("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS}
NAMESPACED_ONLY = {("kopf.dev", "kopfpeerings"): PEERING_VERBS}
# kopf lists and watches namespaces only when it watches named ones (kopf 1.45 namespace_observer).
NAMESPACES = {("", "namespaces"): {"list", "watch"}}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(HELM[-1]), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def render(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "mro", str(CHART), "--namespace", "modelrollout-system", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def grants(docs: list[dict[str, Any]], kinds: set[str]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, merged over every rule of the given Role kinds."""
    merged: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        if doc["kind"] not in kinds:
            continue
        for rule in doc.get("rules") or []:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    merged.setdefault((group, resource), set()).update(rule["verbs"])
    return merged


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def namespaced_docs() -> list[dict[str, Any]]:
    return render(*NAMESPACED)


@pytest.mark.parametrize("values", [[], NAMESPACED], ids=["default", "namespaced"])
def test_helm_lint(values):
    result = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout


def test_chart_crds_are_the_repos_crds():
    repo = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert repo and chart == repo, "charts/modelrollout/crds/ is stale: cp crds/*.yaml charts/modelrollout/crds/"


def test_deployment_is_hardened_with_two_replicas_and_probes(default_docs):
    deployment = one(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container, = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert pod["serviceAccountName"] == one(default_docs, "ServiceAccount")["metadata"]["name"]


def test_command_passes_the_operators_flags(default_docs):
    command = one(default_docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["modelrollout", "run"]
    assert "--prometheus-url=http://prometheus.monitoring:9090" in command
    assert "--metrics-port=8080" in command
    assert "--liveness=http://0.0.0.0:8081/healthz" in command
    assert not any(arg.startswith(("--namespace", "--standalone")) for arg in command)


def test_command_flags_are_ones_the_cli_accepts():
    from modelrollout.cli import run

    known = {opt for param in run.params for opt in param.opts}
    docs = render(*NAMESPACED, "--set", "webhooks={https://hooks.example/a}")
    command = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
    flags = [arg.split("=", 1)[0] for arg in command[2:]]
    assert set(flags) <= known, set(flags) - known
    assert "--namespace=ml" in command and "--namespace=risk" in command
    assert "--webhook=https://hooks.example/a" in command


@pytest.mark.parametrize("mode", ["default", "namespaced"])
def test_rbac_has_no_secrets_wildcards_or_deletes(mode, default_docs, namespaced_docs):
    docs = default_docs if mode == "default" else namespaced_docs
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d.get("rules") or []]
    assert rules
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"] and "configmaps" not in rule["resources"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert "nonResourceURLs" not in rule


def test_cluster_wide_rbac_grants_exactly_what_the_operator_uses(default_docs):
    assert grants(default_docs, {"ClusterRole"}) == EXPECTED_VERBS | CLUSTER_WIDE_ONLY
    assert not [d for d in default_docs if d["kind"] in ("Role", "RoleBinding")]
    binding = one(default_docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mro-modelrollout",
                                    "namespace": "modelrollout-system"}]
    peering = one(default_docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "modelrollout"


def test_namespaced_mode_uses_roles_for_workload_resources(namespaced_docs):
    cluster = grants(namespaced_docs, {"ClusterRole"})
    # Only kopf's reads of CRDs and namespaces stay cluster-scoped; nothing that touches workloads.
    assert cluster == {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}} | NAMESPACES
    assert not {resource for _, resource in cluster} & WORKLOAD_RESOURCES
    roles = [d for d in namespaced_docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "risk"]
    for role in roles:
        expected = {k: v for k, v in EXPECTED_VERBS.items() if k[1] != "customresourcedefinitions"}
        assert grants([role], {"Role"}) == expected | NAMESPACED_ONLY
    bindings = [d for d in namespaced_docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml", "risk"]
    assert all(b["roleRef"]["kind"] == "Role" for b in bindings)
    peerings = [d for d in namespaced_docs if d["kind"] == "KopfPeering"]
    assert sorted((p["metadata"]["name"], p["metadata"]["namespace"]) for p in peerings) == [
        ("modelrollout", "ml"), ("modelrollout", "risk")]
    assert not [d for d in namespaced_docs if d["kind"] == "ClusterKopfPeering"]


def test_namespaced_mode_can_refuse_kopf_the_namespace_list():
    cluster = grants(render(*NAMESPACED, "--set", "rbac.listNamespaces=false"), {"ClusterRole"})
    assert set(cluster) == {("apiextensions.k8s.io", "customresourcedefinitions")}


def test_cluster_wide_rbac_with_named_namespaces_peers_per_namespace():
    """kopf peers cluster-wide only when it watches every namespace: with --namespace flags
    it looks for a KopfPeering in each, whatever the chart's RBAC mode."""
    docs = render("--set", "watchNamespaces={ml,risk}")
    assert grants(docs, {"ClusterRole"}) == EXPECTED_VERBS | NAMESPACED_ONLY | NAMESPACES
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["ml", "risk"]
    assert not [d for d in docs if d["kind"] in ("ClusterKopfPeering", "Role", "RoleBinding")]


def test_namespaced_mode_without_namespaces_is_refused():
    result = helm("template", "mro", str(CHART), "--set", "namespaced=true", check=False)
    assert result.returncode != 0 and "namespaced=true needs watchNamespaces" in result.stderr


def test_metrics_service_and_optional_service_monitor(default_docs):
    service = one(default_docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert not [d for d in default_docs if d["kind"] == "ServiceMonitor"]
    monitor = one(render("--set", "serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_crds_are_shipped_with_the_chart():
    docs = [d for d in yaml.safe_load_all(helm("template", "mro", str(CHART), "--include-crds").stdout) if d]
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert names == {"modelrollouts.modelrollout.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}


def test_metrics_disabled_drops_the_port_and_service():
    docs = render("--set", "metrics.port=0")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert "--metrics-port=0" in container["command"]
    assert not [d for d in docs if d["kind"] in ("Service", "ServiceMonitor")]


def test_sharding_runs_every_replica_with_shards_and_grants_leases_only_in_the_release_namespace():
    docs = render("--set", "sharding.enabled=true", "--set", "replicas=3")
    deployment = one(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert "--shards" in container["command"]
    from modelrollout.cli import run
    assert "--shards" in {opt for param in run.params for opt in param.opts}
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    role = next(d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-shards"))
    assert role["metadata"]["namespace"] == "modelrollout-system"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["list", "create", "patch", "delete"]}]
    binding = next(d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-shards"))
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # Deletes are granted on Leases, in that Role, and nowhere else.
    others = [r for d in docs if d["kind"] in ("ClusterRole", "Role") and d is not role for r in d.get("rules") or []]
    assert not any("delete" in r["verbs"] for r in others)
    assert not [d for d in docs if d["kind"] in ("ClusterKopfPeering", "KopfPeering")]
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), "--set", "sharding.enabled=true").stdout
