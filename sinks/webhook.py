"""Webhook sink: the versioned alert document, signed with HMAC-SHA256, or a Slack message.

Headers on every request:

- ``X-FinOps-Alert-Id``: the alert id (stable across restarts; dedupe on it),
- ``X-FinOps-Timestamp``: Unix seconds of this delivery attempt,
- ``X-FinOps-Signature``: ``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` when a
  secret is set. Receivers recompute it and reject old timestamps (replay protection).

``format: slack`` posts ``{"text", "blocks"}`` for a Slack incoming webhook instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config import read_secret
from agent.registry import ComponentConfig, register
from sinks.base import Sink
from sinks.delivery import Outbox, Result, http_post, redact_url

log = logging.getLogger(__name__)

#: The embedded default config's well-known secret (``${FINOPS_WEBHOOK_SECRET:-change-me}``): signing
#: with it proves nothing, so a sink started with it says so.
DEMO_SECRET = "change-me"


class WebhookConfig(ComponentConfig):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    format: Literal["finops", "slack"] = "finops"
    secret: SecretStr | None = None
    secret_file: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    send_resolved: bool = True
    timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(12, ge=1)
    backoff_base_seconds: float = Field(0.5, gt=0)
    backoff_cap_seconds: float = Field(60.0, gt=0)

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("empty secret: deliveries would go unsigned; set a secret or remove the key")
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookConfig:
        if self.secret is not None and self.secret_file:
            raise ValueError("set secret or secret_file, not both")
        return self


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 over ``timestamp.body``.

    >>> s = sign(b"key", "1700000000", b'{"id":"a"}')
    >>> s.startswith("v1=") and len(s) == 67
    True
    >>> verify(b"key", str(int(time.time())), b"{}", sign(b"key", str(int(time.time())), b"{}"))
    True
    """
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "v1=" + mac


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance_seconds: float = 300) -> bool:
    """What a receiver does: constant-time compare and a timestamp window."""
    if abs(time.time() - float(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def slack_message(doc: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: the summary, then the figures in the series' unit.

    A threshold alert shows its limit (not an "expected" value), an escalation says from which
    severity, and a resolved alert shows what the whole episode cost.
    """
    icon = {"critical": ":rotating_light:", "error": ":red_circle:", "warning": ":warning:"}.get(doc["severity"], "")
    episode = doc.get("episode") or {}
    if doc["status"] == "resolved":
        icon = ":white_check_mark:"
        fields = [
            _field("Episode impact", _money(doc.get("impact_usd"))),
            _field("Windows", str(episode.get("points", "n/a"))),
            _field("Started", str(doc.get("started_at"))),
            _field("Resolved", str(doc.get("resolved_at"))),
        ]
    else:
        limit = doc.get("limit")
        compared = (
            _field(limit["name"].capitalize(), _value(limit["value"], doc))
            if limit
            else _field("Expected", _value(doc.get("expected"), doc))
        )
        fields = [
            _field("Observed", _value(doc.get("observed"), doc)),
            compared,
            _field("Impact (window)", _money(doc.get("impact_usd"))),
            _field("Episode impact", _money(episode.get("impact_usd"))),
            _field("Score", "n/a" if doc.get("score") is None else f"{doc['score']:.2f}"),
        ]
        if doc.get("escalated"):
            fields.insert(0, _field("Escalated", f"{doc.get('previous_severity')} → {doc['severity']}"))
    return {
        "text": f"{icon} {doc['summary']}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{doc['summary']}*"}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert id `{doc['id']}`"}]},
        ],
    }


def _field(name: str, text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n{text}"}


def _money(v: float | None) -> str:
    """``-1234.5`` → "-$1,234.50" (n/a when unknown)."""
    return "n/a" if v is None else f"{'-' if v < 0 else ''}${abs(v):,.2f}"


def _value(v: float | None, doc: dict[str, Any]) -> str:
    """A value in the alert's unit: "$12.50", "$0.0123 per 1000 tokens", "100 %", "320 gpu_hours"."""
    unit = doc.get("unit") or ""
    if v is None:
        return "n/a"
    if doc.get("unit_label") == "ratio":
        return f"{v * 100:.3g} %"
    if unit == "USD":
        return _money(v)
    if unit.startswith("USD per "):
        return f"${v:,.4g} per {unit[8:]}"
    return f"{v:,.4g} {unit}".rstrip()


@register("sink", "webhook", WebhookConfig)
class WebhookSink(Sink):
    def __init__(self, cfg: WebhookConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._secret: bytes | None = None
        self.outbox: Outbox | None = None
        self.dead_letter = kw.get("dead_letter")

    def start(self) -> None:
        secret = read_secret(self.cfg.secret, self.cfg.secret_file, f"sinks.{self.name}.secret_file")
        if secret == DEMO_SECRET:
            log.warning(
                "sink %s signs with the embedded default's demo secret, which everyone knows: "
                "set FINOPS_WEBHOOK_SECRET (or the sink's secret / secret_file) to a secret of your own",
                self.name,
            )
        self._secret = secret.encode() if secret else None
        path = str(Path(self.state_dir) / f"outbox-{self.name}.sqlite") if self.state_dir else None
        self.outbox = Outbox(
            self.name,
            self._deliver,
            path=path,
            max_attempts=self.cfg.max_attempts,
            backoff_base_seconds=self.cfg.backoff_base_seconds,
            backoff_cap_seconds=self.cfg.backoff_cap_seconds,
            on_dead=self._dead,
            on_depth=lambda n: self.telemetry.outbox_depth.labels(sink=self.name).set(n),
        )
        self.outbox.start()

    def on_alert(self, doc: dict[str, Any]) -> None:
        if doc["status"] == "resolved" and not self.cfg.send_resolved:
            return
        body = orjson.dumps(slack_message(doc) if self.cfg.format == "slack" else doc)
        assert self.outbox is not None, "sink not started"
        # One delivery per (alert, status, severity, revision), even when a replay after a crash re-creates
        # the event; a billing restatement that changes the alert is a new revision.
        dedup = f"{doc['id']}:{doc['status']}:{doc['severity']}"
        if doc.get("revision"):
            dedup += f":r{doc['revision']}"
        self.outbox.put(orjson.dumps({"id": doc["id"], "body": body.decode()}), dedup_key=dedup)

    def _deliver(self, item: bytes) -> Result:
        env = orjson.loads(item)
        body = env["body"].encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "finops-agent/0.1",
            **self.cfg.headers,
            "X-FinOps-Alert-Id": env["id"],
            "X-FinOps-Timestamp": ts,
        }
        if self._secret:
            headers["X-FinOps-Signature"] = sign(self._secret, ts, body)
        res = http_post(self.cfg.url, body, headers, self.cfg.timeout_seconds)
        if res.outcome == "ok":
            self.telemetry.sent.labels(component=self.name).inc()
        else:
            self.telemetry.errors.labels(component=self.name, error_type=res.outcome, stage="deliver").inc()
        return res

    def _dead(self, item: bytes, reason: str) -> None:
        self.telemetry.discarded.labels(component=self.name, reason="delivery_failed").inc()
        if self.dead_letter is not None:
            from agent.decoders.base import BadRecord

            self.dead_letter.write(self.name, redact_url(self.cfg.url), [BadRecord(item, "delivery_failed", reason)])

    def flush(self, timeout: float = 5.0) -> bool:
        return self.outbox.drain(timeout) if self.outbox else True

    def stop(self, timeout: float = 5.0) -> None:
        if self.outbox is not None:
            self.outbox.drain(min(timeout, 5.0))
            self.outbox.stop(timeout)
            self.outbox = None
