"""The outbox under the queued sinks: per-alert order, and outboxes written by earlier versions."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sinks.delivery import Outbox, Result


def _collect(tmp_path: Path, failing: dict[bytes, int]) -> tuple[Outbox, list[bytes], threading.Condition]:
    delivered: list[bytes] = []
    cond = threading.Condition()
    attempts: dict[bytes, int] = {}

    def deliver(body: bytes) -> Result:
        attempts[body] = attempts.get(body, 0) + 1
        if attempts[body] <= failing.get(body, 0):
            return Result("retry", "busy")
        with cond:
            delivered.append(body)
            cond.notify_all()
        return Result("ok")

    box = Outbox("t", deliver, path=str(tmp_path / "o.sqlite"), backoff_base_seconds=0.05, backoff_cap_seconds=0.05)
    return box, delivered, cond


def test_a_resolved_event_never_overtakes_its_firing_being_retried(tmp_path: Path) -> None:
    box, delivered, cond = _collect(tmp_path, {b"a:firing": 3})
    assert box.put(b"a:firing", "a:firing", group="a")
    assert box.put(b"b:firing", "b:firing", group="b")
    assert box.put(b"a:resolved", "a:resolved", group="a")
    assert not box.put(b"a:firing", "a:firing", group="a")  # once per key
    box.start()
    with cond:
        assert cond.wait_for(lambda: len(delivered) == 3, 10)
    box.stop()
    # Another alert is not held up by a's retries; a's events keep their order.
    assert delivered == [b"b:firing", b"a:firing", b"a:resolved"]


def test_a_receivers_retry_after_holds_every_message_not_only_the_one_refused(tmp_path: Path) -> None:
    """New-user review: Slack answered 429 with Retry-After: 3 and the next messages went out within 0.2 s (and
    overtook the refused one). A throttle is the receiver's: nothing is sent to it before it said."""
    calls: list[tuple[float, bytes]] = []
    done = threading.Event()

    def deliver(body: bytes) -> Result:
        calls.append((time.monotonic(), body))
        if len(calls) == 1:
            return Result("retry", "429 Too Many Requests", retry_after=1.0)
        if len(calls) == 4:
            done.set()
        return Result("ok")

    box = Outbox("t", deliver, path=None, backoff_base_seconds=0.01, backoff_cap_seconds=0.2)
    for b in (b"a", b"b", b"c"):
        assert box.put(b, b.decode(), group=b.decode())
    box.start()
    assert done.wait(10)
    box.stop()
    first = calls[0][0]
    assert [b for _t, b in calls] == [b"a", b"a", b"b", b"c"]  # in order, after the wait
    assert all(t - first >= 0.95 for t, _b in calls[1:])


def test_an_outbox_of_an_earlier_version_is_upgraded_and_delivered(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "o.sqlite")
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, last_error TEXT)"
    )
    db.execute("INSERT INTO outbox (body, next_at) VALUES (?, ?)", (b"old", time.time() + 3600))
    db.commit()
    db.close()
    box, delivered, cond = _collect(tmp_path, {})
    box.put(b"new", "new", group="x")
    box.start()
    with cond:
        assert cond.wait_for(lambda: len(delivered) == 2, 10)
    box.stop()
    assert delivered == [b"old", b"new"]  # what a previous run left is due at once, and goes first
