"""Alertmanager sink: alerts posted to Prometheus Alertmanager's API (``POST /api/v2/alerts``), as Prometheus does.

Each alert event is an Alertmanager alert: ``labels`` name it (``alertname``, ``detector``, ``severity``, ``kind``,
``signal``, ``alert_id`` and the series' dimensions, plus the sink's own ``labels``: cluster, environment),
``annotations`` explain it (``summary``, ``description``, ``impact_usd``, ``projected_daily_impact_usd``,
``top_contributor``), ``startsAt`` is when the episode started, ``generatorURL`` a link back (a URL template).

Like Prometheus, the sink re-sends every firing alert every ``resend_interval_seconds`` (60) with ``endsAt`` a few
intervals ahead (``ends_after_seconds``): an Alertmanager that lost it (restarted, or down when it was first sent)
has it again within a minute, and one the agent stops talking to resolves it by itself. A resolved alert is sent
with ``endsAt`` its resolution, and re-sent for ``resolved_resend_seconds`` (15 minutes), across a restart too (the
recently resolved alerts are kept in the sink's SQLite file under the state directory, beside its outbox; firing ones
are the agent's restored state). An escalation changes the
``severity`` label (a new Alertmanager alert): the one under the old severity is ended in the same request.

Several ``urls`` (an HA pair, each not clustered or clustered) are each delivered to: an event is delivered once one
of them accepted it (the others have it with the next re-send; their failures are counted in
``finops_agent_errors_total{stage="resend"}``); refused by all, it is retried, then dead-lettered.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.alerts import _dollars
from agent.config import read_secret
from agent.registry import register
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result, http_post, redact_url
from sinks.links import Link, expand, series_label

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = ("alertname", "detector", "severity", "kind", "signal", "alert_id")


class AlertmanagerConfig(QueuedSinkConfig):
    type: Literal["alertmanager"]
    urls: list[str] = Field(min_length=1, description="Alertmanager base URLs (http://alertmanager:9093), each sent to")
    alertname: str = Field("FinOpsCostAnomaly", description="the alertname of spend alerts")
    data_gap_alertname: str = Field("FinOpsDataGap", description="the alertname of data-gap alerts")
    labels: dict[str, str] = Field(default_factory=dict, description="labels on every alert (cluster, environment)")
    resend_interval_seconds: float = Field(60.0, gt=0, description="firing alerts are re-sent this often")
    ends_after_seconds: float | None = Field(
        None, gt=0, description="a firing alert's endsAt this far ahead (default: 4 re-send intervals)"
    )
    resolved_resend_seconds: float = Field(900.0, ge=0, description="resolved alerts are re-sent this long")
    generator_url: str | None = Field(None, description="generatorURL: a link back (URL template: {id}, ...)")
    bearer_token: SecretStr | None = None
    bearer_token_file: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("urls")
    @classmethod
    def _http(cls, v: list[str]) -> list[str]:
        for u in v:
            if not re.match(r"^https?://[^/]+", u):
                raise ValueError(f"{u!r} is not an http(s) URL (http://alertmanager:9093)")
        return [u.rstrip("/") for u in v]

    @field_validator("labels")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f"label name {k!r} must match {_LABEL.pattern}" for k in v if not _LABEL.match(k)]
        bad += [f"label {k!r} is set by the agent" for k in v if k in _RESERVED]
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @field_validator("generator_url")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            Link(href=v)
        return v

    @model_validator(mode="after")
    def _one_token(self) -> AlertmanagerConfig:
        if self.bearer_token is not None and self.bearer_token_file:
            raise ValueError("set bearer_token or bearer_token_file, not both")
        return self


def label_name(name: str) -> str:
    """A dimension's name as a label name: characters other than letters, digits and ``_`` become ``_``.

    >>> label_name("k8s.namespace"), label_name("1st"), label_name("team")
    ('k8s_namespace', '_1st', 'team')
    """
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return out if _LABEL.match(out) else f"_{out}"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return _rfc3339(time.time())


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@register("sink", "alertmanager", AlertmanagerConfig)
class AlertmanagerSink(QueuedSink):
    cfg: AlertmanagerConfig
    groups_itself = True

    def __init__(self, cfg: AlertmanagerConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._token: str | None = None
        self._lock = threading.Lock()
        # alert id → (its current alert, without endsAt); resolved ones → (alert with endsAt, re-send until)
        self._firing: dict[str, dict[str, Any]] = {}
        self._resolved: dict[str, tuple[dict[str, Any], float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: dict[str, str] = {}  # url → the kind of error it fails with (logged once)
        self._db: sqlite3.Connection | None = None  # the recently resolved alerts, kept for a restart

    @property
    def ends_after(self) -> float:
        return self.cfg.ends_after_seconds or 4 * self.cfg.resend_interval_seconds

    def start(self) -> None:
        self._token = read_secret(
            self.cfg.bearer_token, self.cfg.bearer_token_file, f"sinks.{self.name}.bearer_token_file"
        )
        super().start()
        self._open_resolved()
        self._thread = threading.Thread(target=self._resend_loop, name=f"alertmanager-{self.name}", daemon=True)
        self._thread.start()

    def _open_resolved(self) -> None:
        """Keep the recently resolved alerts in the sink's SQLite file (beside its outbox) and take back those a
        previous run left, still within ``resolved_resend_seconds``: a restart does not stop their re-sends."""
        path = self.state_path()
        if path is None:
            return
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        db.execute(
            "CREATE TABLE IF NOT EXISTS alertmanager_resolved (id TEXT PRIMARY KEY, alert BLOB NOT NULL,"
            " until REAL NOT NULL)"
        )
        now = time.time()
        with self._lock:
            db.execute("DELETE FROM alertmanager_resolved WHERE until < ?", (now,))
            for aid, alert, until in db.execute("SELECT id, alert, until FROM alertmanager_resolved"):
                if aid not in self._firing and aid not in self._resolved:
                    self._resolved[aid] = (orjson.loads(alert), float(until))
            self._db = db

    def _keep_resolved(self, aid: str, kept: tuple[dict[str, Any], float] | None) -> None:
        """Store (or, with None, forget) a resolved alert in the sink's file. Under the lock."""
        if self._db is None:
            return
        try:
            if kept is None:
                self._db.execute("DELETE FROM alertmanager_resolved WHERE id = ?", (aid,))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO alertmanager_resolved (id, alert, until) VALUES (?, ?, ?)",
                    (aid, orjson.dumps(kept[0]), kept[1]),
                )
        except sqlite3.Error as exc:  # (the re-sends go on from memory; only a restart would lose them)
            log.warning("sink %s: could not keep the resolved alert %s for a restart: %s", self.name, aid, exc)

    # -- what an alert looks like -----------------------------------------------------------
    def labels(self, doc: dict[str, Any], severity: str | None = None) -> dict[str, str]:
        labels = {label_name(k): str(v) for k, v in (doc.get("series") or {}).items()}
        for k in _RESERVED:  # a dimension named like one of the agent's labels keeps its value under series_<name>
            if k in labels:
                labels[f"series_{k}"] = labels.pop(k)
        data_gap = doc.get("kind") == "data_gap"
        labels.update(self.cfg.labels)
        labels.update(
            {
                "alertname": self.cfg.data_gap_alertname if data_gap else self.cfg.alertname,
                "detector": str(doc.get("detector")),
                "severity": severity or str(doc.get("severity")),
                "kind": str(doc.get("kind") or "spend"),
                "signal": str(doc.get("signal")),
                "alert_id": doc["id"],
            }
        )
        return labels

    def alert(self, doc: dict[str, Any], severity: str | None = None, started: float | None = None) -> dict[str, Any]:
        annotations = {
            "summary": doc["summary"],
            "description": _description(doc),
            "series": series_label(doc),
        }
        for key in ("impact_usd", "projected_daily_impact_usd"):
            if doc.get(key) is not None:
                annotations[key] = f"{doc[key]:.2f}"
        if doc.get("top_contributors"):
            top = doc["top_contributors"][0]
            dims = ",".join(f"{k}={v}" for k, v in top["dimensions"].items())
            annotations["top_contributor"] = f"{dims} {top['delta']:+.2f}"
        if doc.get("started_at"):
            annotations["episode_started_at"] = str(doc["started_at"])  # (event time)
        out: dict[str, Any] = {
            "labels": self.labels(doc, severity),
            "annotations": annotations,
            # When the agent raised it (wall clock), as Prometheus sends an alert's firing time: an episode starts
            # at least a window before it is alerted, and Alertmanager sends a group whose first alert is older
            # than group_wait at once, without waiting for the incident's other series.
            "startsAt": _rfc3339(started if started is not None else time.time()),
        }
        if self.cfg.generator_url:
            url = expand(self.cfg.generator_url, doc)
            if url:
                out["generatorURL"] = url
        return out

    def on_alert(self, doc: dict[str, Any]) -> None:
        """Keep the alert for the re-sends (firing) or for a while once resolved, then queue the event. A silenced
        alert (a silence made while it fires) is no longer re-sent: Alertmanager lets it end at its endsAt."""
        now = time.time()
        if doc.get("silenced"):
            with self._lock:
                self._firing.pop(doc["id"], None)
            return
        with self._lock:
            known = self._firing.get(doc["id"])
            started = _epoch(known["startsAt"]) if known is not None else now
            current = self.alert(doc, started=started)
            if doc["status"] == "resolved":
                self._firing.pop(doc["id"], None)
                current["endsAt"] = _rfc3339(now)
                kept = self._resolved[doc["id"]] = (current, now + self.cfg.resolved_resend_seconds)
                self._keep_resolved(doc["id"], kept)
            else:
                self._firing[doc["id"]] = current
                if self._resolved.pop(doc["id"], None) is not None:
                    self._keep_resolved(doc["id"], None)
        super().on_alert(doc)

    def render(self, doc: dict[str, Any]) -> bytes:
        """The alerts of one event: a firing alert without ``endsAt`` (set when sent), a resolved one with it; an
        escalation also ends the alert under the previous severity (its labels named another alert)."""
        with self._lock:
            kept = self._firing.get(doc["id"]) or self._resolved.get(doc["id"], (None, 0.0))[0]
        current = dict(kept) if kept is not None else self.alert(doc)
        alerts = []
        if doc["status"] != "resolved" and doc.get("previous_severity"):
            alerts.append({**current, "labels": self.labels(doc, doc["previous_severity"]), "endsAt": _now()})
        if doc["status"] == "resolved":
            current.setdefault("endsAt", _now())
        alerts.append(current)
        return orjson.dumps(alerts)

    # -- delivery -----------------------------------------------------------------------------
    def _post(self, url: str, alerts: list[dict[str, Any]]) -> Result:
        headers = {"Content-Type": "application/json", "User-Agent": "finops-agent/0.1", **self.cfg.headers}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return http_post(f"{url}/api/v2/alerts", orjson.dumps(alerts), headers, self.cfg.timeout_seconds)

    def _with_ends(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ends = _rfc3339(time.time() + self.ends_after)
        return [a if "endsAt" in a else {**a, "endsAt": ends} for a in alerts]

    def send(self, body: bytes, alert_id: str) -> Result:
        alerts = self._with_ends(orjson.loads(body))
        results = [(url, self._post(url, alerts)) for url in self.cfg.urls]
        self._note(results, "deliver")
        if any(r.outcome == "ok" for _, r in results):
            return Result("ok", "; ".join(f"{redact_url(u)} {r.detail}" for u, r in results))
        retry = [r for _, r in results if r.outcome == "retry"]
        detail = "; ".join(f"{redact_url(u)}: {r.detail}" for u, r in results)
        if retry:
            after = [r.retry_after for r in retry if r.retry_after is not None]
            return Result("retry", detail, min(after) if after else None)
        return Result("permanent", detail)

    def _note(self, results: list[tuple[str, Result]], stage: str) -> None:
        """Count and log (once per kind of failure) an Alertmanager that did not take what others took."""
        if not any(r.outcome == "ok" for _, r in results) and stage == "deliver":
            return  # the outbox counts and logs a delivery nobody took
        for url, r in results:
            where = redact_url(url)
            if r.outcome == "ok":
                if self._failing.pop(url, None) is not None:
                    log.info("sink %s: alertmanager %s takes alerts again", self.name, where)
                continue
            self.telemetry.errors.labels(component=self.name, error_type=r.outcome, stage="resend").inc()
            kind = r.detail.split(":")[0]
            if self._failing.get(url) != kind:
                self._failing[url] = kind
                log.warning(
                    "sink %s: alertmanager %s fails (%s); it gets the firing alerts with the next re-send",
                    self.name,
                    where,
                    r.detail,
                )

    def _resend_loop(self) -> None:
        while not self._stop.wait(self.cfg.resend_interval_seconds):
            self.resend()

    def resend(self) -> None:
        """Post every firing alert (and the recently resolved ones) to every Alertmanager."""
        now = time.time()
        with self._lock:
            for aid in [a for a, (_, until) in self._resolved.items() if until < now]:
                del self._resolved[aid]
                self._keep_resolved(aid, None)
            alerts = list(self._firing.values()) + [a for a, _ in self._resolved.values()]
        if not alerts:
            return
        alerts = self._with_ends(alerts)
        self._note([(url, self._post(url, alerts)) for url in self.cfg.urls], "resend")

    def on_restore(self, points: list[Any], firing: list[dict[str, Any]]) -> None:
        """After a restart: the alerts still firing are re-sent with the next interval (nothing new is paged), and
        so are the recently resolved ones (kept in the sink's file: :meth:`start`)."""
        now = time.time()
        with self._lock:
            for doc in firing:
                self._firing[doc["id"]] = self.alert(doc, started=now)
                if self._resolved.pop(doc["id"], None) is not None:
                    self._keep_resolved(doc["id"], None)

    def destination(self) -> str:
        return ", ".join(redact_url(u) for u in self.cfg.urls)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        super().stop(timeout)
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _description(doc: dict[str, Any]) -> str:
    """One line of figures under the summary (observed against expected and the band, the episode's impact)."""
    parts = []
    unit = doc.get("unit") or ""
    if doc.get("observed") is not None and doc.get("expected") is not None:
        parts.append(f"observed {doc['observed']:,.4g} {unit} vs expected {doc['expected']:,.4g}".replace("  ", " "))
    if doc.get("upper") is not None:
        parts.append(f"usual band {doc.get('lower'):,.4g}–{doc['upper']:,.4g}")
    episode = doc.get("episode") or {}
    if episode.get("impact_usd") is not None:
        parts.append(f"episode impact {_dollars(episode['impact_usd'])} over {episode.get('points')} window(s)")
    if doc.get("reason"):
        parts.append(str(doc["reason"]))
    return "; ".join(parts) or doc["summary"]
