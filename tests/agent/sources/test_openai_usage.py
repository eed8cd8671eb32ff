"""The ``openai_usage`` source against a real HTTP server on loopback that emulates the Usage and Costs API.

Most tests drive one poll at a time with the source's own clock (``clock=``), and stand in for the pipeline
(:class:`Pipe`: decode, commit the position, as the pipeline does after processing a batch); the last ones run a
whole agent against the emulator, twice over the same state directory.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.openai_usage import OpenAIUsageConfig, OpenAIUsageDecoder
from agent.model import Observation
from agent.pipeline import Agent
from agent.pricing import TokenPriceTable
from agent.sources.base import Batch
from agent.sources.openai_usage import OpenAIUsageSource, OpenAIUsageSourceConfig
from agent.telemetry import Telemetry
from tests.conftest import wait_until

KEY = "sk-admin-TESTKEY0123456789abcdefXYZ"
H = 3600
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o")
PROJECTS = ("proj_a", "proj_b")


# -- the emulated API --------------------------------------------------------------------------------------------
def usage(start: int, model: str, project: str) -> dict[str, int]:
    """A result's final numbers (deterministic per bucket and group)."""
    k = (start // 60) % 17 + MODELS.index(model) * 3 + PROJECTS.index(project)
    return {"input_tokens": 1000 + 10 * k, "input_cached_tokens": 100 + k, "output_tokens": 300 + k, "requests": 3 + k}


class FakeOpenAI:
    """``/v1/organization/usage/{completions,embeddings}`` and ``/v1/organization/costs`` as the real API answers:
    buckets of ``bucket_width`` from ``start_time`` up to ``end_time`` (and never past the emulator's now: the
    current bucket is returned while still filling in), ``limit`` buckets a page (at most ``page_size``), a
    ``next_page`` cursor while ``has_more``; results grouped by ``group_by``. A bucket's numbers are final
    ``fill_seconds`` after its end (halved before: OpenAI fills buckets late)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.key = KEY
        self.page_size = 1000
        self.fill_seconds = 0.0
        self.ignore_end_time = False  # answer past end_time (the unsettled current bucket included)
        self.script: list[tuple[int, dict[str, str], bytes]] = []  # forced answers, first come first served
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.tamper: Callable[[dict[str, Any]], dict[str, Any] | bytes] | None = None  # rewrites a page
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def asked(self, path: str = "") -> list[dict[str, list[str]]]:
        with self.lock:
            return [q for p, q, _h in self.requests if p.endswith(path)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                status, headers, body = fake.answer(self.path, dict(self.headers.items()))
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        return Handler

    def answer(self, raw_path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(parts.query)
        with self.lock:
            self.requests.append((parts.path, query, headers))
            forced = self.script.pop(0) if self.script else None
        auth = headers.get("Authorization", "")
        if auth != f"Bearer {self.key}":  # the real API quotes (part of) the key it refused
            said = auth.removeprefix("Bearer ")
            return 401, {}, orjson.dumps({"error": {"message": f"Incorrect API key provided: {said}.", "code": None}})
        if forced is not None:
            return forced
        width = {"1m": 60, "1h": 3600, "1d": 86400}[query["bucket_width"][0]]
        start, end = int(query["start_time"][0]), int(query["end_time"][0])
        now = self.clock()
        limit = min(int(query.get("limit", ["7"])[0]), self.page_size)
        offset = int(query.get("page", ["0"])[0])
        starts = []
        s = start
        while s < (now if self.ignore_end_time else min(end, now)):
            starts.append(s)
            s += width
        chunk = starts[offset : offset + limit]
        more = offset + limit < len(starts)
        kind = parts.path.rsplit("/", 1)[-1]
        page: dict[str, Any] = {
            "object": "page",
            "data": [self.bucket(kind, b, b + width, query.get("group_by", []), now) for b in chunk],
            "has_more": more,
            "next_page": str(offset + limit) if more else None,
        }
        out = self.tamper(page) if self.tamper is not None else page
        return 200, {}, out if isinstance(out, bytes) else orjson.dumps(out)

    def bucket(self, kind: str, start: int, end: int, group_by: list[str], now: float) -> dict[str, Any]:
        part = 1.0 if now >= end + self.fill_seconds else 0.5
        results: list[dict[str, Any]] = []
        for model in MODELS[:1] if kind == "costs" else MODELS:
            for project in PROJECTS:
                u = {k: int(v * part) for k, v in usage(start, model, project).items()}
                grouped = {"project_id": project if "project_id" in group_by else None}
                if kind == "costs":
                    amount = {
                        "value": round(usage(start, model, project)["requests"] * 0.25 * part, 4),
                        "currency": "usd",
                    }
                    line_item = "completions" if "line_item" in group_by else None
                    results.append(
                        {"object": "organization.costs.result", "amount": amount, "line_item": line_item, **grouped}
                    )
                    continue
                completions = kind == "completions"
                results.append({
                    "object": f"organization.usage.{kind}.result", "input_tokens": u["input_tokens"],
                    "output_tokens": u["output_tokens"] if completions else None,
                    "input_cached_tokens": u["input_cached_tokens"] if completions else None,
                    "num_model_requests": u["requests"], "model": model if "model" in group_by else None,
                    "api_key_id": "key_1" if "api_key_id" in group_by else None, "user_id": None, "batch": None,
                    **grouped,
                })  # fmt: skip
        return {"object": "bucket", "start_time": start, "end_time": end, "results": results}


# -- a stand-in for the pipeline -----------------------------------------------------------------------------------
class Pipe:
    """Decodes every ``lines`` batch and commits its position (as the pipeline does once a batch is processed);
    ``commit=False`` loses what is emitted (a crash before processing)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.obs: list[Observation] = []
        self.bad: list[BadRecord] = []
        self.commit = True
        self.src: OpenAIUsageSource | None = None

    def emit(self, batch: Batch) -> None:
        assert self.src is not None
        self.batches.append(batch)
        if not self.commit:
            return
        if batch.kind == "lines":
            obs, bad = self.src.decoder.decode_lines(batch.payload, batch.ctx or DecodeContext("t"))
            self.obs += obs
            self.bad += bad
        elif batch.kind == "bad":
            self.bad += batch.payload
        if batch.position is not None:
            self.src.commit(*batch.position)

    def lines(self) -> list[Batch]:
        return [b for b in self.batches if b.kind == "lines"]

    def starts(self, signal: str = "requests") -> list[float]:
        """Bucket starts of the observations of ``signal`` (one per bucket and group)."""
        return sorted({o.ts for o in self.obs if signal in o.signals})


@pytest.fixture
def clock() -> list[float]:
    return [T0 + 10 * H + 600.0]  # 10:10


@pytest.fixture
def api(clock: list[float]) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(lambda: clock[0])
    yield fake
    fake.close()


def source(api: FakeOpenAI, clock: list[float], pipe: Pipe, tmp_path: Path, **opts: Any) -> OpenAIUsageSource:
    key_file = tmp_path / "admin-key"
    if not key_file.exists():
        key_file.write_text(KEY + "\n")
    cfg = OpenAIUsageSourceConfig(
        type="openai_usage",
        admin_key_file=str(key_file),
        base_url=api.url,
        **{"lookback_seconds": 3 * H, "settle_seconds": 300, "retry_backoff_seconds": 0.01, **opts},
    )
    telemetry = Telemetry()
    src = OpenAIUsageSource(
        cfg,
        name="openai",
        decoder=OpenAIUsageDecoder(cfg.decoder),
        emit=pipe.emit,
        ctx_defaults={"bucket_seconds": 60.0},
        host=SimpleNamespace(telemetry=telemetry),
        clock=lambda: clock[0],
    )
    pipe.src = src
    return src


def errors(src: OpenAIUsageSource, kind: str) -> float:
    assert src.host is not None
    return sum(
        s.value
        for m in src.host.telemetry.errors.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["error_type"] == kind and s.labels["component"] == "openai"
    )


# -- the tests -----------------------------------------------------------------------------------------------------
def test_every_page_of_a_window_makes_one_batch_whose_position_is_its_last_bucket_end(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    api.page_size = 2
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path, lookback_seconds=7 * H, group_by=["model", "project_id", "api_key_id"])
    assert src.poll() is True  # caught up: every settled bucket taken
    # 03:00–10:00 (10:00–11:00 is not over): 7 buckets, 2 a page → 4 requests, all with the same window.
    asked = api.asked("/usage/completions")
    assert len(asked) == 4
    assert [q.get("page") for q in asked] == [None, ["2"], ["4"], ["6"]]
    assert {(q["start_time"][0], q["end_time"][0], q["bucket_width"][0]) for q in asked} == {
        (str(T0 + 3 * H), str(T0 + 10 * H), "1h")
    }
    assert asked[0]["group_by"] == ["model", "project_id", "api_key_id"]
    assert all(h["Authorization"] == f"Bearer {KEY}" for _p, _q, h in api.requests)
    [batch] = pipe.lines()
    assert batch.records == 7 and batch.position == ("usage", {"end": T0 + 10 * H, "bucket_width": "1h"})
    assert batch.live  # it reached the newest settled bucket
    assert src.positions == {"usage": {"end": T0 + 10 * H, "bucket_width": "1h"}}
    assert pipe.starts() == [T0 + h * H for h in range(3, 10)]
    assert pipe.bad == []
    # One result, by hand: gpt-4o-mini (a dated version: priced as gpt-4o-mini), 0.15 / 0.075 / 0.60 $ per 1M.
    u = usage(T0 + 3 * H, MODELS[0], "proj_a")
    [ob] = [o for o in pipe.obs if o.ts == T0 + 3 * H and {("model", MODELS[0]), ("project", "proj_a")} <= set(o.dims)]
    dims = {"provider": "openai", "service": "openai", "model": MODELS[0], "project": "proj_a", "api_key": "key_1"}
    assert dict(ob.dims) == dims
    uncached, cached, out = u["input_tokens"] - u["input_cached_tokens"], u["input_cached_tokens"], u["output_tokens"]
    cost = (uncached * 0.15 + cached * 0.075 + out * 0.60) / 1e6
    assert ob.values[:5] == (u["requests"], uncached, out, cached, u["input_tokens"] + out)
    assert math.isclose(ob.values[5], cost, rel_tol=1e-12)
    # Nothing new has settled: the next poll asks nothing and emits nothing.
    assert src.poll() is True
    assert len(api.requests) == 4 and len(pipe.lines()) == 1


def test_a_bucket_is_taken_once_settled_never_before_and_never_twice(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    api.fill_seconds = 240  # OpenAI's numbers for a bucket are final 4 minutes after it ends
    api.ignore_end_time = True  # and it answers with the current, unfinished bucket too: the source skips it
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path, lookback_seconds=2 * H)
    for now in (T0 + 10 * H + 600, T0 + 11 * H + 120, T0 + 11 * H + 299, T0 + 11 * H + 300, T0 + 11 * H + 900):
        clock[0] = now
        src.poll()
        for q in api.asked():
            assert int(q["end_time"][0]) <= now - 300  # never asked for a bucket that has not settled
    # 08:00 and 09:00 at 10:10; 10:00 once it ended 5 minutes ago (11:05), not at 11:02 nor 11:04:59.
    assert [(b.records, b.position[1]["end"] if b.position else None) for b in pipe.lines()] == [
        (2, T0 + 10 * H),
        (1, T0 + 11 * H),
    ]
    assert pipe.starts() == [T0 + 8 * H, T0 + 9 * H, T0 + 10 * H]  # each once
    assert len(pipe.obs) == 3 * len(MODELS) * len(PROJECTS)
    # Taken after it settled: the final numbers, not the half-filled ones.
    got = {(o.ts, dict(o.dims)["model"], dict(o.dims)["project"]): o.values[0] for o in pipe.obs}
    assert got == {
        (float(s), m, p): usage(s, m, p)["requests"]
        for s in (T0 + 8 * H, T0 + 9 * H, T0 + 10 * H)
        for m in MODELS
        for p in PROJECTS
    }


def test_a_429_waits_as_long_as_retry_after_says_then_the_page_is_taken(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    api.script = [(429, {"Retry-After": "1"}, b'{"error": {"message": "Rate limit reached"}}')]
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path)
    t = time.monotonic()
    assert src.poll() is True
    assert time.monotonic() - t >= 0.95  # not the 0.01 s backoff: the server's Retry-After
    assert len(api.requests) == 2 and errors(src, "http_429") == 1
    assert [b.records for b in pipe.lines()] == [3] and pipe.starts() == [T0 + h * H for h in (7, 8, 9)]


def test_5xx_is_retried_and_a_poll_that_gives_up_leaves_the_position_for_the_next(
    api: FakeOpenAI, clock: list[float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path, max_retries=1)
    api.script = [(500, {}, b'{"error": {"message": "The server had an error"}}')]
    src.poll()  # one 500, retried: taken
    assert [b.records for b in pipe.lines()] == [3] and errors(src, "http_500") == 1
    clock[0] += 2 * H
    api.script = [(503, {}, b"upstream overloaded")] * 2  # the retry fails too: the poll gives up
    assert src.poll() is True
    assert len(pipe.lines()) == 1 and src.positions["usage"]["end"] == T0 + 10 * H
    assert errors(src, "http_503") == 2
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "HTTP 503" in warned[0].getMessage() and "position stays" in warned[0].getMessage()
    api.script = [(503, {}, b"")] * 2
    src.poll()  # still failing: counted, not logged again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    src.poll()  # answered: the same window again, from the position
    assert [b.records for b in pipe.lines()] == [3, 2]
    assert pipe.starts() == [T0 + h * H for h in range(7, 12)]
    assert api.asked()[-1]["start_time"] == [str(T0 + 10 * H)]
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_refused_key_is_logged_once_counted_and_never_shown_and_a_rotated_key_file_is_read_again(
    api: FakeOpenAI, clock: list[float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pipe = Pipe()
    (tmp_path / "admin-key").write_text("sk-admin-WRONGKEY99999999\n")
    src = source(api, clock, pipe, tmp_path)
    for _ in range(3):
        assert src.poll() is True
    assert pipe.batches == [] and src.positions == {}
    assert errors(src, "unauthorized") == 3  # every refused request
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "HTTP 401" in logged[0].getMessage() and "admin_key_file" in logged[0].getMessage()
    assert "WRONGKEY" not in caplog.text and KEY not in caplog.text
    assert not src.ready() and "refuses the admin key (unauthorized)" in (src.not_ready_reason() or "")  # /readyz
    (tmp_path / "admin-key").write_text(KEY)  # the secret is rotated
    src.poll()  # (the first request still carries the old key: refused, the file read again)
    assert src.poll() is True
    assert [b.records for b in pipe.lines()] == [3]
    assert src.ready() and src.not_ready_reason() is None
    assert "WRONGKEY" not in caplog.text and KEY not in caplog.text


def test_a_refused_request_is_logged_once_with_the_apis_words_and_no_key(
    api: FakeOpenAI, clock: list[float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    said = orjson.dumps({"error": {"message": f"Invalid value for 'group_by' (sent with {KEY})", "type": "invalid"}})
    api.script = [(400, {}, said), (400, {}, said)]
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path)
    src.poll()
    src.poll()
    assert len(api.requests) == 2  # not retried: the same request would be refused again
    assert pipe.batches == [] and src.positions == {} and errors(src, "http_400") == 2
    [logged] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "HTTP 400: Invalid value for 'group_by' (sent with …)" in logged
    assert KEY not in caplog.text
    src.poll()
    assert [b.records for b in pipe.lines()] == [3]


def test_the_running_source_reports_idle_between_polls_active_before_records_and_survives_a_bug(
    api: FakeOpenAI, clock: list[float], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path, poll_interval_seconds=0.05)
    real = src._take
    calls = {"n": 0}

    def buggy() -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("injected")
        return real()

    src._take = buggy  # type: ignore[method-assign]
    src.start()
    try:
        assert wait_until(lambda: len(pipe.lines()) == 1, 5)
        clock[0] += H
        assert wait_until(lambda: len(pipe.lines()) == 2, 5)
        time.sleep(0.2)
    finally:
        src.stop()
    kinds = [b.kind for b in pipe.batches]
    kinds = [k for j, k in enumerate(kinds) if not (k == "idle" and j and kinds[j - 1] == "idle")]
    assert kinds == ["idle", "active", "lines", "idle", "active", "lines", "idle"]
    assert [b.records for b in pipe.lines()] == [3, 1] and errors(src, "ZeroDivisionError") == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "openai_usage source openai: poll failed; the position stays"
    ]


def test_a_restarted_source_resumes_at_the_committed_position_and_counts_no_bucket_twice(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    pipe = Pipe()
    first = source(api, clock, pipe, tmp_path, endpoints=["completions", "embeddings"])
    first.poll()
    clock[0] += H
    pipe.commit = False  # emitted, never processed: the agent stopped before (its position not committed)
    first.poll()
    # Both endpoints' buckets of a window in one batch (event time never goes back within the source).
    assert [b.records for b in pipe.lines()] == [6, 2]
    saved = first.checkpoint_positions()
    assert saved == {"usage": {"end": T0 + 10 * H, "bucket_width": "1h"}}

    clock[0] += 2 * H
    pipe2 = Pipe()
    second = source(api, clock, pipe2, tmp_path, endpoints=["completions", "embeddings"])
    second.restore(saved)
    second.poll()
    # 10:00–13:00 (the batch that was lost is read again), nothing before the position.
    assert [q["start_time"] for q in api.asked()[-2:]] == [[str(T0 + 10 * H)]] * 2
    assert pipe2.starts() == [T0 + h * H for h in (10, 11, 12)]
    seen = [o.ts for o in pipe.obs + pipe2.obs if o.signals[0] == "requests"]
    groups = len(MODELS) * len(PROJECTS)
    assert sorted(seen) == sorted(float(T0 + h * H) for h in range(7, 13) for _ in range(2 * groups))  # once each

    # A bucket width changed between runs: the next whole bucket, never one read already.
    pipe3 = Pipe()
    third = source(api, clock, pipe3, tmp_path, bucket_width="1d", lookback_seconds=0)
    third.restore({"usage": {"end": T0 + 10 * H, "bucket_width": "1h"}})
    clock[0] = T0 + 2 * 86400 + 600
    third.poll()
    assert pipe3.starts() == [T0 + 86400]


def test_bad_buckets_and_results_are_dead_lettered_with_a_reason_and_the_rest_is_kept(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    def tamper(page: dict[str, Any]) -> dict[str, Any]:
        data = page["data"]
        data[0]["results"] = "oops"  # 07:00: not a list
        r = data[1]["results"]  # 08:00: three bad results of four
        r[0]["input_tokens"] = -5
        r[1]["output_tokens"] = "many"
        r[2]["model"] = "my-own-model"  # no price: counted, not costed
        data[2]["results"][0]["input_cached_tokens"] = 10**9  # 09:00: more cached than input
        data.append(dict(data[2]))  # 09:00 again: a duplicate
        data.append({"object": "bucket", "end_time": T0})  # no start
        return page

    api.tamper = tamper
    pipe = Pipe()
    src = source(api, clock, pipe, tmp_path)
    src.poll()
    kinds = sorted((r.kind, r.reason.split(":")[0]) for r in pipe.bad)
    assert kinds == [
        ("duplicate_bucket", "bucket 2026-01-01T09"),
        ("negative_value", "bucket 2026-01-01T08"),
        ("schema", "bucket 2026-01-01T07"),
        ("schema", "bucket 2026-01-01T08"),
        ("schema", "bucket 2026-01-01T09"),
        ("schema", "missing start_time"),
        ("unknown_model", "bucket 2026-01-01T08"),
    ], kinds
    assert {r.reason for r in pipe.bad if r.kind == "schema"} >= {
        "bucket 2026-01-01T07:00:00Z: results is str, not a list",
        "bucket 2026-01-01T08:00:00Z results[1]: output_tokens is 'many', not an integer",
    }
    # What was usable was kept: 08:00's unpriced result and its last one, 09:00's other three.
    per_bucket = {s: sum(1 for o in pipe.obs if o.ts == s) for s in pipe.starts()}
    assert per_bucket == {T0 + 8 * H: 2, T0 + 9 * H: 3}
    assert [o.values[5] for o in pipe.obs if dict(o.dims)["model"] == "my-own-model"] == [0.0]
    assert src.positions["usage"]["end"] == T0 + 10 * H
    assert all(KEY.encode() not in r.raw and KEY not in r.reason for r in pipe.bad)

    # A response that is not a page: dead-lettered once (with the body), the position stays, asked again.
    clock[0] += H
    api.tamper = lambda page: b"<html>gateway</html>"
    src.poll()
    src.poll()
    pages = [r for r in pipe.bad if r.kind == "bad_page"]
    assert len(pages) == 1 and pages[0].raw == b"<html>gateway</html>" and "not JSON" in pages[0].reason
    assert src.positions["usage"]["end"] == T0 + 10 * H and errors(src, "bad_page") == 2
    api.tamper = lambda page: {**page, "has_more": True, "next_page": None}
    src.poll()
    assert [r.kind for r in pipe.bad].count("bad_page") == 2
    api.tamper = None
    src.poll()
    assert src.positions["usage"]["end"] == T0 + 11 * H and pipe.starts()[-1] == T0 + 10 * H


def test_costs_become_cost_usd_by_project_name_and_line_item(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    pipe = Pipe()
    clock[0] = T0 + 3 * 86400 + 600
    decoder = OpenAIUsageConfig(
        type="openai_usage", project_names={"proj_a": "search"}, constant_dimensions={"org": "x"}
    )
    src = source(api, clock, pipe, tmp_path, endpoints=["costs"], lookback_seconds=2 * 86400, decoder=decoder)
    src.poll()
    [q] = api.asked("/organization/costs")
    assert q["bucket_width"] == ["1d"] and q["group_by"] == ["project_id", "line_item"]
    assert pipe.lines()[0].position == ("costs", {"end": T0 + 3 * 86400, "bucket_width": "1d"})
    got = sorted((o.ts, dict(o.dims)["project"], o.values) for o in pipe.obs)
    assert {o.signals for o in pipe.obs} == {("cost_usd",)}
    assert dict(pipe.obs[0].dims) == {
        "provider": "openai",
        "service": "openai",
        "project": "search",
        "line_item": "completions",
        "org": "x",
    }
    assert got == [
        (float(d), p, (round(usage(d, MODELS[0], pid)["requests"] * 0.25, 4),))
        for d in (T0 + 86400, T0 + 2 * 86400)
        for p, pid in (("proj_b", "proj_b"), ("search", "proj_a"))
    ]


def test_results_without_object_are_read_as_their_endpoints(
    api: FakeOpenAI, clock: list[float], tmp_path: Path
) -> None:
    def strip(page: dict[str, Any]) -> dict[str, Any]:
        for bucket in page["data"]:
            for res in bucket["results"]:
                del res["object"]
        return page

    api.tamper = strip
    pipe = Pipe()
    source(api, clock, pipe, tmp_path, endpoints=["completions", "embeddings"]).poll()
    assert pipe.bad == []
    groups = len(MODELS) * len(PROJECTS)
    assert len(pipe.obs) == 2 * 3 * groups
    outputs = sorted(o.values[2] for o in pipe.obs)  # embeddings have no output tokens
    assert outputs[: 3 * groups] == [0.0] * (3 * groups) and min(outputs[3 * groups :]) > 0


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, "set admin_key or admin_key_file (exactly one)"),
        ({"admin_key": "a", "admin_key_file": "/k"}, "set admin_key or admin_key_file (exactly one)"),
        ({"admin_key": "a", "endpoints": ["completions", "costs"]}, "costs go in a source of their own"),
        ({"admin_key": "a", "group_by": ["project_id"]}, "group_by must include model"),
        ({"admin_key": "a", "base_url": "https://user:pw@proxy.example/v1"}, "no credentials or query in base_url"),
        ({"admin_key": "a", "bucket_width": "5m"}, "bucket_width"),
    ],
)
def test_the_config_says_what_is_wrong(options: dict[str, Any], error: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(error)):
        OpenAIUsageSourceConfig(type="openai_usage", **options)
    ok = OpenAIUsageSourceConfig(type="openai_usage", admin_key="sk-admin-x", endpoints=["costs"], group_by=[])
    assert "sk-admin-x" not in repr(ok) and ok.decoder.type == "openai_usage"


def test_the_decoder_prices_batch_usage_refuses_foreign_currency_and_sees_up_to_the_bucket_end() -> None:
    dec = OpenAIUsageDecoder(OpenAIUsageConfig(type="openai_usage", batch_price_ratio=0.5))
    usage_ = {
        "object": "organization.usage.completions.result",
        "input_tokens": 10**6,
        "output_tokens": 10**6,
        "num_model_requests": 2,
        "model": "gpt-4o",
        "user_id": "user_1",
    }
    cost = {"object": "organization.costs.result"}
    res = [
        {**usage_, "batch": False}, {**usage_, "batch": True},
        {**cost, "amount": {"value": 3.5, "currency": "eur"}}, {**cost, "amount": {"value": 1e300, "currency": "usd"}},
        {**cost, "amount": {"value": -2.0, "currency": "usd"}},  # a credit: legal
    ]  # fmt: skip
    line = orjson.dumps({"object": "bucket", "start_time": T0, "end_time": T0 + H, "results": res})
    ctx = DecodeContext("t", bucket_seconds=3600)
    obs, bad = dec.decode_lines([line, b"{not json"], ctx)
    assert [
        (dict(o.dims).get("batch"), dict(o.dims).get("user"), o.values[5 if len(o.values) > 1 else 0]) for o in obs
    ] == [
        ("false", "user_1", 12.5),  # gpt-4o: 2.50 + 10.00 $ per 1M
        ("true", "user_1", 6.25),  # the Batch API's half
        (None, None, -2.0),
    ]
    assert [r.kind for r in bad] == ["unsupported_currency", "absurd_value", "malformed_json"]
    assert ctx.max_event_time == T0 + H  # everything up to the bucket's end was seen, not just its start


# -- the whole agent ---------------------------------------------------------------------------------------------
def _agent_config(api: FakeOpenAI, key_file: Path, state: Path) -> str:
    """Minute buckets, ten minutes back on the first start, four a page; windows close on the wall clock too."""
    return f"""
sources:
  openai: {{type: openai_usage, admin_key_file: {key_file}, base_url: {api.url}, bucket_width: 1m,
            lookback_seconds: 600, settle_seconds: 0, poll_interval_seconds: 0.2, page_size: 4}}
detectors:
  spend: {{type: threshold, signal: token_cost_usd, group_by: [project], upper: 1000000, window_seconds: 60}}
sinks: {{console: {{type: console}}}}
state: {{type: local, directory: {state}}}
dead_letter: {{path: {state}/dead-letter.jsonl}}
pipeline: {{allowed_lateness_seconds: 1, idle_timeout_seconds: 0.3}}
"""


def _expected_spend(start: int) -> dict[str, float]:
    prices = TokenPriceTable.from_config(None)
    out: dict[str, float] = {}
    for m in MODELS:
        p = prices.lookup(m)
        assert p is not None
        for proj in PROJECTS:
            u = usage(start, m, proj)
            unc = u["input_tokens"] - u["input_cached_tokens"]
            cost = unc * p.input + u["input_cached_tokens"] * p.cached_input + u["output_tokens"] * p.output
            out[proj] = out.get(proj, 0.0) + cost
    return out


def _points(collector: PointCollector) -> list[Any]:
    points = [p for ps in collector.points.values() for p in ps]
    for p in points:
        want = _expected_spend(int(p.window_start))[dict(p.series)["project"]]
        assert math.isclose(p.observed, want, rel_tol=1e-9), (p.window_start, p.observed, want)
    assert len({(p.series, p.window_start) for p in points}) == len(points)  # each window scored once
    return points


def test_an_agent_reads_the_api_scores_token_spend_and_after_a_restart_reads_on_from_its_position(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shift = [0.0]  # the second agent runs two minutes later (its clock, and the API's)
    api = FakeOpenAI(lambda: time.time() + shift[0])
    key_file = tmp_path / "admin-key"
    key_file.write_text(KEY)
    state = tmp_path / "state"
    try:
        collector = PointCollector()
        agent = Agent(load_config_text(_agent_config(api, key_file, state)), extra_sinks={"c": collector})
        agent.start()
        try:
            # Ten minutes of history (three pages): token spend per project and minute.
            assert wait_until(lambda: len({p.window_start for p in _points(collector)}) >= 10, 15)
        finally:
            agent.stop()
        points = _points(collector)
        assert {p.series for p in points} == {(("project", "proj_a"),), (("project", "proj_b"),)}
        assert len(api.asked()) >= 3
        first_requests = len(api.requests)
        taken_until = max(int(q["end_time"][0]) for q in api.asked())

        shift[0] = 120.0
        later = lambda: time.time() + shift[0]  # noqa: E731
        collector2 = PointCollector()
        agent2 = Agent(load_config_text(_agent_config(api, key_file, state)), extra_sinks={"c": collector2}, now=later)
        agent2.sources["openai"].clock = later  # type: ignore[attr-defined]
        agent2.start()
        try:
            assert wait_until(lambda: bool(collector2.points), 10)
        finally:
            agent2.stop()
        # Resumed where the first one stopped, not ten minutes back; no window counted twice.
        assert api.asked()[first_requests]["start_time"] == [str(taken_until)]
        again = _points(collector2)
        assert min(p.window_start for p in again) == taken_until
        assert not {(p.series, p.window_start) for p in again} & {(p.series, p.window_start) for p in points}
        dlq = state / "dead-letter.jsonl"
        assert not dlq.exists() or KEY not in dlq.read_text()
        assert KEY not in caplog.text
    finally:
        api.close()


def test_a_saved_api_response_is_read_bucket_by_bucket() -> None:
    """New-user review: `curl …/usage/completions > page.json` replayed through a file source was one bad record
    ("object 'page' is not a bucket"): a page is its buckets, each dead-lettered alone if bad."""
    dec = OpenAIUsageDecoder(OpenAIUsageConfig(type="openai_usage"))
    res = {
        "object": "organization.usage.completions.result",
        "input_tokens": 1000,
        "output_tokens": 100,
        "num_model_requests": 1,
    }
    buckets = [
        {
            "object": "bucket",
            "start_time": T0 + i * H,
            "end_time": T0 + (i + 1) * H,
            "results": [{**res, "model": "gpt-4o"}],
        }
        for i in range(3)
    ]
    broken = {"object": "bucket", "start_time": T0 + 3 * H, "results": 5}
    page = {"object": "page", "data": [*buckets, broken], "has_more": False, "next_page": None}
    obs, bad = dec.decode_lines([orjson.dumps(page, option=orjson.OPT_INDENT_2)], DecodeContext("t", bucket_seconds=H))
    assert [o.ts for o in obs] == [T0, T0 + H, T0 + 2 * H]
    assert [b.kind for b in bad] == ["schema"] and orjson.loads(bad[0].raw) == broken
