"""The embedded default config (config/default.yaml) on a small team's incidents: its token detectors page a
$300-a-month team's model switch and prompt bloat, and stay quiet on its ordinary weeks."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from agent.config import load_config
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from agent.registry import components

H = 3600.0
D = 86400.0
SIG = ("token_cost_usd", "tokens")
SWITCH_DAY = 24


def _runners() -> list[DetectorRunner]:
    cfg = load_config(None)
    out = []
    for name in ("token_spend", "unit_cost"):
        d = cfg.detectors[name]
        out.append(DetectorRunner(name, d, components("detector")[d.type][1].from_config(d), cfg.alerting))
    return out


def _small_team(monthly: float, incident: Callable[[float], tuple[float, float, str]], seed: int) -> list[dict]:
    """A team spending ``monthly`` dollars a month in single calls ($0.004 each, ~1 million tokens a dollar), hour
    by hour for 30 days; ``incident(t) -> (cost factor, token factor, model)`` from day SWITCH_DAY."""
    rng = random.Random(seed)
    per_call = 0.004
    runners = _runners()
    docs: list[dict[str, Any]] = []
    for h in range(30 * 24):
        t = h * H
        calls_per_hour = monthly / (30 * 24) / per_call * (1.0 + 0.3 * ((h % 24) in range(8, 20)))
        cost_k, tok_k, model = incident(t) if t >= SWITCH_DAY * D else (1.0, 1.0, "haiku")
        calls = sum(rng.random() < calls_per_hour / 60 for _ in range(60))  # arrivals minute by minute
        usd = calls * per_call * rng.lognormvariate(0, 0.2)
        bucket = {cell(make_dims({"team": "small", "model": model}), SIG): [usd * cost_k, usd * 4e6 * tok_k]}
        for r in runners:
            if calls:
                r.add_bucket(t, bucket)
            docs += [e for e in r.close_until(t + H)[1] if e["status"] == "firing"]
    return docs


def test_a_small_teams_model_switch_pages_with_the_default_config() -> None:
    docs = _small_team(300.0, lambda t: (2.0, 1.0, "sonnet"), seed=1)  # each call costs twice: +$10 a day
    assert docs, "the model switch was not alerted"
    first = min(d["window_start"] for d in docs)
    assert first >= "1970-01-25"  # nothing before the switch
    assert first < "1970-01-27"  # within two days of it
    assert {d["series"]["team"] for d in docs} == {"small"}


def test_a_small_teams_prompt_bloat_pages_with_the_default_config() -> None:
    docs = _small_team(300.0, lambda t: (2.5, 2.5, "haiku"), seed=2)  # 2.5× the tokens a call: +$15 a day
    assert docs, "the prompt bloat was not alerted"
    assert min(d["window_start"] for d in docs) >= "1970-01-25"
    assert any(d["detector"] == "token_spend" for d in docs)  # the unit cost did not change: the spend did


def test_a_small_teams_ordinary_month_pages_nothing() -> None:
    assert _small_team(300.0, lambda t: (1.0, 1.0, "haiku"), seed=3) == []
    assert _small_team(12.0, lambda t: (1.0, 1.0, "haiku"), seed=4) == []
