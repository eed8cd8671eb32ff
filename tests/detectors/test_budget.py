"""Budget burn: forecasts, their intervals, per-series budgets and the alert an on-call reads."""

from __future__ import annotations

import calendar
import random

from agent.config import AlertingConfig
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from detectors.budget import BudgetConfig, BudgetDetector

H = 3600.0
NOV_1 = float(calendar.timegm((2026, 11, 1, 0, 0, 0)))


def daily_noise_month(det: BudgetDetector, seed: int, check_day: int) -> tuple[tuple[float, float, float], float]:
    """October at ~$100/h, then November to ``check_day``: the forecast then and November's actual total."""
    rng = random.Random(seed)
    t = NOV_1 - 31 * 86400
    forecast = (0.0, 0.0, 0.0)
    total = 0.0
    day_factor = 1.0
    while t < NOV_1 + 30 * 86400:
        if t % 86400 == 0:
            day_factor = rng.lognormvariate(0, 0.2)  # days vary more than hours
        x = {"t": t, "t_end": t + H, "y": 100.0 * day_factor * rng.uniform(0.8, 1.2)}
        if t == NOV_1 + check_day * 86400:
            forecast = det.forecast(x)
        if t >= NOV_1:
            total += x["y"]
        det.learn_one(x)
        t += H
    return forecast, total


def test_the_forecast_interval_covers_the_month_end_about_as_often_as_it_says() -> None:
    inside = 0
    for seed in range(40):
        det = BudgetDetector(monthly_budget_usd=80_000, interval=0.9)
        (fc, lo, hi), total = daily_noise_month(det, seed, check_day=10)
        assert lo < fc < hi
        inside += lo <= total <= hi
    assert 32 <= inside <= 40, inside  # 90 % nominal: 36 of 40 expected


def test_a_level_shift_alerts_with_the_day_the_budget_runs_out() -> None:
    cfg = BudgetConfig(
        type="budget", signal="token_cost_usd", group_by=["team"], monthly_budget_usd=1_000_000,
        budgets_usd={"search": 3000.0}, min_impact_usd=1,
    )  # fmt: skip
    r = DetectorRunner("budget", cfg, BudgetDetector.from_config(cfg), AlertingConfig())
    events = []
    t = NOV_1 - 10 * 86400
    while t < NOV_1 + 30 * 86400:
        rate = 2.0 if t < NOV_1 + 9 * 86400 else 8.0  # $48 a day, then $192 a day from 10 November
        cells = {cell(make_dims({"team": team}), ("token_cost_usd",)): [rate] for team in ("search", "ads")}
        r.add_bucket(t, cells)
        events += r.close_until(t + H)[1]
        t += H
    assert r.models[("ads",)].budget == 1_000_000 and r.models[("search",)].budget == 3000
    firing = [e for e in events if e["status"] == "firing"]
    assert {e["id"] for e in firing} == {firing[0]["id"]} and firing[0]["series"] == {"team": "search"}
    first = firing[0]
    # 9 days at $48 + the rest at $192 = $3,000 on day 23.
    assert first["summary"].startswith("[budget] token_cost_usd team=search: month to date $")
    assert "at this rate the budget is spent on 2026-11-2" in first["summary"]
    assert first["reason"] in first["summary"]
    assert first["observed"] < 3000 < first["expected"]  # month to date vs the month-end forecast
    assert first["lower"] <= first["expected"] <= first["upper"]
    # The budget runs out on the 23rd; the alert comes at least five days before (it waits until
    # the month ends over budget with 80 % probability: a jump makes the next days uncertain).
    assert first["window_start"] < "2026-11-18"


def test_alert_probability_scores_the_quantile_of_the_month_end() -> None:
    sure, even = (
        BudgetDetector(monthly_budget_usd=80_000),
        BudgetDetector(monthly_budget_usd=80_000, alert_probability=0.5),
    )
    for det in (sure, even):
        daily_noise_month(det, seed=4, check_day=10)
    x = {"t": NOV_1 + 29 * 86400 - 10 * H, "t_end": NOV_1 + 29 * 86400 - 9 * H, "y": 100.0}
    fc, lo, hi = even.forecast(x)
    assert even.score_one(x) == fc / 80_000
    assert lo / 80_000 < sure.score_one(x) < even.score_one(x)  # 80 %: between the forecast and its 5 % bound


def test_a_state_pickled_by_the_earlier_budget_detector_loads() -> None:
    old = {
        "monthly_budget_usd": 5000.0,
        "alert_at_forecast_ratio": 1.0,
        "min_elapsed_days": 3.0,
        "threshold": 1.0,
        "_month": (2026, 11),
        "_mtd": 1234.0,
        "_covered_until": NOV_1,
    }
    det = BudgetDetector.__new__(BudgetDetector)
    det.__setstate__(old)
    x = {"t": NOV_1 + 5 * 86400, "t_end": NOV_1 + 5 * 86400 + H, "y": 10.0}
    assert det.month_so_far(x) == 1244.0 and det.budget == 5000.0
    assert det.score_one(x) > 0
    det.learn_one(x)
