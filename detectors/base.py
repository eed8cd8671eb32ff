"""What every detector shares: the series it watches and how a point becomes an alert.

A detector module defines a ``<Name>Config`` (these common fields plus its model's parameters)
and a River :class:`~river.anomaly.base.AnomalyDetector` subclass with

- ``learn_one(x)`` / ``score_one(x)`` (River conventions, higher score = more anomalous),
- ``forecast_one(x) -> (expected, lower, upper)``,
- ``threshold``: a point is anomalous when ``score_one(x) >= threshold``,
- ``from_config(cfg)``: the prototype that is cloned for every series.

``x`` is ``{"t": window start in epoch seconds, "y": the window's value}``.

Optional hooks (:class:`DetectorHooks`) refine the alert; the agent asks the prototype once
whether a detector has them, and the functions below give every detector their defaults.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator

from agent.registry import ComponentConfig


class DetectorCommon(ComponentConfig):
    signal: str = Field(description="signal to watch, e.g. token_cost_usd, gpu_hours, gpu_idle_cost_usd")
    per: str | None = Field(
        None, description="divide by this signal's window sum (unit cost: token_cost_usd per tokens)"
    )
    per_scale: float = Field(1.0, gt=0, description="multiplier for ratios, e.g. 1000 for 'per 1k tokens'")
    cost_signal: str | None = Field(
        None, description="USD signal used for the dollar impact when the watched signal is not in USD"
    )
    group_by: list[str] = Field(default_factory=list, description="dimensions that make one series")
    window_seconds: int = Field(3600, ge=1, le=31 * 86400)
    direction: Literal["up", "down", "both"] = "up"
    min_impact_usd: float = Field(1.0, ge=0, description="alert only when the dollar impact reaches this")
    fill_missing: bool = Field(True, description="a window without events is a zero (sums only)")
    max_series: int = Field(100_000, ge=1)
    series_ttl_windows: int = Field(24 * 14, ge=1, description="forget a series after this many empty windows")
    top_contributors: int = Field(5, ge=0, le=50)
    contributors_by: list[str] | None = Field(
        None, description="dimensions that name a contributor (root cause); default: all not in group_by"
    )

    @field_validator("group_by")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("group_by dimensions must be unique")
        return v


class DetectorHooks(Protocol):
    """Optional hooks of a detector (each has a default below, for detectors without it).

    - ``crossed_bound(x) -> (name, value) | None``: a detector whose bound is a fixed limit
      rather than a forecast names the bound ``x`` is past (``("limit", 0.5)``), so the alert
      reads "100 % idle (limit 50 %)" rather than calling the limit an expected value.
      Default: None (the alert compares the observed value with the expected one).
    - ``warmup_points`` and ``n_learned``: points learned before the model judges a series, and
      how many it has learned. Default: no warm-up.
    """

    def crossed_bound(self, x: dict[Any, Any]) -> tuple[str, float] | None: ...


def crossed_bound(detector: Any, x: dict[Any, Any]) -> tuple[str, float] | None:
    """The bound ``x`` is past and its name, where ``detector`` has fixed bounds; else None."""
    hook = getattr(detector, "crossed_bound", None)
    return hook(x) if hook is not None else None


def warming_up(detector: Any) -> bool:
    """Whether ``detector`` (one series' model) is still in its warm-up."""
    warmup = getattr(detector, "warmup_points", 0)
    return bool(warmup) and detector.n_learned < warmup


def is_usd(signal: str) -> bool:
    return signal.endswith("_usd")


def init_params(cls: type, cfg: Any, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``cls(...)``: each constructor parameter that ``cfg`` has, by name,
    then ``overrides`` (so a parameter added to a detector and its config needs no third copy)."""
    names = tuple(inspect.signature(cls.__init__).parameters)[1:]  # type: ignore[misc]
    params = {name: getattr(cfg, name) for name in names if hasattr(cfg, name)}
    params.update(overrides)
    return params
