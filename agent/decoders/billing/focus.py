"""FOCUS 1.0-1.3 exports (AWS Data Exports FOCUS, Azure FocusCost, GCP, OCI) → billing cells."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent.decoders.billing.arrow import (
    _AWS_INSTANCE,
    _AZURE_SERVICE_TYPE,
    _SAGEMAKER_INSTANCE,
    _canon_values,
    _coalesce,
    _Columns,
    _null_str,
    _on_values,
    _regex_first,
    _row,
    _text,
)
from agent.decoders.billing.base import (
    _CHARGE_CATEGORIES,
    _PRICING_CATEGORIES,
    BillingDecoder,
    FocusConfig,
    _hours_factor,
)
from agent.registry import register


def _focus_measure_columns(measure: str) -> tuple[str, str]:
    name = {"billed": "BilledCost", "effective": "EffectiveCost", "list": "ListCost", "contracted": "ContractedCost"}
    return name[measure], f"x_{name[measure]}InUsd"


@register("decoder", "focus", FocusConfig)
class FocusDecoder(BillingDecoder):
    type_name = "focus"
    time_column = "chargeperiodstart"
    required = (("chargeperiodstart",), ("billedcost", "effectivecost"), ("servicename",))
    wanted = tuple(
        c.lower()
        for c in [
            "ChargePeriodStart",
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ContractedCost",
            "x_BilledCostInUsd",
            "x_EffectiveCostInUsd",
            "x_ListCostInUsd",
            "x_ContractedCostInUsd",
            "BillingCurrency",
            "ProviderName",
            "ServiceProviderName",
            "BillingAccountId",
            "SubAccountId",
            "ServiceName",
            "ServiceCategory",
            "RegionId",
            "RegionName",
            "SkuId",
            "ResourceId",
            "ChargeCategory",
            "PricingCategory",
            "ConsumedQuantity",
            "ConsumedUnit",
            "PricingQuantity",
            "PricingUnit",
            "x_UsageType",
            "x_SkuMeterName",
            "x_SkuDetails",
            "SkuPriceDetails",
            "Tags",
        ]
    )
    currency_columns = ("billingcurrency",)
    dimension_only = {"resourceid": "resource", "skuid": "sku"}
    value_columns = frozenset(
        {
            "billedcost",
            "effectivecost",
            "listcost",
            "contractedcost",
            "x_billedcostinusd",
            "x_effectivecostinusd",
            "x_listcostinusd",
            "x_contractedcostinusd",
            "consumedquantity",
            "pricingquantity",
        }
    )
    number_columns = value_columns
    quantity_columns = frozenset({"consumedquantity", "pricingquantity"})

    def __init__(self, cfg: FocusConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.measure, self.measure_usd = _focus_measure_columns(cfg.cost)

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        head = sample.split(b"\n", 1)[0].lower()
        return b"chargeperiodstart" in head and b"billedcost" in head

    def fields(self, cols: _Columns) -> dict[str, Any]:
        n = cols.batch.num_rows
        usd = cols.number(self.measure_usd)
        currency = cols.text("BillingCurrency")
        if usd is not None and self.currency == "USD":  # Azure FocusCost: the USD twin of the measure
            cost = usd
            currency = None
        else:
            cost = cols.number(self.measure) or (pa.nulls(n, pa.float64()), None)
        quantity = cols.number("ConsumedQuantity")
        unit = cols.text("ConsumedUnit")
        if quantity is None:
            quantity, unit = cols.number("PricingQuantity"), cols.text("PricingUnit")
        quantity = quantity or (pa.nulls(n, pa.float64()), None)
        usage_type = cols.text("x_UsageType")
        itype = _coalesce(_regex_first(usage_type, _AWS_INSTANCE), _regex_first(usage_type, _SAGEMAKER_INSTANCE))
        details = cols.get("x_SkuDetails", "SkuPriceDetails")
        if details is not None:
            itype = _coalesce(itype, _regex_first(_text(details), _AZURE_SERVICE_TYPE))
        provider = cols.get("ServiceProviderName", "ProviderName")
        dims = {
            "provider": _text(provider) if provider is not None else _null_str(n),
            "billing_account": cols.text("BillingAccountId"),
            "sub_account": cols.text("SubAccountId"),
            "service": cols.text("ServiceName"),
            "service_category": cols.text("ServiceCategory"),
            "region": _on_values(_coalesce(cols.text("RegionId"), cols.text("RegionName")), pc.utf8_lower),
            "sku": cols.text("SkuId"),
            "resource": cols.text("ResourceId"),
            "charge_category": _canon_values(cols.text("ChargeCategory"), _CHARGE_CATEGORIES),
            "pricing_category": _canon_values(cols.text("PricingCategory"), _PRICING_CATEGORIES),
            "instance_type": itype,
        }
        return {
            "ts": cols.get("ChargePeriodStart"),
            "cost": cost,
            "quantity": quantity,
            "hours_factor": _row(unit, _hours_factor),
            "currency": currency,
            "instance_type": itype,
            "dims": dims,
        }
