"""Billing export → hourly series points: the agent against DuckDB on the same CUR 2.0 Parquet month.

    python -m bench.billing [--rows 10000000] [--repeat 3] [--json rounds.json]

A generated CUR 2.0 month (``scripts.billing_data``: realistic columns, a steady fleet of
resources across accounts, services, regions and instance types, ``resource_tags`` map) is
written once to ``bench/out/``. Each side runs in its own process (so peak RSS is its own), one
after the other, ``--repeat`` rounds: each ratio divides by the DuckDB time of its own round.

- (a) DuckDB: ``SELECT date_trunc('hour', usage start), <the agent's 8 dimensions>,
  SUM(unblended cost) … GROUP BY ALL`` on the file, its result fetched as an Arrow table (the
  agent's output is such a table too); (a') the same query again in that process.
- (b) the agent: ``agent.decoders.billing.delivery.read_file`` with the ``cur`` decoder's default
  dimensions — DuckDB lists the distinct raw combinations, the decoder normalises them (text ids,
  FOCUS charge and pricing categories, GPU-hours from the instance table) into dimensions and
  linear coefficients, DuckDB sums line items × coefficients per (hour, dimensions): cells with
  three signals. (b') the same file again through the same decoder, as a restated delivery with
  the same combinations comes (the decoder's combination cache: one scan); (b'') a first delivery
  again (a new decoder), in a process that has read one before (as a long-running agent is).

Printed per round and summed up (best, median, range): seconds of each, the ratios (b)/(a),
(b')/(a') and (b'')/(a') in wall-clock and in CPU seconds (less disturbed by a busy machine;
target <= 1.3), cells out, and peak RSS (after the first read).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import machine

OUT = Path(__file__).resolve().parent / "out"

DUCKDB_SQL = """
SELECT date_trunc('hour', line_item_usage_start_date) AS hour,
       bill_payer_account_id, line_item_usage_account_id, line_item_product_code, product_product_family,
       product_region_code, line_item_line_item_type, pricing_term, product_instance_type,
       SUM(line_item_unblended_cost) AS cost
FROM read_parquet('{path}')
GROUP BY ALL
"""


def _peak_mib() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn: Any) -> tuple[Any, float, float]:
    """``fn()``, its wall-clock seconds and the CPU seconds of this process (every thread) it took."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_duckdb(path: str) -> dict[str, float]:
    import duckdb

    con = duckdb.connect()
    sql = DUCKDB_SQL.format(path=path)
    table, secs, cpu = _timed(lambda: con.sql(sql).to_arrow_table())  # the grouped rows, as the agent has them
    peak = _peak_mib()
    _, warm, warm_cpu = _timed(lambda: con.sql(sql).to_arrow_table())  # again, in a process that ran it once
    return {
        "seconds": secs,
        "cpu": cpu,
        "warm_seconds": warm,
        "warm_cpu": warm_cpu,
        "cells": float(table.num_rows),
        "peak_mib": peak,
    }


def run_agent(path: str) -> dict[str, float]:
    import duckdb  # noqa: F401  (imported before the clock starts, as for DuckDB alone)

    import agent.decoders  # noqa: F401  (registration)
    from agent.decoders.base import DecodeContext
    from agent.decoders.billing.base import CurConfig
    from agent.decoders.billing.cur import CurDecoder
    from agent.decoders.billing.delivery import read_file

    ctx = DecodeContext("bench", bucket_seconds=3600)
    dec = CurDecoder(CurConfig(type="cur"))
    (table, bad, rows), secs, cpu = _timed(lambda: read_file(path, dec, ctx))
    peak = _peak_mib()
    # The same file again through the same decoder: what a restated delivery with the same combinations costs.
    (again, bad_again, rows_again), restated, restated_cpu = _timed(lambda: read_file(path, dec, ctx))
    if again.num_rows != table.num_rows or rows_again != rows or len(bad_again) != len(bad):
        raise SystemExit("the restated read differs from the first one")
    # A first delivery again (a new decoder: nothing known), in a process that has read one before.
    fresh = CurDecoder(CurConfig(type="cur"))
    _, cold_warm, cold_warm_cpu = _timed(lambda: read_file(path, fresh, ctx))
    cache = getattr(dec, "combinations", None)  # (absent before the cache existed: the bench runs there too)
    return {
        "seconds": secs,
        "cpu": cpu,
        "restated_seconds": restated,
        "restated_cpu": restated_cpu,
        "warm_seconds": cold_warm,
        "warm_cpu": cold_warm_cpu,
        "cells": float(table.num_rows),
        "rows": float(rows),
        "bad": float(len(bad)),
        "warm_reads": float(getattr(cache, "warm", 0)),
        "peak_mib": peak,
    }


def _child(which: str, path: str) -> dict[str, float]:
    code = f"import json, bench.billing as b; print(json.dumps(b.run_{which}({path!r})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def _spread(xs: list[float]) -> str:
    return f"best {min(xs):.2f}, median {statistics.median(xs):.2f}, range {min(xs):.2f}-{max(xs):.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.billing")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write every round's figures here")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"cur2-{args.rows}.parquet"
    if not path.exists():
        from scripts.billing_data import write_parquet

        t0 = time.perf_counter()
        size = write_parquet(str(path), args.rows, month="2026-10")
        print(
            f"generated {path.name}: {args.rows:,} line items, {size / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s"
        )
    print(f"machine: {machine()}")
    print(f"input: {path.name}, {path.stat().st_size / 1e6:.0f} MB")
    rounds = []
    for i in range(args.repeat):
        a, b = _child("duckdb", str(path)), _child("agent", str(path))
        rounds.append({"duckdb": a, "agent": b})
        print(
            f"round {i + 1}: first in its process: DuckDB {a['seconds']:.2f} s, agent cold {b['seconds']:.2f} s "
            f"(ratio {b['seconds'] / a['seconds']:.2f}); then DuckDB again {a['warm_seconds']:.2f} s, "
            f"agent restated {b['restated_seconds']:.2f} s (ratio {b['restated_seconds'] / a['warm_seconds']:.2f}, "
            f"{b['warm_reads']:.0f} one-scan reads), agent cold again {b['warm_seconds']:.2f} s "
            f"(ratio {b['warm_seconds'] / a['warm_seconds']:.2f})"
        )

    def col(side: str, key: str) -> list[float]:
        return [r[side][key] for r in rounds]

    a = min((r["duckdb"] for r in rounds), key=lambda r: r["seconds"])
    b = min((r["agent"] for r in rounds), key=lambda r: r["seconds"])
    print(
        f"(a) DuckDB GROUP BY hour + 8 dims, first in its process: {_spread(col('duckdb', 'seconds'))} s; best "
        f"{args.rows / a['seconds']:,.0f} rows/s, {a['cells']:,.0f} cells, peak RSS {a['peak_mib']:,.0f} MiB"
    )
    print(f"(a') DuckDB, the query again: {_spread(col('duckdb', 'warm_seconds'))} s")
    print(
        f"(b) agent, first delivery, first in its process (list + normalise + sum): {_spread(col('agent', 'seconds'))}"
        f" s; best {args.rows / b['seconds']:,.0f} rows/s, {b['cells']:,.0f} cells, {b['bad']:.0f} bad rows, "
        f"peak RSS {b['peak_mib']:,.0f} MiB"
    )
    print(f"(b') agent, the same file restated (same decoder): {_spread(col('agent', 'restated_seconds'))} s")
    print(f"(b'') agent, a first delivery again (new decoder): {_spread(col('agent', 'warm_seconds'))} s")
    for label, side, key, base in (
        ("(b)/(a), first delivery, first in process", "agent", "seconds", "seconds"),
        ("(b')/(a'), restated", "agent", "restated_seconds", "warm_seconds"),
        ("(b'')/(a'), first delivery", "agent", "warm_seconds", "warm_seconds"),
        ("(b)/(a) in CPU seconds", "agent", "cpu", "cpu"),
        ("(b')/(a') in CPU seconds", "agent", "restated_cpu", "warm_cpu"),
        ("(b'')/(a') in CPU seconds", "agent", "warm_cpu", "warm_cpu"),
    ):
        ratios = [x / d for x, d in zip(col(side, key), col("duckdb", base), strict=True)]
        print(f"time ratio {label}: {_spread(ratios)} (target <= 1.3)")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
