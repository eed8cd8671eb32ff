"""Seeded generator of a realistic month of AI spend with injected anomalies.

Writes, under ``--out``:

- ``bedrock/invocations-YYYY-MM-DD.jsonl.gz``: Bedrock model invocation logs for several teams
  and models, with daily (business hours) and weekly (quiet weekends) seasonality;
- ``dcgm/dcgm-YYYY-MM-DD.prom.gz``: dcgm-exporter samples (timestamped Prometheus text) for a
  GPU fleet of 8 H100 nodes plus 2 nodes autoscaled in on weekday business hours;
- ``azure-openai/metrics-YYYY-MM-DD.jsonl.gz``: what an Azure Monitor diagnostic setting streams for an Azure OpenAI
  account (``{"records": [...]}`` envelopes of per-minute InputTokens / OutputTokens / ModelRequests, and a latency
  metric the agent leaves out), as saved from Event Hubs;
- ``otel/genai-YYYY-MM-DD.jsonl.gz``: OTLP/JSON metric export requests of an application instrumented with the
  OpenTelemetry GenAI conventions (cumulative ``gen_ai.client.token.usage`` histograms every 5 minutes), as the
  Collector's file exporter writes them;
- ``anomalies.json``: what was injected, when, and which detector/series should catch it.

Injected anomalies (day offsets from the start, a Monday):

1. ``runaway_agent_loop``: day 12, 14:00–19:00, team ``support-bot`` calls ~8× as often with
   long contexts (token spend spike);
2. ``idle_gpu_node``: day 15, 02:00–12:00, node ``gpu-node-07`` billed with its GPUs at 0 %;
3. ``model_switch``: from day 18, 10:00, team ``analytics`` moves from Claude 3 Haiku to
   Claude 3 Opus (cost per token ×60, tokens unchanged);
4. ``gpu_hour_surge``: day 22, 10:00–18:00, 6 extra H100 nodes (GPU-hour spike);
5. ``azure_retry_storm``: day 9, 13:00–17:00, the Azure OpenAI account's client retries in a loop: 5× the calls
   (team ``chat-assistant``);
6. ``otel_prompt_bloat``: from day 20, 10:00, the OTel-instrumented RAG service stuffs 3× the context into each
   call (team ``research``).

Usage: ``python -m agent.demo --out demo-data [--start 2026-10-05] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import math
import random
from pathlib import Path
from typing import Any

import orjson

H = 3600
D = 86400

TEAMS: dict[str, dict[str, Any]] = {
    # calls per hour at the weekday peak, model mix, mean input / output tokens
    "search": {
        "peak": 120,
        "mix": {"anthropic.claude-3-5-sonnet-20241022-v2:0": 0.7, "amazon.nova-pro-v1:0": 0.3},
        "in": 9000,
        "out": 700,
    },
    "support-bot": {
        "peak": 160,
        "mix": {"anthropic.claude-3-5-sonnet-20241022-v2:0": 0.85, "anthropic.claude-3-haiku-20240307-v1:0": 0.15},
        "in": 14000,
        "out": 900,
    },
    "analytics": {"peak": 90, "mix": {"anthropic.claude-3-haiku-20240307-v1:0": 1.0}, "in": 20000, "out": 1500},
    "platform": {
        "peak": 40,
        "mix": {"meta.llama3-1-70b-instruct-v1:0": 0.6, "amazon.nova-lite-v1:0": 0.4},
        "in": 4000,
        "out": 600,
    },
}
ACCOUNTS = {
    "search": "111122223333",
    "support-bot": "111122223333",
    "analytics": "444455556666",
    "platform": "444455556666",
}
REGIONS = {"search": "us-east-1", "support-bot": "us-east-1", "analytics": "us-west-2", "platform": "eu-west-1"}
OPUS = "anthropic.claude-3-opus-20240229-v1:0"


def default_start(today: dt.date | None = None) -> dt.date:
    """The Monday at least 35 days before today, so the whole month lies in the past."""
    today = today or dt.datetime.now(dt.UTC).date()
    d = today - dt.timedelta(days=35)
    return d - dt.timedelta(days=d.weekday())


def diurnal(ts: float) -> float:
    """Relative activity by hour of day (UTC business hours) and day of week."""
    hour = (ts % D) / H
    weekday = (int(ts // D) + 3) % 7  # 0 = Monday
    day = 0.15 + 0.85 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.15
    return day * (0.35 if weekday >= 5 else 1.0)


def anomalies(t0: float) -> list[dict[str, Any]]:
    return [
        {
            "name": "runaway_agent_loop",
            "detector": "token_spend",
            "series": {"team": "support-bot"},
            "start": t0 + 12 * D + 14 * H,
            "end": t0 + 12 * D + 19 * H,
        },
        {
            "name": "idle_gpu_node",
            "detector": "idle_gpu",
            "series": {"node": "gpu-node-07"},
            "start": t0 + 15 * D + 2 * H,
            "end": t0 + 15 * D + 12 * H,
        },
        {
            "name": "model_switch",
            "detector": "unit_cost",
            "series": {"team": "analytics"},
            "start": t0 + 18 * D + 10 * H,
            "end": t0 + 30 * D,
        },
        {
            "name": "gpu_hour_surge",
            "detector": "gpu_hours",
            "series": {"cluster": "ml-prod"},
            "start": t0 + 22 * D + 10 * H,
            "end": t0 + 22 * D + 18 * H,
        },
        {
            "name": "azure_retry_storm",
            "detector": "call_rate",
            "series": {"team": "chat-assistant"},
            "start": t0 + 9 * D + 13 * H,
            "end": t0 + 9 * D + 17 * H,
        },
        {
            "name": "otel_prompt_bloat",
            "detector": "prompt_bloat",
            "series": {"team": "research"},
            "start": t0 + 20 * D + 10 * H,
            "end": t0 + 30 * D,
        },
    ]


def _within(ts: float, a: dict[str, Any]) -> bool:
    return bool(a["start"] <= ts < a["end"])


def gen_bedrock(out: Path, t0: float, days: int, rng: random.Random, anoms: list[dict[str, Any]]) -> int:
    runaway, switch = anoms[0], anoms[2]
    n = 0
    for day in range(days):
        lines: list[bytes] = []
        for hour in range(24):
            hs = t0 + day * D + hour * H
            for team, spec in TEAMS.items():
                rate = spec["peak"] * diurnal(hs + 1800)
                mult_in = 1.0
                if team == "support-bot" and _within(hs, runaway):
                    rate *= 8
                    mult_in = 1.5
                calls = _poisson(rng, rate)
                for _ in range(calls):
                    ts = hs + rng.random() * H
                    mix = spec["mix"]
                    model = rng.choices(list(mix), weights=list(mix.values()))[0]
                    if team == "analytics" and _within(ts, switch):
                        model = OPUS
                    tin = int(rng.lognormvariate(math.log(spec["in"] * mult_in), 0.5))
                    tout = int(rng.lognormvariate(math.log(spec["out"]), 0.5))
                    cached = int(tin * 0.3) if "sonnet" in model and rng.random() < 0.3 else 0
                    rec = {
                        "schemaType": "ModelInvocationLog",
                        "schemaVersion": "1.0",
                        "timestamp": dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "accountId": ACCOUNTS[team],
                        "identity": {"arn": f"arn:aws:sts::{ACCOUNTS[team]}:assumed-role/{team}-app/session"},
                        "region": REGIONS[team],
                        "requestId": f"{rng.getrandbits(64):016x}",
                        "operation": "Converse",
                        "modelId": model,
                        "input": {
                            "inputContentType": "application/json",
                            "inputTokenCount": tin - cached,
                            "cacheReadInputTokenCount": cached,
                        },
                        "output": {"outputContentType": "application/json", "outputTokenCount": tout},
                        "requestMetadata": {"team": team, "env": "prod"},
                    }
                    lines.append(orjson.dumps(rec))
        lines.sort(key=lambda b: b[b.index(b'"timestamp"') : b.index(b'"timestamp"') + 36])
        date = dt.datetime.fromtimestamp(t0 + day * D, dt.UTC).strftime("%Y-%m-%d")
        with gzip.open(out / f"invocations-{date}.jsonl.gz", "wb", compresslevel=5) as fh:
            fh.write(b"\n".join(lines) + b"\n")
        n += len(lines)
    return n


def gen_dcgm(out: Path, t0: float, days: int, rng: random.Random, anoms: list[dict[str, Any]], step: int) -> int:
    idle, surge = anoms[1], anoms[3]
    n = 0
    for day in range(days):
        parts: list[str] = []
        for k in range(D // step):
            ts = t0 + day * D + k * step
            hour = (ts % D) / H
            weekday = (int(ts // D) + 3) % 7
            nodes = [f"gpu-node-{i:02d}" for i in range(1, 9)]
            if weekday < 5 and 9 <= hour < 18:
                nodes += ["gpu-node-09", "gpu-node-10"]
            if _within(ts, surge):
                nodes += [f"gpu-burst-{i:02d}" for i in range(1, 7)]
            ms = int(ts * 1000)
            for node in nodes:
                for g in range(8):
                    util = rng.uniform(45, 98) if rng.random() > 0.02 else rng.uniform(0, 4)
                    if node == "gpu-node-07" and _within(ts, idle):
                        util = 0.0
                    power = 90 + util * 6 + rng.uniform(-10, 10)
                    labels = (
                        f'gpu="{g}",UUID="GPU-{node}-{g}",device="nvidia{g}",modelName="NVIDIA H100 80GB HBM3",'
                        f'Hostname="{node}"'
                    )
                    parts.append(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} {util:.0f} {ms}")
                    parts.append(f"DCGM_FI_DEV_POWER_USAGE{{{labels}}} {power:.3f} {ms}")
        date = dt.datetime.fromtimestamp(t0 + day * D, dt.UTC).strftime("%Y-%m-%d")
        text = "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n" + "\n".join(parts) + "\n"
        with gzip.open(out / f"dcgm-{date}.prom.gz", "wb", compresslevel=5) as fh:
            fh.write(text.encode())
        n += len(parts)
    return n


AZURE_ACCOUNT = (  # (Azure Monitor upper-cases resource ids)
    "/SUBSCRIPTIONS/5A1E0000-0000-4000-8000-00000000C0DE/RESOURCEGROUPS/RG-AI"
    "/PROVIDERS/MICROSOFT.COGNITIVESERVICES/ACCOUNTS/OAI-CHAT-WEU"
)


def _iso7(ts: float) -> str:
    """Azure Monitor's time format (seven fractional digits)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def gen_azure(out: Path, t0: float, days: int, rng: random.Random, anoms: list[dict[str, Any]]) -> int:
    """An Azure OpenAI account (gpt-4o) of the chat assistant: per-minute metric records, 60 to an envelope."""
    storm = anoms[4]
    n = 0
    for day in range(days):
        lines: list[bytes] = []
        records: list[dict[str, Any]] = []
        for minute in range(D // 60):
            ts = t0 + day * D + minute * 60
            calls = _poisson(rng, 30 * diurnal(ts) * (5 if _within(ts, storm) else 1))
            tin, tout = _sum_of(rng, calls, 2500), _sum_of(rng, calls, 400)
            for name, total in (("InputTokens", tin), ("OutputTokens", tout), ("ModelRequests", calls)):
                if total:
                    records.append(_metric(ts, name, total, calls))
            if calls:
                records.append(_metric(ts, "Latency", 800.0 * calls, calls))  # (not a token metric: left out)
            if len(records) >= 60:
                lines.append(orjson.dumps({"records": records}))
                n += len(records)
                records = []
        if records:
            lines.append(orjson.dumps({"records": records}))
            n += len(records)
        date = dt.datetime.fromtimestamp(t0 + day * D, dt.UTC).strftime("%Y-%m-%d")
        with gzip.open(out / f"metrics-{date}.jsonl.gz", "wb", compresslevel=5) as fh:
            fh.write(b"\n".join(lines) + b"\n")
    return n


def _sum_of(rng: random.Random, n: int, median: float, sigma: float = 0.4) -> int:
    """The sum of ``n`` calls' token counts, each log-normal (``median``, ``sigma``): drawn at once, as a normal with
    the sum's mean and spread (a minute's calls are many; one draw per minute keeps the demo quick to generate)."""
    if n <= 0:
        return 0
    mean = median * math.exp(sigma * sigma / 2)
    sd = mean * math.sqrt(math.exp(sigma * sigma) - 1)
    return max(0, int(rng.gauss(n * mean, sd * math.sqrt(n))))


def _metric(ts: float, name: str, total: float, count: int) -> dict[str, Any]:
    return {
        "count": count,
        "total": total,
        "minimum": 0,
        "maximum": total,
        "average": total / count if count else 0,
        "resourceId": AZURE_ACCOUNT,
        "time": _iso7(ts),
        "metricName": name,
        "timeGrain": "PT1M",
    }


def gen_otel(out: Path, t0: float, days: int, rng: random.Random, anoms: list[dict[str, Any]]) -> int:
    """A RAG service on gpt-4o, instrumented with OpenTelemetry: its meter exports the cumulative
    ``gen_ai.client.token.usage`` histograms every 5 minutes (one export request per line)."""
    bloat = anoms[5]
    step = 300
    start_ns = str(int(t0 * 1e9))
    totals = {"input": [0, 0.0], "output": [0, 0.0]}  # count, sum (cumulative since start_ns)
    n = 0
    for day in range(days):
        lines: list[bytes] = []
        for k in range(D // step):
            ts = t0 + day * D + (k + 1) * step - 1  # (the export at the end of each step, inside the month)
            calls = _poisson(rng, 40 * diurnal(ts - step / 2))
            k_in = 3.0 if _within(ts, bloat) else 1.0
            totals["input"][0] += calls
            totals["output"][0] += calls
            totals["input"][1] += sum(int(rng.lognormvariate(math.log(3000 * k_in), 0.3)) for _ in range(calls))
            totals["output"][1] += sum(int(rng.lognormvariate(math.log(350), 0.3)) for _ in range(calls))
            points = [
                {
                    "attributes": [
                        _attr("gen_ai.operation.name", "chat"),
                        _attr("gen_ai.provider.name", "openai"),
                        _attr("gen_ai.request.model", "gpt-4o"),
                        _attr("gen_ai.response.model", "gpt-4o-2024-08-06"),
                        _attr("gen_ai.token.type", kind),
                        _attr("team", "research"),
                    ],
                    "startTimeUnixNano": start_ns,
                    "timeUnixNano": str(int(ts * 1e9)),
                    "count": str(count),
                    "sum": total,
                    "bucketCounts": [str(count)],
                    "explicitBounds": [],
                }
                for kind, (count, total) in totals.items()
            ]
            request = {
                "resourceMetrics": [
                    {
                        "resource": {"attributes": [_attr("service.name", "rag-api")]},
                        "scopeMetrics": [
                            {
                                "scope": {"name": "opentelemetry.instrumentation.openai_v2"},
                                "metrics": [
                                    {
                                        "name": "gen_ai.client.token.usage",
                                        "unit": "{token}",
                                        "histogram": {"dataPoints": points, "aggregationTemporality": 2},
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
            lines.append(orjson.dumps(request))
            n += 2
        date = dt.datetime.fromtimestamp(t0 + day * D, dt.UTC).strftime("%Y-%m-%d")
        with gzip.open(out / f"genai-{date}.jsonl.gz", "wb", compresslevel=5) as fh:
            fh.write(b"\n".join(lines) + b"\n")
    return n


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def generate(
    out: str | Path, start: dt.date | None = None, days: int = 30, seed: int = 7, dcgm_step_seconds: int = 600
) -> dict[str, Any]:
    out = Path(out)
    start = start or default_start()
    t0 = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp()
    rng = random.Random(seed)
    (out / "bedrock").mkdir(parents=True, exist_ok=True)
    (out / "dcgm").mkdir(parents=True, exist_ok=True)
    (out / "azure-openai").mkdir(parents=True, exist_ok=True)
    (out / "otel").mkdir(parents=True, exist_ok=True)
    anoms = anomalies(t0)
    n_b = gen_bedrock(out / "bedrock", t0, days, rng, anoms)
    n_g = gen_dcgm(out / "dcgm", t0, days, rng, anoms, dcgm_step_seconds)
    # (their own generators: the Bedrock and dcgm months stay what they were for a seed)
    n_a = gen_azure(out / "azure-openai", t0, days, random.Random(seed + 1), anoms)
    n_o = gen_otel(out / "otel", t0, days, random.Random(seed + 2), anoms)
    manifest = {
        "start": start.isoformat(),
        "days": days,
        "seed": seed,
        "bedrock_records": n_b,
        "dcgm_samples": n_g,
        "azure_records": n_a,
        "otel_data_points": n_o,
        "dcgm_step_seconds": dcgm_step_seconds,
        "anomalies": anoms,
    }
    (out / "anomalies.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agent.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="demo-data")
    ap.add_argument("--start", type=dt.date.fromisoformat, default=None)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--if-missing", action="store_true", help="do nothing when --out already holds a month")
    args = ap.parse_args(argv)
    if args.if_missing and (Path(args.out) / "anomalies.json").exists():
        return 0
    m = generate(args.out, args.start, args.days, args.seed)
    print(
        f"demo data in {args.out}: {m['bedrock_records']} Bedrock records, {m['dcgm_samples']} dcgm samples, "
        f"{m['azure_records']} Azure Monitor records, {m['otel_data_points']} OTel GenAI data points, "
        f"{len(m['anomalies'])} injected anomalies from {m['start']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
