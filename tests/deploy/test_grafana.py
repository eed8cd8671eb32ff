"""The Grafana dashboard (deploy/helm/finops-agent/dashboards/finops-agent.json): every panel's query names metrics
a running agent exports (scraped from its real /metrics), and the chart ships it as a ConfigMap for Grafana's
sidecar."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, http_get
from tests.deploy.test_helm import render
from tests.deploy.test_rules import firing_agent

DASHBOARD = ROOT / "deploy" / "helm" / "finops-agent" / "dashboards" / "finops-agent.json"


def queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in dash["panels"]:
        assert p["targets"] and p["datasource"]["type"] == "prometheus" and set(p["gridPos"]) == {"x", "y", "w", "h"}
        out.extend((p["title"], t["expr"]) for t in p["targets"])
    return out


def test_every_panel_queries_metrics_the_agent_exports(tmp_path: Path) -> None:
    sinks = """
  metrics: {type: prometheus, port: 0}
  pd: {type: pagerduty, routing_key: k, url: 'http://127.0.0.1:9/v2/enqueue', max_attempts: 1}"""
    agent, _ = firing_agent(tmp_path, sinks)
    try:
        code, text = http_get(agent.sinks["metrics"].port, "/metrics")
        assert code == 200
    finally:
        agent.stop()
    exported: set[str] = set()
    for fam in text_string_to_metric_families(text):
        exported.add(fam.name)
        exported.update(s.name for s in fam.samples)
        if fam.type == "counter":
            exported.add(fam.name + "_total")  # (a labelled counter with no child yet has no sample)
    for title, expr in queries():
        names = set(re.findall(r"\b(finops_[a-z0-9_]+)", expr))
        assert names, f"{title}: {expr}"
        assert names <= exported, f"{title}: {sorted(names - exported)} not exported"


def test_the_chart_ships_the_dashboard_for_grafanas_sidecar() -> None:
    assert render({})["grafana-dashboard.yaml"] == []
    (cm,) = render({"grafanaDashboard": {"enabled": True}})["grafana-dashboard.yaml"]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["finops-agent.json"]) == json.loads(DASHBOARD.read_text())
