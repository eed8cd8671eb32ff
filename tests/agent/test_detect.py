from __future__ import annotations

import math
import pickle
import random

import pytest
from pydantic import ValidationError

from agent.alerts import alert_id
from agent.config import AlertingConfig
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from detectors.seasonal import SeasonalConfig, SeasonalDetector
from detectors.threshold import ThresholdConfig, ThresholdDetector

SIG = ("token_cost_usd", "tokens")
H = 3600.0


def runner(**kw: object) -> DetectorRunner:
    cfg = SeasonalConfig(
        type="seasonal",
        signal="token_cost_usd",
        group_by=["team"],
        window_seconds=3600,
        warmup_points=48,
        **{"min_impact_usd": 1.0, **kw},
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


def test_a_second_incident_after_the_first_resolved_pages_with_an_id_of_its_own() -> None:
    r = runner()
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    day = 24 * 9
    feed(r, range(0, day), base)
    events = feed(r, range(day, day + 1), lambda h: base(h) * 6)  # the first incident: one hour
    events += feed(r, range(day + 1, day + 5), base)  # back to normal: resolved
    events += feed(r, range(day + 5, day + 6), lambda h: base(h) * 6)  # five hours later, the second
    events += feed(r, range(day + 6, day + 10), base)
    assert [(e["status"], e["window_start"][11:16]) for e in events] == [
        ("firing", "00:00"),
        ("resolved", "00:00"),
        ("firing", "05:00"),
        ("resolved", "05:00"),
    ]
    assert len({e["id"] for e in events}) == 2


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


IDLE = ("gpu_idle_hours", "gpu_hours", "gpu_idle_cost_usd")


def idle_runner(min_impact_usd: float = 10) -> DetectorRunner:
    cfg = ThresholdConfig(
        type="threshold",
        signal="gpu_idle_hours",
        per="gpu_hours",
        cost_signal="gpu_idle_cost_usd",
        upper=0.5,
        group_by=["node"],
        window_seconds=3600,
        min_impact_usd=min_impact_usd,
    )  # type: ignore[call-arg]
    return DetectorRunner("idle_gpu", cfg, ThresholdDetector.from_config(cfg), AlertingConfig())


def feed_idle(r: DetectorRunner, hours: range, idle: float, cost_per_idle_hour: float = 12.25) -> list[dict]:
    events: list[dict] = []
    for h in hours:
        c = cell(make_dims({"node": "n7", "gpu": "0"}), IDLE)
        r.add_bucket(h * H, {c: [8 * idle, 8.0, 8 * idle * cost_per_idle_hour]})
        events.extend(r.close_until((h + 1) * H)[1])
    return events


def test_a_threshold_alert_reads_the_limit_not_an_expected_value_and_scores_within_0_1() -> None:
    r = idle_runner()
    assert feed_idle(r, range(0, 5), 0.1) == []
    events = feed_idle(r, range(5, 8), 1.0)
    doc = events[0]
    assert doc["status"] == "firing" and doc["series"] == {"node": "n7"}
    assert "100 % idle (limit 50 %)" in doc["summary"] and "expected" not in doc["summary"]
    assert 0.5 <= doc["score"] <= 1 and "(score 0.75)" in doc["summary"]  # twice the limit
    assert doc["impact_usd"] == 98.0 and doc["unit_label"] == "ratio"


def test_an_escalation_says_so_and_a_resolution_carries_the_episode_impact() -> None:
    r = idle_runner()
    feed_idle(r, range(0, 5), 0.1)
    # Severity follows what a window would cost a day if it continued, or the episode so far, whichever is larger.
    events = feed_idle(r, range(5, 7), 1.0, cost_per_idle_hour=1.3125)  # $10.50 an hour: $252 a day → error
    events += feed_idle(r, range(7, 9), 1.0, cost_per_idle_hour=6.125)  # $49 an hour: $1,176 a day → critical
    events += feed_idle(r, range(9, 11), 0.1)  # two normal windows resolve it
    assert [(e["status"], e["severity"], e["escalated"], e["previous_severity"]) for e in events] == [
        ("firing", "error", False, None),
        ("firing", "critical", True, "error"),
        ("resolved", "critical", False, None),
    ]
    assert events[0]["projected_daily_impact_usd"] == 252.0 and events[0]["projected_monthly_impact_usd"] == 7560.0
    esc = events[1]
    assert esc["summary"].startswith("escalated to critical: [idle_gpu]")
    assert esc["summary"].endswith("episode impact so far +$70.00")
    assert esc["impact_usd"] == 49.0  # the window's; the episode's is in episode.impact_usd
    resolved = events[-1]
    assert resolved["impact_usd"] == resolved["episode"]["impact_usd"] == 119.0  # not the last window's $49
    assert "after 4 hours; episode impact +$119.00" in resolved["summary"]


def test_anomalous_points_under_min_impact_are_held_back_and_counted() -> None:
    r = idle_runner()
    feed_idle(r, range(0, 3), 0.1)
    assert r.held_back.points == 0 and r.held_back.largest_series == ""
    # idle but cheap: $4.90 then $9.80 an hour, under min_impact_usd ($10): never alerted
    assert feed_idle(r, range(3, 4), 1.0, cost_per_idle_hour=0.6125) == []
    assert feed_idle(r, range(4, 5), 1.0, cost_per_idle_hour=1.225) == []
    assert feed_idle(r, range(5, 6), 0.1) == []
    assert r.held_back.points == 2
    assert r.held_back.largest_usd == pytest.approx(9.8) and r.held_back.largest_series == "node=n7"
    assert r.held_back.largest_window == 4 * H
    feed_idle(r, range(6, 7), 1.0)  # $98: alerted, not held back
    assert r.held_back.points == 2


def test_a_sustained_fall_is_a_drop_never_growth() -> None:
    cfg = SeasonalConfig(
        type="seasonal", signal="token_cost_usd", group_by=["team"], min_impact_usd=50, direction="both"
    )
    r = DetectorRunner("spend", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())
    c = cell(make_dims({"team": "a", "model": "m"}), SIG)
    events: list[dict] = []
    for h in range(24 * 45):
        day = h // 24
        y = 60 * (1 + 0.4 * math.sin(2 * math.pi * (h % 24) / 24)) * (1 + 0.1 * math.sin(h * 7.3))
        y -= 1.5 * max(day - 29, 0)  # from day 30: $1.50 an hour less every day
        r.add_bucket(h * H, {c: [y, 1000.0]})
        events.extend(r.close_until((h + 1) * H)[1])
    reasons = [e["reason"] for e in events if e["status"] == "firing" and e["reason"]]
    assert any(x.startswith("sustained drop: yesterday -") and "(-$" in x for x in reasons), reasons
    assert not any("growth" in x for x in reasons)


def test_latest_points_are_kept_and_an_older_snapshot_still_loads() -> None:
    r = idle_runner()
    feed_idle(r, range(0, 5), 0.1)
    feed_idle(r, range(5, 7), 1.0)
    snap = pickle.loads(pickle.dumps(r.snapshot()))
    r2 = idle_runner()
    r2.restore(snap)
    [pt] = r2.restored_points()
    assert (pt.window_start, pt.observed, pt.unit) == (6 * H, 1.0, "ratio")
    assert [d["status"] for d in r2.firing_documents()] == ["firing"]
    # A snapshot written before the latest points (and the points' unit) existed.
    old = pickle.loads(pickle.dumps(r.snapshot()))
    del old["last_points"]
    ep = old["episodes"][("n7",)]
    state = ep.last_point.__reduce_ex__(4)[2][1]
    del state["unit"], state["warming_up"]
    ep.last_point = pickle.loads(pickle.dumps(ep.last_point))
    ep.last_point.__setstate__((None, state))
    r3 = idle_runner()
    r3.restore(old)
    [pt] = r3.restored_points()  # the open episode's latest point
    assert pt.window_start == 6 * H and pt.unit == "" and pt.warming_up is False
    feed_idle(r3, range(7, 9), 0.1)
    assert r3.restored_points()[0].unit == "ratio" and not r3.episodes


def _team_cells(values: dict[str, float]) -> dict:
    return {cell(make_dims({"team": t, "model": "m"}), SIG): [v, 1000.0] for t, v in values.items()}


def test_a_new_series_is_judged_by_its_own_first_window_whoever_shares_the_runner() -> None:
    """Alone in a runner (a scale-out task) that knows the detector's first window, a team that appears after
    the warm-up alerts as new exactly as beside the warmed-up team; without that fact it would look like the
    detector's first series."""
    both, alone, unaware = runner(new_series_usd=100.0), runner(new_series_usd=100.0), runner(new_series_usd=100.0)
    feed_teams(both, range(0, 72), {"a": 50.0})
    alone.first_window = 0.0  # what a task learns from its inputs' clocks
    events: dict[int, list[dict]] = {id(r): [] for r in (both, alone, unaware)}
    for h in range(72, 80):
        for r, values in ((both, {"a": 50.0, "new": 30.0}), (alone, {"new": 30.0}), (unaware, {"new": 30.0})):
            r.add_bucket(h * H, _team_cells(values))
            events[id(r)] += r.close_until((h + 1) * H)[1]
    new = [[(e["id"], e["status"]) for e in events[id(r)] if e["series"] == {"team": "new"}] for r in (both, alone)]
    assert new[0] and new[0] == new[1]
    assert events[id(unaware)] == [] and unaware.first_window == 72 * H  # its first data: the detector's start
    assert alone.models[("new",)].n_learned == both.models[("new",)].n_learned == 8


def test_the_first_window_survives_a_snapshot_and_is_inferred_from_an_older_one() -> None:
    r = runner(new_series_usd=100.0)
    feed_teams(r, range(5, 60), {"a": 50.0})
    snap = pickle.loads(pickle.dumps(r.snapshot()))
    r2 = runner(new_series_usd=100.0)
    r2.restore(snap)
    assert r2.first_window == r.first_window == 5 * H
    del snap["first_window"]  # saved by a version without it: the oldest series learned every window since
    r3 = runner(new_series_usd=100.0)
    r3.restore(snap)
    assert r3.first_window == 5 * H


def _learned(r: DetectorRunner, at: float = 200 * H) -> dict:
    """Each series' learned windows; a series past its expiry but not yet collected (no window closed since) is gone."""
    return {k: (m.n_learned, r.last_learned.get(k)) for k, m in r.models.items() if not r.lapsed(k, at)}


@pytest.mark.parametrize("fill", [True, False], ids=["fill_missing", "no_fill"])
def test_one_pass_over_a_long_stretch_learns_what_window_by_window_does(fill: bool) -> None:
    """A task that closes hundreds of windows at once (after a restore or an outage) gives every series the
    windows it really missed: gaps longer than series_ttl_windows but shorter than its expiry are zero-filled
    exactly, a series silent past its expiry comes back as new, whichever other series share the runner."""
    ttl = 30
    data = {  # team → hours with data
        "a": [*range(0, 10), *range(60, 200)],  # silent from hour 10: expired (ttl 30) at hour 48
        "b": [*range(0, 50), *range(90, 200)],  # silent 40 windows, but with b's own data every window since
        "c": [*range(0, 3), *range(150, 160)],
    }
    data["b"] = [h for h in data["b"] if not 100 <= h < 125]  # 25 windows < ttl: filled, never expired
    # b: 40 silent windows (50..89) > ttl, but ttl counts from its last data and expiry runs every 24 windows:
    # silent from hour 50, due at hour 96 (the first check past 80): back at 90, still the same series
    by_hour: dict[int, dict[str, float]] = {}
    for t, hours in data.items():
        for h in hours:
            by_hour.setdefault(h, {})[t] = 10.0 + h % 7
    step, once = runner(series_ttl_windows=ttl, fill_missing=fill), runner(series_ttl_windows=ttl, fill_missing=fill)
    alone: dict[str, DetectorRunner] = {}
    for h in range(200):
        step.add_bucket(h * H, _team_cells(by_hour.get(h, {})))
        step.close_until((h + 1) * H)
    for h in range(200):
        once.add_bucket(h * H, _team_cells(by_hour.get(h, {})))
    once.close_until(200 * H)  # one pass
    for t in data:  # each team alone in its own runner, closed in three passes
        r = alone[t] = runner(series_ttl_windows=ttl, fill_missing=fill)
        for h in range(200):
            if t in by_hour.get(h, {}):
                r.add_bucket(h * H, _team_cells({t: by_hour[h][t]}))
            if h in (60, 130, 199):
                r.close_until((h + 1) * H)
    assert _learned(step) == _learned(once) == {k: v for r in alone.values() for k, v in _learned(r).items()}
    got = _learned(step)
    if fill:  # b learned every window since its first; a restarted after its expiry; c expired for good
        assert got[("b",)] == (200, 199 * H) and got[("a",)] == (140, 199 * H)
    else:
        assert got[("a",)] == (140, 199 * H)  # forgotten in its silence, whoever else had data
        assert got[("b",)][0] == len(data["b"])
    assert ("c",) not in got  # back at hour 150 as new, silent again past its ttl since hour 160


@pytest.mark.parametrize("percent", [None, 50.0])
def test_a_small_teams_doubling_pages_on_percent_of_its_usual_spend(percent: float | None) -> None:
    """A team spending about $0.40 an hour doubles (a model switch): +$0.40 a window, far under a $20 floor made for
    big teams. With ``min_impact_percent`` the same anomaly pages (its impact is 100 % of the usual spend, over the
    $0.25 floor), with what it costs a day if it continues; a big team's noise still does not page."""
    r = runner(min_impact_usd=20.0, min_impact_percent=percent, min_impact_floor_usd=0.25)
    rng = random.Random(4)
    usual = {"small": lambda h: 0.4 * (1 + 0.2 * math.sin(2 * math.pi * (h % 24) / 24)), "big": lambda h: 900.0}
    events = []
    for h in range(24 * 10):
        vals = {
            t: f(h) * rng.uniform(0.95, 1.05) * (2.0 if t == "small" and h >= 24 * 9 else 1.0) for t, f in usual.items()
        }
        events += feed_teams(r, range(h, h + 1), vals)
    firing = [e for e in events if e["status"] == "firing"]
    if percent is None:
        assert firing == [] and r.held_back.points > 0  # seen, held back under $20
        return
    assert firing and {e["series"]["team"] for e in firing} == {"small"}
    doc = firing[0]
    assert doc["window_start"] >= "1970-01-10T00:00:00Z" and 0.25 <= doc["impact_usd"] < 1.0
    assert doc["projected_daily_impact_usd"] == pytest.approx(doc["impact_usd"] * 24)


def test_a_drop_reads_as_a_drop() -> None:
    """A series that falls to nothing (a broken integration, a source that stopped) is paged as a drop, in its own
    words and with ``direction: down`` — never as growth."""
    r = runner(direction="both")
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    assert feed(r, range(0, 24 * 9), base) == []
    events = feed(r, range(24 * 9, 24 * 9 + 3), 0.0)
    firing = [e for e in events if e["status"] == "firing"]
    assert firing and firing[0]["direction"] == "down" and firing[0]["impact_usd"] < 0
    assert "dropped to nothing (expected $" in firing[0]["summary"] and "growth" not in firing[0]["summary"]
    up = runner()
    feed(up, range(0, 24 * 9), base)
    fired = [e for e in feed(up, range(24 * 9, 24 * 9 + 2), lambda h: base(h) * 6) if e["status"] == "firing"]
    assert fired[0]["direction"] == "up" and "vs expected" in fired[0]["summary"]


def _bill(r: DetectorRunner, hours: range, usage: object, fee_at: int | None, fee: float) -> list[dict]:
    """An hourly bill: usage lines and, at ``fee_at``, a Purchase line (a monthly fee) of the same service."""
    dims = {"provider": "aws", "service": "AmazonEC2"}
    use = cell(make_dims({**dims, "charge_category": "Usage"}), ("billing_cost_usd",))
    buy = cell(make_dims({**dims, "charge_category": "Purchase"}), ("billing_cost_usd",))
    events: list[dict] = []
    for h in hours:
        bucket = {use: [usage(h) if callable(usage) else usage]}
        if h == fee_at:
            bucket[buy] = [fee]
        r.add_bucket(h * H, bucket)
        events.extend(r.close_until((h + 1) * H)[1])
    return events


@pytest.mark.parametrize("exclude", [{}, {"charge_category": ["Purchase", "Tax"]}])
def test_a_bills_fees_are_left_out_by_exclude_and_its_usage_still_pages(exclude: dict) -> None:
    cfg = SeasonalConfig(
        type="seasonal",
        signal="billing_cost_usd",
        group_by=["provider", "service"],
        window_seconds=3600,
        warmup_points=48,
        min_impact_usd=50,
        exclude=exclude,
    )  # type: ignore[call-arg]
    r = DetectorRunner("cloud", cfg, SeasonalDetector.from_config(cfg), AlertingConfig())
    base = lambda h: 100 + 30 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    fee_hour = 24 * 12
    events = _bill(r, range(0, 24 * 14), base, fee_hour, 5000.0)
    fired = [e for e in events if e["status"] == "firing"]
    assert bool(fired) == (not exclude)  # the fee pages only when it counts as the service's spend
    spike = _bill(r, range(24 * 14, 24 * 14 + 3), lambda h: base(h) * 4, None, 0.0)
    assert [e["status"] for e in spike][:1] == ["firing"]  # usage still pages with the fee left out
    assert spike[0]["series"] == {"provider": "aws", "service": "AmazonEC2"}


def test_where_counts_only_the_values_it_names() -> None:
    cfg = SeasonalConfig(type="seasonal", signal="billing_cost_usd", where={"charge_category": ["Usage"]})  # type: ignore[call-arg]
    assert cfg.admits({"charge_category": "Usage", "service": "x"})
    assert not cfg.admits({"charge_category": "Tax"})
    assert not cfg.admits({"service": "x"})  # without the dimension: no match
    ex = SeasonalConfig(type="seasonal", signal="billing_cost_usd", exclude={"charge_category": ["Tax"]})  # type: ignore[call-arg]
    assert ex.admits({"service": "x"}) and not ex.admits({"charge_category": "Tax"})
    with pytest.raises(ValidationError, match="at least 1 item"):
        SeasonalConfig(type="seasonal", signal="x", where={"charge_category": []})  # type: ignore[call-arg]
    ids = SeasonalConfig(type="seasonal", signal="x", where={"sub_account": [123412340534]})  # type: ignore[call-arg]
    assert ids.where == {"sub_account": ["123412340534"]}  # an account id written unquoted is the id


def test_a_band_under_zero_reads_as_zero_on_spend() -> None:
    r = runner()
    rng = random.Random(7)
    c = cell(make_dims({"team": "a", "model": "m"}), SIG)
    points = []
    for h in range(24 * 4):
        r.add_bucket(h * H, {c: [rng.choice([0.0, 0.0, 0.5, 9.0]), 10.0]})
        points += r.close_until((h + 1) * H)[0]
    model = r.models[("a",)]
    assert model.forecast_one({"t": 24 * 4 * H, "y": 0.0})[1] < 0  # the model's own band goes under zero
    assert points and min(p.lower for p in points) == 0.0


def test_an_id_namespace_tells_two_deployments_alerts_apart() -> None:
    cfg = SeasonalConfig(type="seasonal", signal="token_cost_usd", group_by=["team"], warmup_points=48)
    ids = []
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    for ns in ("", "staging"):
        r = DetectorRunner("spend", cfg, SeasonalDetector.from_config(cfg), AlertingConfig(id_namespace=ns))
        feed(r, range(0, 24 * 9), base)
        firing = [e for e in feed(r, range(24 * 9, 24 * 9 + 1), lambda h: base(h) * 6) if e["status"] == "firing"]
        ids.append(firing[0]["id"])
    assert ids[0] == alert_id("spend", (("team", "a"),), 24 * 9 * H)
    assert ids[1] == alert_id("spend", (("team", "a"),), 24 * 9 * H, "staging") != ids[0]


def test_for_points_holds_a_one_window_blip_back_and_fires_a_longer_incident() -> None:
    r = runner(for_points=2)
    assert not r.early_enabled  # (a pending incident gets no early warning)
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    day = 24 * 9
    feed(r, range(0, day), base)
    events = feed(r, range(day, day + 1), lambda h: base(h) * 6)  # one window: held back
    events += feed(r, range(day + 1, day + 30), base)
    assert events == [] and not r.episodes
    events = feed(r, range(day + 30, day + 33), lambda h: base(h) * 6)  # three windows: fires at the second
    firing = [e for e in events if e["status"] == "firing"]
    assert [e["window_start"][11:16] for e in firing] == ["07:00"]
    assert firing[0]["started_at"][11:16] == "06:00" and firing[0]["episode"]["points"] == 2
    assert firing[0]["id"] == alert_id("spend", (("team", "a"),), (day + 30) * H)


def test_marked_expected_the_new_level_is_learned_without_a_page_also_after_a_restart() -> None:
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    day = 24 * 14
    double = lambda h: base(h) * 2  # noqa: E731
    control = runner(min_impact_usd=20)
    feed(control, range(0, day), base)
    (firing,) = feed(control, range(day, day + 2), double)
    assert feed(control, range(day + 2, day + 12), double) == [] and control.episodes  # still firing, adding up
    r = runner(min_impact_usd=20)
    feed(r, range(0, day), base)
    (firing,) = feed(r, range(day, day + 2), double)
    assert r.mark_expected("nope", "ana", "x") is None
    (resolved,) = r.mark_expected(firing["id"], "ana", "research doubles") or []
    assert resolved["status"] == "resolved" and resolved["id"] == firing["id"]
    assert resolved["summary"].startswith("[spend] marked expected by ana: research doubles; episode impact +$")
    again = runner(min_impact_usd=20)
    again.restore(pickle.loads(pickle.dumps(r.snapshot())))  # a restart
    assert feed(again, range(day + 2, day + 24 * 14), double) == []


def test_contributors_name_what_differs_between_them() -> None:
    r = runner()
    base = lambda h: 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)  # noqa: E731
    events: list[dict] = []
    for h in range(24 * 9 + 1):
        v = base(h) * (6 if h == 24 * 9 else 1)
        for model, share in (("haiku", 0.3), ("sonnet", 0.7)):
            dims = {"team": "a", "model": model, "provider": "aws", "region": "us-east-1"}
            r.add_bucket(h * H, {cell(make_dims(dims), SIG): [v * share, 1000.0]})
        events += r.close_until((h + 1) * H)[1]
    (doc,) = events
    assert [c["dimensions"] for c in doc["top_contributors"]] == [{"model": "sonnet"}, {"model": "haiku"}]
    assert doc["summary"].endswith("top contributor model=sonnet +" + doc["summary"].rsplit("+", 1)[1])


def test_an_idle_gpu_alert_says_the_rate_it_was_paid_at() -> None:
    r = idle_runner(min_impact_usd=1)
    c = cell(make_dims({"node": "n7"}), ("gpu_idle_hours", "gpu_hours", "gpu_idle_cost_usd"))
    r.add_bucket(0.0, {c: [8.0, 8.0, 8 * 4.47]})  # 8 GPUs idle the whole hour, at a reserved $4.47 a GPU-hour
    (doc,) = [d for d in r.close_until(3600.0)[1] if d["status"] == "firing"]
    assert "8.00 idle GPU-hours at $4.47 a GPU-hour" in doc["summary"]
    assert doc["projected_hourly_impact_usd"] == pytest.approx(35.76)  # what it wastes an hour if it continues


def floor_runner(**kw: object) -> DetectorRunner:
    cfg = ThresholdConfig(
        type="threshold",
        signal="token_cost_usd",
        group_by=["team"],
        window_seconds=60,
        **{"lower": 2.5, "upper": 5.0, "min_impact_usd": 1.0, **kw},
    )  # type: ignore[arg-type]
    return DetectorRunner("exact", cfg, ThresholdDetector.from_config(cfg), AlertingConfig())


def feed_minutes(r: DetectorRunner, minutes: range, value: float) -> tuple[list, list[dict]]:
    points: list = []
    events: list[dict] = []
    for m in minutes:
        r.add_bucket(m * 60.0, {cell(make_dims({"team": "a"}), SIG): [value, 1000.0]})
        pts, ev = r.close_until((m + 1) * 60.0)
        points += pts
        events += ev
    return points, events


def test_a_threshold_impact_is_measured_against_the_bound_crossed() -> None:
    r = floor_runner()
    points, events = feed_minutes(r, range(0, 5), 4.0)
    assert events == [] and [p.impact_usd for p in points] == [0.0] * 5  # within the bounds: no impact
    _, events = feed_minutes(r, range(5, 6), 0.0)  # the team stops spending: $2.50 under its floor
    (doc,) = events
    assert doc["expected"] == 2.5 and doc["impact_usd"] == -2.5
    assert "$0.00 (floor $2.50), impact -$2.50" in doc["summary"]
    assert doc["projected_daily_impact_usd"] == -2.5 * 1440
    assert doc["severity"] == "warning"  # a drop (money not spent) pages as a warning, however large
    _, events = feed_minutes(r, range(6, 9), 4.0)
    _, events = feed_minutes(r, range(9, 10), 8.0)  # $3 over its ceiling
    (doc,) = [e for e in events if e["status"] == "firing"]
    assert doc["expected"] == 5.0 and doc["impact_usd"] == 3.0 and doc["severity"] == "critical"


def test_a_drop_is_graded_by_its_size_where_the_detector_watches_drops() -> None:
    r = floor_runner(direction="down")
    feed_minutes(r, range(0, 5), 4.0)
    (doc,) = feed_minutes(r, range(5, 6), 0.0)[1]
    assert doc["impact_usd"] == -2.5 and doc["severity"] == "critical"  # -$3,600 a day if it continues


def test_a_series_that_has_only_ever_summed_zero_gets_no_model_until_it_does_not() -> None:
    """A bill's non-GPU lines under GPU-hours (m7i: 0 GPU-hours every hour) make no series, no point on /metrics;
    the day one of them sums more than zero, it is a series (a new one)."""
    r = runner()
    events = feed_teams(r, range(0, 24 * 3), {"a": 50.0, "cpu-only": 0.0})
    assert list(r.models) == [("a",)] and ("cpu-only",) not in r.last_points and events == []
    feed_teams(r, range(24 * 3, 24 * 3 + 1), {"a": 50.0, "cpu-only": 2.0})
    assert ("cpu-only",) in r.models
