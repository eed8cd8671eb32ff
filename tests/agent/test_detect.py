from __future__ import annotations

import math
import pickle

import pytest
from pydantic import ValidationError

from agent.config import AlertingConfig
from agent.detect import DetectorRunner, alert_id
from agent.model import cell, make_dims
from detectors.seasonal import SeasonalConfig, SeasonalDetector

SIG = ("token_cost_usd", "tokens")
H = 3600.0


def runner(**kw: object) -> DetectorRunner:
    cfg = SeasonalConfig(
        type="seasonal",
        signal="token_cost_usd",
        group_by=["team"],
        window_seconds=3600,
        warmup_points=48,
        min_impact_usd=1.0,
        **kw,
    )  # type: ignore[arg-type]
    return DetectorRunner("spend", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())


def feed(r: DetectorRunner, hours: range, value: object) -> list[dict]:
    events: list[dict] = []
    for h in hours:
        for model, share in (("haiku", 0.3), ("sonnet", 0.7)):
            c = cell(make_dims({"team": "a", "model": model}), SIG)
            v = value(h) if callable(value) else value
            r.add_bucket(h * H, {c: [v * share, 1000.0]})
        _points, ev = r.close_until((h + 1) * H)
        events.extend(ev)
    return events


def test_spike_fires_once_resolves_and_names_the_contributor() -> None:
    r = runner()
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    assert feed(r, range(0, 24 * 9), base) == []
    events = feed(r, range(24 * 9, 24 * 9 + 3), lambda h: base(h) * 6)
    events += feed(r, range(24 * 9 + 3, 24 * 9 + 8), base)
    assert [e["status"] for e in events if e["status"] == "resolved"] == ["resolved"]
    firing = [e for e in events if e["status"] == "firing"]
    assert len({e["id"] for e in firing}) == 1
    doc = firing[0]
    assert doc["series"] == {"team": "a"} and doc["impact_usd"] > 300
    assert doc["observed"] > doc["upper"] > doc["expected"] > doc["lower"]
    assert doc["top_contributors"][0]["dimensions"] == {"model": "sonnet"}
    assert doc["id"] == alert_id("spend", (("team", "a"),), 24 * 9 * H)


def test_replayed_windows_are_not_learned_twice() -> None:
    r = runner()
    feed(r, range(0, 100), 50.0)
    snap = pickle.loads(pickle.dumps(r.snapshot()))
    n = r.models[("a",)].n_learned
    feed(r, range(90, 100), 500.0)  # a replay of windows already learned: ignored
    assert r.models[("a",)].n_learned == n
    r2 = runner()
    r2.restore(snap)
    assert r2.models[("a",)].n_learned == n


def test_series_without_data_are_forgotten() -> None:
    r = runner(series_ttl_windows=24, fill_missing=False)
    c_a = cell(make_dims({"team": "a", "model": "m"}), SIG)
    c_b = cell(make_dims({"team": "b", "model": "m"}), SIG)
    for h in range(100):
        r.add_bucket(h * H, {c_b: [5.0, 1.0], **({c_a: [5.0, 1.0]} if h < 10 else {})})
        r.close_until((h + 1) * H)
    assert set(r.models) == {("b",)}
    assert ("a",) not in r.last_learned and ("a",) not in r.last_seen


def feed_teams(r: DetectorRunner, hours: range, values: dict[str, float]) -> list[dict]:
    events: list[dict] = []
    for h in hours:
        r.add_bucket(h * H, {cell(make_dims({"team": t, "model": "m"}), SIG): [v, 1000.0] for t, v in values.items()})
        events.extend(r.close_until((h + 1) * H)[1])
    return events


def test_a_new_series_alerts_once_its_spend_reaches_new_series_usd() -> None:
    r = runner(new_series_usd=100.0)
    assert feed_teams(r, range(0, 24 * 3), {"a": 50.0}) == []  # team a is past its warm-up (48 h)
    events = feed_teams(r, range(72, 80), {"a": 50.0, "new": 30.0})
    firing = [e for e in events if e["status"] == "firing"]
    assert len(firing) == 1
    doc = firing[0]
    assert doc["series"] == {"team": "new"}
    assert doc["window_start"] == "1970-01-04T03:00:00Z"  # 4 × $30 ≥ $100: the fourth hour
    assert doc["impact_usd"] == 120.0 and doc["expected"] == 0.0
    assert doc["reason"].startswith("new series: $120.00 in its first 4 hours")
    assert [e["status"] for e in events].count("resolved") == 1  # one page, then quiet while it warms up
    assert "newborn_usd" not in vars(r.models[("new",)])


def test_series_present_from_the_start_are_not_new() -> None:
    r = runner(new_series_usd=10.0)
    assert feed_teams(r, range(0, 24 * 3), {"a": 50.0, "b": 30.0}) == []


def test_new_series_usd_needs_spend_not_a_ratio() -> None:
    with pytest.raises(ValidationError, match="ratio"):
        runner(new_series_usd=10.0, per="tokens")


def test_a_leak_too_small_per_window_pages_on_its_day() -> None:
    cfg = SeasonalConfig(type="seasonal", signal="token_cost_usd", group_by=["team"], min_impact_usd=50)
    r = DetectorRunner("spend", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())
    c = cell(make_dims({"team": "a", "model": "m"}), SIG)
    events: list[dict] = []
    for h in range(24 * 45):
        day = h // 24
        y = 20 * (1 + 0.4 * math.sin(2 * math.pi * (h % 24) / 24)) * (1 + 0.1 * math.sin(h * 7.3))
        y += 1.5 * max(day - 29, 0)  # from day 30: $1.50 an hour more every day
        r.add_bucket(h * H, {c: [y, 1000.0]})
        events.extend(r.close_until((h + 1) * H)[1])
    firing = [e for e in events if e["status"] == "firing"]
    assert firing, "the leak was never paged"
    doc = firing[0]
    assert "1970-01-31" <= doc["window_start"] < "1970-02-04"
    assert abs(doc["impact_usd"]) < 50  # the window alone is under min_impact_usd ...
    assert "sustained growth" in doc["reason"] and "a day)" in doc["reason"]  # ... its day is not


def test_an_anomaly_under_min_impact_does_not_silence_the_next_one() -> None:
    cfg = SeasonalConfig(type="seasonal", signal="token_cost_usd", group_by=["team"], min_impact_usd=50)
    r = DetectorRunner("spend", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())
    c = cell(make_dims({"team": "a", "model": "m"}), SIG)
    events: list[dict] = []
    for h in range(24 * 10 + 3):
        y = 20 * (1 + 0.3 * math.sin(2 * math.pi * (h % 24) / 24)) * (1 + 0.05 * math.sin(h * 7.3))
        if h == 24 * 10:
            y += 45  # anomalous, but $45 is under min_impact_usd: not paged
        if h == 24 * 10 + 2:
            y += 150  # two hours later: worth a page
        r.add_bucket(h * H, {c: [y, 1000.0]})
        events.extend(r.close_until((h + 1) * H)[1])
    firing = [e for e in events if e["status"] == "firing"]
    assert [e["window_start"] for e in firing] == ["1970-01-11T02:00:00Z"]
