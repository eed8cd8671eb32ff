"""The chart in each mode (deployment, daemonset, sidecar) and a matrix of values, rendered by Helm's own engine
(helm-python-sdk): every object valid against the Kubernetes API schemas (kubernetes-validate, strict: unknown
fields fail) or, for the Prometheus Operator's objects, against the fields of their CRDs that the chart renders;
values.schema.json's messages; the agent's ConfigMap accepted by the agent's own config validation; the README's
examples (deploy/helm/examples/)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from agent.config import load_config_text
from tests.conftest import ROOT
from tests.deploy.test_helm import CHART, DEFAULT_CONFIG, pod_env, render_raw

EXAMPLES = ROOT / "deploy" / "helm" / "examples"
KUBE_VERSION = "1.30"
SECRET_KEYS = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x", "KAFKA_PASSWORD": "p"}
KAFKA_CONFIG = yaml.safe_load((ROOT / "config" / "examples" / "kafka.yaml").read_text())

# The Prometheus Operator's CRD schemas are not shipped in any package installed here: these are the fields the
# chart renders, written from the CRDs' openAPIV3Schema (monitoring.coreos.com_{servicemonitors,podmonitors,
# prometheusrules}.yaml, operator 0.82): same names, types, required fields and duration pattern; unknown
# fields are rejected (the API server would prune or reject them).
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": _STRMAP, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
_ENDPOINT = {
    "type": "object",
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
    },
    "additionalProperties": False,
}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": _STRMAP, "annotations": _STRMAP},
}


def _crd(spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"type": "string"},
            "metadata": _METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


_RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": _STRMAP,
        "annotations": _STRMAP,
    },
    "additionalProperties": False,
}
CRD_SCHEMAS = {
    "ServiceMonitor": _crd(
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {"selector": _SELECTOR, "endpoints": {"type": "array", "items": _ENDPOINT}},
            "additionalProperties": False,
        }
    ),
    "PodMonitor": _crd(
        {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {"selector": _SELECTOR, "podMetricsEndpoints": {"type": "array", "items": _ENDPOINT}},
            "additionalProperties": False,
        }
    ),
    "PrometheusRule": _crd(
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {"type": "array", "items": _RULE},
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        }
    ),
}


def objects(rendered: dict[str, str]) -> list[dict]:
    return [d for path, text in rendered.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]


def validate_all(docs: list[dict]) -> None:
    """Every object: the Kubernetes API schema (strict) or the CRD fields above."""
    assert docs
    for doc in docs:
        where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            errors = [e.message for e in jsonschema.Draft7Validator(CRD_SCHEMAS[doc["kind"]]).iter_errors(doc)]
            assert not errors, f"{where}: {errors}"
        else:
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def agent_container(pod: dict) -> dict:
    (c,) = [c for c in pod["containers"] if c["name"] == "finops-agent"]
    return c


def check_agent_config(docs: list[dict], pod: dict | None, **secret: str) -> Any:
    """The ConfigMap's config.yaml (or, with none, the embedded default the demo runs) passes the agent's own
    validation with the pod's environment; the port it serves health on is the container's probe port."""
    cms = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {})]
    env = pod_env(agent_container(pod), **secret) if pod is not None else {**secret}
    text = cms[0]["data"]["config.yaml"] if cms else DEFAULT_CONFIG.read_text()
    cfg = load_config_text(text, origin="the rendered ConfigMap", env=env)
    if pod is not None:
        container = agent_container(pod)
        (port,) = container["ports"]
        metrics = [s for s in cfg.sinks.values() if s.type == "prometheus"]
        assert metrics and metrics[0].port == port["containerPort"], "the agent would serve /healthz elsewhere"
        assert metrics[0].listen_address == "0.0.0.0"
    return cfg


def the_pod(docs: list[dict]) -> dict:
    (workload,) = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    return workload["spec"]["template"]["spec"]


def check_hardened(pod: dict) -> None:
    c = agent_container(pod)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    state = volumes[mounts["/var/lib/finops-agent"]]
    assert {"emptyDir", "persistentVolumeClaim", "hostPath"} & set(state)


MATRIX: dict[str, dict] = {
    "default demo": {},
    "demo, no persistence, SA named, PDB": {
        "persistence": {"enabled": False},
        "serviceAccount": {"name": "finops", "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    },
    "existing claim, existing SA, everything monitored": {
        "config": KAFKA_CONFIG | {"state": {"directory": "/var/lib/finops-agent"}},
        "persistence": {"existingClaim": "my-claim"},
        "serviceAccount": {"create": False, "name": "finops-sa"},
        "serviceMonitor": {"enabled": True, "scrapeTimeout": "10s", "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "kafka replicas, PDB, NetworkPolicy, secret as env and files": {
        "config": KAFKA_CONFIG,
        "replicaCount": 4,
        "persistence": {"enabled": False},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"},
        "networkPolicy": {
            "enabled": True,
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "egress": [{"ports": [{"port": 9092, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
        },
        "existingSecret": {"name": "s", "mountPath": "/var/run/secrets/finops-agent"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "finops-agent"}},
            }
        ],
        "extraEnv": [{"name": "FINOPS_CHECKPOINT_SECONDS", "value": "5"}],
        "podAnnotations": {"example.com/team": "finops"},
        "podLabels": {"azure.workload.identity/use": "true"},
    },
    "daemonset, hostPath, NetworkPolicy, PodMonitor": {
        "mode": "daemonset",
        "config": yaml.safe_load((EXAMPLES / "gpu-daemonset-values.yaml").read_text())["config"],
        "persistence": {"hostPath": "/var/lib/finops-agent"},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "networkPolicy": {"enabled": True, "egress": [{"ports": [{"port": 9400}]}]},
        "podMonitor": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},  # (not rendered for a DaemonSet)
        "extraVolumes": [{"name": "data", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    },
    "sidecar with monitoring": {
        "mode": "sidecar",
        "config": KAFKA_CONFIG,
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "networkPolicy": {"enabled": True},
    },
}


@pytest.mark.parametrize("name", list(MATRIX))
def test_every_object_is_valid_in_every_mode(name: str) -> None:
    values = MATRIX[name]
    docs = objects(render_raw(values))
    validate_all(docs)
    mode = values.get("mode", "deployment")
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    if mode == "sidecar":
        assert workloads == [] and by_kind(docs, "Service") == [] and by_kind(docs, "ServiceAccount") == []
        assert {d["kind"] for d in docs} == {"ConfigMap", "PodMonitor", "PrometheusRule"}
        check_agent_config(docs, None, **SECRET_KEYS)
        return
    (workload,) = workloads
    assert workload["kind"] == {"deployment": "Deployment", "daemonset": "DaemonSet"}[mode]
    pod = workload["spec"]["template"]["spec"]
    check_hardened(pod)
    check_agent_config(docs, pod, **SECRET_KEYS)
    sa = values.get("serviceAccount", {})
    expected_sa = sa.get("name") or "finops-finops-agent"
    assert pod["serviceAccountName"] == expected_sa
    assert [d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")] == (
        [expected_sa] if sa.get("create", True) else []
    )
    for key, want in sa.get("annotations", {}).items():
        assert by_kind(docs, "ServiceAccount")[0]["metadata"]["annotations"][key] == want
    meta = workload["spec"]["template"]["metadata"]
    assert meta["labels"].items() >= values.get("podLabels", {}).items()
    assert meta["annotations"].items() >= values.get("podAnnotations", {}).items()
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if mode == "deployment" and values.get("podDisruptionBudget", {}).get("enabled"):
        (pdb,) = pdbs
        assert pdb["spec"]["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
    else:
        assert pdbs == []
    claims = by_kind(docs, "PersistentVolumeClaim")
    state = next(v for v in pod["volumes"] if v["name"] == "finops-agent-state")
    if "persistentVolumeClaim" in state:
        assert mode == "deployment" and workload["spec"]["replicas"] == 1
        name_ = state["persistentVolumeClaim"]["claimName"]
        assert [c["metadata"]["name"] for c in claims] == ([] if name_ == "my-claim" else [name_])
    else:
        assert claims == []


def test_network_policy_opens_only_the_agent_port_dns_and_the_configured_endpoints() -> None:
    values = MATRIX["kafka replicas, PDB, NetworkPolicy, secret as env and files"]
    (np,) = by_kind(objects(render_raw(values)), "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = np["spec"]["ingress"]
    assert ingress["ports"] == [{"port": 9464, "protocol": "TCP"}]
    assert ingress["from"] == values["networkPolicy"]["ingressFrom"]
    dns, *rest = np["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert rest == values["networkPolicy"]["egress"]
    assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "finops-agent"


def test_secrets_only_by_reference_as_env_and_files() -> None:
    values = MATRIX["kafka replicas, PDB, NetworkPolicy, secret as env and files"]
    docs = objects(render_raw(values))
    assert by_kind(docs, "Secret") == []
    pod = the_pod(docs)
    c = agent_container(pod)
    assert c["envFrom"] == [{"secretRef": {"name": "s"}}]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/run/secrets/finops-agent"]
    assert mount["readOnly"] is True
    assert next(v for v in pod["volumes"] if v["name"] == mount["name"]) == {
        "name": mount["name"],
        "secret": {"secretName": "s"},
    }
    c = agent_container(the_pod(objects(render_raw({"existingSecret": {"name": "s", "asEnv": False}}))))
    assert "envFrom" not in c and all(m["name"] != "finops-agent-secret" for m in c["volumeMounts"])


def test_daemonset_reads_its_own_nodes_exporter() -> None:
    values = MATRIX["daemonset, hostPath, NetworkPolicy, PodMonitor"]
    docs = objects(render_raw(values))
    pod = the_pod(docs)
    env = {e["name"]: e for e in agent_container(pod)["env"]}
    assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    cfg = check_agent_config(docs, pod)
    assert cfg.sources["dcgm"].urls == ["http://10.0.0.5:9400/metrics"]  # the node's address, from the pod's env
    assert {"key": "nvidia.com/gpu", "operator": "Exists"} in pod["tolerations"]
    assert values["tolerations"][0] in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    state = next(v for v in pod["volumes"] if v["name"] == "finops-agent-state")
    assert state["hostPath"] == {"path": "/var/lib/finops-agent", "type": "DirectoryOrCreate"}
    pod = the_pod(objects(render_raw({"mode": "daemonset", "daemonset": {"gpuToleration": False}})))
    assert "tolerations" not in pod


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(values: dict) -> str:
        (w,) = [d for d in objects(render_raw(values)) if d["kind"] == "Deployment"]
        return w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    changed = copy.deepcopy(KAFKA_CONFIG)
    changed["detectors"]["token_spend"]["min_impact_usd"] = 21
    assert checksum({"config": KAFKA_CONFIG}) == checksum({"config": KAFKA_CONFIG, "replicaCount": 2})
    assert checksum({"config": KAFKA_CONFIG}) != checksum({"config": changed}) != checksum({})


def test_monitoring_objects_select_the_agent() -> None:
    docs = objects(render_raw(MATRIX["existing claim, existing SA, everything monitored"]))
    (svc,) = by_kind(docs, "Service")
    (sm,) = by_kind(docs, "ServiceMonitor")
    (pm,) = by_kind(docs, "PodMonitor")
    pod_labels = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"]["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == svc["spec"]["ports"][0]["targetPort"] == "finops-metrics"
    (dash,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "foo"}, "at '/mode': value must be one of 'deployment', 'daemonset', 'sidecar'"),
        ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
        ({"replicaCount": "3"}, "at '/replicaCount': got string, want integer"),
        ({"kind": "DaemonSet"}, "additional properties 'kind' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"image": {"tag": 1.2}}, "at '/image/tag': got number, want string"),
        ({"config": ["sources"]}, "at '/config': got array, want object"),
        ({"serviceAccount": {"create": "yes"}}, "at '/serviceAccount/create': got string, want boolean"),
        ({"serviceMonitor": {"enabled": True, "interval": "30 seconds"}}, "at '/serviceMonitor/interval'"),
        ({"podLabels": {"azure.workload.identity/use": True}}, "at '/podLabels/azure.workload.identity~1use'"),
        ({"persistence": {"size": "lots"}}, "at '/persistence/size'"),
        ({"networkPolicy": {"egress": [{"port": 443}]}}, "additional properties 'port' not allowed"),
        ({"existingSecret": "my-secret"}, "at '/existingSecret': got string, want object"),
        ({"metricsPort": 70000}, "at '/metricsPort': maximum: got 70,000, want 65,535"),
    ],
)
def test_values_schema_rejects_bad_values_with_their_path(values: dict, message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as err:
        render_raw(values)
    assert "values don't meet the specifications of the schema" in str(err.value)
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"replicaCount": 2},
            "replicaCount 2 with local state on a volume: replicas would fight over one state directory",
        ),
        (
            {"replicaCount": 3, "persistence": {"enabled": False}},  # the demo's file sources, read three times
            "replicaCount 3 with local state: every replica would read every source",
        ),
        ({"mode": "sidecar"}, "mode sidecar: set `config`"),
        ({"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}, "use podMonitor.enabled instead"),
    ],
)
def test_impossible_combinations_fail_with_a_message(values: dict, message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as err:
        render_raw(values)
    assert message in str(err.value), str(err.value)


def test_sidecar_example_chart_includes_the_agent(tmp_path: Path) -> None:
    """deploy/helm/examples/sidecar: a gateway chart with finops-agent as a dependency (what `helm dependency
    build` puts in charts/) adds the agent as a second container sharing the gateway's usage-log emptyDir."""
    chart = tmp_path / "sidecar"
    shutil.copytree(EXAMPLES / "sidecar", chart, ignore=shutil.ignore_patterns("charts"))
    shutil.copytree(CHART, chart / "charts" / "finops-agent")
    docs = objects(render_raw({}, chart=str(chart), name="gw"))
    validate_all(docs)
    (workload,) = by_kind(docs, "Deployment")
    pod = workload["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["gateway", "finops-agent"]
    check_hardened(pod)
    cfg = check_agent_config(docs, pod)
    agent = agent_container(pod)
    assert agent["image"] == "ghcr.io/finops-anomaly-agent/finops-agent:0.1.0"  # the agent chart's appVersion
    assert agent["args"] == ["run", "--config", "/etc/finops-agent/config.yaml"]
    shared = next(m for m in agent["volumeMounts"] if m["name"] == "usage-logs")
    gateway = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "usage-logs")
    assert shared["mountPath"] == gateway["mountPath"] and shared["readOnly"] is True
    assert cfg.sources["gateway"].path.startswith(shared["mountPath"] + "/")
    # the ConfigMap the sidecar mounts is the one the finops-agent dependency renders
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d["data"]]
    volume = next(v for v in pod["volumes"] if v["name"] == "finops-agent-config")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    checksum = workload["spec"]["template"]["metadata"]["annotations"]["checksum/finops-agent-config"]
    standalone = objects(render_raw({"config": yaml.safe_load(cm["data"]["config.yaml"])}))
    (w,) = by_kind(standalone, "Deployment")
    assert checksum == w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    # the sidecar container is the standalone chart's container (same env, probes, security context), with the
    # example's resources and the shared volume
    example = yaml.safe_load((EXAMPLES / "sidecar" / "values.yaml").read_text())["finops-agent"]
    assert agent["resources"] == example["resources"]
    assert agent == agent_container(w["spec"]["template"]["spec"]) | {
        "volumeMounts": agent["volumeMounts"],
        "resources": example["resources"],
    }
    (pm,) = by_kind(docs, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    names = [p["name"] for c in pod["containers"] for p in c.get("ports", [])]
    assert len(names) == len(set(names))
    assert {d["kind"] for d in docs} == {"Deployment", "ConfigMap", "PodMonitor"}


@pytest.mark.parametrize(
    ("example", "kind", "state"),
    [
        ("aws-kafka-values.yaml", "Deployment", "local"),
        ("azure-eventhubs-values.yaml", "Deployment", "blob"),
        ("gpu-daemonset-values.yaml", "DaemonSet", "local"),
    ],
)
def test_readme_examples_render_valid_objects_and_configs(example: str, kind: str, state: str) -> None:
    """`helm install finops deploy/helm/finops-agent -f deploy/helm/examples/<example>`."""
    values = yaml.safe_load((EXAMPLES / example).read_text())
    rendered = render_raw(values)
    docs = objects(rendered)
    validate_all(docs)
    pod = the_pod(docs)
    assert [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")][0]["kind"] == kind
    check_hardened(pod)
    cfg = check_agent_config(docs, pod, **SECRET_KEYS)
    assert cfg.state.type == state
    notes = rendered["templates/NOTES.txt"]
    assert "DEMO" not in notes and f"Mode: {values['mode']}" in notes and f"state:     {state}" in notes
    for src in cfg.sources:
        assert src in notes
    if state == "blob":  # Azure workload identity: the pod label and the service account's client id
        labels = [d for d in docs if d["kind"] == kind][0]["spec"]["template"]["metadata"]["labels"]
        assert labels["azure.workload.identity/use"] == "true"
        (sa,) = by_kind(docs, "ServiceAccount")
        assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
        assert by_kind(docs, "PersistentVolumeClaim") == []
