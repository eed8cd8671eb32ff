"""Live scrapes of Prometheus-text endpoints (NVIDIA dcgm-exporter's ``/metrics``): source type ``scrape``.

Every ``interval_seconds`` (default 30) each target is fetched once (``GET``, ``Accept: text/plain``, an optional
bearer token, ``timeout_seconds`` for the whole request, at most ``max_body_bytes``), and the body's samples go to
the decoder (default ``dcgm``) as one ``lines`` batch. Targets are static ``urls`` and ``dns`` entries: a name (a
Kubernetes headless service) resolved every ``refresh_seconds`` to all its addresses, each a target. A DaemonSet
scrapes its own node with ``urls: ["http://${HOST_IP}:9400/metrics"]`` (``HOST_IP`` from the pod's
``status.hostIP``: the config loader substitutes ``${ENV}``).

**Time slots.** Scrapes run in rounds aligned to the wall clock: slot ``k`` covers
``[k * interval_seconds, (k + 1) * interval_seconds)`` and every sample without its own timestamp is stamped with
the slot's start (``DecodeContext.default_ts``), so all samples of one round share one timestamp and each
``DCGM_FI_DEV_GPU_UTIL`` sample stands for exactly one slot of GPU time: the decoder's ``scrape_interval_seconds``
must equal ``interval_seconds`` (it follows it when left out; set both differently and the config is refused).
A round that overruns its slot skips the slots it overran: GPU time is under-counted then, never over-counted.

**Duplicates never count twice.** At most one scrape per (target, slot): a slot is claimed before its request, so
a wall clock stepped back, a target listed twice (a URL and a DNS name for the same address, duplicate DNS
answers) or a restart within the same slot (each target's last slot is part of the checkpointed source
position) scrapes nothing again. A scrape still running when its round gives up (twice ``timeout_seconds``) is
dropped when it comes back. Samples with an explicit timestamp are counted once per (series, timestamp): a sample
whose timestamp is not newer than the same series' in the target's previous scrape (an exporter serving a cached
value) is discarded (``finops_agent_events_discarded_total{reason="duplicate_sample"}``); after a restart the
target's newest timestamp from the checkpoint stands in for the first scrape.

**Counters.** The ``dcgm`` decoder reads gauges only (utilisation, framebuffer, power); energy is power × slot
time. ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (a counter that resets with the driver) is not used, so a counter
reset cannot make negative or doubled energy.

**Event time.** The source is one event-time stream. Slot timestamps only grow (a slot is never scraped twice), so
per-target streams would hold nothing back that one stream does not; a target that is down simply adds nothing.
Before a round the stream is reported ``active`` and after it ``idle``: between rounds it never holds other
sources' windows back, and during one no other source closes the windows it is about to fill.

**Health.** Per target: ``finops_agent_scrape_target_up{source,target}`` (1/0),
``finops_agent_scrape_duration_seconds{source,target}`` (the last scrape) and
``finops_agent_scrape_errors_total{source,target,reason}`` (``timeout``, ``connection_refused``, ``connection``,
``dns``, ``tls``, ``http_<status>``, ``body_too_large``, ``invalid_response``). A target going down or coming back
is logged once per change, with its address (never credentials: URLs with a user or password are refused).

**Concurrency.** A thread pool of ``max_parallel`` workers (urllib, no environment proxies) scrapes a round's
targets at once, so a target that hangs until its timeout delays no other; the source's own thread claims slots,
hands batches on (blocking while the pipeline is behind) and keeps all state, so the workers share nothing.
Memory stays bounded: at most ``max_targets`` targets, one body per worker, the previous scrape's explicit
timestamps per target, and positions of targets gone for two slots are dropped.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import Counter, Gauge
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.decoders.base import DecodeContext
from agent.registry import ComponentConfig, components, config_union, register
from agent.sources.base import Batch, Source
from agent.telemetry import Telemetry, describe

log = logging.getLogger(__name__)

#: Decoder option that must equal the source's ``interval_seconds`` (each sample counts that much time).
INTERVAL_OPTION = "scrape_interval_seconds"
_CHUNK = 1 << 16


class DnsTargets(ComponentConfig):
    name: str = Field(min_length=1, description="resolved to all its addresses (e.g. a headless service's name)")
    port: int = Field(9400, ge=1, le=65535)
    path: str = Field("/metrics", pattern=r"^/")
    scheme: Literal["http", "https"] = "http"


class ScrapeConfig(ComponentConfig):
    type: Literal["scrape"]
    urls: list[str] = Field(default_factory=list, description="static targets, e.g. http://${HOST_IP}:9400/metrics")
    dns: list[DnsTargets] = Field(default_factory=list, description="names resolved to one target per address")
    interval_seconds: float = Field(30.0, gt=0, description="one scrape of each target per interval (a slot)")
    timeout_seconds: float = Field(10.0, gt=0, description="for a whole scrape (connect, headers, body)")
    refresh_seconds: float = Field(60.0, gt=0, description="how often the dns names are resolved again")
    max_body_bytes: int = Field(16 << 20, ge=1, description="bytes; a larger answer fails (body_too_large)")
    max_targets: int = Field(1000, ge=1, description="targets beyond this (sorted by address) are not scraped")
    max_parallel: int = Field(16, ge=1, le=256, description="scrapes at once")
    bearer_token: SecretStr | None = None
    bearer_token_file: str | None = Field(None, description="read at start and again before each round (rotation)")
    ca_file: str | None = Field(None, description="CA bundle for https targets (default: the system's)")
    decoder: config_union("decoder")  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _default_decoder(cls, raw: Any) -> Any:
        """``decoder`` defaults to ``dcgm``; a decoder with ``scrape_interval_seconds`` left out takes the source's
        ``interval_seconds`` (and the other way round), so that each sample counts the time it stands for."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        dec = raw.setdefault("decoder", {"type": "dcgm"})
        if isinstance(dec, dict):
            entry = components("decoder").get(str(dec.get("type")))
            if entry is not None and INTERVAL_OPTION in entry[0].model_fields:
                if INTERVAL_OPTION not in dec:
                    interval = raw.get("interval_seconds", cls.model_fields["interval_seconds"].default)
                    raw["decoder"] = {**dec, INTERVAL_OPTION: interval}
                elif "interval_seconds" not in raw:
                    raw["interval_seconds"] = dec[INTERVAL_OPTION]
        return raw

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL with a host")
            if parts.username or parts.password:
                raise ValueError("a URL with a user or password would be logged: use bearer_token_file")
        return urls

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout(cls, timeout: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval_seconds")
        if interval is not None and timeout >= interval:
            raise ValueError(f"must be less than interval_seconds ({interval:g}): one scrape per target per interval")
        return timeout

    @field_validator("decoder")
    @classmethod
    def _decoder_interval(cls, dec: Any, info: ValidationInfo) -> Any:
        interval = info.data.get("interval_seconds")
        own = getattr(dec, INTERVAL_OPTION, None)
        if interval is not None and own is not None and own != interval:
            raise ValueError(
                f"{INTERVAL_OPTION} ({own:g}) must equal the source's interval_seconds ({interval:g}): each sample "
                f"counts {INTERVAL_OPTION} of GPU time (leave it out: it follows interval_seconds)"
            )
        return dec

    @model_validator(mode="after")
    def _targets_and_token(self) -> ScrapeConfig:
        if not self.urls and not self.dns:
            raise ValueError("set urls, dns or both: there is nothing to scrape")
        if self.bearer_token is not None and self.bearer_token_file:
            raise ValueError("set bearer_token or bearer_token_file, not both")
        return self


def resolve_addresses(name: str, port: int) -> list[str]:
    """Every address ``name`` resolves to (IPv4 and IPv6), each once, sorted. The one seam tests replace."""
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(slots=True)
class _Failure:
    reason: str  # the metric label
    detail: str  # for the log line (no credentials: URLs carry none, bodies are not quoted)


@dataclass(slots=True)
class _Target:
    label: str  # host:port/path (the metric label and the position key)
    url: str
    origin: str  # "urls" or the dns name that produced it
    last_slot: float = -math.inf  # the newest slot claimed (at most one scrape per slot)
    stamps: dict[bytes, int] = field(default_factory=dict)  # series → explicit timestamp in the previous scrape
    floor_ms: int | None = None  # restored: the newest explicit timestamp counted before the restart
    newest_ms: int | None = None  # the newest explicit timestamp counted
    up: bool | None = None  # None until its first scrape
    down_since: float = 0.0
    reasons: set[str] = field(default_factory=set)  # error reasons counted (to remove its series when it goes)
    busy: bool = False  # a scrape given up on by its round is still running

    def finished(self, _future: Any) -> None:
        self.busy = False


class _Metrics:
    """The scrape metrics on one agent's registry (several scrape sources share them)."""

    _by_telemetry: weakref.WeakKeyDictionary[Telemetry, _Metrics] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, telemetry: Telemetry):
        r = telemetry.registry
        self.discarded = telemetry.discarded
        self.up = Gauge(
            "finops_agent_scrape_target_up",
            "1 when the last scrape of a target succeeded",
            ["source", "target"],
            registry=r,
        )
        self.duration = Gauge(
            "finops_agent_scrape_duration_seconds",
            "How long the last scrape of a target took",
            ["source", "target"],
            registry=r,
        )
        self.errors = Counter(
            "finops_agent_scrape_errors",
            "Failed scrapes by reason (timeout, connection_refused, connection, dns, tls, http_<status>, "
            "body_too_large, invalid_response)",
            ["source", "target", "reason"],
            registry=r,
        )

    @classmethod
    def of(cls, telemetry: Telemetry) -> _Metrics:
        with cls._lock:
            m = cls._by_telemetry.get(telemetry)
            if m is None:
                m = cls._by_telemetry[telemetry] = cls(telemetry)
            return m


def split_stamp(line: bytes) -> tuple[bytes, int] | None:
    """``(series, timestamp in ms)`` of a text-format sample with an explicit timestamp, else None.

    >>> split_stamp(b'up{job="a b"} 1 1700000000000'), split_stamp(b"up 1"), split_stamp(b"up 1 17")
    ((b'up{job="a b"}', 1700000000000), None, (b'up', 17))
    """
    end = line.rfind(b"}")
    if end >= 0:
        key, rest = line[: end + 1], line[end + 1 :].split()
        if len(rest) != 2:
            return None
        stamp = rest[1]
    else:
        parts = line.split()
        if len(parts) != 3:
            return None
        key, stamp = parts[0], parts[2]
    if not stamp.lstrip(b"-").isdigit() or len(stamp) > 19:
        return None  # not a timestamp: the decoder says what is wrong
    return key, int(stamp)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"http_{exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, http.client.HTTPException | ValueError):
        return "invalid_response"
    return "connection"


@register("source", "scrape", ScrapeConfig)
class ScrapeSource(Source):
    """See the module docstring. ``resolver`` and ``clock`` are for tests (default: DNS and the wall clock)."""

    def __init__(
        self,
        cfg: ScrapeConfig,
        *,
        resolver: Callable[[str, int], list[str]] | None = None,
        clock: Callable[[], float] = time.time,
        **kw: Any,
    ):
        super().__init__(cfg, **kw)
        self.interval = float(cfg.interval_seconds)
        self.resolve = resolver or resolve_addresses
        self.clock = clock
        self.telemetry = self.host.telemetry if self.host is not None else Telemetry()
        self.metrics = _Metrics.of(self.telemetry)
        self.targets: dict[str, _Target] = {}
        self._resolved: dict[str, list[str]] = {}  # dns name → its addresses (kept while it fails to resolve)
        self._dns_failing: dict[str, str] = {}  # dns name → reason (logged once per change)
        self._next_refresh = -math.inf
        self._token: str | None = None
        self._token_problem: str | None = None  # why the token file cannot be read again (logged once)
        self._pool: ThreadPoolExecutor | None = None
        self._idle = False  # reported idle to the pipeline (before the first round: not yet)
        self._overran = False
        self._failed = False
        self._too_many = False
        handlers: list[Any] = [urllib.request.ProxyHandler({})]  # in-cluster targets: no environment proxies
        if cfg.ca_file:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cfg.ca_file)))
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def live(self) -> bool:
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._token = self._read_token()  # an unreadable file stops the start, with its path
        self._pool = ThreadPoolExecutor(self.cfg.max_parallel, thread_name_prefix=f"scrape-{self.name}")
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self._pool is not None:  # scrapes still running end within their timeout; none is waited for
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _read_token(self) -> str | None:
        from agent.config import read_secret

        where = f"sources.{self.name}.bearer_token_file"
        return read_secret(self.cfg.bearer_token, self.cfg.bearer_token_file, where)

    def checkpoint_positions(self) -> dict[str, Any]:
        """Each target's last scraped slot (and newest explicit timestamp); targets gone for two slots dropped."""
        now = math.floor(self.clock() / self.interval)
        keep = set(self.targets)
        self.positions = {k: v for k, v in self.positions.items() if k in keep or v.get("slot", -math.inf) >= now - 2}
        return dict(self.positions)

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        last_round = -math.inf
        while not self.stopping:
            now = self.clock()
            slot = math.floor(now / self.interval)
            if slot <= last_round:  # this slot's round is done (or the clock stepped back): wait for the next
                self._stop.wait(min(self.interval, max(0.001, (last_round + 1) * self.interval - now)))
                continue
            try:
                if now >= self._next_refresh:
                    self._refresh(now)
                self._round(slot)
            except Exception:  # a bug must not end a live source: logged once, the next slot is tried
                if self.stopping:
                    return  # (the pool shut down under a round the stop did not wait for)
                if not self._failed:
                    log.exception("scrape source %s: a round failed (further failures are not logged)", self.name)
                self._failed = True
            last_round = slot
            ended = math.floor(self.clock() / self.interval)
            if ended > slot + 1 and not self._overran:
                self._overran = True
                log.warning(
                    "scrape source %s: a round took over %g s (interval_seconds): the slots it overran are not "
                    "scraped (GPU time under-counted); raise interval_seconds or max_parallel",
                    self.name,
                    self.interval,
                )

    def _round(self, slot: int) -> None:
        """Scrape every target once for ``slot``, in parallel; hand each body on as it arrives."""
        assert self._pool is not None
        due = [t for t in self.targets.values() if slot > t.last_slot and not t.busy]
        if not due:
            if not self._idle:  # nothing to scrape (no target resolved yet): hold no other source back
                self.emit(Batch(self.name, "idle", None, None))
                self._idle = True
            return
        if self.cfg.bearer_token_file:
            try:
                self._token = self._read_token()
                self._token_problem = None
            except Exception as exc:  # keep the last token (logged once; the start checked the file)
                if self._token_problem is None:
                    log.warning("scrape source %s: %s (the last token read is used)", self.name, exc)
                self._token_problem = str(exc)
        if self._idle:
            self.emit(Batch(self.name, "active", None, None))
            self._idle = False
        ts = slot * self.interval
        started = time.monotonic()
        give_up = started + 2 * self.cfg.timeout_seconds
        futures: dict[Future[bytes | _Failure], _Target] = {}
        for t in due:
            t.last_slot = slot  # claimed: at most one scrape per (target, slot), whatever comes back
            try:
                fut = self._pool.submit(self._fetch, t.url, self._token, started + self.cfg.timeout_seconds)
            except RuntimeError:  # stopped meanwhile (the pool is shut down)
                return
            futures[fut] = t
        pending: set[Future[bytes | _Failure]] = set(futures)
        while pending and not self.stopping:
            done, pending = wait(
                pending, timeout=min(0.1, max(0.0, give_up - time.monotonic())), return_when=FIRST_COMPLETED
            )
            for fut in done:
                self._handle(futures[fut], slot, ts, fut.result(), time.monotonic() - started)
            if time.monotonic() >= give_up:
                for fut in pending:  # a scrape past its deadline (a server trickling bytes): dropped when it ends
                    t = futures[fut]
                    t.busy = True
                    fut.add_done_callback(t.finished)
                    self._handle(t, slot, ts, _Failure("timeout", "no answer in time"), time.monotonic() - started)
                break
        if not self.stopping:
            self.emit(Batch(self.name, "idle", None, None))
            self._idle = True

    def _fetch(self, url: str, token: str | None, deadline: float) -> bytes | _Failure:
        """One GET (a worker thread): the body, or why there is none. Shares nothing with the source's thread."""
        req = urllib.request.Request(url, headers={"Accept": "text/plain", "User-Agent": "finops-agent"})
        if token:
            req.add_unredirected_header("Authorization", f"Bearer {token}")  # never sent on to a redirect
        limit = self.cfg.max_body_bytes
        try:
            with self._opener.open(req, timeout=max(0.001, deadline - time.monotonic())) as resp:
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > limit:
                    return _Failure("body_too_large", f"Content-Length {length} is over max_body_bytes={limit}")
                chunks: list[bytes] = []
                size = 0
                while chunk := resp.read1(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        return _Failure("body_too_large", f"the body is over max_body_bytes={limit}")
                    if time.monotonic() > deadline:
                        return _Failure("timeout", f"the body took over {self.cfg.timeout_seconds:g} s")
                    chunks.append(chunk)
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            exc.close()
            return _Failure(_reason(exc), f"HTTP {exc.code}")
        except Exception as exc:
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return _Failure(_reason(exc), describe(cause) if isinstance(cause, BaseException) else str(cause))

    def _handle(self, t: _Target, slot: int, ts: float, result: bytes | _Failure, took: float) -> None:
        """A scrape's outcome (the source's thread): health metrics, a log line on a change, the batch."""
        if self.targets.get(t.label) is not t:
            return  # removed from the targets meanwhile
        m = self.metrics
        m.duration.labels(source=self.name, target=t.label).set(took)
        if isinstance(result, _Failure):
            m.up.labels(source=self.name, target=t.label).set(0)
            m.errors.labels(source=self.name, target=t.label, reason=result.reason).inc()
            t.reasons.add(result.reason)
            if t.up is not False:
                t.down_since = time.monotonic()
                log.warning(
                    "scrape source %s: target %s is down: %s (%s); scraped again every %g s, logged again when back",
                    self.name,
                    t.label,
                    result.reason,
                    result.detail,
                    self.interval,
                    extra={"component": self.name, "target": t.label, "reason": result.reason},
                )
            t.up = False
            return
        m.up.labels(source=self.name, target=t.label).set(1)
        if t.up is False:
            log.info(
                "scrape source %s: target %s is back after %.0f s",
                self.name,
                t.label,
                time.monotonic() - t.down_since,
                extra={"component": self.name, "target": t.label},
            )
        t.up = True
        lines = [ln for ln in result.split(b"\n") if ln.strip() and not ln.startswith(b"#")]
        lines = self._fresh(t, lines)
        ctx = DecodeContext(self.name, t.label, default_ts=ts, **self.ctx_defaults)
        position = (t.label, {"slot": slot, "ts": t.newest_ms})
        self.emit(Batch(self.name, "lines", lines, ctx, position, len(lines), stream=self.name))

    def _fresh(self, t: _Target, lines: list[bytes]) -> list[bytes]:
        """The lines without samples already counted: a series' explicit timestamp not newer than in the previous
        scrape (or, first after a restart, than the newest one counted before it)."""
        prev, floor = t.stamps, t.floor_ms
        seen: dict[bytes, int] = {}
        kept: list[bytes] = []
        for ln in lines:
            stamp = split_stamp(ln)
            if stamp is None:
                kept.append(ln)
                continue
            key, ms = stamp
            last = prev.get(key, floor)
            if last is not None and ms <= last:
                seen[key] = last
                continue
            seen[key] = ms
            kept.append(ln)
            if t.newest_ms is None or ms > t.newest_ms:
                t.newest_ms = ms
        t.stamps, t.floor_ms = seen, None
        dropped = len(lines) - len(kept)
        if dropped:
            self.metrics.discarded.labels(component=self.name, reason="duplicate_sample").inc(dropped)
        return kept

    # -- targets -------------------------------------------------------------------------------
    def _refresh(self, now: float) -> None:
        """Resolve the dns names (in the pool, each within timeout_seconds) and rebuild the target list."""
        assert self._pool is not None
        self._next_refresh = now + self.cfg.refresh_seconds
        jobs = {d.name: self._pool.submit(self.resolve, d.name, d.port) for d in self.cfg.dns}
        deadline = time.monotonic() + self.cfg.timeout_seconds  # for all names together (resolved at once)
        for name, fut in jobs.items():
            try:
                addrs = fut.result(timeout=max(0.0, deadline - time.monotonic()))
                if not addrs:
                    raise socket.gaierror(f"{name} has no address")
            except Exception as exc:
                why = "dns timeout" if isinstance(exc, TimeoutError) else describe(exc)
                self.metrics.errors.labels(source=self.name, target=name, reason="dns").inc()
                if self._dns_failing.get(name) is None:
                    log.warning(
                        "scrape source %s: cannot resolve %s (%s); its last addresses are kept", self.name, name, why
                    )
                self._dns_failing[name] = why
                continue
            if self._dns_failing.pop(name, None) is not None:
                log.info("scrape source %s: %s resolves again (%d addresses)", self.name, name, len(addrs))
            self._resolved[name] = addrs
        wanted: dict[str, tuple[str, str]] = {}
        for url in self.cfg.urls:
            wanted.setdefault(_label(url), (url, "urls"))
        for d in self.cfg.dns:
            for addr in self._resolved.get(d.name, []):
                host = f"[{addr}]" if ":" in addr else addr
                url = f"{d.scheme}://{host}:{d.port}{d.path}"
                wanted.setdefault(_label(url), (url, d.name))
        if len(wanted) > self.cfg.max_targets:
            if not self._too_many:
                log.warning(
                    "scrape source %s: %d targets, over max_targets=%d: the first %d (by address) are scraped",
                    self.name,
                    len(wanted),
                    self.cfg.max_targets,
                    self.cfg.max_targets,
                )
            self._too_many = True
            wanted = dict(sorted(wanted.items())[: self.cfg.max_targets])
        for label in [k for k in self.targets if k not in wanted]:
            self._drop(self.targets.pop(label))
        for label, (url, origin) in wanted.items():
            if label not in self.targets:
                saved = self.positions.get(label) or {}
                self.targets[label] = _Target(
                    label, url, origin, last_slot=saved.get("slot", -math.inf), floor_ms=saved.get("ts")
                )

    def _drop(self, t: _Target) -> None:
        """A target no longer named: its series leave /metrics (bounded label sets as addresses churn)."""
        for metric in (self.metrics.up, self.metrics.duration):
            with contextlib.suppress(KeyError):
                metric.remove(self.name, t.label)
        for reason in t.reasons:
            with contextlib.suppress(KeyError):
                self.metrics.errors.remove(self.name, t.label, reason)
        log.info("scrape source %s: %s is no longer a target (from %s)", self.name, t.label, t.origin)


def _label(url: str) -> str:
    """``host:port/path`` of a URL (the target's name in metrics and logs; a query string is left out)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{host}:{port}{parts.path or '/'}"
