"""Azure Cost Management exports (EA and MCA actual / amortized cost) → billing cells."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent.decoders.billing.arrow import (
    _AZURE_SERVICE_TYPE,
    _coalesce,
    _Columns,
    _const,
    _lookup_plain,
    _null_str,
    _on_values,
    _regex_first,
    _row,
    _text,
)
from agent.decoders.billing.base import (
    AzureCostConfig,
    BillingDecoder,
    DeliveryError,
    _hours_factor,
)
from agent.registry import register

_AZURE_CHARGE = {
    "Usage": "Usage",
    "UnusedReservation": "Usage",
    "UnusedSavingsPlan": "Usage",
    "Purchase": "Purchase",
    "Refund": "Credit",
    "Tax": "Tax",
    "RoundingAdjustment": "Adjustment",
}
_AZURE_PRICING = {"OnDemand": "Standard", "Reservation": "Committed", "SavingsPlan": "Committed", "Spot": "Dynamic"}


def _azure_size_from_meter(meter: pa.Array) -> pa.Array:
    """``NC24ads A100 v4`` (a meter name) → ``Standard_NC24ads_A100_v4``; ``Spot``/``Low Priority`` dropped."""
    base = pc.replace_substring_regex(meter, r"\s+(Spot|Low Priority)$", "")
    return pc.binary_join_element_wise("Standard_", pc.replace_substring(base, " ", "_"), "")


@register("decoder", "azure_cost", AzureCostConfig)
class AzureCostDecoder(BillingDecoder):
    type_name = "azure_cost"
    time_column = "date"
    provider = "Microsoft"
    required = (("date",), ("costinbillingcurrency", "cost", "costinusd"))
    wanted = tuple(
        c.lower()
        for c in [
            "Date",
            "CostInBillingCurrency",
            "Cost",
            "CostInUsd",
            "PayGPrice",
            "Quantity",
            "UnitOfMeasure",
            "BillingCurrency",
            "BillingCurrencyCode",
            "BillingAccountId",
            "SubscriptionId",
            "SubscriptionGuid",
            "MeterCategory",
            "ServiceFamily",
            "ResourceLocation",
            "MeterId",
            "ResourceId",
            "ChargeType",
            "PricingModel",
            "AdditionalInfo",
            "MeterName",
            "Tags",
        ]
    )
    currency_columns = ("billingcurrency", "billingcurrencycode")
    dimension_only = {"resourceid": "resource", "meterid": "sku"}
    number_columns = frozenset({"costinbillingcurrency", "cost", "costinusd", "paygprice", "quantity"})
    quantity_columns = frozenset({"quantity"})

    def __init__(self, cfg: AzureCostConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.measure = cfg.cost

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        head = sample.split(b"\n", 1)[0].lower()
        return b"metercategory" in head and (b"costinbillingcurrency" in head or b",cost," in head)

    def fields(self, cols: _Columns) -> dict[str, Any]:
        n = cols.batch.num_rows
        currency = cols.text("BillingCurrency", "BillingCurrencyCode")
        quantity = cols.number("Quantity") or (pa.nulls(n, pa.float64()), None)
        if self.measure == "usd":
            hit = cols.number("CostInUsd")
            if hit is None:
                raise DeliveryError("missing_columns", "cost measure usd: no column CostInUsd")
            cost = hit
            currency = None
        elif self.measure == "list":
            price = cols.number("PayGPrice")
            if price is None:
                raise DeliveryError("missing_columns", "cost measure list: no column PayGPrice")
            cost = (pc.multiply(price[0], quantity[0]), price[1])
        else:
            hit = cols.number("CostInBillingCurrency", "Cost")
            if hit is None:
                raise DeliveryError("missing_columns", "cost measure billed: no column CostInBillingCurrency or Cost")
            cost = hit
        info = cols.get("AdditionalInfo")
        itype = _regex_first(_text(info), _AZURE_SERVICE_TYPE) if info is not None else _null_str(n)
        gpu_sizes = pa.array(list(self.gpus), pa.string())

        def size_of(meter: pa.Array) -> pa.Array:
            size = _azure_size_from_meter(meter)
            return pc.if_else(pc.is_in(size, gpu_sizes), size, pa.scalar(None, pa.string()))

        itype = _coalesce(itype, _on_values(cols.text("MeterName"), size_of))
        is_vm = _row(cols.text("MeterCategory"), lambda v: pc.equal(v, "Virtual Machines")).fill_null(False)
        ctype = cols.text("ChargeType")
        dims = {
            "provider": _const("Microsoft", n),
            "billing_account": cols.text("BillingAccountId"),
            "sub_account": _on_values(cols.text("SubscriptionId", "SubscriptionGuid"), pc.utf8_lower),
            "service": cols.text("MeterCategory"),
            "service_category": cols.text("ServiceFamily"),
            "region": _on_values(
                cols.text("ResourceLocation"), lambda v: pc.replace_substring(pc.utf8_lower(v), " ", "")
            ),
            "sku": cols.text("MeterId"),
            "resource": _on_values(cols.text("ResourceId"), pc.utf8_lower),
            "charge_category": _on_values(
                ctype, lambda v: pc.coalesce(_lookup_plain(v, _AZURE_CHARGE, pa.string(), False), v)
            ),
            "pricing_category": _on_values(
                cols.text("PricingModel"),
                lambda v: pc.coalesce(_lookup_plain(v, _AZURE_PRICING, pa.string(), False), v),
            ),
            "instance_type": itype,
        }
        return {
            "ts": cols.get("Date"),
            "cost": cost,
            "quantity": quantity,
            "hours_factor": pc.if_else(is_vm, _row(cols.text("UnitOfMeasure"), _hours_factor), 0.0),
            "currency": currency,
            "instance_type": itype,
            "dims": dims,
        }
