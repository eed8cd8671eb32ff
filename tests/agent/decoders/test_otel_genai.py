"""OpenTelemetry GenAI metrics and spans as the Collector writes them (OTLP/JSON: 64-bit integers as strings,
resource → scope → metric / span nesting) → token counts and cost."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.metrics import Histogram, Meter
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.decoders.base import BLANK, DecodeContext
from agent.decoders.bedrock import SIGNALS
from agent.decoders.otel_genai import OtelGenAiConfig, OtelGenAiDecoder
from agent.model import Observation, parse_time
from agent.pipeline import Agent
from agent.state import MemoryStateStore
from bench.decoders import otlp_attrs as attrs
from tests.agent.decoders.otlp_sdk import Metrics, Spans

T0 = parse_time("2026-10-01T10:00:00Z")
NS = 1_000_000_000
MINI = {"input": 0.15e-6, "output": 0.6e-6, "cached_input": 0.075e-6}  # gpt-4o-mini, bundled table
BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


# -- OTLP/JSON as the Collector's otlp_json marshaler writes it (attributes: bench.decoders.otlp_attrs) ------------
RESOURCE = {
    "service.name": "support-bot",
    "service.instance.id": "3f1c7a52-pod-7d9f",
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.27.0",
    "team": "support",
}
CALL: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "server.address": "api.openai.com",
    "server.port": 443,
}


def hpoint(ttype: str, total: float | str, n: int, t: float, start: float = T0, **over: Any) -> dict[str, Any]:
    """A histogram data point of gen_ai.client.token.usage (bucket counts included: the decoder must skip them)."""
    a = {**CALL, "gen_ai.token.type": ttype, **over}
    p: dict[str, Any] = {
        "attributes": attrs({k: v for k, v in a.items() if v is not None}),
        "startTimeUnixNano": str(int(start * NS)),
        "timeUnixNano": str(int(t * NS)),
        "count": str(n),
        "sum": total,
        "bucketCounts": ["0"] * 7 + [str(n)] + ["0"] * 7,
        "explicitBounds": BOUNDS,
        "exemplars": [{"timeUnixNano": str(int(t * NS)), "asDouble": 12.0, "spanId": "a1b2c3d4e5f60718"}],
    }
    if n:
        p["min"] = p["max"] = 1.0
    return p


def metrics(points: list[dict[str, Any]], temporality: int = 2, resource: dict[str, Any] | None = None) -> bytes:
    """An ExportMetricsServiceRequest: the token-usage histogram beside another GenAI metric (ignored)."""
    duration = {
        "name": "gen_ai.client.operation.duration",
        "unit": "s",
        "histogram": {
            "dataPoints": [{"attributes": attrs(CALL), "timeUnixNano": str(int(T0 * NS)), "count": "3", "sum": 4.2}],
            "aggregationTemporality": temporality,
        },
    }
    usage = {
        "name": "gen_ai.client.token.usage",
        "description": "Measures number of input and output tokens used",
        "unit": "{token}",
        "histogram": {"dataPoints": points, "aggregationTemporality": temporality},
    }
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": attrs(RESOURCE if resource is None else resource)},
                "scopeMetrics": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                        "metrics": [duration, usage],
                    }
                ],
                "schemaUrl": "https://opentelemetry.io/schemas/1.28.0",
            }
        ]
    }
    return orjson.dumps(doc)


def span(end: float, usage: dict[str, Any] | None = None, span_id: str = "00f067aa0ba902b7", **over: Any) -> dict:
    """A chat span of the openai-v2 instrumentation (by default 1,200 input and 300 output tokens)."""
    if usage is None:
        usage = {"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}
    a = {**CALL, "gen_ai.response.id": "chatcmpl-AbC123", **usage, **over}
    return {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": span_id,
        "parentSpanId": "",
        "name": f"chat {a.get('gen_ai.request.model')}",
        "kind": 3,
        "startTimeUnixNano": str(int((end - 2) * NS)),
        "endTimeUnixNano": str(int(end * NS)),
        "attributes": attrs({k: v for k, v in a.items() if v is not None}),
        "events": [{"timeUnixNano": str(int(end * NS)), "name": "gen_ai.content.prompt"}],
        "status": {},
    }


def traces(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> bytes:
    http = {  # an ordinary span in the same batch: ignored
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "b7ad6b7169203331",
        "name": "POST /v1/chat",
        "kind": 2,
        "startTimeUnixNano": str(int(T0 * NS)),
        "endTimeUnixNano": str(int((T0 + 3) * NS)),
        "attributes": attrs({"http.request.method": "POST", "http.response.status_code": 200}),
    }
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": attrs(RESOURCE if resource is None else resource)},
                "scopeSpans": [
                    {"scope": {"name": "opentelemetry.instrumentation.fastapi"}, "spans": [http]},
                    {"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"}, "spans": spans},
                ],
            }
        ]
    }
    return orjson.dumps(doc)


def decoder(**cfg: Any) -> OtelGenAiDecoder:
    cfg.setdefault("attribute_dimensions", {"team": "team"})
    return OtelGenAiDecoder(OtelGenAiConfig(type="otel_genai", **cfg))


def ctx(**kw: Any) -> DecodeContext:
    return DecodeContext("t", bucket_seconds=60, **kw)


def totals(obs: list[Observation]) -> dict[str, float]:
    return {s: sum(o.values[i] for o in obs) for i, s in enumerate(SIGNALS)}


def mini_cost(tin: float, tout: float, cached: float = 0.0) -> float:
    return tin * MINI["input"] + tout * MINI["output"] + cached * MINI["cached_input"]


# -- the same, produced by the OpenTelemetry SDK (see otlp_sdk) ----------------------------------------------------
def app_resource(**over: Any) -> Resource:
    """An application's resource (the SDK adds telemetry.sdk.* and a service.instance.id)."""
    return Resource.create({"service.name": "support-bot", "team": "support", **over})


def token_usage(meter: Meter) -> Histogram:
    """gen_ai.client.token.usage as the GenAI semantic conventions define it (unit, advised bucket boundaries)."""
    return meter.create_histogram(
        "gen_ai.client.token.usage",
        unit="{token}",
        description="Measures number of input and output tokens used",
        explicit_bucket_boundaries_advisory=BOUNDS,
    )


def record_call(usage: Histogram, tin: int, tout: int, cached: int | None = None, **over: Any) -> None:
    """One model call as an instrumentation records it: an input and an output measurement (and the cached
    input, for instrumentations that record it); ``over``: attributes to change (None: to leave out)."""
    a = {k: v for k, v in {**CALL, **over}.items() if v is not None}
    usage.record(tin, {**a, "gen_ai.token.type": "input"})
    usage.record(tout, {**a, "gen_ai.token.type": "output"})
    if cached is not None:
        usage.record(cached, {**a, "gen_ai.token.type": "cache_read"})


def token_points(line: bytes) -> dict[str, tuple[Any, Any, int]]:
    """The token-usage data points of an export by token type: (count as written, sum, startTimeUnixNano)."""
    out = {}
    for rm in orjson.loads(line)["resourceMetrics"]:
        for sm in rm["scopeMetrics"]:
            for m in sm["metrics"]:
                if m["name"] == "gen_ai.client.token.usage":
                    for p in m["histogram"]["dataPoints"]:
                        ttype = next(
                            a["value"]["stringValue"] for a in p["attributes"] if a["key"] == "gen_ai.token.type"
                        )
                        out[ttype] = (p["count"], p["sum"], int(p["startTimeUnixNano"]))
    return out


# -- metrics ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("collector", [True, False], ids=["otlp_json", "protobuf_json"])
def test_sdk_cumulative_histogram_counts_the_increase_and_each_call_once(collector: bool) -> None:
    """The SDK's default (cumulative) temporality: the second export carries the running totals."""
    sdk = Metrics(app_resource())
    usage = token_usage(sdk.meter)
    duration = sdk.meter.create_histogram("gen_ai.client.operation.duration", unit="s")  # another metric: ignored
    spans = Spans(app_resource())
    for tin, tout in [(100, 20), (300, 60), (250, 50), (350, 70)]:  # 4 calls: 1,000 input and 200 output tokens
        with spans.tracer.start_as_current_span("chat gpt-4o-mini"):  # (exemplars carry the span's ids)
            record_call(usage, tin, tout)
            duration.record(0.8, CALL)
    first = sdk.collect(collector=collector)
    record_call(usage, 200, 20)
    record_call(usage, 300, 40)
    second = sdk.collect(collector=collector)
    assert token_points(second)["input"][:2] == ("6", 1500.0)  # running totals, the count an int64 string
    # OTLP/JSON writes enums as integers, protobuf's JSON mapping their names: the decoder reads both.
    assert (b'"aggregationTemporality":2' in second) is collector
    assert (b'"AGGREGATION_TEMPORALITY_CUMULATIVE"' in second) is not collector
    dec = decoder()
    c = ctx()
    obs, bad = dec.decode_lines([first], c)
    assert bad == []
    # A process that just started: its first export counts in full. One call records an input and an output
    # measurement: 4 requests, not 8.
    t = totals(obs)
    assert [t[s] for s in SIGNALS[:5]] == [4, 1000, 200, 0, 1200]
    assert t["token_cost_usd"] == pytest.approx(mini_cost(1000, 200))
    want = {
        "provider": "openai",
        "service": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "operation": "chat",
        "app": "support-bot",
        "endpoint": "api.openai.com",
        "team": "support",  # from the resource
    }
    assert [dict(o.dims) for o in obs] == [want] * len(obs)
    assert c.max_event_time == max(sdk.point_times(first)) / 1e9  # (as the decoder divides)
    # The second export counts the increase only.
    obs, bad = dec.decode_lines([second], c)
    t = totals(obs)
    assert bad == [] and [t[s] for s in SIGNALS[:5]] == [2, 500, 60, 0, 560]
    assert t["token_cost_usd"] == pytest.approx(mini_cost(500, 60))
    # Delivered again (a Kafka redelivery, a producer retry), or an older export arriving late: nothing more.
    again, bad = dec.decode_lines([second, first], ctx())
    assert again == [] and bad == [] and dec.duplicates == 4
    # Both exports in one batch, to a decoder that had seen neither: the same totals.
    obs, _ = decoder().decode_lines([first, second, second], ctx())
    t = totals(obs)
    assert [t[s] for s in SIGNALS[:5]] == [6, 1500, 260, 0, 1760]


def test_first_point_of_a_long_running_stream_is_a_baseline() -> None:
    dec = decoder()
    old = T0 - 86400  # the process (and its cumulative totals) started a day before the agent saw it
    first = metrics([hpoint("input", 9e6, 30_000, T0 + 60, start=old), hpoint("output", 1e6, 30_000, T0 + 60, old)])
    second = metrics(
        [hpoint("input", 9e6 + 700, 30_002, T0 + 120, old), hpoint("output", 1e6 + 50, 30_002, T0 + 120, old)]
    )
    obs, bad = dec.decode_lines([first, second], ctx())
    assert bad == []
    t = totals(obs)
    assert (t["requests"], t["input_tokens"], t["output_tokens"]) == (2, 700, 50)
    # With new_stream_max_age_seconds: 0 even a fresh stream's first point is only a baseline.
    obs, _ = decoder(new_stream_max_age_seconds=0).decode_lines([metrics([hpoint("input", 10.0, 1, T0 + 5)])], ctx())
    assert totals(obs)["input_tokens"] == 0


def test_counter_reset_counts_from_the_new_start_and_is_never_negative() -> None:
    dec = decoder()
    restart = T0 + 150
    lines = [
        metrics([hpoint("input", 1000.0, 4, T0 + 60), hpoint("output", 100.0, 4, T0 + 60)]),
        metrics([hpoint("input", 1600.0, 6, T0 + 120), hpoint("output", 160.0, 6, T0 + 120)]),
        # an older export arriving late (another partition): the newer one holds it already, it adds nothing
        metrics([hpoint("input", 1300.0, 5, T0 + 90), hpoint("output", 130.0, 5, T0 + 90)]),
        # the application restarted: a new start time and smaller totals
        metrics([hpoint("input", 300.0, 1, T0 + 180, start=restart), hpoint("output", 30.0, 1, T0 + 180, restart)]),
        # the same start time but a smaller sum (an SDK that does not move its start time): a reset too
        metrics([hpoint("input", 50.0, 2, T0 + 240, restart), hpoint("output", 5.0, 2, T0 + 240, restart)]),
        metrics([hpoint("input", 80.0, 3, T0 + 300, restart), hpoint("output", 9.0, 3, T0 + 300, restart)]),
    ]
    obs, bad = dec.decode_lines(lines, ctx())
    assert bad == []
    per_minute = {o.ts: o.values[:3] for o in obs}
    assert per_minute == {
        T0 + 60: (4, 1000, 100),
        T0 + 120: (2, 600, 60),
        T0 + 180: (1, 300, 30),
        T0 + 240: (2, 50, 5),
        T0 + 300: (1, 30, 4),
    }
    assert all(v >= 0 for o in obs for v in o.values)


def test_sdk_delta_histogram_each_point_counts_and_a_redelivered_one_once() -> None:
    sdk = Metrics(app_resource(), delta=True)
    usage = token_usage(sdk.meter)
    record_call(usage, 200, 30)
    record_call(usage, 300, 50)
    p1 = sdk.collect()
    for tin, tout in [(100, 20), (250, 30), (350, 40)]:
        record_call(usage, tin, tout)
    p2 = sdk.collect()
    record_call(usage, 40, 5)
    p3 = sdk.collect()
    # Delta: each export holds what was recorded since the last one (its start is the previous export's time).
    assert b'"aggregationTemporality":1' in p2
    assert token_points(p2)["input"][:2] == ("3", 700.0)
    assert token_points(p2)["input"][2] == max(sdk.point_times(p1))
    dec = decoder()
    obs, bad = dec.decode_lines([p1, p3, p1], ctx())  # p1 twice in one batch; p2 still on its way
    t = totals(obs)
    assert bad == [] and (t["requests"], t["input_tokens"], t["output_tokens"]) == (3, 540, 85)
    # p2 arrives late (out of order: another partition) and still counts; p3 again (a redelivery) does not.
    obs, bad = dec.decode_lines([p2, p3], ctx())
    t = totals(obs)
    assert bad == [] and (t["requests"], t["input_tokens"], t["output_tokens"]) == (3, 700, 90)
    assert t["token_cost_usd"] == pytest.approx(mini_cost(700, 90))
    assert dec.duplicates == 4


def test_a_delta_export_redelivered_many_exports_later_still_counts_once() -> None:
    """New-user review: an export delivered again 20 exports later was counted twice (only the last 8 delta times of a
    stream were remembered). A stream's counted intervals are kept merged: one interval however long it runs."""
    sdk = Metrics(app_resource(), delta=True)
    usage = token_usage(sdk.meter)
    exports = []
    for i in range(30):
        record_call(usage, 100 + i, 10)
        exports.append(sdk.collect())
    dec = decoder()
    obs, bad = dec.decode_lines(exports, ctx())
    first = totals(obs)
    assert bad == [] and first["requests"] == 30
    again, bad = dec.decode_lines([exports[3], exports[7]], ctx())  # 26 and 22 exports later
    assert again == [] and bad == []


def test_sdk_older_attribute_names_azure_and_cached_token_type() -> None:
    sdk = Metrics(app_resource(), delta=True)
    usage = token_usage(sdk.meter)
    old = {
        "gen_ai.provider.name": None,
        "gen_ai.system": "az.ai.openai",  # the older attribute (and value) naming the provider
        "gen_ai.request.model": "my-deployment",  # Azure: the deployment; the response names the model
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "server.address": "contoso.openai.azure.com",
    }
    for _ in range(5):
        record_call(usage, 2_000, 200, cached=800, **old)
    obs, bad = decoder().decode_lines([sdk.collect()], ctx())
    assert bad == []
    (o,) = obs
    dims = dict(o.dims)
    assert (dims["provider"], dims["service"], dims["model"]) == ("azure", "azure-openai", "gpt-4o-2024-08-06")
    assert dims["endpoint"] == "contoso.openai.azure.com"
    # input counts its cached tokens (GenAI conventions): 6,000 fresh + 4,000 read from the cache
    assert o.values[:5] == (5, 6_000, 1_000, 4_000, 11_000)
    assert o.values[5] == pytest.approx(6_000 * 2.5e-6 + 1_000 * 10e-6 + 4_000 * 1.25e-6)


def test_providers_are_normalised() -> None:
    cases = {
        "aws.bedrock": ("aws", "bedrock"),
        "azure.ai.openai": ("azure", "azure-openai"),
        "gcp.vertex_ai": ("gcp", "vertex-ai"),
        "gcp.gen_ai": ("gcp", "gen-ai"),
        "anthropic": ("anthropic", "anthropic"),
        "mistral_ai": ("mistral_ai", "mistral_ai"),
    }
    for raw, want in cases.items():
        line = metrics([hpoint("input", 10.0, 1, T0 + 5, **{"gen_ai.provider.name": raw})], temporality=1)
        obs, _bad = decoder().decode_lines([line], ctx())
        dims = dict(obs[0].dims)
        assert (dims["provider"], dims["service"]) == want, raw
    bedrock = {"gen_ai.provider.name": "aws.bedrock", "gen_ai.response.model": None}
    bedrock["gen_ai.request.model"] = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
    obs, bad = decoder().decode_lines([metrics([hpoint("input", 1e6, 1, T0 + 5, **bedrock)], temporality=1)], ctx())
    assert bad == [] and dict(obs[0].dims)["model"] == "anthropic.claude-3-5-sonnet-20241022-v2:0"
    assert obs[0].values[5] == pytest.approx(3.0)  # $3 per million input tokens


def test_unknown_model_tokens_counted_cost_not() -> None:
    dec = decoder()
    gem = {
        "gen_ai.provider.name": "gcp.vertex_ai",
        "gen_ai.request.model": "gemini-9-ultra",
        "gen_ai.response.model": None,
    }
    line = metrics([hpoint("input", 800.0, 2, T0 + 5, **gem), hpoint("input", 100.0, 1, T0 + 5)], temporality=1)
    obs, bad = dec.decode_lines([line], ctx())
    by_model = {dict(o.dims)["model"]: o for o in obs}
    assert by_model["gemini-9-ultra"].values[1] == 800 and by_model["gemini-9-ultra"].values[5] == 0
    assert by_model["gpt-4o-mini-2024-07-18"].values[5] > 0
    (b,) = bad
    assert (b.kind, b.partial, b.subject, b.raw) == ("unknown_model", True, "gemini-9-ultra", line)
    assert dec.prices_unknown() == {"gemini-9-ultra": 1}


def test_attribute_and_constant_dimensions() -> None:
    dec = decoder(
        attribute_dimensions={"team": "team", "project": "gen_ai.openai.project", "env": "deployment.environment"},
        constant_dimensions={"cluster": "prod-eu"},
    )
    line = metrics([hpoint("input", 10.0, 1, T0 + 5, **{"gen_ai.openai.project": "proj_abc"})], temporality=1)
    (o,), bad = dec.decode_lines([line], ctx())
    dims = dict(o.dims)
    assert bad == []
    assert (dims["team"], dims["project"], dims["env"], dims["cluster"]) == (
        "support",
        "proj_abc",
        "(untagged)",
        "prod-eu",
    )
    # A data point's attribute wins over the resource's.
    line = metrics([hpoint("input", 10.0, 1, T0 + 6, team="search")], temporality=1)
    (o,), _ = dec.decode_lines([line], ctx())
    assert dict(o.dims)["team"] == "search"
    assert dec.emits(dec.cfg).dimensions == {
        "provider", "service", "model", "operation", "app", "endpoint", "team", "project", "env", "cluster"
    }  # fmt: skip
    assert dec.emits(dec.cfg).signals == set(SIGNALS)
    assert {k for k, _v in o.dims} <= dec.emits(dec.cfg).dimensions  # type: ignore[operator]
    with pytest.raises(ValidationError, match="defined twice"):
        OtelGenAiConfig(type="otel_genai", attribute_dimensions={"model": "x"})


# -- spans --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("collector", [True, False], ids=["otlp_json", "protobuf_json"])
def test_sdk_spans_count_each_model_call_once(collector: bool) -> None:
    sdk = Spans(app_resource())
    tracer = sdk.tracer

    def model_call(end: float, usage: dict[str, Any], parent: Any = None, **over: Any) -> Any:
        """A span as the openai-v2 instrumentation makes it (named after the operation and model)."""
        a = {**CALL, "gen_ai.response.id": "chatcmpl-AbC123", **usage, **over}
        a = {k: v for k, v in a.items() if v is not None}
        name = f"{a['gen_ai.operation.name']} {a.get('gen_ai.request.model', '')}".strip()
        sp = tracer.start_span(name, context=parent, kind=SpanKind.CLIENT, attributes=a, start_time=int((end - 2) * NS))
        sp.end(end_time=int(end * NS))
        return sp

    http = sdk.provider.get_tracer("opentelemetry.instrumentation.fastapi").start_span(
        "POST /v1/chat", kind=SpanKind.SERVER, attributes={"http.request.method": "POST"}, start_time=int(T0 * NS)
    )
    # An agent span repeats its model calls' usage: not counted (skip_span_operations).
    agent = tracer.start_span(
        "invoke_agent support-agent",
        context=trace.set_span_in_context(http),
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 2900,
            "gen_ai.usage.output_tokens": 650,
        },
        start_time=int((T0 + 5) * NS),
    )
    inside = trace.set_span_in_context(agent)
    usage = {"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}
    model_call(T0 + 10, usage, inside)
    model_call(T0 + 20, {**usage, "gen_ai.usage.cache_read.input_tokens": 1000}, inside)
    old = {"gen_ai.usage.prompt_tokens": 500, "gen_ai.usage.completion_tokens": 50}  # older attribute names
    model_call(T0 + 30, old, inside, **{"gen_ai.system": "openai", "gen_ai.provider.name": None})
    # A GenAI span without usage (a tool call): ignored.
    tool = tracer.start_span("execute_tool get_weather", inside, attributes={"gen_ai.operation.name": "execute_tool"})
    tool.end(end_time=int((T0 + 35) * NS))
    agent.end(end_time=int((T0 + 40) * NS))
    http.end(end_time=int((T0 + 41) * NS))
    line = sdk.export(collector=collector)
    span_ids = [
        s["spanId"] for rs in orjson.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]
    ]
    assert len(span_ids) == 6 and len(set(span_ids)) == 6
    if collector:  # OTLP/JSON: hex ids
        assert format(agent.get_span_context().span_id, "016x") in span_ids

    dec = decoder(attribute_dimensions={})
    c = ctx()
    obs, bad = dec.decode_lines([line], c)
    assert bad == []
    (o,) = obs
    assert o.ts == T0
    assert dict(o.dims) == {
        "provider": "openai",
        "service": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "operation": "chat",
        "app": "support-bot",
        "endpoint": "api.openai.com",
    }
    requests, fresh, out, cached, tokens, cost, saved = o.values
    assert (requests, fresh, out, cached, tokens) == (3, 1200 + 200 + 500, 300 + 300 + 50, 1000, 2900 + 650)
    assert cost == pytest.approx(mini_cost(1900, 650, 1000))
    assert saved == pytest.approx(1000 * (0.15 - 0.075) / 1e6)  # gpt-4o-mini: the cache halves the input price
    assert c.max_event_time == T0 + 30  # the last counted span's end time
    # The same export delivered again counts once; with skip_span_operations: [] the agent span counts.
    assert dec.decode_lines([line], ctx()) == ([], []) and dec.duplicates == 3
    obs, _ = decoder(skip_span_operations=[]).decode_lines([line, line], ctx())
    assert totals(obs)["requests"] == 4


def test_read_option_picks_metrics_or_spans() -> None:
    m = metrics([hpoint("input", 10.0, 1, T0 + 5)], temporality=1)
    s = traces([span(T0 + 5)])
    assert totals(decoder(read="metrics").decode_lines([m, s], ctx())[0])["requests"] == 1
    assert totals(decoder(read="spans").decode_lines([m, s], ctx())[0])["input_tokens"] == 1200
    assert totals(decoder().decode_lines([m, s], ctx())[0])["requests"] == 2


# -- bad input ----------------------------------------------------------------------------------------------------
def test_every_kind_of_bad_input_comes_back_and_good_data_is_kept() -> None:
    good = metrics([hpoint("input", 100.0, 1, T0 + 5), hpoint("output", 10.0, 1, T0 + 5)], temporality=1)
    no_time = hpoint("input", 5.0, 1, T0 + 6)
    del no_time["timeUnixNano"]
    mixed = metrics(
        [
            hpoint("input", 7.0, 1, T0 + 7, **{"gen_ai.request.model": "gpt-4.1", "gen_ai.response.model": None}),
            hpoint("input", -3.0, 1, T0 + 8),
            hpoint("input", "NaN", 1, T0 + 9),
            hpoint("input", "Infinity", 1, T0 + 9),
            hpoint("input", 5e9, 1, T0 + 10),  # 5 billion tokens in one call
            hpoint("input", 5.0, 1, T0 + 11, **{"gen_ai.token.type": None}),
            no_time,
            hpoint("input", 5.0, 1, 4e9),  # the year 2096: out of range
        ],
        temporality=1,
    )
    bad_spans = traces(
        [
            span(T0 + 12, {"gen_ai.usage.input_tokens": "lots"}, span_id="2000000000000001"),
            span(T0 + 13, {"gen_ai.usage.input_tokens": -5}, span_id="2000000000000002"),
            {**span(T0 + 14, span_id="2000000000000003"), "endTimeUnixNano": "yesterday"},
            span(T0 + 15, span_id="2000000000000004"),
        ]
    )
    temporality_unset = metrics([hpoint("input", 5.0, 1, T0 + 5)], temporality=0)
    lines = [
        good,
        b"{not json",
        b'{"resourceMetrics": {"resource": {}}}',  # an object where OTLP has a list
        b'{"hello": "world"}',  # JSON, but no export request
        b"[1, 2, 3]",
        b"   ",
        b'{"resourceLogs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        mixed,
        bad_spans,
        temporality_unset,
    ]
    obs, bad = decoder().decode_lines(lines, ctx(max_ts=parse_time("2030-01-01T00:00:00Z")))
    kinds = sorted((b.kind, b.partial) for b in bad)
    assert kinds == sorted(
        [
            ("malformed_json", False),
            ("schema", False),  # resourceMetrics is an object
            ("schema", False),  # no export request
            ("schema", False),  # a list
            (BLANK, False),
            ("too_deep", False),
            ("negative_value", True),
            ("non_finite", True),
            ("absurd_value", True),
            ("schema", True),  # no token type, no time (one record, both counted in its reason)
            ("timestamp_out_of_range", True),
            ("schema", True),  # span: "lots"
            ("negative_value", True),  # span: -5
            ("schema", False),  # temporality unset: nothing of that message counted
        ]
    ), kinds
    mixed_schema = next(b for b in bad if b.raw is mixed and b.kind == "schema")
    assert "(and 1 more)" in mixed_schema.reason
    non_finite = next(b for b in bad if b.kind == "non_finite")
    assert "(and 1 more)" in non_finite.reason and non_finite.raw is mixed
    assert all(b.raw in lines for b in bad)
    t = totals(obs)
    # good: 1 call of 100 + 10; mixed: the gpt-4.1 point (7); spans: the last one (1200 + 300)
    assert (t["requests"], t["input_tokens"], t["output_tokens"]) == (3, 100 + 7 + 1200, 10 + 300)
    assert t["token_cost_usd"] == pytest.approx(mini_cost(1300, 310) + 7 * 2e-6)
    assert all(math.isfinite(v) for o in obs for v in o.values)


def test_late_data_keeps_the_message_and_the_state_moves_on() -> None:
    dec = decoder()
    first = metrics([hpoint("input", 100.0, 1, T0 + 10), hpoint("input", 50.0, 1, T0 + 200, start=T0 + 100, team="x")])
    c = ctx(late_before=T0 + 60)
    obs, bad = dec.decode_lines([first], c)
    assert [(b.kind, b.partial, b.raw) for b in bad] == [("late", True, first)]
    assert totals(obs)["input_tokens"] == 50
    assert c.max_event_time == T0 + 200
    # The late stream's next point counts its increase only.
    obs, _ = dec.decode_lines([metrics([hpoint("input", 130.0, 2, T0 + 70)])], ctx())
    assert totals(obs)["input_tokens"] == 30


def test_a_failing_batch_changes_no_state_before_it_is_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dec = decoder()
    lines = [metrics([hpoint("input", 100.0, 1, T0 + 10)]), metrics([hpoint("input", 160.0, 2, T0 + 70)])]
    real = dec._observations
    calls = {"n": 0}

    def flaky(acc: Any, late_before: float) -> list[Observation]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("injected")
        return real(acc, late_before)

    monkeypatch.setattr(dec, "_observations", flaky)
    obs, bad = dec.decode_lines(lines, ctx())  # the batch fails once, then runs record by record
    assert bad == [] and totals(obs)["input_tokens"] == 160


def test_calls_whose_input_and_output_points_come_in_separate_exports_count_once() -> None:
    """New-user review: 5 calls whose input points came in one export and output points 4 s later in the next were
    counted as 10 requests (the larger of the two counts was taken per batch)."""
    dec = decoder()
    obs1, _ = dec.decode_lines([metrics([hpoint("input", 500.0, 5, T0 + 10)])], ctx())
    obs2, _ = dec.decode_lines([metrics([hpoint("output", 50.0, 5, T0 + 14)])], ctx())
    assert totals(obs1)["requests"] + totals(obs2)["requests"] == 5
    obs3, _ = dec.decode_lines([metrics([hpoint("output", 80.0, 7, T0 + 20)])], ctx())  # two more calls' outputs
    assert totals(obs3)["requests"] == 2 and totals(obs3)["output_tokens"] == 30


def test_sniff() -> None:
    assert OtelGenAiDecoder.sniff(metrics([hpoint("input", 1.0, 1, T0)]))
    assert OtelGenAiDecoder.sniff(traces([span(T0)]))
    assert not OtelGenAiDecoder.sniff(b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"up"}]}]}]}')


# -- end to end ---------------------------------------------------------------------------------------------------
def test_agent_reads_otlp_json_lines_into_token_spend_points(tmp_path: Path) -> None:
    """A file exporter's output (one export request per line, metrics and traces of two applications) through
    the whole pipeline: hourly token-spend points per team, with the decoder's totals."""
    inbox = tmp_path / "otlp"
    inbox.mkdir()
    lines = []
    cum_in = cum_out = 0.0
    for minute in range(0, 180, 10):  # three hours of cumulative exports of support-bot
        cum_in += 1000
        cum_out += 100
        t = T0 + 60 + minute * 60
        lines.append(metrics([hpoint("input", cum_in, minute + 1, t), hpoint("output", cum_out, minute + 1, t)]))
    search = {**RESOURCE, "service.name": "search-api", "team": "search"}
    lines.append(traces([span(T0 + 3600 + 5, span_id="3000000000000001")], resource=search))
    (inbox / "otel-export.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    dlq = tmp_path / "dlq.jsonl"
    cfg = f"""
sources:
  genai:
    type: file
    path: {inbox}
    decoder:
      type: otel_genai
      attribute_dimensions: {{team: team}}
detectors:
  token_spend:
    type: seasonal
    signal: token_cost_usd
    group_by: [team]
    contributors_by: [model]
    window_seconds: 3600
    min_impact_usd: 20
  requests:
    type: threshold
    signal: requests
    upper: 1.0e12
    group_by: [team, app]
    window_seconds: 3600
sinks:
  console: {{type: console}}
state: {{type: memory}}
dead_letter: {{path: {dlq}}}
pipeline: {{max_age_days: 3650}}
"""
    collector = PointCollector()
    agent = Agent(load_config_text(cfg), extra_sinks={"c": collector}, state_store=MemoryStateStore())
    agent.start()
    assert agent.wait_finished(60)
    agent.stop(flush_windows=True)
    assert agent.error is None
    assert not dlq.exists() or dlq.read_bytes() == b""
    spend = [p for (d, _s), pts in collector.points.items() if d == "token_spend" for p in pts]
    assert {dict(p.series)["team"] for p in spend} == {"support", "search"}
    assert {p.window_start for p in spend} == {T0, T0 + 3600, T0 + 7200}  # exports from T0+1m to T0+2h51m
    observed = sum(p.observed for (d, _s), pts in collector.points.items() if d == "token_spend" for p in pts)
    # 18 exports: each adds 1000 input and 100 output tokens (the first counts in full: a fresh stream); one span
    assert observed == pytest.approx(mini_cost(18_000, 1_800) + mini_cost(1200, 300))
    requests = {s: sum(p.observed for p in pts) for (d, s), pts in collector.points.items() if d == "requests"}
    assert sorted(requests.values()) == [1, 10 * 17 + 1]
