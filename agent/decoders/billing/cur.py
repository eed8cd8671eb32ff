"""AWS Cost and Usage Reports: CUR 2.0 (Data Exports) and legacy CUR → billing cells."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent.decoders.billing.arrow import (
    _EC2_INSTANCE,
    _SAGEMAKER_INSTANCE,
    _coalesce,
    _Columns,
    _const,
    _lookup,
    _lookup_plain,
    _on_values,
    _plain,
    _regex_first,
    _row,
    _text,
)
from agent.decoders.billing.base import (
    BillingDecoder,
    CurConfig,
    DeliveryError,
    _hours_factor,
)
from agent.registry import register

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
        itype = _coalesce(
            _coalesce(cols.text("product_instance_type"), _regex_first(usage_type, _SAGEMAKER_INSTANCE)),
            _regex_first(usage_type, _EC2_INSTANCE),
        )
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
