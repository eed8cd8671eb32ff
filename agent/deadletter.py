"""Dead-letter file: every record the agent could not (fully) use, with its original bytes and reason."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from agent.decoders.base import BadRecord


class DeadLetterFile:
    """Append-only JSON lines; rotated to ``<path>.1`` when it reaches ``max_bytes``.

    Each line: ``time``, ``source``, ``location``, ``kind``, ``reason``, ``partial`` (the usable
    part was processed), ``original_b64`` (the exact bytes) and ``original`` (the same as text
    when it is valid UTF-8).
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 256 * 1024 * 1024):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fh: Any = None
        self.written = 0

    def _open(self) -> Any:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115
        return self._fh

    def write(self, source: str, location: str, records: list[BadRecord]) -> None:
        if not records:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = []
        for r in records:
            try:
                text: str | None = r.raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            lines.append(
                orjson.dumps(
                    {
                        "time": now,
                        "source": source,
                        "location": location,
                        "kind": r.kind,
                        "reason": r.reason,
                        "partial": r.partial,
                        "original": text,
                        "original_b64": base64.b64encode(r.raw).decode("ascii"),
                    }
                )
            )
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            fh = self._open()
            fh.write(data)
            fh.flush()
            self.written += len(records)
            if fh.tell() >= self.max_bytes:
                fh.close()
                self._fh = None
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
