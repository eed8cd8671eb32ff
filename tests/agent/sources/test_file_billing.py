"""A watched folder of billing files: a file still being copied in is read only once it has settled (no half-read
file, no dead letter for a line only cut by the copy), while line files are still read as they grow; an export's
layout is read delivery by delivery, a newer execution replacing its period's previous one."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from agent.registry import build
from agent.sources.base import Batch
from agent.sources.file import FileConfig, FileSource
from tests.agent.decoders.test_bedrock import log
from tests.agent.sources.test_exports_local import cur2_export, write_cur
from tests.conftest import wait_until


class Watched:
    """A file source watching ``path`` on its own thread; what the pipeline would process is committed at once."""

    def __init__(self, path: Path, decoder: dict[str, Any], **opts: Any):
        self.cfg = FileConfig(type="file", path=str(path), watch=True, poll_interval_seconds=0.05, decoder=decoder,
                              **opts)  # fmt: skip
        self.batches: list[Batch] = []
        self.lock = threading.Lock()
        dec = build("decoder", self.cfg.decoder)
        self.src = FileSource(self.cfg, name="s", decoder=dec, emit=self._emit, ctx_defaults={})

    def _emit(self, b: Batch) -> None:
        with self.lock:
            self.batches.append(b)
        if b.position is not None:
            self.src.commit(*b.position)

    def of(self, kind: str) -> list[Batch]:
        with self.lock:
            return [b for b in self.batches if b.kind == kind]

    def polls_after(self, n: int) -> bool:
        """Waits until the source has polled ``n`` more times."""
        start = len(self.of("idle"))
        return wait_until(lambda: len(self.of("idle")) >= start + n, 30, 0.01)

    def __enter__(self) -> Watched:
        self.src.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.src.stop()


def test_a_billing_csv_copied_in_two_chunks_is_read_once_whole(tmp_path: Path) -> None:
    """The review's `run4.log`: the first half of a CSV (cut mid-line) lies in the inbox for several polls and is not
    read; once the rest is there and the file has settled, it is read whole: one delivery, every row, no dead
    letter. (settle_seconds is long here: only an mtime older than it — a copy that keeps its source's time sets
    it when done — lets the file be read at the next poll.)"""
    whole = tmp_path / "whole.csv"
    rows = write_cur(whole, 200)
    body = whole.read_bytes()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with Watched(inbox, {"type": "cur"}, settle_seconds=3600) as w:
        assert w.polls_after(1)
        with open(inbox / "slow.csv", "wb") as fh:
            fh.write(body[: len(body) // 2 + 7])
        assert w.polls_after(5)
        assert w.of("snapshot") == [] and w.of("bad") == []
        with open(inbox / "slow.csv", "ab") as fh:
            fh.write(body[len(body) // 2 + 7 :])
        assert w.polls_after(3)
        assert w.of("snapshot") == []  # just written: not settled yet
        os.utime(inbox / "slow.csv", (1_000_000, 1_000_000))
        assert wait_until(lambda: w.of("snapshot"), 30)
        assert w.polls_after(3)
    [snap] = w.of("snapshot")
    assert snap.payload.rows == rows and w.of("bad") == []


def test_a_billing_file_seen_unchanged_for_settle_seconds_is_read(tmp_path: Path) -> None:
    """A fresh file (its mtime now) is read once it has been seen unchanged for settle_seconds."""
    write_cur(tmp_path / "in" / "cur.csv", 10)
    with Watched(tmp_path / "in", {"type": "cur"}, settle_seconds=0.2) as w:
        assert wait_until(lambda: w.of("snapshot"), 30)
    assert [b.payload.rows for b in w.of("snapshot")] == [10] and w.of("bad") == []


def test_line_files_are_still_read_as_they_grow(tmp_path: Path) -> None:
    """settle_seconds is for billing files: a JSON lines file followed with watch is read line by line as it grows."""
    f = tmp_path / "in" / "calls.jsonl"
    f.parent.mkdir()
    f.write_bytes(log(timestamp="2026-10-01T10:00:00Z") + b"\n")
    with Watched(f.parent, {"type": "bedrock"}, settle_seconds=3600) as w:
        assert wait_until(lambda: sum(len(b.payload) for b in w.of("lines")) == 1, 30)
        with open(f, "ab") as fh:
            fh.write(log(timestamp="2026-10-01T10:01:00Z") + b"\n")
        assert wait_until(lambda: sum(len(b.payload) for b in w.of("lines")) == 2, 30)


def test_a_newer_execution_in_a_watched_export_replaces_its_period(tmp_path: Path) -> None:
    """An export's layout synced into a watched folder: exec1 is read as the period's delivery; when exec2 (two split
    parts, a newer manifest) lands, it is read whole as the same period's next delivery — it replaces exec1 (the
    pipeline restates the period), never adds to it. Manifests are never dead-lettered."""
    exp = tmp_path / "exp"
    old, new = cur2_export(tmp_path / "staged")
    os.rename(tmp_path / "staged", exp)
    exec2 = [
        exp / "cur2/finops-cur/data/BILLING_PERIOD=2026-10/exec2",
        exp / "cur2/finops-cur/metadata/BILLING_PERIOD=2026-10/exec2",
    ]
    for d in exec2:
        os.rename(d, tmp_path / d.parent.parent.name)
    with Watched(exp, {"type": "cur"}) as w:
        assert wait_until(lambda: w.of("snapshot"), 30)
        for d in exec2:
            os.rename(tmp_path / d.parent.parent.name, d)
        assert wait_until(lambda: len(w.of("snapshot")) == 2, 30)
        assert w.polls_after(3)
    snaps = [b.payload for b in w.of("snapshot")]
    assert [(s.key, s.delivery, s.rows) for s in snaps] == [(snaps[0].key, "exec1", 24), (snaps[0].key, "exec2", 36)]
    assert snaps[0].key.endswith("data/BILLING_PERIOD=2026-10") and w.of("bad") == []
    assert "set aside 1 file of older deliveries (in exec1)" in w.src.set_aside[snaps[0].key]
