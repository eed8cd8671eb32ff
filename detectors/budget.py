"""Budget burn rule: month-to-date spend and its end-of-month forecast against a monthly budget."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any, Literal

from pydantic import Field
from river.base import AnomalyDetector

from agent.registry import register
from detectors.base import DetectorCommon


class BudgetConfig(DetectorCommon):
    type: Literal["budget"]
    monthly_budget_usd: float = Field(gt=0)
    alert_at_forecast_ratio: float = Field(1.0, gt=0, description="alert when forecast / budget reaches this")
    min_elapsed_days: float = Field(3.0, ge=0, description="no forecast alerts before this much of the month")
    fill_missing: bool = True


def _month_bounds(t: float) -> tuple[float, float, tuple[int, int]]:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    start = dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC)
    days = calendar.monthrange(d.year, d.month)[1]
    return start.timestamp(), start.timestamp() + days * 86400, (d.year, d.month)


class BudgetDetector(AnomalyDetector):
    """Forecasts month-end spend from the month-to-date run rate; score = forecast / budget.

    ``forecast_one`` returns the pro-rata budget for the time elapsed as the expected value and
    the month-to-date spend that would put the month exactly on budget as the upper bound.

    Examples
    --------
    >>> det = BudgetDetector(monthly_budget_usd=3000.0, min_elapsed_days=1)
    >>> t0 = 1725148800.0  # 2024-09-01
    >>> for day in range(5):
    ...     x = {"t": t0 + day * 86400, "t_end": t0 + (day + 1) * 86400, "y": 200.0}
    ...     det.learn_one(x)
    >>> round(det.score_one({"t": t0 + 5 * 86400, "t_end": t0 + 6 * 86400, "y": 200.0}), 2)  # 200/day → 6000 in 30 days
    2.0
    """

    def __init__(
        self, monthly_budget_usd: float = 1000.0, alert_at_forecast_ratio: float = 1.0, min_elapsed_days: float = 3.0
    ):
        self.monthly_budget_usd = monthly_budget_usd
        self.alert_at_forecast_ratio = alert_at_forecast_ratio
        self.min_elapsed_days = min_elapsed_days
        self.threshold = alert_at_forecast_ratio
        self._month: tuple[int, int] = (0, 0)
        self._mtd = 0.0
        self._covered_until = 0.0  # end of the last learned window

    @classmethod
    def from_config(cls, cfg: BudgetConfig) -> BudgetDetector:
        return cls(cfg.monthly_budget_usd, cfg.alert_at_forecast_ratio, cfg.min_elapsed_days)

    def _mtd_with(self, x: dict[Any, Any]) -> tuple[float, float, float, float]:
        start, end, month = _month_bounds(x["t"])
        mtd = self._mtd if month == self._month else 0.0
        return start, end, mtd + float(x["y"]), float(x.get("t_end", x["t"]))

    def learn_one(self, x: dict[Any, Any]) -> None:
        _start, _end, month = _month_bounds(x["t"])
        if month != self._month:
            self._month, self._mtd = month, 0.0
        self._mtd += float(x["y"])
        self._covered_until = x["t"]

    def forecast_month(self, x: dict[Any, Any]) -> float:
        start, end, mtd, t = self._mtd_with(x)
        elapsed = max(t - start, 1.0)
        return mtd * (end - start) / elapsed

    def score_one(self, x: dict[Any, Any]) -> float:
        start, _end, _mtd, t = self._mtd_with(x)
        if (t - start) / 86400 < self.min_elapsed_days:
            return 0.0
        return self.forecast_month(x) / self.monthly_budget_usd

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        start, end, _mtd, t = self._mtd_with(x)
        frac = (t - start) / (end - start)
        pro_rata = self.monthly_budget_usd * frac
        return pro_rata, 0.0, self.monthly_budget_usd * frac * self.alert_at_forecast_ratio

    def month_to_date(self, x: dict[Any, Any]) -> float:
        return self._mtd_with(x)[2]


register("detector", "budget", BudgetConfig)(BudgetDetector)
