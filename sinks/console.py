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
        # Alert id → (the event, silenced) last printed: a silence made or ended while an alert fires sends
        # the same event again with only ``silenced`` changed — a line saying so, not the same line twice.
        self._printed: dict[str, tuple[Any, bool]] = {}

    def _silence_change(self, doc: dict[str, Any]) -> str | None:
        """'' to print nothing (the same event again), a line for a silence made or ended, or None (a new event)."""
        aid = doc.get("id")
        if aid is None:
            return None
        now = ((doc.get("revision"), doc["status"], doc.get("severity"), doc.get("summary")), bool(doc.get("silenced")))
        before = self._printed.get(aid)
        self._printed[aid] = now
        if len(self._printed) > 10_000:
            del self._printed[next(iter(self._printed))]
        if before is None or before[0] != now[0]:
            return None
        if before[1] == now[1]:
            return ""
        what = f"{doc['severity']:<8} [{doc.get('detector')}] id {aid[:12]}"
        if now[1]:
            return f"SILENCED {what} (by {', '.join(doc.get('silenced_by') or [])})"
        return f"UNSILENCED {what}: still firing"

    def on_alert(self, doc: dict[str, Any]) -> None:
        if doc["status"] == "resolved" and not self.cfg.show_resolved:
            return
        change = None if self.json_lines else self._silence_change(doc)
        if change == "":
            return
        if self.json_lines:
            line = orjson.dumps(doc).decode()
        elif change is not None:
            line = change
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
                line += f"  [{band}id {doc['id'][:12]}]" + (" (silenced)" if doc.get("silenced") else "")
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
        self.telemetry.sent.labels(component=self.name).inc()
