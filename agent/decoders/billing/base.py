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

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from agent.decoders.base import BadRecord, DecodeContext, Decoded, Decoder, Emits
from agent.decoders.billing.arrow import (
    _DICT,
    Normalized,
    Problem,
    _as_utf8,
    _Columns,
    _const,
    _dim_out,
    _epoch,
    _is_binary,
    _lookup,
    _null_str,
    _numeric,
    _on_values,
    _plain,
    _row,
    _tag,
    _text,
    canonical_name,
    reject,
)
from agent.decoders.billing.cache import CombinationCache
from agent.model import UNTAGGED, Observation, cell, make_dims
from agent.registry import ComponentConfig

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
        # The raw combinations of the Parquet files read last, normalised (a restated delivery: one DuckDB scan).
        self.combinations = CombinationCache()
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
