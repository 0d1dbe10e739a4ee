"""Model integrity: is the model the canary serves the model the rollout declared?

A pod template can say one thing and the server load another: a mutable tag moved, a
model fetched at start-up from a bucket that changed, an init container that fell back
to a cached copy. The server reports what it actually loaded, as the metrics contract's
``model_info{namespace, deployment, pod, digest} 1``; the snapshot carries each canary
pod's digest (``SideMetrics.model_digests``). With
``spec.canary.template.modelDigest`` set:

* a pod reporting any other digest is a **critical** breach, ``modelIntegrity``, outside
  the score like Kubernetes health: it is a fact, not a statistic, so one report is
  enough. The tick judges it, not the fast path: only the tick's health read knows which
  pods are the canary's current template (``CanaryHealth.current_pods``), and a pod of
  an earlier template reports the model it was given;
* a step does not complete, and the rollout does not promote, until every ready canary
  pod reports the declared digest (``unverified``): an unverified model never gets more
  traffic than the step it is at;
* with the Gateway API router the canary starts **dark** (``dark_start``): scaled for the
  first step with the route's canary weight at 0, and given its weight only once every
  ready pod reports the declared digest (``awaiting_model``). The replicas router
  cannot keep a Ready pod out of its Service, so there the first step's share is served
  while the digest is checked.

An unconfirmed model is bounded like a canary short of its size: ``progressDeadlineSeconds``
after it could have been confirmed, the rollout rolls back (``core.decision``; the dark
start: ``unconfirmed_for_too_long``).

Pure; see docs/integrity.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.models import ModelRolloutSpec, ModelRolloutStatus, Phase, RouterKind
from .snapshot import CanaryHealth, Snapshot

MODEL_INTEGRITY = "modelIntegrity"
"""The trigger a wrong digest rolls back with (Events, status.rollback, metrics)."""


@dataclass(frozen=True, slots=True)
class IntegrityVerdict:
    """What the canary's reports say against the declared digest."""

    breach: str | None = None
    """Why the canary serves another model (critical), or None."""
    unverified: str | None = None
    """Why the declared model is not confirmed on every ready pod yet, or None."""
    evidence: dict[str, Any] = field(default_factory=dict)


VERIFIED = IntegrityVerdict()


def declared_digest(spec: ModelRolloutSpec) -> str | None:
    return spec.canary.template.model_digest if spec.canary.template else None


def dark_start(spec: ModelRolloutSpec) -> bool:
    """Whether the canary gets no traffic until its model is confirmed: a digest is
    declared and the router can route 0 % to pods that exist (Gateway API)."""
    return declared_digest(spec) is not None and spec.traffic.router == RouterKind.GATEWAY_API


def awaiting_model(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> bool:
    """Whether the rollout is at its dark start: progressing, no traffic routed yet.

    Derived, not stored: in Progressing or Paused the canary's weight is never 0 otherwise
    (a reduce stops at the first weighted step's weight) but in a shadow step, which
    status marks (``mirrorPercent``), so a restart finds the same answer."""
    return (dark_start(spec) and status.phase in (Phase.PROGRESSING, Phase.PAUSED)
            and status.canary_weight == 0 and status.current_step == 0 and status.mirror_percent is None)


def unconfirmed_for_too_long(spec: ModelRolloutSpec, since: datetime, now: datetime) -> str | None:
    """The rollback reason once a model has gone unconfirmed for ``progressDeadlineSeconds``
    from ``since`` (when it could first have been confirmed), else None."""
    deadline = timedelta(seconds=spec.analysis.progress_deadline_seconds)
    if now - since < deadline:
        return None
    return (f"the declared model {_short(declared_digest(spec) or '')} was not confirmed by the canary's servers "
            f"within spec.analysis.progressDeadlineSeconds ({spec.analysis.progress_deadline_seconds}s)")


def judge_integrity(spec: ModelRolloutSpec, snapshot: Snapshot, health: CanaryHealth | None = None) -> IntegrityVerdict:
    """The integrity verdict of one snapshot (``VERIFIED`` when no digest is declared).

    The pods judged are the canary's ready pods at its current template
    (``health.current_pods``): a pod of an earlier template, still terminating or not
    yet replaced, reports the model it was given, and must not condemn the new one.
    Without that list (a failed health read, a replay, a snapshot file) no pod can be
    condemned: another digest leaves the model unverified, and every reporting pod on the
    declared one (at least one) confirms it.
    """
    declared = declared_digest(spec)
    if declared is None:
        return VERIFIED
    reported = (snapshot.canary.model_digests if snapshot.canary else None) or {}
    current = health.current_pods if health is not None else None
    judged = {pod: digest for pod, digest in reported.items() if current is None or pod in current}
    evidence: dict[str, Any] = {"declared": declared, "served": dict(sorted(judged.items()))}
    wrong = {pod: digest for pod, digest in judged.items() if digest != declared}
    if wrong and current is None:
        return IntegrityVerdict(unverified=f"{len(wrong)} pod(s) report another model, but the canary's current pods "
                                           "are unknown (its health could not be read)", evidence=evidence)
    if wrong:
        listed = ", ".join(f"{pod} reports {digest}" for pod, digest in sorted(wrong.items()))
        return IntegrityVerdict(breach=f"canary serves another model: {listed}; declared {declared} "
                                       "(spec.canary.template.modelDigest)", evidence=evidence)
    confirmed = sum(1 for digest in judged.values() if digest == declared)
    if current is not None and not current:
        return IntegrityVerdict(unverified="no canary pod is ready yet", evidence=evidence)
    if current is not None and confirmed < len(current):
        return IntegrityVerdict(unverified=f"{confirmed}/{len(current)} ready canary pods report the declared "
                                           f"model {_short(declared)} in model_info", evidence=evidence)
    if confirmed == 0:
        return IntegrityVerdict(unverified="no canary pod reports the declared model yet (model_info with digest "
                                           f"{_short(declared)}; the server must export it, docs/integrity.md)",
                                evidence=evidence)
    return IntegrityVerdict(evidence=evidence)


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 19 else digest


__all__ = ["MODEL_INTEGRITY", "VERIFIED", "IntegrityVerdict", "awaiting_model", "dark_start", "declared_digest",
           "judge_integrity", "unconfirmed_for_too_long"]
