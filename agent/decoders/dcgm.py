"""NVIDIA dcgm-exporter metrics (Prometheus text format) → GPU utilisation, memory, power, GPU-hours.

Each ``DCGM_FI_DEV_GPU_UTIL`` sample is one scrape of one GPU: it counts
``scrape_interval_seconds / 3600`` GPU-hours (one GPU seen for one hour = 1 GPU-hour), and the
same amount of *idle* GPU-hours when utilisation is under ``idle_util_percent``. GPU-hours are
priced per GPU model (``modelName`` label) and label set from the GPU price table
(:class:`agent.pricing.GpuPriceTable`: the purchase option, override rules on cluster, node...).

Signals: ``gpu_hours``, ``gpu_idle_hours``, ``gpu_cost_usd``, ``gpu_idle_cost_usd``,
``gpu_util_pct_hours`` (utilisation × hours; divide by ``gpu_hours`` for the mean, see the
detectors' ``per`` option), ``gpu_mem_used_mib_hours``, ``gpu_energy_wh``.
Dimensions: ``node`` (``Hostname`` or ``hostname``), ``gpu``, ``gpu_uuid``, ``gpu_model``,
``namespace``, ``pod``, ``container``, MIG ``gpu_instance_profile``, plus constants.
Samples without a timestamp take the file's modification time.

**Each GPU's time counts once.** A sample stands for ``[ts, ts + scrape_interval_seconds)`` of its series (metric and
label set) and adds only the part of it no other sample of the series added: the same scrape read twice (a copied
file, an overlapping export, the same modification time) counts once, and samples closer together than the interval
count the time between them, so a GPU never counts more than the wall-clock time. A sample that adds nothing is left
out and counted (``finops_agent_events_discarded_total{reason="ignored_duplicate_sample"}``). Memory is bounded: per
series its newest 64 runs of samples, at most 200,000 series. dcgm's "blank" sentinel values
(huge integers) are ignored and counted. A sample without a ``Hostname`` label (node ``""``) or without a
``modelName`` label priced at the default GPU-hour rate is counted as before, and reported once per label set as a
partial bad record (``no_node_label``, ``no_gpu_model``: counted, logged once per kind, its first sample
dead-lettered). A sample whose window the aggregation has sealed is dead-lettered as ``late`` with its line (and
counts no GPU time: a later copy of it is late too, not a duplicate). A line holding a NUL byte or invalid UTF-8 is
not text (``malformed_text``); a leading byte-order mark and a trailing ``\r`` (CRLF) are harmless.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from pydantic import Field

from agent.decoders.base import BLANK, BOM, LATE, LATE_REASON, BadRecord, DecodeContext, Decoded, Decoder, Emits
from agent.model import Cell, Dims, Observation, cell, make_dims
from agent.pricing import GpuPriceTable
from agent.registry import ComponentConfig, register


class DcgmConfig(ComponentConfig):
    type: Literal["dcgm"]
    scrape_interval_seconds: float = Field(30.0, gt=0)
    idle_util_percent: float = Field(5.0, ge=0, le=100)
    constant_dimensions: dict[str, str] = Field(default_factory=dict, description="e.g. cluster: prod-eu")


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
# A whole label set: name="value" pairs separated by commas (a trailing comma is allowed).
_LABEL_SET = re.compile(r'\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*=\s*"(?:[^"\\]|\\.)*"\s*(?:,\s*|$))*')
_BLANK = 9.2e18  # dcgm blank sentinels are near 2**63
_SERIES_MAX = 200_000  # series whose covered time is remembered (beyond, the oldest forget theirs)
_INTERVALS_MAX = 64  # covered intervals (runs of samples) remembered per series: the newest
_MAX_FB_MIB = float(1 << 20)  # 1 TiB of framebuffer: more is absurd (the largest GPUs hold under 200 GiB)

#: dcgm-exporter label → dimension (shared with :mod:`agent.decoders.dcgm_otlp`).
LABEL_DIMS = {
    "Hostname": "node",
    "hostname": "node",
    "gpu": "gpu",
    "UUID": "gpu_uuid",
    "modelName": "gpu_model",
    "namespace": "namespace",
    "pod": "pod",
    "container": "container",
    "GPU_I_PROFILE": "gpu_instance_profile",
    "GPU_I_ID": "gpu_instance",
}
UTIL_SIGNALS = ("gpu_hours", "gpu_idle_hours", "gpu_cost_usd", "gpu_idle_cost_usd", "gpu_util_pct_hours")
MEM_SIGNALS = ("gpu_mem_used_mib_hours",)
POWER_SIGNALS = ("gpu_energy_wh",)
GPU_UTIL, FB_USED, POWER_USAGE = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE"
WANTED = frozenset({GPU_UTIL, FB_USED, POWER_USAGE})


class Problem(NamedTuple):
    kind: str
    reason: str


def label_dims(labels: Iterable[tuple[str, str]], constants: dict[str, str]) -> tuple[Dims, str]:
    """A sample's dimensions (its labels that name one, and the constants) and its GPU model (``""`` if none)."""
    pairs = list(constants.items())
    gpu_model = ""
    for k, v in labels:
        dim = LABEL_DIMS.get(k)
        if dim:
            pairs.append((dim, v))
            if dim == "gpu_model":
                gpu_model = v
    return make_dims(pairs), gpu_model


def sample_values(
    name: str, value: float, hours: float, idle_pct: float, price: float
) -> tuple[int, tuple[float, ...]] | Problem | None:
    """What one sample of a :data:`WANTED` metric adds: ``(i, values)`` for the GPU's ``i``-th cell (0: utilisation
    signals, 1: memory, 2: power), a :class:`Problem` for a value out of range, or None for a dcgm blank sentinel
    (ignored). ``hours``: GPU-hours one sample stands for; ``price``: USD per GPU-hour.

    >>> sample_values(GPU_UTIL, 2.0, 0.5, 5.0, 4.0)
    (0, (0.5, 0.5, 2.0, 2.0, 1.0))
    >>> sample_values(GPU_UTIL, 9223372036854775794.0, 0.5, 5.0, 4.0) is None, sample_values(FB_USED, -1, 1, 5, 1).kind
    (True, 'negative_value')
    """
    if name == GPU_UTIL:
        if 0 <= value <= 100:  # (NaN is in no range: every problem is sorted out below, off the hot path)
            idle = hours if value < idle_pct else 0.0
            return 0, (hours, idle, hours * price, idle * price, value * hours)
    elif name == FB_USED:
        if 0 <= value <= _MAX_FB_MIB:
            return 1, (value * hours,)
    elif 0 <= value <= 5000:
        return 2, (value * hours,)
    return _out_of_range(name, value)


def _out_of_range(name: str, value: float) -> Problem | None:
    if value >= _BLANK and value != math.inf:
        return None
    if math.isnan(value) or math.isinf(value):
        return Problem("non_finite", f"{name}: value is not finite")
    if name == GPU_UTIL:
        return Problem("absurd_value", f"GPU utilisation {value} outside 0..100")
    if name == FB_USED:
        if value < 0:
            return Problem("negative_value", "negative framebuffer use")
        return Problem("absurd_value", f"framebuffer use {value:g} MiB above 1 TiB")
    return Problem("absurd_value", f"GPU power {value} W outside 0..5000")


@register("decoder", "dcgm", DcgmConfig)
class DcgmDecoder(Decoder):
    type_name = "dcgm"

    def __init__(self, cfg: DcgmConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.gpu_prices = GpuPriceTable.from_config(pricing)
        self.hours = cfg.scrape_interval_seconds / 3600.0
        self._labels_cache: dict[str, tuple[tuple[Cell, ...], float, tuple[Problem, ...]] | str] = {}
        self._reported: set[str] = set()  # label sets whose missing labels were reported (once each)
        self.blank_samples = 0
        self.duplicate_samples = 0
        # (metric, label set) → the time its samples cover: sorted disjoint intervals, flat (start, end, ...)
        self._covered: dict[tuple[str, str | None], list[float]] = {}

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return b"DCGM_FI_" in sample and b'"resourceMetrics"' not in sample  # (OTLP/JSON: dcgm_otlp)

    @classmethod
    def emits(cls, cfg: DcgmConfig) -> Emits:
        groups = (frozenset(UTIL_SIGNALS), frozenset(MEM_SIGNALS), frozenset(POWER_SIGNALS))
        dims = frozenset({*LABEL_DIMS.values(), *cfg.constant_dimensions})
        return Emits(frozenset().union(*groups), dims, together=groups)

    def _cells(self, labels: str) -> tuple[tuple[Cell, ...], float, tuple[Problem, ...]] | str:
        """The cells of a label set, or why it is no label set (checked once per distinct set: cached)."""
        hit = self._labels_cache.get(labels)
        if hit is None:
            found = _LABEL.findall(labels)
            names = [k for k, _v in found]
            if _LABEL_SET.fullmatch(labels) is None:
                hit = "invalid label set"
            elif len(set(names)) < len(names):  # Prometheus refuses such a sample too
                hit = "duplicate label name " + next(k for k in names if names.count(k) > 1)
            if hit is not None:
                if len(self._labels_cache) < 100_000:
                    self._labels_cache[labels] = hit
                return hit
            dims, gpu_model = label_dims(found, self.cfg.constant_dimensions)
            rate = self.gpu_prices.rate(gpu_model, dims)  # per label set: rules match cluster, node...
            missing: list[Problem] = []
            if not any(k == "node" for k, _v in dims):
                missing.append(Problem("no_node_label", 'no Hostname label: the GPU\'s node is empty (node="")'))
            if not gpu_model and rate.purchase_option == "default":
                why = f"no modelName label: its GPU-hours are priced at the default {rate.describe()}"
                missing.append(Problem("no_gpu_model", why))
            hit = (
                (cell(dims, UTIL_SIGNALS), cell(dims, MEM_SIGNALS), cell(dims, POWER_SIGNALS)),
                rate.usd_per_gpu_hour,
                tuple(missing),
            )
            if len(self._labels_cache) < 100_000:
                self._labels_cache[labels] = hit
        return hit

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        out: list[Observation] = []
        bad: list[BadRecord] = []
        hours = self.hours
        idle_pct = self.cfg.idle_util_percent
        bucket, late_before = ctx.bucket_seconds, ctx.late_before
        blank_samples = 0  # added to the decoder's count at the end: the batch may be decoded again
        counted: list[tuple[Any, ...]] = []  # (name, labels, ts, cell, values) of the valid samples
        unlabelled: list[tuple[bytes, str, tuple[Problem, ...]]] = []
        for raw in lines:
            rec = raw
            if not rec.startswith(b"DCGM_FI_DEV_"):  # rare: a comment, another metric, a BOM, blanks
                rec = (rec[3:] if rec.startswith(BOM) else rec).strip()
                if not rec:
                    bad.append(BadRecord(raw, BLANK, "blank line"))
                    continue
                if rec.startswith(b"#") or (rec.startswith(b"DCGM_") and not rec.startswith(b"DCGM_FI_DEV_")):
                    continue
            if b"\x00" in rec:
                bad.append(BadRecord(raw, "malformed_text", "NUL byte in a text-format line"))
                continue
            try:
                line = rec.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(BadRecord(raw, "malformed_text", "not UTF-8"))
                continue
            m = _SAMPLE.match(line)
            if m is None:
                bad.append(BadRecord(raw, "malformed_text", "not a Prometheus text-format sample"))
                continue
            name, labels, value_s, ts_s = m.groups()
            if name not in WANTED:
                continue
            try:
                value = float(value_s)
            except ValueError:
                bad.append(BadRecord(raw, "schema", f"{name}: value {value_s!r} is not a number"))
                continue
            if value >= _BLANK and value != math.inf:
                blank_samples += 1
                continue
            if math.isnan(value) or math.isinf(value):
                bad.append(BadRecord(raw, "non_finite", f"{name}: value is not finite"))
                continue
            if ts_s is not None:
                if len(ts_s) > 19:  # milliseconds: 13 digits today; more than 19 is no time at all
                    bad.append(BadRecord(raw, "timestamp_out_of_range", f"timestamp {ts_s[:40]!r} is no time"))
                    continue
                ts = int(ts_s) / 1000.0
            elif ctx.default_ts is not None:
                ts = ctx.default_ts
            else:
                bad.append(BadRecord(raw, "schema", "sample has no timestamp and the source gives none"))
                continue
            if not ctx.min_ts <= ts <= ctx.max_ts:
                bad.append(BadRecord(raw, "timestamp_out_of_range", "timestamp outside accepted range"))
                continue
            if ts - ts % bucket < late_before:  # (base.is_late, inline: the hot path) its window is sealed
                bad.append(BadRecord(raw, LATE, f"{name}: {LATE_REASON}"))
                continue
            cells = self._cells(labels or "")
            if isinstance(cells, str):
                bad.append(BadRecord(raw, "malformed_text", f"{name}: {cells}"))
                continue
            got = sample_values(name, value, hours, idle_pct, cells[1])
            if isinstance(got, Problem):
                bad.append(BadRecord(raw, got.kind, got.reason))
            elif got is not None:
                counted.append((name, labels, ts, cells[0][got[0]], got[1]))
                if cells[2]:  # (rare) a label the agent relies on is missing: reported once per label set
                    unlabelled.append((raw, labels, cells[2]))
        # Nothing raises from here: the series' covered time changes only now (the batch may be decoded again).
        self.blank_samples += blank_samples
        self._count_once(counted, ctx.late_before, out)
        for raw, labels, problems in unlabelled:
            if labels not in self._reported and len(self._reported) < 100_000:
                self._reported.add(labels)
                note = " (the first sample of its label set; the others are counted the same way, not reported)"
                bad.extend(BadRecord(raw, p.kind, p.reason + note, partial=True) for p in problems)
        return out, bad

    def _count_once(self, counted: list[tuple[Any, ...]], late_before: float, out: list[Observation]) -> None:
        """Each sample's observation, for the time it adds to its series: a sample stands for ``[ts, ts + interval)``
        of its GPU, and counts only the part of it no other sample of the series counted (the same scrape read twice
        counts once; samples closer than the interval count the time between them), so a GPU never counts more
        than the wall-clock time. A sample that adds nothing is a duplicate (counted in ``ignored_records``)."""
        covered = self._covered
        span = self.cfg.scrape_interval_seconds
        dupes = 0
        for name, labels, ts, c, values in counted:
            key = (name, labels)
            iv = covered.get(key)
            end = ts + span
            if iv is None:  # a new series
                if len(covered) >= _SERIES_MAX:
                    del covered[next(iter(covered))]  # the oldest series forgets what it counted
                covered[key] = [ts, end]
                out.append(Observation(ts, c, values))
                continue
            last = iv[-1]
            if ts >= last:  # in order (the hot path): the series' newest sample
                if ts - last < span:  # jitter: no gap a sample could fill; one interval
                    iv[-1] = end
                else:
                    if len(iv) >= 2 * _INTERVALS_MAX or iv[1] < late_before:
                        _forget(iv, late_before)
                    iv += (ts, end)
                out.append(Observation(ts, c, values))
                continue
            new = _add_interval(iv, ts, end)
            if new >= span:
                out.append(Observation(ts, c, values))
            elif new > 0:
                share = new / span
                out.append(Observation(ts, c, tuple(v * share for v in values)))
            else:
                dupes += 1
        self.duplicate_samples += dupes

    def ignored_records(self) -> dict[str, int]:
        """Samples read and left out on purpose: ``duplicate_sample`` (its series' time was counted already)."""
        return {"duplicate_sample": self.duplicate_samples} if self.duplicate_samples else {}


def _forget(iv: list[float], before: float) -> None:
    """Drop a series' oldest covered intervals: those that end before ``before`` (their samples are late now) and
    beyond :data:`_INTERVALS_MAX` (a series with that many gaps)."""
    k = 0
    while k + 2 < len(iv) and (iv[k + 1] < before or len(iv) - k >= 2 * _INTERVALS_MAX):
        k += 2
    del iv[:k]


def _add_interval(iv: list[float], a: float, b: float) -> float:
    """Add ``[a, b)`` to the sorted disjoint intervals ``iv`` (flat: start, end, start, end...); the length it adds.

    >>> iv = [0.0, 30.0, 60.0, 90.0]
    >>> _add_interval(iv, 0.0, 30.0), _add_interval(iv, 20.0, 50.0), iv
    (0.0, 20.0, [0.0, 50.0, 60.0, 90.0])
    >>> _add_interval(iv, 45.0, 75.0), iv
    (10.0, [0.0, 90.0])
    """
    seen = 0.0
    lo, hi = a, b
    keep: list[float] = []
    pos = -1
    for k in range(0, len(iv), 2):
        s, e = iv[k], iv[k + 1]
        if e < a or s > b:  # apart (touching intervals merge)
            if s > b and pos < 0:
                pos = len(keep)
            keep += (s, e)
            continue
        seen += max(0.0, min(e, b) - max(s, a))
        lo, hi = min(lo, s), max(hi, e)
    if pos < 0:
        pos = len(keep)
    keep[pos:pos] = (lo, hi)
    iv[:] = keep
    return (b - a) - seen
