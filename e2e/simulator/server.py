"""HTTP front of the simulator: /metrics for Prometheus and a small JSON
control API for tests (see docs/local-cluster.md for the exact shapes).

Standard library only (ThreadingHTTPServer): the API is a handful of routes and
must not pull in a web framework the project does not otherwise need.
"""

from __future__ import annotations

import json
import logging
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from e2e.simulator.behaviour import Behaviour, BehaviourError
from e2e.simulator.collector import ContractCollector
from e2e.simulator.engine import Service, Simulator

log = logging.getLogger(__name__)

_BEHAVIOUR = re.compile(r"^/behaviour/([^/]+)/([^/]+)$")
_SERVICE = re.compile(r"^/services/([^/]+)/([^/]+)$")
_NAMESPACE = re.compile(r"^/namespaces/([^/]+)$")
MAX_BODY = 1 << 20


class _ClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def make_server(sim: Simulator, host: str, port: int) -> ThreadingHTTPServer:
    """Bind the API; the caller runs serve_forever()."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ContractCollector(sim))

    class Handler(BaseHTTPRequestHandler):
        server_version = "modelrollout-simulator/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: Prometheus scrapes every second
            log.debug("%s " + fmt, self.address_string(), *args)

        # -- plumbing --
        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj, indent=None, sort_keys=True).encode(), "application/json")

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                raise _ClientError(413, "body too large")
            raw = self.rfile.read(n) if n else b""
            if not raw:
                return {}
            try:
                return json.loads(raw)
            except json.JSONDecodeError as e:
                raise _ClientError(400, f"invalid JSON: {e}") from e

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            path = url.path.rstrip("/") or "/"
            query = parse_qs(url.query)
            try:
                self._route(method, path, query)
            except _ClientError as e:
                self._json(e.status, {"error": str(e)})
            except BehaviourError as e:
                self._json(400, {"error": str(e)})
            except Exception as e:  # report, never kill the server thread silently
                log.exception("%s %s failed", method, self.path)
                self._json(500, {"error": f"{type(e).__name__}: {e}"})

        def _route(self, method: str, path: str, query: dict[str, list[str]]) -> None:
            if method == "GET" and path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif method == "GET" and path == "/healthz":
                self._send(200, b"ok", "text/plain")
            elif method == "GET" and path == "/state":
                self._json(200, sim.state())
            elif method == "GET" and path == "/services":
                self._json(200, sim.state()["services"])
            elif method == "POST" and path == "/services":
                svc = Service.from_json(self._body())
                sim.register_service(svc)
                self._json(200, svc.to_json())
            elif method == "DELETE" and (m := _SERVICE.match(path)):
                found = sim.remove_service(unquote(m.group(1)), unquote(m.group(2)))
                self._json(200 if found else 404, {"deleted": found})
            elif method == "PUT" and (m := _BEHAVIOUR.match(path)):
                body = self._body()
                image = body.get("image") if isinstance(body, dict) else None
                if image is not None and not isinstance(image, str):
                    raise _ClientError(400, "image must be a string")
                b = Behaviour.from_json(body)
                ns, dep = unquote(m.group(1)), unquote(m.group(2))
                sim.set_behaviour(ns, dep, b, image)
                self._json(200, {"namespace": ns, "deployment": dep, "image": image or "*",
                                 "behaviour": b.to_json()})
            elif method == "DELETE" and (m := _BEHAVIOUR.match(path)):
                image = (query.get("image") or [None])[0]
                sim.clear_behaviour(unquote(m.group(1)), unquote(m.group(2)), image)
                self._json(200, {"deleted": True})
            elif method == "DELETE" and (m := _NAMESPACE.match(path)):
                sim.forget_namespace(unquote(m.group(1)))
                self._json(200, {"deleted": True})
            elif method == "POST" and path == "/reset":
                sim.reset()
                self._json(200, {"reset": True})
            else:
                raise _ClientError(404, f"no route {method} {path}")

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._dispatch("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._dispatch("DELETE")

    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd
