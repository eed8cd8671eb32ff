"""What the agent gives each source: the :class:`~agent.sources.base.SourceHost` protocol, implemented."""

from __future__ import annotations

import math
import queue
import threading
from typing import TYPE_CHECKING, Any

from agent.decoders.base import BadRecord
from agent.sources.base import Batch

if TYPE_CHECKING:
    from agent.pipeline import Agent


class Host:
    """The :class:`~agent.sources.base.SourceHost` the agent gives one source: what a source may ask of the
    pipeline, and nothing else of it."""

    def __init__(self, agent: Agent, source: str):
        self._agent = agent
        self._source = source
        self.telemetry = agent.telemetry
        self.partitioned = agent.topology.partitioned
        self.bucket_seconds = agent.bucket
        self.allowed_lateness_seconds = agent.cfg.pipeline.allowed_lateness_seconds
        self.idle_grace_seconds = agent.cfg.state.idle_grace_seconds

    def emit(self, batch: Batch) -> None:
        self._agent._emit(batch)

    def backlog(self) -> float:
        q = self._agent.queue
        return q.qsize() / max(q.maxsize, 1)

    def checkpoint_blocked(self) -> bool:
        return self._agent.checkpoint_blocked()

    def checkpoint(self, release: Any = None, timeout: float = 10.0) -> bool:
        """Queued behind what the source emitted before (so it is included); False if the pipeline is too busy
        to take the request within 5 s or the checkpoint did not complete within ``timeout``."""
        done = threading.Event()
        try:
            self._agent.queue.put(Batch(self._source, "checkpoint", (done, release), None), timeout=5)
        except queue.Full:
            return False
        return done.wait(timeout)

    def register_stream(self, key: str) -> None:
        self._agent.clock_of(self._source).source_max.setdefault(key, -math.inf)

    def forget_stream(self, key: str) -> None:
        self._agent.clock_of(self._source).forget(key)

    def dead_letter(self, source: str, where: str, records: list[BadRecord]) -> None:
        self._agent.dead_letter.write(source, where, records)
        self._agent.telemetry.dead_lettered.inc(len(records))  # every line in the dead-letter file counts

    def fail(self, exc: BaseException, message: str) -> None:
        self._agent.fail(exc, message)
