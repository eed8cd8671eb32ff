"""Data gaps: a series that stops reporting raises an alert of its own, naming its sources.

A source that goes silent hides spend rather than saving it; its series' empty windows are zeros to the spend
model (``fill_missing``), which may also call them a drop, but the on-call engineer needs to hear "no data" apart
from "spend fell". A series is in a gap once it has had no data for ``data_gap_windows`` windows **and** for longer
than twice its longest silence so far (a team that is quiet every night and every weekend is not missing on Sunday:
its own history sets the bar; twice, because the longest of a series' silences grows with the history it is taken
from — a few weeks show only part of what a year of quiet nights, holidays and sparse hours brings). The alert
(``kind: data_gap``, its own id) resolves when data comes back. A series counted in dollars also waits until what
it usually spends in the silence reaches ``min_impact_floor_usd`` (cents never page: a $10-a-month team quiet for
three hours of its night may hide $0.10; a day of its silence is told). While it is open, the series' empty windows are
unknown rather than zero: not scored, and learned as the model's own expectation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.alerts import Gap, Point, SeriesKey, _duration, _label, _num, alert_document, alert_id
from agent.lifecycle import AlertLifecycle
from agent.model import Cell, iso, series_dims
from detectors.base import warming_up


class DataGaps(AlertLifecycle):
    """The data-gap part of :class:`~agent.detect.DetectorRunner` (a mixin: the runner holds the state)."""

    last_seen: dict[SeriesKey, float]
    gaps: dict[SeriesKey, Gap]
    longest_silence: dict[SeriesKey, int]  # windows; only series that have been silent
    # Series silent now but not (yet) in a gap: their expected values summed since (not persisted).
    silent_usual: dict[SeriesKey, float]
    gaps_enabled: bool
    _usd: bool
    source_of: Callable[[Cell], str | None] | None
    _routes: dict[Cell, Any]

    def _gap_step(self, key: SeriesKey, model: Any, pt: Point, had_data: bool, events: list[dict[str, Any]]) -> None:
        """After a series' window is scored, before ``last_seen`` takes it: open or end its gap (the windows of an
        open gap are :meth:`_in_gap`'s)."""
        w = pt.window_start
        seen = self.last_seen.get(key)
        if had_data:
            self.silent_usual.pop(key, None)
            gap = self.gaps.pop(key, None)
            if gap is not None and gap.notified:  # (a gap is not one of the series' usual silences: not learned)
                events.append(self.gap_document(gap, pt, "resolved", resolved_at=w))
            elif seen is not None:
                run = round((w - seen) / self.window) - 1
                if run > self.longest_silence.get(key, 0):
                    self.longest_silence[key] = run
            return
        usual = self.silent_usual[key] = self.silent_usual.get(key, 0.0) + _usual(model, pt.expected)
        if seen is None or warming_up(model):
            return
        run = round((w - seen) / self.window)
        longest = self.longest_silence.get(key, 0)
        if run < max(self.cfg.data_gap_windows, 2 * longest + 1):
            return
        series = series_dims(self.group_by, key)
        since = seen + self.window
        del self.silent_usual[key]  # the gap keeps the count from here on
        # (Its windows are unknown from now on, not zeros, whether or not it is told yet.)
        gap = self.gaps[key] = Gap(
            alert_id(f"{self.name}:data_gap", series, since, self.alerting.id_namespace),
            since,
            run,
            longest,
            usual,
            self._sources(key),
            notified=False,
        )
        self._tell_gap(key, gap, pt.series, pt.window_end, events)

    def _tell_gap(self, key: SeriesKey, gap: Gap, series: Any, end: float, events: list[dict[str, Any]]) -> None:
        """The gap's firing document, once what the series usually spends in the silence passes the detector's
        floor (a series in dollars: cents never page; NaN, a fixed limit's, expects nothing: no floor); a drop alert
        that was the silence ends with it."""
        if self._usd and gap.usual < self.cfg.min_impact_floor_usd:
            return
        gap.notified = True
        events.append(self._gap_doc(gap, series, end, "firing"))
        ep = self.episodes.get(key)
        last = ep.last_point if ep is not None else None
        if ep is not None and last is not None and last.observed < last.expected:  # the "drop" was the silence
            del self.episodes[key]
            doc = self.document(ep, last, "resolved", resolved_at=end - self.window)
            doc["summary"] = (
                f"[{self.name}] resolved: {_label(series)} did not drop, its data stopped: a data gap since "
                f"{iso(gap.since)} (alerted on its own, id {gap.id[:12]})"
            )
            events.append(doc)

    def _in_gap(self, key: SeriesKey, model: Any, w: float, events: list[dict[str, Any]]) -> None:
        """A window without data while the series is in a gap: unknown, not zero. It is not scored (no drop alert
        for spend that went unreported, no point on ``/metrics``), and the model learns its own expectation for it:
        a silence is not learned as a fall of the level, nor compared a week later as growth."""
        x = {"t": w, "t_end": w + self.window, "y": 0.0}
        expected = model.forecast_one(x)[0]
        x["y"] = expected
        x["paged"] = False
        x["unknown"] = True
        model.learn_one(x)
        gap = self.gaps[key]
        gap.silent_windows += 1
        gap.usual += _usual(model, expected)
        if not gap.notified:
            self._tell_gap(key, gap, series_dims(self.group_by, key), w + self.window, events)

    def _sources(self, key: SeriesKey) -> tuple[str, ...]:
        """The sources whose records made the series (as far as the aggregation remembers its cells)."""
        of = self.source_of
        if of is None:
            return ()
        names = {of(c) for c, r in self._routes.items() if r is not None and r[0] == key}
        return tuple(sorted(n for n in names if n))

    def gap_document(self, gap: Gap, pt: Point, status: str, resolved_at: float | None = None) -> dict[str, Any]:
        """The alert document of a data gap (the same fields as a spend alert's; ``kind: data_gap``)."""
        return self._gap_doc(gap, pt.series, pt.window_end, status, resolved_at)

    def _gap_doc(
        self, gap: Gap, dims: Any, end: float, status: str, resolved_at: float | None = None
    ) -> dict[str, Any]:
        cfg = self.cfg
        series = dict(dims)
        label = _label(dims)
        u = self.unit
        src = ", ".join(gap.sources) or "unknown source"
        lasted = _duration(gap.silent_windows * self.window)
        before = (
            f"its longest silence before: {_duration(gap.longest_before * self.window)}"
            if gap.longest_before
            else "it had never been silent for a whole window"
        )
        of = f" for {label}" if dims else ""  # (a detector without group_by has one series: no label)
        if status == "firing":
            usual = f"; it usually reports {u.fmt(gap.usual)} in that time" if math.isfinite(gap.usual) else ""
            summary = (
                f"[{self.name}] data gap: no {cfg.signal} data{of} from {src} for {lasted} since "
                f"{iso(gap.since)} ({before}){usual}: spend may be going unreported"
            )
        else:
            again = f"{label} reports" if dims else "reports"
            summary = (
                f"[{self.name}] data gap over: {again} {cfg.signal} again (from {src}) after {lasted} without data"
            )
        return alert_document(
            kind="data_gap",
            id=gap.id,
            status=status,
            summary=summary,
            **self._identity(),
            series=series,
            sources=list(gap.sources),
            window_start=iso(gap.since),
            window_end=iso(end),
            started_at=iso(gap.since),
            resolved_at=iso(resolved_at) if resolved_at is not None else None,
            observed=0.0,
            expected=_num(gap.usual),
            reason=f"no data for {lasted}",
            silent_windows=gap.silent_windows,
            longest_silence_before_windows=gap.longest_before,
            episode={
                "points": gap.silent_windows,
                "observed_total": 0.0,
                "expected_total": _num(gap.usual),
                "impact_usd": None,
                "peak_score": None,
            },
        )


def _usual(model: Any, expected: float) -> float:
    """What a series usually reports in a window: its model's expected value (NaN for a fixed limit, a threshold's,
    which expects nothing: the gap then names no usual spend)."""
    return max(expected, 0.0) if model.forecasts else math.nan


def enabled(cfg: Any, is_ratio: bool, month: bool) -> bool:
    """Whether a detector watches for data gaps: sums that fill missing windows with zeros."""
    return cfg.data_gap_windows is not None and cfg.fill_missing and not is_ratio and not month


class SourceSilence:
    """Live sources that stop sending records: a data-gap alert per source (``kind: data_gap``, series
    ``{"source": name}``), apart from the series' own gaps. A series' gap needs its windows to close, and a source
    that goes quiet altogether closes at most one window past its last record (the idle horizon), so a dead log
    shipper is told by the wall clock instead: no record for ``limit`` seconds and for twice the source's longest
    silence since the agent started."""

    def __init__(self, limit: float, now: Callable[[], float], namespace: str = ""):
        self.limit = limit  # 0: never
        self.now = now
        self.namespace = namespace  # alerting.id_namespace, in the alert ids
        self.last: dict[str, float] = {}  # source → wall time of its last batch with records
        self.longest: dict[str, float] = {}  # source → its longest silence between batches (seconds)
        self.open: dict[str, float] = {}  # source → since when it is silent (an alert is firing)

    def records(self, source: str) -> dict[str, Any] | None:
        """A batch of ``source`` had records; the resolved document of its gap if one was open."""
        t = self.now()
        last = self.last.get(source)
        self.last[source] = t
        since = self.open.pop(source, None)
        if since is not None:
            return self.document(source, since, t, "resolved")
        if last is not None and t - last > self.longest.get(source, 0.0):
            self.longest[source] = t - last
        return None

    def check(self, sources: list[str]) -> list[dict[str, Any]]:
        """Firing documents for the live ``sources`` silent past their limit (each once)."""
        if not self.limit:
            return []
        t = self.now()
        out = []
        for name in sources:
            last = self.last.get(name)
            if last is None or name in self.open:
                continue
            if t - last >= max(self.limit, 2 * self.longest.get(name, 0.0)):
                self.open[name] = last
                out.append(self.document(name, last, t, "firing"))
        return out

    def document(self, source: str, since: float, t: float, status: str) -> dict[str, Any]:
        lasted = _duration(t - since)
        longest = self.longest.get(source, 0.0)
        if status == "firing":
            before = f"its longest silence before: {_duration(longest)}" if longest >= 1 else "a steady source"
            summary = (
                f"[source {source}] data gap: no record from source {source} for {lasted} since {iso(since)} "
                f"({before}); its spend may be going unreported"
            )
        else:
            summary = f"[source {source}] data gap over: source {source} sends records again after {lasted}"
        return alert_document(
            kind="data_gap",
            id=alert_id("source:data_gap", (("source", source),), since, self.namespace),
            status=status,
            summary=summary,
            detector=f"source:{source}",
            detector_type="source",
            signal="records",
            unit="records",
            unit_label="records",
            series={"source": source},
            sources=[source],
            window_start=iso(since),
            window_end=iso(t),
            started_at=iso(since),
            resolved_at=iso(t) if status == "resolved" else None,
            observed=0.0,
            reason=f"no record for {lasted}",
            episode={
                "points": 0,
                "observed_total": 0.0,
                "expected_total": None,
                "impact_usd": None,
                "peak_score": None,
            },
        )
