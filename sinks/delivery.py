"""Delivery for network sinks: :class:`QueuedSink`, a durable outbox, one retry policy, one HTTP status classifier.

A network sink subclasses :class:`QueuedSink` (its config subclasses :class:`QueuedSinkConfig`) and supplies
``render(doc) -> bytes | None`` and ``send(body, alert_id) -> Result``; the base owns the rest. Notifications are
written to a SQLite outbox before any delivery attempt (at-least-once: a crash between write and delivery resends
on restart; receivers dedupe on the alert id), once per (alert, status, severity, revision) even when a replay
re-creates the event. A worker thread per sink delivers in order of due time. 408, 429, 5xx, timeouts and
connection errors retry with exponential backoff and full jitter, honouring ``Retry-After`` (a throttle holds every
message to the receiver, not only the one refused; due messages go in the order they were written); other 4xx are
permanent and the notification is dead-lettered with the reason (and the destination, redacted). An alert whose
firing notifications were all dead-lettered (none reached the receiver) gets no lone resolution either: its resolved
notification is dead-lettered too, with the reason "its firing was never delivered", not sent (a receiver would be
told an alert it never had is over).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field

from agent.decoders.base import BadRecord
from agent.registry import ComponentConfig
from sinks.base import Sink

log = logging.getLogger(__name__)

Outcome = Literal["ok", "retry", "permanent"]


@dataclass(slots=True)
class Result:
    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None


def classify_status(status: int) -> Outcome:
    """Map an HTTP status to a delivery outcome.

    >>> [classify_status(s) for s in (200, 202, 400, 401, 404, 408, 429, 500, 503)]
    ['ok', 'ok', 'permanent', 'permanent', 'permanent', 'retry', 'retry', 'retry', 'retry']
    """
    if 200 <= status < 300:
        return "ok"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date).

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after(None) is None
    True
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, dt.timestamp() - time.time())


def redact_url(url: str) -> str:
    """A URL fit for logs and dead letters: scheme and host only. A Slack or Teams webhook's path *is* its
    secret, and ``user:password@`` or a query may carry credentials too.

    >>> redact_url("https://hooks.slack.com/services/T0/B0/XYZ?a=1")
    'https://hooks.slack.com/…'
    >>> redact_url("http://user:pw@127.0.0.1:9099/alerts")
    'http://127.0.0.1:9099/…'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Result:
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:  # user:password@host → HTTP basic authentication (urllib would not)
        creds = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers = {**headers, "Authorization": "Basic " + base64.b64encode(creds.encode()).decode("ascii")}
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")))
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URL)
            resp.read()
            return Result(classify_status(resp.status), f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        # The receiver's words (Slack: "no_team", "invalid_token"): the first line, short, for the dead letter.
        said = exc.read(200).decode("utf-8", "replace").strip().splitlines()
        detail = f"HTTP {exc.code}" + (f" {said[0][:120]}" if said and said[0] else "")
        return Result(classify_status(exc.code), detail, parse_retry_after(exc.headers.get("Retry-After")))
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Result("retry", f"{type(exc).__name__}: {reason}")


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


_NEVER_FIRED = (
    "not sent: its firing was never delivered (dead-lettered), and a resolution alone would tell the receiver of an"
    " alert it never had"
)


class Outbox:
    """Durable FIFO of pending notifications for one sink, with a delivery worker."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[bytes], Result],
        *,
        path: str | None,
        max_attempts: int = 12,
        backoff_base_seconds: float = 0.5,
        backoff_cap_seconds: float = 60.0,
        on_dead: Callable[[bytes, str], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ):
        self.name = name
        self.deliver = deliver
        self.max_attempts = max_attempts
        self.base = backoff_base_seconds
        self.cap = backoff_cap_seconds
        self.on_dead = on_dead
        self.on_depth = on_depth
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, last_error TEXT, grp TEXT)"
        )
        if "grp" not in {row[1] for row in self.db.execute("PRAGMA table_info(outbox)")}:  # an older outbox
            self.db.execute("ALTER TABLE outbox ADD COLUMN grp TEXT")
        cols = {row[1] for row in self.db.execute("PRAGMA table_info(outbox)")}
        if "closes" not in cols:  # (an older outbox: what it holds closes nothing)
            self.db.execute("ALTER TABLE outbox ADD COLUMN closes INTEGER NOT NULL DEFAULT 0")
        self.db.execute("CREATE INDEX IF NOT EXISTS outbox_grp ON outbox (grp, seq)")
        # Per group (an alert) with an item delivered or dead-lettered: whether any item that opens or updates it
        # (not a closing one: a resolution) reached the receiver. A closing item of a group none of whose items
        # reached it is dead-lettered, not sent; the row goes with the group's closing item (or after 35 days).
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS fate (grp TEXT PRIMARY KEY, delivered INTEGER NOT NULL, at REAL NOT NULL)"
        )
        self.db.execute("DELETE FROM fate WHERE at < ?", (time.time() - 35 * 86400,))
        # Keys of everything ever enqueued (35 days): a replay after a crash re-creates the same alert
        # events, and they are not sent again.
        self.db.execute("CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, at REAL NOT NULL)")
        self.db.execute("DELETE FROM sent WHERE at < ?", (time.time() - 35 * 86400,))
        # What a previous run left pending is due now: a restart (often after a fix) retries at once.
        self.db.execute("UPDATE outbox SET next_at = ?", (time.time(),))
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self._failing: str | None = None
        self._failures = 0
        self._hold_until = 0.0  # a receiver's Retry-After: the whole outbox waits (time.time())

    def put(self, body: bytes, dedup_key: str | None = None, group: str | None = None, closes: bool = False) -> bool:
        """Enqueue durably; False (and nothing enqueued) when ``dedup_key`` was enqueued before.

        Items of one ``group`` (an alert id) are delivered in the order they were put: one waits while an earlier
        one of its group is pending (a "resolved" never overtakes its "firing" that is being retried). A ``closes``
        item (a "resolved") of a group whose other items were all dead-lettered is dead-lettered too, not sent."""
        with self._wake:
            now = time.time()
            if dedup_key is not None:
                cur = self.db.execute("INSERT OR IGNORE INTO sent (key, at) VALUES (?, ?)", (dedup_key, now))
                if cur.rowcount == 0:
                    return False
            self.db.execute(
                "INSERT INTO outbox (body, next_at, grp, closes) VALUES (?, ?, ?, ?)", (body, now, group, int(closes))
            )
            self._wake.notify()
        self._report_depth()
        return True

    def depth(self) -> int:
        with self._lock:
            row = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    def _report_depth(self) -> None:
        if self.on_depth:
            self.on_depth(self.depth())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"outbox-{self.name}", daemon=True)
        self._thread.start()

    # The head of each group: no earlier item of the same group is pending.
    _HEADS = (
        "FROM outbox o WHERE (o.grp IS NULL"
        " OR NOT EXISTS (SELECT 1 FROM outbox p WHERE p.grp = o.grp AND p.seq < o.seq))"
    )

    def _next(self) -> tuple[int, bytes, int, str | None, bool] | None:
        if time.time() < self._hold_until:  # the receiver said Retry-After: nothing goes to it before then
            return None
        row = self.db.execute(
            f"SELECT seq, body, attempts, grp, closes {self._HEADS} AND next_at <= ? ORDER BY seq LIMIT 1",
            (time.time(),),
        ).fetchone()
        return (int(row[0]), bytes(row[1]), int(row[2]), row[3], bool(row[4])) if row else None

    def _orphaned(self, seq: int, grp: str | None, closes: bool) -> bool:
        """Whether a closing item's group never reached the receiver (all its other items dead-lettered): then the
        item is taken out (and the group forgotten) instead of sent. Under the lock."""
        if not closes or grp is None:
            return False
        row = self.db.execute("SELECT delivered FROM fate WHERE grp = ?", (grp,)).fetchone()
        self.db.execute("DELETE FROM fate WHERE grp = ?", (grp,))
        if row is None or row[0]:
            return False
        self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        return True

    def _settle(self, grp: str | None, closes: bool, delivered: bool) -> None:
        """Record an opening or updating item's fate for its group (under the lock): delivered once is known."""
        if grp is None or closes:
            return
        if delivered:
            self.db.execute("INSERT OR REPLACE INTO fate (grp, delivered, at) VALUES (?, 1, ?)", (grp, time.time()))
        else:
            self.db.execute("INSERT OR IGNORE INTO fate (grp, delivered, at) VALUES (?, 0, ?)", (grp, time.time()))

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
                item = self._next()
                if item is None:
                    row = self.db.execute(f"SELECT MIN(next_at) {self._HEADS}").fetchone()
                    due = None if row[0] is None else max(row[0], self._hold_until)
                    wait = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
                    self._wake.wait(wait)
                    continue
                seq, body, attempts, grp, closes = item
                orphaned = self._orphaned(seq, grp, closes)
            if orphaned:
                if self.on_dead:
                    self.on_dead(body, _NEVER_FIRED)
                self._report_depth()
                continue
            res = self.deliver(body)
            with self._lock:
                if res.outcome == "ok":
                    self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                    self._settle(grp, closes, True)
                elif res.outcome == "permanent" or attempts + 1 >= self.max_attempts:
                    self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                    self._settle(grp, closes, False)
                    n = attempts + 1
                    tries = f"{n} attempt{'s' if n > 1 else ''}"
                    dead_reason = (
                        f"refused (permanent) after {tries}: {res.detail}"
                        if res.outcome == "permanent"
                        else f"gave up after {tries} (max_attempts), the last: {res.detail}"
                    )
                else:
                    delay = backoff_seconds(attempts, self.base, self.cap, self._rng)
                    if res.retry_after is not None:
                        delay = max(delay, min(res.retry_after, self.cap * 10))
                        # A throttle (429, 503) is the receiver's, not the message's: every message waits for it
                        # (the next ones would be refused too, and would overtake this one).
                        self._hold_until = time.time() + delay
                    self.db.execute(
                        "UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE seq = ?",
                        (attempts + 1, time.time() + delay, res.detail, seq),
                    )
            dead = res.outcome != "ok" and (res.outcome == "permanent" or attempts + 1 >= self.max_attempts)
            if dead and self.on_dead:
                self.on_dead(body, dead_reason)
            self._log_state(res)
            self._report_depth()

    def _log_state(self, res: Result) -> None:
        """Log changes of delivery state (failing → recovered, a new kind of error), not every attempt."""
        if res.outcome == "ok":
            if self._failing:
                log.info("sink %s: delivering again after %d failed attempt(s)", self.name, self._failures)
            self._failing, self._failures = None, 0
            return
        self._failures += 1
        kind = res.detail.split(":")[0]
        if kind != self._failing:
            if res.outcome == "permanent":
                log.warning(
                    "sink %s: delivery refused (%s): not retried, the notification is dead-lettered"
                    " (further refusals are counted in finops_agent_errors_total)",
                    self.name,
                    res.detail,
                )
            else:
                log.warning(
                    "sink %s: delivery failing (%s); retrying with backoff, notifications that keep failing are"
                    " dead-lettered (further failures are counted in finops_agent_errors_total)",
                    self.name,
                    res.detail,
                )
            self._failing = kind

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is due (True) or ``timeout`` passes (False)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                row = self.db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE next_at <= ?", (time.time() + 0.05,)
                ).fetchone()
            if row[0] == 0:
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self.db.close()


class QueuedSinkConfig(ComponentConfig):
    """The retry policy and what is sent, shared by every queued sink's config."""

    send_resolved: bool = True
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(
        40, ge=1, description="then dead-lettered (with the defaults: after about 20 minutes of failures)"
    )
    backoff_base_seconds: float = Field(0.5, gt=0)
    backoff_cap_seconds: float = Field(60.0, gt=0)


class QueuedSink(Sink):
    """A sink that delivers each alert event over the network, through a durable outbox.

    Subclasses implement :meth:`render` and :meth:`send`; optionally :meth:`destination` (for dead letters and
    logs: never a secret) and :meth:`dedup_key`. Delivery metrics are ``finops_agent_events_sent_total`` and
    ``finops_agent_errors_total{stage="deliver"}`` per sink, and ``finops_agent_outbox_depth``.
    """

    cfg: QueuedSinkConfig
    pages = True  # routed, grouped and silenced by the notifier (agent.notify)

    @classmethod
    def check_config(cls, config: type) -> str | None:
        """What this sink's config class lacks (checked by ``validate``); None when it can run."""
        if not issubclass(config, QueuedSinkConfig):
            return f"sink {cls.__name__}: its config {config.__name__} must subclass sinks.delivery.QueuedSinkConfig"
        return None

    def __init__(self, cfg: QueuedSinkConfig, **kw: Any):
        why = self.check_config(type(cfg))
        if why:
            raise TypeError(why)
        super().__init__(cfg, **kw)
        self.outbox: Outbox | None = None
        self.dead_letter = kw.get("dead_letter")

    # -- what a sink supplies ---------------------------------------------------------------
    def render(self, doc: dict[str, Any]) -> bytes | None:
        """The request body for an alert event, or None to send nothing for it."""
        raise NotImplementedError

    def send(self, body: bytes, alert_id: str) -> Result:
        """One delivery attempt of a rendered body: ``ok``, ``retry`` (with ``retry_after``) or ``permanent``."""
        raise NotImplementedError

    def destination(self) -> str:
        """Where deliveries go, fit for logs and dead letters (no credentials, no secret path)."""
        return self.name

    def dedup_key(self, doc: dict[str, Any]) -> str:
        """One delivery per (alert, status, severity, revision), even when a replay after a crash re-creates the
        event; a billing restatement that changes the alert is a new revision."""
        key = f"{doc['id']}:{doc['status']}:{doc['severity']}"
        if doc.get("revision"):
            key += f":r{doc['revision']}"
        return key + f":n{doc['repeat']}" if doc.get("repeat") else key  # a re-notification is sent again

    # -- the base's part ---------------------------------------------------------------------
    def state_path(self) -> str | None:
        """The sink's SQLite file under the state directory (its outbox; a sink may keep more state there), or None
        without a state directory (kept in memory only)."""
        return str(Path(self.state_dir) / f"outbox-{self.name}.sqlite") if self.state_dir else None

    def start(self) -> None:
        path = self.state_path()
        self.outbox = Outbox(
            self.name,
            self._deliver,
            path=path,
            max_attempts=self.cfg.max_attempts,
            backoff_base_seconds=self.cfg.backoff_base_seconds,
            backoff_cap_seconds=self.cfg.backoff_cap_seconds,
            on_dead=self._dead,
            on_depth=lambda n: self.telemetry.outbox_depth.labels(sink=self.name).set(n),
        )
        self.outbox.start()

    def on_alert(self, doc: dict[str, Any]) -> None:
        if doc["status"] == "resolved" and not self.cfg.send_resolved:
            return
        body = self.render(doc)
        if body is None:
            return
        assert self.outbox is not None, "sink not started"
        env = orjson.dumps({"id": doc["id"], "body": body.decode()})
        self.outbox.put(env, dedup_key=self.dedup_key(doc), group=doc["id"], closes=doc["status"] == "resolved")

    def _deliver(self, item: bytes) -> Result:
        env = orjson.loads(item)
        try:
            res = self.send(env["body"].encode(), env["id"])
        except Exception as exc:  # a sink's bug must not stop its outbox: retried, then dead-lettered
            log.debug("sink %s: send failed", self.name, exc_info=True)
            res = Result("retry", f"{type(exc).__name__}: {exc}")
        if res.outcome == "ok":
            self.telemetry.sent.labels(component=self.name).inc()
        else:
            self.telemetry.errors.labels(component=self.name, error_type=res.outcome, stage="deliver").inc()
        return res

    def _dead(self, item: bytes, reason: str) -> None:
        self.telemetry.discarded.labels(component=self.name, reason="delivery_failed").inc()
        if self.dead_letter is not None:
            self.dead_letter.write(self.name, self.destination(), [BadRecord(item, "delivery_failed", reason)])
            self.telemetry.dead_lettered.inc()  # every line in the dead-letter file counts (the shipped alert rule)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.outbox.drain(timeout) if self.outbox else True

    def stop(self, timeout: float = 5.0) -> None:
        if self.outbox is not None:
            self.outbox.drain(min(timeout, 5.0))
            self.outbox.stop(timeout)
            self.outbox = None
