"""A ``.json`` file that is one whole JSON document (pretty-printed) is read as its records, not line by line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from agent.config import load_config_text
from agent.pipeline import Agent
from agent.sources.file import json_document
from agent.state import MemoryStateStore
from tests.agent.decoders.test_bedrock import log
from tests.agent.sources.test_file import _cfg, _received


def records(n: int) -> list[dict]:
    return [orjson.loads(log(timestamp=f"2026-10-01T10:{m:02d}:00Z")) for m in range(n)]


def run(tmp_path: Path, name: str, content: bytes) -> tuple[Agent, list[dict]]:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    agent = Agent(load_config_text(_cfg(str(d), tmp_path / "st")), state_store=MemoryStateStore())
    agent.start()
    agent.wait_finished(30)
    agent.stop()
    dlq = tmp_path / "st" / "dlq.jsonl"
    return agent, [orjson.loads(x) for x in dlq.read_bytes().splitlines()] if dlq.exists() else []


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        ("a.json", {"records": records(3)}),  # as Azure Monitor exports write
        ("a.json", records(3)),  # a top-level array
        ("a.json.gz", {"records": records(3)}),
    ],
)
def test_a_pretty_printed_document_is_read_as_its_records(tmp_path: Path, name: str, doc: object) -> None:
    agent, dead = run(tmp_path, name, json.dumps(doc, indent=2).encode())
    assert dead == [] and _received(agent) == 3


def test_one_pretty_printed_record_is_one_record(tmp_path: Path) -> None:
    agent, dead = run(tmp_path, "a.json", json.dumps(records(1)[0], indent=2).encode())
    assert dead == [] and _received(agent) == 1


def test_a_bad_record_of_a_document_is_dead_lettered_with_its_own_bytes(tmp_path: Path) -> None:
    bad = {"timestamp": "2026-10-01T10:00:00Z"}
    text = json.dumps({"records": [*records(2), bad]}, indent=2).encode()
    agent, dead = run(tmp_path, "a.json", text)
    assert _received(agent) == 3
    assert [d["kind"] for d in dead] == ["schema"]
    assert json.loads(dead[0]["original"]) == bad and dead[0]["original"].encode() in text


def test_json_lines_in_a_json_file_are_still_lines(tmp_path: Path) -> None:
    lines = b"\n".join(orjson.dumps(r) for r in records(3)) + b"\n"
    agent, dead = run(tmp_path, "a.json", lines)
    assert dead == [] and _received(agent) == 3
    assert json_document(str(tmp_path / "in" / "a.json"), 1 << 20) is None


def test_a_broken_document_is_read_line_by_line_as_before(tmp_path: Path) -> None:
    text = json.dumps({"records": records(1)}, indent=2).encode()[:-3]  # cut off
    f = tmp_path / "x.json"
    f.write_bytes(text)
    assert json_document(str(f), 1 << 20) is None
    agent, dead = run(tmp_path, "a.json", text)
    assert dead and {d["kind"] for d in dead} <= {"malformed_json", "schema"}  # each line: what it was before
