"""The ``modelrollout`` command line: ask what the operator would decide, without a cluster.

``evaluate`` and ``replay`` go through exactly the state machine the operator runs, so
what they print is what the operator would do. Exit codes: 0 whatever the decision, 2
with a message naming the field on invalid input (a rollout, snapshot or status).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import ValidationError

from . import __version__
from .api.manifests import ManifestError, describe_validation_error, iter_documents, load_rollout
from .api.models import ModelRolloutStatus, Phase
from .api.thresholds import Profile

if TYPE_CHECKING:  # the operator's modules load only for ``run``: evaluate and replay stay light
    from .wiring import OperatorConfig

EXIT_INVALID = 2
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:\s*(.*)$")


def _http_headers(headers: tuple[str, ...], bearer_token_file: Path | None) -> dict[str, str]:
    """``--header 'Name: value'`` (repeatable) and ``--bearer-token-file``, as one mapping."""
    out: dict[str, str] = {}
    for text in headers:
        match = HEADER.match(text)
        if match is None or not match.group(2).strip():
            _fail(f"--header {text!r}: expected 'Name: value', e.g. 'X-Scope-OrgID: ml'")
        out[match.group(1)] = match.group(2).strip()
    if bearer_token_file is not None:
        if any(name.lower() == "authorization" for name in out):
            _fail("--bearer-token-file and --header 'Authorization: …' both set the Authorization header; keep one")
        try:
            token = bearer_token_file.read_text().strip()
        except OSError as exc:
            _fail(f"--bearer-token-file {bearer_token_file}: {exc.strerror or exc}")
        if not token:
            _fail(f"--bearer-token-file {bearer_token_file}: the file is empty")
        out["Authorization"] = f"Bearer {token}"
    return out


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        _fail(f"{what} {path}: cannot read: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{what} {path}: not valid JSON: {exc}")


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--now: {value!r} is not an ISO-8601 time, e.g. 2026-11-24T12:00:00Z")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _rollout(path: Path):  # -> ModelRollout
    try:
        return load_rollout(path)
    except ManifestError as exc:
        _fail(str(exc))


def _snapshot(data: Any, where: str):  # -> Snapshot
    from .core.snapshot import load_snapshot

    if not isinstance(data, dict):
        _fail(f"{where}: a snapshot is a JSON object")
    try:
        return load_snapshot(data)
    except ValidationError as exc:
        _fail(f"{where}: " + "; ".join(describe_validation_error(exc, "snapshot")))


def _status(data: Any, where: str) -> ModelRolloutStatus:
    if isinstance(data, dict) and "status" in data and isinstance(data["status"], dict) and "spec" in data:
        data = data["status"]  # a whole resource, e.g. kubectl get mro X -o json
    try:
        return ModelRolloutStatus.model_validate(data)
    except ValidationError as exc:
        _fail(f"{where}: " + "; ".join(describe_validation_error(exc, "status")))


def _dump(record: dict[str, Any], pretty: bool) -> str:
    return json.dumps(record, indent=2 if pretty else None, default=str)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelrollout")
def main() -> None:
    """Roll ML models out safely: canary steps, seven risk conditions, automatic rollback."""


@main.command()
@click.option("-f", "--filename", "rollout_path", required=True, type=click.Path(path_type=Path),
              help="ModelRollout manifest (the first ModelRollout document is used)")
@click.option("--snapshot", "snapshot_path", required=True, type=click.Path(path_type=Path),
              help="metrics snapshot (format v1, JSON)")
@click.option("--status", "status_path", type=click.Path(path_type=Path),
              help="the rollout's status (JSON; a whole resource works too). Default: first step, no history")
@click.option("--now", "now_text", help="evaluation time, ISO-8601 (default: the snapshot's 'at')")
@click.option("--pretty/--compact", default=True, help="indent the JSON output")
def evaluate(rollout_path: Path, snapshot_path: Path, status_path: Path | None, now_text: str | None,
             pretty: bool) -> None:
    """Print the decision the operator would take on one snapshot (JSON)."""
    from .core.integrity import dark_start
    from .core.shadow import shadow_of
    from .core.machine import initial_status, revision_of, step
    from .core.observations import MetricsObserved
    from .core.replay import decision_record

    rollout = _rollout(rollout_path)
    snapshot = _snapshot(_read_json(snapshot_path, "snapshot"), str(snapshot_path))
    now = _parse_now(now_text) or snapshot.at
    spec = rollout.spec
    if status_path is None:
        status = initial_status(spec, now)
    else:
        status = _status(_read_json(status_path, "status"), str(status_path))
        # evaluate answers "what now, from this status": the status is taken to belong to this spec.
        updates: dict[str, Any] = {"revision": revision_of(spec)}
        if not status.phase.is_analysing:
            updates["phase"] = Phase.PROGRESSING
        if status.step_started_at is None:
            updates["step_started_at"] = now
        if status.current_step >= len(spec.steps):
            _fail(f"status.currentStep: {status.current_step} is beyond the spec's {len(spec.steps)} steps")
        dark = dark_start(spec) and status.current_step == 0 and status.mirror_percent is None
        shadow = shadow_of(spec, status.current_step)
        if shadow is not None and not dark:
            updates.update(canary_weight=0, mirror_percent=status.mirror_percent or shadow.percent)
        elif status.canary_weight == 0 and not dark:
            updates["canary_weight"] = spec.steps[status.current_step].traffic_weight  # a dark start stays dark
        status = status.model_copy(update=updates)
    transition = step(spec, status, MetricsObserved(snapshot), now)
    click.echo(_dump(decision_record(transition.decision, transition.status), pretty))


LABEL_SHARE_HELP = "share of predictions that get a label (accuracy's evidence), default 0.1"


@main.command()
@click.option("-f", "--filename", "paths", required=True, multiple=True, type=click.Path(path_type=Path),
              help="manifest file (repeatable); every document is checked")
@click.option("--rps", type=float, default=None,
              help="also warn about steps too short to judge a condition at this traffic (see 'plan')")
@click.option("--label-share", type=float, default=0.1, show_default=True, help=LABEL_SHARE_HELP)
def validate(paths: tuple[Path, ...], rps: float | None, label_share: float) -> None:
    """Validate every ModelRollout document in the files; exit 2 naming the field on errors."""
    from .core.planning import plan as plan_steps

    invalid = 0
    checked = 0
    for path in paths:
        try:
            for doc in iter_documents(path):
                if doc.skipped:
                    click.echo(f"skip  {path}#{doc.index} {doc.name}: {doc.skipped}")
                    continue
                checked += 1
                if doc.rollout is not None:
                    click.echo(f"ok    {path}#{doc.index} {doc.name}")
                    longer = label_delay_warning(doc.rollout.spec)
                    if longer:
                        click.echo(f"warn  {path}#{doc.index} {doc.name}: {longer}", err=True)
                    if rps is not None:
                        try:
                            steps = plan_steps(doc.rollout.spec, rps, label_share)
                        except ValueError as exc:
                            _fail(str(exc))
                        for p in steps:
                            if p.too_short_for:
                                click.echo(f"warn  {path}#{doc.index} {doc.name}: step {p.index + 1} ({p.label}) is "
                                           f"too short at {rps:g} RPS to judge {', '.join(p.too_short_for)} "
                                           f"(modelrollout plan -f {path} --rps {rps:g})", err=True)
                    continue
                invalid += 1
                click.echo(f"error {path}#{doc.index} {doc.name}:", err=True)
                for line in doc.errors:
                    click.echo(f"  {line}", err=True)
        except ManifestError as exc:
            invalid += 1
            click.echo(f"error {exc}", err=True)
    if checked == 0 and invalid == 0:
        _fail("no ModelRollout document found in " + ", ".join(str(p) for p in paths))
    if invalid:
        sys.exit(EXIT_INVALID)


def label_delay_warning(spec: Any) -> str | None:
    """The first step that serves users cannot end before ``labelDelay`` (docs/design.md#late-labels):
    a manifest that says otherwise should hear it before it is applied."""
    from .api.durations import format_duration

    delay = spec.analysis.label_delay
    conditions = spec.analysis.resolved_conditions()
    if delay <= timedelta(0) or (conditions.accuracy is not None and conditions.accuracy.enabled is False):
        return None
    for index, step in enumerate(spec.steps):
        if step.shadow is None:
            if step.hold_for < delay:
                return (f"step {index + 1} ({step.traffic_weight}%, {format_duration(step.hold_for)}) is shorter than "
                        f"spec.analysis.labelDelay {format_duration(delay)}: it lasts at least that long, until "
                        "accuracy was judged on the challenger's own labels")
            return None
    return None


@main.command()
@click.option("-f", "--filename", "rollout_path", required=True, type=click.Path(path_type=Path),
              help="the ModelRollout manifest")
@click.option("--rps", type=float, required=True, help="the service's requests per second (stable + canary)")
@click.option("--label-share", type=float, default=0.1, show_default=True, help=LABEL_SHARE_HELP)
def plan(rollout_path: Path, rps: float, label_share: float) -> None:
    """How long each step needs at RPS before each enabled condition can judge it
    (minSamples, and 90 % power at the critical bound for accuracy, errors and cache);
    which steps are too short (docs/tuning.md#sizing-steps)."""
    from .core.planning import plan as plan_steps
    from .core.planning import render

    spec = _rollout(rollout_path).spec
    try:
        steps = plan_steps(spec, rps, label_share)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(render(steps, rps, label_share, spec.analysis.significance, spec.analysis.label_delay))


@main.command()
def crd() -> None:
    """Print the CustomResourceDefinition generated from the resource model (YAML)."""
    from .api.crd import render_crd_yaml

    click.echo(render_crd_yaml(), nl=False)


def _snapshots_from(path: Path) -> Iterator[Any]:
    from .core.snapshot import Snapshot

    stream = sys.stdin if str(path) == "-" else None
    try:
        handle = stream or path.open()
    except OSError as exc:
        _fail(f"snapshots {path}: cannot read: {exc.strerror}")
    with handle:
        previous: datetime | None = None
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                _fail(f"{path}:{number}: not valid JSON: {exc}")
            snap: Snapshot = _snapshot(data, f"{path}:{number}")
            if previous is not None and snap.at < previous:
                _fail(f"{path}:{number}: snapshot.at {snap.at.isoformat()} goes back in time; lines must be in time order")
            previous = snap.at
            yield snap


def _parse_time(option: str, value: str, now: datetime) -> datetime:
    """RFC 3339 (``2026-11-30T12:00:00Z``), ``now``, or ``now-30m`` / ``-30m`` relative to now."""
    from .api.durations import parse_duration

    text = value.strip()
    relative = text[3:] if text.startswith("now") else text
    if text == "now":
        return now
    if relative.startswith("-"):
        try:
            return now - parse_duration(relative[1:])
        except (TypeError, ValueError):
            _fail(f"{option}: {value!r} is not a time: use RFC 3339 (2026-11-30T12:00:00Z), now, or now-30m "
                  f"(units: ms, s, m, h)")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option}: {value!r} is not a time: use RFC 3339 (2026-11-30T12:00:00Z), now, or now-30m")
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@main.command()
@click.option("-f", "--filename", "rollout_path", required=True, type=click.Path(path_type=Path))
@click.option("--snapshots", "snapshots_path", type=click.Path(path_type=Path),
              help="JSON Lines file, one snapshot (format v1) per line in time order; - reads stdin")
@click.option("--prometheus", "prometheus_url",
              help="instead of --snapshots: ask this Prometheus what the operator's tick would have read at each "
                   "moment from --from to --to")
@click.option("--from", "from_text", help="with --prometheus: the first tick (RFC 3339, now, or now-30m)")
@click.option("--to", "to_text", default="now", show_default=True, help="with --prometheus: the last tick")
@click.option("--step", "step_text", help="with --prometheus: time between ticks (default: spec.analysis.interval)")
@click.option("-n", "--namespace", help="with --prometheus: the rollout's namespace (default: the manifest's, "
                                         "else 'default'); it selects the Deployments' series")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="with --prometheus: an HTTP header sent with every query (repeatable), e.g. 'X-Scope-OrgID: ml'")
@click.option("--bearer-token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="with --prometheus: send 'Authorization: Bearer <the file's content>' (kept off the command line)")
@click.option("--insecure-skip-tls-verify", is_flag=True,
              help="with --prometheus: accept any TLS certificate (a self-signed proxy); the token is still sent")
@click.option("--status", "status_path", type=click.Path(path_type=Path),
              help="status to start from (default: a fresh rollout starting at the first tick)")
@click.option("--with-status", is_flag=True, help="include the carried status in every output line")
@click.option("--summary/--no-summary", default=True, help="print a summary to stderr at the end")
def replay(rollout_path: Path, snapshots_path: Path | None, prometheus_url: str | None, from_text: str | None,
           to_text: str, step_text: str | None, namespace: str | None, headers: tuple[str, ...],
           bearer_token_file: Path | None, insecure_skip_tls_verify: bool, status_path: Path | None,
           with_status: bool, summary: bool) -> None:
    """Replay recorded snapshots, or a past window of Prometheus, through the state machine:
    one decision per line out (JSON Lines)."""
    from .core.replay import ReplaySummary, tick_record
    from .core.replay import replay as run_replay

    rollout = _rollout(rollout_path)
    status = _status(_read_json(status_path, "status"), str(status_path)) if status_path else None
    if (snapshots_path is None) == (prometheus_url is None):
        _fail("give either --snapshots FILE (recorded snapshots) or --prometheus URL --from T1 [--to T2] "
              "(a past window of Prometheus)")
    if prometheus_url is None:
        for option, value in (("--from", from_text), ("--step", step_text), ("--namespace", namespace),
                              ("--to", None if to_text == "now" else to_text), ("--header", headers or None),
                              ("--bearer-token-file", bearer_token_file),
                              ("--insecure-skip-tls-verify", insecure_skip_tls_verify or None)):
            if value is not None:
                _fail(f"{option} goes with --prometheus, not with --snapshots")
        ticks = run_replay(rollout.spec, _snapshots_from(snapshots_path), status)  # type: ignore[arg-type]
        source = None
    else:
        from .api.durations import parse_duration
        from .replay_prometheus import PrometheusReplay, tick_times

        if from_text is None:
            _fail("--from is required with --prometheus: the first tick of the window, e.g. now-30m")
        now = datetime.now(timezone.utc)
        start, end = _parse_time("--from", from_text, now), _parse_time("--to", to_text, now)
        if end > now:
            click.echo(f"replay: --to {end.isoformat()} is in the future; replaying up to now", err=True)
            end = now
        try:
            every = parse_duration(step_text) if step_text is not None else rollout.spec.analysis.interval
            times = tick_times(start, end, every)
        except (TypeError, ValueError) as exc:
            _fail(str(exc) if str(exc).startswith("--") else f"--step: {exc}")
        ns = namespace or rollout.metadata.get("namespace") or "default"
        name = rollout.metadata.get("name") or rollout_path.stem
        if insecure_skip_tls_verify:
            import urllib3

            # Said once here, not once per query by urllib3.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            click.echo(f"replay: the TLS certificate of {prometheus_url} is not verified (--insecure-skip-tls-verify)",
                       err=True)
        source = PrometheusReplay(prometheus_url, ns, name, rollout.spec,
                                  headers=_http_headers(headers, bearer_token_file),
                                  verify_tls=not insecure_skip_tls_verify)
        problem = source.unreachable()
        if problem is not None:
            source.close()
            _fail(f"--prometheus {prometheus_url}: {problem}")
        click.echo(f"replay: {len(times)} ticks of {ns}/{name} from {times[0].isoformat().replace('+00:00', 'Z')} "
                   f"every {every.total_seconds():g}s, asking {prometheus_url}", err=True)
        ticks = source.ticks(times, status)
    done = ReplaySummary()
    try:
        for tick in ticks:
            click.echo(json.dumps(tick_record(tick, with_status=with_status), default=str))
            done.add(tick)
    finally:
        if source is not None:
            source.close()
    if summary:
        click.echo(done.text(), err=True)


@main.command()
@click.option("--prometheus-url", envvar="MODELROLLOUT_PROMETHEUS_URL", default="http://127.0.0.1:9090",
              show_default=True, help="Prometheus for rollouts that don't name one in spec.analysis.prometheus")
@click.option("-n", "--namespace", "namespaces", multiple=True, envvar="MODELROLLOUT_NAMESPACES",
              help="watch only these namespaces (repeatable); default: all namespaces")
@click.option("--metrics-port", type=int, default=8080, show_default=True, envvar="MODELROLLOUT_METRICS_PORT",
              help="port of the operator's own /metrics; 0 disables it")
@click.option("--metrics-addr", default="0.0.0.0", show_default=True)
@click.option("--webhook", "webhooks", multiple=True, envvar="MODELROLLOUT_WEBHOOKS",
              help="URL receiving JSON notifications (Slack compatible); repeatable")
@click.option("--priority", type=int, default=None, help="kopf peering priority (default: random per process)")
@click.option("--standalone", is_flag=True, help="no peering: for a single replica or local development")
@click.option("--peering", "peering_name", default="modelrollout", show_default=True, envvar="MODELROLLOUT_PEERING",
              help="name of the ClusterKopfPeering (all namespaces) or of the KopfPeering in each watched namespace; "
                   "created at start-up when missing and allowed (docs/operator.md, High availability)")
@click.option("--liveness", "liveness", default=None,
              help="kopf's liveness endpoint, e.g. http://0.0.0.0:8081/healthz; its JSON also says what start-up "
                   "waits for (peering, crd)")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--default-profile", envvar="MODELROLLOUT_DEFAULT_PROFILE", default="balanced", show_default=True,
              type=click.Choice([p.value for p in Profile]),
              help="threshold profile of rollouts whose spec.analysis.profile is unset")
@click.option("--shards", is_flag=True, envvar="MODELROLLOUT_SHARDS",
              help="split the rollouts among all replicas by Leases instead of one replica acting "
                   "(docs/operator.md#sharding); implies no kopf peering")
@click.option("--shard-group", default="modelrollout", show_default=True, envvar="MODELROLLOUT_SHARD_GROUP",
              help="with --shards: the group's name (its Leases carry the label modelrollout.io/shard-group)")
@click.option("--shard-namespace", default="default", show_default=True, envvar="POD_NAMESPACE",
              help="with --shards: the namespace of the group's Leases (in a pod: its own, from POD_NAMESPACE)")
@click.option("--identity", default=None, help="with --shards: this replica's name in the group "
                                                "(default: POD_NAME or the host name, plus a random suffix)")
@click.option("--min-rate-window", type=click.IntRange(min=1), default=60, show_default=True,
              envvar="MODELROLLOUT_MIN_RATE_WINDOW",
              help="seconds: the shortest window of a range query's point (anomaly series, the stable's counts "
                   "per interval); at least 4 of Prometheus' scrape intervals (docs/prometheus.md)")
@click.option("--status-heartbeat", default=None, envvar="MODELROLLOUT_STATUS_HEARTBEAT",
              help="write a status that changed nothing material (evaluatedAt, observed values, countdowns) at most "
                   "this often, e.g. 5m; default: every tick (docs/operator.md#quiet-status-writes)")
def run(prometheus_url: str, namespaces: tuple[str, ...], metrics_port: int, metrics_addr: str,
        webhooks: tuple[str, ...], priority: int | None, standalone: bool, peering_name: str, liveness: str | None,
        log_level: str, default_profile: str, shards: bool, shard_group: str, shard_namespace: str,
        identity: str | None, min_rate_window: int, status_heartbeat: str | None) -> None:
    """Run the operator against the current kubeconfig (or in-cluster config)."""
    from .wiring import run as run_operator

    run_operator(operator_config(prometheus_url, namespaces, metrics_port, metrics_addr, webhooks, priority,
                                 standalone, peering_name, liveness, log_level, default_profile, shards, shard_group,
                                 shard_namespace, identity, min_rate_window, status_heartbeat))


def _heartbeat_seconds(value: str | None) -> float | None:
    """``--status-heartbeat`` in seconds: a duration (``5m``, ``90s``) of at least 1 s; unset or ``0``: None."""
    from .api.durations import parse_duration

    if value is None or value.strip() in ("", "0"):
        return None
    try:
        seconds = parse_duration(value.strip()).total_seconds()
    except ValueError as exc:
        _fail(f"--status-heartbeat: {exc}")
    if seconds < 1:
        _fail(f"--status-heartbeat: {value!r} is shorter than 1s; give a duration such as 5m, or 0 to write every tick")
    return seconds


def operator_config(prometheus_url: str, namespaces: tuple[str, ...], metrics_port: int, metrics_addr: str,
                    webhooks: tuple[str, ...], priority: int | None, standalone: bool, peering_name: str,
                    liveness: str | None, log_level: str, default_profile: str, shards: bool = False,
                    shard_group: str = "modelrollout", shard_namespace: str = "default",
                    identity: str | None = None, min_rate_window: int = 60,
                    status_heartbeat: str | None = None) -> OperatorConfig:
    """``run``'s options as the operator's configuration, with logging set up on the way
    (a function of its own so a test entry point can run the operator with the same options:
    every option of ``run`` is a parameter here)."""
    import logging

    from .wiring import OperatorConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = OperatorConfig(prometheus_url=prometheus_url, namespaces=tuple(namespaces),
                            metrics_port=metrics_port or None, metrics_addr=metrics_addr, webhooks=tuple(webhooks),
                            standalone=standalone, peering_name=peering_name, liveness_endpoint=liveness,
                            default_profile=default_profile, min_rate_window_seconds=float(min_rate_window),
                            status_heartbeat_seconds=_heartbeat_seconds(status_heartbeat))
    if priority is not None:
        if shards:
            _fail("--priority orders kopf peering; with --shards every replica acts on its own share: drop one")
        config.priority = priority
    if shards and not LABEL_VALUE.fullmatch(shard_group):
        _fail(f"--shard-group: {shard_group!r} is not a Kubernetes label value (at most 63 letters, digits, "
              "'-', '_' or '.', starting and ending with a letter or digit)")
    config.shards, config.shard_group, config.shard_namespace = shards, shard_group, shard_namespace
    if identity:
        config.identity = identity
    return config


if __name__ == "__main__":
    main()
