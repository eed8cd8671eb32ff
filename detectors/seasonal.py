"""Seasonal spike and level-shift detector for spend-like series."""

from __future__ import annotations

import math
from array import array
from typing import Any, Literal

from pydantic import Field
from river.base import AnomalyDetector

from agent.registry import register
from detectors.base import DetectorCommon

# Layout of the state array (one flat array of doubles keeps a series at ~0.7 KB).
_L, _MAD, _N, _S, _STREAK, _STREAK_SUM, _LAST_T = range(7)
_HOD = 8  # 24 hour-of-day offsets
_DOW = _HOD + 24  # 7 day-of-week offsets
_NH = _DOW + 7  # 24 hour-of-day update counts
_NW = _NH + 24  # 7 day-of-week update counts
_SIZE = _NW + 7


class SeasonalConfig(DetectorCommon):
    type: Literal["seasonal"]
    threshold: float = Field(5.0, gt=0, description="score (robust residual in scale units) that is anomalous")
    alpha: float = Field(0.01, gt=0, le=1, description="learning rate of the level")
    beta: float = Field(0.15, gt=0, le=1, description="learning rate of the hour-of-day profile")
    gamma: float = Field(0.03, gt=0, le=1, description="learning rate of the day-of-week profile")
    rho: float = Field(0.02, gt=0, le=1, description="learning rate of the residual scale")
    warmup_points: int | None = Field(None, ge=0, description="default: 7 days of windows (at least 24)")
    adapt_after_points: int = Field(24, ge=1, description="accept a level shift after this many anomalous points")
    min_rel_scale: float = Field(0.03, ge=0, description="floor of the residual scale (log-like units)")
    daily: bool = True
    weekly: bool = True


class SeasonalDetector(AnomalyDetector):
    """Robust seasonal baseline (level + hour-of-day + day-of-week) with a non-learning anomaly filter.

    Values are modelled in ``asinh(y / s)`` space (log-like for large values, linear near zero,
    defined for negative credits), so daily and weekly patterns act multiplicatively on spend.
    The score is the residual divided by a robust, exponentially weighted mean absolute
    residual. Points scoring at or above ``threshold`` are not learned (River's
    ``AnomalyFilter`` idea), so a long incident does not become the new normal; after
    ``adapt_after_points`` anomalous points in a row the level is moved to the new regime (a
    level shift is alerted, then accepted).

    Parameters
    ----------
    threshold
        Score at or above which a point is anomalous.
    direction
        ``"up"`` scores only increases, ``"down"`` only decreases, ``"both"`` either.
    alpha, beta, gamma, rho
        Learning rates of the level, the hour-of-day and day-of-week profiles, and the scale.
    warmup_points
        Points learned before any score is given.
    adapt_after_points
        Consecutive anomalous points after which a level shift is accepted.
    min_rel_scale
        Floor of the residual scale.
    daily, weekly
        Whether to learn the hour-of-day and day-of-week profiles.

    Examples
    --------
    >>> import math
    >>> det = SeasonalDetector(warmup_points=48)
    >>> hour = 3600
    >>> for i in range(24 * 14):
    ...     y = 100 + 50 * math.sin(2 * math.pi * (i % 24) / 24)
    ...     x = {"t": i * hour, "y": y}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> t = 24 * 14 * hour
    >>> normal = {"t": t, "y": 100.0}
    >>> spike = {"t": t, "y": 400.0}
    >>> det.score_one(normal) < det.threshold <= det.score_one(spike)
    True
    >>> expected, lower, upper = det.forecast_one(normal)
    >>> abs(expected - 100) < 5 and lower < expected < upper
    True
    """

    def __init__(
        self,
        threshold: float = 5.0,
        direction: str = "up",
        alpha: float = 0.01,
        beta: float = 0.15,
        gamma: float = 0.03,
        rho: float = 0.02,
        warmup_points: int = 168,
        adapt_after_points: int = 24,
        min_rel_scale: float = 0.03,
        daily: bool = True,
        weekly: bool = True,
    ):
        self.threshold = threshold
        self.direction = direction
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.rho = rho
        self.warmup_points = warmup_points
        self.adapt_after_points = adapt_after_points
        self.min_rel_scale = min_rel_scale
        self.daily = daily
        self.weekly = weekly
        self._st = array("d", bytes(8 * _SIZE))
        self._st[_LAST_T] = -math.inf

    @classmethod
    def from_config(cls, cfg: SeasonalConfig) -> SeasonalDetector:
        warmup = cfg.warmup_points
        if warmup is None:
            warmup = max(24, (7 * 86400) // cfg.window_seconds)
        return cls(
            threshold=cfg.threshold,
            direction=cfg.direction,
            alpha=cfg.alpha,
            beta=cfg.beta,
            gamma=cfg.gamma,
            rho=cfg.rho,
            warmup_points=warmup,
            adapt_after_points=cfg.adapt_after_points,
            min_rel_scale=cfg.min_rel_scale,
            daily=cfg.daily,
            weekly=cfg.weekly,
        )

    # -- helpers --------------------------------------------------------------------------
    def _slots(self, t: float) -> tuple[int, int]:
        h = int(t // 3600) % 24 if self.daily else 0
        w = (int(t // 86400) + 3) % 7 if self.weekly else 0  # 1970-01-01 was a Thursday
        return h, w

    def _z(self, y: float) -> float:
        s = self._st[_S]
        return math.asinh(y / s) if s > 0 else 0.0

    def _y(self, z: float) -> float:
        return self._st[_S] * math.sinh(z)

    def _pred(self, h: int, w: int) -> float:
        st = self._st
        return st[_L] + st[_HOD + h] + st[_DOW + w]

    def _scale(self) -> float:
        return max(1.25 * self._st[_MAD], self.min_rel_scale, 1e-9)

    def _residual(self, x: dict[Any, Any]) -> float:
        h, w = self._slots(x["t"])
        return self._z(x["y"]) - self._pred(h, w)

    @property
    def n_learned(self) -> int:
        return int(self._st[_N])

    # -- River API ------------------------------------------------------------------------
    def score_one(self, x: dict[Any, Any]) -> float:
        st = self._st
        if st[_N] < self.warmup_points or st[_S] <= 0:
            return 0.0
        r = self._residual(x) / self._scale()
        if self.direction == "up":
            return max(r, 0.0)
        if self.direction == "down":
            return max(-r, 0.0)
        return abs(r)

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        st = self._st
        if st[_S] <= 0:
            return 0.0, 0.0, 0.0
        h, w = self._slots(x["t"])
        z = self._pred(h, w)
        k = self.threshold * self._scale()
        return self._y(z), self._y(z - k), self._y(z + k)

    def learn_one(self, x: dict[Any, Any]) -> None:
        st = self._st
        y = float(x["y"])
        if not math.isfinite(y):
            return
        st[_LAST_T] = x["t"]
        if st[_S] <= 0:
            if y == 0:
                st[_N] += 1
                return
            st[_S] = max(abs(y) * 0.1, 1e-12)
        h, w = self._slots(x["t"])
        z = math.asinh(y / st[_S])
        e = z - self._pred(h, w)
        n = st[_N]
        warm = n >= self.warmup_points
        if warm and abs(e) / self._scale() >= self.threshold:
            # Anomaly filter: do not learn; accept a persistent level shift after a while.
            st[_STREAK] += 1
            st[_STREAK_SUM] += e
            if st[_STREAK] >= self.adapt_after_points:
                st[_L] += st[_STREAK_SUM] / st[_STREAK]
                st[_STREAK] = 0
                st[_STREAK_SUM] = 0
            return
        st[_STREAK] = 0
        st[_STREAK_SUM] = 0
        # Residual scale first (from the pre-update residual), then the components.
        rate = max(self.rho, 1.0 / (n + 2))
        st[_MAD] = (1 - rate) * st[_MAD] + rate * abs(e) if n > 0 else abs(e)
        a = max(self.alpha, 1.0 / (n + 1))
        st[_L] += a * e
        if self.daily:
            b = max(self.beta, 1.0 / (st[_NH + h] + 1))
            st[_HOD + h] += b * (z - self._pred(h, w))
            st[_NH + h] += 1
        if self.weekly:
            g = max(self.gamma, 1.0 / (st[_NW + w] + 1))
            st[_DOW + w] += g * (z - self._pred(h, w))
            st[_NW + w] += 1
        st[_N] = n + 1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_st"] = self._st.tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        st = array("d")
        st.frombytes(state.pop("_st"))
        self.__dict__.update(state)
        self._st = st


register("detector", "seasonal", SeasonalConfig)(SeasonalDetector)
