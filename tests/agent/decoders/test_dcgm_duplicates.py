"""dcgm samples count each GPU's time once: the same scrape read twice, samples closer than the interval."""

from __future__ import annotations

import pytest

from agent.decoders.base import DecodeContext
from agent.decoders.dcgm import UTIL_SIGNALS, DcgmConfig, DcgmDecoder

T0 = 1_796_119_200


def labels(gpu: str) -> str:
    return f'{{gpu="{gpu}",UUID="GPU-{gpu}",modelName="NVIDIA L4",Hostname="n1"}}'


def util(gpu: str, ts_ms: int | None, value: float = 50.0) -> bytes:
    stamp = f" {ts_ms}" if ts_ms is not None else ""
    return f"DCGM_FI_DEV_GPU_UTIL{labels(gpu)} {value}{stamp}".encode()


def power(gpu: str, ts_ms: int) -> bytes:
    return f"DCGM_FI_DEV_POWER_USAGE{labels(gpu)} 70 {ts_ms}".encode()


def gpu_hours(obs: list) -> float:
    return sum(o.values[0] for o in obs if o.signals == UTIL_SIGNALS)


def decoder(interval: float = 30.0) -> DcgmDecoder:
    return DcgmDecoder(DcgmConfig(type="dcgm", scrape_interval_seconds=interval))


def ctx(**kw: object) -> DecodeContext:
    return DecodeContext("g", **kw)  # type: ignore[arg-type]


def test_the_same_scrape_read_twice_counts_once() -> None:
    scrape = [util(g, (T0 + 30 * i) * 1000) for i in range(120) for g in "01"] + [power("0", T0 * 1000)]
    dec = decoder()
    obs1, bad1 = dec.decode_lines(scrape, ctx())
    obs2, bad2 = dec.decode_lines(scrape, ctx())  # a copy of the file, read after it
    assert bad1 == bad2 == [] and obs2 == []
    assert gpu_hours(obs1) == pytest.approx(2.0)  # two GPUs, one hour each
    assert dec.ignored_records() == {"duplicate_sample": len(scrape)}
    obs3, _ = dec.decode_lines(scrape + scrape, ctx())  # and twice in one batch: no more
    assert obs3 == []


def test_samples_stamped_with_the_file_time_count_once_per_time() -> None:
    dec = decoder()
    lines = [util("0", None), util("1", None)]
    first = dec.decode_lines(lines, ctx(default_ts=float(T0)))[0]
    again = dec.decode_lines(lines, ctx(default_ts=float(T0)))[0]  # a copy with the same modification time
    later = dec.decode_lines(lines, ctx(default_ts=float(T0 + 30)))[0]
    assert gpu_hours(first) == pytest.approx(2 * 30 / 3600) and again == []
    assert gpu_hours(later) == pytest.approx(2 * 30 / 3600)


def test_a_gpu_never_counts_more_than_the_wall_clock_time() -> None:
    # Samples every 10 s with scrape_interval_seconds 30: an hour of samples is an hour of GPU time (plus the last
    # sample's interval), not three; utilisation and cost scale with it.
    lines = [util("0", (T0 + 10 * i) * 1000, 40.0) for i in range(360)]
    obs, bad = decoder().decode_lines(lines, ctx())
    assert bad == []
    assert gpu_hours(obs) == pytest.approx((3590 + 30) / 3600)
    util_hours = sum(o.values[4] for o in obs)
    assert util_hours / gpu_hours(obs) == pytest.approx(40.0)


def test_out_of_order_input_counts_what_in_order_input_counts() -> None:
    lines = [util("0", (T0 + 30 * i) * 1000) for i in range(120)]
    in_order = gpu_hours(decoder().decode_lines(lines, ctx())[0])
    dec = decoder()
    shuffled = lines[60:] + lines[:60] + lines[::7] + [util("0", (T0 + 30 * 60 + 15) * 1000)]
    obs = dec.decode_lines(shuffled[:100], ctx())[0] + dec.decode_lines(shuffled[100:], ctx())[0]
    out_of_order = gpu_hours(obs)
    assert out_of_order == pytest.approx(in_order) == pytest.approx(1.0)


def test_a_gap_in_the_scrapes_is_not_filled_and_a_late_sample_in_it_counts() -> None:
    dec = decoder()
    before = [util("0", (T0 + 30 * i) * 1000) for i in range(10)]
    after = [util("0", (T0 + 600 + 30 * i) * 1000) for i in range(10)]
    assert gpu_hours(dec.decode_lines(before + after, ctx())[0]) == pytest.approx(20 * 30 / 3600)
    filled = dec.decode_lines([util("0", (T0 + 300) * 1000)], ctx())[0]  # a sample from the gap, read later
    assert gpu_hours(filled) == pytest.approx(30 / 3600)


def test_a_sample_without_hostname_or_model_name_is_counted_and_reported_once_per_label_set() -> None:
    dec = decoder()
    bare = [f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-b"}} 50 {(T0 + 30 * i) * 1000}'.encode() for i in range(4)]
    obs, bad = dec.decode_lines(bare, ctx())
    assert gpu_hours(obs) == pytest.approx(4 * 30 / 3600)  # counted as before
    assert all(dict(o.cell.dims).get("node") is None for o in obs)
    assert sorted(b.kind for b in bad) == ["no_gpu_model", "no_node_label"]
    assert all(b.partial and b.raw == bare[0] for b in bad)
    assert "default" in next(b.reason for b in bad if b.kind == "no_gpu_model")
    later = [f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-b"}} 50 {(T0 + 600) * 1000}'.encode()]
    assert dec.decode_lines(later, ctx())[1] == []  # once per label set
    assert dec.decode_lines([util("0", T0 * 1000)], ctx())[1] == []  # labelled: nothing to say
