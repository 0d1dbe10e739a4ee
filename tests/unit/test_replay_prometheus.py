"""Replay from Prometheus without a Prometheus: the request of each tick follows the carried
status (as the operator's does), answers go through the state machine, and bad windows are
refused naming the option. The real Prometheus is in e2e/tests/test_replay_prometheus.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelrollout.adapters.metrics.request import SnapshotRequest
from modelrollout.api.models import Phase
from modelrollout.core.replay import summarize
from modelrollout.errors import MetricsUnavailable
from modelrollout.replay_prometheus import MAX_TICKS, PrometheusReplay, tick_times

from .factories import T0, healthy_snapshot, make_spec


class FakeSource:
    """Answers like PrometheusMetricsSource; records what each tick asked and when."""

    def __init__(self, fail_at: set[datetime] | None = None) -> None:
        self.asked: list[tuple[datetime, SnapshotRequest]] = []
        self.fail_at = fail_at or set()
        self.closed = False

    async def snapshots(self, requests: list[SnapshotRequest], at: datetime, **_: Any) -> dict[str, Any]:
        (request,) = requests
        self.asked.append((at, request))
        if at in self.fail_at:
            return {request.key: MetricsUnavailable("Prometheus: connection refused")}
        return {request.key: healthy_snapshot(at, request.canary_weight)}

    def close(self) -> None:
        self.closed = True


def test_each_tick_asks_with_the_status_carried_to_it() -> None:
    spec = make_spec()
    source = FakeSource(fail_at={T0 + timedelta(seconds=20)})
    replay = PrometheusReplay("http://prometheus.invalid", "ml", "fraud", spec, source=source)  # type: ignore[arg-type]
    ticks = list(replay.ticks(tick_times(T0, T0 + timedelta(seconds=200), timedelta(seconds=10))))
    replay.close()
    assert source.closed
    assert [at for at, _ in source.asked] == [t.at for t in ticks if not t.status.phase.is_terminal or t.decision]
    # The rollout's own key and Deployments; the weight follows the carried status: 5 % until
    # the first step's 60 s are up, then 25 %, then 100 %.
    assert {r.key for _, r in source.asked} == {"ml/fraud"}
    weights = [r.canary_weight for _, r in source.asked]
    assert weights[:6] == [5] * 6 and 25 in weights and 100 in weights
    # A failed query is a Prometheus error of that tick, as in the operator: a hold, no action.
    failed = next(t for t in ticks if t.at == T0 + timedelta(seconds=20))
    assert failed.decision is None and "Prometheus error" in failed.status.message
    assert ticks[-1].status.phase == Phase.SUCCEEDED
    text = summarize(ticks)
    assert "advance" in text and "promote" in text and "final phase Succeeded" in text


def test_tick_times_are_bounded_and_name_the_option() -> None:
    assert tick_times(T0, T0 + timedelta(seconds=60), timedelta(seconds=30)) == [
        T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)]
    with pytest.raises(ValueError, match="--to .* is not after --from"):
        tick_times(T0, T0, timedelta(seconds=30))
    with pytest.raises(ValueError, match="--step: 0.5s"):
        tick_times(T0, T0 + timedelta(hours=1), timedelta(milliseconds=500))
    with pytest.raises(ValueError, match=f"more than {MAX_TICKS}"):
        tick_times(T0, T0 + timedelta(days=30), timedelta(seconds=1))


def test_a_rollback_without_a_decision_is_in_the_summary_and_no_tick_hides_its_reason() -> None:
    """Prometheus failing at every tick: the rollout's prometheusErrors policy (rollback after
    2 here) acts without a decision; the lines and the summary say so."""
    spec = make_spec(prometheusErrors={"maxConsecutive": 2, "then": "rollback"})
    times = tick_times(T0, T0 + timedelta(seconds=40), timedelta(seconds=10))
    replay = PrometheusReplay("http://prometheus.invalid", "ml", "fraud", spec,
                              source=FakeSource(fail_at=set(times)))  # type: ignore[arg-type]
    ticks = list(replay.ticks(times))
    from modelrollout.core.replay import tick_record

    assert "Prometheus error 1/2" in tick_record(ticks[0])["reason"]
    text = summarize(ticks)
    assert "1 acting decision(s)" in text and "rollback [prometheusErrors]" in text, text
    assert "final phase RolledBack" in text


# ------------------------------------------------------------------------ authentication and TLS


class _Prometheus(http.server.BaseHTTPRequestHandler):
    """A Prometheus behind an authenticating proxy: every query needs the token and the tenant."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append(headers)
        if headers.get("authorization") != "Bearer s3cret" or headers.get("x-scope-orgid") != "ml":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"unauthorized")
            return
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(tls_dir: Path | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    scheme = "http"
    if tls_dir is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _replay_cli(url: str, *extra: str) -> Any:
    from click.testing import CliRunner

    from modelrollout.cli import main

    rollout = Path(__file__).resolve().parents[2] / "examples/rollouts/replay-2k.yaml"
    return CliRunner().invoke(main, ["replay", "-f", str(rollout), "--prometheus", url, "--from", "now-2s",
                                     "--step", "1s", "--no-summary", *extra])


def test_replay_sends_the_headers_and_the_token_from_a_file_with_every_query(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    _Prometheus.seen = []
    with _serving() as url:
        refused = _replay_cli(url)
        assert refused.exit_code == 2 and "401" in refused.output
        done = _replay_cli(url, "--header", "X-Scope-OrgID: ml", "--bearer-token-file", str(token))
    assert done.exit_code == 0, done.output
    asked = [h for h in _Prometheus.seen if h.get("authorization")]
    assert len(asked) > 1 and all(h["authorization"] == "Bearer s3cret" and h["x-scope-orgid"] == "ml" for h in asked)


@pytest.mark.parametrize("extra,needle", [
    (("--header", "no colon"), "expected 'Name: value'"),
    (("--header", "Authorization: Bearer x", "--bearer-token-file", "{token}"), "keep one"),
    (("--bearer-token-file", "{missing}"), "--bearer-token-file"),
])
def test_bad_authentication_options_are_refused_naming_the_option(tmp_path: Path, extra: tuple[str, ...],
                                                                  needle: str) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret")
    args = [a.format(token=token, missing=tmp_path / "missing") for a in extra]
    result = _replay_cli("http://127.0.0.1:9", *args)
    assert result.exit_code == 2 and needle in result.output


def test_a_self_signed_prometheus_needs_insecure_skip_tls_verify(tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    with _serving(tmp_path) as url:
        refused = _replay_cli(url, "--header", "X-Scope-OrgID: ml", "--header", "Authorization: Bearer s3cret")
        assert refused.exit_code == 2 and "SSL" in refused.output
        done = _replay_cli(url, "--header", "X-Scope-OrgID: ml", "--header", "Authorization: Bearer s3cret",
                           "--insecure-skip-tls-verify")
    assert done.exit_code == 0, done.output
