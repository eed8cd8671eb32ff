from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.decoders.base import BLANK, DecodeContext
from agent.decoders.dcgm import MEM_SIGNALS, POWER_SIGNALS, UTIL_SIGNALS, DcgmConfig, DcgmDecoder


@pytest.fixture
def scrape(data_dir: Path) -> bytes:
    return (data_dir / "gpu" / "dcgm-exporter-scrape-l4.prom").read_bytes()


def _samples(text: str, name: str) -> list[float]:
    """Independent reading of the exposition text: every sample value of one metric."""
    return [float(m.group(1)) for m in re.finditer(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)]


def test_real_l4_scrape(scrape: bytes) -> None:
    dec = DcgmDecoder(DcgmConfig(type="dcgm", scrape_interval_seconds=30))
    obs, bad = dec.decode_lines(scrape.splitlines(), DecodeContext("t", default_ts=1_700_000_000.0))
    assert bad == []
    text = scrape.decode()
    util = _samples(text, "DCGM_FI_DEV_GPU_UTIL")
    power = _samples(text, "DCGM_FI_DEV_POWER_USAGE")
    fb = _samples(text, "DCGM_FI_DEV_FB_USED")
    assert (len(util), len(power), len(fb)) == (1, 1, 1)
    by_sig = {o.signals: o for o in obs}
    assert set(by_sig) == {UTIL_SIGNALS, MEM_SIGNALS, POWER_SIGNALS}
    hours = 30 / 3600
    u = by_sig[UTIL_SIGNALS]
    assert u.ts == 1_700_000_000.0
    gpu_hours, idle_hours, cost, idle_cost, util_hours = u.values
    assert gpu_hours == pytest.approx(hours)
    assert idle_hours == pytest.approx(hours if util[0] < 5 else 0.0)
    assert cost == pytest.approx(hours * 0.8048)  # NVIDIA L4 in the bundled GPU price table
    assert idle_cost == pytest.approx(idle_hours * 0.8048)
    assert util_hours == pytest.approx(util[0] * hours)
    assert by_sig[POWER_SIGNALS].values[0] == pytest.approx(power[0] * hours)
    assert by_sig[MEM_SIGNALS].values[0] == pytest.approx(fb[0] * hours)
    dims = dict(u.dims)
    assert dims == {
        "gpu": "0",
        "gpu_model": "NVIDIA L4",
        "gpu_uuid": "GPU-c2f76b33-7953-256e-8f33-1343419b1a1c",
        "node": "i-030791dc5a37cd257",
    }


def test_lowercase_hostname_label_and_constants(scrape: bytes) -> None:
    text = scrape.decode().replace('Hostname="', 'hostname="')
    dec = DcgmDecoder(DcgmConfig(type="dcgm", constant_dimensions={"cluster": "c1"}))
    obs, bad = dec.decode_lines(text.encode().splitlines(), DecodeContext("t", default_ts=1.7e9))
    assert not bad
    assert all(dict(o.dims)["node"] == "i-030791dc5a37cd257" and dict(o.dims)["cluster"] == "c1" for o in obs)


def test_timestamps_blank_sentinels_and_bad_lines() -> None:
    lines = [
        b'DCGM_FI_DEV_GPU_UTIL{gpu="1",modelName="NVIDIA H100 80GB HBM3",Hostname="n1"} 87 1700000000000',
        b'DCGM_FI_DEV_GPU_UTIL{gpu="2",modelName="NVIDIA H100 80GB HBM3",Hostname="n1"} 9223372036854775794',
        b'DCGM_FI_DEV_GPU_UTIL{gpu="3",Hostname="n1"} 250 1700000000000',
        b'DCGM_FI_DEV_POWER_USAGE{gpu="1",Hostname="n1"} NaN 1700000000000',
        b'DCGM_FI_DEV_GPU_UTIL{gpu="4",Hostname="n1"} seven 1700000000000',
        b"DCGM_FI_DEV_GPU_UTIL this is not a sample",
        b'DCGM_FI_DEV_SM_CLOCK{gpu="1",Hostname="n1"} 1980 1700000000000',
        b"# HELP whatever",
        b"",
    ]
    dec = DcgmDecoder(DcgmConfig(type="dcgm", scrape_interval_seconds=60))
    obs, bad = dec.decode_lines(lines, DecodeContext("t"))
    assert len(obs) == 1 and obs[0].ts == 1_700_000_000.0
    assert obs[0].values[2] == pytest.approx(55.04 / 8 / 60)  # one H100 minute (p5.48xlarge on-demand / 8 GPUs)
    assert dec.blank_samples == 1
    # The blank line is no record: it comes back as BLANK, which the pipeline counts without dead-lettering.
    assert sorted(b.kind for b in bad) == ["absurd_value", BLANK, "malformed_text", "non_finite", "schema"]
    assert all(b.raw in lines for b in bad)


def test_sniff(scrape: bytes) -> None:
    assert DcgmDecoder.sniff(scrape[:4096])
    assert not DcgmDecoder.sniff(b'{"modelId": "x"}')


def test_a_node_labelled_override_changes_the_idle_cost() -> None:
    """The price follows the label set: a rule on nodes (here a spot node group) prices their idle GPU-hours."""
    from agent.config import load_config_text

    cfg = load_config_text(
        """
sources:
  dcgm: {type: file, path: /tmp/none/*.prom, decoder: {type: dcgm, constant_dimensions: {cluster: prod}}}
detectors:
  idle: {type: threshold, signal: gpu_idle_hours, cost_signal: gpu_idle_cost_usd, upper: 1, group_by: [node]}
sinks:
  console: {type: console}
pricing:
  gpu_price_overrides:
    - match: {cluster: prod, node: spot-*}
      purchase_option: spot
    - match: {node: reserved-1}
      usd_per_gpu_hour: 0.5
"""
    )
    lines = [
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",modelName="NVIDIA L4",Hostname="{node}"}} 1 1700000000000'.encode()
        for node in ("od-1", "spot-a", "reserved-1")
    ]
    dec = DcgmDecoder(cfg.sources["dcgm"].decoder, pricing=cfg.pricing)
    obs, bad = dec.decode_lines(lines, DecodeContext("t"))
    assert not bad
    hours = 30 / 3600
    idle_cost = {dict(o.dims)["node"]: o.values[3] for o in obs}  # every GPU idle (1% < 5%)
    assert idle_cost == {
        "od-1": pytest.approx(hours * 0.8048),  # on-demand (bundled)
        "spot-a": pytest.approx(hours * 0.40),  # spot (bundled L4 spot rate)
        "reserved-1": pytest.approx(hours * 0.5),  # the rule's own rate
    }
    assert all("purchase_option" not in dict(o.dims) for o in obs)  # the price basis makes no series of its own
