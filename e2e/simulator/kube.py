"""Read the router's real state from the apiserver.

The simulator never decides traffic shares itself: it reads what the operator
(or a test) set — ready replicas of each Deployment, or an HTTPRoute's backend
weights — so a rollout's weight changes show up in the metrics exactly as they
would behind a real load balancer.

An Argo Rollout (for the comparison benchmark, bench/argo_rollouts.py) owns
ReplicaSets rather than Deployments: its stable and canary pods are told apart
by the `rollouts-pod-template-hash` label against the Rollout's
`status.stableRS` and `status.currentPodHash`, and exported under two fixed
names, so the metrics keep stable `deployment` label values while Argo swaps
ReplicaSets underneath.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
ARGO_GROUP = "argoproj.io"
ARGO_VERSION = "v1alpha1"
ARGO_ROLLOUTS = "rollouts"
# Argo labels every pod of a Rollout's ReplicaSet with its template hash.
ARGO_HASH_LABEL = "rollouts-pod-template-hash"
REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class PodView:
    """A ready pod of a Deployment, as the simulator needs it."""

    name: str
    image: str | None
    model_digest: str | None = None
    """What the pod declares it serves (annotation modelrollout.io/model-digest), else a
    digest of its image: what a server that hashes the model it loaded would report."""

    def __post_init__(self) -> None:
        if self.model_digest is None and self.image is not None:
            object.__setattr__(self, "model_digest", image_digest(self.image))


MODEL_DIGEST_ANNOTATION = "modelrollout.io/model-digest"


def image_digest(image: str) -> str:
    """The digest a simulated server reports for a pod that declares none."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


@dataclass(frozen=True)
class DeploymentView:
    """A Deployment's observed state; exists=False when it is not (yet) there."""

    exists: bool
    ready_replicas: int = 0
    template_image: str | None = None
    ready_pods: tuple[PodView, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteView:
    """An HTTPRoute's backend weights summed over its rules; None weights = route absent.
    ``mirrors``: backend name -> percent of the route's requests its RequestMirror filters
    copy to it (the largest over the rules; ``fraction`` in percent; no share = 100)."""

    exists: bool
    weights: dict[str, int] = field(default_factory=dict)
    mirrors: dict[str, float] = field(default_factory=dict)


class KubeReader:
    """Thin, bounded-time wrappers over the few reads the simulator makes."""

    def __init__(self, kubeconfig: str | None) -> None:
        if kubeconfig:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        else:
            config.load_incluster_config()
            api_client = client.ApiClient()
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def namespace_pods(self, namespace: str) -> list[Any]:
        """All pods of a namespace (one call, matched to Deployments locally)."""
        return self._core.list_namespaced_pod(namespace, _request_timeout=REQUEST_TIMEOUT_S).items

    def namespace_deployments(self, namespace: str) -> dict[str, Any]:
        """All Deployments of a namespace by name: one list call however many
        services the namespace has, so polling stays cheap with many rollouts."""
        items = self._apps.list_namespaced_deployment(namespace, _request_timeout=REQUEST_TIMEOUT_S).items
        return {d.metadata.name: d for d in items}

    @staticmethod
    def deployment_view(d: Any | None, pods: list[Any]) -> DeploymentView:
        """The Deployment's ready replicas, template image and ready pods."""
        if d is None:
            return DeploymentView(exists=False)
        selector = dict((d.spec.selector.match_labels or {}) if d.spec.selector else {})
        containers = d.spec.template.spec.containers or []
        image = containers[0].image if containers else None
        # By owner, not by selector alone: the canary's pods carry the stable's labels (so one
        # Service reaches both), and counting them for the stable too skews the split.
        ready = tuple(
            PodView(p.metadata.name, _pod_image(p), _pod_digest(p))
            for p in pods
            if selector and _matches(p, selector) and _pod_ready(p) and _owned_by(p, d.metadata.name)
        )
        return DeploymentView(
            exists=True,
            ready_replicas=int(d.status.ready_replicas or 0) if d.status else 0,
            template_image=image,
            ready_pods=ready,
            selector=selector,
        )

    def http_route(self, namespace: str, name: str) -> RouteView:
        """Backend weights of an HTTPRoute (Gateway API: an absent weight is 1)."""
        try:
            r = self._custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as e:
            if e.status == 404:
                return RouteView(exists=False)
            raise
        weights: dict[str, int] = {}
        mirrors: dict[str, float] = {}
        for rule in (r.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                w = ref.get("weight", 1)
                weights[ref["name"]] = weights.get(ref["name"], 0) + int(w if w is not None else 1)
            for flt in rule.get("filters") or []:
                if flt.get("type") == "RequestMirror":
                    name, percent = mirror_share(flt.get("requestMirror") or {})
                    if name:
                        mirrors[name] = max(mirrors.get(name, 0.0), percent)
        return RouteView(exists=True, weights=weights, mirrors=mirrors)

    def argo_rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An Argo Rollout as a plain dict, or None when absent (or its CRD is not installed)."""
        try:
            return self._custom.get_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, namespace, ARGO_ROLLOUTS, name,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise


def argo_rollout_views(rollout: dict[str, Any] | None, pods: list[Any]) -> tuple[DeploymentView, DeploymentView]:
    """(stable, canary) views of an Argo Rollout's two ReplicaSets.

    The stable ReplicaSet is `status.stableRS` (before the first revision is
    healthy, the current one); the canary is `status.currentPodHash` while it
    differs from the stable. Outside an update, and after an abort has scaled
    the canary to 0, the canary view exists with no pods, so its traffic share is
    0 rather than "dropped". Pods are matched on the Rollout's selector plus the
    hash label; a pod of neither ReplicaSet (an old revision draining) serves
    nothing here.
    """
    if rollout is None:
        return DeploymentView(exists=False), DeploymentView(exists=False)
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    base = dict(((spec.get("selector") or {}).get("matchLabels")) or {})
    current = status.get("currentPodHash") or None
    stable_hash = status.get("stableRS") or current
    canary_hash = current if current and current != stable_hash else None
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    spec_image = containers[0].get("image") if containers else None

    def view(pod_hash: str | None, template_image: str | None) -> DeploymentView:
        if pod_hash is None:
            return DeploymentView(exists=True, template_image=template_image)
        selector = {**base, ARGO_HASH_LABEL: pod_hash}
        ready = tuple(PodView(p.metadata.name, _pod_image(p), _pod_digest(p)) for p in pods
                      if _matches(p, selector) and _pod_ready(p))
        image = template_image if template_image is not None else (ready[0].image if ready else None)
        return DeploymentView(exists=True, ready_replicas=len(ready), template_image=image,
                              ready_pods=ready, selector=selector)

    # The stable's template is the spec's only when no update is in progress.
    stable = view(stable_hash, spec_image if canary_hash is None else None)
    return stable, view(canary_hash, spec_image)


def mirror_share(mirror: dict[str, Any]) -> tuple[str | None, float]:
    """(backend name, percent of requests copied) of one ``requestMirror``."""
    name = (mirror.get("backendRef") or {}).get("name")
    if "percent" in mirror:
        return name, float(mirror["percent"])
    if "fraction" in mirror:
        fraction = mirror["fraction"]
        return name, 100.0 * float(fraction["numerator"]) / float(fraction.get("denominator", 100))
    return name, 100.0


def _matches(pod: Any, selector: dict[str, str]) -> bool:
    labels = pod.metadata.labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    if pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _pod_digest(pod: Any) -> str | None:
    return (pod.metadata.annotations or {}).get(MODEL_DIGEST_ANNOTATION)


def _pod_image(pod: Any) -> str | None:
    containers = pod.spec.containers or []
    return containers[0].image if containers else None


def _owned_by(pod: Any, deployment: str) -> bool:
    """Whether ``pod`` belongs to ``deployment`` through its ReplicaSet (``<deployment>-<hash>``).
    A pod without a ReplicaSet owner (created by hand) is judged by the selector alone."""
    owners = [o for o in (pod.metadata.owner_references or []) if o.kind == "ReplicaSet"]
    if not owners:
        return True
    return any(o.name.rsplit("-", 1)[0] == deployment for o in owners)
