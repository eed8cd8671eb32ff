"""Run the agent's own detector over NAB-format data, one series per file, streaming.

The detector is built exactly as the agent builds it: the named detector of a config file (by
default the embedded default config's ``token_spend``, the agent's spend-spike detector), through
the registry's ``from_config``, one clone per file. Each row is scored *before* it is learned
(as the agent scores a closed window before learning it), nothing looks ahead, and the score,
already in [0, 1], is written as ``anomaly_score``.
"""

from __future__ import annotations

import csv
import datetime as dt
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.registry import components

DEFAULT_DETECTOR = "token_spend"


def prototype(config: str | None = None, detector: str = DEFAULT_DETECTOR) -> Any:
    """The detector prototype the agent would build for ``detector`` in ``config``."""
    cfg = load_config(config)
    if detector not in cfg.detectors:
        raise SystemExit(f"no detector {detector!r} in the config (has: {', '.join(cfg.detectors)})")
    dcfg = cfg.detectors[detector]
    return components("detector")[dcfg.type][1].from_config(dcfg)


def read_series(path: Path) -> tuple[list[str], list[float], list[float]]:
    """NAB data file: timestamps as written, epoch seconds (UTC), values."""
    ts, ep, vals = [], [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            t = row["timestamp"].strip()
            ts.append(t)
            ep.append(dt.datetime.strptime(t[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp())
            vals.append(float(row["value"]))
    return ts, ep, vals


def score_series(model: Any, epochs: list[float], values: list[float]) -> list[float]:
    """Score then learn each point in order (no look-ahead); scores clipped to [0, 1]. A detector whose scores are
    in deviations (threshold above 1: River's StandardAbsoluteDeviation, a forecaster's residual) is mapped
    monotonically to [0, 1) first, ``s / (s + threshold)`` (its threshold at 0.5), so NAB's threshold sweep sees
    its whole range."""
    out = []
    k = float(model.threshold)
    squash = k > 1.0
    for t, y in zip(epochs, values, strict=True):
        x = {"t": t, "y": y}
        s = float(model.score_one(x))
        model.learn_one(x)
        if squash:
            s = s / (s + k) if s > 0 else 0.0
        out.append(min(max(s, 0.0), 1.0))
    return out


@dataclass
class RunStats:
    files: int
    points: int
    seconds: float  # score + learn only (reading and writing excluded)
    state_bytes: int  # largest pickled model after its file

    @property
    def us_per_point(self) -> float:
        return self.seconds / max(self.points, 1) * 1e6


def data_files(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*/*.csv") if p.is_file())


def run(data: Path, out: Path, config: str | None = None, detector: str = DEFAULT_DETECTOR) -> RunStats:
    proto = prototype(config, detector)
    files = data_files(data)
    if not files:
        raise SystemExit(f"no <category>/<file>.csv under {data}")
    points = 0
    seconds = 0.0
    state = 0
    for path in files:
        ts, ep, vals = read_series(path)
        model = proto.clone()
        t0 = time.perf_counter()
        scores = score_series(model, ep, vals)
        seconds += time.perf_counter() - t0
        points += len(vals)
        state = max(state, len(pickle.dumps(model)))
        dest = out / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for t, y, s in zip(ts, vals, scores, strict=True):
                w.writerow([t, repr(y), f"{s:.10g}"])
    return RunStats(len(files), points, seconds, state)
