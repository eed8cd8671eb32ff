"""``type: river``: River's own models from the config, checked at load and run end to end."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pytest

from agent.backtest import run_backtest
from agent.config import ConfigError, load_config_text
from tests.agent.decoders.test_bedrock import log

CONFIG = """
sources:
  tokens: {{type: file, path: {inbox}, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}
detectors:
  spend:
    type: river
    model: {model}
    params: {params}
    signal: token_cost_usd
    group_by: [team]
    warmup_points: 48
    min_impact_usd: 1
sinks: {{console: {{type: console}}}}
state: {{type: memory}}
dead_letter: {{path: {inbox}/../dlq.jsonl}}
pipeline: {{max_age_days: 3650}}
"""


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@pytest.mark.parametrize(
    ("model", "params", "finds_it"),
    [
        ("time_series.HoltWinters", "{alpha: 0.3, beta: 0.01, gamma: 0.3, seasonality: 24}", True),
        ("anomaly.GaussianScorer", "{grace_period: 48}", True),
        # Half-Space Trees on one feature: a value past the range it has seen lands in its edge leaf, which
        # scores like the quiet hours (River's HST suits multivariate input): it runs, it does not find this.
        ("anomaly.HalfSpaceTrees", "{n_trees: 15, height: 6, window_size: 96, seed: 7}", False),
    ],
)
def test_a_river_model_from_the_config_runs_end_to_end(tmp_path: Path, model: str, params: str, finds_it: bool) -> None:
    """Ten days of a team's hourly Bedrock calls (a daily cycle, noise), then one hour with 40 times the calls: the
    River model named in the config pages that hour, through the whole pipeline (file → decoder → windows → River →
    alert), and nothing in the quiet days after its warm-up."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rng = random.Random(5)
    t0 = 1_790_000_000.0 - 1_790_000_000.0 % 86400
    spike = t0 + 9 * 86400 + 14 * 3600
    lines = []
    for h in range(10 * 24):
        hour = t0 + h * 3600
        n = 10 + (6 if 9 <= h % 24 <= 18 else 0) + rng.randint(0, 2)
        if hour == spike:
            n *= 40
        lines += [log(timestamp=_stamp(hour + 60 * (i % 59)), requestId=f"r{h}-{i}") for i in range(n)]
    (inbox / "logs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = load_config_text(CONFIG.format(inbox=inbox, model=model, params=params))
    out = tmp_path / "alerts.jsonl"
    summary = run_backtest(cfg, [str(inbox)], str(out))
    assert summary["points"] == 240 and summary["errors"] == {} and summary["dead_letter"] == 0
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    firing = [d for d in docs if d["status"] == "firing"]
    if not finds_it:
        return
    assert firing, docs
    assert firing[0]["window_start"] == _stamp(spike), [d["window_start"] for d in firing]
    assert firing[0]["detector"] == "spend" and firing[0]["series"] == {"team": "search"}
    assert len({d["id"] for d in firing}) <= 2, [d["window_start"] for d in firing]


def test_models_and_parameters_are_checked_at_load_with_their_path() -> None:
    text = """
sources: {s: {type: file, path: /tmp/x, decoder: {type: bedrock}}}
detectors:
  a: {type: river, model: anomaly.NoSuchThing, signal: token_cost_usd}
  b: {type: river, model: time_series.HoltWinters, params: {alpha: 0.3, seasonalty: 24}, signal: token_cost_usd}
  c: {type: river, model: anomaly.LODA, signal: token_cost_usd}
  d: {type: river, model: linear_model.LinearRegression, signal: token_cost_usd}
  e: {type: river, model: time_series.HoltWinters, signal: token_cost_usd}
  f: {type: river, model: anomaly.HalfSpaceTrees, params: {n_trees: ten}, signal: token_cost_usd}
sinks: {c: {type: console}}
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(text)
    errors = "\n".join(exc.value.errors)
    assert "detectors.a.model: river.anomaly.NoSuchThing does not exist" in errors
    assert (
        "detectors.b.params: river.time_series.HoltWinters takes no parameter 'seasonalty' (did you mean "
        "'seasonality'?)" in errors
    )
    assert "detectors.c: set score_threshold: river.anomaly.LODA has no default" in errors
    assert "detectors.d.model: river.linear_model.LinearRegression is neither" in errors
    # Without params: a required one is missing (not a crash at the first window).
    assert "detectors.e.params: river.time_series.HoltWinters: missing a required argument: 'alpha'" in errors
    # A value River takes at construction but refuses when it learns: found by a trial series at load.
    assert "detectors.f: river.anomaly.HalfSpaceTrees with these params fails on a trial series: TypeError" in errors


def test_a_forecaster_never_expects_negative_spend() -> None:
    """Holt's trend after a spike runs below zero; a series that was never negative (spend) is never expected below
    zero, so a normal hour after it is not paged against a negative forecast."""
    from detectors.river_detector import RiverDetector

    det = RiverDetector("time_series.HoltWinters", {"alpha": 0.8, "beta": 0.8})
    for t, y in enumerate([1.0] * 30 + [40.0, 1.0, 1.0, 1.0]):
        det.learn_one({"t": t, "y": y})
    raw = float(det.model.forecast(horizon=1)[0])
    expected, lower, _upper = det.forecast_one({"t": 35, "y": 1.0})
    assert raw < 0 and expected == 0.0 and lower == 0.0
    assert det.score_one({"t": 35, "y": 1.0}) < det.threshold
