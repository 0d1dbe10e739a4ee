"""``kubectl modelrollout``: inspect and drive ModelRollouts from kubectl.

Installed as the console script ``kubectl-modelrollout``, which kubectl finds on PATH as
the ``modelrollout`` plugin. It writes only what the operator reads (docs/operator.md,
"Manual control"), so GitOps, ``kubectl patch`` and this plugin agree:

- ``pause``/``resume`` merge-patch ``spec.paused``;
- ``promote``/``promote --full``/``abort``/``retry`` write the annotation
  ``modelrollout.io/command`` = ``kind@<UTC timestamp>``; the operator runs each id once
  and records it in ``status.lastCommand``.

The package is cut by job: pure functions turn commands into patch bodies and check the
phase (``commands.py``) and resource bodies into text (``render.py``); a thin ``Cluster``
class does the three API calls (get, list, patch; ``cluster.py``); this module is the
click CLI that ties them together. ``Cluster`` is looked up here when a command runs,
so a test replaces ``plugin.Cluster`` with a fake.
"""

from __future__ import annotations

import functools
import shutil
import sys
import time
from datetime import datetime, timezone
from typing import Any, NoReturn

import click

from .cluster import Cluster, Target
from .commands import (
    COMMAND_ANNOTATION,
    COMMAND_PHASES,
    Body,
    PluginError,
    check_command,
    command_id,
    command_patch,
    is_terminal,
    paused_patch,
    pending_command,
    phase_of,
    rollout_ref,
)
from .render import (
    HISTORY_TAIL,
    WIDTH,
    condition_table,
    evidence_summary,
    format_age,
    history_table,
    parse_time,
    render_history,
    render_list,
    render_status,
    steps_of,
    table,
)

EXIT_ERROR = 1
WATCH_SECONDS = 2.0


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
    click.echo(f"{rollout_ref(body)}: {what} requested ({COMMAND_ANNOTATION}={value}); "
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
        click.echo(f"{rollout_ref(body)}: already {'paused' if paused else 'not paused'} (spec.paused={str(paused).lower()})")
        return
    _run(lambda: cluster.patch(name, paused_patch(paused)))
    note = f" (phase {phase_of(body)}: takes effect on the next rollout)" if is_terminal(body) else ""
    click.echo(f"{rollout_ref(body)}: {word} (spec.paused={str(paused).lower()}){note}")


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


__all__ = [
    "COMMAND_ANNOTATION", "COMMAND_PHASES", "EXIT_ERROR", "HISTORY_TAIL", "WATCH_SECONDS", "WIDTH", "Body",
    "Cluster", "PluginError", "Target", "check_command", "command_id", "command_patch", "condition_table",
    "evidence_summary", "format_age", "history_table", "is_terminal", "main", "parse_time", "paused_patch",
    "pending_command", "phase_of", "render_history", "render_list", "render_status", "rollout_ref", "steps_of",
    "table",
]
