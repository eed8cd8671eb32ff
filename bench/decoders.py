"""Decoder throughput: Azure Monitor records (``azure_openai``) and OTLP/JSON (``otel_genai``, ``dcgm_otlp``).

Each input is generated in memory (seeded), as the sources hand it over: lines (messages) in batches of about
1 MB, the size of a file source's batches. ``decoder.decode_lines(batch, ctx)`` is timed against the baseline
measured in the same run on the same batches: ``[orjson.loads(line) for line in batch]`` (parse only: the same
bytes parsed into Python objects, nothing read from them). The two take turns, ``--chunk`` batches at a time
(which goes first alternates), over the whole input in each of ``--repeat`` rounds: this kind of shared machine
drifts by ±30 % over minutes, and whatever else runs on it slows both alike. Medians of the rounds are
reported, with the ratio decoder / parse-only (target: ≥ 0.60).

- Times are the process's CPU time (``time.process_time``; the benchmark is one thread): time spent waiting for
  a core while other work runs counts against neither (wall-clock ratios swung twice as much between rounds).
- Python's cyclic garbage collector is off while timing (it collects before each round): orjson's dicts set it
  off and a decoder's structs do not, and which of the two a collection lands in depends on their order (the
  ratio swung by ±0.1 between rounds). Off, each is timed on its own work, parse-only the faster for it: the
  stricter baseline. ``--gc`` leaves it on.

Inputs (the unit of records/s in brackets; the same count divides both times):

- ``azure_openai``: Azure Monitor metric records of Cognitive Services accounts as a diagnostic setting with
  ``AllMetrics`` streams them (14 metrics per account and minute: InputTokens, OutputTokens and ModelRequests
  counted, 11 others ignored) in ``{"records": [...]}`` envelopes [records in the envelopes]; the same records one
  per line, as the Event Hubs source hands them over after unpacking [records]; API Management ``GatewayLlmLogs``
  request logs, one per line [records].
- ``otel_genai``: ``ExportMetricsServiceRequest`` of one application instance per message, as the Collector
  writes OTLP/JSON (int64 as strings): the ``gen_ai.client.token.usage`` histogram (cumulative, a data point per
  model and token type) beside ``gen_ai.client.operation.duration`` [token-usage data points];
  ``ExportTraceServiceRequest`` with HTTP, agent, tool and chat spans [spans, all of them].
- ``dcgm_otlp``: dcgm-exporter scrapes as the Collector's prometheus receiver emits them, 8 GPUs a host, 9 gauge
  metrics (3 read) [data points of the 3 metrics read].

A stateful decoder (cumulative streams, spans and samples already seen) is built anew before every timed round,
outside the timing, so that every round does the same work; the totals it counts are checked against the ones
the generator expects, and every round must count the same (no round measures a decoder skipping duplicates).
Usage: ``python -m bench.decoders [--scale 1.0] [--repeat 5] [--gc] [--only azure_envelopes,otel_metrics]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.bedrock import SIGNALS
from agent.model import Observation, parse_time
from agent.registry import components
from bench.common import machine

T0 = parse_time("2026-10-01T10:00:00Z")
NS = 1_000_000_000
TARGET = 0.60


@dataclass
class Case:
    key: str
    decoder: str
    title: str  # the input, in words
    unit: str  # what records/s counts
    config: dict[str, Any]
    lines: list[bytes]
    units: int
    expected: dict[str, float]  # signal → the total the decoder must count
    extra: str = ""  # more about the input
    parse: list[float] = field(default_factory=list)  # records/s, a round each
    decode: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [d / p for d, p in zip(self.decode, self.parse, strict=True)]


# -- Azure Monitor ----------------------------------------------------------------------------------------------------
COUNTED = ("InputTokens", "OutputTokens", "ModelRequests")
OTHER_METRICS = (  # what AllMetrics sends beside them: ignored (the legacy token family is "unselected")
    "ProcessedPromptTokens",
    "GeneratedTokens",
    "TokenTransaction",
    "TotalTokens",
    "AzureOpenAIRequests",
    "Latency",
    "TimeToResponse",
    "SuccessfulCalls",
    "TotalCalls",
    "DataIn",
    "DataOut",
)
AZURE_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "gpt-5-mini")
REGIONS = ("West Europe", "Sweden Central", "East US 2", "France Central")


def _azure_time(ts: float, frac: int = 0) -> str:
    """Azure's form: 7 fractional digits."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:07d}Z"


def _subscriptions(rng: random.Random, n: int) -> list[str]:
    return [
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-"
        f"{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}"
        for _ in range(n)
    ]


def _metric_record(rid: str, when: str, name: str, n: int, total: float) -> dict[str, Any]:
    """A metric record as a diagnostic setting streams it (no dimensions; totals as doubles)."""
    mean = total / n if n else 0.0
    return {
        "count": n,
        "total": float(total),
        "minimum": round(mean * 0.2, 4),
        "maximum": round(mean * 3.1, 4),
        "average": round(mean, 6),
        "resourceId": rid,
        "time": when,
        "metricName": name,
        "timeGrain": "PT1M",
    }


def azure_metric_records(rng: random.Random, n_records: int) -> tuple[list[dict[str, Any]], dict[str, Any], dict]:
    """Metric records, minute after minute, of 120 accounts (80 % of them active in a minute); config, expected."""
    subs = _subscriptions(rng, 6)
    accounts = []
    for i in range(120):
        name = f"oai-{rng.choice(('prod', 'dev', 'batch', 'eval'))}-{i:03d}"
        rid = (
            f"/SUBSCRIPTIONS/{rng.choice(subs).upper()}/RESOURCEGROUPS/RG-AI-{i % 9}/PROVIDERS/"
            f"MICROSOFT.COGNITIVESERVICES/ACCOUNTS/{name.upper()}"
        )
        accounts.append((rid, name, AZURE_MODELS[i % len(AZURE_MODELS)]))
    records: list[dict[str, Any]] = []
    expected = {"requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0}
    minute = 0
    while len(records) < n_records:
        when = _azure_time(T0 + 60 * minute)
        for rid, _name, _model in accounts:
            if rng.random() < 0.2:
                continue
            calls = rng.randrange(1, 200)
            tin = calls * rng.randrange(200, 4000)
            tout = calls * rng.randrange(20, 900)
            expected["requests"] += calls
            expected["input_tokens"] += tin
            expected["output_tokens"] += tout
            for name, total in zip(COUNTED, (tin, tout, calls), strict=True):
                records.append(_metric_record(rid, when, name, calls, total))
            for name in OTHER_METRICS:
                records.append(_metric_record(rid, when, name, calls, rng.uniform(1, 1e5)))
        minute += 1
    expected["tokens"] = expected["input_tokens"] + expected["output_tokens"]
    config = {"type": "azure_openai", "deployments": {name: model for _rid, name, model in accounts}}
    return records, config, expected


def azure_cases(rng: random.Random, scale: float, per_envelope: int) -> list[Case]:
    records, config, expected = azure_metric_records(rng, int(300_000 * scale))
    n = len(records)
    envelopes = [orjson.dumps({"records": records[i : i + per_envelope]}) for i in range(0, n, per_envelope)]
    singles = [orjson.dumps(r) for r in records]
    del records
    env_kb = sum(map(len, envelopes)) / len(envelopes) / 1e3
    return [
        Case(
            "azure_envelopes",
            "azure_openai",
            "metric records in envelopes",
            "records",
            config,
            envelopes,
            n,
            expected,
            f"{n:,} metric records (3 of 14 metrics counted) in {len(envelopes):,} envelopes of {per_envelope} "
            f"({env_kb:.1f} KB)",
        ),
        Case(
            "azure_records",
            "azure_openai",
            "metric records, one per line",
            "records",
            config,
            singles,
            n,
            expected,
            f"{n:,} metric records (3 of 14 metrics counted), one per line "
            f"({sum(map(len, singles)) / len(singles):.0f} bytes)",
        ),
    ]


def azure_gateway_logs(rng: random.Random, scale: float) -> Case:
    """API Management GatewayLlmLogs, one request a record, one record a line (properties as an object)."""
    subs = _subscriptions(rng, 3)
    gateways = [
        f"/SUBSCRIPTIONS/{subs[i % 3].upper()}/RESOURCEGROUPS/RG-GATEWAY-{i}/PROVIDERS/MICROSOFT.APIMANAGEMENT/"
        f"SERVICE/AI-GATEWAY-{i}"
        for i in range(4)
    ]
    deployments = [
        ("chat", "gpt-4o-2024-08-06"),
        ("chat-mini", "gpt-4o-mini-2024-07-18"),
        ("summaries", "gpt-4.1-mini-2025-04-14"),
        ("reasoning", "o3-mini-2025-01-31"),
    ]
    n = int(100_000 * scale)
    step = 3600 * 6 / n  # six hours of requests
    lines = []
    expected = {"requests": float(n), "input_tokens": 0.0, "output_tokens": 0.0}
    for i in range(n):
        ts = T0 + i * step
        g = rng.randrange(len(gateways))
        deployment, model = deployments[rng.randrange(len(deployments))]
        prompt, completion = rng.randrange(50, 12000), rng.randrange(5, 2000)
        expected["input_tokens"] += prompt
        expected["output_tokens"] += completion
        props = {
            "ApiId": "azure-openai-api",
            "OperationId": "ChatCompletions_Create",
            "ProductId": f"team-{rng.randrange(30):02d}",
            "SubscriptionId": f"sub-team-{rng.randrange(30):02d}",
            "BackendId": f"openai-backend-{g}",
            "CorrelationId": f"{rng.getrandbits(64):016x}-{rng.getrandbits(48):012x}",
            "SequenceNumber": 0,
            "IsRequestSuccess": True,
            "IsStreamCompletion": rng.random() < 0.4,
            "DeploymentName": deployment,
            "ModelName": model,
            "PromptTokens": prompt,
            "CompletionTokens": completion,
            "TotalTokens": prompt + completion,
            "Region": REGIONS[g],
        }
        rec = {
            "time": _azure_time(math.floor(ts), int((ts % 1) * 1e7)),
            "resourceId": gateways[g],
            "operationName": "Microsoft.ApiManagement/GatewayLlmLogs",
            "category": "GatewayLlmLogs",
            "location": REGIONS[g],
            "properties": props,
        }
        lines.append(orjson.dumps(rec))
    expected["tokens"] = expected["input_tokens"] + expected["output_tokens"]
    size = sum(map(len, lines)) / n
    return Case(
        "azure_gateway_logs",
        "azure_openai",
        "GatewayLlmLogs, one per line",
        "records",
        {"type": "azure_openai"},
        lines,
        n,
        expected,
        f"{n:,} API Management GatewayLlmLogs request records, one per line ({size:.0f} bytes), 4 gateways",
    )


# -- OTLP/JSON --------------------------------------------------------------------------------------------------------
BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
DURATION_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
PROVIDERS = (
    ("openai", "api.openai.com", ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini")),
    ("azure.ai.openai", "ai-prod.openai.azure.com", ("gpt-4o", "gpt-4.1", "gpt-4o-mini", "gpt-5-mini")),
)
RESPONSE = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06", "o3-mini": "o3-mini-2025-01-31"}


def otlp_value(v: Any) -> dict[str, Any]:
    """A value as OTLP/JSON's AnyValue (as the Collector's otlp_json marshaler writes it)."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}  # int64: a JSON string
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list | tuple):
        return {"arrayValue": {"values": [otlp_value(x) for x in v]}}
    return {"stringValue": v}


def otlp_attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Attributes as OTLP/JSON's KeyValue list."""
    return [{"key": k, "value": otlp_value(v)} for k, v in d.items()]


def _ns(t: float) -> str:
    return str(int(t * NS))


@dataclass
class _App:
    resource: list[dict[str, Any]]
    provider: str
    server: str
    models: tuple[str, ...]
    start: float  # the process's start: its cumulative streams' start time
    offset: float  # its exports' phase in the minute


def _apps(rng: random.Random, n: int) -> list[_App]:
    apps = []
    for i in range(n):
        service = f"genai-svc-{i % 12:02d}"
        provider, server, models = PROVIDERS[i % len(PROVIDERS)]
        resource = otlp_attrs(
            {
                "service.name": service,
                "service.instance.id": f"{service}-{rng.getrandbits(40):010x}",
                "service.version": f"1.{rng.randrange(20)}.{rng.randrange(10)}",
                "deployment.environment.name": "prod",
                "host.name": f"ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.version": "1.30.0",
                "team": f"team-{i % 7}",
            }
        )
        picked = tuple(rng.sample(models, 3))
        # A quarter of the processes start in the first minutes (their first points count in full), the others
        # hours before (their first points are baselines).
        start = T0 - (rng.uniform(10, 200) if i % 4 == 0 else rng.uniform(3600, 86400))
        apps.append(_App(resource, provider, server, picked, start, rng.uniform(0, 60)))
    return apps


def _hist_point(attrs: dict[str, Any], start: float, t: float, n: int, total: float, bounds: list[float]) -> dict:
    buckets = [0] * (len(bounds) + 1)
    buckets[len(bounds) // 2] = n
    p: dict[str, Any] = {
        "attributes": otlp_attrs(attrs),
        "startTimeUnixNano": _ns(start),
        "timeUnixNano": _ns(t),
        "count": str(n),
        "sum": total,
        "bucketCounts": [str(b) for b in buckets],
        "explicitBounds": bounds,
    }
    if n:
        p["min"], p["max"] = round(total / n * 0.3, 3), round(total / n * 2.7, 3)
    return p


def otel_metrics(rng: random.Random, scale: float) -> Case:
    """Every app instance exports its cumulative histograms once a minute (the SDK's default interval)."""
    apps = _apps(rng, 200)
    steps = max(2, int(20 * scale))
    # (app, model) → cumulative [calls, input, output, seconds]; first values, for the baselines
    cum: dict[tuple[int, str], list[float]] = {}
    first: dict[tuple[int, str], list[float]] = {}
    lines = []
    points = 0
    for step in range(steps):
        for a, app in enumerate(apps):
            t = T0 + 60 * step + app.offset
            usage, duration = [], []
            for model in app.models:
                c = cum.setdefault((a, model), [0.0, 0.0, 0.0, 0.0])
                calls = rng.randrange(0, 25)
                c[0] += calls
                c[1] += calls * rng.randrange(200, 4000)
                c[2] += calls * rng.randrange(20, 900)
                c[3] += calls * rng.uniform(0.5, 6)
                first.setdefault((a, model), list(c))
                call = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": app.provider,
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": RESPONSE.get(model, model),
                    "server.address": app.server,
                    "server.port": 443,
                }
                for ttype, total in (("input", c[1]), ("output", c[2])):
                    usage.append(
                        _hist_point({**call, "gen_ai.token.type": ttype}, app.start, t, int(c[0]), total, BOUNDS)
                    )
                duration.append(_hist_point(call, app.start, t, int(c[0]), round(c[3], 3), DURATION_BOUNDS))
            points += len(usage)
            doc = {
                "resourceMetrics": [
                    {
                        "resource": {"attributes": app.resource},
                        "scopeMetrics": [
                            {
                                "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                                "metrics": [
                                    {
                                        "name": "gen_ai.client.operation.duration",
                                        "description": "GenAI operation duration",
                                        "unit": "s",
                                        "histogram": {"dataPoints": duration, "aggregationTemporality": 2},
                                    },
                                    {
                                        "name": "gen_ai.client.token.usage",
                                        "description": "Measures number of input and output tokens used",
                                        "unit": "{token}",
                                        "histogram": {"dataPoints": usage, "aggregationTemporality": 2},
                                    },
                                ],
                            }
                        ],
                        "schemaUrl": "https://opentelemetry.io/schemas/1.28.0",
                    }
                ]
            }
            lines.append(orjson.dumps(doc))
    expected = {"requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0}
    for (a, model), c in cum.items():
        f = first[(a, model)]
        t1 = T0 + apps[a].offset
        fresh = 0 <= t1 - apps[a].start <= 300  # a new stream counts its first value in full (default 300 s)
        base = (0.0, 0.0, 0.0) if fresh else f[:3]
        expected["requests"] += c[0] - base[0]
        expected["input_tokens"] += c[1] - base[1]
        expected["output_tokens"] += c[2] - base[2]
    expected["tokens"] = expected["input_tokens"] + expected["output_tokens"]
    size = sum(map(len, lines)) / len(lines)
    return Case(
        "otel_metrics",
        "otel_genai",
        "metrics: gen_ai.client.token.usage",
        "data points",
        {"type": "otel_genai", "attribute_dimensions": {"team": "team"}},
        lines,
        points,
        expected,
        f"{len(lines):,} ExportMetricsServiceRequest ({size / 1e3:.1f} KB: 6 cumulative token-usage points and 3 "
        f"duration points each), 200 app instances × {steps} minutes, {points:,} token-usage data points",
    )


def _span(
    trace: str, parent: str, rng: random.Random, name: str, kind: int, start: float, end: float, attrs: dict
) -> dict:
    return {
        "traceId": trace,
        "spanId": f"{rng.getrandbits(64):016x}",
        "parentSpanId": parent,
        "flags": 257,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": _ns(start),
        "endTimeUnixNano": _ns(end),
        "attributes": otlp_attrs(attrs),
        "status": {},
    }


def otel_traces(rng: random.Random, scale: float) -> Case:
    """A request a trace: HTTP server span, invoke_agent (its usage repeats the chats'), two chats, a tool."""
    apps = _apps(rng, 100)
    n_lines = max(1, int(1_600 * scale))
    per_line = 5  # traces per export request
    step = 3600 * 6 / n_lines
    lines = []
    spans = 0
    expected = {"requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0}
    for i in range(n_lines):
        app = apps[rng.randrange(len(apps))]
        http, agent, chats, tools = [], [], [], []
        for _ in range(per_line):
            t = T0 + i * step + rng.uniform(0, 10)
            trace = f"{rng.getrandbits(128):032x}"
            root = _span(
                trace,
                "",
                rng,
                "POST /v1/assist",
                2,
                t,
                t + 6,
                {"http.request.method": "POST", "http.route": "/v1/assist", "http.response.status_code": 200},
            )
            model = app.models[rng.randrange(len(app.models))]
            totals = [0, 0]
            calls = []
            for k in range(2):
                tin, tout = rng.randrange(200, 8000), rng.randrange(20, 1500)
                totals[0] += tin
                totals[1] += tout
                calls.append(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": app.provider,
                        "gen_ai.request.model": model,
                        "gen_ai.request.max_tokens": 2048,
                        "gen_ai.request.temperature": 0.2,
                        "gen_ai.response.model": RESPONSE.get(model, model),
                        "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}",
                        "gen_ai.response.finish_reasons": ["stop" if k else "tool_calls"],
                        "gen_ai.usage.input_tokens": tin,
                        "gen_ai.usage.output_tokens": tout,
                        "server.address": app.server,
                        "server.port": 443,
                    }
                )
            expected["requests"] += 2
            expected["input_tokens"] += totals[0]
            expected["output_tokens"] += totals[1]
            invoke = _span(
                trace,
                root["spanId"],
                rng,
                "invoke_agent assistant",
                1,
                t + 0.1,
                t + 5.9,
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "assistant",
                    "gen_ai.provider.name": app.provider,
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": totals[0],
                    "gen_ai.usage.output_tokens": totals[1],
                },
            )
            http.append(root)
            agent.append(invoke)
            chats.append(_span(trace, invoke["spanId"], rng, f"chat {model}", 3, t + 0.2, t + 2.5, calls[0]))
            tools.append(
                _span(
                    trace,
                    invoke["spanId"],
                    rng,
                    "execute_tool search",
                    1,
                    t + 2.5,
                    t + 3.0,
                    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
                )
            )
            chats.append(_span(trace, invoke["spanId"], rng, f"chat {model}", 3, t + 3.0, t + 5.8, calls[1]))
        spans += len(http) + len(agent) + len(chats) + len(tools)
        doc = {
            "resourceSpans": [
                {
                    "resource": {"attributes": app.resource},
                    "scopeSpans": [
                        {
                            "scope": {"name": "opentelemetry.instrumentation.fastapi", "version": "0.51b0"},
                            "spans": http,
                        },
                        {"scope": {"name": "agent-framework", "version": "1.4.0"}, "spans": agent + tools},
                        {
                            "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                            "spans": chats,
                        },
                    ],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.28.0",
                }
            ]
        }
        lines.append(orjson.dumps(doc))
    expected["tokens"] = expected["input_tokens"] + expected["output_tokens"]
    size = sum(map(len, lines)) / len(lines)
    return Case(
        "otel_traces",
        "otel_genai",
        "traces: GenAI spans",
        "spans",
        {"type": "otel_genai", "attribute_dimensions": {"team": "team"}},
        lines,
        spans,
        expected,
        f"{n_lines:,} ExportTraceServiceRequest ({size / 1e3:.1f} KB: {per_line} traces of 5 spans each, 2 of them "
        f"chat spans counted, an invoke_agent span with usage skipped), {spans:,} spans",
    )


DCGM_READ = {
    "DCGM_FI_DEV_GPU_UTIL": (0, 100),
    "DCGM_FI_DEV_FB_USED": (1000, 79000),
    "DCGM_FI_DEV_POWER_USAGE": (60, 700),
}
DCGM_OTHER = {
    "DCGM_FI_DEV_SM_CLOCK": (210, 1980),
    "DCGM_FI_DEV_MEM_CLOCK": (1593, 2619),
    "DCGM_FI_DEV_GPU_TEMP": (30, 80),
    "DCGM_FI_DEV_MEMORY_TEMP": (30, 90),
    "DCGM_FI_DEV_FB_FREE": (0, 80000),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": (0, 1),
}


def dcgm_scrapes(rng: random.Random, scale: float) -> Case:
    """Scrapes of 60 hosts × 8 GPUs every 30 s: one ExportMetricsServiceRequest per host and scrape."""
    hosts = []
    for h in range(60):
        host = f"gpu-node-{h:03d}"
        gpus = []
        for g in range(8):
            gpus.append(
                {
                    "gpu": str(g),
                    "UUID": f"GPU-{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}",
                    "pci_bus_id": f"00000000:{16 * g + 10:02X}:00.0",
                    "device": f"nvidia{g}",
                    "modelName": "NVIDIA H100 80GB HBM3",
                    "Hostname": host,
                    "DCGM_FI_DRIVER_VERSION": "550.90.07",
                    "container": "trainer",
                    "namespace": f"ml-team-{h % 5}",
                    "pod": f"train-{h:03d}-{rng.getrandbits(20):05x}",
                }
            )
        resource = otlp_attrs(
            {
                "service.name": "dcgm-exporter",
                "service.instance.id": f"10.0.{h // 200}.{h % 200}:9400",
                "server.address": f"10.0.{h // 200}.{h % 200}",
                "server.port": "9400",
                "url.scheme": "http",
            }
        )
        hosts.append((gpus, resource))
    scrapes = max(2, int(10 * scale))
    lines = []
    points = 0
    for s in range(scrapes):
        for gpus, resource in hosts:
            t = _ns(T0 + 30 * s + rng.uniform(0, 1))
            metrics = []
            for name, (lo, hi) in {**DCGM_READ, **DCGM_OTHER}.items():
                pts = [
                    {"attributes": otlp_attrs(g), "timeUnixNano": t, "asDouble": float(rng.randrange(lo, hi + 1))}
                    for g in gpus
                ]
                metrics.append({"name": name, "description": "", "unit": "", "gauge": {"dataPoints": pts}})
            for name, v in (("up", 1.0), ("scrape_duration_seconds", 0.012)):
                pt = {"timeUnixNano": t, "asDouble": v}
                metrics.append({"name": name, "description": "", "unit": "", "gauge": {"dataPoints": [pt]}})
            points += len(gpus) * len(DCGM_READ)
            doc = {
                "resourceMetrics": [
                    {
                        "resource": {"attributes": resource},
                        "scopeMetrics": [
                            {
                                "scope": {
                                    "name": "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/"
                                    "prometheusreceiver",
                                    "version": "0.115.0",
                                },
                                "metrics": metrics,
                            }
                        ],
                    }
                ]
            }
            lines.append(orjson.dumps(doc))
    size = sum(map(len, lines)) / len(lines)
    gpu_hours = scrapes * len(hosts) * 8 * 30 / 3600
    return Case(
        "dcgm_otlp",
        "dcgm_otlp",
        "dcgm-exporter scrapes",
        "data points",
        {"type": "dcgm_otlp", "scrape_interval_seconds": 30},
        lines,
        points,
        {"gpu_hours": gpu_hours},
        f"{len(lines):,} ExportMetricsServiceRequest ({size / 1e3:.1f} KB: 8 GPUs × 9 gauges, 3 of them read), "
        f"60 hosts × {scrapes} scrapes, {points:,} data points read",
    )


# -- measuring --------------------------------------------------------------------------------------------------------
def batches_of(lines: list[bytes], batch_bytes: int, max_lines: int) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    cur: list[bytes] = []
    size = 0
    for line in lines:
        cur.append(line)
        size += len(line)
        if size >= batch_bytes or len(cur) >= max_lines:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def new_decoder(case: Case) -> tuple[Any, DecodeContext]:
    config_cls, decoder_cls = components("decoder")[case.decoder]
    ctx = DecodeContext("bench", bucket_seconds=60, min_ts=T0 - 30 * 86400, max_ts=T0 + 30 * 86400)
    return decoder_cls(config_cls.model_validate(case.config)), ctx


def measure(
    case: Case, batches: list[list[bytes]], chunk: int, first: int, collector: bool = False
) -> tuple[float, float, list, list]:
    """One round: CPU seconds of parse-only and of decoding, the batches taken ``chunk`` at a time, the two timed
    in turn on each chunk (parse-only first on even chunks when ``first`` is 0), and what the decoder returned.
    The decoder is new (empty state) and made before the timing."""
    dec, ctx = new_decoder(case)
    decode_lines, loads, clock = dec.decode_lines, orjson.loads, time.process_time
    obs: list[Observation] = []
    bad: list[BadRecord] = []
    parse_s = decode_s = 0.0
    gc.collect()
    if not collector:
        gc.disable()  # (see the module's docstring)
    try:
        for k, i in enumerate(range(0, len(batches), chunk)):
            part = batches[i : i + chunk]
            for step in (0, 1) if (k + first) % 2 == 0 else (1, 0):
                t0 = clock()
                if step == 0:
                    for batch in part:
                        docs = [loads(line) for line in batch]
                    del docs
                    parse_s += clock() - t0
                else:
                    for batch in part:
                        o, b = decode_lines(batch, ctx)
                        obs += o
                        bad += b
                    decode_s += clock() - t0
    finally:
        gc.enable()
    return parse_s, decode_s, obs, bad


def totals(obs: list[Observation]) -> dict[str, float]:
    out: dict[str, float] = {}
    for o in obs:
        for name, v in zip(o.signals, o.values, strict=True):
            out[name] = out.get(name, 0.0) + v
    return out


def check(case: Case, obs: list[Observation], bad: list[BadRecord]) -> dict[str, float]:
    """The decoder did the work: observations, no bad record, the totals the generator expects."""
    if not obs:
        raise SystemExit(f"{case.key}: no observations: the benchmark would measure a no-op")
    if bad:
        kinds = sorted({b.kind for b in bad})
        raise SystemExit(f"{case.key}: {len(bad)} bad records ({', '.join(kinds)}): {bad[0].reason}")
    got = totals(obs)
    for name, want in case.expected.items():
        if not math.isclose(got.get(name, 0.0), want, rel_tol=1e-9):
            raise SystemExit(f"{case.key}: {name} {got.get(name, 0.0):,.0f}, expected {want:,.0f}")
    return got


def run_case(case: Case, repeat: int, batch_bytes: int, max_lines: int, chunk: int, collector: bool) -> None:
    batches = batches_of(case.lines, batch_bytes, max_lines)
    size = sum(map(len, case.lines))
    print(f"\n{case.decoder} / {case.title}: {case.extra}")
    print(
        f"  {size / 1e6:.0f} MB in {len(batches):,} batches of ~{size / len(batches) / 1e6:.1f} MB "
        f"({len(case.lines) / len(batches):,.0f} lines), timed {chunk} batches at a time"
    )
    seen: dict[str, float] | None = None
    for i in range(repeat):
        p, d, obs, bad = measure(case, batches, chunk, i % 2, collector)
        got = check(case, obs, bad)
        if seen is None:
            seen = got
            shown = [s for s in (*SIGNALS, *sorted(got)) if s in got]
            figures = ", ".join(f"{s} {got[s]:,.2f}" for s in dict.fromkeys(shown))
            print(f"  counted ({len(obs):,} observations, as expected): {figures}")
        elif got != seen:
            raise SystemExit(f"{case.key}: round {i + 1} counted {got}, round 1 {seen}")
        case.parse.append(case.units / p)
        case.decode.append(case.units / d)
        print(
            f"  round {i + 1}: parse-only {case.units / p:,.0f} {case.unit}/s ({size / p / 1e6:.0f} MB/s), "
            f"decoder {case.units / d:,.0f} {case.unit}/s ({size / d / 1e6:.0f} MB/s), ratio {p / d:.2f}"
        )
    per_unit = size / case.units / 1e6  # MB
    parse, decode = statistics.median(case.parse), statistics.median(case.decode)
    print(
        f"  median: parse-only {parse:,.0f} {case.unit}/s ({parse * per_unit:.0f} MB/s), decoder {decode:,.0f} "
        f"{case.unit}/s ({decode * per_unit:.0f} MB/s), ratio {statistics.median(case.ratios()):.2f} "
        f"(target ≥ {TARGET:.2f})"
    )


BUILDERS: dict[str, Callable[[random.Random, argparse.Namespace], list[Case]]] = {
    "azure": lambda rng, a: azure_cases(rng, a.scale, a.per_envelope),
    "azure_gateway_logs": lambda rng, a: [azure_gateway_logs(rng, a.scale)],
    "otel_metrics": lambda rng, a: [otel_metrics(rng, a.scale)],
    "otel_traces": lambda rng, a: [otel_traces(rng, a.scale)],
    "dcgm_otlp": lambda rng, a: [dcgm_scrapes(rng, a.scale)],
}
KEYS = ["azure_envelopes", "azure_records", "azure_gateway_logs", "otel_metrics", "otel_traces", "dcgm_otlp"]
BUILDER_OF = {"azure_envelopes": "azure", "azure_records": "azure"}


def run_one(key: str, args: argparse.Namespace, results: Any) -> None:
    """Make the input ``key`` and measure it (in a child process), then hand the case back, its input left out."""
    done = None
    try:
        name = BUILDER_OF.get(key, key)
        for case in BUILDERS[name](random.Random(f"{args.seed}:{name}"), args):
            if case.key == key:
                run_case(case, args.repeat, args.batch_bytes, args.max_lines, args.chunk, args.gc)
                case.lines = []
                done = case
    finally:
        sys.stdout.flush()
        results.put(done)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="input size (1.0: about a second of parsing each)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-envelope", type=int, default=20, help="metric records per Azure Monitor envelope")
    ap.add_argument("--batch-bytes", type=int, default=1_000_000, help="lines per decode_lines call: about this size")
    ap.add_argument("--max-lines", type=int, default=5_000, help="and at most this many")
    ap.add_argument("--chunk", type=int, default=8, help="batches timed at a time, parse-only and decoder in turn")
    ap.add_argument("--gc", action="store_true", help="leave the cyclic garbage collector on while timing")
    ap.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(KEYS)}")
    args = ap.parse_args(argv)
    only = set(filter(None, args.only.split(","))) or set(KEYS)
    if only - set(KEYS):
        ap.error(f"unknown input(s): {', '.join(sorted(only - set(KEYS)))}")
    print(f"machine: {machine()}")
    print(
        f"decode_lines vs orjson.loads of the same lines: {args.repeat} rounds, turns of {args.chunk} batches, "
        f"seed {args.seed}, garbage collector {'on' if args.gc else 'off'} while timing"
    )
    done: list[Case] = []
    for key in KEYS:
        if key in only:
            # Each input in a process of its own, forked before anything is made: the heap one input leaves
            # behind (hundreds of MB freed) slowed the decoders of the next by up to 10 %, not orjson.
            sys.stdout.flush()
            fork = multiprocessing.get_context("fork")
            results = fork.SimpleQueue()
            child = fork.Process(target=run_one, args=(key, args, results))
            child.start()
            got = results.get()
            child.join()
            if child.exitcode != 0 or got is None:
                raise SystemExit(f"{key}: failed (exit code {child.exitcode})")
            done.append(got)
    print("\nsummary (medians)")
    print(f"{'decoder / input':<52} {'records/s':>12} {'parse-only/s':>13} {'ratio':>6}")
    for case in done:
        r = statistics.median(case.ratios())
        print(
            f"{case.decoder + ' / ' + case.title:<52} {statistics.median(case.decode):>12,.0f} "
            f"{statistics.median(case.parse):>13,.0f} {r:>6.2f} {'ok' if r >= TARGET else 'UNDER ' + str(TARGET)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
