"""Nothing stops the pipeline thread: an unexpected error in one batch costs that batch (counted, logged once,
dead-lettered, its position passed), and a detector that fails does not stop the others."""

from __future__ import annotations

import logging
import time
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
from tests.conftest import wait_until


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

    def flaky(stream: str, obs: Any, *rest: Any, **kw: Any) -> Any:  # the first batch to reach aggregation fails
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("injected")
        return real_add(stream, obs, *rest, **kw)

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
    # Event time follows the records, not the buckets the decoder sums them into (here the hour): the newest
    # record, 23:20, is the watermark; less the 300 s lateness, 23:15: the window [22:00, 23:00) is closed.
    assert wm == parse_time("2026-10-01T23:20:00Z")
    assert closed == parse_time("2026-10-01T23:00:00Z")


_REQUESTS = "  requests: {type: threshold, signal: requests, upper: 1.0e12, window_seconds: 3600}"


def _live_config(inbox: Path, dlq: Path, idle_timeout: str, detectors: str = _REQUESTS, pipeline: str = "") -> str:
    """A followed inbox of Bedrock logs; ``detectors``: the lines under ``detectors:``; ``pipeline``: more settings."""
    return f"""
sources:
  tokens:
    type: file
    path: {inbox}
    watch: true
    poll_interval_seconds: 0.1
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
detectors:
{detectors}
sinks:
  console: {{type: console}}
state: {{type: memory}}
dead_letter: {{path: {dlq}}}
pipeline: {{allowed_lateness_seconds: 60, idle_timeout_seconds: {idle_timeout}{", " + pipeline if pipeline else ""}}}
"""


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _append(f: Path, times: list[float]) -> None:
    with f.open("ab") as out:
        out.write(b"".join(log(timestamp=_stamp(t), requestId=f"r{t}") + b"\n" for t in times))


def _live_agent(tmp_path: Path, idle_timeout: str) -> tuple[Agent, PointCollector, Path, float]:
    """A started agent following a file that holds 12 records of window [w, w+1h), two hours ago (inside
    max_age_days, whole): (agent, its points, the file, w)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "live.jsonl"
    now = time.time()
    w = now - now % 3600 - 2 * 3600
    _append(f, [w + m * 60 for m in range(0, 60, 5)])
    collector = PointCollector()
    cfg = load_config_text(_live_config(inbox, tmp_path / "dlq.jsonl", idle_timeout))
    agent = Agent(cfg, extra_sinks={"c": collector}, state_store=MemoryStateStore())
    agent.start()
    return agent, collector, f, w


def _points(collector: PointCollector) -> list[Any]:
    return [p for ps in collector.points.values() for p in ps]


def test_a_window_closes_at_its_end_plus_the_lateness_on_real_event_time(tmp_path: Path) -> None:
    """A live file source: window [W, W+1h) closes as soon as a record 90 s past its end arrives (lateness 60 s) —
    not an hour later, when the decoder's next bucket starts."""
    agent, collector, f, w = _live_agent(tmp_path, "null")
    try:
        assert wait_until(lambda: agent.records_in == 12, 20)
        time.sleep(0.5)
        assert collector.points == {}  # the window's end has not been passed by event time
        _append(f, [w + 3600 + 30])  # past its end, within the lateness: still open
        assert wait_until(lambda: agent.records_in == 13, 20)
        time.sleep(0.5)
        assert collector.points == {}
        _append(f, [w + 3600 + 90])  # past its end plus the lateness: it closes
        assert wait_until(lambda: bool(collector.points), 20)
        assert [(p.window_start, p.observed) for p in _points(collector)] == [(w, 12.0)]
        time.sleep(1.0)  # quiet now, but no idle timeout: the next window stays open
        assert len(_points(collector)) == 1
    finally:
        agent.stop()


def test_a_quiet_live_source_closes_its_last_window_after_the_idle_timeout(tmp_path: Path) -> None:
    agent, collector, _f, w = _live_agent(tmp_path, "1")
    try:
        # No record after the window: after 1 s of quiet, event time is the wall clock less 1 s (at most an hour past
        # the last record), and the window closes (its end + 60 s lateness is long past).
        assert wait_until(lambda: bool(collector.points), 20)
        pts = _points(collector)
        assert (pts[0].window_start, pts[0].observed) == (w, 12.0)
    finally:
        agent.stop()


def _team_history(tmp_path: Path) -> tuple[Path, float, list[float], Any]:
    """A followed file with three days of a team's usual Bedrock calls up to window ``w`` (two hours ago, so that a
    quiet tail can close it), and a config with an hourly spend detector checked for early warnings every minute:
    (the file, w, the calls' times, the config)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "live.jsonl"
    now = time.time()
    w = now - now % 3600 - 2 * 3600
    usual = [w - h * 3600 + m * 600 + 30 for h in range(72, 0, -1) for m in range(5 + h % 3)]
    _append(f, usual)
    spend = """  spend:
    type: seasonal
    signal: token_cost_usd
    group_by: [team]
    window_seconds: 3600
    warmup_points: 48
    min_impact_usd: 0.01"""
    cfg = load_config_text(_live_config(inbox, tmp_path / "dlq.jsonl", "1", spend, "early_check_seconds: 60"))
    return f, w, usual, cfg


def test_a_live_spike_alerts_before_its_window_ends_and_the_quiet_tail_confirms_it(tmp_path: Path) -> None:
    """A followed file with three days of a team's usual Bedrock calls, then a runaway loop: the early warning comes
    while the loop's window is still open (no record past it yet), and after the file goes quiet the idle timeout
    closes the window, which confirms the alert."""
    f, w, usual, cfg = _team_history(tmp_path)
    collector = PointCollector()
    clock = [w + 15 * 60]  # the agent's wall clock: a quarter of an hour into the loop's window (live)
    agent = Agent(cfg, extra_sinks={"c": collector}, state_store=MemoryStateStore(), now=lambda: clock[0])
    agent.start()
    try:
        assert wait_until(lambda: agent.records_in == len(usual), 30)
        loop = [w + s for s in range(0, 600, 6)]  # 100 calls in the window's first 10 minutes (about 15× usual)
        _append(f, loop)
        assert wait_until(lambda: any(d.get("early") for d in collector.alerts), 30)
        early = next(d for d in collector.alerts if d.get("early"))
        assert early["status"] == "firing" and early["series"] == {"team": "search"}
        assert early["window_start"] == _stamp(w) and early["window_progress"] <= 10 / 60 + 0.02
        closed = [p for p in _points(collector) if p.window_start == w]
        assert closed == []  # the alert came while its window was open
        # Quiet from here, and the hour ends: the idle timeout moves event time on, the window closes and the alert
        # is confirmed.
        clock[0] = w + 3600 + 120
        assert wait_until(lambda: any(d.get("confirmed") for d in collector.alerts), 30)
        confirmed = next(d for d in collector.alerts if d.get("confirmed"))
        assert confirmed["id"] == early["id"] and confirmed["observed"] >= early["observed"]
        assert [p.anomalous for p in _points(collector) if p.window_start == w] == [True]
    finally:
        agent.stop()


def test_a_followed_source_that_goes_silent_raises_a_data_gap_and_ends_it_when_records_return(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "live.jsonl"
    now = time.time()
    w = now - now % 3600 - 2 * 3600
    _append(f, [w + m * 60 for m in range(0, 60, 5)])
    cfg = _live_config(inbox, tmp_path / "dlq.jsonl", "null", pipeline="source_gap_seconds: 1.5")
    collector = PointCollector()
    agent = Agent(load_config_text(cfg), extra_sinks={"c": collector}, state_store=MemoryStateStore())
    agent.start()
    try:
        assert wait_until(lambda: any(d["kind"] == "data_gap" for d in collector.alerts), 20)
        gap = next(d for d in collector.alerts if d["kind"] == "data_gap")
        assert gap["status"] == "firing" and gap["series"] == {"source": "tokens"} and gap["sources"] == ["tokens"]
        assert "no record from source tokens" in gap["summary"]
        silent = agent.telemetry.registry.get_sample_value("finops_agent_source_silent", {"component": "tokens"})
        assert silent == 1.0
        _append(f, [w + 3600 + 30])
        over = lambda: [d for d in collector.alerts if d["kind"] == "data_gap" and d["status"] == "resolved"]  # noqa: E731
        assert wait_until(lambda: bool(over()), 20)
        assert agent.telemetry.registry.get_sample_value("finops_agent_source_silent", {"component": "tokens"}) == 0.0
    finally:
        agent.stop()


def test_a_window_already_over_on_the_wall_clock_gets_no_early_warning(tmp_path: Path) -> None:
    """A late delivery: a runaway loop's records arrive two hours after its window ended. The window closes in a
    moment (the idle timeout), so it alerts once, at close — not an early warning and its confirmation a moment
    apart."""
    f, w, usual, cfg = _team_history(tmp_path)
    collector = PointCollector()
    agent = Agent(cfg, extra_sinks={"c": collector}, state_store=MemoryStateStore())
    agent.start()
    try:
        assert wait_until(lambda: agent.records_in == len(usual), 30)
        time.sleep(0.5)  # caught up: live
        _append(f, [w + s for s in range(0, 600, 6)])
        assert wait_until(lambda: any(d["status"] == "firing" for d in collector.alerts), 30)
        time.sleep(0.5)
        firing = [d for d in collector.alerts if d["status"] == "firing"]
        assert len(firing) == 1 and not firing[0]["early"] and not firing[0]["confirmed"], firing
        assert firing[0]["window_start"] == _stamp(w)
    finally:
        agent.stop()
