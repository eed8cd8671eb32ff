"""The billing export formats: FOCUS (1.0-1.3, Azure FocusCost), AWS CUR 2.0 and legacy CUR, Azure EA / MCA
cost exports, and ``billing``, which tells them apart per file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.billing.arrow import (
    _canon_values,
    _coalesce,
    _Columns,
    _const,
    _lookup,
    _lookup_plain,
    _null_str,
    _on_values,
    _plain,
    _row,
    _text,
)
from agent.decoders.billing.base import (
    _CHARGE_CATEGORIES,
    _PRICING_CATEGORIES,
    AzureCostConfig,
    BillingConfig,
    BillingDecoder,
    CurConfig,
    DeliveryError,
    FocusConfig,
    _hours_factor,
)
from agent.registry import register

# -- FOCUS -----------------------------------------------------------------------------------
_AWS_INSTANCE = (
    r"(?:BoxUsage|SpotUsage|DedicatedUsage|HostUsage|UnusedBox|ReservedHostUsage):(?P<t>[a-z0-9-]+\.[a-z0-9]+)"
)
# SageMaker instance time: <region>-<component>:ml.<EC2 type> (Train, Host, Notebk, Processing, Cluster …;
# its storage is <region>-<component>:VolumeUsage.gp2, no ml.).
_SAGEMAKER_INSTANCE = r":(?P<t>ml\.[a-z0-9-]+\.[a-z0-9]+)"
_AZURE_SERVICE_TYPE = r'"ServiceType"\s*:\s*"(?P<t>(?i:Standard|Basic)_[^"]+)"'


def _regex_first(arr: pa.DictionaryArray, pattern: str) -> pa.DictionaryArray:
    d = _on_values(arr, lambda v: pc.struct_field(pc.extract_regex(v, pattern), [0]))
    return _on_values(d, lambda v: pc.if_else(pc.equal(v, ""), pa.scalar(None, pa.string()), v))


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


# -- AWS CUR 2.0 and legacy CUR ----------------------------------------------------------------
_CUR_CHARGE = {
    "Usage": "Usage",
    "DiscountedUsage": "Usage",
    "SavingsPlanCoveredUsage": "Usage",
    "SavingsPlanNegation": "Usage",
    "Tax": "Tax",
    "Credit": "Credit",
    "Refund": "Credit",
    "BundledDiscount": "Credit",
    "EdpDiscount": "Credit",
    "PrivateRateDiscount": "Credit",
    "Discount": "Credit",
    "DistributorDiscount": "Credit",
    "Fee": "Purchase",
    "RIFee": "Purchase",
    "SavingsPlanRecurringFee": "Purchase",
    "SavingsPlanUpfrontFee": "Purchase",
}
_CUR_TERM = {"OnDemand": "Standard", "Reserved": "Committed", "Spot": "Dynamic", "SavingsPlan": "Committed"}


@register("decoder", "cur", CurConfig)
class CurDecoder(BillingDecoder):
    type_name = "cur"
    time_column = "line_item_usage_start_date"
    provider = "AWS"
    required = (("line_item_usage_start_date",), ("line_item_unblended_cost",))
    wanted = (
        "line_item_usage_start_date",
        "line_item_unblended_cost",
        "line_item_net_unblended_cost",
        "line_item_blended_cost",
        "pricing_public_on_demand_cost",
        "line_item_line_item_type",
        "line_item_usage_account_id",
        "bill_payer_account_id",
        "line_item_product_code",
        "product_product_family",
        "product_region_code",
        "product_region",
        "product_sku",
        "line_item_resource_id",
        "pricing_term",
        "line_item_usage_type",
        "product_instance_type",
        "line_item_usage_amount",
        "pricing_unit",
        "savings_plan_savings_plan_effective_cost",
        "savings_plan_net_savings_plan_effective_cost",
        "savings_plan_total_commitment_to_date",
        "savings_plan_used_commitment",
        "reservation_effective_cost",
        "reservation_net_effective_cost",
        "reservation_unused_amortized_upfront_fee_for_billing_period",
        "reservation_net_unused_amortized_upfront_fee_for_billing_period",
        "reservation_unused_recurring_fee",
        "reservation_net_unused_recurring_fee",
    )
    currency_columns = ("line_item_currency_code",)
    dimension_only = {"line_item_resource_id": "resource", "product_sku": "sku"}
    value_columns = frozenset(
        c for c in wanted if c.endswith(("_cost", "_amount", "_fee_for_billing_period", "_recurring_fee", "_to_date"))
    ) | {"savings_plan_used_commitment"}
    number_columns = value_columns
    quantity_columns = frozenset({"line_item_usage_amount"})

    def __init__(self, cfg: CurConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.measure = {"billed": "unblended", "effective": "amortized", "list": "public_on_demand"}.get(
            cfg.cost, cfg.cost
        )

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        head = sample.split(b"\n", 1)[0].lower()
        return b"line_item_unblended_cost" in head or b"lineitem/unblendedcost" in head

    def _num(self, cols: _Columns, name: str) -> pa.Array:
        hit = cols.number(name)
        if hit is None:
            return pa.nulls(cols.batch.num_rows, pa.float64())
        return hit[0].fill_null(0.0)

    def _cost(self, cols: _Columns, ltype: pa.Array) -> tuple[pa.Array, pa.Array | None]:
        m = self.measure
        simple = {
            "unblended": "line_item_unblended_cost",
            "net_unblended": "line_item_net_unblended_cost",
            "blended": "line_item_blended_cost",
            "public_on_demand": "pricing_public_on_demand_cost",
        }
        if m in simple:
            hit = cols.number(simple[m])
            if hit is None:
                raise DeliveryError("missing_columns", f"cost measure {m}: no column {simple[m]}")
            return hit
        # Amortized cost, the way AWS Cost Explorer amortizes: commitments spread over the usage they cover.
        net = m == "net_amortized"
        base = cols.number("line_item_net_unblended_cost" if net else "line_item_unblended_cost")
        if base is None:
            raise DeliveryError("missing_columns", "cost measure net_amortized: no column line_item_net_unblended_cost")
        unblended, bad = base
        sp = self._num(
            cols, "savings_plan_net_savings_plan_effective_cost" if net else "savings_plan_savings_plan_effective_cost"
        )
        ri = self._num(cols, "reservation_net_effective_cost" if net else "reservation_effective_cost")
        sp_fee = pc.subtract(
            self._num(cols, "savings_plan_total_commitment_to_date"), self._num(cols, "savings_plan_used_commitment")
        )
        ri_fee = pc.add(
            self._num(
                cols,
                "reservation_net_unused_amortized_upfront_fee_for_billing_period"
                if net
                else "reservation_unused_amortized_upfront_fee_for_billing_period",
            ),
            self._num(cols, "reservation_net_unused_recurring_fee" if net else "reservation_unused_recurring_fee"),
        )
        zero = pa.scalar(0.0)
        cost = unblended
        for lt, value in (
            ("SavingsPlanCoveredUsage", sp),
            ("DiscountedUsage", ri),
            ("SavingsPlanRecurringFee", sp_fee),
            ("SavingsPlanNegation", zero),
            ("SavingsPlanUpfrontFee", zero),
            ("RIFee", ri_fee),
        ):
            cost = pc.if_else(pc.equal(ltype, lt).fill_null(False), value, cost)
        return cost, bad

    def fields(self, cols: _Columns) -> dict[str, Any]:
        n = cols.batch.num_rows
        ltype = cols.text("line_item_line_item_type")
        usage_type = cols.text("line_item_usage_type")
        term = _lookup(cols.text("pricing_term"), _CUR_TERM, pa.string())
        committed = _row(ltype, lambda v: pc.is_in(v, pa.array(["DiscountedUsage", "SavingsPlanCoveredUsage"])))
        spot = _row(usage_type, lambda v: pc.match_substring(v, "SpotUsage")).fill_null(False)
        pricing = _text(pc.if_else(spot, "Dynamic", pc.if_else(committed.fill_null(False), "Committed", _plain(term))))
        itype = _coalesce(cols.text("product_instance_type"), _regex_first(usage_type, _SAGEMAKER_INSTANCE))
        # GPU-hours from instance usage only (not EBS, data transfer … of the same instance type); SageMaker
        # bills its instances as <region>-<component>:ml.<type>.
        is_instance = _row(
            usage_type,
            lambda v: pc.match_substring_regex(v, r"(BoxUsage|SpotUsage|DedicatedUsage|HostUsage|:ml\.)"),
        )
        qty, qbad = cols.number("line_item_usage_amount") or (pa.nulls(n, pa.float64()), None)
        unit = cols.text("pricing_unit")
        factor = pc.if_else(pc.is_null(unit), 1.0, _row(unit, _hours_factor))
        factor = pc.if_else(is_instance.fill_null(False), factor, 0.0)
        dims = {
            "provider": _const("AWS", n),
            "billing_account": cols.text("bill_payer_account_id"),
            "sub_account": cols.text("line_item_usage_account_id"),
            "service": cols.text("line_item_product_code"),
            "service_category": cols.text("product_product_family"),
            "region": _on_values(
                _coalesce(cols.text("product_region_code"), cols.text("product_region")), pc.utf8_lower
            ),
            "sku": cols.text("product_sku"),
            "resource": cols.text("line_item_resource_id"),
            "charge_category": _on_values(
                ltype, lambda v: pc.coalesce(_lookup_plain(v, _CUR_CHARGE, pa.string(), False), v)
            ),
            "pricing_category": pricing,
            "instance_type": itype,
        }
        return {
            "ts": cols.get("line_item_usage_start_date"),
            "cost": self._cost(cols, ltype),
            "quantity": (qty, qbad),
            "hours_factor": factor,
            "currency": cols.text("line_item_currency_code")
            if cols.get("line_item_currency_code") is not None
            else None,
            "instance_type": itype,
            "dims": dims,
        }


# -- Azure EA / MCA cost exports ----------------------------------------------------------------
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


class AutoBillingConfig(BillingConfig):
    type: Literal["billing"]
    cost: Literal["billed", "effective", "list"] = Field(
        "billed", description="FOCUS names; CUR: unblended / amortized / public on-demand; Azure: cost / PayG"
    )


@register("decoder", "billing", AutoBillingConfig)
class AutoBillingDecoder(BillingDecoder):
    """Any of the three formats, told apart per file by its columns."""

    type_name = "billing"

    def __init__(self, cfg: AutoBillingConfig, **kw: Any):
        super().__init__(cfg, **kw)
        common = cfg.model_dump(exclude={"type", "cost"})
        self.formats: list[BillingDecoder] = [
            FocusDecoder(FocusConfig(type="focus", cost=cfg.cost, **common)),
            CurDecoder(CurConfig(type="cur", cost=cfg.cost, **common)),
            AzureCostDecoder(
                AzureCostConfig(type="azure_cost", cost="list" if cfg.cost == "list" else "billed", **common)
            ),
        ]

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return sniff_billing(sample) is not None

    def for_columns(self, names: Sequence[str]) -> BillingDecoder:
        head = ",".join(names).encode()
        for d in self.formats:
            if d.sniff(head):
                return d
        raise DeliveryError("unknown_format", "not a FOCUS, CUR or Azure cost export: " + ", ".join(names[:8]))

    def columns(self, names: Sequence[str]) -> list[str]:
        return self.for_columns(names).columns(names)

    def aggregate(
        self, batch: pa.RecordBatch | pa.Table, ctx: DecodeContext, lines: pa.Array | None = None, where: str = ""
    ) -> tuple[pa.Table, list[BadRecord]]:
        return self.for_columns(batch.schema.names).aggregate(batch, ctx, lines, where)


def sniff_billing(sample: bytes) -> str | None:
    """Which billing decoder reads a file starting with ``sample`` (its header line), if any."""
    for cls in (FocusDecoder, CurDecoder, AzureCostDecoder):
        if cls.sniff(sample.lstrip(b"\xef\xbb\xbf")):
            return cls.type_name
    return None
