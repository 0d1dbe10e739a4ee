"""The ``modelrollout`` CLI run as a real subprocess on the bundled examples.

``evaluate``, ``validate``, ``crd`` and ``replay`` are started with
``[sys.executable, "-m", "modelrollout", ...]``: exit codes, stdout JSON and the field
named on stderr are what users and scripts see. The replay-versus-evaluate property is
checked for every tick in process (through the same functions the commands call) and
for a handful of ticks through the real commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.api.manifests import load_rollout
from modelrollout.api.models import ModelRolloutStatus
from modelrollout.core.machine import initial_status, step
from modelrollout.core.observations import MetricsObserved
from modelrollout.core.replay import decision_record
from modelrollout.core.snapshot import load_snapshot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ROLLOUT = EXAMPLES / "rollouts/fraud-scorer.yaml"
REPLAY_ROLLOUT = EXAMPLES / "rollouts/replay-2k.yaml"
REPLAY_FILES = sorted((EXAMPLES / "replay").glob("*.jsonl"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
DECISION_KEYS = ("action", "reason", "score", "level", "trigger", "conditions")


def cli(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelrollout", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=120, cwd=ROOT)


def evaluate(snapshot: Path, *extra: str | Path, rollout: Path = ROLLOUT) -> dict[str, Any]:
    result = cli("evaluate", "-f", rollout, "--snapshot", snapshot, "--compact", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# ------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("name,action,trigger,needle", [
    ("healthy", "continue", None, "healthy"),
    ("latency-breach", "rollback", "latency", "latency"),
    ("accuracy-drop", "hold", "accuracy", "Triggered: accuracy"),
    ("error-spike", "hold", "errorRate", "Triggered: errorRate"),
    ("drift", "hold", "confidenceDrift", "Triggered: confidenceDrift"),  # KS D 0.28: triggered, below critical 0.3
    ("oom-killed", "rollback", "kubernetesHealth", "OOMKilled"),
])
def test_evaluate_gives_the_decision_each_example_implies(name: str, action: str, trigger: str | None,
                                                          needle: str) -> None:
    out = evaluate(EXAMPLES / f"snapshots/{name}.json")
    assert out["action"] == action, out["reason"]
    assert out.get("trigger") == trigger
    assert needle in out["reason"]
    assert {c["name"] for c in out["conditions"]} == {
        "accuracy", "latency", "confidenceDrift", "errorRate", "cache", "throughput", "anomaly"}
    assert 0.0 <= out["score"] <= 1.0


def test_evaluate_no_data_holds() -> None:
    out = evaluate(EXAMPLES / "snapshots/no-data.json")
    assert out["action"] == "hold" and out["reason"].startswith("Inconclusive"), out["reason"]


def test_evaluate_pretty_by_default_and_now_overrides_the_snapshot_time() -> None:
    result = cli("evaluate", "-f", ROLLOUT, "--snapshot", EXAMPLES / "snapshots/healthy.json",
                 "--now", "2026-11-24T12:05:00Z")
    assert result.returncode == 0 and result.stdout.startswith("{\n")
    assert json.loads(result.stdout)["action"] == "continue"


def _broken(tmp_path: Path, change: Any) -> Path:
    data = json.loads((EXAMPLES / "snapshots/healthy.json").read_text())
    change(data)
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(data))
    return path


def _decreasing(d: dict[str, Any]) -> None:
    d["canary"]["confidence"]["counts"][3] = 0


@pytest.mark.parametrize("change,field", [
    (_decreasing, "snapshot.canary.confidence"),
    (lambda d: d.update(version=2), "snapshot.version"),
    (lambda d: d["canary"]["latency_ms"].update(p59=2.0), "snapshot.canary.latency_ms.p59"),
    (lambda d: d["canary"].update(predictions_correct=d["canary"]["predictions_evaluated"] + 1), "snapshot.canary"),
    (lambda d: d["canary"].update(requests=-5), "snapshot.canary.requests"),
    (lambda d: d.update(at="2026-11-24T12:00:00"), "snapshot.at"),
])
def test_evaluate_invalid_snapshot_exits_2_naming_the_field(tmp_path: Path, change: Any, field: str) -> None:
    result = cli("evaluate", "-f", ROLLOUT, "--snapshot", _broken(tmp_path, change))
    assert result.returncode == 2, result.stdout
    assert field in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_evaluate_unreadable_or_non_json_snapshot_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "absent.json"):
        result = cli("evaluate", "-f", ROLLOUT, "--snapshot", path)
        assert result.returncode == 2 and str(path) in result.stderr


def _expected_field(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.removeprefix("# expect:").strip()
    raise AssertionError(f"{path} has no '# expect:' line")


@pytest.fixture(scope="module")
def invalid_report() -> dict[Path, str]:
    """One ``validate`` over every invalid example; stderr split per file."""
    result = cli("validate", *[a for p in INVALID for a in ("-f", p)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    blocks: dict[Path, str] = {}
    current: Path | None = None
    for line in result.stderr.splitlines():
        if line.startswith("error "):
            current = next(p for p in INVALID if line.startswith(f"error {p}#"))
            blocks[current] = ""
        assert current is not None, line
        blocks[current] += line + "\n"
    return blocks


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_rollout_exits_2_naming_the_field(invalid_report: dict[Path, str], path: Path) -> None:
    assert _expected_field(path) in invalid_report[path]


def test_one_invalid_rollout_alone_exits_2() -> None:
    result = cli("validate", "-f", INVALID[0])
    assert result.returncode == 2 and _expected_field(INVALID[0]) in result.stderr


def test_evaluate_with_an_invalid_rollout_exits_2_naming_the_field() -> None:
    path = EXAMPLES / "invalid/step-weight-150.yaml"
    result = cli("evaluate", "-f", path, "--snapshot", EXAMPLES / "snapshots/healthy.json")
    assert result.returncode == 2 and "spec.steps[1].weight" in result.stderr


# ------------------------------------------------------------------------- validate


def test_validate_every_example_rollout() -> None:
    paths = sorted((EXAMPLES / "rollouts").glob("*.yaml"))
    result = cli("validate", *[a for p in paths for a in ("-f", p)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == len(paths)


def test_plan_works_on_every_example_rollout() -> None:
    for path in sorted((EXAMPLES / "rollouts").glob("*.yaml")):
        result = cli("plan", "-f", path, "--rps", "20")
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        assert result.stdout.count("\nstep ") >= 3 and "90% power" in result.stdout, path.name


def test_validate_with_rps_warns_about_short_steps_and_still_exits_0() -> None:
    result = cli("validate", "-f", ROLLOUT, "--rps", "20")
    assert result.returncode == 0, result.stderr
    assert "too short at 20 RPS to judge accuracy" in result.stderr
    assert "warn" not in cli("validate", "-f", ROLLOUT, "--rps", "40000").stderr


def test_validate_warns_when_the_first_step_is_shorter_than_the_label_delay(tmp_path: Path) -> None:
    result = cli("validate", "-f", EXAMPLES / "rollouts/conservative.yaml")
    assert result.returncode == 0, result.stderr
    assert "step 1 (1%, 30m) is shorter than spec.analysis.labelDelay 45m" in result.stderr
    rollout = yaml.safe_load((EXAMPLES / "rollouts/conservative.yaml").read_text())
    rollout["spec"]["analysis"]["conditions"]["accuracy"] = {"enabled": False}
    path = tmp_path / "no-labels.yaml"
    path.write_text(yaml.safe_dump(rollout))
    assert "warn" not in cli("validate", "-f", path).stderr  # no accuracy, nothing waits for labels


def test_validate_multi_document_file_names_the_bad_document_and_field(tmp_path: Path) -> None:
    good = yaml.safe_load(ROLLOUT.read_text())
    bad = yaml.safe_load(ROLLOUT.read_text())
    bad["metadata"]["name"] = "broken"
    bad["spec"]["steps"][1]["weight"] = 3
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump_all([good, config_map, bad]))
    result = cli("validate", "-f", path)
    assert result.returncode == 2
    assert f"{path}#2 ml/broken" in result.stderr
    assert "spec.steps" in result.stderr and "must exceed the previous step" in result.stderr
    assert f"ok    {path}#0 ml/fraud-scorer" in result.stdout
    assert f"skip  {path}#1" in result.stdout


def test_validate_without_any_rollout_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert cli("validate", "-f", path).returncode == 2


# ------------------------------------------------------------------------------ crd


def test_crd_prints_the_custom_resource_definition() -> None:
    result = cli("crd")
    assert result.returncode == 0
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(docs) == 1 and docs[0]["kind"] == "CustomResourceDefinition"
    assert docs[0]["spec"]["names"]["kind"] == "ModelRollout"


# --------------------------------------------------------------------------- replay


_REPLAYED: dict[tuple[Path, tuple[str, ...]], list[dict[str, Any]]] = {}


def _replay(path: Path, *extra: str) -> list[dict[str, Any]]:
    """``modelrollout replay`` output, one dict per line (each file replayed once per option set)."""
    key = (path, extra)
    if key not in _REPLAYED:
        result = cli("replay", "-f", REPLAY_ROLLOUT, "--snapshots", path, *extra)
        assert result.returncode == 0, result.stderr
        assert "final phase" in result.stderr
        _REPLAYED[key] = [json.loads(line) for line in result.stdout.splitlines()]
    return _REPLAYED[key]


@pytest.mark.parametrize("path", REPLAY_FILES, ids=[p.stem for p in REPLAY_FILES])
def test_replay_writes_one_decision_per_snapshot(path: Path) -> None:
    lines = path.read_text().splitlines()
    out = _replay(path, "--with-status")
    assert all(o["status"]["phase"] == o["phase"] for o in out)
    assert len(out) == len(lines) >= 10
    assert [o["at"] for o in out] == [json.loads(line)["at"] for line in lines]
    assert all(o["action"] in ("continue", "advance", "hold", "rollback", "reduce", "promote", None) for o in out)


def test_replay_examples_show_what_their_names_say() -> None:
    healthy = _replay(EXAMPLES / "replay/healthy.jsonl", "--with-status")
    assert not any(o["action"] == "rollback" for o in healthy)
    assert any(o["action"] == "advance" and o["weight"] == 25 for o in healthy)
    drop = _replay(EXAMPLES / "replay/accuracy-drop.jsonl", "--with-status")
    rollback = [o for o in drop if o["action"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["trigger"] == "accuracy"
    assert "triggered for 5m00s" in rollback[0]["reason"]
    assert drop[-1]["phase"] == "RolledBack"


def test_replay_reads_stdin_and_rejects_lines_out_of_time_order(tmp_path: Path) -> None:
    lines = (EXAMPLES / "replay/accuracy-drop.jsonl").read_text().splitlines()
    result = cli("replay", "-f", REPLAY_ROLLOUT, "--snapshots", "-", "--no-summary", stdin="\n".join(lines[:3]) + "\n")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 3
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join([lines[1], lines[0]]) + "\n")
    result = cli("replay", "-f", REPLAY_ROLLOUT, "--snapshots", shuffled)
    assert result.returncode == 2 and f"{shuffled}:2" in result.stderr


def _decision(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in DECISION_KEYS}


def _in_process_evaluate(spec: Any, snapshot: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    """What ``evaluate`` computes (cli.evaluate), without the process: same functions, same order."""
    snap = load_snapshot(snapshot)
    now = snap.at
    current = initial_status(spec, now) if status is None else ModelRolloutStatus.model_validate(status)
    transition = step(spec, current, MetricsObserved(snap), now)
    return json.loads(json.dumps(decision_record(transition.decision, transition.status), default=str))


@pytest.mark.parametrize("path", REPLAY_FILES, ids=[p.stem for p in REPLAY_FILES])
def test_replay_gives_the_decisions_of_evaluate_with_the_carried_status(path: Path) -> None:
    """Every tick in process; each line i against evaluate from line i-1's status."""
    spec = load_rollout(REPLAY_ROLLOUT).spec
    snapshots = [json.loads(line) for line in path.read_text().splitlines()]
    out = _replay(path, "--with-status")
    compared = 0
    for i, (snapshot, record) in enumerate(zip(snapshots, out)):
        previous = out[i - 1]["status"] if i else None
        if previous is not None and previous["phase"] not in ("Progressing", "Paused"):
            assert record["action"] is None  # terminal: replay reports the phase, evaluate has nothing to add
            continue
        assert _decision(_in_process_evaluate(spec, snapshot, previous)) == _decision(record), f"tick {i}"
        compared += 1
    assert compared >= 10


def test_replay_and_evaluate_agree_through_the_real_commands(tmp_path: Path) -> None:
    """A few ticks through both subprocesses: the first, a hold, an advance and the rollback."""
    checks: list[tuple[Path, int]] = []
    for path in REPLAY_FILES:
        out = _replay(path, "--with-status")
        picks = {0, 1}
        picks |= {i for i, o in enumerate(out) if o["action"] in ("advance", "rollback")}
        checks.extend((path, i) for i in sorted(picks)[:4])
        for path_i, i in [c for c in checks if c[0] == path]:
            snapshot = tmp_path / f"{path.stem}-{i}.json"
            snapshot.write_text(path.read_text().splitlines()[i])
            extra: list[str | Path] = []
            if i:
                status = tmp_path / f"{path.stem}-{i}-status.json"
                status.write_text(json.dumps(out[i - 1]["status"]))
                extra = ["--status", status]
            got = evaluate(snapshot, *extra, rollout=REPLAY_ROLLOUT)
            assert _decision(got) == _decision(out[i]), f"{path.name} tick {i}"
    assert any(i > 1 for _, i in checks)


@pytest.mark.parametrize("args,needle", [
    ((), "give either --snapshots FILE"),
    (("--snapshots", "x.jsonl", "--prometheus", "http://127.0.0.1:1"), "give either --snapshots FILE"),
    (("--prometheus", "http://127.0.0.1:1"), "--from is required with --prometheus"),
    (("--prometheus", "http://127.0.0.1:1", "--from", "yesterday"), "--from: 'yesterday' is not a time"),
    (("--prometheus", "http://127.0.0.1:1", "--from", "now-1h", "--step", "0s"), "--step"),
    (("--prometheus", "http://127.0.0.1:1", "--from", "now", "--to", "now-1h"), "is not after --from"),
    (("--prometheus", "http://127.0.0.1:1", "--from", "now-1m"), "--prometheus http://127.0.0.1:1: cannot query it"),
    (("--snapshots", "x.jsonl", "--to", "now-1m"), "--to goes with --prometheus"),
])
def test_replay_from_prometheus_refuses_a_bad_window_naming_the_option(args: tuple[str, ...], needle: str) -> None:
    result = cli("replay", "-f", REPLAY_ROLLOUT, *args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr, result.stderr


def test_run_refuses_shard_options_that_cannot_work() -> None:
    from click.testing import CliRunner

    from modelrollout.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["run", "--shards", "--priority", "5", "--metrics-port", "0"])
    assert result.exit_code == 2 and "--priority" in result.output and "--shards" in result.output
    result = runner.invoke(main, ["run", "--shards", "--shard-group", "ml platform!", "--metrics-port", "0"])
    assert result.exit_code == 2 and "--shard-group: 'ml platform!' is not a Kubernetes label value" in result.output


def test_every_run_option_reaches_the_operator_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``operator_config`` takes every option of ``run`` by name: entry points that wrap
    ``run`` (the e2e harness's slow operator) pass ``**options`` through it, and an option
    left out there would stop them at startup with a TypeError."""
    import logging

    from modelrollout import cli

    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    options = cli.run.make_context("run", ["--min-rate-window", "7"]).params
    config = cli.operator_config(**options)
    assert config.min_rate_window_seconds == 7.0
    assert config.prometheus_url == options["prometheus_url"]


def test_status_heartbeat_is_a_duration_of_at_least_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from modelrollout import cli

    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)

    def config(*args: str):
        return cli.operator_config(**cli.run.make_context("run", list(args)).params)

    assert config().status_heartbeat_seconds is None  # default: every tick is written
    assert config("--status-heartbeat", "5m").status_heartbeat_seconds == 300.0
    assert config("--status-heartbeat", "0").status_heartbeat_seconds is None
    for bad, says in (("soon", "is not a duration"), ("500ms", "shorter than 1s")):
        result = subprocess.run([sys.executable, "-m", "modelrollout.cli", "run", "--status-heartbeat", bad],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "--status-heartbeat" in result.stderr and says in result.stderr, \
            result.stderr
