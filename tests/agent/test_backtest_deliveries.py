"""`finops-agent backtest` of a local copy of a billing export: each period's newest delivery is read (not every
delivery summed), manifests are metadata (never dead letters), and the summary says what was set aside."""

from __future__ import annotations

import os
from pathlib import Path

from agent.backtest import format_summary, run_backtest
from agent.config import load_config_text
from tests.agent.sources.test_exports_local import cur2_export, write_cur

CONFIG = """
sources:
  aws_bill: {type: s3_export, bucket: acme, prefix: cur2/finops-cur, decoder: {type: cur, cost: unblended}}
detectors:
  total: {type: threshold, signal: billing_cost_usd, upper: 1.0e12, window_seconds: 3600}
sinks:
  c: {type: console}
"""


def test_a_backtest_of_an_export_reads_each_periods_newest_delivery(tmp_path: Path) -> None:
    """Two executions of 2026-10 (exec1: 24 line items; exec2: 36, in two split parts): the whole layout reads exec2
    (its manifest is the newest) and dead-letters nothing; the data folder alone (no manifests) reads the execution
    modified last and says which one it took."""
    cfg = load_config_text(CONFIG)
    cur2_export(tmp_path / "exp")
    summary = run_backtest(cfg, [str(tmp_path / "exp")], str(tmp_path / "a.jsonl"))
    assert summary["records"] == 36 and summary["dead_letter"] == 0, summary
    [note] = summary["set_aside"]
    assert "BILLING_PERIOD=2026-10: read its newest delivery, exec2 (2 files; its newest manifest" in note
    text = format_summary(summary, str(tmp_path / "a.jsonl"))
    assert "  billing period " in text and "set aside 1 file of older deliveries (in exec1)" in text

    data = tmp_path / "exp/cur2/finops-cur/data"
    for f in (data / "BILLING_PERIOD=2026-10/exec2").iterdir():
        os.utime(f, (9_000_000, 9_000_000))  # without manifests, the files' time decides
    summary = run_backtest(cfg, [f"aws_bill={data}"], str(tmp_path / "b.jsonl"))
    assert summary["records"] == 36 and summary["dead_letter"] == 0
    assert "exec2 (2 files; no manifest: the files modified last)" in summary["set_aside"][0]


def test_plain_billing_files_are_all_read(tmp_path: Path) -> None:
    """A plain folder (no period folder, no executions): split parts and differently named files are each read;
    nothing is set aside."""
    for name, hours in (("part-00000.csv", 5), ("part-00001.csv", 7), ("other-account.csv", 3)):
        write_cur(tmp_path / "in" / name, hours)
    summary = run_backtest(load_config_text(CONFIG), [str(tmp_path / "in")], str(tmp_path / "a.jsonl"))
    assert summary["records"] == 15 and summary["dead_letter"] == 0 and summary["set_aside"] == []
