"""Pure functions on Deployment and Pod JSON: what the executor writes and how it reads health.

Everything here takes and returns plain API JSON (camelCase dicts, exactly what the
apiserver sends) and does no I/O, so the rules are unit-tested without a cluster and
the pod watch can reuse :func:`pod_failure` on the bodies kopf hands it.

Conventions decided here (docs/design.md leaves them to this module):

* A canary the operator creates carries ``app.kubernetes.io/managed-by: modelrollout``
  and ``modelrollout.io/rollout: <name>`` on the Deployment, and its pods carry the
  stable's pod labels plus ``modelrollout.io/role: canary``; its selector is the
  stable's plus ``modelrollout.io/role: canary``. A Service selecting the stable's
  labels therefore reaches both, which is what the replicas router relies on.
* It has no ownerReference: the canary outlives a deleted ModelRollout rather than
  vanishing under live traffic (deleting it is a human decision).
* A canary that existed beforehand (no managed-by label) is the user's: the overrides
  are laid over *its own* template (its labels must keep matching its selector), and
  ``modelDigest`` is verified against it before anything is touched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..api.models import MODEL_DIGEST_ANNOTATION, CanaryTemplate
from ..core.snapshot import CanaryHealth

Json = dict[str, Any]

ROLE_LABEL = "modelrollout.io/role"
CANARY_ROLE = "canary"
ROLLOUT_LABEL = "modelrollout.io/rollout"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modelrollout"
STABLE_ANNOTATION = "modelrollout.io/stable"
"""On a created canary: the stable Deployment it was cut from."""
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"

# Resources that cannot be overcommitted: the apiserver requires request == limit.
_OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")


class TemplateError(ValueError):
    """The overrides cannot be applied to the template; the message names the field."""


class PodFailure(StrEnum):
    OOM_KILLED = "OOMKilled"
    CRASH_LOOP = "CrashLoopBackOff"


# -------------------------------------------------------------------- pod templates


def _container(template: Json, name: str | None, source: str) -> Json:
    containers = template.get("spec", {}).get("containers") or []
    if not containers:
        raise TemplateError(f"{source} has no containers in its pod template")
    if name is None:
        return containers[0]
    for c in containers:
        if c.get("name") == name:
            return c
    names = ", ".join(str(c.get("name")) for c in containers)
    raise TemplateError(f"spec.canary.template.container: {name!r} is not a container of {source} "
                        f"(containers: {names}); name one of them or omit it to use the first")


def _merge_resources(container: Json, overrides: CanaryTemplate) -> None:
    if overrides.resources is None:
        return
    resources = container.setdefault("resources", {})
    limits = overrides.resources.limits or {}
    requests = overrides.resources.requests or {}
    if limits:
        resources.setdefault("limits", {}).update(limits)
    if requests:
        resources.setdefault("requests", {}).update(requests)
    # Extended resources (nvidia.com/gpu, ...) must request exactly their limit; a limit
    # override alone would leave the old request behind and be rejected (422).
    current_requests = resources.get("requests") or {}
    for key, value in limits.items():
        if key not in _OVERCOMMITTABLE and key not in requests and key in current_requests:
            current_requests[key] = value


def _merge_env(container: Json, env: Mapping[str, str]) -> None:
    existing: list[Json] = container.setdefault("env", [])
    for name, value in env.items():
        entry = {"name": name, "value": value}
        for i, e in enumerate(existing):
            if e.get("name") == name:
                existing[i] = entry
                break
        else:
            existing.append(entry)


def apply_overrides(template: Json, overrides: CanaryTemplate | None, source: str) -> Json:
    """A new pod template: ``template`` with the canary overrides applied.

    Image on the named (default: first) container; resources limits/requests merged
    key by key (GPU limits included); env vars set by name; the model digest becomes
    the pod annotation ``modelrollout.io/model-digest``. ``source`` names the
    Deployment the template came from, for error messages.
    """
    out = copy.deepcopy(template)
    if overrides is None:
        return out
    container = _container(out, overrides.container, source)
    if overrides.image is not None:
        container["image"] = overrides.image
    _merge_resources(container, overrides)
    if overrides.env:
        _merge_env(container, overrides.env)
    if overrides.model_digest is not None:
        meta = out.setdefault("metadata", {})
        annotations = meta.get("annotations") or {}
        annotations[MODEL_DIGEST_ANNOTATION] = overrides.model_digest
        meta["annotations"] = annotations
    return out


def canary_pod_template(stable_template: Json, overrides: CanaryTemplate | None, source: str) -> Json:
    """The pod template of an operator-managed canary: stable's + overrides + role label."""
    out = apply_overrides(stable_template, overrides, source)
    meta = out.setdefault("metadata", {})
    labels = dict(meta.get("labels") or {})
    labels[ROLE_LABEL] = CANARY_ROLE
    meta["labels"] = labels
    return out


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """Whether a Service's equality selector picks pods labelled ``labels`` (an empty
    or absent selector picks no pod: such a Service's endpoints are managed by hand)."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def canary_selector(stable_selector: Json) -> Json:
    selector = copy.deepcopy(stable_selector)
    match = dict(selector.get("matchLabels") or {})
    match[ROLE_LABEL] = CANARY_ROLE
    selector["matchLabels"] = match
    return selector


def canary_deployment(*, name: str, namespace: str, stable: Json, template: Json, rollout: str | None,
                      progress_deadline_seconds: int | None) -> Json:
    """A new canary Deployment at 0 replicas, cut from the stable Deployment ``stable``."""
    labels = {MANAGED_BY_LABEL: MANAGED_BY, ROLE_LABEL: CANARY_ROLE}
    if rollout:
        labels[ROLLOUT_LABEL] = rollout
    stable_spec = stable.get("spec", {})
    spec: Json = {
        "replicas": 0,
        "selector": canary_selector(stable_spec.get("selector") or {}),
        "template": template,
    }
    for key in ("strategy", "minReadySeconds", "revisionHistoryLimit"):
        if key in stable_spec:
            spec[key] = copy.deepcopy(stable_spec[key])
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": namespace, "labels": labels,
            "annotations": {STABLE_ANNOTATION: stable.get("metadata", {}).get("name", "")},
        },
        "spec": spec,
    }


def is_managed(deployment: Json) -> bool:
    return (deployment.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def pod_template_digest(deployment: Json) -> str | None:
    meta = deployment.get("spec", {}).get("template", {}).get("metadata") or {}
    return (meta.get("annotations") or {}).get(MODEL_DIGEST_ANNOTATION)


def promoted_template(canary_template: Json, stable_template: Json) -> Json:
    """The stable's pod template after promotion: the challenger's, with the stable's labels.

    Image, digest annotation, resources (GPU limits) and env all come from the canary;
    the labels stay the stable's own (they must keep matching its immutable selector),
    so ``modelrollout.io/role: canary`` is dropped and a stable's ``role: stable`` (what
    its Service selects with the Gateway API router) stays.
    """
    out = copy.deepcopy(canary_template)
    meta = out.setdefault("metadata", {})
    labels = dict((stable_template.get("metadata") or {}).get("labels") or {})
    if labels.get(ROLE_LABEL) == CANARY_ROLE:
        labels.pop(ROLE_LABEL)  # never a stable's; ``modelrollout.io/role: stable`` is kept (docs/shadow.md)
    meta["labels"] = labels
    return out


# ---------------------------------------------------------------- Deployment status


def replicas_of(deployment: Json) -> int:
    value = deployment.get("spec", {}).get("replicas")
    return 1 if value is None else int(value)


def available_replicas(deployment: Json) -> int:
    """Pods of this Deployment that are ready and serving (any template revision)."""
    return int((deployment.get("status") or {}).get("availableReplicas") or 0)


def max_unavailable_of(deployment: Json, replicas: int) -> int:
    """The Deployment's *own* maxUnavailable at ``replicas`` pods, as its controller resolves it.

    ``RollingUpdate`` (default 25 %/25 %): a percentage rounds down (surge up), and when
    both resolve to 0 the controller uses 1. ``Recreate`` may take every pod away.
    """
    strategy = deployment.get("spec", {}).get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return replicas
    rolling = strategy.get("rollingUpdate") or {}

    def resolve(value: int | str, round_up: bool) -> int:
        if isinstance(value, int):
            return value
        share = replicas * int(str(value).rstrip("%"))
        return -(-share // 100) if round_up else share // 100

    unavailable = resolve(rolling.get("maxUnavailable", "25%"), round_up=False)
    surge = resolve(rolling.get("maxSurge", "25%"), round_up=True)
    return 1 if unavailable == 0 and surge == 0 else min(unavailable, replicas)


def rolled_out(deployment: Json) -> bool:
    """The controller saw the latest spec and every pod is of the current template: no older
    ReplicaSet is left whose ready pods it will still delete (a scale-down then only removes surplus)."""
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    return ((status.get("observedGeneration") or 0) >= generation
            and (status.get("updatedReplicas") or 0) >= (status.get("replicas") or 0))


def ready_kept(deployment: Json) -> int:
    """Ready pods the Deployment's own controller will keep: ``availableReplicas`` capped by
    ``spec.replicas``, and mid-rollout (an older ReplicaSet still has pods, e.g. the stable
    rolling back to its recorded template) capped by ``spec.replicas`` less its own
    maxUnavailable: the rolling update may delete ready old pods down to that (seen in the
    chaos run: 8 ready at spec 6, then 5)."""
    replicas = replicas_of(deployment)
    available = min(available_replicas(deployment), replicas)
    if rolled_out(deployment):
        return available
    return max(0, min(available, replicas - max_unavailable_of(deployment, replicas)))


def fewest_replicas_keeping(deployment: Json, ready: int, floor: int) -> int:
    """The fewest replicas (at least ``floor``) ``deployment`` may be scaled down to while it is
    counted on for ``ready`` serving pods; never more than it has now.

    A rolled-out Deployment keeps its ready pods down to its new size. One mid-rollout does
    not (its own maxUnavailable, and a scaling event is spread proportionally over its
    ReplicaSets, ready old pods included): it is not shrunk at all while it is counted on.
    """
    current = replicas_of(deployment)
    if floor >= current or ready <= 0:
        return floor
    if rolled_out(deployment):
        return max(floor, min(current, ready))
    return current


def serving_replicas(deployment: Json) -> int | None:
    """Ready pods that will *stay* (:func:`ready_kept`), or None while the controller has not
    observed the latest spec: the status is then not evidence at all.

    Right after a scale-down the status still counts the pods being removed (seen in the
    chaos run: 6 available, 4 wanted, then 4 serving); counting them would let the other
    side shrink below the serving floor.
    """
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return None
    return ready_kept(deployment)


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _controlled_by(obj: Mapping[str, Any], uids: set[str]) -> bool:
    return any(o.get("controller") and o.get("uid") in uids
               for o in (obj.get("metadata") or {}).get("ownerReferences") or [])


def ready_pods_staying(deployment: Json, replicasets: Iterable[Json], pods: Iterable[Json]) -> int:
    """Ready pods of the Deployment's own ReplicaSets that are not being deleted.

    ``availableReplicas`` lags a scale-down: the ReplicaSet's status is computed from the
    pods it saw *before* deleting the surplus, so for a moment it still counts pods already
    terminating, and once the Deployment is grown again (a rollback right after a step)
    the cap by ``spec.replicas`` no longer hides them (docs/chaos.md, finding 4). The pods
    themselves say it without lag. The stable's selector also matches an operator-made
    canary's pods, hence the ownership check through the ReplicaSets.
    """
    uid = (deployment.get("metadata") or {}).get("uid")
    owned = {str((rs.get("metadata") or {}).get("uid")) for rs in replicasets
             if uid is not None and _controlled_by(rs, {str(uid)})}
    return sum(1 for pod in pods
               if not (pod.get("metadata") or {}).get("deletionTimestamp")
               and _controlled_by(pod, owned) and _pod_ready(pod))


def available_at_template(deployment: Json) -> int:
    """Pods available with the current pod template, capped by ``spec.replicas``; 0 while the
    controller has not observed the latest spec (its status then describes an older one)."""
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return 0
    if rolled_out(deployment):
        return min(replicas_of(deployment), available_replicas(deployment))
    # Mid-rollout the available pods may be old-template ones: count only what must be new.
    updated = int(status.get("updatedReplicas") or 0)
    old = max(0, int(status.get("replicas") or 0) - updated)
    return max(0, min(available_replicas(deployment) - old, updated, replicas_of(deployment)))


def deployment_available(deployment: Json) -> bool:
    """Rolled out: the controller saw this generation and every replica is updated and available."""
    want = replicas_of(deployment)
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation") or 0
    return (
        (status.get("observedGeneration") or 0) >= generation
        and (status.get("updatedReplicas") or 0) == want
        and (status.get("availableReplicas") or 0) == want
        and (status.get("replicas") or 0) == want
    )


def condition(deployment: Json, type_: str) -> Json | None:
    for c in (deployment.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def progress_deadline_exceeded(deployment: Json) -> bool:
    progressing = condition(deployment, "Progressing")
    return bool(progressing and progressing.get("reason") == "ProgressDeadlineExceeded")


def stall_cause(deployment: Json, replicasets: Iterable[Json], pods: Iterable[Json]) -> str:
    """Why a Deployment's pods are not ready, in the apiserver's own words (quota, admission, scheduling).

    A ReplicaSet that cannot create pods says so in its ``ReplicaFailure`` condition
    ("exceeded quota", an admission policy's denial); a pod that cannot be placed says
    so in ``PodScheduled=False`` ("Insufficient nvidia.com/gpu"); a pod that cannot
    start names the container's waiting reason. Falls back to the Deployment's own
    ``Progressing`` message.
    """
    causes: list[str] = []
    for rs in replicasets:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
                causes.append(f"{c.get('reason') or 'ReplicaFailure'}: {c.get('message') or ''}".strip())
    pending: dict[str, int] = {}
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        for c in status.get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                text = f"pod unschedulable: {c.get('message') or c.get('reason') or 'PodScheduled=False'}"
                pending[text] = pending.get(text, 0) + 1
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting.get("reason") != "ContainerCreating":
                text = f"container {cs.get('name')}: {waiting.get('reason')}: {waiting.get('message') or ''}".strip()
                pending[text] = pending.get(text, 0) + 1
    causes.extend(f"{text} ({n} pod{'s' if n > 1 else ''})" for text, n in pending.items())
    if not causes:
        progressing = condition(deployment, "Progressing")
        if progressing is not None and progressing.get("message"):
            causes.append(f"Progressing: {progressing['message']}")
    return "; ".join(dict.fromkeys(causes)) or "no cause reported by the ReplicaSet or its pods"


def label_selector(selector: Mapping[str, Any]) -> str:
    """A LabelSelector as the ``labelSelector`` query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def current_pod_template_hash(deployment: Json, replicasets: Iterable[Json]) -> str | None:
    """The pod-template-hash of the Deployment's current ReplicaSet (None if not created yet)."""
    uid = deployment.get("metadata", {}).get("uid")
    revision = (deployment.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    if revision is None:
        return None
    for rs in replicasets:
        meta = rs.get("metadata", {})
        owned = any(o.get("uid") == uid and o.get("controller") for o in meta.get("ownerReferences") or [])
        if owned and (meta.get("annotations") or {}).get(REVISION_ANNOTATION) == revision:
            return (meta.get("labels") or {}).get(POD_TEMPLATE_HASH)
    return None


# ----------------------------------------------------------------------- pod health


def _oom(terminated: Mapping[str, Any] | None) -> bool:
    return bool(terminated) and (terminated.get("reason") == "OOMKilled" or terminated.get("exitCode") == 137)


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def _crash_looping(cs: Mapping[str, Any]) -> bool:
    waiting = (cs.get("state") or {}).get("waiting") or {}
    return waiting.get("reason") == "CrashLoopBackOff"


def pod_failure(pod: Mapping[str, Any]) -> PodFailure | None:
    """Classify one pod (API JSON): OOMKilled, CrashLoopBackOff, or None when healthy.

    Both shapes of an out-of-memory kill count as ``OOMKilled``: the container
    terminated with reason OOMKilled or exit code 137 (restartPolicy Never, or the
    pod failed: phase Failed), and a container in CrashLoopBackOff whose last
    termination was OOMKilled/137 (restartPolicy Always: the kubelet keeps restarting
    it). A pod being deleted is ignored: exit 137 is then the grace-period SIGKILL.
    """
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    crash = False
    for cs in _statuses(pod):
        state = cs.get("state") or {}
        if _oom(state.get("terminated")):
            return PodFailure.OOM_KILLED
        if _crash_looping(cs):
            if _oom((cs.get("lastState") or {}).get("terminated")):
                return PodFailure.OOM_KILLED
            crash = True
    return PodFailure.CRASH_LOOP if crash else None


def is_crash_looping(pod: Mapping[str, Any]) -> bool:
    """Any container waiting in CrashLoopBackOff (whatever made it crash, OOM included)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(_crash_looping(cs) for cs in _statuses(pod))


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def canary_health_of(deployment: Json, pods: Iterable[Json], now: datetime,
                     progress_deadline_seconds: int, *, at_current_template: bool = True) -> CanaryHealth:
    """The snapshot's ``health.canary`` from the canary Deployment and its current pods.

    ``at_current_template``: whether ``pods`` are known to be the current template's
    only (its ReplicaSet was found); if not, ``current_pods`` is unknown (None)."""
    pods = list(pods)
    ready = sorted(p["metadata"]["name"] for p in pods
                   if _pod_ready(p) and not p.get("metadata", {}).get("deletionTimestamp"))
    oom = sum(1 for p in pods if pod_failure(p) == PodFailure.OOM_KILLED)
    crash = sum(1 for p in pods if is_crash_looping(p))
    unavailable = 0.0
    scaled_up = replicas_of(deployment) > 0
    available = condition(deployment, "Available")
    if scaled_up and available is not None and available.get("status") == "False":
        since = _parse_time(available.get("lastTransitionTime"))
        if since is not None:
            unavailable = max(0.0, (now - since).total_seconds())
    exceeded = scaled_up and (progress_deadline_exceeded(deployment) or unavailable >= progress_deadline_seconds)
    return CanaryHealth(oom_killed=oom, crash_looping=crash, unavailable_for_seconds=round(unavailable, 3),
                        progress_deadline_exceeded=exceeded, replicas=replicas_of(deployment),
                        available_replicas=available_at_template(deployment),
                        current_pods=ready if at_current_template else None)
