"""Backtest: replay files through the same pipeline in event time and write alerts (and a report)."""

from __future__ import annotations

import math
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.decoders.base import DecodeContext
from agent.pipeline import Agent
from agent.registry import build, components
from agent.sources.file import FileSource, format_of, json_document, list_files, source_files
from agent.state import MemoryStateStore
from sinks.base import Sink


class PointCollector(Sink):
    """Keeps every point (for the report) and the alert events."""

    def __init__(self) -> None:
        self.name = "_collector"
        self.points: dict[tuple[str, Any], list[Any]] = {}
        self.alerts: list[dict[str, Any]] = []

    def on_points(self, points: list[Any]) -> None:
        for p in points:
            self.points.setdefault((p.detector, p.series), []).append(p)

    def on_alert(self, doc: dict[str, Any]) -> None:
        self.alerts.append(doc)


def _sample(path: str) -> bytes:
    """The first 4 KB of a path's first file (a Parquet file's column names), for routing; never raises."""
    files = list_files(path)
    if not files:
        return b""
    f = files[0]
    if format_of(f) == "parquet":  # its header: the column names
        try:
            import pyarrow.parquet as pq

            return ",".join(pq.ParquetFile(f).schema_arrow.names).encode()
        except Exception:
            return b""
    try:
        with open(f, "rb") as fh:
            head = fh.read(4096)
        if f.endswith(".gz"):  # as much of the start as decompresses (a truncated or corrupt file gives less)
            d = zlib.decompressobj(wbits=31)
            try:
                return d.decompress(head, 4096)
            except zlib.error:
                return b""
        return bytes(head)
    except OSError:
        return b""


def route_inputs(cfg: Any, inputs: list[str]) -> dict[str, list[str]]:
    """Map each input to a file source of the config: ``SOURCE=PATH``, or by sniffing the content."""
    file_sources = {n: s for n, s in cfg.sources.items() if s.type in REPLAYABLE}
    if not file_sources:
        raise ValueError(
            "the config has no source whose decoder can replay files "
            f"(source types {', '.join(REPLAYABLE)}; add a file source with the decoder of your data)"
        )
    routed: dict[str, list[str]] = {}
    for item in inputs:
        name, sep, path = item.partition("=")
        if sep and name in cfg.sources:
            routed.setdefault(name, []).append(path)
            continue
        path = item
        if not list_files(path):
            if sep and "/" not in name and not os.path.exists(item):
                raise ValueError(f"{item}: no source named {name!r} in the config (sources: {', '.join(cfg.sources)})")
            if os.path.isdir(path):
                raise ValueError(f"{path}: the directory holds no files")
            raise ValueError(f"{path}: no such file, directory or matching glob")
        sample = _sample(path)
        match = None
        for n, s in file_sources.items():
            dec_cls = components("decoder")[s.decoder.type][1]
            if dec_cls.sniff(sample):
                match = n
                break
        if match is None and len(file_sources) == 1:
            match = next(iter(file_sources))
        if match is None:
            raise ValueError(
                f"{path}: cannot tell which source reads it; write SOURCE=PATH (sources: {', '.join(file_sources)})"
            )
        routed.setdefault(match, []).append(path)
    return routed


def backtest_config(cfg: Any, routed: dict[str, list[str]], alerts_out: str) -> Any:
    """The config replayed: each routed path read by a file source with its source's decoder (an export source's
    decoder reads the export files directly), alerts to ``alerts_out``, state in memory."""
    file_cfg = components("source")["file"][0]
    sources = {}
    for name, paths in routed.items():  # one source per configured name (alerts name it), all its inputs in order
        base = cfg.sources[name]
        first, more = paths[0], paths[1:]
        if base.type == "file":
            sources[name] = base.model_copy(update={"path": first, "more_paths": more, "watch": False})
        else:  # s3_export / blob_export: the same decoder over local copies of the export's files
            sources[name] = file_cfg(type="file", path=first, more_paths=more, watch=False, decoder=base.decoder)
    lateness = max(cfg.pipeline.allowed_lateness_seconds, BACKTEST_LATENESS_SECONDS)
    return cfg.model_copy(
        update={
            "sources": sources,
            "sinks": {"alerts": components("sink")["jsonl"][0](type="jsonl", path=alerts_out)},
            "state": cfg.state.model_copy(update={"type": "memory"}),
            "pipeline": cfg.pipeline.model_copy(update={"allowed_lateness_seconds": lateness}),
            "dead_letter": cfg.dead_letter.model_copy(update={"path": alerts_out + ".dead-letter.jsonl"}),
            "http": cfg.http.model_copy(update={"enabled": False}),  # a replay serves nothing
        }
    )


#: A backtest reads files one after the other in path order (hourly log folders, several files an hour,
#: each sorted or not): it keeps event-time buckets open this long behind the newest record read, so
#: that input out of order by up to a day is summed, not dead-lettered as late (a live agent waits
#: ``pipeline.allowed_lateness_seconds``). It changes when windows close, not what they hold.
BACKTEST_LATENESS_SECONDS = 86400.0

#: Source types whose decoder a backtest can replay files through.
REPLAYABLE = ("file", "s3_export", "blob_export")
_SAMPLE_BYTES = 256 * 1024
_SAMPLE_FILES = 64
_BILLING_SAMPLE_BYTES = 32 << 20


def input_span(bt: Any) -> tuple[float, float] | None:
    """The event-time span of a backtest's input, robust to a few absurd timestamps.

    A live agent judges timestamps against its wall clock (``pipeline.max_age_days``,
    ``max_future_seconds``); a backtest replays the past, so it judges them against its input: the
    head and tail (256 KB each) of up to 64 files per source are decoded with the source's own
    decoder, and the span runs from the earliest to the latest of their event times that lie within
    ``max_age_days`` of the sample's median (a 1970 or a 2099 record is not part of any span, however
    small the input). Billing exports
    are read whole, so only those of up to 32 MB (at most 8 files a source) are sampled, as their
    hourly cells. ``None`` where nothing could be sampled."""
    times: list[float] = []
    for name, scfg in bt.sources.items():
        decoder = build("decoder", scfg.decoder, pricing=bt.pricing)
        if getattr(decoder, "snapshot", False):
            times.extend(_billing_times(name, billing_files(scfg), decoder))
            continue
        for f in _spread(source_files(scfg), _SAMPLE_FILES):
            fmt = scfg.format if scfg.format != "auto" else format_of(f)
            try:
                times.extend(_sample_times(name, f, fmt, decoder))
            except Exception:  # a sample that cannot be read says nothing; the replay reports the file
                continue
    if not times:
        return None
    times.sort()
    median = times[len(times) // 2]
    age = bt.pipeline.max_age_days * 86400 or math.inf
    near = [t for t in times if abs(t - median) <= age]
    return near[0], near[-1]


def billing_files(scfg: Any) -> list[str]:
    """The files a billing (snapshot) source reads: each period's newest delivery and the plain files, no manifests."""
    from agent.sources.exports import local_deliveries

    plan = local_deliveries(source_files(scfg), [scfg.path, *scfg.more_paths])
    return [f for d in plan.deliveries for f in d.files] + plan.singles


def _billing_times(name: str, files: list[str], decoder: Any) -> list[float]:
    from agent.decoders.billing.delivery import read_file

    times: list[float] = []
    small = [f for f in files if Path(f).stat().st_size <= _BILLING_SAMPLE_BYTES]
    for f in _spread(small, 8):
        try:
            table, _bad, _rows = read_file(f, decoder, DecodeContext(name, f, bucket_seconds=3600.0))
        except Exception:  # refused or unreadable: the replay reports it
            continue
        times.extend(float(t) for t in table.column("ts").to_pylist())
    return times


def _spread(files: list[str], n: int) -> list[str]:
    """At most ``n`` of ``files``: the first, the last and evenly between."""
    if len(files) <= n:
        return files
    step = (len(files) - 1) / (n - 1)
    return [files[round(i * step)] for i in range(n)]


def _sample_times(name: str, f: str, fmt: str, decoder: Any) -> list[float]:
    ctx = DecodeContext(name, f, default_ts=Path(f).stat().st_mtime, bucket_seconds=1.0)
    if fmt == "jsonl" and f.lower().endswith((".json", ".json.gz")):  # maybe one whole document (as the source reads)
        try:
            records = json_document(f, _SAMPLE_BYTES)
        except ValueError:  # too large: the replay refuses it
            return []
        if records is not None:
            return [o[0] for o in decoder.decode_lines(records[:10_000], ctx)[0]]
    if fmt in ("jsonl", "text"):
        with open(f, "rb") as fh:
            if f.endswith(".gz"):
                d = zlib.decompressobj(wbits=31)
                try:
                    chunks = [d.decompress(fh.read(_SAMPLE_BYTES), _SAMPLE_BYTES)]
                except zlib.error:
                    return []
            else:
                chunks = [fh.read(_SAMPLE_BYTES)]
                size = fh.seek(0, 2)
                if size > 2 * _SAMPLE_BYTES:
                    fh.seek(size - _SAMPLE_BYTES)
                    chunks.append(fh.read(_SAMPLE_BYTES).split(b"\n", 1)[-1])
        times: list[float] = []
        for chunk in chunks:
            lines = chunk.split(b"\n")
            if len(chunk) >= _SAMPLE_BYTES:
                lines.pop()  # cut mid-line
            obs, _bad = decoder.decode_lines([ln for ln in lines if ln.strip()], ctx)
            times.extend(o[0] for o in obs)
        return times
    if getattr(decoder, "tabular", False) and fmt == "parquet":
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(f).iter_batches(batch_size=4096), None)
        return [] if batch is None else [o[0] for o in decoder.decode_table(batch, ctx)[0]]
    return []


def with_span(bt: Any, span: tuple[float, float] | None) -> tuple[Any, Callable[[], float]]:
    """The replay's timestamp sanity, relative to its input: with ``max_age_days`` A (400), event times from
    A days before the input's span to A days after it are accepted; a 1970 or 2099 record is not. Without a
    span (or with A = 0) nothing is rejected for its time."""
    age = bt.pipeline.max_age_days
    if span is None or age <= 0:
        return bt.model_copy(update={"pipeline": bt.pipeline.model_copy(update={"max_age_days": 0.0})}), time.time
    lo, hi = span
    pipe = bt.pipeline.model_copy(
        update={
            "max_age_days": age + (hi - lo) / 86400,
            "max_future_seconds": max(bt.pipeline.max_future_seconds, age * 86400),
        }
    )
    return bt.model_copy(update={"pipeline": pipe}), lambda: hi


def run_backtest(
    cfg: Any,
    inputs: list[str],
    alerts_out: str,
    report_dir: str | None = None,
    progress: bool = False,
    expected: str | None = None,
) -> dict[str, Any]:
    routed = route_inputs(cfg, inputs)
    bt = backtest_config(cfg, routed, alerts_out)
    span = input_span(bt)
    bt, clock = with_span(bt, span)
    Path(alerts_out).parent.mkdir(parents=True, exist_ok=True)
    Path(alerts_out).write_bytes(b"")
    collector = PointCollector()
    t0 = time.perf_counter()
    last = [0.0]

    def show(agent: Agent) -> None:
        now = time.perf_counter()
        if now - last[0] < 0.5:
            return
        last[0] = now
        done, total = _share(agent)
        rate = agent.records_in / max(now - t0, 1e-9)
        sys.stderr.write(
            f"\r  {agent.records_in:,} records  {rate:,.0f} records/s  {100 * done / max(total, 1):5.1f}% "
            f"of input  {agent.alerts_out} alert events "
        )
        sys.stderr.flush()

    agent = Agent(
        bt,
        extra_sinks={"_collector": collector},
        state_store=MemoryStateStore(),
        progress=show if progress else None,
        now=clock,
        replay=True,  # silences judged at each alert's event time
    )
    agent.start()
    agent.wait_finished()
    agent.stop(flush_windows=True)
    secs = time.perf_counter() - t0
    if progress:
        sys.stderr.write("\n")
    firing = sum(1 for a in collector.alerts if a["status"] == "firing")
    summary = {
        "records": agent.records_in,
        "seconds": secs,
        "records_per_second": agent.records_in / max(secs, 1e-9),
        "points": agent.points_out,
        "firing": firing,
        "episodes": len({a["id"] for a in collector.alerts if a["status"] == "firing"}),
        "escalations": sum(1 for a in collector.alerts if a["status"] == "firing" and a.get("escalated")),
        "resolved": sum(1 for a in collector.alerts if a["status"] == "resolved"),
        "dead_letter": agent.dead_letter.written,
        "dead_letter_path": str(agent.dead_letter.path),
        "discarded": _totals(agent.telemetry.discarded, "reason"),  # records not processed, by reason
        "unpriced": sum(_totals(agent.telemetry.unpriced, "model").values()),  # unknown_model: dead-lettered too
        "unit": _unit(bt),  # what "records" counts: input lines, table rows (or both: records)
        "errors": _totals(agent.telemetry.errors, "stage"),  # unexpected, each kind logged once
        "held_back": {
            name: {
                "points": hb.points,
                "largest_usd": hb.largest_usd,
                "largest_series": hb.largest_series,
                "percent_rule": r.cfg.min_impact_percent is not None,
            }
            for name, r in agent.runners.items()
            if (hb := r.held_back).points
        },
        "filters": {  # what each detector's where / exclude left out (kinds of record: cells)
            name: {"left_out": r.filtered_cells, "counted": r.counted_cells}
            for name, r in agent.runners.items()
            if r.cfg.where or r.cfg.exclude
        },
        "span": span,
        "set_aside": [  # per period with several deliveries: the newest read, the others set aside
            note for src in agent.sources.values() for note in getattr(src, "set_aside", {}).values()
        ],
    }
    if report_dir:
        from agent.report import write_report

        write_report(report_dir, collector, summary, expected=expected)
    return summary


def _totals(counter: Any, label: str) -> dict[str, int]:
    """A labelled counter's totals per value of ``label``, largest first."""
    out: dict[str, int] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.value:
                key = sample.labels[label]
                out[key] = out.get(key, 0) + int(sample.value)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def format_summary(summary: dict[str, Any], alerts_out: str, report_dir: str | None = None) -> str:
    """What ``finops-agent backtest`` prints: what was read, what was set aside (and where), what was alerted,
    and what the ``min_impact_usd`` floor held back."""
    lines = [
        f"backtest: {plural(summary['records'], summary.get('unit', 'record'))} read in {summary['seconds']:.1f}s "
        f"({summary['records_per_second']:,.0f}/s), {plural(summary['points'], 'point')} scored"
    ]
    if summary.get("span"):
        lo, hi = summary["span"]
        lines.append(f"  input event time {_iso_day(lo)} .. {_iso_day(hi)} (a sample's; far outliers set aside)")
    dl = summary["dead_letter"]
    discarded = summary.get("discarded", {})
    left_out = {k[len("ignored_") :]: v for k, v in discarded.items() if k.startswith("ignored_")}
    if dl:
        by_kind = {k: v for k, v in discarded.items() if not k.startswith("ignored_")}
        if summary.get("unpriced"):
            by_kind["unknown_model"] = summary["unpriced"]
        reasons = ", ".join(
            f"{k} {v:,}{' (counted in part)' if k in PARTIAL_KINDS else ''}"
            for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
        )
        if summary.get("unit", "record") == "line" and dl > summary["records"]:
            reasons += "; a line can hold several records (an envelope), each dead-lettered on its own"
        lines.append(
            f"  {plural(dl, 'record')} dead-lettered{f' ({reasons})' if reasons else ''} "
            f"→ {summary['dead_letter_path']}"
        )
    else:
        lines.append("  0 records dead-lettered")
    if left_out:  # read, not bad: nothing their decoder reads (another metric, no tokens), or counted already
        why = ", ".join(f"{k} {v:,}" for k, v in left_out.items())
        lines.append(
            f"  {plural(sum(left_out.values()), 'record')} left out, not dead-lettered: nothing their decoder reads "
            f"or counted already ({why})"
        )
    for note in summary.get("set_aside", []):
        lines.append(f"  billing period {note}")
    eps = summary.get("episodes", summary["firing"])
    again = summary.get("escalations", summary["firing"] - eps)
    lines.append(
        f"  {eps} alert episode{'s' if eps != 1 else ''} firing"
        + (f" (+{again} escalation{'s' if again != 1 else ''})" if again > 0 else "")
        + f", {summary['resolved']} resolved → {alerts_out}"
        + (f"; report in {report_dir}/index.html" if report_dir else "")
    )
    if summary.get("errors"):
        what = ", ".join(f"{n:,} in {stage}" for stage, n in summary["errors"].items())
        lines.append(f"  unexpected errors: {what} (each kind logged once above; the replay went on)")
    for name, f in summary.get("filters", {}).items():
        if f["left_out"]:  # (a detector that saw no data of its kinds at all: nothing to say about its filters)
            kinds = plural(f["left_out"] + f["counted"], "kind")
            lines.append(
                f"  [{name}] where / exclude left out {f['left_out']:,} of {kinds} of record it watches"
                + (": it counted none (check the values: compared exactly)" if not f["counted"] else "")
            )
    for name, hb in summary.get("held_back", {}).items():
        n = hb["points"]
        rule = (
            "min_impact_usd and min_impact_percent (or min_impact_floor_usd)"
            if hb.get("percent_rule")
            else ("min_impact_usd")
        )
        v = hb["largest_usd"]
        lines.append(
            f"  [{name}] {n} anomalous point{'s were' if n != 1 else ' was'} not alerted because "
            f"{'their' if n != 1 else 'its'} impact was under {rule} "
            f"(largest: {'-' if v < 0 else ''}${abs(v):,.2f} on {hb['largest_series'] or 'all'})"
        )
    return "\n".join(lines)


#: Dead-letter kinds of records whose usable part was counted (``BadRecord.partial``).
PARTIAL_KINDS = frozenset({"unknown_model", "missing_tokens", "no_node_label", "no_gpu_model"})


def _unit(bt: Any) -> str:
    """What the replay's record count counts: ``line`` (line files), ``row`` (CSV / Parquet), else ``record`` (both,
    or whole-document JSON files, counted by their records)."""
    units = set()
    for scfg in bt.sources.values():
        snapshot = getattr(components("decoder")[scfg.decoder.type][1], "snapshot", False)
        for f in billing_files(scfg) if snapshot else source_files(scfg):
            fmt = scfg.format if scfg.format != "auto" else format_of(f)
            json_file = fmt == "jsonl" and f.lower().endswith((".json", ".json.gz"))
            units.add("row" if fmt in ("csv", "parquet") else "record" if json_file else "line")
    return units.pop() if len(units) == 1 else "record"


def plural(n: int, word: str) -> str:
    """``1 record``, ``2 records``, ``1,000 records``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _iso_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _share(agent: Agent) -> tuple[float, int]:
    done, total = 0.0, 0
    for src in agent.sources.values():
        files = src.list_files() if isinstance(src, FileSource) else []
        total += len(files)
        read = {f for p in src.positions.values() if isinstance(p, dict) for f in p.get("files", ())}  # deliveries'
        done += len(read)
        for f in files:
            pos = src.positions.get(f)
            if not pos:
                continue
            if pos.get("done"):
                done += 1
            elif not f.endswith(".gz") and pos.get("size"):
                done += min(1.0, pos.get("offset", 0) / pos["size"])
    return done, total


__all__ = ["run_backtest", "route_inputs", "format_summary"]
