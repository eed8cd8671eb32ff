"""Static threshold rule: a fixed ceiling (and/or floor) on a series' window value."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator
from river.base import AnomalyDetector

from agent.registry import register
from detectors.base import DetectorCommon, DetectorHooks


class ThresholdConfig(DetectorCommon):
    type: Literal["threshold"]
    upper: float | None = Field(None, description="a window value above this is anomalous")
    lower: float | None = Field(None, description="a window value below this is anomalous")

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdConfig:
        if self.upper is None and self.lower is None:
            raise ValueError("set upper, lower or both")
        if self.upper is not None and self.lower is not None and self.lower >= self.upper:
            raise ValueError("lower must be below upper")
        return self


class ThresholdDetector(DetectorHooks, AnomalyDetector):
    """Static bounds on a window value; nothing is learned.

    The score is in [0, 1]: 0 within the bounds (a value on a bound is within), and past a
    bound by ``e`` in units of that bound (``e = (y - upper) / |upper|``, or
    ``(lower - y) / |lower|``; a bound of 0 counts as 1e-9), ``0.5 + 0.5 * e / (1 + e)``: just
    over 0.5 past the bound, 0.75 at twice an upper bound, approaching 1 far beyond. A point is
    anomalous exactly when it is past a bound (``score >= threshold = 0.5``).
    :meth:`forecast_one` reports the bounds as the band (and the upper bound as its "expected" value: the
    band an early warning's pace is checked against). A fixed limit expects no value (``forecasts = False``):
    the runner measures a window's impact against the bound it crossed (``y - lower`` under a floor,
    ``y - upper`` over a ceiling, 0 within the bounds: the document's "expected" is the bound crossed);
    :meth:`crossed_bound` names the bound a point is past, for the alert's text.

    Examples
    --------
    >>> det = ThresholdDetector(upper=100.0)
    >>> det.score_one({"t": 0, "y": 50.0}), det.score_one({"t": 0, "y": 100.0})
    (0.0, 0.0)
    >>> ThresholdDetector(upper=0.5).score_one({"t": 0, "y": 4 / 8 * (1 + 1e-15)})  # rounding: on the bound
    0.0
    >>> det.score_one({"t": 0, "y": 100.001}) >= det.threshold
    True
    >>> det.score_one({"t": 0, "y": 200.0}), det.score_one({"t": 0, "y": 500.0})
    (0.75, 0.9)
    >>> det.crossed_bound({"t": 0, "y": 200.0})
    ('limit', 100.0)
    >>> det.forecast_one({"t": 0, "y": 150.0})
    (100.0, -inf, 100.0)
    >>> ThresholdDetector(lower=10.0).crossed_bound({"t": 0, "y": 5.0})
    ('floor', 10.0)
    """

    impact_is_cost = True  # with a cost_signal, the window's cost is the money at stake (an idle GPU's)

    forecasts = False  # a fixed limit: no expected value

    def __init__(self, upper: float | None = None, lower: float | None = None):
        self.upper = upper
        self.lower = lower

    @property
    def threshold(self) -> float:
        # A property, not state: a model pickled with an older score scale takes this one.
        return 0.5

    @classmethod
    def from_config(cls, cfg: ThresholdConfig) -> ThresholdDetector:
        return cls(upper=cfg.upper, lower=cfg.lower)

    def learn_one(self, x: dict[Any, Any]) -> None:
        return None

    def _past_upper(self, y: float) -> bool:
        # Sums and ratios carry rounding (4 idle GPUs of 8 may be 0.5000000000000001): within a relative
        # 1e-9 of a bound is on it.
        return self.upper is not None and y > self.upper + _ON_BOUND * max(abs(self.upper), 1e-9)

    def _past_lower(self, y: float) -> bool:
        return self.lower is not None and y < self.lower - _ON_BOUND * max(abs(self.lower), 1e-9)

    def _excess(self, y: float) -> float:
        """How far past a bound, in units of that bound (0 within the bounds)."""
        e = 0.0
        if self._past_upper(y):
            assert self.upper is not None
            e = max((y - self.upper) / max(abs(self.upper), 1e-9), 5e-324)
        if self._past_lower(y):
            assert self.lower is not None
            e = max(e, (self.lower - y) / max(abs(self.lower), 1e-9), 5e-324)
        return e

    def score_one(self, x: dict[Any, Any]) -> float:
        y = float(x["y"])
        e = self._excess(y)
        if e <= 0.0:
            return 0.0
        if math.isinf(e):
            return 1.0
        return max(0.5, 0.5 + 0.5 * e / (1.0 + e))

    def crossed_bound(self, x: dict[Any, Any]) -> tuple[str, float] | None:
        y = float(x["y"])
        if self._past_upper(y):
            return "limit", float(self.upper)  # type: ignore[arg-type]
        if self._past_lower(y):
            return "floor", float(self.lower)  # type: ignore[arg-type]
        return None

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        lo = self.lower if self.lower is not None else -math.inf
        hi = self.upper if self.upper is not None else math.inf
        expected = self.upper if self.upper is not None else lo
        return float(expected), float(lo), float(hi)


_ON_BOUND = 1e-9

register("detector", "threshold", ThresholdConfig)(ThresholdDetector)
