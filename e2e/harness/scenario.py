"""The stable side of an e2e rollout: a Deployment serving a simulated model, and the reads tests make of its rollout."""

from __future__ import annotations

from typing import Any

from e2e.harness.cluster import Cluster
from e2e.harness.manifests import GROUP, PLURAL, VERSION, gpu_deployment


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
