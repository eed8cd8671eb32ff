"""Microsoft Teams sink: each alert event as an Adaptive Card posted to a Teams Workflows webhook.

Teams retired its Office 365 connectors' incoming webhooks; a channel now takes webhook messages through a
Workflows flow ("Post to a channel when a webhook request is received"), whose URL (with its ``sig`` parameter) is
the secret: ``url`` or ``url_file``. The body is the message the flow expects: one attachment of content type
``application/vnd.microsoft.card.adaptive`` holding the card: the title (the summary, coloured by severity), the
figures as facts (observed against expected or the limit, dollar impact of the window and the episode, projected per
day, severity, series), the reason, the top contributors, and the configured links as buttons.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from agent.registry import register
from sinks.chat import ChatConfig, ChatSink
from sinks.links import alert_lines, if_it_continues, links_for, series_label
from sinks.slack import _money, _value, contributor_lines

_COLOR = {"critical": "Attention", "error": "Attention", "warning": "Warning"}


class TeamsConfig(ChatConfig):
    type: Literal["teams"]


@register("sink", "teams", TeamsConfig)
class TeamsSink(ChatSink):
    cfg: TeamsConfig
    example_url = "https://prod-00.westeurope.logic.azure.com/workflows/…"

    def render(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps(teams_message(doc, links_for(self.links, doc)))


def teams_message(doc: dict[str, Any], links: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The Workflows webhook message: one Adaptive Card (schema 1.4) for the alert document."""
    resolved = doc["status"] == "resolved"
    episode = doc.get("episode") or {}
    color = "Good" if resolved else _COLOR.get(str(doc.get("severity")), "Default")
    facts = [{"title": "Series", "value": series_label(doc)}]
    if doc.get("kind") == "group":
        firing = sum(1 for a in doc.get("alerts") or [] if a.get("status") == "firing")
        facts += [
            {"title": "Alerts firing", "value": str(firing)},
            {"title": "Total impact", "value": _money(doc.get("impact_usd"))},
        ]
    elif resolved:
        facts += [
            {"title": "Episode impact", "value": _money(doc.get("impact_usd"))},
            {"title": "Windows", "value": str(episode.get("points", "n/a"))},
            {"title": "Started", "value": str(doc.get("started_at"))},
            {"title": "Resolved", "value": str(doc.get("resolved_at"))},
        ]
    else:
        limit = doc.get("limit")
        facts += [
            {"title": "Observed", "value": _value(doc.get("observed"), doc)},
            {"title": limit["name"].capitalize(), "value": _value(limit["value"], doc)}
            if limit
            else {"title": "Expected", "value": _value(doc.get("expected"), doc)},
            {"title": "Impact (window)", "value": _money(doc.get("impact_usd"))},
            {"title": "Episode impact", "value": _money(episode.get("impact_usd"))},
        ]
        if if_it_continues(doc) is not None:
            facts.append({"title": "If it continues", "value": str(if_it_continues(doc))})
        severity = str(doc.get("severity"))
        if doc.get("escalated"):
            severity = f"{doc.get('previous_severity')} → {severity}"
        facts.append({"title": "Severity", "value": severity})
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": doc["summary"], "wrap": True, "weight": "Bolder", "color": color},
        {"type": "FactSet", "facts": facts},
    ]
    if doc.get("reason") and not resolved:
        body.append({"type": "TextBlock", "text": f"Why: {doc['reason']}", "wrap": True})
    listed = alert_lines(doc)
    if listed:
        body.append({"type": "TextBlock", "text": "Alerts", "weight": "Bolder", "spacing": "Medium"})
        body.append({"type": "TextBlock", "text": "\n".join(f"- {x}" for x in listed), "wrap": True})
    lines = contributor_lines(doc)
    if lines and not resolved:
        body.append({"type": "TextBlock", "text": "Contributors", "weight": "Bolder", "spacing": "Medium"})
        body.append({"type": "TextBlock", "text": "\n".join(f"- {x}" for x in lines), "wrap": True})
    body.append({"type": "TextBlock", "text": f"alert id {doc['id']}", "isSubtle": True, "size": "Small"})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "Full"},
    }
    if links:
        card["actions"] = [{"type": "Action.OpenUrl", "title": x["text"], "url": x["href"]} for x in links[:5]]
    return {
        "type": "message",
        "summary": doc["summary"][:200],
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
