"""The Alertmanager sink against a real Alertmanager on loopback (scripts/prom_services.py), whose route sends to
a loopback webhook receiver: grouping, resolve and labels are checked as Alertmanager delivers them."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config import ConfigError, load_config_text
from agent.deadletter import DeadLetterFile
from agent.telemetry import Telemetry
from scripts.prom_services import Alertmanager, install
from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from tests.conftest import Receiver, free_port, wait_until
from tests.sinks.test_pagerduty import doc

AmFactory = Callable[..., Alertmanager]


@pytest.fixture(scope="module", autouse=True)
def _binaries() -> None:
    install()  # fails loudly where Alertmanager cannot be found or installed


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[AmFactory]:
    started: list[Alertmanager] = []

    def start(receiver_url: str, name: str = "am", port: int | None = None) -> Alertmanager:
        config = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "detector"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver_url + "/am", "send_resolved": True}]}],
        }
        am = Alertmanager(tmp_path / name, config, port=port)
        started.append(am)
        am.start()
        return am

    yield start
    for am in started:
        am.stop()


def active(am: Alertmanager) -> list[dict[str, Any]]:
    with urllib.request.urlopen(am.url + "/api/v2/alerts?active=true&silenced=false&inhibited=false") as resp:
        return list(orjson.loads(resp.read()))


def am_sink(tmp_path: Path, urls: list[str], **kw: Any) -> tuple[AlertmanagerSink, Telemetry]:
    tel = Telemetry()
    cfg = AlertmanagerConfig(
        type="alertmanager",
        urls=urls,
        **{"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2, **kw},
    )
    s = AlertmanagerSink(
        cfg, name="am", telemetry=tel, state_dir=str(tmp_path), dead_letter=DeadLetterFile(tmp_path / "d.jsonl")
    )
    s.start()
    return s, tel


def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in receiver.requests if r.path == "/am"]


def test_an_incident_across_series_is_one_grouped_notification_then_resolved(
    alertmanager: AmFactory, receiver: Receiver, tmp_path: Path
) -> None:
    am = alertmanager(receiver.url)
    s, _ = am_sink(
        tmp_path, [am.url], labels={"cluster": "prod-eu"}, generator_url="https://finops.example/alerts/{id}"
    )
    teams = ["search", "ads", "k8s.platform"]
    for i, team in enumerate(teams):
        s.on_alert(doc(id=f"{i:032x}", series={"team": team, "model": "sonnet"}))
    assert receiver.wait_for(lambda r: any(n["status"] == "firing" for n in notifications(receiver)), 20)
    (first,) = [n for n in notifications(receiver) if n["status"] == "firing"][:1]
    assert first["groupLabels"] == {"alertname": "FinOpsCostAnomaly", "detector": "token_spend"}
    assert len(first["alerts"]) == 3  # one notification for the incident, listing its series
    labels = {a["labels"]["team"]: a["labels"] for a in first["alerts"]}
    assert set(labels) == set(teams)
    assert labels["search"] == {
        "alertname": "FinOpsCostAnomaly",
        "alert_id": f"{0:032x}",
        "cluster": "prod-eu",
        "detector": "token_spend",
        "kind": "spend",
        "model": "sonnet",
        "severity": "error",
        "signal": "token_cost_usd",
        "team": "search",
    }
    a = next(a for a in first["alerts"] if a["labels"]["team"] == "search")
    assert a["annotations"]["impact_usd"] == "520.00" and a["annotations"]["projected_daily_impact_usd"] == "12480.00"
    assert (
        a["annotations"]["summary"].startswith("[token_spend]")
        and "usual band 60–200" in a["annotations"]["description"]
    )
    assert a["annotations"]["top_contributor"] == "model=sonnet +510.00"
    assert a["generatorURL"] == f"https://finops.example/alerts/{0:032x}"
    assert a["annotations"]["episode_started_at"] == "2026-12-01T10:00:00Z"  # startsAt: when the agent raised it
    for i, team in enumerate(teams):
        s.on_alert(doc(id=f"{i:032x}", series={"team": team, "model": "sonnet"}, status="resolved"))
    assert receiver.wait_for(lambda r: any(n["status"] == "resolved" for n in notifications(receiver)), 20)
    resolved = [n for n in notifications(receiver) if n["status"] == "resolved"][0]
    assert sorted(x["labels"]["team"] for x in resolved["alerts"]) == sorted(teams)
    assert active(am) == []
    s.stop()


def test_an_escalation_ends_the_alert_under_the_old_severity(
    alertmanager: AmFactory, receiver: Receiver, tmp_path: Path
) -> None:
    am = alertmanager(receiver.url)
    s, _ = am_sink(tmp_path, [am.url])
    s.on_alert(doc(severity="warning"))
    assert wait_until(lambda: [x["labels"]["severity"] for x in active(am)] == ["warning"], 15)
    s.on_alert(doc(severity="critical", escalated=True, previous_severity="warning"))
    assert wait_until(lambda: [x["labels"]["severity"] for x in active(am)] == ["critical"], 15)
    s.stop()


def test_each_alertmanager_of_a_pair_gets_the_alert_one_down_has_it_with_the_next_resend(
    alertmanager: AmFactory, receiver: Receiver, tmp_path: Path
) -> None:
    am1 = alertmanager(receiver.url, "am1")
    port2 = free_port()
    s, tel = am_sink(tmp_path, [am1.url, f"http://127.0.0.1:{port2}"], resend_interval_seconds=0.5)
    s.on_alert(doc())
    assert wait_until(lambda: len(active(am1)) == 1, 15)
    assert s.flush(5)
    assert tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": "am"}) == 1  # delivered
    assert wait_until(
        lambda: (
            (
                tel.registry.get_sample_value(
                    "finops_agent_errors_total", {"component": "am", "error_type": "retry", "stage": "resend"}
                )
                or 0
            )
            >= 2
        ),
        10,
    )
    am2 = alertmanager(receiver.url, "am2", port=port2)  # the second one comes up
    assert wait_until(lambda: [x["labels"]["alert_id"] for x in active(am2)] == ["0f" * 16], 15)
    ends = orjson.loads(orjson.dumps(active(am2)[0]))["endsAt"]
    assert ends > active(am2)[0]["startsAt"]
    s.stop()


def test_after_a_restart_the_firing_alerts_are_sent_again_without_a_new_event(
    alertmanager: AmFactory, receiver: Receiver, tmp_path: Path
) -> None:
    am = alertmanager(receiver.url)
    s, tel = am_sink(tmp_path, [am.url], resend_interval_seconds=0.3)
    s.on_restore([], [doc()])  # what the agent hands sinks after a restart
    assert wait_until(lambda: len(active(am)) == 1, 15)
    s.stop()
    assert tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": "am"}) is None


def test_labels_are_valid_names_and_a_dimension_never_hides_the_agents_labels(tmp_path: Path) -> None:
    s = AlertmanagerSink(
        AlertmanagerConfig(type="alertmanager", urls=["http://127.0.0.1:1"]), name="am", telemetry=Telemetry()
    )
    labels = s.labels(doc(series={"k8s.namespace": "ml", "severity": "low", "1st": "x"}, kind="data_gap"))
    assert labels["k8s_namespace"] == "ml" and labels["_1st"] == "x"
    assert labels["severity"] == "error" and labels["series_severity"] == "low"
    assert labels["alertname"] == "FinOpsDataGap" and labels["kind"] == "data_gap"


def test_an_alertmanager_config_is_checked() -> None:
    base = "sources: {s: {type: file, path: x, decoder: {type: bedrock}}}\n"
    base += "detectors: {d: {type: seasonal, signal: token_cost_usd}}\n"
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {am: {type: alertmanager, urls: [], labels: {severity: x, 'a-b': y}}}")
    assert exc.value.errors[0].startswith("sinks.am.urls: ")
    assert exc.value.errors[1] == (
        "sinks.am.labels: label name 'a-b' must match ^[a-zA-Z_][a-zA-Z0-9_]*$; label 'severity' is set by the agent"
    )
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "sinks: {am: {type: alertmanager, urls: ['alertmanager:9093']}}")
    assert "is not an http(s) URL" in exc.value.errors[0]


def test_a_silenced_alert_is_no_longer_resent(alertmanager: AmFactory, receiver: Receiver, tmp_path: Path) -> None:
    am = alertmanager(receiver.url)
    s, _ = am_sink(tmp_path, [am.url], resend_interval_seconds=0.2)
    s.on_alert(doc())
    assert wait_until(lambda: len(active(am)) == 1, 15)
    s.on_alert({**doc(), "silenced": True, "silenced_by": ["s1"]})  # a silence made while it fires
    assert s._firing == {}
    s.stop()


def test_after_a_restart_the_recently_resolved_alerts_are_still_resent(receiver: Receiver, tmp_path: Path) -> None:
    """A resolution is re-sent for resolved_resend_seconds, across a SIGTERM and restart too (kept beside the
    sink's outbox): an Alertmanager that missed it still learns the alert is over. Against a loopback receiver
    standing for Alertmanager's API: what the sink posts."""
    s, _ = am_sink(tmp_path, [receiver.url], resend_interval_seconds=3600)
    s.on_alert(doc())
    s.on_alert(doc(status="resolved"))
    s.on_alert(doc(id="1e" * 16, status="resolved"))  # (never fired here: kept alike)
    assert s.flush(5)
    s.stop()
    ends = {aid: a["endsAt"] for aid, (a, _until) in s._resolved.items()}  # what the resolutions were sent with
    s, _ = am_sink(tmp_path, [receiver.url], resend_interval_seconds=0.2)  # the restarted agent, same state dir
    s.on_restore([], [])  # (nothing still firing)
    n = len(receiver.requests)
    assert receiver.wait_for(lambda r: len(r) > n, 15)
    s.stop()
    resent = {a["labels"]["alert_id"]: a["endsAt"] for a in orjson.loads(receiver.requests[n].body)}
    assert resent == ends and set(ends) == {"0f" * 16, "1e" * 16}  # with each resolution's endsAt


def test_a_resolution_past_its_resend_time_is_not_resent_after_a_restart(receiver: Receiver, tmp_path: Path) -> None:
    s, _ = am_sink(tmp_path, [receiver.url], resend_interval_seconds=3600, resolved_resend_seconds=0)
    s.on_alert(doc(status="resolved"))
    assert s.flush(5)
    s.stop()
    s, _ = am_sink(tmp_path, [receiver.url], resend_interval_seconds=3600, resolved_resend_seconds=0)
    assert s._resolved == {}  # (its re-send time was over: forgotten, not re-sent)
    s.stop()
