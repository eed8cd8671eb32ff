"""Early warnings inside an open window (agent/early.py), at the runner: raised, confirmed, withdrawn."""

from __future__ import annotations

import math
import random

import pytest

from agent.model import cell, make_dims
from tests.agent.test_detect import SIG, H, feed, runner

MIN = 60.0


def base(h: int) -> float:
    return 100 + 40 * math.sin(2 * math.pi * (h % 24) / 24)


def open_hour(r, h: int, per_minute: float, minutes: int) -> tuple[list[dict], dict]:  # type: ignore[no-untyped-def]
    """``minutes`` minutes of window ``h`` at ``per_minute`` dollars, checked every minute; the open bucket."""
    cells: dict = {}
    events: list[dict] = []
    for m in range(minutes):
        for model, share in (("haiku", 0.3), ("sonnet", 0.7)):
            c = cell(make_dims({"team": "a", "model": model}), SIG)
            vals = cells.setdefault(c, [0.0, 0.0])
            vals[0] += per_minute * share
            vals[1] += 10.0
        events += r.early(h * H + (m + 1) * MIN, [(h * H, cells)])[1]
    return events, cells


def test_a_runaway_loop_pages_minutes_after_it_starts_then_is_confirmed() -> None:
    r = runner()
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    usual = base(h) / 60
    early, cells = open_hour(r, h, usual * 15, 20)  # a 15× loop from the window's first minute
    assert [e["status"] for e in early] == ["firing"]  # once, not every minute
    doc = early[0]
    assert doc["early"] is True and doc["kind"] == "spend" and doc["confirmed"] is False
    assert 0 < doc["window_progress"] <= 0.2  # within the first 12 minutes of the hour
    # No pace learned yet: an even one, the next twelfth of the window (never less than the usual by now).
    share = (math.floor(doc["window_progress"] * 12 + 1e-4) + 1) / 12  # (the document rounds the progress)
    on_course = doc["observed"] / share  # the window's sum if it goes on at this pace
    assert on_course > doc["upper"] > doc["expected"]
    assert abs(doc["impact_usd"] - (doc["observed"] - share * doc["expected"])) < 1e-3  # spent over the usual
    assert "early warning" in doc["summary"] and "into window" in doc["summary"]
    assert doc["top_contributors"][0]["dimensions"] == {"model": "sonnet"}
    # Its episode so far is the open window (what the alert's own figures say).
    assert doc["episode"]["points"] == 1 and doc["episode"]["impact_usd"] == doc["impact_usd"]
    assert doc["episode"]["observed_total"] == doc["observed"] and doc["episode"]["peak_score"] == doc["score"]
    # The window closes (the open bucket sealed): the same alert, confirmed, as a new revision.
    for _m in range(20, 60):
        for c, vals in cells.items():
            vals[0] += usual * 15 * (0.7 if "sonnet" in str(c) else 0.3)
    r.add_bucket(h * H, cells)
    closed = r.close_until((h + 1) * H)[1]
    assert [(e["status"], e["confirmed"], e["early"]) for e in closed] == [("firing", True, False)]
    assert closed[0]["id"] == doc["id"] and closed[0]["revision"] == doc["revision"] + 1
    assert closed[0]["summary"].startswith("confirmed: [spend]")
    assert closed[0]["episode"]["points"] == 1 and closed[0]["episode"]["impact_usd"] == closed[0]["impact_usd"]


def test_an_early_warning_the_closed_window_does_not_bear_out_is_withdrawn() -> None:
    r = runner(min_impact_usd=1.0)
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    early, cells = open_hour(r, h, base(h) / 60 * 15, 15)
    assert early and early[0]["early"]
    # A credit (negative spend) before the window ends takes the running sum back under the band.
    for c, vals in cells.items():
        vals[0] = base(h) * (0.7 if "sonnet" in str(c) else 0.3)
    r.add_bucket(h * H, cells)
    closed = r.close_until((h + 1) * H)[1]
    assert [(e["status"], e["withdrawn"]) for e in closed] == [("resolved", True)]
    assert closed[0]["id"] == early[0]["id"] and "not confirmed" in closed[0]["summary"]
    assert abs(closed[0]["impact_usd"] - (closed[0]["observed"] - closed[0]["expected"])) < 1e-5  # the window's
    assert not r.episodes


def test_no_early_warning_for_usual_noise_nor_under_the_paging_rule() -> None:
    rng = random.Random(3)
    r = runner(min_impact_usd=1e9)  # nothing can page: nothing may warn early
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    assert open_hour(r, h, base(h) / 60 * 15, 30)[0] == []
    r = runner()
    feed(r, range(0, 24 * 9), lambda h: base(h) * rng.uniform(0.9, 1.1))
    for h in range(24 * 9, 24 * 11):  # two ordinary days, minute by minute: no early warning
        events, cells = open_hour(r, h, base(h) / 60 * rng.uniform(0.9, 1.1), 60)
        assert events == []
        r.add_bucket(h * H, cells)
        r.close_until((h + 1) * H)


def test_a_ratio_a_budget_and_a_downward_detector_do_not_warn_early() -> None:
    assert not runner(per="tokens").early_enabled
    assert not runner(direction="down").early_enabled
    assert not runner(early_warning=False).early_enabled
    assert runner(direction="both").early_enabled


def test_a_window_the_wall_clock_has_passed_gets_no_early_warning() -> None:
    """Records of a window that is already over (a catch-up, a late delivery): it closes in a moment and alerts
    once then, rather than an early warning and its confirmation a moment apart."""
    r = runner()
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    cells: dict = {}
    for model, share in (("haiku", 0.3), ("sonnet", 0.7)):
        cells[cell(make_dims({"team": "a", "model": model}), SIG)] = [base(h) / 60 * 15 * 20 * share, 200.0]
    now = h * H + 20 * MIN
    assert r.early(now, [(h * H, cells)], wall=(h + 1) * H + 13 * MIN)[1] == []  # over on the wall clock
    assert [e["status"] for e in r.early(now, [(h * H, cells)], wall=now)[1]] == ["firing"]  # live: warned


def test_a_series_own_pace_within_the_window_is_learned_a_front_loaded_batch_is_no_loop() -> None:
    """Each series learns its pace within a window and how much it varies: a steady series' loop is warned earlier
    than under the conservative prior; an hourly batch job that spends 90 % of the window's sum in its first six
    minutes is its usual pace, not a loop, while a loop on top of it still pages early."""

    def hour(r, h: int, front: float, extra_per_minute: float = 0.0) -> tuple[list[dict], dict]:  # type: ignore[no-untyped-def]
        """An hour whose first six minutes spend ``front`` of its usual sum (0.1: an even pace)."""
        cells: dict = {}
        events: list[dict] = []
        c = cell(make_dims({"team": "a", "model": "sonnet"}), SIG)
        for m in range(60):
            vals = cells.setdefault(c, [0.0, 0.0])
            vals[0] += (base(h) * front / 6 if m < 6 else base(h) * (1 - front) / 54) + extra_per_minute
            vals[1] += 10.0
            events += r.early(h * H + (m + 1) * MIN, [(h * H, cells)])[1]
        return events, cells

    def hours(r, first: int, n: int, front: float) -> list[dict]:  # type: ignore[no-untyped-def]
        out = []
        for h in range(first, first + n):
            events, cells = hour(r, h, front)
            out += events
            r.add_bucket(h * H, cells)
            out += [e for e in r.close_until((h + 1) * H)[1] if e["status"] == "firing"]
        return out

    h = 24 * 9
    progress = {}
    for learned in (0, 12):
        r = runner(min_impact_usd=20.0)
        feed(r, range(0, h), base)  # closed windows only: no pace seen yet
        assert hours(r, h, learned, 0.1) == []
        loop, _ = hour(r, h + learned, 0.1, extra_per_minute=base(h + learned) / 60 * 4)  # a 5× loop from :00
        assert [e["early"] for e in loop] == [True]
        progress[learned] = loop[0]["window_progress"]
    assert progress[12] < progress[0] <= 0.5  # its own (steady) pace: sooner than under the prior

    r = runner(min_impact_usd=20.0)
    feed(r, range(0, h), base)
    hours(r, h, 6, 0.9)
    assert all(not e["early"] for e in hours(r, h + 6, 24, 0.9))  # a day of batches: no early warning
    state = r.series_state(("a",))
    assert state["pace"] is not None and state["pace"][2] > 0.7  # 5 minutes in: 75 % of the window's sum
    loop, _ = hour(r, h + 30, 0.9, extra_per_minute=base(h + 30) / 60 * 4)  # a 5× loop on top of the batch
    assert [e["early"] for e in loop] == [True] and loop[0]["window_progress"] < 0.5


def test_pace_learns_a_window_that_closes_after_the_next_one_opened() -> None:
    """A window waits ``allowed_lateness`` after its end while the next one is already watched: both windows' sums
    are kept, and the one that closes is learned (a busy series' pace was never learned otherwise)."""
    from agent import pace

    a = pace.new()
    pace.seen(a, 10, 1 / 12, 9.0)  # window 10, its first checkpoint
    pace.seen(a, 11, 1 / 12, 9.0)  # window 11 opens while 10 waits for its lateness
    pace.seen(a, 9, 0.99, 50.0)  # older than both: not watched
    pace.seen(a, 11, 0.1, 99.0)  # (a checkpoint is kept from its first check)
    pace.learn(a, 9, 60.0)  # not watched: nothing learned
    assert pace.learned(a) == 0
    pace.learn(a, 10, 10.0)
    assert pace.learned(a) == 1 and abs(pace.share_at(a, 1) - 0.9) < 1e-6
    pace.learn(a, 11, 10.0)
    pace.learn(a, 11, 10.0)  # (once)
    assert pace.learned(a) == 2
    pace.seen(a, (1 << 23) + 12, 0.5, 1.0)  # window numbers wrap (kept exact in float32): 12 is newer than 11
    pace.learn(a, 12, 2.0)
    assert pace.learned(a) == 3
    share, low = pace.bound(None, 0.0)
    assert share == 1 / 12 and 0 < low < 1
    assert pace.bound(a, 0.95) == (1.0, 1.0)  # the last twelfth: the whole window, no spread
    assert pace.projection(a, 9.0, 0.05) == (pytest.approx(0.9), 9.0)  # never less than what is spent


def test_a_batch_series_learns_its_pace_with_the_default_lateness_and_a_loop_on_top_still_pages() -> None:
    """End to end through the runner with ``allowed_lateness``: checks of the next window run before the previous
    one closes; the front-loaded batch's pace is learned all the same."""
    r = runner(min_impact_usd=20.0)
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    c = cell(make_dims({"team": "a", "model": "sonnet"}), SIG)
    held: dict = {}
    for hh in range(h, h + 8):
        cells = {c: [0.0, 0.0]}
        for m in range(60):
            cells[c][0] += base(hh) * 0.9 / 6 if m < 6 else base(hh) * 0.1 / 54
            cells[c][1] += 10.0
            r.early(hh * H + (m + 1) * MIN, [(hh * H, cells)] + list(held.items()))
            if m == 4 and held:  # the previous window closes 5 minutes into this one (its lateness)
                (w, old), = held.items()
                r.add_bucket(w, old)
                r.close_until(w + H)
                held = {}
        held = {hh * H: cells}
    assert r.series_state(("a",))["pace"] is not None
    from agent import pace

    assert pace.learned(r.series_state(("a",))["pace"]) >= 6 and pace.share_at(r.series_state(("a",))["pace"], 1) > 0.7


def test_a_withdrawn_warning_under_the_paging_rule_names_the_rule_that_applied() -> None:
    r = runner(min_impact_usd=50.0, min_impact_percent=40)
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    early, _cells = open_hour(r, h, base(h) / 60 * 15, 20)
    assert early and early[0]["early"]
    ep = r.episodes[("a",)]
    pt = ep.last_point
    doc = r.document(ep, pt, "resolved", resolved_at=pt.window_end, withdrawn=True)
    assert "under the detector's paging rule (min_impact_usd $50.00 or 40 % of the usual)" in doc["summary"]


def test_a_loop_that_starts_late_in_the_window_is_costed_at_its_own_rate() -> None:
    """'If it continues' for a loop that started 40 minutes into the hour: its excess over the usual since a recent
    pace checkpoint, an hour — not the few minutes it has run spread over the 45 minutes of the window so far."""
    r = runner()
    feed(r, range(0, 24 * 9), base)
    h = 24 * 9
    usual = base(h) / 60
    c = cell(make_dims({"team": "a", "model": "sonnet"}), SIG)
    cells: dict = {c: [0.0, 0.0]}
    events: list[dict] = []
    for m in range(60):
        cells[c][0] += usual * (15 if m >= 40 else 1)
        cells[c][1] += 10.0
        events += r.early(h * H + (m + 1) * MIN, [(h * H, cells)])[1]
        if events:
            break
    assert [e["status"] for e in events] == ["firing"] and events[0]["early"]
    doc = events[0]
    assert doc["window_progress"] > 40 / 60
    loop_rate = 14 * usual * 60  # the loop's dollars over the usual, an hour
    hourly = doc["projected_daily_impact_usd"] / 24
    assert 0.6 * loop_rate < hourly <= 1.05 * loop_rate, (hourly, loop_rate)
    assert hourly > 2 * doc["impact_usd"] / doc["window_progress"]  # what the whole window's rate would have said
