"""Columnar helpers shared by the billing decoders: dictionary-encoded text, numbers, times, tags and
lookups in pyarrow, row problems and the column view of a record batch (no Python loop per row)."""

from __future__ import annotations

import concurrent.futures
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from agent.decoders.base import BadRecord


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


# Instance types in usage types and SKU details (FOCUS x_UsageType, CUR line_item_usage_type, Azure ServiceType).
_AWS_INSTANCE = (
    r"(?:BoxUsage|SpotUsage|DedicatedUsage|HostUsage|UnusedBox|ReservedHostUsage):(?P<t>[a-z0-9-]+\.[a-z0-9]+)"
)
# SageMaker instance time: <region>-<component>:ml.<EC2 type> (Train, Host, Notebk, Processing, Cluster …;
# its storage is <region>-<component>:VolumeUsage.gp2, no ml.).
_SAGEMAKER_INSTANCE = r":(?P<t>ml\.[a-z0-9-]+\.[a-z0-9]+)"
# EC2 instance usage names its type: ``USE1-BoxUsage:g5.xlarge``, ``SpotUsage:p4d.24xlarge`` (an export without the
# product_instance_type column still has its GPUs).
_EC2_INSTANCE = r"(?:Box|Spot|Dedicated|Host)Usage:(?P<t>[a-z][a-z0-9-]*\.[a-z0-9]+)"
_AZURE_SERVICE_TYPE = r'"ServiceType"\s*:\s*"(?P<t>(?i:Standard|Basic)_[^"]+)"'


def _regex_first(arr: pa.DictionaryArray, pattern: str) -> pa.DictionaryArray:
    d = _on_values(arr, lambda v: pc.struct_field(pc.extract_regex(v, pattern), [0]))
    return _on_values(d, lambda v: pc.if_else(pc.equal(v, ""), pa.scalar(None, pa.string()), v))
