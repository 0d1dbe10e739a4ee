"""The executor: carries out the core's actions on the cluster, idempotently.

``KubeExecutor`` turns ``StartRollout``, ``SetWeight``, ``Promote`` and ``RollbackPhase``
into Deployment and HTTPRoute writes and answers with the observation the state
machine expects (``Initialized``/``InitFailed``, ``PromotionApplied``/``PromotionFailed``,
``RollbackApplied``). Every method describes a *target state*: it reads, computes what
should hold, and writes only what differs, so re-running it after a crash (the
controller re-applies ``pending_actions`` on start) changes nothing that already holds.

Shapes and conventions live in ``workload.py`` (pure, unit-tested); the apiserver
calls and their error translation in ``kubeapi.py``; traffic in ``routers/``. What is
left here is the order of operations and the waiting, which is where the safety
properties of docs/design.md#actions come from:

* the stable is recorded (replicas + full pod template as raw API JSON) before the
  first change, and the first record is kept for the whole rollout;
* promotion never routes users to a stable that is not available: the stable takes
  the challenger's template, is *waited for*, and only then gets 100 %;
* rollback phase 2 replaces the stable's ``spec.template`` with the recorded dict as a
  whole (a PUT with resourceVersion, retried on 409), so nothing the rollout added —
  a GPU limit, an env var, an annotation — survives it.

Error handling: apiserver failures surface as ``ClusterUnavailable`` (retry later) or
``ClusterConflict`` (the cluster is not in a state we can act on); refusals that only a
spec change can fix become ``InitFailed``/``PromotionFailed`` observations instead.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from kubernetes.client import ApiClient

from ..api.models import (
    MODEL_DIGEST_ANNOTATION,
    ModelRolloutSpec,
    ModelRolloutStatus,
    RouterKind,
    StableRecord,
    resolve_int_or_percent,
)
from ..core.observations import (
    InitFailed,
    Initialized,
    PromotionApplied,
    PromotionFailed,
    PromotionProgress,
    RollbackApplied,
)
from ..core.integrity import dark_start
from ..core.shadow import shadow_of
from ..core.snapshot import CanaryHealth
from ..errors import ClusterConflict, InvalidSpec
from .kubeapi import Json, KubeApi, NotFound, Refused, retry_conflicts
from .routers import ROUTERS, RouterFactory, router_factory
from .routers.base import RolloutTarget, TrafficRouter
from .routers.gateway_api import GatewayAPIRouter, verify_route
from .routers.replicas import WEIGHT_ANNOTATION, canary_replicas
from .workload import (
    ROLLOUT_LABEL,
    PodFailure,
    TemplateError,
    canary_deployment,
    canary_health_of,
    apply_overrides,
    available_replicas,
    canary_pod_template,
    current_pod_template_hash,
    deployment_available,
    is_managed,
    label_selector,
    pod_failure,
    pod_template_digest,
    progress_deadline_exceeded,
    promoted_template,
    replicas_of,
    rolled_out,
    selects,
    stall_cause,
)

log = logging.getLogger("modelrollout.kube")

Sleep = Callable[[float], Awaitable[None]]


def min_serving(spec: ModelRolloutSpec, total_replicas: int) -> int:
    """The ready serving pods a rollout keeps while traffic moves: the recorded count less
    ``spec.promotion.maxUnavailable``, and never 0 while the record says more than 0."""
    if total_replicas <= 0:
        return 0
    unavailable = resolve_int_or_percent(spec.promotion.max_unavailable, total_replicas, round_up=False)
    return max(1, total_replicas - unavailable)


def surge_of(spec: ModelRolloutSpec, total_replicas: int) -> int:
    """Pods the stable gains per handover batch (``spec.promotion.maxSurge``), at least 1."""
    return max(1, resolve_int_or_percent(spec.promotion.max_surge, total_replicas, round_up=True))


def rollout_target(ns: str, spec: ModelRolloutSpec, total_replicas: int) -> RolloutTarget:
    """The router's view of one rollout; ``total_replicas`` is the recorded stable's count."""
    route = spec.traffic.http_route
    return RolloutTarget(
        namespace=ns, stable=spec.stable.deployment, canary=spec.canary.deployment, total_replicas=total_replicas,
        http_route=route.name if route else None, http_route_namespace=route.namespace if route else None,
        min_serving=min_serving(spec, total_replicas), deadline_seconds=spec.analysis.progress_deadline_seconds,
    )


class KubeExecutor:
    """Executes actions against one cluster.

    ``now`` is the clock (UTC ``datetime``); ``sleep`` is injectable with it so tests
    drive the promotion wait without real time. ``poll_interval`` is how often the
    promotion wait re-reads the stable; ``request_timeout`` bounds every API call.
    """

    def __init__(self, api_client: ApiClient | KubeApi, now: Callable[[], datetime], *, poll_interval: float = 1.0,
                 request_timeout: float = 10.0, sleep: Sleep = asyncio.sleep,
                 routers: Mapping[RouterKind, RouterFactory] = ROUTERS) -> None:
        # A ready KubeApi (or a fake with its methods) is used as is: tests need no cluster.
        self.api = api_client if isinstance(api_client, KubeApi) or hasattr(api_client, "read_deployment") \
            else KubeApi(api_client, request_timeout=request_timeout)
        self.now = now
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._router_factories = dict(routers)
        self._routers: dict[RouterKind, TrafficRouter] = {}

    # ------------------------------------------------------------------ routing

    def router(self, kind: RouterKind | str) -> TrafficRouter:
        """The router for ``kind``; InvalidSpec on an unknown kind, never a default (flagger#1872)."""
        key, factory = router_factory(kind, self._router_factories)
        if key not in self._routers:
            self._routers[key] = factory(self.api, sleep=self._sleep, monotonic=lambda: self.now().timestamp())
        return self._routers[key]

    async def set_weight(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int) -> None:
        """The machine's ``SetWeight``: route ``percent`` % to the canary, with the serving floor
        of the recorded stable (idempotent; does not wait for pods)."""
        total = status.stable_record.replicas if status.stable_record else 0
        await self.apply_weight(rollout_target(ns, spec, total), spec.traffic.router, percent)

    async def prepare_canary(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int,
                             replicas: int | None = None) -> None:
        """The machine's ``PrepareCanary``: the canary scaled for ``percent`` % (or to
        ``replicas``) with no traffic routed to it (docs/integrity.md)."""
        total = status.stable_record.replicas if status.stable_record else 0
        await self._gateway(spec, "keep traffic from a scaled canary").prepare_dark(
            rollout_target(ns, spec, total), percent, replicas)

    async def mirror_traffic(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, percent: int,
                             size_percent: int, replicas: int | None = None) -> None:
        """The machine's ``MirrorTraffic`` (docs/shadow.md): ``percent`` % of requests copied
        to the canary, sized to ``replicas`` or for ``size_percent`` % of the recorded stable."""
        total = status.stable_record.replicas if status.stable_record else 0
        size = replicas if replicas is not None else canary_replicas(total, size_percent)
        await self._gateway(spec, "mirror requests").mirror(rollout_target(ns, spec, total), percent, size)

    def _gateway(self, spec: ModelRolloutSpec, what: str) -> GatewayAPIRouter:
        router = self.router(spec.traffic.router)
        if not isinstance(router, GatewayAPIRouter):  # admission refuses it; the machine asks only with gatewayAPI
            raise InvalidSpec(f"spec.traffic.router: the {spec.traffic.router.value} router cannot {what}; "
                              "use router: gatewayAPI with an httpRoute")
        return router

    async def apply_weight(self, target: RolloutTarget, router: RouterKind, percent: int) -> None:
        """Route ``percent`` % to the canary of ``target`` (idempotent; does not wait for pods)."""
        await self.router(router).set_canary_weight(target, percent)

    async def read_weight(self, target: RolloutTarget, router: RouterKind) -> int | None:
        return await self.router(router).read_canary_weight(target)

    # ------------------------------------------------------------------ start

    async def start_rollout(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, *,
                            rollout: str | None = None) -> Initialized | InitFailed:
        """Verify the digest (and the HTTPRoute), record the stable (once), create or update the canary.

        ``rollout`` (the ModelRollout's name) labels a created canary
        ``modelrollout.io/rollout``. Nothing is changed when the answer is InitFailed.
        """
        stable_name, canary_name = spec.stable.deployment, spec.canary.deployment
        try:
            stable = await self.api.read_deployment(ns, stable_name)
        except NotFound:
            return InitFailed(f"spec.stable.deployment: Deployment {ns}/{stable_name} not found; the stable "
                              "(champion) Deployment must exist before the rollout starts")
        if spec.traffic.router == RouterKind.GATEWAY_API:
            problem = await verify_route(self.api, rollout_target(ns, spec, replicas_of(stable)))
            if problem is None:
                recorded = status.stable_record.template if status.stable_record else stable["spec"]["template"]
                problem = await self._stable_service_reaches_canary(ns, spec, recorded)
            if problem is not None:
                return InitFailed(problem)
        record = status.stable_record or StableRecord(
            replicas=replicas_of(stable), template=copy.deepcopy(stable["spec"]["template"]), recorded_at=self.now())
        if status.stable_record is not None:
            failed = await self._restore_recorded_stable(ns, spec, stable, record)
            if failed is not None:
                return failed
            # A restart (new revision, retry) finds the canary still serving: traffic goes back
            # to the stable first (within the serving floor), so the canary's pods are never
            # rolled to an unvalidated template while users are on them.
            try:
                serving = replicas_of(await self.api.read_deployment(ns, canary_name)) > 0
            except NotFound:
                serving = False
            if serving:
                await self.apply_weight(rollout_target(ns, spec, record.replicas), spec.traffic.router, 0)
        try:
            failed = await retry_conflicts(lambda: self._ensure_canary(ns, spec, stable, record, rollout),
                                           f"Deployment {ns}/{canary_name}")
        except TemplateError as exc:
            return InitFailed(str(exc))
        except Refused as exc:
            return InitFailed(f"spec.canary: the apiserver refused the canary Deployment {ns}/{canary_name}: {exc}")
        return failed or Initialized(record)

    async def _restore_recorded_stable(self, ns: str, spec: ModelRolloutSpec, stable: Json,
                                       record: StableRecord) -> InitFailed | None:
        """A retry or new revision after a promotion that stopped half-way: the stable runs the
        recorded champion again before any step (docs/operator.md, "The stable record").

        The stable's own rollout back to the recorded template is waited for before any weight
        change, also after a restart that finds the template already restored: mid-rollout its
        controller deletes ready pods of the older ReplicaSet (the challenger's, created once the
        refusal is gone) down to its own maxUnavailable, and scaling it meanwhile spreads the
        change proportionally over both ReplicaSets, so a stable cut to the serving floor would
        drop below it (chaos run: 8 ready at spec 6, then 5 < 6). With the replicas router it
        keeps its current size (the first weight change sizes it); with gatewayAPI the route
        sends the stable 100 − w % from the first step, so it gets its recorded replicas back
        first: the route never points at a stable without ready pods.
        """
        name = spec.stable.deployment
        gateway = spec.traffic.router == RouterKind.GATEWAY_API
        replicas = record.replicas if gateway else None
        restored = stable["spec"]["template"] == record.template and (replicas is None or replicas_of(stable) == replicas)
        if restored and rolled_out(stable):
            return None
        if not restored:
            try:
                await self._set_stable(ns, name, record.template, replicas)
            except Refused as exc:
                return InitFailed(f"the stable Deployment {ns}/{name} refused its recorded template: {exc}")
            log.info("restored the recorded pod template of the stable %s/%s before starting", ns, name)
        available, detail = await self._wait_available(ns, name, spec.analysis.progress_deadline_seconds)
        if available:
            return None
        cause = await self._stall_cause(ns, await self.api.read_deployment(ns, name))
        return InitFailed(f"the stable Deployment {ns}/{name} did not become available with its recorded template "
                          f"within {spec.analysis.progress_deadline_seconds}s (spec.analysis.progressDeadlineSeconds): "
                          f"{detail}; cause: {cause}; the canary keeps serving")

    async def _stable_service_reaches_canary(self, ns: str, spec: ModelRolloutSpec, stable_template: Json) -> str | None:
        """Why users would reach the canary while the route gives it 0 % (a shadow step, a
        dark start), or None. The route's stable backend is the Service named like the
        stable Deployment; a selector that also matches the canary's pod labels puts the
        canary's pods among its endpoints, whatever the route's weights (docs/shadow.md#services).
        A Service that does not exist (or selects nothing) sends nobody anywhere."""
        what = "its shadow step" if shadow_of(spec, 0) is not None else "its dark start" if dark_start(spec) else None
        if what is None:
            return None
        name = spec.stable.deployment
        try:
            service = await self.api.read_service(ns, name)
        except NotFound:
            return None
        selector = (service.get("spec") or {}).get("selector") or {}
        try:
            existing: Json | None = await self.api.read_deployment(ns, spec.canary.deployment)
        except NotFound:
            existing = None
        if existing is not None and not is_managed(existing):
            labels = ((existing["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        else:
            try:
                template = canary_pod_template(stable_template, spec.canary.template, f"Deployment {ns}/{name}")
            except TemplateError:
                return None  # the canary's own check names that problem
            labels = template["metadata"]["labels"]
        if not selects(selector, labels):
            return None
        return (f"Service {ns}/{name} (the stable's backend on spec.traffic.httpRoute) selects the canary's pods too "
                f"(selector {selector} matches the canary's pod labels), so users would be served by the canary "
                f"during {what}, while the route gives it 0 %; give the stable's pods a label the canary's do not "
                f"carry: add modelrollout.io/role: stable to the stable Deployment's pod template labels and to "
                f"the Service's selector (the operator's canary gets modelrollout.io/role: canary; docs/shadow.md)")

    async def _ensure_canary(self, ns: str, spec: ModelRolloutSpec, stable: Json, record: StableRecord,
                             rollout: str | None) -> InitFailed | None:
        canary_name = spec.canary.deployment
        overrides = spec.canary.template
        source = f"Deployment {ns}/{spec.stable.deployment}"
        pds = spec.analysis.progress_deadline_seconds
        try:
            existing = await self.api.read_deployment(ns, canary_name)
        except NotFound:
            existing = None
        if existing is None:
            template = canary_pod_template(record.template, overrides, source)
            body = canary_deployment(name=canary_name, namespace=ns, stable=stable, template=template,
                                     rollout=rollout, progress_deadline_seconds=pds)
            await self.api.create_deployment(ns, body)
            log.info("created canary Deployment %s/%s from %s", ns, canary_name, source)
            return None
        managed = is_managed(existing)
        digest = overrides.model_digest if overrides else None
        if not managed and digest is not None:
            actual = pod_template_digest(existing)
            if actual != digest:
                return InitFailed(
                    f"spec.canary.template.modelDigest: {digest} does not match the canary pod template's annotation "
                    f"{MODEL_DIGEST_ANNOTATION} ({actual or 'absent'}) on Deployment {ns}/{canary_name}; "
                    "deploy the model with that digest or fix spec.canary.template.modelDigest")

        async def attempt() -> None:
            current = await self.api.read_deployment(ns, canary_name)
            if managed:
                desired = canary_pod_template(record.template, overrides, source)
            else:  # the user's Deployment: overrides over its own template, its labels kept
                desired = apply_overrides(current["spec"]["template"], overrides, f"Deployment {ns}/{canary_name}")
            body = copy.deepcopy(current)
            body["spec"]["template"] = desired
            if managed:
                body["spec"]["progressDeadlineSeconds"] = pds
                if rollout:
                    body["metadata"].setdefault("labels", {})[ROLLOUT_LABEL] = rollout
            if body != current:
                body.pop("status", None)
                await self.api.replace_deployment(ns, canary_name, body)
                log.info("updated canary Deployment %s/%s's pod template", ns, canary_name)

        await retry_conflicts(attempt, f"Deployment {ns}/{canary_name}")
        return None

    # ------------------------------------------------------------------ promote

    async def promote(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus
                      ) -> PromotionApplied | PromotionProgress | PromotionFailed:
        """One batch of the handover: the stable gains up to maxSurge pods of the challenger's
        template, and once they are ready the canary gives up as many.

        Every call derives where the handover stands from the two Deployments, so a call
        after a restart resumes it: the stable runs the challenger's template (set on the
        first call, starting from 0 pods when the canary serves 100 %), its pods are waited
        for, the canary shrinks to ``total − stable`` (the route moves first with
        gatewayAPI), and the stable grows by the next batch. Peak: ``total + maxSurge``
        pods. A batch not ready within ``progressDeadlineSeconds`` stops the handover where
        it is, both sides serving, with the cause named (docs/operator.md, "Promotion").
        """
        record = status.stable_record
        stable_name, canary_name = spec.stable.deployment, spec.canary.deployment
        if record is None:
            return PromotionFailed("status.stableRecord is missing, so the handover has no end point; "
                                   "retry the rollout to record the stable first")
        try:
            canary = await self.api.read_deployment(ns, canary_name)
        except NotFound:
            return PromotionFailed(f"canary Deployment {ns}/{canary_name} not found; nothing to promote")
        stable = await self.api.read_deployment(ns, stable_name)
        total = record.replicas
        desired = promoted_template(canary["spec"]["template"], stable["spec"]["template"])
        target = rollout_target(ns, spec, total)
        # The batch's deadline counts from its start as persisted in status, so restarts of the
        # operator do not each wait the whole deadline again; a template set by this very call
        # starts the clock now (the operator's downtime before it never counts).
        since = status.promotion.batch_started_at if status.promotion is not None else None
        if stable["spec"]["template"] != desired:
            since = None
            start = 0 if status.canary_weight >= 100 else replicas_of(stable)
            try:
                await self._set_stable(ns, stable_name, desired, start)
            except Refused as exc:
                return PromotionFailed(f"the stable Deployment {ns}/{stable_name} refused the challenger's template "
                                       f"(nothing was handed over): {exc}")
            log.info("promotion of %s/%s: the stable takes the challenger's template at %d replicas",
                     ns, stable_name, start)
        available, detail = await self._wait_available(ns, stable_name, spec.analysis.progress_deadline_seconds,
                                                       since=since)
        stable = await self.api.read_deployment(ns, stable_name)
        ready = replicas_of(stable)
        if not available:
            cause = await self._stall_cause(ns, stable)
            return PromotionFailed(
                f"handover stopped at {available_replicas(stable)}/{total} stable pods ready with the challenger's "
                f"template: the stable Deployment {ns}/{stable_name} did not become available within "
                f"{spec.analysis.progress_deadline_seconds}s (spec.analysis.progressDeadlineSeconds): {detail}; "
                f"cause: {cause}")
        canary_keep = max(0, total - ready)
        if ready >= total:
            await self.apply_weight(target, spec.traffic.router, 0)
            await self._scale_if_present(ns, canary_name, 0)
            log.info("promoted %s/%s: the stable runs the challenger on %d pods, canary at 0", ns, stable_name, total)
            return PromotionApplied()
        if replicas_of(canary) > canary_keep:
            await self._hand_over_traffic(ns, spec, target, canary_keep)
        grown = min(total, ready + surge_of(spec, total))
        await self.api.scale_deployment(ns, stable_name, grown)
        return PromotionProgress(stable_ready=ready, canary_replicas=canary_keep, total=total)

    async def _hand_over_traffic(self, ns: str, spec: ModelRolloutSpec, target: RolloutTarget,
                                 canary_replicas: int) -> None:
        """The canary down to ``canary_replicas``; with gatewayAPI the route's share moves first."""
        total = target.total_replicas
        percent = -(-100 * canary_replicas // total) if total else 0
        if spec.traffic.router == RouterKind.GATEWAY_API:
            router = self.router(spec.traffic.router)
            if not isinstance(router, GatewayAPIRouter):  # a wiring mistake, never the user's: fail loudly, also under -O
                raise TypeError(f"the {spec.traffic.router.value} router is {type(router).__name__}, not GatewayAPIRouter")
            await router.set_route_weight(target, percent)
            await self.api.scale_deployment(ns, spec.canary.deployment, canary_replicas)
            return
        await self.api.patch_deployment(ns, spec.canary.deployment, {
            "metadata": {"annotations": {WEIGHT_ANNOTATION: str(percent)}},
            "spec": {"replicas": canary_replicas},
        })

    async def _stall_cause(self, ns: str, deployment: Json) -> str:
        selector = label_selector(deployment["spec"].get("selector") or {})
        try:
            pods, replicasets = await asyncio.gather(self.api.list_pods(ns, selector),
                                                     self.api.list_replicasets(ns, selector))
        except ClusterConflict as exc:
            return f"could not be read: {exc}"
        # The stable's selector also matches the canary's pods (they carry its labels): keep
        # only the stable's own ReplicaSets, and of their pods those of the current one.
        uid = deployment.get("metadata", {}).get("uid")
        owned = [rs for rs in replicasets
                 if any(o.get("uid") == uid for o in rs.get("metadata", {}).get("ownerReferences") or [])]
        current = current_pod_template_hash(deployment, owned)
        pods = [p for p in pods if current is not None
                and (p.get("metadata", {}).get("labels") or {}).get("pod-template-hash") == current]
        return stall_cause(deployment, owned, pods)

    async def _set_stable(self, ns: str, name: str, template: Json, replicas: int | None) -> None:
        """Replace the stable's pod template (and replicas) as a whole; no-op when it already holds."""

        async def attempt() -> None:
            current = await self.api.read_deployment(ns, name)
            body = copy.deepcopy(current)
            body["spec"]["template"] = copy.deepcopy(template)
            if replicas is not None:
                body["spec"]["replicas"] = replicas
            if body["spec"] != current["spec"]:
                body.pop("status", None)
                await self.api.replace_deployment(ns, name, body)

        await retry_conflicts(attempt, f"Deployment {ns}/{name}")

    async def _wait_available(self, ns: str, name: str, deadline_seconds: int,
                              since: datetime | None = None) -> tuple[bool, str]:
        """Poll until the Deployment is rolled out and available, or the deadline (counted from
        ``since``, else from now) passes; it is checked once even when the deadline is behind."""
        started = since if since is not None and since <= self.now() else self.now()
        while True:
            dep = await self.api.read_deployment(ns, name)
            if deployment_available(dep):
                return True, "available"
            st = dep.get("status") or {}
            want = replicas_of(dep)
            detail = (f"{st.get('updatedReplicas') or 0}/{want} updated, {st.get('availableReplicas') or 0}/{want} "
                      f"available, {st.get('replicas') or 0} total")
            current = (st.get("observedGeneration") or 0) >= (dep["metadata"].get("generation") or 0)
            if current and progress_deadline_exceeded(dep):
                return False, detail + " (Deployment condition Progressing=False, ProgressDeadlineExceeded)"
            if (self.now() - started).total_seconds() >= deadline_seconds:
                return False, detail
            await self._sleep(self.poll_interval)

    # ------------------------------------------------------------------ rollback

    async def rollback_phase(self, ns: str, spec: ModelRolloutSpec, status: ModelRolloutStatus,
                             phase: int) -> RollbackApplied:
        """docs/design.md#rollback phase 1 (traffic to 0 %), 2 (restore stable exactly) or 3 (canary to 0)."""
        record = status.stable_record
        if phase == 1:
            if record is not None:
                total = record.replicas
            else:  # aborted before the stable was recorded: nothing of it was changed
                total = replicas_of(await self.api.read_deployment(ns, spec.stable.deployment))
            await self.apply_weight(rollout_target(ns, spec, total), spec.traffic.router, 0)
        elif phase == 2:
            if record is not None:
                await self._set_stable(ns, spec.stable.deployment, record.template, record.replicas)
        elif phase == 3:
            await self._scale_if_present(ns, spec.canary.deployment, 0)
        else:
            raise ValueError(f"rollback phase {phase} does not exist; phases are 1, 2 and 3")
        return RollbackApplied(phase)

    async def _scale_if_present(self, ns: str, name: str, replicas: int) -> None:
        try:
            dep = await self.api.read_deployment(ns, name)
        except NotFound:
            return
        if replicas_of(dep) != replicas:
            await self.api.scale_deployment(ns, name, replicas)

    # ------------------------------------------------------------------ health

    async def canary_health(self, ns: str, canary: str, progress_deadline_seconds: int) -> CanaryHealth:
        """OOMKilled / CrashLoopBackOff pods of the canary's current ReplicaSet, and availability."""
        dep = await self.api.read_deployment(ns, canary)
        selector = label_selector(dep["spec"].get("selector") or {})
        pods, replicasets = await asyncio.gather(self.api.list_pods(ns, selector),
                                                 self.api.list_replicasets(ns, selector))
        # Failed pods of an older revision linger; they must not condemn the current one.
        current = current_pod_template_hash(dep, replicasets)
        if current is not None:
            pods = [p for p in pods if (p.get("metadata", {}).get("labels") or {}).get("pod-template-hash") == current]
        return canary_health_of(dep, pods, self.now(), progress_deadline_seconds, at_current_template=current is not None)


__all__ = ["KubeExecutor", "PodFailure", "pod_failure", "rollout_target"]
