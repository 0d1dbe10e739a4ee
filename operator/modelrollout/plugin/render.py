"""The plugin's views, pure: resource bodies (plain dicts, as the API returns them) into text.

Rendering works on raw dicts rather than the pydantic models so that a resource the
operator rejected (``InvalidSpec``) still renders.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ..api.models import DEFAULT_STEPS, DecisionPath, Phase
from .commands import Body, is_terminal, pending_command, phase_of, rollout_ref

HISTORY_TAIL = 5
WIDTH = 120
"""Columns to wrap the observed/threshold values to when the terminal's width is unknown."""


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_age(value: Any, now: datetime) -> str:
    """kubectl-style age: ``45s``, ``12m``, ``3h20m``, ``2d4h``; ``-`` when unknown."""
    at = parse_time(value)
    if at is None:
        return "-"
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pairs(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"{k}={_num(v)}" for k, v in values.items())


def _threshold_first_shared(threshold: Mapping[str, Any] | None,
                            observed: Mapping[str, Any] | None) -> dict[str, Any]:
    """The thresholds, those with an observed value of the same name first (``p95_ms``
    observed 8.5 next to ``p95_ms`` bound 3), so the eye pairs them."""
    threshold = dict(threshold or {})
    shared = [k for k in (observed or {}) if k in threshold]
    return {**{k: threshold[k] for k in shared}, **{k: v for k, v in threshold.items() if k not in shared}}


def _versus(observed: Mapping[str, Any] | None, threshold: Mapping[str, Any] | None) -> str:
    """``p95_ms 8.517 vs 3, …`` for the values observed and bounded under the same name."""
    threshold = threshold or {}
    return ", ".join(f"{k} {_num(v)} vs {_num(threshold[k])}" for k, v in (observed or {}).items() if k in threshold)


def condition_table(conditions: Sequence[Mapping[str, Any]], width: int = WIDTH) -> str:
    """One row per condition (severity, state, the operator's message), and under each its
    observed and threshold values, wrapped to ``width`` columns."""
    header = ["CONDITION", "SEVERITY", "STATE", "MESSAGE"]
    rows = [[c.get("name"), f"{float(c.get('severity') or 0):.2f}", _flags(c), c.get("message") or ""]
            for c in conditions]
    lines = table(header, rows).splitlines()
    pad = " " * (max(len(str(r[0])) for r in [header, *rows]) + 2)
    out = [lines[0]]
    for line, c in zip(lines[1:], conditions):
        out.append(line)
        observed = c.get("observed") or {}
        for label, values in (("observed", observed), ("threshold", _threshold_first_shared(c.get("threshold"),
                                                                                              observed))):
            if not values:
                continue
            lead = f"{pad}{label:<10} "
            wrapped = textwrap.wrap(_pairs(values), width=max(40, width - len(lead)), break_on_hyphens=False,
                                    break_long_words=False)
            out.extend((lead if i == 0 else " " * len(lead)) + chunk for i, chunk in enumerate(wrapped))
    return "\n".join(out)


def steps_of(body: Body) -> list[dict[str, Any]]:
    """The spec's steps as written, or the defaults the operator applies when omitted."""
    steps = (body.get("spec") or {}).get("steps")
    if steps:
        return [dict(s) for s in steps]
    from ..api.durations import format_duration

    return [{"weight": s.traffic_weight, "duration": format_duration(s.hold_for)} for s in DEFAULT_STEPS]


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns like ``kubectl get`` (two spaces between columns)."""
    cells = [list(header)] + [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _step_cell(body: Body) -> str:
    status = body.get("status") or {}
    total = len(steps_of(body))
    if not status.get("phase"):
        return f"-/{total}"
    return f"{int(status.get('currentStep') or 0) + 1}/{total}"


def _flags(condition: Mapping[str, Any]) -> str:
    flags = [name for name in ("critical", "triggered", "inconclusive", "noData") if condition.get(name)]
    return ",".join(flags) if flags else "ok"


def render_status(body: Body, now: datetime, history_tail: int = HISTORY_TAIL, width: int = WIDTH) -> str:
    """The ``status`` view of one rollout (a whole resource as the API returns it), for a
    terminal ``width`` columns wide."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    phase = phase_of(body)
    lines = [f"ModelRollout {meta.get('namespace', '?')}/{meta.get('name', '?')}"]
    stable = (spec.get("stable") or {}).get("deployment", "-")
    canary = (spec.get("canary") or {}).get("deployment", "-")
    image = ((spec.get("canary") or {}).get("template") or {}).get("image")
    lines.append(f"  Phase:    {phase}" + ("  (spec.paused)" if spec.get("paused") else ""))
    if status.get("message"):
        lines.append(f"  Message:  {status['message']}")
    lines.append(f"  Stable:   {stable}")
    lines.append(f"  Canary:   {canary}" + (f"  ({image})" if image else ""))
    if status.get("revision"):
        lines.append(f"  Revision: {status['revision']}")

    steps = steps_of(body)
    current = int(status.get("currentStep") or 0)
    succeeded = phase == Phase.SUCCEEDED.value
    mirror = status.get("mirrorPercent")
    lines.append(f"  Step:     {_step_cell(body)}   canary weight {status.get('canaryWeight', 0)}%"
                 + (f", {mirror}% of requests mirrored to it" if mirror else ""))
    for i, s in enumerate(steps):
        if succeeded or i < current:
            mark = "done"
        elif i == current and status.get("phase") and phase not in (Phase.ROLLED_BACK.value, Phase.FAILED.value):
            started = status.get("stepStartedAt")
            mark = "current" + (f", {format_age(started, now)} in" if started else "")
        elif i == current and status.get("phase"):
            mark = "stopped here"
        else:
            mark = ""
        shadow = s.get("shadow")
        if isinstance(shadow, dict):  # docs/shadow.md: mirrored requests, no user traffic
            what, held = f"shadow {shadow.get('percent', 100)}% mirrored", shadow.get("duration", "-")
        else:
            what, held = f"{str(s.get('weight')) + '%':>4}", s.get("duration", "-")
        lines.append(f"    {i + 1}. {what}  for {held:<8} {mark}".rstrip())

    risk = status.get("risk")
    if risk:
        lines.append(f"  Risk:     score {_num(risk.get('score'))}  level {risk.get('level', '-')}"
                     f"  (evaluated {format_age(risk.get('evaluatedAt'), now)} ago)")
        conditions = risk.get("conditions") or []
        if conditions:
            lines.append(_indent(condition_table(conditions, width - 4), 4))
    else:
        lines.append("  Risk:     not evaluated yet")

    decision = status.get("decision")
    if decision:
        lines.append(f"  Decision: {decision.get('action')} ({decision.get('path', DecisionPath.TICK)}, "
                     f"{format_age(decision.get('at'), now)} ago): {decision.get('reason', '')}")
    if status.get("nextEvaluationAt") and not is_terminal(body):
        lines.append(f"  Next evaluation: {status['nextEvaluationAt']}")
    if status.get("lastCommand"):
        lines.append(f"  Last command: {status['lastCommand']}")
    pending = pending_command(body)
    if pending:
        lines.append(f"  Pending command: {pending} (not applied by the operator yet)")

    conditions = status.get("conditions") or []
    if conditions:
        lines.append("  Conditions:")
        lines.append(_indent(table(["TYPE", "STATUS", "REASON", "AGE"],
                                   [[c.get("type"), c.get("status"), c.get("reason"),
                                     format_age(c.get("lastTransitionTime"), now)] for c in conditions]), 4))
    history = status.get("history") or []
    if history:
        shown = history[-history_tail:]
        lines.append(f"  History (last {len(shown)} of {len(history)}):")
        lines.append(_indent(history_table(shown, now), 4))
    return "\n".join(lines)


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


def evidence_summary(evidence: Mapping[str, Any] | None) -> str:
    """One line from a rollback evidence record: trigger, score, the worst conditions, recovery time."""
    if not evidence:
        return ""
    parts = []
    if evidence.get("trigger"):
        parts.append(f"trigger={evidence['trigger']}")
    if evidence.get("score") is not None:
        parts.append(f"score={_num(evidence['score'])}" + (f" ({evidence['level']})" if evidence.get("level") else ""))
    bad = [c for c in evidence.get("conditions") or [] if c.get("critical") or float(c.get("severity") or 0) > 0]
    bad.sort(key=lambda c: (not c.get("critical"), -float(c.get("severity") or 0)))
    for c in bad[:3]:
        versus = _versus(c.get("observed"), c.get("threshold"))
        detail = c.get("message") or f"{_pairs(c.get('observed'))} vs {_pairs(c.get('threshold'))}"
        parts.append(f"{c.get('name')} sev {float(c.get('severity') or 0):.2f}"
                     + (" CRITICAL" if c.get("critical") else "") + f": {detail}"
                     + (f" [{versus}]" if versus and c.get("message") else ""))
    if evidence.get("timeToRecoverSeconds") is not None:
        parts.append(f"recovered in {_num(evidence['timeToRecoverSeconds'])}s")
    return "; ".join(parts)


def history_table(entries: Sequence[Mapping[str, Any]], now: datetime) -> str:
    rows = []
    for h in entries:
        step = h.get("step")
        weight = h.get("weight")
        rows.append([h.get("at", "-"), format_age(h.get("at"), now), h.get("kind"),
                     "-" if step is None else int(step) + 1, "-" if weight is None else f"{weight}%",
                     _num(h.get("score")), h.get("message", "")])
        summary = evidence_summary(h.get("evidence"))
        if summary:
            rows.append(["", "", "", "", "", "", f"  evidence: {summary}"])
    return table(["TIME", "AGE", "KIND", "STEP", "WEIGHT", "SCORE", "MESSAGE"], rows)


def render_history(body: Body, now: datetime) -> str:
    history = (body.get("status") or {}).get("history") or []
    if not history:
        return f"{rollout_ref(body)}: no history yet"
    return history_table(history, now)


def render_list(bodies: Iterable[Body], now: datetime, all_namespaces: bool = False) -> str:
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "PHASE", "STEP", "WEIGHT", "SCORE", "LEVEL", "AGE"]
    rows = []
    for body in bodies:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        risk = status.get("risk") or {}
        row = [meta.get("name"), phase_of(body), _step_cell(body), f"{status.get('canaryWeight', 0)}%",
               _num(risk.get("score")), risk.get("level", "-"), format_age(meta.get("creationTimestamp"), now)]
        rows.append(([meta.get("namespace")] if all_namespaces else []) + row)
    return table(header, rows)
