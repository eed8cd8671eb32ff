"""The Helm chart renders, lints clean, and carries a config the agent accepts."""

from __future__ import annotations

import helm_python
import yaml

from agent.config import load_config_text
from tests.conftest import ROOT

CHART = str(ROOT / "deploy" / "helm" / "finops-agent")


def render(values: dict) -> dict[str, list[dict]]:
    out = helm_python.Chart.load(CHART).render(values=values)
    return {path.rsplit("/", 1)[-1]: [d for d in yaml.safe_load_all(text) if d] for path, text in out.items()}


def test_lint_has_no_errors() -> None:
    assert helm_python.lint(CHART)["errors"] == []


def test_default_deployment() -> None:
    docs = render({})
    (workload,) = docs["workload.yaml"]
    assert workload["kind"] == "Deployment"
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["run", "--config", "/etc/finops-agent/config.yaml"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {v["name"] for v in pod["volumes"]} == {"config", "state"}
    assert docs["pvc.yaml"][0]["kind"] == "PersistentVolumeClaim"
    assert docs["servicemonitor.yaml"] == [] and docs["prometheusrule.yaml"] == []
    cfg = load_config_text(docs["configmap.yaml"][0]["data"]["config.yaml"])
    assert cfg.sinks["metrics"].port == 9464


def test_daemonset_with_monitoring() -> None:
    docs = render(
        {
            "kind": "DaemonSet",
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "secretEnv": {"secretName": "agent-secrets"},
        }
    )
    (workload,) = docs["workload.yaml"]
    assert workload["kind"] == "DaemonSet" and "replicas" not in workload["spec"]
    pod = workload["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "agent-secrets"}}]
    assert "hostPath" in next(v for v in pod["volumes"] if v["name"] == "state")
    assert docs["pvc.yaml"] == []
    rules = docs["prometheusrule.yaml"][0]["spec"]["groups"]
    assert {r["alert"] for g in rules for r in g["rules"]} >= {"FinOpsAgentDown", "FinOpsSpendAnomaly"}
    assert docs["servicemonitor.yaml"][0]["kind"] == "ServiceMonitor"


def test_kafka_replicas_keep_state_in_the_changelog() -> None:
    """Several replicas of the Kafka example: no volume claim (state is in the changelog topic)."""
    config = yaml.safe_load((ROOT / "config" / "examples" / "kafka.yaml").read_text())
    docs = render({"replicaCount": 3, "persistence": {"enabled": False}, "config": config})
    (workload,) = docs["workload.yaml"]
    assert workload["spec"]["replicas"] == 3
    state = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {}}
    assert docs["pvc.yaml"] == []
    cfg = load_config_text(docs["configmap.yaml"][0]["data"]["config.yaml"])
    assert cfg.state.type == "kafka"
