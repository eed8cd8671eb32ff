"""A Parquet billing export restated in a running agent: the re-delivery with the same combinations is summed in
one scan (the source's decoder keeps the combinations), one with new combinations is listed again, and either
way the snapshot the agent applies is exactly what a first read of the file gives."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.decoders.base import DecodeContext
from agent.decoders.billing.base import CurConfig
from agent.decoders.billing.cur import CurDecoder
from agent.decoders.billing.delivery import read_file
from agent.pipeline import Agent
from scripts import billing_data
from tests.conftest import wait_until

DIMS = ["service", "sub_account", "pricing_category"]


def _month() -> pa.Table:
    return billing_data.table(20_000, month="2026-10", hours=48)


def _deliver(table: pa.Table, path: Path, mtime: float) -> None:
    tmp = path.parent.parent / (path.name + ".tmp")  # outside the watched inbox, then moved in
    pq.write_table(table, tmp)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)


def _revised(table: pa.Table, hour: int, factor: float) -> pa.Table:
    start = billing_data.month_start("2026-10") + hour * 3600
    ts = table.column("line_item_usage_start_date").cast(pa.int64()).to_numpy() // 1000
    i = table.schema.get_field_index("line_item_unblended_cost")
    cost = table.column(i).to_numpy() * np.where(ts == start, factor, 1.0)
    return table.set_column(i, "line_item_unblended_cost", pa.array(cost))


def _config(inbox: Path, state: Path) -> Any:
    return load_config_text(
        f"""
sources:
  bill:
    type: file
    path: {inbox}
    watch: true
    poll_interval_seconds: 0.1
    decoder: {{type: cur, dimensions: {DIMS}}}
detectors:
  spend:
    type: seasonal
    signal: billing_cost_usd
    group_by: [service]
    window_seconds: 3600
sinks:
  out: {{type: jsonl, path: {state}/alerts.jsonl}}
state: {{type: memory}}
dead_letter: {{path: {state}/dead-letter.jsonl}}
"""
    )


def _applied(agent: Agent) -> float:
    reg = agent.telemetry.registry
    return sum(
        reg.get_sample_value("finops_agent_billing_deliveries_total", {"component": "bill", "outcome": o}) or 0.0
        for o in ("applied", "unchanged")
    )


def _as_first_read(agent: Agent, path: Path) -> None:
    (table,) = agent.snapshots.tables.values()
    dec = CurDecoder(CurConfig(type="cur", dimensions=DIMS))  # type: ignore[arg-type]
    want, _, _ = read_file(str(path), dec, DecodeContext("t", bucket_seconds=3600))
    keys = [(k, "ascending") for k in dec.key_columns]
    assert table.sort_by(keys).to_pylist() == want.sort_by(keys).to_pylist()


def test_a_restated_parquet_export_is_summed_against_the_combinations_kept_and_applied_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    state.mkdir()
    f = inbox / "cur-2026-10.parquet"
    month = _month()
    _deliver(month, f, 1_000_000)
    caplog.set_level(logging.INFO, logger="agent")
    agent = Agent(_config(inbox, state), extra_sinks={"collector": PointCollector()})
    agent.start()
    try:
        cache = agent.sources["bill"].decoder.combinations  # type: ignore[attr-defined]
        assert wait_until(lambda: _applied(agent) == 1 and agent.queue.unfinished_tasks == 0, 30)
        _as_first_read(agent, f)
        assert (cache.cold, cache.warm, cache.missed) == (1, 0, 0)
        # Restated: hour 10 revised up by half. The same combinations: one scan.
        _deliver(_revised(month, 10, 1.5), f, 2_000_000)
        assert wait_until(lambda: _applied(agent) == 2 and agent.queue.unfinished_tasks == 0, 30)
        _as_first_read(agent, f)
        assert (cache.cold, cache.warm, cache.missed) == (1, 1, 0)
        assert [r for r in caplog.records if "restates 1 hour;" in r.getMessage()]
        # Restated again with line items of a new account: tried in one scan, listed again, applied the same.
        acct = month.column("line_item_usage_account_id").to_numpy(zero_copy_only=False).copy()
        acct[::50] = "999988887777"
        i = month.schema.get_field_index("line_item_usage_account_id")
        _deliver(month.set_column(i, "line_item_usage_account_id", pa.array(acct)), f, 3_000_000)
        assert wait_until(lambda: _applied(agent) == 3 and agent.queue.unfinished_tasks == 0, 30)
        _as_first_read(agent, f)
        assert (cache.cold, cache.warm, cache.missed) == (1, 1, 1)
        (table,) = agent.snapshots.tables.values()
        assert "999988887777" in table.column("sub_account").to_pylist()
    finally:
        agent.stop()
