"""No file, record or value stops the pipeline: every file of the shared test data, through `backtest` with the
embedded default (routed by content, and forced through every source of the default) and dropped into every
inbox of a running agent. Each either yields observations or is counted and dead-lettered; nothing fails a batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from agent.backtest import run_backtest
from agent.config import load_config
from agent.pipeline import Agent
from tests.conftest import Receiver, free_port, wait_until

INBOXES = {"inbox_tokens": "bedrock", "inbox_gpus": "dcgm", "inbox_billing": "billing"}


@pytest.fixture
def default_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Path:
    """The embedded default with its folders under tmp_path (no demo month: its folder is empty)."""
    (tmp_path / "demo").mkdir()
    monkeypatch.setenv("FINOPS_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("FINOPS_INBOX", str(tmp_path / "inbox"))
    monkeypatch.setenv("FINOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FINOPS_METRICS_PORT", str(free_port()))
    monkeypatch.setenv("FINOPS_WEBHOOK_URL", receiver.url + "/alerts")
    monkeypatch.setenv("FINOPS_WEBHOOK_SECRET", "a-test-secret")
    return tmp_path


def _errors(agent: Agent, stage: str) -> float:
    total = 0.0
    for metric in agent.telemetry.errors.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels["stage"] == stage:
                total += s.value
    return total


def _shared_files(data_dir: Path) -> list[Path]:
    files = sorted(f for f in data_dir.rglob("*") if f.is_file())
    assert len(files) > 20, files
    return files


def test_every_shared_file_through_backtest_with_the_embedded_default(
    data_dir: Path, default_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(None)
    out = default_env / "out"
    # Forced through each inbox source of the default: every file is either decoded or dead-lettered.
    for source in INBOXES:
        summary = run_backtest(cfg, [f"{source}={data_dir}"], str(out / f"{source}.jsonl"))
        assert summary["records"] > 0, source
        lines = (out / f"{source}.jsonl.dead-letter.jsonl").read_bytes().splitlines()
        kinds = {orjson.loads(ln)["kind"] for ln in lines}
        assert "processing_error" not in kinds and "decoder_error" not in kinds, (source, kinds)
        assert summary["dead_letter"] == len(lines)
        assert not summary["errors"], (source, summary["errors"])
    # Routed by content, one file at a time: a summary, or a clear refusal for a file no source reads.
    routed = refused = 0
    for f in _shared_files(data_dir):
        try:
            summary = run_backtest(cfg, [str(f)], str(out / "one.jsonl"))
        except ValueError as exc:
            assert "cannot tell which source reads it" in str(exc), (f, exc)
            refused += 1
            continue
        routed += 1
        assert not summary["errors"], (f, summary["errors"])
        dead = out / "one.jsonl.dead-letter.jsonl"
        kinds = {orjson.loads(ln)["kind"] for ln in dead.read_bytes().splitlines()} if dead.exists() else set()
        assert "processing_error" not in kinds and "decoder_error" not in kinds, (f, kinds)
    # The billing samples and the dcgm scrape are recognised by content.
    assert routed >= 6


def test_every_shared_file_dropped_into_a_running_agents_inboxes(data_dir: Path, default_env: Path) -> None:
    cfg = load_config(None)
    agent = Agent(cfg)
    agent.start()
    try:
        files = _shared_files(data_dir)
        for kind in INBOXES.values():
            inbox = default_env / "inbox" / kind
            inbox.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(f, inbox / ("_".join(f.relative_to(data_dir).parts)))

        def all_read() -> bool:
            for name in INBOXES:
                pos = agent.sources[name].positions
                if sum(1 for p in pos.values() if p.get("done") or p.get("eof")) < len(files):
                    return False
            return agent.queue.unfinished_tasks == 0

        assert wait_until(all_read, 120), {n: len(agent.sources[n].positions) for n in INBOXES}
        assert agent.error is None and agent.health.alive()
        assert _errors(agent, "process") == 0 and _errors(agent, "detect") == 0 and _errors(agent, "decode") == 0
        assert agent.records_in > 0 and agent.dead_letter.written > 0
    finally:
        agent.stop()
    assert agent.error is None
    lines = Path(cfg.dead_letter.path).read_bytes().splitlines()
    docs = [orjson.loads(ln) for ln in lines]
    assert {d["source"] for d in docs} >= set(INBOXES)  # each inbox dead-lettered what it could not read
    assert all(d["original_b64"] for d in docs)
