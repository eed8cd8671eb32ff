"""The Helm chart renders, lints clean, and carries a config the agent accepts (more in test_chart_modes.py)."""

from __future__ import annotations

from typing import Any

import helm_python
import yaml

from agent.config import load_config_text
from tests.conftest import ROOT

CHART = str(ROOT / "deploy" / "helm" / "finops-agent")
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"


def render_raw(values: dict, chart: str = CHART, name: str = "finops") -> dict[str, str]:
    """Every template's output, keyed by the template's path below the chart ('templates/x.yaml',
    'charts/finops-agent/templates/x.yaml')."""
    out = helm_python.Chart.load(chart).render(values=values, name=name)
    return {path.split("/", 1)[1]: text for path, text in out.items()}


def render(values: dict) -> dict[str, list[dict]]:
    out = helm_python.Chart.load(CHART).render(values=values)
    return {
        path.rsplit("/", 1)[-1]: [d for d in yaml.safe_load_all(text) if d]
        for path, text in out.items()
        if path.endswith(".yaml")
    }


def pod_env(container: dict[str, Any], **extra: str) -> dict[str, str]:
    """The container's environment as the agent sees it: literal values, the downward API's fields as a node
    would fill them, and ``extra`` (the keys of a Secret the test pretends exists)."""
    downward = {"status.hostIP": "10.0.0.5", "metadata.name": "finops-agent-0"}
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return {**env, **extra}


def test_lint_has_no_errors() -> None:
    result = helm_python.lint(CHART)
    assert result["errors"] == [], result


def test_default_install_runs_the_labelled_demo() -> None:
    """No config: the embedded demo (`run` without --config), its files under the state volume, metrics on
    0.0.0.0 at the container's port; NOTES.txt says it is a demo."""
    docs = render({})
    (workload,) = docs["workload.yaml"]
    assert workload["kind"] == "Deployment" and workload["spec"]["replicas"] == 1
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "finops-metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "finops-metrics"}
    assert {v["name"] for v in pod["volumes"]} == {"finops-agent-state", "finops-agent-tmp"}
    assert docs["pvc.yaml"][0]["kind"] == "PersistentVolumeClaim"
    assert docs["configmap.yaml"] == [] and docs["servicemonitor.yaml"] == [] and docs["prometheusrule.yaml"] == []
    env = pod_env(container)
    cfg = load_config_text(DEFAULT_CONFIG.read_text(), env=env)
    (port,) = container["ports"]
    assert cfg.sinks["metrics"].listen_address == "0.0.0.0" and cfg.sinks["metrics"].port == port["containerPort"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    for var in ("FINOPS_DEMO_DIR", "FINOPS_STATE_DIR", "FINOPS_INBOX"):
        assert any(env[var].startswith(m + "/") for m in mounts), f"{var}={env[var]} is not on a volume"
    assert cfg.state.directory.startswith("/var/lib/finops-agent/")
    notes = render_raw({})["templates/NOTES.txt"]
    assert "DEMO" in notes and "kubectl --namespace default logs deployment/finops-finops-agent" in notes
    assert "port-forward deployment/finops-finops-agent 9464" in notes


def test_daemonset_with_monitoring() -> None:
    docs = render(
        {
            "mode": "daemonset",
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "existingSecret": {"name": "agent-secrets"},
        }
    )
    (workload,) = docs["workload.yaml"]
    assert workload["kind"] == "DaemonSet" and "replicas" not in workload["spec"]
    pod = workload["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "agent-secrets"}}]
    assert next(v for v in pod["volumes"] if v["name"] == "finops-agent-state") == {
        "name": "finops-agent-state",
        "emptyDir": {},
    }
    assert docs["pvc.yaml"] == []
    rules = docs["prometheusrule.yaml"][0]["spec"]["groups"]
    assert {r["alert"] for g in rules for r in g["rules"]} >= {"FinOpsAgentDown", "FinOpsSpendAnomaly"}
    assert docs["servicemonitor.yaml"][0]["kind"] == "ServiceMonitor"


def test_kafka_replicas_keep_state_in_the_changelog() -> None:
    """Several replicas of the Kafka example: no volume claim (state is in the changelog topic), rolling updates."""
    config = yaml.safe_load((ROOT / "config" / "examples" / "kafka.yaml").read_text())
    docs = render({"replicaCount": 3, "persistence": {"enabled": False}, "config": config})
    (workload,) = docs["workload.yaml"]
    assert workload["spec"]["replicas"] == 3 and workload["spec"]["strategy"]["type"] == "RollingUpdate"
    state = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "finops-agent-state")
    assert state == {"name": "finops-agent-state", "emptyDir": {}}
    assert docs["pvc.yaml"] == []
    env = pod_env(workload["spec"]["template"]["spec"]["containers"][0])
    cfg = load_config_text(docs["configmap.yaml"][0]["data"]["config.yaml"], env=env)
    assert cfg.state.type == "kafka"
    # Without state.type, the chart infers kafka as the agent does (every source a Kafka source), and so allows
    # replicas with persistence left on: the state volume is then an emptyDir for the outbox.
    del config["state"]["type"]
    docs = render({"replicaCount": 3, "config": config})
    assert docs["pvc.yaml"] == [] and docs["workload.yaml"][0]["spec"]["replicas"] == 3
    env = pod_env(docs["workload.yaml"][0]["spec"]["template"]["spec"]["containers"][0])
    assert load_config_text(docs["configmap.yaml"][0]["data"]["config.yaml"], env=env).state.type == "kafka"
