"""A scorer compatible with the Numenta Anomaly Benchmark (NAB), written from its description.

What it implements (``../shared/data/nab/SCORING.md``): the first ``min(floor(0.15 N), 750)``
rows of a file are probation and not scored; a row inside a labelled window is worth
``S(p) * tp / S(-1)`` with ``p = -(R - i + 1) / W`` and only the best (earliest) detection of a
window counts, a window without one costs ``-fn``; a detected row outside every window costs
``-fp`` before the first window and ``S(|Rp - i| / (Wp - 1)) * fp`` after one; ``S(p) = 2 / (1 +
exp(5 p)) - 1`` (``-1`` past ``p = 3``). One threshold per profile for the whole corpus: the one
that maximises the summed file scores over every distinct anomaly score. Normalised score
``100 (raw - null) / (perfect - null)``.

>>> PROFILES["standard"]
Profile(name='standard', tp=1.0, fp=0.11, fn=1.0)
>>> round(scaled_sigmoid(-1.0), 6), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
(0.986614, 0.0, -1.0)
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Profile:
    name: str
    tp: float
    fp: float
    fn: float


PROFILES = {
    p.name: p
    for p in (
        Profile("standard", 1.0, 0.11, 1.0),
        Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
        Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
    )
}

PROBATION_PERCENT = 0.15


def scaled_sigmoid(p: float) -> float:
    if p > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def probation_rows(n: int) -> int:
    return min(math.floor(PROBATION_PERCENT * n), int(PROBATION_PERCENT * 5000))


def _ts(s: str) -> str:
    """Timestamps as NAB writes them (``YYYY-MM-DD HH:MM:SS``; labels carry ``.000000``)."""
    s = s.strip()
    return s[:-7] if s.endswith(".000000") else s


@dataclass
class FileRows:
    """One file's scorable rows: anomaly score, window (-1 outside every window) and row weights."""

    name: str
    scores: np.ndarray  # anomaly score per scorable row
    window: np.ndarray  # index of the row's window, -1 outside
    unweighted: np.ndarray  # S(p) inside a window (before tp / S(-1)); the fp position value outside
    windows: int  # windows with at least one scorable row
    total: int  # scorable rows

    def value(self, profile: Profile) -> np.ndarray:
        """Each row's contribution when detected, under ``profile``."""
        inside = self.window >= 0
        return np.where(inside, self.unweighted * profile.tp / scaled_sigmoid(-1.0), self.unweighted * profile.fp)


def file_rows(name: str, timestamps: list[str], scores: Iterable[float], windows: list[list[str]]) -> FileRows:
    """Label every row of a file the way NAB's sweep does and keep the scorable ones."""
    score_arr = np.asarray(list(scores), dtype=float)
    n = len(timestamps)
    if len(score_arr) != n:
        raise ValueError(f"{name}: {n} timestamps but {len(score_arr)} scores")
    index = {t: i for i, t in enumerate(timestamps)}
    limits = []
    for w in windows:
        a, b = _ts(w[0]), _ts(w[1])
        if a not in index or b not in index:
            raise ValueError(f"{name}: window {w} does not start and end on rows of the file")
        limits.append((index[a], index[b]))
    limits.sort()
    window = np.full(n, -1, dtype=np.int64)
    unweighted = np.empty(n, dtype=float)
    prev_right: int | None = None
    prev_width = 0
    k = 0
    i = 0
    while i < n:
        if k < len(limits) and i == limits[k][0]:
            left, right = limits[k]
            width = right - left + 1
            for j in range(left, right + 1):
                window[j] = k
                unweighted[j] = scaled_sigmoid(-(right - j + 1) / width)
            prev_right, prev_width = right, width
            k += 1
            i = right + 1
            continue
        if prev_right is None:
            unweighted[i] = -1.0
        else:
            unweighted[i] = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1))
        i += 1
    start = probation_rows(n)
    window = window[start:]
    return FileRows(
        name,
        score_arr[start:],
        window,
        unweighted[start:],
        len(set(window[window >= 0].tolist())),
        n - start,
    )


@dataclass(frozen=True)
class FileScore:
    name: str
    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    total: int


def score_file(rows: FileRows, profile: Profile, threshold: float) -> FileScore:
    """One file's score and row counts with detections at ``anomaly_score >= threshold``."""
    detected = rows.scores >= threshold
    inside = rows.window >= 0
    value = rows.value(profile)
    total = float(value[detected & ~inside].sum())
    for k in set(rows.window[inside].tolist()):
        hit = detected & (rows.window == k)
        total += float(value[hit].max()) if hit.any() else -profile.fn
    tp = int((detected & inside).sum())
    fp = int((detected & ~inside).sum())
    fn = int((~detected & inside).sum())
    tn = int((~detected & ~inside).sum())
    return FileScore(rows.name, total, tp, tn, fp, fn, rows.total)


@dataclass(frozen=True)
class CorpusScore:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float

    @property
    def normalised(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def best_threshold(files: list[FileRows], profile: Profile) -> CorpusScore:
    """Sweep every distinct anomaly score (descending) and keep the best corpus total.

    Starts above every score (nothing detected, every window a miss); at each distinct score the
    rows at that score become detections, a window keeps its best value, outside rows add theirs.
    """
    scores = np.concatenate([f.scores for f in files])
    values = np.concatenate([f.value(profile) for f in files])
    offset = 0
    window_ids = []
    for f in files:
        w = f.window.copy()
        w[w >= 0] += offset
        offset += int(f.window.max(initial=-1)) + 1
        window_ids.append(w)
    wid = np.concatenate(window_ids)
    n_windows = len(set(wid[wid >= 0].tolist()))
    null = -n_windows * profile.fn
    perfect = n_windows * profile.tp
    order = np.argsort(-scores, kind="stable")
    best_val = np.full(offset, -profile.fn)
    total = null
    best = CorpusScore(profile.name, 1.1, total, null, perfect)
    ss, vv, ww = scores[order], values[order], wid[order]
    i, n = 0, len(ss)
    while i < n:
        t = ss[i]
        while i < n and ss[i] == t:
            k = ww[i]
            if k < 0:
                total += vv[i]
            elif vv[i] > best_val[k]:
                total += vv[i] - best_val[k]
                best_val[k] = vv[i]
            i += 1
        if total > best.raw:
            best = CorpusScore(profile.name, float(t), total, null, perfect)
    return best


# -- files ---------------------------------------------------------------------------------
def read_scores(path: Path) -> tuple[list[str], list[float]]:
    """``timestamp`` and ``anomaly_score`` columns of a results file (CSV, optionally gzip)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:  # type: ignore[operator]
        reader = csv.DictReader(fh)
        ts, scores = [], []
        for row in reader:
            ts.append(_ts(row["timestamp"]))
            scores.append(float(row["anomaly_score"]))
    return ts, scores


def result_path(results: Path, key: str) -> Path:
    """Where the results of data file ``key`` (``<category>/<file>.csv``) are: NAB's layout or a flat one."""
    category, file = key.split("/", 1)
    for p in (results / category / file, results / f"{category}__{file}", results / f"{category}__{file}.gz"):
        if p.exists():
            return p
    raise FileNotFoundError(f"no results for {key} under {results}")


def load_corpus(results: Path, labels: Path) -> list[FileRows]:
    windows = json.loads(labels.read_text())
    files = []
    for key in sorted(windows):
        ts, scores = read_scores(result_path(results, key))
        files.append(file_rows(key, ts, scores, windows[key]))
    return files
