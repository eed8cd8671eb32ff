"""OTLP/JSON helpers shared by the OpenTelemetry decoders (:mod:`agent.decoders.otel_genai`,
:mod:`agent.decoders.dcgm_otlp`). This module registers no component.

What the OpenTelemetry Collector writes with the Kafka exporter's ``encoding: otlp_json`` (or its
file exporter) is one ``ExportMetricsServiceRequest`` / ``ExportTraceServiceRequest`` per message
(per line): ``{"resourceMetrics": [{"resource": {"attributes": [...]}, "scopeMetrics": [{"scope":
{...}, "metrics": [...]}]}]}``, or ``resourceSpans`` → ``scopeSpans`` → ``spans``. Its JSON mapping
(the protobuf one, with OTLP's rules):

- keys are lowerCamelCase; 64-bit integers (``timeUnixNano``, ``count``, ``asInt``, ``intValue``)
  are JSON strings (``"1700000000000000000"``), though numbers are accepted too; a field holding
  its zero value (a ``count`` of 0, a missing ``startTimeUnixNano``) may be left out;
- attributes are lists of ``{"key": ..., "value": {"stringValue" | "intValue" | "doubleValue" |
  "boolValue" | "arrayValue": ...}}``;
- ``aggregationTemporality`` is 1 (delta) or 2 (cumulative) (enum names are accepted too).

The envelope is decoded with typed msgspec structs that keep only what the decoders read; a
metric's data and an attribute's value stay raw (:class:`msgspec.Raw`) until a decoder wants
them, so metrics, spans and attributes it does not read cost a scan, and a shape it does not know
(a summary, a ``kvlistValue``) is no error. Exemplars, bucket counts and span events are never
decoded.

:class:`Streams` turns cumulative and delta data points into increments that are never counted
twice and never negative; :class:`LastSeen` keeps the newest timestamp per key (gauge samples
delivered twice). Both are bounded and are changed only through a batch's :class:`Pending`
changes, applied once the batch can no longer fail (a decoder's batch may be decoded again).
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from agent.decoders.base import BLANK, BOM, BadRecord

#: Aggregation temporalities (``AggregationTemporality`` in OTLP's ``metrics.proto``).
DELTA, CUMULATIVE = 1, 2
_TEMPORALITY = {
    1: DELTA,
    2: CUMULATIVE,
    "AGGREGATION_TEMPORALITY_DELTA": DELTA,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": CUMULATIVE,
}
_NULL = msgspec.Raw(b"null")
_ABSENT = msgspec.Raw()  # (msgspec cannot hold a Raw in a union: absent is an empty Raw, see given())


class KeyValue(msgspec.Struct, gc=False):
    key: str = ""
    value: msgspec.Raw = _NULL


class ArrayValue(msgspec.Struct, gc=False):
    values: list[AnyValue] = []


class AnyValue(msgspec.Struct, gc=False):
    stringValue: str | None = None
    boolValue: bool | None = None
    intValue: int | None = None
    doubleValue: float | None = None
    arrayValue: ArrayValue | None = None


class Resource(msgspec.Struct, gc=False):
    attributes: list[KeyValue] = []


class Scope(msgspec.Struct, gc=False):
    name: str = ""
    version: str = ""
    attributes: list[KeyValue] = []


class Metric(msgspec.Struct, gc=False):
    """A metric with its data undecoded: only the kind a decoder reads is decoded, by :func:`decode_data`."""

    name: str = ""
    gauge: msgspec.Raw = _ABSENT
    sum: msgspec.Raw = _ABSENT
    histogram: msgspec.Raw = _ABSENT
    exponentialHistogram: msgspec.Raw = _ABSENT


class ScopeMetrics(msgspec.Struct, gc=False):
    scope: Scope = msgspec.field(default_factory=Scope)
    metrics: list[Metric] = []


class ResourceMetrics(msgspec.Struct, gc=False):
    resource: Resource = msgspec.field(default_factory=Resource)
    scopeMetrics: list[ScopeMetrics] = []


class Span(msgspec.Struct, gc=False):
    """A span's attributes; its end time stays raw until the span turns out to be one a decoder reads."""

    traceId: str = ""
    spanId: str = ""
    attributes: list[KeyValue] = []
    endTimeUnixNano: msgspec.Raw = _NULL


class ScopeSpans(msgspec.Struct, gc=False):
    scope: Scope = msgspec.field(default_factory=Scope)
    spans: list[Span] = []


class ResourceSpans(msgspec.Struct, gc=False):
    resource: Resource = msgspec.field(default_factory=Resource)
    scopeSpans: list[ScopeSpans] = []


class Export(msgspec.Struct, gc=False):
    """An export request of any signal: metrics, traces, or logs (which the decoders ignore)."""

    resourceMetrics: list[ResourceMetrics] | None = None
    resourceSpans: list[ResourceSpans] | None = None
    resourceLogs: msgspec.Raw = _ABSENT


class NumberPoint(msgspec.Struct, gc=False):
    attributes: list[KeyValue] = []
    startTimeUnixNano: int = 0
    timeUnixNano: int = 0
    asDouble: float | None = None
    asInt: int | None = None
    flags: int = 0  # bit 0: no recorded value (the Prometheus receiver's staleness marker)


#: ``DataPointFlags.FLAG_NO_RECORDED_VALUE``: the point marks a series gone, it holds no value.
NO_RECORDED_VALUE = 1


class HistogramPoint(msgspec.Struct, gc=False):
    """A histogram (or exponential histogram) data point: its sum and count, not its buckets."""

    attributes: list[KeyValue] = []
    startTimeUnixNano: int = 0
    timeUnixNano: int = 0
    count: int = 0
    sum: float | None = None


class NumberData(msgspec.Struct, gc=False):
    """A gauge's or a sum's data (a gauge has no temporality)."""

    dataPoints: list[NumberPoint] = []
    aggregationTemporality: int | str = 0


class HistogramData(msgspec.Struct, gc=False):
    dataPoints: list[HistogramPoint] = []
    aggregationTemporality: int | str = 0


#: ``strict=False``: 64-bit integers come as strings, and doubles may come as ``"NaN"`` / ``"Infinity"``.
EXPORT = msgspec.json.Decoder(Export, strict=False)
_ANY = msgspec.json.Decoder(AnyValue, strict=False)
_NUMBER_DATA = msgspec.json.Decoder(NumberData, strict=False)
_HISTOGRAM_DATA = msgspec.json.Decoder(HistogramData, strict=False)
_TIME = msgspec.json.Decoder(int | None, strict=False)
_ENCODE = msgspec.json.Encoder().encode
_BY_KEY = operator.attrgetter("key")

Scalar = str | int | float | bool | tuple[Any, ...] | None


def given(raw: msgspec.Raw) -> bool:
    """Whether a raw field was in the message (and not ``null``).

    >>> given(msgspec.Raw()), given(msgspec.Raw(b"null")), given(msgspec.Raw(b"{}"))
    (False, False, True)
    """
    return len(raw) > 0 and bytes(raw) != b"null"


def decode_histogram(raw: msgspec.Raw) -> HistogramData:
    """A histogram's (or exponential histogram's) data points; raises ``msgspec.ValidationError`` on a bad shape."""
    return _HISTOGRAM_DATA.decode(raw)


def decode_numbers(raw: msgspec.Raw) -> NumberData:
    """A gauge's or sum's data points; raises ``msgspec.ValidationError`` on a bad shape."""
    return _NUMBER_DATA.decode(raw)


def decode_time(raw: msgspec.Raw) -> int:
    """A ``*UnixNano`` field kept raw: nanoseconds, 0 when absent; raises ``msgspec.ValidationError`` when no integer.

    >>> decode_time(msgspec.Raw(b'"1700000000000000000"')), decode_time(msgspec.Raw(b"null"))
    (1700000000000000000, 0)
    """
    return _TIME.decode(raw) or 0


def scalar(av: AnyValue) -> Scalar:
    """The Python value of an ``AnyValue``: str, int, float, bool, a tuple for an array, None for none we read."""
    if av.stringValue is not None:
        return av.stringValue
    if av.intValue is not None:
        return av.intValue
    if av.doubleValue is not None:
        return av.doubleValue
    if av.boolValue is not None:
        return av.boolValue
    if av.arrayValue is not None:
        return tuple(scalar(v) for v in av.arrayValue.values)
    return None


#: Attribute values already decoded (their JSON → value): the same few (models, token types, services) come in every
#: message, and a dict look-up costs a fraction of decoding one. Short values only, and a bounded number of them.
_VALUES: dict[bytes, Scalar] = {}
_VALUE_MAX = 200
_VALUES_MAX = 20_000


def attributes(
    kvs: Iterable[KeyValue], wanted: frozenset[str] | None = None, into: dict[str, Scalar] | None = None
) -> dict[str, Scalar]:
    """Attribute list → dict (only the ``wanted`` keys, when given), merged over ``into`` (later lists win:
    resource, then scope, then data point or span). A value that is no ``AnyValue`` is left out.

    >>> kvs = msgspec.json.decode(
    ...     b'[{"key":"a","value":{"intValue":"12"}},{"key":"b","value":{"stringValue":"x"}},'
    ...     b'{"key":"c","value":{"arrayValue":{"values":[{"stringValue":"p"},{"boolValue":true}]}}}]',
    ...     type=list[KeyValue])
    >>> attributes(kvs)
    {'a': 12, 'b': 'x', 'c': ('p', True)}
    >>> attributes(kvs, frozenset({"b"}), {"b": "old", "z": 1})
    {'b': 'x', 'z': 1}
    """
    out: dict[str, Scalar] = {} if into is None else dict(into)
    values = _VALUES
    for kv in kvs:
        key = kv.key
        if wanted is not None and key not in wanted:
            continue
        raw = bytes(kv.value)
        v = values.get(raw)
        if v is None:
            try:
                v = scalar(_ANY.decode(raw))
            except (msgspec.DecodeError, RecursionError):
                continue
            if v is None:
                continue
            if len(raw) <= _VALUE_MAX:
                if len(values) >= _VALUES_MAX:
                    values.clear()
                values[raw] = v
        out[key] = v
    return out


def identity(kvs: Iterable[KeyValue], *names: str, within: Any = None) -> Any:
    """A stream's identity: a 16-byte BLAKE2b hash (use ``.digest()``) of ``names`` and an attribute list (all of
    it, values as written, in any order), continuing ``within`` (the identity of the resource, of the scope...).
    A digest keeps the per-stream state small however many attributes a resource has.

    >>> kvs = msgspec.json.decode(b'[{"key":"a","value":{"intValue":"1"}},{"key":"b","value":{}}]', type=list[KeyValue])
    >>> res = identity(kvs, "metric")
    >>> identity(kvs[::-1], "metric").digest() == res.digest(), identity([], within=res).digest() == res.digest()
    (True, False)
    """
    h = hashlib.blake2b(digest_size=16) if within is None else within.copy()
    # One JSON text per level (self-delimiting: levels cannot run into each other), attributes sorted by key.
    h.update(_ENCODE((names, sorted(kvs, key=_BY_KEY))))
    return h


def text(v: Scalar) -> str:
    """An attribute value as a dimension value.

    >>> text("a"), text(3), text(2.5), text(True), text(("x", 1)), text(None)
    ('a', '3', '2.5', 'true', 'x,1', '')
    """
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return format(v, "g") if isinstance(v, float) else str(v)
    if isinstance(v, tuple):
        return ",".join(text(x) for x in v)
    return ""


def count(v: Scalar, limit: float) -> int | tuple[str, str]:
    """A token count attribute: a whole number in ``0..limit``, else ``(kind, reason)`` of what is wrong with it.

    Integers come as ``intValue``; a whole ``doubleValue`` or a string of digits is accepted too.

    >>> count(12, 100), count(12.0, 100), count("12", 100), count(-1, 100)[0], count(101, 100)[0]
    (12, 12, 12, 'negative_value', 'absurd_value')
    >>> count(math.nan, 100)[0], count(1.5, 100)[0], count(True, 100)[0]
    ('non_finite', 'schema', 'schema')
    """
    if isinstance(v, bool) or v is None or isinstance(v, tuple):
        return "schema", f"{v!r} is no token count"
    if isinstance(v, str):
        if not v.strip().isdigit():
            return "schema", f"{v[:40]!r} is no token count"
        v = int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "non_finite", "token count is not finite"
        if not v.is_integer():
            return "schema", f"{v!r} is no whole token count"
        v = int(v)
    if v < 0:
        return "negative_value", f"negative token count {v}"
    if v > limit:
        return "absurd_value", f"token count {v} over {limit:g}"
    return v


def temporality(v: int | str) -> int | None:
    """:data:`DELTA`, :data:`CUMULATIVE`, or None for unspecified or unknown (not usable)."""
    return _TEMPORALITY.get(v)


class _Bounded:
    """A dict of per-stream state that keeps its ``limit`` most recently updated entries."""

    def __init__(self, limit: int):
        self.limit = limit
        self.state: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.state)

    def apply(self, pending: Pending) -> None:
        """Apply a batch's changes (once it can no longer fail), evicting the least recently updated entries."""
        state = self.state
        for key, value in pending.items():
            state.pop(key, None)
            state[key] = value
        over = len(state) - self.limit
        if over > 0:
            for key in list(state)[:over]:  # dicts keep insertion order: updated entries were moved to the end
                del state[key]


Pending = dict[Any, Any]


class Streams(_Bounded):
    """Cumulative and delta data points → increments, per stream (metric name and every attribute, resource's too).

    Cumulative: the increment is the value minus the stream's previous value. A start time that changed, or a
    value that decreased, is a reset (a restarted process): the new value counts in full, as it holds only what
    happened since the new start. A point not newer than the last one counted (a redelivery, or an older point
    arriving late: the newer one already holds it) counts nothing. A stream seen for the first time counts its
    value in full only when it started at most ``new_stream_max_age_ns`` before the point (a process that just
    started); an older stream's first value is only a baseline: it holds usage from before the agent saw it (or
    before a restart of the agent), and counting it would put hours of usage into one window.

    Delta: every point is an increment of its interval ``(start, time]``; the stream keeps the intervals it counted,
    merged (a stream's points are contiguous: each starts where the one before ended, so that is one interval
    however long the stream runs), and a point whose interval lies inside them is a redelivered duplicate and counts
    nothing — however late it comes again. A point without a start (0) is an interval of its time alone.

    >>> s, p = Streams(new_stream_max_age_ns=0), {}
    >>> s.increment("k", CUMULATIVE, 1, 10, (5.0, 1.0), p)  # the first point: a baseline
    (0.0, 0.0)
    >>> s.increment("k", CUMULATIVE, 1, 20, (8.0, 2.0), p), s.increment("k", CUMULATIVE, 1, 20, (8.0, 2.0), p)
    ((3.0, 1.0), None)
    >>> s.increment("k", CUMULATIVE, 25, 30, (2.0, 1.0), p)  # a new start time: a reset
    (2.0, 1.0)
    >>> s.increment("k", CUMULATIVE, 25, 40, (1.0, 2.0), p)  # a decreasing sum: a reset too, never negative
    (1.0, 2.0)
    >>> s.increment("d", DELTA, 0, 10, (4.0, 1.0), p), s.increment("d", DELTA, 0, 10, (4.0, 1.0), p)
    ((4.0, 1.0), None)
    >>> [s.increment("e", DELTA, t, t + 10, (1.0,), p) for t in range(0, 200, 10)][-1]
    (1.0,)
    >>> s.increment("e", DELTA, 20, 30, (1.0,), p), p["e"]  # twenty points later: still a duplicate
    (None, (10, 200))
    """

    INTERVALS = 16  # separate counted intervals kept per delta stream (points out of order, gaps): the oldest go

    def __init__(self, limit: int = 100_000, new_stream_max_age_ns: int = 0):
        super().__init__(limit)
        self.new_stream_max_age_ns = new_stream_max_age_ns

    def increment(
        self, key: Any, temporality: int, start: int, time: int, values: tuple[float, ...], pending: Pending
    ) -> tuple[float, ...] | None:
        """The increment of one point (None: already counted), its change staged in ``pending``."""
        prev = pending.get(key)
        if prev is None:
            prev = self.state.get(key)
        if temporality == DELTA:
            lo = start if 0 < start < time else time
            iv: tuple[int, ...] = prev if prev is not None else ()  # (start, end) pairs, sorted and merged
            for i in range(0, len(iv), 2):
                if iv[i] <= lo and time <= iv[i + 1]:
                    return None  # counted already
            if iv and iv[-2] <= lo <= iv[-1] < time:  # the next point of a contiguous stream (the hot path)
                pending[key] = (*iv[:-1], time)
            else:
                pending[key] = _merged(iv, lo, time, self.INTERVALS)
            return values
        if prev is None:
            if start > 0 and 0 <= time - start <= self.new_stream_max_age_ns:
                delta = values
            else:
                delta = tuple(0.0 for _ in values)
        else:
            p_start, p_time, p_values = prev
            if time <= p_time:
                return None
            delta = tuple([v - p for v, p in zip(values, p_values, strict=True)])
            if start != p_start:
                delta = values
            else:
                for d in delta:
                    if d < 0:  # (exactly when v < p)
                        delta = values
                        break
        pending[key] = (start, time, values)
        return delta


def _merged(iv: tuple[int, ...], lo: int, hi: int, most: int) -> tuple[int, ...]:
    """The intervals ``iv`` ((start, end) pairs, sorted) with ``[lo, hi]`` added, touching ones merged; at most
    ``most`` (the oldest dropped).

    >>> _merged((0, 10, 20, 30), 10, 20, 8), _merged((0, 10), 15, 18, 8), _merged((0, 10, 20, 30), 40, 50, 2)
    ((0, 30), (0, 10, 15, 18), (20, 30, 40, 50))
    """
    pairs = [(iv[i], iv[i + 1]) for i in range(0, len(iv), 2)]
    pairs.append((lo, hi))
    pairs.sort()
    out: list[list[int]] = []
    for a, b in pairs:
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1][1] = b
        else:
            out.append([a, b])
    return tuple(x for pair in out[-most:] for x in pair)


class LastSeen(_Bounded):
    """The newest timestamp per key: a sample counts only when newer than the last one counted.

    >>> seen, p = LastSeen(), {}
    >>> seen.newer("gpu0", 10, p), seen.newer("gpu0", 10, p), seen.newer("gpu0", 5, p), seen.newer("gpu0", 20, p)
    (True, False, False, True)
    """

    def __init__(self, limit: int = 100_000):
        super().__init__(limit)

    def newer(self, key: Any, time: int, pending: Pending) -> bool:
        last = pending.get(key)
        if last is None:
            last = self.state.get(key)
        if last is not None and time <= last:
            return False
        pending[key] = time
        return True


def problem_of(exc: Exception, what: str) -> tuple[str, str]:
    """``(kind, reason)`` of an exception raised while decoding a message (or part of one)."""
    if isinstance(exc, msgspec.ValidationError):
        return "schema", f"invalid {what}: {exc}"
    if isinstance(exc, RecursionError):
        return "too_deep", "nested too deeply to decode"
    if isinstance(exc, msgspec.DecodeError):
        return "malformed_json", f"malformed JSON: {exc}"
    return "decoder_error", f"{type(exc).__name__}: {exc}"


class Problems:
    """The problems of one message, one bad record per kind (with how many there were), as the dead-letter file
    and topic hold the whole message once per kind rather than once per bad data point."""

    __slots__ = ("by_kind", "used")

    def __init__(self) -> None:
        self.by_kind: dict[str, list[Any]] = {}
        self.used = 0  # data points or spans of the message that were counted

    def add(self, kind: str, reason: str) -> None:
        hit = self.by_kind.get(kind)
        if hit is None:
            self.by_kind[kind] = [reason, 1]
        else:
            hit[1] += 1

    def records(self, raw: bytes) -> list[BadRecord]:
        out = []
        for kind, (reason, n) in self.by_kind.items():
            more = f" (and {n - 1} more)" if n > 1 else ""
            out.append(BadRecord(raw, kind, reason + more, partial=self.used > 0))
        return out


def export_requests(lines: list[bytes], bad: list[BadRecord]) -> Iterator[tuple[bytes, Export]]:
    """Each line's export request, with its original bytes; a blank line, a line that is no JSON or no export request
    goes to ``bad`` (that message alone), whatever the decoder reads of the rest."""
    for raw in lines:
        rec = raw[3:] if raw.startswith(BOM) else raw
        if not rec.strip():
            bad.append(BadRecord(raw, BLANK, "blank line"))
            continue
        try:
            exp = EXPORT.decode(rec)
        except Exception as exc:  # malformed JSON, a wrong shape, too deep: this message alone
            bad.append(BadRecord(raw, *problem_of(exc, "OTLP export request")))
            continue
        if exp.resourceMetrics is None and exp.resourceSpans is None and not given(exp.resourceLogs):
            bad.append(BadRecord(raw, "schema", "no OTLP export request: no resourceMetrics or resourceSpans"))
            continue
        yield raw, exp
