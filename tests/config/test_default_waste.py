"""The default config's AI waste detectors (``prompt_bloat``, ``call_rate``, ``prompt_cache``) on a team's hourly
token usage, as every token decoder emits it: each pages its own incident, with what it costs an hour, and none
pages an ordinary month."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from agent.config import load_config
from agent.decoders.bedrock import SIGNALS
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from agent.registry import components

H = 3600.0
D = 86400.0
DAY = 24  # incidents start on day 24, 10:00
P_IN, P_CACHED, P_OUT = 3e-6, 0.3e-6, 15e-6  # USD per token
WASTE = ("prompt_bloat", "call_rate", "prompt_cache")


def _runners() -> list[DetectorRunner]:
    cfg = load_config(None)
    out = []
    for name in WASTE:
        d = cfg.detectors[name]
        out.append(DetectorRunner(name, d, components("detector")[d.type][1].from_config(d), cfg.alerting))
    return out


Incident = Callable[[float], tuple[float, float, float]]  # t → (calls ×, input tokens a call ×, cached share)


def _team(calls_per_hour: float, incident: Incident, seed: int) -> list[dict[str, Any]]:
    """A team's calls hour by hour for 30 days (office hours busier, weekends quieter): 2,000 input tokens a call,
    60 % of them read from the prompt cache, 300 output tokens; ``incident`` from day 24, 10:00."""
    rng = random.Random(seed)
    runners = _runners()
    docs: list[dict[str, Any]] = []
    c = cell(make_dims({"team": "t", "model": "m"}), SIGNALS)
    for h in range(30 * 24):
        t = h * H
        busy = 1.0 + 0.5 * ((h % 24) in range(8, 20)) - 0.4 * ((h // 24) % 7 in (5, 6))
        k_calls, k_tokens, share = incident(t) if t >= DAY * D + 10 * H else (1.0, 1.0, 0.6)
        calls = max(0, round(rng.gauss(calls_per_hour * busy * k_calls, (calls_per_hour * busy) ** 0.5)))
        prompt = calls * 2000 * k_tokens * rng.lognormvariate(0, 0.05)
        cached = prompt * share * rng.uniform(0.95, 1.05) if share else 0.0
        fresh, out = prompt - cached, calls * 300 * rng.lognormvariate(0, 0.05)
        cost = fresh * P_IN + cached * P_CACHED + out * P_OUT
        values = [calls, fresh, out, cached, prompt + out, cost, cached * (P_IN - P_CACHED)]
        for r in runners:
            if calls:
                r.add_bucket(t, {c: list(values)})
            docs += [e for e in r.close_until(t + H)[1] if e["status"] == "firing"]
    return docs


def _first(docs: list[dict[str, Any]], detector: str) -> dict[str, Any]:
    mine = [d for d in docs if d["detector"] == detector]
    assert mine, f"{detector} did not page; paged: {sorted({d['detector'] for d in docs})}"
    return min(mine, key=lambda d: d["window_start"])


@pytest.mark.parametrize("calls_per_hour", [60.0, 4000.0], ids=["small-team", "big-team"])
def test_prompt_bloat_pages_with_its_extra_spend(calls_per_hour: float) -> None:
    docs = _team(calls_per_hour, lambda t: (1.0, 2.5, 0.6), seed=1)  # 2.5× the prompt a call, for good
    first = _first(docs, "prompt_bloat")
    assert "1970-01-25T10" <= first["window_start"] < "1970-01-26T10"  # within a day of it, nothing before
    assert first["unit"] == "tokens per request" and first["direction"] == "up"
    assert first["projected_hourly_impact_usd"] == pytest.approx(first["impact_usd"])  # hourly windows
    assert {d["detector"] for d in docs} == {"prompt_bloat"}  # as many calls, the same cached share


@pytest.mark.parametrize("calls_per_hour", [60.0, 4000.0], ids=["small-team", "big-team"])
def test_a_loop_pages_call_rate(calls_per_hour: float) -> None:
    docs = _team(calls_per_hour, lambda t: (10.0, 1.0, 0.6) if t < DAY * D + 13 * H else (1.0, 1.0, 0.6), seed=2)
    first = _first(docs, "call_rate")
    assert first["window_start"] == "1970-01-25T10:00:00Z"  # its first hour
    assert first["impact_usd"] > 0
    assert {d["detector"] for d in docs} == {"call_rate"}  # the calls did not change: no bloat, no lost cache


def test_a_lost_prompt_cache_pages_with_what_it_no_longer_saves() -> None:
    docs = _team(4000.0, lambda t: (1.0, 1.0, 0.0), seed=3)  # the cache stops hitting, for good
    first = _first(docs, "prompt_cache")
    assert "1970-01-25T10" <= first["window_start"] < "1970-01-26T10"
    assert first["direction"] == "down"
    # What the cache saved an office hour: 6,000 calls × 1,200 cached tokens × $2.70 per 1M ≈ $19.
    assert -30 < first["impact_usd"] < -10, first["summary"]
    assert {d["detector"] for d in docs} == {"prompt_cache"}


@pytest.mark.parametrize("calls_per_hour", [60.0, 4000.0], ids=["small-team", "big-team"])
def test_an_ordinary_month_pages_none_of_them(calls_per_hour: float) -> None:
    assert _team(calls_per_hour, lambda t: (1.0, 1.0, 0.6), seed=4) == []
