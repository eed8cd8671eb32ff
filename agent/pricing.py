"""Price tables: tokens → USD per model, GPU-hours → USD per GPU model and purchase option.

The bundled tables state their source and date (``agent/data/*.json``); the agent config can
replace single entries (``pricing.token_prices``, ``pricing.gpu_hour_prices``) or load a whole
token table in LiteLLM's or this project's format (``pricing.token_price_file``). GPU-hours are
priced at the way the GPUs are bought (``pricing.gpu_purchase_option``: on-demand, reserved, spot),
per cluster, node or any other dimension by ``pricing.gpu_price_overrides`` (see :class:`GpuPriceTable`).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Mapping
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
    """USD per token. ``cache_write_input``: a prompt-cache write (Anthropic models charge 1.25× input); the input
    price where the table gives none (the bundled table gives none: set ``cache_write_input`` in
    ``pricing.token_prices``, or a LiteLLM table's ``cache_creation_input_token_cost``)."""

    input: float
    output: float
    cached_input: float
    cache_write_input: float


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
                cache_write_input=float(p.get("cache_write_input", p.get("input", 0.0))) / 1e6,
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
            models.update({k: v.model_dump(exclude_none=True) for k, v in pricing.token_prices.items()})
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
            "cache_write_input": float(entry.get("cache_creation_input_token_cost") or 0.0) * 1e6 or inp,
        }
    return out


#: How a GPU is bought: the bundled table has a rate for each (``reserved``: 1-year commitment, no upfront).
PURCHASE_OPTIONS = ("on_demand", "reserved", "spot")
_OPTION_WORDS = {"on_demand": "on-demand", "effective": "configured rate", "default": "default rate"}
_RATES_MAX = 100_000  # decisions remembered (per distinct GPU model and dimensions); beyond, recomputed
_SEEN_MAX = 1_000  # distinct (model, option, source) rates kept for the price metric


@dataclass(frozen=True, slots=True)
class GpuRate:
    """The price of one GPU-hour and what it rests on.

    ``purchase_option``: ``on_demand``, ``reserved`` or ``spot`` (a bundled rate, or an override rule's option), or
    ``effective`` (a rate the config states: ``gpu_hour_prices``, a rule's ``usd_per_gpu_hour``), or ``default``.
    ``source``: ``bundled:<instance type or GPU model>``, ``gpu_hour_prices``, ``gpu_price_overrides[i]``,
    ``default``. ``note``: how the rate was derived, when it was ("35% off on-demand", "no spot rate bundled").
    """

    usd_per_gpu_hour: float
    purchase_option: str
    source: str
    gpu_model: str = ""
    note: str = ""

    def describe(self) -> str:
        """E.g. ``$4.47/GPU-hour (reserved; bundled:NVIDIA H100, derived: 35% off on-demand)``."""
        words = _OPTION_WORDS.get(self.purchase_option, self.purchase_option)
        note = f", {self.note}" if self.note else ""
        return f"${self.usd_per_gpu_hour:.2f}/GPU-hour ({words}; {self.source}{note})"


@dataclass(frozen=True, slots=True)
class _Instance:
    name: str
    gpus: float
    gpu_model: str
    rates: dict[str, float]


class _GpuBundle:
    """``agent/data/gpu_prices.json`` with GPUs per instance type from ``gpu_instances.json``."""

    def __init__(self, prices: dict[str, Any], instances: dict[str, Any]):
        self.meta: dict[str, Any] = dict(prices["_meta"])
        self.default = float(prices.get("default", 0.0))
        self.reserved_discount_percent = float(prices.get("reserved_discount_percent", 0.0))
        self.models: dict[str, dict[str, float]] = {}
        self.names: dict[str, str] = {}  # a name or alias, lower case → the table's name
        for name, entry in prices["models"].items():
            self.models[name] = {o: float(entry[o]) for o in PURCHASE_OPTIONS if o in entry}
            for alias in (name, *entry.get("aliases", ())):
                self.names[alias.lower()] = name
        sizes = {k.lower(): v for k, v in instances["instances"].items()}
        self.instances: dict[str, _Instance] = {}
        for name, entry in prices["instances"].items():
            size = sizes.get(name.lower())
            if size is not None and size[0] > 0:
                rates = {o: float(entry[o]) for o in PURCHASE_OPTIONS if o in entry}
                self.instances[name.lower()] = _Instance(name, float(size[0]), str(size[1]), rates)

    def canonical(self, gpu_model: str) -> str:
        """The table's name for a GPU model as dcgm-exporter or a bill writes it ("" if the table has none)."""
        return self.names.get(gpu_model.strip().lower(), "") if gpu_model else ""

    def at(self, rates: dict[str, float], option: str) -> tuple[float, str, str] | None:
        """``(USD, option, note)`` at ``option``: a reserved rate not in the table is derived from on-demand; a
        missing spot rate falls back to on-demand (and says so). None without an on-demand rate."""
        rate = rates.get(option)
        if rate is not None:
            return rate, option, ""
        on_demand = rates.get("on_demand")
        if on_demand is None:
            return None
        if option == "reserved":
            pct = self.reserved_discount_percent
            return on_demand * (1.0 - pct / 100.0), "reserved", f"derived: {pct:g}% off on-demand"
        return on_demand, "on_demand", f"no {option} rate bundled"


@functools.cache
def _gpu_bundle() -> _GpuBundle:
    return _GpuBundle(_bundled("gpu_prices.json"), _bundled("gpu_instances.json"))


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    match: tuple[tuple[str, tuple[str, ...]], ...]  # dimension → patterns (any of; ``*`` and ``?`` wildcards)
    purchase_option: str | None
    usd_per_gpu_hour: float | None
    discount_percent: float | None

    def matches(self, dims: dict[str, str], models: tuple[str, ...]) -> bool:
        for key, patterns in self.match:
            values = models if key == "gpu_model" else (dims[key],) if key in dims else ()
            if not any(fnmatch.fnmatchcase(v, p) for v in values for p in patterns):
                return False
        return True


class GpuPriceTable:
    """What a GPU-hour costs, by how it is bought, for a GPU model and the dimensions it is seen with.

    The first rule that decides wins:

    1. the first ``pricing.gpu_price_overrides`` rule whose ``match`` holds for the dimensions (every key; a
       ``gpu_model`` pattern may name dcgm's model name or the table's): its ``usd_per_gpu_hour``, or the rate
       below at its ``purchase_option`` (default ``gpu_purchase_option``), less its ``discount_percent``;
    2. ``pricing.gpu_hour_prices`` for the model (dcgm's name or the table's): a rate you state;
    3. the bundled table at ``pricing.gpu_purchase_option``: the instance type's rate (dimension
       ``instance_type``) divided by its GPUs, else the GPU model's;
    4. ``pricing.gpu_hour_price_default`` (else the bundled default).

    >>> t = GpuPriceTable.from_config(None)
    >>> t.lookup("NVIDIA H100 80GB HBM3"), t.lookup("NVIDIA H100 80GB HBM3", {"instance_type": "p5.48xlarge"})
    (6.88, 6.88)
    >>> t.rate("Tesla T4").describe()
    '$0.53/GPU-hour (on-demand; bundled:NVIDIA T4)'
    >>> t.rate("my-own-gpu").purchase_option
    'default'
    """

    def __init__(
        self,
        per_hour: dict[str, float] | None = None,
        default: float | None = None,
        meta: dict[str, Any] | None = None,
        *,
        purchase_option: str = "on_demand",
        overrides: list[Any] | None = None,
        default_source: str = "default",
    ):
        self.bundle = _gpu_bundle()
        self.per_hour = dict(per_hour or {})  # the config's own rates (gpu_hour_prices)
        self.default = self.bundle.default if default is None else default
        self.meta = dict(self.bundle.meta) if meta is None else meta
        if purchase_option not in PURCHASE_OPTIONS:
            raise ValueError(f"purchase option {purchase_option!r}: one of {', '.join(PURCHASE_OPTIONS)}")
        self.purchase_option = purchase_option
        self.rules = [_compile(i, r) for i, r in enumerate(overrides or ())]
        self._default_source = default_source
        self._rates: dict[tuple[str, tuple[tuple[str, str], ...]], GpuRate] = {}
        self.seen: dict[tuple[str, str, str], float] = {}  # (model, option, source) → USD: the price metric

    @classmethod
    def from_config(cls, pricing: Any) -> GpuPriceTable:
        if pricing is None:
            return cls()
        default = pricing.gpu_hour_price_default
        return cls(
            dict(pricing.gpu_hour_prices),
            default,
            purchase_option=getattr(pricing, "gpu_purchase_option", "on_demand"),
            overrides=list(getattr(pricing, "gpu_price_overrides", ())),
            default_source="gpu_hour_price_default" if default is not None else "default",
        )

    def lookup(self, gpu_model: str, dims: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> float:
        """USD per GPU-hour for ``gpu_model`` seen with ``dims`` (see :meth:`rate`)."""
        return self.rate(gpu_model, dims).usd_per_gpu_hour

    def rate(self, gpu_model: str, dims: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> GpuRate:
        """The rate and what it rests on; decided once per distinct (model, dimensions), then remembered."""
        pairs = tuple(sorted(dims.items() if isinstance(dims, Mapping) else dims or ()))
        key = (gpu_model, pairs)
        hit = self._rates.get(key)
        if hit is None:
            hit = self._decide(gpu_model, dict(pairs))
            if len(self._rates) < _RATES_MAX:
                self._rates[key] = hit
            seen = (hit.gpu_model, hit.purchase_option, hit.source)
            if seen in self.seen or len(self.seen) < _SEEN_MAX:
                self.seen[seen] = hit.usd_per_gpu_hour
        return hit

    def _decide(self, gpu_model: str, dims: dict[str, str]) -> GpuRate:
        canonical = self.bundle.canonical(gpu_model)
        models = tuple(m for m in (gpu_model, canonical) if m)
        for rule in self.rules:
            if rule.matches(dims, models):
                return self._by_rule(rule, gpu_model, canonical, dims)
        return (
            self._stated(gpu_model, canonical)
            or self._bundled(self.purchase_option, canonical, dims)
            or self._fallback(canonical or gpu_model)
        )

    def _by_rule(self, rule: _Rule, gpu_model: str, canonical: str, dims: dict[str, str]) -> GpuRate:
        where = f"gpu_price_overrides[{rule.index}]"
        name = canonical or gpu_model
        if rule.usd_per_gpu_hour is not None:
            return GpuRate(rule.usd_per_gpu_hour, rule.purchase_option or "effective", where, name)
        option = rule.purchase_option or self.purchase_option
        base = self._bundled(option, canonical, dims) or self._stated(gpu_model, canonical) or self._fallback(name)
        notes = [f"{base.source}"] + ([base.note] if base.note else [])
        usd = base.usd_per_gpu_hour
        if rule.discount_percent:
            usd *= 1.0 - rule.discount_percent / 100.0
            notes.insert(0, f"{rule.discount_percent:g}% off")
        return GpuRate(usd, base.purchase_option, where, base.gpu_model or name, ", ".join(notes))

    def _stated(self, gpu_model: str, canonical: str) -> GpuRate | None:
        for name in (gpu_model, canonical):
            if name and name in self.per_hour:
                return GpuRate(float(self.per_hour[name]), "effective", "gpu_hour_prices", canonical or gpu_model)
        return None

    def _bundled(self, option: str, canonical: str, dims: dict[str, str]) -> GpuRate | None:
        itype = dims.get("instance_type")
        inst = self.bundle.instances.get(itype.lower()) if itype else None
        if inst is not None:
            got = self.bundle.at(inst.rates, option)
            if got is not None:
                usd, used, note = got
                per_gpu = f"instance rate / {inst.gpus:g} GPUs" if inst.gpus != 1 else ""
                source = f"bundled:{inst.name}"
                return GpuRate(usd / inst.gpus, used, source, canonical or inst.gpu_model, _join(per_gpu, note))
        rates = self.bundle.models.get(canonical) if canonical else None
        if rates is not None:
            got = self.bundle.at(rates, option)
            if got is not None:
                return GpuRate(got[0], got[1], f"bundled:{canonical}", canonical, got[2])
        return None

    def _fallback(self, name: str) -> GpuRate:
        return GpuRate(self.default, "default", self._default_source, name)

    def decisions(self) -> list[tuple[str, str, str, float]]:
        """``(gpu_model, purchase_option, source, USD per GPU-hour)`` of every rate decided so far."""
        return [(*k, v) for k, v in self.seen.copy().items()]  # (a copy: the decoder's thread may add one)


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _compile(index: int, rule: Any) -> _Rule:
    match = tuple(
        (str(k), tuple(str(v) for v in (vs if isinstance(vs, list | tuple) else [vs]))) for k, vs in rule.match.items()
    )
    return _Rule(index, match, rule.purchase_option, rule.usd_per_gpu_hour, rule.discount_percent)
