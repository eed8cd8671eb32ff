"""The Teams sink: an Adaptive Card per alert event for a Workflows webhook; its URL kept secret."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agent.config import ConfigError, load_config_text
from agent.deadletter import DeadLetterFile
from agent.telemetry import Telemetry
from sinks.slack import slack_message
from sinks.teams import TeamsConfig, TeamsSink, teams_message
from tests.conftest import Receiver
from tests.sinks.test_pagerduty import doc

LINKS = [{"href": "https://grafana.example/d/finops?var-team=search", "text": "Grafana"}]


def card(message: dict) -> dict:
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return dict(attachment["content"])


def facts(c: dict) -> dict[str, str]:
    (fs,) = [b for b in c["body"] if b["type"] == "FactSet"]
    return {f["title"]: f["value"] for f in fs["facts"]}


def test_a_firing_card_has_the_figures_the_reason_the_contributors_and_the_links() -> None:
    c = card(teams_message(doc(reason="a runaway loop"), LINKS))
    assert c["type"] == "AdaptiveCard" and c["version"] == "1.4"
    title = c["body"][0]
    assert title["text"].startswith("[token_spend]") and title["color"] == "Attention"
    assert facts(c) == {
        "Series": "team=search",
        "Observed": "$640.00",
        "Expected": "$120.00",
        "Impact (window)": "$520.00",
        "Episode impact": "$520.00",
        "If it continues": "$520.00 an hour, $12,480.00 a day",
        "Severity": "error",
    }
    texts = [b["text"] for b in c["body"] if b["type"] == "TextBlock"]
    assert "Why: a runaway loop" in texts and "- model=sonnet: $600.00 (+$510.00)" in texts
    assert c["actions"] == [{"type": "Action.OpenUrl", "title": "Grafana", "url": LINKS[0]["href"]}]


def test_a_resolved_card_an_escalation_and_a_limit() -> None:
    c = card(teams_message(doc(status="resolved", resolved_at="2026-12-01T14:00:00Z")))
    assert c["body"][0]["color"] == "Good" and facts(c)["Episode impact"] == "$520.00"
    c = card(teams_message(doc(severity="critical", escalated=True, previous_severity="error")))
    assert facts(c)["Severity"] == "error → critical"
    c = card(
        teams_message(
            doc(
                unit="gpu_idle_hours per gpu_hours",
                unit_label="ratio",
                observed=0.9,
                limit={"name": "limit", "value": 0.5},
            )
        )
    )
    assert facts(c)["Limit"] == "50 %" and facts(c)["Observed"] == "90 %"


def test_slack_lists_contributors_and_links_as_buttons() -> None:
    blocks = slack_message(doc(), LINKS)["blocks"]
    assert blocks[3]["text"]["text"] == "*Contributors*\nmodel=sonnet: $600.00 (+$510.00)"
    assert blocks[4]["elements"][0]["url"] == LINKS[0]["href"]


def test_a_teams_card_is_posted_and_the_url_never_in_dead_letters(receiver: Receiver, tmp_path: Path) -> None:
    receiver.responses = [(202, {}), (400, {}, b"bad card")]
    (tmp_path / "url").write_text(receiver.url + "/workflows/abc/triggers/manual/run?sig=S3CRET\n")
    tel = Telemetry()
    dlq = DeadLetterFile(tmp_path / "dlq.jsonl")
    cfg = TeamsConfig(
        type="teams",
        url_file=str(tmp_path / "url"),
        links=[{"href": "https://finops.example/a/{id}", "text": "Report"}],
    )
    s = TeamsSink(cfg, name="teams", telemetry=tel, state_dir=str(tmp_path), dead_letter=dlq)
    s.start()
    s.on_alert(doc())
    s.on_alert(doc(status="resolved"))
    assert receiver.wait_for(lambda r: len(r) == 2)
    s.stop()
    dlq.close()
    first = orjson.loads(receiver.requests[0].body)
    assert receiver.requests[0].path.endswith("sig=S3CRET")
    assert card(first)["actions"][0]["url"] == f"https://finops.example/a/{'0f' * 16}"
    assert b"S3CRET" not in (tmp_path / "dlq.jsonl").read_bytes()


def test_a_teams_config_needs_one_url() -> None:
    base = "sources: {s: {type: file, path: x, decoder: {type: bedrock}}}\n"
    base += "detectors: {d: {type: seasonal, signal: token_cost_usd}}\n"
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {t: {type: teams}}")
    assert exc.value.errors == ["sinks.t: set url or url_file (one of them)"]


def test_a_groups_notification_lists_its_alerts_in_every_chat_and_in_pagerduty() -> None:
    from agent.notify import Group, group_document
    from sinks.links import explanation

    g = Group("root|detector=token_spend", "root", {"detector": "token_spend"}, created=1.8e9)
    for i in range(12):
        d = doc(id=f"{i:032x}", series={"team": f"t{i:02d}"}, episode={"impact_usd": 100.0 + i})
        g.alerts[d["id"]] = d
    g.revision = 0
    group = group_document(g)
    assert "resolved since" not in group["summary"]  # (a first notification)
    blocks = slack_message(group)["blocks"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in blocks[1]["fields"]}
    assert fields["*Alerts firing*"] == "12" and fields["*Total impact*"] == "$1,266.00"
    listed = next(b for b in blocks if b.get("text", {}).get("text", "").startswith("*Alerts*"))["text"]["text"]
    assert "token_spend team=t11 +$111.00 (error)" in listed and listed.endswith("and 2 more")
    c = card(teams_message(group))
    assert facts(c)["Alerts firing"] == "12"
    assert any(b["type"] == "TextBlock" and "- token_spend team=t11 +$111.00 (error)" in b["text"] for b in c["body"])
    details = explanation(group)
    assert len(details["alerts"]) == 12 and details["alerts"][0]["series"] == {"team": "t11"}
    assert slack_message(group)["blocks"][0]["text"]["text"].startswith(":red_circle:")
    for d in list(g.alerts.values()):  # all resolved: a check mark, not the severity's icon (new-user review)
        g.alerts[d["id"]] = {**d, "status": "resolved"}
    assert slack_message(group_document(g))["blocks"][0]["text"]["text"].startswith(":white_check_mark:")
