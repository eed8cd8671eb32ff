"""The Slack sink: a Slack message per alert event, delivered through the queued-sink base, its URL kept secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config import ConfigError, StartupError, load_config_text
from agent.deadletter import DeadLetterFile
from agent.telemetry import Telemetry
from sinks.slack import SlackConfig, SlackSink
from tests.conftest import Receiver
from tests.sinks.test_webhook import DOC


def slack(tmp_path: Path, **kw: Any) -> tuple[SlackSink, Telemetry, DeadLetterFile]:
    tel = Telemetry()
    dlq = DeadLetterFile(tmp_path / "dlq.jsonl")
    cfg = SlackConfig(type="slack", **{"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2, **kw})
    s = SlackSink(cfg, name="chat", telemetry=tel, state_dir=str(tmp_path), dead_letter=dlq)
    s.start()
    return s, tel, dlq


def test_a_slack_message_per_event_once_and_not_resolved_when_told(receiver: Receiver, tmp_path: Path) -> None:
    s, tel, _ = slack(tmp_path, url=receiver.url + "/services/T0/B0/XYZ", send_resolved=False)
    s.on_alert(DOC)
    s.on_alert(DOC)  # a replay re-creates the event: sent once
    s.on_alert({**DOC, "status": "resolved"})
    assert receiver.wait_for(lambda r: len(r) >= 1)
    assert s.flush(5.0)
    s.stop()
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req.path == "/services/T0/B0/XYZ" and req.headers["Content-Type"] == "application/json"
    body = orjson.loads(req.body)
    assert body["text"] == ":red_circle: token spend up"
    assert body["blocks"][2]["elements"][0]["text"] == "alert id `abc123`"
    assert tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": "chat"}) == 1


def test_the_url_from_a_file_and_never_in_dead_letters(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = (404, {}, b"no_team\n")
    (tmp_path / "url").write_text(receiver.url + "/services/T0/B0/s3cretpath\n")
    s, tel, dlq = slack(tmp_path, url_file=str(tmp_path / "url"))
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 1)
    s.stop()
    dlq.close()
    (dead,) = [orjson.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert (
        dead["kind"] == "delivery_failed" and dead["reason"] == "refused (permanent) after 1 attempt: HTTP 404 no_team"
    )
    assert dead["location"] == receiver.url + "/…" and orjson.loads(dead["original"])["id"] == "abc123"
    assert b"s3cretpath" not in (tmp_path / "dlq.jsonl").read_bytes()
    assert (
        tel.registry.get_sample_value(
            "finops_agent_events_discarded_total", {"component": "chat", "reason": "delivery_failed"}
        )
        == 1
    )


def test_a_slack_config_needs_one_http_url(tmp_path: Path) -> None:
    base = "sources: {s: {type: file, path: x, decoder: {type: bedrock}}}\n"
    base += "detectors: {d: {type: seasonal, signal: token_cost_usd}}\n"
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {c: {type: slack, url: hooks.slack.com/x}}")
    assert exc.value.errors[0].startswith("sinks.c.url: not an http(s) URL")
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {c: {type: slack, url: 'https://'}}")  # no host
    assert exc.value.errors[0].startswith("sinks.c.url: not an http(s) URL")
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {c: {type: slack}}")
    assert exc.value.errors == ["sinks.c: set url or url_file (one of them)"]
    (tmp_path / "url").write_text("not a url")
    s = SlackSink(SlackConfig(type="slack", url_file=str(tmp_path / "url")), name="c", telemetry=Telemetry())
    with pytest.raises(StartupError, match="does not hold an http"):
        s.start()


def test_slack_renders_the_limit_the_escalation_and_the_episode_impact() -> None:
    from sinks.slack import slack_message
    from tests.agent.test_detect import feed_idle, idle_runner

    r = idle_runner()
    feed_idle(r, range(0, 5), 0.1)
    docs = feed_idle(r, range(5, 7), 1.0, cost_per_idle_hour=1.3125)  # $10.50 an hour: $252 a day → error
    docs += feed_idle(r, range(7, 15), 1.0)  # $98 an hour: critical
    docs += feed_idle(r, range(15, 17), 0.1)
    first, escalated, resolved = (slack_message(d) for d in docs)

    def fields(msg: dict[str, Any]) -> dict[str, str]:
        return dict(f["text"][1:].split("*\n", 1) for f in msg["blocks"][1]["fields"])

    assert fields(first) == {
        "Observed": "100 %",
        "Limit": "50 %",
        "Impact (window)": "$10.50",
        "Episode impact": "$10.50",
        "Score": "0.75",
        "If it continues": "$10.50 an hour, $252.00 a day",  # an idle GPU's waste at the rate paid, an hour
    }
    assert first["text"].startswith(":red_circle: [idle_gpu]")
    assert escalated["text"].startswith(":rotating_light: escalated to critical:")
    assert fields(escalated)["Escalated"] == "error → critical"
    assert resolved["text"].startswith(":white_check_mark: [idle_gpu] resolved")
    assert fields(resolved)["Episode impact"] == "$805.00"  # the episode, not the last window's $98
    assert fields(resolved)["Windows"] == "10"


def test_a_small_teams_cents_are_shown_not_rounded_to_zero_nor_in_exponent_notation() -> None:
    """A $10-a-month team's alert: its figures read $0.0045, never "$0.00" beside a summary that says more."""
    from sinks.links import if_it_continues
    from sinks.slack import slack_message

    doc = {
        **DOC,
        "observed": 0.0052,
        "expected": 0.0007,
        "impact_usd": 0.0045,
        "projected_hourly_impact_usd": 0.0045,
        "projected_daily_impact_usd": 0.108,
        "unit": "USD",
        "episode": {"points": 1, "observed_total": 0.0052, "expected_total": 0.0007, "impact_usd": 0.0045},
        "limit": {"name": "upper", "value": 1e-07},
    }
    text = orjson.dumps(slack_message(doc)).decode()
    assert "$0.0045" in text and "$0.0052" in text and "$0.00000010" in text
    assert "$0.00\\n" not in text and "$0.00 " not in text and "e-0" not in text
    assert if_it_continues(doc) == "$0.0045 an hour, $0.11 a day"
