"""Shared helpers for benchmarks: machine description and generated inputs."""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
from pathlib import Path

import orjson

MODELS = [
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "amazon.nova-pro-v1:0",
    "meta.llama3-1-70b-instruct-v1:0",
    "amazon.nova-lite-v1:0",
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def bedrock_lines(
    path: Path, n: int, seed: int = 1, teams: int = 20, start: float | None = None, span_days: float = 1.0
) -> Path:
    """Write ``n`` Bedrock invocation log lines (~560 bytes each) spread evenly over ``span_days``.

    20 teams × 5 features × 5 models = 500 (team, feature, model) combinations.
    """
    if path.exists() and path.stat().st_size > 0:
        return path
    rng = random.Random(seed)
    t0 = start if start is not None else (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).timestamp()
    step = span_days * 86400 / n
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        buf = []
        for i in range(n):
            ts = t0 + i * step
            team = f"team-{rng.randrange(teams):02d}"
            rec = {
                "schemaType": "ModelInvocationLog",
                "schemaVersion": "1.0",
                "timestamp": dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "accountId": "111122223333",
                "identity": {"arn": f"arn:aws:sts::111122223333:assumed-role/{team}/s"},
                "region": "us-east-1",
                "requestId": f"{rng.getrandbits(64):016x}-{rng.getrandbits(48):012x}",
                "operation": "Converse",
                "modelId": MODELS[rng.randrange(len(MODELS))],
                "input": {
                    "inputContentType": "application/json",
                    "inputTokenCount": rng.randrange(100, 20000),
                    "cacheReadInputTokenCount": 0,
                },
                "output": {"outputContentType": "application/json", "outputTokenCount": rng.randrange(10, 2000)},
                "requestMetadata": {"team": team, "env": "prod", "feature": f"f{rng.randrange(5)}"},
            }
            buf.append(orjson.dumps(rec))
            if len(buf) >= 10000:
                fh.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return path
