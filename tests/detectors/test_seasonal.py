"""Seasonal detector behaviours that the shared checks do not cover."""

from __future__ import annotations

import calendar
import math
import pickle
import random
from array import array

from detectors.seasonal import _BUF, _MS, _PARAMS, SeasonalConfig, SeasonalDetector, _month_start

H = 3600.0
JAN_1 = float(calendar.timegm((2026, 1, 1, 0, 0, 0)))


def hourly(days: int, fee: float, seed: int = 5) -> list[dict[str, float]]:
    """Hourly spend with a daily shape and a fee of ``fee`` dollars in the first hour of each month."""
    rng = random.Random(seed)
    out = []
    for i in range(days * 24):
        t = JAN_1 + 12 * 86400 + i * H  # from 13 January: the first month start comes after the warm-up
        y = 100 * (1 + 0.4 * math.sin(2 * math.pi * (i % 24) / 24)) * rng.uniform(0.95, 1.05)
        out.append({"t": t, "y": y + (fee if _month_start(t) else 0.0)})
    return out


def month_start_scores(det: SeasonalDetector, xs: list[dict[str, float]]) -> list[float]:
    scores = []
    for x in xs:
        s = det.score_one(x)
        if _month_start(x["t"]):
            scores.append(s)
        det.learn_one(x)
    return scores


def test_month_start_fee_alerts_once_then_is_learned() -> None:
    det = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="billing_cost_usd"))
    scores = month_start_scores(det, hourly(100, fee=3000.0))  # 1 Feb, 1 Mar, 1 Apr
    assert len(scores) == 3
    assert scores[0] >= det.threshold  # never seen before: an anomaly
    assert max(scores[1:]) < det.threshold  # the fee is part of the month's shape now
    # Without the month-start offset every month's fee is an anomaly.
    plain = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="billing_cost_usd", monthly=False))
    assert min(month_start_scores(plain, hourly(100, fee=3000.0))) >= plain.threshold


def test_a_month_start_spike_far_beyond_the_usual_fee_is_still_an_anomaly() -> None:
    det = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="billing_cost_usd"))
    xs = hourly(100, fee=3000.0)
    for x in xs:
        if x["t"] == float(calendar.timegm((2026, 4, 1, 0, 0, 0))):
            x["y"] *= 30
    assert month_start_scores(det, xs)[2] >= det.threshold


def test_month_start_is_utc_midnight_of_the_first() -> None:
    assert _month_start(JAN_1)
    assert not _month_start(JAN_1 + H)
    assert not _month_start(JAN_1 + 86400)
    assert _month_start(float(calendar.timegm((2024, 2, 1, 0, 0, 0))))


def test_state_pickled_before_the_month_start_offset_still_loads() -> None:
    det = SeasonalDetector(warmup_points=24, growth=False)  # its newer slots stay as a fresh model's
    for x in hourly(3, fee=0.0):
        det.learn_one(x)
    state = {**{name: getattr(det, name) for name in _PARAMS}, **det.__getstate__()}  # then every parameter
    old = array("d")
    old.frombytes(state["_st"])
    del old[_MS:_BUF]  # the earlier layout had neither the month-start nor the growth slots
    state["_st"] = old.tobytes()
    for name in ("monthly", "monthly_rate", "growth", "growth_min_days"):
        del state[name]
    back = SeasonalDetector.__new__(SeasonalDetector)
    back.__setstate__(pickle.loads(pickle.dumps(state)))
    assert back.monthly and back.growth and back._st[_MS] == 0.0
    assert back._st.tobytes() == det._st.tobytes()
    x = {"t": JAN_1 + 40 * 86400, "y": 120.0}
    assert back.score_one(x) == det.score_one(x)


def leak(days: int, start_day: int, per_day: float) -> list[dict[str, float]]:
    """Hourly spend with a daily shape; from ``start_day`` on, forgotten resources add
    ``per_day`` × the usual hour's spend more every day, around the clock."""
    rng = random.Random(9)
    out = []
    for i in range(days * 24):
        t = JAN_1 + 12 * 86400 + i * H
        y = 100 * (1 + 0.4 * math.sin(2 * math.pi * (i % 24) / 24)) * rng.uniform(0.9, 1.1)
        day = i // 24
        if day >= start_day:
            y += 100 * per_day * (day - start_day + 1)
        out.append({"t": t, "y": y})
    return out


def first_anomaly(det: SeasonalDetector, xs: list[dict[str, float]]) -> int | None:
    for i, x in enumerate(xs):
        if det.score_one(x) >= det.threshold:
            return i
        det.learn_one(x)
    return None


def test_a_leak_is_found_week_over_week_and_worth_its_day() -> None:
    xs = leak(50, start_day=30, per_day=0.05)  # +$5 an hour more every day on ~$100 an hour
    det = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="cost_usd"))
    found = first_anomaly(det, xs)
    assert found is not None and 30 * 24 < found <= 33 * 24, found  # within three days of the start
    sus = det.sustained(xs[found])
    assert sus is not None and sus[1].startswith("sustained growth: yesterday +")
    assert 0.05 * 100 * 24 <= sus[0] <= 0.05 * 100 * 24 * 3  # dollars a day, not a window's
    # Without the week-over-week check the same leak goes unseen for more than four days.
    plain = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="cost_usd", growth=False))
    late = first_anomaly(plain, xs)
    assert late is None or late > 34 * 24


def test_steady_growth_is_not_a_leak() -> None:
    xs = leak(50, start_day=0, per_day=0.003)  # +0.3 % of an hour's spend a day: business growth
    det = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="cost_usd"))
    assert first_anomaly(det, xs) is None


def growing(days: int, weekly: float, seed: int) -> list[dict[str, float]]:
    """Hourly spend growing by ``weekly`` a week (compounded), daily shape, 10 % noise."""
    rng = random.Random(seed)
    out = []
    for i in range(days * 24):
        t = JAN_1 + 12 * 86400 + i * H
        y = 100 * (1 + weekly) ** (i / 168) * (1 + 0.6 * math.sin(2 * math.pi * (i % 24) / 24))
        out.append({"t": t, "y": y * rng.lognormvariate(0, 0.1)})
    return out


def count_anomalies(det: SeasonalDetector, xs: list[dict[str, float]]) -> int:
    n = 0
    for x in xs:
        n += det.score_one(x) >= det.threshold
        det.learn_one(x)
    return n


def test_records_of_a_series_growing_week_over_week_are_not_range_breaks() -> None:
    cfg = SeasonalConfig(type="seasonal", signal="cost_usd")
    aware = sum(count_anomalies(SeasonalDetector.from_config(cfg), growing(70, 0.07, s)) for s in range(10))
    plain = SeasonalDetector.from_config(cfg.model_copy(update={"growth": False}))
    blind = sum(count_anomalies(plain.clone(), growing(70, 0.07, s)) for s in range(10))
    assert aware * 2 < blind, (aware, blind)  # 10 series × 10 weeks at +7 % a week: 5 vs 17


def test_a_model_stores_only_the_parameters_it_changes_and_pickles_them() -> None:
    """One model per series: the defaults live on the class, not in every model (memory per series)."""
    det = SeasonalDetector(warmup_points=24, growth=False, daily=True)
    assert set(vars(det)) == {"_st", "_prof", "warmup_points", "growth"}
    back = pickle.loads(pickle.dumps(det.clone()))
    assert set(vars(back)) == {"_st", "_prof", "warmup_points", "growth"}
    assert back.growth is False and back.warmup_points == 24 and back.alpha == SeasonalDetector().alpha
    assert back._get_params() == det._get_params()
    assert SeasonalDetector(threshold=1).threshold == 1 and "threshold" in vars(SeasonalDetector(threshold=1))


def test_a_sparse_series_loop_far_past_anything_seen_is_an_anomaly() -> None:
    """A $7-a-month team on hourly windows (a call of 1–3 cents in about half its hours, none in the others): in
    log-like units its calls are large residuals, so a 3-hour loop at $0.54 an hour (40× its largest hour, 170× its
    usual) read as usual noise within its first three warm-ups (a new-user review). An hour past the largest ever by
    more than the whole range seen is a break."""
    rng = random.Random(7)
    det = SeasonalDetector.from_config(SeasonalConfig(type="seasonal", signal="token_cost_usd", window_seconds=3600))
    h = 3600.0
    t0 = 1_794_362_400.0  # 2026-11-10 02:00 UTC
    for i in range(366):  # 15 days: past the warm-up (7 days), not three of them
        calls = (rng.random() < 0.5) + (rng.random() < 0.05)
        y = sum(rng.uniform(0.0096, 0.03) for _ in range(calls))
        det.learn_one({"t": t0 + i * h, "t_end": t0 + (i + 1) * h, "y": y})
    t = t0 + 366 * h
    assert det.score_one({"t": t, "t_end": t + h, "y": 0.54}) >= det.threshold
    assert det.score_one({"t": t, "t_end": t + h, "y": 0.03}) < det.threshold  # a call: no anomaly
