"""Seeded AWS CUR 2.0 line items for tests and benchmarks (vectorised with numpy; 10M rows in seconds).

Every hour bills the same fleet of resources (``rows / hours`` line items per hour). Columns, names
and types follow a CUR 2.0 Data Export in Parquet: accounts, usage types with the instance type
(``USE1-BoxUsage:p5.48xlarge``), line item types (usage, Savings Plan covered usage, RI discounted
usage, tax, credits), pricing terms, regions, resource ids, a ``resource_tags`` map and the Savings
Plan / reservation columns amortized cost needs. Each line item spans one hour. Costs follow a daily
cycle. ``spikes`` multiplies the cost of chosen (hour, service) cells: the tests' injected
anomalies, and the restatements that correct them.

    python -m scripts.billing_data OUT.parquet --rows 10000000
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SERVICES = [
    ("AmazonEC2", "Compute Instance"),
    ("AmazonS3", "Storage"),
    ("AmazonRDS", "Database Instance"),
    ("AmazonSageMaker", "Machine Learning"),
    ("AmazonBedrock", "Generative AI"),
    ("AWSLambda", "Serverless"),
    ("AmazonCloudWatch", "Metric"),
    ("AmazonDynamoDB", "Amazon DynamoDB PayPerRequest Throughput"),
    ("AmazonEKS", "Compute"),
    ("AWSDataTransfer", "Data Transfer"),
    ("AmazonVPC", "VPC Endpoint"),
    ("AmazonElastiCache", "Cache Instance"),
]
INSTANCES = ["m7i.xlarge", "c7g.2xlarge", "r6i.4xlarge", "g5.xlarge", "g6.12xlarge", "p4d.24xlarge", "p5.48xlarge"]
INSTANCE_WEIGHTS = [0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02]
INSTANCE_RATE = {
    "m7i.xlarge": 0.2,
    "c7g.2xlarge": 0.29,
    "r6i.4xlarge": 1.0,
    "g5.xlarge": 1.006,
    "g6.12xlarge": 4.6,
    "p4d.24xlarge": 21.96,
    "p5.48xlarge": 55.04,
}
REGIONS = [
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-northeast-1",
    "ap-south-1",
    "sa-east-1",
]
TEAMS = ["search", "ads", "ml-platform", "data", "web", "payments", "infra", "research"]
LINE_TYPES = ["Usage", "SavingsPlanCoveredUsage", "DiscountedUsage", "Tax", "Credit"]
LINE_WEIGHTS = [0.86, 0.07, 0.04, 0.02, 0.01]


def month_start(month: str) -> int:
    y, m = (int(x) for x in month.split("-"))
    return int(dt.datetime(y, m, 1, tzinfo=dt.UTC).timestamp())


def cur2_batches(
    rows: int,
    month: str = "2026-10",
    *,
    hours: int | None = None,
    seed: int = 7,
    spikes: dict[tuple[int, str], float] | None = None,
    batch_rows: int = 1_000_000,
    accounts: int = 12,
    resources: int = 20_000,
    first_hour: int = 0,
) -> Iterator[pa.RecordBatch]:
    """``rows`` line items of a month (or of ``hours`` hours from ``first_hour``), in record batches.

    ``spikes`` maps (hour of the month, service) to a cost factor.
    """
    rng = np.random.default_rng(seed)
    start = month_start(month)
    y, m = (int(x) for x in month.split("-"))
    days = (dt.date(y + m // 12, m % 12 + 1, 1) - dt.date(y, m, 1)).days
    n_hours = hours or days * 24
    acct = np.array([f"{100000000000 + 7919 * i:012d}" for i in range(accounts)])
    res_ids = np.array([f"i-{(0x9E3779B97F4A7C15 * (i + 1)) & 0xFFFFFFFFFFFFF:013x}" for i in range(resources)])
    svc_names = np.array([s for s, _ in SERVICES])
    svc_family = np.array([f for _, f in SERVICES])
    inst = np.array(INSTANCES)
    rate = np.array([INSTANCE_RATE[i] for i in INSTANCES])
    regions = np.array(REGIONS)
    teams = np.array(TEAMS)
    ltypes = np.array(LINE_TYPES)
    res_service = rng.choice(len(SERVICES), resources, p=_zipf(len(SERVICES)))
    res_instance = rng.choice(len(INSTANCES), resources, p=INSTANCE_WEIGHTS)
    res_region = (np.arange(resources) % accounts) % 2 + 2 * rng.choice(
        len(REGIONS) // 2, resources, p=_zipf(len(REGIONS) // 2)
    )
    per_hour = max(1, -(-rows // n_hours))
    done = 0
    n_batch = 0
    while done < rows:
        n = min(batch_rows, rows - done)
        r = np.random.default_rng([seed, n_batch])
        # A steady fleet: every hour bills the same resources (one line item each), as a real bill does;
        # a resource lives in one account, region and service and is one instance type.
        g = np.arange(done, done + n)
        hour = first_hour + np.minimum(g // per_hour, n_hours - 1)
        res = (g % per_hour) % resources
        svc = res_service[res]
        is_ec2 = svc == 0
        it = res_instance[res]
        lt = r.choice(len(LINE_TYPES), n, p=LINE_WEIGHTS)
        region = res_region[res]
        daily = 1.0 + 0.35 * np.sin(2 * np.pi * ((hour % 24) - 8) / 24)
        amount = np.where(is_ec2, 1.0, np.round(r.gamma(2.0, 5.0, n), 4))
        unit_rate = np.where(is_ec2, rate[it], r.gamma(1.5, 0.02, n) * (1 + svc))
        cost = amount * unit_rate * daily * r.lognormal(0.0, 0.15, n)
        cost = np.where(lt == 4, -np.abs(cost) * 0.2, cost)  # credits are negative
        cost = np.where(lt == 3, cost * 0.08, cost)
        if spikes:
            for (h, service), factor in spikes.items():
                sel = (hour == h) & (svc_names[svc] == service)
                cost = np.where(sel, cost * factor, cost)
                amount = np.where(sel & is_ec2, amount * factor, amount)
        usage_start = (start + hour * 3600).astype("datetime64[s]")
        itype = np.where(is_ec2, inst[it], "")
        usage_type = np.where(is_ec2, np.char.add("USE1-BoxUsage:", inst[it]), np.char.add("USE1-", svc_family[svc]))
        term = np.where(lt == 2, "Reserved", np.where(lt < 2, "OnDemand", ""))
        tags = pa.MapArray.from_arrays(
            pa.array(np.arange(n + 1, dtype=np.int32)),
            pa.array(np.full(n, "user:team")),
            pa.array(teams[(res % accounts) % len(TEAMS)]),
        )
        ids = np.char.add("li-", (np.arange(done, done + n) * 2654435761 % (1 << 40)).astype(str))
        yield _batch(
            {
                "identity_line_item_id": ids,
                "identity_time_interval": np.full(n, f"{month}-01T00:00:00Z/{month}-{days:02d}T23:59:59Z"),
                "bill_billing_period_start_date": pa.array(
                    np.full(n, start).astype("datetime64[s]"), pa.timestamp("ms")
                ),
                "bill_payer_account_id": np.full(n, acct[0]),
                "line_item_usage_account_id": acct[res % accounts],
                "line_item_line_item_type": ltypes[lt],
                "line_item_usage_start_date": pa.array(usage_start, pa.timestamp("ms")),
                "line_item_usage_end_date": pa.array(usage_start + np.timedelta64(3600, "s"), pa.timestamp("ms")),
                "line_item_product_code": svc_names[svc],
                "line_item_usage_type": usage_type,
                "line_item_operation": np.where(is_ec2, "RunInstances", "Operation"),
                "line_item_resource_id": res_ids[res],
                "line_item_usage_amount": amount,
                "line_item_unblended_rate": unit_rate,
                "line_item_unblended_cost": cost,
                "line_item_net_unblended_cost": cost * 0.97,
                "line_item_currency_code": np.full(n, "USD"),
                "pricing_public_on_demand_cost": np.abs(cost) * 1.1,
                "pricing_term": term,
                "pricing_unit": np.where(is_ec2, "Hrs", "Units"),
                "product_instance_type": itype,
                "product_region_code": regions[region],
                "product_product_family": svc_family[svc],
                "product_sku": np.char.add("SKU", (svc * 100 + it).astype(str)),
                "resource_tags": tags,
                "savings_plan_savings_plan_effective_cost": np.where(lt == 1, cost * 0.7, 0.0),
                "reservation_effective_cost": np.where(lt == 2, cost * 0.6, 0.0),
            }
        )
        done += n
        n_batch += 1
    del rng


def _batch(columns: dict[str, object]) -> pa.RecordBatch:
    arrays = {}
    for name, v in columns.items():
        a = v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v)
        arrays[name] = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    return pa.RecordBatch.from_pydict(arrays)


def _zipf(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


def write_parquet(path: str, rows: int, **kw: object) -> int:
    """Write ``rows`` line items to one Parquet file (row groups of 1M); returns its size in bytes."""
    import os

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    writer = None
    try:
        for batch in cur2_batches(rows, **kw):  # type: ignore[arg-type]
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="snappy")
            writer.write_batch(batch, row_group_size=1_000_000)
    finally:
        if writer is not None:
            writer.close()
    return os.path.getsize(path)


def table(rows: int, **kw: object) -> pa.Table:
    return pa.Table.from_batches(list(cur2_batches(rows, **kw)))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.billing_data")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--month", default="2026-10")
    args = ap.parse_args(argv)
    size = write_parquet(args.out, args.rows, month=args.month)
    print(f"{args.out}: {args.rows:,} line items, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
