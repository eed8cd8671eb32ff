"""The base of chat sinks (Slack, Microsoft Teams): a webhook URL that is a secret, links, a JSON POST.

A chat webhook's URL is its credential (Slack's path, a Teams Workflows URL's ``sig`` parameter): it is given as
``url`` (from the environment) or ``url_file`` (a mounted secret), read at start, and never appears in logs or dead
letters (those name the host only). A subclass renders the message.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config import StartupError, read_secret
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result, http_post, redact_url
from sinks.links import Link


def http_url(url: str) -> bool:
    """An http(s) URL with a host.

    >>> [http_url(u) for u in ("https://hooks.slack.com/services/T/B/X", "https://", "hooks.slack.com/x")]
    [True, False, False]
    """
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class ChatConfig(QueuedSinkConfig):
    url: SecretStr | None = None
    url_file: str | None = None
    links: list[Link] = Field(
        default_factory=list, description="links under the message (URL templates: {id}, {series.team}, ...)"
    )

    @field_validator("url")
    @classmethod
    def _http(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not http_url(v.get_secret_value()):
            raise ValueError("not an http(s) URL (the chat's incoming webhook URL)")
        return v

    @model_validator(mode="after")
    def _one_url(self) -> ChatConfig:
        if (self.url is None) == (not self.url_file):
            raise ValueError("set url or url_file (one of them)")
        return self


class ChatSink(QueuedSink):
    cfg: ChatConfig
    example_url = "https://…"

    def __init__(self, cfg: ChatConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self._url = ""
        self.links = list(cfg.links)

    def start(self) -> None:
        self._url = read_secret(self.cfg.url, self.cfg.url_file, f"sinks.{self.name}.url_file") or ""
        if not http_url(self._url):
            raise StartupError(f"sinks.{self.name}.url_file: {self.cfg.url_file} does not hold an http(s) URL")
        super().start()

    def send(self, body: bytes, alert_id: str) -> Result:
        headers = {"Content-Type": "application/json", "User-Agent": "finops-agent/0.1"}
        return http_post(self._url, body, headers, self.cfg.timeout_seconds)

    def destination(self) -> str:
        return redact_url(self._url) if self._url else self.name
