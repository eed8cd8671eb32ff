"""What every detector shares: the series it watches, its required members, and optional hooks with defaults.

A detector module defines a ``<Name>Config`` (:class:`DetectorCommon` plus its model's parameters) and a class
that satisfies :class:`Detector` — in practice a River :class:`~river.anomaly.base.AnomalyDetector` that also
inherits :class:`DetectorHooks` — registered with ``register("detector", "<type>", <Name>Config)``:

- ``learn_one(x)`` / ``score_one(x)`` (River conventions, higher score = more anomalous),
- ``forecast_one(x) -> (expected, lower, upper)``,
- ``threshold``: a point is anomalous when ``score_one(x) >= threshold``,
- ``clone()``: a fresh copy (River's), and ``from_config(cfg)``: the prototype cloned for every series.

``x`` is ``{"t": window start in epoch seconds, "t_end": its end, "y": the window's value}``; what
``learn_one`` gets may also say ``"paged": False`` (an anomaly the agent did not page: under its dollar rule)
and ``"unknown": True`` (a window of a data gap: ``y`` is the model's own expectation, nothing was seen). The runner
(``agent/detect.py``) calls the hooks of :class:`DetectorHooks` on every detector; a detector overrides the
ones it refines, and the defaults say "nothing special". No capability is discovered by name or attribute.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BeforeValidator, Field, field_validator

from agent.registry import ComponentConfig


def _as_text(v: Any) -> Any:
    """A filter's values as text: an account id written unquoted in YAML (123412340534) is the id, not a number."""
    if isinstance(v, list):
        return [str(x) if isinstance(x, int | float) and not isinstance(x, bool) else x for x in v]
    return v


#: A ``where`` / ``exclude`` dimension's values: at least one, as text.
FilterValues = Annotated[list[str], BeforeValidator(_as_text), Field(min_length=1)]


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
    where: dict[str, FilterValues] = Field(
        default_factory=dict,
        description="count only what has one of these values of a dimension (dimension → values; a record "
        "without the dimension does not match), e.g. charge_category: [Usage]",
    )
    exclude: dict[str, FilterValues] = Field(
        default_factory=dict,
        description="leave out what has one of these values of a dimension (dimension → values), e.g. "
        "charge_category: [Purchase, Tax]: a bill's fees, commitments and taxes, billed on a schedule, not used",
    )
    window_seconds: int = Field(3600, ge=1, le=31 * 86400)
    direction: Literal["up", "down", "both"] = "up"
    min_impact_usd: float = Field(1.0, ge=0, description="alert only when the dollar impact reaches this")
    min_impact_percent: float | None = Field(
        None,
        gt=0,
        description="or when it reaches this percent of the window's expected spend (a small series' incident), "
        "if at least min_impact_floor_usd",
    )
    min_impact_floor_usd: float = Field(
        0.25,
        ge=0,
        description="with min_impact_percent: an impact under this never pages (cents never page); a data gap of a "
        "series in dollars is told once what it usually spends in the silence reaches this",
    )
    fill_missing: bool = Field(True, description="a window without events is a zero (sums only)")
    early_warning: bool = Field(
        True,
        description="sums watched upward: alert while a window is still open, once its sum at the pace so far is on "
        "course past the usual band (judged against the series' own pace within a window), the spend over the usual "
        "pace passes the paging rule (min_impact_usd / min_impact_percent) and the model scores it anomalous; the "
        "alert is confirmed or withdrawn when the window closes",
    )
    for_points: int | None = Field(
        None,
        ge=1,
        description="an incident is pending until this many consecutive anomalous windows, then fires (Prometheus' "
        "for); default: alerting.for_points. Above 1, no early warning",
    )
    data_gap_windows: int | None = Field(
        3,
        ge=1,
        description="a series without data for this many windows, and for longer than twice its longest silence "
        "before, raises a data-gap alert naming its sources (sums with fill_missing; null: never)",
    )
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

    def admits(self, dims: dict[str, str]) -> bool:
        """Whether a cell with these dimensions counts for this detector (``where`` and ``exclude``)."""
        for dim, values in self.where.items():
            if dims.get(dim) not in values:
                return False
        return not any(dims.get(dim) in values for dim, values in self.exclude.items())


@runtime_checkable
class Detector(Protocol):
    """The required members of a detector (one series' model), and a ``from_config(cfg)`` classmethod that builds the
    prototype that :meth:`clone` copies for each series. The detector applies the config's ``direction`` itself (in
    :meth:`score_one`: a detector watching ``up`` scores a drop as normal); the runner does not filter by it."""

    threshold: float

    @classmethod
    def from_config(cls, cfg: Any) -> Any: ...

    def learn_one(self, x: dict[Any, Any]) -> Any: ...

    def score_one(self, x: dict[Any, Any]) -> float: ...

    def forecast_one(self, x: dict[Any, Any]) -> tuple[float, float, float]: ...

    def clone(self) -> Any: ...


class DetectorHooks:
    """Optional hooks of a detector, with their defaults. A detector class inherits this and overrides what it
    refines; the runner calls them on every detector.

    Alert lifecycle:

    - :attr:`warmup_points` / :attr:`n_learned`: points learned before the model judges a series, and how many
      it has learned (default: no warm-up). A detector with a warm-up judges a series that appears after the
      others on its spend so far (``new_series_usd``), tracked in :attr:`newborn_usd`.
    - :meth:`crossed_bound`: a fixed limit rather than a forecast (the alert reads "limit 50 %").
    - :meth:`excursion`: whether an open incident goes on while its scores are discounted.
    - :meth:`sustained`: a slow leak's worth a day, judged when one window's impact is too small to page.
    - :meth:`bind_series`: per-series parameters (a series' own budget), told once when its model is made.
    - :meth:`episode_resolved`: the series' open alert was resolved (the incident is over).
    - :meth:`accept_level`: a person marked the open incident expected (feedback): its level is the new usual.

    - :attr:`forecasts`: the model expects a value (False: a fixed limit, a threshold's; a data gap then names no
      usual spend).

    Dollar impact:

    - :attr:`watches_month`: the detector watches the month, not the window (a budget): the point's observed
      value is :meth:`month_so_far`, its impact :meth:`overrun_usd`, the reason :meth:`explain`; an episode's
      impact is its latest (a forecast), not a sum; restated windows are not scored again.
    - :attr:`impact_is_cost`: the impact is the window's cost signal itself (an idle GPU's cost), not the gap
      between observed and expected.
    """

    warmup_points: int = 0
    newborn_usd: float | None = None  # a new series' spend since it appeared, while it is judged on it
    watches_month: ClassVar[bool] = False
    impact_is_cost: ClassVar[bool] = False
    forecasts: ClassVar[bool] = True

    @property
    def n_learned(self) -> int:
        """Points learned so far (what the warm-up counts)."""
        return 0

    def crossed_bound(self, x: dict[Any, Any]) -> tuple[str, float] | None:
        """The bound ``x`` is past and its name (``("limit", 0.5)``), for a detector with fixed bounds."""
        return None

    def excursion(self, x: dict[Any, Any]) -> bool:
        """Whether the incident goes on (asked only while an episode is open and the score says normal)."""
        return False

    def sustained(self, x: dict[Any, Any]) -> tuple[float, str, float] | None:
        """A slow growth's worth a day in the signal's units, why, and the move relative to the usual day (0.34 for
        +34 %), or None."""
        return None

    def bind_series(self, key: tuple[str, ...]) -> None:
        """Per-series parameters for the series ``key`` (group-by values)."""
        return None

    def episode_resolved(self) -> None:
        """The series' open alert episode was resolved: its incident is over, and a detector that discounts the
        scores after an anomaly (one page per incident) lets the next incident page at once."""
        return None

    def accept_level(self) -> None:
        """A person said the series' open incident is expected (a planned change, a new normal): learn its level as
        the new usual without alerting on it again."""
        return None

    def month_so_far(self, x: dict[Any, Any]) -> float:
        """(watches_month detectors) What the month has cost so far."""
        raise NotImplementedError

    def overrun_usd(self, x: dict[Any, Any]) -> float:
        """(watches_month detectors) The forecast month's dollars over the limit."""
        raise NotImplementedError

    def explain(self, x: dict[Any, Any]) -> str | None:
        """Why the point is anomalous, in words (None: the runner's own wording)."""
        return None


def check_detector(cls: type) -> None:
    """Refuse a detector class without the required members or the hooks' defaults (at registration)."""
    required = ("learn_one", "score_one", "forecast_one", "clone", "from_config")
    missing = [m for m in required if not callable(getattr(cls, m, None))]
    if missing or not issubclass(cls, DetectorHooks):
        why = f"missing {', '.join(missing)}" if missing else "does not inherit detectors.base.DetectorHooks"
        raise TypeError(f"detector {cls.__name__}: {why}")


def warming_up(detector: DetectorHooks) -> bool:
    """Whether ``detector`` (one series' model) is still in its warm-up."""
    return detector.n_learned < detector.warmup_points


def is_usd(signal: str) -> bool:
    return signal.endswith("_usd")


def init_params(cls: type, cfg: Any, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``cls(...)``: each constructor parameter that ``cfg`` has, by name,
    then ``overrides`` (so a parameter added to a detector and its config needs no third copy)."""
    names = tuple(inspect.signature(cls.__init__).parameters)[1:]  # type: ignore[misc]
    params = {name: getattr(cfg, name) for name in names if hasattr(cfg, name)}
    params.update(overrides)
    return params
