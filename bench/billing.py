"""Billing export → hourly series points: the agent against DuckDB on the same CUR 2.0 Parquet month.

    python -m bench.billing [--rows 10000000]

A generated CUR 2.0 month (``scripts.billing_data``: realistic columns, a steady fleet of
resources across accounts, services, regions and instance types, ``resource_tags`` map) is
written once to ``bench/out/``. Each side runs in its own process (so peak RSS is its own):

- (a) DuckDB: ``SELECT date_trunc('hour', usage start), <the agent's 8 dimensions>,
  SUM(unblended cost) … GROUP BY ALL`` on the file, its result fetched as an Arrow table (the
  agent's output is such a table too);
- (b) the agent: ``agent.decoders.billing.delivery.read_file`` with the ``cur`` decoder's default dimensions —
  DuckDB sums line items alike on the raw columns (projection pushed into the Parquet scan), then
  pyarrow normalises per distinct value (text ids, FOCUS charge and pricing categories,
  GPU-hours from the instance table) and groups to (hour, dimensions) cells with three signals.

Printed: rows/s of each, the time ratio (b)/(a) (target ≤ 2), cells out, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

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


def run_duckdb(path: str) -> dict[str, float]:
    import duckdb

    con = duckdb.connect()
    t0 = time.perf_counter()
    table = con.sql(DUCKDB_SQL.format(path=path)).to_arrow_table()  # the grouped rows, as the agent has them
    secs = time.perf_counter() - t0
    return {"seconds": secs, "cells": float(table.num_rows), "peak_mib": _peak_mib()}


def run_agent(path: str) -> dict[str, float]:
    import agent.decoders  # noqa: F401  (registration)
    from agent.decoders.base import DecodeContext
    from agent.decoders.billing.base import CurConfig
    from agent.decoders.billing.cur import CurDecoder
    from agent.decoders.billing.delivery import read_file

    dec = CurDecoder(CurConfig(type="cur"))
    t0 = time.perf_counter()
    table, bad, rows = read_file(path, dec, DecodeContext("bench", bucket_seconds=3600))
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "cells": float(table.num_rows),
        "rows": float(rows),
        "bad": float(len(bad)),
        "peak_mib": _peak_mib(),
    }


def _child(which: str, path: str) -> dict[str, float]:
    code = f"import json, bench.billing as b; print(json.dumps(b.run_{which}({path!r})))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.billing")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=2)
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
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for which in ("duckdb", "agent"):
            r = _child(which, str(path))
            if which not in best or r["seconds"] < best[which]["seconds"]:
                best[which] = r
    a, b = best["duckdb"], best["agent"]
    print(
        f"(a) DuckDB GROUP BY hour + 8 dims: {a['seconds']:.2f} s, {args.rows / a['seconds']:,.0f} rows/s, "
        f"{a['cells']:,.0f} cells, peak RSS {a['peak_mib']:,.0f} MiB"
    )
    print(
        f"(b) agent (read + normalise + group): {b['seconds']:.2f} s, {args.rows / b['seconds']:,.0f} rows/s, "
        f"{b['cells']:,.0f} cells, {b['bad']:.0f} bad rows, peak RSS {b['peak_mib']:,.0f} MiB"
    )
    print(f"time ratio (b)/(a): {b['seconds'] / a['seconds']:.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
