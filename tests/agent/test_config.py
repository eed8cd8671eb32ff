from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, load_config_text
from agent.decoders.base import DecodeContext, Decoder, Emits
from agent.decoders.bedrock import BedrockConfig, BedrockDecoder
from agent.decoders.billing.auto import AutoBillingConfig, AutoBillingDecoder
from agent.decoders.billing.base import DEFAULT_DIMENSIONS, Dimension, observations
from agent.decoders.billing.delivery import read_file
from agent.decoders.dcgm import DcgmConfig, DcgmDecoder
from agent.decoders.generic_json import JsonConfig, JsonDecoder
from agent.model import Observation
from agent.registry import components
from tests.agent.decoders.test_bedrock import log
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
        "detectors.cap: set upper, lower or both",
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
  a: {type: file, path: /x, watch: true, decoder: {type: bedrock, tag_dimensions: {team: team}}}
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


# -- detectors checked against what the sources can emit (issue 12, point 5) ------------------
BEDROCK = "  logs: {type: file, path: x, decoder: {type: bedrock, tag_dimensions: {team: team}}}\n"
DCGM = "  gpus: {type: file, path: y, decoder: {type: dcgm, constant_dimensions: {cluster: prod}}}\n"
TOKEN_SIGNALS = "cache_savings_usd, cached_input_tokens, input_tokens, output_tokens, requests, token_cost_usd, tokens"
BEDROCK_DIMS = "billing_account, model, provider, region, service, team"


def _config(sources: str, detectors: str) -> str:
    return f"sources:\n{sources}detectors:\n{detectors}sinks:\n  c: {{type: console}}\n"


def _errors(text: str) -> list[str]:
    try:
        load_config_text(text, env={})
    except ConfigError as exc:
        return exc.errors
    return []


NEVER_FIRE = """\
  spend: {type: seasonal, signal: nonexistent_signal}
  per_team: {type: seasonal, signal: token_cost_usd, group_by: [teamm], contributors_by: [modle]}
  idle: {type: threshold, signal: gpu_idle_hours, upper: 0.5}
  typo: {type: seasonal, signal: token_cost_us}
"""


def test_detectors_that_can_never_fire_are_reported_with_path_and_suggestion() -> None:
    assert _errors(_config(BEDROCK, NEVER_FIRE)) == [
        f"detectors.spend.signal: no configured source emits 'nonexistent_signal'; sources emit: {TOKEN_SIGNALS}",
        "detectors.per_team.group_by[0]: no configured source that emits token_cost_usd has dimension 'teamm' "
        f"(did you mean 'team'?); they have: {BEDROCK_DIMS}",
        "detectors.per_team.contributors_by[0]: no configured source that emits token_cost_usd has dimension "
        f"'modle' (did you mean 'model'?); they have: {BEDROCK_DIMS}",
        f"detectors.idle.signal: no configured source emits 'gpu_idle_hours'; sources emit: {TOKEN_SIGNALS}",
        "detectors.typo.signal: no configured source emits 'token_cost_us' (did you mean 'token_cost_usd'?); "
        f"sources emit: {TOKEN_SIGNALS}",
    ]
    # The same detectors, corrected and given a GPU source, load.
    fixed = NEVER_FIRE.replace("nonexistent_signal", "requests").replace("teamm", "team").replace("modle", "model")
    assert _errors(_config(BEDROCK + DCGM, fixed.replace("token_cost_us}", "token_cost_usd}"))) == []


@pytest.mark.parametrize(
    ("detector", "error"),
    [
        ("{type: seasonal, signal: gpu_idle_hours, per: gpu_hours, cost_signal: gpu_idle_cost_usd}", None),
        (
            "{type: seasonal, signal: gpu_mem_used_mib_hours, per: gpu_hours}",
            "detectors.d.per: no configured source emits 'gpu_hours' together with 'gpu_mem_used_mib_hours'; "
            "with gpu_mem_used_mib_hours: nothing",
        ),
        (
            "{type: seasonal, signal: gpu_hours, cost_signal: token_cost_usd}",
            "detectors.d.cost_signal: no configured source emits 'token_cost_usd' together with 'gpu_hours' "
            "(did you mean 'gpu_cost_usd'?); "
            "with gpu_hours: gpu_cost_usd, gpu_idle_cost_usd, gpu_idle_hours, gpu_util_pct_hours",
        ),
        (
            "{type: seasonal, signal: token_cost_usd, per: tokns}",
            "detectors.d.per: no configured source emits 'tokns' (did you mean 'tokens'?); "
            "with token_cost_usd: cache_savings_usd, cached_input_tokens, input_tokens, output_tokens, requests, "
            "tokens",
        ),
    ],
    ids=["same-record", "per-in-another-record", "cost-from-another-source", "per-typo"],
)
def test_per_and_cost_signal_come_in_the_watched_signals_record(detector: str, error: str | None) -> None:
    """A detector reads ``per`` and ``cost_signal`` from the observation that carries its signal."""
    assert _errors(_config(BEDROCK + DCGM, f"  d: {detector}\n")) == ([error] if error else [])


BILLING_CUR_TAGS = (
    "  bill: {type: s3_export, bucket: b, decoder: {type: cur, tags: {team: 'user:team'}, "
    "constant_dimensions: {org: main}}}\n"
)


@pytest.mark.parametrize(
    ("sources", "detector", "bad_dim"),
    [
        (BEDROCK, "{type: seasonal, signal: tokens, group_by: [team, region, model]}", None),
        (
            "  l: {type: file, path: x, decoder: {type: bedrock}}\n",
            "{type: seasonal, signal: tokens, group_by: [team]}",
            "team",
        ),
        (BEDROCK, "{type: seasonal, signal: tokens, group_by: [operation]}", "operation"),
        (
            "  l: {type: file, path: x, decoder: {type: bedrock, include_operation: true}}\n",
            "{type: seasonal, signal: tokens, group_by: [operation]}",
            None,
        ),
        (DCGM, "{type: seasonal, signal: gpu_hours, group_by: [cluster, node], contributors_by: [gpu, pod]}", None),
        (
            "  g: {type: file, path: y, decoder: {type: dcgm}}\n",
            "{type: seasonal, signal: gpu_hours, group_by: [cluster]}",
            "cluster",
        ),
        (BEDROCK + DCGM, "{type: seasonal, signal: token_cost_usd, group_by: [cluster]}", "cluster"),
        (
            "  j: {type: file, path: z, decoder: {type: json, values: {cost_usd: c}, dimensions: {app: a.b}, "
            "constant_dimensions: {provider: openai}}}\n",
            "{type: seasonal, signal: cost_usd, group_by: [app, provider]}",
            None,
        ),
        (
            "  j: {type: file, path: z, decoder: {type: json, values: {cost_usd: c}, dimensions: {app: a.b}}}\n",
            "{type: seasonal, signal: cost_usd, group_by: [team]}",
            "team",
        ),
        (BILLING_CUR_TAGS, "{type: seasonal, signal: billing_cost_usd, group_by: [team, org, service]}", None),
        (BILLING_CUR_TAGS, "{type: seasonal, signal: billing_cost_usd, group_by: [sku]}", "sku"),
        (
            BILLING_CUR_TAGS.replace("tags:", "dimensions: [service, sku], tags:"),
            "{type: seasonal, signal: billing_cost_usd, group_by: [sku], contributors_by: [region]}",
            "region",
        ),
        (
            "  f: {type: file, path: x.csv, decoder: {type: billing}}\n",
            "{type: seasonal, signal: billing_gpu_hours, cost_signal: billing_gpu_cost_usd, group_by: [instance_type]}",
            None,
        ),
    ],
)
def test_dimensions_come_from_each_decoders_options(sources: str, detector: str, bad_dim: str | None) -> None:
    errors = _errors(_config(sources, f"  d: {detector}\n"))
    if bad_dim is None:
        assert errors == []
    else:
        assert len(errors) == 1 and f"has dimension {bad_dim!r}" in errors[0], errors
        assert errors[0].startswith(("detectors.d.group_by[", "detectors.d.contributors_by[")), errors


def test_an_open_declaration_rules_nothing_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that cannot know what it emits (the base class's default) is not held against detectors."""
    assert _errors(_config(BEDROCK, NEVER_FIRE))
    monkeypatch.setattr(BedrockDecoder, "emits", classmethod(Decoder.emits.__func__))  # type: ignore[attr-defined]
    assert _errors(_config(BEDROCK, NEVER_FIRE)) == []


def test_every_registered_decoder_declares_what_it_emits() -> None:
    base = Decoder.emits.__func__  # type: ignore[attr-defined]
    for type_name, (_cfg, cls) in components("decoder").items():
        assert cls.emits.__func__ is not base, f"decoder {type_name!r} does not declare what it emits"


def _check(emits: Emits, obs: list[Observation]) -> set[str]:
    """Every observation's signals and dimensions are declared; returns the dimensions seen."""
    assert obs and emits.signals is not None and emits.dimensions is not None
    seen: set[str] = set()
    for o in obs:
        assert any(set(o.signals) <= g for g in emits.groups()), (o.signals, emits.groups())
        names = {k for k, _v in o.dims}
        assert names <= emits.dimensions, names - emits.dimensions
        seen |= names
    return seen


def test_declarations_match_what_the_decoders_emit(data_dir: Path) -> None:
    ctx = DecodeContext("t", bucket_seconds=60, default_ts=1.79e9)
    cfg_b = BedrockConfig(type="bedrock", tag_dimensions={"team": "team", "env": "env"}, include_operation=True)
    obs, _ = BedrockDecoder(cfg_b).decode_lines([log(), log(requestMetadata={"team": "ads"})], ctx)
    assert _check(BedrockDecoder.emits(cfg_b), obs) == BedrockDecoder.emits(cfg_b).dimensions

    cfg_d = DcgmConfig(type="dcgm", constant_dimensions={"cluster": "c1"})
    every_label = (
        b'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",modelName="NVIDIA H100",Hostname="n1",namespace="ml",'
        b'pod="p",container="c",GPU_I_PROFILE="1g.10gb",GPU_I_ID="3"} 3\n'
    )
    lines = (data_dir / "gpu" / "dcgm-exporter-scrape-l4.prom").read_bytes().splitlines(keepends=True)
    obs, _ = DcgmDecoder(cfg_d).decode_lines([*lines, every_label], ctx)
    assert _check(DcgmDecoder.emits(cfg_d), obs) == DcgmDecoder.emits(cfg_d).dimensions

    cfg_j = JsonConfig(
        type="json", values={"cost_usd": "c", "n": "k"}, dimensions={"app": "a"}, constant_dimensions={"p": "x"}
    )
    obs, _ = JsonDecoder(cfg_j).decode_lines([b'{"timestamp": 1790000000, "c": 1.5, "k": 2, "a": "web"}'], ctx)
    assert _check(JsonDecoder.emits(cfg_j), obs) == {"app", "p"}

    every_dim: list[Dimension] = [*DEFAULT_DIMENSIONS, "sku", "resource", "gpu_model"]
    cfg_bill = AutoBillingConfig(
        type="billing",
        dimensions=every_dim,
        tags={"team": "team"},
        constant_dimensions={"org": "main"},
        exchange_rates={"CAD": 0.73},  # one Azure sample is billed in CAD
    )
    dec = AutoBillingDecoder(cfg_bill)
    for f in sorted((data_dir / "billing").glob("*.csv")):
        table, _bad, _n = read_file(str(f), dec, DecodeContext("t", bucket_seconds=3600))
        obs = observations(table, dec.key_columns)
        assert "org" in _check(AutoBillingDecoder.emits(cfg_bill), obs), f.name


def test_unknown_keys_types_and_choices_name_the_closest_one() -> None:
    text = """
sources:
  a: {type: fiel, path: x}
  b: {type: file, path: x, decoder: {type: bedrok}}
  c: {type: file, path: x, decoder: {type: bedrock, tag_dimension: {team: team}}}
  e: {type: s3_export, bucket: b, decoder: {type: focuss}}
detectors:
  d: {type: seasonl, signal: tokens}
  e: {type: seasonal, signal: tokens, gruop_by: [team]}
sinks:
  c: {type: console, jsonlines: true, xyzzy: 1}
state: {type: kafak}
telemetry: {log_level: WARN}
alertng: {}
"""
    from agent.registry import components

    sources = ", ".join(sorted(components("source")))  # every registered one, as the message lists them
    decoders = ", ".join(sorted(components("decoder")))
    assert {"file", "kafka", "s3_export"} <= set(sources.split(", "))
    assert _errors(text) == [
        f"sources.a.type: unknown type 'fiel' (did you mean 'file'?); known: {sources}",
        f"sources.b.decoder.type: unknown type 'bedrok' (did you mean 'bedrock'?); known: {decoders}",
        "sources.c.decoder.tag_dimension: unknown key (did you mean 'tag_dimensions'?)",
        "sources.e.decoder.type: unknown type 'focuss' (did you mean 'focus'?); known: azure_cost, billing, cur, focus",
        "detectors.d.type: unknown type 'seasonl' (did you mean 'seasonal'?); "
        "known: budget, river, seasonal, threshold",
        "detectors.e.gruop_by: unknown key (did you mean 'group_by'?)",
        "sinks.c.jsonlines: unknown key (did you mean 'json_lines'?)",
        "sinks.c.xyzzy: unknown key",
        "state.type: Input should be 'local', 'memory', 'kafka' or 'blob' (did you mean 'kafka'?)",
        "telemetry.log_level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (did you mean 'WARNING'?)",
        "alertng: unknown key (did you mean 'alerting'?)",
    ]


def test_an_unset_variable_is_reported_once_as_the_cause() -> None:
    """The empty value an unset variable leaves is not reported a second time; other errors still are."""
    text = """
sources:
  s: {type: file, path: x, decoder: {type: bedrock}}
detectors:
  d: {type: seasonal, signal: token_cost_usd, window_seconds: "${WINDOW}"}
sinks:
  slack: {type: webhook, format: slack, url: "${SLACK_WEBHOOK_URL}", timeout_seconds: -1}
  other: {type: "${SINK_TYPE}", url: "http://127.0.0.1:1"}
  brokers: {type: webhook, url: "http://h", headers: {X-Key: "${KEY}"}}
"""
    assert _errors(text) == [
        "detectors.d.window_seconds: environment variable WINDOW is not set",
        "sinks.slack.url: environment variable SLACK_WEBHOOK_URL is not set",
        "sinks.other.type: environment variable SINK_TYPE is not set",
        "sinks.brokers.headers.X-Key: environment variable KEY is not set",
        "sinks.slack.timeout_seconds: Input should be greater than 0",
    ]
    env = {"WINDOW": "3600", "SLACK_WEBHOOK_URL": "https://hooks.example/x", "SINK_TYPE": "webhook", "KEY": "k"}
    assert load_config_text(text.replace("timeout_seconds: -1", "timeout_seconds: 5"), env=env).sinks["slack"]


def test_a_key_given_twice_is_an_error_not_a_silent_replacement() -> None:
    text = (
        "sources:\n"
        "  logs: {type: file, path: a, decoder: {type: bedrock}}\n"
        "  logs: {type: file, path: b, decoder: {type: bedrock}}\n"
        "detectors: {d: {type: threshold, signal: requests, upper: 1, upper: 2}}\n"
        "sinks: {c: {type: console}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "dup.yaml")
    assert err.value.errors == [
        "dup.yaml: line 3: key 'logs' given twice in one mapping (also line 2)",
        "dup.yaml: line 4: key 'upper' given twice in one mapping (also line 4)",
    ]


def test_validate_finds_a_plugin_class_that_cannot_run() -> None:
    """A third party's source without a decoder option, detector without the hooks, queued sink on the wrong config
    base: refused by validate (each with its path), not by a traceback when the agent starts."""
    from typing import Literal

    from agent.registry import ComponentConfig, registered
    from agent.sources.base import Source
    from detectors.base import DetectorCommon
    from sinks.delivery import QueuedSink

    class NoDecoderConfig(ComponentConfig):
        type: Literal["no_decoder"]

    class BareDetectorConfig(DetectorCommon):
        type: Literal["bare"]

    class Bare:  # the Protocol's members, but not DetectorHooks
        threshold = 1.0

        def learn_one(self, x: object) -> None: ...

        def score_one(self, x: object) -> float:
            return 0.0

        def forecast_one(self, x: object) -> tuple[float, float, float]:
            return 0.0, 0.0, 0.0

        def clone(self) -> Bare:
            return self

        @classmethod
        def from_config(cls, cfg: object) -> Bare:
            return cls()

    class PlainSinkConfig(ComponentConfig):
        type: Literal["plain_queued"]

    with (
        registered("source", "no_decoder", NoDecoderConfig, Source),
        registered("detector", "bare", BareDetectorConfig, Bare),
        registered("sink", "plain_queued", PlainSinkConfig, QueuedSink),
        pytest.raises(ConfigError) as exc,
    ):
        load_config_text("""
sources: {s: {type: no_decoder}}
detectors: {d: {type: bare, signal: requests}}
sinks: {k: {type: plain_queued}}
""")
    text = str(exc.value)
    assert "sources.s.type: source Source: its config NoDecoderConfig has no 'decoder' field" in text
    assert "detectors.d.type: detector Bare: does not inherit detectors.base.DetectorHooks" in text
    assert "sinks.k.type: sink QueuedSink: its config PlainSinkConfig must subclass" in text


def test_a_filter_on_a_dimension_no_source_has_is_reported_with_its_path() -> None:
    billing = "  f: {type: file, path: x.csv, decoder: {type: billing}}\n"
    good = "  d: {type: seasonal, signal: billing_cost_usd, exclude: {charge_category: [Purchase, Tax]}}\n"
    assert _errors(_config(billing, good)) == []
    bad = "  d: {type: seasonal, signal: billing_cost_usd, where: {charge_categry: [Usage]}}\n"
    (error,) = _errors(_config(billing, bad))
    assert error.startswith("detectors.d.where.charge_categry: no configured source"), error
    assert "(did you mean 'charge_category'?)" in error


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        (
            "exclude: {charge_category: [purchase, Tax]}",
            "detectors.d.exclude.charge_category[0]: 'purchase' matches nothing: the value is 'Purchase'",
        ),
        (
            "exclude: {charge_category: [RIFee]}",
            "detectors.d.exclude.charge_category[0]: bills give 'RIFee' lines charge_category 'Purchase'",
        ),
        ("where: {pricing_category: [OnDemand]}", "detectors.d.where.pricing_category[0]: bills give 'OnDemand'"),
        (
            "where: {charge_category: [Usage]}, exclude: {charge_category: [Usage, Tax]}",
            "detectors.d.exclude.charge_category: ['Usage'] also in where: the detector would count nothing",
        ),
        ("where: {charge_category: [Usage, SomeNewLineType]}", None),  # a type no table maps passes as written
    ],
)
def test_billing_filter_values_that_would_match_nothing_are_reported(filters: str, error: str | None) -> None:
    billing = "  f: {type: file, path: x.csv, decoder: {type: billing}}\n"
    errors = _errors(_config(billing, f"  d: {{type: seasonal, signal: billing_cost_usd, {filters}}}\n"))
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(error), errors


def test_usage_api_buckets_longer_than_a_detectors_window_are_refused() -> None:
    """New-user review: `bucket_width: 1d` with hourly detectors was valid: each day's usage landed in one hour."""
    base = """
sources:
  oai: {type: openai_usage, admin_key: x, bucket_width: %s, decoder: {type: openai_usage}}
  costs: {type: openai_usage, admin_key: x, endpoints: [costs], decoder: {type: openai_usage}}
detectors:
  spend: {type: seasonal, signal: token_cost_usd, group_by: [model]}
  bill: {type: seasonal, signal: cost_usd, window_seconds: %d}
sinks: {c: {type: console}}
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(base % ("1d", 3600))
    assert exc.value.errors == [
        "sources.oai.bucket_width: its buckets (86400 s) are longer than detectors.spend's window (3600 s): each "
        "bucket would land whole in one window",
        "sources.costs.endpoints: its buckets (86400 s) are longer than detectors.bill's window (3600 s): each "
        "bucket would land whole in one window",
    ]
    load_config_text(base % ("1h", 86400))  # hourly usage, daily costs: valid
