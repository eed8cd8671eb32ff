"""Notifications: routes, grouping, silences and re-notification, between the detectors and the paging sinks.

The detectors' alert events (:mod:`agent.lifecycle`) go through the :class:`Notifier`, Alertmanager's model with its
names:

- **Labels** of an alert: ``detector``, ``severity``, ``kind`` (spend, data_gap), ``signal``, ``status``,
  ``direction`` and the series' dimensions (``team``, ``provider``, ``model``, ...).
- **Matchers**: ``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex`` (the regex matches the whole
  value; a missing label is the empty string), as in Alertmanager.
- **Route tree** (``route`` in the config): a route matches an alert when all its matchers do and the alert is worth
  its ``min_impact_usd`` (the larger of its episode's dollar impact so far and what it costs a day if it continues);
  its child routes are tried in order, the first that matches takes the alert unless it says ``continue: true``; no
  child matching, the route itself takes it. ``sinks``, ``group_by``, ``group_wait_seconds``,
  ``group_interval_seconds``, ``repeat_interval_seconds`` and ``min_impact_usd`` are inherited from the parent.
  Without a ``route``, every paging sink gets every alert at once, as before routes existed.
- **Grouping**: alerts of a route with the same values of its ``group_by`` labels are one group and one notification
  (a ``kind: group`` document listing them, its own id): the first after ``group_wait_seconds``, then changes (new
  alerts, resolutions, a higher severity) at most every ``group_interval_seconds``, the same again every
  ``repeat_interval_seconds`` while any is firing; resolved once all are. ``group_by: ['...']`` groups nothing: each
  alert is sent alone, at once. A sink that groups by itself (Alertmanager) gets the alerts one by one all the same.
- **Silences** (:mod:`agent.silences`; ``silences`` in the config, the ``/api/v1/silences`` API): matchers, a start
  and an end, a comment and an author. A silenced alert is still computed and shown (``silenced: true`` in the
  document, on ``/metrics`` and the console) but not notified; if it still fires when the silence ends, it is
  notified then. A resolution is notified where its firing was. A silence with ``planned_change: true`` (e.g. "team
  research doubles its spend from the 3rd") also tells the detector that the level of a spend alert it matches is
  expected: the series' model takes it as the new usual and the episode resolves without a word.

Sinks that do not page (``/metrics``, the console, a JSON-lines file) get every event, silenced or not, at once. What
is waiting for its group (and the silenced alerts) is kept in ``<state directory>/notifier.json``, written before an
event is acknowledged: a restart neither loses nor repeats a notification.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agent.alerts import _usd, alert_document
from agent.model import parse_time
from agent.silences import Matcher, Silence, Silences, alert_labels, parse_matchers
from agent.state import atomic_write

log = logging.getLogger(__name__)

_SEVERITY_RANK = {"warning": 0, "error": 1, "critical": 2}
NO_GROUPING = "..."


def worth(doc: dict[str, Any]) -> float:
    """What an alert is worth for a route's ``min_impact_usd``: its episode's impact so far, or a day of it if it
    continues, whichever is larger (in dollars, either direction)."""
    episode = doc.get("episode") or {}
    values = [doc.get("impact_usd"), episode.get("impact_usd"), doc.get("projected_daily_impact_usd")]
    return max((abs(float(v)) for v in values if v is not None), default=0.0)


# -- routes ----------------------------------------------------------------------------------------


@dataclass
class Route:
    id: str
    matchers: list[Matcher]
    sinks: tuple[str, ...]
    group_by: tuple[str, ...] | None  # None: no grouping ('...')
    group_wait: float
    group_interval: float
    repeat_interval: float | None
    min_impact_usd: float
    continue_: bool
    routes: list[Route]

    def match(self, labels: dict[str, str], value: float) -> list[Route]:
        """The routes that take an alert with these labels, worth ``value`` dollars (empty: none)."""
        if not all(m.matches(labels) for m in self.matchers) or value < self.min_impact_usd:
            return []
        out: list[Route] = []
        for child in self.routes:
            got = child.match(labels, value)
            if got:
                out.extend(got)
                if not child.continue_:
                    break
        return out or [self]

    def walk(self) -> Iterable[Route]:
        yield self
        for child in self.routes:
            yield from child.walk()


def build_route(cfg: Any, paging_sinks: list[str]) -> Route:
    """The route tree from the config's ``route`` (None: every paging sink, no grouping, no repeat)."""
    if cfg is None:
        return Route("root", [], tuple(paging_sinks), None, 0.0, 0.0, None, 0.0, False, [])
    defaults = {
        "sinks": tuple(paging_sinks),
        "group_by": ("detector",),
        "group_wait": 30.0,
        "group_interval": 300.0,
        "repeat_interval": 4 * 3600.0,
        "min_impact_usd": 0.0,
    }

    def build(c: Any, parent: dict[str, Any], rid: str) -> Route:
        own = {
            "sinks": tuple(c.sinks) if c.sinks is not None else parent["sinks"],
            "group_by": (None if NO_GROUPING in c.group_by else tuple(c.group_by))
            if c.group_by is not None
            else parent["group_by"],
            "group_wait": c.group_wait_seconds if c.group_wait_seconds is not None else parent["group_wait"],
            "group_interval": c.group_interval_seconds
            if c.group_interval_seconds is not None
            else parent["group_interval"],
            "repeat_interval": c.repeat_interval_seconds
            if c.repeat_interval_seconds is not None
            else parent["repeat_interval"],
            "min_impact_usd": c.min_impact_usd if c.min_impact_usd is not None else parent["min_impact_usd"],
        }
        children = [build(child, own, f"{rid}.{i}") for i, child in enumerate(c.routes)]
        return Route(
            rid,
            parse_matchers(c.matchers),
            own["sinks"],
            own["group_by"],
            own["group_wait"],
            own["group_interval"],
            own["repeat_interval"] or None,
            own["min_impact_usd"],
            c.continue_,
            children,
        )

    return build(cfg, defaults, "root")


# -- groups ----------------------------------------------------------------------------------------


@dataclass
class Group:
    key: str  # route id + its group_by labels' values
    route: str
    labels: dict[str, str]
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert id → its latest document
    created: float = 0.0
    due: float = 0.0  # when it is next sent (inf: nothing to send)
    last_sent: float | None = None
    revision: int = -1  # of the group's notification (-1: never sent)
    sent_severity: str | None = None
    pending: bool = True  # something changed since the last notification (else the next one is a repeat)
    namespace: str = ""  # alerting.id_namespace: two agents paging one service never share a group's id

    @property
    def id(self) -> str:
        ns = f"{self.namespace}|" if self.namespace else ""
        return hashlib.sha256(f"group|{ns}{self.key}|{int(self.created)}".encode()).hexdigest()[:32]


def group_document(group: Group) -> dict[str, Any]:
    """One notification for a group: the alerts firing (and those resolved since the last one), the total impact."""
    docs = list(group.alerts.values())
    firing = [d for d in docs if d["status"] == "firing" and not d.get("silenced")]  # (a silenced one: muted)
    shown = firing or [d for d in docs if d["status"] == "resolved"] or docs
    status = "firing" if firing else "resolved"
    severity = max((str(d.get("severity") or "warning") for d in shown), key=lambda s: _SEVERITY_RANK.get(s, 0))
    impact = sum(float((d.get("episode") or {}).get("impact_usd") or d.get("impact_usd") or 0.0) for d in shown)
    label = ", ".join(f"{k}={v}" for k, v in group.labels.items()) or "all"
    ranked = sorted(shown, key=lambda d: -abs(float((d.get("episode") or {}).get("impact_usd") or 0.0)))

    def line(d: dict[str, Any]) -> str:
        series = ", ".join(f"{k}={v}" for k, v in (d.get("series") or {}).items()) or "all"
        dollars = (d.get("episode") or {}).get("impact_usd")
        money = f" {_usd(float(dollars))}" if dollars is not None else ""
        return f"{d.get('detector')} {series}{money}"

    if firing:
        listed = "; ".join(line(d) for d in ranked[:5])
        more = f"; and {len(firing) - 5} more" if len(firing) > 5 else ""
        summary = f"[{label}] {len(firing)} alert(s) firing: {listed}{more}; total impact {_usd(impact)}"
        resolved_now = len(docs) - len(firing)
        if resolved_now and group.revision > 0:
            summary += f" ({resolved_now} resolved since the last notification)"
    else:  # each alert's own words: "back to normal after 4 hours", "marked expected by ana: launch week"
        said = "; ".join(str(d.get("summary") or "") for d in ranked[:5]) + ("; …" if len(shown) > 5 else "")
        summary = f"[{label}] resolved: {len(shown)} alert(s): {said}; impact {_usd(impact)}"
    signals = {d.get("signal") for d in shown}
    units = {d.get("unit") for d in shown}
    projected = [
        float(d["projected_daily_impact_usd"]) for d in firing if d.get("projected_daily_impact_usd") is not None
    ]
    return alert_document(
        kind="group",
        id=group.id,
        status=status,
        revision=max(group.revision, 0),
        severity=severity,
        summary=summary,
        detector=group.labels.get("detector")
        or (shown[0].get("detector") if len({d.get("detector") for d in shown}) == 1 else None),
        signal=signals.pop() if len(signals) == 1 else None,
        unit=units.pop() if len(units) == 1 else None,
        series=dict(group.labels),
        started_at=min((d["started_at"] for d in docs if d.get("started_at")), default=None),
        window_start=min((d["window_start"] for d in shown if d.get("window_start")), default=None),
        window_end=max((d["window_end"] for d in shown if d.get("window_end")), default=None),
        impact_usd=round(impact, 6),
        projected_daily_impact_usd=round(sum(projected), 6) if projected else None,
        alerts=[
            {
                "id": d["id"],
                "status": d["status"],
                "severity": d.get("severity"),
                "detector": d.get("detector"),
                "series": d.get("series"),
                "impact_usd": (d.get("episode") or {}).get("impact_usd", d.get("impact_usd")),
                "summary": d["summary"],
            }
            for d in ranked
        ],
    )


# -- the notifier ------------------------------------------------------------------------------------


class Notifier:
    """Routes, groups, silences and repeats alert events for the sinks (see the module's text)."""

    def __init__(
        self,
        route_cfg: Any,
        silences: Silences,
        sinks: dict[str, Any],
        *,
        telemetry: Any,
        state_dir: str | None,
        clock: Callable[[], float] = time.time,
        planned: Callable[[dict[str, Any], Silence], Any] | None = None,
        namespace: str = "",
        event_time: bool = False,
    ):
        self.sinks = sinks
        self.namespace = namespace  # alerting.id_namespace (in group ids)
        # A replay (backtest) judges silences at each alert's event time — its window's end — not today's clock.
        self.event_time = event_time
        self._latest_event = -float("inf")
        self.planned = planned  # told of an alert a planned change's silence matches: its level is expected
        self.telemetry = telemetry
        self.clock = clock
        self.silences = silences
        paging = [n for n, s in sinks.items() if getattr(s, "pages", False)]
        self.root = build_route(route_cfg, paging)
        self.routes = {r.id: r for r in self.root.walk()}
        routed = {name for r in self.routes.values() for name in r.sinks}
        self.direct = [s for n, s in sinks.items() if n not in routed]  # they see every event
        self.path = Path(state_dir) / "notifier.json" if state_dir else None
        self.lock = threading.RLock()
        self.groups: dict[str, Group] = {}
        self.held: dict[str, dict[str, Any]] = {}  # silenced firing alerts: notified when their silence ends
        self.routed: dict[str, list[str]] = {}  # alert id → the routes its firing went to (its resolve follows)
        self.repeats: dict[str, tuple[dict[str, Any], list[str], float]] = {}  # ungrouped: doc, routes, last sent
        self.live: dict[str, dict[str, Any]] = {}  # firing, notified and not silenced: a silence made now mutes them
        self._load()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state ------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        raw = orjson.loads(self.path.read_bytes())
        self.groups = {k: Group(**g) for k, g in raw.get("groups", {}).items() if g["route"] in self.routes}
        for g in self.groups.values():
            if g.due is None:  # (JSON has no infinity: nothing to send until something changes)
                g.due = float("inf")
        self.held = raw.get("held", {})
        self.routed = raw.get("routed", {})
        self.repeats = {k: (v[0], v[1], v[2]) for k, v in raw.get("repeats", {}).items()}
        self.live = raw.get("live", {})

    def _save(self) -> None:
        if self.path is None:
            return
        state = {
            "groups": {k: vars(g) for k, g in self.groups.items()},
            "held": self.held,
            "routed": self.routed,
            "repeats": {k: list(v) for k, v in self.repeats.items()},
            "live": self.live,
        }
        atomic_write(self.path, orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY))

    # -- events -----------------------------------------------------------------------------------
    def _at(self, doc: dict[str, Any] | None = None) -> float | None:
        """When silences are judged: now (None), or in a replay the event time — the document's window end, else
        the latest seen."""
        if not self.event_time:
            return None
        end = (doc or {}).get("window_end")
        if end:
            t = parse_time(str(end))
            if t > self._latest_event:
                self._latest_event = t
            return t
        return self._latest_event

    def _silencing(self, doc: dict[str, Any]) -> list[Silence]:
        return self.silences.active_for(alert_labels(doc), self._at(doc)) if doc["status"] == "firing" else []

    def mark(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The document with ``silenced`` / ``silenced_by`` as the silences say now."""
        silenced = self._silencing(doc)
        return {**doc, "silenced": bool(silenced), "silenced_by": [s.id for s in silenced] or None}

    def on_alert(self, doc: dict[str, Any]) -> None:
        self.on_alerts([doc])

    def on_alerts(self, docs: list[dict[str, Any]]) -> None:
        """A batch of events (a window's closing): each routed, the state written once for all of them."""
        if not docs:
            return
        with self.lock:
            for doc in docs:
                self._event(doc)
            self._save()

    def _event(self, doc: dict[str, Any], *, held_release: bool = False) -> None:
        labels = alert_labels(doc)
        silenced = self._silencing(doc)
        doc = {**doc, "silenced": bool(silenced), "silenced_by": [s.id for s in silenced] or None}
        if not held_release:
            for s in self.direct:
                _deliver(s, doc, self.telemetry)
        aid = doc["id"]
        if silenced:
            self.held[aid] = doc
            self.telemetry.silenced.labels(detector=str(doc.get("detector"))).inc()
            plan = next((s for s in silenced if s.planned_change), None)
            if plan is not None and self.planned is not None and doc.get("kind") == "spend":
                self.planned(doc, plan)  # the detector takes the new level as usual (the episode resolves quietly)
            return
        if doc["status"] == "resolved":
            self.live.pop(aid, None)
            was_held = self.held.pop(aid, None)
            routes = self.routed.pop(aid, None)
            if routes is None:
                if was_held is not None:
                    return  # silenced all along: nothing was said, nothing to take back
                routes = [r.id for r in self.root.match(labels, worth(doc))]
        else:
            self.held.pop(aid, None)
            routes = [r.id for r in self.root.match(labels, worth(doc))]
            if routes:
                self.routed[aid] = sorted(set(self.routed.get(aid, [])) | set(routes))
                self.live[aid] = doc
        now = self.clock()
        direct_sinks: list[str] = []
        for rid in routes:
            route = self.routes.get(rid)
            if route is None:
                continue
            if route.group_by is None:
                direct_sinks.extend(n for n in route.sinks if n not in direct_sinks)
                if route.repeat_interval and doc["status"] == "firing":
                    self.repeats[aid] = (doc, [rid], now)
                continue
            self._group(route, labels, doc, now)
            direct_sinks.extend(n for n in route.sinks if getattr(self.sinks.get(n), "groups_itself", False))
        if doc["status"] == "resolved":
            self.repeats.pop(aid, None)
        for name in dict.fromkeys(direct_sinks):
            sink = self.sinks.get(name)
            if sink is not None:
                _deliver(sink, doc, self.telemetry)

    def _group(self, route: Route, labels: dict[str, str], doc: dict[str, Any], now: float) -> None:
        assert route.group_by is not None
        values = {k: labels.get(k, "") for k in route.group_by}
        key = f"{route.id}|" + "|".join(f"{k}={v}" for k, v in values.items())
        g = self.groups.get(key)
        if g is None:
            if doc["status"] == "resolved":
                return  # its group was sent resolved already
            g = self.groups[key] = Group(
                key, route.id, values, created=now, due=now + route.group_wait, namespace=self.namespace
            )
        before = g.alerts.get(doc["id"])
        changed = before is None or before["status"] != doc["status"]
        sev_up = _SEVERITY_RANK.get(str(doc.get("severity")), 0) > _SEVERITY_RANK.get(str(g.sent_severity), -1)
        g.alerts[doc["id"]] = doc
        if before is not None and before.get("silenced") and not changed and g.revision >= 0 and route.repeat_interval:
            g.due = min(g.due, (g.last_sent or now) + route.repeat_interval)  # its silence ended: repeats resume
        if g.revision >= 0 and (changed or sev_up):  # sent before: the change goes with the next interval
            g.pending = True
            g.due = min(g.due, max(now, (g.last_sent or now) + route.group_interval))

    # -- time -------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Send the groups that are due, release alerts whose silence ended, repeat what is still firing."""
        now = self.clock()
        with self.lock:
            dirty = False
            at = self._at()
            for aid, doc in list(self.held.items()):
                if not self.silences.active_for(alert_labels(doc), at):
                    del self.held[aid]
                    self._event(doc, held_release=True)
                    for s in self.direct:  # the metric's silenced label goes back to false
                        _deliver(s, {**doc, "silenced": False, "silenced_by": None}, self.telemetry)
                    dirty = True
            for aid, doc in list(self.live.items()):
                if self.silences.active_for(alert_labels(doc), at):
                    self._mute(aid, doc)
                    dirty = True
            for key, g in list(self.groups.items()):
                if g.due <= now:
                    self._send_group(key, g, now)
                    dirty = True
            for aid, (doc, rids, last) in list(self.repeats.items()):
                route = self.routes.get(rids[0])
                if route is None or not route.repeat_interval:
                    del self.repeats[aid]
                    continue
                if now - last >= route.repeat_interval:
                    again = {**doc, "repeat": int(doc.get("repeat") or 0) + 1}
                    self.repeats[aid] = (again, rids, now)
                    for name in route.sinks:
                        if name in self.sinks:
                            _deliver(self.sinks[name], again, self.telemetry)
                    dirty = True
            if dirty:
                self._save()

    def _mute(self, aid: str, doc: dict[str, Any]) -> None:
        """A silence made while ``aid`` fires: no repeat, no place in its groups' next notifications, and sinks that
        show state (``/metrics``) or keep alerts alive by themselves (Alertmanager) are told it is silenced. Its
        resolution still goes where its firing went."""
        silenced = self._silencing(doc)
        muted = {**doc, "silenced": bool(silenced), "silenced_by": [x.id for x in silenced] or None}
        del self.live[aid]
        plan = next((x for x in silenced if x.planned_change), None)
        if plan is not None and self.planned is not None and doc.get("kind") == "spend":
            self.planned(doc, plan)  # a planned change made mid-incident: its level is expected (resolves, said so)
        self.held[aid] = muted
        self.repeats.pop(aid, None)
        for key, g in list(self.groups.items()):
            if aid not in g.alerts:
                continue
            if g.revision < 0:  # never sent: it leaves the group, and a group left with nothing is not sent
                del g.alerts[aid]
                if not g.alerts:
                    del self.groups[key]
                continue
            # Sent firing: it stays in the group, muted (not shown as firing, not repeated), so that its resolution
            # is told where its firing was; a group with nothing else firing waits for that.
            g.alerts[aid] = muted
            if not any(d["status"] == "firing" and not d.get("silenced") for d in g.alerts.values()) and not g.pending:
                g.due = float("inf")
        self.telemetry.silenced.labels(detector=str(doc.get("detector"))).inc()
        for s in self.direct:
            _deliver(s, muted, self.telemetry)
        for rid in self.routed.get(aid, []):
            route = self.routes.get(rid)
            for name in route.sinks if route is not None else ():
                sink = self.sinks.get(name)
                if sink is not None and getattr(sink, "groups_itself", False):
                    _deliver(sink, muted, self.telemetry)

    def _send_group(self, key: str, g: Group, now: float) -> None:
        route = self.routes[g.route]
        if g.revision < 0 and not any(d["status"] == "firing" and not d.get("silenced") for d in g.alerts.values()):
            # Fired and resolved (or was silenced) before the group's first notification (group_wait, a catch-up):
            # a resolution of something never told is no message — as for a single alert whose firing was never
            # delivered. The direct sinks (console, /metrics) showed both.
            log.info("notifier: group %s ended before its first notification: nothing sent", g.key)
            del self.groups[key]
            return
        g.revision += 1
        doc = group_document(g)
        if not g.pending:
            doc["repeat"] = 1  # the same again (repeat_interval)
        for name in route.sinks:
            sink = self.sinks.get(name)
            if sink is not None and not getattr(sink, "groups_itself", False):
                _deliver(sink, doc, self.telemetry)
        g.last_sent, g.sent_severity, g.pending = now, doc["severity"], False
        for aid in [a for a, d in g.alerts.items() if d["status"] == "resolved"]:
            del g.alerts[aid]
        if not g.alerts or doc["status"] == "resolved":
            # Told resolved: the group is over. An alert of it still firing under a silence is told afresh (a new
            # group) if it still fires when its silence ends; its resolution under the silence is no message.
            del self.groups[key]
            return
        loud = any(d["status"] == "firing" and not d.get("silenced") for d in g.alerts.values())
        g.due = now + route.repeat_interval if route.repeat_interval and loud else float("inf")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.tick()
            except Exception:  # never let notifications stop: logged, tried again next tick
                log.exception("notifier: tick failed")

    def stop(self, *, flush: bool = True) -> None:
        """Stop ticking; with ``flush``, groups still waiting are sent now (a clean stop loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if flush:
            with self.lock:
                now = self.clock()
                for key, g in list(self.groups.items()):
                    if g.pending:
                        self._send_group(key, g, now)
                self._save()


def _deliver(sink: Any, doc: dict[str, Any], telemetry: Any) -> None:
    try:
        sink.on_alert(doc)
    except Exception as exc:
        log.exception("sink %s failed on an alert", sink.name)
        telemetry.errors.labels(component=sink.name, error_type=type(exc).__name__, stage="send").inc()
