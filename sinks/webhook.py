"""Webhook sink: the versioned alert document, signed with HMAC-SHA256 (a :class:`~sinks.delivery.QueuedSink`).

Headers on every request:

- ``X-FinOps-Alert-Id``: the alert id (stable across restarts; dedupe on it),
- ``X-FinOps-Timestamp``: Unix seconds of this delivery attempt,
- ``X-FinOps-Signature``: ``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` when a
  secret is set. Receivers recompute it and reject old timestamps (replay protection).

``format: slack`` (deprecated: use the ``slack`` sink) posts a Slack message instead.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config import read_secret
from agent.registry import register
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result, http_post, redact_url
from sinks.slack import slack_message

log = logging.getLogger(__name__)

#: The embedded default config's well-known secret (``${FINOPS_WEBHOOK_SECRET:-change-me}``): signing
#: with it proves nothing, so a sink started with it says so.
DEMO_SECRET = "change-me"


class WebhookConfig(QueuedSinkConfig):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    format: Literal["finops", "slack"] = Field("finops", description="slack: deprecated, use the slack sink")
    secret: SecretStr | None = None
    secret_file: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

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


@register("sink", "webhook", WebhookConfig)
class WebhookSink(QueuedSink):
    cfg: WebhookConfig

    def __init__(self, cfg: WebhookConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._secret: bytes | None = None

    def start(self) -> None:
        secret = read_secret(self.cfg.secret, self.cfg.secret_file, f"sinks.{self.name}.secret_file")
        if secret == DEMO_SECRET:
            log.warning(
                "sink %s signs with the embedded default's demo secret, which everyone knows: "
                "set FINOPS_WEBHOOK_SECRET (or the sink's secret / secret_file) to a secret of your own",
                self.name,
            )
        if self.cfg.format == "slack":
            log.warning("sink %s: webhook format: slack is deprecated; use type: slack", self.name)
        self._secret = secret.encode() if secret else None
        super().start()

    def render(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps(slack_message(doc) if self.cfg.format == "slack" else doc)

    def send(self, body: bytes, alert_id: str) -> Result:
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "finops-agent/0.1",
            **self.cfg.headers,
            "X-FinOps-Alert-Id": alert_id,
            "X-FinOps-Timestamp": ts,
        }
        if self._secret:
            headers["X-FinOps-Signature"] = sign(self._secret, ts, body)
        return http_post(self.cfg.url, body, headers, self.cfg.timeout_seconds)

    def destination(self) -> str:
        return redact_url(self.cfg.url)
