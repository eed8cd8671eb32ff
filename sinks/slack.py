"""Slack sink: each alert event as a Slack incoming-webhook message (a :class:`~sinks.delivery.QueuedSink`).

The message is the summary, then the figures in the series' unit: a threshold alert shows its limit (not an
"expected" value), an escalation says from which severity, a resolved alert what the whole episode cost. The
incoming-webhook URL is a secret (its path is the credential): give it as ``url`` (from the environment) or
``url_file``; it never appears in logs or dead letters (those name ``hooks.slack.com/…``).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Literal

import orjson
from pydantic import SecretStr, field_validator, model_validator

from agent.config import StartupError, read_secret
from agent.registry import register
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result, http_post, redact_url


def _http_url(url: str) -> bool:
    """An http(s) URL with a host.

    >>> [_http_url(u) for u in ("https://hooks.slack.com/services/T/B/X", "https://", "hooks.slack.com/x")]
    [True, False, False]
    """
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class SlackConfig(QueuedSinkConfig):
    type: Literal["slack"]
    url: SecretStr | None = None
    url_file: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not _http_url(v.get_secret_value()):
            raise ValueError("not an http(s) URL (a Slack incoming webhook: https://hooks.slack.com/services/…)")
        return v

    @model_validator(mode="after")
    def _one_url(self) -> SlackConfig:
        if (self.url is None) == (not self.url_file):
            raise ValueError("set url or url_file (one of them)")
        return self


@register("sink", "slack", SlackConfig)
class SlackSink(QueuedSink):
    cfg: SlackConfig

    def __init__(self, cfg: SlackConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._url = ""

    def start(self) -> None:
        self._url = read_secret(self.cfg.url, self.cfg.url_file, f"sinks.{self.name}.url_file") or ""
        if not _http_url(self._url):
            raise StartupError(f"sinks.{self.name}.url_file: {self.cfg.url_file} does not hold an http(s) URL")
        super().start()

    def render(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps(slack_message(doc))

    def send(self, body: bytes, alert_id: str) -> Result:
        headers = {"Content-Type": "application/json", "User-Agent": "finops-agent/0.1"}
        return http_post(self._url, body, headers, self.cfg.timeout_seconds)

    def destination(self) -> str:
        return redact_url(self._url) if self._url else "slack"


def slack_message(doc: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: the summary, then the figures in the series' unit.

    A threshold alert shows its limit (not an "expected" value), an escalation says from which
    severity, and a resolved alert shows what the whole episode cost.
    """
    icon = {"critical": ":rotating_light:", "error": ":red_circle:", "warning": ":warning:"}.get(doc["severity"], "")
    episode = doc.get("episode") or {}
    if doc["status"] == "resolved":
        icon = ":white_check_mark:"
        fields = [
            _field("Episode impact", _money(doc.get("impact_usd"))),
            _field("Windows", str(episode.get("points", "n/a"))),
            _field("Started", str(doc.get("started_at"))),
            _field("Resolved", str(doc.get("resolved_at"))),
        ]
    else:
        limit = doc.get("limit")
        compared = (
            _field(limit["name"].capitalize(), _value(limit["value"], doc))
            if limit
            else _field("Expected", _value(doc.get("expected"), doc))
        )
        fields = [
            _field("Observed", _value(doc.get("observed"), doc)),
            compared,
            _field("Impact (window)", _money(doc.get("impact_usd"))),
            _field("Episode impact", _money(episode.get("impact_usd"))),
            _field("Score", "n/a" if doc.get("score") is None else f"{doc['score']:.2f}"),
        ]
        if doc.get("escalated"):
            fields.insert(0, _field("Escalated", f"{doc.get('previous_severity')} → {doc['severity']}"))
    return {
        "text": f"{icon} {doc['summary']}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{doc['summary']}*"}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert id `{doc['id']}`"}]},
        ],
    }


def _field(name: str, text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n{text}"}


def _money(v: float | None) -> str:
    """``-1234.5`` → "-$1,234.50" (n/a when unknown)."""
    return "n/a" if v is None else f"{'-' if v < 0 else ''}${abs(v):,.2f}"


def _value(v: float | None, doc: dict[str, Any]) -> str:
    """A value in the alert's unit: "$12.50", "$0.0123 per 1000 tokens", "100 %", "320 gpu_hours"."""
    unit = doc.get("unit") or ""
    if v is None:
        return "n/a"
    if doc.get("unit_label") == "ratio":
        return f"{v * 100:.3g} %"
    if unit == "USD":
        return _money(v)
    if unit.startswith("USD per "):
        return f"${v:,.4g} per {unit[8:]}"
    return f"{v:,.4g} {unit}".rstrip()
