"""Decoder interface shared by every input format.

A decoder turns raw records into observations (see :mod:`agent.model`). Records it cannot use
come back as :class:`BadRecord` with the original bytes, a short ``kind`` (the metric label) and
a human reason; the pipeline counts them, logs each kind once and writes them to the
dead-letter file. ``partial=True`` marks a record whose usable part *was* processed (an unknown
model's tokens are counted even though they cannot be priced).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agent.model import Observation


@dataclass(slots=True)
class BadRecord:
    raw: bytes
    kind: str
    reason: str
    partial: bool = False
    subject: str = ""  # what the problem is about, when it has a name (e.g. the unpriced model)


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
    extra: dict[str, Any] = field(default_factory=dict)


Decoded = tuple[list[Observation], list[BadRecord]]


class Decoder:
    """Base class. Subclasses implement :meth:`decode_lines` and may implement :meth:`decode_table`."""

    type_name: ClassVar[str] = ""
    #: True where :meth:`decode_table` handles CSV / Parquet record batches.
    tabular: ClassVar[bool] = False

    def decode_lines(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        raise NotImplementedError

    def decode_table(self, batch: Any, ctx: DecodeContext) -> Decoded:
        raise TypeError(f"decoder {self.type_name!r} does not read tabular files (CSV/Parquet)")

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        """True when ``sample`` (the first KB of a file) looks like this decoder's format."""
        return False

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
