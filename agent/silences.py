"""Silences: Alertmanager's label matchers, and silences (matchers, a start and an end, a comment and an author) from
the config file and the API, kept in ``<state directory>/silences.json``. The notifier (:mod:`agent.notify`) asks
which are active for an alert's labels."""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent.state import atomic_write

_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_.\-]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """One label matcher, as Alertmanager writes it.

    >>> m = Matcher.parse('team=~"research|ml"')
    >>> m.matches({"team": "ml"}), m.matches({"team": "mlops"}), m.matches({})
    (True, False, False)
    >>> Matcher.parse("severity!=warning").matches({"severity": "critical"})
    True
    >>> Matcher.parse("team=").matches({"model": "x"})  # a missing label is the empty string
    True
    """

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if m is None:
            raise ValueError(f"{text!r} is not a matcher (name=value, name!=value, name=~regex, name!~regex)")
        name, op, value = m.groups()
        if value[:1] in ("=", "~"):
            raise ValueError(f"{text!r}: not an operator {op + value[:1]!r} (=, !=, =~, !~)")
        quoted = value[:1] == '"', value[-1:] == '"' and len(value) >= 2
        if quoted[0] != quoted[1]:
            raise ValueError(f"{text!r}: an unbalanced quote")
        if quoted[0]:
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise ValueError(f"{text!r}: not a regular expression: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(texts: Iterable[str]) -> list[Matcher]:
    return [Matcher.parse(t) for t in texts]


def alert_labels(doc: dict[str, Any]) -> dict[str, str]:
    """The labels routes and silences match on: the series' dimensions, then the agent's own (which win)."""
    labels = {str(k): str(v) for k, v in (doc.get("series") or {}).items()}
    for k in ("detector", "severity", "kind", "signal", "status", "direction"):
        if doc.get(k) is not None:
            labels[k] = str(doc[k])
    return labels


@dataclass
class Silence:
    id: str
    matchers: list[str]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str
    origin: str = "api"  # or "config"
    planned_change: bool = False
    _parsed: list[Matcher] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._parsed = parse_matchers(self.matchers)

    def state(self, now: float) -> str:
        if now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self._parsed)

    def to_json(self, now: float) -> dict[str, Any]:
        from agent.model import iso

        return {
            "id": self.id,
            "matchers": list(self.matchers),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "origin": self.origin,
            "planned_change": self.planned_change,
            "status": self.state(now),
        }


class Silences:
    """The config's silences and those made through the API (kept in ``path``, a JSON file)."""

    def __init__(self, configured: Iterable[Silence], path: str | None, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.path = Path(path) if path else None
        self.lock = threading.Lock()
        self.items: dict[str, Silence] = {s.id: s for s in configured}
        if self.path is not None and self.path.exists():
            for raw in orjson.loads(self.path.read_bytes()):
                s = Silence(**raw)
                self.items.setdefault(s.id, s)

    def _save(self) -> None:
        if self.path is None:
            return
        now = self.clock()
        api = [  # (expired ones are kept a day, for the list)
            {k: v for k, v in vars(x).items() if not k.startswith("_")}
            for x in self.items.values()
            if x.origin == "api" and x.ends_at > now - 86400
        ]
        atomic_write(self.path, orjson.dumps(api))

    def add(self, silence: Silence) -> Silence:
        with self.lock:
            self.items[silence.id] = silence
            self._save()
        return silence

    def expire(self, silence_id: str) -> Silence | None:
        """End a silence now (an API silence; the config's end only with the config). None: no such silence."""
        with self.lock:
            s = self.items.get(silence_id)
            if s is None:
                return None
            if s.origin != "api":
                raise PermissionError(f"silence {silence_id} is in the config file: change it there")
            s.ends_at = min(s.ends_at, self.clock())
            self._save()
            return s

    def all(self) -> list[Silence]:
        with self.lock:
            return sorted(self.items.values(), key=lambda s: (s.starts_at, s.id))

    def active_for(self, labels: dict[str, str], at: float | None = None) -> list[Silence]:
        """The silences active ``at`` (default: now) that match ``labels``."""
        now = self.clock() if at is None else at
        with self.lock:
            return [s for s in self.items.values() if s.state(now) == "active" and s.matches(labels)]


def configured_silences(configs: Iterable[Any]) -> list[Silence]:
    """The config file's silences (their ids stable across restarts: a hash of what they say)."""
    from agent.model import parse_time

    out = []
    for c in configs:
        key = orjson.dumps([c.matchers, c.starts_at, c.ends_at, c.comment, c.created_by])
        out.append(
            Silence(
                id="config-" + hashlib.sha256(key).hexdigest()[:12],
                matchers=list(c.matchers),
                starts_at=parse_time(c.starts_at) if c.starts_at else 0.0,
                ends_at=parse_time(c.ends_at),
                comment=c.comment,
                created_by=c.created_by,
                origin="config",
                planned_change=c.planned_change,
            )
        )
    return out


def new_silence(raw: dict[str, Any], clock: Callable[[], float] = time.time) -> Silence:
    """A silence from an API request body (``matchers``, ``ends_at`` or ``duration_seconds``, ``comment``,
    ``created_by``, optional ``starts_at``, ``planned_change``); ValueError with every problem."""
    from agent.model import parse_time

    errors = []
    if not isinstance(raw, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(raw) - {
        "matchers",
        "starts_at",
        "ends_at",
        "duration_seconds",
        "comment",
        "created_by",
        "planned_change",
    }
    if unknown:
        errors.append(f"unknown fields: {', '.join(sorted(unknown))}")
    matchers = raw.get("matchers")
    if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
        errors.append("matchers: a non-empty list of matchers (team=research, severity=~critical|error)")
        matchers = []
    for m in matchers:
        try:
            Matcher.parse(m)
        except ValueError as exc:
            errors.append(f"matchers: {exc}")
    for key in ("comment", "created_by"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            errors.append(f"{key}: required (who silences what, and why)")
    now = clock()
    starts = ends = None
    try:
        starts = parse_time(raw["starts_at"]) if raw.get("starts_at") else now
    except (ValueError, TypeError):
        errors.append("starts_at: not a time (2026-12-03T00:00:00Z)")
    try:
        if raw.get("ends_at"):
            ends = parse_time(raw["ends_at"])
        elif "duration_seconds" in raw:
            d = raw["duration_seconds"]
            if isinstance(d, int | float) and not isinstance(d, bool) and d > 0:
                ends = (starts or now) + float(d)
            else:
                errors.append("duration_seconds: a positive number of seconds")
        else:
            errors.append("ends_at or duration_seconds: required")
    except (ValueError, TypeError):
        errors.append("ends_at: not a time (2026-12-10T00:00:00Z)")
    if starts is not None and ends is not None and ends <= max(starts, now):
        errors.append("ends_at: must be after starts_at and in the future")
    if errors:
        raise ValueError("; ".join(errors))
    assert starts is not None and ends is not None
    return Silence(
        id=str(uuid.uuid4()),
        matchers=list(matchers),
        starts_at=starts,
        ends_at=ends,
        comment=raw["comment"].strip(),
        created_by=raw["created_by"].strip(),
        origin="api",
        planned_change=bool(raw.get("planned_change", False)),
    )
