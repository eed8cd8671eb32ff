"""Sink interface: sinks receive scored points and alert documents.

``on_points`` gets every closed window (cheap: most sinks ignore it), ``on_alert`` each alert
event (firing / resolved). Network sinks subclass :class:`sinks.delivery.QueuedSink` (a durable
outbox, retries, dedupe, dead letters) and supply ``render`` and ``send``. A sink that serves HTTP
paths (``/metrics``) returns them from :meth:`Sink.http_routes`; the agent serves them on its own
server (:mod:`agent.server`), beside ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.server import HttpServer, Route


class Sink:
    #: A sink that pages (a network sink): the notifier routes, groups and silences what it gets. One that does
    #: not (/metrics, the console) gets every event, with ``silenced`` set, unless a route names it.
    pages = False
    #: It groups alerts by itself (Alertmanager): on a grouping route it gets them one by one all the same.
    groups_itself = False

    def __init__(
        self, cfg: Any, *, name: str, telemetry: Any, state_dir: str | None = None, health: Any = None, **_: Any
    ):
        self.cfg = cfg
        self.name = name
        self.telemetry = telemetry
        self.state_dir = state_dir
        self.health = health

    def start(self) -> None:
        return None

    def http_routes(self) -> dict[str, Route]:
        """Paths this sink serves over HTTP (GET): path → () → (status, body, content type)."""
        return {}

    def http_address(self) -> tuple[str, int] | None:
        """An address of its own for :meth:`http_routes`, or None: the agent's server."""
        return None

    def served_by(self, server: HttpServer) -> None:
        """Where :meth:`http_routes` are served (told before :meth:`start`)."""
        return None

    def on_points(self, points: list[Any]) -> None:
        return None

    def on_alert(self, doc: dict[str, Any]) -> None:
        raise NotImplementedError

    def on_restore(self, points: list[Any], firing: list[dict[str, Any]]) -> None:
        """After a restart: each restored series' latest point and the alerts still firing. Sinks that show
        state (``/metrics``) show it at once; nothing is sent again (default: ignored)."""
        return None

    def flush(self, timeout: float = 5.0) -> bool:
        """Make what was handed over durable (and delivered, if possible within ``timeout``)."""
        return True

    def stop(self, timeout: float = 5.0) -> None:
        return None
