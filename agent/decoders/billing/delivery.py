"""Reading one billing delivery: its files (Parquet through DuckDB — see :func:`_parquet_by_combination` — or in
row-group batches; CSV or gzip CSV in blocks; only the columns the decoder needs) folded into one table of
(bucket, dimensions…, signals…) rows, re-grouping as it goes so memory follows the number of cells, not of line
items. Any file that cannot be read whole refuses the delivery (:class:`~agent.decoders.billing.base.DeliveryError`):
a partial delivery is never applied.
"""

from __future__ import annotations

import datetime
import importlib.util
import logging
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.billing.arrow import _POOL, _numeric, canonical_name
from agent.decoders.billing.base import (
    SIGNALS,
    BillingDecoder,
    DeliveryError,
    group,
    number_combinations,
)

log = logging.getLogger(__name__)

_HAVE_DUCKDB = importlib.util.find_spec("duckdb") is not None
_REGROUP_ROWS = 2_000_000  # fold partial aggregates once they hold this many rows (then twice the cells)


@dataclass
class Delivery:
    """One complete, readable delivery of one billing period (what the pipeline applies)."""

    key: str  # the billing period (or file) within its source
    delivery: str  # the export's execution / run id (or the file's mtime and size)
    table: pa.Table
    rows: int  # line items read
    files: list[str] = field(default_factory=list)
    settle_seconds: float = 0.0  # the newest buckets are incomplete for this long

    @property
    def coverage_end(self) -> float:
        """End of the newest bucket the delivery has data for (``-inf`` when empty)."""
        if self.table.num_rows == 0:
            return float("-inf")
        return float(pc.max(self.table.column("ts")).as_py())


def format_of(name: str) -> str:
    n = name.lower()
    if n.endswith(".gz"):
        n = n[:-3]
    if n.endswith((".parquet", ".pq", ".snappy.parquet")):
        return "parquet"
    return "csv"


def _csv_batches(
    path: str, decoder: BillingDecoder, name: str, ragged: list[BadRecord]
) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
    """A CSV file in blocks, with each row's number in the file (the header is row 1).

    Every column is read as bytes: ids keep their leading zeros, one odd value never re-types a
    column, and the decoder checks UTF-8 per value (a bad byte costs its row, not the file). A row
    with too few or too many fields is skipped by the parser and dead-lettered (into ``ragged``)."""
    compression = "gzip" if path.lower().endswith(".gz") else None
    # One thread: the parser then numbers the rows it skips (row numbers of the rows kept follow).
    read = pacsv.ReadOptions(block_size=8 << 20, use_threads=False)
    skipped: list[int] = []

    def on_ragged(row: Any) -> str:
        number = row.number
        ragged.append(
            BadRecord(
                row.text.encode(),
                "ragged_row",
                f"{name} row {number if number is not None else '?'}: {row.actual_columns} fields, "
                f"the header has {row.expected_columns}",
            )
        )
        if number is not None:
            skipped.append(number)
        return "skip"

    parse = pacsv.ParseOptions(invalid_row_handler=on_ragged)
    with pa.input_stream(path, compression=compression) as head:
        names = pacsv.open_csv(
            head, read_options=read, parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _: "skip")
        ).schema.names
    wanted = decoder.columns(names)
    conv = pacsv.ConvertOptions(include_columns=wanted, column_types={n: pa.binary() for n in wanted})
    first = 2  # the next row kept is the first row at or after this one that was not skipped
    with pa.input_stream(path, compression=compression) as src:
        for batch in pacsv.open_csv(src, read_options=read, parse_options=parse, convert_options=conv):
            n = batch.num_rows
            gaps = np.array(sorted(k for k in skipped if k >= first), dtype=np.int64)
            candidates = np.arange(first, first + n + len(gaps), dtype=np.int64)
            numbers = candidates[~np.isin(candidates, gaps)][:n]
            if n:
                first = int(numbers[-1]) + 1
            skipped[:] = [k for k in skipped if k >= first]
            yield batch, pa.array(numbers)


def _parquet_batches(path: str, decoder: BillingDecoder) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
    schema = pq.read_schema(path)
    wanted = decoder.columns(schema.names)
    # Text columns as dictionaries (as Parquet stores them): grouping runs on their codes.
    text = [
        n for n in wanted if pa.types.is_string(schema.field(n).type) or pa.types.is_large_string(schema.field(n).type)
    ]
    pf = pq.ParquetFile(path, read_dictionary=text)
    first = 1
    for batch in pf.iter_batches(batch_size=1 << 20, columns=wanted):
        yield batch, pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64))
        first += batch.num_rows


def _parquet_by_combination(
    path: str, decoder: BillingDecoder, ctx: DecodeContext, name: str = ""
) -> tuple[pa.Table, list[BadRecord], int] | None:
    """A Parquet file in two passes that never touch a line item from Python or pyarrow:

    1. DuckDB lists the distinct combinations of every raw column the decoder reads (a few
       thousand in a month: accounts × services × usage types …), each named by its hash;
    2. the decoder normalises the *combinations* (the same code as for any batch), once per value
       column set to 1, which gives each combination its dimensions (numbered) and the
       coefficients that turn its values into cost, GPU-hours and GPU cost (all linear in them);
    3. DuckDB sums ``value × coefficient`` per (bucket, numbered dimensions), the coefficients
       joined in on the hash, over the line items whose numbers are readable (the decoder's rule:
       finite, costs within ``max_abs_cost``); the others (few) are fetched with their row numbers
       and dead-lettered one by one.

    None where this does not apply (no value columns, a text time column): read batch by batch.
    """
    import duckdb

    schema = pq.read_schema(path)
    dec = decoder.for_columns(schema.names)
    wanted = dec.columns(schema.names)
    canon = {canonical_name(n): n for n in wanted}
    tcol = canon.get(dec.time_column)
    values = [n for n in wanted if canonical_name(n) in dec.value_columns and _numeric(schema.field(n).type)]
    if tcol is None or not values or not pa.types.is_timestamp(schema.field(tcol).type):
        return None
    keys = [n for n in wanted if n not in values and n != tcol and not pa.types.is_nested(schema.field(n).type)]
    tag_exprs = []
    for dim, key in dec.cfg.tags.items():
        expr = _duckdb_tag(schema, key)
        if expr is not None:
            tag_exprs.append((expr, "__tag_" + dim))
    b = int(ctx.bucket_seconds) or 3600
    raw = [_q(k) for k in keys] + [e for e, _ in tag_exprs]
    named = [_q(k) for k in keys] + [f"{e} AS {_q(alias)}" for e, alias in tag_exprs]
    # A combination is named by the 64-bit hash of its raw values; the list of distinct combinations
    # shows whether two of them share a hash (then the file is read batch by batch instead).
    source = f"read_parquet('{path.replace(chr(39), chr(39) * 2)}')"
    aliases = [_q(k) for k in keys] + [_q(alias) for _, alias in tag_exprs]
    with duckdb.connect(config={"threads": os.cpu_count() or 1}) as con:
        combos = con.sql(
            f"SELECT hash({', '.join(aliases)}) AS __h, * FROM (SELECT DISTINCT {', '.join(named)} FROM {source})"
        ).to_arrow_table()
        hashes = combos.column("__h").combine_chunks()
        if len(hashes) != len(pc.unique(hashes)):
            return None  # two combinations share a hash (odds ~1e-12): the exact batch-by-batch path
        combos = combos.drop(["__h"])
        m = combos.num_rows
        # Coefficients: the decoder on each combination with one value column at 1, the others at 0.
        coef: dict[str, Any] = {"__h": hashes}
        base = None
        for i, v in enumerate(values):
            unit = combos
            for w in values:
                unit = unit.append_column(w, pa.array(np.full(m, 1.0 if w == v else 0.0)))
            nm = dec.normalize(unit)
            base = base or nm
            coef[f"c{i}"], coef[f"q{i}"] = nm.cost, nm.qty
        if base is None:
            return None
        nid, first = number_combinations(base.dims, combos.num_rows)
        coef["nid"], coef["g"] = nid, base.gpu_per_qty
        con.register("__coef", pa.table(coef))
        cost = " + ".join(f"coalesce(s.{_q(v)}, 0) * k.c{i}" for i, v in enumerate(values))
        qty = " + ".join(f"coalesce(s.{_q(v)}, 0) * k.q{i}" for i, v in enumerate(values))
        ok = _readable_sql(dec, values)
        # 3. Per (bucket, normalised dimensions): the coefficients joined in on the hash (a few
        # thousand rows to probe), the sums taken once, over readable line items only.
        sums = con.sql(
            f"SELECT s.__bucket AS ts, k.nid AS nid, SUM({cost}) FILTER (WHERE s.__ok) AS a, "
            f"SUM(({qty}) * k.g) FILTER (WHERE s.__ok) AS b, "
            f"SUM(CASE WHEN k.g > 0 THEN {cost} ELSE 0 END) FILTER (WHERE s.__ok) AS c, "
            f"COUNT(*) FILTER (WHERE s.__ok) AS n, COUNT(*) FILTER (WHERE NOT s.__ok) AS nbad, "
            f"COUNT(k.nid) AS matched, COUNT(*) AS groups "
            f"FROM (SELECT (epoch({_q(tcol)})::BIGINT // {b}) * {b} AS __bucket, hash({', '.join(raw)}) AS __h, "
            f"{', '.join(_q(v) for v in values)}, {ok} AS __ok FROM {source}) s "
            f"LEFT JOIN __coef k ON s.__h = k.__h GROUP BY ALL"
        ).to_arrow_table()
        bad: list[BadRecord] = []
        where = name or os.path.basename(path)
        if pc.sum(sums.column("nbad")).as_py():
            unread = con.sql(
                f"SELECT file_row_number + 1 AS __row, {', '.join(_q(n) for n in wanted)} "
                f"FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}', file_row_number = true) "
                f"WHERE NOT ({ok}) ORDER BY 1"
            ).to_arrow_table()
            bad = _unreadable_rows(dec, values, unread, where)
    if pc.sum(sums.column("matched")).as_py() != pc.sum(sums.column("groups")).as_py():
        raise DeliveryError("corrupt_file", f"{os.path.basename(path)}: changed while it was read")
    rows = int(pc.sum(sums.column("n")).as_py() or 0) + int(pc.sum(sums.column("nbad")).as_py() or 0)
    sums = sums.filter(pc.greater(sums.column("n"), 0))  # cells whose every line item was unreadable
    no_time = pc.is_null(sums.column("ts"))
    if pc.any(no_time).as_py():
        for r, n in zip(
            combos.take(first.take(pc.filter(sums.column("nid"), no_time))).to_pylist(),
            pc.filter(sums.column("n"), no_time).to_pylist(),
            strict=True,
        ):
            reason = f"{where}: {tcol} is not a valid charge start time ({n} line items alike, summed)"
            bad.append(BadRecord(orjson.dumps(r, default=str), "bad_time", reason))
        sums = sums.filter(pc.invert(no_time))
    out_nid = sums.column("nid").combine_chunks()
    cols: dict[str, Any] = {"ts": sums.column("ts").cast(pa.int64())}
    names = dec.key_columns[1:]
    taken = _POOL.map(lambda d: d.take(first).cast(pa.string()).take(out_nid), base.dims)  # side by side
    cols.update(zip(names, taken, strict=True))
    cols.update({SIGNALS[0]: sums.column("a"), SIGNALS[1]: sums.column("b"), SIGNALS[2]: sums.column("c")})
    return pa.table(cols, schema=dec.schema), bad, rows


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _readable_sql(dec: BillingDecoder, values: list[str]) -> str:
    """SQL true for a line item whose numbers the decoder can read (empty = 0): finite quantities,
    and finite costs within ``max_abs_cost`` (as :meth:`BillingDecoder.number_problems` says)."""
    limit = repr(float(dec.cfg.max_abs_cost))
    conds = []
    for v in values:
        x = f"coalesce({_q(v)}::DOUBLE, 0)"
        conds.append(f"isfinite({x})")  # (NaN compares inconsistently in DuckDB: tested on its own)
        if canonical_name(v) not in dec.quantity_columns:
            conds.append(f"abs({x}) <= {limit}")
    return "(" + " AND ".join(conds) + ")"


def _unreadable_rows(dec: BillingDecoder, values: list[str], rows: pa.Table, where: str) -> list[BadRecord]:
    """The line items :func:`_readable_sql` left out, one :class:`BadRecord` each (few: Python is fine)."""
    limit = dec.cfg.max_abs_cost
    out = []
    for r in rows.to_pylist():
        number = r.pop("__row")
        found = []
        for v in values:
            x = r.get(v)
            if x is None:
                continue
            f = float(x)
            if not math.isfinite(f):
                found.append(("non_finite", f"{v} {f!r} is not finite"))
            elif canonical_name(v) not in dec.quantity_columns and abs(f) > limit:
                found.append(("absurd_value", f"{v} {f!r} is beyond max_abs_cost {limit:g}"))
        kind = found[0][0] if found else "bad_row"
        reason = f"{where} row {number}: " + "; ".join(text for _, text in found)
        out.append(BadRecord(orjson.dumps(r, default=str), kind, reason))
    return out


def _duckdb_tag(schema: pa.Schema, key: str) -> str | None:
    names = {canonical_name(n): n for n in schema.names}
    for legacy in (f"resourcetags/{key}", f"resourcetags/user:{key}"):
        if legacy in names:
            return _q(names[legacy])
    col = names.get("resource_tags") or names.get("tags")
    if col is None:
        return None
    lit = "'" + key.replace("'", "''") + "'"
    if pa.types.is_map(schema.field(col).type):
        return f"map_extract_value({_q(col)}, {lit})"
    pattern = "'\"" + re.escape(key).replace("'", "''") + '"\\s*:\\s*"([^"]*)"' + "'"
    return f"NULLIF(regexp_extract({_q(col)}, {pattern}, 1), '')"


def read_file(
    path: str, decoder: BillingDecoder, ctx: DecodeContext, fmt: str | None = None, name: str | None = None
) -> tuple[pa.Table, list[BadRecord], int]:
    """One billing file → (grouped table, rows it could not use, line items read).

    Row-level problems (a ragged CSV row, a value that is not UTF-8, an unreadable number or date)
    cost their rows, which come back as bad records naming the file (``name``, default the path's
    base name) and row; a file that cannot be read to its end (truncated, corrupt) or lacks the
    format's columns raises :class:`DeliveryError`."""
    fmt = fmt or format_of(path)
    name = name or os.path.basename(path)
    if fmt == "parquet" and _HAVE_DUCKDB:
        try:
            done = _parquet_by_combination(path, decoder, ctx, name)
        except DeliveryError:
            raise
        except Exception as exc:  # duckdb.Error and friends: a file DuckDB cannot read whole
            raise DeliveryError("corrupt_file", f"{name}: unreadable: {exc}") from None
        if done is not None:
            return in_range(done, ctx, name)
    ragged: list[BadRecord] = []
    batches = _parquet_batches(path, decoder) if fmt == "parquet" else _csv_batches(path, decoder, name, ragged)
    acc = _Fold(decoder)
    rows = 0
    try:
        for batch, lines in batches:
            rows += batch.num_rows
            table, bad = decoder.aggregate(batch, ctx, lines, name)
            acc.add(table, bad)
    except DeliveryError:
        raise
    except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
        # Cut off, corrupt, or a column of a type no bill has: the file is refused whole.
        raise DeliveryError("corrupt_file", f"{name}: unreadable after {rows} rows: {exc}") from None
    acc.add(decoder.schema.empty_table(), ragged)
    return in_range((acc.result(), acc.bad, rows + len(ragged)), ctx, name)


def in_range(
    read: tuple[pa.Table, list[BadRecord], int], ctx: DecodeContext, name: str
) -> tuple[pa.Table, list[BadRecord], int]:
    """Hours outside the accepted event-time range (``pipeline.max_age_days`` / ``max_future_seconds``
    from the wall clock; a backtest's from its input) are set aside: a 1970 charge line must not open
    a 1970 window. Each such hour's cell (its line items summed) is one bad record."""
    table, bad, rows = read
    if table.num_rows == 0 or (ctx.min_ts == -math.inf and ctx.max_ts == math.inf):
        return read
    ts = table.column("ts")
    lo = ctx.min_ts if math.isfinite(ctx.min_ts) else -(2**62)
    hi = ctx.max_ts if math.isfinite(ctx.max_ts) else 2**62
    out = pc.or_(pc.less(ts, int(math.floor(lo))), pc.greater(ts, int(math.ceil(hi))))
    if not pc.any(out).as_py():
        return read
    for cell in table.filter(out).to_pylist():
        when = datetime.datetime.fromtimestamp(cell["ts"], datetime.UTC).strftime("%Y-%m-%dT%H:%MZ")
        reason = f"{name}: charge hour {when} is outside the accepted range (its line items summed)"
        bad.append(BadRecord(orjson.dumps(cell, default=str), "timestamp_out_of_range", reason))
    return table.filter(pc.invert(out)), bad, rows


class _Fold:
    """Partial aggregates folded together while reading (memory follows cells, not line items)."""

    def __init__(self, decoder: BillingDecoder):
        self.decoder = decoder
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.bad: list[BadRecord] = []
        self.limit = _REGROUP_ROWS

    def add(self, table: pa.Table, bad: list[BadRecord] | None = None) -> None:
        if table.num_rows:
            self.parts.append(table)
            self.rows += table.num_rows
        if bad:
            self.bad.extend(bad)
        if self.rows > self.limit and len(self.parts) > 1:
            folded = self.result()
            self.parts, self.rows = [folded], folded.num_rows
            self.limit = max(self.limit, 2 * folded.num_rows)  # amortised: each row is folded O(1) times

    def result(self) -> pa.Table:
        if not self.parts:
            return self.decoder.schema.empty_table()
        if len(self.parts) == 1:
            return self.parts[0]
        return group(pa.concat_tables(self.parts), self.decoder.key_columns)


def read_delivery(
    files: list[tuple[str, str]], decoder: BillingDecoder, ctx: DecodeContext
) -> tuple[pa.Table, list[BadRecord], int]:
    """Every file of a delivery (``(local path, name)`` pairs) → one grouped table; any unreadable file refuses it."""
    fold = _Fold(decoder)
    rows = 0
    for path, name in files:
        try:
            table, bad, n = read_file(path, decoder, ctx, format_of(name), name)
        except DeliveryError as exc:
            raise DeliveryError(exc.kind, f"{name}: {exc.reason}") from None
        rows += n
        fold.add(table, bad)
    return fold.result(), fold.bad, rows
