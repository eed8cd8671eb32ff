"""The alert lifecycle: episodes (firing → escalated → resolved, restated by billing deliveries) and the
versioned alert document every sink receives."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from typing import Any

from agent import pace
from agent.alerts import (
    _EPISODE_WINDOWS_MAX,
    Episode,
    Point,
    SeriesKey,
    Unit,
    _dollars,
    _duration,
    _label,
    _num,
    _number,
    _rank,
    _span,
    _usd,
    _x,
    alert_document,
    alert_id,
)
from agent.model import iso
from detectors.base import is_usd


class AlertLifecycle:
    """The episode and document part of :class:`~agent.detect.DetectorRunner` (a mixin: the runner holds the
    state)."""

    name: str
    type: str
    cfg: Any
    alerting: Any
    window: float
    unit: Unit
    group_by: tuple[str, ...]
    models: dict[SeriesKey, Any]
    pace: dict[SeriesKey, array[float]]
    episodes: dict[SeriesKey, Episode]
    last_learned: dict[SeriesKey, float]
    _month: bool
    for_points: int

    def _restated_lifecycle(self, key: SeriesKey, pt: Point, events: list[dict[str, Any]]) -> None:
        w = pt.window_start
        ep = self.episodes.get(key)
        old = ep.windows.get(w) if ep is not None else None
        if old is None and not pt.anomalous:
            return  # was normal, still normal
        if ep is None:  # a window that became anomalous: an alert of its own
            ep = self.episodes[key] = Episode(alert_id(self.name, pt.series, w, self.alerting.id_namespace), w, w)
        else:
            ep.revision += 1
        if old is not None:
            del ep.windows[w]
            ep.points -= 1
            ep.observed_total -= old[0]
            ep.expected_total -= old[1]
            ep.impact_total -= old[2]
            if ep.last_point is not None and ep.last_point.window_start == w and not pt.anomalous:
                ep.last_point = None  # (its figures are the bill's old ones: the document shows the restated window)
        if pt.anomalous:
            new = (pt.observed, pt.expected, pt.impact_usd or 0.0)
            ep.windows[w] = new
            ep.points += 1
            ep.observed_total += new[0]
            ep.expected_total += new[1]
            ep.impact_total += new[2]
            ep.peak_score = max(ep.peak_score, pt.score)
            ep.normal_streak = 0
            if ep.last_point is None or w >= ep.last_point.window_start:
                ep.last_point = pt
        elif not ep.windows:  # its only anomalous window is gone: withdraw the alert
            del self.episodes[key]
            events.append(self.document(ep, pt, "resolved", resolved_at=w, restated=True))
            return
        ep.severity = self._severity(ep.impact_total, pt.projected_daily_impact_usd if pt.anomalous else None)
        events.append(self.document(ep, pt if pt.anomalous else (ep.last_point or pt), "firing", restated=True))

    def settle_restated(self) -> list[dict[str, Any]]:
        """After a delivery's restated windows: an episode on hours the series has long moved past — opened by the
        restatement (the bill now says an old hour was anomalous), with ``resolve_after_points`` of its live windows
        closed since — is resolved at once. The bill's news is told once (the firing document, then this one), not
        left firing with no window of its own ever to close (a closed month's bill gets no new hours)."""
        events: list[dict[str, Any]] = []
        if self._month:
            return events  # (a month-to-date detector does not re-judge restated hours)
        window = self.window
        span = self.alerting.resolve_after_points * window
        for key, ep in list(self.episodes.items()):
            if not ep.notified or self.last_learned.get(key, -math.inf) < ep.last_window + span:
                continue  # (a live episode: its own windows resolve it)
            if not ep.windows or ep.last_point is None:
                continue
            del self.episodes[key]
            model = self.models.get(key)
            if model is not None:
                model.episode_resolved()
            doc = self.document(ep, ep.last_point, "resolved", resolved_at=ep.last_window + window)
            n = len(ep.windows)
            doc["summary"] = (
                f"[{self.name}] resolved: {self.cfg.signal} {_label(ep.last_point.series)} as restated by the bill: "
                f"{n} window{'s' if n > 1 else ''} from {iso(min(ep.windows))} anomalous, episode impact "
                f"{_usd(ep.impact_total)}; its windows since were usual"
            )
            doc["restated"] = True
            events.append(doc)
        return events

    # -- alert lifecycle -------------------------------------------------------------------
    def _severity(self, impact: float, projected: float | None = None) -> str:
        """From the episode's dollar impact so far, or what its latest window would cost a day if it continued
        (``projected``), whichever is larger: a level shift is as urgent as what it will cost.

        A drop (a negative impact: money not spent, a threshold's floor crossed) is graded by its size only where
        the detector watches drops by purpose (``direction: down``); elsewhere it is at most ``warning`` (a team's
        spend falling is worth a look, not a page)."""
        al = self.alerting
        proj = projected if projected is not None else 0.0
        worth = max(impact, proj, 0.0)  # a rise: what it costs
        if getattr(self.cfg, "direction", "up") == "down":
            worth = max(worth, abs(impact), abs(proj))
        if worth >= al.severity_critical_usd:
            return "critical"
        if worth >= al.severity_error_usd:
            return "error"
        return "warning"

    def _lifecycle(self, key: SeriesKey, pt: Point, events: list[dict[str, Any]]) -> None:
        ep = self.episodes.get(key)
        if ep is not None and ep.early_window is not None and pt.window_start < ep.early_window and not pt.anomalous:
            return  # an earlier window closing normally says nothing of a later window's early warning
        confirming = ep is not None and ep.early_window == pt.window_start  # an early warning's window closed
        if confirming and not pt.anomalous:  # withdrawn: the closed window is not anomalous after all
            assert ep is not None
            del self.episodes[key]
            events.append(self.document(ep, pt, "resolved", resolved_at=pt.window_end, withdrawn=True))
            return
        if pt.anomalous:
            if ep is None:
                ep = self.episodes[key] = Episode(
                    alert_id(self.name, pt.series, pt.window_start, self.alerting.id_namespace),
                    pt.window_start,
                    pt.window_start,
                )
                ep.notified = self.for_points <= 1  # else pending: fires at its for_points-th anomalous window
                send = ep.notified
            elif not ep.notified:
                ep.notified = ep.points + 1 >= self.for_points
                send = ep.notified
            elif confirming:
                ep.early_window = None
                ep.revision += 1
                send = True
            else:
                send = False
            ep.points += 1
            ep.normal_streak = 0
            ep.last_window = pt.window_start
            ep.observed_total += pt.observed
            ep.expected_total += pt.expected
            if pt.impact_usd is not None:
                ep.impact_total = ep.impact_total + pt.impact_usd if not self._month else pt.impact_usd
            ep.peak_score = max(ep.peak_score, pt.score)
            if len(ep.windows) < _EPISODE_WINDOWS_MAX:
                ep.windows[pt.window_start] = (pt.observed, pt.expected, pt.impact_usd or 0.0)
            sev = self._severity(ep.impact_total, pt.projected_daily_impact_usd)
            previous = None
            if _rank(sev) > _rank(ep.severity):
                previous = ep.severity if confirming or not send else None  # an open alert's re-send: an escalation
                ep.severity = sev
                send = ep.notified
                if not send:
                    previous = None  # (pending: nothing was said under the lower severity)
            ep.last_point = pt
            if send:
                events.append(self.document(ep, pt, "firing", escalated_from=previous, confirmed=confirming))
        elif ep is not None and not ep.notified:  # a blip shorter than for_points: held back, never said
            del self.episodes[key]
        elif ep is not None:
            ep.normal_streak += 1
            if ep.normal_streak >= self.alerting.resolve_after_points:
                del self.episodes[key]
                model = self.models.get(key)
                if model is not None:
                    model.episode_resolved()  # the incident is over: the next one pages
                events.append(self.document(ep, ep.last_point or pt, "resolved", resolved_at=pt.window_start))

    def mark_expected(self, alert_id: str, by: str, comment: str) -> list[dict[str, Any]] | None:
        """Feedback: the open alert ``alert_id`` is expected (a planned change, a new normal). Its episode is
        resolved (one document saying who said so), and the series' model takes the level as the new usual. None:
        no open alert of this detector has that id."""
        key = next((k for k, e in self.episodes.items() if e.id == alert_id), None)
        if key is None:
            return None
        ep = self.episodes.pop(key)
        model = self.models.get(key)
        if model is not None:
            model.accept_level()
        pt = ep.last_point
        if pt is None or not ep.notified:
            return []
        doc = self.document(ep, pt, "resolved", resolved_at=pt.window_end)
        doc["summary"] = f"[{self.name}] marked expected by {by}: {comment}; episode impact {_usd(ep.impact_total)}"
        doc["reason"] = f"expected ({by}: {comment})"
        return [doc]

    def _identity(self) -> dict[str, Any]:
        """The alert document's fields that name the detector and what it watches (every kind of alert has them)."""
        cfg, u = self.cfg, self.unit
        return {
            "detector": self.name,
            "detector_type": self.type,
            "signal": cfg.signal,
            "per": cfg.per,
            "per_scale": cfg.per_scale,
            "unit": u.text,
            "unit_label": u.label,
        }

    def document(
        self,
        ep: Episode,
        pt: Point,
        status: str,
        resolved_at: float | None = None,
        *,
        restated: bool = False,
        escalated_from: str | None = None,
        confirmed: bool = False,
        withdrawn: bool = False,
    ) -> dict[str, Any]:
        """The versioned alert document every sink receives.

        ``impact_usd``: the window's dollar impact while firing, the whole episode's once resolved
        (also in ``episode.impact_usd``). ``escalated_from``: the severity of an open alert re-sent
        because its episode's impact reached a higher one (``escalated``, ``previous_severity``). An early
        warning (``pt.early``) is sent while its window is open; ``confirmed``: the firing document of its
        window once closed and anomalous; ``withdrawn``: the resolved document of one that was not (or of a
        window restated by the bill to normal).
        """
        cfg = self.cfg
        label = _label(pt.series)
        u = self.unit
        impact = pt.impact_usd
        firing = status == "firing"
        key = tuple(v for _, v in pt.series)
        model = self.models.get(key)
        # A fixed limit is not an expected value: the alert names it ("100 % idle (limit 50 %)").
        bound = model.crossed_bound(_x(pt)) if firing and model is not None else None
        if withdrawn and not restated:
            if model is not None and pt.score >= model.threshold:  # anomalous, but under the paging rule once whole
                rule = f"min_impact_usd {_dollars(cfg.min_impact_usd)}"
                if getattr(cfg, "min_impact_percent", None) is not None:
                    rule += f" or {cfg.min_impact_percent:g} % of the usual"
                why = f"its impact {_usd(pt.impact_usd or 0.0)} is under the detector's paging rule ({rule})"
            else:
                why = "not anomalous"
            summary = (
                f"[{self.name}] withdrawn: the early warning for {cfg.signal} {label} in window "
                f"{iso(pt.window_start)} is not confirmed: the window closed at {u.fmt(pt.observed)} "
                f"(expected {u.fmt(pt.expected)}), {why}"
            )  # (impact_usd: the closed window's)
        elif firing and pt.early:
            # (the projection the early warning was judged on: at the pace so far, its lower bound)
            proj = pace.projection(self.pace.get(key), pt.observed, pt.progress)[1]
            limit = model.crossed_bound({**_x(pt), "y": proj}) if model is not None else None
            usual = (
                f"({limit[0]} {u.fmt(limit[1], short=True)})"
                if limit is not None
                else f"vs expected {u.fmt(pt.expected)} (upper {u.fmt(pt.upper)})"
            )
            summary = (
                f"[{self.name}] early warning: {cfg.signal} {label}: {u.fmt(pt.observed)} so far, {pt.progress:.0%} "
                f"into window {iso(pt.window_start)}, on course for {u.fmt(proj)} {usual}"
            )
            if impact is not None:
                summary += f", impact so far {_usd(impact)}"
            summary += f" (score {pt.score:.2f}){_top_contributor(pt)}"
        elif firing and self._month:
            summary = f"[{self.name}] {cfg.signal} {label}: {pt.reason or ''}"
            if impact is not None:
                summary += f"; impact {_usd(impact)} over budget"
        elif firing:
            if bound is not None:  # a fixed limit, not a forecast
                money = f"{u.fmt(pt.observed)} ({bound[0]} {u.fmt(bound[1], short=True)})"
            elif pt.observed < pt.expected:  # a drop has its own words: a fall is never "growth"
                if pt.observed == 0:
                    money = f"dropped to nothing (expected {u.fmt(pt.expected)})"
                else:
                    fall = 1 - pt.observed / pt.expected if pt.expected > 0 else 1.0
                    money = f"dropped to {u.fmt(pt.observed)}, {fall:.0%} under expected {u.fmt(pt.expected)}"
            else:
                money = f"{u.fmt(pt.observed)} vs expected {u.fmt(pt.expected)}"
            summary = f"[{self.name}] {cfg.signal} {label}: {money}"
            if impact is not None:
                summary += f", impact {_usd(impact)}"
                hourly = pt.projected_hourly_impact_usd
                if hourly is not None and pt.window_end - pt.window_start != 3600:  # (an hour's window says it)
                    summary += f" ({_usd(hourly)} an hour if it continues)"
            if pt.reason:
                summary += f"; {pt.reason}"
            summary += f" (score {pt.score:.2f}) in window {iso(pt.window_start)}{_top_contributor(pt)}"
        elif restated:
            summary = f"[{self.name}] withdrawn: {cfg.signal} {label} restated by the bill to {u.fmt(pt.observed)}"
            summary += f" in window {iso(pt.window_start)}, no longer anomalous"
        else:
            lasted = _duration(_span(ep, self.window))
            summary = (
                f"[{self.name}] resolved: {cfg.signal} {label} back to normal after {lasted}; "
                f"episode impact {_usd(ep.impact_total)}"
            )
            impact = ep.impact_total  # a resolved alert reports what the whole episode cost
        if escalated_from is not None:
            summary = f"escalated to {ep.severity}: {summary}; episode impact so far {_usd(ep.impact_total)}"
        if restated and firing:
            summary = f"(restated) {summary}"
        if confirmed:
            summary = f"confirmed: {summary}"
        return alert_document(
            id=ep.id,
            status=status,
            revision=ep.revision,
            restated=restated,
            severity=ep.severity,
            escalated=escalated_from is not None,
            previous_severity=escalated_from,
            summary=summary,
            **self._identity(),
            series=dict(pt.series),
            window_start=iso(pt.window_start),
            window_end=iso(pt.window_end),
            started_at=iso(ep.started_at),
            resolved_at=iso(resolved_at) if resolved_at is not None else None,
            direction="down" if pt.observed < pt.expected else "up",
            observed=_num(pt.observed),
            expected=_num(pt.expected),
            lower=_num(pt.lower),
            upper=_num(pt.upper),
            score=_num(pt.score),
            limit={"name": bound[0], "value": _num(bound[1])} if bound is not None else None,
            impact_usd=_num(impact) if impact is not None else None,
            projected_hourly_impact_usd=_num(pt.projected_hourly_impact_usd) if firing else None,
            projected_daily_impact_usd=_num(pt.projected_daily_impact_usd) if firing else None,
            projected_monthly_impact_usd=_num(pt.projected_monthly_impact_usd) if firing else None,
            reason=pt.reason,
            early=firing and pt.early,
            window_progress=_num(pt.progress) if firing and pt.early else None,
            confirmed=confirmed,
            withdrawn=withdrawn or (restated and status == "resolved"),
            episode=_episode(ep, pt if firing and pt.early else None),
            top_contributors=[
                {**c, "observed": _num(c["observed"]), "expected": _num(c["expected"]), "delta": _num(c["delta"])}
                for c in pt.contributors
            ],
        )

    def firing_documents(self) -> Iterator[dict[str, Any]]:
        """A firing document for each open episode (its latest point), e.g. for metrics after a restart."""
        for ep in self.episodes.values():
            if ep.last_point is not None and ep.notified:
                yield self.document(ep, ep.last_point, "firing")


def _episode(ep: Episode, open_window: Point | None) -> dict[str, Any]:
    """The document's ``episode`` block: its closed anomalous windows so far, plus an early warning's open window
    (``open_window``: its figures so far, not yet in the episode's state; ``points`` counts it)."""
    points, observed, expected, impact = ep.points, ep.observed_total, ep.expected_total, ep.impact_total
    if open_window is not None:
        points += 1
        observed += open_window.observed
        expected += open_window.expected * open_window.progress  # what the window usually has by now
        impact += open_window.impact_usd or 0.0
    return {
        "points": points,
        "observed_total": _num(observed),
        "expected_total": _num(expected),
        "impact_usd": _num(impact),
        "peak_score": _num(ep.peak_score),
    }


def _top_contributor(pt: Point) -> str:
    """``; top contributor model=sonnet +$17.43`` for a summary (empty without contributors). A contributor's move
    is in the signal's own unit (a ratio's numerator: ``+920,779 tokens``, not the ratio's)."""
    if not pt.contributors:
        return ""
    top = pt.contributors[0]
    dims = ",".join(f"{k}={v}" for k, v in top["dimensions"].items())
    d = top["delta"]
    move = _usd(d) if is_usd(pt.signal) else f"{'+' if d >= 0 else '-'}{_number(abs(d))} {pt.signal}"
    return f"; top contributor {dims} {move}"
