"""Decoder interface shared by every input format.

A decoder turns raw records into observations (see :mod:`agent.model`). Records it cannot use
come back as :class:`BadRecord` with the original bytes, a short ``kind`` (the metric label) and
a human reason; the pipeline counts them, logs each kind once and writes them to the
dead-letter file. ``partial=True`` marks a record whose usable part *was* processed (an unknown
model's tokens are counted even though they cannot be priced).

Line formats are decoded batch first, record by record only when the batch fails
(:meth:`Decoder.decode_lines`, the one place that does it for every line decoder): whatever a
record does to a decoder (deep nesting that exhausts the recursion limit, a number a library
cannot hold, invalid UTF-8...), it costs that record alone. Bytes that are not records are
normalised there too: a leading UTF-8 byte-order mark is removed (the original bytes are kept
for the dead-letter file), and a blank line comes back as a :class:`BadRecord` of kind
:data:`BLANK`, which the pipeline counts but neither logs nor dead-letters. (A trailing ``\r``
of a CRLF file is whitespace to every line decoder.)

**Late records keep their bytes.** The pipeline sets :attr:`DecodeContext.late_before` (buckets starting before it
are sealed) before it decodes a batch, and every decoder dead-letters a record whose observation falls in a sealed
bucket itself, as kind :data:`LATE` with :data:`LATE_REASON` and the record's original bytes (:func:`is_late` is
the test); the record's observation is not emitted. A record that yields several observations (an OTLP export
request) is dead-lettered once as ``late`` with how many of its parts were late, ``partial`` when its other
parts were counted; only the late parts are left out. The aggregation checks lateness again and the topology
dead-letters what it still finds late (a bucket sealed with a coarser ``bucket_seconds`` than the context's) by
the observation's ``repr``: the fallback for observations that have no source bytes.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from agent.model import Observation

log = logging.getLogger(__name__)

#: Kind of a blank (whitespace-only) line: counted by the pipeline, never dead-lettered.
BLANK = "blank_line"
BOM = b"\xef\xbb\xbf"
#: Kind and reason of a record whose event time falls in a sealed bucket (see the module docstring).
LATE = "late"
LATE_REASON = "event time older than the watermark minus allowed lateness"


@dataclass(slots=True)
class BadRecord:
    raw: bytes
    kind: str
    reason: str
    partial: bool = False
    subject: str = ""  # what the problem is about, when it has a name (e.g. the unpriced model)


def late_observation(o: Observation) -> BadRecord:
    """A late observation the decoder could not tell late (its records' bytes are gone: a decoder without the check,
    or a window sealed between decoding and aggregation), dead-lettered as JSON of what it summed — its time,
    dimensions and values — rather than the Python object's repr.

    >>> from agent.model import cell, make_dims
    >>> late_observation(Observation(60.0, cell(make_dims({"team": "a"}), ("tokens",)), (5.0,))).raw
    b'{"ts":"1970-01-01T00:01:00Z","dims":{"team":"a"},"values":{"tokens":5.0}}'
    """
    doc = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.ts)) if math.isfinite(o.ts) else str(o.ts),
        "dims": dict(o.dims),
        "values": dict(zip(o.signals, o.values, strict=False)),
    }
    return BadRecord(orjson.dumps(doc), LATE, LATE_REASON)


@dataclass
class DecodeContext:
    """What a decoder may know about where records come from."""

    source: str
    location: str = ""
    default_ts: float | None = None  # e.g. file modification time for samples without a timestamp
    min_ts: float = -math.inf
    max_ts: float = math.inf
    bucket_seconds: float = 60.0
    late_before: float = -math.inf  # bucket starts before this are sealed (set by the pipeline)
    # Set by a decoder whose observations are stamped coarser than their records (bucket starts): the latest event
    # time among the records it accepted, so that the watermark follows real event time, not bucket starts.
    max_event_time: float = -math.inf
    extra: dict[str, Any] = field(default_factory=dict)


Decoded = tuple[list[Observation], list[BadRecord]]


@dataclass(frozen=True, slots=True)
class Emits:
    """What a decoder can emit with a given config, declared without I/O (``validate`` checks detectors with it).

    ``signals``: every signal it can emit; ``dimensions``: every dimension name its observations
    can carry; ``None`` means open (decided by the data: not checked). ``together``: the groups of
    signals that one observation carries (a detector's ``per`` and ``cost_signal`` are read from
    the watched signal's observation); empty means all signals together.
    """

    signals: frozenset[str] | None = None
    dimensions: frozenset[str] | None = None
    together: tuple[frozenset[str], ...] = ()

    def groups(self) -> tuple[frozenset[str], ...]:
        if self.together:
            return self.together
        return (self.signals,) if self.signals is not None else ()


class Decoder:
    """Base class. Line decoders implement :meth:`decode_batch` (and :meth:`record_problem`); tabular
    decoders implement :meth:`decode_table`."""

    type_name: ClassVar[str] = ""
    #: True where :meth:`decode_table` handles CSV / Parquet record batches.
    tabular: ClassVar[bool] = False

    def decode_lines(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """Lines (or messages) → observations and bad records: the batch at once, or record by record.

        :meth:`decode_batch` runs on the whole batch; if it raises anything at all, the batch is
        decoded again record by record, so a failure costs exactly the records that fail.
        """
        if not lines:
            return [], []
        if type(self).decode_batch is Decoder.decode_batch:
            raise TypeError(f"decoder {self.type_name!r} does not read line formats")
        try:
            return self.decode_batch(lines, ctx)
        except Exception:  # RecursionError and MemoryError included: never more than the records that fail
            return self._record_by_record(lines, ctx)

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """Decode a batch of lines. It may raise on a bad record (the batch is then decoded record by record),
        and it must not change the decoder's state before it can no longer raise (it may run again)."""
        raise NotImplementedError

    def record_problem(self, exc: Exception) -> tuple[str, str]:
        """``(kind, reason)`` of a record that made :meth:`decode_batch` raise ``exc`` on its own."""
        if isinstance(exc, RecursionError):
            return "too_deep", "nested too deeply to decode"
        if isinstance(exc, UnicodeDecodeError):
            return "malformed_text", f"not UTF-8: {exc}"
        log.debug("decoder %s failed on a record", self.type_name, exc_info=True)
        return "decoder_error", f"{type(exc).__name__}: {exc}"

    def _record_by_record(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """The slow path of a failing batch (see :meth:`decode_lines`)."""
        blank: list[BadRecord] = []
        rest: list[bytes] = []
        boms = False
        for raw in lines:
            rec = raw[3:] if raw.startswith(BOM) else raw
            if not rec.strip():
                blank.append(BadRecord(raw, BLANK, "blank line"))
            else:
                rest.append(raw)
                boms = boms or rec is not raw
        if blank and not boms and rest:
            # Blank lines (which a batch decoder may refuse) were all that was wrong: the others as a batch.
            try:
                obs, bad = self.decode_batch(rest, ctx)
                return obs, blank + bad
            except Exception:
                pass
        out: list[Observation] = []
        bad = blank
        for raw in rest:
            rec = raw[3:] if raw.startswith(BOM) else raw
            try:
                o, b = self.decode_batch([rec], ctx)
            except Exception as exc:
                kind, reason = self.record_problem(exc)
                bad.append(BadRecord(raw, kind, reason))
                continue
            out += o
            for r in b:
                r.raw = raw  # one record: every problem is its own, with its original bytes (BOM and all)
            bad += b
        return out, bad

    def decode_table(self, batch: Any, ctx: DecodeContext) -> Decoded:
        raise TypeError(f"decoder {self.type_name!r} does not read tabular files (CSV/Parquet)")

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        """True when ``sample`` (the first KB of a file) looks like this decoder's format."""
        return False

    @classmethod
    def emits(cls, cfg: Any) -> Emits:
        """The signals and dimensions this decoder can emit with ``cfg`` (default: open, nothing checked)."""
        return Emits()

    def prices_unknown(self) -> dict[str, int]:
        return {}


def time_problem(ts: float, ctx: DecodeContext) -> str | None:
    if ts != ts or ts in (math.inf, -math.inf):
        return "timestamp is not finite"
    if ts < ctx.min_ts:
        return "timestamp too far in the past"
    if ts > ctx.max_ts:
        return "timestamp too far in the future"
    return None


def is_late(ts: float, ctx: DecodeContext) -> bool:
    """Whether an observation at ``ts`` falls in a bucket the aggregation has sealed (see the module docstring).

    >>> ctx = DecodeContext("s", bucket_seconds=60.0, late_before=120.0)
    >>> is_late(119.9, ctx), is_late(120.0, ctx), is_late(1e9, DecodeContext("s"))
    (True, False, False)
    """
    return ts - ts % ctx.bucket_seconds < ctx.late_before


class Recent:
    """What a decoder counted per key, kept while its bucket may still get records (until the pipeline seals it):
    a duplicate's identity, a bucket's calls. At most ``limit`` keys, the oldest forgotten first (a deque of the keys
    in the order they came: forgetting from the front of a dict would walk its deleted slots every time).

    >>> r = Recent(limit=2)
    >>> r.update({"a": (0.0, 1), "b": (60.0, 2)}, late_before=-math.inf); r.update({"c": (60.0, 3)}, -math.inf)
    >>> sorted(r.values), r.get("c")
    (['b', 'c'], 3)
    >>> r.update({}, late_before=120.0); len(r.values)
    0
    """

    __slots__ = ("values", "order", "limit")

    def __init__(self, limit: int = 200_000):
        self.values: dict[Any, Any] = {}
        self.order: deque[tuple[Any, float]] = deque()
        self.limit = limit

    def __contains__(self, key: object) -> bool:
        return key in self.values

    def __len__(self) -> int:
        return len(self.values)

    def get(self, key: Any, default: Any = None) -> Any:
        return self.values.get(key, default)

    def add(self, fresh: dict[Any, float], late_before: float) -> None:
        """Adds the keys of ``fresh`` (key → its bucket; none of them kept already), the bucket as their value: what
        :meth:`update` does, without a Python step per key (a decoder's per-record identities)."""
        self.values.update(fresh)
        self.order.extend(fresh.items())
        self.forget(late_before)

    def forget(self, late_before: float) -> None:
        """Forgets the keys of buckets sealed (before ``late_before``) and the oldest beyond ``limit``."""
        values, order = self.values, self.order
        while order and (order[0][1] < late_before or len(values) > self.limit):
            values.pop(order.popleft()[0], None)

    def update(self, fresh: dict[Any, tuple[float, Any]], late_before: float) -> None:
        """Adds ``fresh`` (key → (bucket, value)); forgets sealed buckets' keys and the oldest beyond ``limit``."""
        values, order = self.values, self.order
        for key, (bucket, value) in fresh.items():
            if key not in values:
                order.append((key, bucket))
            values[key] = value
        self.forget(late_before)
