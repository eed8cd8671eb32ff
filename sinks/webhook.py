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
import time
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, model_validator

from agent.config import read_secret
from agent.registry import ComponentConfig, register
from sinks.base import Sink
from sinks.delivery import Outbox, Result, http_post


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
    icon = {"critical": ":rotating_light:", "error": ":red_circle:", "warning": ":warning:"}.get(doc["severity"], "")
    if doc["status"] == "resolved":
        icon = ":white_check_mark:"
    fields = [
        {"type": "mrkdwn", "text": f"*Observed*\n{doc['observed']}"},
        {"type": "mrkdwn", "text": f"*Expected*\n{doc['expected']}"},
        {"type": "mrkdwn", "text": f"*Impact (USD)*\n{doc['impact_usd']}"},
        {"type": "mrkdwn", "text": f"*Score*\n{doc['score']}"},
    ]
    return {
        "text": f"{icon} {doc['summary']}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{doc['summary']}*"}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert id `{doc['id']}`"}]},
        ],
    }


@register("sink", "webhook", WebhookConfig)
class WebhookSink(Sink):
    def __init__(self, cfg: WebhookConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._secret: bytes | None = None
        self.outbox: Outbox | None = None
        self.dead_letter = kw.get("dead_letter")

    def start(self) -> None:
        secret = read_secret(self.cfg.secret, self.cfg.secret_file)
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

            self.dead_letter.write(self.name, self.cfg.url.split("?")[0], [BadRecord(item, "delivery_failed", reason)])

    def flush(self, timeout: float = 5.0) -> bool:
        return self.outbox.drain(timeout) if self.outbox else True

    def stop(self, timeout: float = 5.0) -> None:
        if self.outbox is not None:
            self.outbox.drain(min(timeout, 5.0))
            self.outbox.stop(timeout)
            self.outbox = None
