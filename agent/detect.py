"""From sealed buckets to scored points and alerts.

One :class:`DetectorRunner` per configured detector. It rolls the sealed buckets up into its
window per series (``signal`` + ``group_by`` values; :mod:`agent.rollup`), scores each closed
window with the series' own model (cloned from the configured prototype) *before* learning it
(this module), and runs the alert lifecycle (firing → resolved) with stable alert ids
(:mod:`agent.lifecycle`). Each series remembers the last window it learned, so replayed input
never makes a model learn a window twice.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator
from typing import Any

from agent import pace as pace_
from agent.alerts import (
    Episode,
    Gap,
    HeldBack,
    Point,
    SeriesKey,
    Unit,
    _duration,
    _label,
    _usd,
)
from agent.early import EarlyWarnings
from agent.gaps import DataGaps
from agent.gaps import enabled as gaps_enabled
from agent.model import Cell, series_dims
from detectors.base import is_usd, warming_up

#: The cost-bearing signals a rate reads well for: (what the window counted, the unit priced).
_PAID_FOR = {
    "gpu_idle_hours": ("idle GPU-hours", "GPU-hour"),
    "gpu_hours": ("GPU-hours", "GPU-hour"),
    "billing_gpu_hours": ("GPU-hours", "GPU-hour"),
}


class DetectorRunner(EarlyWarnings, DataGaps):
    def __init__(self, name: str, cfg: Any, prototype: Any, alerting: Any):
        self.name = name
        self.cfg = cfg
        self.type = cfg.type
        self.prototype = prototype
        self.alerting = alerting
        self.window = float(cfg.window_seconds)
        self.group_by = tuple(cfg.group_by)
        self.models: dict[SeriesKey, Any] = {}
        self.last_learned: dict[SeriesKey, float] = {}
        self.last_seen: dict[SeriesKey, float] = {}
        self.shares: dict[SeriesKey, dict[Cell, float]] = {}
        self.episodes: dict[SeriesKey, Episode] = {}
        # window start → series → [value, per value, cost value, children or None]
        self.windows: dict[float, dict[SeriesKey, list[Any]]] = {}
        self.closed_until = -math.inf  # windows ending at or before this are closed
        self._routes: dict[Cell, Any] = {}
        self.filtered_cells = self.counted_cells = 0  # (see WindowRollup._route)
        self.dropped_series = 0
        self._is_ratio = cfg.per is not None
        self._track_children = cfg.top_contributors > 0
        # What the detector class can do and what the signal is, decided once (checked per point otherwise).
        self._usd = is_usd(cfg.signal)
        self._month = prototype.watches_month  # a budget: the month, not the window
        # New series: one that first appears at least a warm-up after the detector's first data is
        # judged on its spend so far (its own model has no history to score it against).
        new_usd = getattr(cfg, "new_series_usd", None)
        self._new_usd = new_usd if prototype.warmup_points and not self._is_ratio else None
        # The earliest window in which any series of this detector had data: a fact of the input, not
        # of the series a runner happens to hold (a scale-out task learns it from its inputs' clocks).
        self.first_window = math.inf
        self.unit = Unit.of(cfg.signal, cfg.per, cfg.per_scale, self.window, month_to_date=self._month)
        self.held_back = HeldBack()  # anomalous points under min_impact_usd (not alerted)
        self.last_points: dict[SeriesKey, Point] = {}  # each series' latest point (restored on /metrics at start)
        # Early warnings (agent/early.py): sums watched upward.
        # Pending until this many consecutive anomalous windows (Prometheus' for): no early warning then.
        own: int | None = getattr(cfg, "for_points", None)
        self.for_points = own if own is not None else int(getattr(alerting, "for_points", 1))
        self.early_enabled = (
            cfg.early_warning
            and cfg.direction != "down"
            and not self._is_ratio
            and not self._month
            and self.for_points <= 1
        )
        self._bands: dict[tuple[float, SeriesKey], tuple[float, float, float]] = {}  # (window, series) → band
        self.pace: dict[SeriesKey, array[float]] = {}  # each watched series' usual pace within a window (agent/pace.py)
        self._ends: dict[float, float] = {}  # the window being closed → its end (one float for all its points)
        # Data gaps (agent/gaps.py).
        self.gaps_enabled = gaps_enabled(cfg, self._is_ratio, self._month)
        self.gaps: dict[SeriesKey, Gap] = {}
        self.longest_silence: dict[SeriesKey, int] = {}
        self.silent_usual: dict[SeriesKey, float] = {}
        self.source_of: Callable[[Cell], str | None] | None = None  # the source of a cell (set by the topology)

    # -- closing windows -------------------------------------------------------------------
    def close_until(self, sealed_until: float) -> tuple[list[Point], list[dict[str, Any]]]:
        """Close every window that ends at or before ``sealed_until``.

        With ``fill_missing``, every window from the last closed one on closes, with or without data, as
        long as some series is alive to learn its zero: each series learns exactly the windows between its
        last one and now (until it expires), whichever other series this runner holds. Windows in which no
        series is alive and none has data change nothing and are skipped.
        """
        points: list[Point] = []
        events: list[dict[str, Any]] = []
        window = self.window
        due = sorted(k for k in self.windows if k + window <= sealed_until)
        fill = self.cfg.fill_missing and not self._is_ratio
        w = self.closed_until  # the next window to zero-fill (windows start on multiples of the window)
        if not math.isfinite(w):
            w = due[0] if due else math.inf
        end = sealed_until if math.isfinite(sealed_until) else (due[-1] + window if due else -math.inf)
        i, last = 0, -math.inf
        while True:
            nxt = due[i] if i < len(due) else math.inf
            if fill and self.models and w < nxt and w + window <= end:
                cur, acc = w, {}
            elif i < len(due):
                cur, acc = nxt, self.windows.pop(nxt)
                i += 1
            else:
                break
            if self._bands and last == -math.inf:  # (once a call, before its first window closes)
                self._drop_bands(end)
            self._close(cur, acc, points, events)
            last = cur
            w = max(w, cur + window)
        if last > -math.inf:
            self.closed_until = max(self.closed_until, last + window)
        if fill and math.isfinite(self.closed_until) and math.isfinite(end) and end > self.closed_until:
            self.closed_until = end - end % window  # the windows skipped had no series to fill
        return points, events

    def _drop_bands(self, end: float) -> None:
        """Early warnings' bands of the windows closing now are not read again (a closed window is not warned of):
        dropped before the windows' points are made, not at the next early check (three floats, their tuple and
        key, a series checked; the memory a window's close needs is the most the agent needs). A band dropped for a
        window that then stays open is forecast again, the same (its model learned nothing meanwhile)."""
        window = self.window
        self._bands = {k: b for k, b in self._bands.items() if k[0] + window > end}

    def close_all(self) -> tuple[list[Point], list[dict[str, Any]]]:
        return self.close_until(math.inf)

    def _close(
        self, w: float, acc: dict[SeriesKey, list[Any]], points: list[Point], events: list[dict[str, Any]]
    ) -> None:
        if acc and w < self.first_window:
            self.first_window = w
        if self.cfg.fill_missing and not self._is_ratio:
            for key in self.models:
                if key not in acc and self.last_learned.get(key, -math.inf) < w:
                    acc[key] = [0.0, 0.0, 0.0, None]
        gaps = self.gaps_enabled
        for key, a in acc.items():
            if self.last_learned.get(key, -math.inf) >= w:
                continue  # replayed window: already learned, already alerted
            model = self.models.get(key)
            if model is not None and self.lapsed(key, w):
                self._forget(key)  # it expired while no window of its own closed: it comes back as new
                model = None
            if model is None:
                if a[0] == 0 and a[1] == 0 and a[2] == 0 and key not in self.episodes:
                    continue  # only ever zero (a bill's non-GPU lines under GPU-hours): no series until it is not
                model = self.models[key] = self.prototype.clone()
                model.bind_series(key)
                if self._new_usd is not None and self._is_new(w):
                    model.newborn_usd = 0.0  # spend since it appeared (kept with the model's state)
            if gaps and key in self.gaps and a[0] == 0 and a[1] == 0:
                self._in_gap(key, model, w, events)  # not a zero: unknown (learned as its expectation, not scored)
                self.last_learned[key] = w
                continue
            scored = self._score(key, model, w, a, count_held=True)
            if scored is None:
                continue
            pt, x = scored
            if self._new_usd is not None and model.newborn_usd is not None:
                self._newborn(key, model, pt, a)
            x["paged"] = pt.anomalous  # an anomaly under min_impact_usd was not paged (no refractory)
            model.learn_one(x)
            self.last_learned[key] = w
            if a[3] and not pt.anomalous:
                self._learn_shares(key, a)
            pace = self.pace.get(key)
            if pace is not None and not pt.anomalous:
                pace_.learn(pace, w // self.window, a[0])
            points.append(pt)
            self.last_points[key] = pt
            self._lifecycle(key, pt, events)
            had_data = a[0] != 0 or a[1] != 0
            if gaps:  # (after the spend alert: a gap that opens now ends a "drop" that was the silence)
                self._gap_step(key, model, pt, had_data, events)
            if had_data:
                self.last_seen[key] = w
        self._expire(w, events)

    def _score(
        self, key: SeriesKey, model: Any, w: float, a: list[Any], *, count_held: bool = False
    ) -> tuple[Point, dict[str, float]] | None:
        """The window's point for one series (scored before any learning); None for a ratio over nothing.

        ``count_held``: an anomalous point under ``min_impact_usd`` is counted in :attr:`held_back`
        (a window closing for the first time; not a restatement of one).
        """
        cfg = self.cfg
        if self._is_ratio:
            if a[1] == 0:
                return None
            y = a[0] / a[1] * cfg.per_scale
        else:
            y = a[0]
        w_end = self._ends.get(w)
        if w_end is None:  # one float per window, shared by its series' points (a point is kept per series)
            self._ends = {w: w + self.window}
            w_end = self._ends[w]
        x = {"t": w, "t_end": w_end, "y": y}
        score = model.score_one(x)
        expected, lower, upper = model.forecast_one(x)
        if lower < 0.0 <= y:  # a band under zero on spend says "any fall is usual": it reads as 0 (credits: as is)
            lower = 0.0
        if not model.forecasts:
            # A fixed limit (a threshold's) expects no value: the impact is measured against the bound crossed
            # (observed - lower under a floor, observed - upper over a ceiling, 0 within the bounds), and the
            # document's "expected" is that bound.
            expected = min(max(y, lower), upper)
        anomalous = score >= model.threshold
        continuing = False
        ep = self.episodes.get(key)
        last = ep.last_point if ep is not None else None
        if last is not None and (y >= expected) != (last.observed >= last.expected):
            pass  # the other side of the band: not the same incident going on (a drop's recovery is no excursion)
        elif not anomalous and ep is not None and ep.early_window is None:
            # A detector whose scores are discounted right after an anomaly (one page per incident)
            # still says whether the incident goes on: the open episode stays open and keeps adding
            # its dollar impact (whatever a single window's, as the incident fades: min_impact_usd
            # decides whether to page, not when an incident is over). A new episode opens only on
            # the score itself.
            anomalous = continuing = model.excursion(x)
        impact = self._impact(model, x, y, expected, a)
        reason = None
        if anomalous and not continuing and impact is not None and not self._worth_paging(impact, model, a):
            anomalous = False
            # A slow leak costs little per window and much per day: judged on its day's worth.
            sus = model.sustained(x)
            if sus is not None:
                worth, why, move = sus  # in the watched signal's units a day; relative to the usual day
                if not self._usd:  # e.g. GPU-hours: at this window's cost per unit
                    worth = a[2] / y * worth if cfg.cost_signal and y else math.nan
                if self._pages(worth, move):  # a day's worth, by the window's rule (NaN: no dollar figure, no page)
                    anomalous = True
                    reason = f"{why} ({_usd(worth)} a day)"
            if not anomalous and count_held and ep is None:  # (an open alert is alerted)
                self.held_back.add(impact, _label(tuple(zip(self.group_by, key, strict=True))), w)
        series = series_dims(self.group_by, key)
        obs = model.month_so_far(x) if self._month else y  # a budget compares the month, not the window
        pt = Point(
            self.name, self.type, cfg.signal, series, w, w_end, obs, expected, lower, upper, score, anomalous, impact
        )
        pt.unit = self.unit.label
        pt.warming_up = warming_up(model)
        if anomalous:
            pt.reason = model.explain(x) or reason or self._rate_paid(model, a)
        if anomalous and a[3]:
            pt.contributors = self._contributors(key, a, y, expected)
        return pt, x

    def _rate_paid(self, model: Any, a: list[Any]) -> str | None:
        """Where the impact is the cost itself (an idle GPU's): what it was paid at ("0.75 idle GPU-hours at $6.88 a
        GPU-hour"), the rate the price table chose for these GPUs (purchase option, overrides)."""
        cfg = self.cfg
        if not (model.impact_is_cost and cfg.cost_signal and a[0] > 0 and a[2] > 0):
            return None
        what = _PAID_FOR.get(cfg.signal)
        if what is None:
            return f"{_usd(a[2])[1:]} for {a[0]:,.3g} {cfg.signal} ({_usd(a[2] / a[0])[1:]} each)"
        return f"{a[0]:,.2f} {what[0]} at {_usd(a[2] / a[0])[1:]} a {what[1]}"

    def _newborn(self, key: SeriesKey, model: Any, pt: Point, a: list[Any]) -> None:
        """A new series alerts once, when its spend since it appeared reaches ``new_series_usd``."""
        if model.n_learned >= model.warmup_points:
            del model.newborn_usd  # its own model judges it from now on (back to the class's None)
            return
        spend = a[2] if self.cfg.cost_signal else pt.observed if self._usd else 0.0
        model.newborn_usd += spend
        if model.newborn_usd < self._new_usd or pt.anomalous:
            return
        pt.anomalous, pt.score = True, 1.0
        pt.expected = pt.lower = pt.upper = 0.0
        pt.impact_usd = model.newborn_usd
        age = _duration((model.n_learned + 1) * self.window)
        pt.reason = f"new series: {_usd(model.newborn_usd)[1:]} in its first {age}, no history to compare with"
        if a[3]:
            pt.contributors = self._contributors(key, a, pt.observed, 0.0)
        del model.newborn_usd

    def _worth_paging(self, impact: float, model: Any, a: list[Any]) -> bool:
        """An anomalous window's impact pages when it reaches ``min_impact_usd``, or ``min_impact_percent`` of the
        window's expected spend and at least ``min_impact_floor_usd`` (AWS Cost Anomaly Detection's absolute and
        percentage thresholds): a $300-a-month team's doubling is as much an incident as a big team's. The expected
        spend is the window's spend less its impact (a budget's overrun and an idle GPU's cost are no gap from an
        expected spend: the percent rule does not apply to them)."""
        share = None
        if not (self._month or model.impact_is_cost):
            spend = a[2] if self.cfg.cost_signal else a[0] if self._usd else None  # the window's spend in dollars
            usual = spend - impact if spend is not None else 0.0
            share = impact / usual if usual > 0 else None
        return self._pages(impact, share)

    def _pages(self, worth: float, share: float | None) -> bool:
        """The paging rule on a dollar impact (a window's, or a slow change's day's worth) and its share of the
        usual spend (None: none to compare with): ``min_impact_usd``, or ``min_impact_percent`` of the usual and at
        least ``min_impact_floor_usd``."""
        cfg = self.cfg
        worth = abs(worth)
        if worth >= cfg.min_impact_usd:
            return True
        pct = cfg.min_impact_percent
        return pct is not None and share is not None and worth >= cfg.min_impact_floor_usd and abs(share) * 100 >= pct

    def _impact(self, model: Any, x: dict[Any, Any], y: float, expected: float, a: list[Any]) -> float | None:
        cfg = self.cfg
        if self._month:
            return float(model.overrun_usd(x))
        if model.impact_is_cost and cfg.cost_signal:
            return float(a[2])  # e.g. the idle GPU cost itself is the money at stake
        if self._is_ratio:
            if self._usd:
                return (y - expected) * a[1] / cfg.per_scale
            if cfg.cost_signal and y:
                return a[2] * (1 - expected / y)
            return None
        if self._usd:
            return y - expected
        if cfg.cost_signal:
            return a[2] * (1 - expected / y) if y else 0.0
        return None

    def _learn_shares(self, key: SeriesKey, a: list[Any]) -> None:
        total = sum(a[3].values())
        if total <= 0:
            return
        sh = self.shares.setdefault(key, {})
        for child in list(sh):
            if child not in a[3]:
                sh[child] *= 0.9
        for child, v in a[3].items():
            if child in sh or len(sh) < 64:
                sh[child] = 0.9 * sh.get(child, v / total) + 0.1 * (v / total)

    def _contributors(self, key: SeriesKey, a: list[Any], y: float, expected: float) -> list[dict[str, Any]]:
        sh = self.shares.get(key, {})
        # Expected child value = its usual share of the expected total (seasonality-safe); for a ratio
        # the expected numerator is the expected ratio times this window's denominator.
        exp_total = expected * a[1] / self.cfg.per_scale if self._is_ratio else expected
        rows = []
        for child, v in a[3].items():
            e = sh.get(child, 0.0) * exp_total
            rows.append({"dimensions": dict(child.dims), "observed": v, "expected": e, "delta": v - e})
        for child, s in sh.items():
            if child not in a[3]:
                rows.append(
                    {
                        "dimensions": dict(child.dims),
                        "observed": 0.0,
                        "expected": s * exp_total,
                        "delta": -s * exp_total,
                    }
                )
        rows.sort(key=lambda r: -abs(r["delta"]))
        rows = rows[: self.cfg.top_contributors]
        if len(rows) > 1:  # a dimension with one value in every row describes the series, not who moved it
            same = {k for k, v in rows[0]["dimensions"].items() if all(r["dimensions"].get(k) == v for r in rows)}
            if same:
                for r in rows:
                    r["dimensions"] = {k: v for k, v in r["dimensions"].items() if k not in same} or r["dimensions"]
        return rows

    def _is_new(self, w: float) -> bool:
        """A series first seen in window ``w`` is new once the detector has had data for a warm-up.

        Decided by the series' own first window and the detector's first window (a fact of the whole
        input), so the answer is the same whichever other series share this runner.
        """
        return w >= self.first_window + self.prototype.warmup_points * self.window

    def _expire(self, w: float, events: list[dict[str, Any]]) -> None:
        """Every 24 windows, forget series without data for ``series_ttl_windows`` (and no open alert); a data gap
        of a forgotten series ends with it."""
        if int(w // self.window) % 24:
            return
        ttl = self.cfg.series_ttl_windows * self.window
        for key in [k for k, seen in self.last_seen.items() if w - seen > ttl and k not in self.episodes]:
            gap = self.gaps.pop(key, None)
            last = self.last_points.get(key)
            if gap is not None and last is not None and gap.notified:
                doc = self.gap_document(gap, last, "resolved", resolved_at=w)
                doc["summary"] = (
                    f"[{self.name}] data gap closed: {_label(last.series)} has had no data for "
                    f"{_duration(w - gap.since)}; the series is forgotten (series_ttl_windows)"
                )
                events.append(doc)
            self._forget(key)

    def lapsed(self, key: SeriesKey, w: float) -> bool:
        """Whether :meth:`_expire` would have forgotten the series at a window between its last one and ``w``.

        Without ``fill_missing`` only windows with data close, so whether an expiry check ran in a series'
        silence depends on the other series of the runner; this asks the series' own history instead.
        """
        seen = self.last_seen.get(key)
        if seen is None or key in self.episodes:
            return False
        period = 24 * self.window
        after = max(self.last_learned.get(key, -math.inf), seen + self.cfg.series_ttl_windows * self.window)
        check = (after // period + 1) * period  # the first expiry check after both
        return check < w

    def _forget(self, key: SeriesKey) -> None:
        self.models.pop(key, None)
        self.last_seen.pop(key, None)
        self.last_learned.pop(key, None)
        self.shares.pop(key, None)
        self.last_points.pop(key, None)
        self.gaps.pop(key, None)
        self.longest_silence.pop(key, None)
        self.silent_usual.pop(key, None)
        self.pace.pop(key, None)

    # -- restatements ----------------------------------------------------------------------
    def restate(self, w: float, acc: dict[SeriesKey, list[Any]]) -> tuple[list[Point], list[dict[str, Any]]]:
        """Score a closed window again with its restated values (billing deliveries replace hours).

        The models do not learn the window a second time (they learned its first value); the alert
        raised on the earlier value is updated, or resolved when the window is no longer anomalous,
        and a window that became anomalous raises an alert. Budget detectors keep what they summed.
        """
        points: list[Point] = []
        events: list[dict[str, Any]] = []
        if self._month:  # what a month-to-date detector summed stays (a restated hour is not re-judged)
            return points, events
        keys = list(acc) + [k for k, ep in self.episodes.items() if w in ep.windows and k not in acc]
        for key in keys:
            model = self.models.get(key)
            if model is None:
                continue  # a series never scored before: nothing to compare the restated value with
            scored = self._score(key, model, w, acc.get(key) or [0.0, 0.0, 0.0, None])
            if scored is None:
                continue
            pt = scored[0]
            pt.restated = True
            points.append(pt)
            last = self.last_points.get(key)
            if last is not None and last.window_start == w:
                self.last_points[key] = pt
            self._restated_lifecycle(key, pt, events)
        return points, events

    # -- checkpointing ---------------------------------------------------------------------
    # -- one series' state (scale-out keeps it per series in a changelog) --------------------------
    def has_series(self, key: SeriesKey) -> bool:
        """Whether the series has a model (it is scored) or an open episode."""
        return key in self.models or key in self.episodes

    def admits(self, key: SeriesKey) -> bool:
        """Whether a window of ``key`` is scored: a known series, or room under ``max_series`` (else counted)."""
        if key in self.models or len(self.models) < self.cfg.max_series:
            return True
        self.dropped_series += 1
        return False

    def add_window(self, w: float, acc: dict[SeriesKey, list[Any]]) -> None:
        """A window's per-series accumulators, summed elsewhere (scale-out: by the partitions' pre-aggregation)."""
        self.windows[w] = acc

    def series_count(self) -> int:
        return len(self.models)

    def series_state(self, key: SeriesKey) -> dict[str, Any]:
        """What the runner holds for one series (each None when absent): its model, what it learned and saw
        last, its contributors' shares and its open episode."""
        return {
            "model": self.models.get(key),
            "last_learned": self.last_learned.get(key),
            "last_seen": self.last_seen.get(key),
            "shares": self.shares.get(key),
            "episode": self.episodes.get(key),
            "gap": self.gaps.get(key),
            "longest_silence": self.longest_silence.get(key),
            "pace": self.pace.get(key),
        }

    def restore_series(self, key: SeriesKey, state: dict[str, Any]) -> None:
        """Put back what :meth:`series_state` returned."""
        for attr, table in (
            ("model", self.models),
            ("last_learned", self.last_learned),
            ("last_seen", self.last_seen),
            ("shares", self.shares),
            ("episode", self.episodes),
            ("gap", self.gaps),
            ("longest_silence", self.longest_silence),
            ("pace", self.pace),
        ):
            if state.get(attr) is not None:
                table[key] = state[attr]

    def snapshot(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "last_learned": self.last_learned,
            "last_seen": self.last_seen,
            "shares": self.shares,
            "episodes": self.episodes,
            "windows": self.windows,
            "closed_until": self.closed_until,
            "last_points": self.last_points,
            "first_window": self.first_window,
            "gaps": self.gaps,
            "longest_silence": self.longest_silence,
            "pace": self.pace,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        for k in ("models", "last_learned", "last_seen", "shares", "episodes", "windows"):
            setattr(self, k, snap[k])
        self.closed_until = snap.get("closed_until", -math.inf)
        self.first_window = snap.get("first_window", self.inferred_first_window())
        self.gaps = snap.get("gaps") or {}
        self.longest_silence = snap.get("longest_silence") or {}
        self.pace = snap.get("pace") or {}
        # A snapshot of an older version has no latest points: the open episodes' are the best known.
        self.last_points = snap.get("last_points") or {
            k: ep.last_point for k, ep in self.episodes.items() if ep.last_point is not None
        }

    def inferred_first_window(self) -> float:
        """For state saved before the first window was: the oldest series' first window, from what it learned."""
        if not self.models or not math.isfinite(self.closed_until):
            return math.inf
        learned = max(m.n_learned for m in self.models.values())
        return self.closed_until - learned * self.window

    def firing_documents(self) -> Iterator[dict[str, Any]]:
        """A firing document for each open episode and data gap (its latest point), e.g. for metrics after a
        restart."""
        yield from super().firing_documents()
        for key, gap in self.gaps.items():
            pt = self.last_points.get(key)
            if pt is not None and gap.notified:
                yield self.gap_document(gap, pt, "firing")

    def restored_points(self) -> list[Point]:
        """Each series' latest point, as restored: what ``/metrics`` shows before a new window closes."""
        return list(self.last_points.values())
