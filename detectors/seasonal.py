"""Seasonal anomaly detector for spend-like series: residual likelihood, range breaks, refractory.

Measured on the Numenta Anomaly Benchmark and on seeded cost-shaped series (``make
bench-quality``, figures in ``bench/RESULTS.md``); the defaults here are the configuration measured.
"""

from __future__ import annotations

import inspect
import math
import time
from array import array
from typing import Any, Literal

from pydantic import Field, model_validator
from river.base import AnomalyDetector

from agent.registry import register
from detectors.base import DetectorCommon, DetectorHooks, init_params, is_usd

# Layout of the scalar state (one flat array of doubles: no per-attribute object overhead).
(_L, _MAD, _N, _S, _LO, _HI, _M, _V, _I, _SINCE, _PREV_T, _DMAX, _CT, _CY, _CRAW, _CDEV) = range(16)
_RESOLVED = 0.5  # the refractory clock's fraction once the agent resolved the incident's alert
_DOW = 16  # 7 day-of-week offsets
_MS = _DOW + 7  # offset of the first window of a month (monthly fees, support, reservations)
# Week-over-week growth: the day being summed, its sum and count of values, the last eight daily
# means (ring by day), the usual growth's EW mean, variance and sample count, and the growth
# score that the first point of the next day carries.
_GDAY, _GSUM, _GN, _GR = _MS + 1, _MS + 2, _MS + 3, _MS + 4
_GM, _GV, _GK, _GS, _GX, _GG = _GR + 8, _GR + 9, _GR + 10, _GR + 11, _GR + 12, _GR + 13  # + excess a day, growth
_BUF = _GR + 14  # the last `likelihood_points` raw scores
_OLD_BUF = _MS  # layout before the month-start offset (states pickled by earlier versions)
_SQRT2 = math.sqrt(2.0)
_LOG10_FLOOR = 1e-300


class SeasonalConfig(DetectorCommon):
    type: Literal["seasonal"]
    threshold: float = Field(0.5, gt=0, le=1, description="anomaly score in [0, 1] at which a point is anomalous")
    alpha: float = Field(0.01, gt=0, le=1, description="learning rate of the level")
    beta: float = Field(0.1, gt=0, le=1, description="learning rate of the time-of-day profile")
    gamma: float = Field(0.03, gt=0, le=1, description="learning rate of the day-of-week profile")
    rho: float = Field(0.01, gt=0, le=1, description="learning rate of the residual scale")
    warmup_points: int | None = Field(None, ge=0, description="default: 7 days of windows (at least 24)")
    error_cap: float = Field(5.0, gt=0, description="residual (in scale units) at which a point's error saturates")
    likelihood_points: int = Field(12, ge=1, le=64, description="recent points whose mean error is judged")
    likelihood_rate: float = Field(0.002, gt=0, le=1, description="learning rate of the usual mean error")
    range_tolerance: float = Field(
        0.1, ge=0, description="a value beyond the range seen so far by this fraction of it scores 1"
    )
    point_weight: float = Field(
        0.4,
        ge=0,
        description="a record residual's -log10 tail per scale unit (Laplace: 0.54); 0 turns it off",
    )
    max_decay: float = Field(0.99, gt=0, le=1, description="per-point decay of the largest recent residual")
    refractory_points: int = Field(20, ge=0, description="points after an anomaly that need more evidence")
    refractory_factor: float = Field(0.3, gt=0, le=1, description="score multiplier during the refractory points")
    phase_tolerance: int = Field(1, ge=0, le=4, description="neighbouring time-of-day slots also accepted")
    daily_slots_max: int = Field(288, ge=1, le=1440, description="most time-of-day slots (at the series' cadence)")
    min_rel_scale: float = Field(0.01, ge=0, description="floor of the residual scale (log-like units)")
    daily: bool = True
    weekly: bool = True
    monthly: bool = Field(
        True, description="the first window of each month learns its own offset (fees billed on the 1st)"
    )
    monthly_rate: float = Field(0.5, gt=0, le=1, description="learning rate of the month-start offset")
    growth: bool = Field(True, description="judge each day's mean against the same weekday a week before")
    growth_min_days: int = Field(14, ge=2, description="week-over-week samples before growth is judged")
    new_series_usd: float | None = Field(
        None,
        gt=0,
        description="a series that appears after the others are warmed up alerts once its spend reaches this"
        " (before its own model has the history to judge it); not for ratios",
    )

    @model_validator(mode="after")
    def _new_series_needs_a_sum(self) -> SeasonalConfig:
        if self.new_series_usd is not None and self.per is not None:
            raise ValueError("new_series_usd watches spend; it does not apply to a ratio (per)")
        if self.new_series_usd is not None and not (is_usd(self.signal) or self.cost_signal):
            raise ValueError("new_series_usd needs a USD signal or a cost_signal")
        return self


class SeasonalDetector(DetectorHooks, AnomalyDetector):
    """Likelihood of recent residuals against a seasonal baseline, plus range breaks.

    Values are modelled in ``asinh(y / s)`` space (log-like for large values, linear near zero,
    defined for negative credits), so daily and weekly patterns act multiplicatively on spend.
    The baseline is a level plus a time-of-day profile at the series' own cadence (24 slots for
    hourly windows, up to ``daily_slots_max``) plus day-of-week offsets. Each point's error is
    its residual in units of a robust scale (the mean absolute residual), capped at
    ``error_cap`` and mapped to [0, 1]; a neighbouring time-of-day slot that explains the point
    better is accepted (``phase_tolerance``: a daily job a few minutes late is no anomaly).

    The anomaly score in [0, 1] is not the error itself but how unlikely the mean error of the
    last ``likelihood_points`` points is, given the usual mean error of this series (a normal
    tail, as the anomaly likelihood of Numenta's HTM detector): a noisy series needs a larger
    excursion than a quiet one, and scores compare across series so that one threshold fits
    all. ``score = -log10(tail) / 10``, capped at 1 (0.5 ≈ a one-in-100,000 tail). A single
    point whose residual is the largest in a long while (above the largest recent residual,
    which decays by ``max_decay`` per point) is also judged on its own, with a Laplace tail
    (``point_weight`` per scale unit): a lone spike is not diluted by the mean. A value beyond
    the whole range seen so far (by ``range_tolerance`` of that range) scores 1 when it is also
    beyond the usual band, or, once the range rests on three warm-ups of history, beyond the
    usual noise (a series that grows week over week may exceed it by two weeks of its growth).

    Slow changes — a leak adding a little every day, a drift — creep past the level and the
    scale, which adapt to them. So each complete UTC day's mean is also compared with the same
    weekday a week before (``growth``), against this series' usual week-over-week moves (after
    ``growth_min_days`` of them); an unlikely move scores like the rest, for the next day, unless
    an anomaly paged in the last seven days explains it. :meth:`sustained` tells the agent what such a
    move is worth a day: a leak costs little per window and much per day.

    After an anomalous point, scores are multiplied by ``refractory_factor`` for
    ``refractory_points`` points: one incident pages once. :meth:`excursion` still tells the
    alert lifecycle that the series has not come back (the episode stays open, its dollar
    impact keeps adding up, and it is not paged again).

    Parameters are those of :class:`SeasonalConfig`.

    Examples
    --------
    >>> import math
    >>> det = SeasonalDetector(warmup_points=48)
    >>> hour = 3600
    >>> for i in range(24 * 14):
    ...     y = 100 + 50 * math.sin(2 * math.pi * (i % 24) / 24) + (i * 7919 % 13) - 6
    ...     x = {"t": i * hour, "y": y}
    ...     _ = det.score_one(x)
    ...     det.learn_one(x)
    >>> t = 24 * 14 * hour
    >>> normal = {"t": t, "y": 100.0}
    >>> spike = {"t": t, "y": 400.0}
    >>> det.score_one(normal) < det.threshold <= det.score_one(spike) <= 1
    True
    >>> expected, lower, upper = det.forecast_one(normal)
    >>> abs(expected - 100) < 5 and lower < expected < upper
    True
    """

    # The parameters (class attributes hold the defaults of __init__; a model stores only those it changes).
    threshold: float
    direction: str
    alpha: float
    beta: float
    gamma: float
    rho: float
    warmup_points: int
    error_cap: float
    likelihood_points: int
    likelihood_rate: float
    range_tolerance: float
    point_weight: float
    max_decay: float
    refractory_points: int
    refractory_factor: float
    phase_tolerance: int
    daily_slots_max: int
    min_rel_scale: float
    daily: bool
    weekly: bool
    monthly: bool
    monthly_rate: float
    growth: bool
    growth_min_days: int

    def __init__(
        self,
        threshold: float = 0.5,
        direction: str = "up",
        alpha: float = 0.01,
        beta: float = 0.1,
        gamma: float = 0.03,
        rho: float = 0.01,
        warmup_points: int = 168,
        error_cap: float = 5.0,
        likelihood_points: int = 12,
        likelihood_rate: float = 0.002,
        range_tolerance: float = 0.1,
        point_weight: float = 0.4,
        max_decay: float = 0.99,
        refractory_points: int = 20,
        refractory_factor: float = 0.3,
        phase_tolerance: int = 1,
        daily_slots_max: int = 288,
        min_rel_scale: float = 0.01,
        daily: bool = True,
        weekly: bool = True,
        monthly: bool = True,
        monthly_rate: float = 0.5,
        growth: bool = True,
        growth_min_days: int = 14,
    ):
        # Parameters equal to the class's defaults are not stored per model (one model per series: 26 attributes
        # each would cost about 300 bytes a series); River reads them back with getattr all the same.
        _own(
            self,
            threshold=threshold,
            direction=direction,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            rho=rho,
            warmup_points=warmup_points,
            error_cap=error_cap,
            likelihood_points=likelihood_points,
            likelihood_rate=likelihood_rate,
            range_tolerance=range_tolerance,
            point_weight=point_weight,
            max_decay=max_decay,
            refractory_points=refractory_points,
            refractory_factor=refractory_factor,
            phase_tolerance=phase_tolerance,
            daily_slots_max=daily_slots_max,
            min_rel_scale=min_rel_scale,
            daily=daily,
            weekly=weekly,
            monthly=monthly,
            monthly_rate=monthly_rate,
            growth=growth,
            growth_min_days=growth_min_days,
        )
        st = self._st = _zeros("d", _BUF + likelihood_points)
        st[_LO], st[_HI] = math.inf, -math.inf
        st[_SINCE] = st[_PREV_T] = st[_CT] = math.inf
        st[_GDAY] = -1.0
        st[_GR : _GR + 8] = array("d", [math.nan] * 8)
        self._prof = array("f")  # time-of-day profile, allocated once the cadence is known

    @classmethod
    def from_config(cls, cfg: SeasonalConfig) -> SeasonalDetector:
        warmup = cfg.warmup_points
        if warmup is None:
            warmup = max(24, (7 * 86400) // cfg.window_seconds)
        return cls(**init_params(cls, cfg, warmup_points=warmup))

    # -- the model ------------------------------------------------------------------------
    def _z(self, y: float) -> float:
        s = self._st[_S]
        return math.asinh(y / s) if s > 0 else 0.0

    def _y(self, z: float) -> float:
        return self._st[_S] * math.sinh(z)

    def _slot(self, t: float) -> int:
        prof = self._prof
        return int((t % 86400) * len(prof) // 86400) if prof else -1

    def _base(self, t: float) -> float:
        """Level plus day-of-week and month-start offsets (the time-of-day profile is added by the caller)."""
        st = self._st
        b = st[_L] + (st[_DOW + (int(t // 86400) + 3) % 7] if self.weekly else 0.0)  # 1970-01-01: Thursday
        if self.monthly and _month_start(t):
            b += st[_MS]
        return b

    def _pred(self, t: float) -> float:
        j = self._slot(t)
        return self._base(t) + (self._prof[j] if j >= 0 else 0.0)

    def _residual(self, z: float, t: float) -> float:
        """Residual against the baseline; the smallest over ``phase_tolerance`` neighbouring slots."""
        base = z - self._base(t)
        prof = self._prof
        if not prof:
            return base
        n = len(prof)
        j = int((t % 86400) * n // 86400)
        e = base - prof[j]
        ae = abs(e)
        for d in range(1, self.phase_tolerance + 1):
            for e2 in base - prof[(j - d) % n], base - prof[(j + d) % n]:
                if abs(e2) < ae:
                    e, ae = e2, abs(e2)
        return e

    def _band(self) -> float:
        """Half-width of the usual band (:meth:`forecast_one`), in scale units."""
        return 0.5 * self.error_cap

    def _scale(self) -> float:
        return max(1.25 * self._st[_MAD], self.min_rel_scale, 1e-12)

    def _deviation(self, x: dict[Any, Any]) -> float:
        """This point's residual in scale units, in the watched direction (0 the other way)."""
        st = self._st
        if st[_N] == 0 or st[_S] <= 0:
            return 0.0
        e = self._residual(self._z(float(x["y"])), x["t"]) / self._scale()
        if self.direction == "up":
            return max(e, 0.0)
        if self.direction == "down":
            return max(-e, 0.0)
        return abs(e)

    def _unrefracted(self, x: dict[Any, Any]) -> float:
        """Score before the refractory discount (cached for the point last scored)."""
        st = self._st
        y = float(x["y"])
        t = x["t"]
        if st[_CT] == t and st[_CY] == y:
            return st[_CRAW]
        dev = 0.0
        if st[_N] < self.warmup_points or st[_S] <= 0 or not math.isfinite(y):
            score = 0.0
        else:
            k = self.likelihood_points
            cap = self.error_cap
            dev = self._deviation(x)
            mean = (sum(st[_BUF : _BUF + k]) - st[_BUF + int(st[_I])] + (dev / cap if dev < cap else 1.0)) / k
            v = st[_V]
            tail = 0.5 * math.erfc((mean - st[_M]) / (_SQRT2 * math.sqrt(v if v > 1e-6 else 1e-6)))
            score = -math.log10(tail if tail > _LOG10_FLOOR else _LOG10_FLOOR)
            if dev > st[_DMAX] * self.max_decay and self.point_weight * dev > score:
                score = self.point_weight * dev
            score = score / 10.0 if score < 10.0 else 1.0
            # The last complete day's week-over-week growth, unless an anomaly paged in the last seven
            # days explains it (a level shift stays a week-over-week jump for seven days).
            if st[_GS] > score and st[_SINCE] >= 7 * (len(self._prof) or 24):
                score = st[_GS]
            lo, hi = st[_LO], st[_HI]
            # A new extreme counts beyond the usual band, or beyond the noise once the range is long established.
            # A new extreme beyond the noise counts once the range is long established, or at once when it leaves
            # the range by as much again as the whole range (a sparse series' loop: its calls' log-like residuals
            # make even a 100× hour look like its usual noise, but no record ever came near it).
            rng = hi - lo
            if hi > lo and (
                dev >= self._band()
                or (dev >= 1.0 and (st[_N] >= 3 * self.warmup_points or y - hi > rng or lo - y > rng))
            ):
                tol = rng * self.range_tolerance
                # A growing series sets records by growing: two weeks of its usual growth are no break.
                grow = hi * math.expm1(2 * st[_GM]) if st[_GK] >= self.growth_min_days and st[_GM] > 0 else 0.0
                if (y > hi + tol + grow and self.direction != "down") or (y < lo - tol and self.direction != "up"):
                    score = 1.0
        st[_CT], st[_CY], st[_CRAW], st[_CDEV] = t, y, score, dev
        return score

    @property
    def n_learned(self) -> int:
        return int(self._st[_N])

    # -- River API ------------------------------------------------------------------------
    def score_one(self, x: dict[Any, Any]) -> float:
        score = self._unrefracted(x)
        since = self._st[_SINCE]
        # Discounted for the refractory points; once the incident's alert was resolved, a clear anomaly pages again.
        if since < self.refractory_points and not (score >= 1.0 and since % 1.0 == _RESOLVED):
            score *= self.refractory_factor
        return score

    def sustained(self, x: dict[Any, Any]) -> tuple[float, str, float] | None:
        """When ``x`` is anomalous for the week-over-week move of the last complete day: that
        move's worth a day (in the series' units, negative for a drop), a sentence for the alert
        ("sustained growth: ..." or "sustained drop: ...") and the move relative to that weekday; else None."""
        st = self._st
        if not self.growth or self._unrefracted(x) < self.threshold or st[_GS] < self.threshold:
            return None
        move = "growth" if st[_GX] >= 0 else "drop"  # a fall is a drop, never a negative growth
        return st[_GX], f"sustained {move}: yesterday {st[_GG]:+.0%} on the same weekday a week before", st[_GG]

    def episode_resolved(self) -> None:
        """The agent resolved the incident's alert: for the rest of the refractory points a clear anomaly (a
        score of 1: a second runaway a few windows later) pages again; the aftermath of the first one (recent
        large errors make moderate ones look unlikely) stays discounted. Marked in the refractory clock's
        fraction (it counts whole points otherwise), so a model keeps no extra field."""
        st = self._st
        if st[_SINCE] < self.refractory_points and st[_SINCE] % 1.0 != _RESOLVED:
            st[_SINCE] += _RESOLVED

    def accept_level(self) -> None:
        """Marked expected: the refractory points start again (the level and scale adapt to the new level meanwhile,
        without a page) and the week-over-week rule waits seven days (the move it would see is the accepted one)."""
        st = self._st
        st[_SINCE] = 0.0
        st[_GS] = 0.0

    def excursion(self, x: dict[Any, Any]) -> bool:
        """Whether an open incident goes on: the point itself is outside the usual band of
        :meth:`forecast_one`, in the watched direction. (Its score may have fallen below the
        threshold: a runaway loop's second hour is no longer a record, nor a surprise after the
        first; but it is still far from normal and still costing money.)"""
        self._unrefracted(x)  # computes (or reuses) this point's deviation
        return self._st[_CDEV] >= self._band()

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        """Expected value and the band of usual values (half the error cap either side)."""
        st = self._st
        s = st[_S]
        if s <= 0:
            return 0.0, 0.0, 0.0
        z = self._pred(x["t"])
        k = self._band() * self._scale()
        sinh = math.sinh
        return s * sinh(z), s * sinh(z - k), s * sinh(z + k)

    def clone(self, new_params: dict[str, Any] | None = None, include_attributes: bool = False) -> SeasonalDetector:
        """A fresh model with the same parameters (River's generic clone inspects the signature
        on every call; the agent clones the prototype once per new series)."""
        if include_attributes:
            return super().clone(new_params, include_attributes)
        params = {name: getattr(self, name) for name in _PARAMS}
        params.update(new_params or {})
        return type(self)(**params)

    def learn_one(self, x: dict[Any, Any]) -> None:
        st = self._st
        y = float(x["y"])
        t = x["t"]
        if not math.isfinite(y):
            return
        # Refractory clock: restarts at every anomalous point (as scored before learning) that was
        # paged; the agent says when it was not (``x["paged"]``: under its minimum dollar impact).
        paged = self.score_one(x) >= self.threshold and x.get("paged", True)
        if paged:
            st[_SINCE] = 0.0
            st[_GS] = 0.0  # a day's growth pages once (at its first anomalous point)
        else:
            st[_SINCE] += 1
        prof = self._prof
        if self.daily and not prof and math.isfinite(st[_PREV_T]) and t > st[_PREV_T]:
            slots = min(self.daily_slots_max, int(86400 // (t - st[_PREV_T])))
            if slots >= 4:
                prof = self._prof = _zeros("f", slots)
        st[_PREV_T] = t
        # Usual mean error (the likelihood's reference), from the errors of the learned points.
        k = self.likelihood_points
        i = int(st[_I])
        n = st[_N]
        warmup = self.warmup_points
        cap = self.error_cap
        warm = n >= warmup and st[_S] > 0
        dev = st[_CDEV] if warm else self._deviation(x)  # scoring (just above) computed it when warm
        st[_BUF + i] = min(dev / cap, 1.0)
        st[_I] = (i + 1) % k
        rate = max(self.likelihood_rate, 1.0 / (n + 1))
        d = sum(st[_BUF : _BUF + k]) / k - st[_M]
        st[_M] += rate * d
        st[_V] = (1 - rate) * (st[_V] + rate * d * d)
        if 2 * n >= warmup:  # from mid-warmup on, once the scale has settled
            dmax = st[_DMAX] * self.max_decay
            st[_DMAX] = dev if dev > dmax else dmax
        if y < st[_LO]:
            st[_LO] = y
        if y > st[_HI]:
            st[_HI] = y
        st[_CT] = math.inf  # the cached score was for the state before this point
        s = st[_S]
        if s <= 0:
            if y != 0:
                st[_S] = max(abs(y) * 0.1, 1e-12)
                st[_L] = math.asinh(y / st[_S])
            st[_N] = n + 1
            return
        # One residual against the full prediction; each component then takes its share in turn
        # (level, time of day, day of week), each seeing what the previous ones left.
        z = math.asinh(y / s)
        j = int((t % 86400) * len(prof) // 86400) if prof else -1
        w = _DOW + (int(t // 86400) + 3) % 7 if self.weekly else -1
        e = z - self._base(t) - (prof[j] if j >= 0 else 0.0)
        r = max(self.rho, 1.0 / (n + 1))
        ew = e
        if n >= warmup:  # winsorized: one spike does not blunt the next
            lim = cap * max(1.25 * st[_MAD], self.min_rel_scale, 1e-12)
            ew = -lim if e < -lim else (lim if e > lim else e)
        st[_MAD] = (1 - r) * st[_MAD] + r * abs(ew)
        month_start = self.monthly and _month_start(t)
        if self.growth and not month_start:
            self._growth(t, z)
            if paged or x.get("unknown"):
                # A day with a paged anomaly, or with windows of a data gap (learned as their expectation, not
                # seen), is no baseline: the same weekday a week later is not compared with it.
                st[_GSUM] = math.nan
        if month_start:  # the month-start offset takes its share first
            m = self.monthly_rate if st[_MS] != 0 else 1.0
            st[_MS] += m * e
            e -= m * e
        a = max(self.alpha, 1.0 / (n + 1))
        st[_L] += a * e
        e -= a * e
        if j >= 0:
            b = max(self.beta, 1.0 / (n // len(prof) + 1))
            prof[j] += b * e
            e -= b * e
        if w >= 0:
            st[w] += self.gamma * e
        st[_N] = n + 1

    def _growth(self, t: float, z: float) -> None:
        """Sums values per UTC day; when a day is complete, judges how far its mean moved from the
        same weekday a week before, against this series' usual week-over-week moves. A leak or a
        drift creeps past the level and the scale, which adapt to it; week over week it stands out."""
        st = self._st
        day = int(t // 86400)
        if day != st[_GDAY]:
            st[_GS] = 0.0
            if st[_GN] > 0:
                prev = int(st[_GDAY])
                mean = st[_GSUM] / st[_GN]
                st[_GR + prev % 8] = mean
                for skipped in range(prev + 1, min(day, prev + 9)):  # days without points: unknown
                    st[_GR + skipped % 8] = math.nan
                old = st[_GR + (prev - 7) % 8]
                if day == prev + 1 and old == old and mean == mean:
                    g = mean - old
                    k = st[_GK]
                    if k >= self.growth_min_days:
                        sd = math.sqrt(max(st[_GV], 0.02**2))
                        zg = (g - st[_GM]) / sd
                        if self.direction == "down":
                            zg = -zg
                        elif self.direction == "both":
                            zg = abs(zg)
                        tail = 0.5 * math.erfc(zg / _SQRT2)
                        st[_GS] = min(-math.log10(max(tail, _LOG10_FLOOR)) / 10.0, 1.0)
                        # What the move is worth a day, in the series' units (sinh undoes asinh;
                        # of the daily mean, so it is a typical point, not the exact day total).
                        s = st[_S]
                        st[_GX] = st[_GN] * s * (math.sinh(mean) - math.sinh(old))
                        st[_GG] = math.sinh(mean) / math.sinh(old) - 1 if old else 0.0
                    r = max(0.05, 1.0 / (k + 1))
                    d = g - st[_GM]
                    st[_GM] += r * d
                    st[_GV] = (1 - r) * (st[_GV] + r * d * d)
                    st[_GK] = k + 1
            st[_GDAY], st[_GSUM], st[_GN] = day, 0.0, 0.0
        st[_GSUM] += z
        st[_GN] += 1

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_st"] = self._st.tobytes()
        state["_prof"] = self._prof.tobytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        st = array("d")
        st.frombytes(state.pop("_st"))
        if len(st) == _OLD_BUF + state.get("likelihood_points", _DEFAULTS["likelihood_points"]):
            st[_MS:_MS] = array("d", [0.0, -1.0, 0.0, 0.0] + [math.nan] * 8 + [0.0] * 6)  # before the month start
        prof = array("f")
        prof.frombytes(state.pop("_prof"))
        st, prof = array("d", st), array("f", prof)  # exact copies (frombytes over-allocates: 5-10 % per array)
        # Parameters missing (the default, or added since the state was pickled) are the class's.
        params = {name: state.pop(name) for name in _PARAMS if name in state}
        self.__dict__.update(state)
        _own(self, **params)
        self._st = st
        self._prof = prof


def _zeros(typecode: str, n: int) -> array[Any]:
    """An array of ``n`` zeros, allocated to size (``array(typecode, bytes(...))`` over-allocates by up to 12 %: 48
    bytes a seasonal model's scalar state, 32 its profile, a series each)."""
    return array(typecode, [0.0]) * n


def _month_start(t: float) -> bool:
    """Whether a window starting at ``t`` (epoch seconds) starts a calendar month (UTC)."""
    return t % 86400 == 0 and time.gmtime(t).tm_mday == 1


_DEFAULTS = {
    name: p.default for name, p in inspect.signature(SeasonalDetector.__init__).parameters.items() if name != "self"
}
_PARAMS = tuple(_DEFAULTS)
for _name, _value in _DEFAULTS.items():
    setattr(SeasonalDetector, _name, _value)


def _own(model: Any, **params: Any) -> None:
    """Sets on ``model`` the parameters that differ from its class's (a bool is no int: True == 1)."""
    cls = type(model)
    for name, value in params.items():
        default = getattr(cls, name)
        if value != default or type(value) is not type(default):
            setattr(model, name, value)


register("detector", "seasonal", SeasonalConfig)(SeasonalDetector)
