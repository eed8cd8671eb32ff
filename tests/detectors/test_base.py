"""The detector seam: required members, hooks with defaults, and a class that lacks them refused at start."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config import load_config_text
from agent.pipeline import Agent
from agent.registry import components
from detectors.base import Detector, DetectorHooks, check_detector, warming_up

EXTRA = {
    "threshold": {"upper": 1.0},
    "budget": {"monthly_budget_usd": 100.0},
    "river": {"model": "anomaly.GaussianScorer"},
}


def test_every_builtin_detector_satisfies_the_protocol_and_has_the_hooks() -> None:
    for type_name, (cfg, cls) in components("detector").items():
        check_detector(cls)
        proto = cls.from_config(cfg(type=type_name, signal="x_usd", **EXTRA.get(type_name, {})))
        assert isinstance(proto, Detector) and isinstance(proto, DetectorHooks), type_name
        assert proto.crossed_bound({"t": 0, "y": 0.0}) is None, type_name  # within any bound


class _Plain:
    threshold = 0.5

    def learn_one(self, x: dict[Any, Any]) -> None: ...

    def score_one(self, x: dict[Any, Any]) -> float:
        return 0.0

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        return 0.0, 0.0, 0.0

    def clone(self) -> _Plain:
        return _Plain()

    @classmethod
    def from_config(cls, cfg: Any) -> _Plain:
        return cls()


def test_a_detector_without_the_hooks_is_refused_with_why() -> None:
    with pytest.raises(TypeError, match="_Plain: does not inherit detectors.base.DetectorHooks"):
        check_detector(_Plain)

    class Broken(DetectorHooks):
        pass

    with pytest.raises(TypeError, match="Broken: missing learn_one, score_one, forecast_one, clone, from_config"):
        check_detector(Broken)


def test_the_defaults_say_nothing_special() -> None:
    class Minimal(DetectorHooks, _Plain):
        pass

    det = Minimal()
    x = {"t": 0.0, "y": 1.0}
    assert det.crossed_bound(x) is None and det.excursion(x) is False and det.sustained(x) is None
    assert det.explain(x) is None and det.newborn_usd is None and not det.watches_month and not det.impact_is_cost
    assert det.n_learned == 0 and det.warmup_points == 0 and not warming_up(det)
    det.bind_series(("a",))
    cfg = load_config_text(
        "sources: {s: {type: file, path: /nonexistent, decoder: {type: bedrock}}}\n"
        "detectors: {d: {type: threshold, signal: token_cost_usd, upper: 1}}\n"
        "sinks: {c: {type: console}}\nstate: {type: memory}\nhttp: {enabled: false}\n"
    )
    Agent(cfg).stop()  # the built-ins pass the check the agent makes at start
