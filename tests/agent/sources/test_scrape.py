"""The ``scrape`` source against real HTTP servers on loopback serving dcgm-exporter's text (the shared scrape).

Targets from a DNS-style name (127.0.0.1 and 127.0.0.2 on one port: Linux routes all of 127/8 to loopback), a
target that goes down and comes back, a slow one, oversized bodies, duplicate scrapes, the health metrics on the
agent's own /metrics, and an agent that turns scrapes into GPU-hour points.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.backtest import PointCollector
from agent.config import ConfigError, load_config_text
from agent.decoders.dcgm import DcgmDecoder
from agent.pipeline import Agent
from agent.sources import scrape
from agent.sources.base import Batch
from agent.sources.scrape import ScrapeConfig, ScrapeSource
from agent.telemetry import Telemetry
from tests.conftest import free_port, http_get, shared_data, wait_until

HOST = "i-030791dc5a37cd257"  # the Hostname label in the shared scrape


def scrape_text(node: str) -> bytes:
    return (shared_data() / "gpu" / "dcgm-exporter-scrape-l4.prom").read_bytes().replace(HOST.encode(), node.encode())


class Exporter:
    """A dcgm-exporter stand-in: GET /metrics on ``address:port``; it can go down, answer slowly, or say more."""

    def __init__(self, node: str, address: str = "127.0.0.1", port: int = 0):
        self.address, self.port = address, port
        self.body = scrape_text(node)
        self.delay = 0.0
        self.trickle = 0.0  # seconds between the bytes of the answer's head (each read is quick, the whole is not)
        self.content_length = True  # False: an HTTP/1.0 body that ends when the connection closes
        self.requests: list[Any] = []  # the headers of each request
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(self.headers)
                if owner.delay:
                    time.sleep(owner.delay)
                body = owner.body
                if owner.trickle:
                    head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                    try:
                        for i in range(len(head)):
                            self.wfile.write(head[i : i + 1])
                            time.sleep(owner.trickle)
                        self.wfile.write(body)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    if owner.content_length:
                        self.send_header("Content-Length", str(len(body)))
                    else:
                        self.close_connection = True
                    self.end_headers()
                    for i in range(0, len(body), 1024):
                        self.wfile.write(body[i : i + 1024])
                except OSError:
                    pass  # the scraper gave up

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self.server = ThreadingHTTPServer((self.address, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    @property
    def label(self) -> str:
        return f"{self.address}:{self.port}/metrics"


@pytest.fixture
def exporters() -> Iterator[Callable[..., Exporter]]:
    made: list[Exporter] = []

    def make(node: str, address: str = "127.0.0.1", port: int = 0) -> Exporter:
        made.append(Exporter(node, address, port))
        return made[-1]

    yield make
    for e in made:
        e.stop()


class Run:
    """A scrape source without an agent: its batches, positions committed as the pipeline would."""

    def __init__(self, cfg: dict[str, Any], **kw: Any):
        self.telemetry = Telemetry()
        self.cfg = ScrapeConfig.model_validate({"type": "scrape", **cfg})
        self.batches: list[Batch] = []
        self.source = ScrapeSource(
            self.cfg,
            name="gpu",
            decoder=DcgmDecoder(self.cfg.decoder),
            emit=self._emit,
            ctx_defaults={},
            host=SimpleNamespace(telemetry=self.telemetry),
            **kw,
        )

    def _emit(self, batch: Batch) -> None:
        self.batches.append(batch)
        if batch.position is not None:
            self.source.commit(*batch.position)

    def lines(self, target: str | None = None) -> list[Batch]:
        return [b for b in list(self.batches) if b.kind == "lines" and (target is None or b.ctx.location == target)]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.telemetry.registry.get_sample_value(name, {"source": "gpu", **labels})

    def __enter__(self) -> Run:
        self.source.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.source.stop()


def test_config_ties_the_decoders_interval_to_the_sources() -> None:
    cfg = ScrapeConfig.model_validate({"type": "scrape", "urls": ["http://10.0.0.5:9400/metrics"]})
    assert cfg.decoder.type == "dcgm" and cfg.decoder.scrape_interval_seconds == cfg.interval_seconds == 30
    cfg = ScrapeConfig.model_validate({"type": "scrape", "urls": ["http://a/m"], "interval_seconds": 15})
    assert cfg.decoder.scrape_interval_seconds == 15  # follows the source
    cfg = ScrapeConfig.model_validate({"type": "scrape", "urls": ["http://a/m"], "decoder": {"type": "dcgm",
                                       "scrape_interval_seconds": 10}})  # fmt: skip
    assert cfg.interval_seconds == 10  # or the other way round
    text = """
sources:
  gpu:
    type: scrape
    urls: [http://a:9400/metrics, "http://user:pw@b:9400/metrics"]
    interval_seconds: 15
    decoder: {type: dcgm, scrape_interval_seconds: 30}
  slow: {type: scrape, dns: [{name: x}], interval_seconds: 5, timeout_seconds: 5}
  none: {type: scrape}
detectors: {d: {type: threshold, signal: gpu_hours, upper: 1}}
sinks: {c: {type: console}}
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(text)
    errors = exc.value.errors
    assert any(e.startswith("sources.gpu.decoder: scrape_interval_seconds (30) must equal") for e in errors), errors
    assert any(e.startswith("sources.gpu.urls: a URL with a user or password") for e in errors), errors
    assert "sources.slow.timeout_seconds: must be less than interval_seconds (5)" in " ".join(errors), errors
    assert any(e.startswith("sources.none: set urls, dns or both") for e in errors), errors
    assert not any("pw" in e for e in errors)


def test_two_targets_of_one_dns_name_share_each_rounds_timestamp(
    exporters: Callable[..., Exporter], tmp_path: Path
) -> None:
    a = exporters("node-a", "127.0.0.1")
    b = exporters("node-b", "127.0.0.2", a.port)  # same port, another loopback address
    (tmp_path / "token").write_text("s3cret-token\n")
    asked: list[tuple[str, int]] = []

    def resolver(name: str, port: int) -> list[str]:
        asked.append((name, port))
        return ["127.0.0.2", "127.0.0.1"]

    cfg = {"dns": [{"name": "dcgm.gpu.svc", "port": a.port}], "interval_seconds": 0.2, "timeout_seconds": 0.15,
           "bearer_token_file": str(tmp_path / "token")}  # fmt: skip
    with Run(cfg, resolver=resolver) as run:
        assert wait_until(lambda: len(run.lines(a.label)) >= 3 and len(run.lines(b.label)) >= 3, 10)
    assert asked[0] == ("dcgm.gpu.svc", a.port)
    by_ts: dict[float, list[str]] = {}
    for batch in run.lines():
        by_ts.setdefault(batch.ctx.default_ts, []).append(batch.ctx.location)
        assert batch.ctx.default_ts == round(batch.ctx.default_ts / 0.2) * 0.2  # a slot's start
        assert batch.position == (batch.ctx.location, {"slot": round(batch.ctx.default_ts / 0.2), "ts": None})
    rounds = sorted(by_ts)
    assert all(sorted(by_ts[ts]) == sorted([a.label, b.label]) for ts in rounds[:-1]), by_ts  # one scrape each
    # The stream holds event time back during a round, not between rounds.
    kinds = [bt.kind for bt in run.batches]
    assert kinds[:7] == ["lines", "lines", "idle", "active", "lines", "lines", "idle"], kinds
    # Each body goes to the decoder whole (samples only): one GPU per node, one slot of GPU time per sample.
    dec = DcgmDecoder(run.cfg.decoder)
    obs, bad = dec.decode_lines(run.lines(b.label)[0].payload, run.lines(b.label)[0].ctx)
    assert not bad and len(run.lines(b.label)[0].payload) == 23
    util = [o for o in obs if o[1].signals[0] == "gpu_hours"]
    assert len(util) == 1 and dict(util[0][1].dims)["node"] == "node-b" and util[0][2][0] == 0.2 / 3600
    for exp in (a, b):
        headers = exp.requests[0]
        assert headers["Authorization"] == "Bearer s3cret-token" and headers["Accept"] == "text/plain"
    assert run.metric("finops_agent_scrape_target_up", target=a.label) == 1
    assert run.metric("finops_agent_scrape_target_up", target=b.label) == 1


def test_a_target_down_and_back_is_logged_once_each_way_and_spares_the_other(
    exporters: Callable[..., Exporter], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = exporters("node-a"), exporters("node-b")
    cfg = {"urls": [a.url, b.url], "interval_seconds": 0.1, "timeout_seconds": 0.08, "bearer_token": "hush-hush"}
    caplog.set_level(logging.INFO, logger="agent.sources.scrape")
    with Run(cfg) as run:
        up = lambda e: run.metric("finops_agent_scrape_target_up", target=e.label)  # noqa: E731
        errors = lambda: run.metric(  # noqa: E731
            "finops_agent_scrape_errors_total", target=b.label, reason="connection_refused"
        )
        assert wait_until(lambda: up(a) == 1 and up(b) == 1, 10)
        b.stop()
        assert wait_until(lambda: up(b) == 0 and (errors() or 0) >= 3, 10)
        served = len(a.requests)
        assert wait_until(lambda: len(a.requests) >= served + 2, 10) and up(a) == 1  # unaffected
        b.start()  # back on the same port
        assert wait_until(lambda: up(b) == 1, 10)
        seen = len(run.lines(b.label))
        assert wait_until(lambda: len(run.lines(b.label)) > seen, 10)
    assert run.metric("finops_agent_scrape_errors_total", target=a.label, reason="connection_refused") is None
    said = [r.getMessage() for r in caplog.records if b.label in r.getMessage()]
    assert len([m for m in said if "is down" in m]) == 1, said
    assert len([m for m in said if "is back" in m]) == 1, said
    assert not any("hush-hush" in r.getMessage() for r in caplog.records)


def test_a_slow_target_times_out_without_holding_the_others_or_the_stop(exporters: Callable[..., Exporter]) -> None:
    fast, slow = exporters("node-a"), exporters("node-b")
    slow.delay = 3.0
    cfg = {"urls": [fast.url, slow.url], "interval_seconds": 0.5, "timeout_seconds": 0.2}
    with Run(cfg) as run:
        assert wait_until(lambda: (run.metric("finops_agent_scrape_errors_total", target=slow.label,
                                              reason="timeout") or 0) >= 2, 10)  # fmt: skip
        assert run.metric("finops_agent_scrape_target_up", target=slow.label) == 0
        assert len(run.lines(fast.label)) >= 2 and not run.lines(slow.label)
        took = run.metric("finops_agent_scrape_duration_seconds", target=slow.label)
        assert took is not None and 0.15 < took < 0.45  # its timeout (with slack), not the server's 3 s
        assert wait_until(lambda: len(slow.requests) >= 3, 10)  # a round is under way, the slow answer pending
        t0 = time.monotonic()
        run.source.stop()
        assert time.monotonic() - t0 < 1.0
    assert not run.source._thread.is_alive()  # type: ignore[union-attr]


def test_a_scrape_past_its_round_is_given_up_and_never_counted(exporters: Callable[..., Exporter]) -> None:
    fast, dribbling = exporters("node-a"), exporters("node-b")
    dribbling.trickle = 0.03  # its head takes about 1.2 s, a byte at a time: every read is well within the timeout
    cfg = {"urls": [fast.url, dribbling.url], "interval_seconds": 0.3, "timeout_seconds": 0.1}
    with Run(cfg) as run:
        assert wait_until(lambda: len(run.lines(fast.label)) >= 6, 4)  # the rounds go on meanwhile (0.3 s each)
        assert len(dribbling.requests) <= 2  # never a second scrape while one is still running
        assert run.metric("finops_agent_scrape_errors_total", target=dribbling.label, reason="timeout")
        dribbling.trickle = 0.0
        assert wait_until(lambda: len(run.lines(dribbling.label)) >= 1, 10)
    stamps = [b.ctx.default_ts for b in run.lines(dribbling.label)]
    assert len(stamps) == len(set(stamps))  # what came back late was dropped, not counted in a later slot


def test_an_oversized_body_is_refused_whole(exporters: Callable[..., Exporter]) -> None:
    said, unsaid, small = exporters("a"), exporters("b"), exporters("c")
    unsaid.content_length = False  # the size is only known by reading
    small.body = b"\n".join(ln for ln in scrape_text("c").split(b"\n") if ln.startswith(b"DCGM_FI_DEV_GPU_UTIL"))
    cfg = {"urls": [said.url, unsaid.url, small.url], "interval_seconds": 0.2, "timeout_seconds": 0.15,
           "max_body_bytes": 4096}  # fmt: skip
    assert len(said.body) > 4096 >= len(small.body)
    with Run(cfg) as run:
        too_large = lambda e: run.metric(  # noqa: E731
            "finops_agent_scrape_errors_total", target=e.label, reason="body_too_large"
        )
        assert wait_until(lambda: (too_large(said) or 0) >= 2 and (too_large(unsaid) or 0) >= 2, 10)
    assert not run.lines(said.label) and not run.lines(unsaid.label)
    assert run.lines(small.label) and run.lines(small.label)[0].payload == [small.body]


def test_a_clock_stepped_back_and_a_target_named_twice_never_scrape_a_slot_twice(
    exporters: Callable[..., Exporter],
) -> None:
    e = exporters("node-a")
    offset = [0.0]
    cfg = {"urls": [e.url, e.url], "dns": [{"name": "localhost-ish", "port": e.port}], "interval_seconds": 0.2,
           "timeout_seconds": 0.15}  # fmt: skip
    with Run(cfg, resolver=lambda n, p: ["127.0.0.1"], clock=lambda: time.time() + offset[0]) as run:
        assert wait_until(lambda: len(run.lines()) >= 3, 10)
        before = max(b.ctx.default_ts for b in run.lines())
        offset[0] = -1.0  # NTP steps the clock back 5 slots
        time.sleep(0.6)
        assert len(run.lines()) == len(e.requests)  # nothing scraped while the slots repeat
        assert all(b.ctx.default_ts <= before for b in run.lines())
        assert wait_until(lambda: max(b.ctx.default_ts for b in run.lines()) > before, 10)  # then on again
    stamps = [b.ctx.default_ts for b in run.lines()]
    assert len(stamps) == len(set(stamps)) == len(e.requests)  # one target, one scrape per slot
    assert list(run.source.targets) == [e.label]


def test_at_most_one_scrape_per_target_and_slot_whatever_asks(exporters: Callable[..., Exporter]) -> None:
    """The (target, slot) ledger itself: a round asked for twice, or for an older slot, scrapes nothing."""
    e = exporters("node-a")
    run = Run({"urls": [e.url], "interval_seconds": 10, "timeout_seconds": 1})
    src = run.source
    src._pool = ThreadPoolExecutor(2)
    try:
        src._refresh(time.time())
        src._round(7)
        src._round(7)  # the same slot again (a scheduler that fires twice)
        src._round(6)  # an older one (a late or stepped-back clock)
        assert len(e.requests) == 1 and [b.ctx.default_ts for b in run.lines()] == [70.0]
        src._round(8)
        assert len(e.requests) == 2 and [b.ctx.default_ts for b in run.lines()] == [70.0, 80.0]
    finally:
        src._pool.shutdown()


def test_a_restart_in_the_same_slot_scrapes_nothing_again(exporters: Callable[..., Exporter]) -> None:
    e = exporters("node-a")
    cfg = {"urls": [e.url], "interval_seconds": 3600, "timeout_seconds": 5}
    now = 1_800_000_000.0 + 100  # inside one slot for all three runs

    with Run(cfg, clock=lambda: now) as first:
        assert wait_until(lambda: len(first.lines()) == 1, 10)
    positions = first.source.checkpoint_positions()
    assert positions == {e.label: {"slot": 500_000, "ts": None}}
    again = Run(cfg, clock=lambda: now)
    again.source.restore(positions)
    with again:
        time.sleep(0.4)
    assert not again.lines() and len(e.requests) == 1
    fresh = Run(cfg, clock=lambda: now)  # without the checkpoint it would have scraped (and counted) again
    with fresh:
        assert wait_until(lambda: len(fresh.lines()) == 1, 10)
    assert len(e.requests) == 2


def test_samples_with_an_unchanged_explicit_timestamp_count_once(exporters: Callable[..., Exporter]) -> None:
    e = exporters("node-a")
    util = next(ln for ln in e.body.split(b"\n") if ln.startswith(b"DCGM_FI_DEV_GPU_UTIL"))
    t0 = int(time.time() * 1000)
    e.body = util + b" %d\n" % t0 + util.replace(b"} 0", b"} 7") + b"\n"  # the second: no timestamp
    cfg = {"urls": [e.url], "interval_seconds": 0.1, "timeout_seconds": 0.08}
    with Run(cfg) as run:
        assert wait_until(lambda: len(run.lines()) >= 3, 10)
        e.body = util + b" %d\n" % (t0 + 1000)  # the exporter's next collection
        n = len(e.requests)
        assert wait_until(lambda: len(e.requests) >= n + 2, 10)
    with_stamp = [ln for b in run.lines() for ln in b.payload if ln.endswith(b"%d" % t0)]
    assert len(with_stamp) == 1  # served in every scrape, counted in one
    assert sum(ln.endswith(b"} 7") for b in run.lines() for ln in b.payload) >= 3  # no timestamp: every scrape
    assert len([ln for b in run.lines() for ln in b.payload if ln.endswith(b"%d" % (t0 + 1000))]) == 1
    dropped = run.telemetry.registry.get_sample_value(
        "finops_agent_events_discarded_total", {"component": "gpu", "reason": "duplicate_sample"}
    )
    assert dropped is not None and dropped >= 3
    positions = run.source.checkpoint_positions()
    assert positions[e.label]["ts"] == t0 + 1000
    # Restarted, the checkpoint's newest timestamp stands in for the previous scrape.
    again = Run(cfg)
    again.source.restore(positions)
    with again:
        assert wait_until(lambda: len(again.lines()) >= 1, 10)
    assert again.lines()[0].payload == []


def test_targets_gone_from_dns_leave_metrics_and_positions(exporters: Callable[..., Exporter]) -> None:
    a = exporters("node-a", "127.0.0.1")
    b = exporters("node-b", "127.0.0.2", a.port)
    answer = [["127.0.0.1", "127.0.0.2"]]
    cfg = {"dns": [{"name": "svc", "port": a.port}], "interval_seconds": 0.1, "timeout_seconds": 0.08,
           "refresh_seconds": 0.1}  # fmt: skip
    with Run(cfg, resolver=lambda n, p: answer[0]) as run:
        up = lambda e: run.metric("finops_agent_scrape_target_up", target=e.label)  # noqa: E731
        assert wait_until(lambda: up(a) == 1 and up(b) == 1, 10)
        answer[0] = ["127.0.0.1"]  # a pod went away
        assert wait_until(lambda: up(b) is None, 10)
        assert list(run.source.targets) == [a.label]
        answer[0] = []  # the name stops resolving: its last addresses are kept
        n = len(a.requests)
        assert wait_until(lambda: len(a.requests) >= n + 3, 10)
        assert (run.metric("finops_agent_scrape_errors_total", target="svc", reason="dns") or 0) >= 1
    run.source.clock = lambda: time.time() + 1.0  # ten slots later: b's position is dropped, a's kept
    assert list(run.source.checkpoint_positions()) == [a.label]


def test_an_agent_turns_scrapes_into_gpu_hour_points_and_shows_target_health(
    exporters: Callable[..., Exporter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = exporters("node-a", "127.0.0.1")
    b = exporters("node-b", "127.0.0.2", a.port)
    monkeypatch.setattr(scrape, "resolve_addresses", lambda name, port: ["127.0.0.1", "127.0.0.2"])
    closed, metrics_port = free_port(), free_port()  # nothing listens on `closed`: a target that is down
    interval = 0.25
    cfg = load_config_text(f"""
sources:
  gpu:
    type: scrape
    dns: [{{name: dcgm-exporter.gpu.svc, port: {a.port}}}]
    urls: ["http://127.0.0.1:{closed}/metrics"]
    interval_seconds: {interval}
    timeout_seconds: 0.2
    decoder: {{type: dcgm, constant_dimensions: {{cluster: c1}}}}
detectors:
  idle_gpu: {{type: threshold, signal: gpu_idle_hours, per: gpu_hours, cost_signal: gpu_idle_cost_usd,
             upper: 0.5, group_by: [node], window_seconds: 1, min_impact_usd: 0}}
  gpu_hours: {{type: threshold, signal: gpu_hours, upper: 1.0e9, group_by: [node], window_seconds: 1}}
sinks:
  metrics: {{type: prometheus, port: {metrics_port}}}
state: {{type: memory}}
dead_letter: {{path: {tmp_path / "dlq.jsonl"}}}
pipeline: {{allowed_lateness_seconds: 0}}
""")
    collector = PointCollector()
    agent = Agent(cfg, extra_sinks={"c": collector})
    agent.start()

    def hours(node: str) -> list[float]:
        return [p.observed for (d, s), pts in list(collector.points.items()) if d == "gpu_hours"
                and dict(s)["node"] == node for p in pts]  # fmt: skip

    try:
        full = 4 * interval / 3600  # one GPU per node, one sample per 0.25 s slot: 4 slots in a 1 s window
        assert wait_until(lambda: all(any(abs(h - full) < 1e-12 for h in hours(n)) for n in ("node-a", "node-b")), 15)
        status, text = http_get(metrics_port, "/metrics")
    finally:
        agent.stop()
    assert status == 200
    samples = {
        (s.name, s.labels.get("target"), s.labels.get("reason")): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("finops_agent_scrape_")
    }
    down = f"127.0.0.1:{closed}/metrics"
    assert samples[("finops_agent_scrape_target_up", a.label, None)] == 1
    assert samples[("finops_agent_scrape_target_up", b.label, None)] == 1
    assert samples[("finops_agent_scrape_target_up", down, None)] == 0
    assert samples[("finops_agent_scrape_errors_total", down, "connection_refused")] >= 1
    assert 0 < samples[("finops_agent_scrape_duration_seconds", a.label, None)] < 0.2
    for node in ("node-a", "node-b"):  # a window holds 4 slots of GPU time, never more (no slot counted twice)
        got = hours(node)
        assert max(got) <= full * (1 + 1e-9), got
    idle = [p for (d, _s), pts in collector.points.items() if d == "idle_gpu" for p in pts]
    assert idle and all(p.observed == 1.0 for p in idle)  # utilisation 0: every GPU-hour idle
