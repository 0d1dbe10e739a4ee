"""The critical fast path's judgement (docs/design.md#fast-path): which breaches may skip the tick.

The regular tick scores every condition and may advance, promote or roll back; the fast
path looks far more often (every ``analysis.fastPathInterval``) and may only *start a
rollback*, and only for a breach the tick would also call critical. It runs the very
same condition functions on a narrower snapshot, with two differences that keep it from
becoming a noise amplifier:

* **α/10.** Checking thirty times per interval multiplies the chances of a false alarm;
  the binomial and Poisson gates run at a tenth of ``analysis.significance`` (a
  Bonferroni-style correction for the extra looks), so the fast path fires only on
  evidence the tick would find overwhelming.
* **Critical only.** A triggered-but-not-critical condition is the tick's business
  (persistence, the score): the fast path never returns anything but a rollback signal.

Pure: no I/O, the clock is an argument. The adapter that batches the queries and the
loop that calls ``critical_breach`` every second live in ``modelrollout.fast_path_loop``.
"""

from __future__ import annotations

from datetime import datetime

from ..api.models import DecisionPath, ModelRolloutSpec, ModelRolloutStatus, Phase
from .conditions import BUILTIN, thresholds_of
from .conditions.base import ConditionResult
from .decision import health_failure
from .machine import evaluation_context
from .observations import CriticalSignal
from .snapshot import CanaryHealth, Snapshot
from .windows import FAST_PATH_CONDITIONS, FastPathLook, fast_path_look

ALPHA_DIVISOR = 10.0


def watches(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> bool:
    """Whether the fast path looks at this rollout at all.

    Only while the canary serves traffic (Progressing or Paused with weight > 0, or
    mirrored requests in a shadow step) and the rollout may act: a dry run is left to the
    tick, which records its decisions once per interval instead of once per second.
    """
    return (status.phase in (Phase.PROGRESSING, Phase.PAUSED)
            and (status.canary_weight > 0 or status.mirror_percent is not None)
            and status.step_started_at is not None and status.revision is not None
            and not spec.analysis.dry_run)


def fast_path_significance(spec: ModelRolloutSpec) -> float:
    return spec.analysis.significance / ALPHA_DIVISOR


def critical_results(spec: ModelRolloutSpec, status: ModelRolloutStatus, snapshot: Snapshot,
                     now: datetime, look: FastPathLook | None = None) -> list[ConditionResult]:
    """The fast-path conditions' results at α/10, critical ones only, in the order of
    docs/design.md#the-seven-conditions. ``look``: the one the snapshot was read with,
    when the caller has it (``fast_path_look(spec, status, now)`` otherwise)."""
    ctx = evaluation_context(spec, status, now, significance=fast_path_significance(spec))
    resolved = ctx.thresholds
    covered = (look or fast_path_look(spec, status, now)).windows
    read = snapshot.windows  # what the adapter actually read (it leaves out young overridden ones)
    out = []
    for name in FAST_PATH_CONDITIONS:
        if thresholds_of(resolved, name).enabled is False or name.value not in covered \
                or (read is not None and name.value not in read):
            continue
        result = BUILTIN[name](snapshot, ctx)
        if result.critical:
            out.append(result)
    return out


def critical_breach(spec: ModelRolloutSpec, status: ModelRolloutStatus, snapshot: Snapshot,
                    now: datetime, look: FastPathLook | None = None) -> CriticalSignal | None:
    """A rollback signal when a fast-path condition is critical at α/10, else None.

    The reason reads like the tick's (``critical: latency: …``) so Events and history
    look the same whichever path caught the breach; ``path`` tells them apart.
    """
    if not watches(spec, status):
        return None
    critical = critical_results(spec, status, snapshot, now, look)
    if not critical:
        return None
    first = critical[0]
    evidence = {
        "condition": first.name,
        "message": first.message,
        "observed": dict(first.observed),
        "threshold": dict(first.threshold),
        "significance": fast_path_significance(spec),
        "alsoCritical": [r.name for r in critical[1:]],
    }
    return CriticalSignal(path=DecisionPath.FAST_PATH, trigger=first.name,
                          reason=f"critical: {first.name}: {first.message}", evidence=evidence)


def pod_health_signal(spec: ModelRolloutSpec, status: ModelRolloutStatus, health: CanaryHealth,
                      pod: str | None = None) -> CriticalSignal | None:
    """A rollback signal when the canary's current pods are OOMKilled or crash-looping.

    Only those two: they are facts, not statistics, so they need no tick to confirm them.
    Availability and progress deadlines stay with the tick, which measures how long.
    """
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or spec.analysis.dry_run:
        return None
    if not (health.oom_killed or health.crash_looping):
        return None
    failure = health_failure(CanaryHealth(oom_killed=health.oom_killed, crash_looping=health.crash_looping),
                             spec.analysis.progress_deadline_seconds)
    assert failure is not None
    evidence: dict[str, object] = {"oomKilled": health.oom_killed, "crashLooping": health.crash_looping}
    if pod:
        evidence["pod"] = pod
    return CriticalSignal(path=DecisionPath.POD_WATCH, trigger="kubernetesHealth", reason=f"critical: {failure}",
                          evidence=evidence)


__all__ = [
    "ALPHA_DIVISOR", "critical_breach", "critical_results", "fast_path_significance", "pod_health_signal", "watches",
]
