"""``kubectl modelrollout``: inspect and drive ModelRollouts from kubectl.

Installed as the console script ``kubectl-modelrollout``, which kubectl finds on PATH as
the ``modelrollout`` plugin. It writes only what the operator reads (docs/operator.md,
"Manual control"), so GitOps, ``kubectl patch`` and this plugin agree:

- ``pause``/``resume`` merge-patch ``spec.paused``;
- ``promote``/``promote --full``/``abort``/``retry`` write the annotation
  ``modelrollout.io/command`` = ``kind@<UTC timestamp>``; the operator runs each id once
  and records it in ``status.lastCommand``.

The module is cut in two: pure functions turn resource bodies (plain dicts, as the API
returns them) into text and commands into patch bodies, and a thin ``Cluster`` class does
the three API calls (get, list, patch). Rendering works on raw dicts rather than the
pydantic models so that a resource the operator rejected (``InvalidSpec``) still renders.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

import click

from .api.models import API_GROUP, API_VERSION, DEFAULT_STEPS, PLURAL, Phase

COMMAND_ANNOTATION = "modelrollout.io/command"
"""Same key as ``controller.COMMAND_ANNOTATION`` (a unit test keeps them equal; importing
the controller would pull scipy into every kubectl call)."""

EXIT_ERROR = 1
WATCH_SECONDS = 2.0
HISTORY_TAIL = 5
WIDTH = 120
"""Columns to wrap the observed/threshold values to when the terminal's width is unknown."""

Body = Mapping[str, Any]


class PluginError(Exception):
    """An error the plugin reports as one line on stderr, exit code 1."""


# ------------------------------------------------------------------------ commands (pure)


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
        raise PluginError(f"{_ref(body)} is {phase}: {kind} applies only when the rollout is {names}")


def pending_command(body: Body) -> str | None:
    """A command written to the annotation that the operator has not applied yet, if any."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(COMMAND_ANNOTATION)
    if not value or "@" not in value:
        return None
    return None if value == (body.get("status") or {}).get("lastCommand") else value


# ----------------------------------------------------------------------- rendering (pure)


def _ref(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"modelrollout {meta.get('namespace', '?')}/{meta.get('name', '?')}"


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
    from .api.durations import format_duration

    return [{"weight": s.weight, "duration": format_duration(s.duration)} for s in DEFAULT_STEPS]


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
    lines.append(f"  Step:     {_step_cell(body)}   canary weight {status.get('canaryWeight', 0)}%")
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
        lines.append(f"    {i + 1}. {str(s.get('weight')) + '%':>4}  for {s.get('duration', '-'):<8} {mark}".rstrip())

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
        lines.append(f"  Decision: {decision.get('action')} ({decision.get('path', 'tick')}, "
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
        return f"{_ref(body)}: no history yet"
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


def is_terminal(body: Body) -> bool:
    phase = phase_of(body)
    return phase in {p.value for p in Phase} and Phase(phase).is_terminal


# ------------------------------------------------------------------------------------ I/O


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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _width() -> int:
    """The terminal's columns ($COLUMNS, the tty), else ``WIDTH`` (output to a pipe or file)."""
    return shutil.get_terminal_size((WIDTH, 24)).columns


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _cluster(ctx: click.Context) -> Cluster:
    try:
        return Cluster(ctx.obj)
    except PluginError as exc:
        _fail(str(exc))


# ------------------------------------------------------------------------------------ CLI


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-n", "--namespace", default=None, help="namespace (default: the kubeconfig context's)")
@click.option("--kubeconfig", default=None, envvar="KUBECONFIG", type=click.Path(dir_okay=False),
              help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
@click.option("--context", default=None, help="kubeconfig context (default: the current one)")
@click.pass_context
def main(ctx: click.Context, namespace: str | None, kubeconfig: str | None, context: str | None) -> None:
    """Inspect and drive ModelRollouts: status, list, history, promote, abort, retry, pause, resume."""
    # A KUBECONFIG list (a:b) is passed whole: the client merges the files like kubectl does.
    ctx.obj = Target(kubeconfig=kubeconfig, context=context, namespace=namespace)


def _target_options(command: Any) -> Any:
    """``-n``, ``--kubeconfig`` and ``--context`` after the subcommand too, as kubectl takes
    them anywhere (``kubectl modelrollout status fraud -n ml``); they win over the group's."""

    @click.option("-n", "--namespace", "namespace_", default=None, help="namespace (default: the context's)")
    @click.option("--kubeconfig", "kubeconfig_", default=None, type=click.Path(dir_okay=False),
                  help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    @click.option("--context", "context_", default=None, help="kubeconfig context (default: the current one)")
    @functools.wraps(command)
    def with_target(*args: Any, namespace_: str | None, kubeconfig_: str | None, context_: str | None,
                    **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        base: Target = ctx.obj
        ctx.obj = Target(kubeconfig=kubeconfig_ or base.kubeconfig, context=context_ or base.context,
                         namespace=namespace_ or base.namespace)
        return command(*args, **kwargs)

    return with_target


def _run(fn: Any) -> Any:
    try:
        return fn()
    except PluginError as exc:
        _fail(str(exc))


@main.command()
@_target_options
@click.argument("name")
@click.option("-w", "--watch", is_flag=True, help=f"refresh every {WATCH_SECONDS:g}s until the phase is terminal")
@click.pass_context
def status(ctx: click.Context, name: str, watch: bool) -> None:
    """Phase, steps, weight, risk score and every condition of one rollout."""
    cluster = _cluster(ctx)
    body = _run(lambda: cluster.get(name))
    if not watch:
        click.echo(render_status(body, _now(), width=_width()))
        return
    try:
        while True:
            click.clear()
            click.echo(render_status(body, _now(), width=_width()))
            if is_terminal(body):
                return
            time.sleep(WATCH_SECONDS)
            body = _run(lambda: cluster.get(name))
    except KeyboardInterrupt:
        click.echo()


@main.command("list")
@_target_options
@click.option("-A", "--all-namespaces", is_flag=True, help="every namespace")
@click.pass_context
def list_(ctx: click.Context, all_namespaces: bool) -> None:
    """All rollouts: name, phase, step, weight, score, level, age."""
    cluster = _cluster(ctx)
    bodies = _run(lambda: cluster.list(all_namespaces))
    if not bodies:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace!r}"
        click.echo(f"No modelrollouts found in {where}.")
        return
    bodies.sort(key=lambda b: ((b.get("metadata") or {}).get("namespace", ""), (b.get("metadata") or {}).get("name", "")))
    click.echo(render_list(bodies, _now(), all_namespaces))


@main.command()
@_target_options
@click.argument("name")
@click.pass_context
def history(ctx: click.Context, name: str) -> None:
    """The status history (bounded audit trail), rollback evidence summarised."""
    cluster = _cluster(ctx)
    click.echo(render_history(_run(lambda: cluster.get(name)), _now()))


def _send_command(ctx: click.Context, name: str, kind: str, what: str) -> None:
    cluster = _cluster(ctx)
    body = _run(lambda: cluster.get(name))
    _run(lambda: check_command(kind, body))
    pending = pending_command(body)
    if pending:
        click.echo(f"note: replacing {pending}, which the operator has not applied yet", err=True)
    patch = command_patch(kind, _now())
    _run(lambda: cluster.patch(name, patch))
    value = patch["metadata"]["annotations"][COMMAND_ANNOTATION]
    click.echo(f"{_ref(body)}: {what} requested ({COMMAND_ANNOTATION}={value}); "
               f"the operator records it in status.lastCommand")


@main.command()
@_target_options
@click.argument("name")
@click.option("--full", is_flag=True, help="promote now (skip the remaining steps) instead of advancing one step")
@click.pass_context
def promote(ctx: click.Context, name: str, full: bool) -> None:
    """Advance to the next step, or with --full promote the challenger now."""
    _send_command(ctx, name, "promote-full" if full else "promote",
                  "full promotion" if full else "advance to the next step")


@main.command()
@_target_options
@click.argument("name")
@click.pass_context
def abort(ctx: click.Context, name: str) -> None:
    """Roll back now (traffic to the stable, its recorded template restored)."""
    _send_command(ctx, name, "abort", "rollback")


@main.command()
@_target_options
@click.argument("name")
@click.pass_context
def retry(ctx: click.Context, name: str) -> None:
    """Restart a RolledBack or Failed rollout from its first step."""
    _send_command(ctx, name, "retry", "retry from the first step")


def _set_paused(ctx: click.Context, name: str, paused: bool) -> None:
    cluster = _cluster(ctx)
    body = _run(lambda: cluster.get(name))
    word = "paused" if paused else "resumed"
    if bool((body.get("spec") or {}).get("paused")) == paused:
        click.echo(f"{_ref(body)}: already {'paused' if paused else 'not paused'} (spec.paused={str(paused).lower()})")
        return
    _run(lambda: cluster.patch(name, paused_patch(paused)))
    note = f" (phase {phase_of(body)}: takes effect on the next rollout)" if is_terminal(body) else ""
    click.echo(f"{_ref(body)}: {word} (spec.paused={str(paused).lower()}){note}")


@main.command()
@_target_options
@click.argument("name")
@click.pass_context
def pause(ctx: click.Context, name: str) -> None:
    """Hold at the current step (sets spec.paused=true)."""
    _set_paused(ctx, name, True)


@main.command()
@_target_options
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Carry on after a pause (sets spec.paused=false)."""
    _set_paused(ctx, name, False)


if __name__ == "__main__":
    main()
