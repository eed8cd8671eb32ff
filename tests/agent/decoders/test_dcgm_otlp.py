"""dcgm-exporter scrapes as the Collector's prometheus receiver turns them into OTLP/JSON (gauges whose attributes
are the exporter's labels) → the same observations as the text-format decoder, each sample counted once."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource

from agent.decoders.base import BLANK, DecodeContext
from agent.decoders.dcgm import MEM_SIGNALS, POWER_SIGNALS, UTIL_SIGNALS, DcgmConfig, DcgmDecoder
from agent.decoders.dcgm_otlp import DcgmOtlpConfig, DcgmOtlpDecoder
from agent.decoders.otlp import LastSeen
from agent.model import parse_time
from tests.agent.decoders.otlp_sdk import Metrics, gauge_callback

T0 = parse_time("2026-10-01T10:00:00Z")
NS = 1_000_000_000
_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
SCOPE = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"


@pytest.fixture
def scrape(data_dir: Path) -> str:
    return (data_dir / "gpu" / "dcgm-exporter-scrape-l4.prom").read_text()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The exposition text's samples (name, labels, value): an independent reading."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(_LABEL.findall(m.group(2))), float(m.group(3))))
    return out


def kvs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}} for k, v in d.items()
    ]


def gauge_point(labels: dict[str, str], value: float | int | str, t: float, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"attributes": kvs(labels), "timeUnixNano": str(int(t * NS))}
    p["asInt" if isinstance(value, int) else "asDouble"] = str(value) if isinstance(value, int) else value
    if t == 0:
        del p["timeUnixNano"]
    p.update(extra)
    return p


def export(metrics: dict[str, list[dict[str, Any]]], t: float, resource: dict[str, Any] | None = None) -> bytes:
    """One scrape as the prometheus receiver emits it: a gauge per metric family, beside the receiver's own."""
    ms = [{"name": name, "description": "", "unit": "", "gauge": {"dataPoints": pts}} for name, pts in metrics.items()]
    own = {
        "name": "up",
        "description": "The scraping was successful",
        "gauge": {"dataPoints": [gauge_point({}, 1.0, t)]},
    }
    dur = {"name": "scrape_duration_seconds", "unit": "s", "gauge": {"dataPoints": [gauge_point({}, 0.0123, t)]}}
    res = {
        "service.name": "dcgm-exporter",
        "service.instance.id": "10.0.1.23:9400",
        "server.address": "10.0.1.23",
        "server.port": "9400",
        "url.scheme": "http",
    }
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": kvs(resource if resource is not None else res)},
                "scopeMetrics": [
                    {
                        "scope": {"name": SCOPE, "version": "0.115.0"},
                        "metrics": [*ms, own, dur],
                    }
                ],
            }
        ]
    }
    return orjson.dumps(doc)


def from_scrape(text: str, t: float) -> bytes:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, labels, value in samples(text):
        by_name.setdefault(name, []).append(gauge_point(labels, value, t))
    return export(by_name, t)


# -- the same, produced by the OpenTelemetry SDK (see otlp_sdk) ----------------------------------------------------
#: The prometheus receiver's resource for a scrape target: the job, the instance, the target's address.
RECEIVER = {
    "service.name": "dcgm-exporter",
    "service.instance.id": "10.0.1.23:9400",
    "server.address": "10.0.1.23",
    "server.port": "9400",
    "url.scheme": "http",
}


class Scraper:
    """dcgm-exporter's samples as the Collector's prometheus receiver hands them on, recorded with the SDK: an
    observable gauge per metric family whose callback reports the current ``samples`` (name, labels, value), the
    labels as attributes, the receiver's scope and resource, its own ``up`` and ``scrape_duration_seconds``;
    :meth:`scrape` is one scrape (one export). Prometheus sample values are doubles: record floats for that.

    The SDK lowercases instrument names (instrument names are case-insensitive in OpenTelemetry); the receiver keeps
    the exporter's ``DCGM_FI_...``: ``keep_case`` names each metric with a View, which keeps the case it is given.
    """

    def __init__(
        self,
        samples: list[tuple[str, dict[str, str], float | int]],
        keep_case: bool = True,
        resource: dict[str, Any] | None = None,
    ) -> None:
        self.samples = samples
        names = sorted({name for name, _labels, _value in samples})
        views = [View(instrument_name=n, name=n) for n in names] if keep_case else []
        res = Resource(RECEIVER if resource is None else resource)
        self.sdk = Metrics(res, views=views, scope=SCOPE, version="0.115.0")
        meter = self.sdk.meter
        for name in names:
            meter.create_observable_gauge(name, callbacks=[gauge_callback(partial(self._values, name))])
        meter.create_observable_gauge("up", callbacks=[gauge_callback(lambda: [(1.0, {})])])
        meter.create_observable_gauge("scrape_duration_seconds", [gauge_callback(lambda: [(0.0123, {})])], unit="s")

    def _values(self, name: str) -> list[tuple[float | int, dict[str, str]]]:
        return [(value, labels) for n, labels, value in self.samples if n == name]

    def scrape(self, *, collector: bool = True) -> bytes:
        return self.sdk.collect(collector=collector)

    def time(self, line: bytes) -> float:
        """The scrape's time (every sample's), in seconds as the decoder reads it."""
        (ns,) = set(self.sdk.point_times(line))
        return ns / 1e9


def decoder(**cfg: Any) -> DcgmOtlpDecoder:
    return DcgmOtlpDecoder(DcgmOtlpConfig(type="dcgm_otlp", **cfg))


def ctx() -> DecodeContext:
    return DecodeContext("t")


L4 = {
    "gpu": "0",
    "UUID": "GPU-c2f76b33-7953-256e-8f33-1343419b1a1c",
    "pci_bus_id": "00000000:31:00.0",
    "device": "nvidia0",
    "modelName": "NVIDIA L4",
    "Hostname": "i-030791dc5a37cd257",
}


@pytest.mark.parametrize("collector", [True, False], ids=["otlp_json", "protobuf_json"])
def test_real_scrape_decodes_as_the_text_decoder_does(scrape: str, collector: bool) -> None:
    scraper = Scraper(samples(scrape))
    line = scraper.scrape(collector=collector)
    t = scraper.time(line)
    obs, bad = decoder(scrape_interval_seconds=30).decode_lines([line], ctx())
    assert bad == []
    text_obs, text_bad = DcgmDecoder(DcgmConfig(type="dcgm", scrape_interval_seconds=30)).decode_lines(
        scrape.encode().splitlines(), DecodeContext("t", default_ts=t)
    )
    assert text_bad == []
    assert sorted(obs, key=repr) == sorted(text_obs, key=repr) and len(obs) == 3
    by_sig = {o.signals: o for o in obs}
    assert set(by_sig) == {UTIL_SIGNALS, MEM_SIGNALS, POWER_SIGNALS}
    u = by_sig[UTIL_SIGNALS]
    assert u.ts == t
    assert u.values[0] == pytest.approx(30 / 3600) and u.values[2] == pytest.approx(30 / 3600 * 0.8048)  # L4
    assert dict(u.dims) == {
        "gpu": "0",
        "gpu_model": "NVIDIA L4",
        "gpu_uuid": "GPU-c2f76b33-7953-256e-8f33-1343419b1a1c",
        "node": "i-030791dc5a37cd257",
    }


def test_a_sample_delivered_twice_counts_once(scrape: str) -> None:
    scraper = Scraper(samples(scrape))
    first, second = scraper.scrape(), scraper.scrape()
    dec = decoder()
    obs, bad = dec.decode_lines([first, first, second], ctx())  # a redelivery within the batch
    assert bad == [] and len(obs) == 6 and dec.duplicates == 3
    assert sorted({o.ts for o in obs}) == [scraper.time(first), scraper.time(second)]
    obs, _ = dec.decode_lines([second, first], ctx())  # and across batches; an older scrape late: not used
    assert obs == [] and dec.duplicates == 9
    # Another GPU in the next scrape, at the same time as GPU 0's samples: its own series.
    other = {**L4, "gpu": "1", "UUID": "GPU-0000"}
    scraper.samples.append(("DCGM_FI_DEV_GPU_UTIL", other, 50.0))
    obs, _ = dec.decode_lines([scraper.scrape()], ctx())
    assert len(obs) == 4 and sorted(dict(o.dims)["gpu"] for o in obs) == ["0", "0", "0", "1"]


@pytest.mark.parametrize("keep_case", [True, False], ids=["receiver_names", "sdk_lowercase_names"])
def test_sdk_gauges_gpu_hours_idle_hours_and_a_duplicate_export(keep_case: bool) -> None:
    """Two L4 GPUs, one busy and one idle, scraped twice (the idle one is busy by the second scrape)."""
    gpu1 = {**L4, "gpu": "1", "UUID": "GPU-5f0e4f7a-1c2b-4d3e-9a8b-7c6d5e4f3a2b", "pci_bus_id": "00000000:32:00.0"}
    scraper = Scraper(
        [
            ("DCGM_FI_DEV_GPU_UTIL", L4, 80.0),
            ("DCGM_FI_DEV_GPU_UTIL", gpu1, 3.0),
            ("DCGM_FI_DEV_FB_USED", L4, 1024.0),
            ("DCGM_FI_DEV_FB_USED", gpu1, 0.0),
            ("DCGM_FI_DEV_POWER_USAGE", L4, 72.5),
            ("DCGM_FI_DEV_POWER_USAGE", gpu1, 16.4),
            ("DCGM_FI_DEV_SM_CLOCK", L4, 1500.0),  # a metric the decoder does not read
        ],
        keep_case=keep_case,
    )
    first = scraper.scrape()
    scraper.samples[1] = ("DCGM_FI_DEV_GPU_UTIL", gpu1, 50.0)
    second = scraper.scrape()
    assert (b'"name":"DCGM_FI_DEV_GPU_UTIL"' in first) is keep_case
    assert (b'"name":"dcgm_fi_dev_gpu_util"' in first) is not keep_case
    assert DcgmOtlpDecoder.sniff(first)
    dec = decoder()
    obs, bad = dec.decode_lines([first, second, first], ctx())
    assert bad == [] and dec.duplicates == 6 and len(obs) == 12
    h, price = 30 / 3600, 0.8048  # each sample stands for one scrape interval; an L4 GPU-hour (GPU price table)
    by_gpu: dict[tuple[tuple[str, ...], str], list[tuple[float, ...]]] = {}
    for o in obs:
        by_gpu.setdefault((o.signals, dict(o.dims)["gpu"]), []).append(o.values)

    def total(signals: tuple[str, ...], gpu: str) -> list[float]:
        return [sum(v) for v in zip(*by_gpu[signals, gpu], strict=True)]

    assert total(UTIL_SIGNALS, "0") == pytest.approx([2 * h, 0, 2 * h * price, 0, 160 * h])
    # GPU 1 under 5% (idle_util_percent) in the first scrape: an idle GPU-hour sample, priced
    assert total(UTIL_SIGNALS, "1") == pytest.approx([2 * h, h, 2 * h * price, h * price, 53 * h])
    assert total(MEM_SIGNALS, "0") == pytest.approx([2 * 1024 * h]) and total(MEM_SIGNALS, "1") == [0]
    assert total(POWER_SIGNALS, "0") == pytest.approx([2 * 72.5 * h])
    assert total(POWER_SIGNALS, "1") == pytest.approx([2 * 16.4 * h])
    assert {o.ts for o in obs} == {scraper.time(first), scraper.time(second)}
    assert dict(obs[0].dims)["gpu_model"] == "NVIDIA L4" and dict(obs[0].dims)["node"] == "i-030791dc5a37cd257"


def test_a_failed_batch_leaves_no_sample_marked_as_seen(scrape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dec = decoder()
    line = from_scrape(scrape, T0)
    calls = {"n": 0}
    real = dec.seen.apply

    def flaky(pending: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("injected")
        real(pending)

    monkeypatch.setattr(dec.seen, "apply", flaky)
    obs, bad = dec.decode_lines([line], ctx())  # decoded again, record by record: nothing lost as "duplicate"
    assert bad == [] and len(obs) == 3


def test_labels_hostname_resource_mig_and_constants() -> None:
    dec = decoder(constant_dimensions={"cluster": "gpu-prod-1"}, idle_util_percent=10)
    labels = {
        **{k: v for k, v in L4.items() if k != "Hostname"},
        "hostname": "node-a",
        "GPU_I_PROFILE": "1g.10gb",
        "GPU_I_ID": "3",
        "pod": "trainer-0",
        "container": "main",
        "DCGM_FI_DRIVER_VERSION": "580.105.08",
    }
    res = {"service.name": "dcgm-exporter", "namespace": "ml"}  # a label moved to the resource by a processor
    # An int value (asInt, an int64 string): what a producer instrumented with the SDK may send.
    line = Scraper([("DCGM_FI_DEV_GPU_UTIL", labels, 7)], resource=res).scrape()
    assert b'"asInt":"7"' in line
    (o,), bad = dec.decode_lines([line], ctx())
    assert bad == []
    assert dict(o.dims) == {
        "cluster": "gpu-prod-1",
        "container": "main",
        "gpu": "0",
        "gpu_instance": "3",
        "gpu_instance_profile": "1g.10gb",
        "gpu_model": "NVIDIA L4",
        "gpu_uuid": "GPU-c2f76b33-7953-256e-8f33-1343419b1a1c",
        "namespace": "ml",
        "node": "node-a",
        "pod": "trainer-0",
    }
    hours = 30 / 3600
    assert o.values == pytest.approx((hours, hours, hours * 0.8048, hours * 0.8048, 7 * hours))  # 7% < 10%: idle
    assert dec.emits(dec.cfg) == DcgmDecoder.emits(DcgmConfig(type="dcgm", constant_dimensions={"cluster": "x"}))


def test_blank_stale_and_bad_samples() -> None:
    dec = decoder()
    util = "DCGM_FI_DEV_GPU_UTIL"
    good = export({util: [gauge_point(L4, 40.0, T0)]}, T0)
    mixed = export(
        {
            util: [
                gauge_point({**L4, "gpu": "1"}, 9223372036854775794, T0),  # dcgm's blank sentinel (asInt)
                gauge_point({**L4, "gpu": "2"}, "NaN", T0, flags=1),  # the receiver's staleness marker
                gauge_point({**L4, "gpu": "3"}, "NaN", T0),
                gauge_point({**L4, "gpu": "4"}, 150.0, T0),
                gauge_point({**L4, "gpu": "5"}, 20.0, 0),  # no time
                gauge_point({**L4, "gpu": "6"}, 20.0, T0),
            ],
            "DCGM_FI_DEV_FB_USED": [gauge_point(L4, -5.0, T0)],
            "DCGM_FI_DEV_POWER_USAGE": [gauge_point(L4, 70.5, 4e10)],  # out of range
        },
        T0,
    )
    histogram = orjson.dumps(
        {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": util, "histogram": {"dataPoints": []}}]}]}]}
    )
    bad_shape = orjson.dumps(
        {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": util, "gauge": {"dataPoints": {}}}]}]}]}
    )
    lines = [good, mixed, b"{oops", b'{"resourceMetrics": 5}', b"", histogram, bad_shape]
    obs, bad = dec.decode_lines(lines, DecodeContext("t", max_ts=parse_time("2100-01-01T00:00:00Z")))
    assert sorted((o.signals, dict(o.dims)["gpu"]) for o in obs) == [(UTIL_SIGNALS, "0"), (UTIL_SIGNALS, "6")]
    assert dec.blank_samples == 1
    got = sorted((b.kind, b.partial, lines.index(b.raw)) for b in bad)
    assert got == sorted(
        [
            (BLANK, False, 4),
            ("absurd_value", True, 1),
            ("malformed_json", False, 2),
            ("negative_value", True, 1),
            ("non_finite", True, 1),
            ("schema", False, 3),
            ("schema", False, 5),  # a histogram where a gauge belongs
            ("schema", False, 6),  # dataPoints is no list
            ("schema", True, 1),  # no time
            ("timestamp_out_of_range", True, 1),
        ]
    )


def test_state_is_bounded() -> None:
    seen, pending = LastSeen(limit=2), {}
    for key in ("a", "b", "c"):
        assert seen.newer(key, 10, pending)
    seen.apply(pending)
    assert len(seen) == 2 and set(seen.state) == {"b", "c"}  # the least recently updated went first
    pending = {}
    assert seen.newer("a", 10, pending)  # forgotten: counted again (documented)
    assert not seen.newer("c", 10, pending)


def test_sniff(scrape: str) -> None:
    assert DcgmOtlpDecoder.sniff(from_scrape(scrape, T0))
    assert not DcgmOtlpDecoder.sniff(scrape.encode())
    assert not DcgmDecoder.sniff(from_scrape(scrape, T0))  # backtest routes each file to one decoder
