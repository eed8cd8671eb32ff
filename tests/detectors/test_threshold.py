"""The threshold rule: scores in [0, 1], anomalous exactly past a bound, the bound named for the alert."""

from __future__ import annotations

import math
import pickle

import pytest

from detectors.threshold import ThresholdDetector

BOUNDS = [(100.0, None), (None, 10.0), (0.5, 0.1), (0.0, None), (None, 0.0), (-5.0, -20.0), (1e12, -1e12)]
VALUES = [-1e308, -1e6, -20.0, -5.0, -1.0, 0.0, 1e-12, 0.1, 0.5, 0.5000001, 1.0, 10.0, 100.0, 100.0001, 1e6, 1e308]


@pytest.mark.parametrize(("upper", "lower"), BOUNDS)
def test_score_in_0_1_and_anomalous_exactly_past_a_bound(upper: float | None, lower: float | None) -> None:
    det = ThresholdDetector(upper=upper, lower=lower)
    for y in [*VALUES, math.inf, -math.inf, *(b for b in (upper, lower) if b is not None)]:
        s = det.score_one({"t": 0, "y": y})
        past = (upper is not None and y > upper) or (lower is not None and y < lower)
        assert 0.0 <= s <= 1.0, (y, s)
        assert (s >= det.threshold) == past, (y, s)
        assert (det.crossed_bound({"t": 0, "y": y}) is not None) == past


def test_the_score_grows_with_the_excess() -> None:
    det = ThresholdDetector(upper=100.0, lower=50.0)
    ups = [det.score_one({"t": 0, "y": y}) for y in (101.0, 150.0, 200.0, 1000.0, 1e9)]
    downs = [det.score_one({"t": 0, "y": y}) for y in (49.0, 25.0, 0.0, -50.0)]
    assert ups == sorted(ups) and len(set(ups)) == 5 and downs == sorted(downs) and len(set(downs)) == 4
    assert det.score_one({"t": 0, "y": math.nan}) == 0.0


def test_bound_names() -> None:
    det = ThresholdDetector(upper=0.5, lower=0.1)
    assert det.crossed_bound({"t": 0, "y": 1.0}) == ("limit", 0.5)
    assert det.crossed_bound({"t": 0, "y": 0.0}) == ("floor", 0.1)
    assert det.crossed_bound({"t": 0, "y": 0.3}) is None


def test_a_model_pickled_with_the_old_score_scale_takes_the_new_threshold() -> None:
    det = ThresholdDetector(upper=0.5)
    det.__dict__["threshold"] = 1.0 + 1e-12  # what an earlier version kept in the model's state
    old = pickle.loads(pickle.dumps(det))
    assert old.threshold == 0.5 and old.score_one({"t": 0, "y": 1.0}) >= old.threshold
