"""Static threshold rule: a fixed ceiling (and/or floor) on a series' window value."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator
from river.base import AnomalyDetector

from agent.registry import register
from detectors.base import DetectorCommon


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


class ThresholdDetector(AnomalyDetector):
    """Static bounds on a window value; the score is how far past a bound, in bound units.

    A score of 1 sits on the bound; 2 means twice past it. Nothing is learned.

    Examples
    --------
    >>> det = ThresholdDetector(upper=100.0)
    >>> det.score_one({"t": 0, "y": 50.0}) < det.threshold
    True
    >>> det.score_one({"t": 0, "y": 150.0}) >= det.threshold
    True
    >>> det.forecast_one({"t": 0, "y": 150.0})
    (100.0, -inf, 100.0)
    """

    def __init__(self, upper: float | None = None, lower: float | None = None):
        self.upper = upper
        self.lower = lower
        self.threshold = 1.0 + 1e-12

    @classmethod
    def from_config(cls, cfg: ThresholdConfig) -> ThresholdDetector:
        return cls(upper=cfg.upper, lower=cfg.lower)

    def learn_one(self, x: dict[Any, Any]) -> None:
        return None

    def score_one(self, x: dict[Any, Any]) -> float:
        y = float(x["y"])
        score = 0.0
        if self.upper is not None and y > self.upper:
            score = 1.0 + (y - self.upper) / max(abs(self.upper), 1e-9)
        if self.lower is not None and y < self.lower:
            score = max(score, 1.0 + (self.lower - y) / max(abs(self.lower), 1e-9))
        return score

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        lo = self.lower if self.lower is not None else -math.inf
        hi = self.upper if self.upper is not None else math.inf
        expected = self.upper if self.upper is not None else lo
        return float(expected), float(lo), float(hi)


register("detector", "threshold", ThresholdConfig)(ThresholdDetector)
