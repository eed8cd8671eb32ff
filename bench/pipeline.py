"""Pipeline throughput: 1M Bedrock log lines from a file, decode → aggregate → detect → sinks.

Baseline in the same run: the same file only read and parsed with ``orjson.loads`` line by line.
Prints records/s for both and the ratio (target: pipeline ≥ 50 % of parse-only).
Usage: ``python -m bench.pipeline [--records 1000000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from agent.backtest import run_backtest
from agent.config import load_config_text
from bench.common import bedrock_lines, machine

CONFIG = """
sources:
  tokens:
    type: file
    path: PLACEHOLDER
    decoder: {type: bedrock, tag_dimensions: {team: team, feature: feature}}
detectors:
  token_spend: {type: seasonal, signal: token_cost_usd, group_by: [team], window_seconds: 3600}
  unit_cost: {type: seasonal, signal: token_cost_usd, per: tokens, per_scale: 1000, group_by: [team],
              window_seconds: 3600}
  budget: {type: budget, signal: token_cost_usd, group_by: [team], window_seconds: 86400, monthly_budget_usd: 100000}
sinks:
  console: {type: console}
state: {type: memory}
"""


def parse_only(path: Path) -> tuple[int, float, float]:
    """Lines, wall seconds and CPU seconds of reading ``path`` and parsing each line with ``orjson.loads``."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    loads = orjson.loads
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--span-days", type=float, default=1.0, help="event-time span of the input (stream density)")
    args = ap.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="finops-bench-"))
    path = bedrock_lines(
        work / f"bedrock-{args.records}-{args.span_days:g}d.jsonl", args.records, span_days=args.span_days
    )
    size = path.stat().st_size
    print(f"machine: {machine()}")
    rate = args.records / (args.span_days * 86400)
    print(
        f"input: {args.records:,} Bedrock log lines, {size / args.records:.0f} bytes/line, {size / 1e6:.0f} MB, "
        f"over {args.span_days:g} day(s) of event time ({rate:,.1f} events/s), 500 team×feature×model combinations"
    )
    cfg = load_config_text(CONFIG.replace("PLACEHOLDER", str(path)))
    parse_rates, pipe_rates, ratios, cpu_ratios = [], [], [], []
    for i in range(args.repeat):
        # Paired rounds, back to back: this kind of shared machine drifts by ±30 % over minutes. The ratio of CPU
        # time (the process's, all threads) is printed too: on a busy shared machine it moves far less than wall time.
        n, secs, cpu = parse_only(path)
        c0 = time.process_time()
        summary = run_backtest(cfg, [str(path)], str(work / "alerts.jsonl"))
        pipe_cpu = time.process_time() - c0
        parse_rates.append(n / secs)
        pipe_rates.append(summary["records"] / summary["seconds"])
        ratios.append(pipe_rates[-1] / parse_rates[-1])
        cpu_ratios.append((summary["records"] / pipe_cpu) / (n / cpu))
        print(
            f"round {i + 1}: parse-only {parse_rates[-1]:,.0f}/s, pipeline {pipe_rates[-1]:,.0f}/s, "
            f"ratio {ratios[-1]:.2f}; per CPU second: parse-only {n / cpu:,.0f}, pipeline "
            f"{summary['records'] / pipe_cpu:,.0f}, ratio {cpu_ratios[-1]:.2f}"
        )
    print(f"parse-only (orjson.loads per line): median {statistics.median(parse_rates):,.0f} records/s")
    print(f"pipeline (decode→aggregate→detect→sinks): median {statistics.median(pipe_rates):,.0f} records/s")
    print(f"ratio pipeline / parse-only: median {statistics.median(ratios):.2f} (target ≥ 0.8)")
    print(f"ratio of records per CPU second, pipeline / parse-only: median {statistics.median(cpu_ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
