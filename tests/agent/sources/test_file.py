from __future__ import annotations

import gzip
import io
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.decoders.base import BadRecord
from agent.model import Observation
from agent.pipeline import Agent
from agent.sources.base import Batch
from agent.sources.file import FileConfig, FileSource
from agent.state import LocalStateStore, MemoryStateStore
from tests.agent.decoders.test_bad_records import BEDROCK, CASES, Case
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


# -- bad input at the source: truncated gzip members, records over max_record_bytes, blank lines --
def _read(path: Path, case: Case, **opts: object) -> tuple[list[Batch], list[Observation], list[BadRecord]]:
    """Run a file source over ``path`` (no agent), decode what it hands over: batches, observations, bad records."""
    dec = case.make()
    cfg = FileConfig(type="file", path=str(path), decoder=dec.cfg, **opts)  # type: ignore[attr-defined]
    batches: list[Batch] = []
    c = case.ctx
    src = FileSource(
        cfg, name="s", decoder=dec, emit=batches.append, ctx_defaults={"min_ts": c.min_ts, "max_ts": c.max_ts}
    )
    src.run()
    obs: list[Observation] = []
    bad: list[BadRecord] = []
    for b in batches:
        if b.kind == "lines" and b.payload:
            o, bd = dec.decode_lines(b.payload, b.ctx)  # type: ignore[arg-type]
            obs += o
            bad += bd
        elif b.kind == "bad":
            bad += b.payload
    return batches, obs, bad


def _available(gz: bytes) -> bytes:
    """What Python's gzip module can read of a cut-off file (an independent reading)."""
    out = []
    with gzip.GzipFile(fileobj=io.BytesIO(gz)) as fh:
        try:
            while chunk := fh.read1(4096):
                out.append(chunk)
        except EOFError:
            pass
    return b"".join(out)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("members", [1, 3])
def test_truncated_gzip_member_counts_every_complete_record_and_dead_letters_the_tail_once(
    tmp_path: Path, name: str, members: int
) -> None:
    case = CASES[name]
    good = [case.good(i) for i in range(3000)]
    lines = [ln for ln, _ in good]
    # Complete members, then one cut in the middle (e.g. a delivery interrupted while appending a member).
    per = len(lines) // members
    parts = [b"\n".join(lines[i * per : (i + 1) * per]) + b"\n" for i in range(members)]
    gz = b"".join(gzip.compress(p) for p in parts[:-1])
    last = gzip.compress(parts[-1])
    gz += last[: len(last) // 2]
    (tmp_path / "x.log.gz").write_bytes(gz)
    _batches, obs, bad = _read(tmp_path / "x.log.gz", case, chunk_bytes=8192)
    available = _available(gz)
    complete = available.count(b"\n")
    assert per * (members - 1) < complete < len(lines)
    expected = tuple(sum(c[k] for _, c in good[:complete]) for k in (0, 1))
    assert case.totals(obs) == expected
    assert [(b.kind, b.raw) for b in bad] == [("truncated_gzip", available[available.rfind(b"\n") + 1 :])]
    assert f"after {len(available)} bytes" in bad[0].reason


@pytest.mark.parametrize("gz", [False, True])
def test_records_over_max_record_bytes_are_dead_lettered_without_holding_them(tmp_path: Path, gz: bool) -> None:
    case = CASES["bedrock"]
    limit = 10_000
    good = [case.good(i) for i in range(60)]
    huge = b'{"x": "' + b"a" * 3_000_000 + b'"}'  # spans hundreds of chunks before its end
    long = log(requestMetadata={"team": "b" * 20_000})  # complete within one chunk, over the limit
    lines = [ln for ln, _ in good[:20]] + [huge] + [ln for ln, _ in good[20:40]] + [long]
    lines += [ln for ln, _ in good[40:]] + [b"c" * 50_000]  # the last one: no newline, at the end of the file
    content = b"\n".join(lines)
    path = tmp_path / ("x.jsonl.gz" if gz else "x.jsonl")
    path.write_bytes(gzip.compress(content) if gz else content)
    batches, obs, bad = _read(path, case, chunk_bytes=4096, max_record_bytes=limit)
    assert case.totals(obs) == tuple(sum(c[k] for _, c in good) for k in (0, 1))
    assert sorted((b.kind, b.raw) for b in bad) == sorted(
        ("record_too_large", x[:limit]) for x in (huge, long, b"c" * 50_000)
    )
    for x in (huge, long, b"c" * 50_000):
        assert any(f"line of {len(x)} bytes" in b.reason for b in bad)
    # Nothing over the limit reached a decoder, and the position ends at the end of the content.
    assert max(len(ln) for b in batches if b.kind == "lines" for ln in b.payload) <= limit
    assert batches[-2].position is not None and batches[-2].position[1]["offset"] == len(content)


@pytest.mark.parametrize("gz", [False, True])
def test_a_line_over_the_limit_does_not_grow_the_buffer(tmp_path: Path, gz: bool) -> None:
    """Memory stays bounded by the limit and the chunk, however long a line is (20 MB, 20 kB gzipped)."""
    content = log() + b"\n" + b"z" * 20_000_000 + b"\n" + log() + b"\n"
    path = tmp_path / ("x.jsonl.gz" if gz else "x.jsonl")
    path.write_bytes(gzip.compress(content) if gz else content)
    tracemalloc.start()
    try:
        _batches, obs, bad = _read(path, CASES["bedrock"], chunk_bytes=4096, max_record_bytes=8192)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(o.values[0] for o in obs) == 2 and [b.kind for b in bad] == ["record_too_large"]
    assert peak < 2_000_000


def _watching(path: Path) -> tuple[FileSource, list[Batch]]:
    dec = BEDROCK.make()
    opts = {"watch": True, "poll_interval_seconds": 0.02}
    cfg = FileConfig(type="file", path=str(path), decoder=dec.cfg, **opts)  # type: ignore[attr-defined]
    handed: list[Batch] = []
    return FileSource(cfg, name="s", decoder=dec, emit=handed.append, ctx_defaults={}), handed


def _handed(batches: list[Batch]) -> list[bytes]:
    return [ln for b in batches if b.kind == "lines" for ln in b.payload]


def _rotate(d: Path, new: list[bytes], compress: bool = False) -> None:
    """logrotate's create mode: the file renamed beside it (then compressed), a new one at its path."""
    tmp = d.parent / "new.tmp"
    tmp.write_bytes(b"".join(ln + b"\n" for ln in new))
    (d / "a.jsonl").rename(d / "a.jsonl.1")
    tmp.rename(d / "a.jsonl")
    if compress:
        (d / "a.jsonl.1.gz").write_bytes(gzip.compress((d / "a.jsonl.1").read_bytes()))
        (d / "a.jsonl.1").unlink()


def _logs(tmp_path: Path, n: int) -> tuple[Path, list[bytes]]:
    """A watched folder ``in`` with ``a.jsonl`` of ``n`` Bedrock logs."""
    d = tmp_path / "in"
    d.mkdir()
    lines = [log(team=f"a{i}") for i in range(n)]
    (d / "a.jsonl").write_bytes(b"".join(ln + b"\n" for ln in lines))
    return d, lines


def test_a_watched_file_polled_while_its_batches_wait_in_the_queue_is_not_read_twice(tmp_path: Path) -> None:
    """The pipeline commits a batch's position only once it has processed it: a poll in between (a busy agent, a
    queue of a large file's batches) reads on from what was handed over, not again from the committed position."""
    d, _ = _logs(tmp_path, 3)
    f = d / "a.jsonl"
    src, handed = _watching(d)  # nothing commits
    src.start()
    try:
        assert wait_until(lambda: len(_handed(handed)) >= 3, 5)
        time.sleep(0.3)  # many polls, nothing processed yet
        with f.open("ab") as fh:
            fh.write(log(team="t3") + b"\n")
        assert wait_until(lambda: len(_handed(handed)) >= 4, 5)
        time.sleep(0.3)
    finally:
        src.stop()
    lines = _handed(handed)
    assert len(lines) == 4 and len(set(lines)) == 4  # each line handed over once
    # A restored source (a restart) reads on from what was processed.
    src2, _ = _watching(d)
    src2.read_to[str(f)] = {"offset": 999, "done": False}  # (what it had handed over before a restore)
    src2.restore({str(f): {"offset": 0, "done": False}})
    assert src2.read_to == {} and src2._position(str(f)) == {"offset": 0, "done": False}


@pytest.mark.parametrize("compress", [False, True], ids=["renamed", "renamed-then-gzipped"])
def test_a_rotated_file_is_read_from_its_start_and_its_renamed_copy_not_again(tmp_path: Path, compress: bool) -> None:
    d, old = _logs(tmp_path, 20)
    src, handed = _watching(d)
    src.start()
    try:
        assert wait_until(lambda: len(_handed(handed)) >= 20, 5)
        new = [log(team=f"x{i}") for i in range(15)]  # another file at the same path, shorter than the old one
        _rotate(d, new, compress)
        assert wait_until(lambda: len(_handed(handed)) >= 35, 5)
        time.sleep(0.3)  # more polls: the rotated copy beside it is not read again
    finally:
        src.stop()
    got = _handed(handed)
    assert sorted(got) == sorted(old + new), (len(got), len(set(got)))


def test_a_file_rotated_while_the_agent_was_down_is_read_whole_after_the_restart(tmp_path: Path) -> None:
    d, old = _logs(tmp_path, 20)
    src, handed = _watching(d)
    src.start()
    assert wait_until(lambda: len(_handed(handed)) >= 20, 5)
    src.stop()
    checkpoint = dict(src.read_to)  # (what the pipeline would have committed and checkpointed)
    new = [log(team=f"x{i}") for i in range(30)]
    _rotate(d, new)
    src2, handed2 = _watching(d)
    src2.restore(checkpoint)
    src2.start()
    try:
        assert wait_until(lambda: len(_handed(handed2)) >= 30, 5)
        time.sleep(0.3)
    finally:
        src2.stop()
    assert sorted(_handed(handed2)) == sorted(new)  # the new file whole, the old one (renamed) not again


def test_a_new_file_that_starts_as_an_older_one_is_read_whole(tmp_path: Path) -> None:
    """Scrapes of one exporter (or logs with a common header) share their first KiB: a new file is not taken for a
    copy of one read before unless it is that file (its inode) or a copy of a file rotated away."""
    d, old = _logs(tmp_path, 20)
    src, handed = _watching(d)
    src.start()
    try:
        assert wait_until(lambda: len(_handed(handed)) >= 20, 5)
        more = [log(team=f"b{i}") for i in range(5)]
        (d / "b.jsonl").write_bytes(b"".join(ln + b"\n" for ln in old + more))  # the same head, another file
        assert wait_until(lambda: len(_handed(handed)) >= 45, 5)
        time.sleep(0.2)
    finally:
        src.stop()
    assert len(_handed(handed)) == 45


def test_a_path_that_names_no_file_is_said_by_validate_and_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """New-user review: `path: …/bedrok-logs` (a typo) ran silently and reported ready."""
    import logging

    from agent.cli import main

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"""
sources:
  logs: {{type: file, path: {tmp_path / "bedrok-logs"}, watch: true, decoder: {{type: bedrock}}}}
  ok: {{type: file, path: {tmp_path}, decoder: {{type: bedrock}}}}
detectors: {{d: {{type: seasonal, signal: token_cost_usd}}}}
sinks: {{c: {{type: console}}}}
"""
    )
    assert main(["validate", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert f"warning: sources.logs.path: no such file or directory: {tmp_path / 'bedrok-logs'}" in out
    assert "sources.ok" not in out  # (the folder holds the config file)
    from agent.decoders.bedrock import BedrockConfig, BedrockDecoder

    src = FileSource(
        FileConfig(type="file", path=str(tmp_path / "bedrok-logs"), decoder={"type": "bedrock"}),
        name="logs",
        decoder=BedrockDecoder(BedrockConfig(type="bedrock")),
        emit=lambda b: None,
        ctx_defaults={},
    )
    caplog.set_level(logging.WARNING, logger="agent")
    src.run()
    assert "file source logs: no such file or directory" in caplog.text and "(nothing to read)" in caplog.text
