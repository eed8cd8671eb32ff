"""Billing deliveries in a running agent (a billing file in a watched inbox; a replaced file restates its period):
a restatement says so once per delivery (hours restated, net change per day) and in metrics; a configured tag
no line item carries is reported once per delivery and its cells are named ``(untagged)``; a file that cannot be
read whole is refused and the previous snapshot of it stays."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.pipeline import Agent
from tests.conftest import wait_until

START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
COLS = [
    "line_item_usage_start_date",
    "line_item_unblended_cost",
    "line_item_line_item_type",
    "line_item_usage_account_id",
    "line_item_product_code",
    "line_item_usage_type",
    "pricing_unit",
    "line_item_usage_amount",
    "line_item_currency_code",
]


def _write(path: Path, hours: int, cost: dict[int, float] | None = None, mtime: float | None = None) -> float:
    """A CUR 2.0 gzip CSV: two services per hour; ``cost`` overrides EC2's cost per hour. Returns the EC2 total."""
    total = 0.0
    tmp = path.parent.parent / (path.name + ".tmp")  # outside the watched inbox, then moved in
    with gzip.open(tmp, "wt", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLS)
        for h in range(hours):
            t = (START + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            ec2 = (cost or {}).get(h, 10.0 + h % 3)
            total += ec2
            w.writerow([t, f"{ec2}", "Usage", "111122223333", "AmazonEC2", "USE1-BoxUsage:m5.large", "Hrs", "1", "USD"])
            w.writerow(
                [t, "1.5", "Usage", "111122223333", "AmazonS3", "USE1-TimedStorage-ByteHrs", "GB-Mo", "3", "USD"]
            )
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return total


def _config(inbox: Path, state: Path) -> Any:
    return load_config_text(
        f"""
sources:
  bill:
    type: file
    path: {inbox}
    watch: true
    poll_interval_seconds: 0.1
    decoder: {{type: cur, dimensions: [service], tags: {{team: "user:team"}}}}
detectors:
  spend:
    type: seasonal
    signal: billing_cost_usd
    group_by: [service, team]
    window_seconds: 3600
sinks:
  out: {{type: jsonl, path: {state}/alerts.jsonl}}
state: {{type: memory}}
dead_letter: {{path: {state}/dead-letter.jsonl}}
"""
    )


def _metric(agent: Agent, name: str, **labels: str) -> float:
    return agent.telemetry.registry.get_sample_value(name, labels) or 0.0


def _deliveries(agent: Agent) -> float:
    return sum(
        _metric(agent, "finops_agent_billing_deliveries_total", component="bill", outcome=o)
        for o in ("applied", "unchanged")
    )


def test_restatement_absent_tags_and_unreadable_files_in_a_running_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    state.mkdir()
    f = inbox / "cur-2026-10.csv.gz"
    _write(f, 72, mtime=1_000_000)
    caplog.set_level(logging.INFO, logger="agent")
    agent = Agent(_config(inbox, state), extra_sinks={"collector": PointCollector()})
    agent.start()
    try:
        assert wait_until(lambda: _deliveries(agent) == 1 and agent.queue.unfinished_tasks == 0, 30)
        # The tag column is absent: said once for the delivery, counted, and the cells are team=(untagged).
        absent = [r for r in caplog.records if "carries tag 'user:team'" in r.getMessage()]
        assert len(absent) == 1 and "team=(untagged)" in absent[0].getMessage()
        assert _metric(agent, "finops_agent_billing_untagged_deliveries_total", component="bill", tag="team") == 1
        teams = {dict(c.dims).get("team") for t in agent.snapshots.tables.values() for c in _cells(t)}
        assert teams == {"(untagged)"}
        assert not [r for r in caplog.records if "restates" in r.getMessage()]  # a first delivery restates nothing
        # Re-delivered: hours 10 and 30 restated (+5 and −4 on two days), 24 hours appended (not restatements).
        _write(f, 96, cost={10: 15.0 + 10 % 3, 30: 6.0 + 30 % 3}, mtime=2_000_000)
        assert wait_until(lambda: _deliveries(agent) == 2 and agent.queue.unfinished_tasks == 0, 30)
        lines = [r.getMessage() for r in caplog.records if "restates" in r.getMessage()]
        delivery = f"2000000000000000:{f.stat().st_size}"
        net = "2026-10-01 +$5.00, 2026-10-02 -$4.00"
        assert lines == [f"bill: delivery {delivery} of {f} restates 2 hours; net change per day: {net}"]
        assert _metric(agent, "finops_agent_restated_hours_total", component="bill") == 2
        assert _metric(agent, "finops_agent_restated_usd_total", component="bill", direction="increase") == 5
        assert _metric(agent, "finops_agent_restated_usd_total", component="bill", direction="decrease") == 4
        assert _metric(agent, "finops_agent_billing_untagged_deliveries_total", component="bill", tag="team") == 2
        # Replaced by a cut-off copy of itself: refused whole, the previous snapshot of it stays.
        before = {k: t.to_pylist() for k, t in agent.snapshots.tables.items()}
        assert len(before) == 1
        whole = f.read_bytes()
        tmp = tmp_path / "cut.tmp"
        tmp.write_bytes(whole[: len(whole) // 2])
        os.utime(tmp, (3_000_000, 3_000_000))
        os.replace(tmp, f)
        assert wait_until(lambda: _metric(agent, "finops_agent_events_discarded_total", component="bill",
                                          reason="corrupt_file") == 1, 30)  # fmt: skip
        assert agent.queue.unfinished_tasks == 0 or wait_until(lambda: agent.queue.unfinished_tasks == 0, 10)
        assert {k: t.to_pylist() for k, t in agent.snapshots.tables.items()} == before
        assert _deliveries(agent) == 2
    finally:
        agent.stop()


def _cells(table: Any) -> list[Any]:
    from agent.snapshots import delta_observations

    return [o.cell for o in delta_observations(table)]
