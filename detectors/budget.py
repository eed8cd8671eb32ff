"""Budget burn: month-to-date spend, a month-end forecast with an interval, and the day the budget runs out."""

from __future__ import annotations

import calendar
import math
import statistics
import time
from typing import Any, Literal

from pydantic import Field
from river.base import AnomalyDetector

from agent.registry import register
from detectors.base import DetectorCommon, DetectorHooks, init_params

_DAY = 86400.0
_DAMP = 0.9  # per-day damping of the growth trend in forecasts


class BudgetConfig(DetectorCommon):
    type: Literal["budget"]
    monthly_budget_usd: float = Field(gt=0, description="budget of every series without one in budgets_usd")
    budgets_usd: dict[str, float] = Field(
        default_factory=dict,
        description="budgets of single series, keyed by their group_by values joined with '/' (e.g. 'search')",
    )
    alert_at_forecast_ratio: float = Field(1.0, gt=0, description="alert when forecast / budget reaches this")
    min_elapsed_days: float = Field(3.0, ge=0, description="no forecast alerts before this much of the month")
    run_rate_days: float = Field(3.0, ge=1, description="memory of the daily run rate (days)")
    interval: float = Field(0.9, gt=0, lt=1, description="coverage of the month-end forecast interval")
    alert_probability: float = Field(
        0.8, gt=0, lt=1, description="alert when the month ends over budget × ratio with at least this probability"
    )
    fill_missing: bool = True


def _month(t: float) -> tuple[int, float, float]:
    """(year * 12 + month, month start, month end) of the UTC month holding ``t``."""
    g = time.gmtime(t)
    start = calendar.timegm((g.tm_year, g.tm_mon, 1, 0, 0, 0))
    days = calendar.monthrange(g.tm_year, g.tm_mon)[1]
    return g.tm_year * 12 + g.tm_mon, float(start), float(start + days * _DAY)


class BudgetDetector(DetectorHooks, AnomalyDetector):
    """Forecasts each series' month-end spend and scores it against the series' monthly budget.

    The forecast is the month-to-date spend plus the remaining days at the daily run rate: an
    exponentially weighted mean of the last complete days' spend (memory ``run_rate_days``;
    while fewer than three days are complete, this month's average day). Its interval
    (``interval`` coverage) adds the day-to-day variation of the remaining days and the
    uncertainty of the run rate itself. The score is forecast / budget: the series alerts when
    that reaches ``alert_at_forecast_ratio``, and :meth:`explain` says when, at this rate, the
    budget runs out ("spent on 2026-11-19"). Windows are summed as they are learned, so the
    forecast moves within hours of a change in the burn rate, not at the end of the month.

    Examples
    --------
    >>> det = BudgetDetector(monthly_budget_usd=3000.0, min_elapsed_days=1)
    >>> t0 = 1725148800.0  # 2024-09-01
    >>> for day in range(5):
    ...     det.learn_one({"t": t0 + day * 86400, "t_end": t0 + (day + 1) * 86400, "y": 200.0})
    >>> x = {"t": t0 + 5 * 86400, "t_end": t0 + 6 * 86400, "y": 200.0}
    >>> round(det.score_one(x), 2)  # 200/day → 6000 in 30 days
    2.0
    >>> det.explain(x).split(": ")[-1]
    'at this rate the budget is spent on 2024-09-15'
    >>> det.forecast(x)  # month-end forecast, lower, upper (steady days: a narrow interval)
    (6000.0, 6000.0, 6000.0)
    """

    watches_month = True

    def __init__(
        self,
        monthly_budget_usd: float = 1000.0,
        alert_at_forecast_ratio: float = 1.0,
        min_elapsed_days: float = 3.0,
        run_rate_days: float = 3.0,
        interval: float = 0.9,
        budgets_usd: dict[str, float] | None = None,
        alert_probability: float = 0.8,
    ):
        self.monthly_budget_usd = monthly_budget_usd
        self.alert_at_forecast_ratio = alert_at_forecast_ratio
        self.min_elapsed_days = min_elapsed_days
        self.run_rate_days = run_rate_days
        self.interval = interval
        self.budgets_usd = budgets_usd or {}
        self.alert_probability = alert_probability
        self._z_alert = statistics.NormalDist().inv_cdf(alert_probability)
        self.threshold = alert_at_forecast_ratio
        self.budget = monthly_budget_usd  # this series' budget (see bind_series)
        self._month = 0
        self._mtd = 0.0
        self._day = -1  # index (epoch days) of the day being summed
        self._day_sum = 0.0
        self._days = 0  # complete days in the run rate
        self._rate = 0.0  # daily run rate (EW mean of complete days)
        self._dow = [0.0] * 7  # usual spend of each weekday, at level 1 (Thursday first: epoch day 0)
        self._level = 1.0  # how the recent days compare with their weekdays (EW of the ratio)
        self._rel_var = 0.0  # EW variance of a day's ratio to its expectation
        self._walk = 0.0  # EW of the level's squared relative change per day
        self._trend = 0.0  # EW of the level's relative change per day (growth)
        # The point last forecast: (t, t_end, y) → (days ahead, month to date, forecast, sd). The
        # agent asks for the score, the band, the impact and the text of the same point.
        self._memo: tuple[tuple[Any, ...], list[tuple[float, float]], float, float, float] | None = None

    @classmethod
    def from_config(cls, cfg: BudgetConfig) -> BudgetDetector:
        return cls(**init_params(cls, cfg, budgets_usd=dict(cfg.budgets_usd)))

    def bind_series(self, key: tuple[str, ...]) -> None:
        """Called by the agent for each new series: its own budget where ``budgets_usd`` has one."""
        self.budget = self.budgets_usd.get("/".join(key), self.monthly_budget_usd)
        self.budgets_usd = {}  # the series keeps its own budget only (small state per series)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Loads states of earlier versions too (month as (year, month), no weekday profile): the
        month to date carries over, the run rate starts afresh."""
        if "_dow" not in state:
            fresh = BudgetDetector(
                state.get("monthly_budget_usd", 1000.0),
                state.get("alert_at_forecast_ratio", 1.0),
                state.get("min_elapsed_days", 3.0),
            ).__dict__
            month = state.get("_month", 0)
            fresh.update(
                _month=month[0] * 12 + month[1] if isinstance(month, tuple) else month,
                _mtd=state.get("_mtd", 0.0),
            )
            state = fresh
        self.__dict__.update(state)
        self._memo = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_memo": None}

    # -- the forecast -----------------------------------------------------------------------
    def _now(self, x: dict[Any, Any]) -> tuple[float, float, float, float]:
        """(month-to-date spend including ``x``, end of ``x``, month start, month end)."""
        month, start, end = _month(x["t"])
        mtd = self._mtd if month == self._month else 0.0
        return mtd + float(x["y"]), float(x.get("t_end", x["t"])), start, end

    def _days_ahead(self, x: dict[Any, Any]) -> list[tuple[float, float]]:
        """(end of the day or part of a day, expected spend in it) from the end of ``x`` to the
        month's end: each day at its weekday's usual spend times the current level (how the last
        days compared with their weekdays), so a weekend ahead is not forecast at a Tuesday's
        rate; a flat daily run rate until every weekday has been seen."""
        mtd, t, start, end = self._now(x)
        if self._days >= 3:
            flat = self._rate
        else:  # little history: this month's average day so far
            flat = mtd / max((t - start) / _DAY, 1 / 24)
        weekly = self._days >= 7 + 3
        # Growth goes on: the level (an EW mean) lags a growing series by (1 - r) / r days of it.
        trend = min(max(self._trend, -0.03), 0.03) if weekly else 0.0
        lag = self.run_rate_days - 1
        last = self._day - 1  # the last complete day, which the level has seen
        out = []
        day = int(t // _DAY)
        spent_today = self._day_sum + float(x["y"]) if int(x["t"] // _DAY) == self._day else float(x["y"])
        while day * _DAY < end:
            day_end = min((day + 1) * _DAY, end)
            if weekly:  # 1970-01-01: Thursday (growth damped by _DAMP a day: a trend does not last forever)
                ahead = (1 - _DAMP ** (day - last)) / (1 - _DAMP)
                e = self._level * self._dow[(day + 3) % 7] * max(1 + trend * (lag + ahead), 0.0)
            else:
                e = flat
            if day * _DAY < t:  # the day in progress: what is left of it
                e = max(e - spent_today, 0.0) if weekly else e * (day_end - t) / _DAY
            if day_end > t:
                out.append((day_end, e))
            day += 1
        return out

    def _uncertainty(self) -> tuple[float, float, float]:
        """(relative variance of one day's spend, days of evidence behind the run rate, relative
        variance per day of the level's own wandering)."""
        if self._days < 3:
            return 0.25, 1.0, 0.0  # little history: a wide interval
        # An EW mean with r days of memory rests on about r days of evidence (counting no more
        # also allows for the noise of the variance estimate itself).
        # The level steps even on a steady series (it follows noisy days: r² · noise · 2/(2 - r)
        # per step); only what goes beyond that is wandering.
        r = 1.0 / self.run_rate_days
        walk = max(self._walk - r * r * self._rel_var * 2 / (2 - r), 0.0)
        return self._rel_var, min(float(self._days), self.run_rate_days), walk

    def _plan(self, x: dict[Any, Any]) -> tuple[list[tuple[float, float]], float, float, float]:
        """(days ahead, month to date, month-end forecast, its standard deviation) for ``x``."""
        key = (x["t"], x.get("t_end"), x["y"])
        memo = self._memo
        if memo is not None and memo[0] == key:
            return memo[1:]
        days = self._days_ahead(x)
        mtd, fc, sd = self._forecast(x, [e for _end, e in days])
        self._memo = (key, days, mtd, fc, sd)
        return days, mtd, fc, sd

    def _forecast(self, x: dict[Any, Any], ahead: list[float]) -> tuple[float, float, float]:
        """(month to date, month-end forecast, its standard deviation) given the days ahead."""
        mtd = self._now(x)[0]
        rest = sum(ahead)
        rel, n_eff, walk = self._uncertainty()
        # Day-to-day noise of the remaining days, the run rate's own uncertainty (shared by all
        # of them), and the level wandering on as it did (a random walk: its variance grows with
        # the horizon, so the sum over R days carries about R/3 of one day's R² share).
        sd = math.sqrt(rel * sum(e * e for e in ahead) + rest * rest * (rel / n_eff + walk * len(ahead) / 3))
        return mtd, mtd + rest, sd

    def forecast(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        """Month-end spend: (forecast, lower, upper) at the ``interval`` coverage."""
        _days, mtd, fc, sd = self._plan(x)
        z = statistics.NormalDist().inv_cdf(0.5 + self.interval / 2)
        return fc, max(mtd, fc - z * sd), fc + z * sd

    def overrun_usd(self, x: dict[Any, Any]) -> float:
        """The forecast month's dollars over this series' budget (negative: under it)."""
        return self.forecast_month(x) - self.budget

    def forecast_month(self, x: dict[Any, Any]) -> float:
        return self.forecast(x)[0]

    def month_so_far(self, x: dict[Any, Any]) -> float:
        return self._now(x)[0]

    def exhausted_at(self, x: dict[Any, Any]) -> float | None:
        """When the budget runs out at this rate (epoch seconds; the window's end when it already
        has), or None when it lasts the month."""
        mtd, t, _start, _end = self._now(x)
        if mtd >= self.budget:
            return t
        left = self.budget - mtd
        prev = t
        for day_end, e in self._plan(x)[0]:
            if e >= left:
                return prev + (day_end - prev) * left / e
            left -= e
            prev = day_end
        return None

    def explain(self, x: dict[Any, Any]) -> str:
        mtd = self.month_so_far(x)
        fc, lo, hi = self.forecast(x)
        text = (
            f"month to date {_usd(mtd)}, month-end forecast {_usd(fc)} ({self.interval:.0%} interval "
            f"{_usd(lo)}–{_usd(hi)}) vs budget {_usd(self.budget)}"
        )
        at = self.exhausted_at(x)
        if at is None:
            return text
        day = time.strftime("%Y-%m-%d", time.gmtime(at - 1))  # the day in which it runs out
        if mtd >= self.budget:
            return f"{text}: the budget is spent (by {day})"
        return f"{text}: at this rate the budget is spent on {day}"

    # -- River API ----------------------------------------------------------------------------
    def learn_one(self, x: dict[Any, Any]) -> None:
        y = float(x["y"])
        if not math.isfinite(y):
            return
        self._memo = None
        month, _start, _end = _month(x["t"])
        if month != self._month:
            self._month, self._mtd = month, 0.0
        day = int(x["t"] // _DAY)
        if day != self._day:
            if self._day >= 0:
                self._close_days(day)
            self._day, self._day_sum = day, 0.0
        self._day_sum += y
        self._mtd += y

    def _close_days(self, day: int) -> None:
        """The day being summed is complete (and any skipped days spent nothing)."""
        total = self._day_sum
        for d in range(self._day, self._day + min(day - self._day, 31)):
            self._days += 1
            r = max(1.0 / self.run_rate_days, 1.0 / self._days)
            k = (d + 3) % 7
            usual = self._dow[k]
            # A day's relative deviation from what was expected of it: from the flat run rate until
            # the weekdays are known, then from its weekday at the current level.
            if self._days > 7 + 3 and usual > 0 and self._level > 0:
                dev: float | None = total / (usual * self._level) - 1
            else:
                dev = total / self._rate - 1 if self._rate > 0 else None
            if dev is not None:
                self._rel_var = (1 - r) * (self._rel_var + r * dev * dev) if self._rel_var else dev * dev
            self._rate += r * (total - self._rate)
            if usual <= 0:  # the first of this weekday: its own total, at the current level
                self._dow[k] = total / self._level if self._level > 0 else total
            else:
                if self._days > 7:
                    before = self._level
                    self._level += r * (total / usual - self._level)
                    if before > 0:  # how far the level wanders per day (relative): growth, drift
                        step = (self._level - before) / before
                        self._walk += max(1 / 7, 1 / (self._days - 7)) * (step * step - self._walk)
                        self._trend += max(1 / 14, 1 / (self._days - 7)) * (step - self._trend)
                # The weekday's usual spend learns slowly (it recurs once a week).
                self._dow[k] = usual + 0.3 * (total / self._level - usual) if self._level > 0 else total
            total = 0.0

    def score_one(self, x: dict[Any, Any]) -> float:
        _mtd, t, start, _end = self._now(x)
        if (t - start) / _DAY < self.min_elapsed_days:
            return 0.0
        _days, mtd, fc, sd = self._plan(x)
        # The month-end spend exceeded with probability alert_probability (the forecast itself at 0.5).
        return max(mtd, fc - self._z_alert * sd) / self.budget

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        """The month-end forecast and its interval (the agent reports the month to date as observed)."""
        return self.forecast(x)


def _usd(v: float) -> str:
    return f"${v:,.2f}"


register("detector", "budget", BudgetConfig)(BudgetDetector)
