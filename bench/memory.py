"""Resident memory per active series: 100k series through the aggregator and the seasonal detector.

Each series gets two days of hourly windows (so every model is past its first learning steps), then
the process's resident set size (RSS, from /proc) is compared with the RSS before the series
existed. The figure includes everything the agent keeps per series: the River model, its window
bookkeeping, the interned dimension tuples and cells, and the routing caches.
Usage: ``python -m bench.memory [--series 100000]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import time

from agent.config import AlertingConfig
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from bench.common import machine
from detectors.seasonal import SeasonalConfig, SeasonalDetector


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--hours", type=int, default=48)
    args = ap.parse_args(argv)
    cfg = SeasonalConfig(type="seasonal", signal="token_cost_usd", group_by=["team", "model"], window_seconds=3600)
    runner = DetectorRunner("bench", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())
    gc.collect()
    base = rss_bytes()
    signals = ("token_cost_usd",)
    cells = [
        cell(make_dims({"team": f"team-{i // 10}", "model": f"model-{i % 10}"}), signals) for i in range(args.series)
    ]
    t0 = time.perf_counter()
    points = 0
    for h in range(args.hours):
        start = 1_790_000_000.0 - 1_790_000_000.0 % 3600 + h * 3600
        runner.add_bucket(start, {c: [10.0 + (i % 7) + (h % 24)] for i, c in enumerate(cells)})
        pts, _events = runner.close_until(start + 3600)
        points += len(pts)
        del pts, _events  # the agent publishes a window's points and lets them go (it keeps each series' latest)
    secs = time.perf_counter() - t0
    gc.collect()
    used = rss_bytes() - base
    model_bytes = len(pickle.dumps(next(iter(runner.models.values()))))
    print(f"machine: {machine()}")
    print(f"series: {len(runner.models):,} active, {args.hours} hourly windows each ({points:,} points scored)")
    per = used / len(runner.models)
    print(f"resident memory: {used / 1e6:,.1f} MB → {per:,.0f} bytes per series (target ≤ 2,560: 2.5 KB)")
    print(f"one seasonal model pickled: {model_bytes} bytes")
    print(f"scoring: {secs / points * 1e6:.1f} µs per point (roll-up + score + learn + alert lifecycle)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
