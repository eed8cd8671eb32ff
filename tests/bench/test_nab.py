"""The NAB-compatible scorer reproduces the published per-file scores; a small NAB smoke run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from bench.nab import detect, scoring
from bench.nab.__main__ import main

DETECTORS = ("numenta", "windowedGaussian")


def published(nab: Path, detector: str) -> list[dict[str, str]]:
    with open(nab / "reference" / detector / "published_scores.csv", newline="") as fh:
        return list(csv.DictReader(fh))


pytestmark = pytest.mark.xdist_group("test_nab")  # one worker: its module fixture is built once


@pytest.fixture(scope="module")
def nab(data_dir: Path) -> Path:
    return data_dir / "nab"


@pytest.mark.parametrize("detector", DETECTORS)
def test_every_published_per_file_score_is_reproduced(nab: Path, detector: str) -> None:
    files = {f.name: f for f in scoring.load_corpus(nab / "reference" / detector, nab / "combined_windows.json")}
    rows = published(nab, detector)
    assert len(rows) == 3 * len(files) == 84
    for row in rows:
        got = scoring.score_file(files[row["File"]], scoring.PROFILES[row["Profile"]], float(row["Threshold"]))
        where = f"{detector} {row['Profile']} {row['File']}"
        assert got.score == pytest.approx(float(row["Score"]), abs=1e-9), where
        assert (got.tp, got.tn, got.fp, got.fn, got.total) == tuple(
            int(row[k]) for k in ("TP", "TN", "FP", "FN", "Total_Count")
        ), where


def test_the_corpus_threshold_is_the_best_one(nab: Path) -> None:
    """The sweep's optimum beats (or ties) every published threshold, and scoring at it agrees."""
    files = scoring.load_corpus(nab / "reference" / "numenta", nab / "combined_windows.json")
    for name, profile in scoring.PROFILES.items():
        best = scoring.best_threshold(files, profile)
        total_at_best = sum(scoring.score_file(f, profile, best.threshold).score for f in files)
        assert total_at_best == pytest.approx(best.raw)
        published_t = float(next(r for r in published(nab, "numenta") if r["Profile"] == name)["Threshold"])
        assert best.raw >= sum(scoring.score_file(f, profile, published_t).score for f in files) - 1e-9
        assert best.null == -36 * profile.fn and best.perfect == 36
    assert 70 < scoring.best_threshold(files, scoring.PROFILES["standard"]).normalised < 75  # HTM: 70.5 on all 58


def test_window_and_false_positive_weights_by_hand() -> None:
    ts = [f"2020-01-01 00:{m:02d}:00" for m in range(40)]
    windows = [[ts[20] + ".000000", ts[29] + ".000000"]]
    std = scoring.PROFILES["standard"]
    scores = [0.0] * 40
    rows = scoring.file_rows("f", ts, scores, windows)
    assert rows.total == 40 - 6  # probation: floor(0.15 * 40)
    assert scoring.score_file(rows, std, 0.5).score == -1.0  # missed window
    scores[25] = scores[27] = 1.0  # two detections: the earlier one counts
    s = scoring.score_file(scoring.file_rows("f", ts, scores, windows), std, 0.5)
    assert s.score == pytest.approx(scoring.scaled_sigmoid(-(29 - 25 + 1) / 10) / scoring.scaled_sigmoid(-1.0))
    assert (s.tp, s.fp) == (2, 0)
    scores = [0.0] * 40
    scores[10] = 1.0  # before any window: a full false positive
    scores[31] = 1.0  # just after the window: costs less the closer it is
    s = scoring.score_file(scoring.file_rows("f", ts, scores, windows), std, 0.5)
    assert s.score == pytest.approx(-1.0 - 0.11 + 0.11 * scoring.scaled_sigmoid(2 / 9))
    assert s.fp == 2 and -1.11 - 0.11 < s.score < -1.11


def test_nab_smoke_run_with_the_agents_default_detector(nab: Path, tmp_path: Path, capsys) -> None:
    """Four files (both directions of level shift, spikes, no anomaly) through the CLI: detect, then score."""
    data = tmp_path / "data"
    picked = [
        "artificialNoAnomaly/art_daily_small_noise.csv",
        "artificialWithAnomaly/art_daily_jumpsup.csv",
        "artificialWithAnomaly/art_daily_jumpsdown.csv",
        "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    ]
    for key in picked:
        (data / key).parent.mkdir(parents=True, exist_ok=True)
        (data / key).write_bytes((nab / "data" / key).read_bytes())
    out = tmp_path / "out"
    assert main(["detect", "--data", str(data), "--out", str(out)]) == 0
    for key in picked:
        with open(out / key, newline="") as fh:
            rows = list(csv.DictReader(fh))
        src = detect.read_series(nab / "data" / key)
        assert [r["timestamp"] for r in rows] == src[0]
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 and math.isfinite(float(r["value"])) for r in rows)
    windows = json.loads((nab / "combined_windows.json").read_text())
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps({k: windows[k] for k in picked}))
    files = scoring.load_corpus(out, labels)
    std = scoring.PROFILES["standard"]
    best = scoring.best_threshold(files, std)
    at_own = {f.name: scoring.score_file(f, std, 0.5) for f in files}  # the detector's own threshold
    assert at_own["artificialNoAnomaly/art_daily_small_noise.csv"].fp == 0
    for key in picked[1:]:
        assert at_own[key].tp > 0, key  # every labelled window found at the agent's threshold
    assert best.normalised > 70
    capsys.readouterr()
    assert main(["score", "--results", str(out), "--labels", str(labels)]) == 0
    printed = capsys.readouterr().out
    assert "standard" in printed and f"{best.normalised:7.2f}" in printed
