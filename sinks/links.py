"""Links in notifications: URL templates filled from an alert document, a token bucket per receiver key, and the
text helpers the paging sinks share.

A template names alert document fields in braces: ``{id}``, ``{detector}``, ``{signal}``, ``{window_start}``,
``{started_at}``, … and a series dimension as ``{series.team}``; values are URL-quoted. An unknown field is a
config error (:func:`template_errors`); a dimension the alert's series does not have leaves the link out (a link
to the wrong panel is worse than none).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.alerts import _DOCUMENT, _dollars, _usd

_FIELD = re.compile(r"\{([^{}]*)\}")
_SCALARS = sorted(k for k, v in _DOCUMENT.items() if k not in ("series", "episode", "top_contributors", "limit"))


def template_errors(template: str) -> list[str]:
    """What is wrong with a link template (empty: fine).

    >>> template_errors("https://g/d/x?var-team={series.team}&from={window_start}")
    []
    >>> template_errors("https://g/{team}")
    ["unknown field {team}: use {series.team} for a dimension, or one of the alert's fields (id, detector, ...)"]
    """
    out = []
    for name in _FIELD.findall(template):
        if name.startswith("series.") and len(name) > 7:
            continue
        if name not in _SCALARS:
            out.append(
                f"unknown field {{{name}}}: use {{series.{name}}} for a dimension, or one of the alert's fields "
                "(id, detector, ...)"
            )
    if urllib.parse.urlsplit(_FIELD.sub("x", template)).scheme not in ("http", "https"):
        out.append("not an http(s) URL")
    return out


def expand(template: str, doc: dict[str, Any]) -> str | None:
    """The template filled from ``doc`` (None when it names a dimension the series does not have).

    >>> expand("https://g/d?team={series.team}&id={id}", {"id": "a b", "series": {"team": "x/y"}})
    'https://g/d?team=x%2Fy&id=a%20b'
    >>> expand("https://g/d?team={series.team}", {"series": {}}) is None
    True
    """
    missing = False

    def fill(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1)
        if name.startswith("series."):
            value = (doc.get("series") or {}).get(name[7:])
        else:
            value = doc.get(name)
        if value is None:
            missing = True
            return ""
        return urllib.parse.quote(str(value), safe="")

    url = _FIELD.sub(fill, template)
    return None if missing else url


class Link(BaseModel):
    """A link in a notification: ``href`` a template (see :mod:`sinks.links`), ``text`` what it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    href: str
    text: str = Field("link", min_length=1, max_length=200)

    @field_validator("href")
    @classmethod
    def _template(cls, v: str) -> str:
        errors = template_errors(v)
        if errors:
            raise ValueError("; ".join(errors))
        return v


def links_for(links: list[Link], doc: dict[str, Any]) -> list[dict[str, str]]:
    """``[{"href": ..., "text": ...}]`` for the links whose template ``doc`` fills."""
    out = []
    for link in links:
        href = expand(link.href, doc)
        if href is not None:
            out.append({"href": href, "text": link.text})
    return out


class TokenBucket:
    """At most ``rate`` per second on average, ``burst`` at once; :meth:`take` waits for a token (returns the
    seconds it waited). One per receiver key, shared by every sink of the process that sends with that key."""

    _shared: dict[str, TokenBucket] = {}
    _shared_lock = threading.Lock()

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.at = clock()
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, key: str, rate: float, burst: float) -> TokenBucket:
        with cls._shared_lock:
            bucket = cls._shared.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = cls._shared[key] = cls(rate, burst)
            return bucket

    def take(self, sleep: Callable[[float], None] = time.sleep) -> float:
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return waited
                wait = (1.0 - self.tokens) / self.rate
            sleep(wait)
            waited += wait


def alert_lines(doc: dict[str, Any], n: int = 10) -> list[str]:
    """A group's alerts, one line each (``token_spend team=search +$520.00 (error)``), and how many more."""
    alerts = doc.get("alerts") or []
    out = []
    for a in alerts[:n]:
        series = ", ".join(f"{k}={v}" for k, v in (a.get("series") or {}).items()) or "all"
        impact = a.get("impact_usd")
        money = f" {_usd(impact)}" if impact is not None else ""
        state = "resolved" if a.get("status") == "resolved" else a.get("severity")
        out.append(f"{a.get('detector')} {series}{money} ({state})")
    if len(alerts) > n:
        out.append(f"and {len(alerts) - n} more")
    return out


def series_label(doc: dict[str, Any]) -> str:
    """``team=search, model=m`` (``all`` for a detector without group_by)."""
    return ", ".join(f"{k}={v}" for k, v in (doc.get("series") or {}).items()) or "all"


def explanation(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures that explain an alert, for a receiver's details: observed, expected, band, dollar impact so far
    and projected, contributors, reason (None values left out)."""
    episode = doc.get("episode") or {}
    details: dict[str, Any] = {
        "alert_id": doc["id"],
        "kind": doc.get("kind"),
        "detector": doc.get("detector"),
        "signal": doc.get("signal"),
        "unit": doc.get("unit"),
        "series": doc.get("series"),
        "window": f"{doc.get('window_start')} – {doc.get('window_end')}",
        "observed": doc.get("observed"),
        "expected": doc.get("expected"),
        "band": [doc.get("lower"), doc.get("upper")] if doc.get("upper") is not None else None,
        "limit": doc.get("limit"),
        "direction": doc.get("direction"),
        "score": doc.get("score"),
        "impact_usd_window": doc.get("impact_usd"),
        "impact_usd_episode": episode.get("impact_usd"),
        "projected_hourly_impact_usd": doc.get("projected_hourly_impact_usd"),
        "projected_daily_impact_usd": doc.get("projected_daily_impact_usd"),
        "projected_monthly_impact_usd": doc.get("projected_monthly_impact_usd"),
        "reason": doc.get("reason"),
        "started_at": doc.get("started_at"),
        "early_warning": doc.get("early") or None,
        "window_progress": doc.get("window_progress"),
        "silent_windows": doc.get("silent_windows"),
        "sources": doc.get("sources"),
        "revision": doc.get("revision") or None,
        "contributors": [
            {"dimensions": c.get("dimensions"), "observed": c.get("observed"), "delta": c.get("delta")}
            for c in doc.get("top_contributors") or []
        ]
        or None,
        # A group's notification: every alert it lists (series, severity, impact, status), largest impact first.
        "alerts": [
            {k: a.get(k) for k in ("series", "severity", "impact_usd", "status", "detector", "id")}
            for a in doc.get("alerts") or []
        ]
        or None,
    }
    return {k: v for k, v in details.items() if v is not None}


def if_it_continues(doc: dict[str, Any]) -> str | None:
    """What an alert costs if it continues, an hour and a day (``$41.20 an hour, $988.80 a day``); None without a
    projection."""
    daily = doc.get("projected_daily_impact_usd")
    if daily is None:
        return None
    hourly = doc.get("projected_hourly_impact_usd")
    hourly = daily / 24.0 if hourly is None else hourly
    return f"{_dollars(abs(hourly))} an hour, {_dollars(abs(daily))} a day"
