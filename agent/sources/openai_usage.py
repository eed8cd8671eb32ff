"""OpenAI organization Usage API and Costs API, polled: token usage and cost per bucket, each bucket once.

What is read: ``GET {base_url}/organization/usage/completions`` (and/or ``/usage/embeddings``) with
``start_time``, ``end_time``, ``bucket_width`` (``1m`` | ``1h`` | ``1d``), ``group_by`` (``model``,
``project_id``, ``api_key_id``, ``user_id``, ``batch``), ``limit`` and ``page``; or, in a source of
its own (``endpoints: [costs]``), ``GET {base_url}/organization/costs`` (daily buckets, grouped by
``project_id`` / ``line_item``). The admin key (``admin_key`` or ``admin_key_file``: an
``sk-admin-...`` key) goes in ``Authorization: Bearer``; it is never logged nor dead-lettered.
Each bucket (``{"start_time", "end_time", "results": [...]}``) is one record for the decoder
(``decoder: {type: openai_usage}``, the default; :mod:`agent.decoders.openai_usage` has the signals
and dimensions); its observations carry the bucket's start as their time.

Settling: OpenAI fills a bucket in for a while after it ends (minutes for usage, up to a day for
costs). A bucket is taken only once it ended ``settle_seconds`` ago, and then never again, so a
value is never counted twice — and a bucket taken too early stays short. Each poll asks every
endpoint for the settled buckets after the last one taken (paging through ``has_more`` /
``next_page``) and emits them all as one batch (event time never goes back within the source),
whose position is the end of the window. A page that fails (429 and 5xx are retried with backoff,
honouring ``Retry-After``) leaves the position where it was: the next poll asks for the same window
again. 401 / 403 (a wrong or revoked key) is logged once as an error and counted in
``finops_agent_errors_total{error_type="unauthorized"}``; polling goes on, reading
``admin_key_file`` again (a rotated secret is picked up). A response that is not a page is
dead-lettered once; a bucket or result that cannot be used is dead-lettered by the decoder.

Restart: the position (``usage`` or ``costs``: the end of the last window taken) is committed once
the pipeline processed its batch and checkpointed with the detectors' state, so a restarted agent
asks for the buckets after it; on the very first start it reaches back ``lookback_seconds``.
Buckets the API returns outside the asked window are skipped (an earlier one was taken already, a
later one has not settled), and a bucket returned twice is dead-lettered the second time.

Event time: the source is *live*: after each poll it reports itself idle, and windows close on the
wall clock (``pipeline.idle_timeout_seconds``) when every source is quiet. A bucket arrives up to
``settle_seconds + poll_interval_seconds`` after its end (longer while the API fails), so keep that
below ``pipeline.idle_timeout_seconds + pipeline.allowed_lateness_seconds``, or its observations
come after their window closed and are dead-lettered as ``late``. An agent that reads only this API
is best run with ``idle_timeout_seconds: null`` and ``allowed_lateness_seconds: 0``: each window
then closes as the bucket that ends it is taken, however late (a window without any usage, when
usage resumes). Costs (daily, settled after hours) belong in an agent of their own, run so.
``bucket_width`` should not be longer than the detectors' windows (a daily bucket is stamped at
midnight and lands whole in the first window of its day).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.openai_usage import ENDPOINT_OBJECTS, OpenAIUsageConfig
from agent.registry import ComponentConfig, config_union, register
from agent.sources.base import Batch, Source
from sinks.delivery import backoff_seconds, classify_status, parse_retry_after

log = logging.getLogger(__name__)

Endpoint = Literal["completions", "embeddings", "costs"]
WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
#: The most buckets one page may hold, per bucket width (the API's ``limit`` maximum); costs: 180 days.
PAGE_MAX = {"1m": 1440, "1h": 168, "1d": 31}
COSTS_PAGE_MAX = 180
MAX_PAGES = 10_000  # a cursor that never ends: refused (bad_page)
MAX_BODY_BYTES = 64 << 20
MAX_WAIT_SECONDS = 900.0  # a Retry-After beyond this is taken as this
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-*.]{3,}")


class OpenAIUsageSourceConfig(ComponentConfig):
    type: Literal["openai_usage"]
    admin_key: SecretStr | None = Field(None, description="an OpenAI admin key (sk-admin-...); or admin_key_file")
    admin_key_file: str | None = Field(None, description="a file holding the admin key (a mounted secret)")
    base_url: str = Field("https://api.openai.com/v1", description="the API's base URL (a proxy, or a test server)")
    endpoints: list[Endpoint] = Field(
        default=["completions"], min_length=1, description="completions and/or embeddings; or costs, alone"
    )
    bucket_width: Literal["1m", "1h", "1d"] = Field("1h", description="usage bucket width (costs are always 1d)")
    group_by: list[Literal["model", "project_id", "api_key_id", "user_id", "batch"]] = Field(
        default=["model", "project_id"],
        description="usage grouping (each becomes a dimension); model is required: tokens are priced per model",
    )
    costs_group_by: list[Literal["project_id", "line_item"]] = Field(
        default=["project_id", "line_item"], description="costs grouping"
    )
    project_ids: list[str] = Field(default_factory=list, description="only these projects (default: all)")
    poll_interval_seconds: float = Field(60.0, gt=0)
    lookback_seconds: float = Field(
        86_400.0, ge=0, description="on the very first start (no saved position), reach back this far"
    )
    settle_seconds: float = Field(
        300.0,
        ge=0,
        description="a bucket is taken once it ended this long ago, and never again (OpenAI fills buckets late)",
    )
    timeout_seconds: float = Field(30.0, gt=0, description="per HTTP request")
    max_retries: int = Field(5, ge=0, description="retries of a request answered 429 / 5xx or timed out, per poll")
    retry_backoff_seconds: float = Field(1.0, gt=0, description="first retry's backoff (doubles, full jitter)")
    max_backoff_seconds: float = Field(60.0, gt=0)
    page_size: int | None = Field(
        None, ge=1, description="buckets per page (the API's limit); default: the most the API allows"
    )
    max_buckets_per_batch: int = Field(
        1440, ge=1, description="a catch-up is emitted in batches of at most this many buckets"
    )
    decoder: config_union("decoder") = Field(  # type: ignore[valid-type]
        default_factory=lambda: OpenAIUsageConfig(type="openai_usage")
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urllib.parse.urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL")
        if parts.username is not None or parts.query:
            raise ValueError("no credentials or query in base_url: the admin key goes in admin_key / admin_key_file")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> OpenAIUsageSourceConfig:
        if (self.admin_key is None) == (self.admin_key_file is None):
            raise ValueError("set admin_key or admin_key_file (exactly one)")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError("endpoints: each endpoint once")
        usage = [e for e in self.endpoints if e != "costs"]
        if usage and "costs" in self.endpoints:
            raise ValueError(
                "endpoints: costs go in a source of their own (daily buckets, settled late: in one event-time stream "
                "with hourly usage they would arrive after their windows closed)"
            )
        if usage and "model" not in self.group_by:
            raise ValueError("group_by must include model: usage is priced per model")
        return self


class _Failed(Exception):
    """A poll that did not complete: ``kind`` (the metric's error_type) and a reason without the
    key; ``raw`` and ``dead_letter`` for a response that is bad input (dead-lettered once)."""

    def __init__(self, kind: str, reason: str, raw: bytes = b"", *, dead_letter: bool = False, level: int = 0):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.raw = raw
        self.dead_letter = dead_letter
        self.level = level or logging.WARNING


class _Stopped(Exception):
    pass


@register("source", "openai_usage", OpenAIUsageSourceConfig)
class OpenAIUsageSource(Source):
    """Poll → the settled buckets after the position (every endpoint's, one window) → one batch → idle → wait."""

    def __init__(self, cfg: OpenAIUsageSourceConfig, *, clock: Callable[[], float] | None = None, **kw: Any):
        super().__init__(cfg, **kw)
        self.clock = clock or time.time  # the wall clock that decides which buckets are settled
        self._key = self._read_key()
        #: The position's key: one for the usage endpoints together (their buckets of a window are one batch, so
        #: that event time never goes back within the stream), or "costs".
        self.key = "costs" if cfg.endpoints == ["costs"] else "usage"
        self.width = 86_400 if self.key == "costs" else WIDTHS[cfg.bucket_width]
        self._next: int | None = None  # start of the next bucket to take (what was emitted)
        self._idle = False  # reported idle: a batch with records is preceded by "active"
        self._failing: str | None = None  # the error kind logged in the current failure episode
        self._reported: set[tuple[int, str]] = set()  # (window start, reason) dead-lettered
        self._rng = random.Random()

    @property
    def live(self) -> bool:
        return True

    def _read_key(self) -> str:
        from agent.config import StartupError, read_secret

        key = read_secret(self.cfg.admin_key, self.cfg.admin_key_file, f"sources.{self.name}.admin_key_file")
        if not key:
            raise StartupError(f"sources.{self.name}.admin_key: empty")
        return key

    def restore(self, positions: dict[str, Any]) -> None:
        super().restore(positions)
        self._next = None

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping:
            try:
                caught_up = self.poll()
            except _Stopped:
                return
            except Exception as exc:  # (a bug) never ends the source: counted, logged once, polled again later
                self._count(type(exc).__name__)
                if self._failing != type(exc).__name__:
                    self._failing = type(exc).__name__
                    log.exception("openai_usage source %s: poll failed; the position stays", self.name)
                caught_up = True
            if self.stopping:
                return
            if caught_up:
                self._idle = True
                self.emit(Batch(self.name, "idle", None, None))
                self._stop.wait(self.cfg.poll_interval_seconds)

    def poll(self) -> bool:
        """Take the next window; True when it reached the newest settled bucket (or failed: it is asked again at
        the next poll), False when a catch-up has more to take at once."""
        if self.stopping:
            raise _Stopped
        try:
            done = self._take()
        except _Failed as exc:
            self._failed(exc)
            return True
        if self._failing is not None:
            log.info("openai_usage source %s: the API answers again", self.name)
            self._failing = None
        return done

    def _start(self, now: float) -> int:
        if self._next is not None:
            return self._next
        width = self.width
        pos = self.positions.get(self.key)
        if isinstance(pos, dict) and isinstance(pos.get("end"), int | float):
            end = int(pos["end"])
            start = -(-end // width) * width  # (a bucket width changed since: the next whole bucket, never twice)
            if start != end:
                log.warning(
                    "openai_usage source %s: read up to %s in %s buckets; resuming at %s",
                    self.name,
                    _iso(end),
                    pos.get("bucket_width"),
                    _iso(start),
                )
        else:
            start = int(math.floor((now - self.cfg.lookback_seconds) / width)) * width
        self._next = start
        return start

    def _take(self) -> bool:
        """Emit the next window of settled buckets; True when it reaches the newest settled one."""
        width = self.width
        now = self.clock()
        settled = int(math.floor((now - self.cfg.settle_seconds) / width)) * width  # end of the newest settled
        start = self._start(now)
        if start >= settled:
            return True
        end = min(settled, start + self.cfg.max_buckets_per_batch * width)
        buckets: list[bytes] = []
        for endpoint in self.cfg.endpoints:
            if self.stopping:
                raise _Stopped
            buckets += self._fetch(endpoint, start, end)
        if buckets and self._idle:
            self.emit(Batch(self.name, "active", None, None))
        self._idle = False
        where = self.location(self.cfg.endpoints[0]) if len(self.cfg.endpoints) == 1 else self.cfg.base_url
        ctx = DecodeContext(self.name, where, **self.ctx_defaults)
        position = (self.key, {"end": end, "bucket_width": "1d" if self.key == "costs" else self.cfg.bucket_width})
        self.emit(Batch(self.name, "lines", buckets, ctx, position, len(buckets), live=end == settled))
        self._next = end
        return end == settled

    # -- HTTP ---------------------------------------------------------------------------------
    def location(self, endpoint: str) -> str:
        path = "/organization/costs" if endpoint == "costs" else f"/organization/usage/{endpoint}"
        return self.cfg.base_url + path

    def params(self, endpoint: str, start: int, end: int) -> list[tuple[str, str]]:
        costs = endpoint == "costs"
        page_max = COSTS_PAGE_MAX if costs else PAGE_MAX[self.cfg.bucket_width]
        limit = min(page_max, self.cfg.page_size or page_max, max(1, (end - start) // self.width))
        params = [
            ("start_time", str(start)),
            ("end_time", str(end)),
            ("bucket_width", "1d" if costs else self.cfg.bucket_width),
            ("limit", str(limit)),
        ]
        params += [("group_by", g) for g in (self.cfg.costs_group_by if costs else self.cfg.group_by)]
        params += [("project_ids", p) for p in self.cfg.project_ids]
        return params

    def _fetch(self, endpoint: str, start: int, end: int) -> list[bytes]:
        """Every page of [start, end): the buckets inside it, one JSON line each (empty buckets left out; a result
        without ``object`` is given its endpoint's, so that the decoder knows it in a batch of several)."""
        url = self.location(endpoint)
        base = self.params(endpoint, start, end)
        kind = ENDPOINT_OBJECTS[endpoint]
        lines: list[bytes] = []
        seen: set[Any] = set()
        dupes: list[BadRecord] = []
        cursor: str | None = None
        cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            raw = self._get(url, base + ([("page", cursor)] if cursor else []))
            try:
                page = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _Failed("bad_page", f"{url}: response is not JSON: {exc}", raw, dead_letter=True) from None
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise _Failed("bad_page", f"{url}: response is not a page (no data list)", raw, dead_letter=True)
            for bucket in data:
                if isinstance(bucket, dict):
                    s, e = bucket.get("start_time"), bucket.get("end_time")
                    if isinstance(s, int) and isinstance(e, int):
                        if s < start or e > end:
                            continue  # taken already / not settled yet: never twice, never early
                        if s in seen:
                            why = f"bucket {_iso(s)} returned twice for one request: the first one was taken"
                            dupes.append(BadRecord(orjson.dumps(bucket), "duplicate_bucket", why))
                            continue
                        seen.add(s)
                    results = bucket.get("results")
                    if results == []:
                        continue  # nothing used in it
                    if isinstance(results, list):
                        for res in results:
                            if isinstance(res, dict) and res.get("object") is None:
                                res["object"] = kind
                lines.append(orjson.dumps(bucket))
            if not page.get("has_more"):
                break
            cursor = page.get("next_page")
            if not isinstance(cursor, str) or not cursor or cursor in cursors:
                why = f"{url}: has_more without a new next_page cursor ({cursor!r})"
                raise _Failed("bad_page", why, raw, dead_letter=True)
            cursors.add(cursor)
        else:
            raise _Failed("bad_page", f"{url}: more than {MAX_PAGES} pages for one window", dead_letter=True)
        if dupes:
            self.bad(url, dupes)
        return lines

    def _get(self, url: str, params: list[tuple[str, str]]) -> bytes:
        """One page, retried on 429 / 5xx / timeouts (Retry-After honoured); raises :class:`_Failed`."""
        full = f"{url}?{urllib.parse.urlencode(params)}"
        attempt = 0
        while True:
            status, body, wait, detail = self._request(full)
            if 200 <= status < 300:
                return body
            if status in (401, 403):
                if self.cfg.admin_key_file:  # (a rotated secret is picked up at the next poll)
                    try:
                        self._key = self._read_key()
                    except Exception as exc:
                        log.debug("openai_usage source %s: admin_key_file: %s", self.name, exc)
                what = "unauthorized" if status == 401 else "forbidden"
                reason = (
                    f"{url}: HTTP {status}: the admin key was refused ({what}); set admin_key / admin_key_file to an "
                    "OpenAI admin key (sk-admin-...) of this organization with read access to usage"
                )
                raise _Failed(what, reason, level=logging.ERROR)
            kind = f"http_{status}" if status else detail.split(":", 1)[0]
            if status and classify_status(status) == "permanent":
                raise _Failed(kind, f"{url}: {detail}", level=logging.ERROR)
            self._count(kind)
            if attempt >= self.cfg.max_retries:
                raise _Failed(kind, f"{url}: {detail} (after {attempt + 1} attempts; asked again at the next poll)")
            if wait is None:
                wait = backoff_seconds(attempt, self.cfg.retry_backoff_seconds, self.cfg.max_backoff_seconds, self._rng)
            log.debug("openai_usage source %s: %s; retrying in %.1f s", self.name, detail, wait)
            if self._stop.wait(min(wait, MAX_WAIT_SECONDS)):
                raise _Stopped
            attempt += 1

    def _request(self, url: str) -> tuple[int, bytes, float | None, str]:
        """(status, body, Retry-After seconds, detail without secrets); status 0 for no answer."""
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Accept": "application/json",
            "User-Agent": "finops-agent",
        }
        req = urllib.request.Request(url, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_seconds) as resp:  # noqa: S310 (configured URL)
                body = resp.read(MAX_BODY_BYTES + 1)
                if len(body) > MAX_BODY_BYTES:
                    return 0, b"", None, f"response_too_large: over {MAX_BODY_BYTES} bytes"
                return int(resp.status), body, None, f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            said = b""
            with contextlib.suppress(OSError):
                said = exc.read(4096)
            wait = _retry_after(exc.headers)
            detail = f"HTTP {exc.code}"
            if exc.code not in (401, 403):  # (the API's words on a refused key may quote part of it)
                detail += _api_message(said, self._key)
            return int(exc.code), b"", wait, detail
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            kind = "timeout" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else "connection"
            return 0, b"", None, f"{kind}: {self._scrub(str(reason))}"

    def _scrub(self, text: str) -> str:
        return _KEYLIKE.sub("sk-…", text.replace(self._key, "…")) if self._key else text

    # -- failures -----------------------------------------------------------------------------
    def _count(self, kind: str) -> None:
        if self.host is not None:
            self.host.telemetry.errors.labels(component=self.name, error_type=kind, stage="poll").inc()

    def ready(self) -> bool:
        """Not ready while the API refuses the admin key (nothing is read: ``/readyz`` says why)."""
        return self._failing not in ("unauthorized", "forbidden")

    def not_ready_reason(self) -> str | None:
        if self._failing in ("unauthorized", "forbidden"):
            return f"the OpenAI API refuses the admin key ({self._failing}); polling goes on"
        return None

    def _failed(self, exc: _Failed) -> None:
        """Counted; logged once per failure episode and kind; a bad response dead-lettered once per window."""
        if exc.kind in ("unauthorized", "forbidden") or exc.dead_letter or exc.level == logging.ERROR:
            self._count(exc.kind)  # (retried kinds were counted per attempt)
        reason = self._scrub(exc.reason)
        if self._failing != exc.kind:
            self._failing = exc.kind
            log.log(
                exc.level,
                "openai_usage source %s: %s; the position stays, polling goes on (further errors are counted in "
                "finops_agent_errors_total{component=%r,error_type=%r}, not logged)",
                self.name,
                reason,
                self.name,
                exc.kind,
            )
        start = self._next if self._next is not None else 0
        if exc.dead_letter and (start, reason) not in self._reported:
            self._reported.add((start, reason))
            raw = exc.raw[:65536] if exc.raw else reason.encode()
            self.bad(self.cfg.base_url, [BadRecord(raw, exc.kind, reason)])


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``Retry-After`` (or OpenAI's ``retry-after-ms``), None without either."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("Retry-After"))


def _api_message(body: bytes, key: str) -> str:
    """``": <the API's error message>"`` (short, keys scrubbed), or "" when the body holds none."""
    try:
        doc = orjson.loads(body)
        msg = doc.get("error", {}).get("message") if isinstance(doc, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        msg = body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else None
    if not msg or not isinstance(msg, str):
        return ""
    if key:
        msg = msg.replace(key, "…")
    return ": " + _KEYLIKE.sub("sk-…", msg)[:200]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


__all__ = ["OpenAIUsageSource", "OpenAIUsageSourceConfig"]
