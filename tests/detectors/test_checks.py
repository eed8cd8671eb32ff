"""Shared checks, run for every registered detector (River's ``check_estimator`` idea)."""

from __future__ import annotations

import math
import pickle
import random
import tracemalloc
from typing import Any

import pytest

from agent.registry import components

H = 3600.0
T0 = 1_790_000_000.0 - 1_790_000_000.0 % 86400  # a midnight

CONFIGS: dict[str, dict[str, Any]] = {
    "seasonal": {"signal": "cost_usd"},
    "threshold": {"signal": "cost_usd", "upper": 180.0},
    "budget": {"signal": "cost_usd", "monthly_budget_usd": 100 * 24 * 31 * 1.1, "min_elapsed_days": 1},
    "river": {"signal": "cost_usd", "model": "anomaly.GaussianScorer", "params": {"grace_period": 48}},
}


def test_every_detector_has_a_check_config() -> None:
    assert set(components("detector")) == set(CONFIGS)


def make(kind: str) -> Any:
    cfg_cls, cls = components("detector")[kind]
    return cls.from_config(cfg_cls(type=kind, **CONFIGS[kind]))


def series(n: int, seed: int = 3) -> list[dict[str, float]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + i * H
        hour = i % 24
        y = 100 * (1 + 0.5 * math.sin(2 * math.pi * (hour - 6) / 24)) * rng.uniform(0.9, 1.1)
        out.append({"t": t, "t_end": t + H, "y": y})
    return out


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_pickle_round_trip_keeps_state(kind: str) -> None:
    det = make(kind)
    xs = series(24 * 10)
    for x in xs[:-1]:
        det.score_one(x)
        det.learn_one(x)
    clone = pickle.loads(pickle.dumps(det))
    assert clone.score_one(xs[-1]) == det.score_one(xs[-1])
    assert clone.forecast_one(xs[-1]) == det.forecast_one(xs[-1])


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_clone_is_fresh_with_the_same_parameters(kind: str) -> None:
    det = make(kind)
    for x in series(24 * 10):
        det.learn_one(x)
    fresh = det.clone()
    assert fresh._get_params() == det._get_params()
    if kind == "river":  # River's models hold an unseeded random state: fresh means nothing learned
        assert fresh.n_learned == 0 and det.n_learned == 24 * 10
        assert fresh.forecast_one(series(1)[0]) == make(kind).forecast_one(series(1)[0])
    else:
        assert pickle.dumps(fresh) == pickle.dumps(make(kind))


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_detects_injected_spikes_better_than_chance(kind: str) -> None:
    det = make(kind)
    xs = series(24 * 28)
    rng = random.Random(11)
    spikes = set(rng.sample(range(24 * 10, 24 * 28), 12))
    normal_scores, spike_scores, flagged = [], [], []
    for i, x in enumerate(xs):
        if i in spikes:
            x = {**x, "y": x["y"] * 4}
        s = det.score_one(x)
        if i >= 24 * 10:
            (spike_scores if i in spikes else normal_scores).append(s)
            if i in spikes:
                flagged.append(s >= det.threshold or (hasattr(det, "excursion") and det.excursion(x)))
        det.learn_one(x)
    # Probability that a spike outscores a normal point (AUC): chance is 0.5.
    wins = sum((s > n) + 0.5 * (s == n) for s in spike_scores for n in normal_scores)
    auc = wins / (len(spike_scores) * len(normal_scores))
    # A budget score is cumulative (month to date), so every point after a spike scores higher too.
    assert auc > (0.6 if kind == "budget" else 0.9), auc
    # Spikes right after another score lower (one page per incident); `excursion` still flags them.
    assert sum(flagged) >= len(spike_scores) // 2 or kind == "budget"


def test_seasonal_state_per_series_is_small() -> None:
    proto = make("seasonal")
    xs = series(24 * 8)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    models = [proto.clone() for _ in range(2000)]
    for m in models:
        for x in xs[:30]:
            m.learn_one(x)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_series = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(models)
    assert per_series < 4096, per_series
    assert len(pickle.dumps(models[0])) < 2048
