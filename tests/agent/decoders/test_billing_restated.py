"""A restated Parquet delivery read through the decoder's combination cache gives exactly what a first read of
the same file gives: the same cells, sums, bad records and line-item count, whether its combinations were all
known (one DuckDB scan), some were new (listed, normalised and summed again), or the cache was cut short."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import agent.decoders  # noqa: F401  (registration)
from agent.decoders.base import DecodeContext
from agent.decoders.billing.auto import AutoBillingConfig, AutoBillingDecoder
from agent.decoders.billing.base import BillingDecoder, CurConfig, FocusConfig
from agent.decoders.billing.cache import CombinationCache
from agent.decoders.billing.combinations import _cache_key
from agent.decoders.billing.cur import CurDecoder
from agent.decoders.billing.delivery import read_file
from agent.decoders.billing.focus import FocusDecoder
from scripts import billing_data

CTX = DecodeContext("t", bucket_seconds=3600)
CONFIGS = [
    CurConfig(type="cur"),
    CurConfig(
        type="cur",
        cost="amortized",
        tags={"team": "user:team"},
        dimensions=["service", "instance_type", "pricing_category", "charge_category", "gpu_model", "region"],
    ),
]


def _month(rows: int = 30_000, seed: int = 7) -> pa.Table:
    return billing_data.table(rows, month="2026-10", hours=48, seed=seed)


def _set(table: pa.Table, name: str, values: object) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, pa.array(values, table.schema.field(i).type))


def _restated(table: pa.Table, new: bool) -> pa.Table:
    """The same period delivered again: amounts revised (and, with ``new``, line items of combinations
    the first delivery did not have: a new account, a new usage type in known cells, a new instance type)."""
    rng = np.random.default_rng(3)
    n = table.num_rows
    factor = np.where(rng.random(n) < 0.3, rng.uniform(0.5, 1.5, n), 1.0)
    for c in ("line_item_unblended_cost", "line_item_net_unblended_cost", "reservation_effective_cost"):
        table = _set(table, c, table.column(c).to_numpy() * factor)
    table = _set(table, "line_item_usage_amount", table.column("line_item_usage_amount").to_numpy() * factor)
    if new:
        acct = table.column("line_item_usage_account_id").to_numpy(zero_copy_only=False).copy()
        acct[::97] = "999988887777"  # new dimensions
        usage = table.column("line_item_usage_type").to_numpy(zero_copy_only=False).copy()
        usage[5::89] = [u + "-Restated" for u in usage[5::89]]  # new combinations in cells that exist
        itype = table.column("product_instance_type").to_numpy(zero_copy_only=False).copy()
        ec2 = np.flatnonzero(itype != "")[7::50]
        itype[ec2] = "p5e.48xlarge"  # a GPU instance type the first delivery did not have
        usage[ec2] = "USE1-BoxUsage:p5e.48xlarge"
        table = _set(table, "line_item_usage_account_id", acct)
        table = _set(table, "line_item_usage_type", usage)
        table = _set(table, "product_instance_type", itype)
    return table


def _write(table: pa.Table, path: Path) -> str:
    pq.write_table(table, path)
    return str(path)


def _same(got: tuple[pa.Table, list, int], want: tuple[pa.Table, list, int], dec: BillingDecoder) -> None:
    """Exactly equal: every key and every sum (the same line items summed in the same order), bad records, rows."""
    (t1, bad1, rows1), (t2, bad2, rows2) = got, want
    assert rows1 == rows2
    assert sorted((b.kind, b.reason) for b in bad1) == sorted((b.kind, b.reason) for b in bad2)
    assert sorted(b.raw for b in bad1 if b.kind != "bad_time") == sorted(b.raw for b in bad2 if b.kind != "bad_time")
    keys = [(k, "ascending") for k in dec.key_columns]
    t1, t2 = t1.sort_by(keys), t2.sort_by(keys)
    assert t1.schema == t2.schema and t1.num_rows == t2.num_rows > 0
    for c in t1.column_names:
        assert t1.column(c).to_pylist() == t2.column(c).to_pylist(), c


@pytest.mark.parametrize("cfg", CONFIGS, ids=["billed", "amortized-tags-gpu"])
def test_a_restatement_with_the_same_combinations_is_one_scan_and_exactly_a_first_read(
    tmp_path: Path, cfg: CurConfig
) -> None:
    first = _write(_month(), tmp_path / "first.parquet")
    again = _write(_restated(_month(), new=False), tmp_path / "again.parquet")
    dec = CurDecoder(cfg)
    _same(read_file(first, dec, CTX), read_file(first, CurDecoder(cfg), CTX), dec)
    cache = dec.combinations
    assert (cache.cold, cache.warm, cache.missed) == (1, 0, 0)
    warm = read_file(again, dec, CTX)
    assert (cache.cold, cache.warm, cache.missed) == (1, 1, 0)  # one scan: every combination was known
    _same(warm, read_file(again, CurDecoder(cfg), CTX), dec)
    assert pc.sum(warm[0].column("billing_cost_usd")).as_py() != pytest.approx(
        pc.sum(read_file(first, CurDecoder(cfg), CTX)[0].column("billing_cost_usd")).as_py()
    )
    _same(read_file(first, dec, CTX), read_file(first, CurDecoder(cfg), CTX), dec)  # and back
    assert (cache.cold, cache.warm, cache.missed) == (1, 2, 0)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["billed", "amortized-tags-gpu"])
def test_a_restatement_with_new_combinations_is_listed_again_and_exactly_a_first_read(
    tmp_path: Path, cfg: CurConfig
) -> None:
    first = _write(_month(), tmp_path / "first.parquet")
    again = _write(_restated(_month(), new=True), tmp_path / "again.parquet")
    dec = CurDecoder(cfg)
    read_file(first, dec, CTX)
    cache = dec.combinations
    got = read_file(again, dec, CTX)
    assert (cache.cold, cache.warm, cache.missed) == (1, 0, 1)  # tried in one scan, a combination was new
    want = read_file(again, CurDecoder(cfg), CTX)
    _same(got, want, dec)
    if "sub_account" in dec.key_columns:
        assert "999988887777" in got[0].column("sub_account").to_pylist()
    if "gpu_model" in dec.key_columns:
        assert "NVIDIA H200" in got[0].column("gpu_model").to_pylist()
    # The last read found new combinations: the next one lists first (no scan wasted), then one scan again.
    _same(read_file(again, dec, CTX), want, dec)
    assert (cache.cold, cache.warm, cache.missed) == (2, 0, 1)
    _same(read_file(again, dec, CTX), want, dec)
    _same(read_file(first, dec, CTX), read_file(first, CurDecoder(cfg), CTX), dec)  # the union: both known
    assert (cache.cold, cache.warm, cache.missed) == (2, 2, 1)


def test_bad_lines_and_times_in_a_restatement_are_what_a_first_read_says(tmp_path: Path) -> None:
    """NaN, ±inf and absurd costs, NaN and infinite quantities, line items without a start time: the same bad
    records (a line item without a start time is one record per cell, its example one of the combinations alike)."""
    table = _restated(_month(), new=True)
    cost = table.column("line_item_unblended_cost").to_numpy().copy()
    cost[[11, 400]] = [np.nan, 5e12]
    qty = table.column("line_item_usage_amount").to_numpy().copy()
    qty[[12, 13]] = [np.nan, np.inf]
    start = table.column("line_item_usage_start_date").to_pylist()
    for i in (20, 21, 2000):
        start[i] = None
    table = _set(_set(table, "line_item_unblended_cost", cost), "line_item_usage_amount", qty)
    table = _set(table, "line_item_usage_start_date", start)
    first = _write(_month(), tmp_path / "first.parquet")
    again = _write(table, tmp_path / "again.parquet")
    cfg = CurConfig(type="cur", dimensions=["service", "sub_account"])
    dec = CurDecoder(cfg)
    read_file(first, dec, CTX)
    for _ in range(3):  # a miss, a listing, one scan
        got = read_file(again, dec, CTX)
        want = read_file(again, CurDecoder(cfg), CTX)
        assert {b.kind for b in got[1]} == {"absurd_value", "bad_time", "non_finite"}
        rows = [b.reason for b in got[1] if b.kind != "bad_time"]
        assert sorted(int(r.split(" row ")[1].split(":")[0]) for r in rows) == [12, 13, 14, 401]
        assert sum(int(b.reason.split("(")[1].split()[0]) for b in got[1] if b.kind == "bad_time") == 3
        _same(got, want, dec)
    assert (dec.combinations.cold, dec.combinations.warm, dec.combinations.missed) == (2, 1, 1)


def test_focus_and_cur_files_under_one_billing_decoder_keep_their_own_combinations(
    tmp_path: Path, data_dir: Path
) -> None:
    """The ``billing`` decoder picks a format per file: each format's combinations are kept apart (a key each)."""
    import pyarrow.csv as pacsv

    focus = _write(pacsv.read_csv(data_dir / "billing" / "focus-1.0-sample.csv"), tmp_path / "focus.parquet")
    cur = _write(_month(), tmp_path / "cur.parquet")
    cfg = AutoBillingConfig(type="billing", cost="effective", tags={"team": "team"})
    dec = AutoBillingDecoder(cfg)
    for _ in range(2):
        for path in (cur, focus):
            _same(read_file(path, dec, CTX), read_file(path, AutoBillingDecoder(cfg), CTX), dec)
    assert (dec.combinations.cold, dec.combinations.warm, dec.combinations.missed) == (2, 2, 0)
    assert len(dec.combinations) == 2


def test_what_the_combinations_are_kept_under_changes_with_the_configuration_and_the_columns(tmp_path: Path) -> None:
    """A decoder is built from its configuration (a new configuration: a new decoder, nothing known), and the key
    names every part of it the normalisation depends on: a decoder configured otherwise never meets them."""
    path = _write(_month(2_000), tmp_path / "cur.parquet")
    schema = pq.read_schema(path)
    keys, values = ["line_item_product_code"], ["line_item_unblended_cost"]
    base = CurConfig(type="cur")
    changed = [
        CurConfig(type="cur", dimensions=["service"]),
        CurConfig(type="cur", cost="amortized"),
        CurConfig(type="cur", tags={"team": "user:team"}),
        CurConfig(type="cur", currency="EUR"),
        CurConfig(type="cur", exchange_rates={"EUR": 1.1}),
        CurConfig(type="cur", gpu_instances={"m7i.xlarge": 1}),
        CurConfig(type="cur", constant_dimensions={"env": "prod"}),
    ]
    key = _cache_key(CurDecoder(base), schema, keys, [], values)
    assert key == _cache_key(CurDecoder(CurConfig(type="cur")), schema, keys, [], values)
    assert all(_cache_key(CurDecoder(c), schema, keys, [], values) != key for c in changed)
    assert _cache_key(FocusDecoder(FocusConfig(type="focus")), schema, keys, [], values) != key
    assert _cache_key(CurDecoder(base), schema, [*keys, "pricing_unit"], [], values) != key
    other = schema.set(
        schema.get_field_index("line_item_product_code"), pa.field("line_item_product_code", pa.binary())
    )
    assert _cache_key(CurDecoder(base), other, keys, [], values) != key
    # A file with another column read (here: a tag column) is listed, not summed against other columns' combinations.
    dec = CurDecoder(CurConfig(type="cur", tags={"team": "user:team"}))
    read_file(path, dec, CTX)
    legacy = _month(2_000).append_column("resourceTags/user:team", pa.array(["a", "b"] * 1_000))
    fresh = read_file(_write(legacy, tmp_path / "legacy.parquet"), dec, CTX)
    _same(fresh, read_file(str(tmp_path / "legacy.parquet"), CurDecoder(dec.cfg), CTX), dec)
    assert (dec.combinations.cold, dec.combinations.warm, dec.combinations.missed) == (2, 0, 0)


def test_memory_is_bounded_and_a_cut_short_cache_still_gives_a_first_read(tmp_path: Path) -> None:
    first = _write(_month(), tmp_path / "first.parquet")
    again = _write(_restated(_month(), new=True), tmp_path / "again.parquet")
    cfg = CurConfig(type="cur")
    dec = CurDecoder(cfg)
    read_file(first, dec, CTX)
    (known,) = dec.combinations._entries.values()
    dec.combinations.max_combinations = len(known) + 1  # the new combinations do not fit beside the known ones
    _same(read_file(again, dec, CTX), read_file(again, CurDecoder(cfg), CTX), dec)
    (kept,) = dec.combinations._entries.values()
    alone = CurDecoder(cfg)
    read_file(again, alone, CTX)
    (listed,) = alone.combinations._entries.values()
    assert len(kept) == len(listed)  # started again from the file just read
    # At most max_keys keys (files with other columns), the least recently used dropped first.
    paths = [first]
    for i, extra in enumerate(("a", "b")):
        t = _month(2_000).append_column(f"resourceTags/user:{extra}", pa.array(["x"] * 2_000))
        paths.append(_write(t, tmp_path / f"{extra}{i}.parquet"))
    dec = CurDecoder(CurConfig(type="cur", tags={"a": "user:a", "b": "user:b"}))
    dec.combinations = CombinationCache(max_keys=2)
    for p in paths:
        read_file(p, dec, CTX)
    assert len(dec.combinations) == 2
    read_file(paths[0], dec, CTX)  # dropped: listed again
    assert (dec.combinations.cold, dec.combinations.warm) == (4, 0)
    read_file(paths[2], dec, CTX)
    assert (dec.combinations.cold, dec.combinations.warm) == (4, 1)


def test_a_listed_combination_whose_hash_a_known_one_has_with_other_values_is_not_taken_for_it(tmp_path: Path) -> None:
    """The listing compares the raw values of every combination it finds under a known hash: a known combination
    with other values (what a hash collision would be) is dropped with the rest, and the file read as a first one."""
    first = _write(_month(), tmp_path / "first.parquet")
    cfg = CurConfig(type="cur")
    dec = CurDecoder(cfg)
    read_file(first, dec, CTX)
    (known,) = dec.combinations._entries.values()
    col = known.combos.schema.get_field_index("line_item_product_code")
    forged = pa.array(["SomethingElse"] * known.combos.num_rows)  # the same hashes, other values
    known.combos = known.combos.set_column(col, "line_item_product_code", forged)
    known.try_warm = False  # (a one-scan read trusts the hash: odds about new × known / 2**64 per file)
    _same(read_file(first, dec, CTX), read_file(first, CurDecoder(cfg), CTX), dec)
    (kept,) = dec.combinations._entries.values()
    assert kept is not known and "SomethingElse" not in kept.combos.column("line_item_product_code").to_pylist()


def test_a_charge_start_with_a_fraction_of_a_second_stays_in_its_hour(tmp_path: Path) -> None:
    """10:59:59.6 is in the 10:00 bucket (truncated, as the batch-by-batch path does, not rounded to 11:00)."""
    import agent.decoders.billing.delivery as delivery

    t = _month(200)
    ts = pa.array(np.full(200, dt.datetime(2026, 10, 1, 10, 59, 59, 600_000)), pa.timestamp("ms"))
    path = _write(_set(t, "line_item_usage_start_date", ts), tmp_path / "frac.parquet")
    dec = CurDecoder(CurConfig(type="cur", dimensions=["service"]))
    fast = read_file(path, dec, CTX)
    hour = int(dt.datetime(2026, 10, 1, 10, tzinfo=dt.UTC).timestamp())
    assert set(fast[0].column("ts").to_pylist()) == {hour}
    delivery_duckdb = delivery._HAVE_DUCKDB
    try:
        delivery._HAVE_DUCKDB = False
        slow = read_file(path, dec, CTX)
    finally:
        delivery._HAVE_DUCKDB = delivery_duckdb
    assert set(slow[0].column("ts").to_pylist()) == {hour}
