"""The shadow step (docs/shadow.md): requests copied to the canary, none of its answers
served. Pure helpers shared by the state machine and the decision rules.

A rollout is shadowing while ``status.mirrorPercent`` is set: the state machine sets it
when the first step is a shadow step and clears it when the rollout leaves that step
(advance, manual promote, rollback), so a restart re-applies exactly the mirror that
status records (``pending_actions``).
"""

from __future__ import annotations

from ..api.models import ModelRolloutSpec, ModelRolloutStatus, ShadowStep
from .actions import MirrorTraffic, PrepareCanary


def shadow_of(spec: ModelRolloutSpec, index: int) -> ShadowStep | None:
    """The shadow settings of step ``index``, None for a weighted step (or past the end)."""
    return spec.steps[index].shadow if 0 <= index < len(spec.steps) else None


def mirroring(status: ModelRolloutStatus) -> bool:
    return status.mirror_percent is not None


def mirror_action(spec: ModelRolloutSpec, percent: int | None = None) -> MirrorTraffic:
    """The first step's mirror: sized by ``shadow.replicas``, else for the first weighted
    step's share, so the canary meets real traffic with the pods it was judged on.
    ``percent``: the share status records (a restart re-applies what was judged, and the
    next tick reconciles an edited spec), else the spec's."""
    shadow = spec.steps[0].shadow
    assert shadow is not None, "mirror_action on a rollout without a shadow step"
    return MirrorTraffic(percent=percent or shadow.percent, size_percent=spec.first_weight, replicas=shadow.replicas)


def prepare_action(spec: ModelRolloutSpec) -> PrepareCanary:
    """The dark start's sizing (docs/integrity.md): the size of the first step, shadow or not."""
    shadow = spec.steps[0].shadow
    if shadow is None:
        return PrepareCanary(spec.steps[0].traffic_weight)
    return PrepareCanary(spec.first_weight, replicas=shadow.replicas)


def step_description(spec: ModelRolloutSpec, index: int) -> str:
    """How a step routes, for messages: '5%' or 'shadow (100% of requests mirrored)'."""
    shadow = shadow_of(spec, index)
    if shadow is None:
        return f"{spec.steps[index].traffic_weight}%"
    return f"shadow ({shadow.percent}% of requests mirrored, no user traffic)"
