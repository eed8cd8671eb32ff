"""Process-level pieces of the agent apart from the data flow: health (liveness and readiness, served on
/healthz and /readyz), the garbage collector's tuning, and a batch's original records for the dead-letter file."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from agent.sources.base import Batch


class Health:
    """Liveness: the pipeline thread runs (also while it waits on purpose for a broker that is away).
    Readiness: state restored, every source able to consume, and checkpoints succeeding."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._alive = threading.Event()
        self.sources: list[Any] = []
        self._checkpoint_error: tuple[float, str] | None = None  # (failing since, monotonic; the last error)
        self._standby: str | None = None
        self.beat = 0.0  # (monotonic) the pipeline thread's last turn; 0 before it runs
        self.stall_seconds = 300.0  # a pipeline thread stuck this long in one turn is not alive (restart it)

    def standby(self, reason: str | None) -> None:
        """Waiting for the state another replica holds (``state.type: blob``): alive, and ready *as a standby* (it
        serves its role: a rollout or a disruption budget must not wait for a standby to become the active one);
        ``/readyz`` says so."""
        self._standby = reason

    @property
    def standby_reason(self) -> str | None:
        return self._standby

    def mark_alive(self) -> None:
        """State restored, the pipeline about to run (/healthz 200; /readyz still "starting")."""
        self._alive.set()

    def mark_ready(self) -> None:
        """Sources started (/readyz 200 unless a source waits or checkpoints fail)."""
        self._ready.set()

    def mark_stopped(self) -> None:
        """Stopped (on purpose or not): neither alive nor ready."""
        self._standby = None
        self._alive.clear()
        self._ready.clear()

    def mark_dead(self) -> None:
        """The pipeline thread died: /healthz 503, and the orchestrator restarts the agent."""
        self._alive.clear()

    def checkpoint_failing(self, since: float, error: str) -> None:
        self._checkpoint_error = (since, error)

    def checkpoint_ok(self) -> None:
        self._checkpoint_error = None

    def not_ready(self) -> str | None:
        """Why the agent is not ready, or None when it is."""
        if self._standby is not None:
            return None  # (ready as a standby: see standby())
        if not self._alive.is_set():
            return "pipeline stopped"
        if not self._ready.is_set():
            return "starting"
        failing = self._checkpoint_error
        if failing is not None:
            since, error = failing
            return f"cannot checkpoint for {time.monotonic() - since:.0f} s: {error}"
        not_ready = [s for s in self.sources if not s.ready()]
        told = [f"{s.name}: {why}" for s in not_ready if (why := getattr(s, "not_ready_reason", lambda: None)())]
        if told:
            return "; ".join(told)
        waiting = sorted(getattr(s, "name", "?") for s in not_ready)
        if waiting:
            return "waiting for partitions to be assigned and restored: " + ", ".join(waiting)
        return None

    def ready(self) -> bool:
        return self.not_ready() is None

    def alive(self) -> bool:
        """Alive: restored (or a standby) and the pipeline thread turning — not stuck in one step for longer than
        ``stall_seconds`` (a deadlock, a hung call: the orchestrator restarts the agent)."""
        if self._standby is not None:
            return True
        stalled = self.beat > 0 and time.monotonic() - self.beat > self.stall_seconds
        return self._alive.is_set() and not stalled


def batch_records(batch: Batch) -> list[bytes]:
    """The original records of a batch, for the dead-letter file (rare path)."""
    p = batch.payload
    if p is None:
        return []
    if batch.kind == "lines":
        return [r for r in p if r.strip()]
    if batch.kind == "bad":
        return [r.raw for r in p]
    if batch.kind == "table":
        import orjson

        return [orjson.dumps(row, default=str) for row in p.to_pylist()]
    if batch.kind == "snapshot":
        return [f.encode() for f in getattr(p, "files", [])] or [str(getattr(p, "key", "")).encode()]
    return [repr(p)[:4096].encode()]


def tune_gc() -> None:
    """Fewer cyclic-GC passes: the hot path allocates many short-lived acyclic objects.

    Objects alive at start (modules, config) are frozen out of the collector's scans, and the
    first generation is collected every 50k allocations instead of 700 (Instagram's and many
    high-throughput Python services' setting). Reference counting still frees everything.
    """
    gc.freeze()
    threshold = gc.get_threshold()
    if threshold[0] < 50_000:
        gc.set_threshold(50_000, threshold[1], threshold[2])
