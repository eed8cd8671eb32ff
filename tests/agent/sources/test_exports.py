"""Billing exports in object storage, against real servers: moto's S3 server and Azurite's Blob service.

The S3 bucket is laid out as AWS Data Exports lays it out (data files, then the manifest under
``metadata/BILLING_PERIOD=…``); the Blob container as Cost Management does (``manifest.json`` per
run with byte counts). Anomalies are injected into generated CUR 2.0 line items and say so.
"""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.pipeline import Agent
from scripts import billing_data
from tests.conftest import shared_data, wait_until

PERIOD = "2026-10"
EXPORT = "finops-cur"


def _s3(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def put_delivery(
    s3: Any,
    bucket: str,
    execution: str,
    tables: list[pa.Table],
    *,
    prefix: str = "exports",
    create_new: bool = False,
    manifest: bytes | None = None,
    skip_files: tuple[int, ...] = (),
    mangle: dict[int, bytes] | None = None,
) -> str:
    """Data files first, the manifest last, as Data Exports writes them; returns the manifest key."""
    sub = f"{execution}/" if create_new else ""
    base = f"{prefix}/{EXPORT}"
    uris = []
    for i, t in enumerate(tables, start=1):
        key = f"{base}/data/BILLING_PERIOD={PERIOD}/{sub}{EXPORT}-{i:05d}.snappy.parquet"
        uris.append(f"s3://{bucket}/{key}")
        if i - 1 in skip_files:
            continue
        body = (mangle or {}).get(i - 1) or _parquet_bytes(t)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    doc = {
        "executionId": execution,
        "exportArn": f"arn:aws:bcm-data-exports:us-east-1:111122223333:export/{EXPORT}",
        "columns": [{"name": n} for n in tables[0].column_names],
        "dataFiles": uris,
        "additionalOutputFiles": [],
    }
    mkey = f"{base}/metadata/BILLING_PERIOD={PERIOD}/{sub}{EXPORT}-Manifest.json"
    s3.put_object(Bucket=bucket, Key=mkey, Body=manifest if manifest is not None else orjson.dumps(doc))
    return mkey


def _config(source: str, state_dir: Path, detectors: str = "") -> Any:
    text = f"""
sources:
{source}
detectors:
  spend:
    type: seasonal
    signal: billing_cost_usd
    group_by: [service]
    window_seconds: 3600
    min_impact_usd: 20
{detectors}
sinks:
  out: {{type: jsonl, path: {state_dir}/alerts.jsonl}}
state: {{type: local, directory: {state_dir}, checkpoint_interval_seconds: 0.5}}
dead_letter: {{path: {state_dir}/dead-letter.jsonl}}
pipeline: {{max_age_days: 36500}}  # the Azure sample is a 2024 bill; generated months age too
"""
    return load_config_text(text)


def _s3_source(endpoint: str, bucket: str, prefix: str = "exports") -> str:
    return f"""  cur:
    type: s3_export
    bucket: {bucket}
    prefix: {prefix}/{EXPORT}
    endpoint_url: {endpoint}
    poll_interval_seconds: 0.3
    manifest_grace_seconds: 1
    settle_hours: 0
    decoder: {{type: cur}}"""


def _start(cfg: Any) -> tuple[Agent, PointCollector]:
    col = PointCollector()
    agent = Agent(cfg, extra_sinks={"collector": col})
    agent.start()
    return agent, col


def _applied(agent: Agent, source: str, delivery: str, period: str = PERIOD) -> bool:
    src = agent.sources[source]
    return src.positions.get(period, {}).get("delivery") == delivery and agent.queue.unfinished_tasks == 0


def _events(col: PointCollector) -> list[tuple[str, str, str, bool, int]]:
    return [
        (a["series"].get("service", ""), a["window_start"], a["status"], a["restated"], a["revision"])
        for a in col.alerts
    ]


def _discarded(agent: Agent, reason: str, component: str) -> float:
    v = agent.telemetry.registry.get_sample_value(
        "finops_agent_events_discarded_total", {"component": component, "reason": reason}
    )
    return v or 0.0


HOUR = lambda h: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(billing_data.month_start(PERIOD) + h * 3600))  # noqa: E731


def test_data_export_restatement_updates_and_withdraws_alerts_and_survives_restart(
    s3_endpoint: str, tmp_path: Path
) -> None:
    s3 = _s3(s3_endpoint)
    bucket = "billing-restate"
    s3.create_bucket(Bucket=bucket)
    # Delivery 1: ten days; its newest hour carries two provisional spikes (injected).
    d1 = billing_data.table(
        120_000, month=PERIOD, hours=240, seed=7, spikes={(239, "AmazonSageMaker"): 30.0, (239, "AmazonRDS"): 30.0}
    )
    put_delivery(s3, bucket, "exec-1", [d1.slice(0, 60_000), d1.slice(60_000)])
    cfg = _config(_s3_source(s3_endpoint, bucket), tmp_path)
    agent, col = _start(cfg)
    try:
        assert wait_until(lambda: _applied(agent, "cur", "exec-1"), 60)
        first = _events(col)
        assert ("AmazonSageMaker", HOUR(239), "firing", False, 0) in first
        assert ("AmazonRDS", HOUR(239), "firing", False, 0) in first
        assert all(e[1] == HOUR(239) for e in first), first  # nothing else alerts on the ten normal days
        # Delivery 2 (the same export, overwritten): hour 239 restated (SageMaker back to normal, RDS
        # twice as high), one more day appended with a Bedrock spike (injected).
        d2a = billing_data.table(120_000, month=PERIOD, hours=240, seed=7, spikes={(239, "AmazonRDS"): 60.0})
        d2b = billing_data.table(
            12_000, month=PERIOD, hours=24, first_hour=240, seed=8, spikes={(255, "AmazonBedrock"): 40.0}
        )
        put_delivery(s3, bucket, "exec-2", [d2a, d2b])
        assert wait_until(lambda: _applied(agent, "cur", "exec-2"), 60)
        second = _events(col)[len(first) :]
        assert ("AmazonSageMaker", HOUR(239), "resolved", True, 1) in second  # withdrawn
        rds = [a for a in col.alerts[len(first) :] if a["series"] == {"service": "AmazonRDS"} and a["restated"]]
        assert len(rds) == 1 and rds[0]["status"] == "firing" and rds[0]["revision"] == 1
        before = next(a for a in col.alerts if a["series"] == {"service": "AmazonRDS"})
        assert rds[0]["observed"] > 1.7 * before["observed"]
        assert ("AmazonBedrock", HOUR(255), "firing", False, 0) in second
        new_firing = {(s, w) for s, w, st, r, _ in second if st == "firing" and not r}
        assert new_firing == {("AmazonBedrock", HOUR(255))}, second
        # Only the restated hour was scored again; the appended day was scored once.
        assert (
            agent.telemetry.registry.get_sample_value(
                "finops_agent_billing_deliveries_total", {"component": "cur", "outcome": "applied"}
            )
            == 2
        )
    finally:
        agent.stop()
    # A restart reads the same bucket: nothing is applied or alerted again.
    agent2, col2 = _start(_config(_s3_source(s3_endpoint, bucket), tmp_path))
    try:
        assert agent2.sources["cur"].positions[PERIOD]["delivery"] == "exec-2"
        assert agent2.runners["spend"].models, "series restored"
        time.sleep(1.5)  # several polls
        assert col2.alerts == []
        assert agent2.snapshots.deliveries  # the period's table came back from its Parquet file
    finally:
        agent2.stop()


def test_create_new_report_newest_execution_wins_and_legacy_cur_manifest(s3_endpoint: str, tmp_path: Path) -> None:
    s3 = _s3(s3_endpoint)
    bucket = "billing-create-new"
    s3.create_bucket(Bucket=bucket)
    t = billing_data.table(5_000, month=PERIOD, hours=48, seed=3)
    put_delivery(s3, bucket, "2026-10-02T08:00:00Z-aaa", [t], create_new=True)
    time.sleep(1.1)  # S3 modification times have a one-second resolution
    put_delivery(s3, bucket, "2026-10-02T16:00:00Z-bbb", [t], create_new=True)
    # Legacy CUR: <report>/<yyyymmdd-yyyymmdd>/<assembly>/<report>-Manifest.json with reportKeys.
    legacy_key = "legacy/cur-report/20261001-20261101/asm-1/cur-report-1.csv.gz"
    buf = io.BytesIO()
    pacsv.write_csv(_legacy(t), buf)
    s3.put_object(Bucket=bucket, Key=legacy_key, Body=gzip.compress(buf.getvalue()))
    s3.put_object(
        Bucket=bucket,
        Key="legacy/cur-report/20261001-20261101/asm-1/cur-report-Manifest.json",
        Body=orjson.dumps({"assemblyId": "asm-1", "reportKeys": [legacy_key], "billingPeriod": {}}),
    )
    source = (
        _s3_source(s3_endpoint, bucket)
        + "\n"
        + _s3_source(s3_endpoint, bucket, "legacy")
        .replace("  cur:", "  legacy:")
        .replace(f"legacy/{EXPORT}", "legacy/cur-report")
    )
    agent, _ = _start(_config(source, tmp_path))
    try:
        assert wait_until(lambda: _applied(agent, "cur", "2026-10-02T16:00:00Z-bbb"), 60)
        assert wait_until(lambda: _applied(agent, "legacy", "asm-1"), 60)
        total = sum(t.column("line_item_unblended_cost").to_pylist())
        for name in ("cur", "legacy"):
            (table,) = [v for k, v in agent.snapshots.tables.items() if k.startswith(name + "\x1f")]
            assert sum(table.column("billing_cost_usd").to_pylist()) == pytest.approx(total, rel=1e-9)
    finally:
        agent.stop()


def _legacy(t: pa.Table) -> pa.Table:
    """The same line items with legacy CUR column names (``lineItem/UnblendedCost``)."""
    names = {
        "line_item_usage_start_date": "lineItem/UsageStartDate",
        "line_item_unblended_cost": "lineItem/UnblendedCost",
        "line_item_product_code": "lineItem/ProductCode",
        "line_item_usage_account_id": "lineItem/UsageAccountId",
        "line_item_line_item_type": "lineItem/LineItemType",
        "line_item_currency_code": "lineItem/CurrencyCode",
        "product_instance_type": "product/instanceType",
        "line_item_usage_type": "lineItem/UsageType",
        "line_item_usage_amount": "lineItem/UsageAmount",
        "pricing_unit": "pricing/unit",
    }
    return pa.table({new: t.column(old) for old, new in names.items()})


def test_bad_deliveries_keep_the_previous_snapshot_and_are_retried(s3_endpoint: str, tmp_path: Path) -> None:
    s3 = _s3(s3_endpoint)
    bucket = "billing-bad"
    s3.create_bucket(Bucket=bucket)
    good = billing_data.table(5_000, month=PERIOD, hours=48, seed=5)
    put_delivery(s3, bucket, "good-1", [good])
    agent, col = _start(_config(_s3_source(s3_endpoint, bucket), tmp_path))
    try:
        assert wait_until(lambda: _applied(agent, "cur", "good-1"), 60)
        table_before = next(iter(agent.snapshots.tables.values()))
        cases = [
            ("bad_manifest", dict(manifest=b'{"executionId": "half-2", "dataFi')),  # half-written
            ("missing_file", dict(tables=[good, good, good], skip_files=(2,))),  # a data file listed but absent
            ("corrupt_file", dict(mangle={1: _parquet_bytes(good)[:4000]})),  # truncated Parquet
            ("currency", dict(tables=[good.set_column(16, "line_item_currency_code", pa.array(["EUR"] * 5_000))])),
            ("missing_columns", dict(tables=[good.drop(["line_item_unblended_cost"])])),
        ]
        for i, (kind, kw) in enumerate(cases):
            tables = kw.pop("tables", [good, good])
            put_delivery(s3, bucket, f"bad-{i}", tables, **kw)
            assert wait_until(lambda kind=kind: _discarded(agent, kind, "cur") >= 1, 30), kind
            # While the files are rewritten the previous manifest may be read against them once more (a
            # second delivery with the same problem, counted too); after that, polls retry it without
            # counting or dead-lettering it again.
            time.sleep(0.7)
            seen = _discarded(agent, kind, "cur")
            time.sleep(0.7)
            assert _discarded(agent, kind, "cur") == seen <= 2, kind
            assert agent.sources["cur"].positions[PERIOD]["delivery"] == "good-1"
            assert next(iter(agent.snapshots.tables.values())) is table_before
        assert col.alerts == []
        lines = (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()
        kinds = {orjson.loads(x)["kind"] for x in lines}
        assert kinds >= {c for c, _ in cases}
        # Data files of another period and no manifest: reported once the grace period has passed.
        s3.put_object(
            Bucket=bucket,
            Key=f"exports/{EXPORT}/data/BILLING_PERIOD=2026-11/{EXPORT}-00001.snappy.parquet",
            Body=_parquet_bytes(good),
        )
        assert wait_until(lambda: _discarded(agent, "missing_manifest", "cur") == 1, 30)
        assert "2026-11" not in agent.sources["cur"].positions
        # Fixed on the next refresh: applied.
        put_delivery(s3, bucket, "good-2", [good])
        assert wait_until(lambda: _applied(agent, "cur", "good-2"), 30)
    finally:
        agent.stop()


def test_row_problems_in_a_delivery_cost_only_their_rows(s3_endpoint: str, tmp_path: Path) -> None:
    """A manifest whose files all read whole is applied even when rows of them are bad: NaN, ±inf and absurd
    costs in a Parquet file, a ragged row and bytes that are not UTF-8 in a gzip CSV file are dead-lettered one
    by one (naming the file and row); every other line item is summed."""
    import numpy as np

    s3 = _s3(s3_endpoint)
    bucket = "billing-rows"
    s3.create_bucket(Bucket=bucket)
    good = billing_data.table(5_000, month=PERIOD, hours=48, seed=5)
    cost = good.column("line_item_unblended_cost").to_numpy().copy()
    cost[[3, 4, 5, 6]] = [np.nan, np.inf, -np.inf, 1e15]
    bad_parquet = good.set_column(good.schema.get_field_index("line_item_unblended_cost"), "line_item_unblended_cost",
                                  pa.array(cost))  # fmt: skip
    buf = io.BytesIO()
    pacsv.write_csv(good.drop(["resource_tags"]).slice(0, 50), buf)
    lines = buf.getvalue().split(b"\n")
    lines[2] = lines[2].rsplit(b",", 3)[0]  # data row 2 (file row 3) loses three fields
    lines[5] = lines[5].replace(b"AmazonEC2", b"Amazon\xffEC2").replace(b"AmazonS3", b"Amazon\xffS3")
    csv_gz = gzip.compress(b"\n".join(lines))
    uris = []
    base = f"exports/{EXPORT}/data/BILLING_PERIOD={PERIOD}"
    for name, body in (("part-1.snappy.parquet", _parquet_bytes(bad_parquet)), ("part-2.csv.gz", csv_gz)):
        s3.put_object(Bucket=bucket, Key=f"{base}/{name}", Body=body)
        uris.append(f"s3://{bucket}/{base}/{name}")
    manifest = orjson.dumps({"executionId": "rows-1", "dataFiles": uris})
    s3.put_object(Bucket=bucket, Key=f"exports/{EXPORT}/metadata/BILLING_PERIOD={PERIOD}/{EXPORT}-Manifest.json",
                  Body=manifest)  # fmt: skip
    agent, _ = _start(_config(_s3_source(s3_endpoint, bucket), tmp_path))
    try:
        assert wait_until(lambda: _applied(agent, "cur", "rows-1"), 60)
        keep = np.ones(5_000, dtype=bool)
        keep[[3, 4, 5, 6]] = False
        expected = float(np.sum(cost[keep])) + sum(
            float(r["line_item_unblended_cost"]) for i, r in enumerate(good.slice(0, 50).to_pylist()) if i not in (1, 4)
        )
        (table,) = agent.snapshots.tables.values()
        assert sum(table.column("billing_cost_usd").to_pylist()) == pytest.approx(expected, rel=1e-9)
        dead = [orjson.loads(x) for x in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()]
        # The reason names the object (its key) and the row; the location is the manifest.
        assert {d["location"] for d in dead} == {f"s3://{bucket}/exports/{EXPORT}/metadata/BILLING_PERIOD={PERIOD}/"
                                                 f"{EXPORT}-Manifest.json"}  # fmt: skip
        assert sorted((d["kind"], d["reason"].split(":")[0]) for d in dead) == sorted(
            [
                ("non_finite", f"{base}/part-1.snappy.parquet row 4"),
                ("non_finite", f"{base}/part-1.snappy.parquet row 5"),
                ("non_finite", f"{base}/part-1.snappy.parquet row 6"),
                ("absurd_value", f"{base}/part-1.snappy.parquet row 7"),
                ("ragged_row", f"{base}/part-2.csv.gz row 3"),
                ("invalid_utf8", f"{base}/part-2.csv.gz row 6"),
            ]
        )
        assert _discarded(agent, "ragged_row", "cur") == 1 and _discarded(agent, "non_finite", "cur") == 3
    finally:
        agent.stop()


# -- Azure Blob (Azurite) ----------------------------------------------------------------------
def _blob_source(conn: str, container: str, prefix: str = "exports") -> str:
    return f"""  azure:
    type: blob_export
    container: {container}
    prefix: {prefix}
    connection_string: "{conn}"
    poll_interval_seconds: 0.3
    settle_hours: 0
    decoder: {{type: focus}}"""


def put_azure_run(
    container: Any,
    run_id: str,
    submitted: str,
    data: bytes,
    *,
    byte_count: int | None = None,
    export: str = "focus-daily",
    kind: str = "FocusCost",
) -> None:
    """An export run (a FocusCost export's by default) as Cost Management writes it: data blob(s), then
    manifest.json."""
    folder = f"exports/{export}/20240901-20240930/{run_id}"
    blob = f"{folder}/part_0_0001.csv.gz"
    container.upload_blob(blob, data, overwrite=True)
    manifest = {
        "manifestVersion": "2024-04-01",
        "byteCount": len(data),
        "blobCount": 1,
        "dataRowCount": 1000,
        "exportConfig": {
            "exportName": export,
            "resourceId": f"/subscriptions/x/providers/Microsoft.CostManagement/exports/{export}",
            "dataVersion": "1.0",
            "type": kind,
            "timeFrame": "MonthToDate",
            "granularity": "Daily",
        },
        "deliveryConfig": {
            "partitionData": True,
            "dataOverwriteBehavior": "OverwritePreviousReport",
            "fileFormat": "Csv",
            "compressionMode": "gzip",
            "containerUri": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa",
            "rootFolderPath": "exports",
        },
        "runInfo": {
            "executionType": "Scheduled",
            "submittedTime": submitted,
            "runId": run_id,
            "startDate": "2024-09-01T00:00:00",
            "endDate": "2024-09-30T00:00:00",
        },
        "blobs": [
            {"blobName": blob, "byteCount": byte_count if byte_count is not None else len(data), "dataRowCount": 1000}
        ],
    }
    container.upload_blob(f"{folder}/manifest.json", orjson.dumps(manifest), overwrite=True)


def test_azure_focus_export_on_blob_totals_restatement_and_bad_input(azurite: Any, tmp_path: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("cost-exports")
    raw = (shared_data() / "billing" / "focus-1.0-sample.csv").read_bytes()
    put_azure_run(container, "run-1", "2024-09-19T06:00:00Z", gzip.compress(raw))
    agent, col = _start(_config(_blob_source(azurite.connection_string, "cost-exports"), tmp_path))
    period = "focus-daily/2024-09-01"
    try:
        assert wait_until(lambda: _applied(agent, "azure", "run-1", period), 60)
        table = next(iter(agent.snapshots.tables.values()))
        expected = _focus_totals_by_provider(raw)
        got: dict[str, float] = {}
        for p, c in zip(
            table.column("provider").to_pylist(), table.column("billing_cost_usd").to_pylist(), strict=True
        ):
            got[p] = got.get(p, 0.0) + c
        assert got == pytest.approx(expected, rel=1e-9)
        # Half-written: the manifest's byte count disagrees with the blob → refused, previous run kept.
        put_azure_run(container, "run-2", "2024-09-19T14:00:00Z", gzip.compress(raw), byte_count=10)
        assert wait_until(lambda: _discarded(agent, "incomplete_file", "azure") == 1, 30)
        assert agent.sources["azure"].positions[period]["delivery"] == "run-1"
        # A later run restates the month (every cost ×2): replaces, never adds.
        restated = _scale_billed(raw, 2.0)
        put_azure_run(container, "run-3", "2024-09-20T06:00:00Z", gzip.compress(restated))
        assert wait_until(lambda: _applied(agent, "azure", "run-3", period), 60)
        table = next(iter(agent.snapshots.tables.values()))
        assert sum(table.column("billing_cost_usd").to_pylist()) == pytest.approx(2 * sum(expected.values()), rel=1e-9)
    finally:
        agent.stop()
    # A SAS token for the container (account_url + sas_token) reads the same runs.
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from scripts.object_stores import AZURITE_ACCOUNT, AZURITE_KEY

    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        "cost-exports",
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    source = f"""  azure:
    type: blob_export
    account_url: {azurite.blob_endpoint}
    container: cost-exports
    prefix: exports
    sas_token: "{sas}"
    poll_interval_seconds: 0.3
    settle_hours: 0
    decoder: {{type: focus}}"""
    agent, _ = _start(_config(source, tmp_path / "sas"))
    try:
        assert wait_until(lambda: _applied(agent, "azure", "run-3", period), 60)
    finally:
        agent.stop()
    # Access denied (a wrong account key): counted and logged, nothing applied, the agent keeps running.
    wrong = azurite.connection_string.replace("Eby8", "AAAA")
    agent, _ = _start(_config(_blob_source(wrong, "cost-exports"), tmp_path / "denied"))
    try:
        assert wait_until(lambda: _discarded(agent, "access_denied", "azure") == 1, 30)
        assert agent.health.alive() and agent.sources["azure"].positions == {}
    finally:
        agent.stop()


def test_one_scopes_actual_and_amortized_exports_in_one_container_count_once(azurite: Any, tmp_path: Path) -> None:
    """Both cost views of one subscription exported into the container (the same charges twice): the ActualCost
    export is read, the AmortizedCost one is reported once (double_export) and never applied."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container("two-views")
    raw = (shared_data() / "billing" / "focus-1.0-sample.csv").read_bytes()
    put_azure_run(container, "amo-1", "2024-09-19T06:00:00Z", gzip.compress(raw), export="amo", kind="AmortizedCost")
    put_azure_run(container, "act-1", "2024-09-19T06:00:00Z", gzip.compress(raw), export="act", kind="ActualCost")
    agent, _col = _start(_config(_blob_source(azurite.connection_string, "two-views"), tmp_path))
    try:
        assert wait_until(lambda: _applied(agent, "azure", "act-1", "act/2024-09-01"), 60)
        assert wait_until(lambda: _discarded(agent, "double_export", "azure") == 1, 30)
        time.sleep(1.0)  # three more polls: still once, still not applied
        assert _discarded(agent, "double_export", "azure") == 1
        assert "amo/2024-09-01" not in agent.sources["azure"].positions
        table = next(iter(agent.snapshots.tables.values()))
        total = sum(table.column("billing_cost_usd").to_pylist())
        assert total == pytest.approx(sum(_focus_totals_by_provider(raw).values()), rel=1e-9)
        assert len(agent.snapshots.tables) == 1
    finally:
        agent.stop()


def _focus_totals_by_provider(raw: bytes) -> dict[str, float]:
    """Independent of the decoder: the csv module and float() on the BilledCost column."""
    import csv

    rows = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    out: dict[str, float] = {}
    for r in rows:
        out[r["ProviderName"]] = out.get(r["ProviderName"], 0.0) + float(r["BilledCost"])
    return out


def _scale_billed(raw: bytes, factor: float) -> bytes:
    import csv

    src = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    i = src[0].index("BilledCost")
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL)
    w.writerow(src[0])
    for r in src[1:]:
        r[i] = repr(float(r[i]) * factor)
        w.writerow(r)
    return buf.getvalue().encode()


def test_export_source_configuration_is_checked() -> None:
    from agent.config import ConfigError

    base = "detectors: {d: {type: seasonal, signal: billing_cost_usd}}\nsinks: {c: {type: console}}\n"
    both = (
        "sources: {a: {type: blob_export, container: c, connection_string: 'AccountKey=s3cr3t',"
        " account_url: 'https://x.blob.core.windows.net'}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(both + base)
    assert any(e.startswith("sources.a") and "not both" in e for e in err.value.errors)
    assert "s3cr3t" not in str(err.value)
    wrong = "sources: {a: {type: s3_export, decoder: {type: azure_cost, cost: amortized}}}\n"
    with pytest.raises(ConfigError) as err:
        load_config_text(wrong + base)
    assert {e.split(":")[0] for e in err.value.errors} >= {"sources.a.bucket", "sources.a.decoder.cost"}
