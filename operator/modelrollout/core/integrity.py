"""Model integrity: is the model the canary serves the model the rollout declared?

A pod template can say one thing and the server load another: a mutable tag moved, a
model fetched at start-up from a bucket that changed, an init container that fell back
to a cached copy. The server reports what it actually loaded, as the metrics contract's
``model_info{namespace, deployment, pod, digest} 1``; the snapshot carries the canary's
pods counted per digest (``SideMetrics.model_digests``). With
``spec.canary.template.modelDigest`` set:

* a pod reporting any other digest is a **critical** breach, ``modelIntegrity``, outside
  the score like Kubernetes health: it is a fact, not a statistic, so one report is
  enough and the fast path acts on it within its period;
* a step does not complete, and the rollout does not promote, until every available
  canary pod reports the declared digest (``unverified``): an unverified model never
  gets more traffic than the step it is at.

Pure; see docs/integrity.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.models import ModelRolloutSpec
from .snapshot import CanaryHealth, Snapshot

MODEL_INTEGRITY = "modelIntegrity"
"""The trigger a wrong digest rolls back with (Events, status.rollback, metrics)."""


@dataclass(frozen=True, slots=True)
class IntegrityVerdict:
    """What the canary's reports say against the declared digest."""

    breach: str | None = None
    """Why the canary serves another model (critical), or None."""
    unverified: str | None = None
    """Why the declared model is not confirmed on every available pod yet, or None."""
    evidence: dict[str, Any] = field(default_factory=dict)


VERIFIED = IntegrityVerdict()


def declared_digest(spec: ModelRolloutSpec) -> str | None:
    return spec.canary.template.model_digest if spec.canary.template else None


def judge_integrity(spec: ModelRolloutSpec, snapshot: Snapshot, health: CanaryHealth | None = None) -> IntegrityVerdict:
    """The integrity verdict of one snapshot (``VERIFIED`` when no digest is declared).

    ``health``: the canary's Kubernetes health, when known, so that "every pod" means
    every available pod; without it, at least one pod must report the declared digest.
    """
    declared = declared_digest(spec)
    if declared is None:
        return VERIFIED
    reported = (snapshot.canary.model_digests if snapshot.canary else None) or {}
    served = {digest: int(count or 0) for digest, count in reported.items() if (count or 0) > 0}
    evidence: dict[str, Any] = {"declared": declared, "served": served}
    others = {digest: n for digest, n in served.items() if digest != declared}
    if others:
        listed = ", ".join(f"{n} pod(s) {digest}" for digest, n in sorted(others.items()))
        return IntegrityVerdict(breach=f"canary serves another model: {listed}; declared {declared} "
                                       "(spec.canary.template.modelDigest)", evidence=evidence)
    confirmed = served.get(declared, 0)
    expected = health.available_replicas if health is not None and health.available_replicas is not None else None
    if confirmed == 0:
        return IntegrityVerdict(unverified="no canary pod reports the declared model yet (model_info with digest "
                                           f"{_short(declared)}; the server must export it, docs/integrity.md)",
                                evidence=evidence)
    if expected is not None and confirmed < expected:
        return IntegrityVerdict(unverified=f"{confirmed}/{expected} available canary pods report the declared "
                                           f"model {_short(declared)}", evidence=evidence)
    return IntegrityVerdict(evidence=evidence)


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 19 else digest


__all__ = ["MODEL_INTEGRITY", "VERIFIED", "IntegrityVerdict", "declared_digest", "judge_integrity"]
