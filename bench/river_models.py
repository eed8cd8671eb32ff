"""River's stock models next to the agent's own detector, on NAB (``make bench-river``).

For each detector of ``bench/nab/river.yaml`` (the agent's ``seasonal`` and ``type: river`` models, built as the
agent builds them): NAB standard / low-FP / low-FN with the best corpus threshold, µs per point (score + learn),
the largest pickled state, and — so that over-fitting shows — each category scored three ways: with its own best
threshold, *leave one category out* (the threshold that is best on the other categories, applied to it), and at the
threshold the agent runs at (0.5: tuned on no category).

    python -m bench.river_models --nab ../shared/data/nab [--only seasonal gaussian_scorer] [--out DIR]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from bench.nab import detect, scoring

CONFIG = str(Path(__file__).parent / "nab" / "river.yaml")


SHIPPED = 0.5  # the threshold every detector runs at in the agent (a River score in deviations is mapped to 0.5 there)


def category_scores(
    files: list[scoring.FileRows], profile: scoring.Profile
) -> dict[str, tuple[float, float, float]]:
    """category → (normalised score with its own best threshold, with the threshold best on the others, at the
    threshold the agent runs at: none tuned); a category without anomaly windows has no normalised score: its raw
    one (0 = no false positive, negative per false one)."""
    cats = sorted({f.name.split("/", 1)[0] for f in files})
    out = {}
    for c in cats:
        mine = [f for f in files if f.name.startswith(c + "/")]
        others = [f for f in files if not f.name.startswith(c + "/")]
        own = scoring.best_threshold(mine, profile)
        t = scoring.best_threshold(others, profile).threshold
        raw = sum(scoring.score_file(f, profile, t).score for f in mine)
        loco = scoring.CorpusScore(profile.name, t, raw, own.null, own.perfect)
        raw = sum(scoring.score_file(f, profile, SHIPPED).score for f in mine)
        shipped = scoring.CorpusScore(profile.name, SHIPPED, raw, own.null, own.perfect)
        if own.perfect == own.null:  # no anomaly window (artificialNoAnomaly): only false positives cost; raw score
            out[c] = (own.raw, loco.raw, shipped.raw)
        else:
            out[c] = (own.normalised, loco.normalised, shipped.normalised)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nab", type=Path, required=True, help="NAB folder with data/ and combined_windows.json")
    ap.add_argument("--out", type=Path, default=Path("bench/out/river"), help="results per detector")
    ap.add_argument("--only", nargs="+", help="detectors of bench/nab/river.yaml (default: all)")
    a = ap.parse_args(argv)
    from agent.config import load_config

    names = a.only or list(load_config(CONFIG).detectors)
    labels = a.nab / "combined_windows.json"
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d')}")
    rows = []
    for name in names:
        stats = detect.run(a.nab / "data", a.out / name, CONFIG, name)
        files = scoring.load_corpus(a.out / name, labels)
        corpus = {p: scoring.best_threshold(files, scoring.PROFILES[p]).normalised for p in scoring.PROFILES}
        cats = category_scores(files, scoring.PROFILES["standard"])
        rows.append((name, corpus, stats, cats))
        print(
            f"{name:28s} "
            + " ".join(f"{p} {v:6.2f}" for p, v in corpus.items())
            + f"  {stats.us_per_point:6.1f} µs/point  {stats.state_bytes:6d} bytes  "
            + "  ".join(f"{c}: {own:.1f} / loco {lo:.1f} / at {SHIPPED} {at:.1f}" for c, (own, lo, at) in cats.items()),
            flush=True,
        )
    print()
    profiles = list(scoring.PROFILES)
    cats = sorted(rows[0][3]) if rows else []
    print(
        "| detector | "
        + " | ".join(profiles)
        + " | µs/point | pickled bytes | "
        + " | ".join(f"{c} own / LOCO / at {SHIPPED}" for c in cats)
        + " |"
    )
    print("|---" * (len(profiles) + 3 + len(cats)) + "|")
    for name, corpus, stats, cat in rows:
        print(
            f"| {name} | "
            + " | ".join(f"{corpus[p]:.2f}" for p in profiles)
            + f" | {stats.us_per_point:.1f} | {stats.state_bytes:,} | "
            + " | ".join(f"{cat[c][0]:.1f} / {cat[c][1]:.1f} / {cat[c][2]:.1f}" for c in cats)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
