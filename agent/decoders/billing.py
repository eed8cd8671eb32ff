"""Cloud billing exports → hourly cost cells, columnar all the way (pyarrow).

Three decoders share one pipeline of pyarrow compute kernels:

- ``focus``: FOCUS 1.0–1.3 (AWS Data Exports FOCUS, Azure ``FocusCost`` with its ``x_`` columns,
  Oracle, GCP ...);
- ``cur``: AWS CUR 2.0 (``line_item_unblended_cost``) and legacy CUR (``lineItem/UnblendedCost``,
  normalised to the CUR 2.0 names);
- ``azure_cost``: Azure Cost Management EA / MCA actual and amortized exports.

Each record batch is projected to the columns it needs, normalised (literal ``NULL``, mixed
case, BOM, account ids kept as text), given FOCUS-shaped dimensions and grouped by
(bucket, dimensions) with ``Table.group_by``; only the grouped rows reach Python. Signals:
``cost_usd`` (the configured cost measure), ``gpu_hours`` (instance-hours × GPUs per instance
from a table shipped with its source and date) and ``gpu_cost_usd`` (the cost of those lines).
Credits and refunds are negative and legal. A line is placed in the bucket of its charge
period's start (monthly fees land at the month's first hour, as the bill shows them).

A value the decoder cannot read never reaches aggregation. Row-level problems cost the row: it
comes back as a :class:`BadRecord` (the columns read, as JSON; the reason names the file and row)
and every other row is kept. Found with compute kernels and masks (only bad rows become Python
objects), they are, by kind:

- ``invalid_utf8``: a text column that is not UTF-8 (CSV columns are read as bytes and checked);
- ``bad_time``: no valid charge start time — unparseable, or an impossible date (``2023-02-30``
  is not rolled over into March);
- ``bad_row``: a cost or quantity that is not a number;
- ``non_finite``: NaN or ±inf in a cost or quantity column (``1e309`` too);
- ``absurd_value``: a cost beyond ``max_abs_cost`` (per line item, in the line's currency).

An *empty* cost or quantity cell is 0 for its signal (FOCUS and CUR leave measures blank on
lines they do not apply to: no usage quantity on a tax line, no savings-plan cost on an
on-demand line), and a line with no usage unit has no GPU-hours. A tag dimension whose tag a
line does not carry is ``(untagged)``, as cost tools name it.

A file whose columns do not include the format's required ones, or whose rows are billed in
another currency than the configured one (without an exchange rate), raises
:class:`DeliveryError`: the whole file (and its delivery) is refused.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from agent.decoders.base import BadRecord, DecodeContext, Decoded, Decoder, Emits
from agent.model import UNTAGGED, Observation, cell, make_dims
from agent.registry import ComponentConfig, register

SIGNALS = ("billing_cost_usd", "billing_gpu_hours", "billing_gpu_cost_usd")
BILLING_PREFIX = "billing_"  # detectors watching these signals run on the billing clock (deliveries)
Dimension = Literal[
    "provider",
    "billing_account",
    "sub_account",
    "service",
    "service_category",
    "region",
    "sku",
    "resource",
    "charge_category",
    "pricing_category",
    "instance_type",
    "gpu_model",
]
DEFAULT_DIMENSIONS: tuple[Dimension, ...] = (
    "provider",
    "billing_account",
    "sub_account",
    "service",
    "service_category",
    "region",
    "charge_category",
    "pricing_category",
    "instance_type",
)


class DeliveryError(Exception):
    """A whole file (and so its delivery) cannot be used; ``kind`` is the metric label."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class BillingConfig(ComponentConfig):
    dimensions: list[Dimension] = Field(
        default_factory=lambda: list(DEFAULT_DIMENSIONS),
        description="FOCUS-shaped dimensions of every cell (add resource or sku with care: cardinality)",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="dimension name → tag key, e.g. team: user:team (CUR) or team: team"
    )
    currency: str = Field("USD", description="the billing currency expected; other currencies need exchange_rates")
    exchange_rates: dict[str, float] = Field(
        default_factory=dict, description="units of `currency` per unit of another billing currency"
    )
    gpu_instances: dict[str, float] = Field(
        default_factory=dict,
        description="instance type → GPUs per instance (added to the bundled table; a fraction for a GPU partition)",
    )
    constant_dimensions: dict[str, str] = Field(default_factory=dict)
    max_abs_cost: float = Field(
        1e9,
        gt=0,
        description="a line item whose cost (any cost column read) is larger in magnitude is absurd and "
        "dead-lettered; per line, in the line's billing currency (1e9: no single line of a real bill, not "
        "even a multi-year commitment's upfront fee, comes near a billion)",
    )


class FocusConfig(BillingConfig):
    type: Literal["focus"]
    cost: Literal["billed", "effective", "list", "contracted"] = "billed"


class CurConfig(BillingConfig):
    type: Literal["cur"]
    cost: Literal[
        "billed",
        "effective",
        "list",
        "unblended",
        "net_unblended",
        "blended",
        "amortized",
        "net_amortized",
        "public_on_demand",
    ] = "billed"


class AzureCostConfig(BillingConfig):
    type: Literal["azure_cost"]
    cost: Literal["billed", "usd", "list"] = Field(
        "billed",
        description="billed: cost in the billing currency (actual or amortized as the export is); usd: the "
        "export's USD cost column; list: pay-as-you-go price × quantity",
    )


# -- GPU instance table ----------------------------------------------------------------------
_GPU_TABLE: dict[str, tuple[float, str]] | None = None


def gpu_instances() -> dict[str, tuple[float, str]]:
    """The bundled table: instance type → (GPUs per instance — a fraction for a GPU partition —, GPU model)."""
    global _GPU_TABLE
    if _GPU_TABLE is None:
        raw = json.loads(resources.files("agent").joinpath("data", "gpu_instances.json").read_text(encoding="utf-8"))
        _GPU_TABLE = {k: (float(v[0]), str(v[1])) for k, v in raw["instances"].items()}
    return _GPU_TABLE


# -- columnar helpers ------------------------------------------------------------------------
def canonical_name(name: str) -> str:
    """Column names compared without case, BOM or surrounding blanks; legacy CUR names in CUR 2.0 form.

    >>> canonical_name("\\ufefflineItem/UnblendedCost"), canonical_name("savingsPlan/SavingsPlanEffectiveCost")
    ('line_item_unblended_cost', 'savings_plan_savings_plan_effective_cost')
    >>> canonical_name(" BilledCost "), canonical_name("product/instanceType")
    ('billedcost', 'product_instance_type')
    """
    n = name.strip().lstrip("\ufeff").strip()
    if "/" in n and not n.lower().startswith(("resourcetags/", "costcategory/")):
        parts = [re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", p) for p in n.split("/", 1)]
        return "_".join(parts).lower()
    return n.lower()


# Text columns travel as dictionaries (as Parquet stores them): cleaning, lookups, regexes and case
# folding run once per distinct value, and grouping runs on the codes.
_DICT = pa.dictionary(pa.int32(), pa.string())


def _remap(indices: pa.Array, values: pa.Array) -> pa.DictionaryArray:
    """Rows pointing at ``values`` (which may repeat or be null) → a dictionary array with unique values."""
    enc = pc.dictionary_encode(values)
    return pa.DictionaryArray.from_arrays(enc.indices.take(indices), enc.dictionary)


def _text(arr: Any) -> pa.DictionaryArray:
    """A column as dictionary-encoded text, blanks and literal NULL as null."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        if arr.null_count == len(arr):
            return pa.DictionaryArray.from_arrays(pa.nulls(len(arr), pa.int32()), pa.array([], pa.string()))
        indices, values = arr.indices.cast(pa.int32()), arr.dictionary
    else:
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            arr = arr.cast(pa.string())
        enc = pc.dictionary_encode(arr)
        indices, values = enc.indices, enc.dictionary
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    v = pc.utf8_trim_whitespace(values)
    blank = pc.or_(pc.equal(v, ""), pc.equal(pc.utf8_upper(v), "NULL"))
    return _remap(indices, pc.if_else(blank, pa.scalar(None, pa.string()), v))


def _on_values(arr: pa.DictionaryArray, fn: Any) -> pa.DictionaryArray:
    """Apply a string → string function to the distinct values only."""
    return _remap(arr.indices, fn(arr.dictionary))


def _row(arr: pa.DictionaryArray, fn: Any) -> pa.Array:
    """A per-value function (mask, number …) spread back to the rows (null for null rows)."""
    return fn(arr.dictionary).take(arr.indices)


def _plain(arr: pa.Array) -> pa.Array:
    return arr.cast(pa.string()) if pa.types.is_dictionary(arr.type) else arr


def _coalesce(a: pa.DictionaryArray, b: pa.DictionaryArray) -> pa.DictionaryArray:
    if b.null_count == len(b) or a.null_count == 0:
        return a
    return _text(pc.coalesce(_plain(a), _plain(b)))


def _const(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))


def _dim_out(arr: pa.Array, empty: str = "") -> pa.DictionaryArray:
    """A dimension column for grouping: dictionary-encoded, no nulls (absent = ``empty``)."""
    d = arr if pa.types.is_dictionary(arr.type) else _text(arr)
    return _remap(
        d.indices.fill_null(len(d.dictionary)), pa.concat_arrays([d.dictionary.fill_null(empty), pa.array([empty])])
    )


_NUMBER = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"


def _number(arr: Any) -> tuple[pa.Array, pa.Array | None]:
    """A column as float64 (null stays null) and, for text input, a mask of values that are not numbers."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        return arr.cast(pa.float64()), None
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.float64()), None
    s = _plain(_text(arr))
    ok = pc.match_substring_regex(s, _NUMBER)
    bad = pc.and_(pc.is_valid(s), pc.invert(ok.fill_null(False)))
    return pc.if_else(ok, s, pa.scalar(None, pa.string())).cast(pa.float64()), bad


def _parse_times(s: pa.Array) -> pa.Array:
    # ISO forms (…T…, …Z, fractions, a space instead of T): the first 19 characters, UTC as bills are.
    iso = pc.replace_substring(pc.utf8_slice_codeunits(s, 0, 19), "T", " ")
    out = pc.strptime(iso, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    forms = [("%Y-%m-%d", pc.utf8_slice_codeunits(s, 0, 10))]
    forms += [(f, s) for f in ("%m/%d/%Y", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M")]
    forms += [(f, s) for f in ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p")]  # US exports with AM / PM
    for fmt, part in forms:
        out = pc.coalesce(out, pc.strptime(part, format=fmt, unit="s", error_is_null=True))
    # An ISO time with a UTC offset (…T03:00:00-08:00): the hour it is in UTC, not the local hour.
    off = pc.extract_regex(s, r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?P<sign>[+-])(?P<h>\d{2}):?(?P<m>\d{2})$")
    secs = pc.add(
        pc.multiply(pc.struct_field(off, [1]).cast(pa.int64()), 3600),
        pc.multiply(pc.struct_field(off, [2]).cast(pa.int64()), 60),
    )
    secs = pc.if_else(pc.equal(pc.struct_field(off, [0]), "-"), pc.negate(secs), secs)
    local = out
    out = pc.if_else(pc.is_valid(secs), pc.subtract(out.cast(pa.int64()), secs).cast(out.type), out)
    # strptime rolls an impossible date over (2023-02-30 → 2023-03-02): the day written must be the day parsed.
    iso_ymd = pc.extract_regex(s, r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})")
    us_mdy = pc.extract_regex(s, r"^(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})")
    same = [
        pc.equal(pc.coalesce(pc.struct_field(iso_ymd, [k]), pc.struct_field(us_mdy, [k])).cast(pa.int64()), part)
        for k, part in (("y", pc.year(local)), ("m", pc.month(local)), ("d", pc.day(local)))
    ]
    valid = pc.and_(pc.and_(same[0], same[1]), same[2]).fill_null(True)  # null: a form without these parts
    return pc.if_else(valid, out, pa.scalar(None, out.type)).cast(pa.int64())


def _epoch(arr: Any) -> pa.Array:
    """Epoch seconds (int64, null where not a time) from timestamps, dates or the text forms bills use."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_timestamp(t):
        return pc.cast(arr, pa.timestamp("s", t.tz), safe=False).cast(pa.int64())
    if pa.types.is_date(t):
        return pc.cast(arr, pa.timestamp("s"), safe=False).cast(pa.int64())
    return _row(_text(arr), _parse_times)  # parsed once per distinct time


def _tag(arr: Any, key: str) -> pa.DictionaryArray:
    """One tag's value from a map column or a JSON(-ish) text column (Azure writes it without braces)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_map(arr.type):
        return _text(pc.map_lookup(arr, key, "first"))
    pat = r'"' + re.escape(key) + r'"\s*:\s*"(?P<v>(?:[^"\\]|\\.)*)"'
    return _text(_on_values(_text(arr), lambda v: pc.struct_field(pc.extract_regex(v, pat), [0])))


def _lookup_plain(values: pa.Array, table: dict[str, Any], value_type: pa.DataType, lower: bool) -> pa.Array:
    keys = list(table)
    probe = pc.utf8_lower(values) if lower else values
    idx = pc.index_in(probe, value_set=pa.array([k.lower() for k in keys] if lower else keys, pa.string()))
    return pa.array(list(table.values()), value_type).take(idx)


def _lookup(values: pa.Array, table: dict[str, Any], value_type: pa.DataType, *, lower: bool = False) -> pa.Array:
    """Map values through ``table`` (null where absent): per distinct value, then spread to the rows.

    Text results stay dictionary-encoded."""
    d = values if pa.types.is_dictionary(values.type) else _text(values)
    fn = lambda v: _lookup_plain(v, table, value_type, lower)  # noqa: E731
    return _on_values(d, fn) if pa.types.is_string(value_type) else _row(d, fn)


def _canon_values(values: pa.DictionaryArray, canonical: Iterable[str]) -> pa.DictionaryArray:
    """Mixed-case spellings (``usage`` / ``USAGE``) to the canonical one; unknown values kept."""
    table = {c: c for c in canonical}
    return _on_values(values, lambda v: pc.coalesce(_lookup_plain(v, table, pa.string(), True), v))


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _null_str(n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))




def _invalid_utf8_values(values: pa.Array) -> list[int]:
    """Positions of the values of a binary array that are not UTF-8: the array cast whole (one C++ pass),
    halves cast again only where that fails (a few slices per bad value)."""
    try:
        values.cast(pa.string())
        return []
    except pa.ArrowInvalid:
        if len(values) == 1:
            return [0]
    mid = len(values) // 2
    return _invalid_utf8_values(values[:mid]) + [mid + i for i in _invalid_utf8_values(values[mid:])]


def _as_utf8(arr: Any) -> tuple[pa.Array, pa.Array | None]:
    """A binary column as text, and a mask of the rows that are not UTF-8 (None when all are; null there)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        return arr.cast(pa.string()), None
    except pa.ArrowInvalid:
        pass
    enc = pc.dictionary_encode(arr)  # each distinct value checked once
    bad_values = _invalid_utf8_values(enc.dictionary)
    bad = pc.is_in(enc.indices, value_set=pa.array(bad_values, enc.indices.type)).fill_null(False)
    return pc.if_else(bad, pa.scalar(None, arr.type), arr).cast(pa.string()), bad


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _json_default(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "backslashreplace")
    return str(v)


@dataclass
class Problem:
    """Rows of a batch with one kind of problem in one column (a mask; only bad rows are described)."""

    kind: str  # the dead-letter kind
    column: str  # the column as the file names it
    mask: pa.Array  # bool per row, no nulls
    what: str  # e.g. "is not a number"


# Most telling first: a row with several problems is dead-lettered once, under the first kind.
_KIND_ORDER = ("invalid_utf8", "bad_time", "bad_row", "non_finite", "absurd_value")


def reject(
    batch: pa.RecordBatch | pa.Table, problems: list[Problem], lines: pa.Array | None, where: str
) -> tuple[pa.Array | None, list[BadRecord]]:
    """The mask of rows with any problem, and one :class:`BadRecord` per such row (its columns as JSON;
    the reason names the file, the row and each problem)."""
    problems = [p for p in problems if pc.any(p.mask).as_py()]
    if not problems:
        return None, []
    mask = problems[0].mask
    for p in problems[1:]:
        mask = pc.or_(mask, p.mask)
    idx = pc.indices_nonzero(mask)
    rows = batch.take(idx).to_pylist()
    flags = [p.mask.take(idx).to_pylist() for p in problems]
    numbers = lines.take(idx).to_pylist() if lines is not None else [None] * len(rows)
    problems_order = sorted(range(len(problems)), key=lambda i: _KIND_ORDER.index(problems[i].kind))
    out = []
    for j, row in enumerate(rows):
        n = row.pop("__rows", 1)
        found = [problems[i] for i in problems_order if flags[i][j]]
        said = "; ".join(f"{p.column} {_shown(row.get(p.column))} {p.what}" for p in found)
        at = f"{where} row {numbers[j]}: " if numbers[j] is not None else (f"{where}: " if where else "")
        alike = f" ({n} line items alike, summed)" if n != 1 else ""
        out.append(BadRecord(orjson.dumps(row, default=_json_default), found[0].kind, f"{at}{said}{alike}"))
    return mask, out


def _shown(v: Any) -> str:
    text = _json_default(v) if isinstance(v, bytes) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Normalized:
    """What :meth:`BillingDecoder.normalize` makes of a batch, per row."""

    ts: pa.Array  # epoch seconds (null: no parseable start)
    bad: pa.Array  # rows that cannot be used
    cost: pa.Array  # the configured measure, in the configured currency (linear in the value columns)
    qty: pa.Array  # usage quantity
    gpu_per_qty: pa.Array  # GPU-hours per unit of quantity (0 for lines that are not GPU instance time)
    dims: list[pa.DictionaryArray]  # in key_columns order (after ts)
    problems: list[Problem] = field(default_factory=list)  # why the bad rows are bad


class _Columns:
    """Look a batch's columns up by canonical name."""

    def __init__(self, batch: pa.RecordBatch | pa.Table, encode: bool = True):
        self.batch = batch
        self.names = {canonical_name(n): n for n in batch.schema.names}
        self._text: dict[str, pa.DictionaryArray] = {}
        self._numbers: dict[str, tuple[pa.Array, pa.Array | None]] = {}
        if encode and batch.num_rows >= 100_000:  # encode the text columns side by side (the kernels release the GIL)
            text = [n for n in batch.schema.names if _is_text(batch.schema.field(n).type)]
            self._text = dict(zip(text, _POOL.map(lambda n: _text(batch.column(n)), text), strict=True))

    def get(self, *candidates: str) -> Any:
        for c in candidates:
            n = self.names.get(c.lower())
            if n is not None:
                return self.batch.column(n)
        return None

    def text(self, *candidates: str) -> pa.DictionaryArray:
        for c in candidates:
            n = self.names.get(c.lower())
            if n is not None:
                hit = self._text.get(n)
                return hit if hit is not None else _text(self.batch.column(n))
        return _null_str(self.batch.num_rows)

    def number(self, *candidates: str) -> tuple[pa.Array, pa.Array | None] | None:
        """The first present column as float64 and its not-a-number mask (see :func:`_number`), parsed once."""
        for c in candidates:
            n = self.names.get(c.lower())
            if n is not None:
                hit = self._numbers.get(n)
                if hit is None:
                    hit = self._numbers[n] = _number(self.batch.column(n))
                return hit
        return None


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


_POOL = concurrent.futures.ThreadPoolExecutor(
    max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="billing"
)


_CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
_PRICING_CATEGORIES = ("Standard", "Committed", "Dynamic", "Other")


class BillingDecoder(Decoder):
    """Shared columnar pipeline; subclasses say where each field comes from (:meth:`fields`)."""

    tabular = True
    snapshot = True  # a file or a delivery replaces what the previous one said for its period
    provider: ClassVar[str | None] = None
    #: canonical column names that must be present (one of each tuple)
    required: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: canonical names of the columns a decoder may read (projection: the rest is never decoded)
    wanted: ClassVar[tuple[str, ...]] = ()
    currency_columns: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def emits(cls, cfg: BillingConfig) -> Emits:
        """Every format: the ``billing_*`` signals; the configured dimensions, tags and constants."""
        return Emits(frozenset(SIGNALS), frozenset({*cfg.dimensions, *cfg.tags, *cfg.constant_dimensions}))

    def __init__(self, cfg: BillingConfig, **_: Any):
        self.cfg = cfg
        self.dimensions = tuple(dict.fromkeys([*cfg.dimensions, *cfg.tags]))
        table = dict(gpu_instances())
        for k, v in cfg.gpu_instances.items():
            table[k] = (float(v), table.get(k, (0.0, ""))[1])
        self.gpus = {k: v[0] for k, v in table.items()}
        self.gpu_models = {k: v[1] for k, v in table.items()}
        self.currency = cfg.currency.upper()
        self.rates = {k.upper(): float(v) for k, v in cfg.exchange_rates.items()}
        self.key_columns = ("ts", *self.dimensions, *cfg.constant_dimensions)
        self.grouping_schema = pa.schema(
            [("ts", pa.int64())] + [(d, _DICT) for d in self.key_columns[1:]] + [(s, pa.float64()) for s in SIGNALS]
        )
        self.schema = pa.schema(
            [("ts", pa.int64())]
            + [(d, pa.string()) for d in self.key_columns[1:]]
            + [(s, pa.float64()) for s in SIGNALS]
        )

    # -- what to read ----------------------------------------------------------------------
    def for_columns(self, names: Sequence[str]) -> BillingDecoder:
        """The decoder for a file with these columns (this one; the ``billing`` decoder picks per file)."""
        return self

    def columns(self, names: Sequence[str]) -> list[str]:
        """The columns to read of a file with ``names``; raises :class:`DeliveryError` when required ones lack."""
        canon = {canonical_name(n): n for n in names}
        missing = [" or ".join(alts) for alts in self.required if not any(a in canon for a in alts)]
        if missing:
            raise DeliveryError(
                "missing_columns", f"not a {self.type_name} file: no column {', '.join(missing)} (has {len(names)})"
            )
        keep = set(self.wanted) | set(self.currency_columns)
        keep -= {c for c, dim in self.dimension_only.items() if dim not in self.dimensions}
        tag_cols = {canonical_name(n) for n in names if canonical_name(n).startswith(("resourcetags/", "tags"))}
        return [n for c, n in canon.items() if c in keep or c in tag_cols or c == "resource_tags"]

    # -- decoding --------------------------------------------------------------------------
    def fields(self, cols: _Columns) -> dict[str, Any]:
        """``ts``, ``cost`` (float64), ``quantity`` + ``hours_factor`` (GPU-hours), ``currency`` and dimensions."""
        raise NotImplementedError

    #: canonical name of the column that holds a line's start time
    time_column: ClassVar[str] = ""
    #: columns read only for one dimension (skipped when it is not configured: high cardinality)
    dimension_only: ClassVar[dict[str, str]] = {}
    #: canonical names of additive numeric columns (summed before any string work, see :meth:`pregroup`)
    value_columns: ClassVar[frozenset[str]] = frozenset()
    #: canonical names of every numeric column read (costs, prices, quantities): checked row by row
    number_columns: ClassVar[frozenset[str]] = frozenset()
    #: the quantity columns among them (no ``max_abs_cost`` limit: usage can be large)
    quantity_columns: ClassVar[frozenset[str]] = frozenset()

    def _pregroup_values(self, batch: pa.RecordBatch | pa.Table) -> list[str]:
        """The value columns to sum by :meth:`pregroup` (none: the batch is not pre-grouped)."""
        names = batch.schema.names
        values = [n for n in names if canonical_name(n) in self.value_columns]
        if not values or batch.num_rows < 1024 or "__rows" in names:
            return []
        if any(not _numeric(batch.schema.field(v).type) for v in values):
            return []
        return values

    def pregroup(self, batch: pa.RecordBatch | pa.Table) -> pa.Table | pa.RecordBatch:
        """Sum line items that agree on every other column first (on dictionary codes: fast), so the
        per-row string work below runs on distinct combinations, not on every line item.

        Only where every value column is numeric (Parquet; CSV is read as text and goes row by row).
        Tags are taken out of map columns into plain columns first; ``__rows`` counts line items.
        """
        values = self._pregroup_values(batch)
        if not values:
            return batch
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        cols = _Columns(table)
        for dim, key in self.cfg.tags.items():
            tag = self._tag(cols, key)
            if tag is not None:
                table = table.append_column(f"__tag_{dim}", tag)
        keys = [n for n in table.column_names if n not in values and not pa.types.is_nested(table.schema.field(n).type)]
        table = table.append_column("__rows", pa.array(np.ones(table.num_rows, dtype=np.int64)))
        out = table.group_by(keys, use_threads=True).aggregate([(v, "sum") for v in [*values, "__rows"]])
        return out.rename_columns([c[:-4] if c.endswith("_sum") else c for c in out.column_names])

    def number_problems(self, cols: _Columns) -> list[Problem]:
        """Per numeric column read: values that are not numbers, NaN or ±inf, and costs beyond ``max_abs_cost``."""
        out: list[Problem] = []
        limit = self.cfg.max_abs_cost
        for canon, name in cols.names.items():
            if canon not in self.number_columns:
                continue
            hit = cols.number(canon)
            if hit is None:
                continue
            values, not_number = hit
            if not_number is not None:
                out.append(Problem("bad_row", name, not_number.fill_null(False), "is not a number"))
            finite = pc.is_finite(values).fill_null(True)
            out.append(Problem("non_finite", name, pc.invert(finite), "is not finite"))
            if canon not in self.quantity_columns:
                absurd = pc.and_(finite, pc.greater(pc.abs(values), limit).fill_null(False))
                out.append(Problem("absurd_value", name, absurd, f"is beyond max_abs_cost {limit:g}"))
        return out

    def normalize(self, batch: pa.RecordBatch | pa.Table, check_numbers: bool = True) -> Normalized:
        """Per row: event time, the cost (linear in the value columns), the usage quantity, the
        GPU-hours per unit of quantity, and the dimension columns (dictionary-encoded, in
        ``key_columns`` order); the rows that cannot be used and why (numbers are checked unless
        ``check_numbers`` is false: pre-grouped sums were checked line by line before).
        Raises :class:`DeliveryError` for a currency without a rate."""
        n = batch.num_rows
        cols = _Columns(batch)
        f = self.fields(cols)
        ts = _epoch(f["ts"]) if f["ts"] is not None else pa.nulls(n, pa.int64())
        cost, _ = f["cost"]  # not-a-number rows are among the number problems below
        cost = cost.fill_null(0.0)
        # Currency: the configured one, or converted with a configured rate; anything else refuses the file.
        cur = f.get("currency")
        if cur is not None:
            cur = _on_values(cur, pc.utf8_upper)
            other = _row(cur, lambda v: pc.not_equal(v, self.currency)).fill_null(False)
            if pc.any(other).as_py():
                foreign = set(_plain(pc.filter(cur, other)).unique().to_pylist())
                unknown = sorted(str(c) for c in foreign if c not in self.rates)
                if unknown:
                    raise DeliveryError(
                        "currency",
                        f"billed in {', '.join(unknown)}, not {self.currency}: set exchange_rates or the currency",
                    )
                rate = _lookup(cur, {k: v for k, v in self.rates.items()}, pa.float64()).fill_null(1.0)
                cost = pc.multiply(cost, rate)
        # GPU-hours: hour-based instance usage × GPUs of the instance type (0 where either is unknown).
        itype = f.get("instance_type")
        if itype is None:
            itype = _null_str(n)
        gpus = _lookup(itype, self.gpus, pa.float64(), lower=True).fill_null(0.0)  # Azure ML writes sizes upper
        qty, _ = f["quantity"]
        dims = f["dims"]
        if "gpu_model" in self.dimensions:
            dims["gpu_model"] = _lookup(itype, self.gpu_models, pa.string(), lower=True)
        out_dims: list[pa.DictionaryArray] = []
        for d in self.dimensions:
            v = dims.get(d)
            if v is None and d in self.cfg.tags:
                v = self._tag(cols, self.cfg.tags[d])
                out_dims.append(_dim_out(v if v is not None else _null_str(n), UNTAGGED))
                continue
            out_dims.append(_dim_out(v if v is not None else _null_str(n)))
        for v in self.cfg.constant_dimensions.values():
            out_dims.append(_const(v, n))
        time_name = cols.names.get(self.time_column, self.time_column)
        problems = [Problem("bad_time", time_name, pc.is_null(ts), "is not a valid charge start time")]
        if check_numbers:
            problems += self.number_problems(cols)
        bad_mask = problems[0].mask
        for p in problems[1:]:
            bad_mask = pc.or_(bad_mask, p.mask)
        gpu_per_qty = pc.multiply(f["hours_factor"], gpus).fill_null(0.0)  # no usage unit: no GPU-hours
        return Normalized(ts, bad_mask, cost, qty.fill_null(0.0), gpu_per_qty, out_dims, problems)

    def _utf8(
        self, batch: pa.RecordBatch | pa.Table, lines: pa.Array | None, where: str
    ) -> tuple[pa.RecordBatch | pa.Table, pa.Array | None, list[BadRecord]]:
        """Binary columns (CSV is read as bytes) → text; rows with a value that is not UTF-8 are rejected."""
        names = batch.schema.names
        binary = [i for i, n in enumerate(names) if _is_binary(batch.schema.field(i).type)]
        if not binary:
            return batch, lines, []
        arrays = list(batch.columns)
        problems = []
        for i in binary:
            arrays[i], invalid = _as_utf8(arrays[i])
            if invalid is not None:
                problems.append(Problem("invalid_utf8", names[i], invalid, "is not UTF-8"))
        mask, bad = reject(batch, problems, lines, where)
        out: pa.RecordBatch | pa.Table = pa.Table.from_arrays(arrays, names=names)
        if mask is not None:
            keep = pc.invert(mask)
            out = out.filter(keep)
            lines = lines.filter(keep) if lines is not None else None
        return out, lines, bad

    def aggregate(
        self, batch: pa.RecordBatch | pa.Table, ctx: DecodeContext, lines: pa.Array | None = None, where: str = ""
    ) -> tuple[pa.Table, list[BadRecord]]:
        """One record batch → rows of (bucket, dimensions…, signals…) summed; the rows it could not use.

        ``lines`` numbers the batch's rows in their file (named ``where``) for the dead-letter reasons."""
        batch, lines, bad = self._utf8(batch, lines, where)
        grouped = batch
        if self._pregroup_values(batch):
            # Line by line before summing: one NaN or absurd line must not spoil the lines summed with it.
            mask, early = reject(batch, self.number_problems(_Columns(batch, encode=False)), lines, where)
            if mask is not None:
                batch = batch.filter(pc.invert(mask))
                bad += early
            grouped = self.pregroup(batch)
        nm = self.normalize(grouped, check_numbers=grouped is batch)
        mask, late = reject(grouped, nm.problems, lines if grouped is batch else None, where)
        bad += late
        bucket = int(ctx.bucket_seconds) or 3600
        ts = pc.multiply(pc.divide(nm.ts, bucket), bucket)  # integer division: the bucket's start
        gpu_hours = pc.multiply(nm.qty, nm.gpu_per_qty)
        gpu_cost = pc.if_else(pc.greater(nm.gpu_per_qty, 0.0), nm.cost, 0.0)
        table = pa.Table.from_arrays([ts, *nm.dims, nm.cost, gpu_hours, gpu_cost], schema=self.grouping_schema)
        if mask is not None:
            table = table.filter(pc.invert(mask))
        out = group(table, self.key_columns)
        return out.cast(self.schema) if out.num_rows else self.schema.empty_table(), bad

    def _tag(self, cols: _Columns, key: str) -> pa.Array | None:
        done = cols.get(*[f"__tag_{d}" for d, k in self.cfg.tags.items() if k == key])
        if done is not None:
            return _text(done)
        legacy = cols.get(f"resourcetags/{key}", f"resourcetags/user:{key}")
        if legacy is not None:
            return _text(legacy)
        col = cols.get("resource_tags", "tags")
        return _tag(col, key) if col is not None else None

    def decode_table(self, batch: Any, ctx: DecodeContext) -> Decoded:
        try:
            table, bad = self.aggregate(batch, ctx, where=ctx.location)
        except DeliveryError as exc:
            return [], [BadRecord(ctx.location.encode(), exc.kind, exc.reason)]
        return observations(table, self.key_columns), bad

    def decode_lines(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        raise TypeError(f"decoder {self.type_name!r} reads CSV or Parquet billing files, not lines")


def group(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Sum the signals per (bucket, dimensions); column order kept."""
    if table.num_rows == 0:
        return table
    out = table.group_by(list(keys), use_threads=True).aggregate([(s, "sum") for s in SIGNALS])
    return out.rename_columns([c[:-4] if c.endswith("_sum") else c for c in out.column_names]).select(
        list(table.column_names)
    )


def number_combinations(dims: list[pa.DictionaryArray], n: int) -> tuple[pa.Array, pa.Array]:
    """Number each of ``n`` rows' combination of dimension values: (code per row, first row of each code).

    Dictionary indices in a mixed radix, renumbered densely after each column (never overflows), so
    callers build one object per combination instead of one per row.
    """
    code: Any = pa.array(np.zeros(n, dtype=np.int64))
    for d in dims:
        size = max(1, len(d.dictionary))
        code = pc.add(pc.multiply(code, size), d.indices.cast(pa.int64()))
        distinct = pc.unique(code)  # renumber densely after each column: never overflows
        code = pc.index_in(code, value_set=distinct).cast(pa.int64())
    distinct = pc.unique(code)
    first = pc.index_in(distinct, value_set=code)
    return pc.index_in(code, value_set=distinct).cast(pa.int32()), first


def observations(table: pa.Table, key_columns: Sequence[str]) -> list[Observation]:
    """Grouped rows → observations (Python sees only aggregated rows; one cell built per distinct dims)."""
    n = table.num_rows
    if n == 0:
        return []
    dim_names = list(key_columns[1:])
    which, first = number_combinations([pc.dictionary_encode(table.column(d).combine_chunks()) for d in dim_names], n)
    combos = table.select(dim_names).take(first).to_pylist() if dim_names else [{}]
    cells = [cell(make_dims([(k, v) for k, v in row.items() if v]), SIGNALS) for row in combos]
    ts = table.column("ts").to_pylist()
    vals = zip(*(table.column(s).to_pylist() for s in SIGNALS), strict=True)
    return [Observation(float(t), cells[i], v) for t, i, v in zip(ts, which.to_pylist(), vals, strict=True)]


def _hours_factor(unit: pa.Array) -> pa.Array:
    """1 for an hour unit (``Hrs``, ``Hours``, ``1 Hour``), N for ``N Hours`` (Azure), 0 otherwise."""
    m = pc.extract_regex(pc.utf8_lower(unit), r"^\s*(?P<n>\d*)\s*(?:hours?|hrs?)\s*$")
    n = pc.struct_field(m, [0])
    factor = pc.if_else(pc.equal(n, ""), "1", n)
    return factor.cast(pa.float64()).fill_null(0.0)


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
