"""An admission policy that makes the stable "unable to run the challenger", for promotion tests.

A ValidatingAdmissionPolicy refuses the stable's new pods that run the challenger's
image, as nodes that cannot pull or fit it would; the canary's pods stay allowed. Used
by the promotion-capacity and anchor-failure tests and by the chaos run's
promotion-failure rollouts.
"""

from __future__ import annotations

from typing import Any

from e2e.harness.cluster import Cluster

# The challenger's image in the tests that refuse it on the stable.
CHALLENGER = "registry.example/model:v2"


def refuse_challenger_on_stable(namespace: str, stable: str, image: str) -> list[dict[str, Any]]:
    """An admission policy that refuses the stable's pods running ``image`` (the canary's are
    allowed): the stable "cannot run the challenger", as nodes that cannot pull or fit it."""
    name = f"refuse-{namespace}"
    rule = (f"!(has(object.metadata.labels) && object.metadata.labels[?'app'].orValue('') == '{stable}' "
            f"&& !('modelrollout.io/role' in object.metadata.labels) "
            f"&& object.spec.containers.exists(c, c.image == '{image}'))")
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail",
                  "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                          "operations": ["CREATE"], "resources": ["pods"]}]},
                  "validations": [{"expression": rule,
                                   "message": f"the stable's nodes cannot run {image} (e2e admission policy)"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"],
                  "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}}},
    ]


def wait_policy_active(cluster: Cluster, namespace: str, *, stable: str = "fraud", image: str = CHALLENGER) -> None:
    """A policy takes effect asynchronously: probe with a dry-run pod until it is refused."""
    probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace,
                                                              "labels": {"app": stable}},
             "spec": {"containers": [{"name": "server", "image": image}]}}

    def refused() -> bool:
        try:
            cluster.core.create_namespaced_pod(namespace, probe, dry_run="All")
        except Exception as exc:  # noqa: BLE001 - the refusal is what we wait for
            return "cannot run" in str(exc)
        return False

    cluster.wait_for(refused, timeout=30, message="the admission policy to refuse the challenger on the stable")
