"""The chart's Prometheus rules, checked by a real promtool and evaluated by a real Prometheus that scrapes a running
agent's /metrics and sends to a real Alertmanager (scripts/prom_services.py installs them when missing)."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.model import parse_time
from agent.pipeline import Agent
from scripts.prom_services import Alertmanager, Prometheus, install, require
from tests.agent.test_api import _hourly_calls
from tests.conftest import Receiver, wait_until
from tests.deploy.test_helm import render

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def _binaries() -> None:
    install()  # fails loudly where Prometheus cannot be found or installed


def rules_file(dest: Path) -> Path:
    docs = render({"prometheusRule": {"enabled": True}})
    (rule,) = docs["prometheusrule.yaml"]
    path = dest / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def firing_agent(tmp_path: Path, sinks: str) -> tuple[Agent, PointCollector]:
    """An agent with ``sinks`` (YAML) started on ten days of a team's calls and a fivefold jump, once its alert
    fires (the caller stops it)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    start = parse_time("2026-11-01T00:00:00Z")
    day = 24 * 10
    (inbox / "a.jsonl").write_bytes(_hourly_calls(start, day + 3, lambda h: 60 * (5 if h >= day else 1)))
    config = f"""
sources: {{s: {{type: file, path: {inbox}, watch: true, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}}}
pipeline: {{max_age_days: 3650}}
detectors: {{token_spend: {{type: seasonal, signal: token_cost_usd, group_by: [team]}}}}
sinks: {sinks}
state: {{directory: {tmp_path}/state}}
dead_letter: {{path: {tmp_path}/dlq.jsonl}}
"""
    got = PointCollector()
    agent = Agent(load_config_text(config), extra_sinks={"c": got})
    agent.start()
    try:
        assert wait_until(lambda: any(a["status"] == "firing" for a in got.alerts), 60), got.alerts
    except BaseException:
        agent.stop()
        raise
    return agent, got


def test_promtool_checks_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    rules = rules_file(tmp_path)
    check = subprocess.run([require("promtool"), "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout
    (tmp_path / "rules_test.yaml").write_text((HERE / "rules_test.yaml").read_text())
    test = subprocess.run(
        [require("promtool"), "test", "rules", "rules_test.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_a_real_prometheus_scrapes_the_agent_and_pages_through_alertmanager(tmp_path: Path, receiver: Receiver) -> None:
    agent, _ = firing_agent(tmp_path, "{metrics: {type: prometheus, port: 0}}")
    am = Alertmanager(
        tmp_path / "am",
        {
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver.url + "/am"}]}],
        },
    )
    prom: Prometheus | None = None
    try:
        am.start()
        rules = rules_file(tmp_path)
        prom = Prometheus(
            tmp_path / "prom",
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]},
                "scrape_configs": [
                    {
                        "job_name": "finops-agent",
                        "static_configs": [{"targets": [f"127.0.0.1:{agent.sinks['metrics'].port}"]}],
                    }
                ],
            },
        )
        prom.start()

        def paged() -> list[dict[str, Any]]:
            with urllib.request.urlopen(am.url + "/api/v2/alerts?active=true") as resp:
                alerts = orjson.loads(resp.read())
            return [a for a in alerts if a["labels"]["alertname"] == "FinOpsSpendAnomaly"]

        assert wait_until(lambda: bool(paged()), 60), prom.log_tail()
        (alert,) = paged()
        assert alert["labels"]["team"] == "search" and alert["labels"]["detector"] == "token_spend"
        assert (
            alert["annotations"]["description"].startswith("Impact ")
            and "NaN" not in alert["annotations"]["description"]
        )
        assert receiver.wait_for(lambda r: any(b"FinOpsSpendAnomaly" in x.body for x in r), 30)
    finally:
        if prom is not None:
            prom.stop()
        am.stop()
        agent.stop()
