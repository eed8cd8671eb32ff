"""Price tables: tokens → USD per model, GPU-hours → USD per GPU model.

The bundled tables state their source and date (``agent/data/*.json``); the agent config can
replace single entries (``pricing.token_prices``, ``pricing.gpu_hour_prices``) or load a whole
token table in LiteLLM's or this project's format (``pricing.token_price_file``).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

_REGION_PREFIX = re.compile(r"^(us|eu|apac|ap|ca|jp|au|us-gov|global)\.")
# A provider prefix as gateways and LiteLLM write it ("openai/gpt-4o", "azure/gpt-4o-mini").
_PROVIDER_PREFIX = re.compile(r"^[a-z_]+/")
# A dated model version as OpenAI and Azure OpenAI report it ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18").
_DATE_SUFFIX = re.compile(r"-(?:20\d\d-\d\d-\d\d|\d{4})$")


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per token."""

    input: float
    output: float
    cached_input: float


@functools.cache
def _bundled(name: str) -> dict[str, Any]:
    """A bundled table, read once per process (every decoder instance shares it; callers copy)."""
    text = resources.files("agent").joinpath("data", name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def normalize_model_id(model_id: str) -> str:
    """Reduce a Bedrock model id or ARN to the base model id used as the price key.

    >>> normalize_model_id("arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0")
    'anthropic.claude-3-haiku-20240307-v1:0'
    >>> normalize_model_id("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0")
    'amazon.nova-pro-v1:0'
    """
    mid = model_id.strip()
    if mid.startswith("arn:"):
        mid = mid.rsplit("/", 1)[-1]
    return _REGION_PREFIX.sub("", mid)


class TokenPriceTable:
    def __init__(self, per_million: dict[str, dict[str, float]], meta: dict[str, Any] | None = None):
        self.meta = meta or {}
        self._prices: dict[str, TokenPrice] = {}
        for model, p in per_million.items():
            self._prices[model] = TokenPrice(
                input=float(p.get("input", 0.0)) / 1e6,
                output=float(p.get("output", 0.0)) / 1e6,
                cached_input=float(p.get("cached_input", p.get("input", 0.0))) / 1e6,
            )

    @classmethod
    def from_config(cls, pricing: Any) -> TokenPriceTable:
        data = _bundled("prices.json")
        models: dict[str, dict[str, float]] = dict(data["models"])
        meta = dict(data["_meta"])
        if pricing is not None and pricing.token_price_file:
            models.update(load_price_file(Path(pricing.token_price_file)))
            meta["override_file"] = pricing.token_price_file
        if pricing is not None:
            models.update({k: dict(v) for k, v in pricing.token_prices.items()})
        return cls(models, meta)

    def lookup(self, model_id: str) -> TokenPrice | None:
        """The price of ``model_id``: its exact entry, else its Bedrock base model, else without a gateway's
        provider prefix or a dated version suffix (an exact entry always wins: a dated version priced on its own).

        >>> t = TokenPriceTable.from_config(None)
        >>> t.lookup("gpt-4o-2024-08-06") == t.lookup("openai/gpt-4o") == t.lookup("gpt-4o")
        True
        >>> t.lookup("my-own-model") is None
        True
        """
        p = self._prices.get(model_id)
        if p is None:
            base = normalize_model_id(model_id)
            p = self._prices.get(base)
            if p is None:
                base = _PROVIDER_PREFIX.sub("", base, count=1)
                p = self._prices.get(base) or self._prices.get(_DATE_SUFFIX.sub("", base))
        return p

    def __len__(self) -> int:
        return len(self._prices)


def load_price_file(path: Path) -> dict[str, dict[str, float]]:
    """Read a price table: this project's format, or LiteLLM's ``model_prices_and_context_window.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if "models" in data:
        return {k: dict(v) for k, v in data["models"].items()}
    out: dict[str, dict[str, float]] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or "input_cost_per_token" not in entry:
            continue
        inp = float(entry.get("input_cost_per_token") or 0.0) * 1e6
        out[model] = {
            "input": inp,
            "output": float(entry.get("output_cost_per_token") or 0.0) * 1e6,
            "cached_input": float(entry.get("cache_read_input_token_cost") or 0.0) * 1e6 or inp,
        }
    return out


class GpuPriceTable:
    def __init__(self, per_hour: dict[str, float], default: float, meta: dict[str, Any] | None = None):
        self.per_hour = per_hour
        self.default = default
        self.meta = meta or {}

    @classmethod
    def from_config(cls, pricing: Any) -> GpuPriceTable:
        data = _bundled("gpu_prices.json")
        per_hour = {k: float(v) for k, v in data["models"].items()}
        default = float(data.get("default", 0.0))
        if pricing is not None:
            per_hour.update(pricing.gpu_hour_prices)
            if pricing.gpu_hour_price_default is not None:
                default = pricing.gpu_hour_price_default
        return cls(per_hour, default, dict(data["_meta"]))

    def lookup(self, gpu_model: str) -> float:
        return self.per_hour.get(gpu_model, self.default)
