"""GPU prices by purchase option: the bundled table, the config's rates and override rules, their precedence."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from prometheus_client import generate_latest

from agent.config import ConfigError, load_config_text
from agent.pricing import PURCHASE_OPTIONS, GpuPriceTable, TokenPriceTable
from agent.telemetry import Telemetry

BASE = """
sources:
  dcgm:
    type: file
    path: /tmp/none/*.prom
    decoder: {type: dcgm, constant_dimensions: {cluster: prod}}
detectors:
  idle:
    type: threshold
    signal: gpu_idle_hours
    per: gpu_hours
    cost_signal: gpu_idle_cost_usd
    upper: 0.5
    group_by: [node]
sinks:
  console: {type: console}
"""

H100 = "NVIDIA H100 80GB HBM3"  # dcgm-exporter's modelName
L4 = "NVIDIA L4"


def table(pricing: str = "") -> GpuPriceTable:
    cfg = load_config_text(BASE + ("pricing:\n" + pricing if pricing else ""))
    return GpuPriceTable.from_config(cfg.pricing)


def errors(pricing: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config_text(BASE + "pricing:\n" + pricing)
    return exc.value.errors


def _data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("agent").joinpath("data", name).read_text(encoding="utf-8"))
    return data


# -- the bundled table --------------------------------------------------------------------------------------------


def test_bundled_table_states_source_and_date_for_each_purchase_option() -> None:
    meta = _data("gpu_prices.json")["_meta"]
    for option in PURCHASE_OPTIONS:
        assert meta[option]["source"] and meta[option]["as_of"][:2] == "20", option
    assert "no upfront" in meta["reserved"]["basis"]


def test_every_bundled_instance_type_has_its_gpus_and_an_on_demand_rate() -> None:
    prices = _data("gpu_prices.json")
    sizes = {k.lower() for k in _data("gpu_instances.json")["instances"]}
    for name, entry in prices["instances"].items():
        assert name.lower() in sizes, name
        assert entry["on_demand"] > 0 and set(entry) <= set(PURCHASE_OPTIONS), name
        assert entry.get("spot", 0) < entry["on_demand"], name
    for name, entry in prices["models"].items():
        assert entry["on_demand"] > entry.get("spot", 0), name


def test_dcgm_model_names_and_instance_types_price_at_on_demand_by_default() -> None:
    t = GpuPriceTable.from_config(None)
    assert t.lookup(H100) == t.lookup("NVIDIA H100") == pytest.approx(55.04 / 8)
    assert t.lookup("Tesla T4") == pytest.approx(0.526)
    assert t.lookup("NVIDIA A100-SXM4-40GB") == pytest.approx(21.957642 / 8, abs=1e-4)
    r = t.rate(H100, {"instance_type": "p5.48xlarge", "node": "n1"})
    assert (r.usd_per_gpu_hour, r.purchase_option) == (pytest.approx(6.88), "on_demand")
    assert (r.source, r.note) == ("bundled:p5.48xlarge", "instance rate / 8 GPUs")
    # An Azure VM size, named in any case: its own list price (8 H100 for 98.32 an hour), not the GPU model's AWS one.
    assert t.lookup(H100, {"instance_type": "standard_nd96isr_h100_v5"}) == pytest.approx(98.32 / 8)
    # An instance type alone prices a GPU whose model the metrics do not name.
    assert t.lookup("", {"instance_type": "g6e.12xlarge"}) == pytest.approx(10.49264 / 4)


def test_spot_reserved_and_on_demand_rates_differ_and_say_what_they_are() -> None:
    on_demand, reserved, spot = (table(f"  gpu_purchase_option: {o}\n").rate(L4) for o in PURCHASE_OPTIONS)
    assert on_demand.usd_per_gpu_hour == pytest.approx(0.8048)
    assert spot.usd_per_gpu_hour == pytest.approx(0.40) and spot.purchase_option == "spot"
    assert reserved.usd_per_gpu_hour == pytest.approx(0.8048 * 0.65)  # derived: 35% off on-demand, and says so
    assert reserved.purchase_option == "reserved" and "35% off on-demand" in reserved.note
    assert spot.usd_per_gpu_hour < reserved.usd_per_gpu_hour < on_demand.usd_per_gpu_hour
    assert reserved.describe() == "$0.52/GPU-hour (reserved; bundled:NVIDIA L4, derived: 35% off on-demand)"
    # An instance type's own spot rate, per GPU.
    spot_p5en = table("  gpu_purchase_option: spot\n").rate("NVIDIA H200", {"instance_type": "p5en.48xlarge"})
    assert spot_p5en.usd_per_gpu_hour == pytest.approx(27.2 / 8) and spot_p5en.purchase_option == "spot"


def test_no_bundled_spot_rate_falls_back_to_on_demand_and_says_so() -> None:
    r = table("  gpu_purchase_option: spot\n").rate(H100)
    assert r.usd_per_gpu_hour == pytest.approx(6.88)
    assert r.purchase_option == "on_demand" and r.note == "no spot rate bundled"


def test_unknown_gpu_model_takes_the_default() -> None:
    assert GpuPriceTable.from_config(None).rate("Matrox G200").purchase_option == "default"
    assert GpuPriceTable.from_config(None).lookup("Matrox G200") == 4.0
    r = table("  gpu_hour_price_default: 1.5\n  gpu_purchase_option: spot\n").rate("Matrox G200", {"node": "n1"})
    assert (r.usd_per_gpu_hour, r.purchase_option, r.source) == (1.5, "default", "gpu_hour_price_default")


# -- precedence ---------------------------------------------------------------------------------------------------

PRECEDENCE = """\
  gpu_purchase_option: reserved
  gpu_hour_prices: {NVIDIA H100 80GB HBM3: 3.0}
  gpu_hour_price_default: 1.0
  gpu_price_overrides:
    - match: {node: spot-*}
      purchase_option: spot
    - match: {node: [n7, n8], cluster: prod}
      usd_per_gpu_hour: 2.25
"""


def test_precedence_rule_then_configured_rate_then_bundled_option_then_default() -> None:
    t = table(PRECEDENCE)
    # 1. an override rule: its option (no bundled spot rate for H100: on-demand, said so) or its rate
    ruled = t.rate(H100, {"node": "spot-abc"})
    assert (ruled.usd_per_gpu_hour, ruled.source) == (pytest.approx(6.88), "gpu_price_overrides[0]")
    assert t.rate(L4, {"node": "spot-abc"}).usd_per_gpu_hour == pytest.approx(0.40)
    fixed = t.rate(H100, {"node": "n8", "cluster": "prod"})
    assert (fixed.usd_per_gpu_hour, fixed.purchase_option) == (2.25, "effective")
    assert fixed.source == "gpu_price_overrides[1]"
    # 2. gpu_hour_prices: the stated effective rate beats the bundled table
    stated = t.rate(H100, {"node": "n1", "cluster": "prod"})
    assert (stated.usd_per_gpu_hour, stated.source) == (3.0, "gpu_hour_prices")
    # 3. the bundled table at the configured option (reserved)
    assert t.rate(L4, {"node": "n1"}).usd_per_gpu_hour == pytest.approx(0.8048 * 0.65)
    # 4. the default
    assert t.lookup("Matrox G200", {"node": "n1"}) == 1.0


def test_every_key_of_a_match_must_hold_and_the_first_matching_rule_wins() -> None:
    t = table(PRECEDENCE + "    - match: {node: n7}\n      usd_per_gpu_hour: 9.0\n")
    assert t.lookup(H100, {"node": "n7", "cluster": "prod"}) == 2.25  # rule 1 (before rule 2)
    assert t.lookup(H100, {"node": "n7", "cluster": "dev"}) == 9.0  # rule 1 wants cluster prod
    assert t.lookup(H100, {"node": "n7"}) == 9.0  # no cluster dimension: rule 1 does not hold
    assert t.lookup(H100, {"node": "N7"}) == 3.0  # values match as written (case matters)


def test_overrides_by_cluster_and_node_label() -> None:
    t = table(
        """\
  gpu_price_overrides:
    - match: {cluster: training}
      purchase_option: reserved
      discount_percent: 10
    - match: {node_pool: batch-spot}
      purchase_option: spot
    - match: {cluster: prod, gpu_model: NVIDIA H100}
      discount_percent: 40
"""
    )
    # Reserved (derived: 35% off) and then the rule's own 10% (e.g. an enterprise discount on top).
    training = t.rate(L4, {"cluster": "training", "node": "n1"})
    assert training.usd_per_gpu_hour == pytest.approx(0.8048 * 0.65 * 0.9)
    assert training.purchase_option == "reserved" and training.note.startswith("10% off, bundled:NVIDIA L4")
    assert t.lookup(L4, {"cluster": "dev", "node_pool": "batch-spot"}) == pytest.approx(0.40)
    # gpu_model matches dcgm's name or the table's ("NVIDIA H100"); 40% off the configured option (on-demand).
    assert t.lookup(H100, {"cluster": "prod"}) == pytest.approx(6.88 * 0.6)
    assert t.lookup(L4, {"cluster": "prod"}) == pytest.approx(0.8048)
    assert t.lookup(H100) == pytest.approx(6.88)


def test_a_rule_on_a_gpu_model_the_table_lacks_prices_from_the_configured_rate_or_the_default() -> None:
    t = table(
        "  gpu_hour_prices: {Matrox G200: 0.5}\n  gpu_price_overrides:\n"
        "    - match: {cluster: prod}\n      discount_percent: 50\n"
    )
    assert t.lookup("Matrox G200", {"cluster": "prod"}) == pytest.approx(0.25)
    assert t.lookup("Voodoo 2", {"cluster": "prod"}) == pytest.approx(2.0)  # half the bundled default


def test_a_decision_is_made_once_per_label_set_and_exported_as_a_metric() -> None:
    t = table(PRECEDENCE)
    dims = (("cluster", "prod"), ("node", "n8"))
    first = t.rate(H100, dims)
    assert t.rate(H100, dims) is first and t.rate(H100, dict(dims)) is first
    t.rate(L4, {"node": "n1"})
    assert sorted(t.decisions()) == [
        ("NVIDIA H100", "effective", "gpu_price_overrides[1]", 2.25),
        ("NVIDIA L4", "reserved", "bundled:NVIDIA L4", pytest.approx(0.8048 * 0.65)),
    ]
    tel = Telemetry()
    tel.watch_gpu_prices(t)
    tel.watch_gpu_prices(t)  # (once)
    text = generate_latest(tel.registry).decode()
    lines = [x for x in text.splitlines() if x.startswith("finops_gpu_hour_price_usd{")]
    assert lines == [
        'finops_gpu_hour_price_usd{gpu_model="NVIDIA H100",purchase_option="effective",'
        'source="gpu_price_overrides[1]"} 2.25',
        'finops_gpu_hour_price_usd{gpu_model="NVIDIA L4",purchase_option="reserved",'
        f'source="bundled:NVIDIA L4"}} {0.8048 * 0.65!r}',
    ]


def test_existing_configs_keep_their_meaning() -> None:
    t = table("  gpu_hour_prices: {NVIDIA H100 80GB HBM3: 6.5, NVIDIA L4: 0.49}\n  gpu_hour_price_default: 2.0\n")
    assert (t.lookup(H100), t.lookup(L4), t.lookup("Tesla T4"), t.lookup("Matrox G200")) == (6.5, 0.49, 0.526, 2.0)
    assert t.rate(L4).purchase_option == "effective"


# -- validation ---------------------------------------------------------------------------------------------------


def test_validation_errors_name_their_path() -> None:
    assert errors("  gpu_purchase_option: reserverd\n") == [
        "pricing.gpu_purchase_option: Input should be 'on_demand', 'reserved' or 'spot' (did you mean 'reserved'?)"
    ]
    bad = errors(
        """\
  gpu_hour_prices: {NVIDIA L4: -0.5}
  gpu_price_overrides:
    - match: {cluster: prod}
    - match: {}
      purchase_option: spot
    - match: {node: n1}
      usd_per_gpu_hour: -1
    - match: {node: n1}
      purchase_option: lease
    - match: {node: n1}
      usd_per_gpu_hour: 2
      discount_percent: 10
    - match: {node: []}
      discount_percent: 100
"""
    )
    assert bad == [
        "pricing.gpu_hour_prices.NVIDIA L4: Input should be greater than or equal to 0",
        "pricing.gpu_price_overrides[0]: set purchase_option, usd_per_gpu_hour or discount_percent",
        "pricing.gpu_price_overrides[1].match: name at least one dimension "
        "(for every GPU, set pricing.gpu_purchase_option)",
        "pricing.gpu_price_overrides[2].usd_per_gpu_hour: Input should be greater than or equal to 0",
        "pricing.gpu_price_overrides[3].purchase_option: Input should be 'on_demand', 'reserved' or 'spot'",
        "pricing.gpu_price_overrides[4]: usd_per_gpu_hour is the rate paid: no discount_percent with it",
        "pricing.gpu_price_overrides[5].match: node: a value or a non-empty list of values",
        "pricing.gpu_price_overrides[5].discount_percent: Input should be less than 100",
    ]


def test_match_values_may_be_numbers_or_lists_as_yaml_writes_them() -> None:
    t = table("  gpu_price_overrides:\n    - match: {gpu: [0, 1], node: n1}\n      usd_per_gpu_hour: 1.25\n")
    assert t.lookup(L4, {"gpu": "1", "node": "n1"}) == 1.25
    assert t.lookup(L4, {"gpu": "2", "node": "n1"}) == pytest.approx(0.8048)


def test_token_cache_write_price_from_the_config_or_a_litellm_table_else_the_input_price(tmp_path: Any) -> None:
    from agent.config import PricingConfig
    from agent.pricing import TokenPriceTable

    bundled = TokenPriceTable.from_config(None)
    # The bundled table has no cache-write prices (none is invented): a cache write costs what input costs.
    assert all(
        "cache_write_input" not in p
        for p in json.loads(resources.files("agent").joinpath("data", "prices.json").read_text())["models"].values()
    )
    p = bundled.lookup("anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert p is not None and p.cache_write_input == p.input
    f = tmp_path / "litellm.json"
    f.write_text(
        json.dumps(
            {
                "acme.m": {
                    "input_cost_per_token": 3e-6,
                    "output_cost_per_token": 1.5e-5,
                    "cache_creation_input_token_cost": 3.75e-6,
                }
            }
        )
    )
    t = TokenPriceTable.from_config(
        PricingConfig(
            token_price_file=str(f), token_prices={"my.m": {"input": 2, "output": 4, "cache_write_input": 2.5}}
        )
    )
    a, m = t.lookup("acme.m"), t.lookup("my.m")
    assert a is not None and a.cache_write_input == pytest.approx(3.75e-6)
    assert m is not None and m.cache_write_input == pytest.approx(2.5e-6)


def test_a_misspelled_or_negative_price_override_is_refused() -> None:
    """New-user review: `{imput: 3.0, output: 15.0}` was valid and priced the model's input tokens at 0 (a team's
    day at $9.50 instead of $35.80); a negative price was accepted too."""
    base = """
sources: {s: {type: file, path: x, decoder: {type: bedrock}}}
detectors: {d: {type: seasonal, signal: token_cost_usd}}
sinks: {c: {type: console}}
pricing:
  token_prices:
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(base + "    m1: {imput: 3.0, output: 15.0}\n    m2: {input: -1}\n")
    text = "\n".join(exc.value.errors)
    assert "pricing.token_prices.m1.imput: unknown key (did you mean 'input'?)" in text
    assert "pricing.token_prices.m1.input: field required" in text
    assert "pricing.token_prices.m2.input: " in text
    cfg = load_config_text(base + "    m3: {input: 3.0, output: 15.0}\n")
    price = TokenPriceTable.from_config(cfg.pricing).lookup("m3")
    assert price is not None and price.cached_input == price.input == 3.0e-6


def test_the_first_gpt_4o_snapshot_has_its_own_price() -> None:
    """gpt-4o-2024-05-13 listed at $5 / $15 per 1M tokens, not the later gpt-4o's $2.50 / $10 (new-user review)."""
    t = TokenPriceTable.from_config(None)
    p, later = t.lookup("gpt-4o-2024-05-13"), t.lookup("gpt-4o-2024-08-06")
    assert p is not None and later is not None
    assert (p.input, p.output) == (5e-6, 15e-6) and (later.input, later.output) == (2.5e-6, 10e-6)
