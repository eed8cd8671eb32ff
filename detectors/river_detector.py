"""River's own models as detectors: any River anomaly detector or forecaster, by its dotted name.

```yaml
detectors:
  spend_hst:
    type: river
    signal: token_cost_usd
    model: anomaly.HalfSpaceTrees          # river.anomaly.HalfSpaceTrees
    params: {n_trees: 25, height: 8, window_size: 168, seed: 42}
  spend_hw:
    type: river
    signal: token_cost_usd
    model: time_series.HoltWinters         # a forecaster: its one-step residual is scored
    params: {alpha: 0.3, beta: 0.05, gamma: 0.3, seasonality: 24}
```

Three kinds of River estimator are accepted, told apart by their base class:

- **unsupervised anomaly detectors** (``river.base.AnomalyDetector``: ``HalfSpaceTrees``, ``LODA``,
  ``OneClassSVM``, ``LocalOutlierFactor``...): they see the window's value as the feature ``{"y": y}``, through
  River's ``preprocessing.MinMaxScaler`` (``scale: auto`` does so for the ones that need features in [0, 1]:
  ``HalfSpaceTrees``; ``standard`` for ``preprocessing.StandardScaler``); the point is anomalous when River's score
  reaches ``score_threshold``.
- **supervised anomaly detectors** (``SupervisedAnomalyDetector``: ``GaussianScorer``,
  ``StandardAbsoluteDeviation``): scored on ``y`` itself.
- **forecasters** (``river.time_series.base.Forecaster``: ``HoltWinters``, ``SNARIMAX``): the one-step forecast is
  the expected value; the residual, in standard deviations of the past residuals (``river.stats.Var``), is the
  score.

The expected value and band of an anomaly detector's point (for the alert and its dollar impact) come from River's
running statistics of the series (``stats.Mean`` / ``stats.Var``: mean ± ``band_sigmas`` standard deviations); a
forecaster's from its forecast ± ``band_sigmas`` residual deviations. ``direction`` is applied here: watching ``up``,
a value at or below the expected one scores 0. Everything is learned, anomalies included (River's convention).
The model and its parameters are checked when the config is loaded (``validate``): an unknown name, a parameter the
class does not take, or a value it refuses is reported with its path.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.registry import register
from detectors.base import DetectorCommon, DetectorHooks, init_params

#: Default ``score_threshold`` per model (River's score scales differ): HalfSpaceTrees and GaussianScorer score
#: in [0, 1] (GaussianScorer's 0.997 is a two-sided 3-sigma tail); StandardAbsoluteDeviation and forecasters score
#: in standard deviations. Other models need an explicit ``score_threshold``.
DEFAULT_THRESHOLDS = {
    "anomaly.HalfSpaceTrees": 0.9,
    "anomaly.GaussianScorer": 0.997,
    "anomaly.StandardAbsoluteDeviation": 3.5,
}
FORECASTER_THRESHOLD = 3.5
_NEEDS_UNIT_RANGE = {"anomaly.HalfSpaceTrees"}  # features expected in [0, 1]
TRIAL_POINTS = 60  # a model is tried on this many points of a made-up series when its config is loaded

Kind = Literal["unsupervised", "supervised", "forecaster"]


@functools.cache  # a model is resolved for its config and for every series' clone
def resolve(name: str) -> tuple[type, Kind]:
    """The River class a dotted name (under ``river``) names, and its kind; ValueError when it is none of them."""
    from river.base import AnomalyDetector, SupervisedAnomalyDetector
    from river.time_series.base import Forecaster

    module, _, attr = name.rpartition(".")
    if not module or module.startswith("river.") or not all(p.isidentifier() for p in name.split(".")):
        raise ValueError(f"{name!r}: give River's dotted name without 'river.', e.g. anomaly.HalfSpaceTrees")
    try:
        cls = getattr(importlib.import_module(f"river.{module}"), attr)
    except (ImportError, AttributeError):
        raise ValueError(f"river.{name} does not exist") from None
    if not isinstance(cls, type):
        raise ValueError(f"river.{name} is not a class")
    if issubclass(cls, SupervisedAnomalyDetector):
        return cls, "supervised"
    if issubclass(cls, AnomalyDetector):
        return cls, "unsupervised"
    if issubclass(cls, Forecaster):
        return cls, "forecaster"
    raise ValueError(f"river.{name} is neither an anomaly detector nor a forecaster")


class RiverConfig(DetectorCommon):
    type: Literal["river"]
    model: str = Field(
        description="River's dotted name under river: anomaly.HalfSpaceTrees, anomaly.GaussianScorer, "
        "anomaly.StandardAbsoluteDeviation, time_series.HoltWinters, time_series.SNARIMAX..."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, description="the model's constructor parameters"
    )
    scale: Literal["auto", "minmax", "standard", "none"] = Field(
        "auto", description="River preprocessing before an unsupervised anomaly detector (auto: minmax where needed)"
    )
    score_threshold: float | None = Field(
        None, description="a point is anomalous at this score (default per model; forecasters: 3.5 deviations)"
    )
    band_sigmas: float = Field(3.0, gt=0, description="the expected band: ± this many standard deviations")
    warmup_points: int = Field(48, ge=1, description="windows learned before a series is judged")

    @field_validator("model")
    @classmethod
    def _known(cls, v: str) -> str:
        resolve(v)
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        model = info.data.get("model")
        if model is None:  # the model's own error is reported
            return v
        klass, _kind = resolve(model)
        accepted = [p for p in inspect.signature(klass).parameters if p not in ("self", "args", "kwargs")]
        for name in v:
            if name not in accepted:
                close = difflib.get_close_matches(name, accepted, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"river.{model} takes no parameter {name!r}{hint}; it takes {', '.join(accepted)}")
        try:
            inspect.signature(klass).bind(**v)
        except TypeError as exc:
            raise ValueError(f"river.{model}: {exc}") from None
        try:
            klass(**v)
        except Exception as exc:  # River's own checks of a value
            raise ValueError(f"river.{model}: {type(exc).__name__}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _model(self) -> RiverConfig:
        _cls, kind = resolve(self.model)
        if self.score_threshold is None and kind != "forecaster" and self.model not in DEFAULT_THRESHOLDS:
            raise ValueError(f"set score_threshold: river.{self.model} has no default (its scores' scale)")
        # A trial run, as the agent runs it: a value River takes at construction but refuses when it learns or
        # scores (e.g. n_trees: "ten") fails here, at load, rather than at every window of every series.
        try:
            det = RiverDetector.from_config(self)
            for t in range(TRIAL_POINTS):
                x = {"t": 3600.0 * t, "y": 10.0 + t % 5 + (t % 24) / 4}
                det.score_one(x)
                det.forecast_one(x)
                det.learn_one(x)
        except Exception as exc:
            raise ValueError(
                f"river.{self.model} with these params fails on a trial series: {type(exc).__name__}: {exc}"
            ) from None
        return self


class RiverDetector(DetectorHooks):
    """One series' River model (see the module docstring).

    Examples
    --------
    >>> from detectors.river_detector import RiverDetector
    >>> det = RiverDetector("anomaly.GaussianScorer", {"grace_period": 10}, warmup_points=10)
    >>> for t in range(200):
    ...     det.learn_one({"t": t, "y": 10.0 + (t % 3)})
    >>> det.score_one({"t": 200, "y": 11.0}) < det.threshold <= det.score_one({"t": 200, "y": 40.0})
    True
    >>> round(det.forecast_one({"t": 200, "y": 40.0})[0], 2)  # the series' running mean
    11.0
    """

    def __init__(
        self,
        model: str,
        params: dict[str, Any] | None = None,
        *,
        scale: str = "auto",
        score_threshold: float | None = None,
        band_sigmas: float = 3.0,
        warmup_points: int = 48,
        direction: str = "up",
    ):
        from river import preprocessing, stats

        self.model_name = model
        self.params = dict(params or {})
        cls, self.kind = resolve(model)
        self.scale = scale
        self.band_sigmas = band_sigmas
        self.warmup_points = warmup_points
        self.direction = direction
        default = FORECASTER_THRESHOLD if self.kind == "forecaster" else DEFAULT_THRESHOLDS.get(model)
        self._threshold = float(score_threshold if score_threshold is not None else default)  # type: ignore[arg-type]
        self.model: Any = cls(**self.params)
        if self.kind == "unsupervised":
            use = scale if scale != "auto" else ("minmax" if model in _NEEDS_UNIT_RANGE else "none")
            if use == "minmax":
                self.model = preprocessing.MinMaxScaler() | self.model
            elif use == "standard":
                self.model = preprocessing.StandardScaler() | self.model
        self.values = stats.Var()  # the series' values: mean and spread (anomaly detectors' expected band)
        self.residuals = stats.Var()  # forecasters: one-step residuals
        self._n = 0
        self._min = math.inf  # the lowest value learned: a series never below 0 (spend) is never expected below 0

    @classmethod
    def from_config(cls, cfg: RiverConfig) -> RiverDetector:
        return cls(**init_params(cls, cfg))

    def clone(self) -> RiverDetector:
        return type(self)(**self._get_params())

    def _get_params(self) -> dict[str, Any]:
        """The constructor's parameters (River's convention: a clone has the same)."""
        return {
            "model": self.model_name,
            "params": self.params,
            "scale": self.scale,
            "score_threshold": self._threshold,
            "band_sigmas": self.band_sigmas,
            "warmup_points": self.warmup_points,
            "direction": self.direction,
        }

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def n_learned(self) -> int:
        return self._n

    # -- River calls ---------------------------------------------------------------------------------------------
    def _expected(self) -> tuple[float, float]:
        """(expected value, standard deviation around it) before ``x`` is learned."""
        if self.kind == "forecaster":
            try:
                expected = float(self.model.forecast(horizon=1)[0])
            except (IndexError, ValueError, ZeroDivisionError):  # not initialised yet (e.g. HoltWinters' first season)
                expected = math.nan
            if not math.isfinite(expected):
                expected = float(self.values.mean.get())
            if self._min >= 0 and expected < 0:  # a forecaster's trend can run below zero: spend cannot
                expected = 0.0
            return expected, math.sqrt(max(self.residuals.get(), 0.0))
        return float(self.values.mean.get()), math.sqrt(max(self.values.get(), 0.0))

    def _raw_score(self, y: float, expected: float, sd: float) -> float:
        if self.kind == "forecaster":
            return abs(y - expected) / sd if sd > 0 else (0.0 if y == expected else math.inf)
        if self.kind == "supervised":
            return float(self.model.score_one(None, y))
        return float(self.model.score_one({"y": y}))

    def score_one(self, x: dict[Any, Any]) -> float:
        y = float(x["y"])
        if self._n == 0:
            return 0.0
        expected, sd = self._expected()
        if (self.direction == "up" and y <= expected) or (self.direction == "down" and y >= expected):
            return 0.0
        score = self._raw_score(y, expected, sd)
        return score if math.isfinite(score) else 1e9

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]:
        expected, sd = self._expected()
        lower = expected - self.band_sigmas * sd
        if self._min >= 0:
            lower = max(lower, 0.0)
        return expected, lower, expected + self.band_sigmas * sd

    def learn_one(self, x: dict[Any, Any]) -> None:
        y = float(x["y"])
        if self.kind == "forecaster":
            if self._n:
                expected, _sd = self._expected()
                self.residuals.update(y - expected)
            self.model.learn_one(y)
        elif self.kind == "supervised":
            self.model.learn_one(None, y)
        else:
            self.model.learn_one({"y": y})
        self.values.update(y)
        if y < self._min:
            self._min = y
        self._n += 1

    def excursion(self, x: dict[Any, Any]) -> bool:
        """An open incident goes on while the value stays outside the band on the watched side."""
        y = float(x["y"])
        _expected, lo, hi = self.forecast_one(x)
        return (self.direction != "down" and y > hi) or (self.direction != "up" and y < lo)


register("detector", "river", RiverConfig)(RiverDetector)
