"""PagerDuty sink: each alert event as a PagerDuty Events API v2 event (a :class:`~sinks.delivery.QueuedSink`).

A firing alert is a ``trigger`` whose ``dedup_key`` is the alert id (an escalation or a confirmation re-triggers the
same PagerDuty alert); its resolution a ``resolve``. The payload: ``summary`` (at most 1,024 characters),
``source``, ``severity`` (``critical``, ``error``, ``warning``; ``info`` for what is no incident), ``timestamp``,
``component`` (the series), ``group`` (the detector), ``class`` (the kind of alert and its signal),
``custom_details`` (observed, expected, band, dollar impact so far and projected per day, contributors, reason);
``links`` to the agent's report and a Grafana panel when configured (URL templates, see :mod:`sinks.links`).

The routing key is a secret (``routing_key`` from the environment, or ``routing_key_file``, e.g. a mounted Kubernetes
secret): it is added to the event only when it is sent, so the outbox, dead letters and logs never hold it.
429 and 5xx are retried with backoff, 400 (an event PagerDuty refuses) is dead-lettered with its reason. PagerDuty
takes about 120 events a minute per routing key: a token bucket per key holds deliveries back beyond
``events_per_minute`` (``finops_agent_sink_throttled_total`` counts each delay).
"""

from __future__ import annotations

import hashlib
import logging
import socket
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config import StartupError, read_secret
from agent.registry import register
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result, http_post, redact_url
from sinks.links import Link, TokenBucket, explanation, links_for, series_label

log = logging.getLogger(__name__)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITIES = ("critical", "error", "warning", "info")


class PagerDutyConfig(QueuedSinkConfig):
    type: Literal["pagerduty"]
    routing_key: SecretStr | None = Field(None, description="the integration's routing key (Events API v2)")
    routing_key_file: str | None = Field(None, description="a file holding the routing key (a mounted secret)")
    url: str = Field(EVENTS_URL, pattern=r"^https?://", description="the Events API (EU: events.eu.pagerduty.com)")
    source: str | None = Field(
        None, description="the payload's source: where the spend is (default: the agent's host name)"
    )
    events_per_minute: float = Field(
        120.0, gt=0, description="at most this many events a minute per routing key (PagerDuty's limit)"
    )
    report_url: str | None = Field(
        None, description="a link back to the agent's report for this alert (a URL template, e.g. {id})"
    )
    links: list[Link] = Field(default_factory=list, description="more links (a Grafana panel: {series.team}, ...)")

    @field_validator("routing_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("empty routing key")
        return v

    @field_validator("report_url")
    @classmethod
    def _report(cls, v: str | None) -> str | None:
        if v is not None:
            Link(href=v)  # the same template rules (raises with the reason)
        return v

    @model_validator(mode="after")
    def _one_key(self) -> PagerDutyConfig:
        if (self.routing_key is None) == (not self.routing_key_file):
            raise ValueError("set routing_key or routing_key_file (one of them)")
        return self


def severity(doc: dict[str, Any]) -> str:
    """PagerDuty's severity for an alert document: its own (critical, error, warning), ``info`` when none."""
    sev = doc.get("severity")
    return sev if sev in _SEVERITIES else "info"


def pagerduty_event(doc: dict[str, Any], *, source: str, links: list[dict[str, str]]) -> dict[str, Any]:
    """The Events API v2 event for an alert document, without its routing key (added when sent)."""
    if doc["status"] == "resolved":
        return {"event_action": "resolve", "dedup_key": doc["id"]}
    kind = doc.get("kind") or "spend"
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": doc["id"],
        "payload": {
            "summary": doc["summary"][:1024],
            "source": source,
            "severity": severity(doc),
            "component": series_label(doc)[:255],
            "group": str(doc.get("detector") or "")[:255],
            "class": f"{kind}/{doc.get('signal')}"[:255],
            "custom_details": explanation(doc),
        },
        "client": "FinOps Anomaly Agent",
    }
    if doc.get("window_end"):
        event["payload"]["timestamp"] = doc["window_end"] if not doc.get("early") else doc["window_start"]
    if links:
        event["links"] = links
        event["client_url"] = links[0]["href"]
    return event


@register("sink", "pagerduty", PagerDutyConfig)
class PagerDutySink(QueuedSink):
    cfg: PagerDutyConfig

    def __init__(self, cfg: PagerDutyConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._key = ""
        self._bucket: TokenBucket | None = None
        self._links = ([Link(href=cfg.report_url, text="FinOps agent report")] if cfg.report_url else []) + list(
            cfg.links
        )

    def start(self) -> None:
        key = read_secret(self.cfg.routing_key, self.cfg.routing_key_file, f"sinks.{self.name}.routing_key_file")
        if not key:
            raise StartupError(f"sinks.{self.name}: no routing key")
        self._key = key
        rate = self.cfg.events_per_minute
        # (a bucket per routing key, named by its hash: two sinks with one key share PagerDuty's limit)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self._bucket = TokenBucket.shared(f"pagerduty:{digest}", rate / 60.0, max(1.0, rate))
        super().start()

    def render(self, doc: dict[str, Any]) -> bytes:
        event = pagerduty_event(doc, source=self.cfg.source or socket.gethostname(), links=links_for(self._links, doc))
        return orjson.dumps(event)

    def send(self, body: bytes, alert_id: str) -> Result:
        assert self._bucket is not None, "sink not started"
        waited = self._bucket.take()
        if waited > 0:
            self.telemetry.throttled.labels(sink=self.name).inc()
        event = orjson.loads(body)
        event["routing_key"] = self._key
        headers = {"Content-Type": "application/json", "User-Agent": "finops-agent/0.1"}
        return http_post(self.cfg.url, orjson.dumps(event), headers, self.cfg.timeout_seconds)

    def destination(self) -> str:
        return redact_url(self.cfg.url)
