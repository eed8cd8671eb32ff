from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from agent.alerts import Point
from agent.config import HttpConfig, load_config_text
from agent.pipeline import Agent, Health
from agent.server import plan_servers
from agent.telemetry import Telemetry
from sinks.prometheus import PrometheusConfig, PrometheusSink
from tests.conftest import free_port, http_get


def point(team: str, score: float = 1.0) -> Point:
    return Point(
        "spend",
        "seasonal",
        "token_cost_usd",
        (("team", team), ("model.id", "m")),
        0.0,
        3600.0,
        observed=12.5,
        expected=10.0,
        lower=5.0,
        upper=20.0,
        score=score,
        anomalous=False,
        impact_usd=2.5,
        unit="usd",
    )


def test_metrics_health_and_cardinality_cap() -> None:
    tel, health = Telemetry(), Health()
    sink = PrometheusSink(
        PrometheusConfig(type="prometheus", port=0, max_series=3), name="metrics", telemetry=tel, health=health
    )
    servers, _own = plan_servers(HttpConfig(enabled=False), {"metrics": sink}, health)
    (server,) = servers  # the sink's own address: /metrics there, with the probes
    server.start()
    sink.start()
    try:
        port = sink.port
        assert http_get(port, "/healthz")[0] == 503 and http_get(port, "/readyz")[0] == 503
        health.mark_alive()
        assert http_get(port, "/healthz")[0] == 200 and http_get(port, "/readyz")[0] == 503
        health.mark_ready()
        assert http_get(port, "/readyz")[0] == 200
        assert http_get(port, "/nope")[0] == 404

        sink.on_points([point(f"t{i}") for i in range(6)])
        sink.on_alert({"status": "firing", "detector": "spend", "series": {"team": "t5", "model.id": "m"}})
        tel.received.labels(component="src").inc(42)
        status, text = http_get(port, "/metrics")
        assert status == 200
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        score = fams["finops_anomaly_score"].samples
        assert len(score) == 3  # the cap
        labels = [s.labels for s in score]
        assert {
            "detector": "spend",
            "signal": "token_cost_usd",
            "unit": "usd",
            "team": "t5",
            "model_id": "m",
        } in labels  # firing first
        firing = {s.labels["team"]: s.value for s in fams["finops_alerts_firing"].samples}
        assert firing["t5"] == 1.0 and sum(firing.values()) == 1.0
        for name, value in [
            ("finops_observed_value", 12.5),
            ("finops_expected_value", 10.0),
            ("finops_expected_lower", 5.0),
            ("finops_expected_upper", 20.0),
            ("finops_impact_usd", 2.5),
        ]:
            assert {s.value for s in fams[name].samples} == {value}, name
        assert fams["finops_agent_metric_series_capped"].samples[0].value == 3
        recv = fams["finops_agent_events_received"].samples
        assert any(s.name == "finops_agent_events_received_total" and s.value == 42 for s in recv)
        sink.on_alert({"status": "resolved", "detector": "spend", "series": {"team": "t5", "model.id": "m"}})
        fams = {f.name: f for f in text_string_to_metric_families(http_get(port, "/metrics")[1])}
        assert all(s.value == 0 for s in fams["finops_alerts_firing"].samples)
    finally:
        sink.stop()
        server.stop()
        server.stop()  # idempotent


def _restart_config(data: Path, state: Path, port: int) -> str:
    return f"""
sources:
  s: {{type: file, path: "{data}", watch: false, decoder: {{type: json, time_field: ts,
      values: {{token_cost_usd: cost, tokens: tokens}}, dimensions: {{team: team}}}}}}
detectors:
  spend: {{type: threshold, signal: token_cost_usd, group_by: [team], upper: 50.0, window_seconds: 60,
      min_impact_usd: 0}}
  unit_cost: {{type: threshold, signal: token_cost_usd, per: tokens, per_scale: 1000, group_by: [team],
      upper: 1.0e9, window_seconds: 60}}
sinks:
  metrics: {{type: prometheus, port: {port}}}
state: {{directory: "{state}", checkpoint_interval_seconds: 3600}}
dead_letter: {{path: "{state}/dlq.jsonl"}}
pipeline: {{allowed_lateness_seconds: 0}}
"""


def _families(port: int) -> dict[str, list[Any]]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_restored_series_and_firing_alerts_are_on_metrics_at_once_after_a_restart(tmp_path: Path) -> None:
    """Stop an agent, start another on its state directory: before any window closes, /metrics shows
    every restored series (with its unit) and the alert still firing (a rule on it must not flap)."""
    data = tmp_path / "in"
    data.mkdir()
    t0 = time.time() - 3 * 3600
    t0 -= t0 % 60
    rows = [  # team a spends $100 a minute (over the $50 limit) for its last two minutes; team b $2
        {"ts": t0 + m * 60 + 5, "cost": 100.0 if team == "a" and m >= 3 else 2.0, "tokens": 1000.0, "team": team}
        for m in range(5)
        for team in ("a", "b")
    ]
    (data / "x.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    state = tmp_path / "state"
    first = Agent(load_config_text(_restart_config(data, state, free_port())))
    first.start()
    assert first.wait_finished(30)
    first.stop(flush_windows=True)
    firing_before = {d["series"]["team"] for r in first.runners.values() for d in r.firing_documents()}
    assert firing_before == {"a"}

    port = free_port()
    second = Agent(load_config_text(_restart_config(data, state, port)))
    second.start()
    try:
        fams = _families(port)  # at once: no new input, no window closes
        assert second.points_out == 0
        observed = {(s.labels["detector"], s.labels["team"]): s for s in fams["finops_observed_value"]}
        assert set(observed) == {(d, t) for d in ("spend", "unit_cost") for t in ("a", "b")}
        assert observed[("spend", "a")].value == 100.0 and observed[("spend", "a")].labels["unit"] == "usd"
        assert observed[("unit_cost", "b")].value == 2.0
        assert observed[("unit_cost", "b")].labels["unit"] == "usd_per_1k_tokens"
        firing = {(s.labels["detector"], s.labels["team"]): s.value for s in fams["finops_alerts_firing"]}
        assert firing == {("spend", "a"): 1.0, ("spend", "b"): 0.0, ("unit_cost", "a"): 0.0, ("unit_cost", "b"): 0.0}
    finally:
        second.stop()


def test_a_sink_with_only_a_port_listens_where_the_environment_says(monkeypatch: Any) -> None:
    """In the image and the chart FINOPS_METRICS_ADDRESS is 0.0.0.0: a sink written with only a port must not fall
    back to loopback there, or the pod's probes fail."""
    tel, health = Telemetry(), Health()
    sink = PrometheusSink(PrometheusConfig(type="prometheus", port=9999), name="m", telemetry=tel, health=health)
    monkeypatch.delenv("FINOPS_METRICS_ADDRESS", raising=False)
    monkeypatch.delenv("FINOPS_HTTP_ADDRESS", raising=False)
    assert sink.http_address() == ("127.0.0.1", 9999)
    monkeypatch.setenv("FINOPS_METRICS_ADDRESS", "0.0.0.0")
    assert sink.http_address() == ("0.0.0.0", 9999)
    explicit = PrometheusSink(
        PrometheusConfig(type="prometheus", port=9999, listen_address="10.0.0.5"),
        name="m",
        telemetry=Telemetry(),
        health=health,
    )
    assert explicit.http_address() == ("10.0.0.5", 9999)
