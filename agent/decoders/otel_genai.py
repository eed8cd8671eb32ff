"""OpenTelemetry GenAI telemetry (OTLP/JSON) → token counts and token cost.

Reads what the OpenTelemetry Collector's Kafka exporter (``encoding: otlp_json``) or file
exporter writes, one export request per message or line (see :mod:`agent.decoders.otlp`), and
takes from it what the GenAI semantic conventions define:

- **metrics**: the ``gen_ai.client.token.usage`` histogram (explicit or exponential). The sum of a
  data point is its tokens, of the type in ``gen_ai.token.type`` (``input``, ``output``, or a
  cached-input type: ``cache_read``, ``cached``, ``cached_input``, ``input_cached``); its count is
  the number of measurements. Cumulative points become increments per stream, delta points are
  increments already; either way a point delivered twice counts once, and a reset (a new start
  time, a smaller value) counts from the new start, never negative (:class:`~agent.decoders.otlp.Streams`).
  A cumulative stream seen for the first time counts in full only when it started at most
  ``new_stream_max_age_seconds`` before its point, else it is a baseline.
- **spans** carrying ``gen_ai.usage.input_tokens`` / ``gen_ai.usage.output_tokens`` (or the older
  ``gen_ai.usage.prompt_tokens`` / ``gen_ai.usage.completion_tokens``), and
  ``gen_ai.usage.cache_read.input_tokens``: each span is one request, at its end time. Spans of
  the operations in ``skip_span_operations`` (agent and tool spans, whose usage repeats their
  model calls') are left out, and a span delivered twice (same trace and span id) counts once.

Everything else in a message (other metrics, spans without token usage, logs) is ignored.

**Requests.** One call records one ``input`` and one ``output`` measurement, so the two counts
are the same calls: their sum would count every call twice. ``requests`` is the larger of the
two (per bucket and dimensions, over every batch: the input and output points of the same calls may come in
separate exports), which is the number of calls also when an instrumentation leaves one type out; plus one per
span. **Cached tokens.** The conventions count cached tokens inside
the input tokens; ``input_tokens`` here is the input *not* read from the cache (as in the Bedrock
decoder, priced at the input price) and ``cached_input_tokens`` the part read from it. Where the
cached count exceeds the input count, the instrumentation counted them apart, and input is taken
as it is.

Signals (those of :mod:`agent.decoders.bedrock`, so the same token detectors work): ``requests``,
``input_tokens``, ``output_tokens``, ``cached_input_tokens``, ``tokens``, ``token_cost_usd``, ``cache_savings_usd``.
Dimensions: ``provider`` (``gen_ai.provider.name``, older ``gen_ai.system``, normalised: openai,
aws, azure, gcp, anthropic, or as given; ``unknown`` when absent), ``service`` (the provider's
service: openai, bedrock, azure-openai, azure-ai-inference, vertex-ai, gemini, gen-ai, anthropic,
or the provider value), ``model`` (``gen_ai.response.model``, else ``gen_ai.request.model``: the
response's names the priced model where a request names an Azure deployment), ``operation``
(``gen_ai.operation.name``), ``app`` (the resource's ``service.name``: the application that made
the calls), ``endpoint`` (``server.address``), one per ``attribute_dimensions`` entry (read from the
data point or span, else its scope, else its resource; ``(untagged)`` when absent), and the
``constant_dimensions``. Dimensions a record does not have are left out.

A model without a price: its tokens are counted, not its cost, and its records come back as
``unknown_model`` (partial). Bad input comes back per message, one bad record per kind of problem
(``malformed_json``, ``schema``, ``negative_value``, ``absurd_value``, ``non_finite``,
``timestamp_out_of_range``, ``late``, ``too_deep``), partial when other parts of the message were
counted. Counts are summed per (bucket, dimensions) inside a batch.

Decoder state (cumulative values, recent points and spans) lives in memory, bounded: after a
restart of the agent, each cumulative stream's first point is a baseline again, so the usage
between the last point before the restart and the first one after it is not counted (never twice).
"""

from __future__ import annotations

import math
import operator
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.decoders.base import BadRecord, DecodeContext, Decoded, Decoder, Emits, Recent, time_problem
from agent.decoders.bedrock import SIGNALS
from agent.decoders.otlp import (
    LastSeen,
    Pending,
    Problems,
    ResourceMetrics,
    ResourceSpans,
    Scalar,
    Streams,
    attributes,
    count,
    decode_histogram,
    decode_time,
    export_requests,
    given,
    identity,
    problem_of,
    temporality,
    text,
)
from agent.model import UNTAGGED, Cell, Observation, cell, make_dims
from agent.pricing import TokenPriceTable, normalize_model_id
from agent.registry import ComponentConfig, register

METRIC = "gen_ai.client.token.usage"
BUILTIN_DIMENSIONS = ("provider", "service", "model", "operation", "app", "endpoint")

_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
_MODEL = ("gen_ai.response.model", "gen_ai.request.model")
_OPERATION = "gen_ai.operation.name"
_TOKEN_TYPE = "gen_ai.token.type"
_INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHED_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
_USAGE_KEYS = frozenset(_INPUT_KEYS + _OUTPUT_KEYS)
_CACHED_TYPES = frozenset({"cache_read", "cached", "cached_input", "input_cached", "cache_read_input"})
_WANTED = frozenset(
    {*_PROVIDER, *_MODEL, _OPERATION, _TOKEN_TYPE, *_INPUT_KEYS, *_OUTPUT_KEYS, *_CACHED_KEYS}
    | {"server.address", "service.name"}
)
# gen_ai.provider.name (and the older gen_ai.system) → (provider, service)
_PROVIDERS = {
    "openai": ("openai", "openai"),
    "aws.bedrock": ("aws", "bedrock"),
    "azure.ai.openai": ("azure", "azure-openai"),
    "az.ai.openai": ("azure", "azure-openai"),
    "azure.ai.inference": ("azure", "azure-ai-inference"),
    "az.ai.inference": ("azure", "azure-ai-inference"),
    "gcp.vertex_ai": ("gcp", "vertex-ai"),
    "vertex_ai": ("gcp", "vertex-ai"),
    "gcp.gemini": ("gcp", "gemini"),
    "gemini": ("gcp", "gemini"),
    "gcp.gen_ai": ("gcp", "gen-ai"),
    "anthropic": ("anthropic", "anthropic"),
}
_KEY = operator.attrgetter("key")
_MAX_SUM = 1e15  # a cumulative sum beyond this many tokens is no usage (and loses float precision)
_CACHE_MAX = 200_000


class OtelGenAiConfig(ComponentConfig):
    type: Literal["otel_genai"]
    read: Literal["both", "metrics", "spans"] = Field(
        "both",
        description="what to count: the token-usage metric, the spans' usage, or both (only when no application "
        "sends both to this source: its calls would count twice)",
    )
    attribute_dimensions: dict[str, str] = Field(
        default_factory=dict,
        description="dimension name → attribute key, read from the data point or span, its scope or its resource "
        "(e.g. team: team, project: gen_ai.openai.project)",
    )
    constant_dimensions: dict[str, str] = Field(default_factory=dict, description="e.g. cluster: prod-eu")
    skip_span_operations: list[str] = Field(
        default_factory=lambda: ["invoke_agent", "create_agent", "execute_tool"],
        description="gen_ai.operation.name values whose spans are not counted (their usage repeats their model calls')",
    )
    new_stream_max_age_seconds: float = Field(
        300.0,
        ge=0,
        description="seconds; a cumulative stream seen for the first time counts its value in full when it started "
        "at most this long before its point, else its first point is a baseline",
    )
    max_tokens_per_record: int = Field(
        10_000_000, gt=0, description="a larger token count per span, or per call in a data point, is absurd"
    )

    @model_validator(mode="after")
    def _distinct_dimensions(self) -> OtelGenAiConfig:
        seen = set(BUILTIN_DIMENSIONS)
        for name in [*self.attribute_dimensions, *self.constant_dimensions]:
            if name in seen:
                raise ValueError(f"dimension {name!r} is defined twice (built-in: {', '.join(BUILTIN_DIMENSIONS)})")
            seen.add(name)
        return self


class _Message(Problems):
    """One message's problems, late points and unpriced models."""

    __slots__ = ("late", "unknown")

    def __init__(self) -> None:
        super().__init__()
        self.late = 0
        self.unknown: dict[str, int] = {}


class _Batch:
    """What a batch adds up, and the state changes it stages (applied once it can no longer fail)."""

    __slots__ = ("acc", "newest", "duplicates", "streams", "spans")

    def __init__(self) -> None:
        # (bucket start) → (cell key) → [input count, output count, spans, input, output, cached tokens]
        self.acc: dict[float, dict[tuple[Any, ...], list[float]]] = {}
        self.newest = -math.inf  # the latest event time counted
        self.duplicates = 0
        self.streams: Pending = {}
        self.spans: Pending = {}


# (provider, model, operation, app, endpoint, attribute dimension values) → cell and prices
_Info = tuple[Cell, float, float, float, bool, str]


@register("decoder", "otel_genai", OtelGenAiConfig)
class OtelGenAiDecoder(Decoder):
    type_name = "otel_genai"

    def __init__(self, cfg: OtelGenAiConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.prices = TokenPriceTable.from_config(pricing)
        self._tags = tuple(cfg.attribute_dimensions.items())
        self._wanted = _WANTED | frozenset(cfg.attribute_dimensions.values())
        self._metrics = cfg.read in ("both", "metrics")
        self._spans = cfg.read in ("both", "spans")
        self._skip_ops = frozenset(cfg.skip_span_operations)
        self._limit = cfg.max_tokens_per_record
        self.streams = Streams(new_stream_max_age_ns=int(cfg.new_stream_max_age_seconds * 1e9))
        self.spans_seen = LastSeen()
        self._info: dict[tuple[Any, ...], _Info] = {}
        #: (bucket, key) → the input and output counts counted in it so far (its calls: the larger), until sealed
        self._calls = Recent(_CACHE_MAX)
        self.unknown_models: dict[str, int] = {}
        self.duplicates = 0  # data points and spans already counted (redelivered), not counted again
        #: Export requests read and left out, by reason: ``other_signal`` (spans with ``read: metrics``, or metrics
        #: with ``read: spans``), ``no_genai_data`` (no GenAI token metric or span: another application's export).
        self.ignored: dict[str, int] = {}

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return (b'"resourceMetrics"' in sample or b'"resourceSpans"' in sample) and b'"gen_ai.' in sample

    @classmethod
    def emits(cls, cfg: OtelGenAiConfig) -> Emits:
        dims = {*BUILTIN_DIMENSIONS, *cfg.attribute_dimensions, *cfg.constant_dimensions}
        return Emits(frozenset(SIGNALS), frozenset(dims))

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        batch = _Batch()
        bad: list[BadRecord] = []
        unknown: dict[str, int] = {}
        ignored: dict[str, int] = {}
        for raw, exp in export_requests(lines, bad):
            msg = _Message()
            dups = batch.duplicates
            if self._metrics and exp.resourceMetrics:
                self._read_metrics(exp.resourceMetrics, msg, batch, ctx)
            if self._spans and exp.resourceSpans:
                self._read_spans(exp.resourceSpans, msg, batch, ctx)
            problems = msg.records(raw)
            bad += problems
            if not (msg.used or problems or msg.late or msg.unknown or batch.duplicates > dups):
                other = (exp.resourceMetrics and not self._metrics) or (exp.resourceSpans and not self._spans)
                why = "other_signal" if other else "no_genai_data"
                ignored[why] = ignored.get(why, 0) + 1
            if msg.late:
                reason = f"{msg.late} data points or spans older than the watermark minus allowed lateness"
                bad.append(BadRecord(raw, "late", reason, partial=msg.used > 0))
            for model, n in msg.unknown.items():
                unknown[model] = unknown.get(model, 0) + n
                reason = f"no price for model {model!r} ({n} data points or spans); tokens counted, cost not"
                bad.append(BadRecord(raw, "unknown_model", reason, partial=True, subject=model))
        out = self._observations(batch.acc, ctx.late_before)
        # Nothing raises from here on: the decoder's state changes (the batch is not decoded again).
        self.streams.apply(batch.streams)
        self.spans_seen.apply(batch.spans)
        self.duplicates += batch.duplicates
        for why, n in ignored.items():
            self.ignored[why] = self.ignored.get(why, 0) + n
        for model, n in unknown.items():
            self.unknown_models[model] = self.unknown_models.get(model, 0) + n
        if batch.newest > -math.inf:
            ctx.max_event_time = max(ctx.max_event_time, batch.newest)
        return out, bad

    def _read_metrics(
        self,
        resources: list[ResourceMetrics],
        msg: _Message,
        batch: _Batch,
        ctx: DecodeContext,
    ) -> None:
        wanted, limit = self._wanted, self._limit
        for rm in resources:
            res: dict[str, Scalar] | None = None
            res_id: Any = None
            for sm in rm.scopeMetrics:
                for m in sm.metrics:
                    if m.name != METRIC:
                        continue
                    data = m.histogram if given(m.histogram) else m.exponentialHistogram
                    if not given(data):
                        msg.add("schema", f"{METRIC} is no histogram")
                        continue
                    try:
                        hist = decode_histogram(data)
                    except Exception as exc:
                        msg.add(*problem_of(exc, f"{METRIC} histogram"))
                        continue
                    temp = temporality(hist.aggregationTemporality)
                    if temp is None:
                        at = hist.aggregationTemporality
                        msg.add("schema", f"{METRIC}: aggregationTemporality {at!r} is not 1 (delta) or 2")
                        continue
                    if res is None:
                        res, res_id = (
                            attributes(rm.resource.attributes, wanted),
                            identity(rm.resource.attributes, METRIC),
                        )
                    scope = attributes(sm.scope.attributes, wanted, res)
                    scope_id = identity(sm.scope.attributes, sm.scope.name, sm.scope.version, within=res_id)
                    for dp in hist.dataPoints:
                        attrs = attributes(dp.attributes, wanted, scope)
                        ttype = attrs.get(_TOKEN_TYPE)
                        if ttype is None:
                            msg.add("schema", f"{METRIC} data point without {_TOKEN_TYPE}")
                            continue
                        if ttype not in ("input", "output") and ttype not in _CACHED_TYPES:
                            continue  # another breakdown (e.g. reasoning): part of the output already
                        ts = self._time(dp.timeUnixNano, msg, ctx)
                        if ts is None:
                            continue
                        n, total = dp.count, dp.sum
                        if n < 0:
                            msg.add("negative_value", f"{METRIC}: negative count {n}")
                            continue
                        if total is None:
                            if n:
                                msg.add("schema", f"{METRIC}: data point of {n} measurements without a sum")
                            continue
                        if not math.isfinite(total):
                            msg.add("non_finite", f"{METRIC}: sum is not finite")
                            continue
                        if total < 0:
                            msg.add("negative_value", f"{METRIC}: negative sum {total:g}")
                            continue
                        if total > _MAX_SUM:
                            msg.add("absurd_value", f"{METRIC}: sum {total:g} over {_MAX_SUM:g} tokens")
                            continue
                        key = identity(dp.attributes, within=scope_id).digest()
                        inc = self.streams.increment(
                            key, temp, dp.startTimeUnixNano, dp.timeUnixNano, (total, float(n)), batch.streams
                        )
                        if inc is None:
                            batch.duplicates += 1
                            continue
                        tokens, calls = inc
                        if tokens > limit * max(calls, 1.0):
                            msg.add("absurd_value", f"{METRIC}: {tokens:g} tokens in {calls:g} measurements")
                            continue
                        if ttype == "input":
                            vals = (calls, 0.0, 0.0, tokens, 0.0, 0.0)
                        elif ttype == "output":
                            vals = (0.0, calls, 0.0, 0.0, tokens, 0.0)
                        else:
                            vals = (0.0, 0.0, 0.0, 0.0, 0.0, tokens)
                        self._add(batch, ctx, msg, ts, attrs, vals)

    def _read_spans(
        self,
        resources: list[ResourceSpans],
        msg: _Message,
        batch: _Batch,
        ctx: DecodeContext,
    ) -> None:
        wanted, limit = self._wanted, self._limit
        for rs in resources:
            res: dict[str, Scalar] | None = None
            for ss in rs.scopeSpans:
                scope: dict[str, Scalar] | None = None
                for sp in ss.spans:
                    if _USAGE_KEYS.isdisjoint(map(_KEY, sp.attributes)):
                        continue  # not a model call with token usage
                    if res is None:
                        res = attributes(rs.resource.attributes, wanted)
                    if scope is None:
                        scope = attributes(ss.scope.attributes, wanted, res)
                    attrs = attributes(sp.attributes, wanted, scope)
                    if attrs.get(_OPERATION) in self._skip_ops:
                        continue
                    try:
                        end = decode_time(sp.endTimeUnixNano)
                    except Exception as exc:
                        msg.add(*problem_of(exc, "span endTimeUnixNano"))
                        continue
                    ts = self._time(end, msg, ctx)
                    if ts is None:
                        continue
                    counts = [0, 0, 0]
                    problem = None
                    for i, keys in enumerate((_INPUT_KEYS, _OUTPUT_KEYS, _CACHED_KEYS)):
                        v = None
                        for k in keys:  # (the first key present: attributes holds no None)
                            v = attrs.get(k)
                            if v is not None:
                                break
                        if v is None:
                            continue
                        c = count(v, limit)
                        if isinstance(c, tuple):
                            problem = c
                            break
                        counts[i] = c
                    if problem is not None:
                        msg.add(*problem)
                        continue
                    if sp.spanId and not self.spans_seen.newer((sp.traceId, sp.spanId), end, batch.spans):
                        batch.duplicates += 1
                        continue
                    tin, tout, tcached = counts
                    self._add(batch, ctx, msg, ts, attrs, (0.0, 0.0, 1.0, tin, tout, tcached))

    def _time(self, ns: int, msg: _Message, ctx: DecodeContext) -> float | None:
        """A point's or span's time in epoch seconds, or None (its problem added to the message's)."""
        if ns <= 0:
            msg.add("schema", "data point or span without a time (timeUnixNano / endTimeUnixNano)")
            return None
        ts = ns / 1e9
        problem = time_problem(ts, ctx)
        if problem is not None:
            msg.add("timestamp_out_of_range", f"{problem}: {ns} ns")
            return None
        return ts

    def _add(
        self,
        batch: _Batch,
        ctx: DecodeContext,
        msg: _Message,
        ts: float,
        attrs: dict[str, Scalar],
        vals: tuple[float, ...],
    ) -> None:
        b = ts - ts % ctx.bucket_seconds
        if b < ctx.late_before:
            msg.late += 1
            return
        msg.used += 1
        if ts > batch.newest:
            batch.newest = ts
        get = attrs.get
        key = (
            text(get(_PROVIDER[0]) or get(_PROVIDER[1])),
            text(get(_MODEL[0]) or get(_MODEL[1])),
            text(get(_OPERATION)),
            text(get("service.name")),
            text(get("server.address")),
            tuple([text(get(src)) for _dim, src in self._tags]),
        )
        info = self._info.get(key) or self._info_for(key)
        if not info[4]:
            msg.unknown[info[5]] = msg.unknown.get(info[5], 0) + 1
        cells = batch.acc.get(b)
        if cells is None:
            cells = batch.acc[b] = {}
        sums = cells.get(key)
        if sums is None:
            cells[key] = list(vals)
        else:
            for i, v in enumerate(vals):
                sums[i] += v

    def _info_for(self, key: tuple[Any, ...]) -> _Info:
        provider_raw, model, operation, app, endpoint, tags = key
        provider, service = _PROVIDERS.get(provider_raw.lower(), (provider_raw.lower(), provider_raw.lower()))
        pairs = [
            ("provider", provider or "unknown"),
            ("service", service),
            ("model", normalize_model_id(model) if model else "unknown"),
            ("operation", operation),
            ("app", app),
            ("endpoint", endpoint),
        ]
        pairs.extend((dim, v or UNTAGGED) for (dim, _src), v in zip(self._tags, tags, strict=True))
        pairs.extend(self.cfg.constant_dimensions.items())
        c = cell(make_dims(pairs), SIGNALS)
        price = self.prices.lookup(model) if model else None
        if price is None:
            info: _Info = (c, 0.0, 0.0, 0.0, False, model or "unknown")
        else:
            info = (c, price.input, price.output, price.cached_input, True, model)
        if len(self._info) < _CACHE_MAX:
            self._info[key] = info
        return info

    def _observations(
        self, acc: dict[float, dict[tuple[Any, ...], list[float]]], late_before: float
    ) -> list[Observation]:
        out = []
        calls = self._calls
        updates: dict[tuple[float, tuple[Any, ...]], tuple[float, tuple[float, float]]] = {}
        for b, cells in acc.items():
            for key, (n_in, n_out, n_spans, tin, tout, tcached) in cells.items():
                c, p_in, p_out, p_cached, _priced, _model = self._info.get(key) or self._info_for(key)
                fresh = tin - tcached if tcached <= tin else tin  # input counts the cached tokens (see above)
                cost = fresh * p_in + tout * p_out + tcached * p_cached
                # The calls of a bucket are the larger of its input and output counts — over every batch, not each
                # one's: an application whose input and output points go out in separate exports counts once.
                seen = calls.get((b, key), (0.0, 0.0))
                counted = (seen[0] + n_in, seen[1] + n_out)
                updates[b, key] = (b, counted)
                requests = n_spans + max(counted) - max(seen)
                saved = tcached * (p_in - p_cached)
                out.append(Observation(b, c, (requests, fresh, tout, tcached, fresh + tout + tcached, cost, saved)))
        calls.update(updates, late_before)  # (sealed buckets get nothing more)
        return out

    def ignored_records(self) -> dict[str, int]:
        """Export requests read and left out so far, by reason (the pipeline counts and logs them)."""
        return dict(self.ignored)

    def prices_unknown(self) -> dict[str, int]:
        return dict(self.unknown_models)
