"""Data gaps (agent/gaps.py) at the runner: a series that stops reporting, apart from its spend alerts."""

from __future__ import annotations

import pickle

from agent.model import cell, make_dims
from tests.agent.test_detect import SIG, H, runner
from tests.agent.test_early import base


def hours(r, rng: range, value, team: str = "a") -> list[dict]:  # type: ignore[no-untyped-def]
    events: list[dict] = []
    for h in rng:
        v = value(h)
        if v is not None:
            r.add_bucket(h * H, {cell(make_dims({"team": team, "model": "m"}), SIG): [v, 1000.0]})
        events += r.close_until((h + 1) * H)[1]
    return events


def test_a_series_that_stops_reporting_raises_a_data_gap_naming_its_source() -> None:
    r = runner(direction="both")
    r.source_of = {cell(make_dims({"team": "a", "model": "m"}), SIG): "bedrock_logs"}.get
    hours(r, range(0, 24 * 9), base)
    events = hours(r, range(24 * 9, 24 * 9 + 5), lambda h: None)  # no record at all for 5 hours
    gaps = [e for e in events if e["kind"] == "data_gap"]
    assert [(e["status"], e["window_start"]) for e in gaps] == [("firing", "1970-01-10T00:00:00Z")]
    gap = gaps[0]
    assert gap["sources"] == ["bedrock_logs"] and gap["silent_windows"] == 3 and gap["direction"] is None
    assert gap["summary"].startswith("[spend] data gap: no token_cost_usd data for team=a from bedrock_logs for 3 ")
    assert "unreported" in gap["summary"] and gap["expected"] > 200  # about three hours' usual spend
    # The spend alert, if any, is another alert: a drop, never growth.
    spend = [e for e in events if e["kind"] == "spend" and e["status"] == "firing"]
    assert all(e["id"] != gap["id"] and e["direction"] == "down" and "dropped" in e["summary"] for e in spend)
    # Data comes back: the gap resolves (its own id); state survives a checkpoint.
    r2 = runner(direction="both")
    r2.restore(pickle.loads(pickle.dumps(r.snapshot())))
    back = [e for e in hours(r2, range(24 * 9 + 5, 24 * 9 + 6), base) if e["kind"] == "data_gap"]
    assert [(e["status"], e["id"]) for e in back] == [("resolved", gap["id"])]
    assert "data gap over" in back[0]["summary"] and "after 5 hours" in back[0]["summary"]
    assert r2.longest_silence.get(("a",), 0) == 0  # a gap is not one of its usual silences
    # In the gap, windows were not scored (no drop alert for unreported spend) and were learned as unknown, not zero.
    assert r.last_points[("a",)].window_start == (24 * 9 + 2) * H


def test_a_series_quiet_every_night_is_not_a_gap_until_silent_longer_than_ever() -> None:
    r = runner()
    office = lambda h: base(h) if 8 <= h % 24 < 20 else None  # noqa: E731  12 silent hours every night
    assert [e for e in hours(r, range(0, 24 * 14), office) if e["kind"] == "data_gap"] == []
    assert r.longest_silence[("a",)] == 12
    # A whole day off is 36 silent hours: more than 12 × 2 = 24, a gap after the 25th silent hour.
    events = hours(r, range(24 * 14, 24 * 16), lambda h: office(h) if h >= 24 * 15 + 12 else None)
    gaps = [e for e in events if e["kind"] == "data_gap"]
    assert [e["status"] for e in gaps] == ["firing", "resolved"]
    assert gaps[0]["silent_windows"] == 25 and gaps[0]["longest_silence_before_windows"] == 12
    assert "its longest silence before: 12 hours" in gaps[0]["summary"]


def test_no_gap_alerts_when_disabled_or_while_warming_up() -> None:
    r = runner(data_gap_windows=None)
    hours(r, range(0, 24 * 9), base)
    assert not [e for e in hours(r, range(24 * 9, 24 * 10), lambda h: None) if e["kind"] == "data_gap"]
    r = runner()
    hours(r, range(0, 10), base)  # 10 of 48 warm-up windows
    assert not [e for e in hours(r, range(10, 20), lambda h: None) if e["kind"] == "data_gap"]
    assert not runner(per="tokens").gaps_enabled


def test_a_drop_that_was_the_silence_ends_when_the_gap_is_alerted() -> None:
    r = runner(direction="both")
    hours(r, range(0, 24 * 9), base)
    events = hours(r, range(24 * 9, 24 * 9 + 4), lambda h: None)
    drops = [e for e in events if e["kind"] == "spend"]
    assert drops and drops[0]["status"] == "firing" and drops[0]["direction"] == "down"
    assert drops[-1]["status"] == "resolved" and "did not drop, its data stopped" in drops[-1]["summary"]
    assert not r.episodes  # the data gap is the alert now
    # Back from the gap: its recovery is not counted as the drop going on, nor as a new spike.
    back = hours(r, range(24 * 9 + 4, 24 * 9 + 10), base)
    assert [e["kind"] for e in back if e["status"] == "firing"] == []


def test_a_live_source_that_goes_silent_raises_a_data_gap_naming_it() -> None:
    from agent.gaps import SourceSilence

    clock = [1000.0]
    s = SourceSilence(60.0, lambda: clock[0])
    for t in (1000.0, 1010.0, 1030.0):  # a batch every 10-20 s
        clock[0] = t
        assert s.records("bedrock_logs") is None
    clock[0] = 1080.0
    assert s.check(["bedrock_logs"]) == []  # 50 s: under the 60 s limit
    clock[0] = 1091.0
    (doc,) = s.check(["bedrock_logs"])
    assert doc["kind"] == "data_gap" and doc["status"] == "firing" and doc["series"] == {"source": "bedrock_logs"}
    assert doc["summary"].startswith("[source bedrock_logs] data gap: no record from source bedrock_logs for 1 minute")
    assert s.check(["bedrock_logs"]) == []  # once
    clock[0] = 1500.0
    back = s.records("bedrock_logs")
    assert back is not None and back["status"] == "resolved" and back["id"] == doc["id"]
    assert s.longest["bedrock_logs"] == 20.0  # the gap is not one of its usual silences
    assert SourceSilence(0.0, lambda: clock[0]).check(["x"]) == []  # 0: never


def test_a_fixed_limit_names_no_usual_spend_in_its_data_gap_and_one_series_no_label() -> None:
    """A threshold (a fixed limit) expects nothing: its data gap does not claim a usual spend (the limit is not
    one); a detector without group_by has one series: "no … data from …", not "for all"."""
    from agent.config import AlertingConfig
    from agent.detect import DetectorRunner
    from detectors.threshold import ThresholdConfig, ThresholdDetector

    cfg = ThresholdConfig(type="threshold", signal="token_cost_usd", upper=6000.0, window_seconds=3600)  # type: ignore[call-arg]
    r = DetectorRunner("fees", cfg, ThresholdDetector.from_config(cfg), AlertingConfig())
    events = []
    for h in range(0, 8):
        if h < 2:
            r.add_bucket(h * H, {cell(make_dims({"team": "a", "model": "m"}), SIG): [100.0, 1.0]})
        events += r.close_until((h + 1) * H)[1]
    (gap,) = [e for e in events if e["kind"] == "data_gap" and e["status"] == "firing"]
    assert gap["summary"].startswith("[fees] data gap: no token_cost_usd data from unknown source for 3 hours")
    assert "usually reports" not in gap["summary"] and gap["expected"] is None


def test_a_small_team_gap_waits_until_the_spend_it_may_hide_passes_the_floor() -> None:
    """A team spending 4 cents an hour is not paged for 3 silent hours (12 cents it may not have spent): its gap is
    told once what it usually spends in the silence reaches min_impact_floor_usd ($0.25), about 7 hours."""
    r = runner()
    assert r.cfg.min_impact_floor_usd == 0.25
    small = lambda h: base(h) / 2500  # noqa: E731  $0.024–$0.056 an hour
    hours(r, range(0, 24 * 9), small)
    gaps = [e for e in hours(r, range(24 * 9, 24 * 10), lambda h: None) if e["kind"] == "data_gap"]
    assert [e["status"] for e in gaps] == ["firing"]
    assert gaps[0]["silent_windows"] > 3 and 0.25 <= gaps[0]["expected"] < 0.35
    assert gaps[0]["window_start"] == "1970-01-10T00:00:00Z"  # the silence since it began, not since the floor
    r2 = runner()
    hours(r2, range(0, 24 * 9), small)
    assert hours(r2, range(24 * 9, 24 * 9 + 4), lambda h: None) == []  # 4 silent hours: 16 cents, nothing said
    assert ("a",) in r2.gaps and not r2.gaps[("a",)].notified
    assert hours(r2, range(24 * 9 + 4, 24 * 9 + 5), small) == []  # data back: no resolution of an untold gap
    assert not r2.gaps
