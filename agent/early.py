"""Early warnings: an open window already on course past the usual band.

A window closes ``allowed_lateness`` after it ends; a runaway loop that starts at 10:05 would page after 11:05 with
hourly windows. For a sum watched upward, the runner compares the open window's sum so far with what the series
usually has by that point of a window: the expected window times its **pace**, the share of a window's sum usually
reached by then (learned per series from its own windows at twelve checkpoints, ``agent/pace.py``; until three windows
are learned, an even pace). Spend over that usual pace is the impact so far; the window's sum if it goes on at the
pace seen so far (the sum so far over the usual share: a loop that runs on) is what the model scores. Once that
projection is past the band's upper edge, the impact so far passes the paging rule (``min_impact_usd``, or
``min_impact_percent`` of the usual with ``min_impact_floor_usd``: dollars already spent, not projected) and the model
scores the projection anomalous, the runner alerts at once (``early: true`` in the document, ``window_progress``).
Between checkpoints the usual share is the next checkpoint's (never less than it may be by then), so an hourly batch
job that spends the window's usual sum in its first minutes is usual, not a loop. What the projection cannot know
is a quiet rest of the window: when the window closes it is scored as usual, and the alert is confirmed (the same
id, a new revision) or withdrawn (``resolved`` with ``withdrawn: true``). A window whose end has passed (waiting
for its lateness) is judged on its sum alone.

The pipeline asks every ``early_check_seconds`` of event time (:meth:`EarlyWarnings.early`), handing the open
buckets of the aggregation: they are summed per series here (never into the runner's windows), and each series'
band for a window is forecast once.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agent import pace as pace_
from agent.aggregate import Cells
from agent.alerts import Episode, Point, SeriesKey, alert_id
from agent.lifecycle import AlertLifecycle
from agent.model import series_dims
from agent.rollup import WindowRollup
from detectors.base import warming_up


class EarlyWarnings(WindowRollup, AlertLifecycle):
    """The early-warning part of :class:`~agent.detect.DetectorRunner` (a mixin: the runner holds the state)."""

    last_learned: dict[SeriesKey, float]
    closed_until: float
    early_enabled: bool
    _usd: bool
    _bands: dict[tuple[float, SeriesKey], tuple[float, float, float]]
    pace: dict[SeriesKey, array[float]]

    if TYPE_CHECKING:  # the runner's own (declared for the type checker only: a mixin must not shadow them)

        def _worth_paging(self, impact: float, model: Any, a: list[Any]) -> bool: ...
        def _contributors(self, key: SeriesKey, a: list[Any], y: float, expected: float) -> list[dict[str, Any]]: ...

    def early(
        self, now: float, buckets: Iterable[tuple[float, Cells]], wall: float = -math.inf
    ) -> tuple[list[Point], list[dict[str, Any]]]:
        """Early warnings for the open windows at event time ``now``, given the aggregation's open buckets. ``wall``:
        the wall clock; a window it has passed the end of gets none (it closes in a moment, on the next record or
        the idle timeout: one alert then, not a warning and its confirmation a moment apart — e.g. a catch-up)."""
        if not self.early_enabled:
            return [], []
        window = self.window
        closed = self.closed_until
        partial: dict[float, dict[SeriesKey, list[Any]]] = {}
        for w, acc in self.windows.items():  # sealed buckets of windows still open (buckets shorter than windows)
            partial[w] = {k: [a[0], a[1], a[2], dict(a[3]) if a[3] is not None else None] for k, a in acc.items()}
        for b, cells in buckets:
            w = b - b % window
            if w + window <= closed:
                continue
            # (uncapped: a series beyond max_series has no model, and is not counted twice as dropped)
            self.rollup(cells, partial.setdefault(w, {}), capped=False)
        return self.early_windows(now, partial, wall)

    def early_windows(
        self, now: float, partial: dict[float, dict[SeriesKey, list[Any]]], wall: float = -math.inf
    ) -> tuple[list[Point], list[dict[str, Any]]]:
        """Early warnings for open windows already summed per series (``window start → series → [value, per value,
        cost value, children]``): what :meth:`early` does once it has rolled the open buckets up, and what a Kafka
        scale-out task does with the partials of its inputs' open buckets."""
        events: list[dict[str, Any]] = []
        window = self.window
        closed = self.closed_until
        bands = self._bands
        if bands and min(k[0] for k in bands) + window <= closed:
            for k in [k for k in bands if k[0] + window <= closed]:
                del bands[k]
        for w, acc in partial.items():
            if w + window <= wall or w + window <= closed:
                continue
            progress = min(1.0, max(0.0, (now - w) / window))
            for key, a in acc.items():
                model = self.models.get(key)
                if model is None or self.last_learned.get(key, -math.inf) >= w:
                    continue
                pace = self.pace.get(key)
                if pace is None:
                    pace = self.pace[key] = pace_.new()
                pace_.seen(pace, w // window, progress, a[0])
                if key in self.episodes or warming_up(model):
                    continue  # already alerting (or already warned in this window)
                self._check(key, model, pace, w, a, progress, events)
        return [], events

    def _check(
        self, key: SeriesKey, model: Any, pace: array[float], w: float, a: list[Any], progress: float, events: list[Any]
    ) -> None:
        y = a[0]
        band = self._bands.get((w, key))
        if band is None:
            band = self._bands[w, key] = model.forecast_one({"t": w, "t_end": w + self.window, "y": y})
        expected, lower, upper = band
        if lower < 0.0 <= y:  # (as a closed window's point reads it)
            lower = 0.0
        # The window's sum if it goes on at the pace seen so far, at the low end of what its start says (a partial
        # window is noisier than a whole one: by as much as this series' own pace varies at this point).
        share, proj = pace_.projection(pace, y, progress)
        usual = max(expected, 0.0) * share  # what the window usually has by now
        if not y > usual:
            return
        if not proj > upper:
            return
        if self._usd:
            per = 1.0
        elif self.cfg.cost_signal and y > 0:  # e.g. GPU-hours: at the window's cost per unit so far
            per = a[2] / y
        else:
            return  # no dollar figure: nothing to judge the paging rule on
        # The paging rule on what is already spent over the usual pace (dollars spent, not projected), against the
        # window's usual spend (a closed window's impact is its excess over the expected, too).
        excess = per * (y - usual)
        if not self._worth_paging(excess, model, [expected + y - usual, a[1], per * (expected + y - usual), None]):
            return
        x = {"t": w, "t_end": w + self.window, "y": proj}
        score = model.score_one(x)
        if score < model.threshold:
            return
        series = series_dims(self.group_by, key)
        pt = Point(
            self.name,
            self.type,
            self.cfg.signal,
            series,
            w,
            w + self.window,
            y,
            expected,
            lower,
            upper,
            score,
            True,
            excess,
        )
        pt.unit = self.unit.label
        pt.early, pt.progress = True, progress
        # What it costs if it continues: the excess over the usual since a recent pace checkpoint (half to one and a
        # half checkpoints back: a loop that started at 10:45 has run only since then; over the whole window so far
        # its rate would read a fraction of what it is).
        prev = pace_.earlier(pace, w // self.window, progress)
        if prev is not None:
            k, yk = prev
            usual_then = max(expected, 0.0) * pace_.usual_share(pace, k)
            pt.excess_rate = per * ((y - yk) - (usual - usual_then)) / (progress - k / pace_.CHECKPOINTS)
        pt.reason = (
            f"early warning: {progress:.0%} into the window, on course for {self.unit.fmt(proj)}, past the usual "
            f"band's {self.unit.fmt(upper)}"
        )
        if a[3]:  # each child against its usual share of what the window usually has by now
            pt.contributors = self._contributors(key, a, y, usual)
        ep = self.episodes[key] = Episode(
            alert_id(self.name, series, w, self.alerting.id_namespace), w, w, early_window=w
        )
        ep.severity = self._severity(pt.impact_usd or 0.0, pt.projected_daily_impact_usd)
        ep.peak_score = score
        ep.last_point = pt
        events.append(self.document(ep, pt, "firing"))
