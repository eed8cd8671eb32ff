"""NVIDIA dcgm-exporter metrics as OTLP/JSON → GPU utilisation, memory, power, GPU-hours.

What the OpenTelemetry Collector writes when its ``prometheus`` receiver scrapes dcgm-exporter
and its Kafka exporter (``encoding: otlp_json``) or file exporter sends the metrics on: one
``ExportMetricsServiceRequest`` per message (line), the scrape's samples as gauge data points
whose attributes are the exporter's labels (see :mod:`agent.decoders.otlp`). The samples mean
what they mean to the text-format :mod:`agent.decoders.dcgm` decoder, and are decoded with its
rules (:func:`agent.decoders.dcgm.sample_values`, :func:`agent.decoders.dcgm.label_dims`): each
``DCGM_FI_DEV_GPU_UTIL`` sample counts ``scrape_interval_seconds / 3600`` GPU-hours (and as many
idle GPU-hours under ``idle_util_percent``), priced per GPU model from the GPU price table;
``DCGM_FI_DEV_FB_USED`` and ``DCGM_FI_DEV_POWER_USAGE`` become MiB-hours and watt-hours. dcgm's
"blank" sentinel values are ignored and counted, and so are the receiver's staleness markers
(points flagged as holding no value, when a GPU or the exporter goes away).

**Duplicates.** A sample delivered twice (a Kafka redelivery or a producer retry, in one batch or
across batches) must not count twice: the decoder remembers, per metric and GPU (its
dimensions), the time of the last sample it counted, and counts a sample only when it is newer.
The memory is bounded (the 100,000 most recently updated GPUs' metrics) and held in memory only:
after a restart, or for a GPU evicted from it, a redelivered old sample may count again. Samples of
one GPU must therefore arrive in time order, as they do when one exporter's scrapes stay on one
Kafka partition (the Kafka exporter's ``partition_metrics_by_resource_attributes: true``: the
resource is the scrape target); an older sample arriving after a newer one is counted as a
duplicate and not used.

Signals: ``gpu_hours``, ``gpu_idle_hours``, ``gpu_cost_usd``, ``gpu_idle_cost_usd``,
``gpu_util_pct_hours``, ``gpu_mem_used_mib_hours``, ``gpu_energy_wh`` (as :mod:`agent.decoders.dcgm`).
Dimensions: ``node`` (``Hostname`` or ``hostname``), ``gpu``, ``gpu_uuid``, ``gpu_model``,
``namespace``, ``pod``, ``container``, MIG ``gpu_instance_profile`` / ``gpu_instance``, plus
constants; a label is read from the data point, else from the resource. Metric names are matched
without regard to case: instrument names are case-insensitive in OpenTelemetry, and its Python SDK
exports them lowercased (``dcgm_fi_dev_gpu_util``), where the receiver keeps dcgm-exporter's. Other
metrics in a message (the receiver's ``up``, ``scrape_duration_seconds``, dcgm's other counters) are
ignored.
Bad input comes back per message, one bad record per kind of problem (``malformed_json``,
``schema``, ``non_finite``, ``negative_value``, ``absurd_value``, ``timestamp_out_of_range``,
``too_deep``, ``late``), partial when other samples of the message were counted. A sample whose window the
aggregation has sealed is left out, and its message dead-lettered once as ``late`` (with how many samples were;
partial when others were counted): the message's exact bytes, as for every other problem.
"""

from __future__ import annotations

from typing import Any, Literal

from agent.decoders.base import LATE, LATE_REASON, BadRecord, DecodeContext, Decoded, Decoder, Emits, time_problem
from agent.decoders.dcgm import (
    LABEL_DIMS,
    MEM_SIGNALS,
    POWER_SIGNALS,
    UTIL_SIGNALS,
    WANTED,
    DcgmConfig,
    Problem,
    label_dims,
    sample_values,
)
from agent.decoders.otlp import (
    NO_RECORDED_VALUE,
    KeyValue,
    LastSeen,
    Pending,
    Problems,
    ResourceMetrics,
    attributes,
    decode_numbers,
    export_requests,
    given,
    problem_of,
    text,
)
from agent.model import Cell, Observation, cell
from agent.pricing import GpuPriceTable
from agent.registry import register

_LABELS = frozenset(LABEL_DIMS)
_CACHE_MAX = 100_000


class DcgmOtlpConfig(DcgmConfig):
    type: Literal["dcgm_otlp"]  # type: ignore[assignment]


@register("decoder", "dcgm_otlp", DcgmOtlpConfig)
class DcgmOtlpDecoder(Decoder):
    type_name = "dcgm_otlp"

    def __init__(self, cfg: DcgmOtlpConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.gpu_prices = GpuPriceTable.from_config(pricing)
        self.hours = cfg.scrape_interval_seconds / 3600.0
        self.seen = LastSeen()
        self._cells: dict[tuple[tuple[str, str], ...], tuple[tuple[Cell, ...], float]] = {}
        self.blank_samples = 0
        self.duplicates = 0

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return b'"resourceMetrics"' in sample and (b"DCGM_FI_" in sample or b"dcgm_fi_" in sample)

    @classmethod
    def emits(cls, cfg: DcgmOtlpConfig) -> Emits:
        groups = (frozenset(UTIL_SIGNALS), frozenset(MEM_SIGNALS), frozenset(POWER_SIGNALS))
        dims = frozenset({*LABEL_DIMS.values(), *cfg.constant_dimensions})
        return Emits(frozenset().union(*groups), dims, together=groups)

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        out: list[Observation] = []
        bad: list[BadRecord] = []
        pending: Pending = {}
        counts = [0, 0]  # blank samples, duplicates: added to the decoder's at the end (the batch may run again)
        for raw, exp in export_requests(lines, bad):
            msg = Problems()
            if exp.resourceMetrics:
                self._read(exp.resourceMetrics, msg, out, ctx, pending, counts)
            bad += msg.records(raw)
        self.seen.apply(pending)
        self.blank_samples += counts[0]
        self.duplicates += counts[1]
        return out, bad

    def _read(
        self,
        resources: list[ResourceMetrics],
        msg: Problems,
        out: list[Observation],
        ctx: DecodeContext,
        pending: Pending,
        counts: list[int],
    ) -> None:
        hours, idle_pct = self.hours, self.cfg.idle_util_percent
        bucket, late_before = ctx.bucket_seconds, ctx.late_before
        for rm in resources:
            res: dict[str, str] | None = None
            for sm in rm.scopeMetrics:
                for m in sm.metrics:
                    name = m.name
                    if name not in WANTED:
                        name = name.upper()  # (the case may differ: see above)
                        if name not in WANTED:
                            continue
                    data = m.gauge if given(m.gauge) else m.sum
                    if not given(data):
                        msg.add("schema", f"{name} is no gauge")
                        continue
                    try:
                        points = decode_numbers(data).dataPoints
                    except Exception as exc:
                        msg.add(*problem_of(exc, f"{name} data"))
                        continue
                    if res is None:
                        res = _labels(rm.resource.attributes, {})
                    for dp in points:
                        if dp.flags & NO_RECORDED_VALUE:
                            continue  # a staleness marker: the series went away
                        value = dp.asDouble if dp.asDouble is not None else dp.asInt
                        if value is None:
                            msg.add("schema", f"{name}: data point without a value")
                            continue
                        if dp.timeUnixNano <= 0:
                            msg.add("schema", f"{name}: data point without timeUnixNano")
                            continue
                        ts = dp.timeUnixNano / 1e9
                        problem = time_problem(ts, ctx)
                        if problem is not None:
                            msg.add("timestamp_out_of_range", f"{name}: {problem}")
                            continue
                        cells = self._cells_of(_labels(dp.attributes, res))
                        got = sample_values(name, float(value), hours, idle_pct, cells[1])
                        if got is None:
                            counts[0] += 1
                            continue
                        if isinstance(got, Problem):
                            msg.add(got.kind, got.reason)
                            continue
                        i, values = got
                        c = cells[0][i]
                        if not self.seen.newer((name, c.dims), dp.timeUnixNano, pending):
                            counts[1] += 1
                            continue
                        if ts - ts % bucket < late_before:  # (base.is_late, inline) its window is sealed
                            msg.add(LATE, f"{name}: {LATE_REASON}")
                            continue
                        msg.used += 1
                        out.append(Observation(ts, c, values))

    def _cells_of(self, labels: dict[str, str]) -> tuple[tuple[Cell, ...], float]:
        """The GPU's (utilisation, memory, power) cells and its price per GPU-hour."""
        key = tuple(sorted(labels.items()))
        hit = self._cells.get(key)
        if hit is None:
            dims, gpu_model = label_dims(key, self.cfg.constant_dimensions)
            price = self.gpu_prices.lookup(gpu_model, dims)
            hit = ((cell(dims, UTIL_SIGNALS), cell(dims, MEM_SIGNALS), cell(dims, POWER_SIGNALS)), price)
            if len(self._cells) < _CACHE_MAX:
                self._cells[key] = hit
        return hit


def _labels(kvs: list[KeyValue], into: dict[str, str]) -> dict[str, str]:
    """The dcgm labels among attributes (as text), over ``into``; ``hostname`` (newer exporters) is ``Hostname``."""
    out = dict(into)
    for k, v in attributes(kvs, _LABELS).items():
        out["Hostname" if k == "hostname" else k] = text(v)
    return out
