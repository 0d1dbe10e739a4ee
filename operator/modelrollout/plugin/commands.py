"""What the plugin writes and when the operator would act on it: pure functions of resource bodies.

``pause``/``resume`` merge-patch ``spec.paused``; ``promote``/``promote --full``/``abort``/
``retry`` write the annotation ``modelrollout.io/command`` = ``kind@<UTC timestamp>``.
A command the operator would ignore in the rollout's phase is refused here, naming the phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..api.models import Phase

COMMAND_ANNOTATION = "modelrollout.io/command"
"""Same key as ``controller.COMMAND_ANNOTATION`` (a unit test keeps them equal; importing
the controller would pull scipy into every kubectl call)."""

Body = Mapping[str, Any]


class PluginError(Exception):
    """An error the plugin reports as one line on stderr, exit code 1."""


# Which phases each annotation command acts in: the same sets as core.machine._command,
# so the plugin refuses what the operator would silently ignore.
COMMAND_PHASES: dict[str, frozenset[Phase]] = {
    "promote": frozenset({Phase.PROGRESSING, Phase.PAUSED}),
    "promote-full": frozenset({Phase.PROGRESSING, Phase.PAUSED}),
    "abort": frozenset({Phase.INITIALIZING, Phase.PROGRESSING, Phase.PAUSED}),
    "retry": frozenset({Phase.ROLLED_BACK, Phase.FAILED}),
}


def command_id(kind: str, now: datetime) -> str:
    """``kind@2026-11-26T17:00:00.123456Z``: a fresh id, so the operator runs it once."""
    if kind not in COMMAND_PHASES:
        raise ValueError(f"unknown command {kind!r}; allowed: {', '.join(COMMAND_PHASES)}")
    return f"{kind}@{now.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def command_patch(kind: str, now: datetime) -> dict[str, Any]:
    """The JSON merge patch that asks the operator to run ``kind``."""
    return {"metadata": {"annotations": {COMMAND_ANNOTATION: command_id(kind, now)}}}


def paused_patch(paused: bool) -> dict[str, Any]:
    """The JSON merge patch for pause/resume: a spec field, as GitOps would write it."""
    return {"spec": {"paused": paused}}


def phase_of(body: Body) -> str:
    return str((body.get("status") or {}).get("phase") or Phase.PENDING.value)


def check_command(kind: str, body: Body) -> None:
    """Raise ``PluginError`` naming the phase when the operator would ignore ``kind`` now."""
    phase = phase_of(body)
    allowed = COMMAND_PHASES[kind]
    if phase not in {p.value for p in allowed}:
        names = " or ".join(sorted(p.value for p in allowed))
        raise PluginError(f"{rollout_ref(body)} is {phase}: {kind} applies only when the rollout is {names}")


def pending_command(body: Body) -> str | None:
    """A command written to the annotation that the operator has not applied yet, if any."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(COMMAND_ANNOTATION)
    if not value or "@" not in value:
        return None
    return None if value == (body.get("status") or {}).get("lastCommand") else value


def is_terminal(body: Body) -> bool:
    phase = phase_of(body)
    return phase in {p.value for p in Phase} and Phase(phase).is_terminal


def rollout_ref(body: Body) -> str:
    """``modelrollout ns/name``, how every message names the rollout."""
    meta = body.get("metadata") or {}
    return f"modelrollout {meta.get('namespace', '?')}/{meta.get('name', '?')}"
