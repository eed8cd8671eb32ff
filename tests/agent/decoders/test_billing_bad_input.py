"""Billing files with bad rows: each bad row costs only itself (dead-lettered once, with its file, row and
reason), every good row is summed exactly; only a file that cannot be read whole is refused.

Variations of the shared samples, with sums computed here independently (the csv module and float())."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agent.decoders.base import DecodeContext
from agent.decoders.billing.auto import AutoBillingConfig, AutoBillingDecoder
from agent.decoders.billing.base import UNTAGGED, CurConfig, DeliveryError, FocusConfig, observations
from agent.decoders.billing.cur import CurDecoder
from agent.decoders.billing.delivery import read_file
from agent.decoders.billing.focus import FocusDecoder

CTX = DecodeContext("test", bucket_seconds=3600)

# Data row index (0-based, the header is row 1 of the file) → what is done to it, and the kind expected.
_ROW_EDITS: dict[int, tuple[str, str]] = {
    10: ("too_few", "ragged_row"),
    20: ("too_many", "ragged_row"),
    30: ("utf8:ServiceName", "invalid_utf8"),
    35: ("utf8:RegionId", "invalid_utf8"),
    40: ("BilledCost=NaN", "bad_row"),
    50: ("BilledCost=1e309", "non_finite"),
    55: ("BilledCost=-1e309", "non_finite"),
    60: ("ChargePeriodStart=2023-02-30 00:00:00", "bad_time"),
    65: ("ChargePeriodStart=2024-13-01 00:00:00", "bad_time"),
    70: ("BilledCost=1e15", "absurd_value"),
    75: ("BilledCost=-2e9", "absurd_value"),
    80: ("BilledCost=-inf", "bad_row"),
    90: ("BilledCost=abc", "bad_row"),
    95: ("ConsumedQuantity=lots", "bad_row"),
}


def _edited_sample(data_dir: Path) -> tuple[bytes, list[dict[str, str]]]:
    """The FOCUS sample with the rows of ``_ROW_EDITS`` broken; also the rows left intact."""
    text = (data_dir / "billing" / "focus-1.0-sample.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header, data = rows[0], rows[1:]
    assert len(data) == 1000
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(header)
    good = []
    for i, r in enumerate(data):
        edit = _ROW_EDITS.get(i, ("", ""))[0]
        r = list(r)
        if edit == "too_few":
            r = r[:-3]
        elif edit == "too_many":
            r = [*r, "extra"]
        elif edit.startswith("utf8:"):
            r[header.index(edit[5:])] = "\x00BAD\x00"  # replaced by an invalid byte below
        elif "=" in edit:
            col, value = edit.split("=", 1)
            r[header.index(col)] = value
        else:
            good.append(dict(zip(header, r, strict=True)))
        w.writerow(r)
    raw = out.getvalue().encode("utf-8").replace(b"\x00BAD\x00", b"Amazon \xff\xfe S3")
    return raw, good


def _totals(table: pa.Table) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in table.to_pylist():
        day = dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d")
        out[(r["provider"], r["service"], day)] += r["billing_cost_usd"]
    return dict(out)


@pytest.mark.parametrize("compressed", [False, True])
def test_bad_rows_of_a_focus_csv_cost_only_themselves(data_dir: Path, tmp_path: Path, compressed: bool) -> None:
    raw, good = _edited_sample(data_dir)
    path = tmp_path / ("focus.csv.gz" if compressed else "focus.csv")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    dec = FocusDecoder(FocusConfig(type="focus"))
    table, bad, rows = read_file(str(path), dec, CTX)
    assert rows == 1000
    # Every good row summed, exactly.
    expected: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in good:
        expected[(r["ProviderName"], r["ServiceName"], r["ChargePeriodStart"][:10])] += float(r["BilledCost"])
    got = _totals(table)
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert all(math.isfinite(v) for v in table.column("billing_cost_usd").to_pylist())
    assert table.column("billing_gpu_hours").null_count == table.column("billing_gpu_cost_usd").null_count == 0
    # Every bad row dead-lettered once, under its kind, naming the file and its row (header = row 1).
    got_rows = {}
    for b in bad:
        assert b.reason.startswith(f"{path.name} row "), b.reason
        number = int(b.reason.split(" row ", 1)[1].split(":", 1)[0])
        assert number not in got_rows, b.reason
        got_rows[number] = b.kind
    assert got_rows == {i + 2: kind for i, (_, kind) in _ROW_EDITS.items()}
    by_kind = {b.kind: b for b in bad}
    utf8 = next(b for b in bad if b.reason.startswith(f"{path.name} row 32:"))
    assert "ServiceName" in utf8.reason
    shown = orjson.loads(utf8.raw)  # the row's values, the bad bytes escaped
    assert shown["ServiceName"] == "Amazon \\xff\\xfe S3" and shown["BillingCurrency"] == "USD"
    assert b"2023-02-30" in next(b.raw for b in bad if b.kind == "bad_time")
    assert "max_abs_cost" in by_kind["absurd_value"].reason
    assert by_kind["ragged_row"].raw.count(b",") > 10  # the row's own text


def test_an_impossible_date_is_not_rolled_over(tmp_path: Path) -> None:
    t = pa.table(
        {
            "ChargePeriodStart": [
                "2023-02-30T10:00:00Z",
                "2024-02-29 10:00:00",
                "2/30/2023",
                "2/28/2023",
                "2023-04-31",
            ],
            "BilledCost": ["1", "2", "4", "8", "16"],
            "ServiceName": ["S3"] * 5,
        }
    )
    table, bad = FocusDecoder(FocusConfig(type="focus", dimensions=["service"])).aggregate(t, CTX)
    assert sorted(b.kind for b in bad) == ["bad_time"] * 3
    days = {
        dt.datetime.fromtimestamp(r["ts"], dt.UTC).date().isoformat(): r["billing_cost_usd"] for r in table.to_pylist()
    }
    assert days == {"2024-02-29": 2.0, "2023-02-28": 8.0}  # nothing moved into March or May


def test_an_empty_usage_unit_or_quantity_is_zero_gpu_hours_never_a_missing_value() -> None:
    """The cause of the README backtest crash: a line without a usage unit gave null GPU-hours."""
    t = pa.table(
        {
            "ChargePeriodStart": ["2024-09-01 10:00:00"] * 3,
            "BilledCost": ["1", "2", "4"],
            "ServiceName": ["EC2"] * 3,
            "ConsumedQuantity": [None, "2", None],
            "ConsumedUnit": [None, "Hours", "Hours"],
            "x_UsageType": ["USE1-BoxUsage:p5.48xlarge"] * 3,
        }
    )
    table, bad = FocusDecoder(FocusConfig(type="focus", dimensions=["service"])).aggregate(t, CTX)
    assert bad == []
    (row,) = table.to_pylist()
    # GPU time: the lines in hours (2 h × 8 GPUs; no quantity = 0 h); a line without a unit is not known to be.
    assert row["billing_cost_usd"] == 7.0 and row["billing_gpu_hours"] == 16.0 and row["billing_gpu_cost_usd"] == 6.0
    obs = observations(table, ["ts", "service"])
    assert all(isinstance(v, float) and math.isfinite(v) for o in obs for v in o.values)


def _cur_parquet(path: Path, rows: int) -> pa.Table:
    from scripts import billing_data

    table = billing_data.table(rows, month="2026-10", hours=48)
    cost = table.column("line_item_unblended_cost").to_numpy().copy()
    public = table.column("pricing_public_on_demand_cost").to_numpy().copy()
    cost[[7, 1500, 20_000]] = [np.nan, np.inf, -np.inf]
    cost[[9, 30_000]] = [1e15, -5e9]
    public[12] = np.nan  # a cost column that is not the measure: the line is unreadable all the same
    table = table.set_column(
        table.schema.get_field_index("line_item_unblended_cost"), "line_item_unblended_cost", pa.array(cost)
    )
    table = table.set_column(
        table.schema.get_field_index("pricing_public_on_demand_cost"), "pricing_public_on_demand_cost", pa.array(public)
    )
    pq.write_table(table, path, row_group_size=8192)
    return table


_PARQUET_BAD = {8: "non_finite", 13: "non_finite", 1501: "non_finite", 20_001: "non_finite"}
_PARQUET_BAD |= {10: "absurd_value", 30_001: "absurd_value"}


@pytest.mark.parametrize("duckdb", [True, False])
def test_nan_inf_and_absurd_costs_in_parquet_cost_only_their_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duckdb: bool
) -> None:
    import agent.decoders.billing.delivery as delivery

    path = tmp_path / "cur2.parquet"
    raw = _cur_parquet(path, 40_000)
    monkeypatch.setattr(delivery, "_HAVE_DUCKDB", duckdb and delivery._HAVE_DUCKDB)
    dec = CurDecoder(CurConfig(type="cur", dimensions=["service"]))
    table, bad, rows = read_file(str(path), dec, CTX)
    assert rows == 40_000
    keep = np.ones(40_000, dtype=bool)
    keep[[n - 1 for n in _PARQUET_BAD]] = False
    expected = float(np.sum(raw.column("line_item_unblended_cost").to_numpy()[keep]))
    total = pc.sum(table.column("billing_cost_usd")).as_py()
    assert math.isfinite(total) and total == pytest.approx(expected, rel=1e-12)
    got = {int(b.reason.split(" row ", 1)[1].split(":", 1)[0]): b.kind for b in bad}
    assert got == _PARQUET_BAD
    assert all(b.reason.startswith("cur2.parquet row ") for b in bad)
    assert orjson.loads(next(b.raw for b in bad if b.kind == "absurd_value"))["line_item_unblended_cost"] in (
        1e15,
        -5e9,
    )


def test_tag_dimensions_name_the_lines_without_the_tag(data_dir: Path) -> None:
    dec = FocusDecoder(FocusConfig(type="focus", dimensions=["service"], tags={"team": "business_unit", "x": "nope"}))
    table, bad, _ = read_file(str(data_dir / "billing" / "focus-1.0-sample.csv"), dec, CTX)
    assert bad == []
    teams = set(table.column("team").to_pylist())
    assert "ViennaAI" in teams and UNTAGGED in teams and "" not in teams  # the sample has lines without it
    assert set(table.column("x").to_pylist()) == {UNTAGGED}  # no line carries the key
    # A tag column absent from the file altogether (CUR: resourceTags/user:team).
    cur = CurDecoder(CurConfig(type="cur", dimensions=[], tags={"team": "user:team"}))
    t2, _, _ = read_file(str(data_dir / "billing" / "aws-cur-legacy-sample.csv"), cur, CTX)
    assert set(t2.column("team").to_pylist()) == {UNTAGGED}
    cells = {o.cell.dims for o in observations(t2, cur.key_columns)}
    assert cells == {(("team", UNTAGGED),)}


def test_files_that_cannot_be_read_whole_are_refused(data_dir: Path, tmp_path: Path) -> None:
    sample = (data_dir / "billing" / "focus-1.0-sample.csv").read_bytes()
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(sample)[: len(gzip.compress(sample)) // 2])
    dec = AutoBillingDecoder(AutoBillingConfig(type="billing"))
    with pytest.raises(DeliveryError) as err:
        read_file(str(cut), dec, CTX)
    assert err.value.kind == "corrupt_file" and "cut.csv.gz" in err.value.reason
    pq.write_table(pa.table({"ChargePeriodStart": ["2024-09-01"] * 100, "BilledCost": [1.0] * 100}), tmp_path / "p")
    whole = (tmp_path / "p").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(whole[: len(whole) - 40])
    with pytest.raises(DeliveryError):
        read_file(str(tmp_path / "cut.parquet"), dec, CTX)
    (tmp_path / "other.csv").write_bytes(b"a,b\n1,2\n")
    with pytest.raises(DeliveryError) as err:
        read_file(str(tmp_path / "other.csv"), dec, CTX)
    assert err.value.kind == "unknown_format"
