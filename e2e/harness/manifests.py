"""Manifest builders shared by e2e tests: the shapes the operator works on
(a GPU model-server Deployment, an HTTPRoute splitting two backends, a ModelRollout
tuned for e2e speed)."""

from __future__ import annotations

from typing import Any

# The ModelRollout API's coordinates, as the custom-objects client takes them.
GROUP, VERSION, PLURAL = "modelrollout.io", "v1alpha1", "modelrollouts"


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
