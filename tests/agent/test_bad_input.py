"""Bad input never crashes the agent, is never dropped silently: counted, logged once, dead-lettered."""

from __future__ import annotations

import base64
import gzip
import logging
from pathlib import Path

import orjson
import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.model import iso, parse_time
from agent.pipeline import Agent
from agent.state import MemoryStateStore
from tests.agent.decoders.test_bedrock import log


def _config(
    inbox: Path, dlq: Path, decoder: str = "{type: bedrock, tag_dimensions: {team: team}}", signal: str = "requests"
) -> str:
    return f"""
sources:
  tokens:
    type: file
    path: {inbox}
    decoder: {decoder}
detectors:
  {signal}:
    type: threshold
    signal: {signal}
    upper: 1.0e12
    window_seconds: 3600
sinks:
  console: {{type: console}}
state: {{type: memory}}
dead_letter: {{path: {dlq}}}
pipeline: {{max_age_days: 3650}}
"""


def _sample(agent: Agent, name: str, **labels: str) -> float:
    v = agent.telemetry.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _run(text: str) -> tuple[Agent, PointCollector]:
    collector = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"c": collector}, state_store=MemoryStateStore())
    agent.start()
    agent.wait_finished(60)
    agent.stop(flush_windows=True)
    assert agent.error is None
    return agent, collector


def _total(collector: PointCollector, detector: str) -> float:
    return sum(p.observed for (det, _s), pts in collector.points.items() if det == detector for p in pts)


def test_every_kind_of_bad_token_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    good = [log(timestamp=f"2026-10-01T{h:02d}:10:00Z") for h in range(10)]
    bad = [
        b'{"schemaType": "ModelInvocationLog", "timestamp": ',
        b"\x00\xff binary garbage \xfe",
        log(input={"inputTokenCount": "many"}),
        orjson.dumps({"timestamp": "2026-10-01T10:00:00Z"}),
        b'{"timestamp": NaN, "accountId": "1"}',
        log(input={"inputTokenCount": -1}),
        log(output={"outputTokenCount": 10**9}),
        log(timestamp="1970-01-02T00:00:00Z"),
        log(timestamp="2999-01-01T00:00:00Z"),
    ]
    late = log(timestamp="2026-10-01T00:05:00Z")  # after 09:10 the 00:00 hour is sealed (lateness 300 s)
    unknown = log(modelId="acme.unknown-v1", timestamp="2026-10-01T09:30:00Z")
    (inbox / "a.jsonl").write_bytes(b"\n".join([*good, *bad, unknown]) + b"\n")
    (inbox / "b.jsonl").write_bytes(late + b"\n")
    # A gzip file cut in the middle: every complete record is read, the cut-off tail is dead-lettered.
    gz_lines = [log(timestamp=f"2026-10-01T09:{m:02d}:00Z") for m in range(40, 60)] * 50
    gz = gzip.compress(b"\n".join(gz_lines) + b"\n")
    (inbox / "c.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    caplog.set_level(logging.WARNING, logger="agent")
    agent, collector = _run(_config(inbox, dlq))

    entries = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]
    kinds = sorted(e["kind"] for e in entries)
    assert kinds == sorted(
        [
            "malformed_json",
            "malformed_json",
            "schema",
            "schema",
            "malformed_json",
            "negative_value",
            "absurd_value",
            "timestamp_out_of_range",
            "timestamp_out_of_range",
            "late",
            "unknown_model",
            "truncated_gzip",
        ]
    ), [(e["kind"], e["reason"]) for e in entries]
    originals = {base64.b64decode(e["original_b64"]) for e in entries}
    for b in [*bad, late, unknown]:
        assert b in originals
    assert all(e["reason"] and e["source"] == "tokens" and e["location"] for e in entries)
    for kind, n in {
        "malformed_json": 3,
        "schema": 2,
        "negative_value": 1,
        "absurd_value": 1,
        "timestamp_out_of_range": 2,
        "late": 1,
        "truncated_gzip": 1,
    }.items():
        assert _sample(agent, "finops_agent_events_discarded_total", component="tokens", reason=kind) == n, kind
    assert _sample(agent, "finops_agent_unpriced_events_total", model="acme.unknown-v1") == 1
    assert _sample(agent, "finops_agent_dead_letter_records_total") == len(entries)
    logged = [r for r in caplog.records if "counted in metrics" in r.getMessage()]
    assert len(logged) == len({(r.__dict__["component"], r.__dict__["kind"]) for r in logged}) == 8
    # Every good record is processed: 10 good, the unknown model's tokens, the complete part of the gzip.
    truncated = next(e for e in entries if e["kind"] == "truncated_gzip")
    content_before_tail = int(truncated["reason"].split("after ")[1].split(" bytes")[0])
    complete = (content_before_tail - len(base64.b64decode(truncated["original_b64"]))) // (len(gz_lines[0]) + 1)
    assert 100 < complete < len(gz_lines)
    assert _total(collector, "requests") == 10 + 1 + complete


def test_bad_gpu_samples(tmp_path: Path) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    (inbox / "node.prom").write_bytes(
        b'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1",modelName="NVIDIA L4"} 50 1790827200000\n'
        b'DCGM_FI_DEV_GPU_UTIL{gpu="1",Hostname="n1"} 9223372036854775794 1790827200000\n'
        b"DCGM_FI_DEV_GPU_UTIL{broken\n"
        b'DCGM_FI_DEV_GPU_UTIL{gpu="2",Hostname="n1"} -3 1790827200000\n'
    )
    text = _config(inbox, dlq, "{type: dcgm, scrape_interval_seconds: 60}", "gpu_hours")
    agent, collector = _run(text)
    kinds = sorted(orjson.loads(x)["kind"] for x in dlq.read_bytes().splitlines())
    assert kinds == ["absurd_value", "malformed_text"]
    assert _total(collector, "gpu_hours") == pytest.approx(1 / 60)


def test_one_bad_line_costs_only_itself_and_blank_lines_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's file: one line nested thousands deep made the whole ~1 MiB batch a decoder_error."""
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    good = [log(timestamp=iso(parse_time("2026-10-01T00:00:00Z") + 30 * i)) for i in range(1481)]
    deep = log(requestMetadata={"team": "a", "x": orjson.Fragment(b"[" * 4000 + b"]" * 4000)})
    huge = log(requestMetadata={"team": "h" * 2_000_000})  # 2 MB: over the default max_record_bytes (1 MiB)
    lines = [*good[:700], deep, b"", *good[700:1000], b"  ", huge, *good[1000:]]
    (inbox / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n\n")
    # A Windows file: a byte-order mark, CRLF line endings and a blank CRLF line; all harmless.
    crlf = [log(timestamp=f"2026-10-01T13:{m:02d}:00Z") for m in range(5)]
    (inbox / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join([*crlf[:2], b"", *crlf[2:]]) + b"\r\n")
    caplog.set_level(logging.WARNING)
    agent, collector = _run(_config(inbox, dlq))

    entries = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]
    assert sorted(e["kind"] for e in entries) == ["record_too_large", "too_deep"]
    by_kind = {e["kind"]: e for e in entries}
    assert base64.b64decode(by_kind["too_deep"]["original_b64"]) == deep
    assert base64.b64decode(by_kind["record_too_large"]["original_b64"]) == huge[: 1 << 20]
    assert f"line of {len(huge)} bytes" in by_kind["record_too_large"]["reason"]
    assert _total(collector, "requests") == len(good) + len(crlf)
    for kind in ("too_deep", "record_too_large"):
        assert _sample(agent, "finops_agent_events_discarded_total", component="tokens", reason=kind) == 1
    assert _sample(agent, "finops_agent_dead_letter_records_total") == 2
    # Blank lines: counted, neither dead-lettered nor logged (a.jsonl: 2 + the empty last line; b.jsonl: 1).
    assert _sample(agent, "finops_agent_blank_lines_total", component="tokens") == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or "blank" in r.getMessage()]
