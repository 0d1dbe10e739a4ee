"""The plugin's only contact with the API server: get, list and merge-patch ModelRollouts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..api.models import API_GROUP, API_VERSION, PLURAL
from .commands import PluginError


@dataclass(frozen=True)
class Target:
    kubeconfig: str | None
    context: str | None
    namespace: str | None


class Cluster:
    """The plugin's only contact with the API server: get, list and merge-patch ModelRollouts."""

    def __init__(self, target: Target) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config(config_file=target.kubeconfig, context=target.context)
            contexts, active = config.list_kube_config_contexts(config_file=target.kubeconfig)
            chosen = next((c for c in contexts if c.get("name") == target.context), active) if target.context else active
            default_ns = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        except (config.ConfigException, OSError) as exc:
            if target.kubeconfig or target.context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                where = target.kubeconfig or "$KUBECONFIG or ~/.kube/config"
                raise PluginError(f"no usable kubeconfig ({where}): {exc}; point --kubeconfig or KUBECONFIG at "
                                  "one, or choose a context with --context") from exc
            try:
                config.load_incluster_config()  # in a pod without a kubeconfig: its service account
            except config.ConfigException as in_cluster:
                raise PluginError(f"no kubeconfig and no in-cluster service account: {in_cluster}") from in_cluster
            default_ns = "default"
        self.namespace = target.namespace or default_ns
        self.api = client.CustomObjectsApi()

    def _call(self, what: str, name: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and name:
                raise PluginError(f"modelrollout {name!r} not found in namespace {self.namespace!r}") from exc
            if exc.status == 404:
                raise PluginError("the ModelRollout CRD is not installed (kubectl apply --server-side -f crds/)") from exc
            if exc.status == 403:
                raise PluginError(f"forbidden: cannot {what} modelrollouts in namespace {self.namespace!r}: "
                                  f"{exc.reason}") from exc
            raise PluginError(f"{what} failed: HTTP {exc.status} {exc.reason}") from exc
        except HTTPError as exc:
            raise PluginError(f"cannot reach the API server: {exc}") from exc

    def get(self, name: str) -> dict[str, Any]:
        return self._call("get", name, self.api.get_namespaced_custom_object,
                          API_GROUP, API_VERSION, self.namespace, PLURAL, name)

    def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        if all_namespaces:
            result = self._call("list", None, self.api.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL)
        else:
            result = self._call("list", None, self.api.list_namespaced_custom_object,
                                API_GROUP, API_VERSION, self.namespace, PLURAL)
        return list(result.get("items") or [])

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("patch", name, self.api.patch_namespaced_custom_object,
                          API_GROUP, API_VERSION, self.namespace, PLURAL, name, body,
                          _content_type="application/merge-patch+json")
