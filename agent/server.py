"""The agent's own HTTP server: ``/healthz`` and ``/readyz`` always, and the paths sinks serve (``/metrics``).

The Kubernetes probes work whether or not a Prometheus sink is configured. One server per address: the
agent's (``http:`` in the config) carries every sink's paths unless a sink names an address of its own;
by default the agent's address *is* the first such sink's (the Prometheus sink's ``listen_address`` and
``port``), so one port serves ``/metrics``, ``/healthz`` and ``/readyz``.

- ``/healthz`` (liveness): 200 while the pipeline runs — also while it waits on purpose for a broker that
  is away; 503 "pipeline stopped" otherwise.
- ``/readyz`` (readiness): 200 when consuming and checkpointing; else 503 and why (``starting``,
  ``cannot checkpoint for 47 s: …``, ``waiting for partitions …``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.runtime import Health

log = logging.getLogger(__name__)

#: A path's handler: () → (status, body, content type).
Route = Callable[[], tuple[int, bytes, str]]
#: An API's handler, for every method under its prefix: (method, path, headers, body) → (status, body, content type).
ApiHandler = Callable[[str, str, Any, bytes], tuple[int, bytes, str]]
_MAX_BODY = 64 * 1024
TEXT = "text/plain; charset=utf-8"
DEFAULT_ADDRESS = ("127.0.0.1", 9464)


def default_address() -> tuple[str, int]:
    """``FINOPS_HTTP_ADDRESS`` / ``FINOPS_HTTP_PORT``, else 127.0.0.1:9464."""
    from agent.config import StartupError

    address = os.environ.get("FINOPS_HTTP_ADDRESS") or DEFAULT_ADDRESS[0]
    port = os.environ.get("FINOPS_HTTP_PORT", "").strip()
    if port and not (port.isdigit() and int(port) <= 65535):
        raise StartupError(f"FINOPS_HTTP_PORT={port!r} is not a port (0-65535; 0 picks a free one)")
    return address, int(port) if port else DEFAULT_ADDRESS[1]


class HttpServer:
    """A small threaded HTTP server on one address with a table of GET routes."""

    def __init__(self, address: str, port: int, health: Health | None = None):
        self.address = address
        self.requested_port = port
        self.routes: dict[str, Route] = {}
        self.apis: dict[str, ApiHandler] = {}  # path prefix → handler
        if health is not None:
            self.routes["/healthz"] = lambda: _healthz(health)
            self.routes["/readyz"] = lambda: _readyz(health)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one picked for port 0)."""
        return int(self._server.server_address[1]) if self._server else self.requested_port

    def mount(self, routes: dict[str, Route]) -> None:
        for path, route in routes.items():
            if path in self.routes:
                raise ValueError(f"{self.address}:{self.requested_port}: {path} is served twice")
            self.routes[path] = route

    def mount_api(self, prefix: str, handler: ApiHandler) -> None:
        """Serve every method of the paths under ``prefix`` (``/api/v1/silences``) with ``handler``."""
        self.apis[prefix] = handler

    def start(self) -> None:
        from agent.config import StartupError

        routes = self.routes
        apis = self.apis

        class Handler(BaseHTTPRequestHandler):
            def _api(self, method: str) -> bool:
                path = self.path.split("?", 1)[0]
                handler = next((h for p, h in apis.items() if path == p or path.startswith(p + "/")), None)
                if handler is None:
                    return False
                size = int(self.headers.get("Content-Length") or 0)
                if size > _MAX_BODY:
                    self._answer(413, b"body too large\n", TEXT)
                    return True
                body = self.rfile.read(size) if size > 0 else b""
                try:
                    self._answer(*handler(method, self.path, self.headers, body))
                except Exception as exc:
                    log.warning("http %s %s: %s: %s", method, path, type(exc).__name__, exc)
                    self._answer(500, b"internal error\n", TEXT)
                return True

            def _answer(self, code: int, body: bytes, ctype: str) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    if code == 401:
                        self.send_header("WWW-Authenticate", 'Bearer realm="finops-agent"')
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client went away: nothing to answer (no trace)
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                if self._api("GET"):
                    return
                route = routes.get(self.path.split("?", 1)[0])
                try:
                    code, body, ctype = route() if route is not None else (404, b"not found\n", TEXT)
                except Exception as exc:  # a failing route answers 500; the server keeps serving
                    log.warning("http %s: %s: %s", self.path, type(exc).__name__, exc)
                    code, body, ctype = 500, b"internal error\n", TEXT
                self._answer(code, body, ctype)

            def do_POST(self) -> None:  # noqa: N802
                if not self._api("POST"):
                    self._answer(405 if self.path.split("?", 1)[0] in routes else 404, b"not found\n", TEXT)

            def do_DELETE(self) -> None:  # noqa: N802
                if not self._api("DELETE"):
                    self._answer(405 if self.path.split("?", 1)[0] in routes else 404, b"not found\n", TEXT)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        try:
            self._server = ThreadingHTTPServer((self.address, self.requested_port), Handler)
        except OSError as exc:
            raise StartupError(
                f"http: cannot listen on {self.address}:{self.requested_port}: {exc.strerror or exc}"
                " (set http.port / http.listen_address, or http.enabled: false)"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        log.info("serving %s on http://%s:%d", ", ".join(sorted(self.routes)), self.address, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _healthz(health: Health) -> tuple[int, bytes, str]:
    ok = health.alive()
    return (200, b"ok\n", TEXT) if ok else (503, b"pipeline stopped\n", TEXT)


def _readyz(health: Health) -> tuple[int, bytes, str]:
    standby = health.standby_reason
    if standby is not None:
        return 200, f"ready: {standby}\n".encode(), TEXT
    why = health.not_ready()
    return (200, b"ready\n", TEXT) if why is None else (503, f"not ready: {why}\n".encode(), TEXT)


def plan_servers(http: Any, sinks: dict[str, Any], health: Health) -> tuple[list[HttpServer], HttpServer | None]:
    """The servers to run and the agent's own (None with ``http.enabled: false``), each sink's paths mounted
    where the sink asks (its ``http_address()``) or on the agent's server. A sink told where it is served
    (``served_by``) learns its port."""
    routes = {name: s.http_routes() for name, s in sinks.items()}
    wanted = [(name, s, s.http_address()) for name, s in sinks.items() if routes[name]]
    named = next((addr for _n, _s, addr in wanted if addr is not None), None)
    fallback = named or default_address()
    own = (http.listen_address or fallback[0], fallback[1] if http.port is None else http.port)
    servers: dict[tuple[str, int], HttpServer] = {}
    agent_server = None
    if http.enabled:
        agent_server = servers[own] = HttpServer(own[0], own[1], health)
    for name, sink, addr in wanted:
        where = addr or own
        if where not in servers:  # a sink's own address (or the agent's, when http is off): health there too
            servers[where] = HttpServer(where[0], where[1], health)
        servers[where].mount(routes[name])
        sink.served_by(servers[where])
    return list(servers.values()), agent_server
