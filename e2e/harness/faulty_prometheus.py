"""A loopback HTTP proxy in front of the real Prometheus that answers badly on demand.

Modes (``proxy.mode = ...``), each what a production Prometheus has been seen to do:

* ``ok`` — forward as is;
* ``down`` — refuse with HTTP 503;
* ``slow`` — answer after ``slow_seconds`` (5 s by default: past the operator's query timeout);
* ``nan`` — every sample value becomes ``"NaN"``;
* ``empty`` — every result vector or matrix is empty;
* ``partial`` — every other series of each result is dropped.

The operator is pointed at it with ``spec.analysis.prometheus.url``. Only loopback.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("ok", "down", "slow", "nan", "empty", "partial")


def _mutate(body: dict[str, Any], mode: str) -> dict[str, Any]:
    data = body.get("data")
    if body.get("status") != "success" or not isinstance(data, dict) or not isinstance(data.get("result"), list):
        return body
    result = data["result"]
    if mode == "empty":
        data["result"] = []
    elif mode == "partial":
        data["result"] = result[::2]
    elif mode == "nan":
        for series in result:
            if "value" in series:
                series["value"] = [series["value"][0], "NaN"]
            if "values" in series:
                series["values"] = [[t, "NaN"] for t, _ in series["values"]]
    return body


class FaultyPrometheus:
    def __init__(self, upstream: str, slow_seconds: float = 5.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "ok"
        self.slow_seconds = slow_seconds
        self.requests: dict[str, int] = {m: 0 for m in MODES}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _forward(self, method: str) -> None:
                mode = proxy.mode
                proxy.requests[mode] = proxy.requests.get(mode, 0) + 1
                if mode == "down":
                    self._reply(503, b'{"status":"error","errorType":"unavailable","error":"injected: down"}')
                    return
                if mode == "slow":
                    time.sleep(proxy.slow_seconds)
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                request = urllib.request.Request(proxy.upstream + self.path, data=payload, method=method)
                if self.headers.get("Content-Type"):
                    request.add_header("Content-Type", self.headers["Content-Type"])
                try:
                    with urllib.request.urlopen(request, timeout=30) as resp:
                        status, raw = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, raw = exc.code, exc.read()
                if mode in ("nan", "empty", "partial") and status == 200 and "/api/v1/query" in self.path:
                    raw = json.dumps(_mutate(json.loads(raw), mode)).encode()
                try:
                    self._reply(status, raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
                    pass

            def _reply(self, status: int, raw: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
