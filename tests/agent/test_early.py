"""Early warnings inside an open window (agent/early.py), at the runner: raised, confirmed, withdrawn."""

from __future__ import annotations

import math
import random

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
    on_course = doc["observed"] + doc["expected"] * (1 - doc["window_progress"])  # the rest at the usual pace
    assert on_course > doc["upper"] > doc["expected"]
    assert abs(doc["impact_usd"] - (doc["observed"] - doc["window_progress"] * doc["expected"])) < 1e-3
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
