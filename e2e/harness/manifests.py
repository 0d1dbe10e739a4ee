"""Manifest builders shared by e2e tests: the shapes the operator works on
(a GPU model-server Deployment, an HTTPRoute splitting two backends)."""

from __future__ import annotations

from typing import Any


def gpu_deployment(name: str, namespace: str, replicas: int = 1, image: str = "registry.example/model:v1",
                   gpus: int = 1, pod_labels: dict[str, str] | None = None,
                   pod_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A model-server Deployment with a GPU limit, schedulable on the kwok nodes.

    The selector is only `app: <name>`, so extra pod labels (fault injection,
    revisions) can change without recreating the Deployment.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, **(pod_labels or {})},
                    "annotations": dict(pod_annotations or {}),
                },
                "spec": {
                    "containers": [{
                        "name": "server",
                        "image": image,
                        "resources": {
                            "limits": {"nvidia.com/gpu": str(gpus), "cpu": "1", "memory": "2Gi"},
                            "requests": {"nvidia.com/gpu": str(gpus), "cpu": "1", "memory": "2Gi"},
                        },
                    }],
                },
            },
        },
    }


def http_route(name: str, namespace: str, backends: dict[str, int], gateway: str = "e2e-gateway",
               port: int = 8080) -> dict[str, Any]:
    """An HTTPRoute sending traffic to Services named in `backends` with the given weights."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "rules": [{
                "backendRefs": [{"name": svc, "port": port, "weight": w} for svc, w in backends.items()],
            }],
        },
    }
