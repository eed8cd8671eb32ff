"""Backtest: replay files through the same pipeline in event time and write alerts (and a report)."""

from __future__ import annotations

import gzip
import sys
import time
from pathlib import Path
from typing import Any

from agent.pipeline import Agent
from agent.registry import components
from agent.sources.file import FileSource, format_of, list_files
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
        opener: Any = gzip.open if f.endswith(".gz") else open
        with opener(f, "rb") as fh:
            return bytes(fh.read(4096))
    except OSError:
        return b""


def route_inputs(cfg: Any, inputs: list[str]) -> dict[str, list[str]]:
    """Map each input to a file source of the config: ``SOURCE=PATH``, or by sniffing the content."""
    file_sources = {n: s for n, s in cfg.sources.items() if s.type == "file"}
    if not file_sources:
        raise ValueError("the config has no file source to replay inputs through")
    routed: dict[str, list[str]] = {}
    for item in inputs:
        name, sep, path = item.partition("=")
        if sep and name in cfg.sources:
            routed.setdefault(name, []).append(path)
            continue
        path = item
        if not list_files(path):
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
    sources = {}
    for name, paths in routed.items():
        base = cfg.sources[name]
        for i, p in enumerate(paths):
            key = name if len(paths) == 1 else f"{name}.{i}"
            sources[key] = base.model_copy(update={"path": p, "watch": False})
    return cfg.model_copy(
        update={
            "sources": sources,
            "sinks": {"alerts": components("sink")["jsonl"][0](type="jsonl", path=alerts_out)},
            "state": cfg.state.model_copy(update={"type": "memory"}),
            "pipeline": cfg.pipeline.model_copy(update={"max_age_days": 0.0}),
            "dead_letter": cfg.dead_letter.model_copy(update={"path": alerts_out + ".dead-letter.jsonl"}),
        }
    )


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
        "resolved": sum(1 for a in collector.alerts if a["status"] == "resolved"),
        "dead_letter": agent.dead_letter.written,
    }
    if report_dir:
        from agent.report import write_report

        write_report(report_dir, collector, summary, expected=expected)
    return summary


def _share(agent: Agent) -> tuple[float, int]:
    done, total = 0.0, 0
    for src in agent.sources.values():
        files = src.list_files() if isinstance(src, FileSource) else []
        total += len(files)
        for f in files:
            pos = src.positions.get(f)
            if not pos:
                continue
            if pos.get("done"):
                done += 1
            elif not f.endswith(".gz") and pos.get("size"):
                done += min(1.0, pos.get("offset", 0) / pos["size"])
    return done, total


__all__ = ["run_backtest", "route_inputs"]
