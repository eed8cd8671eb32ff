"""Numenta Anomaly Benchmark: run the agent's detector, score results.

python -m bench.nab detect --data DIR --out DIR [--config FILE] [--detector NAME]
python -m bench.nab score --results DIR --labels combined_windows.json [--per-file] [--threshold T]
python -m bench.nab run --nab DIR --out DIR      # detect + score (make bench-quality)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.nab import detect, scoring


def _score(results: Path, labels: Path, per_file: bool, threshold: float | None, profile_names: list[str]) -> int:
    files = scoring.load_corpus(results, labels)
    windows = sum(f.windows for f in files)
    print(f"{len(files)} files, {windows} windows, {sum(f.total for f in files)} scored rows")
    print(f"{'profile':22s} {'threshold':>10s} {'raw':>8s} {'null':>7s} {'perfect':>7s} {'score':>7s}")
    for name in profile_names:
        profile = scoring.PROFILES[name]
        best = scoring.best_threshold(files, profile)
        if threshold is not None:
            raw = sum(scoring.score_file(f, profile, threshold).score for f in files)
            best = scoring.CorpusScore(name, threshold, raw, best.null, best.perfect)
        print(
            f"{name:22s} {best.threshold:10.6f} {best.raw:8.3f} {best.null:7.1f} {best.perfect:7.1f} "
            f"{best.normalised:7.2f}"
        )
        if per_file:
            print(f"  {'file':58s} {'score':>8s} {'TP':>4s} {'TN':>5s} {'FP':>4s} {'FN':>4s} {'total':>5s}")
            for f in files:
                s = scoring.score_file(f, profile, best.threshold)
                print(f"  {f.name:58s} {s.score:8.3f} {s.tp:4d} {s.tn:5d} {s.fp:4d} {s.fn:4d} {s.total:5d}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.nab", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("detect", help="run the agent's detector over NAB-format data")
    d.add_argument("--data", type=Path, required=True, help="directory with <category>/<file>.csv")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--config", help="agent config (default: the embedded default)")
    d.add_argument("--detector", default=detect.DEFAULT_DETECTOR, help="detector name in the config")
    s = sub.add_parser("score", help="NAB-compatible scoring of results")
    s.add_argument("--results", type=Path, required=True)
    s.add_argument("--labels", type=Path, required=True, help="combined_windows.json")
    s.add_argument("--per-file", action="store_true")
    s.add_argument("--threshold", type=float, help="score at this threshold instead of the best one")
    s.add_argument("--profile", action="append", choices=sorted(scoring.PROFILES))
    r = sub.add_parser("run", help="detect + score over a NAB directory (data/, combined_windows.json)")
    r.add_argument("--nab", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--config")
    r.add_argument("--detector", default=detect.DEFAULT_DETECTOR)
    r.add_argument("--per-file", action="store_true")
    a = ap.parse_args(argv)
    profiles = list(scoring.PROFILES)
    if a.cmd in ("detect", "run"):
        data = a.data if a.cmd == "detect" else a.nab / "data"
        stats = detect.run(data, a.out, a.config, a.detector)
        print(
            f"detector {a.detector}: {stats.files} files, {stats.points} points, "
            f"{stats.us_per_point:.1f} µs/point (score + learn), largest pickled state {stats.state_bytes} bytes"
        )
        if a.cmd == "run":
            return _score(a.out, a.nab / "combined_windows.json", a.per_file, None, profiles)
        return 0
    return _score(a.results, a.labels, a.per_file, a.threshold, a.profile or profiles)


if __name__ == "__main__":
    sys.exit(main())
