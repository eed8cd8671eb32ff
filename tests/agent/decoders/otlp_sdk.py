"""OTLP/JSON export requests made by the OpenTelemetry Python SDK, not typed by hand.

The SDK records (a ``MeterProvider`` read by an ``InMemoryMetricReader``, a ``TracerProvider`` whose spans go to an
``InMemorySpanExporter``); ``encode_metrics`` / ``encode_spans`` of opentelemetry-exporter-otlp-proto-common (what
the SDK's OTLP exporters send) turn what it collected into an ``ExportMetricsServiceRequest`` /
``ExportTraceServiceRequest`` of opentelemetry-proto; protobuf's JSON mapping (``MessageToJson``) writes it with
lowerCamelCase keys and 64-bit integers as strings, as OTLP/JSON does. OTLP/JSON differs from protobuf's mapping
in two things (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding), and the Collector's ``otlp_json``
encoding (its Kafka and file exporters) follows OTLP:

- trace and span ids are hex strings (protobuf's mapping writes ``bytes`` as base64);
- enums are integers (``"aggregationTemporality": 2``, ``"kind": 3``; protobuf's mapping writes their names).

:func:`otlp_json` writes what the Collector writes (``collector=True``: enums as integers, ids converted to hex the
way the Collector writes them), or protobuf's plain mapping (``collector=False``: what a producer that calls
``MessageToJson`` itself sends). The decoders must read both (they keep trace and span ids as they are written,
as keys that tell a redelivered span: either form serves). One export request per line, as the Collector writes.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_IDS = frozenset({"traceId", "spanId", "parentSpanId"})  # bytes fields: spans, span links, exemplars


def _hex_ids(node: Any) -> Any:
    """Trace and span ids base64 → hex (OTLP/JSON), anywhere in the document."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _IDS and isinstance(v, str) else _hex_ids(v) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json(msg: Message, *, collector: bool = True) -> bytes:
    """An export request as one line of OTLP/JSON (see the module's docstring)."""
    text = MessageToJson(msg, indent=None, use_integers_for_enums=collector)
    if not collector:
        return text.encode()
    return orjson.dumps(_hex_ids(orjson.loads(text)))


class Metrics:
    """A ``MeterProvider`` read by an ``InMemoryMetricReader`` (cumulative, as the SDK's default, or delta
    histograms): :meth:`collect` is one export (one scheduled run of an OTLP metric exporter)."""

    def __init__(
        self,
        resource: Resource,
        *,
        delta: bool = False,
        views: Sequence[View] = (),
        scope: str = "opentelemetry.instrumentation.openai_v2",
        version: str = "2.1b0",
    ) -> None:
        temporality: dict[type, AggregationTemporality] | None = (
            {Histogram: AggregationTemporality.DELTA} if delta else None
        )
        self.reader = InMemoryMetricReader(preferred_temporality=temporality)
        self.provider = MeterProvider(
            metric_readers=[self.reader], resource=resource, views=list(views), shutdown_on_exit=False
        )
        self.meter: Meter = self.provider.get_meter(scope, version)
        self._last = 0

    def collect(self, *, collector: bool = True) -> bytes:
        # Each export is stamped with the clock (time.time_ns): on a coarse clock, wait for it to move, so that an
        # export is always newer than the one before (as exports a collection interval apart are).
        while time.time_ns() <= self._last:
            time.sleep(0.001)
        data = self.reader.get_metrics_data()
        self._last = time.time_ns()  # (not before the collection's time)
        assert data is not None, "nothing recorded"
        return otlp_json(encode_metrics(data), collector=collector)

    def point_times(self, line: bytes) -> list[int]:
        """The ``timeUnixNano`` of every data point of an export (as the SDK stamped them)."""
        doc = orjson.loads(line)
        return [
            int(p["timeUnixNano"])
            for rm in doc["resourceMetrics"]
            for sm in rm["scopeMetrics"]
            for m in sm["metrics"]
            for kind in ("gauge", "sum", "histogram")
            if kind in m
            for p in m[kind]["dataPoints"]
        ]


def gauge_callback(values: Callable[[], Iterable[tuple[float | int, dict[str, str]]]]) -> Any:
    """An observable gauge's callback yielding ``(value, attributes)`` of ``values()`` at each collection."""

    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, attrs) for v, attrs in values()]

    return callback


class Spans:
    """A ``TracerProvider`` whose ended spans go to an ``InMemorySpanExporter`` (``SimpleSpanProcessor``)."""

    def __init__(self, resource: Resource, scope: str = "opentelemetry.instrumentation.openai_v2") -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(scope, "2.1b0")

    def finished(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def export(self, spans: Sequence[ReadableSpan] | None = None, *, collector: bool = True) -> bytes:
        """One export request of ``spans`` (all ended spans when None)."""
        return otlp_json(encode_spans(self.finished() if spans is None else spans), collector=collector)
