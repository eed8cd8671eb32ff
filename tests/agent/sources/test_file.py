from __future__ import annotations

import gzip
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.pipeline import Agent
from agent.state import LocalStateStore, MemoryStateStore
from tests.agent.decoders.test_bedrock import log
from tests.conftest import wait_until


def _cfg(path: str, state: Path, decoder: str = "{type: bedrock}", watch: bool = False) -> str:
    return f"""
sources:
  s: {{type: file, path: "{path}", watch: {str(watch).lower()}, poll_interval_seconds: 0.1, decoder: {decoder}}}
detectors:
  n: {{type: threshold, signal: requests, upper: 1.0e12, window_seconds: 60}}
sinks:
  console: {{type: console}}
state: {{directory: {state}}}
dead_letter: {{path: {state}/dlq.jsonl}}
pipeline: {{allowed_lateness_seconds: 0}}
"""


def _received(agent: Agent) -> float:
    return agent.telemetry.registry.get_sample_value("finops_agent_events_received_total", {"component": "s"}) or 0.0


def test_glob_gzip_and_formats(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(b"\n".join(log(timestamp=f"2026-10-01T10:{m:02d}:00Z") for m in range(5)) + b"\n")
    (d / "b.jsonl.gz").write_bytes(gzip.compress(log(timestamp="2026-10-01T10:06:00Z")))  # no final newline
    (d / "ignored.txt").write_bytes(b"not matched by the glob")
    agent = Agent(load_config_text(_cfg(f"{d}/*.jsonl*", tmp_path / "st")), state_store=MemoryStateStore())
    agent.start()
    agent.wait_finished(30)
    agent.stop()
    assert _received(agent) == 6


def test_csv_and_parquet_through_the_generic_decoder(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    table = pa.table(
        {
            "ts": ["2026-10-01T10:00:00Z", "2026-10-01T10:00:30Z", "2026-10-01T10:01:00Z"],
            "requests": [1.0, 2.0, 4.0],
            "team": ["a", "a", "b"],
        }
    )
    pacsv.write_csv(table, d / "x.csv")
    later = table.set_column(
        0, "ts", pa.array(["2026-10-01T10:02:00Z", "2026-10-01T10:02:30Z", "2026-10-01T10:03:00Z"])
    )
    pq.write_table(later, d / "y.parquet")
    dec = "{type: json, time_field: ts, values: {requests: requests}, dimensions: {team: team}}"
    collector = PointCollector()
    agent = Agent(
        load_config_text(_cfg(str(d), tmp_path / "st", dec)),
        state_store=MemoryStateStore(),
        extra_sinks={"c": collector},
    )
    agent.start()
    agent.wait_finished(30)
    agent.stop(flush_windows=True)
    assert sum(p.observed for pts in collector.points.values() for p in pts) == 14.0
    assert _received(agent) == 6


def test_directory_watch_and_restart_without_rereading(tmp_path: Path) -> None:
    d, state = tmp_path / "in", tmp_path / "state"
    d.mkdir()
    (d / "1.jsonl").write_bytes(b"\n".join(log(timestamp=f"2026-10-01T10:{m:02d}:00Z") for m in range(3)) + b"\n")
    cfg = load_config_text(_cfg(str(d), state, watch=True))
    agent = Agent(cfg)
    agent.start()
    assert wait_until(lambda: _received(agent) == 3)
    # A new file and lines appended to a plain file (the last one incomplete for now) are picked up.
    (d / "2.jsonl").write_bytes(log(timestamp="2026-10-01T10:05:00Z") + b"\n")
    with open(d / "1.jsonl", "ab") as fh:
        fh.write(log(timestamp="2026-10-01T10:06:00Z") + b"\n" + log(timestamp="2026-10-01T10:07:00Z")[:40])
    assert wait_until(lambda: _received(agent) == 5)
    agent.stop()
    # Restart: nothing already read is read again; the completed line and a new file are.
    with open(d / "1.jsonl", "ab") as fh:
        fh.write(log(timestamp="2026-10-01T10:07:00Z")[40:] + b"\n")
    (d / "3.jsonl").write_bytes(log(timestamp="2026-10-01T10:08:00Z") + b"\n")
    saved = LocalStateStore(state).load()
    assert saved is not None and saved["runners"]["n"]["last_learned"] == agent.runners["n"].last_learned
    agent2 = Agent(cfg)
    agent2.start()
    assert wait_until(lambda: _received(agent2) == 2)
    time.sleep(0.5)
    agent2.stop()
    assert _received(agent2) == 2
    # Window and detector state came back with the positions (one checkpoint holds them all).
    assert agent2.runners["n"].last_learned[()] > agent.runners["n"].last_learned[()]
