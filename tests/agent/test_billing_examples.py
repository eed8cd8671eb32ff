"""The example billing configs, run as shipped (backtest replays export files through the export source's
decoder): a GPU instance type new to the bill, burning hundreds of dollars, alerts on the GPU-hours detector
(a new type is a new series: without ``new_series_usd`` it has no history to be judged against)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import orjson
import pytest

from agent.backtest import run_backtest
from agent.config import load_config_text

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
ENV = {"SLACK_WEBHOOK_URL": "https://hooks.example.com/slack", "WEBHOOK_SECRET": "s3cr3t-for-tests"}
START = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)

# A steady fleet per hour: (product, usage type, instance type, instances, $ per instance-hour).
_AWS_FLEET = [
    ("AmazonEC2", "USE1-BoxUsage:g5.12xlarge", "g5.12xlarge", 3, 5.672),
    ("AmazonEC2", "USE1-BoxUsage:p4d.24xlarge", "p4d.24xlarge", 1, 32.77),
    ("AmazonEC2", "USE1-BoxUsage:m5.large", "m5.large", 6, 0.096),
    ("AmazonSageMaker", "USE1-Host:ml.g5.2xlarge", "ml.g5.2xlarge", 2, 1.515),
]


def _cur_month(path: Path, new: tuple[str, str, str, int, float] | None, surge_day: int, hours: int) -> float:
    """CUR 2.0 CSV: 21 days of the fleet, and from ``surge_day`` 10:00 for ``hours`` hours ``new``'s instances."""
    rng = np.random.default_rng(3)
    cols = [
        "line_item_usage_start_date",
        "line_item_unblended_cost",
        "line_item_line_item_type",
        "line_item_usage_account_id",
        "bill_payer_account_id",
        "line_item_product_code",
        "product_region_code",
        "line_item_usage_type",
        "product_instance_type",
        "line_item_usage_amount",
        "pricing_unit",
        "pricing_term",
        "line_item_currency_code",
    ]
    surge_cost = 0.0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for h in range(21 * 24):
            t = (START + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines = list(_AWS_FLEET)
            if new is not None and surge_day * 24 + 10 <= h < surge_day * 24 + 10 + hours:
                lines.append(new)
            for product, usage_type, itype, n, rate in lines:
                for _ in range(n):
                    cost = rate * float(rng.lognormal(0.0, 0.03))
                    if new is not None and itype == new[2]:
                        surge_cost += cost
                    row = [t, f"{cost:.6f}", "Usage", "111122223333", "111122223333", product, "us-east-1"]
                    w.writerow([*row, usage_type, itype, "1", "Hrs", "OnDemand", "USD"])
    return surge_cost


def _firing(alerts: Path, detector: str) -> list[dict[str, object]]:
    events = [orjson.loads(line) for line in alerts.read_bytes().splitlines()]
    return [a for a in events if a["detector"] == detector and a["status"] == "firing"]


@pytest.mark.parametrize(
    "new",
    [
        ("AmazonEC2", "USE1-BoxUsage:p5.48xlarge", "p5.48xlarge", 4, 98.32),
        ("AmazonSageMaker", "USE1-Train:ml.p5.48xlarge", "", 4, 113.07),  # instance type only in the usage type
    ],
    ids=["ec2", "sagemaker"],
)
def test_s3_example_alerts_on_a_new_gpu_instance_type(tmp_path: Path, new: tuple[str, str, str, int, float]) -> None:
    cfg = load_config_text((EXAMPLES / "aws-data-export-s3.yaml").read_text(), env=ENV)
    data = tmp_path / "cur2-2026-09.csv"
    spent = _cur_month(data, new, surge_day=18, hours=10)  # 4 instances × 10 h × 8 H100 = 320 GPU-hours
    assert 3_000 < spent < 5_000
    alerts = tmp_path / "alerts.jsonl"
    summary = run_backtest(cfg, [str(data)], str(alerts))
    assert summary["dead_letter"] == 0 and summary["records"] == 21 * 24 * 12 + 40
    firing = _firing(alerts, "gpu_hours_from_bill")
    itype = new[2] or "ml.p5.48xlarge"
    assert {a["series"]["instance_type"] for a in firing} == {itype}, firing  # the steady fleet is quiet
    first = min(str(a["window_start"]) for a in firing)
    assert first.startswith("2026-09-19T1")  # in the surge's hours (day 18 from 10:00)


def test_s3_example_stays_quiet_for_a_new_gpu_type_spending_little(tmp_path: Path) -> None:
    cfg = load_config_text((EXAMPLES / "aws-data-export-s3.yaml").read_text(), env=ENV)
    data = tmp_path / "cur2-2026-09.csv"
    spent = _cur_month(data, ("AmazonEC2", "USE1-BoxUsage:g6.xlarge", "g6.xlarge", 1, 0.805), surge_day=18, hours=10)
    assert spent < 20
    alerts = tmp_path / "alerts.jsonl"
    run_backtest(cfg, [str(data)], str(alerts))
    assert _firing(alerts, "gpu_hours_from_bill") == []


def _focus_days(path: Path, days: int, surge_day: int) -> None:
    """Azure FocusCost, daily lines: steady GPU VMs, and on ``surge_day`` a new ND H100 v5 size for 40 VM-hours."""
    cols = [
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "BilledCost",
        "EffectiveCost",
        "BillingCurrency",
        "ProviderName",
        "BillingAccountId",
        "SubAccountId",
        "ServiceName",
        "ServiceCategory",
        "RegionId",
        "ChargeCategory",
        "PricingCategory",
        "ConsumedQuantity",
        "ConsumedUnit",
        "x_SkuDetails",
        "Tags",
    ]
    rng = np.random.default_rng(5)
    fleet = [("Standard_NC24ads_A100_v4", 48.0, 3.67), ("Standard_NC4as_T4_v3", 72.0, 0.526)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for d in range(days):
            day = START + dt.timedelta(days=d)
            lines = list(fleet)
            if d == surge_day:
                lines.append(("Standard_ND96isr_H100_v5", 40.0, 98.32))
            for size, hours, rate in lines:
                cost = hours * rate * float(rng.lognormal(0.0, 0.03))
                w.writerow(
                    [
                        day.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        (day + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        f"{cost:.4f}",
                        f"{cost:.4f}",
                        "USD",
                        "Microsoft",
                        "acme-ea",
                        "sub-1",
                        "Virtual Machines",
                        "Compute",
                        "eastus",
                        "Usage",
                        "Standard",
                        f"{hours}",
                        "1 Hour",
                        orjson.dumps({"ServiceType": size, "VCPUs": 24}).decode(),
                        orjson.dumps({"team": "ml"}).decode(),
                    ]
                )


def test_azure_example_alerts_on_a_new_gpu_vm_size(tmp_path: Path) -> None:
    cfg = load_config_text((EXAMPLES / "azure-focus-blob.yaml").read_text(), env=ENV)
    data = tmp_path / "focus-2026-09.csv"
    _focus_days(data, days=40, surge_day=33)  # 40 VM-hours × 8 H100 = 320 GPU-hours (daily windows: 24-day warm-up)
    alerts = tmp_path / "alerts.jsonl"
    run_backtest(cfg, [str(data)], str(alerts))
    firing = _firing(alerts, "gpu_vm_hours")
    assert [(a["series"]["instance_type"], str(a["window_start"])[:10]) for a in firing] == [
        ("Standard_ND96isr_H100_v5", (START + dt.timedelta(days=33)).strftime("%Y-%m-%d"))
    ]
