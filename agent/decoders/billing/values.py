"""The values the billing decoders give their closed dimensions, for checking a detector's ``where`` / ``exclude``.

``charge_category`` and ``pricing_category`` take FOCUS's values (``Usage``, ``Purchase`` …; ``Standard``,
``Committed`` …) whatever the bill's format: CUR's line item types and Azure's charge types are mapped to them (a
type no table knows passes as written). A filter value that differs from one only in case, or that names what the
decoders map (CUR ``Fee``, ``RIFee``; Azure ``Refund``), would match nothing: :func:`value_problem` says so.
"""

from __future__ import annotations

from agent.decoders.billing.azure import _AZURE_CHARGE, _AZURE_PRICING
from agent.decoders.billing.base import _CHARGE_CATEGORIES, _PRICING_CATEGORIES
from agent.decoders.billing.cur import _CUR_CHARGE, _CUR_TERM

CLOSED: dict[str, tuple[str, ...]] = {"charge_category": _CHARGE_CATEGORIES, "pricing_category": _PRICING_CATEGORIES}
_MAPPED: dict[str, dict[str, str]] = {
    "charge_category": {**_AZURE_CHARGE, **_CUR_CHARGE},
    "pricing_category": {**_AZURE_PRICING, **_CUR_TERM},
}


def value_problem(dimension: str, value: str) -> str | None:
    """Why ``value`` of a billing ``dimension`` would match nothing (None: it may match)."""
    values = CLOSED.get(dimension)
    if values is None or value in values:
        return None
    mapped = _MAPPED[dimension].get(value)
    if mapped is not None and mapped != value:
        return f"bills give {value!r} lines {dimension} {mapped!r} (the FOCUS value); use {mapped!r}"
    for v in values:
        if v.lower() == value.lower():
            return f"{value!r} matches nothing: the value is {v!r} (values are compared exactly)"
    return None
