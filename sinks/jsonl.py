"""JSON-lines file sink: one alert document per line (what ``backtest --alerts-out`` writes)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import orjson

from agent.registry import ComponentConfig, register
from sinks.base import Sink


class JsonlConfig(ComponentConfig):
    type: Literal["jsonl"]
    path: str
    include_resolved: bool = True


@register("sink", "jsonl", JsonlConfig)
class JsonlSink(Sink):
    def __init__(self, cfg: JsonlConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._lock = threading.Lock()
        self._fh: Any = None

    def start(self) -> None:
        Path(self.cfg.path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.cfg.path, "ab")  # noqa: SIM115

    def on_alert(self, doc: dict[str, Any]) -> None:
        if doc["status"] == "resolved" and not self.cfg.include_resolved:
            return
        with self._lock:
            if self._fh is None:
                self.start()
            self._fh.write(orjson.dumps(doc) + b"\n")
        self.telemetry.sent.labels(component=self.name).inc()

    def flush(self, timeout: float = 5.0) -> bool:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
