"""Slack sink: each alert event as a Slack incoming-webhook message (a :class:`~sinks.delivery.QueuedSink`).

The message (Block Kit) is the summary, then the figures in the series' unit: a threshold alert shows its limit
(not an "expected" value), an escalation says from which severity, a resolved alert what the whole episode cost;
then the top contributors and the configured links as buttons. The incoming-webhook URL is a secret (its path is
the credential): give it as ``url`` (from the environment) or ``url_file``; it never appears in logs or dead
letters (those name ``hooks.slack.com/…``).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from agent.alerts import _dollars
from agent.registry import register
from sinks.chat import ChatConfig, ChatSink
from sinks.links import alert_lines, if_it_continues, links_for


class SlackConfig(ChatConfig):
    type: Literal["slack"]


@register("sink", "slack", SlackConfig)
class SlackSink(ChatSink):
    cfg: SlackConfig
    example_url = "https://hooks.slack.com/services/…"

    def render(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps(slack_message(doc, links_for(self.links, doc)))


def slack_message(doc: dict[str, Any], links: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook message (Block Kit): the summary, then the figures in the series' unit, the
    contributors, the links as buttons.

    A threshold alert shows its limit (not an "expected" value), an escalation says from which
    severity, and a resolved alert shows what the whole episode cost.
    """
    icon = {"critical": ":rotating_light:", "error": ":red_circle:", "warning": ":warning:"}.get(doc["severity"], "")
    episode = doc.get("episode") or {}
    if doc.get("kind") == "group":  # one notification for several alerts: their count, total, and each of them
        firing = sum(1 for a in doc.get("alerts") or [] if a.get("status") == "firing")
        if doc["status"] == "resolved":
            icon = ":white_check_mark:"
        fields = [
            _field("Alerts firing", str(firing)),
            _field("Total impact", _money(doc.get("impact_usd"))),
        ]
        if if_it_continues(doc) is not None:
            fields.append(_field("If it continues", str(if_it_continues(doc))))
    elif doc["status"] == "resolved":
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
        if if_it_continues(doc) is not None:
            fields.append(_field("If it continues", str(if_it_continues(doc))))
        if doc.get("escalated"):
            fields.insert(0, _field("Escalated", f"{doc.get('previous_severity')} → {doc['severity']}"))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{doc['summary'][:2900]}*"}},
        {"type": "section", "fields": fields[:10]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert id `{doc['id']}`"}]},
    ]
    listed = alert_lines(doc)
    if listed:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Alerts*\n" + "\n".join(listed)}})
    lines = contributor_lines(doc)
    if lines and doc["status"] != "resolved":
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Contributors*\n" + "\n".join(lines)}})
    if links:
        buttons = [
            {"type": "button", "text": {"type": "plain_text", "text": x["text"][:75]}, "url": x["href"]}
            for x in links[:5]
        ]
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": f"{icon} {doc['summary']}", "blocks": blocks}


def contributor_lines(doc: dict[str, Any], n: int = 5) -> list[str]:
    """``model=sonnet: $600.00 (+$510.00)`` for the alert's top contributors."""
    out = []
    for c in (doc.get("top_contributors") or [])[:n]:
        dims = ", ".join(f"{k}={v}" for k, v in (c.get("dimensions") or {}).items())
        delta = c.get("delta")
        sign = "+" if delta is not None and delta >= 0 else "-"
        out.append(
            f"{dims}: {_value(c.get('observed'), doc)} ({sign}{_value(abs(delta), doc)})" if delta is not None else dims
        )
    return out


def _field(name: str, text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n{text}"}


def _money(v: float | None) -> str:
    """``-1234.5`` → "-$1,234.50", ``0.0045`` → "$0.0045" (n/a when unknown)."""
    return "n/a" if v is None else _dollars(v)


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
