"""Cloud billing exports → hourly cost cells (FOCUS, AWS CUR 2.0 / legacy CUR, Azure EA / MCA).

``base``: the decoders' shared config, GPU table and :class:`~agent.decoders.billing.base.BillingDecoder`
(normalise, aggregate, observations); ``arrow``: the columnar helpers; ``formats``: one decoder per
export format and ``billing``, which tells them apart per file. Importing the package registers them.
"""

from __future__ import annotations

from agent.decoders.billing.arrow import (  # noqa: F401
    _POOL,
    _numeric,
    _parse_times,
    canonical_name,
)
from agent.decoders.billing.base import (  # noqa: F401
    BILLING_PREFIX,
    DEFAULT_DIMENSIONS,
    SIGNALS,
    UNTAGGED,
    AzureCostConfig,
    BillingDecoder,
    CurConfig,
    DeliveryError,
    Dimension,
    FocusConfig,
    gpu_instances,
    group,
    number_combinations,
    observations,
)
from agent.decoders.billing.formats import (  # noqa: F401
    AutoBillingConfig,
    AutoBillingDecoder,
    AzureCostDecoder,
    CurDecoder,
    FocusDecoder,
)
