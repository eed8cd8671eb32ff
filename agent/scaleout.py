"""Scale-out building blocks: per-partition pre-aggregation upstream, partitioned tasks downstream.

Kafka Streams' ``groupBy`` + aggregate, for event-time windows:

- :class:`Upstream` pre-aggregates *one input partition*. It seals buckets by that partition's
  own event time (its max event time minus the allowed lateness), so replaying the partition from
  a committed offset seals the same buckets with the same sums. Its output, per sealed bucket,
  is one partial aggregate per (detector, series), each identified by (input partition, bucket):
  downstream a partial *replaces* the one with the same identity, so replays are idempotent.
  The offset it commits is the first offset of its oldest open bucket, with its clock in the
  commit metadata (:meth:`Upstream.commit_point`): nothing else needs persisting. Its clock also
  carries, per detector, the first bucket it ever had data for: every task learns from the clocks
  of all input partitions the detector's first window, the same fact one process sees.
- :class:`Task` holds the detector state of the series of one partition (of the repartition
  topic, or of an input already keyed by series). It merges the partials of each window and
  closes a window once every input partition's sealed time has passed it (idle partitions do
  not hold it back), then scores it with the usual :class:`~agent.detect.DetectorRunner`.
  Its state is written per series (one record each, for a compacted changelog topic). A partial
  that arrives after its window closed is a replay when its input had already sealed its bucket
  or sent the same value provisionally (an idle partition's open buckets); else it is late.

Nothing here talks to Kafka; :mod:`agent.sources.kafka_scale` does.
"""

from __future__ import annotations

import math
import pickle
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from agent.aggregate import Cells
from agent.alerts import Point, SeriesKey
from agent.detect import DetectorRunner
from agent.model import Cell, Observation, cell

NEG_INF = -math.inf
Partial = tuple[str, SeriesKey, float, list[Any]]  # detector, series key, bucket start, accumulator
# An input partition's clock: (sealed until, idle, detector → first bucket with data, the offset it was idle at);
# the last two may be absent (the offset is None unless idle).
Clock = tuple[Any, ...]


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _val(v: float | None) -> float:
    return NEG_INF if v is None else float(v)


class Upstream:
    """Pre-aggregation of one input partition (see the module docstring)."""

    def __init__(self, src: str, bucket: float, lateness: float, parts: dict[str, int], metadata: str | None = None):
        self.src = src
        self.bucket = float(bucket)
        self.lateness = float(lateness)
        self.parts = parts  # "source/topic" → partition count, so tasks know every input partition
        self.buckets: dict[float, Cells] = {}
        self.first_offset: dict[float, int] = {}
        self.dirty: set[float] = set()  # open buckets changed since they were last sent provisionally
        self.max_ts = NEG_INF
        self.sealed_until = NEG_INF
        self.replay_until = -1
        self.position: int | None = None
        self.idle = False
        self.idle_since: float | None = None  # monotonic: when it went idle (its owner's clock)
        self.caught_up = False  # idle (at its log's end) at least once: what it reads now is live, not a backlog
        self.next_early = NEG_INF  # event time of its next early-warning send (its open buckets)
        self.first: dict[str, float] = {}  # detector → the first bucket this partition had data for
        self.sent_clock: tuple[Any, ...] | None = None
        self.sent_at = 0.0
        if metadata:
            try:
                clock = orjson.loads(metadata)
                self.max_ts, self.sealed_until = _val(clock["m"]), _val(clock["s"])
                self.replay_until = int(clock["r"])
                self.first = {str(k): float(v) for k, v in (clock.get("f") or {}).items()}
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                pass  # not ours (e.g. committed by an older agent): start the clock afresh

    def add(
        self, observations: Iterable[Observation], first: int, last: int, event_time: float = NEG_INF
    ) -> list[Observation]:
        """Add the observations decoded from offsets ``first..last``; return the late ones. ``event_time``: the
        latest event time behind them (see ``DecodeContext.max_event_time``).

        While replaying offsets already processed before the last commit, a record for a sealed
        bucket was either counted in a partial already sent or dead-lettered already: it is skipped.
        """
        late: list[Observation] = []
        replaying = last < self.replay_until
        bucket, sealed, mx = self.bucket, self.sealed_until, self.max_ts
        buckets, firsts, dirty = self.buckets, self.first_offset, self.dirty
        for ob in observations:
            ts = ob[0]
            b = ts - ts % bucket
            if b < sealed:
                if not replaying:
                    late.append(ob)
                continue
            if ts > mx:
                mx = ts
            cells = buckets.get(b)
            if cells is None:
                cells = buckets[b] = {}
                firsts[b] = first
            elif first < firsts[b]:
                firsts[b] = first
            dirty.add(b)
            key, vals = ob[1], ob[2]
            c = cells.get(key)
            if c is None:
                cells[key] = list(vals)
            else:
                for i, v in enumerate(vals):
                    c[i] += v
        if event_time > mx and event_time - event_time % bucket >= sealed:
            mx = event_time
        self.max_ts = mx
        self.position = last + 1
        self.idle = False
        self.idle_since = None
        return late

    def seal(self, quiet: float = NEG_INF) -> list[tuple[float, Cells]]:
        """Seal the buckets this partition's event time has passed; oldest first. ``quiet``: the event time a
        partition idle for the idle timeout has reached on the wall clock (see :meth:`quiet_time`); a record older
        than the sealed time is late from then on."""
        if self.max_ts == NEG_INF:
            return []  # a partition that never had a record has no time of its own to move on
        limit = max(self.max_ts, quiet) - self.lateness
        out = []
        for b in sorted(k for k in self.buckets if k + self.bucket <= limit):
            out.append((b, self.buckets.pop(b)))
            del self.first_offset[b]
            self.dirty.discard(b)
        new_sealed = limit - limit % self.bucket
        if new_sealed > self.sealed_until:
            self.sealed_until = new_sealed
        return out

    def quiet_time(self, wall: float, timeout: float, horizon: float) -> float:
        """The event time of a partition idle for ``timeout`` seconds at wall-clock time ``wall``: the wall clock less
        the timeout, but at most ``horizon`` (the longest window) plus the lateness past its last record — the single
        pipeline's rule (:class:`agent.aggregate.Aggregator`): the window of its last record closes wherever in it the
        record fell, and a silence is not made into days of zeros."""
        return min(wall - timeout, self.max_ts + horizon + self.lateness)

    def partials(self, routers: dict[str, DetectorRunner], buckets: list[tuple[float, Cells]]) -> list[Partial]:
        """The partials of sealed (or provisional) buckets; notes each detector's first bucket with data."""
        out: list[Partial] = []
        first = self.first
        for b, cells in buckets:
            rows = rollup(routers, b, cells)
            for det in {p[0] for p in rows}:
                if b < first.get(det, math.inf):
                    first[det] = b
            out.extend(rows)
        return out

    def clock(self, idle: bool | None = None) -> Clock:
        """What the tasks are told: sealed time, idle or not, each detector's first bucket and, when idle, the
        offset it is idle at (its log's end then: a task that sees the log grow past it stops counting it idle)."""
        idle = self.idle if idle is None else idle
        return self.sealed_until, idle, dict(self.first), self.position if idle else None

    def early_buckets(
        self, step: float, wall: float = math.inf, horizon: float = math.inf
    ) -> list[tuple[float, Cells]]:
        """Its open buckets, every ``step`` seconds of its event time once it is live (caught up once) and its event
        time within ``horizon`` (the longest window) of the wall clock ``wall`` (a backlog after an outage: its
        windows are over, the tasks would not warn on them): their partials let the tasks warn early
        (:meth:`Task.early`). Sealed partials replace them later; they are not written to the changelog, and
        ``provisional`` still sends what an idle partition leaves open."""
        if not self.caught_up or self.max_ts < self.next_early or not self.buckets or wall - self.max_ts > horizon:
            return []
        self.next_early = self.max_ts - self.max_ts % step + step
        return sorted(self.buckets.items())

    def provisional(self) -> list[tuple[float, Cells]]:
        """Open buckets changed since last sent (sent when the partition goes idle; replaced later)."""
        out = [(b, self.buckets[b]) for b in sorted(self.dirty)]
        self.dirty.clear()
        return out

    def clock_changed(self, heartbeat: float | None = None) -> bool:
        """True when the clock must be sent: it changed, or (idle) ``heartbeat`` seconds passed."""
        clock = (self.sealed_until, self.idle, tuple(sorted(self.first.items())), self.position if self.idle else None)
        now = time.monotonic()
        if clock == self.sent_clock and (heartbeat is None or not self.idle or now - self.sent_at < heartbeat):
            return False
        self.sent_clock, self.sent_at = clock, now
        return True

    def commit_point(self) -> tuple[int, str] | None:
        """(offset to commit, metadata): replay starts at the oldest open bucket's first record."""
        if self.position is None:
            return None
        offset = min(self.first_offset.values(), default=self.position)
        doc: dict[str, Any] = {"m": _num(self.max_ts), "s": _num(self.sealed_until), "r": self.position}
        if self.first:
            doc["f"] = self.first
        meta = orjson.dumps(doc)
        return offset, meta.decode()


def rollup(routers: dict[str, DetectorRunner], bucket: float, cells: Cells) -> list[Partial]:
    """One partial per (detector, series) of a bucket's cells."""
    out: list[Partial] = []
    for name, r in routers.items():
        acc: dict[SeriesKey, list[Any]] = {}
        r.rollup(cells, acc, capped=False)
        out.extend((name, key, bucket, a) for key, a in acc.items())
    return out


_CHILD_KEYS: dict[Cell, str] = {}
_CHILD_CELLS: dict[str, Cell] = {}
_CHILD_CACHE_MAX = 500_000


def child_key(c: Cell | str) -> str:
    """A contributor cell as the JSON text of its dimensions (cached: cells are interned)."""
    if isinstance(c, str):
        return c
    k = _CHILD_KEYS.get(c)
    if k is None:
        k = orjson.dumps(c.dims).decode()
        if len(_CHILD_KEYS) >= _CHILD_CACHE_MAX:
            _CHILD_KEYS.clear()
        _CHILD_KEYS[c] = k
    return k


def child_cell(k: Cell | str) -> Cell:
    if not isinstance(k, str):
        return k
    c = _CHILD_CELLS.get(k)
    if c is None:
        c = cell(tuple((a, b) for a, b in orjson.loads(k)))
        if len(_CHILD_CELLS) >= _CHILD_CACHE_MAX:
            _CHILD_CELLS.clear()
        _CHILD_CELLS[k] = c
    return c


def partition_of(detector: str, key: SeriesKey, n: int) -> int:
    """The repartition-topic partition that owns a series (stable across processes and versions)."""
    return zlib.crc32(orjson.dumps([detector, *key])) % n


# -- wire format of the repartition topic (JSON: an internal topic must not carry pickles) ----
def encode(src: str, parts: dict[str, int], clock: Clock | None, partials: list[Partial]) -> bytes:
    rows = []
    for det, key, b, a in partials:
        ch = a[3]
        children = None if ch is None else {child_key(c): v for c, v in ch.items()}
        rows.append([det, key, b, a[0], a[1], a[2], children])
    doc: dict[str, Any] = {"src": src, "parts": parts, "p": rows}
    if clock is not None:
        doc["wm"] = [_num(clock[0]), clock[1]] + ([clock[3]] if len(clock) > 3 and clock[3] is not None else [])
        if len(clock) > 2 and clock[2]:
            doc["f"] = clock[2]
    return orjson.dumps(doc)


def decode(value: bytes) -> tuple[str, dict[str, int], Clock | None, list[Partial]]:
    doc = orjson.loads(value)
    partials: list[Partial] = []
    for det, key, b, a0, a1, a2, children in doc["p"]:
        # Children stay keyed by their JSON text until a window closes (merged once, then made cells).
        partials.append((det, tuple(key), float(b), [float(a0), float(a1), float(a2), children]))
    wm = doc.get("wm")
    first = {str(k): float(v) for k, v in (doc.get("f") or {}).items()}
    clock = None if wm is None else (_val(wm[0]), bool(wm[1]), first, int(wm[2]) if len(wm) > 2 else None)
    return str(doc["src"]), {str(k): int(v) for k, v in doc["parts"].items()}, clock, partials


Emitted = tuple[str, list[Point], list[dict[str, Any]]]


class Task:
    """Detector state of the series owned by one partition (see the module docstring).

    ``inputs``: the input partitions feeding it are either fixed (a keyed input partition feeds
    only its own task) or learned from the partials (``parts`` announces every partition of each
    input topic; ``sources`` names the input sources that must be heard from before any window
    closes).
    """

    def __init__(
        self,
        tid: str,
        make_runner: Callable[[str], DetectorRunner],
        detectors: Iterable[str],
        *,
        sources: Iterable[str] = (),
        inputs: Iterable[str] = (),
        idle_lease_ms: float = 10_000.0,
        idle_grace_ms: float = 0.0,
    ):
        self.tid = tid
        self.runners = {name: make_runner(name) for name in detectors}
        self.sources = set(sources)
        self.fixed_inputs = set(inputs)
        self.contrib: dict[str, dict[float, dict[SeriesKey, dict[tuple[str, float], list[Any]]]]] = {
            name: {} for name in self.runners
        }
        # input partition → [sealed until, idle, reported at (ms), offset it was idle at (None: unknown),
        # idle since (ms, this task's clock; None: not idle)]
        self.inputs: dict[str, list[Any]] = {}
        self.idle_lease_ms = idle_lease_ms
        self.idle_grace_ms = idle_grace_ms
        self.now_ms = 0.0  # the latest report time applied: this task's clock, from its input records
        self.parts: dict[str, int] = {}
        self.closed_until = NEG_INF
        self.offset: int | None = None  # next offset of its own partition to apply (repartition topic)
        self.dirty: dict[str, set[SeriesKey]] = {name: set() for name in self.runners}
        self.written: dict[str, set[SeriesKey]] = {name: set() for name in self.runners}
        self.meta_dirty = True
        # Partials merged into windows now closed, for buckets their input had not sealed yet (an idle
        # partition's open buckets): input → (detector, series, bucket) → sums. The same sums sent again
        # (sealed, or replayed by the partition's next owner) are no news; others are late.
        self.unsealed: dict[str, dict[tuple[str, SeriesKey, float], list[float]]] = {}

    # -- input -----------------------------------------------------------------------------
    def add(
        self,
        src: str,
        parts: dict[str, int],
        clock: Clock | None,
        partials: list[Partial],
        at_ms: float = 0.0,
    ) -> list:
        """Merge partials and an input clock; return the partials that arrived after their window closed.

        A partial for a window this task has closed is a replay, ignored, when its input had already
        sealed its bucket (per the clocks it sent: an upstream resumed from its committed offset) or
        sent the same sums for it before the window closed (an idle partition's open bucket, sealed
        since or replayed by its next owner); else it is late.
        """
        late = []
        known = self.inputs.get(src)
        sealed = known[0] if known is not None else NEG_INF
        unsealed = self.unsealed.get(src)
        # An active input's open buckets (b past the sealed time it reports now) come for early warnings: replaced
        # by their sealed partials later, and resent by the input after a restart, they are not written to the
        # changelog. An idle input's open buckets are: a window may close on them.
        idle = clock[1] if clock is not None else bool(known is not None and known[1])
        open_from = math.inf if idle else (clock[0] if clock is not None else sealed)
        for det, key, b, a in partials:
            r = self.runners.get(det)
            if r is None:
                continue  # a detector removed from the configuration
            w = b - b % r.window
            if w + r.window <= self.closed_until:
                if b >= sealed:
                    merged = unsealed.get((det, key, b)) if unsealed is not None else None
                    if merged is None or not _same(merged, a):
                        late.append((det, key, b, a))
                        if unsealed is not None and merged is not None:
                            unsealed[(det, key, b)] = [a[0], a[1], a[2]]  # its replay is not late twice
                continue
            self.contrib[det].setdefault(w, {}).setdefault(key, {})[(src, b)] = a
            if b < open_from:
                self.dirty[det].add(key)
        if parts:
            self.parts.update(parts)
        if at_ms > self.now_ms:
            self.now_ms = at_ms
        if clock is not None:
            cur = self.inputs.get(src)
            offset = clock[3] if len(clock) > 3 else None
            if cur is None:
                self.inputs[src] = [clock[0], clock[1], at_ms, offset, at_ms if clock[1] else None]
            else:
                while len(cur) < 5:  # restored from an older agent's record
                    cur.append(None)
                heartbeat = bool(clock[1] and cur[1] and cur[4] is not None and cur[3] == offset)
                cur[0], cur[1], cur[2], cur[3] = max(cur[0], clock[0]), clock[1], at_ms, offset
                # Idle since this report, unless it was idle at the same offset already (a heartbeat).
                cur[4] = (cur[4] if heartbeat else at_ms) if clock[1] else None
            if unsealed:  # sealed since: a later copy is recognised by its bucket alone
                limit = self.inputs[src][0]
                for k in [k for k in unsealed if k[2] < limit]:
                    del unsealed[k]
                if not unsealed:
                    del self.unsealed[src]
            if len(clock) > 2:
                self._first(clock[2])
            self.meta_dirty = True
        return late

    def _first(self, first: dict[str, float]) -> None:
        """Each detector's first window with data: the earliest of its inputs' first buckets.

        An input's first bucket in a window this task has already closed is late data (its partials
        are not merged either): it does not move the detector's start.
        """
        for det, b in first.items():
            r = self.runners.get(det)
            if r is None:
                continue
            w = b - b % r.window
            if w < r.first_window and w + r.window > self.closed_until:
                r.first_window = w

    def log_ends(self, ends: dict[str, int]) -> None:
        """The input partitions' log-end offsets, read after the partials just applied were fetched: an idle input
        whose log grew past the offset it was idle at has records its owner has not reported yet, so it holds event
        time back again (else one partition's partials, fetched first, would close windows the others still feed)."""
        for src, end in ends.items():
            cur = self.inputs.get(src)
            # (An offset unknown, from an older agent's clock: idle only while the log is empty.)
            if cur is not None and cur[1] and end > (cur[3] if len(cur) > 3 and cur[3] is not None else 0):
                cur[1] = False
                if len(cur) > 4:
                    cur[4] = None
                self.meta_dirty = True

    def watermark(self) -> float:
        if self.fixed_inputs:
            expected = self.fixed_inputs
        else:
            topics = [t for t in self.parts if t.split("/", 1)[0] in self.sources]
            if not topics or {t.split("/", 1)[0] for t in topics} != self.sources:
                return NEG_INF  # an input source not heard from yet
            expected = {f"{t}/{i}" for t in topics for i in range(self.parts[t])}
        active: list[float] = []
        idle: list[float] = []
        for src in expected:
            clock = self.inputs.get(src)
            if clock is None:
                return NEG_INF
            # Idle (caught up, nothing pending) only while its owner keeps saying so: a partition whose
            # owner crashed or left holds event time back again until its new owner reports. And only once it has
            # been idle for the grace: records delivered to it a moment late are on time.
            since = clock[4] if len(clock) > 4 and clock[4] is not None else clock[2]
            if clock[1] and self.now_ms - clock[2] <= self.idle_lease_ms and self.now_ms - since >= self.idle_grace_ms:
                idle.append(clock[0])
            else:
                active.append(clock[0])
        if active:
            return min(active)
        return max(idle, default=NEG_INF)

    def close(self) -> list[Emitted]:
        """Close the windows every input has passed: merge, score, alert."""
        wm = self.watermark()
        if wm <= self.closed_until:
            return []
        out: list[Emitted] = []
        for name, r in self.runners.items():
            windows = self.contrib[name]
            for w in sorted(k for k in windows if k + r.window <= wm):
                merged: dict[SeriesKey, list[Any]] = {}
                for key, parts in windows.pop(w).items():
                    for src, b in parts:
                        clock = self.inputs.get(src)
                        if clock is None or b >= clock[0]:  # not sealed by its input yet: sent provisionally
                            a = parts[(src, b)]
                            self.unsealed.setdefault(src, {})[(name, key, b)] = [a[0], a[1], a[2]]
                    if r.admits(key):
                        merged[key] = _merge(parts)
                r.add_window(w, merged)
            points, events = r.close_until(wm)
            if points:
                self.dirty[name].update(tuple(v for _, v in p.series) for p in points)
            if points or events:
                out.append((name, points, events))
        self.closed_until = wm
        self.meta_dirty = True
        return out

    def early(self, wall: float) -> list[Emitted]:
        """Early warnings on the open windows (the partials of its inputs' open buckets,
        :meth:`Upstream.early_buckets`), at wall-clock time ``wall`` (live input: event time runs with it). A warning
        opens an episode, which the changelog keeps; the window's close confirms or withdraws it as in one process."""
        out: list[Emitted] = []
        for name, r in self.runners.items():
            if not r.early_enabled:
                continue
            partial = {
                w: {key: _merge(parts) for key, parts in series.items() if r.admits(key)}
                for w, series in self.contrib[name].items()
                if w + r.window > self.closed_until
            }
            before = set(r.episodes)
            points, events = r.early_windows(wall, partial, wall=wall)
            if events:
                self.dirty[name].update(set(r.episodes) - before)
                out.append((name, points, events))
        return out

    # -- changelog: one record per series, one for the task itself ------------------------------
    def changelog_records(self, *, meta: bool = True) -> list[tuple[bytes, bytes | None]]:
        """Records for what changed since the last call (None: a tombstone for a forgotten series).

        The task's own record (its input clocks and the offset it has applied) comes last. ``meta=False``
        leaves it out: a checkpoint that writes it with :meth:`meta_record` only once the series records
        are acknowledged can never leave a changelog whose offset is ahead of a series' state.
        """
        out: list[tuple[bytes, bytes | None]] = []
        for name, keys in self.dirty.items():
            r = self.runners[name]
            for key in keys:
                state = self._series_state(name, r, key)
                rkey = series_record_key(self.tid, name, key)
                if state is None:
                    if key in self.written[name]:
                        self.written[name].discard(key)
                        out.append((rkey, None))
                    continue
                self.written[name].add(key)
                out.append((rkey, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)))
            keys.clear()
        # Series forgotten by expiry without new data: tombstones.
        for name, r in self.runners.items():
            gone = [k for k in self.written[name] if not r.has_series(k) and not self._has_contrib(name, k)]
            for key in gone:
                self.written[name].discard(key)
                out.append((series_record_key(self.tid, name, key), None))
        if meta:
            record = self.meta_record()
            if record is not None:
                out.append(record)
        return out

    def meta_record(self) -> tuple[bytes, bytes] | None:
        """The task's own record, if it changed since last written."""
        if not self.meta_dirty:
            return None
        meta = {
            "inputs": self.inputs,
            "parts": self.parts,
            "closed_until": self.closed_until,
            "offset": self.offset,
            "first": {name: r.first_window for name, r in self.runners.items()},
            "unsealed": self.unsealed,
        }
        self.meta_dirty = False
        return task_record_key(self.tid), pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)

    def _has_contrib(self, name: str, key: SeriesKey) -> bool:
        return any(key in ws for ws in self.contrib[name].values())

    def _series_state(self, name: str, r: DetectorRunner, key: SeriesKey) -> dict[str, Any] | None:
        contrib = {w: ws[key] for w, ws in self.contrib[name].items() if key in ws}
        if not r.has_series(key) and not contrib:
            return None
        return {**r.series_state(key), "contrib": contrib}

    def restore(self, records: dict[bytes, bytes]) -> int:
        """Rebuild from the latest changelog record per key (tombstones already removed)."""
        n = 0
        first: dict[str, float] | None = None
        for rkey, value in records.items():
            parsed = parse_record_key(rkey)
            if parsed is None or parsed[0] != self.tid:
                continue
            _, name, key = parsed
            state = pickle.loads(value)
            if name is None:
                self.inputs, self.parts = state["inputs"], state["parts"]
                self.now_ms = max((c[2] for c in self.inputs.values()), default=0.0)
                self.closed_until, self.offset = state["closed_until"], state["offset"]
                self.unsealed = state.get("unsealed", {})
                first = state.get("first")
                for runner in self.runners.values():
                    if math.isfinite(self.closed_until):
                        runner.closed_until = self.closed_until - self.closed_until % runner.window
                continue
            r = self.runners.get(name)
            if r is None or key is None:
                continue
            n += 1
            self.written[name].add(key)
            r.restore_series(key, state)
            for w, parts in state["contrib"].items():
                self.contrib[name].setdefault(w, {})[key] = parts
        for name, runner in self.runners.items():
            # A detector added since (or a record of an older version): inferred from what its series learned.
            runner.first_window = first[name] if first is not None and name in first else runner.inferred_first_window()
        self.meta_dirty = False
        return n

    def series_count(self) -> int:
        return sum(r.series_count() for r in self.runners.values())


def _merge(parts: dict[tuple[str, float], list[Any]]) -> list[Any]:
    """One series' partials of a window (per input partition and bucket) summed: [value, per value, cost value,
    children or None]."""
    m: list[Any] = [0.0, 0.0, 0.0, None]
    for a in parts.values():
        m[0] += a[0]
        m[1] += a[1]
        m[2] += a[2]
        if a[3]:
            ch = m[3] if m[3] is not None else {}
            for c, v in a[3].items():
                ch[c] = ch.get(c, 0.0) + v
            m[3] = ch
    if m[3] is not None:
        m[3] = {child_cell(c): v for c, v in m[3].items()}
    return m


def _same(merged: list[float], a: list[Any]) -> bool:
    """The sums of a partial already merged, sent again (a replay re-adds the same records in the same order)."""
    return all(math.isclose(merged[i], float(a[i]), rel_tol=1e-12, abs_tol=0.0) for i in range(3))


_SEP = b"\x1f"


def task_record_key(tid: str) -> bytes:
    return tid.encode() + _SEP


def series_record_key(tid: str, detector: str, key: SeriesKey) -> bytes:
    return tid.encode() + _SEP + detector.encode() + _SEP + orjson.dumps(list(key))


def parse_record_key(rkey: bytes) -> tuple[str, str | None, SeriesKey | None] | None:
    parts = rkey.split(_SEP, 2)
    if len(parts) == 2 and parts[1] == b"":
        return parts[0].decode(), None, None
    if len(parts) != 3:
        return None
    return parts[0].decode(), parts[1].decode(), tuple(orjson.loads(parts[2]))
