"""Billing decoders on the real export samples in ../shared/data/billing, checked against sums computed
here independently (the csv module and float(), no pyarrow), plus the formats' quirks."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from agent.decoders.base import DecodeContext
from agent.decoders.billing.auto import AutoBillingConfig, AutoBillingDecoder
from agent.decoders.billing.azure import AzureCostDecoder
from agent.decoders.billing.base import AzureCostConfig, CurConfig, DeliveryError, FocusConfig, observations
from agent.decoders.billing.cur import CurDecoder
from agent.decoders.billing.delivery import read_file
from agent.decoders.billing.focus import FocusDecoder

CTX = DecodeContext("test", bucket_seconds=3600)


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def _day(value: str) -> str:
    value = value.strip()
    if "/" in value:
        return dt.datetime.strptime(value, "%m/%d/%Y").strftime("%Y-%m-%d")
    return value[:10]


def _by(table: pa.Table, *dims: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = defaultdict(float)
    cols = [table.column(d).to_pylist() for d in dims]
    for i, (ts, cost) in enumerate(
        zip(table.column("ts").to_pylist(), table.column("billing_cost_usd").to_pylist(), strict=True)
    ):
        day = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")
        out[(*(c[i] for c in cols), day)] += cost
    return dict(out)


def _approx(got: dict[tuple[str, ...], float], expected: dict[tuple[str, ...], float]) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def test_focus_sample_totals_per_provider_service_and_day(data_dir: Path) -> None:
    path = data_dir / "billing" / "focus-1.0-sample.csv"
    expected: dict[tuple[str, ...], float] = defaultdict(float)
    for r in _rows(path):
        expected[(r["ProviderName"], r["ServiceName"], _day(r["ChargePeriodStart"]))] += float(r["BilledCost"])
    dec = FocusDecoder(FocusConfig(type="focus", tags={"team": "business_unit"}))
    table, bad, rows = read_file(str(path), dec, CTX)
    assert rows == 1000 and bad == []
    _approx(_by(table, "provider", "service"), dict(expected))
    assert set(table.column("provider").to_pylist()) == {"AWS", "Microsoft", "Oracle"}
    # Literal NULL is no value (not the string "NULL"); tags are dimensions.
    assert "NULL" not in set(table.column("pricing_category").to_pylist())
    assert "" in set(table.column("pricing_category").to_pylist())  # the seven NULL rows
    assert "ViennaAI" in set(table.column("team").to_pylist())
    # Effective cost is another measure of the same rows.
    eff = FocusDecoder(FocusConfig(type="focus", cost="effective"))
    t2, _, _ = read_file(str(path), eff, CTX)
    total = sum(float(r["EffectiveCost"]) for r in _rows(path))
    assert sum(t2.column("billing_cost_usd").to_pylist()) == pytest.approx(total, rel=1e-9)


def test_focus_quirks_mixed_case_null_and_bom(data_dir: Path, tmp_path: Path) -> None:
    text = (data_dir / "billing" / "focus-1.0-sample.csv").read_text(encoding="utf-8")
    assert text.count('"Usage",NULL') > 100 and text.count('"Standard"') > 100
    quirky = "\ufeff" + text.replace('"Usage",NULL', '"usage",NULL', 50).replace('"Standard"', '"STANDARD"', 50)
    f = tmp_path / "quirky.csv"
    f.write_text(quirky, encoding="utf-8")
    table, bad, _ = read_file(str(f), FocusDecoder(FocusConfig(type="focus")), CTX)
    assert bad == []
    assert set(table.column("charge_category").to_pylist()) == {"Usage", "Credit", "Adjustment"}
    assert set(table.column("pricing_category").to_pylist()) == {"Standard", "Committed", "Other", ""}
    assert table.column("billing_account").to_pylist()[0] == "1234567890123"  # first column found despite the BOM


def test_legacy_cur_sample_totals_per_service_and_day(data_dir: Path) -> None:
    path = data_dir / "billing" / "aws-cur-legacy-sample.csv"
    expected: dict[tuple[str, ...], float] = defaultdict(float)
    for r in _rows(path):
        expected[(r["lineItem/ProductCode"], _day(r["lineItem/UsageStartDate"]))] += float(r["lineItem/UnblendedCost"])
    table, bad, rows = read_file(str(path), CurDecoder(CurConfig(type="cur")), CTX)
    assert rows == 1281 and bad == []
    _approx(_by(table, "service"), dict(expected))
    assert set(table.column("provider").to_pylist()) == {"AWS"}
    assert {"Usage", "Tax"} == set(table.column("charge_category").to_pylist())
    # Account ids keep their digits as text.
    accounts = {r["lineItem/UsageAccountId"] for r in _rows(path)}
    assert set(table.column("sub_account").to_pylist()) == accounts


@pytest.mark.parametrize("name", ["azure-ea-actual-small.csv", "azure-ea-amortized-small.csv"])
def test_azure_ea_exports_totals_per_subscription_and_day(data_dir: Path, name: str) -> None:
    path = data_dir / "billing" / name
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # the UTF-8 BOM these files carry
    expected: dict[tuple[str, ...], float] = defaultdict(float)
    for r in _rows(path):
        expected[(r["SubscriptionId"].lower(), _day(r["Date"]))] += float(r["Cost"])
    table, bad, _ = read_file(str(path), AzureCostDecoder(AzureCostConfig(type="azure_cost")), CTX)
    assert bad == []
    _approx(_by(table, "sub_account"), dict(expected))
    assert set(table.column("billing_account").to_pylist()) == {"8611537"}


def test_azure_sample_in_another_currency_needs_a_rate(data_dir: Path) -> None:
    path = data_dir / "billing" / "azure-ea-actual-sample.csv"  # billed in CAD, dates as M/D/YYYY
    with pytest.raises(DeliveryError) as err:
        read_file(str(path), AzureCostDecoder(AzureCostConfig(type="azure_cost")), CTX)
    assert err.value.kind == "currency" and "CAD" in err.value.reason
    dec = AzureCostDecoder(AzureCostConfig(type="azure_cost", exchange_rates={"CAD": 0.73}))
    table, bad, rows = read_file(str(path), dec, CTX)
    assert rows == 27 and bad == []
    expected: dict[tuple[str, ...], float] = defaultdict(float)
    for r in _rows(path):
        expected[(r["MeterCategory"], _day(r["Date"]))] += float(r["CostInBillingCurrency"]) * 0.73
    _approx(_by(table, "service"), dict(expected))
    assert "Dynamic" in set(table.column("pricing_category").to_pylist())  # PricingModel Spot


def _cur2(rows: list[dict[str, object]]) -> pa.Table:
    cols = sorted({k for r in rows for k in r})
    return pa.table({c: [r.get(c) for r in rows] for c in cols})


def test_gpu_hours_pricing_categories_credits_and_amortized_cost() -> None:
    base = {
        "line_item_usage_start_date": "2026-10-01T10:00:00Z",
        "line_item_currency_code": "USD",
        "line_item_product_code": "AmazonEC2",
        "pricing_unit": "Hrs",
    }
    t = _cur2(
        [
            {
                **base,
                "line_item_line_item_type": "Usage",
                "line_item_usage_type": "USE1-BoxUsage:p5.48xlarge",
                "product_instance_type": "p5.48xlarge",
                "line_item_usage_amount": "2",
                "line_item_unblended_cost": "110.08",
                "pricing_term": "OnDemand",
            },
            {
                **base,
                "line_item_line_item_type": "Usage",
                "line_item_usage_type": "USE1-SpotUsage:g5.xlarge",
                "product_instance_type": "g5.xlarge",
                "line_item_usage_amount": "1",
                "line_item_unblended_cost": "0.4",
                "pricing_term": "",
            },
            {
                **base,
                "line_item_line_item_type": "Usage",
                "line_item_usage_type": "USE1-EBS:VolumeUsage.gp3",
                "product_instance_type": "p5.48xlarge",
                "line_item_usage_amount": "100",
                "line_item_unblended_cost": "8",
                "pricing_unit": "GB-Mo",
            },
            {
                **base,
                "line_item_line_item_type": "SavingsPlanCoveredUsage",
                "product_instance_type": "p4d.24xlarge",
                "line_item_usage_type": "USE1-BoxUsage:p4d.24xlarge",
                "line_item_usage_amount": "1",
                "line_item_unblended_cost": "21.96",
                "savings_plan_savings_plan_effective_cost": "13.0",
            },
            {**base, "line_item_line_item_type": "SavingsPlanNegation", "line_item_unblended_cost": "-21.96"},
            {**base, "line_item_line_item_type": "Credit", "line_item_unblended_cost": "-5.5"},
        ]
    )
    ctx = DecodeContext("t", bucket_seconds=3600)
    billed, bad = CurDecoder(CurConfig(type="cur", dimensions=["instance_type", "pricing_category"])).aggregate(t, ctx)
    assert bad == []
    rows = {(r["instance_type"], r["pricing_category"]): r for r in billed.to_pylist()}
    assert rows[("p5.48xlarge", "Standard")]["billing_gpu_hours"] == 16  # 2 instance-hours × 8 H100
    assert rows[("p5.48xlarge", "Standard")]["billing_gpu_cost_usd"] == pytest.approx(110.08)
    assert rows[("g5.xlarge", "Dynamic")]["billing_gpu_hours"] == 1  # spot = Dynamic
    assert rows[("p4d.24xlarge", "Committed")]["billing_gpu_hours"] == 8
    assert sum(r["billing_gpu_hours"] for r in rows.values()) == 25  # EBS on a p5 is not GPU time
    assert sum(r["billing_cost_usd"] for r in rows.values()) == pytest.approx(110.08 + 0.4 + 8 - 5.5)  # credit < 0
    amortized, _ = CurDecoder(CurConfig(type="cur", cost="amortized", dimensions=[])).aggregate(t, ctx)
    assert sum(amortized.column("billing_cost_usd").to_pylist()) == pytest.approx(110.08 + 0.4 + 8 + 13.0 - 5.5)
    # Azure: the VM size from AdditionalInfo, quantity in "10 Hours" units.
    az = pa.table(
        {
            "Date": ["10/01/2026"],
            "CostInBillingCurrency": ["98.3"],
            "BillingCurrency": ["USD"],
            "MeterCategory": ["Virtual Machines"],
            "MeterName": ["ND96isr H100 v5"],
            "Quantity": ["0.1"],
            "UnitOfMeasure": ["10 Hours"],
            "AdditionalInfo": ['{"ServiceType": "Standard_ND96isr_H100_v5", "VCPUs": 96}'],
        }
    )
    out, _ = AzureCostDecoder(AzureCostConfig(type="azure_cost", dimensions=["instance_type"])).aggregate(az, ctx)
    assert out.to_pylist()[0]["instance_type"] == "Standard_ND96isr_H100_v5"
    assert out.to_pylist()[0]["billing_gpu_hours"] == pytest.approx(8.0)  # 0.1 × 10 h × 8 GPUs


def test_bad_rows_are_returned_with_their_values_and_the_rest_is_kept() -> None:
    t = pa.table(
        {
            "ChargePeriodStart": ["2024-09-01T10:00:00Z", "not a time", "2024-09-01 11:00:00"],
            "BilledCost": ["1.5", "2", "abc"],
            "ServiceName": ["S3", "S3", "S3"],
            "BillingCurrency": ["USD", "USD", "USD"],
        }
    )
    table, bad = FocusDecoder(FocusConfig(type="focus")).aggregate(t, CTX, pa.array([2, 3, 4]), "f.csv")
    assert [b.kind for b in bad] == ["bad_time", "bad_row"]
    assert b"not a time" in bad[0].raw and b"abc" in bad[1].raw
    assert bad[0].reason.startswith("f.csv row 3: ChargePeriodStart") and bad[1].reason.startswith("f.csv row 4:")
    assert table.column("billing_cost_usd").to_pylist() == [1.5]


def test_the_billing_decoder_tells_formats_apart_per_file(data_dir: Path) -> None:
    dec = AutoBillingDecoder(AutoBillingConfig(type="billing"))
    totals = {}
    for name in ("focus-1.0-sample.csv", "aws-cur-legacy-sample.csv", "azure-ea-amortized-small.csv"):
        table, _, _ = read_file(str(data_dir / "billing" / name), dec, CTX)
        totals[name] = set(table.column("provider").to_pylist())
    assert totals == {
        "focus-1.0-sample.csv": {"AWS", "Microsoft", "Oracle"},
        "aws-cur-legacy-sample.csv": {"AWS"},
        "azure-ea-amortized-small.csv": {"Microsoft"},
    }
    not_billing = pacsv.read_csv(io.BytesIO(b"a,b\n1,2\n"))
    with pytest.raises(DeliveryError):
        dec.aggregate(not_billing, CTX)


def test_observations_intern_one_cell_per_dimension_combination() -> None:
    t = pa.table(
        {
            "ts": pa.array([0, 3600, 0], pa.int64()),
            "service": ["a", "a", "b"],
            "region": ["", "", "x"],
            "billing_cost_usd": [1.0, 2.0, 3.0],
            "billing_gpu_hours": [0.0, 0.0, 0.0],
            "billing_gpu_cost_usd": [0.0, 0.0, 0.0],
        }
    )
    obs = observations(t, ["ts", "service", "region"])
    assert obs[0].cell is obs[1].cell and obs[0].cell is not obs[2].cell
    assert obs[0].dims == (("service", "a"),) and obs[2].dims == (("region", "x"), ("service", "b"))
    assert [o.values[0] for o in obs] == [1.0, 2.0, 3.0]


def test_parquet_by_combination_equals_reading_batch_by_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DuckDB path (line items summed per raw combination, coefficients from the decoder) gives exactly
    what the decoder gives reading the same file batch by batch."""
    import agent.decoders.billing.delivery as delivery
    from scripts import billing_data

    path = tmp_path / "cur2.parquet"
    billing_data.write_parquet(str(path), 40_000, month="2026-10", hours=72, spikes={(30, "AmazonEC2"): 3.0})
    for cost in ("billed", "amortized"):
        dec = CurDecoder(
            CurConfig(
                type="cur",
                cost=cost,
                tags={"team": "user:team"},
                dimensions=["service", "instance_type", "pricing_category", "charge_category", "gpu_model"],
            )
        )
        fast, bad_fast, rows_fast = read_file(str(path), dec, CTX)
        with monkeypatch.context() as m:
            m.setattr(delivery, "_HAVE_DUCKDB", False)
            slow, bad_slow, rows_slow = read_file(str(path), dec, CTX)
        assert rows_fast == rows_slow == 40_000 and bad_fast == bad_slow == []
        keys = [(k, "ascending") for k in dec.key_columns]
        fast, slow = fast.sort_by(keys), slow.sort_by(keys)
        for k in dec.key_columns:
            assert fast.column(k).equals(slow.column(k)), k
        for s in ("billing_cost_usd", "billing_gpu_hours", "billing_gpu_cost_usd"):
            assert fast.column(s).to_pylist() == pytest.approx(slow.column(s).to_pylist(), rel=1e-12, abs=1e-9), s
        assert sum(fast.column("billing_gpu_hours").to_pylist()) > 0


def test_charge_times_in_the_forms_exports_write() -> None:
    """ISO with T or a space, fractions, Z or a UTC offset (the hour in UTC), US month/day/year with or without a
    time, 24-hour or AM/PM; an impossible date is no time at all."""
    import datetime as dt

    import pyarrow as pa

    from agent.decoders.billing.arrow import _parse_times

    cases = {
        "2026-11-01T03:00:00Z": "2026-11-01T03:00",
        "2026-11-01 03:00:00.250": "2026-11-01T03:00",
        "2026-11-01T03:00:00-08:00": "2026-11-01T11:00",
        "2026-11-01 03:00:00+0530": "2026-10-31T21:30",
        "2026-11-01": "2026-11-01T00:00",
        "11/1/2026": "2026-11-01T00:00",
        "11/1/2026 3:00": "2026-11-01T03:00",
        "11/01/2026 15:00:00": "2026-11-01T15:00",
        "11/1/2026 3:00 PM": "2026-11-01T15:00",
        "11/01/2026 03:00:00 AM": "2026-11-01T03:00",
        "2023-02-30": None,
        "2/30/2023 1:00": None,
        "soon": None,
    }
    got = _parse_times(pa.array(list(cases))).to_pylist()
    as_text = [dt.datetime.fromtimestamp(v, dt.UTC).strftime("%Y-%m-%dT%H:%M") if v is not None else None for v in got]
    assert dict(zip(cases, as_text, strict=True)) == cases
