"""The alert side of a detector: the scored point, the alert episode, held-back anomalies, the unit a series is
counted in, the stable alert id, and the wording helpers of alert texts (the runner, :mod:`agent.detect`, builds
the document from them)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from agent.model import Dims
from agent.pace import CHECKPOINTS
from detectors.base import is_usd

SeriesKey = tuple[str, ...]


@dataclass(slots=True)
class Point:
    detector: str
    detector_type: str
    signal: str
    series: Dims
    window_start: float
    window_end: float
    observed: float
    expected: float
    lower: float
    upper: float
    score: float
    anomalous: bool
    impact_usd: float | None
    contributors: Sequence[dict[str, Any]] = ()  # (no list per point: a point is kept per series, see detect.py)
    restated: bool = False  # a closed window scored again because a billing delivery changed its value
    reason: str | None = None  # why, where the score alone does not say (new series, slow growth, budget)
    unit: str = ""  # the series' unit as a metric label (``usd``, ``usd_per_1k_tokens``, ``gpu_hours``)
    warming_up: bool = False  # scored while the series' model was still in its warm-up
    early: bool = False  # scored on an open window's running sum (an early warning), not a closed window
    progress: float = 1.0  # how much of the window had passed (event time) when it was scored
    excess_rate: float | None = None  # an early warning's spend over the usual a window, at its recent rate

    # (The projections are derived, not stored: a point is kept per series, and every float kept costs 24 bytes.)
    @property
    def projected_hourly_impact_usd(self) -> float | None:
        """The window's dollar impact an hour if it continued (what on-call weighs: an idle GPU's or a loop's
        dollars an hour); None where there is no daily projection."""
        daily = self.projected_daily_impact_usd
        return None if daily is None else daily / 24.0

    @property
    def projected_daily_impact_usd(self) -> float | None:
        """The window's dollar impact a day if it continued (impact × windows a day); None without a dollar figure,
        and for a budget (its impact is the month's forecast overrun, not a window's). An early warning's impact is
        what its open window spent over the usual so far, at its rate: since the window's start (from its first pace
        checkpoint on: a first minute's burst is no hourly rate) or, where more, since a recent pace
        checkpoint (a loop that started late in the window has run only since then: ``excess_rate``)."""
        impact = self.impact_usd
        span = self.window_end - self.window_start
        if impact is None or not math.isfinite(impact) or self.unit == "usd_month_to_date" or span <= 0:
            return None
        if self.early:
            impact /= max(self.progress, 1.0 / CHECKPOINTS)
            if self.excess_rate is not None and math.isfinite(self.excess_rate):
                impact = max(impact, self.excess_rate)
        return impact * 86400.0 / span

    @property
    def projected_monthly_impact_usd(self) -> float | None:
        """The window's dollar impact a month (30 days) if it continued."""
        daily = self.projected_daily_impact_usd
        return None if daily is None else daily * 30.0

    def __setstate__(self, state: Any) -> None:
        _setstate(self, state)


@dataclass(slots=True)
class Episode:
    id: str
    started_at: float
    last_window: float
    points: int = 0
    observed_total: float = 0.0
    expected_total: float = 0.0
    impact_total: float = 0.0
    peak_score: float = 0.0
    normal_streak: int = 0
    severity: str = "warning"
    last_point: Point | None = None
    # anomalous window → (observed, expected, impact): what a restatement of that window replaces
    windows: dict[float, tuple[float, float, float]] = field(default_factory=dict)
    revision: int = 0  # bumped by every restatement that changes the alert, and by an early warning's confirmation
    # An early warning not yet confirmed: the open window it was raised in (confirmed or withdrawn when it closes).
    early_window: float | None = None
    notified: bool = True  # False while pending (fewer anomalous windows than the detector's for_points)

    def __setstate__(self, state: Any) -> None:
        _setstate(self, state)


@dataclass(slots=True)
class Gap:
    """A series that stopped reporting: a data-gap alert, apart from its spend alerts."""

    id: str
    since: float  # the first window without data
    silent_windows: int  # windows without data so far
    longest_before: int  # the longest silence it had before (windows)
    usual: float  # what the series usually spends in the silent windows (its model's expected values)
    sources: tuple[str, ...] = ()  # the sources whose records made the series
    notified: bool = True  # its firing document sent (a small series' gap waits for min_impact_floor_usd)

    def __setstate__(self, state: Any) -> None:
        _setstate(self, state)


def _setstate(obj: Any, state: Any) -> None:
    """A slotted dataclass pickled before a field existed (a checkpoint of an older version) takes its default."""
    slots = state[1] if isinstance(state, tuple) else state
    names = set()
    for f in fields(obj):
        names.add(f.name)
        if f.name not in slots:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            object.__setattr__(obj, f.name, default)
    for k, v in slots.items():
        if k in names:  # (a field that became derived, e.g. a point's projections, is dropped)
            object.__setattr__(obj, k, v)


_EPISODE_WINDOWS_MAX = 2000


@dataclass(slots=True)
class HeldBack:
    """Anomalous points not alerted because their dollar impact was under ``min_impact_usd``."""

    points: int = 0
    largest_usd: float = 0.0  # the largest such impact (by size; negative for a drop)
    largest_series: str = ""  # its series, e.g. ``team=search``
    largest_window: float = math.nan  # its window start (epoch seconds)

    def add(self, impact: float, series: str, window: float) -> None:
        self.points += 1
        if self.points == 1 or abs(impact) > abs(self.largest_usd):
            self.largest_usd, self.largest_series, self.largest_window = impact, series, window


@dataclass(frozen=True, slots=True)
class Unit:
    """How a detector's values read: in alert texts, as a metric label and on a plot's axis.

    >>> u = Unit.of("token_cost_usd", "tokens", 1000, 3600)
    >>> u.text, u.label, u.axis, u.fmt(0.0123)
    ('USD per 1000 tokens', 'usd_per_1k_tokens', '$ per 1k tokens', '$0.0123 per 1k tokens')
    >>> u = Unit.of("gpu_idle_hours", "gpu_hours", 1, 3600)
    >>> u.label, u.axis, u.fmt(1.0), u.fmt(0.5, short=True)
    ('ratio', '% idle', '100 % idle', '50 %')
    >>> Unit.of("token_cost_usd", None, 1, 3600).axis, Unit.of("gpu_hours", None, 1, 86400).axis
    ('$/h', 'GPU-hours/day')
    """

    text: str  # the alert document's ``unit``: USD, "USD per 1000 tokens", gpu_hours
    label: str  # Prometheus ``unit`` label: usd, usd_per_1k_tokens, gpu_hours, ratio, usd_month_to_date (a budget)
    axis: str  # a plot's y-axis: $/h, "$ per 1k tokens", GPU-hours/h, % idle
    share: str | None = None  # a ratio of two amounts of one kind (idle hours per hours): shown in %
    scale: float = 1.0  # display multiplier of a value on a plot (100 for a share)

    @classmethod
    def of(cls, signal: str, per: str | None, per_scale: float, window: float, *, month_to_date: bool = False) -> Unit:
        per_text = f"{_scale(per_scale)} {per}".strip() if per else ""
        if month_to_date:
            return cls("USD", "usd_month_to_date", "$ month to date")
        if per and per_scale == 1 and _kind(signal) == _kind(per):
            words = [w for w in signal.split("_") if w not in per.split("_")] or [signal]
            return cls(f"{signal} per {per}", "ratio", f"% {' '.join(words)}", " ".join(words), 100.0)
        if is_usd(signal):
            if per:
                return cls(f"USD per {per_scale:g} {per}", f"usd_per_{_slug(per_text)}", f"$ per {per_text}")
            return cls("USD", "usd", f"$/{_per_window(window)}")
        if per:
            if per_scale == 1:  # "input_tokens per request", not "per 1 requests"
                one = per[:-1] if per.endswith("s") and not per.endswith("ss") else per
                return cls(f"{signal} per {one}", f"{signal}_per_{_slug(one)}", f"{_pretty(signal)} per {one}")
            return cls(
                f"{signal} per {per_scale:g} {per}",
                f"{signal}_per_{_slug(per_text)}",
                f"{_pretty(signal)} per {per_text}",
            )
        return cls(signal, _slug(signal), f"{_pretty(signal)}/{_per_window(window)}")

    def fmt(self, v: float, *, short: bool = False) -> str:
        """A value for an alert's text ("$4,005.77", "100 % idle", "$0.0123 per 1k tokens")."""
        if self.share is not None:
            pct = f"{v * 100:.3g} %"
            return pct if short else f"{pct} {self.share}"
        if self.text == "USD":
            return _dollars(v)
        if self.text.startswith("USD per "):
            return f"${v:,.4g} per {self.axis[6:]}"
        return f"{_number(v)} {self.text}"


def _number(v: float) -> str:
    """A count for a text: whole above a thousand ("22,270"), else four significant digits ("74.78").

    >>> _number(22270.4), _number(74.7812), _number(0.000123)
    ('22,270', '74.78', '0.000123')
    """
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.4g}"


_MISS = object()


def alert_id(detector: str, series: Dims, start: float, namespace: str = "") -> str:
    """Stable id of an alert episode: the same input always gives the same id (dedup key). ``namespace``
    (``alerting.id_namespace``) tells apart agents that page one service with the same detector names."""
    key = f"{detector}|{'|'.join(f'{k}={v}' for k, v in series)}|{int(start)}"
    if namespace:
        key = f"{namespace}|{key}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _label(series: Dims) -> str:
    """``team=search, model=m`` (``all`` for a detector without group_by)."""
    return ", ".join(f"{k}={v}" for k, v in series) or "all"


def _x(pt: Point) -> dict[str, float]:
    return {"t": pt.window_start, "t_end": pt.window_end, "y": pt.observed}


def _span(ep: Episode, window: float) -> float:
    return ep.last_window + window - ep.started_at


def _scale(per_scale: float) -> str:
    """1000 → "1k", 1e6 → "1M", 1 → "" (as in "$ per 1k tokens")."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_scale >= size and per_scale % size == 0:
            return f"{per_scale / size:g}{suffix}"
    return "" if per_scale == 1 else f"{per_scale:g}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def _kind(signal: str) -> str:
    """What a signal counts, from its name's last word: hours, usd, tokens."""
    return signal.rsplit("_", 1)[-1]


def _pretty(signal: str) -> str:
    return signal.replace("_", " ").replace("gpu hours", "GPU-hours").replace("gpu ", "GPU ")


def _per_window(seconds: float) -> str:
    named = {60.0: "min", 3600.0: "h", 86400.0: "day", 7 * 86400.0: "week"}
    return named.get(float(seconds)) or _duration(seconds)


def _duration(seconds: float) -> str:
    """``90`` → "2 minutes"-style wording for alert texts (minutes, hours or days)."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


def _rank(sev: str) -> int:
    return {"warning": 0, "error": 1, "critical": 2}[sev]


def _num(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), 6)


def _usd(v: float) -> str:
    """A signed dollar change: ``+$12.50``, ``-$0.0045``."""
    return f"{'+' if v >= 0 else '-'}{_dollars(abs(v))}"


def _dollars(v: float) -> str:
    """``$1,234.50``; under ten cents with two significant digits, never in exponent notation: a small team's
    spend is not rounded to a cent that hides its move.

    >>> _dollars(1234.5), _dollars(0.0194), _dollars(0.0045), _dollars(-8.5e-07), _dollars(0.0)
    ('$1,234.50', '$0.019', '$0.0045', '-$0.00000085', '$0.00')
    """
    if v != 0 and abs(v) < 0.1:
        digits = min(12, 1 - math.floor(math.log10(abs(v))))
        return f"{'-' if v < 0 else ''}${abs(v):.{digits}f}"
    return f"{'-' if v < 0 else ''}${abs(v):,.2f}"


# The alert document's fields, in order, with what each says when it does not apply (a data gap has no score,
# band or dollar impact; a spend alert names no silence): every kind of alert carries every field.
_DOCUMENT: dict[str, Any] = {
    "version": "1",
    "kind": "spend",  # or data_gap
    "id": None,
    "status": None,
    "revision": 0,
    "restated": False,
    "severity": "warning",
    "escalated": False,
    "previous_severity": None,
    "summary": "",
    "detector": None,
    "detector_type": None,
    "signal": None,
    "per": None,
    "per_scale": 1.0,
    "unit": None,
    "unit_label": None,
    "series": None,
    "sources": None,  # data gaps: the sources whose records made the series
    "window_start": None,
    "window_end": None,
    "started_at": None,
    "resolved_at": None,
    "direction": None,
    "observed": None,
    "expected": None,
    "lower": None,
    "upper": None,
    "score": None,
    "limit": None,
    "impact_usd": None,
    "projected_hourly_impact_usd": None,
    "projected_daily_impact_usd": None,
    "projected_monthly_impact_usd": None,
    "reason": None,
    "silent_windows": None,  # data gaps of a series
    "longest_silence_before_windows": None,
    "early": False,
    "window_progress": None,
    "confirmed": False,
    "withdrawn": False,
    "episode": None,
    "top_contributors": [],
    "alerts": None,  # a group's notification (kind group): the alerts it lists
    "silenced": False,  # a silence matches it: shown, not notified
    "silenced_by": None,  # the ids of those silences
    "repeat": 0,  # a re-notification of the same (repeat_interval)
}


def alert_document(**fields: Any) -> dict[str, Any]:
    """The versioned alert document every sink receives: every field of :data:`_DOCUMENT`, ``fields`` set (an
    unknown name is a programming error); the summary is cut at 1,024 characters."""
    unknown = fields.keys() - _DOCUMENT.keys()
    if unknown:
        raise TypeError(f"not alert document fields: {sorted(unknown)}")
    doc = {**_DOCUMENT, "top_contributors": [], **fields}  # (a list of its own)
    doc["summary"] = doc["summary"][:1024]
    return doc
