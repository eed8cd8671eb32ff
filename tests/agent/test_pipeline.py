"""Nothing stops the pipeline thread: an unexpected error in one batch costs that batch (counted, logged once,
dead-lettered, its position passed), and a detector that fails does not stop the others."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.model import parse_time
from agent.pipeline import Agent
from agent.state import MemoryStateStore
from tests.agent.decoders.test_bedrock import log


def _config(inbox: Path, dlq: Path) -> str:
    return f"""
sources:
  tokens:
    type: file
    path: {inbox}
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
detectors:
  requests:
    type: threshold
    signal: requests
    upper: 1.0e12
    window_seconds: 3600
  spend:
    type: threshold
    signal: token_cost_usd
    upper: 1.0e12
    window_seconds: 3600
sinks:
  console: {{type: console}}
state: {{type: memory}}
dead_letter: {{path: {dlq}}}
pipeline: {{max_age_days: 3650}}
"""


def _errors(agent: Agent, stage: str) -> float:
    return sum(
        s.value
        for m in agent.telemetry.errors.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["stage"] == stage
    )


def _files(inbox: Path) -> tuple[list[bytes], list[bytes]]:
    inbox.mkdir()
    a = [log(timestamp=f"2026-10-01T{h:02d}:10:00Z", requestId=f"a{h}") for h in range(12)]
    b = [log(timestamp=f"2026-10-01T{h:02d}:20:00Z", requestId=f"b{h}") for h in range(12, 24)]
    (inbox / "a.jsonl").write_bytes(b"\n".join(a) + b"\n")
    (inbox / "b.jsonl").write_bytes(b"\n".join(b) + b"\n")
    return a, b


def test_a_batch_that_fails_costs_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    a, _b = _files(inbox)
    collector = PointCollector()
    agent = Agent(load_config_text(_config(inbox, dlq)), extra_sinks={"c": collector}, state_store=MemoryStateStore())
    real_add = agent.aggregator.add
    calls = {"n": 0}

    def flaky(stream: str, obs: Any) -> Any:  # the first batch that reaches aggregation fails, twice the same way
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("injected")
        return real_add(stream, obs)

    monkeypatch.setattr(agent.aggregator, "add", flaky)
    caplog.set_level(logging.ERROR, logger="agent")
    agent.start()
    assert agent.wait_finished(60)
    agent.stop(flush_windows=True)
    assert agent.error is None
    dead = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]
    assert {d["kind"] for d in dead} == {"processing_error"}
    # Files are read in name order: a.jsonl's batch was the one that failed, and only its records are lost.
    assert {orjson.loads(d["original"])["requestId"] for d in dead} == {orjson.loads(x)["requestId"] for x in a}
    assert {d["location"] for d in dead} == {str(inbox / "a.jsonl")}
    assert all("ZeroDivisionError: injected" in d["reason"] for d in dead)
    # The other file's records were all processed; the failed batch's position was passed (not re-read).
    kept = sum(p.observed for (det, _s), pts in collector.points.items() if det == "requests" for p in pts)
    assert kept == 24 - len(dead) == 12
    assert all(p.get("done") or p.get("eof") for p in agent.sources["tokens"].positions.values())
    assert _errors(agent, "process") == 1
    sample = agent.telemetry.registry.get_sample_value(
        "finops_agent_events_discarded_total", {"component": "tokens", "reason": "processing_error"}
    )
    assert sample == 12
    logged = [r for r in caplog.records if "ZeroDivisionError" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None and "a.jsonl" in logged[0].getMessage()


def test_a_failing_detector_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    _files(inbox)
    collector = PointCollector()
    agent = Agent(load_config_text(_config(inbox, dlq)), extra_sinks={"c": collector}, state_store=MemoryStateStore())

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("a broken model")

    runner = agent.runners["spend"]
    runner.prototype = Broken()  # every new series of this detector fails when its model is cloned
    caplog.set_level(logging.ERROR, logger="agent")
    agent.start()
    assert agent.wait_finished(60)
    agent.stop(flush_windows=True)
    assert agent.error is None
    requests = sum(p.observed for (det, _s), pts in collector.points.items() if det == "requests" for p in pts)
    assert requests == 24
    assert not [k for k in collector.points if k[0] == "spend"]
    assert _errors(agent, "detect") >= 1
    assert len([r for r in caplog.records if "a broken model" in r.getMessage()]) == 1


def test_the_watermark_metric_is_event_time_and_closed_windows_have_their_own(tmp_path: Path) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    _files(inbox)
    agent = Agent(load_config_text(_config(inbox, dlq)), state_store=MemoryStateStore())
    agent.start()
    assert agent.wait_finished(60)
    reg = agent.telemetry.registry
    wm = reg.get_sample_value("finops_agent_watermark_timestamp_seconds")
    closed = reg.get_sample_value("finops_agent_windows_closed_until_timestamp_seconds")
    agent.stop()
    # Event time is kept at the buckets' resolution (here the hour): the newest record, 23:20, puts the
    # watermark at 23:00; less the 300 s lateness, the windows up to 22:00 are closed.
    assert wm == parse_time("2026-10-01T23:00:00Z")
    assert closed == parse_time("2026-10-01T22:00:00Z")
