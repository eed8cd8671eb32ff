"""Resident memory per active series: 100k series through the aggregator and the seasonal detector.

Each series gets two days of hourly windows (so every model is past its first learning steps), then
the process's resident set size (RSS, from /proc) is compared with the RSS before the series
existed. The figure includes everything the agent keeps per series: the River model, its window
bookkeeping, the interned dimension tuples and cells, the routing caches, the latest point kept for
``/metrics`` and — in live mode (the default) — the pace array of early warnings.

Live mode: a running agent looks at the open windows every ``early_check_seconds`` of event time
(``agent/topology.py``, for a detector with ``early_warning``, on by default for sums watched upward), and every
series with data in an open window gets its pace (``agent/pace.py``). The benchmark makes one such check per window,
half-way through it; ``--no-early`` leaves it out (a backtest, or detectors without early warnings). The scoring
figure times the roll-up of the sealed bucket and the window's close (score + learn + alert lifecycle); the early
check is timed apart (per series checked), as is the making of the benchmark's input.
Usage: ``python -m bench.memory [--series 100000] [--hours 48] [--no-early]``.
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
    ap.add_argument(
        "--early",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="live mode: one early-warning check per window (each series keeps its pace array); default on",
    )
    args = ap.parse_args(argv)
    cfg = SeasonalConfig(type="seasonal", signal="token_cost_usd", group_by=["team", "model"], window_seconds=3600)
    runner = DetectorRunner("bench", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())
    early = args.early and runner.early_enabled
    gc.collect()
    base = rss_bytes()
    signals = ("token_cost_usd",)
    cells = [
        cell(make_dims({"team": f"team-{i // 10}", "model": f"model-{i % 10}"}), signals) for i in range(args.series)
    ]
    secs = early_secs = 0.0
    points = checked = 0
    for h in range(args.hours):
        start = 1_790_000_000.0 - 1_790_000_000.0 % 3600 + h * 3600
        bucket = {c: [10.0 + (i % 7) + (h % 24)] for i, c in enumerate(cells)}
        if early:  # half-way through the window, its bucket still open
            t0 = time.perf_counter()
            runner.early(start + 1800, [(start, bucket)])
            early_secs += time.perf_counter() - t0
            checked += len(runner.models)
        t0 = time.perf_counter()
        runner.add_bucket(start, bucket)
        pts, _events = runner.close_until(start + 3600)
        secs += time.perf_counter() - t0
        points += len(pts)
        del pts, _events, bucket  # the agent publishes the points and lets them go (it keeps each series' latest)
    gc.collect()
    used = rss_bytes() - base
    n = len(runner.models)
    model_bytes = len(pickle.dumps(next(iter(runner.models.values()))))
    paces = len(getattr(runner, "pace", ()))
    print(f"machine: {machine()}")
    print(f"series: {n:,} active, {args.hours} hourly windows each ({points:,} points scored)")
    mode = f"live: early warnings on, {paces:,} pace arrays" if early else "early warnings off: no pace arrays"
    per = used / n
    print(f"resident memory ({mode}): {used / 1e6:,.1f} MB → {per:,.0f} bytes per series (target ≤ 2,560: 2.5 KB)")
    print(f"one seasonal model pickled: {model_bytes} bytes")
    print(f"scoring: {secs / points * 1e6:.1f} µs per point (roll-up + score + learn + alert lifecycle)")
    if early:
        print(f"early-warning check: {early_secs / checked * 1e6:.1f} µs per series checked (one check per window)")
    print(f"RESULT bytes_per_series={per:.0f} us_per_point={secs / points * 1e6:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
