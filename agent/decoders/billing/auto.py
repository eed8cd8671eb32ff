"""``billing``: any of FOCUS, CUR and Azure cost exports, told apart per file by its header."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.billing.azure import AzureCostDecoder
from agent.decoders.billing.base import (
    AzureCostConfig,
    BillingConfig,
    BillingDecoder,
    CurConfig,
    DeliveryError,
    FocusConfig,
)
from agent.decoders.billing.cur import CurDecoder
from agent.decoders.billing.focus import FocusDecoder
from agent.registry import register


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
