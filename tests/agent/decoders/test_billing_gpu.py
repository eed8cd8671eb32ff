"""GPU-hours from the bill: SageMaker (``ml.*``) and Azure ML / Azure GPU VM sizes, per cloud and format."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agent.decoders.base import DecodeContext
from agent.decoders.billing.azure import AzureCostDecoder
from agent.decoders.billing.base import AzureCostConfig, CurConfig, FocusConfig, gpu_instances
from agent.decoders.billing.cur import CurDecoder
from agent.decoders.billing.focus import FocusDecoder

CTX = DecodeContext("test", bucket_seconds=3600)


def _by_type(table: pa.Table) -> dict[str, float]:
    return {r["instance_type"]: r["billing_gpu_hours"] for r in table.to_pylist()}


def _cur(rows: list[dict[str, str]], without: tuple[str, ...] = ()) -> pa.Table:
    """CUR line items (``without`` those columns) through the ``cur`` decoder, by instance type; no bad row."""
    cols = sorted({k for r in rows for k in r} - set(without))
    t = pa.table({c: [r.get(c) for r in rows] for c in cols})
    out, bad = CurDecoder(CurConfig(type="cur", dimensions=["instance_type"])).aggregate(t, CTX)
    assert bad == []
    return out


def test_the_bundled_table_gives_a_sagemaker_ml_type_the_gpus_of_its_ec2_type() -> None:
    table = gpu_instances()
    ml = {k: v for k, v in table.items() if k.startswith("ml.")}
    assert {"ml.p4d.24xlarge", "ml.p5.48xlarge", "ml.g5.xlarge", "ml.g6.12xlarge", "ml.p3.2xlarge"} <= set(ml)
    assert all(table[k[3:]] == v for k, v in ml.items())  # the same instance underneath
    assert all(v[0] > 0 for v in table.values())


def test_sagemaker_instance_hours_in_cur_are_gpu_hours() -> None:
    base = {
        "line_item_usage_start_date": "2026-10-01T10:00:00Z",
        "line_item_line_item_type": "Usage",
        "line_item_product_code": "AmazonSageMaker",
        "pricing_unit": "Hrs",
        "line_item_currency_code": "USD",
    }
    rows = [
        # Training: the instance type in both columns; hosting: only in the usage type (as some exports write it).
        {**base, "line_item_usage_type": "USE1-Train:ml.p4d.24xlarge", "product_instance_type": "ml.p4d.24xlarge",
         "line_item_usage_amount": "2", "line_item_unblended_cost": "75.0"},
        {**base, "line_item_usage_type": "USW2-Host:ml.g5.12xlarge", "product_instance_type": "",
         "line_item_usage_amount": "3", "line_item_unblended_cost": "21.3"},
        {**base, "line_item_usage_type": "USE1-Train-Spot:ml.p3.2xlarge", "product_instance_type": "ml.p3.2xlarge",
         "line_item_usage_amount": "1", "line_item_unblended_cost": "1.1"},
        # Not instance time: the endpoint's storage, and a CPU notebook.
        {**base, "line_item_usage_type": "USE1-Host:VolumeUsage.gp2", "product_instance_type": "",
         "pricing_unit": "GB-Mo", "line_item_usage_amount": "30", "line_item_unblended_cost": "0.4"},
        {**base, "line_item_usage_type": "USE1-Notebk:ml.t3.medium", "product_instance_type": "ml.t3.medium",
         "line_item_usage_amount": "5", "line_item_unblended_cost": "0.25"},
    ]  # fmt: skip
    out = _cur(rows)
    got = _by_type(out)
    assert got["ml.p4d.24xlarge"] == 16  # 2 instance-hours × 8 A100
    assert got["ml.g5.12xlarge"] == 12  # 3 × 4 A10G
    assert got["ml.p3.2xlarge"] == 1
    assert got["ml.t3.medium"] == 0 and got[""] == 0
    gpu_cost = sum(r["billing_gpu_cost_usd"] for r in out.to_pylist())
    assert gpu_cost == pytest.approx(75.0 + 21.3 + 1.1)


def test_sagemaker_in_a_focus_export_from_the_usage_type() -> None:
    t = pa.table(
        {
            "ChargePeriodStart": ["2026-10-01 10:00:00"] * 2,
            "BilledCost": ["113.07", "0.3"],
            "ServiceName": ["Amazon SageMaker"] * 2,
            "ConsumedQuantity": ["1", "10"],
            "ConsumedUnit": ["Hrs", "GB-Mo"],
            "x_UsageType": ["USE1-Train:ml.p5.48xlarge", "USE1-Train:VolumeUsage.gp3"],
        }
    )
    out, _ = FocusDecoder(FocusConfig(type="focus", dimensions=["instance_type", "gpu_model"])).aggregate(t, CTX)
    rows = {r["instance_type"]: r for r in out.to_pylist()}
    assert rows["ml.p5.48xlarge"]["billing_gpu_hours"] == 8 and rows["ml.p5.48xlarge"]["gpu_model"] == "NVIDIA H100"
    assert rows[""]["billing_gpu_hours"] == 0


def test_azure_ml_compute_and_gpu_vm_sizes_in_an_ea_export() -> None:
    """Azure Machine Learning compute is billed as the VM size it runs on (meter category Virtual Machines,
    consumed service Microsoft.MachineLearningServices); a size may be written in another case."""
    sizes = ["Standard_ND96amsr_A100_v4", "STANDARD_NC24ADS_A100_V4", "Standard_ND40rs_v2", "Standard_NV18ads_A10_v5"]
    n = len(sizes)
    t = pa.table(
        {
            "Date": ["10/01/2026"] * n,
            "CostInBillingCurrency": ["32.77", "3.67", "26.4", "0.9"],
            "BillingCurrency": ["USD"] * n,
            "MeterCategory": ["Virtual Machines"] * n,
            "ConsumedService": ["Microsoft.MachineLearningServices"] * n,
            "MeterName": ["x"] * n,
            "Quantity": ["1", "2", "1", "4"],
            "UnitOfMeasure": ["1 Hour"] * n,
            "AdditionalInfo": [f'{{"ServiceType": "{s}", "VCPUs": 24}}' for s in sizes],
        }
    )
    out, bad = AzureCostDecoder(AzureCostConfig(type="azure_cost", dimensions=["instance_type"])).aggregate(t, CTX)
    assert bad == []
    assert _by_type(out) == {
        "Standard_ND96amsr_A100_v4": 8.0,
        "STANDARD_NC24ADS_A100_V4": 2.0,  # 2 h × 1 A100
        "Standard_ND40rs_v2": 8.0,
        "Standard_NV18ads_A10_v5": pytest.approx(2.0),  # 4 h × half an A10 (a GPU partition)
    }


@pytest.mark.parametrize("with_column", [True, False], ids=["product_instance_type", "usage type only"])
def test_ec2_gpu_hours_from_the_usage_type_when_the_export_has_no_instance_type_column(with_column: bool) -> None:
    """An export without ``product_instance_type`` (a Data Export's column selection) still has its GPUs: EC2
    instance usage names its type (``USE1-BoxUsage:g5.xlarge``)."""
    base = {
        "line_item_usage_start_date": "2026-10-01T10:00:00Z",
        "line_item_line_item_type": "Usage",
        "line_item_product_code": "AmazonEC2",
        "pricing_unit": "Hrs",
        "line_item_currency_code": "USD",
    }
    rows = [
        {**base, "line_item_usage_type": "USE1-BoxUsage:g5.xlarge", "product_instance_type": "g5.xlarge",
         "line_item_usage_amount": "3", "line_item_unblended_cost": "3.0"},
        {**base, "line_item_usage_type": "SpotUsage:p4d.24xlarge", "product_instance_type": "p4d.24xlarge",
         "line_item_usage_amount": "1", "line_item_unblended_cost": "12.0"},
        {**base, "line_item_usage_type": "USE1-BoxUsage:m7i.large", "product_instance_type": "m7i.large",
         "line_item_usage_amount": "5", "line_item_unblended_cost": "0.5"},
        {**base, "line_item_usage_type": "USE1-EBS:VolumeUsage.gp3", "product_instance_type": "",
         "pricing_unit": "GB-Mo", "line_item_usage_amount": "30", "line_item_unblended_cost": "0.4"},
    ]  # fmt: skip
    got = _by_type(_cur(rows, without=() if with_column else ("product_instance_type",)))
    assert got["g5.xlarge"] == 3 and got["p4d.24xlarge"] == 8 and got["m7i.large"] == 0  # 1 A10G, 8 A100
    assert sum(v for k, v in got.items() if k not in ("g5.xlarge", "p4d.24xlarge")) == 0
