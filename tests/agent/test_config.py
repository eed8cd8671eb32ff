from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, load_config_text
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "config").rglob("*.yaml"))


def test_there_are_example_configs() -> None:
    assert len(CONFIGS) >= 3, CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_config_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.example/services/T/B/X")
    cfg = load_config(str(path))
    assert cfg.sources and cfg.detectors and cfg.sinks


BROKEN = """
sources:
  logs:
    type: file
    decoder: {type: bedrock, bogus: 1}
detectors:
  spend:
    type: seasonal
    group_by: [team, team]
    window_seconds: 0
  cap:
    type: threshold
    signal: token_cost_usd
sinks:
  hook:
    type: webhook
    url: ftp://nowhere
  what:
    type: carrier-pigeon
pipeline:
  allowed_lateness_seconds: -1
extra_top_level: true
"""


def test_every_error_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(BROKEN)
    errors = exc.value.errors
    expected = [
        "sources.logs.path: field required",
        "sources.logs.decoder.bogus: unknown key",
        "detectors.spend.signal: field required",
        "detectors.spend.group_by",
        "detectors.spend.window_seconds",
        "detectors.cap: Value error, set upper, lower or both",
        "sinks.hook.url",
        "sinks.what",
        "pipeline.allowed_lateness_seconds",
        "extra_top_level: unknown key",
    ]
    for needle in expected:
        assert any(e.startswith(needle) for e in errors), (needle, errors)


def test_env_substitution_and_missing_variables() -> None:
    text = """
sources:
  s: {type: file, path: "${DATA_DIR}/x.jsonl", decoder: {type: bedrock}}
detectors:
  d: {type: seasonal, signal: token_cost_usd}
sinks:
  w: {type: webhook, url: "${HOOK_URL:-http://127.0.0.1:1/x}", secret: "${SECRET}"}
"""
    cfg = load_config_text(text, env={"DATA_DIR": "/data", "SECRET": "hunter2"})
    assert cfg.sources["s"].path == "/data/x.jsonl"
    assert cfg.sinks["w"].url == "http://127.0.0.1:1/x"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
    with pytest.raises(ConfigError) as exc:
        load_config_text(text, env={})
    assert exc.value.errors == [
        "sources.s.path: environment variable DATA_DIR is not set",
        "sinks.w.secret: environment variable SECRET is not set",
    ]


def test_checks_across_fields() -> None:
    text = """
sources:
  a: {type: file, path: /x, watch: true, decoder: {type: bedrock}}
  b: {type: file, path: /x, watch: true, decoder: {type: bedrock}}
detectors:
  d: {type: seasonal, signal: tokens, per: tokens, group_by: [team], contributors_by: [team, model]}
sinks:
  c: {type: console}
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(text)
    assert exc.value.errors == [
        "detectors.d.per: dividing tokens by itself is always 1",
        "detectors.d.contributors_by: ['team'] already split the series (group_by)",
        "sources.b.path: also watched by sources.a",
    ]


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text("sources:\n  a: [1, 2\n", "bad.yaml")
    assert "bad.yaml: invalid YAML at line" in exc.value.errors[0]


def _validate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "validate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    ok = _validate("--config", str(ROOT / "config" / "default.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN)
    res = _validate("--config", str(bad))
    assert res.returncode == 2
    lines = [ln.strip() for ln in res.stderr.splitlines()[1:]]
    assert "sources.logs.path: field required" in lines
    assert len(lines) >= 10
    missing = _validate("--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_validate_never_prints_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources: {s: {type: file, path: x, decoder: {type: bedrock}}}\n"
        "detectors: {d: {type: seasonal, signal: token_cost_usd, window_seconds: -5}}\n"
        "sinks: {w: {type: webhook, url: 'http://127.0.0.1:1', secret: 'sup3r-s3cret', bogus: 1}}\n"
    )
    res = _validate("--config", str(cfg))
    assert res.returncode == 2
    assert "sup3r-s3cret" not in res.stderr + res.stdout


def test_readme_config_example_is_valid() -> None:
    text = (ROOT / "README.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config_text(block, "README.md", env={"WEBHOOK_SECRET": "x", "SLACK_WEBHOOK_URL": "https://h.example/x"})
    assert set(cfg.detectors) == {"token_spend", "unit_cost", "monthly_budget"}


KAFKA_SRC = "{type: kafka, bootstrap_servers: [b:9092], topics: [t], decoder: {type: bedrock}}"


def test_state_follows_the_partition_by_default_for_kafka_sources() -> None:
    base = "detectors: {d: {type: seasonal, signal: token_cost_usd}}\nsinks: {c: {type: console}}\n"
    assert load_config_text(f"sources: {{k: {KAFKA_SRC}}}\n" + base).state.type == "kafka"
    mixed = f"sources: {{k: {KAFKA_SRC}, f: {{type: file, path: x, decoder: {{type: bedrock}}}}}}\n" + base
    assert load_config_text(mixed).state.type == "local"
    with pytest.raises(ConfigError) as exc:
        load_config_text(mixed + "state: {type: kafka}\n")
    assert exc.value.errors == ["sources.f.type: with state.type kafka every source must be a kafka source"]
    keyed = KAFKA_SRC.replace("topics:", "keyed_by_series: true, topics:")
    with pytest.raises(ConfigError) as exc:
        load_config_text(f"sources: {{k: {keyed}}}\n" + base + "state: {type: local}\n")
    assert exc.value.errors == ["sources.k.keyed_by_series: only applies with state.type kafka"]
