"""Reading one billing delivery: its files (Parquet through DuckDB, see :mod:`agent.decoders.billing.combinations`,
or in row-group batches; CSV or gzip CSV in blocks; only the columns the decoder needs) folded into one table of
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
from agent.decoders.billing.base import BillingDecoder, DeliveryError, group
from agent.decoders.billing.combinations import read_parquet

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
            done = read_parquet(path, decoder, ctx, name)
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
