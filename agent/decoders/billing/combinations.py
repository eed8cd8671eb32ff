"""A Parquet billing file through DuckDB, by raw combination, never touching a line item from Python or pyarrow:

1. DuckDB lists the distinct combinations of every raw column the decoder reads (a few thousand in a
   month: accounts × services × usage types …), each named by its 64-bit hash;
2. the decoder normalises the *combinations* (the same code as for any batch), once per value column set
   to 1, which gives each combination its dimensions (numbered) and the coefficients that turn its values
   into cost, GPU-hours and GPU cost (all linear in them);
3. DuckDB sums ``value × coefficient`` per (bucket, numbered dimensions, readable), the coefficients joined
   in on the hash; line items whose numbers the decoder cannot read (not finite, a cost beyond
   ``max_abs_cost``: few) are summed apart, then fetched with their row numbers and dead-lettered one by one;
   each cell's dimension text is joined in by number, in DuckDB too.

Billing exports are restated several times a day with the same combinations: the decoder keeps what steps 1
and 2 found (:class:`~agent.decoders.billing.cache.CombinationCache`, per source) and the next file with the
same columns under the same configuration goes straight to step 3 — one scan. Step 3 tells whether every line
item's combination was known (no row summed without a dimension number); when one was not, the file is read
as a first one (steps 1–3, the new combinations normalised and added), and the next file under that key lists
its combinations first as long as a read finds new ones. Either way a file gives the same cells with the same
sums as a first read of it: each cell sums the same line items with the same per-combination coefficients.
The one thing a warm read cannot check is that a combination it never listed does not share its 64-bit hash
with a known one (odds about ``new × known / 2**64`` per file); a listing checks every combination it sees.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Hashable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.billing.arrow import _numeric, canonical_name
from agent.decoders.billing.base import BillingDecoder, DeliveryError, number_combinations
from agent.decoders.billing.cache import CombinationCache, Known

log = logging.getLogger(__name__)


def read_parquet(
    path: str, decoder: BillingDecoder, ctx: DecodeContext, name: str = ""
) -> tuple[pa.Table, list[BadRecord], int] | None:
    """One Parquet file → (cells, bad records, line items); None where this does not apply (no value
    columns, a text time column, two combinations sharing a hash): the caller reads batch by batch."""
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
    aliases = [_q(k) for k in keys] + [_q(alias) for _, alias in tag_exprs]
    source = f"read_parquet('{path.replace(chr(39), chr(39) * 2)}')"
    ok = _readable_sql(dec, values)
    scan = (
        f"SELECT (epoch_us({_q(tcol)}) // 1000000 // {b}) * {b} AS __bucket, hash({', '.join(raw)}) AS __h, "
        f"{', '.join(_q(v) for v in values)}, {ok} AS __ok FROM {source}"
    )
    cache: CombinationCache = decoder.combinations
    ckey = _cache_key(dec, schema, keys, tag_exprs, values)
    known = cache.get(ckey)
    with duckdb.connect(config={"threads": os.cpu_count() or 1}) as con:
        sums = None
        if known is not None and known.try_warm:
            used = known
            sums = _sum(con, scan, used, values)
            if _all_known(sums):
                cache.warm += 1
                log.debug("%s: one scan, every combination known (%d kept)", path, len(used))
            else:
                cache.missed += 1
                log.debug("%s: a line item's combination was not known: listing them", path)
                sums = None
        if sums is None:
            if known is None or not known.try_warm:
                cache.cold += 1
            # The distinct combinations, each named by the hash of its raw values (as the sums compute it).
            found = con.sql(
                f"SELECT hash({', '.join(aliases)}) AS __h, * FROM (SELECT DISTINCT {', '.join(named)} FROM {source})"
            ).to_arrow_table()
            merged = _merge(dec, known, found, values, cache.max_combinations)
            if merged is None:
                cache.drop(ckey)
                return None  # two combinations share a hash (odds ~1e-12): the exact batch-by-batch path
            sums = _sum(con, scan, merged, values)
            if not _all_known(sums):
                raise DeliveryError("corrupt_file", f"{os.path.basename(path)}: changed while it was read")
            cache.put(ckey, merged)
            used = merged
        bad: list[BadRecord] = []
        where = name or os.path.basename(path)
        readable = sums.column("ok")
        nbad = int(pc.sum(pc.filter(sums.column("n"), pc.invert(readable))).as_py() or 0)
        if nbad:
            unread = con.sql(
                f"SELECT file_row_number + 1 AS __row, {', '.join(_q(n) for n in wanted)} "
                f"FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}', file_row_number = true) "
                f"WHERE NOT ({ok}) ORDER BY 1"
            ).to_arrow_table()
            bad = _unreadable_rows(dec, values, unread, where)
        rows = int(pc.sum(sums.column("n")).as_py() or 0)
        no_time = pc.and_(readable, pc.is_null(sums.column("ts")))  # (the sums of unreadable line items: unused)
        if pc.any(no_time).as_py():
            for r, n in zip(
                used.combos.take(used.first.take(pc.filter(sums.column("nid"), no_time))).to_pylist(),
                pc.filter(sums.column("n"), no_time).to_pylist(),
                strict=True,
            ):
                reason = f"{where}: {tcol} is not a valid charge start time ({n} line items alike, summed)"
                bad.append(BadRecord(orjson.dumps(r, default=str), "bad_time", reason))
        cells = _cells(con, sums, used, dec)
    return cells, bad, rows


def _cells(con: Any, sums: pa.Table, known: Known, dec: BillingDecoder) -> pa.Table:
    """The readable sums with a start time, each with its dimensions' text (joined in by number). In DuckDB: its
    output buffers come from memory its aggregation just freed, where pyarrow's gather of the text of a month's
    cells (1.3M) faulted in fresh memory, 2-4× the time on the machine measured."""
    dims = {"__nid": pa.array(np.arange(len(known.first), dtype=np.int32))}
    dims.update({f"d{i}": d for i, d in enumerate(known.by_nid)})
    con.register("__sums", sums)
    con.register("__dims", pa.table(dims))
    try:
        select = ["s.ts", *(f"d.d{i}" for i in range(len(known.by_nid))), "s.a", "s.b", "s.c"]
        out = con.sql(
            f"SELECT {', '.join(select)} FROM __sums s JOIN __dims d ON s.nid = d.__nid WHERE s.ok AND s.ts IS NOT NULL"
        ).to_arrow_table()
    finally:
        con.unregister("__sums")
        con.unregister("__dims")
    return pa.Table.from_arrays(out.columns, names=dec.schema.names).cast(dec.schema)


def _cache_key(
    dec: BillingDecoder, schema: pa.Schema, keys: list[str], tags: list[tuple[str, str]], values: list[str]
) -> Hashable:
    """What the combinations and their normalisation depend on: the decoder (its type and whole configuration —
    dimensions, tags, cost measure, currency and rates, GPU table — and the GPU table it built) and the columns."""
    return (
        type(dec).__qualname__,
        dec.cfg.model_dump_json(),
        tuple(sorted(dec.gpus.items())),
        tuple(sorted(dec.gpu_models.items())),
        tuple((n, str(schema.field(n).type)) for n in (*keys, *values)),
        tuple(tags),
    )


def _normalise(dec: BillingDecoder, combos: pa.Table, hashes: np.ndarray, values: list[str]) -> Known:
    """The decoder on each combination with one value column at 1, the others at 0: the coefficients."""
    m = combos.num_rows
    cost = np.zeros((len(values), m))
    qty = np.zeros((len(values), m))
    base = None
    for i, v in enumerate(values):
        unit = combos
        for w in values:
            unit = unit.append_column(w, pa.array(np.full(m, 1.0 if w == v else 0.0)))
        nm = dec.normalize(unit)
        base = base or nm
        cost[i], qty[i] = _np(nm.cost), _np(nm.qty)
    assert base is not None
    dims = [_plain_text(d) for d in base.dims]
    return Known(combos, hashes, cost, qty, _np(base.gpu_per_qty), dims)


def _merge(dec: BillingDecoder, known: Known | None, found: pa.Table, values: list[str], limit: int) -> Known | None:
    """The combinations a listing ``found`` added to those ``known`` (normalised: only the new ones); None when
    two of them share a hash. A combination known under the same hash must have the same raw values."""
    hashes = _np(found.column("__h")).astype(np.uint64)
    if len(np.unique(hashes)) != len(hashes):
        return None
    found = found.drop(["__h"])
    if known is not None and found.schema.equals(known.combos.schema):
        seen = np.isin(hashes, known.hashes)
        if seen.any():
            at = pc.index_in(pa.array(hashes[seen]), value_set=pa.array(known.hashes))
            if not found.filter(pa.array(seen)).equals(known.combos.take(at)):
                known = None  # a new combination shares a known one's hash: start again from this file
        if known is not None:
            if seen.all():
                known.try_warm = True  # every combination was known: the next file tries one scan
                return known
            if len(known) + int((~seen).sum()) <= limit:
                part = _normalise(dec, found.filter(pa.array(~seen)), hashes[~seen], values)
                both = Known(
                    pa.concat_tables([known.combos, part.combos]).combine_chunks(),
                    np.concatenate([known.hashes, part.hashes]),
                    np.concatenate([known.cost, part.cost], axis=1),
                    np.concatenate([known.qty, part.qty], axis=1),
                    np.concatenate([known.gpu, part.gpu]),
                    [pa.concat_arrays([a, b]) for a, b in zip(known.dims, part.dims, strict=True)],
                    try_warm=False,  # this file had new combinations: the next one lists its own first
                )
                return numbered(both)
        out = _normalise(dec, found, hashes, values)
        out.try_warm = False
        return numbered(out)
    return numbered(_normalise(dec, found, hashes, values))


def numbered(known: Known) -> Known:
    """Each combination's dimensions numbered (one number per distinct set of dimension values)."""
    nid, first = number_combinations([pc.dictionary_encode(d) for d in known.dims], len(known))
    known.nid, known.first = nid, first
    known.by_nid = [d.take(first) for d in known.dims]
    return known


def _sum(con: Any, scan: str, known: Known, values: list[str]) -> pa.Table:
    """Step 3: per (bucket, dimension number, readable): cost, GPU-hours, GPU cost and line items. Only the
    value columns with a coefficient other than 0 are multiplied (``x × 0`` adds nothing to a sum)."""
    coef: dict[str, Any] = {"__h": pa.array(known.hashes, pa.uint64()), "nid": known.nid}
    gpu_hours = known.qty * known.gpu
    gpu_cost = np.where(known.gpu > 0, known.cost, 0.0)
    exprs = []
    for prefix, per_value in (("c", known.cost), ("h", gpu_hours), ("g", gpu_cost)):
        terms = []
        for i, v in enumerate(values):
            if np.any(per_value[i] != 0):  # (NaN counts as a coefficient)
                coef[f"{prefix}{i}"] = per_value[i]
                terms.append(f"coalesce(s.{_q(v)}, 0) * k.{prefix}{i}")
        exprs.append(" + ".join(terms) or "0::DOUBLE")
    con.register("__coef", pa.table(coef))
    try:
        return con.sql(
            f"SELECT s.__bucket AS ts, k.nid AS nid, s.__ok AS ok, SUM({exprs[0]}) AS a, SUM({exprs[1]}) AS b, "
            f"SUM({exprs[2]}) AS c, COUNT(*) AS n FROM ({scan}) s LEFT JOIN __coef k ON s.__h = k.__h GROUP BY ALL"
        ).to_arrow_table()
    finally:
        con.unregister("__coef")


def _all_known(sums: pa.Table) -> bool:
    """Whether every line item's combination had a number (a row without one is summed under none)."""
    return not pc.any(pc.is_null(sums.column("nid"))).as_py()


def _np(arr: Any) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _plain_text(arr: Any) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.string())


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _readable_sql(dec: BillingDecoder, values: list[str]) -> str:
    """SQL true for a line item whose numbers the decoder can read (empty = 0): finite quantities,
    and finite costs within ``max_abs_cost`` (as :meth:`BillingDecoder.number_problems` says).

    ``isfinite`` on every column: NaN compares inconsistently in DuckDB (``abs(x) <= limit`` alone is
    folded to true where the column's Parquet min/max, which leave NaN out, lie within the limit)."""
    limit = repr(float(dec.cfg.max_abs_cost))
    conds = []
    for v in values:
        x = f"coalesce({_q(v)}::DOUBLE, 0)"
        conds.append(f"isfinite({x})")
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
