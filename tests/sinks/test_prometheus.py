from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from agent.detect import Point
from agent.pipeline import Health
from agent.telemetry import Telemetry
from sinks.prometheus import PrometheusConfig, PrometheusSink


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
    )


def test_metrics_health_and_cardinality_cap() -> None:
    tel, health = Telemetry(), Health()
    sink = PrometheusSink(
        PrometheusConfig(type="prometheus", port=0, max_series=3), name="metrics", telemetry=tel, health=health
    )
    sink.start()
    try:
        port = sink.port
        assert get(port, "/healthz")[0] == 503 and get(port, "/readyz")[0] == 503
        health._alive.set()
        assert get(port, "/healthz")[0] == 200 and get(port, "/readyz")[0] == 503
        health._ready.set()
        assert get(port, "/readyz")[0] == 200
        assert get(port, "/nope")[0] == 404

        sink.on_points([point(f"t{i}") for i in range(6)])
        sink.on_alert({"status": "firing", "detector": "spend", "series": {"team": "t5", "model.id": "m"}})
        tel.received.labels(component="src").inc(42)
        status, text = get(port, "/metrics")
        assert status == 200
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        score = fams["finops_anomaly_score"].samples
        assert len(score) == 3  # the cap
        labels = [s.labels for s in score]
        assert {
            "detector": "spend",
            "signal": "token_cost_usd",
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
        fams = {f.name: f for f in text_string_to_metric_families(get(port, "/metrics")[1])}
        assert all(s.value == 0 for s in fams["finops_alerts_firing"].samples)
    finally:
        sink.stop()
        sink.stop()  # idempotent
