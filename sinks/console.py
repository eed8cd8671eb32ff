"""Console sink: one readable line per alert event on stdout (or JSON lines with ``json: true``)."""

from __future__ import annotations

import sys
import threading
from typing import Any, Literal

import orjson

from agent.registry import ComponentConfig, register
from sinks.base import Sink


class ConsoleConfig(ComponentConfig):
    type: Literal["console"]
    json_lines: bool = False
    show_resolved: bool = True


@register("sink", "console", ConsoleConfig)
class ConsoleSink(Sink):
    def __init__(self, cfg: ConsoleConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.json_lines = cfg.json_lines or bool(kw.get("force_json"))
        self.stream = kw.get("stream") or sys.stdout
        self._lock = threading.Lock()

    def on_alert(self, doc: dict[str, Any]) -> None:
        if doc["status"] == "resolved" and not self.cfg.show_resolved:
            return
        if self.json_lines:
            line = orjson.dumps(doc).decode()
        else:
            # The summary says what happened (an escalation, the episode's impact once resolved).
            status = "FIRING  " if doc["status"] == "firing" else "RESOLVED"
            line = f"{status} {doc['severity']:<8} {doc['summary']}"
            if doc["status"] == "firing":
                lo, hi, limit = doc.get("lower"), doc.get("upper"), doc.get("limit")
                if limit:  # a fixed bound, not a forecast band
                    band = f"{limit['name']} {limit['value']:.4g}; "
                elif lo is None and hi is None:  # no band (a data gap)
                    band = ""
                else:
                    band = f"band {'-inf' if lo is None else f'{lo:.4g}'}..{'inf' if hi is None else f'{hi:.4g}'}; "
                line += f"  [{band}id {doc['id'][:12]}]"
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
        self.telemetry.sent.labels(component=self.name).inc()
