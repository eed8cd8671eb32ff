"""Event-time tumbling aggregation with allowed lateness.

Observations are summed into fixed *buckets* (the greatest common divisor of the detectors'
windows) per cell ``(dims, signals)``. A bucket is sealed once the watermark (the lowest event time
reached by the active sources) passes its end plus the allowed lateness; a later observation
for a sealed bucket is *late*: counted and dead-lettered, never merged silently. Out-of-order
input within the lateness is handled by keeping buckets open.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.model import Cell, Observation

Cells = dict[Cell, list[float]]


class Aggregator:
    """``idle_timeout_seconds``: once every stream has been idle this long (monotonic time), each *live* stream (one
    that keeps watching its input: a followed file, a Kafka partition) moves on the wall clock to
    ``wall_clock() - idle_timeout_seconds``, but never more than ``idle_horizon_seconds`` (the longest window) plus the
    allowed lateness past its own latest event: the last window of a quiet source closes (even for a record in its
    first seconds), and silence is not made into days of zeros. A stream
    that has read all its input and stopped (a finite file) keeps its own time. None: never."""

    def __init__(
        self,
        bucket_seconds: float,
        allowed_lateness_seconds: float,
        idle_timeout_seconds: float | None = None,
        wall_clock: Callable[[], float] = time.time,
        idle_horizon_seconds: float = 0.0,
    ):
        self.bucket = float(bucket_seconds)
        self.lateness = float(allowed_lateness_seconds)
        self.buckets: dict[float, Cells] = {}
        self.sealed_until = -math.inf  # buckets starting before this are sealed
        self.source_max: dict[str, float] = {}
        self.idle_sources: set[str] = set()
        self.idle_timeout = idle_timeout_seconds
        self.wall_clock = wall_clock
        self.quiet_since: float | None = None  # monotonic: when the last active stream went idle
        self.idle_horizon = idle_horizon_seconds
        self.live: set[str] = set()  # streams that keep watching their input
        self.caught_up: set[str] = set()  # live streams that have read all their input at least once (no backlog)
        # cell → the source whose records made it (the last one to open it in a bucket): what a data-gap alert names
        self.cell_source: dict[Cell, str] = {}

    def add(
        self,
        source: str,
        observations: Iterable[Observation],
        event_time: float = -math.inf,
        origin: str | None = None,
    ) -> list[Observation]:
        """Add observations of the stream ``source``; return the late ones. ``event_time``: the latest event time of
        the records behind them when the observations are stamped coarser (bucket starts; see
        ``DecodeContext.max_event_time``). ``origin``: the configured source they came from (default ``source``)."""
        late: list[Observation] = []
        origin = origin or source
        where = self.cell_source
        bucket = self.bucket
        buckets = self.buckets
        sealed = self.sealed_until
        mx = self.source_max.get(source, -math.inf)
        for ob in observations:
            ts = ob[0]
            b = ts - ts % bucket
            if b < sealed:
                late.append(ob)
                continue
            if ts > mx:
                mx = ts
            cells = buckets.get(b)
            if cells is None:
                cells = buckets[b] = {}
            key = ob[1]
            cell = cells.get(key)
            vals = ob[2]
            if cell is None:
                cells[key] = list(vals)
                if len(where) < 1_000_000:
                    where[key] = origin
            else:
                for i, v in enumerate(vals):
                    cell[i] += v
        if event_time > mx and event_time - event_time % bucket >= sealed:
            mx = event_time
        self.source_max[source] = mx
        self.idle_sources.discard(source)
        self.quiet_since = None
        return late

    def forget(self, stream: str) -> None:
        """A stream (e.g. a revoked partition) no longer holds the watermark back."""
        self.source_max.pop(stream, None)
        self.idle_sources.discard(stream)
        self.caught_up.discard(stream)

    def set_idle(self, source: str, idle: bool = True, *, live: bool = False) -> None:
        if live:
            self.live.add(source)
        if idle:
            self.idle_sources.add(source)
            if source in self.live:  # (a finite input read to its end is a replay: not live)
                self.caught_up.add(source)
            if self.quiet_since is None and all(k in self.idle_sources for k in self.source_max):
                self.quiet_since = time.monotonic()
        else:
            self.idle_sources.discard(source)
            self.quiet_since = None

    def mark_live(self, source: str) -> None:
        """A live stream read up to its input's end while busy (it may never be idle): what it reads now is live."""
        self.live.add(source)
        self.caught_up.add(source)

    def watermark(self) -> float:
        active = [v for k, v in self.source_max.items() if k not in self.idle_sources]
        if active:
            return min(active)
        wm = max(self.source_max.values(), default=-math.inf)
        timeout = self.idle_timeout
        quiet = self.quiet_since
        if timeout is not None and quiet is not None and self.live and time.monotonic() - quiet >= timeout:
            now = self.wall_clock() - timeout
            for k in self.live:
                last = self.source_max.get(k, -math.inf)
                if last != -math.inf:
                    # (plus the lateness: the window of the last record closes, wherever in it the record fell)
                    wm = max(wm, min(now, last + self.idle_horizon + self.lateness))
        return wm

    def seal(self, *, force_all: bool = False, watermark: float | None = None) -> list[tuple[float, Cells]]:
        """Seal every bucket whose end + lateness is at or before the watermark; oldest first."""
        if force_all:
            limit = math.inf
        else:
            wm = self.watermark() if watermark is None else watermark
            limit = wm - self.lateness  # buckets ending at or before this are complete
        out = []
        for b in sorted(k for k in self.buckets if k + self.bucket <= limit):
            out.append((b, self.buckets.pop(b)))
        if not force_all and limit != -math.inf:
            new_sealed = limit - limit % self.bucket
            if new_sealed > self.sealed_until:
                self.sealed_until = new_sealed
        elif out:
            self.sealed_until = max(self.sealed_until, out[-1][0] + self.bucket)
        return out

    def live_now(self) -> bool:
        """Whether there are live streams (followed files, Kafka partitions) and each has caught up with its input at
        least once: what is read now is current, not a backlog (a replay or a catch-up, whose windows close as soon
        as it is read), and every other stream has read its input to its end (a file read once; a stream still
        reading whose first idle report, which says whether it is live, has not come)."""
        live = self.live
        return any(k in live for k in self.source_max) and all(
            k in self.caught_up if k in live else k in self.idle_sources for k in self.source_max
        )

    def open_cells(self) -> int:
        return sum(len(c) for c in self.buckets.values())

    # -- checkpointing --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "buckets": self.buckets,
            "sealed_until": self.sealed_until,
            "source_max": self.source_max,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.buckets = snap["buckets"]
        self.sealed_until = snap["sealed_until"]
        self.source_max = snap["source_max"]
