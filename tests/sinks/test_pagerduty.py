"""The PagerDuty sink against a loopback server that answers like the Events API v2."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.alerts import alert_document
from agent.config import ConfigError, load_config_text
from agent.deadletter import DeadLetterFile
from agent.telemetry import Telemetry
from sinks.links import TokenBucket
from sinks.pagerduty import PagerDutyConfig, PagerDutySink
from tests.conftest import Receiver

KEY = "R0UTINGKEYs3cr3t0000000000000000"
ACCEPTED = (202, {"Content-Type": "application/json"}, b'{"status":"success","message":"Event processed"}')


def doc(**kw: Any) -> dict[str, Any]:
    """A firing spend alert as the runner writes it."""
    return alert_document(
        **{
            "id": "0f" * 16,
            "status": "firing",
            "severity": "error",
            "summary": "[token_spend] token_cost_usd team=search: $640.00 vs expected $120.00, impact +$520.00",
            "detector": "token_spend",
            "detector_type": "seasonal",
            "signal": "token_cost_usd",
            "unit": "USD",
            "unit_label": "usd",
            "series": {"team": "search"},
            "window_start": "2026-12-01T10:00:00Z",
            "window_end": "2026-12-01T11:00:00Z",
            "started_at": "2026-12-01T10:00:00Z",
            "direction": "up",
            "observed": 640.0,
            "expected": 120.0,
            "lower": 60.0,
            "upper": 200.0,
            "score": 1.0,
            "impact_usd": 520.0,
            "projected_daily_impact_usd": 12480.0,
            "projected_monthly_impact_usd": 374400.0,
            "episode": {"points": 1, "observed_total": 640.0, "expected_total": 120.0, "impact_usd": 520.0},
            "top_contributors": [
                {"dimensions": {"model": "sonnet"}, "observed": 600.0, "expected": 90.0, "delta": 510.0}
            ],
            **kw,
        }
    )


def pd_sink(receiver: Receiver, tmp_path: Path, **kw: Any) -> tuple[PagerDutySink, Telemetry, DeadLetterFile]:
    tel = Telemetry()
    dlq = DeadLetterFile(tmp_path / "dlq.jsonl")
    opts = {"url": receiver.url + "/v2/enqueue", "backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2, **kw}
    if "routing_key_file" not in opts:
        opts["routing_key"] = KEY
    s = PagerDutySink(
        PagerDutyConfig(type="pagerduty", **opts),
        name="oncall",
        telemetry=tel,
        state_dir=str(tmp_path),
        dead_letter=dlq,
    )
    s.start()
    return s, tel, dlq


def test_a_trigger_with_the_alert_id_as_dedup_key_then_a_resolve(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = ACCEPTED
    s, tel, _ = pd_sink(
        receiver,
        tmp_path,
        source="aws-prod",
        report_url="https://finops.example/alerts/{id}",
        links=[{"href": "https://grafana.example/d/finops?var-team={series.team}", "text": "Grafana"}],
    )
    s.on_alert(doc(summary="x" * 2000))
    s.on_alert(doc(status="resolved", resolved_at="2026-12-01T14:00:00Z"))
    assert receiver.wait_for(lambda r: len(r) == 2)
    s.stop()
    trigger, resolve = (orjson.loads(r.body) for r in receiver.requests)
    assert receiver.requests[0].path == "/v2/enqueue"
    assert trigger["routing_key"] == KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "0f" * 16
    p = trigger["payload"]
    assert len(p["summary"]) == 1024 and p["severity"] == "error" and p["source"] == "aws-prod"
    assert p["component"] == "team=search" and p["group"] == "token_spend" and p["class"] == "spend/token_cost_usd"
    assert p["timestamp"] == "2026-12-01T11:00:00Z"
    d = p["custom_details"]
    assert d["observed"] == 640.0 and d["expected"] == 120.0 and d["band"] == [60.0, 200.0]
    assert d["impact_usd_window"] == 520.0 and d["impact_usd_episode"] == 520.0
    assert d["projected_daily_impact_usd"] == 12480.0
    assert d["contributors"] == [{"dimensions": {"model": "sonnet"}, "observed": 600.0, "delta": 510.0}]
    assert trigger["links"] == [
        {"href": f"https://finops.example/alerts/{'0f' * 16}", "text": "FinOps agent report"},
        {"href": "https://grafana.example/d/finops?var-team=search", "text": "Grafana"},
    ]
    assert resolve == {"event_action": "resolve", "dedup_key": "0f" * 16, "routing_key": KEY}
    assert tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": "oncall"}) == 2


@pytest.mark.parametrize(
    ("severity", "expected"), [("critical", "critical"), ("error", "error"), ("warning", "warning"), (None, "info")]
)
def test_severity_is_mapped(receiver: Receiver, tmp_path: Path, severity: str | None, expected: str) -> None:
    receiver.default = ACCEPTED
    s, _, _ = pd_sink(receiver, tmp_path)
    s.on_alert(doc(severity=severity))
    assert receiver.wait_for(lambda r: len(r) == 1)
    s.stop()
    assert orjson.loads(receiver.requests[0].body)["payload"]["severity"] == expected


def test_a_refused_event_is_dead_lettered_with_the_reason_and_never_the_routing_key(
    receiver: Receiver, tmp_path: Path
) -> None:
    said = b'{"status":"invalid event","message":"Event object is invalid","errors":["Length of summary"]}'
    receiver.responses = [(429, {}), (503, {"Retry-After": "0"}), (400, {}, said)]
    (tmp_path / "key").write_text(KEY + "\n")
    s, tel, dlq = pd_sink(receiver, tmp_path, routing_key_file=str(tmp_path / "key"))
    s.on_alert(doc())
    assert receiver.wait_for(lambda r: len(r) == 3)
    assert s.flush(5.0)
    s.stop()
    dlq.close()
    assert [orjson.loads(r.body)["routing_key"] for r in receiver.requests] == [KEY] * 3  # retried, then refused
    (dead,) = [orjson.loads(line) for line in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert dead["reason"].startswith("refused (permanent) after 3 attempts: HTTP 400 ")
    assert tel.registry.get_sample_value("finops_agent_dead_letter_records_total") == 1
    assert "Event object is invalid" in dead["reason"]
    assert dead["location"] == receiver.url + "/…"
    assert orjson.loads(orjson.loads(dead["original"])["body"])["dedup_key"] == "0f" * 16
    stored = b"".join(
        bytes(r[0]) for r in sqlite3.connect(tmp_path / "outbox-oncall.sqlite").execute("SELECT body FROM outbox")
    )
    assert KEY.encode() not in (tmp_path / "dlq.jsonl").read_bytes() + stored
    assert (
        tel.registry.get_sample_value(
            "finops_agent_errors_total", {"component": "oncall", "error_type": "retry", "stage": "deliver"}
        )
        == 2
    )


def test_events_beyond_the_rate_limit_wait_for_the_bucket_and_are_counted(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = ACCEPTED
    s, tel, _ = pd_sink(receiver, tmp_path, events_per_minute=30)  # one every 2 s, 30 at once
    bucket = s._bucket
    assert bucket is not None
    bucket.tokens = 2.0  # two left: the third waits about 2 s (a loaded machine's delays stay well under it)
    for i in range(3):
        s.on_alert(doc(id=f"{i:032x}"))
    assert receiver.wait_for(lambda r: len(r) == 3)
    s.stop()
    assert tel.registry.get_sample_value("finops_agent_sink_throttled_total", {"sink": "oncall"}) == 1


def test_a_token_bucket_holds_its_rate() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(2.0, 3.0, clock=lambda: now[0])
    waits = [bucket.take(sleep) for _ in range(7)]
    assert waits[:3] == [0.0, 0.0, 0.0] and all(abs(w - 0.5) < 1e-9 for w in waits[3:])
    assert abs(now[0] - 2.0) < 1e-9  # 7 events: 3 at once, then 2 a second


def test_a_pagerduty_config_needs_one_routing_key_and_good_link_templates() -> None:
    base = "sources: {s: {type: file, path: x, decoder: {type: bedrock}}}\n"
    base += "detectors: {d: {type: seasonal, signal: token_cost_usd}}\n"
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {pd: {type: pagerduty}}")
    assert exc.value.errors == ["sinks.pd: set routing_key or routing_key_file (one of them)"]
    with pytest.raises(ConfigError) as exc:
        load_config_text(
            base + "sinks: {pd: {type: pagerduty, routing_key: k, links: [{href: 'https://g/d?t={team}'}]}}"
        )
    assert exc.value.errors[0].startswith("sinks.pd.links[0].href: unknown field {team}: use {series.team}")
    cfg = load_config_text(base + "sinks: {pd: {type: pagerduty, routing_key: s3cr3t}}")
    assert "s3cr3t" not in repr(cfg.sinks["pd"]) and "s3cr3t" not in str(cfg.model_dump())
